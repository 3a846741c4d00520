//! Promotion of the local server to primary, without losing what it already received.
//!
//! A replica whose primary died may hold events in its relay log that its SQL thread has not
//! applied yet; `RESET SLAVE ALL` deletes them (measured: 50 acknowledged rows lost when
//! promoting without waiting). So: stop receiving, wait until everything received is applied
//! (`MASTER_GTID_WAIT(Gtid_IO_Pos)`, watching the SQL thread, which the wait does not do),
//! and only then cut replication and make the server writable.
//!
//! Nor may it promote a server that lacks what another one has: VRRP priority alone chose
//! this node, so the other database servers are asked first, and one that received (or, as an
//! old primary, logged) transactions this one never got stops the promotion.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::gtid::newer_domains;
use super::{connect, read_only_on, replica_status_of, DbError, DbTarget, IoThread, ReplicaStatus};

/// How promotion ended when it made the server writable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promoted {
    /// Not a replica: only `read_only` had to be switched off.
    AlreadyPrimary,
    /// Everything received (up to `applied`) was applied before replication was cut.
    Drained { applied: String, waited: Duration },
    /// The drain failed and `promote_anyway` was set: writable, possibly missing events.
    Anyway { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("drain failed: the replication SQL thread stopped (error {errno}: {error}) before applying {pos}; not promoted")]
    SqlThread {
        errno: u32,
        error: String,
        pos: String,
    },
    #[error("drain failed: events up to {pos} were not applied within {timeout:?}; not promoted")]
    DrainTimeout { pos: String, timeout: Duration },
    #[error("both replication threads are stopped with events received but not applied (received {received}, applied {applied}): starting the SQL thread would discard them; not promoted (apply them by hand, or set promote_anyway)")]
    Stranded { received: String, applied: String },
    #[error("{peer} has transactions this server never received ({gtids}); not promoted: promote that server instead, or set promote_anyway")]
    PeerAhead { peer: String, gtids: String },
}

impl PromoteError {
    /// A drain that failed: retrying does not help, a human (or `promote_anyway`) decides.
    pub fn is_drain_failure(&self) -> bool {
        !matches!(self, PromoteError::Db(_))
    }
}

/// How long one `MASTER_GTID_WAIT` call may block before the SQL thread is looked at again.
const WAIT_SLICE: Duration = Duration::from_millis(250);

/// Makes the server at `target` a writable primary, unless one of `peers` (the other
/// database servers, `host:port`; unreachable ones are passed over) has transactions it lacks.
/// With `promote_anyway`, a failed drain or such a peer is logged loudly and the server is
/// promoted regardless.
pub async fn promote(
    target: &DbTarget,
    peers: &[String],
    drain_timeout: Duration,
    promote_anyway: bool,
) -> Result<Promoted, PromoteError> {
    let addr = target.address.clone();
    let mut conn = connect(target).await?;
    let err = |e| DbError::Server(addr.clone(), e);
    let status = replica_status_of(&mut conn, &addr).await?;
    let replica = status.is_some();
    let read_only: u8 = conn
        .query_first("SELECT @@read_only")
        .await
        .map_err(err)?
        .unwrap_or_default();
    let drained = match status {
        // Writable already: a primary at work whose node is told MASTER again (a restart of
        // the HA daemon, keepalived's notify). Its replicas follow it; nothing to compare.
        None if read_only == 0 => Ok(None),
        // An old primary back, read-only as advised: writable only if no server went further.
        None => match peer_ahead(&mut conn, target, peers).await? {
            Some(e) => Err(e),
            None => Ok(None),
        },
        Some(status) => drain_replica(&mut conn, target, peers, status, drain_timeout)
            .await
            .map(Some),
    };
    let outcome = match drained {
        Ok(None) => {
            conn.query_drop("SET GLOBAL read_only = OFF")
                .await
                .map_err(err)?;
            return Ok(Promoted::AlreadyPrimary);
        }
        Ok(Some((applied, waited))) => Promoted::Drained { applied, waited },
        Err(e @ PromoteError::Db(_)) => return Err(e),
        Err(e) if promote_anyway => {
            tracing::error!(server = %addr, "PROMOTING ANYWAY (promote_anyway = true): {e}; transactions the old primary acknowledged may be missing here");
            Promoted::Anyway {
                reason: e.to_string(),
            }
        }
        // Not promoted; replication stays stopped as it is, relay log intact, for a human. A
        // server that is not a replica (an old primary back) may be writable: not any more.
        Err(e) => {
            read_only_on(&mut conn, &addr).await?;
            return Err(e);
        }
    };
    let cut: &[&str] = if replica {
        &["STOP SLAVE", "RESET SLAVE ALL"]
    } else {
        &[]
    };
    for sql in cut.iter().chain(&["SET GLOBAL read_only = OFF"]) {
        conn.query_drop(*sql).await.map_err(err)?;
    }
    Ok(outcome)
}

