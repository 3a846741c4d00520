//! A typed client for the admin port, for `ha` and scripts: what the classic recipe's notify
//! scripts did with `mysql -P2345 -e 'remove backend 2'`, with answers as structs.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Value};

use crate::command::BackendAddr;
use crate::control::{BackendInfo, BackendStats, DigestInfo, HaStatusInfo, SessionInfo, VrrpInfo};
use crate::resultset::{ColumnType, Reply, ResultSet};
use crate::tables::{column_of, pairs_of, rows_of, RowError};
use crate::AdminError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The admin port refused the command (ERR packet).
    #[error("admin error {code} ({state}): {message}")]
    Server {
        code: u16,
        state: String,
        message: String,
    },
    /// Connection or protocol trouble.
    #[error("admin connection: {0}")]
    Connection(mysql_async::Error),
    /// The answer did not have the expected shape.
    #[error(transparent)]
    Row(#[from] RowError),
    /// An argument was rejected before it was sent.
    #[error(transparent)]
    Argument(#[from] AdminError),
}

impl From<mysql_async::Error> for ClientError {
    fn from(e: mysql_async::Error) -> Self {
        match e {
            mysql_async::Error::Server(s) => ClientError::Server {
                code: s.code,
                state: s.state,
                message: s.message,
            },
            other => ClientError::Connection(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// One connection to an admin port.
pub struct AdminClient {
    conn: Conn,
}

impl AdminClient {
    /// Connect over TCP. No setup queries are sent: the options that would make `mysql_async`
    /// ask the server for `@@max_allowed_packet`, `@@wait_timeout` or `@@socket` are fixed here
    /// (and `prefer_socket(false)` keeps it on TCP).
    pub async fn connect(host: &str, port: u16, user: &str, password: &str) -> Result<Self> {
        let opts = OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .max_allowed_packet(Some(16 * 1024 * 1024))
            .wait_timeout(Some(28800))
            .stmt_cache_size(0);
        Ok(AdminClient {
            conn: Conn::new(opts).await?,
        })
    }

    /// Send COM_QUIT and close.
    pub async fn disconnect(self) -> Result<()> {
        Ok(self.conn.disconnect().await?)
    }

    /// Run any admin statement and return its answer as text.
    pub async fn execute(&mut self, sql: &str) -> Result<Reply> {
        let mut result = self.conn.query_iter(sql).await?;
        let columns = result.columns();
        let reply = match columns {
            Some(cols) if !cols.is_empty() => {
                let types: Vec<ColumnType> = cols.iter().map(column_type).collect();
                let mut rs = ResultSet::new(cols.iter().map(|c| c.name_str().into_owned()))
                    .with_types(&types);
                let rows: Vec<mysql_async::Row> = result.collect().await?;
                for row in rows {
                    rs.push(row.unwrap().into_iter().map(text_of).collect());
                }
                Reply::Rows(rs)
            }
            _ => {
                let affected = result.affected_rows();
                let info = result.info().into_owned();
                result.drop_result().await?;
                Reply::Ok { affected, info }
            }
        };
        Ok(reply)
    }

    async fn rows(&mut self, sql: &str) -> Result<ResultSet> {
        match self.execute(sql).await? {
            Reply::Rows(rs) => Ok(rs),
            Reply::Ok { .. } => Ok(ResultSet::default()),
        }
    }

    pub async fn backends(&mut self) -> Result<Vec<BackendInfo>> {
        Ok(rows_of(&self.rows("SELECT * FROM backends").await?)?)
    }

    pub async fn set_offline(&mut self, ndx: usize) -> Result<BackendInfo> {
        one_backend(&self.rows(&format!("SET OFFLINE {ndx}")).await?)
    }

    pub async fn set_online(&mut self, ndx: usize) -> Result<BackendInfo> {
        one_backend(&self.rows(&format!("SET ONLINE {ndx}")).await?)
    }

    pub async fn add_master(&mut self, address: &str) -> Result<()> {
        let addr = BackendAddr::parse(address)?;
        self.execute(&format!("ADD MASTER {addr}")).await.map(drop)
    }

    pub async fn add_slave(&mut self, address: &str, weight: u32) -> Result<()> {
        let addr = BackendAddr::parse(address)?;
        if weight == 0 {
            return Err(AdminError::syntax("weight must be at least 1").into());
        }
        self.execute(&format!("ADD SLAVE {addr}@{weight}"))
            .await
            .map(drop)
    }

    pub async fn remove_backend(&mut self, ndx: usize) -> Result<()> {
        self.execute(&format!("REMOVE BACKEND {ndx}"))
            .await
            .map(drop)
    }

    pub async fn remove_slave(&mut self, address: &str) -> Result<()> {
        self.execute(&format!("REMOVE SLAVE {address}"))
            .await
            .map(drop)
    }

    pub async fn clients(&mut self) -> Result<Vec<String>> {
        Ok(column_of(
            &self.rows("SELECT * FROM clients").await?,
            "client",
        )?)
    }

    pub async fn add_client(&mut self, ip: &str) -> Result<()> {
        self.execute(&format!("ADD CLIENT {}", one_word(ip)?))
            .await
            .map(drop)
    }

    pub async fn remove_client(&mut self, ip: &str) -> Result<()> {
        self.execute(&format!("REMOVE CLIENT {}", one_word(ip)?))
            .await
            .map(drop)
    }

    /// `(user, encrypted password)` pairs.
    pub async fn users(&mut self) -> Result<Vec<(String, String)>> {
        let rs = self.rows("SELECT * FROM pwds").await?;
        Ok(pairs_of(&rs, "username", "password")?)
    }

    pub async fn add_user(&mut self, user: &str, password: &str) -> Result<()> {
        let sql = format!("ADD PWD {}:{}", user_name(user)?, quote(password));
        self.execute(&sql).await.map(drop)
    }

    pub async fn add_encrypted_user(&mut self, user: &str, encrypted: &str) -> Result<()> {
        let sql = format!("ADD ENPWD {}:{}", user_name(user)?, quote(encrypted));
        self.execute(&sql).await.map(drop)
    }

    pub async fn remove_user(&mut self, user: &str) -> Result<()> {
        self.execute(&format!("REMOVE PWD {}", user_name(user)?))
            .await
            .map(drop)
    }

    pub async fn save_config(&mut self) -> Result<()> {
        self.execute("SAVE CONFIG").await.map(drop)
    }

    pub async fn version(&mut self) -> Result<String> {
        let rs = self.rows("SELECT VERSION").await?;
        column_of(&rs, "version")?
            .into_iter()
            .next()
            .ok_or_else(|| RowError("SELECT VERSION returned no row".into()).into())
    }

    pub async fn stats(&mut self) -> Result<Vec<BackendStats>> {
        Ok(rows_of(&self.rows("SELECT * FROM stats").await?)?)
    }

    pub async fn sessions(&mut self) -> Result<Vec<SessionInfo>> {
        Ok(rows_of(&self.rows("SELECT * FROM sessions").await?)?)
    }

    pub async fn digests(&mut self) -> Result<Vec<DigestInfo>> {
        Ok(rows_of(&self.rows("SELECT * FROM digests").await?)?)
    }

    pub async fn vrrp(&mut self) -> Result<Vec<VrrpInfo>> {
        Ok(rows_of(&self.rows("SELECT * FROM vrrp").await?)?)
    }

    pub async fn ha_status(&mut self) -> Result<Vec<HaStatusInfo>> {
        Ok(rows_of(&self.rows("SELECT * FROM ha_status").await?)?)
    }

    pub async fn variables(&mut self, like: Option<&str>) -> Result<Vec<(String, String)>> {
        let sql = match like {
            None => "SHOW VARIABLES".to_string(),
            Some(p) => format!("SHOW VARIABLES LIKE {}", quote(p)),
        };
        let rs = self.rows(&sql).await?;
        Ok(pairs_of(&rs, "Variable_name", "Value")?)
    }

    pub async fn set_variable(&mut self, name: &str, value: &str) -> Result<()> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(AdminError::syntax(format!("bad variable name '{name}'")).into());
        }
        self.execute(&format!("SET GLOBAL {name} = {}", quote(value)))
            .await
            .map(drop)
    }
}

fn column_type(c: &mysql_async::Column) -> ColumnType {
    use mysql_async::consts::ColumnType as T;
    match c.column_type() {
        T::MYSQL_TYPE_TINY
        | T::MYSQL_TYPE_SHORT
        | T::MYSQL_TYPE_INT24
        | T::MYSQL_TYPE_LONG
        | T::MYSQL_TYPE_LONGLONG => ColumnType::Integer,
        _ => ColumnType::Text,
    }
}

fn text_of(v: Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn one_backend(rs: &ResultSet) -> Result<BackendInfo> {
    rows_of::<BackendInfo>(rs)?
        .into_iter()
        .next()
        .ok_or_else(|| RowError("expected the backend's row, got none".into()).into())
}

/// `s` as one argument of an admin statement: a blank would split it, and a `;` end it.
fn one_word(s: &str) -> std::result::Result<&str, AdminError> {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == ';') {
        return Err(AdminError::syntax(format!(
            "'{s}' must be one word without ';'"
        )));
    }
    Ok(s)
}

/// A user name as one argument, without the `:` that ends it in `ADD PWD user:password`
/// (IPv6 client entries need theirs).
fn user_name(s: &str) -> std::result::Result<&str, AdminError> {
    let s = one_word(s)?;
    if s.contains(':') {
        return Err(AdminError::syntax(format!(
            "user name '{s}' must not contain ':'"
        )));
    }
    Ok(s)
}

/// A single-quoted SQL string; the admin parser undoes exactly these escapes.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables;
    use crate::{BackendRole, BackendState};

    fn set(columns: &[&str], rows: &[&[Option<&str>]]) -> ResultSet {
        let mut rs = ResultSet::new(columns.iter().copied());
        for r in rows {
            rs.push(r.iter().map(|v| v.map(str::to_string)).collect());
        }
        rs
    }

    #[test]
    fn backend_rows_parse_by_name() {
        let rs = set(
            &tables::BACKEND_COLUMNS,
            &[
                &[Some("1"), Some("10.0.0.1:3306"), Some("up"), Some("rw")],
                &[
                    Some("2"),
                    Some("db2.example:3307"),
                    Some("offline"),
                    Some("ro"),
                ],
            ],
        );
        let b: Vec<BackendInfo> = rows_of(&rs).unwrap();
        assert_eq!(b[1].ndx, 2);
        assert_eq!(b[1].address, "db2.example:3307");
        assert_eq!(b[1].state, BackendState::Offline);
        assert_eq!(b[1].role, BackendRole::ReadOnly);
        assert_eq!(b[0].role, BackendRole::ReadWrite);
    }

    #[test]
    fn extra_and_reordered_columns_are_fine() {
        let rs = set(
            &["type", "extra", "state", "address", "BACKEND_NDX"],
            &[&[Some("ro"), None, Some("down"), Some("h:1"), Some("3")]],
        );
        let b: Vec<BackendInfo> = rows_of(&rs).unwrap();
        assert_eq!(b[0].ndx, 3);
        assert_eq!(b[0].state, BackendState::Down);
    }

    #[test]
    fn bad_rows_are_errors() {
        let rs = set(
            &tables::BACKEND_COLUMNS,
            &[&[Some("x"), Some("a:1"), Some("up"), Some("rw")]],
        );
        assert!(rows_of::<BackendInfo>(&rs)
            .unwrap_err()
            .0
            .contains("backend_ndx"));
        let rs = set(
            &tables::BACKEND_COLUMNS,
            &[&[Some("1"), Some("a:1"), Some("sideways"), Some("rw")]],
        );
        assert!(rows_of::<BackendInfo>(&rs).is_err());
        let rs = set(&["backend_ndx"], &[&[Some("1")]]);
        assert!(rows_of::<BackendInfo>(&rs)
            .unwrap_err()
            .0
            .contains("no column 'address'"));
    }

    #[test]
    fn stats_sessions_digests_vrrp_round_trip() {
        let stats = vec![BackendStats {
            ndx: 2,
            address: "[::1]:3306".into(),
            state: BackendState::Up,
            role: BackendRole::ReadOnly,
            weight: 3,
            conns_in_use: 4,
            conns_idle: 5,
            queries: 600,
            errors: 7,
            avg_latency_us: 850,
            lag_seconds: Some(12),
            reason: Some("replication lag 12s, over the limit".into()),
        }];
        assert_eq!(
            rows_of::<BackendStats>(&tables::table_of(&stats)).unwrap(),
            stats
        );
        let sessions = vec![SessionInfo {
            id: 9,
            client: "127.0.0.1:5555".into(),
            user: "app".into(),
            schema: Some("shop".into()),
            backend: None,
            in_transaction: true,
            statement: Some("SELECT 1".into()),
            statement_age_ms: Some(12),
            last_gtid: Some("0-1-42".into()),
        }];
        assert_eq!(
            rows_of::<SessionInfo>(&tables::table_of(&sessions)).unwrap(),
            sessions
        );
        let digests = vec![DigestInfo {
            digest: "SELECT * FROM t WHERE id = ?".into(),
            count: 10,
            total_time_us: 1000,
            max_time_us: 300,
            rows: 10,
        }];
        assert_eq!(
            rows_of::<DigestInfo>(&tables::table_of(&digests)).unwrap(),
            digests
        );
        let vrrp = vec![VrrpInfo {
            instance: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 51,
            state: "MASTER".into(),
            priority: 100,
            effective_priority: 90,
            virtual_ips: vec!["10.0.0.100".into(), "10.0.0.101".into()],
            master: None,
        }];
        assert_eq!(rows_of::<VrrpInfo>(&tables::table_of(&vrrp)).unwrap(), vrrp);
        let ha = vec![HaStatusInfo {
            instance: "VI_1".into(),
            vrrp_state: "BACKUP".into(),
            role: "none".into(),
            db_role: "read-only".into(),
            replication: String::new(),
            last_action: Some("rejoin".into()),
            result: Some("errant: 0-1-7".into()),
            duration_ms: Some(12),
        }];
        assert_eq!(rows_of::<HaStatusInfo>(&tables::table_of(&ha)).unwrap(), ha);
    }

    #[test]
    fn pairs_and_columns() {
        let rs = set(
            &tables::PWD_COLUMNS,
            &[&[Some("app"), Some("KsWNCR6qyNk=")]],
        );
        assert_eq!(
            pairs_of(&rs, "username", "password").unwrap(),
            vec![("app".to_string(), "KsWNCR6qyNk=".to_string())]
        );
        let rs = set(&["client"], &[&[Some("10.0.0.1")], &[Some("192.168.1")]]);
        assert_eq!(
            column_of(&rs, "client").unwrap(),
            vec!["10.0.0.1", "192.168.1"]
        );
    }

    #[test]
    fn quoting_survives_the_parser() {
        for pwd in ["plain", "semi;", " spaced ", "it's", "back\\slash", "a:b"] {
            let sql = format!("ADD PWD app:{}", quote(pwd));
            match crate::parse(&sql).unwrap() {
                crate::Command::AddPwd { user, password } => {
                    assert_eq!((user.as_str(), password.as_str()), ("app", pwd), "{sql}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn text_values() {
        assert_eq!(text_of(Value::NULL), None);
        assert_eq!(text_of(Value::Bytes(b"up".to_vec())), Some("up".into()));
        assert_eq!(text_of(Value::Int(-3)), Some("-3".into()));
    }
}
