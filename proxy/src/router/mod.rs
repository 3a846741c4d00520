//! Where a statement goes. The rules, in one place:
//!
//! | statement | target |
//! |---|---|
//! | `SHOW WARNINGS`/`SHOW ERRORS`/`SHOW COUNT(*) …`, reads of `@@warning_count`/`@@error_count` | the connection holding the last messages |
//! | `/*master*/` hint | write |
//! | `/*slave*/` hint on a read-only statement kind | read |
//! | `SELECT`/`SHOW`/`DESC`/`EXPLAIN` without any of the flags below (`EXPLAIN` of a read: a replica's `read_only` refuses the plan of a write) | read |
//! | nothing but comments, whitespace and `;` (the server answers: OK, or 1065 when blank) | read |
//! | locking reads (`FOR UPDATE`, `LOCK IN SHARE MODE`, `FOR SHARE`), `SELECT … INTO` | write |
//! | `GET_LOCK` & co, `LAST_INSERT_ID()` (and `@@identity`), `FOUND_ROWS()`/`ROW_COUNT()`, `SQL_CALC_FOUND_ROWS`, sequences, user variables, `SHOW MASTER STATUS`, `BINLOG_GTID_POS()`, `@@gtid_binlog_pos`, `@@gtid_binlog_state`, `@@gtid_current_pos` (also named by a literal or `LIKE` pattern in `SHOW VARIABLES` or a read of `information_schema.GLOBAL_VARIABLES`/`SESSION_VARIABLES`) | write |
//! | multi-statements, writes, DDL, `CALL`, anything unknown | write |
//!
//! Before routing, a session writes its own values into `CONNECTION_ID()`, into
//! `ROW_COUNT()` unless it holds the connection of its previous statement, and into
//! `FOUND_ROWS()` unless it holds the connection of its last result set (`client::query`);
//! the statement then routes by its other flags.
//!
//! A replica that has not replicated what a read needs yet is behind for it, and the read
//! runs on the write backend: when the replica refuses the session's schema (1049, to the
//! proxy's `USE` or to a new connection's login; `Session::checkout`), and when an autocommit
//! read outside any pinning gets only "no such table" or "no such schema" (1146, 1049) from
//! it, before any of that reached the client, or cannot be prepared there for that reason
//! (`client::execute`, `client::prepared::prepare`). So does a read a replica refuses for its
//! `read_only` (1290: a stored function that writes). Such reads go to the write backend
//! directly for [`REPLICA_RECHECK`] after (by shape in [`cache`], or per prepared
//! statement).
//!
//! Session rules (transactions, `LOCK TABLES`, server-held state) are applied by the session,
//! which pins itself to a connection and ignores this decision while pinned; a statement that
//! commits implicitly ([`classify::Flags::IMPLICIT_COMMIT`]) ends a transaction held
//! on a replica first, and routes by this table (`Session::commit_implicitly`). With
//! `autocommit=0` every statement opens a transaction, so the session sends reads to the
//! write backend too, or to a replica while the write backend cannot be reached
//! (`Session::checkout`). So does a session whose plain `BEGIN` the proxy answered, to send
//! it with the transaction's first statement (`Session::begin_deferred`).

pub mod cache;
pub mod classify;
pub mod multibyte;

use classify::{Classification, Flags, StmtKind};

/// How long reads a replica refused for being one (`relay::refused_as_replica`) go to the
/// write backend before a replica is tried again (one that was only behind has caught up
/// by then, mostly): per prepared statement, and per statement shape in [`cache`].
pub const REPLICA_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Write,
    Read,
    /// A statement that only changes session settings (`SET` of session variables, `USE`):
    /// the write backend, or a read backend while the write backend is offline or cannot be
    /// reached. The server there only validates it, and the proxy carries the settings to
    /// every connection the session uses, so clients that set their charset at connect
    /// (most drivers) can still log in and read.
    Session,
    /// Where the session's previous statement ran (`SHOW WARNINGS` and friends).
    Diagnostics,
}