/// Stops the replica receiving, makes sure no peer has more, and waits until it applied
/// everything it received; returns that position and the wait.
async fn drain_replica(
    conn: &mut mysql_async::Conn,
    target: &DbTarget,
    peers: &[String],
    status: ReplicaStatus,
    timeout: Duration,
) -> Result<(String, Duration), PromoteError> {
    let addr = target.address.as_str();
    let err = |e| DbError::Server(addr.to_string(), e);
    if !status.sql_running && status.io_thread == IoThread::Stopped {
        let applied: String = conn
            .query_first("SELECT @@gtid_slave_pos")
            .await
            .map_err(err)?
            .unwrap_or_default();
        // MariaDB discards the relay log when a replica whose threads are both stopped starts
        // one again, and with it the events a drain is for: only a replica that has applied
        // all it received may go on from here.
        let unapplied = newer_domains(&[&status.gtid_io_pos], &[&applied])
            .map_err(|_| DbError::Status(addr.to_string(), super::BadColumn("Gtid_IO_Pos")))?;
        return match (unapplied.is_empty(), status.last_sql_errno) {
            (true, _) => match peer_ahead(conn, target, peers).await? {
                Some(e) => Err(e),
                None => Ok((status.gtid_io_pos, Duration::ZERO)),
            },
            (false, 0) => Err(PromoteError::Stranded {
                received: status.gtid_io_pos,
                applied,
            }),
            (false, errno) => Err(PromoteError::SqlThread {
                errno,
                error: status.last_sql_error,
                pos: status.gtid_io_pos,
            }),
        };
    }
    // The SQL thread first, while the IO thread still runs (see above).
    if !status.sql_running {
        conn.query_drop("START SLAVE SQL_THREAD")
            .await
            .map_err(err)?;
    }
    // Nothing more may arrive while we wait for what did arrive.
    conn.query_drop("STOP SLAVE IO_THREAD").await.map_err(err)?;
    let pos = replica_status_of(conn, addr)
        .await?
        .unwrap_or(status)
        .gtid_io_pos;
    // Compared once nothing more arrives here: what this server will have is now known.
    if let Some(e) = peer_ahead(conn, target, peers).await? {
        return Err(e);
    }
    drain(conn, addr, &pos, timeout)
        .await
        .map(|waited| (pos, waited))
}

