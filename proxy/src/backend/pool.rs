//! Per-backend connection pool.
//!
//! Connections are opened per (user, collation, session capabilities) because those are fixed
//! at login; a semaphore bounds all of a backend's connections, idle ones included. A client
//! holds a connection only while a statement runs or while its session is pinned, so many idle
//! clients share a few connections.
//!
//! Idle connections are kept per event thread (see `event_threads`): a connection's socket is
//! registered with the reactor of the thread that opened it, so only sessions of that thread
//! take it again. The bound on open connections is shared by all threads.

use super::conn::{BackendConn, BackendError, ConnKey, Dial};
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which event thread's idle list (`usize::MAX`: callers on no event thread).
type Slot = usize;

fn slot() -> Slot {
    crate::event_threads::current().unwrap_or(usize::MAX)
}

struct Idle {
    conn: BackendConn,
    permit: OwnedSemaphorePermit,
}

pub struct Pool {
    /// Looked up twice per statement (acquire, release): FxHash, not SipHash — the keys are
    /// the proxy's own, not attacker-chosen collisions.
    idle: Mutex<FxHashMap<Slot, FxHashMap<ConnKey, Vec<Idle>>>>,
    permits: Arc<Semaphore>,
    max: u32,
    dial: Dial,
}

/// A connection checked out of a pool. Dropping it closes the connection; `Pool::release`
/// gives it back.
pub struct Lease {
    pub conn: BackendConn,
    permit: OwnedSemaphorePermit,
    /// Taken from the idle list rather than freshly opened: a failure before any reply may
    /// just mean the server closed it while idle.
    pub reused: bool,
}

/// Connections idle longer than this are closed by `Pool::reap`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Pool {
    pub fn new(max: u32, dial: Dial) -> Self {
        Pool {
            idle: Mutex::new(FxHashMap::default()),
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            dial,
        }
    }

    /// A connection for `key`, preferring an idle one already in `schema` (switching schema
    /// costs a round trip, and leaving one is impossible without a new connection).
    pub async fn acquire(
        &self,
        addr: &str,
        key: &ConnKey,
        password: &str,
        schema: Option<&str>,
    ) -> Result<Lease, BackendError> {
        let slot = slot();
        loop {
            let found = self
                .idle
                .lock()
                .expect("pool lock")
                .get_mut(&slot)
                .and_then(|by_key| by_key.get_mut(key))
                .and_then(|v| {
                    let at = v
                        .iter()
                        .rposition(|i| i.conn.state.schema.as_deref() == schema)
                        .or_else(|| v.len().checked_sub(1))?;
                    Some(v.remove(at))
                });
            match found {
                Some(Idle { mut conn, permit }) => {
                    if conn.idle_since.elapsed() > Duration::from_secs(1) && conn.looks_closed() {
                        continue;
                    }
                    return Ok(Lease {
                        conn,
                        permit,
                        reused: true,
                    });
                }
                None => break,
            }
        }
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: close an idle connection opened for someone else, or wait.
                if let Some(idle) = self.take_any_idle() {
                    idle.permit
                } else {
                    tokio::time::timeout(self.dial.timeout, self.permits.clone().acquire_owned())
                        .await
                        .map_err(|_| BackendError::PoolExhausted {
                            addr: addr.to_string(),
                            max: self.max,
                        })?
                        .expect("semaphore never closed")
                }
            }
        };
        let conn = BackendConn::connect(addr, key.clone(), password, &self.dial).await?;
        Ok(Lease {
            conn,
            permit,
            reused: false,
        })
    }

    /// Takes a connection back. It must carry no session-owned server state: callers reset
    /// dirty connections first.
    pub fn release(&self, mut lease: Lease) {
        if lease.conn.broken || lease.conn.needs_reset() {
            return;
        }
        lease.conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock");
        let by_key = idle.entry(slot()).or_default();
        let conn = Idle {
            conn: lease.conn,
            permit: lease.permit,
        };
        // No key clone (an atomic increment) when the list exists, as it almost always does.
        match by_key.get_mut(&conn.conn.key) {
            Some(v) => v.push(conn),
            None => {
                by_key.insert(conn.conn.key.clone(), vec![conn]);
            }
        }
    }

    fn take_any_idle(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().expect("pool lock");
        idle.values_mut()
            .flat_map(|by_key| by_key.values_mut())
            .find_map(|v| {
                if v.is_empty() {
                    None
                } else {
                    Some(v.remove(0))
                }
            })
    }

    /// Closes connections idle past the timeout.
    pub fn reap(&self) {
        let mut idle = self.idle.lock().expect("pool lock");
        for by_key in idle.values_mut() {
            for v in by_key.values_mut() {
                v.retain(|i| i.conn.idle_since.elapsed() < IDLE_TIMEOUT);
            }
            by_key.retain(|_, v| !v.is_empty());
        }
    }

    pub fn clear_idle(&self) {
        self.idle.lock().expect("pool lock").clear();
    }

    /// (open connections, idle connections).
    pub fn counts(&self) -> (usize, usize) {
        let idle = self
            .idle
            .lock()
            .expect("pool lock")
            .values()
            .flat_map(|by_key| by_key.values())
            .map(Vec::len)
            .sum();
        (self.max as usize - self.permits.available_permits(), idle)
    }
}

impl Lease {
    /// Resets a connection that carries session-owned state, then returns it to its pool.
    pub async fn reset_and_release(mut self, pool: &Pool) {
        if !self.conn.broken && self.conn.needs_reset() {
            if let Err(e) = self.conn.reset().await {
                tracing::debug!("closing backend connection that failed to reset: {e}");
                return;
            }
        }
        pool.release(self);
    }
}
