//! Demotion and rejoin: a server that is not the primary is read-only, and a former primary
//! comes back as a replica of the new one — unless it holds transactions the new primary never
//! had (errant GTIDs). Replicating then would either fail (error 1236) or, worse, leave two
//! diverged copies; such a server waits for a human.

use std::fmt;
use std::str::FromStr;

use mysql_async::prelude::Queryable;
use rwproxy_admin::client::quote;

use super::{connect, replica_status_of, DbError, DbTarget, IoThread};

/// One MariaDB GTID, `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl FromStr for Gtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a GTID (domain-server-seq)");
        let mut it = s.trim().splitn(3, '-');
        let mut next = || it.next().ok_or_else(bad);
        let domain = next()?.parse().map_err(|_| bad())?;
        let server = next()?.parse().map_err(|_| bad())?;
        let seq = next()?.parse().map_err(|_| bad())?;
        Ok(Gtid {
            domain,
            server,
            seq,
        })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

fn gtid_list(s: &str) -> Result<Vec<Gtid>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::parse)
        .collect()
}

/// The transactions in `local` (a `@@gtid_binlog_state`: the last GTID per domain and server)
/// that `primary`'s binlog state does not cover: for each (domain, server) the local server
/// logged, a higher sequence number than the primary has, or one the primary lacks entirely.
pub fn errant_gtids(local: &str, primary: &str) -> Result<Vec<Gtid>, String> {
    let primary = gtid_list(primary)?;
    Ok(gtid_list(local)?
        .into_iter()
        .filter(|l| {
            !primary
                .iter()
                .any(|p| p.domain == l.domain && p.server == l.server && p.seq >= l.seq)
        })
        .collect())
}

