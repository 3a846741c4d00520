//! The binary protocol. The proxy hands out its own statement ids and remembers each
//! statement's SQL and the schema it was prepared in; a statement is prepared lazily, in
//! that schema, on whichever backend connection runs it, and ids are rewritten on the way
//! through (and back, in the server's errors that name one: see `backend::relay`).
//! A session's statements never depend on one connection, so switching connections cannot
//! make a server answer "Unknown prepared statement handler".

use super::registry::Stuck;
use super::session::{Diag, Session};
use super::{ClientIo, Prep, SessionEnd};
use crate::backend::conn::{BackendConn, BackendError, Hold, PrepareReply};
use crate::backend::relay::Expect;
use crate::protocol::command::{
    COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_RESET, COM_STMT_SEND_LONG_DATA,
};
use crate::protocol::message::{self, codes, SqlError};
use crate::router::classify::{self, Classification, Flags, StmtKind};
use crate::router::{self, Target};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct PreparedStmt {
    /// The statement's text as the client sent it: bytes in the client's character set,
    /// which need not be UTF-8.
    pub sql: Arc<[u8]>,
    pub params: u16,
    pub columns: u16,
    pub class: Classification,
    /// Parameter types from the last execute that sent them: clients send types once, but
    /// the next execute may run on a connection that never saw them.
    pub param_types: Option<Vec<u8>>,
    /// Digest key, computed once here rather than on every execute.
    pub digest: u64,
    /// The default schema when the client prepared it. The server binds a statement's
    /// tables to the schema current at prepare time (a later `USE` does not move them), so
    /// a backend connection runs it only as prepared in this schema.
    pub schema: Option<Arc<str>>,
    /// A backend copy carries (or carried) this statement's cursor or long data (see
    /// `BackendConn::note_run`); only then does an execute look for other copies to retire.
    pub holds_copy: bool,
    /// Why long data sent for it reached no server. `COM_STMT_SEND_LONG_DATA` has no reply,
    /// so the next execute answers with it (as a server reports long-data errors), rather
    /// than run with a parameter missing.
    pub long_data_lost: Option<SqlError>,
    /// When a replica last refused it for being one: it lacked the table or schema (its
    /// prepare there failed), or its execute wrote, in a stored function, under `read_only`;
    /// it then ran on the write backend (see `Session::read_again_on_primary`). For
    /// `REPLICA_RECHECK` after that its reads go to the write backend directly: a replica
    /// left without the table by replication filters, or any replica for such a function,
    /// would otherwise refuse it, and have its connection reset, on every execute.
    pub replica_refused_at: Option<std::time::Instant>,
    /// Its text's share of `max-prepared-memory`, given back when it is dropped.
    _memory: Charge,
}

/// The statement text all sessions' open prepared statements hold, within
/// `max-prepared-memory`. Each session may hold `MAX_PREPARED_PER_SESSION` statements, each
/// as long as a command may be: without a bound across sessions, clients that never close
/// large statements grow the proxy until the OS kills it, with every session. (A closed
/// statement's text may stay cached on the backend connections that prepared it, which
/// bound it themselves: `MAX_STMT_TEXT_PER_CONN`.)
pub struct PreparedMemory {
    used: AtomicUsize,
    limit: usize,
}

