//! Forwards a backend's reply to the client untouched, straight out of the backend
//! connection's read buffer, while following the protocol just enough to know where the
//! reply ends and what state it leaves behind.

use super::conn::{BackendConn, Tracking};
use crate::protocol::message::{
    self, codes, Completion, SqlError, SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_CURSOR_EXISTS,
    SERVER_STATUS_IN_TRANS_READONLY,
};
use crate::protocol::packet::{frame_len, read_lenenc, PacketReader, PacketWriter, MAX_PAYLOAD};
use crate::protocol::session_track::{self, StateChanges, SERVER_SESSION_STATE_CHANGED};
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

/// Where a command runs, for what the relay makes of the errors in its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsOn {
    /// The write backend.
    Primary,
    /// A replica (see `Scanner::error`).
    Replica,
    /// A replica, for an autocommit read that may run again on the write backend: a reply
    /// that is nothing but an error the replica gives for being one ([`refused_as_replica`])
    /// is not passed on (see [`Relayed::refused_on_replica`]).
    ReplicaFirst,
}

/// What a replica that has not replicated a table or schema yet answers a read (or prepare)
/// of it: no such table (1146), no such schema (1049).
pub fn says_missing(e: &SqlError) -> bool {
    [1146, 1049].contains(&e.code)
}

/// A server's refusal to write under `read_only=ON` (1290; MySQL's `super_read_only` says
/// `--super-read-only`).
fn refused_for_read_only(e: &SqlError) -> bool {
    e.code == codes::OPTION_PREVENTS_STATEMENT.0 && e.message.contains("read-only option")
}

/// What a replica answers, for being one, a read the write backend can answer: no such
/// table or schema ([`says_missing`]), or a refusal for `read_only` (a `SELECT` of a stored
/// function that writes: the server only finds out by running it, and refuses the write
/// before it happens).
pub fn refused_as_replica(e: &SqlError) -> bool {
    says_missing(e) || refused_for_read_only(e)
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
    /// What the server's session tracking reported, over all OK packets of the reply;
    /// `None` when nothing (most replies). Boxed to keep a `Relayed` small, see below.
    pub changes: Option<Box<StateChanges>>,
    /// Some result of the reply raised warnings. The last completion's count can be 0 while
    /// the server still holds an earlier statement's (`SELECT 1/0; SELECT 1`).
    pub warned: bool,
    /// `error` is not the one the server holds for `SHOW WARNINGS` (see `Scanner::error`).
    pub error_rewritten: bool,
    /// What `ROW_COUNT()` answers after this reply: the last OK's affected rows, -1 after
    /// rows or an error. `None`: not a statement's reply.
    pub row_count: Option<i64>,
    /// What `FOUND_ROWS()` answers after this reply, when it ended a result set: that last
    /// set's row count, `u32::MAX` when it does not fit (32 bits keep a `Relayed` small).
    /// (After `SQL_CALC_FOUND_ROWS` the server's answer differs; such a session keeps its
    /// connection and asks the server.)
    pub found_rows: Option<u32>,
    /// The reply was only `error`, one a replica gives for being one (it has not replicated
    /// a table or schema yet, or it is read-only: [`refused_as_replica`]), and the client got
    /// none of it ([`RunsOn::ReplicaFirst`]).
    pub refused_on_replica: bool,
    /// Set by the caller: this is the write backend's reply to a read a replica refused that
    /// way first.
    pub after_replica_refused: bool,
}

// Every statement's `Relayed` is moved through several futures' states. Up to 128 bytes the
// compiler moves it inline; past that each move is a `memcpy` call (measured: crossing it
// cost ~230 instructions per proxied statement).
const _: () = assert!(std::mem::size_of::<Relayed>() <= 128);

/// A binary-protocol command's statement id as the backend knows it and as the client does
/// (see `client::prepared`): the server's errors about a statement name its own id, and the
/// client must read its id there instead.
#[derive(Debug, Clone, Copy)]
pub struct StmtIds {
    pub backend: u32,
    pub client: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The backend failed; `sent` tells whether the client already got part of the reply.
    #[error("backend connection failed: {source}")]
    Backend { source: io::Error, sent: bool },
    #[error("client connection failed: {0}")]
    Client(io::Error),
    /// The server refused the command before reading it whole (`max_allowed_packet`), said
    /// why, and closed the connection.
    #[error("backend refused the command: {0}")]
    Refused(SqlError),
}

