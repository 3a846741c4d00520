//! Splits a `SET` statement into its assignments so each can be recorded as session state.
//!
//! Hand-written rather than `sqlparser`: MariaDB's `SET` has forms sqlparser rejects, and a
//! parse failure must never lose state. Anything not understood is reported as such and the
//! caller keeps the session on the connection that ran it.

/// What one assignment of a `SET` statement does to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// A session variable (or `NAMES`/`CHARACTER SET`, or `SESSION TRANSACTION ...`): replayable
    /// on another connection as `SET <text>`.
    Session { key: String, text: String },
    /// `GLOBAL`/`@@global.` or `PERSIST`: server-wide, nothing to carry.
    Global,
    /// `@user_var = ...`: lives on the connection that ran it.
    UserVar,
    /// `SET TRANSACTION ...` without `SESSION`, or `SET @@transaction_isolation = ...` (and
    /// `@@tx_isolation`, `@@transaction_read_only`, `@@tx_read_only`) without a scope:
    /// applies to the next transaction only, on that connection.
    NextTransaction,
    /// `SET PASSWORD`, `SET ROLE`, ... and anything unrecognised.
    Other,
}

/// Parses the assignments of `sql`, which must start (after comments) with `SET`.
pub fn parse(sql: &str) -> Vec<Assignment> {
    let body = strip_leading_comments(sql);
    let Some(rest) = strip_keyword(body, "SET") else {
        return vec![Assignment::Other];
    };
    let rest = rest.trim().trim_end_matches(';').trim();
    // TRANSACTION clauses contain commas of their own: they take the whole statement.
    let (scope, after_scope) = scope_prefix(rest);
    if let Some(tail) = strip_keyword(after_scope, "TRANSACTION") {
        return match scope {
            Scope::Global => vec![Assignment::Global],
            Scope::Session => split_top_level(tail.trim())
                .into_iter()
                .map(session_transaction)
                .collect(),
            Scope::None => vec![Assignment::NextTransaction],
        };
    }
    // A scope keyword also applies to the plain names after it in the statement, up to the
    // next keyword (`SET GLOBAL max_connections = 500, wait_timeout = 5` sets both
    // globally), as on MariaDB and MySQL.
    let mut scope = Scope::None;
    let mut assignments: Vec<Assignment> = split_top_level(rest)
        .into_iter()
        .map(|item| assignment(item, &mut scope))
        .collect();
    // A server reads every value before it assigns any (`SET a = 10, b = @@a` gives b the old
    // `a`); replayed one by one elsewhere, a later value would read what an earlier one set.
    // Such a statement keeps its connection instead.
    if assignments.iter().skip(1).any(reads_a_variable) {
        for a in &mut assignments {
            if matches!(a, Assignment::Session { .. }) {
                *a = Assignment::Other;
            }
        }
    }
    assignments
}

fn reads_a_variable(a: &Assignment) -> bool {
    matches!(a, Assignment::Session { text, .. }
        if text.split_once('=').is_some_and(|(_, value)| value.contains("@@")))
}

/// One characteristic of `SET SESSION TRANSACTION`, recorded under the variable it sets, so
/// that a later `SET SESSION TRANSACTION READ WRITE` (what JDBC's `setReadOnly(false)` sends)
/// does not replace an earlier isolation level.
fn session_transaction(part: &str) -> Assignment {
    let part = part.trim();
    let key = if strip_keyword(part, "ISOLATION").is_some() {
        "transaction_isolation"
    } else if strip_keyword(part, "READ").is_some() {
        "transaction_read_only"
    } else {
        return Assignment::Other;
    };
    Assignment::Session {
        key: key.into(),
        text: format!("SESSION TRANSACTION {part}"),
    }
}

/// Variables the server uses up with the next statement that needs them (`insert_id`,
/// `rand_seed*`), that the proxy keeps itself (`last_insert_id`), or whose effect is the
/// connection's own (`profiling` records that connection's statements, which `SHOW
/// PROFILES` lists): replaying them on another connection would apply them again or split
/// what they record, so they keep the session where they ran.
const NOT_REPLAYABLE: [&str; 6] = [
    "insert_id",
    "last_insert_id",
    "identity",
    "rand_seed1",
    "rand_seed2",
    "profiling",
];

/// The variables `SET TRANSACTION` sets, under their current names.
const TRANSACTION_CHARACTERISTICS: [&str; 2] = ["transaction_isolation", "transaction_read_only"];

/// Older names of variables, recorded under the current name so the last assignment wins.
fn canonical_name(name: String) -> String {
    match name.as_str() {
        "tx_isolation" => "transaction_isolation".into(),
        "tx_read_only" => "transaction_read_only".into(),
        _ => name,
    }
}

#[derive(Clone, Copy)]
enum Scope {
    None,
    Session,
    Global,
}

fn scope_prefix(s: &str) -> (Scope, &str) {
    for kw in ["SESSION", "LOCAL"] {
        if let Some(t) = strip_keyword(s, kw) {
            return (Scope::Session, t.trim_start());
        }
    }
    for kw in ["GLOBAL", "PERSIST", "PERSIST_ONLY"] {
        if let Some(t) = strip_keyword(s, kw) {
            return (Scope::Global, t.trim_start());
        }
    }
    (Scope::None, s)
}

