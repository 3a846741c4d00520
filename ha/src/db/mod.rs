//! Talking to the MariaDB/MySQL servers themselves, as an operator would: health probes
//! (`@@read_only`, replication state) and, for failover, promotion and rejoin.
//!
//! These connections use their own credentials, never an application user's, and are few:
//! one per server per prober, kept open between probes.

mod gtid;
mod promote;
mod rejoin;
mod replica;

pub use gtid::{errant_gtids, Gtid};
pub use promote::{promote, PromoteError, Promoted};
pub use rejoin::{read_only, read_only_on, rejoin, RejoinError, Rejoined, Replication};
pub use replica::{BadColumn, IoThread, ReplicaHealth, ReplicaStatus};

use mysql_async::prelude::Queryable;
use std::time::Duration;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTarget {
    /// `host:port`; a host name is resolved again on every (re)connect, so a VIP given as a
    /// DNS name follows the name.
    pub address: String,
    pub user: String,
    pub password: String,
    /// Bound on connecting and on each probe as a whole.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}: invalid address (expected host:port)")]
    BadAddress(String),
    #[error("{0}: {why}", why = plain(.1))]
    Server(String, mysql_async::Error),
    #[error("{0}: {1}")]
    Status(String, BadColumn),
}

/// A driver error as a DBA wants to read it: an I/O failure is the OS's own words
/// ("Connection refused"), not mysql_async's "Input/output error: Input/output error: ...".
fn plain(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io.to_string(),
        other => other.to_string(),
    }
}

/// This process ran out of file descriptors or memory: nothing about the peer it was
/// talking to, which must not be taken for down.
pub fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl DbError {
    /// The probe failed for want of descriptors or memory here (see [`is_local_shortage`]).
    pub fn is_local_shortage(&self) -> bool {
        match self {
            DbError::Server(_, mysql_async::Error::Io(mysql_async::IoError::Io(e))) => {
                is_local_shortage(e)
            }
            _ => false,
        }
    }

    /// The server answered with an error (access denied, too many connections…): it is
    /// reachable, whatever else is wrong.
    pub fn server_answered(&self) -> bool {
        matches!(self, DbError::Server(_, mysql_async::Error::Server(_)))
    }

    /// The server's error code, when it answered with one.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            DbError::Server(_, mysql_async::Error::Server(e)) => Some(e.code),
            _ => None,
        }
    }
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub read_only: bool,
    pub server_id: u32,
    /// `@@global.max_allowed_packet`: the longest command the server takes (bytes).
    pub max_allowed_packet: u64,
    /// `@@global.wait_timeout`: how long (seconds) the server keeps a new session's idle
    /// connection.
    pub wait_timeout: u64,
    /// `None`: not configured as a replica.
    pub replica: Option<ReplicaStatus>,
}

/// A reusable connection to one server for repeated probes.
pub struct Prober {
    target: DbTarget,
    conn: Option<mysql_async::Conn>,
    /// Probes the connection has served.
    served: u32,
    /// See [`Prober::fresh_login_every`].
    fresh_every: Option<u32>,
}

impl Prober {
    pub fn new(target: DbTarget) -> Self {
        Prober {
            target,
            conn: None,
            served: 0,
            fresh_every: None,
        }
    }

    /// Logs in afresh every `probes` probes. A kept connection stays with the server it
    /// reached, so behind an address that reaches another server now (a VIP whose old node
    /// still answers, a DNS name, a load balancer) it would report the old one for ever.
    pub fn fresh_login_every(mut self, probes: u32) -> Self {
        self.fresh_every = Some(probes);
        self
    }

    pub fn target(&self) -> &DbTarget {
        &self.target
    }