/// Moves the sequence ids of a reply's packets by a fixed amount. When the proxy sends a
/// command in another number of packets than the client did (a rewrite took it across a
/// multiple of 16 MiB), the server numbers its reply after the proxy's packets, while the
/// client expects it after its own: strict clients drop a connection whose numbering skips.
/// (The proxy's rewrites only lengthen commands, so the client is behind, and `by` wraps.)
struct Renumber {
    by: u8,
    /// Where the next header not yet rewritten starts in the backend's read buffer (which
    /// may be past its end, inside a packet still arriving).
    next: usize,
}

impl Renumber {
    /// Rewrites the headers in `buf` not rewritten yet.
    fn apply(&mut self, buf: &mut [u8]) {
        while self.by != 0 && self.next + 4 <= buf.len() {
            let header = &mut buf[self.next..self.next + 4];
            header[3] = header[3].wrapping_add(self.by);
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            self.next += 4 + len;
        }
    }

    /// `n` bytes of the buffer, all before `next`, were consumed.
    fn consumed(&mut self, n: usize) {
        if self.by != 0 {
            self.next -= n;
        }
    }
}

/// Packets longer than this are forwarded piecewise as they arrive (rows only), so a huge
/// BLOB never sits whole in the proxy's memory.
const STREAM_AT: usize = 256 * 1024;

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
    /// What the client may see of session tracking, and what the server reports.
    track: Tracking,
    /// The current packet as the client must get it, when that differs from the backend's.
    replacement: Option<Vec<u8>>,
    ids: Option<StmtIds>,
    /// The command runs on a replica (see `error`).
    on_replica: bool,
    /// In a read-only transaction: before the command, then as its last result left it (a
    /// multi-statement may end it).
    read_only_txn: bool,
    /// `out.rows` when the current result set's rows began.
    set_start: u64,
    /// See [`RunsOn::ReplicaFirst`].
    hold_refusal: bool,
}

impl Scanner {
    fn new(
        expect: Expect,
        track: Tracking,
        ids: Option<StmtIds>,
        on_replica: bool,
        read_only_txn: bool,
    ) -> Self {
        Scanner {
            track,
            replacement: None,
            ids,
            on_replica,
            read_only_txn,
            expect,
            phase: match expect {
                Expect::Rows => Phase::Rows,
                _ => Phase::Start,
            },
            continuation: false,
            out: Relayed::default(),
            status: None,
            set_start: 0,
            hold_refusal: false,
        }
    }

    /// Records an OK/EOF; true when no further result follows.
    fn complete(&mut self, c: Completion) -> bool {
        self.out.completion = c;
        self.out.warned |= c.warnings > 0;
        self.status = Some(c.status);
        self.read_only_txn = c.status & SERVER_STATUS_IN_TRANS_READONLY != 0;
        c.status & SERVER_MORE_RESULTS_EXISTS == 0
    }

    /// An OK packet: learns its session-state changes and decides what the client gets.
    fn ok(&mut self, body: &[u8]) -> Completion {
        let c = message::parse_ok(body).unwrap_or_default();
        if c.status & SERVER_SESSION_STATE_CHANGED != 0 {
            if let Some(changes) = session_track::parse(body) {
                self.out
                    .changes
                    .get_or_insert_with(Box::default)
                    .merge(changes);
            }
            self.replacement = session_track::client_ok(
                body,
                self.track.client_tracks,
                &super::conn::hidden_names(self.track.hidden),
                self.track.hidden_entries,
            );
        }
        c
    }

