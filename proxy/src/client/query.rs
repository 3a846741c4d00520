//! `COM_QUERY` and `COM_INIT_DB`: classify, route, and keep the session's picture of its own
//! state (schema, variables, pinning reasons) in step with what the server accepted.

use std::borrow::Cow;

use super::session::{NextTransaction, Session};
use super::{execute, ClientIo, Prep, SessionEnd};
use crate::backend::conn::{BackendConn, TRACKED_LIST, TRANSACTION_INFO};
use crate::backend::relay::{Expect, Relayed};
use crate::protocol::message::{self, codes};
use crate::router::classify::{self, Flags, SessionFn, StmtKind};
use crate::router::{self, multibyte, Target};
use crate::session::set_stmt::{self, Assignment};
use crate::session::{names, state};
use crate::stats::digest;

/// Statement flags that leave state on the server connection the proxy cannot move. (A
/// sequence's `LASTVAL()` is the connection's, and only `SETVAL()`, which changes the
/// sequence, could set it elsewhere.)
pub(crate) const SERVER_STATE: Flags = Flags::TEMP_TABLE
    .union(Flags::GET_LOCK)
    .union(Flags::SEQUENCE)
    .union(Flags::USER_VAR_WRITE)
    .union(Flags::CALC_FOUND_ROWS)
    .union(Flags::CONNECTION_STATE)
    .union(Flags::XA);

/// Statement kinds that change session state.
pub(crate) fn changes_session(kind: StmtKind) -> bool {
    matches!(
        kind,
        StmtKind::Set
            | StmtKind::Use
            | StmtKind::LockTables
            | StmtKind::UnlockTables
            | StmtKind::PrepareText
    )
}

/// Whether a multi-statement changes session state anywhere: the proxy does not follow a
/// `USE` or `SET` inside one, so the session then keeps that connection (reset before anyone
/// else gets it). A `;` inside a string only makes this answer yes more often.
fn multi_changes_session(sql: &[u8], first: StmtKind) -> bool {
    const MAX_PARTS: usize = 64;
    let mut parts = 0;
    changes_session(first)
        || sql.iter().enumerate().any(|(i, b)| {
            if *b != b';' {
                return false;
            }
            parts += 1;
            parts > MAX_PARTS || changes_session(classify::classify(&sql[i + 1..]).kind)
        })
}

