//! Promotion of the local server to primary, without losing what it already received.
//!
//! A replica whose primary died may hold events in its relay log that its SQL thread has not
//! applied yet; `RESET SLAVE ALL` deletes them (measured: 50 acknowledged rows lost when
//! promoting without waiting). So: stop receiving, wait until everything received is applied
//! (`MASTER_GTID_WAIT(Gtid_IO_Pos)`, watching the SQL thread, which the wait does not do),
//! and only then cut replication and make the server writable.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::{connect, replica_status_of, DbError, DbTarget, IoThread};

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
}

impl PromoteError {
    /// A drain that failed: retrying does not help, a human (or `promote_anyway`) decides.
    pub fn is_drain_failure(&self) -> bool {
        !matches!(self, PromoteError::Db(_))
    }
}

/// How long one `MASTER_GTID_WAIT` call may block before the SQL thread is looked at again.
const WAIT_SLICE: Duration = Duration::from_millis(250);

/// Makes the server at `target` a writable primary. With `promote_anyway`, a failed drain is
/// logged loudly and the server is promoted regardless.
pub async fn promote(
    target: &DbTarget,
    drain_timeout: Duration,
    promote_anyway: bool,
) -> Result<Promoted, PromoteError> {
    let addr = target.address.clone();
    let mut conn = connect(target).await?;
    let err = |e| DbError::Server(addr.clone(), e);
    let Some(status) = replica_status_of(&mut conn, &addr).await? else {
        conn.query_drop("SET GLOBAL read_only = OFF")
            .await
            .map_err(err)?;
        return Ok(Promoted::AlreadyPrimary);
    };
    let drained = if !status.sql_running
        && status.io_thread == IoThread::Stopped
        && status.last_sql_errno != 0
    {
        // Starting either thread now would discard the relay log (see below) and with it
        // the event that failed: a later attempt would then look drained when it is not.
        Err(PromoteError::SqlThread {
            errno: status.last_sql_errno,
            error: status.last_sql_error.clone(),
            pos: status.gtid_io_pos.clone(),
        })
    } else {
        // The SQL thread first: MariaDB discards the relay log when a replica whose threads
        // are both stopped starts one again, and with it the very events the drain is for.
        if !status.sql_running {
            conn.query_drop("START SLAVE SQL_THREAD")
                .await
                .map_err(err)?;
        }
        // Nothing more may arrive while we wait for what did arrive.
        conn.query_drop("STOP SLAVE IO_THREAD").await.map_err(err)?;
        let pos = replica_status_of(&mut conn, &addr)
            .await?
            .unwrap_or(status)
            .gtid_io_pos;
        drain(&mut conn, &addr, &pos, drain_timeout)
            .await
            .map(|waited| (pos, waited))
    };
    let outcome = match drained {
        Ok((applied, waited)) => Promoted::Drained { applied, waited },
        Err(e @ PromoteError::Db(_)) => return Err(e),
        Err(e) if promote_anyway => {
            tracing::error!(server = %addr, "PROMOTING ANYWAY (promote_anyway = true): {e}; transactions the old primary acknowledged may be missing here");
            Promoted::Anyway {
                reason: e.to_string(),
            }
        }
        // Not promoted; replication stays stopped as it is, relay log intact, for a human.
        Err(e) => return Err(e),
    };
    for sql in [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "SET GLOBAL read_only = OFF",
    ] {
        conn.query_drop(sql).await.map_err(err)?;
    }
    Ok(outcome)
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