/// Flags that make a read depend on (or create) state only the write backend's connection has.
const NEEDS_PRIMARY: Flags = Flags::LOCKING_READ
    .union(Flags::SELECT_INTO)
    .union(Flags::USER_VAR_READ)
    .union(Flags::USER_VAR_WRITE)
    .union(Flags::GET_LOCK)
    .union(Flags::LAST_INSERT_ID)
    .union(Flags::FOUND_ROWS)
    .union(Flags::ROW_COUNT)
    .union(Flags::CALC_FOUND_ROWS)
    .union(Flags::SEQUENCE)
    .union(Flags::MULTI_STATEMENT)
    .union(Flags::MASTER_STATUS);

/// What a statement that raises no messages does to the previous statement's, as far as the
/// scan can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagEffect {
    /// Uses no tables: servers keep the messages (`SELECT 1`, `SET @a = 1`, `DO ...`,
    /// `SELECT @@warning_count`).
    Keeps,
    /// Uses tables: servers clear them.
    Clears,
    /// Anything else (`CREATE PROCEDURE`, ...): only the server that runs it knows.
    Unknown,
}

pub fn diag_effect(sql: &[u8]) -> DiagEffect {
    // Applications mark their statements with leading comments (sqlcommenter, Rails'
    // marginalia); an executable one (`/*! ... */`) is a statement of its own, left Unknown.
    let head = after_comments(sql);
    let starts = |w: &[u8]| {
        head.len() >= w.len()
            && head[..w.len()].eq_ignore_ascii_case(w)
            && head
                .get(w.len())
                .is_none_or(|&b| !b.is_ascii_alphanumeric() && b != b'_')
    };
    // Classifying again is costly on every statement; only a `;` can make a multi-statement.
    if sql.contains(&b';')
        && classify::classify(sql)
            .flags
            .contains(Flags::MULTI_STATEMENT)
    {
        DiagEffect::Unknown
    } else if starts(b"USE") {
        DiagEffect::Keeps
    } else if starts(b"COMMIT")
        || starts(b"ROLLBACK")
        || starts(b"BEGIN")
        || starts(b"SAVEPOINT")
        || starts(b"RELEASE")
        || starts(b"START") && {
            let rest = head[5..].trim_ascii_start();
            rest.len() >= 11 && rest[..11].eq_ignore_ascii_case(b"TRANSACTION")
        }
    {
        // Transaction control keeps the messages (measured on MariaDB 10.11): a client may
        // ask for the warnings of its transaction's last statement after ending it.
        DiagEffect::Keeps
    } else if starts(b"GET") {
        // `GET DIAGNOSTICS` reads them and leaves them be.
        DiagEffect::Keeps
    } else if starts(b"SELECT") || starts(b"SET") || starts(b"DO") {
        if has_word(head, b"from") {
            DiagEffect::Clears
        } else {
            DiagEffect::Keeps
        }
    } else if [&b"INSERT"[..], b"UPDATE", b"DELETE", b"REPLACE"]
        .iter()
        .any(|w| starts(w))
    {
        DiagEffect::Clears
    } else {
        DiagEffect::Unknown
    }
}

/// `sql` from its first token on: past whitespace and comments, but not past an executable
/// comment (`/*!…*/`, `/*M!…*/`), whose text the server runs.
fn after_comments(mut sql: &[u8]) -> &[u8] {
    loop {
        sql = sql.trim_ascii_start();
        sql = if let Some(rest) = after_plain_comment(sql) {
            rest
        } else if sql.starts_with(b"#")
            || sql.starts_with(b"--") && sql.get(2).is_none_or(|b| b.is_ascii_whitespace())
        {
            match memchr::memchr(b'\n', sql) {
                Some(end) => &sql[end + 1..],
                None => &[],
            }
        } else {
            return sql;
        };
    }
}

