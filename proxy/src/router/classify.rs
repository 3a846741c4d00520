//! The hot-path statement classifier.
//!
//! Every COM_QUERY passes through [`classify`] before it is routed, so this is a hand-written
//! byte scanner rather than a SQL parser: a full parse costs microseconds and allocates, while
//! routing only needs the leading keywords plus a handful of functions and clauses that pin a
//! statement to the primary. Anything the scanner does not recognise is reported as
//! [`StmtKind::Write`], because sending a read to the primary is slow but sending a write to a
//! replica is wrong.
//!
//! The scanner understands enough of MySQL's lexical rules that text inside string literals,
//! quoted identifiers and comments never looks like SQL, while the content of executable
//! comments (`/*! ... */`, `/*M! ... */`) does, since the server runs it (mysqldump output is
//! full of them). It assumes the default `sql_mode`: with `NO_BACKSLASH_ESCAPES` a string that
//! ends in a backslash looks unterminated and the statement is conservatively a write.
//!
//! What the router has to know, because the kind alone does not say it:
//! - [`StmtKind::Read`] only means the statement changes no data. `FOR UPDATE`, `INTO`, user
//!   variable assignments, lock and sequence functions are Reads with a flag, and it is the
//!   router's policy whether each flag pins the statement to the primary.
//! - Multi-statements take the first statement's kind (a Read followed by anything else is a
//!   Write) with [`Flags::MULTI_STATEMENT`]. `;` inside stored-program bodies
//!   (`CREATE PROCEDURE ... BEGIN ...; END`) is not understood, so those also carry the flag;
//!   they are writes anyway.
//! - Atlas hints count only in the comments before the first keyword of the first statement;
//!   both may be set if both are present.
//! - `SET GLOBAL ...` is [`StmtKind::Set`] like any session SET; [`Flags::AUTOCOMMIT_SET`]
//!   does not distinguish scope.
//! - `@` right after a quoted string or identifier is the `'user'@'host'` separator; after an
//!   unquoted name (`root@localhost`) it still reads as a user variable, which only adds
//!   [`Flags::USER_VAR_READ`] to statements (GRANT, CREATE USER) that are writes anyway.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// What a statement is, as far as routing and session tracking care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StmtKind {
    /// Safe to run on a replica unless a flag says otherwise: SELECT, SHOW, DESC/DESCRIBE,
    /// EXPLAIN of a read (without ANALYZE, it never executes), HELP, `WITH ... SELECT`, a parenthesised
    /// SELECT, `VALUES`, `TABLE t`.
    Read,
    /// Everything not known to be read-only; the default for anything unrecognised, malformed
    /// or unterminated.
    Write,
    /// A session-state `SET` (NAMES, user variables, session/global variables, TRANSACTION).
    /// `SET PASSWORD` and `SET DEFAULT ROLE` change grant tables and are [`StmtKind::Write`];
    /// `SET STATEMENT ... FOR s` is classified as `s` with [`Flags::SET_STATEMENT`].
    Set,
    /// `USE db`; see [`use_schema`].
    Use,
    /// `BEGIN [WORK]` or `START TRANSACTION ...`.
    Begin { read_only: bool },
    /// `COMMIT` / `ROLLBACK` with optional `WORK`, `AND [NO] CHAIN`, `[NO] RELEASE`. Savepoint
    /// statements (including `ROLLBACK TO`) are writes: they do not end the transaction.
    EndTransaction,
    /// `LOCK TABLE(S) ...`
    LockTables,
    /// `UNLOCK TABLE(S)`
    UnlockTables,
    /// Text-protocol prepared statements: `PREPARE s FROM ...`, `EXECUTE s [USING ...]`,
    /// `DEALLOCATE PREPARE s`, `DROP PREPARE s`. MariaDB's `EXECUTE IMMEDIATE` runs arbitrary
    /// SQL without leaving a named statement behind, so it is a write instead.
    PrepareText,
    /// `KILL [CONNECTION|QUERY] ...`
    Kill,
    /// `GET [CURRENT] DIAGNOSTICS ...`: reads the messages of the statement before, wherever
    /// that ran, into user variables (see [`diagnostics_targets`]).
    GetDiagnostics,
    /// Nothing but whitespace, comments and `;`.
    Empty,
}

/// Properties of a statement that change where it may run or what the session must remember.
///
/// A small hand-written bit set so the hot path does not pull in a dependency.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(u32);

impl Flags {
    /// `/*master*/` in the comments before the first keyword (Atlas hint).
    pub const HINT_MASTER: Flags = Flags(1 << 0);
    /// `/*slave*/` in the comments before the first keyword (Atlas hint).
    pub const HINT_SLAVE: Flags = Flags(1 << 1);
    /// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`, at any nesting level.
    pub const LOCKING_READ: Flags = Flags(1 << 2);
    /// `INTO` in a read statement: `INTO @var`, `INTO OUTFILE`, `INTO DUMPFILE`.
    pub const SELECT_INTO: Flags = Flags(1 << 3);
    /// Assigns a user variable: `@x :=`, `SET @x = ...`, `SELECT ... INTO @x`.
    pub const USER_VAR_WRITE: Flags = Flags(1 << 4);
    /// Mentions a user variable `@x` (not `@@system`); implied by [`Flags::USER_VAR_WRITE`].
    pub const USER_VAR_READ: Flags = Flags(1 << 5);
    /// GET_LOCK, RELEASE_LOCK, RELEASE_ALL_LOCKS, IS_USED_LOCK, IS_FREE_LOCK.
    pub const GET_LOCK: Flags = Flags(1 << 6);
    /// LAST_INSERT_ID( or `@@identity`/`@@last_insert_id`/`@@insert_id` — only meaningful on
    /// the connection that inserted.
    pub const LAST_INSERT_ID: Flags = Flags(1 << 7);
    /// FOUND_ROWS( — it describes the previous result set on the connection.
    pub const FOUND_ROWS: Flags = Flags(1 << 8);
    /// SQL_CALC_FOUND_ROWS — a later FOUND_ROWS() must run on the same backend.
    pub const CALC_FOUND_ROWS: Flags = Flags(1 << 9);
    /// NEXTVAL(, LASTVAL(, SETVAL(, NEXT VALUE FOR, PREVIOUS VALUE FOR.
    pub const SEQUENCE: Flags = Flags(1 << 10);
    /// CREATE [OR REPLACE] TEMPORARY TABLE or DROP TEMPORARY TABLE: the table lives only on
    /// the backend connection that made it.
    pub const TEMP_TABLE: Flags = Flags(1 << 11);
    /// A `;` is followed by another non-empty statement.
    pub const MULTI_STATEMENT: Flags = Flags(1 << 12);
    /// MariaDB `SET STATEMENT var=val[, ...] FOR <stmt>`; the kind is that of `<stmt>`.
    pub const SET_STATEMENT: Flags = Flags(1 << 13);
    /// A SET that assigns `autocommit` (any scope, including `@@global.autocommit`).
    pub const AUTOCOMMIT_SET: Flags = Flags(1 << 14);
    /// `SET [GLOBAL|SESSION|LOCAL] TRANSACTION ...`
    pub const SET_TRANSACTION: Flags = Flags(1 << 15);
    /// SHOW MASTER STATUS/LOGS, SHOW BINARY LOGS, SHOW BINARY LOG STATUS, SHOW BINLOG ...,
    /// `BINLOG_GTID_POS()` and reads of `@@gtid_binlog_pos`, `@@gtid_binlog_state` and
    /// `@@gtid_current_pos`: replicas have their own binlog and GTID position, so these only
    /// make sense on the primary (a replica's answer is older, or means nothing there).
    pub const MASTER_STATUS: Flags = Flags(1 << 16);
    /// SHOW WARNINGS / SHOW ERRORS / SHOW COUNT(*) WARNINGS|ERRORS, and reads of
    /// `@@warning_count` / `@@error_count`: about the previous statement, so they must run
    /// where it ran.
    pub const DIAGNOSTICS: Flags = Flags(1 << 17);
    /// CONNECTION_ID( — the proxy answers it with the id it gave the client; see
    /// [`replace_session_fns`].
    pub const CONNECTION_ID: Flags = Flags(1 << 18);
    /// `CALL`, `EXECUTE IMMEDIATE`, `HANDLER`, `BACKUP STAGE|LOCK`, `LOCK INSTANCE`, and
    /// `FLUSH` with `LOCK` (`WITH READ LOCK`), `FOR EXPORT` or `STATUS`: they leave state on the connection the proxy cannot
    /// see or replay — locks that block the whole server, open handlers, and whatever session
    /// or user variables a procedure or dynamic SQL set.
    pub const CONNECTION_STATE: Flags = Flags(1 << 19);
    /// ROW_COUNT( — it describes the previous statement on the connection; the session
    /// writes in its own value (see [`replace_session_fns`]).
    pub const ROW_COUNT: Flags = Flags(1 << 20);
    /// `XA ...`: an XA transaction lives on its connection. Once prepared it survives only
    /// that connection's close (MariaDB then detaches it, for `XA COMMIT` from anywhere); a
    /// `COM_RESET_CONNECTION` instead leaves it holding its locks, unlisted by `XA RECOVER`,
    /// and the connection unusable.
    pub const XA: Flags = Flags(1 << 21);
    /// The first statement commits an open transaction before it runs, as a server does
    /// for DDL (`CREATE`/`ALTER`/`DROP`/`RENAME`/`TRUNCATE`, not of temporary tables),
    /// account statements (`GRANT`, `REVOKE`, `SET PASSWORD`), table maintenance (`ANALYZE`/
    /// `CHECK`/`OPTIMIZE`/`REPAIR TABLE`, `CACHE INDEX`, `LOAD INDEX`), `FLUSH`, `RESET`,
    /// `INSTALL`/`UNINSTALL`, `CHANGE MASTER`, `BEGIN`/`START TRANSACTION` and `LOCK TABLES`.
    /// Behind `SET STATEMENT … FOR` it is not seen.
    pub const IMPLICIT_COMMIT: Flags = Flags(1 << 22);
    /// Where the statement runs depends on the value of a string literal in it: it reads
    /// server variables by name (`SHOW VARIABLES LIKE '…'`, `information_schema.
    /// GLOBAL_VARIABLES`), and a name may be one of [`Flags::MASTER_STATUS`]'s. Two such
    /// statements of the same shape may route apart, so the shape cache keeps none of them.
    pub const BY_LITERAL: Flags = Flags(1 << 23);
    /// Never the classifier's: a note that a replica lately refused a statement of this
    /// shape for being one, so its reads go to the write backend for a while (see
    /// `cache::note_replica_refused`).
    pub const REPLICA_REFUSED: Flags = Flags(1 << 24);

    const NAMES: [(Flags, &'static str); 25] = [
        (Flags::HINT_MASTER, "HINT_MASTER"),
        (Flags::HINT_SLAVE, "HINT_SLAVE"),
        (Flags::LOCKING_READ, "LOCKING_READ"),
        (Flags::SELECT_INTO, "SELECT_INTO"),
        (Flags::USER_VAR_WRITE, "USER_VAR_WRITE"),
        (Flags::USER_VAR_READ, "USER_VAR_READ"),
        (Flags::GET_LOCK, "GET_LOCK"),
        (Flags::LAST_INSERT_ID, "LAST_INSERT_ID"),
        (Flags::FOUND_ROWS, "FOUND_ROWS"),
        (Flags::CALC_FOUND_ROWS, "CALC_FOUND_ROWS"),
        (Flags::SEQUENCE, "SEQUENCE"),
        (Flags::TEMP_TABLE, "TEMP_TABLE"),
        (Flags::MULTI_STATEMENT, "MULTI_STATEMENT"),
        (Flags::SET_STATEMENT, "SET_STATEMENT"),
        (Flags::AUTOCOMMIT_SET, "AUTOCOMMIT_SET"),
        (Flags::SET_TRANSACTION, "SET_TRANSACTION"),
        (Flags::MASTER_STATUS, "MASTER_STATUS"),
        (Flags::DIAGNOSTICS, "DIAGNOSTICS"),
        (Flags::CONNECTION_ID, "CONNECTION_ID"),
        (Flags::CONNECTION_STATE, "CONNECTION_STATE"),
        (Flags::ROW_COUNT, "ROW_COUNT"),
        (Flags::XA, "XA"),
        (Flags::IMPLICIT_COMMIT, "IMPLICIT_COMMIT"),
        (Flags::BY_LITERAL, "BY_LITERAL"),
        (Flags::REPLICA_REFUSED, "REPLICA_REFUSED"),
    ];

    pub const fn empty() -> Flags {
        Flags(0)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any flag of `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// Prints flag names rather than a number, so test failures are readable.
impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Flags(")?;
        let mut first = true;
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    pub kind: StmtKind,
    pub flags: Flags,
}

/// Classifies one COM_QUERY payload.
///
/// With several statements the kind is that of the first non-empty one, except that a read
/// followed by anything that is not a read becomes [`StmtKind::Write`] (so `Read` always means
/// "every statement is a read"); flags are the union over all statements and
/// [`Flags::MULTI_STATEMENT`] is set.
pub fn classify(sql: &[u8]) -> Classification {
    let mut c = Classifier::new(sql);
    let mut first: Option<StmtKind> = None;
    let mut later_not_read = false;
    let mut after_semi = false;
    loop {
        let (kind, ended) = c.statement();
        if let Some(kind) = kind {
            if after_semi {
                c.flags |= Flags::MULTI_STATEMENT;
            }
            match first {
                None => {
                    first = Some(kind);
                    if c.commits {
                        c.flags |= Flags::IMPLICIT_COMMIT;
                    }
                }
                Some(_) => later_not_read |= kind != StmtKind::Read,
            }
        }
        match ended {
            Ended::Eof => break,
            Ended::Semi => after_semi = true,
        }
    }
    let mut kind = first.unwrap_or(StmtKind::Empty);
    if (kind == StmtKind::Read && later_not_read) || c.lx.broken {
        kind = StmtKind::Write;
    }
    Classification {
        kind,
        flags: c.flags | c.lx.hints,
    }
}

/// The schema named by `USE db` (backtick quoting removed), or `None` if `sql` is not exactly
/// one well-formed `USE` of a UTF-8 name — in which case the server rejects it too and the
/// session's schema does not change.
pub fn use_schema(sql: &[u8]) -> Option<String> {
    let mut lx = Lexer::new(sql);
    if lx.next().sym != Sym::Kw(Kw::Use) {
        return None;
    }
    let name = lx.next();
    let raw = &sql[name.start..name.end];
    let bytes = match name.sym {
        Sym::Word | Sym::Kw(_) => raw.to_vec(),
        Sym::QIdent => {
            let inner = &raw[1..raw.len() - 1];
            let mut out = Vec::with_capacity(inner.len());
            let mut i = 0;
            while i < inner.len() {
                out.push(inner[i]);
                // The lexer only accepts doubled backticks inside, so skip the second one.
                i += if inner[i] == b'`' { 2 } else { 1 };
            }
            out
        }
        _ => return None,
    };
    match lx.next().sym {
        Sym::End | Sym::Punct(b';') if !lx.broken && !bytes.is_empty() => {
            String::from_utf8(bytes).ok()
        }
        _ => None,
    }
}

/// A user variable `GET DIAGNOSTICS` assigns, and what kind of value it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagTarget {
    /// As written (`@e`, `` @`my var` ``), for statements the proxy writes.
    pub var: String,
    /// The item's type, which the value keeps when the proxy copies it.
    pub value: DiagValue,
}