    /// An ERR packet. One that names the statement (unknown handler, no open cursor) names
    /// the backend's id, and is rewritten to name the client's. A write in a read-only
    /// transaction that ran on a replica is refused there for the server's `read_only`
    /// (1290) before its transaction is looked at; on the primary, where the client's
    /// statement would otherwise go, the transaction refuses it (1792), and that is the
    /// error the client gets. (Temporary tables, which a read-only transaction may write,
    /// pass on the replica as on the primary.)
    fn error(&mut self, body: &[u8]) {
        let mut error = SqlError::parse(body);
        if let Some(e) = error
            .as_mut()
            .filter(|e| self.on_replica && self.read_only_txn && refused_for_read_only(e))
        {
            *e = message::err(
                codes::READ_ONLY_TRANSACTION,
                "Cannot execute statement in a READ ONLY transaction",
            );
            self.replacement = Some(e.payload());
            self.out.error_rewritten = true;
        }
        if let (Some(ids), Some(e)) = (self.ids, error.as_mut()) {
            let names_statement = [
                codes::UNKNOWN_STMT_HANDLER.0,
                codes::STMT_HAS_NO_OPEN_CURSOR.0,
            ]
            .contains(&e.code);
            let backend = format!("({})", ids.backend);
            if names_statement && ids.backend != ids.client && e.message.contains(&backend) {
                e.message = e
                    .message
                    .replacen(&backend, &format!("({})", ids.client), 1);
                self.replacement = Some(e.payload());
            }
        }
        self.out.error = error;
    }

    fn eof(&mut self, body: &[u8]) -> Completion {
        let c = message::parse_eof(body).unwrap_or_default();
        if c.status & SERVER_SESSION_STATE_CHANGED != 0 {
            // A result set that changed the session: a write that returns rows (`RETURNING`,
            // a stored function's) committed a GTID no packet could report, or, while a
            // `SET TRANSACTION` waits, this may be the statement that used it up (a result
            // set touching a transactional table) or not (a non-transactional one with
            // autocommit off; a tracked variable's change). The session deals with both.
            self.out.changes.get_or_insert_with(Box::default).unreported = true;
            // Nor can the client tell whose change the flag announces: when the proxy
            // switched transaction tracking on for it, the flag is taken as the proxy's.
            let client_sees = self.track.client_tracks
                && self.track.hidden_entries & session_track::TRANSACTION_STATE_ENTRIES == 0;
            self.replacement = session_track::client_eof(body, client_sees);
        }
        c
    }

    /// A packet too large to buffer whole, seen by its length and first byte only. Only rows
    /// and their continuations get that large; `false` means it must be buffered after all.
    fn large(&mut self, len: usize, first: u8) -> bool {
        let streamable = self.continuation
            || (matches!(self.phase, Phase::Rows) && first != 0xFF && first != 0xFE);
        if streamable {
            if !self.continuation {
                self.out.rows += 1;
            }
            self.continuation = len == MAX_PAYLOAD;
        }
        streamable
    }

    /// Walks the plain rows at the start of `buf` — complete row packets that are not EOF,
    /// ERR, empty or of the maximum size — and returns their length. Rows are the bulk of a
    /// result; this reads a header and compares a byte per row where [`Scanner::packet`]
    /// dispatches on the reply's shape for each.
    fn skip_rows(&mut self, buf: &[u8]) -> usize {
        if !matches!(self.phase, Phase::Rows) || self.continuation {
            return 0;
        }
        let mut pos = 0;
        let mut rows = 0;
        while let Some(len) = frame_len(&buf[pos..]) {
            let payload = len - 4;
            if buf.len() - pos < len || payload == 0 || payload == MAX_PAYLOAD {
                break;
            }
            let body = &buf[pos + 4..pos + len];
            if message::is_eof(body) || message::is_err(body) {
                break;
            }
            rows += 1;
            pos += len;
        }
        self.out.rows += rows;
        pos
    }