/// The first of `peers` holding transactions that this server (on `conn`) lacks. Peers are
/// asked together, each within `local`'s timeout; one that cannot be asked (the dead primary,
/// as a rule) is passed over, and so is this server under another address.
async fn peer_ahead(
    conn: &mut mysql_async::Conn,
    local: &DbTarget,
    peers: &[String],
) -> Result<Option<PromoteError>, DbError> {
    let (server_id, lists) = gtid_lists_on(conn, &local.address, true).await?;
    let here: Vec<&str> = lists.iter().map(String::as_str).collect();
    let mut asked = tokio::task::JoinSet::new();
    for peer in peers.iter().filter(|p| **p != local.address) {
        let target = DbTarget {
            address: peer.clone(),
            ..local.clone()
        };
        asked.spawn(async move {
            let r = tokio::time::timeout(target.timeout, gtid_lists(&target)).await;
            (target.address, r)
        });
    }
    let mut found = None;
    while let Some(Ok((peer, r))) = asked.join_next().await {
        let lists = match r {
            Ok(Ok((id, _))) if id == server_id => continue,
            Ok(Ok((_, lists))) => lists,
            // Refused (an operator account that only works from localhost, say): the check
            // is off for that server, which the DBA must hear about.
            Ok(Err(e)) if e.server_answered() => {
                tracing::warn!(server = %local.address, "promotion: cannot compare GTIDs with {e}");
                continue;
            }
            Ok(Err(e)) => {
                tracing::info!(server = %local.address, "promotion: cannot compare GTIDs with {e}");
                continue;
            }
            Err(_) => {
                tracing::info!(server = %local.address, "promotion: cannot compare GTIDs with {peer}: no answer");
                continue;
            }
        };
        let peer_lists: Vec<&str> = lists.iter().map(String::as_str).collect();
        match newer_domains(&peer_lists, &here) {
            Ok(g) if !g.is_empty() => {
                let gtids = g
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                found.get_or_insert(PromoteError::PeerAhead { peer, gtids });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(server = %local.address, "promotion: {peer}: {e}"),
        }
    }
    Ok(found)
}

/// A peer's id and GTID lists (see [`gtid_lists_on`]).
async fn gtid_lists(target: &DbTarget) -> Result<(u32, Vec<String>), DbError> {
    let mut conn = connect(target).await?;
    gtid_lists_on(&mut conn, &target.address, false).await
}

/// A server's id and the GTID lists that say what it has. A replica's are what it applied
/// and received: its binlog also holds its own writes (an `ANALYZE`, a DBA's change in a
/// domain of its own), which are no transactions of the primary's. Another server's (a
/// primary's) are what it logged. `all`: every list, for the server being promoted, whose
/// own writes it keeps.
async fn gtid_lists_on(
    conn: &mut mysql_async::Conn,
    addr: &str,
    all: bool,
) -> Result<(u32, Vec<String>), DbError> {
    let (id, binlog, applied): (u32, String, String) = conn
        .query_first("SELECT @@server_id, @@gtid_binlog_state, @@gtid_slave_pos")
        .await
        .map_err(|e| DbError::Server(addr.to_string(), e))?
        .unwrap_or_default();
    let lists = match replica_status_of(conn, addr).await? {
        Some(r) if all => vec![binlog, applied, r.gtid_io_pos],
        Some(r) => vec![applied, r.gtid_io_pos],
        None => vec![binlog],
    };
    Ok((id, lists))
}

/// Waits until the SQL thread has applied `pos`, failing as soon as the thread stops.
async fn drain(
    conn: &mut mysql_async::Conn,
    addr: &str,
    pos: &str,
    timeout: Duration,
) -> Result<Duration, PromoteError> {
    let start = Instant::now();
    if pos.is_empty() {
        return Ok(start.elapsed());
    }
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let slice = left.min(WAIT_SLICE);
        let r: Option<i64> = conn
            .exec_first("SELECT MASTER_GTID_WAIT(?, ?)", (pos, slice.as_secs_f64()))
            .await
            .map_err(|e| DbError::Server(addr.to_string(), e))?;
        if r == Some(0) {
            return Ok(start.elapsed());
        }
        let status = replica_status_of(conn, addr).await?;
        if let Some(s) = status.filter(|s| !s.sql_running) {
            return Err(PromoteError::SqlThread {
                errno: s.last_sql_errno,
                error: s.last_sql_error,
                pos: pos.to_string(),
            });
        }
        if start.elapsed() >= timeout {
            return Err(PromoteError::DrainTimeout {
                pos: pos.to_string(),
                timeout,
            });
        }
    }
}