impl DiagTarget {
    /// Whether both name one variable: names compare without their quotes and case.
    pub fn same_var(&self, other: &DiagTarget) -> bool {
        fn name(var: &str) -> String {
            let n = var.trim_start_matches('@');
            match n.chars().next() {
                Some(q @ ('`' | '\'' | '"')) if n.len() >= 2 => {
                    let doubled: String = [q, q].iter().collect();
                    n[1..n.len() - 1].replace(&doubled, &q.to_string())
                }
                _ => n.to_owned(),
            }
            .to_lowercase()
        }
        name(&self.var) == name(&other.var)
    }
}

/// The type a `GET DIAGNOSTICS` item has (measured on MariaDB 10.11 with `CREATE TABLE ...
/// AS SELECT @var`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagValue {
    /// `NUMBER`, `MYSQL_ERRNO`, `ROW_NUMBER`: `BIGINT UNSIGNED`.
    Unsigned,
    /// `ROW_COUNT`: `BIGINT`.
    Signed,
    /// Every other item: a string in the server's system character set.
    Text,
}

/// The user variables a top-level `GET [CURRENT] DIAGNOSTICS [CONDITION n] @v = ITEM, ...`
/// assigns, in order. `None` when the statement is not of that shape, or names its condition
/// by a variable: the proxy then leaves it to the server as written.
pub fn diagnostics_targets(sql: &[u8]) -> Option<Vec<DiagTarget>> {
    let mut lx = Lexer::new(sql);
    let word =
        |t: &Tok, w: &[u8]| t.sym == Sym::Word && sql[t.start..t.end].eq_ignore_ascii_case(w);
    if !word(&lx.next(), b"GET") {
        return None;
    }
    let mut t = lx.next();
    if word(&t, b"CURRENT") {
        t = lx.next();
    }
    if !word(&t, b"DIAGNOSTICS") {
        return None;
    }
    t = lx.next();
    if word(&t, b"CONDITION") {
        // A number: a variable would have to be read where the session's variables are.
        if lx.next().sym != Sym::Word {
            return None;
        }
        t = lx.next();
    }
    let mut targets = Vec::new();
    loop {
        if t.sym != Sym::UserVar || lx.next().sym != Sym::Punct(b'=') {
            return None;
        }
        let item = lx.next();
        if !matches!(item.sym, Sym::Word | Sym::Kw(_)) {
            return None;
        }
        let name = &sql[item.start..item.end];
        let value = if [&b"NUMBER"[..], b"MYSQL_ERRNO", b"ROW_NUMBER"]
            .iter()
            .any(|w| name.eq_ignore_ascii_case(w))
        {
            DiagValue::Unsigned
        } else if name.eq_ignore_ascii_case(b"ROW_COUNT") {
            DiagValue::Signed
        } else {
            DiagValue::Text
        };
        targets.push(DiagTarget {
            var: String::from_utf8_lossy(&sql[t.start..t.end]).into_owned(),
            value,
        });
        let mut end = lx.next().sym;
        if end == Sym::Punct(b',') {
            t = lx.next();
            continue;
        }
        if end == Sym::Punct(b';') {
            end = lx.next().sym;
        }
        return (end == Sym::End && !lx.broken).then_some(targets);
    }
}

/// What a `KILL` statement names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillTarget {
    /// `KILL QUERY`: only the running statement; otherwise the whole connection.
    pub query_only: bool,
    /// The thread id as written (`None`: `CONNECTION_ID()`, the session itself).
    pub id: Option<u64>,
}

/// Parses `KILL [HARD | SOFT] [CONNECTION | QUERY] id` where id is an integer literal
/// (negative ones wrap, as on the server) or `CONNECTION_ID()`. `None` for every other form
/// (`KILL USER`, `KILL QUERY ID`, expressions, a statement after it), which the proxy does not
/// support.
pub fn kill_target(sql: &[u8]) -> Option<KillTarget> {
    let mut lx = Lexer::new(sql);
    if lx.next().sym != Sym::Kw(Kw::Kill) {
        return None;
    }
    let word =
        |t: &Tok, w: &[u8]| t.sym == Sym::Word && sql[t.start..t.end].eq_ignore_ascii_case(w);
    let mut t = lx.next();
    if word(&t, b"HARD") || word(&t, b"SOFT") {
        t = lx.next();
    }
    let mut query_only = false;
    if word(&t, b"CONNECTION") {
        t = lx.next();
    } else if word(&t, b"QUERY") {
        query_only = true;
        t = lx.next();
    }
    let id = match t.sym {
        Sym::Kw(Kw::ConnectionId) => {
            if lx.next().sym != Sym::Punct(b'(') || lx.next().sym != Sym::Punct(b')') {
                return None;
            }
            None
        }
        Sym::Punct(b'-') => {
            let n = lx.next();
            let v: u64 = std::str::from_utf8(&sql[n.start..n.end])
                .ok()?
                .parse()
                .ok()?;
            Some(v.wrapping_neg())
        }
        Sym::Word => Some(
            std::str::from_utf8(&sql[t.start..t.end])
                .ok()?
                .parse()
                .ok()?,
        ),
        _ => return None,
    };
    // Alone in its command: a statement after it would be lost (or, from a client without
    // multi-statements, the server refuses the whole text and kills nothing).
    loop {
        match lx.next().sym {
            Sym::Punct(b';') => {}
            Sym::End if !lx.broken => return Some(KillTarget { query_only, id }),
            _ => return None,
        }
    }
}

/// Whether `sql` runs a `KILL` as dynamic SQL from a literal: `PREPARE s FROM 'KILL 5'`,
/// `EXECUTE IMMEDIATE 'KILL 5'`. The proxy answers `KILL` itself, as its ids are not the
/// servers'; as dynamic SQL it would reach a server as written. (From a variable it cannot
/// be seen.)
pub fn dynamic_kill(sql: &[u8]) -> bool {
    let mut lx = Lexer::new(sql);
    if !matches!(lx.next().sym, Sym::Kw(Kw::Prepare | Kw::Execute)) {
        return false;
    }
    loop {
        let t = lx.next();
        match t.sym {
            Sym::End => return false,
            Sym::Str => {
                let body = &sql[t.start + 1..t.end - 1];
                return Lexer::new(body).next().sym == Sym::Kw(Kw::Kill);
            }
            _ => {}
        }
    }
}

/// Functions whose value belongs to the client's session, not to the pooled backend
/// connection a statement happens to run on. The proxy knows their values and writes them
/// into the statement ([`replace_session_fns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFn {
    /// The id the client got in the proxy's greeting.
    ConnectionId,
    /// Rows changed by the session's previous statement, -1 after one that returned rows.
    RowCount,
    /// Rows of the session's last result set.
    FoundRows,
}

impl SessionFn {
    /// The constant standing for the call, with the very column metadata the function has,
    /// also inside expressions: `CONNECTION_ID()` is LONG of length 10, unsigned;
    /// `ROW_COUNT()` is LONGLONG of length 21, signed. A server derives a constant's type and
    /// length from its digits: the first is zero-padded to its length; for the second an
    /// `IF` takes the value from its first branch and the type from its second, an integer
    /// function like it. (Measured on MariaDB 10.11 in sums, products, quotients, `CONCAT`,
    /// `IFNULL`, comparisons; only `-ROW_COUNT()` of -1 becomes DECIMAL.)
    pub fn literal(self, value: i64) -> String {
        match self {
            SessionFn::ConnectionId => format!("CAST({value:010} AS UNSIGNED)"),
            // FOUND_ROWS() has ROW_COUNT()'s metadata.
            SessionFn::RowCount | SessionFn::FoundRows => {
                format!("IF(1, {value}, ABS(-00000000000000000001))")
            }
        }
    }

    fn of(kw: Kw) -> Option<SessionFn> {
        match kw {
            Kw::ConnectionId => Some(SessionFn::ConnectionId),
            Kw::RowCount => Some(SessionFn::RowCount),
            Kw::FoundRows => Some(SessionFn::FoundRows),
            _ => None,
        }
    }
}

/// Replaces every call of a [`SessionFn`] for which `value` has a constant by that constant,
/// and gives each select item holding a replaced call an alias spelling the item as written,
/// which is the column name a server gives it (`SELECT ROW_COUNT() + 1` keeps its column
/// `ROW_COUNT() + 1`). An item that may already have an alias is left without one. In a
/// multi-statement, `ROW_COUNT()` and `FOUND_ROWS()` are replaced only in the first
/// statement: later ones see the counts of the statement before them, which the server has.
///
/// Statements that define stored code (views, routines, triggers, events) are left as they
/// are: the server must store the calls, not this session's values.
///
/// `lexed` is `sql` as the lexer reads it ([`crate::router::multibyte::lexable`]): same
/// length, same ASCII; positions found in it are copied from `sql`.
pub fn replace_session_fns(
    sql: &[u8],
    lexed: &[u8],
    value: impl Fn(SessionFn) -> Option<String>,
) -> Vec<u8> {
    debug_assert_eq!(sql.len(), lexed.len());
    if defines_stored_code(lexed) {
        return sql.to_vec();
    }
    let text = |t: &Tok| &lexed[t.start..t.end];
    let mut out = Vec::with_capacity(sql.len() + 32);
    let mut lx = Lexer::new(lexed);
    let mut copied = 0;
    let mut prev = Sym::None;
    let mut depth = 0usize;
    // Bit `d`: the tokens at parenthesis depth `d` are in a select list.
    let mut lists = 0u64;
    let bit = |d: usize| 1u64.checked_shl(d as u32).unwrap_or(0);
    // The next token starts a select item.
    let mut item_start = false;
    // Select items being read, innermost last.
    let mut items: Vec<SelectItem> = Vec::new();
    let mut first_statement = true;
    loop {
        let mut t = lx.next();
        let mut replaced = false;
        // An item opening with `(` belongs to the depth outside it.
        let depth_before = depth;
        let at_item_start = std::mem::take(&mut item_start);
        let in_list = lists & bit(depth) != 0;
        // Where the items open at this depth (or deeper) end, before `t`.
        let ends_items = match t.sym {
            Sym::End => Some(0),
            Sym::Punct(b';') if depth == 0 => Some(0),
            Sym::Punct(b',' | b')') => Some(depth),
            Sym::Kw(Kw::Into | Kw::For | Kw::Lock) => Some(depth),
            Sym::Word if in_list && is_clause(text(&t)) => Some(depth),
            _ => None,
        };
        if let Some(d) = ends_items {
            while items.last().is_some_and(|i| i.depth >= d) {
                let item = items.pop().expect("checked");
                item.alias(sql, lexed, &mut out, &mut copied);
            }
        }
        match t.sym {
            Sym::End => break,
            Sym::Punct(b'(') => {
                depth += 1;
                lists &= !bit(depth);
            }
            Sym::Punct(b')') => {
                lists &= !bit(depth);
                depth = depth.saturating_sub(1);
            }
            Sym::Punct(b',') => item_start = in_list,
            Sym::Punct(b';') if depth == 0 => {
                first_statement = false;
                lists = 0;
            }
            Sym::Kw(Kw::Select) => {
                lists |= bit(depth);
                item_start = true;
            }
            Sym::Word if text(&t).eq_ignore_ascii_case(b"RETURNING") => {
                lists |= bit(depth);
                item_start = true;
            }
            Sym::Word | Sym::Kw(Kw::SqlCalcFoundRows)
                if at_item_start && prev != Sym::Punct(b',') && is_select_option(text(&t)) =>
            {
                item_start = true;
            }
            Sym::Word if in_list && is_clause(text(&t)) => lists &= !bit(depth),
            Sym::Kw(Kw::Into | Kw::For | Kw::Lock) => lists &= !bit(depth),
            Sym::Kw(kw) if SessionFn::of(kw).is_some() => {
                let mut ahead = lx.clone();
                let (open, close) = (ahead.next(), ahead.next());
                // `db.connection_id()` is a stored function of that name.
                let call = prev != Sym::Punct(b'.')
                    && open.sym == Sym::Punct(b'(')
                    && close.sym == Sym::Punct(b')');
                let constant = SessionFn::of(kw)
                    .filter(|f| call && (first_statement || *f == SessionFn::ConnectionId))
                    .and_then(&value);
                if let Some(constant) = constant {
                    lx = ahead;
                    out.extend_from_slice(&sql[copied..t.start]);
                    out.extend_from_slice(constant.as_bytes());
                    copied = close.end;
                    for item in &mut items {
                        item.replaced = true;
                    }
                    replaced = true;
                    // The call ends where its parenthesis does.
                    t.end = close.end;
                    t.sym = close.sym;
                }
            }
            _ => {}
        }
        if at_item_start && !item_start && in_list {
            items.push(SelectItem {
                depth: depth_before,
                start: t.start,
                last: NO_TOKEN,
                before_last: NO_TOKEN,
                replaced,
            });
        }
        if let Some(item) = items.last_mut().filter(|i| i.depth == depth) {
            item.before_last = item.last;
            item.last = t;
        }
        prev = t.sym;
    }
    out.extend_from_slice(&sql[copied..]);
    out
}
/// A select item [`replace_session_fns`] is reading.
struct SelectItem {
    /// Parenthesis depth of its select list.
    depth: usize,
    start: usize,
    /// Its last two tokens at its own depth (a call counts as one, ending at its `)`).
    last: Tok,
    before_last: Tok,
    /// It holds a call replaced by a constant.
    replaced: bool,
}

const NO_TOKEN: Tok = Tok {
    sym: Sym::None,
    start: 0,
    end: 0,
};

impl SelectItem {
    /// Copies the statement up to the item's end and adds the alias a server would have
    /// named the item's column by, if the item needs one and surely has none. (`lexed` as
    /// in [`replace_session_fns`].)
    fn alias(&self, sql: &[u8], lexed: &[u8], out: &mut Vec<u8>, copied: &mut usize) {
        let end = self.last.end;
        if !self.replaced || *copied > end || end < self.start || self.may_have_alias(lexed) {
            return;
        }
        // After a token inside an executable comment, the alias would land in text a server
        // may skip.
        let text = &lexed[self.start..end];
        if [&b"/*!"[..], b"/*M!"]
            .iter()
            .any(|c| memchr::memmem::find(text, c).is_some())
        {
            return;
        }
        out.extend_from_slice(&sql[*copied..end]);
        *copied = end;
        out.extend_from_slice(b" AS `");
        // A backtick is doubled where the lexer sees one, not in a two-byte character.
        for (&b, &l) in sql[self.start..end].iter().zip(&lexed[self.start..end]) {
            if l == b'`' {
                out.push(b'`');
            }
            out.push(b);
        }
        out.push(b'`');
    }

    /// Whether the item may end in an alias (`expr AS name`, `expr name`, `expr 'name'`): its
    /// last token is a name or string that does not surely follow an operator. (`END` and
    /// friends are valid aliases too, so a word is never taken for a keyword.)
    fn may_have_alias(&self, sql: &[u8]) -> bool {
        let text = |t: &Tok| &sql[t.start..t.end];
        const OPERATORS: &[&[u8]] = &[
            b"AND", b"OR", b"XOR", b"NOT", b"DIV", b"MOD", b"IS", b"LIKE", b"REGEXP", b"RLIKE",
        ];
        match self.last.sym {
            // `)` only: `?` or a `.` could end an operand the name follows.
            Sym::Punct(p) => p != b')',
            _ => match self.before_last.sym {
                Sym::Punct(p) => !b"+-*/%=<>!&|^~(,".contains(&p),
                Sym::Word => !OPERATORS
                    .iter()
                    .any(|w| text(&self.before_last).eq_ignore_ascii_case(w)),
                _ => true,
            },
        }
    }
}

