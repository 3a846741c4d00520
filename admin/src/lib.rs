//! rwproxy's admin console: Atlas's command language, the control-plane trait the proxy
//! implements, and a client for scripts and `ha`.
//!
//! The proxy owns the admin listener and the MySQL protocol; for each `COM_QUERY` it calls
//! [`execute_in`] and encodes the [`Reply`] (or the [`AdminError`] as an ERR packet). This
//! crate never depends on the proxy.
//!
//! Besides `COM_QUERY`, the stock `mariadb` 10.11 CLI sends (captured from a server's general
//! log): `COM_INIT_DB` for `use db` and for a database given on the command line, then
//! `show databases`, `show tables` and one `COM_FIELD_LIST` per table for tab completion, and
//! `COM_STATISTICS` for `status`. The proxy should answer `COM_INIT_DB` with OK (as Atlas's
//! admin plugin does) and set [`ExecContext::schema`], `COM_FIELD_LIST` with an empty field
//! list, and `COM_STATISTICS` with any status line.

pub mod client;
pub mod command;
pub mod control;
mod error;
pub mod resultset;
pub mod tables;

pub use command::{parse, BackendAddr, Command, SelectExpr, SelectItem};
pub use control::{
    BackendInfo, BackendRole, BackendState, BackendStats, ControlPlane, DigestInfo, HaStatusInfo,
    SessionInfo, UserPassword, VrrpInfo,
};
pub use error::{AdminError, UNKNOWN_COMMAND_HINT};
pub use resultset::{ColumnType, Reply, ResultSet};

use tables::{
    table_of, CLIENT_COLUMNS, HELP_COLUMNS, PWD_COLUMNS, STATUS_COLUMNS, VARIABLE_COLUMNS,
    VERSION_COLUMNS,
};

/// Per-connection facts of an admin session, for the client-compatibility statements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecContext {
    /// The admin user, as `USER()` shows it (`user@host`).
    pub user: String,
    /// Set by `USE` (the proxy sets it too for `COM_INIT_DB` and the handshake's database).
    pub schema: Option<String>,
    pub connection_id: u32,
}

/// Run one admin statement with no session context.
pub fn execute(sql: &str, cp: &dyn ControlPlane) -> Result<Reply, AdminError> {
    execute_in(sql, cp, &mut ExecContext::default())
}

/// Run one admin statement for a session.
pub fn execute_in(
    sql: &str,
    cp: &dyn ControlPlane,
    ctx: &mut ExecContext,
) -> Result<Reply, AdminError> {
    let rows = |rs: ResultSet| Ok(Reply::Rows(rs));
    // Atlas answers every change with an empty result set whose one column is `status`.
    let done = || Ok(Reply::Rows(ResultSet::new(STATUS_COLUMNS)));
    match parse(sql)? {
        Command::Help => rows(help()),
        Command::Backends => rows(table_of(&cp.backends())),
        Command::SetOffline(n) => rows(table_of(&[cp.set_offline(n)?])),
        Command::SetOnline(n) => rows(table_of(&[cp.set_online(n)?])),
        Command::AddMaster(addr) => {
            cp.add_backend(&addr.to_string(), BackendRole::ReadWrite, 1)?;
            done()
        }
        Command::AddSlave { address, weight } => {
            cp.add_backend(&address.to_string(), BackendRole::ReadOnly, weight)?;
            done()
        }
        Command::RemoveBackend(n) => {
            cp.remove_backend(n)?;
            done()
        }
        Command::RemoveSlave(address) => {
            cp.remove_reader(&address.to_string())?;
            done()
        }
        Command::Clients => rows(single_column(CLIENT_COLUMNS[0], cp.clients())),
        Command::AddClient(ip) => {
            cp.add_client(&ip)?;
            done()
        }
        Command::RemoveClient(ip) => {
            cp.remove_client(&ip)?;
            done()
        }
        Command::Pwds => rows(pairs(&PWD_COLUMNS, cp.users())),
        Command::AddPwd { user, password } => {
            cp.add_user(&user, UserPassword::Plain(password))?;
            done()
        }
        Command::AddEnPwd { user, encrypted } => {
            cp.add_user(&user, UserPassword::Encrypted(encrypted))?;
            done()
        }
        Command::RemovePwd(user) => {
            cp.remove_user(&user)?;
            done()
        }
        Command::SaveConfig => {
            cp.save_config()?;
            done()
        }
        Command::Version => rows(single_column(VERSION_COLUMNS[0], [cp.version()])),
        Command::Stats => rows(table_of(&cp.stats())),
        Command::Sessions => rows(table_of(&cp.sessions())),
        Command::Digests => rows(table_of(&cp.digests())),
        Command::Vrrp => rows(table_of(&cp.vrrp())),
        Command::HaStatus => rows(table_of(&cp.ha_status())),
        Command::Switchover => {
            cp.switchover()?;
            done()
        }
        Command::ShowVariables { like } => {
            let vars = cp
                .variables()
                .into_iter()
                .filter(|(name, _)| match &like {
                    None => true,
                    Some(p) => self::like(p, name),
                })
                .collect();
            rows(pairs(&VARIABLE_COLUMNS, vars))
        }
        Command::SetVariables { settings, session } => {
            let runtime = cp.variables();
            if let Some(name) = session
                .iter()
                .find(|n| runtime.iter().any(|(r, _)| r == *n))
            {
                return Err(match cp.is_writable(name) {
                    true => AdminError::GlobalVariable(name.clone()),
                    false => AdminError::ReadOnlyVariable(name.clone()),
                });
            }
            // A session variable no driver sets and no setting of the proxy: a typo, refused
            // as the same name without `SESSION` is, not answered OK having done nothing.
            if let Some(name) = session.first() {
                return Err(AdminError::UnknownVariable(name.clone()));
            }
            if !settings.is_empty() {
                cp.set_variables(&settings)?;
            }
            Ok(Reply::ok())
        }
        Command::Select(items) => select(&items, cp, ctx),
        Command::ShowDatabases => rows(ResultSet::new(["Database"])),
        Command::ShowTables => rows(ResultSet::new([format!(
            "Tables_in_{}",
            ctx.schema.as_deref().unwrap_or("")
        )])),
        Command::ShowWarnings => rows(ResultSet::new(["Level", "Code", "Message"])),
        Command::Use(db) => {
            ctx.schema = Some(db);
            Ok(Reply::ok())
        }
        Command::Kill { id, query_only } => {
            cp.kill_session(id, query_only)?;
            Ok(Reply::ok())
        }
        Command::Noop => Ok(Reply::ok()),
    }
}