pub async fn query(s: &mut Session, io: &mut ClientIo, packet: &[u8]) -> Result<(), SessionEnd> {
    // Everything below reads the statement through this (the same bytes but for a gbk-like
    // client's two-byte characters); the server gets `packet`.
    let lexable = multibyte::lexable(s.multibyte, &packet[1..]);
    let sql: &[u8] = &lexable;
    let shape = digest::key_of(sql, &mut s.digest_buf);
    let schema = s.state.schema.as_ref();
    let mut c = router::cache::classify_shaped(sql, shape, &s.digest_buf, schema, s.command_at);
    if s.ends_replica_transaction(&c) {
        s.commit_implicitly(sql).await;
    }
    // `ROW_COUNT()` describes the session's previous statement. Unless this one runs on the
    // connection that ran that one, the proxy writes in the value it recorded, and the call
    // no longer ties the statement to any server (in a multi-statement, only the first
    // statement's calls: see `replace_session_fns`). A `LAST_INSERT_ID()` beside it is
    // synced first (`Prep::LastInsertId`), which resets the connection's count: written in,
    // then.
    let write_in = c.flags.contains(Flags::ROW_COUNT)
        && (c.flags.contains(Flags::LAST_INSERT_ID)
            || s.pinned
                .as_ref()
                .is_none_or(|p| Some(p.id()) != s.row_count_on));
    if write_in {
        c.flags = c.flags.without(Flags::ROW_COUNT);
    }
    // `FOUND_ROWS()` likewise, for the session's last result set.
    let found_rows = if c.flags.contains(Flags::FOUND_ROWS)
        && s.pinned
            .as_ref()
            .is_none_or(|p| Some(p.id()) != s.found_rows_on)
    {
        s.known_found_rows()
    } else {
        None
    };
    if found_rows.is_some() {
        c.flags = c.flags.without(Flags::FOUND_ROWS);
    }
    if let Some(e) = s.refuse_on_replica(&c) {
        io.error(&e).await?;
        return Ok(());
    }
    if deferrable_begin(c.kind, sql) && s.may_defer_begin() {
        s.begin_deferred = true;
        return answer_ok(s, io, shape.key, sql).await;
    }
    // A `COMMIT` or `ROLLBACK` with nothing to end: pools send one whenever a connection is
    // given back (SQLAlchemy's reset on return, Hikari with autocommit off), which cost a
    // round trip, and with the pool full a wait for a connection only to do nothing there.
    // A `BEGIN` not sent yet is ended by not sending it.
    if answerable_end(c.kind, c.flags, sql) && s.nothing_to_end() {
        s.begin_deferred = false;
        return answer_ok(s, io, shape.key, sql).await;
    }
    if (c.kind == StmtKind::PrepareText || c.flags.contains(Flags::CONNECTION_STATE))
        && classify::dynamic_kill(sql)
    {
        io.error(&message::err(
            codes::NOT_SUPPORTED,
            "rwproxy: KILL as dynamic SQL (PREPARE ... FROM, EXECUTE IMMEDIATE) would reach a \
             server as written, where the id is not the proxy's; send KILL as a plain statement",
        ))
        .await?;
        return Ok(());
    }
    // `GET DIAGNOSTICS` runs where the messages are held; when the session's user variables
    // live elsewhere, what it sets there is copied over (see `diagnostics`). The same path
    // serves an error the proxy answered itself, which it raises where the statement runs.
    let copy_diagnostics = match c.kind {
        StmtKind::GetDiagnostics
            if !c.flags.contains(Flags::MULTI_STATEMENT)
                && (s.messages_apart_from_variables() || s.proxy_error.is_some()) =>
        {
            classify::diagnostics_targets(sql)
        }
        _ => None,
    };
    if copy_diagnostics.is_some() && !super::diagnostics::pin_for_variables(s, io).await? {
        return Ok(());
    }
    let mut assignments = Vec::new();
    let target = match c.kind {
        StmtKind::GetDiagnostics if copy_diagnostics.is_some() => Target::Diagnostics,
        // Thread ids differ between the proxy and each backend: forwarding `KILL n` would kill
        // an unrelated backend connection.
        StmtKind::Kill => return super::kill::kill_statement(s, io, sql).await,
        StmtKind::Set if !c.flags.contains(Flags::MULTI_STATEMENT) => {
            assignments = set_stmt::parse(&String::from_utf8_lossy(sql));
            if matches!(lexable, Cow::Owned(_)) {
                // The own words a setting is replayed in would be the lexers' copy: the
                // connection that ran it keeps it instead.
                for a in &mut assignments {
                    if matches!(a, Assignment::Session { .. }) {
                        *a = Assignment::Other;
                    }
                }
            }
            // Plain values only: a function (`GET_LOCK`, a stored one that writes) or a
            // subquery must run where writes do. `autocommit=0` is a setting like the others:
            // the transactions it opens are where the session's next statements run.
            let plain = !c.flags.intersects(SERVER_STATE) && memchr::memchr(b'(', sql).is_none();
            let settings_only = plain
                && assignments
                    .iter()
                    .all(|a| matches!(a, Assignment::Session { .. }));
            match settings_only {
                true => Target::Session,
                false => Target::Write,
            }
        }
        StmtKind::Use => Target::Session,
        StmtKind::Set | StmtKind::LockTables | StmtKind::PrepareText => Target::Write,
        _ => router::target(&c),
    };
    // Pinning reasons are decided before the statement runs so the connection is kept (and
    // marked for reset) even when it fails half-way, as a multi-statement can.
    let multi = c.flags.contains(Flags::MULTI_STATEMENT);
    let state_before = s.sticky.server_state;
    if c.flags.intersects(SERVER_STATE)
        || c.kind == StmtKind::PrepareText
        || multi && multi_changes_session(sql, c.kind)
    {
        s.sticky.server_state = true;
    }
    // Refused whole, these leave nothing on the server (a `CREATE TEMPORARY TABLE` in a
    // read-only transaction gets 1792): no reason to keep the connection.
    let undone_by_error = !multi
        && assignments.is_empty()
        && c.kind != StmtKind::PrepareText
        && !c
            .flags
            .without(Flags::TEMP_TABLE.union(Flags::CALC_FOUND_ROWS))
            .intersects(SERVER_STATE);
    let next_transaction = s.sticky.next_transaction;
    for a in &assignments {
        match a {
            Assignment::UserVar | Assignment::Other => s.sticky.server_state = true,
            Assignment::NextTransaction => s.sticky.next_transaction = NextTransaction::Pending,
            Assignment::Session { .. } | Assignment::Global => {}
        }
    }
    let wants_last_id = c.flags.contains(Flags::LAST_INSERT_ID);
    let select_into = c.flags.contains(Flags::SELECT_INTO);
    let xa = c.flags.contains(Flags::XA);
    let releases = c.kind == StmtKind::EndTransaction && !multi && releases(sql, s);
    let mut released = false;
    let kind = c.kind;
    let rewritten;
    let packet = if c.flags.contains(Flags::CONNECTION_ID) || write_in || found_rows.is_some() {
        rewritten = with_session_values(s, packet, sql, write_in, found_rows);
        &rewritten[..]
    } else {
        packet
    };
    s.settings_transient = c.flags.contains(Flags::SET_STATEMENT);
    // A replica refused this shape lately for being one (a stored function that writes, a
    // table it lacks): the read goes straight to the write backend.
    if c.flags.contains(Flags::REPLICA_REFUSED)
        && target == Target::Read
        && s.autocommit
        && !s.begin_deferred
    {
        s.read_on_primary = true;
    }
    let relayed = execute(
        s,
        io,
        packet,
        target,
        Expect::Results,
        if wants_last_id {
            Prep::LastInsertId
        } else if assignments.contains(&Assignment::NextTransaction) {
            Prep::TrackCharacteristics
        } else {
            Prep::Nothing
        },
        |s, conn, r| {
            // Even a failed XA statement may leave an XA transaction behind.
            if xa {
                conn.close_on_release = true;
            }
            if r.completion.last_insert_id != 0 {
                s.last_insert_id = r.completion.last_insert_id;
            }
            s.note_unreported_write(kind == StmtKind::Write, r);
            if r.error.is_some() {
                // A refused `SET TRANSACTION` (1568 inside a transaction) sets nothing.
                s.sticky.next_transaction = next_transaction;
                if undone_by_error {
                    s.sticky.server_state = state_before;
                }
                return;
            }
            if select_into {
                // It sets what FOUND_ROWS() answers, without a result set to count.
                s.found_rows = None;
            }
            if releases {
                // The server closes this connection after its reply.
                conn.broken = true;
                released = true;
            }
            if multi {
                return;
            }
            match kind {
                StmtKind::Use => {
                    if let Some(db) = classify::use_schema(sql) {
                        set_schema(s, conn, &db);
                    }
                }
                StmtKind::LockTables => s.sticky.locked_tables = true,
                // A transaction's start releases table locks too.
                StmtKind::UnlockTables | StmtKind::Begin { .. } => s.sticky.locked_tables = false,
                StmtKind::Set => record_set(s, conn, &assignments),
                _ => {}
            }
        },
    )
    .await?;
    // A server without session tracking reports nothing (see `execute`): the plain `SET`'s
    // own words are all there is.
    let reported = |r: &Relayed| {
        r.changes
            .as_ref()
            .is_some_and(|c| c.var("net_write_timeout").is_some())
    };
    if kind == StmtKind::Set
        && relayed
            .as_ref()
            .is_some_and(|r| r.error.is_none() && !reported(r))
    {
        io.follow_net_write_timeout(&s.state);
    }
    if let (Some(targets), Some(r)) = (&copy_diagnostics, &relayed) {
        // A condition number out of range sets nothing, and adds its 1758.
        if r.error.is_none() && !r.warned {
            super::diagnostics::copy_targets(s, targets).await?;
        }
    }
    // Only when the write backend could answer: a table that exists nowhere says nothing
    // about the replicas.
    if relayed
        .as_ref()
        .is_some_and(|r| r.after_replica_refused && r.error.is_none())
    {
        let schema = s.state.schema.clone();
        router::cache::note_replica_refused(shape.key, &s.digest_buf, schema, s.command_at);
    }
    match relayed {
        Some(r) => s.record_digest_keyed(shape.key, sql, &r),
        // Not run, or its connection is gone: a `SET TRANSACTION` set nothing that lasts.
        None => s.sticky.next_transaction = next_transaction,
    }
    if released {
        return Err(SessionEnd::Released);
    }
    Ok(())
}

