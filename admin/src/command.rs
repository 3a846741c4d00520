//! The admin command language: Atlas 2.2.1's sixteen commands, rwproxy's additions, and the
//! handful of statements the stock `mysql`/`mariadb` client sends on its own.
//!
//! Atlas matched each command with an anchored Lua pattern over the lower-cased statement
//! (`lib/admin.lua`), so keywords are case-insensitive and separated by any whitespace. We keep
//! that, and add what Atlas lacked: a trailing `;`, hostnames and IPv6 in addresses, a default
//! port, and `@weight` on `ADD SLAVE` (Atlas issue #132).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::AdminError;

/// Port assumed when `ADD MASTER|SLAVE` gives none.
pub const DEFAULT_PORT: u16 = 3306;

/// A parsed admin statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Backends,
    SetOffline(usize),
    SetOnline(usize),
    AddMaster(BackendAddr),
    AddSlave {
        address: BackendAddr,
        weight: u32,
    },
    RemoveBackend(usize),
    /// rwproxy's: the read-only backend at this address, whatever its index (which another
    /// console edit may shift between a `SELECT * FROM backends` and a `REMOVE BACKEND`).
    RemoveSlave(BackendAddr),
    Clients,
    AddClient(String),
    RemoveClient(String),
    Pwds,
    AddPwd {
        user: String,
        password: String,
    },
    AddEnPwd {
        user: String,
        encrypted: String,
    },
    RemovePwd(String),
    SaveConfig,
    /// Atlas's `SELECT VERSION` (no parentheses).
    Version,
    Stats,
    Sessions,
    Digests,
    Vrrp,
    HaStatus,
    /// Hand the primary role to the replica (`ha_status` shows how it went).
    Switchover,
    /// `SHOW [GLOBAL|SESSION] VARIABLES [LIKE 'pattern']`
    ShowVariables {
        like: Option<String>,
    },
    /// `SET [GLOBAL] name = value[, …]`: runtime settings, names lower-cased, in order.
    /// `session`: the names set with `SESSION` or `LOCAL` that are not a client's session
    /// variables (which are ignored): a runtime setting named so is refused, as a server
    /// refuses `SET SESSION` of a global variable, rather than ignored while the client
    /// thinks it took effect.
    SetVariables {
        settings: Vec<(String, String)>,
        session: Vec<String>,
    },
    /// A `SELECT` of system variables, `DATABASE()`, `USER()`, `VERSION()`, literals: what
    /// clients and drivers ask on connect (`select @@version_comment limit 1`, …).
    Select(Vec<SelectItem>),
    ShowDatabases,
    ShowTables,
    ShowWarnings,
    Use(String),
    /// `KILL [CONNECTION | QUERY] id`: a client session of the proxy, or its statement.
    Kill {
        id: u64,
        query_only: bool,
    },
    /// Session statements with no meaning on the admin port (`SET NAMES`, `SET autocommit=1`,
    /// user variables, `COMMIT`/`ROLLBACK`): answered OK so drivers that send them work.
    Noop,
}

/// One output column of a client-compatibility `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    /// The column name: the alias, or the expression as written (as MySQL names it).
    pub label: String,
    pub expr: SelectExpr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectExpr {
    /// `@@name` (any scope), lower-cased without the scope.
    SysVar(String),
    Database,
    User,
    Version,
    ConnectionId,
    Literal(Option<String>),
}

/// A backend address: IPv4, IPv6 or a hostname, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendAddr {
    /// Lower-cased hostname, dotted IPv4, or IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl BackendAddr {
    /// Parse `host[:port]`, `[v6][:port]`; the port defaults to 3306.
    pub fn parse(s: &str) -> Result<Self, AdminError> {
        let bad = |why: &str| AdminError::syntax(format!("bad backend address '{s}': {why}"));
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (host, port) = if let Some(inner) = s.strip_prefix('[') {
            let (v6, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("missing ']' after an IPv6 address"))?;
            let ip: Ipv6Addr = v6.parse().map_err(|_| bad("not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected ':port' after ']'"))?,
                ),
            };
            (ip.to_string(), port)
        } else if s.matches(':').count() > 1 {
            return Err(if s.parse::<Ipv6Addr>().is_ok() {
                bad("write IPv6 addresses in brackets, e.g. [::1]:3306")
            } else {
                bad("too many ':'")
            });
        } else {
            let (host, port) = match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            };
            check_host(host).map_err(|why| bad(&why))?;
            // Without a fully qualified name's final dot, which the config file does not take
            // (nor does a resolver need it here).
            let host = host.strip_suffix('.').unwrap_or(host);
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("port must be a number from 1 to 65535")),
            },
        };
        Ok(BackendAddr { host, port })
    }
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Accept dotted-quad IPv4 or an RFC 1123 hostname (underscores tolerated: container names
/// have them). All-numeric names are IPv4 attempts, so `300.1.1.1` is an error, not a host.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("missing host".into());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| "not a valid IPv4 address".into());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Err("hostname longer than 253 characters".into());
    }
    for label in name.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err(format!("'{label}' is not a valid hostname label"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("hostname label '{label}' starts or ends with '-'"));
        }
    }
    Ok(())
}

/// Session variables a driver may set on connect; unscoped `SET` of these is a no-op here
/// rather than a runtime setting of the proxy.
const SESSION_VARIABLES: &[&str] = &[
    "autocommit",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
    "sql_mode",
    "time_zone",
    "sql_select_limit",
    "sql_auto_is_null",
    "net_write_timeout",
    "net_read_timeout",
    "wait_timeout",
    "interactive_timeout",
    "session_track_schema",
    "session_track_state_change",
    "session_track_system_variables",
    "transaction_isolation",
    "tx_isolation",
    "transaction_read_only",
    "tx_read_only",
    "names",
];