fn single_column<S: Into<String>>(column: &str, values: impl IntoIterator<Item = S>) -> ResultSet {
    let mut rs = ResultSet::new([column]);
    for v in values {
        rs.push(vec![Some(v.into())]);
    }
    rs
}

fn pairs(columns: &[&str; 2], values: Vec<(String, String)>) -> ResultSet {
    let mut rs = ResultSet::new(columns.iter().copied());
    for (a, b) in values {
        rs.push(vec![Some(a), Some(b)]);
    }
    rs
}

/// `SELECT * FROM help`: Atlas's sixteen rows (command text exactly as Atlas prints it), then
/// rwproxy's additions.
fn help() -> ResultSet {
    const ROWS: &[(&str, &str)] = &[
        ("SELECT * FROM help", "shows this help"),
        ("SELECT * FROM backends", "lists the backends and their state"),
        ("SET OFFLINE $backend_id", "takes a backend out of service, $backend_id is its backend_ndx"),
        ("SET ONLINE $backend_id", "returns a backend to service (health checks decide up/down)"),
        ("ADD MASTER $backend", "example: \"add master 127.0.0.1:3306\" (hostnames and [IPv6] accepted, port defaults to 3306)"),
        ("ADD SLAVE $backend", "example: \"add slave 127.0.0.1:3306@2\" (@weight optional, default 1)"),
        ("REMOVE BACKEND $backend_id", "example: \"remove backend 1\", drains the backend's sessions first"),
        ("SELECT * FROM clients", "lists the allowed client IPs"),
        ("ADD CLIENT $client", "example: \"add client 192.168.1.2\""),
        ("REMOVE CLIENT $client", "example: \"remove client 192.168.1.2\""),
        ("SELECT * FROM pwds", "lists the users and their encrypted passwords"),
        ("ADD PWD $pwd", "example: \"add pwd user:raw_password\""),
        ("ADD ENPWD $pwd", "example: \"add enpwd user:encrypted_password\""),
        ("REMOVE PWD $pwd", "example: \"remove pwd user\""),
        ("SAVE CONFIG", "saves backends (with weights and OFFLINE states), clients, users and drain_timeout to the config file (Atlas .cnf files cannot hold OFFLINE or drain_timeout)"),
        ("SELECT VERSION", "shows the version"),
        ("REMOVE SLAVE $backend", "example: \"remove slave 127.0.0.1:3306\": the read-only backend at that address, whatever its backend_ndx"),
        ("SELECT * FROM stats", "per backend: connections in use / idle, queries, errors (failed connections and statements cut off, not the server's SQL errors), latency, replication lag"),
        ("SELECT * FROM sessions", "client sessions: backend in use, transaction, current statement and its age"),
        ("SELECT * FROM digests", "statements grouped by normalised text: count, total/max time, rows"),
        ("SELECT * FROM vrrp", "VRRP instances: state, priority, virtual IPs"),
        ("SELECT * FROM ha_status", "failover: VRRP state, database role, replication, last action and its result"),
        ("SWITCHOVER", "on the primary's node: read-only, replicas sent everything, VIP handed over; the replica promotes (writes wait, or get ERR 1290 after write-wait-ms: retry)"),
        ("SHOW VARIABLES [LIKE 'pattern']", "lists the runtime settings"),
        ("SET $name = $value[, ...]", "changes runtime settings, all or none"),
        ("KILL [CONNECTION | QUERY] $session_id", "ends a client session, or only its running statement (id as in sessions)"),
    ];
    let mut rs = ResultSet::new(HELP_COLUMNS);
    for (cmd, desc) in ROWS {
        rs.push(vec![Some(cmd.to_string()), Some(desc.to_string())]);
    }
    rs
}