/// A `COMMIT` or `ROLLBACK` the proxy answers itself when the session has nothing to end
/// (`Session::nothing_to_end`): a plain one (see `plain_end`), on its own.
pub(crate) fn answerable_end(kind: StmtKind, flags: Flags, sql: &[u8]) -> bool {
    kind == StmtKind::EndTransaction
        && !flags.intersects(Flags::MULTI_STATEMENT.union(Flags::SET_STATEMENT))
        && plain_end(sql)
}

/// `COMMIT` or `ROLLBACK`, `WORK` or not, and nothing else but whitespace, plain comments
/// and a final `;`. Anything more (`AND CHAIN`, `RELEASE`, an executable comment, or a
/// syntax error the server must answer with 1064) goes to the server.
fn plain_end(sql: &[u8]) -> bool {
    let is = |w: &[u8], word: &str| w.eq_ignore_ascii_case(word.as_bytes());
    plain_words(sql).is_some_and(|[end, work]| {
        (is(end, "COMMIT") || is(end, "ROLLBACK")) && (work.is_empty() || is(work, "WORK"))
    })
}

/// A `BEGIN` the proxy may answer and send with the transaction's first statement (see
/// `Session::begin_deferred`): `BEGIN`, `BEGIN WORK` or `START TRANSACTION`, and nothing
/// else but whitespace, plain comments and a final `;`. Its transaction takes its snapshot
/// at its first read, as InnoDB's does, and so may begin with it. `WITH CONSISTENT
/// SNAPSHOT`, `READ ONLY`, a multi-statement or `SET STATEMENT` go to the server as written.
pub(crate) fn deferrable_begin(kind: StmtKind, sql: &[u8]) -> bool {
    kind == (StmtKind::Begin { read_only: false }) && plain_begin(sql)
}