/// Where and as whom a rejoining server replicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// The new primary as the replica's IO thread reaches it (`CHANGE MASTER TO MASTER_HOST`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejoined {
    /// Already a replica of that primary; only `read_only` was (re)asserted.
    AlreadyReplicating,
    /// Replication started from the server's own binlog position.
    Started { from: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RejoinError {
    #[error(transparent)]
    Local(DbError),
    #[error("new primary: {0}")]
    Primary(DbError),
    #[error("errant transactions {} not on the new primary (which has {primary}); not replicating, a human must decide", list(.gtids))]
    Errant { gtids: Vec<Gtid>, primary: String },
    #[error("cannot read GTID state: {0}")]
    Gtid(String),
    #[error("{0} is this server itself")]
    SelfReplication(String),
}

impl RejoinError {
    /// Errant transactions: retrying cannot fix it.
    pub fn needs_human(&self) -> bool {
        matches!(
            self,
            RejoinError::Errant { .. } | RejoinError::SelfReplication(_)
        )
    }
}

fn list(g: &[Gtid]) -> String {
    g.iter().map(Gtid::to_string).collect::<Vec<_>>().join(",")
}

/// How many times `read_only` ends the commits that block it before giving up.
const READ_ONLY_ATTEMPTS: usize = 5;

/// `SET GLOBAL read_only = ON`: the first thing a node that is not MASTER does.
///
/// The statement waits for commits in progress. Under semi-synchronous replication a commit
/// cut off from its replica (a partition) waits for an acknowledgement up to
/// `rpl_semi_sync_master_timeout` and then commits and answers its client anyway — from the
/// side that has just lost the write VIP. So the wait is bounded (`lock_wait_timeout`), and
/// those sessions are killed: their clients see a lost connection (outcome unknown), never an
/// acknowledgement, and the transaction stays local (an errant GTID if the node rejoins).
/// (The state ends in "slave" on MariaDB and MySQL 5.7, "replica" on MySQL 8.0.26+.)
pub async fn read_only(target: &DbTarget) -> Result<(), DbError> {
    let addr = &target.address;
    let err = |e| DbError::Server(addr.clone(), e);
    let mut conn = connect(target).await?;
    conn.query_drop("SET SESSION lock_wait_timeout = 1")
        .await
        .map_err(err)?;
    let mut attempt = 1;
    loop {
        match conn.query_drop("SET GLOBAL read_only = ON").await {
            Err(mysql_async::Error::Server(e))
                if e.code == ER_LOCK_WAIT_TIMEOUT && attempt < READ_ONLY_ATTEMPTS =>
            {
                attempt += 1;
                let waiting: Vec<u64> = conn
                    .query(
                        "SELECT ID FROM information_schema.PROCESSLIST \
                         WHERE STATE LIKE 'Waiting for semi-sync ACK from %'",
                    )
                    .await
                    .map_err(err)?;
                if !waiting.is_empty() {
                    tracing::warn!(server = %addr, sessions = ?waiting, "read_only=ON waits for commits no replica acknowledges: killing those sessions (their clients get no acknowledgement)");
                }
                for id in waiting {
                    // Gone already is fine: its commit is no longer in the way.
                    let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
                }
            }
            r => return r.map_err(err),
        }
    }
}

/// `ER_LOCK_WAIT_TIMEOUT`: `lock_wait_timeout` expired.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// Makes the server at `local` a read-only replica of `repl`'s primary, reached for the GTID
/// check as `primary` (operator credentials). Errant transactions stop it before anything
/// changes besides `read_only`.
pub async fn rejoin(
    local: &DbTarget,
    primary: &DbTarget,
    repl: &Replication,
) -> Result<Rejoined, RejoinError> {
    let addr = local.address.clone();
    let err = |e| RejoinError::Local(DbError::Server(addr.clone(), e));
    let mut conn = connect(local).await.map_err(RejoinError::Local)?;
    conn.query_drop("SET GLOBAL read_only = ON")
        .await
        .map_err(err)?;
    let status = replica_status_of(&mut conn, &addr)
        .await
        .map_err(RejoinError::Local)?;
    if let Some(s) = &status {
        if s.primary_host == repl.host
            && s.primary_port == repl.port
            && s.sql_running
            && s.io_thread != IoThread::Stopped
        {
            return Ok(Rejoined::AlreadyReplicating);
        }
    }
    let (local_state, local_id): (String, u32) = conn
        .query_first("SELECT @@gtid_binlog_state, @@server_id")
        .await
        .map_err(err)?
        .unwrap_or_default();
    let mut p = connect(primary).await.map_err(RejoinError::Primary)?;
    let (primary_state, primary_id): (String, u32) = p
        .query_first("SELECT @@gtid_binlog_state, @@server_id")
        .await
        .map_err(|e| RejoinError::Primary(DbError::Server(primary.address.clone(), e)))?
        .unwrap_or_default();
    drop(p);
    if primary_id == local_id {
        return Err(RejoinError::SelfReplication(primary.address.clone()));
    }
    let gtids = errant_gtids(&local_state, &primary_state).map_err(RejoinError::Gtid)?;
    if !gtids.is_empty() {
        return Err(RejoinError::Errant {
            gtids,
            primary: primary_state,
        });
    }
    if status.is_some() {
        conn.query_drop("STOP SLAVE").await.map_err(err)?;
    }
    let from: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .map_err(err)?
        .unwrap_or_default();
    conn.exec_drop("SET GLOBAL gtid_slave_pos = ?", (&from,))
        .await
        .map_err(err)?;
    // CHANGE MASTER takes no placeholders.
    let change = format!(
        "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, \
         MASTER_PASSWORD = {}, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
        quote(&repl.host),
        repl.port,
        quote(&repl.user),
        quote(&repl.password)
    );
    conn.query_drop(change).await.map_err(err)?;
    conn.query_drop("START SLAVE").await.map_err(err)?;
    Ok(Rejoined::Started { from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtids_parse() {
        assert_eq!(
            "0-1-42".parse::<Gtid>().unwrap(),
            Gtid {
                domain: 0,
                server: 1,
                seq: 42
            }
        );
        assert!("0-1".parse::<Gtid>().is_err());
        assert!("a-1-2".parse::<Gtid>().is_err());
        assert_eq!(gtid_list(" 0-1-5, 1-2-3 ").unwrap().len(), 2);
        assert!(gtid_list("").unwrap().is_empty());
    }

    #[test]
    fn errant_detection() {
        // The old primary (server 1) is behind or equal: nothing errant.
        assert!(errant_gtids("0-1-10", "0-1-10,0-2-14").unwrap().is_empty());
        assert!(errant_gtids("0-1-9", "0-1-10,0-2-14").unwrap().is_empty());
        assert!(errant_gtids("", "0-2-1").unwrap().is_empty());
        // It logged a write the new primary never received.
        let e = errant_gtids("0-1-11", "0-1-10,0-2-14").unwrap();
        assert_eq!(e, vec!["0-1-11".parse().unwrap()]);
        // A server the primary never heard of, in another domain.
        let e = errant_gtids("0-1-10,7-3-2", "0-1-10").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].to_string(), "7-3-2");
        assert!(errant_gtids("junk", "").is_err());
    }
}