impl PreparedMemory {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(PreparedMemory {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Takes `bytes` from the budget until the charge is dropped; `None` if they do not fit.
    fn charge(self: &Arc<Self>, bytes: usize) -> Option<Charge> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .ok()?;
        Some(Charge {
            budget: self.clone(),
            bytes,
        })
    }
}

/// One statement's bytes of [`PreparedMemory`].
struct Charge {
    budget: Arc<PreparedMemory>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// `CURSOR_TYPE_READ_ONLY` and friends in COM_STMT_EXECUTE's flags byte.
const CURSOR_FLAGS: u8 = 0x07;

pub(crate) fn stmt_id(packet: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(packet.get(1..5)?.try_into().ok()?))
}

/// MariaDB's statement id -1: the statement the session prepared last, unless a prepare
/// failed or that statement was closed since. Clients send a prepare and its execute together
/// with it, saving a round trip (Connector/C's `mariadb_stmt_execute_direct`).
const LAST_PREPARED: u32 = u32::MAX;

/// Puts the session's own id of its last prepared statement into a statement command that
/// names it as -1. With none, the command keeps -1 and fails as on a server (1243).
pub fn resolve_last_prepared(s: &Session, packet: &mut [u8]) {
    let names_stmt = matches!(
        packet.first(),
        Some(
            &(COM_STMT_EXECUTE
                | COM_STMT_SEND_LONG_DATA
                | COM_STMT_CLOSE
                | COM_STMT_RESET
                | COM_STMT_FETCH)
        )
    );
    if names_stmt && stmt_id(packet) == Some(LAST_PREPARED) {
        if let Some(id) = s.last_prepared {
            packet[1..5].copy_from_slice(&id.to_le_bytes());
        }
    }
}

fn malformed_packet() -> SqlError {
    message::err(codes::MALFORMED_PACKET, "Malformed communication packet")
}

fn unknown_handler(id: u32, what: &str) -> SqlError {
    message::err(
        codes::UNKNOWN_STMT_HANDLER,
        format!("Unknown prepared statement handler ({id}) given to {what}"),
    )
}

fn target_of(s: &Session, class: &Classification) -> Target {
    if s.pinned.is_some() {
        Target::Write
    } else {
        router::target(class)
    }
}

/// Statements one session may hold prepared: MariaDB's default `max_prepared_stmt_count`.
/// The server's own limit is never reached through the proxy, which keeps at most
/// `MAX_STMTS_PER_CONN` copies on each backend connection; without this one, a client that never
/// closes its statements would grow the proxy's memory without bound.
pub const MAX_PREPARED_PER_SESSION: usize = 16_382;

pub async fn prepare(s: &mut Session, io: &mut ClientIo, packet: &[u8]) -> Result<(), SessionEnd> {
    // Whatever happens below, -1 no longer names the statement prepared before.
    s.last_prepared = None;
    if s.stmts.len() >= MAX_PREPARED_PER_SESSION {
        io.error(&message::err(
            codes::MAX_PREPARED_STMT_COUNT_REACHED,
            format!(
                "Can't create more than max_prepared_stmt_count statements (current value: \
                 {MAX_PREPARED_PER_SESSION})"
            ),
        ))
        .await?;
        return Ok(());
    }
    let lexable = crate::router::multibyte::lexable(s.multibyte, &packet[1..]);
    let class = classify::classify(&lexable);
    if class.kind == StmtKind::Kill {
        // Prepared, it would reach a server as it stands, where the id (the proxy's, from
        // CONNECTION_ID()) names no thread or, worse, another client's pooled connection.
        io.error(&message::err(
            codes::UNSUPPORTED_PS,
            "This command is not supported in the prepared statement protocol yet (rwproxy: \
             send KILL as a plain statement; it names the proxy's sessions)",
        ))
        .await?;
        return Ok(());
    }
    let sql: Arc<[u8]> = if class.flags.contains(Flags::CONNECTION_ID) {
        let p = super::query::with_session_values(s, packet, &lexable, false, None);
        p[1..].into()
    } else {
        packet[1..].into()
    };
    let Some(memory) = s.prepared_memory.charge(sql.len()) else {
        let limit = s.prepared_memory.limit;
        let why = match sql.len() > limit {
            true => format!("its text alone is longer than max-prepared-memory, {limit} bytes"),
            false => format!(
                "its text does not fit in max-prepared-memory, {limit} bytes shared by the \
                 open prepared statements of all sessions; close the ones no longer used"
            ),
        };
        io.error(&message::err(
            codes::MAX_PREPARED_STMT_COUNT_REACHED,
            format!("Can't create more than max_prepared_stmt_count statements (rwproxy: {why})"),
        ))
        .await?;
        return Ok(());
    };
    let target = target_of(s, &class);
    let mut exclude = Vec::new();
    let was_pinned = s.pinned.is_some();
    let read = target == Target::Read && !was_pinned;
    // A replica's refusal for lack of the statement's table or schema, while the write
    // backend prepares it instead (see `Session::read_again_on_primary`).
    let mut missing_on_replica: Option<SqlError> = None;
    let mut retried = 0;
    let (c, result) = loop {
        let mut c = match s.checkout(target, &mut exclude).await {
            Ok(c) => c,
            // Killed while waiting for a connection: closed without a word, as on any kill.
            Err(_) if s.status.is_killed() => return Err(SessionEnd::Killed),
            Err(e) => {
                let e = match missing_on_replica {
                    Some(replica_said) if e.code != codes::QUERY_INTERRUPTED.0 => replica_said,
                    _ => e,
                };
                io.error(&e).await?;
                return Ok(());
            }
        };
        let preparing = c.lease.conn.prepare_for_client(&sql);
        match s.status.unless_stuck(&c.backend, read, preparing).await {
            Ok(Err(BackendError::Server(e)))
                if missing_on_replica.is_none()
                    && s.may_read_again_on_primary(read, &c)
                    && crate::backend::relay::says_missing(&e) =>
            {
                tracing::debug!(backend = %c.backend.address, session = s.id, "replica cannot prepare a statement for lack of its table or schema: it is prepared on the write backend");
                s.read_again_on_primary(c);
                missing_on_replica = Some(e);
            }
            // The connection failed under the prepare (a pooled one the server had closed:
            // a restart, `wait_timeout`, a DBA's `KILL` of idle connections). A prepare
            // changes nothing, so another connection takes it, as a read that failed before
            // its reply runs again.
            // (Not a `SHOW WARNINGS` prepared where the messages are: they went with it.)
            Ok(Err(e))
                if !was_pinned
                    && target != Target::Diagnostics
                    && c.lease.conn.broken
                    && retried < super::MAX_READ_TRIES
                    && !matches!(e, BackendError::Server(_)) =>
            {
                retried += 1;
                c.backend.count_error();
                tracing::warn!(backend = %c.backend.address, session = s.id, "backend connection failed under a prepare: {e}; prepared on another");
                // One a replica could not prepare goes to the write backend again.
                match missing_on_replica.is_some() {
                    true => s.read_on_primary = true,
                    false if read => exclude.push(c.backend.clone()),
                    false => {}
                }
            }
            Ok(prepared) => break (c, prepared),
            Err(Stuck::SessionKilled) => return Err(SessionEnd::Killed),
            // Nothing went out: a read is prepared elsewhere, as it would run elsewhere.
            Err(Stuck::FoundDown) if read && exclude.len() < super::MAX_READ_TRIES as usize => {
                super::gave_up_on(s, &c.backend);
                exclude.push(c.backend.clone());
            }
            Err(Stuck::FoundDown) => {
                let addr = c.backend.address.clone();
                break (c, Err(BackendError::Unanswered { addr }));
            }
        }
    };
    let reply = match result {
        Ok(st) => Ok(st),
        Err(BackendError::Server(e)) => Err(e),
        // The session's transaction or server state went with its connection.
        Err(_) if was_pinned => return Err(SessionEnd::BackendLost),
        Err(e) => {
            drop(c);
            io.error(&e.to_sql_error("backend")).await?;
            return Ok(());
        }
    };
    let diag = if reply.is_err() || target == Target::Diagnostics {
        Diag::Left
    } else {
        Diag::of(router::diag_effect(&lexable))
    };
    s.finish(c, diag);
    match reply {
        Err(e) => io.error(&e).await?,
        Ok(st) => {
            let id = s.next_stmt_id;
            // 0 and -1 are never a statement's.
            s.next_stmt_id = match s.next_stmt_id.wrapping_add(1) {
                0 | LAST_PREPARED => 1,
                next => next,
            };
            s.last_prepared = Some(id);
            let digest = crate::stats::digest::key_of(&lexable, &mut Vec::new()).key;
            s.stmts.insert(
                id,
                PreparedStmt {
                    sql,
                    params: st.params,
                    columns: st.columns,
                    class,
                    param_types: None,
                    digest,
                    schema: s.state.schema.clone(),
                    holds_copy: false,
                    long_data_lost: None,
                    replica_refused_at: missing_on_replica.is_some().then_some(s.command_at),
                    _memory: memory,
                },
            );
            write_prepare_reply(io, id, &st).await?;
        }
    }
    Ok(())
}

/// Sends the prepare reply with the proxy's statement id in place of the backend's.
async fn write_prepare_reply(
    io: &mut ClientIo,
    id: u32,
    reply: &PrepareReply,
) -> std::io::Result<()> {
    let packets = &reply.packets;
    let mut first = packets[0].payload().to_vec();
    first[1..5].copy_from_slice(&id.to_le_bytes());
    io.writer.write_packet(io.reply_seq, &first).await?;
    for p in &packets[1..] {
        io.writer.write_raw(p).await?;
    }
    io.writer.flush().await
}

pub fn execute_stmt_packet(
    packet: &[u8],
    stmt: &PreparedStmt,
    backend_id: u32,
) -> Result<Vec<u8>, SqlError> {
    // As a server tells them apart: a command too short for its fixed part, or for the
    // parameter types it says follow, is malformed; one that stops before its NULL bitmap,
    // its new-types flag or its values has incorrect arguments.
    let incorrect = || {
        message::err(
            codes::WRONG_ARGUMENTS,
            "Incorrect arguments to mysqld_stmt_execute",
        )
    };
    let mut out = Vec::with_capacity(packet.len() + 2 * usize::from(stmt.params));
    out.extend_from_slice(&packet[..1]);
    out.extend_from_slice(&backend_id.to_le_bytes());
    let head = packet.get(5..10).ok_or_else(malformed_packet)?;
    out.extend_from_slice(head);
    if stmt.params == 0 {
        out.extend_from_slice(&packet[10..]);
        return Ok(out);
    }
    let n = usize::from(stmt.params);
    let bitmap_len = n.div_ceil(8);
    let bitmap = packet.get(10..10 + bitmap_len).ok_or_else(incorrect)?;
    out.extend_from_slice(bitmap);
    let bound_at = 10 + bitmap_len;
    let new_bound = *packet.get(bound_at).ok_or_else(incorrect)?;
    let mut rest = bound_at + 1;
    // MariaDB refuses any other value as malformed (1835); passed on as 0 or 1, the rest
    // of the packet would be read the wrong way.
    if new_bound > 1 {
        return Err(malformed_packet());
    }
    if new_bound == 1 {
        packet
            .get(rest..rest + 2 * n)
            .ok_or_else(malformed_packet)?;
        rest += 2 * n;
    }
    // Recorded by `execute` before anything could answer it: the server the client thinks
    // it talks to kept them from its first execute, whatever that execute's outcome. With
    // none ever sent a server takes only NULLs, whose types do not matter.
    match stmt.param_types.as_deref() {
        Some(types) => {
            out.push(1);
            out.extend_from_slice(types);
        }
        None if all_null(bitmap, n) => out.push(0),
        None => return Err(incorrect()),
    }
    out.extend_from_slice(&packet[rest..]);
    Ok(out)
}

/// Whether NULL bitmap `bitmap` marks each of `n` parameters NULL.
fn all_null(bitmap: &[u8], n: usize) -> bool {
    (0..n).all(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
}

/// Keeps the parameter types an execute sends (its new-params-bound flag set), for every
/// later execute of the statement, which need not send them again. A statement with no
/// types on record must not go to a backend copy without them: the server would run it
/// with the types another session last bound there (copies are shared), where a server of
/// the client's own would refuse it (1210).
fn note_param_types(packet: &[u8], stmt: &mut PreparedStmt) {
    let n = usize::from(stmt.params);
    let bound_at = 10 + n.div_ceil(8);
    if n == 0 || packet.get(bound_at) != Some(&1) {
        return;
    }
    if let Some(types) = packet.get(bound_at + 1..bound_at + 1 + 2 * n) {
        if stmt.param_types.as_deref() != Some(types) {
            stmt.param_types = Some(types.to_vec());
        }
    }
}

pub async fn execute(s: &mut Session, io: &mut ClientIo, packet: &[u8]) -> Result<(), SessionEnd> {
    let Some(id) = stmt_id(packet) else {
        io.error(&malformed_packet()).await?;
        return Ok(());
    };
    let Some(stmt) = s.stmts.get_mut(&id) else {
        io.error(&unknown_handler(id, "mysqld_stmt_execute"))
            .await?;
        return Ok(());
    };
    note_param_types(packet, stmt);
    if let Some(e) = stmt.long_data_lost.take() {
        io.error(&e).await?;
        return Ok(());
    }
    let class = stmt.class;
    if s.ends_replica_transaction(&class) {
        let sql = s.stmts[&id].sql.clone();
        s.commit_implicitly(&sql).await;
    }
    let stmt = &s.stmts[&id];
    // A prepared `SET`/`USE`/temporary table/user variable/named lock changes the connection
    // the way its text form does, but the proxy records none of it from the binary protocol:
    // keep the session on that connection (and reset it before anyone else gets it), as
    // COM_QUERY does for state it cannot replay.
    if let Some(e) = s.refuse_on_replica(&stmt.class) {
        io.error(&e).await?;
        return Ok(());
    }
    // Drivers that prepare everything (sysbench with `--db-ps-mode=auto`) prepare `BEGIN`
    // too: put off as the text one is (see `query::query`).
    if super::query::deferrable_begin(stmt.class.kind, &stmt.sql) && s.may_defer_begin() {
        let (sql, digest) = (stmt.sql.clone(), stmt.digest);
        s.begin_deferred = true;
        return super::query::answer_ok(s, io, digest, &sql).await;
    }
    // And its `COMMIT` too, when nothing came between (see `query::query`).
    if super::query::answerable_end(stmt.class.kind, stmt.class.flags, &stmt.sql)
        && s.nothing_to_end()
    {
        let (sql, digest) = (stmt.sql.clone(), stmt.digest);
        s.begin_deferred = false;
        return super::query::answer_ok(s, io, digest, &sql).await;
    }
    let changes_session = super::query::changes_session(stmt.class.kind);
    if stmt.class.flags.intersects(super::query::SERVER_STATE) || changes_session {
        s.sticky.server_state = true;
    }
    let cursor = packet.get(5).is_some_and(|f| f & CURSOR_FLAGS != 0);
    if cursor {
        s.sticky.server_state = true;
    }
    // A cursor pins the session to the connection that opened it; on a replica every later
    // write of the session would then fail with --read-only, so cursors open on the primary.
    let target = if cursor {
        Target::Write
    } else {
        target_of(s, &stmt.class)
    };
    let (sql, digest) = (stmt.sql.clone(), stmt.digest);
    let recently_refused = stmt
        .replica_refused_at
        .is_some_and(|t| s.command_at.saturating_duration_since(t) < router::REPLICA_RECHECK);
    let last_insert_id = stmt.class.flags.contains(Flags::LAST_INSERT_ID);
    let xa = stmt.class.flags.contains(Flags::XA);
    let write = stmt.class.kind == StmtKind::Write;
    s.settings_transient = stmt.class.flags.contains(Flags::SET_STATEMENT);
    // Taken by this read's checkout (a read's is the first thing `execute` does).
    if recently_refused && target == Target::Read && s.autocommit && !s.begin_deferred {
        s.read_on_primary = true;
    }
    let relayed = super::execute(
        s,
        io,
        packet,
        target,
        Expect::Results,
        Prep::Stmt {
            id,
            execute: true,
            last_insert_id,
        },
        |s, conn, r| {
            if xa {
                conn.close_on_release = true;
            }
            if r.completion.last_insert_id != 0 {
                s.last_insert_id = r.completion.last_insert_id;
            }
            s.note_unreported_write(write, r);
            // Statements prepared here before a `SET NAMES`/`SET sql_mode` may now mean
            // something else; they are re-prepared on next use.
            if changes_session {
                conn.retire_stmts();
            }
        },
    )
    .await?;
    if let Some(r) = relayed {
        s.record_digest_keyed(digest, &sql, &r);
    }
    Ok(())
}

/// Prepares statement `id` on `conn` if needed and rewrites a command that carries the id
/// right after the command byte to the backend's id (and, for execute, the parameter types).
pub async fn rewrite(
    s: &mut Session,
    conn: &mut BackendConn,
    id: u32,
    packet: &[u8],
    execute: bool,
) -> Result<Vec<u8>, SqlError> {
    if let Some(ready) = rewrite_ready(s, conn, id, packet, execute) {
        return ready;
    }
    let Some(st) = s.stmts.get(&id) else {
        return Err(unknown_handler(id, "mysqld_stmt"));
    };
    let (sql, schema) = (st.sql.clone(), st.schema.clone());
    let backend_id = prepare_in(conn, &sql, schema.as_ref(), id)
        .await
        .map_err(|e| e.to_sql_error("backend"))?;
    rewrite_to(s, conn, id, packet, execute, backend_id)
}

/// [`rewrite`] when it needs no round trip: `None` when the statement must be prepared on
/// `conn` first. Most executes find it there, and then build no future.
pub fn rewrite_ready(
    s: &mut Session,
    conn: &mut BackendConn,
    id: u32,
    packet: &[u8],
    execute: bool,
) -> Option<Result<Vec<u8>, SqlError>> {
    let Some(st) = s.stmts.get(&id) else {
        return Some(Err(unknown_handler(id, "mysqld_stmt")));
    };
    let for_cursor = matches!(packet.first(), Some(&(COM_STMT_FETCH | COM_STMT_RESET)));
    let backend_id = conn.prepared_id(&st.sql, st.schema.as_ref(), id, for_cursor)?;
    Some(rewrite_to(s, conn, id, packet, execute, backend_id))
}

/// The command for backend statement `backend_id`, with what it leaves on the connection
/// noted.
fn rewrite_to(
    s: &mut Session,
    conn: &mut BackendConn,
    id: u32,
    packet: &[u8],
    execute: bool,
    backend_id: u32,
) -> Result<Vec<u8>, SqlError> {
    let Some(stmt) = s.stmts.get_mut(&id) else {
        return Err(unknown_handler(id, "mysqld_stmt"));
    };
    let out = if execute {
        execute_stmt_packet(packet, stmt, backend_id)?
    } else {
        let mut out = packet.to_vec();
        out[1..5].copy_from_slice(&backend_id.to_le_bytes());
        out
    };
    let hold = if execute && packet.get(5).is_some_and(|f| f & CURSOR_FLAGS != 0) {
        Hold::Cursor
    } else if packet.first() == Some(&COM_STMT_SEND_LONG_DATA) {
        Hold::LongData
    } else {
        Hold::Nothing
    };
    // Both end the statement's cursor and long data on a server.
    let anew = execute || packet.first() == Some(&COM_STMT_RESET);
    if hold != Hold::Nothing || (anew && stmt.holds_copy) {
        conn.note_run(&stmt.sql, backend_id, id, hold, anew);
        stmt.holds_copy = true;
    }
    Ok(out)
}

/// Prepares `sql` on `conn` for client statement `client` in `schema`, the one the client
/// prepared it in, and gives the connection its schema back. Only the schema is switched:
/// `USE` is harmless inside a transaction, where a reset to replay older session variables
/// would roll it back; the statement is prepared under the session's current variables
/// (character set, `sql_mode`) as before. A session that has not changed schema since (the
/// common case) switches nothing.
async fn prepare_in(
    conn: &mut BackendConn,
    sql: &Arc<[u8]>,
    schema: Option<&Arc<str>>,
    client: u32,
) -> Result<u32, BackendError> {
    let now = conn.state.schema.clone();
    let switch = schema.filter(|want| now.as_ref() != Some(*want));
    if let Some(want) = switch {
        conn.use_schema(want).await?;
    }
    let prepared = conn.prepare(sql, client).await.map(|st| st.id);
    // With no schema to return to (the session's was dropped: `DROP DATABASE` of the current
    // one), the connection stays in `want` and says so; the session's next sync reconnects.
    // If the way back fails, the connection's state says where it is, and the error reaches
    // the client.
    if let (Some(_), Some(now)) = (switch, now) {
        conn.use_schema(&now).await?;
    }
    prepared
}

pub async fn send_long_data(
    s: &mut Session,
    io: &mut ClientIo,
    packet: &[u8],
) -> Result<(), SessionEnd> {
    // No reply is sent for this command, errors included: the server reports them at execute.
    let Some(id) = stmt_id(packet).filter(|id| s.stmts.contains_key(id)) else {
        return Ok(());
    };
    // Long data pins the session to the connection it goes to, like a cursor (see
    // `execute`): on a replica, every later write of the session would fail with
    // --read-only.
    s.sticky.server_state = true;
    let target = Target::Write;
    let mut exclude = Vec::new();
    let mut c = match s.checkout(target, &mut exclude).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("long data dropped: {e}");
            if let Some(st) = s.stmts.get_mut(&id) {
                st.long_data_lost = Some(e);
            }
            return Ok(());
        }
    };
    let sent = match rewrite(s, c.conn(), id, packet, false).await {
        // Long data has no reply: the exchange is over once it is out.
        Ok(p) => match c.conn().send_command(&p).await {
            Ok(()) => {
                c.conn().broken = false;
                true
            }
            Err(_) => false,
        },
        // Not prepared there: the data goes nowhere, which the execute reports.
        Err(e) => {
            tracing::debug!("long data dropped: {e}");
            if let Some(st) = s.stmts.get_mut(&id) {
                st.long_data_lost = Some(e);
            }
            true
        }
    };
    if sent {
        s.finish(c, Diag::Kept);
        Ok(())
    } else {
        drop(c);
        let _ = io;
        Err(SessionEnd::BackendLost)
    }
}