/// Parse one admin statement.
pub fn parse(sql: &str) -> Result<Command, AdminError> {
    let stmt = one_statement(sql)?;
    let words: Vec<&str> = stmt.split_ascii_whitespace().collect();
    let kw: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let kw: Vec<&str> = kw.iter().map(String::as_str).collect();
    let unknown = || AdminError::UnknownCommand(stmt.to_string());

    match kw.as_slice() {
        ["select", "*", "from", table] => match *table {
            "help" => Ok(Command::Help),
            "backends" => Ok(Command::Backends),
            "clients" => Ok(Command::Clients),
            "pwds" => Ok(Command::Pwds),
            "stats" => Ok(Command::Stats),
            "sessions" => Ok(Command::Sessions),
            "digests" => Ok(Command::Digests),
            "vrrp" => Ok(Command::Vrrp),
            "ha_status" => Ok(Command::HaStatus),
            _ => Err(unknown()),
        },
        ["select", "version"] => Ok(Command::Version),
        ["switchover"] => Ok(Command::Switchover),
        ["select", ..] => parse_select(rest_after(stmt, 1)).ok_or_else(unknown),

        ["set", "offline", ..] | ["set", "online", ..] if !stmt.contains('=') => {
            let ndx = one_index(&words[2..], &format!("SET {}", words[1].to_uppercase()))?;
            Ok(if kw[1] == "offline" {
                Command::SetOffline(ndx)
            } else {
                Command::SetOnline(ndx)
            })
        }
        ["set", ..] => parse_set(rest_after(stmt, 1)),

        ["add", "master", ..] => {
            let arg = one_arg(&words[2..], "ADD MASTER", "host:port")?;
            if arg.contains('@') {
                return Err(AdminError::syntax(
                    "ADD MASTER takes no weight: weights apply to read backends (ADD SLAVE host:port@weight)",
                ));
            }
            Ok(Command::AddMaster(BackendAddr::parse(arg)?))
        }
        ["add", "slave", ..] => {
            let arg = one_arg(&words[2..], "ADD SLAVE", "host:port[@weight]")?;
            let (addr, weight) = match arg.rsplit_once('@') {
                None => (arg, 1),
                Some((addr, w)) => (addr, parse_weight(w)?),
            };
            Ok(Command::AddSlave {
                address: BackendAddr::parse(addr)?,
                weight,
            })
        }
        ["remove", "backend", ..] => Ok(Command::RemoveBackend(one_index(
            &words[2..],
            "REMOVE BACKEND",
        )?)),
        ["remove", "slave", ..] => Ok(Command::RemoveSlave(BackendAddr::parse(one_arg(
            &words[2..],
            "REMOVE SLAVE",
            "a backend address",
        )?)?)),

        ["add", "client", ..] => Ok(Command::AddClient(client_ip(&words[2..], "ADD CLIENT")?)),
        ["remove", "client", ..] => Ok(Command::RemoveClient(client_ip(
            &words[2..],
            "REMOVE CLIENT",
        )?)),

        ["add", "pwd", ..] => {
            let (user, password) = user_and_secret(rest_after(stmt, 2), "ADD PWD", "password")?;
            Ok(Command::AddPwd { user, password })
        }
        ["add", "enpwd", ..] => {
            let (user, encrypted) =
                user_and_secret(rest_after(stmt, 2), "ADD ENPWD", "encrypted_password")?;
            Ok(Command::AddEnPwd { user, encrypted })
        }
        ["remove", "pwd", ..] => Ok(Command::RemovePwd(
            one_arg(&words[2..], "REMOVE PWD", "user")?.to_string(),
        )),

        ["save", "config"] => Ok(Command::SaveConfig),
        ["kill", rest @ ..] => parse_kill(rest),

        ["show", "databases"] | ["show", "schemas"] => Ok(Command::ShowDatabases),
        ["show", "tables"] | ["show", "full", "tables"] => Ok(Command::ShowTables),
        ["show", "warnings"] | ["show", "errors"] => Ok(Command::ShowWarnings),
        ["show", "variables", ..]
        | ["show", "global", "variables", ..]
        | ["show", "session", "variables", ..] => {
            let skip = if kw[1] == "variables" { 2 } else { 3 };
            parse_show_variables(rest_after(stmt, skip))
        }
        // Its case kept, as a server keeps it.
        ["use", _] => Ok(Command::Use(
            unquote_ident(words[1]).unwrap_or(words[1]).to_string(),
        )),
        // Drivers end and begin transactions on their own (pymysql's commit(), a pool's
        // rollback when a connection is returned); nothing here is transactional.
        ["commit" | "rollback" | "begin"]
        | ["commit" | "rollback" | "begin", "work"]
        | ["start", "transaction"] => Ok(Command::Noop),

        _ => Err(unknown()),
    }
}

/// Drop surrounding whitespace and any trailing `;`.
fn parse_kill(args: &[&str]) -> Result<Command, AdminError> {
    let (query_only, id) = match args {
        ["query", id] => (true, id),
        ["connection", id] | [id] => (false, id),
        _ => {
            return Err(AdminError::syntax(
                "usage: KILL [CONNECTION | QUERY] $session_id",
            ))
        }
    };
    let id = id
        .parse()
        .map_err(|_| AdminError::syntax(format!("KILL: '{id}' is not a session id")))?;
    Ok(Command::Kill { id, query_only })
}

/// The one command in `sql`: comments before it dropped (drivers put their name in one:
/// Connector/J), a `/* */` comment after it too, and trailing `;`s and whitespace. More
/// than one command (a driver that turns multi-statements on sends `a; b` as one) is
/// refused: the console runs one at a time, and would otherwise read the rest as part of
/// the first (`ADD PWD u:pw; SAVE CONFIG` added the password `pw; SAVE CONFIG`). So is an
/// executable comment, whose text a server would run.
fn one_statement(sql: &str) -> Result<&str, AdminError> {
    let mut s = after_leading_comments(sql)?;
    loop {
        s = s.trim_end();
        if let Some(t) = s.strip_suffix(';') {
            s = t;
        } else if let Some(open) = s.strip_suffix("*/").and_then(|t| t.rfind("/*")) {
            s = &s[..open];
        } else {
            break;
        }
    }
    if s.is_empty() {
        return Err(AdminError::EmptyQuery);
    }
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(q) if c == '\\' && q != '`' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '\'' | '"' | '`') => quote = Some(c),
            None if c == ';' && !s[i + 1..].trim().is_empty() => {
                return Err(AdminError::syntax(
                    "one command at a time: the admin console does not run multi-statements (a ';' is followed by more; quote a value that holds one)",
                ));
            }
            None => {}
        }
    }
    Ok(s)
}

