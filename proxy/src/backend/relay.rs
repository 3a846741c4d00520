//! Forwards a backend's reply to the client packet by packet, untouched, while following the
//! protocol just enough to know where the reply ends and what state it leaves behind.

use super::conn::BackendConn;
use crate::protocol::message::{self, Completion, SqlError, SERVER_STATUS_CURSOR_EXISTS};
use crate::protocol::packet::{read_lenenc, PacketReader, PacketWriter};
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};

/// The shape of the reply to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// OK, ERR, LOCAL INFILE request, or result sets (possibly several) — `COM_QUERY`,
    /// `COM_STMT_EXECUTE`.
    Results,
    /// Rows then EOF — `COM_STMT_FETCH`.
    Rows,
    /// Packets up to an EOF — `COM_FIELD_LIST`.
    UntilEof,
    /// Exactly one packet — `COM_STATISTICS`.
    One,
}

/// How a forwarded reply ended.
#[derive(Debug, Default)]
pub struct Relayed {
    /// The last OK/EOF seen (status flags, last insert id).
    pub completion: Completion,
    /// The server's error, if the reply ended with one.
    pub error: Option<SqlError>,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The backend failed; `sent` tells whether the client already got part of the reply.
    #[error("backend connection failed: {source}")]
    Backend { source: io::Error, sent: bool },
    #[error("client connection failed: {0}")]
    Client(io::Error),
}

enum Phase {
    Start,
    Columns(u64),
    Rows,
}

pub async fn relay<CR, CW>(
    conn: &mut BackendConn,
    client_in: &mut PacketReader<CR>,
    client_out: &mut PacketWriter<CW>,
    expect: Expect,
) -> Result<Relayed, RelayError>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
{
    conn.broken = true;
    let mut sent = false;
    let mut out = Relayed::default();
    let mut phase = match expect {
        Expect::Rows => Phase::Rows,
        _ => Phase::Start,
    };
    let mut continuation = false;
    loop {
        let p = conn
            .read_raw()
            .await
            .map_err(|source| RelayError::Backend { source, sent })?;
        client_out.write_raw(&p).await.map_err(RelayError::Client)?;
        sent = true;
        // A continuation packet is the tail of a large row or value: pass it through blind.
        let was_continuation = continuation;
        continuation = p.continues();
        if was_continuation {
            continue;
        }
        let body = p.payload();
        let done = match expect {
            Expect::One => true,
            Expect::UntilEof => {
                if message::is_err(body) {
                    out.error = SqlError::parse(body);
                    true
                } else if message::is_eof(body) {
                    out.completion = message::parse_eof(body).unwrap_or_default();
                    true
                } else {
                    false
                }
            }
            Expect::Results | Expect::Rows => match phase {
                Phase::Start => match body.first() {
                    Some(0x00) => {
                        let c = message::parse_ok(body).unwrap_or_default();
                        if c.last_insert_id != 0 {
                            conn.last_insert_id = c.last_insert_id;
                        }
                        out.completion = c;
                        conn.finish(c)
                    }
                    Some(0xFF) => {
                        out.error = SqlError::parse(body);
                        true
                    }
                    Some(0xFB) => {
                        client_out.flush().await.map_err(RelayError::Client)?;
                        local_infile(conn, client_in).await?;
                        false
                    }
                    _ => {
                        let mut b = body;
                        let n = read_lenenc(&mut b).unwrap_or(0);
                        phase = Phase::Columns(n);
                        false
                    }
                },
                Phase::Columns(0) => {
                    // The EOF closing the column definitions.
                    let c = message::parse_eof(body).unwrap_or_default();
                    if c.status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                        // A cursor was opened: rows come later through COM_STMT_FETCH.
                        out.completion = c;
                        conn.finish(c);
                        true
                    } else {
                        phase = Phase::Rows;
                        false
                    }
                }
                Phase::Columns(n) => {
                    phase = Phase::Columns(n - 1);
                    false
                }
                Phase::Rows => {
                    if message::is_eof(body) {
                        let c = message::parse_eof(body).unwrap_or_default();
                        out.completion = c;
                        phase = Phase::Start;
                        conn.finish(c) || expect == Expect::Rows
                    } else if message::is_err(body) {
                        out.error = SqlError::parse(body);
                        true
                    } else {
                        false
                    }
                }
            },
        };
        if done {
            break;
        }
    }
    if let Some(e) = &out.error {
        // An error ends the reply and leaves the transaction state as it was; the server does
        // not say, so keep the last known status.
        tracing::trace!("backend error relayed: {e}");
    }
    client_out.flush().await.map_err(RelayError::Client)?;
    conn.broken = false;
    Ok(out)
}

/// `LOAD DATA LOCAL INFILE`: the client streams the file as packets ending with an empty one;
/// pass them to the backend as they come.
async fn local_infile<CR: AsyncRead + Unpin>(
    conn: &mut BackendConn,
    client_in: &mut PacketReader<CR>,
) -> Result<(), RelayError> {
    loop {
        let p = client_in.read_raw().await.map_err(RelayError::Client)?;
        let last = p.payload().is_empty();
        conn.writer
            .write_raw(&p)
            .await
            .map_err(|source| RelayError::Backend { source, sent: true })?;
        if last {
            return conn
                .writer
                .flush()
                .await
                .map_err(|source| RelayError::Backend { source, sent: true });
        }
    }
}