pub fn close(s: &mut Session, packet: &[u8]) {
    let Some(id) = stmt_id(packet) else { return };
    let Some(st) = s.stmts.remove(&id) else {
        return;
    };
    if s.last_prepared == Some(id) {
        s.last_prepared = None;
    }
    // Only a pinned connection holds a statement's cursor or long data.
    if let (true, Some(c)) = (st.holds_copy, s.pinned.as_mut()) {
        c.conn().close_held(&st.sql, id);
    }
}

pub async fn reset(s: &mut Session, io: &mut ClientIo, packet: &[u8]) -> Result<(), SessionEnd> {
    let Some(id) = stmt_id(packet).filter(|id| s.stmts.contains_key(id)) else {
        let id = stmt_id(packet).unwrap_or(0);
        io.error(&unknown_handler(id, "mysqld_stmt_reset")).await?;
        return Ok(());
    };
    if let Some(st) = s.stmts.get_mut(&id) {
        st.long_data_lost = None;
    }
    // Only a pinned connection can hold long data or an open cursor for this statement.
    if s.pinned.is_none() {
        io.ok(s.status()).await?;
        return Ok(());
    }
    super::execute(
        s,
        io,
        packet,
        Target::Write,
        Expect::One,
        Prep::Stmt {
            id,
            execute: false,
            last_insert_id: false,
        },
        |_, _, _| {},
    )
    .await?;
    Ok(())
}

pub async fn fetch(s: &mut Session, io: &mut ClientIo, packet: &[u8]) -> Result<(), SessionEnd> {
    let Some(id) = stmt_id(packet).filter(|id| s.stmts.contains_key(id)) else {
        let id = stmt_id(packet).unwrap_or(0);
        io.error(&unknown_handler(id, "mysqld_stmt_fetch")).await?;
        return Ok(());
    };
    if s.pinned.is_none() {
        io.error(&message::err(
            codes::STMT_HAS_NO_OPEN_CURSOR,
            format!("The statement ({id}) has no open cursor"),
        ))
        .await?;
        return Ok(());
    }
    super::execute(
        s,
        io,
        packet,
        Target::Write,
        Expect::Rows,
        Prep::Stmt {
            id,
            execute: false,
            last_insert_id: false,
        },
        |_, _, _| {},
    )
    .await?;
    Ok(())
}