/// One assignment; `inherited` is the scope of the statement's last keyword so far.
fn assignment(item: &str, inherited: &mut Scope) -> Assignment {
    let item = strip_leading_comments(item).trim_end();
    if item.is_empty() {
        return Assignment::Other;
    }
    let (own, rest) = scope_prefix(item);
    // `@@name` and `@name` keep their own meaning whatever came before.
    let scope = match own {
        Scope::None if rest.starts_with('@') => Scope::None,
        Scope::None => *inherited,
        _ => {
            *inherited = own;
            own
        }
    };
    // Always the session's, whatever scope came before.
    if strip_keyword(rest, "NAMES").is_some()
        || strip_keyword(rest, "CHARSET").is_some()
        || strip_keyword(rest, "CHARACTER").is_some()
    {
        return Assignment::Session {
            key: "names".into(),
            text: rest.to_string(),
        };
    }
    if matches!(scope, Scope::Global) {
        return Assignment::Global;
    }
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with("@@global.") {
        return Assignment::Global;
    }
    if rest.starts_with('@') && !rest.starts_with("@@") {
        return Assignment::UserVar;
    }
    for kw in ["PASSWORD", "ROLE", "DEFAULT"] {
        if strip_keyword(rest, kw).is_some() {
            return Assignment::Other;
        }
    }
    let unscoped_system = matches!(scope, Scope::None)
        && lower.starts_with("@@")
        && !lower.starts_with("@@session.")
        && !lower.starts_with("@@local.");
    let name_part = lower
        .strip_prefix("@@session.")
        .or_else(|| lower.strip_prefix("@@local."))
        .or_else(|| lower.strip_prefix("@@"))
        .unwrap_or(&lower);
    let name: String = name_part
        .trim_start_matches('`')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
        .collect();
    let after = name_part.trim_start_matches('`')[name.len()..]
        .trim_start_matches('`')
        .trim_start();
    if name.is_empty()
        || !(after.starts_with('=') || after.starts_with(":="))
        || NOT_REPLAYABLE.contains(&name.as_str())
    {
        return Assignment::Other;
    }
    let name = canonical_name(name);
    // `SET @@transaction_isolation = ...` (no scope) is the server's `SET TRANSACTION`: it
    // applies to the next transaction only, where `SET transaction_isolation = ...` sets the
    // session's.
    if unscoped_system && TRANSACTION_CHARACTERISTICS.contains(&name.as_str()) {
        return Assignment::NextTransaction;
    }
    let text = match scope {
        Scope::Session => format!("SESSION {rest}"),
        _ => rest.to_string(),
    };
    Assignment::Session { key: name, text }
}

/// Splits on commas outside quotes, backticks, parentheses and comments.
fn split_top_level(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut depth, mut start, mut i) = (0i32, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = s[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 1);
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&s[start.min(s.len())..]);
    out
}

fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix("/*") {
            match r.find("*/") {
                Some(e) => s = &r[e + 2..],
                None => return "",
            }
        } else if s.starts_with("-- ") || s.starts_with('#') {
            match s.find('\n') {
                Some(e) => s = &s[e + 1..],
                None => return "",
            }
        } else {
            return s;
        }
    }
}