    /// Closes the connection in order (`COM_QUIT`), if there is one; a second at most.
    pub async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
        }
    }

    /// Pings (connecting first when needed), reads `@@read_only` and the replication status.
    /// Any failure drops the connection, so the next probe starts from a fresh connect.
    pub async fn probe(&mut self) -> Result<ServerStatus, DbError> {
        let timeout = self.target.timeout;
        let result = match tokio::time::timeout(timeout, self.probe_inner()).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Timeout(self.target.address.clone(), timeout)),
        };
        if result.is_err() {
            if let Some(conn) = self.conn.take() {
                // Closing politely would wait on a server that just failed us.
                drop(conn);
            }
        }
        result
    }

    async fn probe_inner(&mut self) -> Result<ServerStatus, DbError> {
        let addr = self.target.address.clone();
        let server = |e| DbError::Server(addr.clone(), e);
        if self.conn.is_some() && self.fresh_every.is_some_and(|n| self.served >= n) {
            self.served = 0;
            // The old connection goes only once the new one is in: a server at
            // `max_connections` would otherwise take the monitor's place, and blind it.
            match connect(&self.target).await {
                Ok(fresh) => {
                    self.close().await;
                    self.conn = Some(fresh);
                }
                Err(e) => {
                    tracing::debug!(backend = %addr, "monitor's fresh login failed ({e}); probing on the kept connection")
                }
            }
        }
        // A connection that fails its ping may only have been killed on a live server (an
        // operator's KILL, wait_timeout): connecting again tells.
        if let Some(c) = &mut self.conn {
            if let Err(e) = c.ping().await {
                tracing::debug!(backend = %addr, "monitor connection lost ({e}); reconnecting");
                self.conn = None;
            }
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                self.served = 0;
                self.conn.insert(connect(&self.target).await?)
            }
        };
        self.served += 1;
        let (read_only, server_id, max_allowed_packet, wait_timeout): (u8, u32, u64, u64) = conn
            .query_first(
                "SELECT @@read_only, @@server_id, @@global.max_allowed_packet, \
                 @@global.wait_timeout",
            )
            .await
            .map_err(server)?
            .unwrap_or_default();
        let replica = replica_status_of(conn, &addr).await?;
        Ok(ServerStatus {
            read_only: read_only != 0,
            server_id,
            max_allowed_packet,
            wait_timeout,
            replica,
        })
    }
}

/// Opens an operator connection to `target` (TCP, never the Unix socket, which would bypass
/// the address the operator configured).
pub async fn connect(target: &DbTarget) -> Result<mysql_async::Conn, DbError> {
    let (host, port) = split_address(&target.address)?;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(target.user.clone()))
        .pass(Some(target.password.clone()))
        .prefer_socket(false)
        // A host that crashed under the connection sends nothing: see rwproxy's
        // `backend::conn::tcp_connect`.
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .wait_timeout(Some(28_800));
    match tokio::time::timeout(target.timeout, mysql_async::Conn::new(opts)).await {
        Ok(r) => r.map_err(|e| DbError::Server(target.address.clone(), e)),
        Err(_) => Err(DbError::Timeout(target.address.clone(), target.timeout)),
    }
}

/// The replication status, `None` when the server is not a replica.
pub(crate) async fn replica_status_of(
    conn: &mut mysql_async::Conn,
    addr: &str,
) -> Result<Option<ReplicaStatus>, DbError> {
    replica_status(conn)
        .await
        .map_err(|e| DbError::Server(addr.to_string(), e))?
        .map(|row| {
            let names: Vec<String> = row
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect();
            let values: Vec<Option<String>> = (0..names.len())
                .map(|i| row.get::<Option<String>, _>(i).flatten())
                .collect();
            ReplicaStatus::from_columns(
                names
                    .iter()
                    .map(String::as_str)
                    .zip(values.iter().map(Option::as_deref)),
            )
        })
        .transpose()
        .map_err(|e| DbError::Status(addr.to_string(), e))
}

/// `SHOW REPLICA STATUS` (MariaDB ≥ 10.5, MySQL ≥ 8.0.22; MySQL 8.4 knows no other
/// spelling), falling back to `SHOW SLAVE STATUS` on servers that predate it.
async fn replica_status(
    conn: &mut mysql_async::Conn,
) -> Result<Option<mysql_async::Row>, mysql_async::Error> {
    const PARSE_ERROR: u16 = 1064;
    match conn.query_first("SHOW REPLICA STATUS").await {
        Err(mysql_async::Error::Server(e)) if e.code == PARSE_ERROR => {
            conn.query_first("SHOW SLAVE STATUS").await
        }
        other => other,
    }
}

fn split_address(address: &str) -> Result<(String, u16), DbError> {
    let bad = || DbError::BadAddress(address.to_string());
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split() {
        assert_eq!(split_address("db1:3306").unwrap(), ("db1".into(), 3306));
        assert_eq!(
            split_address("[fd00::5]:3307").unwrap(),
            ("fd00::5".into(), 3307)
        );
        assert!(split_address("db1").is_err());
        assert!(split_address(":3306").is_err());
        assert!(split_address("db1:x").is_err());
    }
}