/// What the console reports for system variables a client may ask for; the control plane's
/// own variables take precedence. `@@socket` is NULL so drivers never switch to a Unix socket.
fn builtin_variable(name: &str, cp: &dyn ControlPlane) -> Option<Option<String>> {
    let v = match name {
        "version" => return Some(Some(cp.version())),
        "version_comment" => "rwproxy admin console",
        "socket" => return Some(None),
        "max_allowed_packet" => "16777216",
        "wait_timeout" | "interactive_timeout" | "net_write_timeout" | "net_read_timeout" => {
            "28800"
        }
        "character_set_client"
        | "character_set_connection"
        | "character_set_results"
        | "character_set_server"
        | "character_set_database"
        | "character_set_system" => "utf8mb4",
        "collation_connection" | "collation_server" | "collation_database" => "utf8mb4_general_ci",
        "autocommit" | "auto_increment_increment" => "1",
        "sql_mode" | "init_connect" => "",
        "time_zone" | "system_time_zone" => "SYSTEM",
        "transaction_isolation" | "tx_isolation" => "REPEATABLE-READ",
        "transaction_read_only"
        | "tx_read_only"
        | "lower_case_table_names"
        | "performance_schema" => "0",
        "license" => "Apache-2.0",
        // Connector/J asks for these of a server whose version starts `5.5.5-`.
        "query_cache_size" => "0",
        "query_cache_type" => "OFF",
        _ => return None,
    };
    Some(Some(v.to_string()))
}

fn select(
    items: &[SelectItem],
    cp: &dyn ControlPlane,
    ctx: &ExecContext,
) -> Result<Reply, AdminError> {
    let mut rs = ResultSet::new(items.iter().map(|i| i.label.clone()));
    let mut row = Vec::with_capacity(items.len());
    let mut vars: Option<Vec<(String, String)>> = None;
    for item in items {
        row.push(match &item.expr {
            SelectExpr::SysVar(name) => {
                let vars = vars.get_or_insert_with(|| cp.variables());
                match vars.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    Some((_, v)) => Some(v.clone()),
                    None => builtin_variable(name, cp)
                        .ok_or_else(|| AdminError::UnknownVariable(name.clone()))?,
                }
            }
            SelectExpr::Database => ctx.schema.clone(),
            SelectExpr::User => Some(ctx.user.clone()),
            SelectExpr::Version => Some(cp.version()),
            SelectExpr::ConnectionId => Some(ctx.connection_id.to_string()),
            SelectExpr::Literal(v) => v.clone(),
        });
    }
    rs.push(row);
    Ok(Reply::Rows(rs))
}

/// SQL `LIKE`, case-insensitive as MySQL's default collations: `%`, `_`, `\` escapes.
///
/// Matched greedily, going back only to the last `%`: at most patterns × text steps, where
/// trying every split at every `%` took exponential time (`'%%%%%%%%%%%%%%!'` stalled the
/// console for minutes).
pub fn like(pattern: &str, text: &str) -> bool {
    enum Tok {
        Any,
        One,
        Lit(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `%` met, and where in the text it currently stops.
    let mut any: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Any) => {
                any = Some((p, t));
                p += 1;
                continue;
            }
            Some(Tok::One) => {
                p += 1;
                t += 1;
                continue;
            }
            Some(Tok::Lit(c)) if c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        let Some((at, from)) = any else {
            return false;
        };
        p = at + 1;
        t = from + 1;
        any = Some((at, from + 1));
    }
    toks[p..].iter().all(|k| matches!(k, Tok::Any))
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_matches_as_sql_does() {
        for (pattern, text, want) in [
            ("%", "", true),
            ("", "", true),
            ("", "a", false),
            ("max%", "max_connections", true),
            ("MAX%", "max_connections", true),
            ("%conn%", "max_connections", true),
            ("%conn", "max_connections", false),
            ("max_connections", "maxXconnections", true),
            ("max\\_connections", "maxXconnections", false),
            ("max\\_connections", "max_connections", true),
            ("a%b%c", "aXXbYYc", true),
            ("a%b%c", "aXXbYY", false),
            ("%a%a%", "banana", true),
            ("_", "", false),
            ("__", "ab", true),
            ("%_", "", false),
            ("ab\\", "ab\\", true),
            ("100\\%", "100%", true),
            ("100\\%", "1000", false),
        ] {
            assert_eq!(like(pattern, text), want, "{pattern:?} LIKE {text:?}");
        }
    }

    /// Many `%` and a literal that never matches: answered at once (the recursive matcher
    /// tried every split at every `%` and ran for minutes on this).
    #[test]
    fn many_wildcards_do_not_stall() {
        let pattern = format!("{}!", "%".repeat(40));
        let name = "innodb_buffer_pool_dump_at_shutdown".repeat(4);
        assert!(!like(&pattern, &name));
        assert!(like(&format!("{}n", "%".repeat(40)), &name));
    }
}