/// `s` without a leading case-insensitive keyword followed by a non-identifier character.
fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    if !head.eq_ignore_ascii_case(kw) {
        return None;
    }
    let rest = &s[kw.len()..];
    match rest.bytes().next() {
        Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' => None,
        _ => Some(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::Assignment::*;
    use super::*;

    fn s(key: &str, text: &str) -> Assignment {
        Session {
            key: key.into(),
            text: text.into(),
        }
    }

    #[test]
    fn common_forms() {
        assert_eq!(
            parse("SET time_zone = '+08:00'"),
            vec![s("time_zone", "time_zone = '+08:00'")]
        );
        assert_eq!(
            parse("set names utf8mb4"),
            vec![s("names", "names utf8mb4")]
        );
        assert_eq!(
            parse("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'"),
            vec![s("names", "NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'")]
        );
        assert_eq!(
            parse("SET CHARACTER SET latin1"),
            vec![s("names", "CHARACTER SET latin1")]
        );
        assert_eq!(
            parse("SET @@session.sql_mode='ANSI', autocommit=0"),
            vec![
                s("sql_mode", "@@session.sql_mode='ANSI'"),
                s("autocommit", "autocommit=0")
            ]
        );
        assert_eq!(
            parse("SET SESSION wait_timeout=10"),
            vec![s("wait_timeout", "SESSION wait_timeout=10")]
        );
        assert_eq!(parse("SET @a = 1, @b := 2"), vec![UserVar, UserVar]);
        // A later value reading a variable: not replayable one by one.
        assert_eq!(
            parse("SET div_precision_increment = 10, sql_select_limit = @@div_precision_increment"),
            vec![Other, Other]
        );
        assert_eq!(
            parse("SET sql_select_limit = @@div_precision_increment, time_zone = '+00:00'"),
            vec![
                s(
                    "sql_select_limit",
                    "sql_select_limit = @@div_precision_increment"
                ),
                s("time_zone", "time_zone = '+00:00'")
            ]
        );
        assert_eq!(parse("SET GLOBAL max_connections=10"), vec![Global]);
        assert_eq!(parse("SET @@global.x=1"), vec![Global]);
        assert_eq!(parse("SET PASSWORD = PASSWORD('x')"), vec![Other]);
        assert_eq!(parse("SET insert_id = 7"), vec![Other]);
        assert_eq!(parse("SET @@session.last_insert_id = 7"), vec![Other]);
        assert_eq!(parse("SET profiling = 1"), vec![Other]);
        assert_eq!(
            parse("SET rand_seed1 = 1, rand_seed2 = 2"),
            vec![Other, Other]
        );
        assert_eq!(
            parse("SET sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES'), x = 'a,b'"),
            vec![
                s(
                    "sql_mode",
                    "sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')"
                ),
                s("x", "x = 'a,b'")
            ]
        );
    }

    #[test]
    fn transactions() {
        assert_eq!(
            parse("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY"),
            vec![
                s(
                    "transaction_isolation",
                    "SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
                ),
                s("transaction_read_only", "SESSION TRANSACTION READ ONLY")
            ]
        );
        assert_eq!(
            parse("set local transaction read write"),
            vec![s("transaction_read_only", "SESSION TRANSACTION read write")]
        );
        assert_eq!(
            parse("SET SESSION tx_isolation = 'READ-COMMITTED'"),
            vec![s(
                "transaction_isolation",
                "SESSION tx_isolation = 'READ-COMMITTED'"
            )]
        );
        assert_eq!(parse("SET SESSION TRANSACTION NONSENSE"), vec![Other]);
        assert_eq!(
            parse("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            vec![NextTransaction]
        );
        assert_eq!(parse("SET GLOBAL TRANSACTION READ ONLY"), vec![Global]);
        // With `@@` and no scope, the variables are `SET TRANSACTION` (MariaDB and MySQL).
        for q in [
            "SET @@tx_isolation = 'SERIALIZABLE'",
            "set @@TRANSACTION_READ_ONLY=1",
            "SET @@transaction_isolation='READ-COMMITTED', @@tx_read_only = 0",
        ] {
            assert!(
                parse(q).iter().all(|a| *a == NextTransaction),
                "{q}: {:?}",
                parse(q)
            );
        }
        assert_eq!(
            parse("SET tx_isolation = 'SERIALIZABLE'"),
            vec![s("transaction_isolation", "tx_isolation = 'SERIALIZABLE'")]
        );
        assert_eq!(
            parse(
                "SET @@session.tx_read_only = 1, @@local.transaction_isolation = 'READ-COMMITTED'"
            ),
            vec![
                s("transaction_read_only", "@@session.tx_read_only = 1"),
                s(
                    "transaction_isolation",
                    "@@local.transaction_isolation = 'READ-COMMITTED'"
                )
            ]
        );
        assert_eq!(
            parse("SET @@wait_timeout = 5"),
            vec![s("wait_timeout", "@@wait_timeout = 5")]
        );
    }

    /// Measured on MariaDB 10.11: a scope keyword carries over to the plain names after it,
    /// not to `@@name` or `@name`.
    #[test]
    fn a_scope_keyword_covers_the_names_after_it() {
        assert_eq!(
            parse("SET GLOBAL max_connections = 500, wait_timeout = 5"),
            vec![Global, Global]
        );
        assert_eq!(
            parse("SET GLOBAL a = 1, SESSION b = 2, c = 3"),
            vec![Global, s("b", "SESSION b = 2"), s("c", "SESSION c = 3")]
        );
        assert_eq!(
            parse("SET GLOBAL net_retry_count = 11, @@net_read_timeout = 33, @a = 1"),
            vec![
                Global,
                s("net_read_timeout", "@@net_read_timeout = 33"),
                UserVar
            ]
        );
        assert_eq!(
            parse("SET GLOBAL net_retry_count = 10, @@tx_isolation = 'SERIALIZABLE'"),
            vec![Global, NextTransaction]
        );
        assert_eq!(
            parse("SET @@global.a = 1, b = 2"),
            vec![Global, s("b", "b = 2")]
        );
        assert_eq!(
            parse("SET a = 1, /* all */ GLOBAL b = 2, c = 3, /* mine */ @@d = 4"),
            vec![s("a", "a = 1"), Global, Global, s("d", "@@d = 4")]
        );
    }

    #[test]
    fn junk_never_panics() {
        for q in [
            "SET",
            "SET ",
            "SET =",
            "SET 'x",
            "SET a",
            "SETX a=1",
            "SET `a` = 1",
            "SET /*",
        ] {
            let _ = parse(q);
        }
        assert_eq!(parse("SET `a` = 1"), vec![s("a", "`a` = 1")]);
    }
}