/// Words between `SELECT` and its first item.
fn is_select_option(w: &[u8]) -> bool {
    const OPTIONS: &[&[u8]] = &[
        b"ALL",
        b"DISTINCT",
        b"DISTINCTROW",
        b"HIGH_PRIORITY",
        b"STRAIGHT_JOIN",
        b"SQL_SMALL_RESULT",
        b"SQL_BIG_RESULT",
        b"SQL_BUFFER_RESULT",
        b"SQL_CACHE",
        b"SQL_NO_CACHE",
        b"SQL_CALC_FOUND_ROWS",
    ];
    OPTIONS.iter().any(|o| w.eq_ignore_ascii_case(o))
}

/// Words that end a select list.
fn is_clause(w: &[u8]) -> bool {
    CLAUSES.iter().any(|c| w.eq_ignore_ascii_case(c))
}

/// `CREATE`/`ALTER` of a view, routine, trigger or event anywhere in the statement (also
/// behind `SET STATEMENT … FOR` or inside an executable comment).
fn defines_stored_code(sql: &[u8]) -> bool {
    const CODE: &[&[u8]] = &[
        b"VIEW",
        b"PROCEDURE",
        b"FUNCTION",
        b"TRIGGER",
        b"EVENT",
        b"PACKAGE",
    ];
    let word =
        |t: &Tok, w: &[u8]| t.sym == Sym::Word && sql[t.start..t.end].eq_ignore_ascii_case(w);
    let mut lx = Lexer::new(sql);
    loop {
        let t = lx.next();
        if t.sym == Sym::End {
            return false;
        }
        if t.sym != Sym::Kw(Kw::Create) && !word(&t, b"ALTER") {
            continue;
        }
        // `CREATE OR REPLACE ALGORITHM=… DEFINER=… SQL SECURITY … VIEW`: the object kind
        // comes within a few tokens, before any parenthesis.
        let mut ahead = lx.clone();
        for _ in 0..16 {
            let n = ahead.next();
            match n.sym {
                Sym::End | Sym::Punct(b'(' | b';') => break,
                Sym::Word if CODE.iter().any(|c| word(&n, c)) => return true,
                _ => {}
            }
        }
    }
}

/// Words that start the clause after a select list.
const CLAUSES: &[&[u8]] = &[
    b"FROM",
    b"WHERE",
    b"GROUP",
    b"HAVING",
    b"ORDER",
    b"LIMIT",
    b"UNION",
    b"EXCEPT",
    b"INTERSECT",
    b"WINDOW",
    b"PROCEDURE",
    b"RETURNING",
];

/// Keywords the classifier cares about. Everything else lexes as [`Sym::Word`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    // statement heads
    Select,
    Values,
    Table,
    With,
    Show,
    Desc,
    Describe,
    Explain,
    Help,
    Set,
    Use,
    Begin,
    Start,
    Commit,
    Rollback,
    Lock,
    Unlock,
    Prepare,
    Execute,
    Deallocate,
    Drop,
    Create,
    Kill,
    // used after a head
    Analyze,
    Autocommit,
    Binary,
    Binlog,
    Default,
    Delete,
    For,
    Global,
    Immediate,
    In,
    Insert,
    Into,
    Local,
    Log,
    Logs,
    Master,
    Mode,
    Next,
    Only,
    Or,
    Password,
    Persist,
    PersistOnly,
    Previous,
    Read,
    Replace,
    Role,
    Session,
    Share,
    SqlCalcFoundRows,
    Statement,
    Status,
    Tables,
    Temporary,
    To,
    Transaction,
    Update,
    Value,
    Warnings,
    Errors,
    Work,
    // functions (only when followed by `(`)
    GetLock,
    ReleaseLock,
    ReleaseAllLocks,
    IsUsedLock,
    IsFreeLock,
    LastInsertId,
    FoundRows,
    RowCount,
    Nextval,
    Lastval,
    Setval,
    ConnectionId,
    BinlogGtidPos,
}

/// Every keyword the classifier knows, as written in SQL (upper case).
const KEYWORDS: [(&[u8], Kw); 77] = [
    (b"SELECT", Kw::Select),
    (b"VALUES", Kw::Values),
    (b"TABLE", Kw::Table),
    (b"WITH", Kw::With),
    (b"SHOW", Kw::Show),
    (b"DESC", Kw::Desc),
    (b"DESCRIBE", Kw::Describe),
    (b"EXPLAIN", Kw::Explain),
    (b"HELP", Kw::Help),
    (b"SET", Kw::Set),
    (b"USE", Kw::Use),
    (b"BEGIN", Kw::Begin),
    (b"START", Kw::Start),
    (b"COMMIT", Kw::Commit),
    (b"ROLLBACK", Kw::Rollback),
    (b"LOCK", Kw::Lock),
    (b"UNLOCK", Kw::Unlock),
    (b"PREPARE", Kw::Prepare),
    (b"EXECUTE", Kw::Execute),
    (b"DEALLOCATE", Kw::Deallocate),
    (b"DROP", Kw::Drop),
    (b"CREATE", Kw::Create),
    (b"KILL", Kw::Kill),
    (b"ANALYZE", Kw::Analyze),
    (b"AUTOCOMMIT", Kw::Autocommit),
    (b"BINARY", Kw::Binary),
    (b"BINLOG", Kw::Binlog),
    (b"DEFAULT", Kw::Default),
    (b"DELETE", Kw::Delete),
    (b"FOR", Kw::For),
    (b"GLOBAL", Kw::Global),
    (b"IMMEDIATE", Kw::Immediate),
    (b"IN", Kw::In),
    (b"INSERT", Kw::Insert),
    (b"INTO", Kw::Into),
    (b"LOCAL", Kw::Local),
    (b"LOG", Kw::Log),
    (b"LOGS", Kw::Logs),
    (b"MASTER", Kw::Master),
    (b"MODE", Kw::Mode),
    (b"NEXT", Kw::Next),
    (b"ONLY", Kw::Only),
    (b"OR", Kw::Or),
    (b"PASSWORD", Kw::Password),
    (b"PERSIST", Kw::Persist),
    (b"PERSIST_ONLY", Kw::PersistOnly),
    (b"PREVIOUS", Kw::Previous),
    (b"READ", Kw::Read),
    (b"REPLACE", Kw::Replace),
    (b"ROLE", Kw::Role),
    (b"SESSION", Kw::Session),
    (b"SHARE", Kw::Share),
    (b"SQL_CALC_FOUND_ROWS", Kw::SqlCalcFoundRows),
    (b"STATEMENT", Kw::Statement),
    (b"STATUS", Kw::Status),
    (b"TABLES", Kw::Tables),
    (b"TEMPORARY", Kw::Temporary),
    (b"TO", Kw::To),
    (b"TRANSACTION", Kw::Transaction),
    (b"UPDATE", Kw::Update),
    (b"VALUE", Kw::Value),
    (b"WORK", Kw::Work),
    (b"WARNINGS", Kw::Warnings),
    (b"ERRORS", Kw::Errors),
    (b"GET_LOCK", Kw::GetLock),
    (b"RELEASE_LOCK", Kw::ReleaseLock),
    (b"RELEASE_ALL_LOCKS", Kw::ReleaseAllLocks),
    (b"IS_USED_LOCK", Kw::IsUsedLock),
    (b"IS_FREE_LOCK", Kw::IsFreeLock),
    (b"LAST_INSERT_ID", Kw::LastInsertId),
    (b"FOUND_ROWS", Kw::FoundRows),
    (b"ROW_COUNT", Kw::RowCount),
    (b"NEXTVAL", Kw::Nextval),
    (b"LASTVAL", Kw::Lastval),
    (b"SETVAL", Kw::Setval),
    (b"CONNECTION_ID", Kw::ConnectionId),
    (b"BINLOG_GTID_POS", Kw::BinlogGtidPos),
];

/// Slots of the keyword table; the hash below puts no two keywords in one slot (checked when
/// the table is built, and by a unit test).
const KW_SLOTS: usize = 256;

/// Where a word would sit in the keyword table: from its length and its first, middle and last
/// bytes, case folded (the multipliers were searched for a collision-free table). A few
/// operations instead of upper-casing every word and comparing it with every keyword of its
/// length — the lexer runs this on each identifier of each statement.
#[inline]
const fn kw_slot(w: &[u8]) -> usize {
    let n = w.len();
    let b0 = (w[0] | 0x20) as usize;
    let last = (w[n - 1] | 0x20) as usize;
    let mid = (w[n / 2] | 0x20) as usize;
    (n * 10 + b0 * 30 + last * 36 + mid * 39) % KW_SLOTS
}

/// Index into [`KEYWORDS`] + 1 per slot (0 = empty). Built at compile time, where a
/// collision fails the build.
static KW_TABLE: [u8; KW_SLOTS] = {
    let mut t = [0u8; KW_SLOTS];
    let mut i = 0;
    while i < KEYWORDS.len() {
        let slot = kw_slot(KEYWORDS[i].0);
        assert!(t[slot] == 0, "keyword table collision");
        t[slot] = (i + 1) as u8;
        i += 1;
    }
    t
};

/// The flag a call of the built-in function `k` sets (`k(`), if the rules look at it.
fn call_flag(k: Kw) -> Flags {
    match k {
        Kw::GetLock | Kw::ReleaseLock | Kw::ReleaseAllLocks | Kw::IsUsedLock | Kw::IsFreeLock => {
            Flags::GET_LOCK
        }
        Kw::LastInsertId => Flags::LAST_INSERT_ID,
        Kw::FoundRows => Flags::FOUND_ROWS,
        Kw::RowCount => Flags::ROW_COUNT,
        Kw::Nextval | Kw::Lastval | Kw::Setval => Flags::SEQUENCE,
        Kw::ConnectionId => Flags::CONNECTION_ID,
        Kw::BinlogGtidPos => Flags::MASTER_STATUS,
        _ => Flags::empty(),
    }
}

fn keyword(w: &[u8]) -> Sym {
    if w.len() < 2 || w[0].is_ascii_digit() {
        return Sym::Word;
    }
    match KW_TABLE[kw_slot(w)] {
        0 => Sym::Word,
        i => {
            let (kw, k) = KEYWORDS[usize::from(i) - 1];
            if kw.eq_ignore_ascii_case(w) {
                Sym::Kw(k)
            } else {
                Sym::Word
            }
        }
    }
}

/// One lexical token, with everything the rules need folded in so history comparisons are
/// plain `==`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    /// Placeholder in the token history.
    None,
    End,
    Kw(Kw),
    Word,
    /// `` `ident` ``
    QIdent,
    /// `'...'` or `"..."`
    Str,
    /// `@name`, `@'name'`, `` @`name` ``
    UserVar,
    /// `@@[scope.]name`, and which of the names the rules care about it is.
    SysVar {
        autocommit: bool,
        diagnostics: bool,
        /// `@@identity`, `@@last_insert_id`, `@@insert_id`: about the session's inserts, so
        /// only right on the connection that ran them.
        last_insert_id: bool,
        /// `@@gtid_binlog_pos`, `@@gtid_binlog_state`, `@@gtid_current_pos`: the primary's.
        binlog: bool,
    },
    /// `:=`
    Assign,
    Punct(u8),
}

#[derive(Clone, Copy)]
struct Tok {
    sym: Sym,
    start: usize,
    end: usize,
}

/// Identifier bytes: ASCII alphanumerics, `_`, `$` and any non-ASCII byte (MySQL allows
/// UTF-8 identifiers). A table because this test runs on every byte of every word.
static IDENT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn is_ident(b: u8) -> bool {
    IDENT[b as usize]
}

/// `information_schema`'s tables of variables: `GLOBAL_VARIABLES`, `SESSION_VARIABLES`, and
/// MariaDB's `SYSTEM_VARIABLES` (both values of each).
fn variables_table(word: &[u8]) -> bool {
    [
        &b"GLOBAL_VARIABLES"[..],
        b"SESSION_VARIABLES",
        b"SYSTEM_VARIABLES",
    ]
    .iter()
    .any(|t| word.eq_ignore_ascii_case(t))
}

/// The variables whose values are the primary's binlog position (see [`Flags::MASTER_STATUS`]).
const POSITION_VARIABLES: [&[u8]; 3] = [
    b"gtid_binlog_pos",
    b"gtid_binlog_state",
    b"gtid_current_pos",
];

/// Whether a string literal of the statement lexed by `l` names one of the
/// [`POSITION_VARIABLES`], alone or as a `LIKE` pattern (`'gtid%'`, `'GTID\_BINLOG\_POS'`),
/// or a prepared statement's parameter may (`?`). Any literal counts, wherever it stands:
/// naming such a variable in a statement that reads variables and wanting another server's
/// value of it is too unlikely to matter. Not seen: names in `RLIKE` patterns, with another
/// `LIKE … ESCAPE`, or split over adjacent literals (`'gtid' '_binlog_pos'`).
fn names_position_variable(mut l: Lexer<'_>) -> bool {
    loop {
        let t = l.next();
        match t.sym {
            Sym::End | Sym::Punct(b';') => return false,
            Sym::Punct(b'?') => return true,
            Sym::Str => {
                let body = &l.s[t.start + 1..t.end - 1];
                if POSITION_VARIABLES.iter().any(|name| like(body, name)) {
                    return true;
                }
            }
            _ => {}
        }
    }
}

/// Whether `name` (lowercase ASCII, at most 62 bytes) matches the body of a quoted literal
/// read as a case-insensitive `LIKE` pattern with `\` as its escape. Tracks the set of
/// positions in `name` the pattern can have reached as a bit mask, so a long pattern costs
/// one step per byte and never backtracks. Escapes are read loosely (`\n` as `n`, `''` as a
/// quote in either kind of literal): a wrong match only sends a read to the primary.
fn like(pattern: &[u8], name: &[u8]) -> bool {
    let n = name.len();
    debug_assert!(n <= 62);
    let all = (1u64 << (n + 1)) - 1;
    // Bit i: `name[..i]` matched so far.
    let mut at = 1u64;
    let mut i = 0;
    while i < pattern.len() && at != 0 {
        let b = pattern[i];
        i += 1;
        at = match b {
            b'%' => all & !((at & at.wrapping_neg()) - 1),
            b'_' => (at << 1) & all,
            _ => {
                let c = match b {
                    // The literal's `\x` and `\\x` both stand for a plain `x` (the server
                    // keeps the backslash of `\%` and `\_` for `LIKE` to read); a doubled
                    // quote is one quote.
                    b'\\' => {
                        if pattern.get(i) == Some(&b'\\') {
                            i += 1;
                        }
                        let Some(&c) = pattern.get(i) else {
                            return false;
                        };
                        i += 1;
                        c
                    }
                    b'\'' | b'"' if pattern.get(i) == Some(&b) => {
                        i += 1;
                        b
                    }
                    _ => b,
                };
                let c = c.to_ascii_lowercase();
                let mut next = 0;
                for (k, &x) in name.iter().enumerate() {
                    if x == c && at & (1 << k) != 0 {
                        next |= 1 << (k + 1);
                    }
                }
                next
            }
        };
    }
    at & (1 << n) != 0
}

/// Splits the input into tokens, skipping whitespace and comments. Cloning it is how the
/// classifier looks ahead.
#[derive(Clone)]
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    /// Inside `/*! ... */`: the next `*/` closes it.
    in_exec: bool,
    /// An unterminated string, identifier or comment was met; the statement is malformed.
    broken: bool,
    /// Still before the first keyword, where Atlas hints count.
    collect_hints: bool,
    hints: Flags,
    /// The previous token was a quoted string or identifier, so `@` is the `user@host`
    /// separator rather than a user variable.
    after_quoted: bool,
}