fn plain_begin(sql: &[u8]) -> bool {
    let is = |w: &[u8], word: &str| w.eq_ignore_ascii_case(word.as_bytes());
    plain_words(sql).is_some_and(|[first, second]| {
        is(first, "BEGIN") && (second.is_empty() || is(second, "WORK"))
            || is(first, "START") && is(second, "TRANSACTION")
    })
}

/// The one or two words of a statement that has nothing else but whitespace, plain comments
/// and a final `;` (the second empty when there is one).
fn plain_words(sql: &[u8]) -> Option<[&[u8]; 2]> {
    let mut words: [&[u8]; 2] = [&[], &[]];
    let mut n = 0;
    let mut i = 0;
    while i < sql.len() {
        match sql[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'/' => match router::after_plain_comment(&sql[i..]) {
                Some(rest) => i = sql.len() - rest.len(),
                None => return None,
            },
            b';' if sql[i + 1..].iter().all(u8::is_ascii_whitespace) => break,
            b if b.is_ascii_alphabetic() => {
                let start = i;
                while i < sql.len() && sql[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                *words.get_mut(n)? = &sql[start..i];
                n += 1;
            }
            _ => return None,
        }
    }
    (n > 0).then_some(words)
}

/// Answers a statement that needs no server as one would (OK, messages kept, `ROW_COUNT()`
/// 0): a `COMMIT` or `ROLLBACK` with nothing to end, or a `BEGIN` put off. Counted in the
/// digests and the SQL log (backend `rwproxy`), not among the statements relayed.
pub(crate) async fn answer_ok(
    s: &mut Session,
    io: &mut ClientIo,
    key: u64,
    sql: &[u8],
) -> Result<(), SessionEnd> {
    io.ok(s.status()).await?;
    s.stats
        .digests
        .record_keyed(key, sql, &mut s.digest_buf, 0, 0);
    if s.stats.sql_log.enabled() {
        s.stats
            .sql_log
            .log(s.peer, "rwproxy", true, std::time::Duration::ZERO, sql);
    }
    Ok(())
}

/// Whether a `COMMIT`/`ROLLBACK` ends with the server closing the connection: `RELEASE`
/// written, or `completion_type` set to `RELEASE` (2) and no `AND CHAIN` or `NO RELEASE`
/// written. The client is then disconnected too, as by a server, and the connection is
/// not pooled again.
fn releases(sql: &[u8], s: &Session) -> bool {
    let by_default = || {
        s.state.vars.iter().any(|(k, text)| {
            k == "completion_type" && {
                let v = text.rsplit('=').next().unwrap_or("").trim();
                let v = v.trim_matches(['\'', '"']);
                v == "2" || v.eq_ignore_ascii_case("RELEASE")
            }
        })
    };
    // Most transactions end with a plain COMMIT: no words to look at.
    if !sql.windows(7).any(|w| w.eq_ignore_ascii_case(b"RELEASE")) && !by_default() {
        return false;
    }
    let text = String::from_utf8_lossy(sql).to_ascii_uppercase();
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .collect();
    let after_no = |word: &str| {
        words
            .iter()
            .position(|w| *w == word)
            .map(|i| i > 0 && words[i - 1] == "NO")
    };
    match (after_no("RELEASE"), after_no("CHAIN")) {
        (Some(no), _) => !no,
        (None, Some(false)) => false,
        _ => by_default(),
    }
}

/// The command with the session's own values written in for the calls that need them.
/// `CONNECTION_ID()` answers the id the client got in the proxy's greeting, for the whole
/// session, whichever pooled backend connections its statements run on (each has its own
/// server-side id; `KILL` takes the same id). `ROW_COUNT()` answers what the session
/// recorded of its previous statement, when `row_count` says to; `FOUND_ROWS()` answers
/// `found_rows`, when given. `lexable` is the statement as the lexers read it (see
/// [`multibyte::lexable`]).
pub(crate) fn with_session_values(
    s: &Session,
    packet: &[u8],
    lexable: &[u8],
    row_count: bool,
    found_rows: Option<i64>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 40);
    out.push(packet[0]);
    out.extend(classify::replace_session_fns(
        &packet[1..],
        lexable,
        |f| match f {
            SessionFn::ConnectionId => Some(f.literal(s.id.into())),
            SessionFn::RowCount => row_count.then(|| f.literal(s.row_count)),
            SessionFn::FoundRows => found_rows.map(|n| f.literal(n)),
        },
    ));
    out
}