    fn packet(&mut self, body: &[u8]) -> Step {
        let was_continuation = self.continuation;
        self.continuation = body.len() == MAX_PAYLOAD;
        // The tail of a large row or value: nothing to look at.
        if was_continuation {
            return Step::More;
        }
        let done = match self.expect {
            Expect::One => {
                if message::is_err(body) {
                    self.error(body);
                }
                true
            }
            Expect::UntilEof => {
                if message::is_err(body) {
                    self.error(body);
                    true
                } else if message::is_eof(body) {
                    self.out.completion = self.eof(body);
                    self.out.warned |= self.out.completion.warnings > 0;
                    true
                } else {
                    false
                }
            }
            Expect::Results | Expect::Rows => match self.phase {
                Phase::Start => match body.first() {
                    Some(0x00) => {
                        let c = self.ok(body);
                        self.out.row_count = Some(c.affected_rows as i64);
                        self.complete(c)
                    }
                    Some(0xFF) => {
                        self.error(body);
                        self.out.row_count = Some(-1);
                        // The reply's first packet: no result came before it.
                        self.out.refused_on_replica = self.hold_refusal
                            && self.status.is_none()
                            && self.out.error.as_ref().is_some_and(refused_as_replica);
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
                    let c = self.eof(body);
                    self.out.row_count = Some(-1);
                    if c.status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                        // A cursor was opened: rows come later through COM_STMT_FETCH.
                        self.complete(c);
                        true
                    } else {
                        self.phase = Phase::Rows;
                        self.set_start = self.out.rows;
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
                        let rows = self.out.rows - self.set_start;
                        self.out.found_rows = Some(u32::try_from(rows).unwrap_or(u32::MAX));
                        let c = self.eof(body);
                        let last = self.complete(c);
                        last || self.expect == Expect::Rows
                    } else if message::is_err(body) {
                        self.error(body);
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

/// Relays the reply to a command. `seq_shift`: how far the client's sequence ids for it are
/// ahead of the server's (0 unless the proxy sent the command in another number of
/// packets, see `Renumber`). `runs`: on a replica, a `read_only` refusal in a read-only
/// transaction reaches the client as the transaction's own (see `Scanner::error`); with
/// [`RunsOn::ReplicaFirst`], a reply that is only a replica's refusal for being one does
/// not reach it at all.
pub async fn relay<CR, CW>(
    conn: &mut BackendConn,
    client_in: &mut PacketReader<CR>,
    client_out: &mut PacketWriter<CW>,
    expect: Expect,
    ids: Option<StmtIds>,
    seq_shift: u8,
    runs: RunsOn,
) -> Result<Relayed, RelayError>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
{
    conn.broken = true;
    let mut scan = Scanner::new(
        expect,
        conn.track,
        ids,
        runs != RunsOn::Primary,
        conn.status & SERVER_STATUS_IN_TRANS_READONLY != 0,
    );
    scan.hold_refusal = runs == RunsOn::ReplicaFirst;
    let mut renumber = Renumber {
        by: seq_shift,
        next: 0,
    };
    let mut sent = false;
    loop {
        renumber.apply(conn.reader.buffered_mut());
        // Walk the complete packets already received, then pass them on in one write.
        let buf = conn.reader.buffered();
        let mut pos = 0;
        let mut step = Step::More;
        let mut replace = None;
        let mut stream_left = 0;
        loop {
            pos += scan.skip_rows(&buf[pos..]);
            let Some(len) = frame_len(&buf[pos..]) else {
                break;
            };
            if buf.len() - pos < len {
                // A large row is passed on as it arrives instead of being buffered whole.
                if len > STREAM_AT && buf.len() - pos > 4 && scan.large(len - 4, buf[pos + 4]) {
                    stream_left = len - (buf.len() - pos);
                    pos = buf.len();
                }
                break;
            }
            step = scan.packet(&buf[pos + 4..pos + len]);
            if scan.out.refused_on_replica {
                replace = Some((buf[pos + 3], len, None));
                break;
            }
            if let Some(p) = scan.replacement.take() {
                replace = Some((buf[pos + 3], len, Some(p)));
                break;
            }
            pos += len;
            if step != Step::More {
                break;
            }
        }
        if pos > 0 {
            client_out
                .write_through(&buf[..pos])
                .await
                .map_err(RelayError::Client)?;
            conn.reader.consume(pos);
            renumber.consumed(pos);
            sent = true;
        }
        if let Some((seq, len, payload)) = replace {
            conn.reader.consume(len);
            renumber.consumed(len);
            if let Some(payload) = payload {
                client_out
                    .write_packet(seq, &payload)
                    .await
                    .map_err(RelayError::Client)?;
                sent = true;
            }
        }
        while stream_left > 0 {
            if conn.reader.buffered().is_empty() {
                conn.reader
                    .fill_to(1)
                    .await
                    .map_err(|source| RelayError::Backend { source, sent })?;
            }
            let chunk = &conn.reader.buffered()[..stream_left.min(conn.reader.buffered().len())];
            let n = chunk.len();
            client_out
                .write_through(chunk)
                .await
                .map_err(RelayError::Client)?;
            conn.reader.consume(n);
            renumber.consumed(n);
            stream_left -= n;
        }
        match step {
            Step::Done => break,
            Step::LocalInfile => {
                client_out.flush().await.map_err(RelayError::Client)?;
                local_infile(conn, client_in, seq_shift).await?;
            }
            Step::More => {
                let buf = conn.reader.buffered();
                let want = match frame_len(buf) {
                    // Complete packets wait behind a replaced or streamed one.
                    Some(len) if buf.len() >= len => continue,
                    // Enough to decide whether a large packet can be streamed.
                    Some(len) if len > STREAM_AT && buf.len() < 5 => 5,
                    Some(len) => len,
                    None => 4,
                };
                conn.reader
                    .fill_to(want)
                    .await
                    .map_err(|source| RelayError::Backend { source, sent })?
            }
        }
    }
    if let Some(status) = scan.status {
        conn.status = status & !SERVER_SESSION_STATE_CHANGED;
    }
    if scan.out.completion.last_insert_id != 0 {
        conn.last_insert_id = scan.out.completion.last_insert_id;
    }
    client_out.flush().await.map_err(RelayError::Client)?;
    conn.broken = false;
    Ok(scan.out)
}

/// `LOAD DATA LOCAL INFILE`: the client streams the file as packets ending with an empty one;
/// pass them to the backend as they come (numbered back by `seq_shift`, the server's way).
/// An empty packet after a full one (16 MiB - 1) only ends that piece of the file.
async fn local_infile<CR: AsyncRead + Unpin>(
    conn: &mut BackendConn,
    client_in: &mut PacketReader<CR>,
    seq_shift: u8,
) -> Result<(), RelayError> {
    let mut continued = false;
    loop {
        let mut p = client_in.read_raw().await.map_err(RelayError::Client)?;
        if seq_shift != 0 {
            p = p.renumbered_back(seq_shift);
        }
        let last = p.payload().is_empty() && !continued;
        continued = p.payload().len() == MAX_PAYLOAD;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An EOF's state-changed flag (an autocommit read of an InnoDB table while the proxy
    /// tracks transaction characteristics, captured from MariaDB 10.11: status 0x4022) is
    /// noted for the session to ask about, and kept from a client that tracks no
    /// transaction state; without that tracking it reaches a client that tracks.
    #[test]
    fn an_eof_flag_under_transaction_tracking_is_noted_and_hidden() {
        let eof = [0xfe, 0, 0, 0x22, 0x40];
        let tracking = Tracking {
            client_tracks: true,
            characteristics: true,
            hidden_entries: session_track::TRANSACTION_INFO_ENTRIES,
            ..Tracking::default()
        };
        let mut scan = Scanner::new(Expect::Results, tracking, None, false, false);
        scan.eof(&eof);
        assert!(scan.out.changes.as_ref().is_some_and(|c| c.unreported));
        assert_eq!(
            scan.replacement.as_deref(),
            Some(&[0xfe, 0, 0, 0x22, 0][..])
        );

        let plain = Tracking {
            client_tracks: true,
            ..Tracking::default()
        };
        let mut scan = Scanner::new(Expect::Results, plain, None, false, false);
        scan.eof(&eof);
        assert!(scan.out.changes.as_ref().is_some_and(|c| c.unreported));
        assert_eq!(scan.replacement, None);
    }

    fn scanned_error(message: &str, code: (u16, &str)) -> (Option<SqlError>, Option<Vec<u8>>) {
        scanned_error_in(message, code, false)
    }

    fn scanned_error_in(
        message: &str,
        code: (u16, &str),
        read_only_txn_on_replica: bool,
    ) -> (Option<SqlError>, Option<Vec<u8>>) {
        let ids = StmtIds {
            backend: 17,
            client: 2,
        };
        let mut scan = Scanner::new(
            Expect::Results,
            Tracking::default(),
            Some(ids),
            read_only_txn_on_replica,
            read_only_txn_on_replica,
        );
        assert!(scan.packet(&message::err(code, message).payload()) == Step::Done);
        (scan.out.error, scan.replacement)
    }

    #[test]
    fn statement_errors_name_the_clients_id() {
        for (code, backend, client) in [
            (
                codes::UNKNOWN_STMT_HANDLER,
                "Unknown prepared statement handler (17) given to mysqld_stmt_execute",
                "Unknown prepared statement handler (2) given to mysqld_stmt_execute",
            ),
            (
                codes::STMT_HAS_NO_OPEN_CURSOR,
                "The statement (17) has no open cursor",
                "The statement (2) has no open cursor",
            ),
        ] {
            let (error, replacement) = scanned_error(backend, code);
            let error = error.unwrap();
            assert_eq!(error.message, client);
            assert_eq!(replacement, Some(message::err(code, client).payload()));
        }
    }

    const READ_ONLY: &str =
        "The MariaDB server is running with the --read-only option so it cannot execute this statement";

    #[test]
    fn a_replicas_read_only_refusal_in_a_read_only_transaction_is_the_transactions() {
        let (error, replacement) =
            scanned_error_in(READ_ONLY, codes::OPTION_PREVENTS_STATEMENT, true);
        let expected = message::err(
            codes::READ_ONLY_TRANSACTION,
            "Cannot execute statement in a READ ONLY transaction",
        );
        assert_eq!(error.as_ref(), Some(&expected));
        assert_eq!(replacement, Some(expected.payload()));
        // Outside one, or for another reason, the server's word stands.
        let (_, replacement) = scanned_error_in(READ_ONLY, codes::OPTION_PREVENTS_STATEMENT, false);
        assert_eq!(replacement, None);
        let (_, replacement) = scanned_error_in(
            "The MariaDB server is running with the --skip-grant-tables option",
            codes::OPTION_PREVENTS_STATEMENT,
            true,
        );
        assert_eq!(replacement, None);
    }

    /// `COMMIT; INSERT …` sent in a read-only transaction: the INSERT runs after the
    /// transaction ended, and the replica's refusal is its own.
    #[test]
    fn a_read_only_transaction_ended_earlier_in_the_command_refuses_nothing() {
        let mut scan = Scanner::new(Expect::Results, Tracking::default(), None, true, true);
        let committed = Completion {
            status: message::SERVER_STATUS_AUTOCOMMIT | SERVER_MORE_RESULTS_EXISTS,
            ..Completion::default()
        };
        assert!(scan.packet(&message::ok_payload(&committed)) == Step::More);
        let refusal = message::err(codes::OPTION_PREVENTS_STATEMENT, READ_ONLY);
        assert!(scan.packet(&refusal.payload()) == Step::Done);
        assert_eq!(scan.out.error.as_ref(), Some(&refusal));
        assert_eq!(scan.replacement, None);
    }

    /// Only a reply that is nothing but "no such table", "no such schema" or a `read_only`
    /// refusal is held back for a read that may run again on the write backend.
    #[test]
    fn only_a_first_refusal_for_being_a_replica_is_held_back() {
        let held = |hold: bool, before_ok: bool, code: (u16, &str), message: &str| {
            let mut scan = Scanner::new(Expect::Results, Tracking::default(), None, true, false);
            scan.hold_refusal = hold;
            if before_ok {
                let more = Completion {
                    status: SERVER_MORE_RESULTS_EXISTS,
                    ..Completion::default()
                };
                assert!(scan.packet(&message::ok_payload(&more)) == Step::More);
            }
            assert!(scan.packet(&message::err(code, message).payload()) == Step::Done);
            scan.out.refused_on_replica
        };
        let read_only = codes::OPTION_PREVENTS_STATEMENT;
        assert!(held(true, false, (1146, "42S02"), "x"));
        assert!(held(true, false, codes::BAD_DB, "x"));
        assert!(held(true, false, read_only, READ_ONLY));
        assert!(!held(false, false, (1146, "42S02"), "x"));
        assert!(!held(false, false, read_only, READ_ONLY));
        assert!(!held(true, true, (1146, "42S02"), "x"));
        assert!(!held(true, true, read_only, READ_ONLY));
        assert!(!held(true, false, (1064, "42000"), "x"));
        // Another option's refusal is the server's own answer.
        let secure_file_priv = "The MariaDB server is running with the --secure-file-priv option so it cannot execute this statement";
        assert!(!held(true, false, read_only, secure_file_priv));
    }

    #[test]
    fn other_errors_pass_untouched() {
        let (error, replacement) = scanned_error("Table 'x.t (17)' doesn't exist", (1146, "42S02"));
        assert_eq!(error.unwrap().message, "Table 'x.t (17)' doesn't exist");
        assert_eq!(replacement, None);
    }
}