/// `sql` after the comments and whitespace it starts with; an unterminated or executable
/// comment is refused.
fn after_leading_comments(sql: &str) -> Result<&str, AdminError> {
    let mut s = sql.trim_start();
    loop {
        if let Some(body) = s.strip_prefix("/*") {
            if body.starts_with('!') || body.starts_with("M!") {
                return Err(AdminError::syntax(
                    "the admin console does not run executable comments (/*! ... */)",
                ));
            }
            let (_, after) = body
                .split_once("*/")
                .ok_or_else(|| AdminError::syntax("unterminated comment"))?;
            s = after.trim_start();
        } else if s.starts_with('#')
            || s.strip_prefix("--")
                .is_some_and(|r| r.chars().next().is_none_or(|c| c <= ' '))
        {
            s = s
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            return Ok(s);
        }
    }
}

/// Where the command in `sql` starts, for the log: after the comments it starts with, as far
/// as they end.
pub fn command_start(sql: &str) -> &str {
    after_leading_comments(sql).unwrap_or("")
}

/// The statement after its first `n` words, leading whitespace removed.
fn rest_after(stmt: &str, n: usize) -> &str {
    let mut s = stmt.trim_start();
    for _ in 0..n {
        let end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
        s = s[end..].trim_start();
    }
    s
}

fn one_arg<'a>(args: &[&'a str], cmd: &str, what: &str) -> Result<&'a str, AdminError> {
    match args {
        [one] => Ok(one),
        [] => Err(AdminError::syntax(format!("{cmd} needs {what}"))),
        _ => Err(AdminError::syntax(format!(
            "{cmd} takes one argument ({what}), got {}",
            args.len()
        ))),
    }
}

fn one_index(args: &[&str], cmd: &str) -> Result<usize, AdminError> {
    let arg = one_arg(args, cmd, "a backend_ndx")?;
    match arg.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(AdminError::syntax(format!(
            "{cmd}: backend_ndx must be a positive integer, got '{arg}'"
        ))),
    }
}

fn parse_weight(w: &str) -> Result<u32, AdminError> {
    match w.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(AdminError::syntax(format!(
            "weight must be an integer of at least 1, got '{w}'"
        ))),
    }
}

/// A `client-ips` entry, as written: the control plane validates and compares entries with
/// the config file's own rules, so the console accepts exactly what the file does and finds
/// the file's entries however they were written.
fn client_ip(args: &[&str], cmd: &str) -> Result<String, AdminError> {
    Ok(one_arg(args, cmd, "a client IP")?.to_string())
}

/// `user:secret`, split at the first ':' (user names carry no ':', passwords may). A secret in
/// single or double quotes is unquoted, which is how to give one that ends in ';' or blanks.
fn user_and_secret(rest: &str, cmd: &str, what: &str) -> Result<(String, String), AdminError> {
    let usage = || AdminError::syntax(format!("{cmd} needs user:{what}"));
    let (user, secret) = rest.split_once(':').ok_or_else(usage)?;
    if user.is_empty() || user.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(AdminError::syntax(format!(
            "{cmd}: bad user name '{user}' (expected user:{what})"
        )));
    }
    let secret = match unquote_string(secret) {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(AdminError::syntax(format!("{cmd}: {e}"))),
        // What a server would read as a comment is not taken as part of a password
        // unquoted: the command is likelier mistyped.
        None if secret.contains('#') || secret.contains("/*") || secret.contains("--") => {
            return Err(AdminError::syntax(format!(
                "{cmd}: quote a {what} that holds '#', '--' or '/*' (user:'...')"
            )));
        }
        None => secret.to_string(),
    };
    if secret.is_empty() {
        return Err(usage());
    }
    Ok((user.to_string(), secret))
}

/// If `s` is wholly one quoted string, its contents (backslash escapes and doubled quotes
/// undone); `None` if it is not quoted.
fn unquote_string(s: &str) -> Option<Result<String, String>> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let mut cur = Cursor { s, pos: 0 };
    Some(match cur.string() {
        Ok(v) if cur.pos == s.len() => Ok(v),
        Ok(_) => Err(format!("text after closing {q}")),
        Err(e) => Err(e),
    })
}

fn unquote_ident(s: &str) -> Option<&str> {
    s.strip_prefix('`')?.strip_suffix('`')
}