/// The name of the system variable referred to from `i` on (just past `@@`), and where the
/// reference ends: `name` or `` `name` ``, alone or after a scope and a dot (`session.name`,
/// `global . name`: the server takes spaces around the dot, and quotes on the name only).
/// `None` when the name's quote never closes.
fn sys_var_name(s: &[u8], i: usize) -> Option<(&[u8], usize)> {
    fn name_at(s: &[u8], from: usize) -> Option<(&[u8], usize)> {
        if s.get(from) != Some(&b'`') {
            let len = s[from..].iter().take_while(|b| is_ident(**b)).count();
            return Some((&s[from..from + len], from + len));
        }
        // A doubled quote is part of the name, which then matches none the proxy looks for.
        let mut j = from + 1;
        loop {
            j += memchr::memchr(b'`', s.get(j..)?)?;
            if s.get(j + 1) != Some(&b'`') {
                return Some((&s[from + 1..j], j + 1));
            }
            j += 2;
        }
    }
    let after_space = |from: usize| {
        from + s[from..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count()
    };
    let (first, end) = name_at(s, i)?;
    let dot = after_space(end);
    if s.get(dot) == Some(&b'.') && s.get(i) != Some(&b'`') {
        return name_at(s, after_space(dot + 1));
    }
    Some((first, end))
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer {
            s,
            pos: 0,
            in_exec: false,
            broken: false,
            collect_hints: true,
            hints: Flags::empty(),
            after_quoted: false,
        }
    }

    fn next(&mut self) -> Tok {
        self.skip_trivia();
        let s = self.s;
        let start = self.pos;
        let Some(&b) = s.get(start) else {
            return Tok {
                sym: Sym::End,
                start,
                end: start,
            };
        };
        let sym = match b {
            b'\'' | b'"' | b'`' => {
                if self.skip_quoted(b) {
                    if b == b'`' {
                        Sym::QIdent
                    } else {
                        Sym::Str
                    }
                } else {
                    Sym::End
                }
            }
            b'@' => self.at_sign(),
            b':' if s.get(start + 1) == Some(&b'=') => {
                self.pos += 2;
                Sym::Assign
            }
            _ if is_ident(b) => {
                let mut i = start + 1;
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
                self.pos = i;
                keyword(&s[start..i])
            }
            _ => {
                self.pos += 1;
                Sym::Punct(b)
            }
        };
        self.after_quoted = matches!(sym, Sym::Str | Sym::QIdent);
        let sym = match sym {
            Sym::QIdent => self.quoted_call(start),
            sym => sym,
        };
        Tok {
            sym,
            start,
            end: self.pos,
        }
    }

    /// A backtick-quoted name right before `(` is a call, and the server runs the built-in of
    /// that name (`` `get_lock`('a', 0) ``): the keyword of a function the rules look at, so
    /// the quotes do not hide it. Any other quoted name stays [`Sym::QIdent`]. Only the
    /// `QIdent` at `start`, which the lexer has just moved past.
    fn quoted_call(&self, start: usize) -> Sym {
        let name = &self.s[start + 1..self.pos - 1];
        let Sym::Kw(k) = keyword(name) else {
            return Sym::QIdent;
        };
        let function = !call_flag(k).is_empty();
        let mut ahead = self.clone();
        ahead.skip_trivia();
        if function && self.s.get(ahead.pos) == Some(&b'(') {
            Sym::Kw(k)
        } else {
            Sym::QIdent
        }
    }

    /// Moves past a quoted run starting at `self.pos`. Backticks only escape by doubling;
    /// quotes also take backslash escapes. Returns false (and marks the input broken) if the
    /// run never closes.
    fn skip_quoted(&mut self, q: u8) -> bool {
        let s = self.s;
        let mut i = self.pos + 1;
        while let Some(rest) = s.get(i..) {
            let hit = if q == b'`' {
                memchr::memchr(q, rest)
            } else {
                memchr::memchr2(q, b'\\', rest)
            };
            let Some(k) = hit else { break };
            let j = i + k;
            if s[j] != q {
                // A backslash: the next byte is escaped.
                i = j + 2;
            } else if s.get(j + 1) == Some(&q) {
                i = j + 2;
            } else {
                self.pos = j + 1;
                return true;
            }
        }
        self.broken = true;
        self.pos = s.len();
        false
    }

    fn at_sign(&mut self) -> Sym {
        let s = self.s;
        let p = self.pos;
        if s.get(p + 1) == Some(&b'@') {
            let Some((name, end)) = sys_var_name(s, p + 2) else {
                // An unterminated quote, as `skip_quoted` takes one.
                self.broken = true;
                self.pos = s.len();
                return Sym::End;
            };
            self.pos = end;
            return Sym::SysVar {
                autocommit: name.eq_ignore_ascii_case(b"autocommit"),
                diagnostics: name.eq_ignore_ascii_case(b"warning_count")
                    || name.eq_ignore_ascii_case(b"error_count"),
                last_insert_id: name.eq_ignore_ascii_case(b"identity")
                    || name.eq_ignore_ascii_case(b"last_insert_id")
                    || name.eq_ignore_ascii_case(b"insert_id"),
                binlog: name.eq_ignore_ascii_case(b"gtid_binlog_pos")
                    || name.eq_ignore_ascii_case(b"gtid_binlog_state")
                    || name.eq_ignore_ascii_case(b"gtid_current_pos"),
            };
        }
        if self.after_quoted {
            self.pos = p + 1;
            return Sym::Punct(b'@');
        }
        match s.get(p + 1) {
            Some(&q @ (b'\'' | b'"' | b'`')) => {
                self.pos = p + 1;
                if self.skip_quoted(q) {
                    Sym::UserVar
                } else {
                    Sym::End
                }
            }
            Some(&c) if is_ident(c) || c == b'.' => {
                let mut i = p + 2;
                while i < s.len() && (is_ident(s[i]) || s[i] == b'.') {
                    i += 1;
                }
                self.pos = i;
                Sym::UserVar
            }
            _ => {
                self.pos = p + 1;
                Sym::Punct(b'@')
            }
        }
    }

    fn skip_trivia(&mut self) {
        let s = self.s;
        loop {
            let Some(&b) = s.get(self.pos) else {
                if self.in_exec {
                    self.broken = true;
                    self.in_exec = false;
                }
                return;
            };
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'#' => self.skip_line(),
                // `--` is only a comment when followed by whitespace, a control character or
                // the end: `1--1` is arithmetic.
                b'-' if s.get(self.pos + 1) == Some(&b'-')
                    && !matches!(s.get(self.pos + 2), Some(&c) if c > b' ') =>
                {
                    self.skip_line()
                }
                b'/' if s.get(self.pos + 1) == Some(&b'*') => {
                    let rest = &s[self.pos + 2..];
                    if rest.first() == Some(&b'!') {
                        self.enter_exec(3);
                    } else if rest.starts_with(b"M!") {
                        self.enter_exec(4);
                    } else if let Some(i) = rest.windows(2).position(|w| w == b"*/") {
                        if self.collect_hints {
                            self.hints |= hint(&rest[..i]);
                        }
                        self.pos += 2 + i + 2;
                    } else {
                        self.broken = true;
                        self.pos = s.len();
                        return;
                    }
                }
                b'*' if self.in_exec && s.get(self.pos + 1) == Some(&b'/') => {
                    self.in_exec = false;
                    self.pos += 2;
                }
                _ => return,
            }
        }
    }

    fn skip_line(&mut self) {
        match self.s[self.pos..].iter().position(|&b| b == b'\n') {
            Some(i) => self.pos += i + 1,
            None => self.pos = self.s.len(),
        }
    }

    /// The server runs the body of an executable comment (when its optional version number is
    /// not newer than the server, which we cannot know, so always), so lex it as code.
    fn enter_exec(&mut self, opener: usize) {
        self.pos += opener;
        let mut digits = 0;
        while digits < 6 && self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
            digits += 1;
        }
        self.in_exec = true;
    }
}

fn hint(comment: &[u8]) -> Flags {
    let t = comment.trim_ascii();
    if t.eq_ignore_ascii_case(b"master") {
        Flags::HINT_MASTER
    } else if t.eq_ignore_ascii_case(b"slave") {
        Flags::HINT_SLAVE
    } else {
        Flags::empty()
    }
}

/// Which clause-level rules apply to the tokens after the head.
#[derive(Clone, Copy)]
struct Ctx {
    /// `INTO` means SELECT ... INTO.
    read: bool,
    /// `x = ...` at top level is an assignment.
    set: bool,
}

const PLAIN: Ctx = Ctx {
    read: false,
    set: false,
};
const READ: Ctx = Ctx {
    read: true,
    set: false,
};
const SET: Ctx = Ctx {
    read: false,
    set: true,
};

enum Ended {
    Semi,
    Eof,
}

struct Classifier<'a> {
    lx: Lexer<'a>,
    flags: Flags,
    /// The last three tokens of the current statement, most recent first.
    hist: [Sym; 3],
    depth: u32,
    /// Inside the variable list after `INTO`.
    into_list: bool,
    /// The last statement commits implicitly (see [`Flags::IMPLICIT_COMMIT`]).
    commits: bool,
    /// The current statement reads server variables by name (see [`Flags::BY_LITERAL`]).
    names_variables: bool,
}

impl<'a> Classifier<'a> {
    fn new(sql: &'a [u8]) -> Self {
        Classifier {
            lx: Lexer::new(sql),
            flags: Flags::empty(),
            hist: [Sym::None; 3],
            depth: 0,
            into_list: false,
            commits: false,
            names_variables: false,
        }
    }

    fn reset(&mut self) {
        self.hist = [Sym::None; 3];
        self.depth = 0;
        self.into_list = false;
        self.names_variables = false;
    }

    /// Classifies one statement and consumes it with its terminating `;`. `None` for an empty
    /// statement.
    fn statement(&mut self) -> (Option<StmtKind>, Ended) {
        self.reset();
        let start = self.lx.clone();
        let mut t = self.lx.next();
        let mut parens = false;
        while t.sym == Sym::Punct(b'(') {
            parens = true;
            t = self.lx.next();
        }
        self.lx.collect_hints = false;
        let nothing = parens.then_some(StmtKind::Write);
        match t.sym {
            Sym::End => return (nothing, Ended::Eof),
            Sym::Punct(b';') => return (nothing, Ended::Semi),
            _ => {}
        }
        let (kind, ctx) = self.head(t.sym);
        self.commits = self.commits_implicitly(t, kind);
        if t.sym == Sym::Word && self.leaves_connection_state(t) {
            self.flags |= Flags::CONNECTION_STATE;
        }
        if t.sym == Sym::Word && self.lx.s[t.start..t.end].eq_ignore_ascii_case(b"XA") {
            self.flags |= Flags::XA;
        }
        let kind = if t.sym == Sym::Word && self.gets_diagnostics(t) {
            self.flags |= Flags::USER_VAR_WRITE | Flags::USER_VAR_READ;
            StmtKind::GetDiagnostics
        } else {
            kind
        };
        let ended = loop {
            let t = self.lx.next();
            match t.sym {
                Sym::End => break Ended::Eof,
                Sym::Punct(b';') => break Ended::Semi,
                sym => {
                    let name = match sym {
                        Sym::Word => Some(&self.lx.s[t.start..t.end]),
                        Sym::QIdent => Some(&self.lx.s[t.start + 1..t.end - 1]),
                        _ => None,
                    };
                    if name.is_some_and(variables_table) {
                        self.names_variables = true;
                    }
                    self.token(sym, ctx)
                }
            }
        };
        if self.names_variables {
            self.flags |= Flags::BY_LITERAL;
            if names_position_variable(start) {
                self.flags |= Flags::MASTER_STATUS;
            }
        }
        (Some(kind), ended)
    }

    /// `GET DIAGNOSTICS` or `GET CURRENT DIAGNOSTICS` (`GET STACKED` only parses inside a
    /// handler, which the server runs by itself).
    fn gets_diagnostics(&self, t: Tok) -> bool {
        let is = |tok: &Tok, w: &[u8]| self.lx.s[tok.start..tok.end].eq_ignore_ascii_case(w);
        if !is(&t, b"GET") {
            return false;
        }
        let mut l = self.lx.clone();
        let mut next = l.next();
        if is(&next, b"CURRENT") {
            next = l.next();
        }
        next.sym == Sym::Word && is(&next, b"DIAGNOSTICS")
    }

    /// Whether a statement starting with the word `t` is one of [`Flags::CONNECTION_STATE`]'s
    /// (those keywords matter nowhere else, so they are not in the keyword table).
    fn leaves_connection_state(&self, t: Tok) -> bool {
        let is = |tok: &Tok, w: &[u8]| self.lx.s[tok.start..tok.end].eq_ignore_ascii_case(w);
        if is(&t, b"CALL") || is(&t, b"HANDLER") || is(&t, b"BACKUP") {
            return true;
        }
        if !is(&t, b"FLUSH") {
            return false;
        }
        let mut l = self.lx.clone();
        loop {
            let tok = l.next();
            match tok.sym {
                Sym::End | Sym::Punct(b';') => return false,
                Sym::Kw(Kw::Lock) => return true,
                Sym::Word if is(&tok, b"EXPORT") => return true,
                // Zeroes the connection's status counters: the session's next `SHOW STATUS`
                // must be read there (the tuning routine `FLUSH STATUS; <query>; SHOW STATUS`).
                Sym::Kw(Kw::Status) => return true,
                _ => {}
            }
        }
    }

    /// Whether a statement starting with `t`, of `kind`, commits implicitly (see
    /// [`Flags::IMPLICIT_COMMIT`]). `head` has run: a temporary table is already flagged.
    fn commits_implicitly(&self, t: Tok, kind: StmtKind) -> bool {
        const WORDS: &[&[u8]] = &[
            b"ALTER",
            b"RENAME",
            b"TRUNCATE",
            b"GRANT",
            b"REVOKE",
            b"OPTIMIZE",
            b"REPAIR",
            b"FLUSH",
            b"RESET",
            b"INSTALL",
            b"UNINSTALL",
            b"SHUTDOWN",
        ];
        let is = |tok: &Tok, w: &[u8]| self.lx.s[tok.start..tok.end].eq_ignore_ascii_case(w);
        let next = self.lx.clone().next();
        let next_is = |w: &[u8]| is(&next, w);
        match t.sym {
            Sym::Kw(Kw::Create) => !self.flags.contains(Flags::TEMP_TABLE),
            Sym::Kw(Kw::Drop) => kind == StmtKind::Write && !self.flags.contains(Flags::TEMP_TABLE),
            Sym::Kw(Kw::Analyze) => {
                matches!(next.sym, Sym::Kw(Kw::Table | Kw::Tables | Kw::Local))
                    || next_is(b"NO_WRITE_TO_BINLOG")
            }
            Sym::Kw(Kw::Set) => next.sym == Sym::Kw(Kw::Password),
            Sym::Word if WORDS.iter().any(|w| is(&t, w)) => true,
            Sym::Word if is(&t, b"CHECK") => matches!(next.sym, Sym::Kw(Kw::Table | Kw::Tables)),
            Sym::Word if is(&t, b"CACHE") => next_is(b"INDEX"),
            Sym::Word if is(&t, b"LOAD") => next_is(b"INDEX"),
            Sym::Word if is(&t, b"CHANGE") => next_is(b"MASTER"),
            Sym::Kw(Kw::Start) | Sym::Word
                if (is(&t, b"START") || is(&t, b"STOP"))
                    && (next_is(b"SLAVE") || next_is(b"REPLICA") || next_is(b"ALL")) =>
            {
                true
            }
            _ => matches!(kind, StmtKind::Begin { .. } | StmtKind::LockTables),
        }
    }