/// What follows the `/* … */` comment `sql` starts with; `None` when it starts with none, an
/// unterminated one, or an executable one (`/*!…*/`, `/*M!…*/`: the server runs its text).
/// The one place that tells a comment the server skips from one it runs.
pub fn after_plain_comment(sql: &[u8]) -> Option<&[u8]> {
    let body = sql.strip_prefix(b"/*")?;
    if body.starts_with(b"!") || body.starts_with(b"M!") {
        return None;
    }
    let end = body.windows(2).position(|w| w == b"*/")?;
    Some(&body[end + 2..])
}

/// `word` appears in `sql` as a whole word, ignoring case (inside literals too, which only
/// makes [`diag_effect`] more conservative).
fn has_word(sql: &[u8], word: &[u8]) -> bool {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    sql.windows(word.len()).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(word)
            && (i == 0 || !ident(sql[i - 1]))
            && sql.get(i + word.len()).is_none_or(|b| !ident(*b))
    })
}

pub fn target(c: &Classification) -> Target {
    let read_kind = matches!(
        c.kind,
        StmtKind::Read | StmtKind::Begin { read_only: true } | StmtKind::Empty
    );
    // Where the previous statement's messages are, which may be a replica: only for a read
    // that needs nothing else. A write or a `CALL` beside `SHOW WARNINGS` in a
    // multi-statement (whose flags are all its statements'), or anything that needs the
    // write backend, goes there, and reads the messages its own statements left.
    if c.flags.contains(Flags::DIAGNOSTICS)
        && read_kind
        && !c.flags.intersects(NEEDS_PRIMARY.union(Flags::HINT_MASTER))
    {
        return Target::Diagnostics;
    }
    if c.flags.contains(Flags::HINT_MASTER) {
        return Target::Write;
    }
    if read_kind && c.flags.contains(Flags::HINT_SLAVE) {
        return Target::Read;
    }
    if read_kind && !c.flags.intersects(NEEDS_PRIMARY) {
        Target::Read
    } else {
        Target::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_read_of_messages_goes_where_they_are() {
        for (sql, want) in [
            ("SHOW WARNINGS", Target::Diagnostics),
            ("SELECT @@warning_count", Target::Diagnostics),
            ("INSERT INTO t VALUES (1); SHOW WARNINGS", Target::Write),
            ("UPDATE t SET a = 1; SELECT @@warning_count", Target::Write),
            ("CALL p(); SHOW WARNINGS", Target::Write),
            ("SELECT 1; SHOW WARNINGS", Target::Write),
            ("/*master*/ SHOW WARNINGS", Target::Write),
            ("SELECT @@warning_count INTO @w", Target::Write),
            ("SELECT @@warning_count, GET_LOCK('l', 0)", Target::Write),
        ] {
            let c = crate::router::classify::classify(sql.as_bytes());
            assert_eq!(target(&c), want, "{sql}");
        }
    }

    #[test]
    fn what_statements_do_to_the_previous_messages() {
        for sql in [
            "COMMIT",
            " rollback work",
            "BEGIN",
            "start  transaction read only",
            "SAVEPOINT a",
            "RELEASE SAVEPOINT a",
            "ROLLBACK TO SAVEPOINT a",
            "USE db",
            "SELECT 1",
            "SET @a = 1",
            "/* app */ BEGIN",
            "-- c\n# d\n /**/SELECT 1",
            "GET DIAGNOSTICS @n = NUMBER",
        ] {
            assert_eq!(diag_effect(sql.as_bytes()), DiagEffect::Keeps, "{sql}");
        }
        for sql in [
            "SELECT * FROM t",
            "update t set a = 1",
            "/* controller='users' */ SELECT * FROM t",
        ] {
            assert_eq!(diag_effect(sql.as_bytes()), DiagEffect::Clears, "{sql}");
        }
        for sql in [
            "COMMITTED",
            "CREATE TABLE t (a INT)",
            "SELECT 1; SELECT 2",
            "START SLAVE",
            "START",
            "/*!40101 SET @a = 1 */",
            "/*M!100100 SELECT 1 */",
            "/* unterminated SELECT 1",
            "--SELECT 1",
            "-- only a comment",
        ] {
            assert_eq!(diag_effect(sql.as_bytes()), DiagEffect::Unknown, "{sql}");
        }
    }
}