fn parse_show_variables(rest: &str) -> Result<Command, AdminError> {
    if rest.is_empty() {
        return Ok(Command::ShowVariables { like: None });
    }
    let mut cur = Cursor { s: rest, pos: 0 };
    if !cur.keyword("like") {
        return Err(AdminError::syntax(
            "SHOW VARIABLES supports only LIKE 'pattern'",
        ));
    }
    cur.skip_ws();
    let pattern = cur.string().map_err(AdminError::syntax)?;
    cur.skip_ws();
    if !cur.at_end() {
        return Err(AdminError::syntax("unexpected text after LIKE 'pattern'"));
    }
    Ok(Command::ShowVariables {
        like: Some(pattern),
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Default,
    Global,
    Session,
}

/// `NAMES cs [COLLATE c]` or `CHARACTER SET cs` (or `CHARSET cs`), which drivers send as
/// they connect: taken and ignored, as the console speaks UTF-8 whatever is asked.
fn charset_item(cur: &mut Cursor) -> Result<bool, AdminError> {
    let names = cur.keyword("names");
    if !names && !cur.keyword("charset") {
        let mut look = cur.clone();
        if !(look.keyword("character") && {
            look.skip_ws();
            look.keyword("set")
        }) {
            return Ok(false);
        }
        *cur = look;
    }
    let bad = |e: String| AdminError::syntax(format!("SET NAMES: {e}"));
    cur.skip_ws();
    cur.word().map_err(bad)?;
    cur.skip_ws();
    if names && cur.keyword("collate") {
        cur.skip_ws();
        cur.word().map_err(bad)?;
    }
    Ok(true)
}

/// One `[scope] name = value` of a `SET`: a runtime setting goes to `settings`, one named
/// with `SESSION` that is no client session variable to `session` (refused by the caller).
fn assignment(
    cur: &mut Cursor,
    settings: &mut Vec<(String, String)>,
    session: &mut Vec<String>,
) -> Result<(), AdminError> {
    let mut scope = if cur.keyword("global") {
        Scope::Global
    } else if cur.keyword("session") || cur.keyword("local") {
        Scope::Session
    } else {
        Scope::Default
    };
    cur.skip_ws();
    let user_var = cur.rest().starts_with('@') && !cur.rest().starts_with("@@");
    if let Some(r) = cur.rest().strip_prefix("@@") {
        let lower = r.to_ascii_lowercase();
        let (skip, sc) = if lower.starts_with("global.") {
            (7, Scope::Global)
        } else if lower.starts_with("session.") {
            (8, Scope::Session)
        } else if lower.starts_with("local.") {
            (6, Scope::Session)
        } else {
            (0, scope)
        };
        cur.pos += 2 + skip;
        scope = sc;
    } else if user_var {
        cur.pos += 1;
    }
    let name = cur
        .ident()
        .ok_or_else(|| {
            AdminError::syntax(format!("SET: expected a variable name at '{}'", cur.rest()))
        })?
        .to_ascii_lowercase();
    cur.skip_ws();
    if !(cur.eat(":=") || cur.eat("=")) {
        return Err(AdminError::syntax(format!("SET {name}: expected '='")));
    }
    cur.skip_ws();
    let value = cur
        .value()
        .map_err(|e| AdminError::syntax(format!("SET {name}: {e}")))?;
    let client_session = user_var || SESSION_VARIABLES.contains(&name.as_str());
    match scope {
        _ if user_var => {}
        Scope::Session if !client_session => session.push(name),
        Scope::Session => {}
        Scope::Default if client_session => {}
        Scope::Default | Scope::Global => settings.push((name, value)),
    }
    Ok(())
}

fn parse_set(rest: &str) -> Result<Command, AdminError> {
    let mut cur = Cursor { s: rest, pos: 0 };
    let mut settings = Vec::new();
    let mut session = Vec::new();
    loop {
        cur.skip_ws();
        if !charset_item(&mut cur)? {
            assignment(&mut cur, &mut settings, &mut session)?;
        }
        cur.skip_ws();
        if cur.at_end() {
            break;
        }
        if !cur.eat(",") {
            return Err(AdminError::syntax(format!(
                "SET: unexpected '{}'",
                cur.rest()
            )));
        }
    }
    Ok(if settings.is_empty() && session.is_empty() {
        Command::Noop
    } else {
        Command::SetVariables { settings, session }
    })
}

/// The compatibility `SELECT`: a comma list of simple expressions and an optional `LIMIT n`.
fn parse_select(rest: &str) -> Option<Command> {
    let mut body = rest;
    let words: Vec<&str> = body.split_ascii_whitespace().collect();
    if let [.., limit, n] = words.as_slice() {
        if limit.eq_ignore_ascii_case("limit") && n.bytes().all(|b| b.is_ascii_digit()) {
            body = body[..body.len() - n.len()].trim_end();
            body = body[..body.len() - limit.len()].trim_end();
        }
    }
    let items = split_top_level(body)?
        .into_iter()
        .map(select_item)
        .collect::<Option<Vec<_>>>()?;
    (!items.is_empty()).then_some(Command::Select(items))
}

fn split_top_level(s: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if quote.is_some() || depth != 0 {
        return None;
    }
    parts.push(s[start..].trim());
    Some(parts)
}

fn select_item(text: &str) -> Option<SelectItem> {
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let (expr_text, alias) = match words.as_slice() {
        [.., as_kw, alias] if as_kw.eq_ignore_ascii_case("as") => {
            let cut = text.len() - alias.len();
            let expr = text[..cut].trim_end();
            (expr[..expr.len() - as_kw.len()].trim_end(), Some(*alias))
        }
        _ => (text, None),
    };
    let compact: String = expr_text
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let mut label = expr_text.to_string();
    let expr = if let Some(var) = compact.strip_prefix("@@") {
        let var = ["global.", "session.", "local."]
            .iter()
            .find_map(|p| var.strip_prefix(p))
            .unwrap_or(var);
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        SelectExpr::SysVar(var.to_string())
    } else {
        match compact.as_str() {
            "database()" | "schema()" => SelectExpr::Database,
            "user()" | "current_user()" | "current_user" | "session_user()" | "system_user()" => {
                SelectExpr::User
            }
            "version()" => SelectExpr::Version,
            "connection_id()" => SelectExpr::ConnectionId,
            "null" => SelectExpr::Literal(None),
            c if is_integer(c) => SelectExpr::Literal(Some(c.to_string())),
            _ => match unquote_string(expr_text) {
                Some(Ok(s)) => {
                    label = s.clone();
                    SelectExpr::Literal(Some(s))
                }
                _ => return None,
            },
        }
    };
    let label = alias
        .map(|a| unquote_ident(a).unwrap_or(a).to_string())
        .unwrap_or(label);
    Some(SelectItem { label, expr })
}

fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A tiny scanner for the `SET` and `SHOW VARIABLES LIKE` arguments.
#[derive(Clone)]
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn eat(&mut self, tok: &str) -> bool {
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    /// A whole keyword, case-insensitive, followed by whitespace or the end. Compared as
    /// bytes: the statement is any UTF-8 the client sent, and `kw.len()` bytes into it can
    /// fall inside a character, where slicing the `str` would panic.
    fn keyword(&mut self, kw: &str) -> bool {
        let r = self.rest().as_bytes();
        let matches = r
            .get(..kw.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(kw.as_bytes()))
            && r.get(kw.len()).is_none_or(|b| b.is_ascii_whitespace());
        if matches {
            self.pos += kw.len();
        }
        matches
    }

    /// A bare or back-quoted identifier (dots allowed: `section.setting`).
    fn ident(&mut self) -> Option<&'a str> {
        let r = self.rest();
        if let Some(inner) = r.strip_prefix('`') {
            let end = inner.find('`')?;
            self.pos += end + 2;
            return Some(&inner[..end]);
        }
        let end = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'))
            .unwrap_or(r.len());
        if end == 0 {
            return None;
        }
        self.pos += end;
        Some(&r[..end])
    }

    /// A quoted string, with `\x` escapes and doubled quotes.
    fn string(&mut self) -> Result<String, String> {
        let r = self.rest();
        let q = r
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .ok_or("expected a quoted string")?;
        let mut out = String::new();
        let mut chars = r.char_indices().skip(1).peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                let (_, e) = chars.next().ok_or("unterminated string")?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    other => other,
                });
            } else if c == q {
                if chars.peek().is_some_and(|(_, n)| *n == q) {
                    chars.next();
                    out.push(q);
                } else {
                    self.pos += i + 1;
                    return Ok(out);
                }
            } else {
                out.push(c);
            }
        }
        Err("unterminated string".into())
    }

    /// A quoted string, or a bare word up to whitespace, a ',' or the end.
    fn word(&mut self) -> Result<String, String> {
        if self.rest().starts_with(['\'', '"']) {
            return self.string();
        }
        let r = self.rest();
        let end = r
            .find(|c: char| c == ',' || c.is_ascii_whitespace())
            .unwrap_or(r.len());
        if end == 0 {
            return Err(format!("expected a name at '{r}'"));
        }
        self.pos += end;
        Ok(r[..end].to_string())
    }

    /// A quoted string, or a bare word/number up to the next ',' or the end.
    fn value(&mut self) -> Result<String, String> {
        if self.rest().starts_with(['\'', '"']) {
            return self.string();
        }
        let r = self.rest();
        let end = r.find(',').unwrap_or(r.len());
        let v = r[..end].trim_end();
        if v.is_empty() || v.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(format!("bad value '{}'", r[..end].trim()));
        }
        self.pos += end;
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sql: &str) -> Command {
        parse(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"))
    }

    fn err(sql: &str) -> String {
        match parse(sql) {
            Ok(c) => panic!("{sql:?} parsed as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn addr(host: &str, port: u16) -> BackendAddr {
        BackendAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn select_tables_any_case_whitespace_semicolon() {
        for sql in [
            "SELECT * FROM backends",
            "select * from backends",
            "  SeLeCt\t*\n\nFROM   BACKENDS ;  ",
            "select * from backends;;",
            "select\r\n*\r\nfrom\r\nbackends",
        ] {
            assert_eq!(p(sql), Command::Backends, "{sql:?}");
        }
        assert_eq!(p("select * from help"), Command::Help);
        assert_eq!(p("select * from clients"), Command::Clients);
        assert_eq!(p("select * from PWDS;"), Command::Pwds);
        assert_eq!(p("select * from stats"), Command::Stats);
        assert_eq!(p("select * from sessions"), Command::Sessions);
        assert_eq!(p("select * from digests"), Command::Digests);
        assert_eq!(p("select * from vrrp"), Command::Vrrp);
        assert_eq!(p("SELECT * FROM ha_status;"), Command::HaStatus);
        assert_eq!(p("switchover;"), Command::Switchover);
        assert_eq!(p("SELECT VERSION"), Command::Version);
        assert_eq!(p("select   version ;"), Command::Version);
    }

    #[test]
    fn unknown_commands_point_to_help() {
        for sql in [
            "select * from nowhere",
            "drop table backends",
            "selectt * from backends",
            "select * from backends where 1",
            "save",
            "save config now",
            "add",
            "remove",
            "bogus",
        ] {
            let e = parse(sql).unwrap_err();
            assert!(
                e.to_string().contains(crate::UNKNOWN_COMMAND_HINT),
                "{sql:?}: {e}"
            );
            assert_eq!((e.code(), e.sqlstate()), (1064, "42000"));
        }
        assert_eq!(err("   ;  "), "Query was empty");
    }

    /// The statements of the review that found byte-index slicing in the keyword scanner:
    /// each panicked the admin session instead of answering a parse error.
    #[test]
    fn non_ascii_next_to_a_keyword_is_a_parse_error() {
        for (sql, says) in [
            ("SET aaaaé=1", "SET aaaa: expected '='"),
            ("SET naméé=1", "SET nam: expected '='"),
            ("SET namesé", "SET names: expected '='"),
            ("SET globalé x=1", "SET global: expected '='"),
            ("SET é=1", "expected a variable name at 'é=1'"),
            ("SHOW VARIABLES liké", "supports only LIKE"),
            ("SHOW VARIABLES LIKEé 'x'", "supports only LIKE"),
            ("SHOW VARIABLES lik", "supports only LIKE"),
            ("SHOW VARIABLES é", "supports only LIKE"),
        ] {
            let e = parse(sql).unwrap_err();
            assert!(e.to_string().contains(says), "{sql:?}: {e}");
            assert_eq!((e.code(), e.sqlstate()), (1064, "42000"), "{sql:?}");
        }
        assert_eq!(
            p("SET GLOBAL x = 'été'"),
            Command::SetVariables {
                settings: vec![("x".into(), "été".into())],
                session: vec![]
            }
        );
        assert_eq!(
            p("show variables like 'é%'"),
            Command::ShowVariables {
                like: Some("é%".into())
            }
        );
    }

    /// Every statement the console knows, cut short at each character and with odd text
    /// (multi-byte UTF-8, Unicode blanks, quotes, NUL) put in at each character: the parser
    /// answers a command or a parse error (1064 / 42000), never a panic, which the console
    /// could only answer by dropping the connection.
    #[test]
    fn mangled_statements_never_panic() {
        let statements = [
            "SET aaaa=1",
            "SET GLOBAL x = 1, SESSION y := 'z', LOCAL w=\"v\"",
            "SET @@global.sql_log = ON, @@session.a=1, @@local.b=2, @u=3",
            "set `pool.max_idle`='8'",
            "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
            "SET CHARACTER SET utf8",
            "SHOW GLOBAL VARIABLES LIKE 'read%'",
            "show session variables like 'a\\'b'",
            "SET OFFLINE 2",
            "select @@version_comment limit 1",
            "SELECT @@global.max_allowed_packet AS m, 'x' as `y`, NULL, -1, DATABASE()",
            "SELECT * FROM backends",
            "ADD SLAVE [fe80::1]:3306@2",
            "add master db-1.example.com:3307",
            "ADD CLIENT 192.168.1.*",
            "ADD PWD app:'pa;ss'",
            "ADD ENPWD app:KsWNCR6qyNk=",
            "REMOVE PWD app",
            "KILL QUERY 7",
            "use `mydb`",
        ];
        let odd = [
            "é", "€", "😀", "\u{3000}", "\u{85}", "\u{b}", "\0", "'", "\"", "`", "\\", "@", "@@",
            ";", "=", ",", ".", ":", "*",
        ];
        let check = |sql: &str| {
            let parsed = std::panic::catch_unwind(|| parse(sql));
            match parsed {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => assert!(
                    matches!((e.code(), e.sqlstate()), (1064 | 1065, "42000")),
                    "{sql:?}: {e}"
                ),
                Err(_) => panic!("parse panicked on {sql:?}"),
            }
        };
        for stmt in statements {
            let cuts = stmt.char_indices().map(|(i, _)| i).chain([stmt.len()]);
            for i in cuts {
                let (head, tail) = stmt.split_at(i);
                check(head);
                check(tail);
                for o in odd {
                    check(&format!("{head}{o}{tail}"));
                    check(&format!("{head}{o}"));
                    check(&format!("{o}{tail}"));
                }
            }
        }
        for sql in ["", " ", ";", "\u{3000}", "é", "\0", "SET", "SHOW", "SELECT"] {
            check(sql);
        }
    }

    #[test]
    fn set_offline_online() {
        assert_eq!(p("SET OFFLINE 2"), Command::SetOffline(2));
        assert_eq!(p("set\tonline\n 12;"), Command::SetOnline(12));
        assert!(err("set offline 0").contains("positive integer, got '0'"));
        assert!(err("set offline -1").contains("positive integer"));
        assert!(err("set offline two").contains("got 'two'"));
        assert!(err("set offline 1.5").contains("got '1.5'"));
        assert!(err("set offline 99999999999999999999999").contains("positive integer"));
        assert!(err("set online").contains("SET ONLINE needs a backend_ndx"));
        assert!(err("set online 1 2").contains("takes one argument"));
    }

    #[test]
    fn add_master_and_slave() {
        assert_eq!(
            p("ADD MASTER 10.0.0.1:3307"),
            Command::AddMaster(addr("10.0.0.1", 3307))
        );
        assert_eq!(
            p("add master 10.0.0.1"),
            Command::AddMaster(addr("10.0.0.1", 3306))
        );
        assert_eq!(
            p("add slave 10.0.0.3:3306@2;"),
            Command::AddSlave {
                address: addr("10.0.0.3", 3306),
                weight: 2
            }
        );
        assert_eq!(
            p("ADD SLAVE db-replica-2.Example.COM"),
            Command::AddSlave {
                address: addr("db-replica-2.example.com", 3306),
                weight: 1
            }
        );
        // The config file refuses a name's final dot: stored without it.
        assert_eq!(
            p("ADD SLAVE db1.example.com.:3307"),
            Command::AddSlave {
                address: addr("db1.example.com", 3307),
                weight: 1
            }
        );
        assert_eq!(
            p("add slave mariadb_replica_1:3306@10"),
            Command::AddSlave {
                address: addr("mariadb_replica_1", 3306),
                weight: 10
            }
        );
        assert_eq!(
            p("add slave [::1]:3307@3"),
            Command::AddSlave {
                address: addr("::1", 3307),
                weight: 3
            }
        );
        assert_eq!(
            p("add master [fe80::1]"),
            Command::AddMaster(addr("fe80::1", 3306))
        );
        assert_eq!(
            p("add master localhost:3306"),
            Command::AddMaster(addr("localhost", 3306))
        );
    }

    #[test]
    fn bad_backend_addresses() {
        assert!(err("add slave 10.0.0.3:3306@0").contains("at least 1, got '0'"));
        assert!(err("add slave 10.0.0.3:3306@").contains("at least 1, got ''"));
        assert!(err("add slave 10.0.0.3:3306@x").contains("got 'x'"));
        assert!(err("add slave 10.0.0.3:0").contains("port must be"));
        assert!(err("add slave 10.0.0.3:65536").contains("port must be"));
        assert!(err("add slave 10.0.0.3:").contains("port must be"));
        assert!(err("add slave 10.0.0.3:abc").contains("port must be"));
        assert!(err("add slave 300.0.0.1:3306").contains("not a valid IPv4"));
        assert!(err("add slave 10.0.0:3306").contains("not a valid IPv4"));
        assert!(err("add slave ::1").contains("brackets"));
        assert!(err("add slave [::1").contains("missing ']'"));
        assert!(err("add slave [::g]:1").contains("not an IPv6"));
        assert!(err("add slave [::1]3306").contains("expected ':port'"));
        assert!(err("add slave -bad-.host").contains("starts or ends with '-'"));
        assert!(err("add slave bad..host").contains("not a valid hostname label"));
        assert!(err("add slave ba!d:1").contains("not a valid hostname label"));
        assert!(err("add slave :3306").contains("missing host"));
        assert!(err("add slave").contains("ADD SLAVE needs host:port[@weight]"));
        assert!(err("add slave a:1 b:2").contains("takes one argument"));
        assert!(err("add master 10.0.0.1:3306@2").contains("ADD MASTER takes no weight"));
        // every argument error names the offending text
        assert!(err("add slave 10.0.0.3:99999").contains("'10.0.0.3:99999'"));
    }

    #[test]
    fn backend_addr_display() {
        assert_eq!(addr("::1", 3306).to_string(), "[::1]:3306");
        assert_eq!(addr("db1", 3307).to_string(), "db1:3307");
        assert_eq!(
            BackendAddr::parse("[0:0:0:0:0:0:0:1]:5")
                .unwrap()
                .to_string(),
            "[::1]:5"
        );
    }

    #[test]
    fn remove_backend() {
        assert_eq!(p("REMOVE BACKEND 2"), Command::RemoveBackend(2));
        assert_eq!(p("remove\nbackend\n3;"), Command::RemoveBackend(3));
        assert_eq!(
            p("REMOVE SLAVE 127.0.0.1:3307"),
            Command::RemoveSlave(BackendAddr::parse("127.0.0.1:3307").unwrap())
        );
        assert!(parse("REMOVE SLAVE").is_err());
        assert!(err("remove backend 0").contains("positive integer"));
        assert!(err("remove backend x").contains("got 'x'"));
        assert!(err("remove backend").contains("needs a backend_ndx"));
    }

    #[test]
    fn clients() {
        assert_eq!(
            p("ADD CLIENT 192.168.1.2"),
            Command::AddClient("192.168.1.2".into())
        );
        assert_eq!(
            p("add client 192.168.1"),
            Command::AddClient("192.168.1".into())
        );
        assert_eq!(
            p("add client 10.0.0.0/8"),
            Command::AddClient("10.0.0.0/8".into())
        );
        // As written: the control plane validates entries and compares them with the
        // config's rules (`FE80::1` in the file is `fe80::1` here).
        assert_eq!(
            p("add client FE80::1;"),
            Command::AddClient("FE80::1".into())
        );
        assert_eq!(
            p("ADD CLIENT 192.168.1.*"),
            Command::AddClient("192.168.1.*".into())
        );
        assert_eq!(
            p("remove client 127.0.0.1"),
            Command::RemoveClient("127.0.0.1".into())
        );
        assert!(err("remove client").contains("needs a client IP"));
        assert!(err("add client 10.0.0.1 10.0.0.2").contains("takes one argument"));
    }

    #[test]
    fn pwds() {
        assert_eq!(
            p("ADD PWD app:S3cret"),
            Command::AddPwd {
                user: "app".into(),
                password: "S3cret".into()
            }
        );
        // case is kept; the password may contain ':' and spaces
        assert_eq!(
            p("add pwd App:Pa:ss w0rd;"),
            Command::AddPwd {
                user: "App".into(),
                password: "Pa:ss w0rd".into()
            }
        );
        assert_eq!(
            p("add pwd app:'ends with;'"),
            Command::AddPwd {
                user: "app".into(),
                password: "ends with;".into()
            }
        );
        assert_eq!(
            p("ADD ENPWD app:KsWNCR6qyNk="),
            Command::AddEnPwd {
                user: "app".into(),
                encrypted: "KsWNCR6qyNk=".into()
            }
        );
        assert_eq!(p("remove pwd App"), Command::RemovePwd("App".into()));
        assert!(err("add pwd app").contains("ADD PWD needs user:password"));
        assert!(err("add pwd app:").contains("needs user:password"));
        assert!(err("add pwd :secret").contains("bad user name"));
        assert!(err("add enpwd nope").contains("ADD ENPWD needs user:encrypted_password"));
        assert!(err("add pwd app:'open").contains("unterminated"));
        assert!(err("remove pwd").contains("needs user"));
        assert!(err("remove pwd a b").contains("takes one argument"));
    }

    #[test]
    fn save_config() {
        assert_eq!(p("SAVE CONFIG"), Command::SaveConfig);
        assert_eq!(
            p("kill 12;"),
            Command::Kill {
                id: 12,
                query_only: false
            }
        );
        assert_eq!(
            p("KILL QUERY 7"),
            Command::Kill {
                id: 7,
                query_only: true
            }
        );
        assert_eq!(
            p("Kill Connection 7"),
            Command::Kill {
                id: 7,
                query_only: false
            }
        );
        assert!(err("KILL").contains("usage: KILL"));
        assert!(err("KILL QUERY x").contains("not a session id"));
        assert_eq!(p("save\n\tconfig ;"), Command::SaveConfig);
    }

    #[test]
    fn show_and_set_variables() {
        assert_eq!(p("SHOW VARIABLES"), Command::ShowVariables { like: None });
        assert_eq!(
            p("show global variables like 'read%';"),
            Command::ShowVariables {
                like: Some("read%".into())
            }
        );
        assert!(err("show variables where 1").contains("only LIKE"));
        assert!(err("show variables like read").contains("quoted string"));
        assert_eq!(
            p("SET max_replica_lag = 30"),
            Command::SetVariables {
                settings: vec![("max_replica_lag".into(), "30".into())],
                session: vec![]
            }
        );
        assert_eq!(
            p("set global Read_Lag_Limit='5s', @@global.sql_log := ON"),
            Command::SetVariables {
                settings: vec![
                    ("read_lag_limit".into(), "5s".into()),
                    ("sql_log".into(), "ON".into())
                ],
                session: vec![]
            }
        );
        assert_eq!(
            p("set `pool.max_idle`=\"8\""),
            Command::SetVariables {
                settings: vec![("pool.max_idle".into(), "8".into())],
                session: vec![]
            }
        );
        assert_eq!(
            p("SET SESSION drain_timeout = 5, @@local.x = 1, session sql_mode = '', global y = 2"),
            Command::SetVariables {
                settings: vec![("y".into(), "2".into())],
                session: vec!["drain_timeout".into(), "x".into()]
            }
        );
        assert!(err("set x").contains("expected '='"));
        assert!(err("set x =").contains("bad value"));
        assert!(err("set x = 1 2").contains("bad value"));
        assert!(err("set = 1").contains("expected a variable name"));
    }

    #[test]
    fn one_command_at_a_time_and_comments_around_it() {
        for sql in [
            "ADD PWD bob:s3cret; SAVE CONFIG",
            "SET NAMES utf8mb4; SET OFFLINE 3",
            "set offline 3;set online 3",
        ] {
            assert!(err(sql).contains("one command at a time"), "{sql:?}");
        }
        assert!(err("/*!40101 SET OFFLINE 3 */").contains("executable comments"));
        assert!(err("/* open").contains("unterminated comment"));
        assert!(err("add pwd carol:pw1 -- rotated").contains("quote a password"));
        assert_eq!(parse("/* x */ ;"), Err(AdminError::EmptyQuery));
        assert_eq!(parse("-- only a comment"), Err(AdminError::EmptyQuery));
        // Before the command, and a `/* */` one after it, comments are dropped.
        for sql in [
            "/* mysql-connector-j-8.4.0 (Revision: 1a2b) */ SELECT * FROM backends",
            "-- c\nselect * from backends",
            "# c\n  SELECT * FROM backends /* trailing */ ;",
        ] {
            assert_eq!(p(sql), Command::Backends, "{sql:?}");
        }
        assert_eq!(
            p("add pwd carol:pw1 /* rotated */"),
            Command::AddPwd {
                user: "carol".into(),
                password: "pw1".into()
            }
        );
        // A `;` inside a quoted value is no separator.
        assert_eq!(
            p("add pwd app:'a;b' ;"),
            Command::AddPwd {
                user: "app".into(),
                password: "a;b".into()
            }
        );
    }

    #[test]
    fn set_names_among_other_assignments() {
        assert_eq!(
            p("SET NAMES utf8mb4, drain_timeout = 7"),
            Command::SetVariables {
                settings: vec![("drain_timeout".into(), "7".into())],
                session: vec![]
            }
        );
        assert_eq!(
            p("set character set 'utf8', names utf8mb4 collate utf8mb4_bin, slow_ms=5"),
            Command::SetVariables {
                settings: vec![("slow_ms".into(), "5".into())],
                session: vec![]
            }
        );
        assert!(err("SET NAMES").contains("SET NAMES"));
        assert!(err("SET NAMES utf8 junk").contains("unexpected 'junk'"));
    }

    #[test]
    fn session_statements_are_noops() {
        for sql in [
            "SET NAMES utf8mb4",
            "set names 'utf8' collate 'utf8_general_ci'",
            "SET CHARACTER SET utf8",
            "SET autocommit=1",
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES'",
            "set @@session.time_zone='+00:00'",
            "SET @a = 1",
            "set character_set_results = NULL",
            "COMMIT",
            "rollback;",
            "BEGIN",
            "START TRANSACTION",
            "commit work",
        ] {
            assert_eq!(p(sql), Command::Noop, "{sql:?}");
        }
        // a runtime setting mixed with session ones keeps only the runtime one
        assert_eq!(
            p("set autocommit=1, global slow_ms=100"),
            Command::SetVariables {
                settings: vec![("slow_ms".into(), "100".into())],
                session: vec![]
            }
        );
    }

    #[test]
    fn what_the_mariadb_cli_sends() {
        // captured from mariadb 10.11's general log (interactive session, `use`, `status`)
        let item = |label: &str, expr| SelectItem {
            label: label.into(),
            expr,
        };
        assert_eq!(
            p("select @@version_comment limit 1"),
            Command::Select(vec![item(
                "@@version_comment",
                SelectExpr::SysVar("version_comment".into())
            )])
        );
        assert_eq!(
            p("SELECT DATABASE()"),
            Command::Select(vec![item("DATABASE()", SelectExpr::Database)])
        );
        assert_eq!(
            p("select DATABASE(), USER() limit 1"),
            Command::Select(vec![
                item("DATABASE()", SelectExpr::Database),
                item("USER()", SelectExpr::User)
            ])
        );
        assert_eq!(
            p("select @@character_set_client, @@character_set_connection, @@character_set_server, @@character_set_database limit 1"),
            Command::Select(vec![
                item("@@character_set_client", SelectExpr::SysVar("character_set_client".into())),
                item("@@character_set_connection", SelectExpr::SysVar("character_set_connection".into())),
                item("@@character_set_server", SelectExpr::SysVar("character_set_server".into())),
                item("@@character_set_database", SelectExpr::SysVar("character_set_database".into())),
            ])
        );
        assert_eq!(p("show databases"), Command::ShowDatabases);
        assert_eq!(p("show tables"), Command::ShowTables);
        assert_eq!(p("SHOW WARNINGS"), Command::ShowWarnings);
        assert_eq!(p("use mydb"), Command::Use("mydb".into()));
        assert_eq!(p("use `mydb`;"), Command::Use("mydb".into()));
        assert_eq!(p("USE MyDb"), Command::Use("MyDb".into()));
    }

    #[test]
    fn driver_selects() {
        let labels = |sql: &str| match p(sql) {
            Command::Select(items) => items
                .into_iter()
                .map(|i| (i.label, i.expr))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            labels("SELECT @@max_allowed_packet,@@wait_timeout"),
            vec![
                (
                    "@@max_allowed_packet".into(),
                    SelectExpr::SysVar("max_allowed_packet".into())
                ),
                (
                    "@@wait_timeout".into(),
                    SelectExpr::SysVar("wait_timeout".into())
                ),
            ]
        );
        assert_eq!(
            labels("select @@GLOBAL.Max_Allowed_Packet as m"),
            vec![("m".into(), SelectExpr::SysVar("max_allowed_packet".into()))]
        );
        assert_eq!(
            labels("SELECT VERSION()"),
            vec![("VERSION()".into(), SelectExpr::Version)]
        );
        assert_eq!(
            labels("select 1"),
            vec![("1".into(), SelectExpr::Literal(Some("1".into())))]
        );
        assert_eq!(
            labels("select 'x'"),
            vec![("x".into(), SelectExpr::Literal(Some("x".into())))]
        );
        assert_eq!(
            labels("select NULL"),
            vec![("NULL".into(), SelectExpr::Literal(None))]
        );
        assert_eq!(
            labels("select connection_id()"),
            vec![("connection_id()".into(), SelectExpr::ConnectionId)]
        );
        for sql in [
            "select now()",
            "select 1+1",
            "select @@",
            "select",
            "select 'open",
            "select 1,",
        ] {
            assert!(err(sql).contains(crate::UNKNOWN_COMMAND_HINT), "{sql:?}");
        }
    }
}
