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
use crate::event_threads::PerThread;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

struct Idle {
    conn: Box<BackendConn>,
    permit: OwnedSemaphorePermit,
}

/// One event thread's idle connections, by key. It holds a handful of entries (users ×
/// collations) and is looked up twice per statement: a linear scan (the key's user is
/// compared by pointer first) beats hashing the user name each time.
#[derive(Default)]
struct ByKey(Vec<(ConnKey, Vec<Idle>)>);

impl ByKey {
    fn get_mut(&mut self, key: &ConnKey) -> Option<&mut Vec<Idle>> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn push(&mut self, idle: Idle) {
        match self.0.iter_mut().find(|(k, _)| *k == idle.conn.key) {
            Some((_, v)) => v.push(idle),
            None => self.0.push((idle.conn.key.clone(), vec![idle])),
        }
    }

    fn lists(&mut self) -> impl Iterator<Item = &mut Vec<Idle>> {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

pub struct Pool {
    /// Each event thread's lock sits on cache lines of its own, so taking and returning a
    /// connection (twice per statement) never moves a line between cores.
    idle: PerThread<Mutex<ByKey>>,
    permits: Arc<Semaphore>,
    max: u32,
    dial: Dial,
}

/// A connection checked out of a pool. Dropping it closes the connection; `Pool::release`
/// gives it back.
pub struct Lease {
    /// Boxed: a lease moves several times per statement (pool, session, relay), and a
    /// connection is a few hundred bytes.
    pub conn: Box<BackendConn>,
    permit: OwnedSemaphorePermit,
    /// Taken from the idle list rather than freshly opened: a failure before any reply may
    /// just mean the server closed it while idle.
    pub reused: bool,
}

/// Connections idle longer than this are closed by `Pool::reap`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Pool {
    pub fn new(max: u32, dial: Dial, event_threads: usize) -> Self {
        Pool {
            idle: PerThread::new(event_threads),
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
        now: Instant,
    ) -> Result<Lease, BackendError> {
        loop {
            let found = self
                .idle
                .local()
                .lock()
                .expect("pool lock")
                .get_mut(key)
                .and_then(|v| {
                    let at = v
                        .iter()
                        .rposition(|i| i.conn.state.schema.as_deref() == schema)
                        .or_else(|| v.len().checked_sub(1))?;
                    Some(v.remove(at))
                });
            match found {
                Some(Idle { mut conn, permit }) => {
                    if now.saturating_duration_since(conn.idle_since) > Duration::from_secs(1)
                        && conn.looks_closed()
                    {
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
                    crate::timer::timeout(self.dial.timeout, self.permits.clone().acquire_owned())
                        .await
                        .map_err(|_| BackendError::PoolExhausted {
                            addr: addr.to_string(),
                            max: self.max,
                        })?
                        .expect("semaphore never closed")
                }
            }
        };
        let conn = Box::new(BackendConn::connect(addr, key.clone(), password, &self.dial).await?);
        Ok(Lease {
            conn,
            permit,
            reused: false,
        })
    }

    /// Takes a connection back. It must carry no session-owned server state: callers reset
    /// dirty connections first.
    /// `now` is the caller's latest clock reading.
    pub fn release(&self, mut lease: Lease, now: Instant) {
        if lease.conn.broken || lease.conn.needs_reset() {
            return;
        }
        lease.conn.idle_since = now;
        self.idle.local().lock().expect("pool lock").push(Idle {
            conn: lease.conn,
            permit: lease.permit,
        });
    }

    fn take_any_idle(&self) -> Option<Idle> {
        self.idle.iter().find_map(|part| {
            part.lock()
                .expect("pool lock")
                .lists()
                .find_map(|v| (!v.is_empty()).then(|| v.remove(0)))
        })
    }

    /// Closes connections idle past the timeout.
    pub fn reap(&self) {
        for part in self.idle.iter() {
            let mut idle = part.lock().expect("pool lock");
            for v in idle.lists() {
                v.retain(|i| i.conn.idle_since.elapsed() < IDLE_TIMEOUT);
            }
            idle.0.retain(|(_, v)| !v.is_empty());
        }
    }

    pub fn clear_idle(&self) {
        for part in self.idle.iter() {
            part.lock().expect("pool lock").0.clear();
        }
    }

    /// (open connections, idle connections).
    pub fn counts(&self) -> (usize, usize) {
        let idle = self
            .idle
            .iter()
            .map(|part| {
                part.lock()
                    .expect("pool lock")
                    .lists()
                    .map(|v| v.len())
                    .sum::<usize>()
            })
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
        pool.release(self, Instant::now());
    }
}
