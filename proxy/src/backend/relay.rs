//! Forwards a backend's reply to the client untouched, straight out of the backend
//! connection's read buffer, while following the protocol just enough to know where the
//! reply ends and what state it leaves behind.

use super::conn::BackendConn;
use crate::protocol::message::{
    self, Completion, SqlError, SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_CURSOR_EXISTS,
};
use crate::protocol::packet::{frame_len, read_lenenc, PacketReader, PacketWriter, MAX_PAYLOAD};
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
    /// Rows sent to the client, over all result sets.
    pub rows: u64,
    /// From sending the command to the reply's last packet; set by the caller that timed it.
    pub latency_us: u64,
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

#[derive(PartialEq, Eq)]
enum Step {
    More,
    Done,
    /// The server asked for a `LOAD DATA LOCAL` file.
    LocalInfile,
}

/// Follows a reply packet by packet.
struct Scanner {
    expect: Expect,
    phase: Phase,
    /// The previous packet had the maximum size: this one is its continuation.
    continuation: bool,
    out: Relayed,
    /// Status of the last OK/EOF, for the connection.
    status: Option<u16>,
}

impl Scanner {
    fn new(expect: Expect) -> Self {
        Scanner {
            expect,
            phase: match expect {
                Expect::Rows => Phase::Rows,
                _ => Phase::Start,
            },
            continuation: false,
            out: Relayed::default(),
            status: None,
        }
    }

    /// Records an OK/EOF; true when no further result follows.
    fn complete(&mut self, c: Completion) -> bool {
        self.out.completion = c;
        self.status = Some(c.status);
        c.status & SERVER_MORE_RESULTS_EXISTS == 0
    }

    fn packet(&mut self, body: &[u8]) -> Step {
        let was_continuation = self.continuation;
        self.continuation = body.len() == MAX_PAYLOAD;
        // The tail of a large row or value: nothing to look at.
        if was_continuation {
            return Step::More;
        }
        let done = match self.expect {
            Expect::One => true,
            Expect::UntilEof => {
                if message::is_err(body) {
                    self.out.error = SqlError::parse(body);
                    true
                } else if message::is_eof(body) {
                    self.out.completion = message::parse_eof(body).unwrap_or_default();
                    true
                } else {
                    false
                }
            }
            Expect::Results | Expect::Rows => match self.phase {
                Phase::Start => match body.first() {
                    Some(0x00) => self.complete(message::parse_ok(body).unwrap_or_default()),
                    Some(0xFF) => {
                        self.out.error = SqlError::parse(body);
                        true
                    }
                    Some(0xFB) => return Step::LocalInfile,
                    _ => {
                        let mut b = body;
                        self.phase = Phase::Columns(read_lenenc(&mut b).unwrap_or(0));
                        false
                    }
                },
                Phase::Columns(0) => {
                    // The EOF closing the column definitions.
                    let c = message::parse_eof(body).unwrap_or_default();
                    if c.status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                        // A cursor was opened: rows come later through COM_STMT_FETCH.
                        self.complete(c);
                        true
                    } else {
                        self.phase = Phase::Rows;
                        false
                    }
                }
                Phase::Columns(n) => {
                    self.phase = Phase::Columns(n - 1);
                    false
                }
                Phase::Rows => {
                    if message::is_eof(body) {
                        self.phase = Phase::Start;
                        let last = self.complete(message::parse_eof(body).unwrap_or_default());
                        last || self.expect == Expect::Rows
                    } else if message::is_err(body) {
                        self.out.error = SqlError::parse(body);
                        true
                    } else {
                        self.out.rows += 1;
                        false
                    }
                }
            },
        };
        if done {
            Step::Done
        } else {
            Step::More
        }
    }
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
    let mut scan = Scanner::new(expect);
    let mut sent = false;
    loop {
        // Walk the complete packets already received, then pass them on in one write.
        let buf = conn.reader.buffered();
        let mut pos = 0;
        let mut step = Step::More;
        while let Some(len) = frame_len(&buf[pos..]) {
            if buf.len() - pos < len {
                break;
            }
            step = scan.packet(&buf[pos + 4..pos + len]);
            pos += len;
            if step != Step::More {
                break;
            }
        }
        let partial = frame_len(&buf[pos..]);
        if pos > 0 {
            client_out
                .write_through(&buf[..pos])
                .await
                .map_err(RelayError::Client)?;
            conn.reader.consume(pos);
            sent = true;
        }
        match step {
            Step::Done => break,
            Step::LocalInfile => {
                client_out.flush().await.map_err(RelayError::Client)?;
                local_infile(conn, client_in).await?;
            }
            Step::More => conn
                .reader
                .fill_to(partial.unwrap_or(4))
                .await
                .map_err(|source| RelayError::Backend { source, sent })?,
        }
    }
    if let Some(status) = scan.status {
        conn.status = status;
    }
    if scan.out.completion.last_insert_id != 0 {
        conn.last_insert_id = scan.out.completion.last_insert_id;
    }
    client_out.flush().await.map_err(RelayError::Client)?;
    conn.broken = false;
    Ok(scan.out)
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