pub async fn init_db(s: &mut Session, io: &mut ClientIo, packet: &[u8]) -> Result<(), SessionEnd> {
    let db = String::from_utf8_lossy(&packet[1..]).into_owned();
    execute(
        s,
        io,
        packet,
        Target::Session,
        Expect::Results,
        Prep::Nothing,
        |s, conn, r: &Relayed| {
            if r.error.is_none() {
                set_schema(s, conn, &db);
            }
        },
    )
    .await?;
    Ok(())
}

/// The statement ran on a connection that carried the session's state, so both move on
/// together.
fn set_schema(s: &mut Session, conn: &mut BackendConn, db: &str) {
    let db = names::intern(db);
    conn.state.schema = Some(db.clone());
    s.state.schema = Some(db);
}

fn record_set(s: &mut Session, conn: &mut BackendConn, assignments: &[Assignment]) {
    for a in assignments {
        if let Assignment::Session { key, text } = a {
            if key == TRACKED_LIST {
                conn.track.stale = true;
            }
            if key == TRANSACTION_INFO {
                conn.track.forget_transaction_info();
            }
            if key == "wait_timeout" {
                s.set_wait_timeout(state::timeout_of(text));
            }
            conn.state.set_var(key.clone(), text.clone());
            s.state.set_var(key.clone(), text.clone());
        }
    }
    // Values computed from earlier ones are kept with all they build on (see
    // `SessionState::set_var`); a session that keeps building stays on this connection rather
    // than have every statement elsewhere replay a growing list. Kept there for good, and
    // reset before anyone else gets it, it needs no record at all.
    if s.state.vars.len() > MAX_REPLAYED {
        s.sticky.server_state = true;
        s.state.vars.clear();
        conn.state.vars.clear();
    }
}

/// Recorded assignments beyond which a session stops being moved between connections.
const MAX_REPLAYED: usize = 64;

#[cfg(test)]
mod tests {
    use super::{plain_begin, plain_end};

    #[test]
    fn only_a_plain_begin_waits_for_the_first_statement() {
        for sql in [
            "BEGIN",
            "begin work;",
            " START TRANSACTION ",
            "/* c */ start transaction;\n",
        ] {
            assert!(plain_begin(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            "START TRANSACTION READ ONLY",
            "START TRANSACTION READ WRITE",
            "BEGIN NOT ATOMIC SELECT 1; END",
            "BEGIN WORK WORK",
            "START",
            "TRANSACTION",
            "/*! BEGIN */",
            "BEGIN; SELECT 1",
            "COMMIT",
            "",
        ] {
            assert!(!plain_begin(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn only_a_plain_commit_or_rollback_ends_nothing_by_itself() {
        for sql in [
            "COMMIT",
            "rollback",
            " COMMIT WORK ;",
            "/* pool reset */ ROLLBACK",
            "ROLLBACK /* c */",
            "commit;\n",
        ] {
            assert!(plain_end(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "COMMIT AND CHAIN",
            "COMMIT AND NO CHAIN",
            "ROLLBACK RELEASE",
            "ROLLBACK TO sp",
            "COMMIT foo",
            "COMMIT WORK WORK",
            "/*! COMMIT */",
            "COMMIT /*! AND CHAIN */",
            "COMMIT /*M! AND CHAIN */",
            "COMMIT; SELECT 1",
            "COMMIT -- c",
            "ROLLBACK /* unterminated",
            "WORK",
            "",
        ] {
            assert!(!plain_end(sql.as_bytes()), "{sql}");
        }
    }
}