    /// `EXPLAIN [EXTENDED|PARTITIONS|FORMAT=…] INSERT|REPLACE|UPDATE|DELETE …`: nothing
    /// runs, but a server with `read_only` refuses even the plan of a write (1290).
    fn explains_a_write(&self) -> bool {
        let mut l = self.lx.clone();
        for _ in 0..4 {
            let t = l.next();
            match t.sym {
                Sym::Kw(Kw::Insert | Kw::Replace | Kw::Update | Kw::Delete) => return true,
                Sym::Word | Sym::Punct(b'=') => {}
                _ => return false,
            }
        }
        false
    }

    fn peek(&self) -> Sym {
        self.lx.clone().next().sym
    }

    fn peek2(&self) -> (Sym, Sym) {
        let mut l = self.lx.clone();
        let a = l.next().sym;
        (a, l.next().sym)
    }

    /// Decides the kind from the leading keyword(s). Only looks ahead (on a clone) except for
    /// `SET STATEMENT ... FOR`, whose prefix it consumes before classifying the inner
    /// statement; it loops rather than recursing so nested prefixes cannot exhaust the stack.
    fn head(&mut self, mut sym: Sym) -> (StmtKind, Ctx) {
        use StmtKind::*;
        loop {
            self.hist = [sym, Sym::None, Sym::None];
            let Sym::Kw(k) = sym else {
                return (Write, PLAIN);
            };
            let kind = match k {
                Kw::Select | Kw::Values | Kw::Table | Kw::Help => Read,
                Kw::With => self.with_kind(),
                Kw::Show => {
                    self.show_flags();
                    Read
                }
                Kw::Desc | Kw::Describe | Kw::Explain => {
                    if self.peek() == Sym::Kw(Kw::Analyze) || self.explains_a_write() {
                        Write
                    } else {
                        Read
                    }
                }
                Kw::Set => {
                    let mut l = self.lx.clone();
                    match l.next().sym {
                        Sym::Kw(Kw::Statement) => {
                            self.lx = l;
                            self.flags |= Flags::SET_STATEMENT;
                            match self.set_statement_prefix() {
                                Some(inner) => {
                                    sym = inner;
                                    continue;
                                }
                                None => Write,
                            }
                        }
                        Sym::Kw(Kw::Password) => Write,
                        Sym::Kw(Kw::Default) if l.next().sym == Sym::Kw(Kw::Role) => Write,
                        Sym::Kw(Kw::Transaction) => {
                            self.flags |= Flags::SET_TRANSACTION;
                            Set
                        }
                        Sym::Kw(Kw::Global | Kw::Session | Kw::Local)
                            if l.next().sym == Sym::Kw(Kw::Transaction) =>
                        {
                            self.flags |= Flags::SET_TRANSACTION;
                            Set
                        }
                        _ => Set,
                    }
                }
                Kw::Use => Use,
                Kw::Begin => match self.peek() {
                    Sym::End | Sym::Punct(b';') | Sym::Kw(Kw::Work) => Begin { read_only: false },
                    // BEGIN NOT ATOMIC ... END is a MariaDB compound statement.
                    _ => Write,
                },
                Kw::Start => {
                    if self.peek() == Sym::Kw(Kw::Transaction) {
                        Begin {
                            read_only: self.txn_read_only(),
                        }
                    } else {
                        Write
                    }
                }
                Kw::Commit => EndTransaction,
                Kw::Rollback => match self.peek2() {
                    (Sym::Kw(Kw::To), _) | (Sym::Kw(Kw::Work), Sym::Kw(Kw::To)) => Write,
                    _ => EndTransaction,
                },
                Kw::Lock | Kw::Unlock => match self.peek() {
                    Sym::Kw(Kw::Table | Kw::Tables) if k == Kw::Lock => LockTables,
                    Sym::Kw(Kw::Table | Kw::Tables) => UnlockTables,
                    // `LOCK INSTANCE FOR BACKUP` (MySQL's backup lock).
                    _ if k == Kw::Lock => {
                        self.flags |= Flags::CONNECTION_STATE;
                        Write
                    }
                    _ => Write,
                },
                Kw::Prepare | Kw::Deallocate => PrepareText,
                Kw::Execute => {
                    if self.peek() == Sym::Kw(Kw::Immediate) {
                        self.flags |= Flags::CONNECTION_STATE;
                        Write
                    } else {
                        PrepareText
                    }
                }
                Kw::Drop => match self.peek() {
                    Sym::Kw(Kw::Prepare) => PrepareText,
                    Sym::Kw(Kw::Temporary) => {
                        self.flags |= Flags::TEMP_TABLE;
                        Write
                    }
                    _ => Write,
                },
                Kw::Create => {
                    let mut l = self.lx.clone();
                    let mut t = l.next().sym;
                    if t == Sym::Kw(Kw::Or) && l.next().sym == Sym::Kw(Kw::Replace) {
                        t = l.next().sym;
                    }
                    if t == Sym::Kw(Kw::Temporary) {
                        self.flags |= Flags::TEMP_TABLE;
                    }
                    Write
                }
                Kw::Kill => Kill,
                _ => Write,
            };
            let ctx = match kind {
                Read => READ,
                Set => SET,
                _ => PLAIN,
            };
            return (kind, ctx);
        }
    }

    /// Consumes `var=val, ... FOR` and the inner statement's leading parentheses; returns the
    /// inner statement's first token, or `None` if the statement ends first (left unconsumed).
    fn set_statement_prefix(&mut self) -> Option<Sym> {
        self.hist = [Sym::None; 3];
        loop {
            let save = self.lx.clone();
            let sym = self.lx.next().sym;
            match sym {
                Sym::End | Sym::Punct(b';') => {
                    self.lx = save;
                    return None;
                }
                Sym::Kw(Kw::For) if self.depth == 0 => break,
                _ => self.token(sym, PLAIN),
            }
        }
        self.reset();
        loop {
            let save = self.lx.clone();
            let t = self.lx.next();
            match t.sym {
                Sym::Punct(b'(') => {}
                Sym::End | Sym::Punct(b';') => {
                    self.lx = save;
                    return None;
                }
                sym => {
                    if sym == Sym::Word && self.leaves_connection_state(t) {
                        self.flags |= Flags::CONNECTION_STATE;
                    }
                    return Some(sym);
                }
            }
        }
    }

    /// Finds the statement after `WITH`'s CTE list: the first SELECT/TABLE/VALUES or
    /// UPDATE/DELETE/INSERT/REPLACE outside the CTE bodies. A `(` right after a CTE body's `)`
    /// opens a parenthesised main query.
    fn with_kind(&self) -> StmtKind {
        let mut l = self.lx.clone();
        let mut depth = 0u32;
        let mut after_close = false;
        loop {
            let sym = l.next().sym;
            match sym {
                Sym::End | Sym::Punct(b';') => return StmtKind::Write,
                Sym::Punct(b'(') if depth == 0 && after_close => {
                    let mut t = l.next().sym;
                    while t == Sym::Punct(b'(') {
                        t = l.next().sym;
                    }
                    return match t {
                        Sym::Kw(Kw::Select | Kw::Values | Kw::Table) => StmtKind::Read,
                        _ => StmtKind::Write,
                    };
                }
                Sym::Punct(b'(') => depth += 1,
                Sym::Punct(b')') => depth = depth.saturating_sub(1),
                Sym::Kw(Kw::Select | Kw::Values | Kw::Table) if depth == 0 => {
                    return StmtKind::Read
                }
                Sym::Kw(Kw::Update | Kw::Delete | Kw::Insert | Kw::Replace) if depth == 0 => {
                    return StmtKind::Write
                }
                _ => {}
            }
            after_close = sym == Sym::Punct(b')') && depth == 0;
        }
    }

    fn show_flags(&mut self) {
        let (a, b) = self.peek2();
        let primary_only = matches!(
            (a, b),
            (Sym::Kw(Kw::Master), Sym::Kw(Kw::Status | Kw::Logs))
                | (Sym::Kw(Kw::Binary), Sym::Kw(Kw::Log | Kw::Logs))
                | (Sym::Kw(Kw::Binlog), _)
        );
        if primary_only {
            self.flags |= Flags::MASTER_STATUS;
        }
        // `SHOW [GLOBAL | SESSION | LOCAL] VARIABLES`.
        let mut l = self.lx.clone();
        let mut t = l.next();
        if matches!(t.sym, Sym::Kw(Kw::Global | Kw::Session | Kw::Local)) {
            t = l.next();
        }
        if t.sym == Sym::Word && self.lx.s[t.start..t.end].eq_ignore_ascii_case(b"VARIABLES") {
            self.names_variables = true;
        }
        // `SHOW COUNT(*) ...` is the only SHOW whose next word is followed by `(`.
        if matches!(
            (a, b),
            (Sym::Kw(Kw::Warnings | Kw::Errors), _) | (Sym::Word, Sym::Punct(b'('))
        ) {
            self.flags |= Flags::DIAGNOSTICS;
        }
    }

    fn txn_read_only(&self) -> bool {
        let mut l = self.lx.clone();
        let mut prev = Sym::None;
        loop {
            match l.next().sym {
                Sym::End | Sym::Punct(b';') => return false,
                Sym::Kw(Kw::Only) if prev == Sym::Kw(Kw::Read) => return true,
                sym => prev = sym,
            }
        }
    }

