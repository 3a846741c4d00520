//! Demotion and rejoin: a server that is not the primary is read-only, and a former primary
//! comes back as a replica of the new one — unless it holds transactions the new primary never
//! had (errant GTIDs). Replicating then would either fail (error 1236) or, worse, leave two
//! diverged copies; such a server waits for a human.

use mysql_async::prelude::Queryable;
use rwproxy_admin::client::quote;

use super::gtid::{errant_gtids, Gtid};
use super::{connect, replica_status_of, DbError, DbTarget, IoThread};

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
    let mut conn = connect(target).await?;
    read_only_on(&mut conn, &target.address).await
}

/// [`read_only`] on a connection already open to `addr`. It leaves the session's
/// `lock_wait_timeout` at 1 s.
pub async fn read_only_on(conn: &mut mysql_async::Conn, addr: &str) -> Result<(), DbError> {
    let err = |e| DbError::Server(addr.to_string(), e);
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
    read_only_on(&mut conn, &addr)
        .await
        .map_err(RejoinError::Local)?;
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