    /// Applies the clause-level rules to one token after the head, looking back at the token
    /// history instead of ahead, so each token is lexed once.
    fn token(&mut self, sym: Sym, ctx: Ctx) {
        let [h1, h2, h3] = self.hist;
        match sym {
            Sym::Punct(b'(') => {
                if let (Sym::Kw(k), false) = (h1, h2 == Sym::Punct(b'.')) {
                    self.flags |= call_flag(k);
                }
                self.depth += 1;
            }
            Sym::Punct(b')') => self.depth = self.depth.saturating_sub(1),
            Sym::Kw(Kw::Update | Kw::Share) if h1 == Sym::Kw(Kw::For) => {
                self.flags |= Flags::LOCKING_READ
            }
            Sym::Kw(Kw::Mode)
                if h1 == Sym::Kw(Kw::Share) && h2 == Sym::Kw(Kw::In) && h3 == Sym::Kw(Kw::Lock) =>
            {
                self.flags |= Flags::LOCKING_READ
            }
            Sym::Kw(Kw::For)
                if h1 == Sym::Kw(Kw::Value) && matches!(h2, Sym::Kw(Kw::Next | Kw::Previous)) =>
            {
                self.flags |= Flags::SEQUENCE
            }
            Sym::Kw(Kw::Into) if ctx.read => self.flags |= Flags::SELECT_INTO,
            Sym::Kw(Kw::SqlCalcFoundRows) => self.flags |= Flags::CALC_FOUND_ROWS,
            // Counts of the previous statement's messages, kept where it ran.
            Sym::SysVar {
                diagnostics: true, ..
            } if ctx.read => self.flags |= Flags::DIAGNOSTICS,
            Sym::SysVar {
                last_insert_id: true,
                ..
            } => self.flags |= Flags::LAST_INSERT_ID,
            Sym::SysVar { binlog: true, .. } if ctx.read => self.flags |= Flags::MASTER_STATUS,
            Sym::UserVar => {
                self.flags |= Flags::USER_VAR_READ;
                if self.into_list {
                    self.flags |= Flags::USER_VAR_WRITE;
                }
            }
            Sym::Assign | Sym::Punct(b'=') => {
                let set_target = ctx.set
                    && self.depth == 0
                    && matches!(
                        h2,
                        Sym::Kw(
                            Kw::Set
                                | Kw::Global
                                | Kw::Session
                                | Kw::Local
                                | Kw::Persist
                                | Kw::PersistOnly
                        ) | Sym::Punct(b',')
                    );
                if h1 == Sym::UserVar && (sym == Sym::Assign || set_target) {
                    self.flags |= Flags::USER_VAR_WRITE;
                }
                if set_target
                    && matches!(
                        h1,
                        Sym::Kw(Kw::Autocommit)
                            | Sym::SysVar {
                                autocommit: true,
                                ..
                            }
                    )
                {
                    self.flags |= Flags::AUTOCOMMIT_SET;
                }
            }
            _ => {}
        }
        self.into_list = match sym {
            Sym::Kw(Kw::Into) => ctx.read,
            Sym::UserVar | Sym::Punct(b',') => self.into_list,
            _ => false,
        };
        self.hist = [sym, h1, h2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StmtKind::*;

    type F = Flags;

    #[test]
    fn every_keyword_is_found_in_any_case_and_nothing_else_is() {
        for (w, k) in KEYWORDS {
            let lower = w.to_ascii_lowercase();
            assert_eq!(keyword(w), Sym::Kw(k));
            assert_eq!(keyword(&lower), Sym::Kw(k));
            // A word that differs (`SELECTS`, and `SELECTX` in the same slot by first and
            // last letters) is not mistaken for it, unless it is a keyword itself (`TABLES`).
            for extra in [b'S', b'X'] {
                let mut longer = w.to_vec();
                longer.push(extra);
                let expected = KEYWORDS
                    .iter()
                    .find(|(kw, _)| **kw == longer[..])
                    .map_or(Sym::Word, |(_, k)| Sym::Kw(*k));
                assert_eq!(keyword(&longer), expected);
            }
        }
        for w in [
            &b"sbtest1"[..],
            b"id",
            b"c",
            b"k",
            b"users",
            b"_",
            b"$x",
            b"\xc3\xa9t\xc3\xa9",
        ] {
            assert_eq!(keyword(w), Sym::Word, "{}", String::from_utf8_lossy(w));
        }
    }

    const R: StmtKind = Read;
    const W: StmtKind = Write;
    const UV: Flags = Flags::USER_VAR_READ;
    const UVW: Flags = Flags(Flags::USER_VAR_WRITE.0 | Flags::USER_VAR_READ.0);

    /// (statement, kind, flags) for real MySQL/MariaDB statements.
    const CASES: &[(&str, StmtKind, &[Flags])] = &[
        // plain reads
        ("SELECT 1", R, &[]),
        ("select * from t where id = 1", R, &[]),
        ("  \n\tSELECT 1", R, &[]),
        ("(SELECT 1) UNION (SELECT 2)", R, &[]),
        ("((select 1))", R, &[]),
        ("SELECT a FROM t WHERE b LIKE 'x%' ORDER BY a DESC LIMIT 10", R, &[]),
        ("SELECT JSON_EXTRACT(doc, '$.a') FROM t", R, &[]),
        ("SELECT CURRENT_USER()", R, &[]),
        ("VALUES ROW(1, 2), ROW(3, 4)", R, &[]),
        ("TABLE t ORDER BY id LIMIT 3", R, &[]),
        ("HELP 'select'", R, &[]),
        // locking reads, also nested and inside executable comments
        ("SELECT * FROM t FOR UPDATE", R, &[F::LOCKING_READ]),
        ("SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE", R, &[F::LOCKING_READ]),
        ("select * from t for share nowait", R, &[F::LOCKING_READ]),
        ("SELECT * FROM t WHERE id = 1 FOR UPDATE SKIP LOCKED", R, &[F::LOCKING_READ]),
        ("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)", R, &[F::LOCKING_READ]),
        ("(SELECT 1) FOR UPDATE", R, &[F::LOCKING_READ]),
        ("SELECT 1 /*!50000 FOR UPDATE */", R, &[F::LOCKING_READ]),
        ("SELECT * FROM t WHERE a = 'x' -- FOR UPDATE", R, &[]),
        ("select * from t where note = 'for update'", R, &[]),
        ("SELECT for_update FROM t", R, &[]),
        ("SELECT 1 # comment with 'quote\nFOR UPDATE", R, &[F::LOCKING_READ]),
        // SELECT ... INTO and user variables
        ("SELECT a INTO @x FROM t", R, &[F::SELECT_INTO, UVW]),
        ("SELECT a, b INTO @x, @y FROM t WHERE c = @z", R, &[F::SELECT_INTO, UVW]),
        ("SELECT 1 INTO @a", R, &[F::SELECT_INTO, UVW]),
        ("SELECT * INTO OUTFILE '/tmp/x' FROM t", R, &[F::SELECT_INTO]),
        ("SELECT * FROM t INTO DUMPFILE '/tmp/x'", R, &[F::SELECT_INTO]),
        ("SELECT @x", R, &[UV]),
        ("SELECT @a, @b", R, &[UV]),
        ("select 1 from dual where @x is null", R, &[UV]),
        ("SELECT @'quoted var'", R, &[UV]),
        ("SELECT @@version", R, &[]),
        ("SELECT @@session.autocommit", R, &[]),
        ("SELECT * FROM t WHERE x = @@autocommit", R, &[]),
        ("SELECT @x := 1", R, &[UVW]),
        ("SELECT @`weird name` := 2", R, &[UVW]),
        // functions that pin a statement to one backend
        ("SELECT GET_LOCK('a', 10)", R, &[F::GET_LOCK]),
        ("SELECT get_lock ('a', 10)", R, &[F::GET_LOCK]),
        ("SELECT GET_LOCK/* c */('a', 10)", R, &[F::GET_LOCK]),
        ("SELECT RELEASE_LOCK('a')", R, &[F::GET_LOCK]),
        ("SELECT RELEASE_ALL_LOCKS()", R, &[F::GET_LOCK]),
        ("SELECT IS_FREE_LOCK('a'), IS_USED_LOCK('a')", R, &[F::GET_LOCK]),
        ("SELECT 'GET_LOCK('", R, &[]),
        ("SELECT `get_lock`('a', 0)", R, &[F::GET_LOCK]),
        ("SELECT `GET_LOCK` /* c */ ('a', 0)", R, &[F::GET_LOCK]),
        ("SELECT `get_lock` FROM t", R, &[]),
        ("SELECT `get``lock`('a')", R, &[]),
        ("SELECT `row_count`(), `found_rows`()", R, &[F::ROW_COUNT, F::FOUND_ROWS]),
        ("SELECT `connection_id`()", R, &[F::CONNECTION_ID]),
        ("SELECT `last_insert_id`()", R, &[F::LAST_INSERT_ID]),
        ("SELECT `nextval`(s)", R, &[F::SEQUENCE]),
        ("SELECT get_lock_x FROM t", R, &[]),
        ("SELECT t.get_lock FROM t", R, &[]),
        ("SELECT db.get_lock('a')", R, &[]),
        ("SELECT LAST_INSERT_ID()", R, &[F::LAST_INSERT_ID]),
        ("select last_insert_id from t", R, &[]),
        ("SELECT FOUND_ROWS()", R, &[F::FOUND_ROWS]),
        ("SELECT ROW_COUNT()", R, &[F::ROW_COUNT]),
        ("SELECT foundrows_count FROM t", R, &[]),
        ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10", R, &[F::CALC_FOUND_ROWS]),
        ("SELECT NEXTVAL(s)", R, &[F::SEQUENCE]),
        ("SELECT NEXT VALUE FOR s", R, &[F::SEQUENCE]),
        ("SELECT PREVIOUS VALUE FOR s", R, &[F::SEQUENCE]),
        ("SELECT LASTVAL(s), SETVAL(s, 10)", R, &[F::SEQUENCE]),
        ("INSERT INTO t (a) VALUES (NEXT VALUE FOR s)", W, &[F::SEQUENCE]),
        // strings, identifiers and comments hide their content
        (r#"SELECT "a;b", 'c;d'"#, R, &[]),
        (r#"SELECT 'it''s', "say \"hi\"""#, R, &[]),
        (r"SELECT 'a\'; DELETE FROM t; --'", R, &[]),
        (r"SELECT '\\'", R, &[]),
        ("SELECT 1 /* ; DELETE FROM t */", R, &[]),
        ("SELECT 1 -- ; DELETE FROM t", R, &[]),
        ("SELECT 1 # ; DELETE\n", R, &[]),
        ("SELECT 1--1", R, &[]),
        ("SELECT `select`, `a``b` FROM `t;x`", R, &[]),
        ("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t", R, &[]),
        ("SELECT /*!*/ 1", R, &[]),
        ("SELECT 1 /* ; */ ; ", R, &[]),
        ("SELECT ';' ; ", R, &[]),
        // multi-statements
        ("SELECT 1; SELECT 2", R, &[F::MULTI_STATEMENT]),
        ("SELECT 1; DELETE FROM t", W, &[F::MULTI_STATEMENT]),
        ("SELECT 1;", R, &[]),
        ("SELECT 1; ; -- done\n", R, &[]),
        ("SELECT 1; /* trailing */ ;", R, &[]),
        (";SELECT 1", R, &[F::MULTI_STATEMENT]),
        ("SELECT 1; SELECT GET_LOCK('a',1)", R, &[F::MULTI_STATEMENT, F::GET_LOCK]),
        ("INSERT INTO t VALUES (1); SELECT LAST_INSERT_ID()", W, &[F::MULTI_STATEMENT, F::LAST_INSERT_ID]),
        ("SET @a = 1; SELECT @a", Set, &[F::MULTI_STATEMENT, UVW]),
        ("BEGIN NOT ATOMIC SELECT 1; END", W, &[F::MULTI_STATEMENT]),
        ("CREATE PROCEDURE p() BEGIN SELECT 1; END", W, &[F::MULTI_STATEMENT, F::IMPLICIT_COMMIT]),
        // Atlas hints
        ("/*master*/ SELECT 1", R, &[F::HINT_MASTER]),
        ("/* master */ select 1", R, &[F::HINT_MASTER]),
        ("/*MASTER*/SELECT 1", R, &[F::HINT_MASTER]),
        ("/* slave */ select 1", R, &[F::HINT_SLAVE]),
        ("select /*master*/ 1", R, &[]),
        ("/* a comment */ /*master*/ -- x\n SELECT 1", R, &[F::HINT_MASTER]),
        ("(/*master*/ SELECT 1)", R, &[F::HINT_MASTER]),
        ("/*masters*/ SELECT 1", R, &[]),
        ("SELECT 1; /*master*/ SELECT 2", R, &[F::MULTI_STATEMENT]),
        ("/*slave*/ UPDATE t SET a = 1", W, &[F::HINT_SLAVE]),
        // executable comments are code
        ("/*!40101 SET NAMES utf8mb4 */", Set, &[]),
        ("/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;", Set, &[UVW]),
        ("/*M!100100 SELECT GET_LOCK('x', 1) */", R, &[F::GET_LOCK]),
        ("/*!40000 ALTER TABLE t DISABLE KEYS */", W, &[F::IMPLICIT_COMMIT]),
        // WITH
        ("WITH c AS (SELECT 1) SELECT * FROM c", R, &[]),
        ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT * FROM c", R, &[]),
        ("WITH c AS (SELECT id FROM t) UPDATE t JOIN c USING (id) SET t.x = 1", W, &[]),
        ("WITH c AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM c)", W, &[]),
        ("WITH a AS (SELECT 1), b AS (SELECT 2) (SELECT * FROM a) UNION (SELECT * FROM b)", R, &[]),
        ("WITH c AS (SELECT 1) SELECT * FROM c FOR UPDATE", R, &[F::LOCKING_READ]),
        ("WITH c AS (SELECT 1)", W, &[]),
        // SHOW / DESCRIBE / EXPLAIN / ANALYZE
        ("SHOW TABLES", R, &[]),
        ("show full processlist", R, &[]),
        ("SHOW CREATE TABLE t", R, &[]),
        ("SHOW VARIABLES LIKE 'autocommit'", R, &[F::BY_LITERAL]),
        // Variables read by name: the position variables are the primary's.
        ("SHOW VARIABLES LIKE 'gtid_binlog_pos'", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("show global variables like 'GTID%'", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("SHOW SESSION VARIABLES LIKE 'gtid\\_current\\_pos'", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("SHOW LOCAL VARIABLES LIKE '%binlog_state'", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("SHOW VARIABLES LIKE 'gtid_b_n_og__os'", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("SHOW VARIABLES LIKE 'gtid_slave%'", R, &[F::BY_LITERAL]),
        ("SHOW VARIABLES LIKE 'gtid\\%'", R, &[F::BY_LITERAL]),
        ("SHOW VARIABLES LIKE 'gtid_binlog_po'", R, &[F::BY_LITERAL]),
        ("SHOW VARIABLES", R, &[F::BY_LITERAL]),
        ("SHOW VARIABLES WHERE Variable_name IN ('read_only', \"gtid_current_pos\")", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("SHOW STATUS LIKE 'gtid_binlog_pos'", R, &[]),
        ("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = 'GTID_BINLOG_POS'", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("SELECT * FROM information_schema.session_variables WHERE variable_name LIKE 'gtid%pos'", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("SELECT * FROM information_schema.`GLOBAL_VARIABLES`", R, &[F::BY_LITERAL]),
        ("SELECT GLOBAL_VALUE FROM information_schema.SYSTEM_VARIABLES WHERE VARIABLE_NAME = 'gtid_current_pos'", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = ?", R, &[F::BY_LITERAL, F::MASTER_STATUS]),
        ("SELECT ? FROM t", R, &[]),
        ("SELECT 'gtid_binlog_pos' FROM information_schema.GLOBAL_VARIABLES; SELECT 1", R, &[F::BY_LITERAL, F::MASTER_STATUS, F::MULTI_STATEMENT]),
        ("SELECT 1 FROM information_schema.GLOBAL_VARIABLES; SELECT 'gtid_binlog_pos'", R, &[F::BY_LITERAL, F::MULTI_STATEMENT]),
        ("SHOW MASTER STATUS", R, &[F::MASTER_STATUS]),
        ("SHOW MASTER LOGS", R, &[F::MASTER_STATUS]),
        ("SHOW BINARY LOGS", R, &[F::MASTER_STATUS]),
        ("SHOW BINARY LOG STATUS", R, &[F::MASTER_STATUS]),
        ("SHOW BINLOG STATUS", R, &[F::MASTER_STATUS]),
        ("SHOW BINLOG EVENTS IN 'mysql-bin.000001'", R, &[F::MASTER_STATUS]),
        ("SELECT BINLOG_GTID_POS('mysql-bin.000008', 57304084)", R, &[F::MASTER_STATUS]),
        ("SELECT binlog_gtid_pos ('f', 4)", R, &[F::MASTER_STATUS]),
        ("SELECT @@gtid_binlog_pos", R, &[F::MASTER_STATUS]),
        ("SELECT @@`gtid_binlog_pos`", R, &[F::MASTER_STATUS]),
        ("SELECT @@global.`gtid_current_pos`", R, &[F::MASTER_STATUS]),
        ("SELECT @@GLOBAL . gtid_binlog_state", R, &[F::MASTER_STATUS]),
        ("SELECT @@`gtid_binlog_pos``x`", R, &[]),
        ("SELECT @@GLOBAL.gtid_current_pos, @@gtid_binlog_state", R, &[F::MASTER_STATUS]),
        ("SELECT @@gtid_slave_pos", R, &[]),
        ("SELECT binlog_gtid_pos FROM t", R, &[]),
        ("SHOW SLAVE STATUS", R, &[]),
        ("SHOW WARNINGS", R, &[F::DIAGNOSTICS]),
        ("show warnings limit 1", R, &[F::DIAGNOSTICS]),
        ("SHOW ERRORS", R, &[F::DIAGNOSTICS]),
        ("SHOW COUNT(*) WARNINGS", R, &[F::DIAGNOSTICS]),
        ("SHOW COUNT ( * ) ERRORS", R, &[F::DIAGNOSTICS]),
        ("SELECT @@warning_count", R, &[F::DIAGNOSTICS]),
        ("SELECT @@session.error_count, @@warning_count", R, &[F::DIAGNOSTICS]),
        ("SELECT @@warning_counts", R, &[]),
        ("SHOW REPLICA STATUS", R, &[]),
        ("DESC t", R, &[]),
        ("DESCRIBE t", R, &[]),
        ("EXPLAIN SELECT * FROM t", R, &[]),
        ("EXPLAIN UPDATE t SET a = 1", W, &[]),
        ("explain extended delete from t", W, &[]),
        ("EXPLAIN FORMAT=JSON INSERT INTO t VALUES (1)", W, &[]),
        ("DESCRIBE REPLACE INTO t VALUES (1)", W, &[]),
        ("EXPLAIN SELECT * FROM t WHERE a IN (SELECT b FROM u)", R, &[]),
        ("EXPLAIN PARTITIONS SELECT 1", R, &[]),
        ("DESC update_log", R, &[]),
        ("EXPLAIN FORMAT=JSON SELECT 1", R, &[]),
        ("EXPLAIN ANALYZE SELECT * FROM t", W, &[]),
        ("ANALYZE SELECT * FROM t", W, &[]),
        ("ANALYZE TABLE t", W, &[F::IMPLICIT_COMMIT]),
        // writes, DDL and everything else
        ("INSERT INTO t VALUES (1)", W, &[]),
        ("INSERT INTO t SELECT * FROM u", W, &[]),
        ("UPDATE t SET a = @x WHERE id = 1", W, &[UV]),
        ("UPDATE t SET a = (@x := @x + 1)", W, &[UVW]),
        ("DELETE FROM t WHERE id = 1", W, &[]),
        ("REPLACE INTO t VALUES (1)", W, &[]),
        ("CREATE TABLE t (id INT, last_insert_id INT, found_rows INT)", W, &[F::IMPLICIT_COMMIT]),
        ("CREATE TEMPORARY TABLE tmp (id INT)", W, &[F::TEMP_TABLE]),
        ("create or replace temporary table tmp select 1", W, &[F::TEMP_TABLE]),
        ("DROP TEMPORARY TABLE IF EXISTS tmp", W, &[F::TEMP_TABLE]),
        ("DROP TABLE t", W, &[F::IMPLICIT_COMMIT]),
        ("ALTER TABLE t ADD COLUMN c INT", W, &[F::IMPLICIT_COMMIT]),
        ("TRUNCATE TABLE t", W, &[F::IMPLICIT_COMMIT]),
        ("RENAME TABLE a TO b", W, &[F::IMPLICIT_COMMIT]),
        ("CALL p(1, @out)", W, &[UV, F::CONNECTION_STATE]),
        ("call p()", W, &[F::CONNECTION_STATE]),
        (
            "SET STATEMENT max_statement_time=5 FOR CALL p()",
            W,
            &[F::SET_STATEMENT, F::CONNECTION_STATE],
        ),
        (
            "SET STATEMENT lock_wait_timeout=1 FOR FLUSH TABLES WITH READ LOCK",
            W,
            &[F::SET_STATEMENT, F::CONNECTION_STATE],
        ),
        ("LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t FIELDS TERMINATED BY ','", W, &[]),
        ("DO SLEEP(1)", W, &[]),
        ("XA START 'x'", W, &[F::XA]),
        ("XA END 'x'", W, &[F::XA]),
        ("xa prepare 'x'", W, &[F::XA]),
        ("XA COMMIT 'x'", W, &[F::XA]),
        ("XA RECOVER", W, &[F::XA]),
        ("SELECT xa FROM t", R, &[]),
        ("HANDLER t OPEN", W, &[F::CONNECTION_STATE]),
        ("HANDLER t READ FIRST", W, &[F::CONNECTION_STATE]),
        ("CHANGE MASTER TO MASTER_HOST='h', MASTER_PORT=3306", W, &[F::IMPLICIT_COMMIT]),
        ("START SLAVE", W, &[F::IMPLICIT_COMMIT]),
        ("FLUSH TABLES", W, &[F::IMPLICIT_COMMIT]),
        ("FLUSH LOGS", W, &[F::IMPLICIT_COMMIT]),
        ("FLUSH TABLES WITH READ LOCK", W, &[F::CONNECTION_STATE, F::IMPLICIT_COMMIT]),
        ("flush tables t1, t2 with read lock", W, &[F::CONNECTION_STATE, F::IMPLICIT_COMMIT]),
        ("FLUSH TABLES t FOR EXPORT", W, &[F::CONNECTION_STATE, F::IMPLICIT_COMMIT]),
        ("FLUSH STATUS", W, &[F::CONNECTION_STATE, F::IMPLICIT_COMMIT]),
        ("flush local status", W, &[F::CONNECTION_STATE, F::IMPLICIT_COMMIT]),
        ("BACKUP STAGE START", W, &[F::CONNECTION_STATE]),
        ("BACKUP LOCK t", W, &[F::CONNECTION_STATE]),
        ("OPTIMIZE TABLE t", W, &[F::IMPLICIT_COMMIT]),
        ("SHUTDOWN", W, &[F::IMPLICIT_COMMIT]),
        ("stop replica", W, &[F::IMPLICIT_COMMIT]),
        ("STOP ALL SLAVES", W, &[F::IMPLICIT_COMMIT]),
        ("ANALYZE LOCAL TABLE t", W, &[F::IMPLICIT_COMMIT]),
        ("ANALYZE NO_WRITE_TO_BINLOG TABLE t", W, &[F::IMPLICIT_COMMIT]),
        ("CHECKSUM TABLE t", W, &[]),
        ("GRANT SELECT ON db.* TO 'u'@'%'", W, &[F::IMPLICIT_COMMIT]),
        ("CREATE USER 'u'@'localhost' IDENTIFIED BY 'p'", W, &[F::IMPLICIT_COMMIT]),
        ("SAVEPOINT sp1", W, &[]),
        ("RELEASE SAVEPOINT sp1", W, &[]),
        ("ROLLBACK TO SAVEPOINT sp1", W, &[]),
        ("ROLLBACK WORK TO sp1", W, &[]),
        ("LOCK INSTANCE FOR BACKUP", W, &[F::CONNECTION_STATE]),
        ("EXECUTE IMMEDIATE 'DELETE FROM t'", W, &[F::CONNECTION_STATE]),
        ("SET PASSWORD = PASSWORD('x')", W, &[F::IMPLICIT_COMMIT]),
        ("SET PASSWORD FOR 'u'@'h' = 'x'", W, &[F::IMPLICIT_COMMIT]),
        ("SET DEFAULT ROLE ALL TO 'u'@'h'", W, &[]),
        ("'not a statement'", W, &[]),
        // SET
        ("SET NAMES utf8mb4", Set, &[]),
        ("SET NAMES 'utf8' COLLATE 'utf8_general_ci'", Set, &[]),
        ("SET CHARACTER SET utf8", Set, &[]),
        ("SET autocommit = 0", Set, &[F::AUTOCOMMIT_SET]),
        ("set @@session.autocommit=1", Set, &[F::AUTOCOMMIT_SET]),
        ("SET @@GLOBAL.autocommit = 0", Set, &[F::AUTOCOMMIT_SET]),
        ("SET SESSION autocommit := 1", Set, &[F::AUTOCOMMIT_SET]),
        ("SET NAMES utf8, autocommit = 1", Set, &[F::AUTOCOMMIT_SET]),
        ("SET @x = 1", Set, &[UVW]),
        ("SET @x := 1, @y = @x", Set, &[UVW]),
        ("SET @x = @@autocommit", Set, &[UVW]),
        ("SET @x = (SELECT GET_LOCK('a', 1))", Set, &[UVW, F::GET_LOCK]),
        ("SET GLOBAL max_connections = 100", Set, &[]),
        ("SET sql_mode = 'STRICT_ALL_TABLES'", Set, &[]),
        ("SET ROLE ALL", Set, &[]),
        ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", Set, &[F::SET_TRANSACTION]),
        ("SET TRANSACTION READ ONLY", Set, &[F::SET_TRANSACTION]),
        ("SET GLOBAL TRANSACTION ISOLATION LEVEL SERIALIZABLE", Set, &[F::SET_TRANSACTION]),
        ("SET STATEMENT max_statement_time=1 FOR SELECT 1", R, &[F::SET_STATEMENT]),
        (
            "SET STATEMENT max_statement_time=1, sort_buffer_size=1024 FOR UPDATE t SET a = 1",
            W,
            &[F::SET_STATEMENT],
        ),
        (
            "SET STATEMENT foreign_key_checks=0 FOR (SELECT * FROM t FOR UPDATE)",
            R,
            &[F::SET_STATEMENT, F::LOCKING_READ],
        ),
        ("SET STATEMENT x=1", W, &[F::SET_STATEMENT]),
        ("SET STATEMENT x=1 FOR SET STATEMENT y=2 FOR SELECT 1", R, &[F::SET_STATEMENT]),
        // USE, transactions, locks, prepared statements, KILL
        ("USE db", Use, &[]),
        ("use `my db`", Use, &[]),
        ("BEGIN", Begin { read_only: false }, &[F::IMPLICIT_COMMIT]),
        ("begin work", Begin { read_only: false }, &[F::IMPLICIT_COMMIT]),
        ("BEGIN;", Begin { read_only: false }, &[F::IMPLICIT_COMMIT]),
        ("START TRANSACTION", Begin { read_only: false }, &[F::IMPLICIT_COMMIT]),
        ("START TRANSACTION READ ONLY", Begin { read_only: true }, &[F::IMPLICIT_COMMIT]),
        (
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            Begin { read_only: true },
            &[F::IMPLICIT_COMMIT],
        ),
        // Implicit commits the table above does not show already; and look-alikes that
        // do not commit.
        ("CREATE DATABASE d", W, &[F::IMPLICIT_COMMIT]),
        ("create index i on t (c)", W, &[F::IMPLICIT_COMMIT]),
        ("DROP USER u", W, &[F::IMPLICIT_COMMIT]),
        ("REVOKE ALL ON *.* FROM u", W, &[F::IMPLICIT_COMMIT]),
        ("CHECK TABLE t", W, &[F::IMPLICIT_COMMIT]),
        ("REPAIR TABLE t", W, &[F::IMPLICIT_COMMIT]),
        ("CACHE INDEX t IN k", W, &[F::IMPLICIT_COMMIT]),
        ("LOAD INDEX INTO CACHE t", W, &[F::IMPLICIT_COMMIT]),
        ("RESET MASTER", W, &[F::IMPLICIT_COMMIT]),
        ("INSTALL SONAME 'ha_blackhole'", W, &[F::IMPLICIT_COMMIT]),
        ("UNINSTALL PLUGIN blackhole", W, &[F::IMPLICIT_COMMIT]),
        ("CREATE TABLE t (a INT); SELECT 1", W, &[F::IMPLICIT_COMMIT, F::MULTI_STATEMENT]),
        ("SELECT 1; CREATE TABLE t (a INT)", W, &[F::MULTI_STATEMENT]),
        ("CHECKSUM TABLE t", W, &[]),
        ("ANALYZE SELECT 1", W, &[]),
        ("LOAD DATA INFILE 'f' INTO TABLE t", W, &[]),
        ("CHANGE = 1", W, &[]),
        ("SET STATEMENT max_statement_time=1 FOR SELECT 1", R, &[F::SET_STATEMENT]),
        ("START TRANSACTION READ WRITE", Begin { read_only: false }, &[F::IMPLICIT_COMMIT]),
        ("COMMIT", EndTransaction, &[]),
        ("commit work and no chain no release", EndTransaction, &[]),
        ("ROLLBACK", EndTransaction, &[]),
        ("ROLLBACK AND CHAIN", EndTransaction, &[]),
        ("LOCK TABLES t READ, u WRITE", LockTables, &[F::IMPLICIT_COMMIT]),
        ("lock table t write", LockTables, &[F::IMPLICIT_COMMIT]),
        ("UNLOCK TABLES", UnlockTables, &[]),
        ("UNLOCK TABLE", UnlockTables, &[]),
        ("PREPARE s FROM 'select 1'", PrepareText, &[]),
        ("PREPARE s FROM @sql", PrepareText, &[UV]),
        ("EXECUTE s USING @a, @b", PrepareText, &[UV]),
        ("DEALLOCATE PREPARE s", PrepareText, &[]),
        ("DROP PREPARE s", PrepareText, &[]),
        ("KILL 42", Kill, &[]),
        ("SELECT @@identity", R, &[F::LAST_INSERT_ID]),
        ("SELECT @@session . `last_insert_id`", R, &[F::LAST_INSERT_ID]),
        ("SELECT @@`warning_count`", R, &[F::DIAGNOSTICS]),
        ("set @@session . autocommit=0", Set, &[F::AUTOCOMMIT_SET]),
        ("select @@session.last_insert_id, @@INSERT_ID", R, &[F::LAST_INSERT_ID]),
        ("SELECT @@identity_x", R, &[]),
        ("SELECT CONNECTION_ID()", R, &[F::CONNECTION_ID]),
        ("select connection_id() + 1 from t", R, &[F::CONNECTION_ID]),
        ("SELECT connection_id FROM t", R, &[]),
        ("INSERT INTO log VALUES (CONNECTION_ID())", W, &[F::CONNECTION_ID]),
        ("KILL QUERY 42", Kill, &[]),
        ("KILL CONNECTION 42", Kill, &[]),
        // empty
        ("", Empty, &[]),
        ("   \n\t ", Empty, &[]),
        ("/* only a comment */", Empty, &[]),
        ("-- just this", Empty, &[]),
        ("#", Empty, &[]),
        (";;", Empty, &[]),
        ("/*!*/", Empty, &[]),
        ("/*master*/", Empty, &[F::HINT_MASTER]),
        // malformed input is a write
        ("SELECT 'unterminated", W, &[]),
        ("SELECT \"unterminated", W, &[]),
        ("SELECT `unterminated", W, &[]),
        ("SELECT @@`unterminated", W, &[]),
        ("SELECT @@session.`unterminated", W, &[]),
        ("SELECT 1 /* unterminated", W, &[]),
        ("/* unterminated", W, &[]),
        ("/*! SELECT 1", W, &[]),
        ("SELECT @'unterminated", W, &[]),
        ("(", W, &[]),
    ];

    fn expected(flags: &[Flags]) -> Flags {
        flags.iter().fold(Flags::empty(), |a, &b| a | b)
    }

    #[test]
    fn table() {
        assert!(CASES.len() >= 100, "only {} cases", CASES.len());
        let mut failures = Vec::new();
        for &(sql, kind, flags) in CASES {
            let want = Classification {
                kind,
                flags: expected(flags),
            };
            let got = classify(sql.as_bytes());
            if got != want {
                failures.push(format!("{sql:?}\n   want {want:?}\n    got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn like_patterns_against_a_name() {
        let name = b"gtid_binlog_pos";
        for (pattern, matches) in [
            ("gtid_binlog_pos", true),
            ("GTID_BINLOG_POS", true),
            ("%", true),
            ("%%", true),
            ("gtid%", true),
            ("%pos", true),
            ("%binlog%", true),
            ("g%i%d%_%s", true),
            ("_______________", true),
            ("gtid\\_binlog\\_pos", true),
            ("gtid\\\\_binlog_pos", true),
            ("%\\%", false),
            ("gtid\\%", false),
            ("______________", false),
            ("________________", false),
            ("gtid_binlog_pos%x", false),
            ("", false),
            ("gtid_binlog_po", false),
            ("gtid_binlog_pos\\", false),
            ("it''s", false),
        ] {
            assert_eq!(like(pattern.as_bytes(), name), matches, "{pattern:?}");
        }
        assert!(like(b"it''s", b"it's"));
        assert!(like(b"x\"\"y", b"x\"y"));
        let long = "%".repeat(100_000) + "pos";
        assert!(like(long.as_bytes(), name));
    }

    #[test]
    fn lowercase_mariadb_marker_is_a_comment() {
        assert_eq!(classify(b"/*m!100100 SELECT 1 */").kind, Empty);
    }

    /// Case, surrounding whitespace and a trailing `;` never change the answer.
    #[test]
    fn insensitive_to_case_and_padding() {
        for &(sql, _, _) in CASES {
            let base = classify(sql.as_bytes());
            for variant in [
                // MariaDB only recognises an upper-case `/*M!`; a lower-case one is a comment.
                sql.to_ascii_lowercase().replace("/*m!", "/*M!"),
                sql.to_ascii_uppercase(),
                format!(" \r\n\t{sql}"),
                format!("{sql}\n ;  \n"),
            ] {
                assert_eq!(classify(variant.as_bytes()), base, "{sql:?} vs {variant:?}");
            }
        }
    }

    #[test]
    fn invalid_utf8() {
        let r = classify(b"SELECT \xff\xfe FROM t WHERE a = '\xc3\x28'");
        assert_eq!(r.kind, Read);
        assert_eq!(classify(b"\xff\xfe").kind, Write);
        assert_eq!(classify(b"USE \xff").kind, Use);
        assert_eq!(use_schema(b"USE \xff"), None);
        assert_eq!(classify(b"SELECT GET_LOCK\xff('a')").flags, Flags::empty());
    }

    #[test]
    fn use_schema_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("USE db", Some("db")),
            ("use `my db`", Some("my db")),
            ("USE `a``b`", Some("a`b")),
            ("/*master*/ USE db;", Some("db")),
            ("use DB -- comment", Some("DB")),
            ("USE db; SELECT 1", Some("db")),
            ("USE status", Some("status")),
            ("USE db extra", None),
            ("USE", None),
            ("USE 'db'", None),
            ("USE ``", None),
            ("USE `unterminated", None),
            ("SELECT 1", None),
            ("", None),
        ];
        for &(sql, want) in cases {
            assert_eq!(use_schema(sql.as_bytes()).as_deref(), want, "{sql:?}");
        }
    }

    #[test]
    fn kill_targets() {
        let k = |query_only, id| Some(KillTarget { query_only, id });
        let cases: &[(&str, Option<KillTarget>)] = &[
            ("KILL 42", k(false, Some(42))),
            ("kill connection 42;", k(false, Some(42))),
            ("KILL QUERY 7", k(true, Some(7))),
            ("/* c */ KILL HARD QUERY 7", k(true, Some(7))),
            ("KILL SOFT CONNECTION 7", k(false, Some(7))),
            ("KILL -1", k(false, Some(u64::MAX))),
            ("KILL CONNECTION_ID()", k(false, None)),
            ("KILL QUERY connection_id ( )", k(true, None)),
            ("KILL 99999999999999", k(false, Some(99_999_999_999_999))),
            ("KILL QUERY ID 5", None),
            ("KILL USER app", None),
            ("KILL 1+1", None),
            ("KILL abc", None),
            ("KILL", None),
            ("KILL 5 6", None),
            ("KILL 5; ;", k(false, Some(5))),
            ("KILL 5; SELECT 'after'", None),
            ("KILL 42 @@`", None),
            ("SELECT 5", None),
        ];
        for &(sql, want) in cases {
            assert_eq!(kill_target(sql.as_bytes()), want, "{sql:?}");
        }
    }

    #[test]
    fn kill_as_dynamic_sql_is_seen() {
        for sql in [
            "PREPARE k FROM 'KILL 5'",
            "prepare k from \"  /* c */ kill query 5\"",
            "EXECUTE IMMEDIATE 'KILL CONNECTION 5'",
        ] {
            assert!(dynamic_kill(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "PREPARE k FROM 'SELECT ''KILL'''",
            "PREPARE k FROM @q",
            "EXECUTE k USING @a",
            "EXECUTE IMMEDIATE 'SELECT 1'",
            "SELECT 'KILL 5'",
            "PREPARE k FROM 'KILL",
        ] {
            assert!(!dynamic_kill(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn get_diagnostics_names_its_targets() {
        use DiagValue::{Signed, Text, Unsigned};
        let t = |var: &str, value| DiagTarget {
            var: var.into(),
            value,
        };
        for sql in [
            "GET DIAGNOSTICS @n = NUMBER",
            "get current diagnostics condition 2 @e = MYSQL_ERRNO",
            "/* c */ GET DIAGNOSTICS @r = ROW_COUNT;",
        ] {
            let c = classify(sql.as_bytes());
            assert_eq!(c.kind, StmtKind::GetDiagnostics, "{sql}");
            assert!(c.flags.contains(Flags::USER_VAR_WRITE), "{sql}");
        }
        for sql in ["GET STACKED DIAGNOSTICS @n = NUMBER", "GET_LOCK('a', 1)"] {
            assert_ne!(
                classify(sql.as_bytes()).kind,
                StmtKind::GetDiagnostics,
                "{sql}"
            );
        }
        let cases: &[(&str, Option<Vec<DiagTarget>>)] = &[
            (
                "GET DIAGNOSTICS @n = NUMBER, @rc = ROW_COUNT",
                Some(vec![t("@n", Unsigned), t("@rc", Signed)]),
            ),
            (
                "GET CURRENT DIAGNOSTICS CONDITION 1 @e = mysql_errno, @`m m` = MESSAGE_TEXT, @'s' = RETURNED_SQLSTATE, @r = ROW_NUMBER;",
                Some(vec![
                    t("@e", Unsigned),
                    t("@`m m`", Text),
                    t("@'s'", Text),
                    t("@r", Unsigned),
                ]),
            ),
            ("GET DIAGNOSTICS CONDITION @c @m = MESSAGE_TEXT", None),
            ("GET DIAGNOSTICS n = NUMBER", None),
            ("GET DIAGNOSTICS @n = NUMBER @m", None),
            ("GET DIAGNOSTICS @n = NUMBER; SELECT 1", None),
            ("GET DIAGNOSTICS @n = 'NUMBER", None),
            ("GET DIAGNOSTICS", None),
            ("SET @n = NUMBER", None),
        ];
        for (sql, want) in cases {
            assert_eq!(&diagnostics_targets(sql.as_bytes()), want, "{sql:?}");
        }
        let same = |a: &str, b: &str| t(a, Text).same_var(&t(b, Unsigned));
        assert!(same("@x", "@X"));
        assert!(same("@`a``b`", "@'a`b'"));
        assert!(same("@'x''y'", "@\"x'y\""));
        assert!(!same("@x", "@xy"));
        assert!(!same("@`a``b`", "@`a``b``c`"));
    }

    #[test]
    fn connection_id_rewrites() {
        let id = "CAST(0000000042 AS UNSIGNED)";
        let cases: &[(&str, String)] = &[
            (
                "SELECT CONNECTION_ID()",
                format!("SELECT {id} AS `CONNECTION_ID()`"),
            ),
            (
                "select connection_id ( ), 1 from dual",
                format!("select {id} AS `connection_id ( )`, 1 from dual"),
            ),
            ("SELECT CONNECTION_ID() AS me", format!("SELECT {id} AS me")),
            ("SELECT CONNECTION_ID() me", format!("SELECT {id} me")),
            (
                "SELECT a FROM t WHERE b = CONNECTION_ID()",
                format!("SELECT a FROM t WHERE b = {id}"),
            ),
            (
                "SELECT CONNECTION_ID()+1, 'CONNECTION_ID()' FROM t",
                format!("SELECT {id}+1 AS `CONNECTION_ID()+1`, 'CONNECTION_ID()' FROM t"),
            ),
            (
                "SELECT 1, CONNECTION_ID() INTO @a, @b",
                format!("SELECT 1, {id} AS `CONNECTION_ID()` INTO @a, @b"),
            ),
            (
                "SELECT connection_id FROM t",
                "SELECT connection_id FROM t".into(),
            ),
            (
                "SELECT db.CONNECTION_ID()",
                "SELECT db.CONNECTION_ID()".into(),
            ),
            // Quoted, it is still the built-in; the column is named as written.
            (
                "SELECT `connection_id`() = CONNECTION_ID()",
                format!("SELECT {id} = {id} AS ```connection_id``() = CONNECTION_ID()`"),
            ),
            (
                "SELECT CONNECTION_ID(); SELECT CONNECTION_ID()",
                format!("SELECT {id} AS `CONNECTION_ID()`; SELECT {id} AS `CONNECTION_ID()`"),
            ),
        ];
        for (sql, want) in cases {
            let got = replace_session_fns(sql.as_bytes(), sql.as_bytes(), |f| {
                (f == SessionFn::ConnectionId).then(|| f.literal(42))
            });
            assert_eq!(String::from_utf8_lossy(&got), *want, "{sql:?}");
        }
    }

    #[test]
    fn found_rows_rewrites() {
        let value = |f: SessionFn| (f == SessionFn::FoundRows).then(|| f.literal(7));
        let fr = "IF(1, 7, ABS(-00000000000000000001))";
        let cases: &[(&str, String)] = &[
            (
                "SELECT FOUND_ROWS(), ROW_COUNT()",
                format!("SELECT {fr} AS `FOUND_ROWS()`, ROW_COUNT()"),
            ),
            (
                "SELECT found_rows() - 1 AS p",
                format!("SELECT {fr} - 1 AS p"),
            ),
            // A stored function of that name, and a keyword that is no call.
            ("SELECT db.FOUND_ROWS()", "SELECT db.FOUND_ROWS()".into()),
            (
                "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
                "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1".into(),
            ),
            // Later statements of a multi-statement see the server's count.
            (
                "SELECT FOUND_ROWS(); SELECT FOUND_ROWS()",
                format!("SELECT {fr} AS `FOUND_ROWS()`; SELECT FOUND_ROWS()"),
            ),
        ];
        for (sql, want) in cases {
            let got = replace_session_fns(sql.as_bytes(), sql.as_bytes(), value);
            assert_eq!(String::from_utf8_lossy(&got), *want, "{sql:?}");
        }
    }

    #[test]
    fn row_count_rewrites() {
        let value = |f| match f {
            SessionFn::RowCount => Some(SessionFn::RowCount.literal(-1)),
            SessionFn::ConnectionId | SessionFn::FoundRows => None,
        };
        let rc = "IF(1, -1, ABS(-00000000000000000001))";
        let cases: &[(&str, String)] = &[
            (
                "SELECT ROW_COUNT(), found_rows()",
                format!("SELECT {rc} AS `ROW_COUNT()`, found_rows()"),
            ),
            (
                "SELECT ROW_COUNT() > 0 AS changed, CONNECTION_ID()",
                format!("SELECT {rc} > 0 AS changed, CONNECTION_ID()"),
            ),
            // Only select items get an alias: the whole item, as written.
            (
                "INSERT INTO log VALUES ('upd', ROW_COUNT())",
                format!("INSERT INTO log VALUES ('upd', {rc})"),
            ),
            (
                "SELECT CONCAT('rows: ', ROW_COUNT()), 1",
                format!("SELECT CONCAT('rows: ', {rc}) AS `CONCAT('rows: ', ROW_COUNT())`, 1"),
            ),
            (
                "SELECT ROW_COUNT() /* c */ + `x``y`, -ROW_COUNT() FROM t",
                format!(
                    "SELECT {rc} /* c */ + `x``y` AS `ROW_COUNT() /* c */ + ``x````y```, -{rc} AS `-ROW_COUNT()` FROM t"
                ),
            ),
            (
                "SELECT CASE WHEN ROW_COUNT() > 0 THEN 1 END, ROW_COUNT() IS NULL",
                format!("SELECT CASE WHEN {rc} > 0 THEN 1 END, {rc} IS NULL AS `ROW_COUNT() IS NULL`"),
            ),
            (
                "SELECT ROW_COUNT() DIV 2, ROW_COUNT() * 1.5 FROM t",
                // (`1.5` ends like `5. y`, which has an alias: left without one.)
                format!("SELECT {rc} DIV 2 AS `ROW_COUNT() DIV 2`, {rc} * 1.5 FROM t"),
            ),
            // Items that have (or may have) an alias keep it; `end` is a valid one.
            (
                "SELECT ROW_COUNT() + 1 n, ROW_COUNT() 'm', ROW_COUNT() AS o",
                format!("SELECT {rc} + 1 n, {rc} 'm', {rc} AS o"),
            ),
            (
                "SELECT ROW_COUNT() end, ROW_COUNT() + 1 END, ROW_COUNT() + ? x, ROW_COUNT() + 5. y",
                format!("SELECT {rc} end, {rc} + 1 END, {rc} + ? x, {rc} + 5. y"),
            ),
            // An alias after a token of an executable comment would land inside it.
            (
                "SELECT ROW_COUNT() /*!99999 + 1 */",
                format!("SELECT {rc} /*!99999 + 1 */"),
            ),
            // A subquery's item and the item holding it, each named as written.
            (
                "SELECT a, (SELECT ROW_COUNT() + 1 FROM dual), c UNION SELECT 1, 2, 3",
                format!(
                    "SELECT a, (SELECT {rc} + 1 AS `ROW_COUNT() + 1` FROM dual) AS `(SELECT ROW_COUNT() + 1 FROM dual)`, c UNION SELECT 1, 2, 3"
                ),
            ),
            (
                "SELECT a FROM t WHERE id IN (1, ROW_COUNT())",
                format!("SELECT a FROM t WHERE id IN (1, {rc})"),
            ),
            ("SELECT row_count FROM t", "SELECT row_count FROM t".into()),
            ("SELECT db.ROW_COUNT()", "SELECT db.ROW_COUNT()".into()),
            // Only items of a select list.
            (
                "SELECT id FROM t ORDER BY id, ROW_COUNT()",
                format!("SELECT id FROM t ORDER BY id, {rc}"),
            ),
            ("DO 1, ROW_COUNT()", format!("DO 1, {rc}")),
            (
                "SELECT DISTINCT ROW_COUNT(), x FROM (SELECT ROW_COUNT()) d",
                format!(
                    "SELECT DISTINCT {rc} AS `ROW_COUNT()`, x FROM (SELECT {rc} AS `ROW_COUNT()`) d"
                ),
            ),
            (
                "DELETE FROM t RETURNING id, ROW_COUNT()",
                format!("DELETE FROM t RETURNING id, {rc} AS `ROW_COUNT()`"),
            ),
            // Later statements of a multi-statement see the server's count.
            (
                "SELECT ROW_COUNT(); SELECT ROW_COUNT()",
                format!("SELECT {rc} AS `ROW_COUNT()`; SELECT ROW_COUNT()"),
            ),
            // Stored code keeps its calls; a table made from a query does not.
            (
                "CREATE VIEW v AS SELECT ROW_COUNT() rc",
                "CREATE VIEW v AS SELECT ROW_COUNT() rc".into(),
            ),
            (
                "SET STATEMENT max_statement_time=0 FOR CREATE OR REPLACE DEFINER=a@b VIEW v AS SELECT ROW_COUNT()",
                "SET STATEMENT max_statement_time=0 FOR CREATE OR REPLACE DEFINER=a@b VIEW v AS SELECT ROW_COUNT()".into(),
            ),
            (
                "CREATE TABLE x AS SELECT ROW_COUNT() rc",
                format!("CREATE TABLE x AS SELECT {rc} rc"),
            ),
            (
                "alter procedure p comment 'x'",
                "alter procedure p comment 'x'".into(),
            ),
        ];
        for (sql, want) in cases {
            let got = replace_session_fns(sql.as_bytes(), sql.as_bytes(), value);
            assert_eq!(String::from_utf8(got).unwrap(), *want, "{sql}");
        }
        assert_eq!(
            SessionFn::ConnectionId.literal(12),
            "CAST(0000000012 AS UNSIGNED)"
        );
    }

    #[test]
    fn flags_api() {
        let f = Flags::GET_LOCK | Flags::SEQUENCE;
        assert!(f.contains(Flags::GET_LOCK));
        assert!(f.contains(Flags::GET_LOCK | Flags::SEQUENCE));
        assert!(!f.contains(Flags::GET_LOCK | Flags::TEMP_TABLE));
        assert!(f.intersects(Flags::GET_LOCK | Flags::TEMP_TABLE));
        assert_eq!(
            f.without(Flags::GET_LOCK | Flags::TEMP_TABLE),
            Flags::SEQUENCE
        );
        assert!(!f.is_empty());
        assert!(Flags::empty().is_empty());
        assert_eq!(format!("{f:?}"), "Flags(GET_LOCK | SEQUENCE)");
        let all = Flags::NAMES.iter().fold(0, |a, (f, _)| {
            assert_eq!(a & f.bits(), 0, "overlapping bit");
            a | f.bits()
        });
        assert_eq!(all.count_ones() as usize, Flags::NAMES.len());
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random bytes, random SQL-ish fragments and every prefix of every corpus statement must
    /// classify without panicking, and truncation mid-token must never turn a write-y or
    /// malformed prefix into something that panics `use_schema` either.
    #[test]
    fn never_panics() {
        const ALPHABET: &[u8] = b"'\"`\\/*!M-#@:=;()., \n\tSELECTFORUPDATEsetuse0123456789\xff\x80";
        const FRAGMENTS: &[&str] = &[
            "SELECT ",
            "SET ",
            "STATEMENT ",
            "FOR ",
            "WITH ",
            "(",
            ")",
            "'",
            "\"",
            "`",
            "/*",
            "*/",
            "/*!",
            "/*M!",
            "-- ",
            "#",
            "\n",
            "@",
            "@@",
            "@@`",
            "session . ",
            ".",
            ":=",
            "=",
            ";",
            "UPDATE ",
            "LOCK IN SHARE MODE ",
            "GET_LOCK(",
            "NEXT VALUE FOR ",
            "INTO @x ",
            "USE ",
            "BEGIN ",
            "START TRANSACTION ",
            "READ ONLY ",
            "ROLLBACK ",
            "TO ",
            "\\",
            "/*master*/",
            "SHOW ",
            "BINLOG ",
            "GET DIAGNOSTICS ",
            "CONDITION 1 ",
            "@m = MESSAGE_TEXT",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut buf = Vec::new();
        for round in 0..20_000 {
            buf.clear();
            let len = (rng.next() % 64) as usize;
            match round % 3 {
                0 => buf.extend((0..len).map(|_| rng.next() as u8)),
                1 => buf.extend((0..len).map(|_| ALPHABET[rng.next() as usize % ALPHABET.len()])),
                _ => {
                    for _ in 0..len / 4 {
                        buf.extend_from_slice(
                            FRAGMENTS[rng.next() as usize % FRAGMENTS.len()].as_bytes(),
                        );
                    }
                }
            }
            let c = classify(&buf);
            assert_eq!(classify(&buf), c, "not deterministic on {buf:?}");
            let _ = use_schema(&buf);
            let _ = kill_target(&buf);
            let _ = replace_session_fns(&buf, &buf, |f| Some(f.literal(7)));
            if diagnostics_targets(&buf).is_some() {
                assert_eq!(c.kind, StmtKind::GetDiagnostics, "{buf:?}");
            }
        }
        for &(sql, _, _) in CASES {
            for end in 0..=sql.len() {
                let _ = classify(&sql.as_bytes()[..end]);
                let _ = use_schema(&sql.as_bytes()[..end]);
            }
        }
    }
}
