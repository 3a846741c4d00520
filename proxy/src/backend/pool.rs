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
use super::{Backend, Health};
use crate::event_threads::PerThread;
use crate::session::names;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

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
    /// `max-connections`, which a reload may change ([`Pool::resize`]).
    max: AtomicU32,
    /// Permits a lowered `max` has still to take out of use: those of connections that were
    /// busy when it was lowered, taken as they close. The semaphore holds `max + owed`.
    owed: Arc<AtomicUsize>,
    resizing: Mutex<()>,
    dial: Dial,
    /// Wakes statements waiting for a connection of a full pool when one comes back idle
    /// (which frees no permit).
    returned: Notify,
    /// Statements waiting so: a return notifies only when there are some, so the common
    /// path only reads a line no core writes.
    waiting: AtomicUsize,
    /// The `sql_mode` status flags the last connection opened reported after its login (the
    /// server's global `sql_mode`), with [`KNOWN`] set; 0 before any.
    sql_mode: AtomicU32,
    /// The last connection opened found `completion_type = NO_CHAIN` after its login (see
    /// `BackendConn::plain_completion`).
    plain_completion: AtomicBool,
    /// Prepared statements open on the server through this pool's connections (see
    /// `BackendConn::open_stmts`).
    open_stmts: Arc<AtomicUsize>,
    /// The server's global `wait_timeout` as the monitor last read it, seconds (0: not
    /// known): idle connections are closed before the server would.
    server_wait_timeout: AtomicU64,
    /// Bumped by [`Pool::retire_all`]: a connection opened in an older generation is closed
    /// when it comes back.
    generation: AtomicU64,
}

const KNOWN: u32 = 1 << 16;

/// What a statement waiting on a full pool got.
enum Room {
    Idle(Lease),
    Permit(OwnedSemaphorePermit),
}

/// Counts a statement as waiting for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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

/// How often `Pool::reap` runs.
pub const REAP_EVERY: Duration = Duration::from_secs(1);

/// How long a connection whose server closes it idle after `wait` may stay in the pool:
/// three quarters of that less a reaper's tick, so the proxy closes it first (with
/// `COM_QUIT`). A server that closes a connection itself logs a warning and counts it in
/// `Aborted_clients`.
fn kept_idle(wait: Duration) -> Duration {
    IDLE_TIMEOUT.min((wait - wait / 4).saturating_sub(REAP_EVERY))
}

impl Pool {
    pub fn new(max: u32, dial: Dial, event_threads: usize) -> Self {
        Pool {
            idle: PerThread::new(event_threads),
            permits: Arc::new(Semaphore::new(max as usize)),
            max: AtomicU32::new(max),
            owed: Arc::default(),
            resizing: Mutex::new(()),
            dial,
            returned: Notify::new(),
            waiting: AtomicUsize::new(0),
            sql_mode: AtomicU32::new(0),
            plain_completion: AtomicBool::new(false),
            open_stmts: Arc::default(),
            server_wait_timeout: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The server's global `wait_timeout` (seconds), as the monitor read it.
    pub fn set_server_wait_timeout(&self, secs: u64) {
        self.server_wait_timeout.store(secs, Ordering::Relaxed);
    }

    /// A new session on this server starts with `completion_type = NO_CHAIN`, as far as the
    /// last connection opened tells: then a `COMMIT` with nothing open neither chains a
    /// transaction nor releases the connection. `false` before any.
    pub fn plain_completion(&self) -> bool {
        self.plain_completion.load(Ordering::Relaxed)
    }

    /// What a new session on this server starts with of the `sql_mode` status flags
    /// (`message::SQL_MODE_FLAGS`); `None` until a connection has been opened.
    pub fn sql_mode_flags(&self) -> Option<u16> {
        let v = self.sql_mode.load(Ordering::Relaxed);
        (v & KNOWN != 0).then_some(v as u16)
    }

    /// A connection for `key` when [`Pool::take_idle`] found none: a new one, or one given
    /// back while this waits for room in a full pool (`wait`; otherwise a full pool fails at
    /// once).
    pub async fn acquire(
        &self,
        addr: &str,
        key: &ConnKey,
        password: &str,
        schema: Option<&Arc<str>>,
        wait: bool,
    ) -> Result<Lease, BackendError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            // Full: borrow an idle one of another event thread, or close one opened for
            // someone else, or wait.
            Err(_) => match self.take_other_idle(key, schema) {
                Some(Ok(lease)) => return Ok(lease),
                Some(Err(permit)) => permit,
                None if !wait => {
                    return Err(BackendError::PoolExhausted {
                        addr: addr.to_string(),
                        max: self.max(),
                    })
                }
                None => {
                    match crate::timer::timeout(self.dial.timeout, self.room(key, schema)).await {
                        Ok(Room::Idle(lease)) => return Ok(lease),
                        Ok(Room::Permit(p)) => p,
                        Err(_) => {
                            return Err(BackendError::PoolExhausted {
                                addr: addr.to_string(),
                                max: self.max(),
                            })
                        }
                    }
                }
            },
        };
        // Read before the dial: one retired while it dials may have reached the old server.
        let generation = self.generation.load(Ordering::Relaxed);
        let mut conn =
            Box::new(BackendConn::connect(addr, key.clone(), password, &self.dial).await?);
        conn.generation = generation;
        conn.open_stmts = self.open_stmts.clone();
        let flags = conn.status & crate::protocol::message::SQL_MODE_FLAGS;
        self.sql_mode
            .store(KNOWN | u32::from(flags), Ordering::Relaxed);
        self.plain_completion
            .store(conn.plain_completion, Ordering::Relaxed);
        Ok(Lease {
            conn,
            permit,
            reused: false,
        })
    }

    /// This thread's idle connection for `key`, preferring one in `schema` (switching schema
    /// costs a round trip, and leaving one is impossible without a new connection); one idle
    /// over a second is checked for a close by the server first. Not async: most statements
    /// find one, and then build no future (see `Session::checkout`).
    pub fn take_idle(
        &self,
        key: &ConnKey,
        schema: Option<&Arc<str>>,
        now: Instant,
    ) -> Option<Lease> {
        loop {
            let Idle { mut conn, permit } = self
                .idle
                .local()
                .lock()
                .expect("pool lock")
                .get_mut(key)
                .and_then(|v| {
                    let at = v
                        .iter()
                        .rposition(|i| names::same_opt(i.conn.state.schema.as_ref(), schema))
                        .or_else(|| v.len().checked_sub(1))?;
                    Some(v.remove(at))
                })?;
            // (Retired between `retire_all`'s bump and its clearing of this list.)
            if !self.is_current(conn.generation)
                || now.saturating_duration_since(conn.idle_since) > Duration::from_secs(1)
                    && conn.looks_closed()
            {
                continue;
            }
            return Some(Lease {
                conn,
                permit,
                reused: true,
            });
        }
    }

    /// Waits until the full pool has room: a connection closed (its permit), or one given
    /// back idle — here, or on another event thread, where it is lent if it is for `key`
    /// and otherwise closed for its permit (see `take_other_idle`).
    async fn room(&self, key: &ConnKey, schema: Option<&Arc<str>>) -> Room {
        let _waiting = Waiting::new(&self.waiting);
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(lease) = self.take_idle(key, schema, Instant::now()) {
                return Room::Idle(lease);
            }
            match self.take_other_idle(key, schema) {
                Some(Ok(lease)) => return Room::Idle(lease),
                Some(Err(permit)) => return Room::Permit(permit),
                None => {}
            }
            tokio::select! {
                p = self.permits.clone().acquire_owned() => {
                    return Room::Permit(p.expect("semaphore never closed"));
                }
                () = returned => {}
            }
        }
    }

    /// Takes a connection back. It must carry no session-owned server state: callers reset
    /// dirty connections first.
    /// `now` is the caller's latest clock reading.
    pub fn release(&self, mut lease: Lease, now: Instant) {
        if lease.conn.broken || lease.conn.needs_reset() {
            return;
        }
        if self.owed.load(Ordering::Relaxed) > 0
            && self
                .owed
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            // A lowered max-connections takes this connection's place: it closes.
            lease.permit.forget();
            return;
        }
        lease.conn.idle_since = now;
        let mut idle = self.idle.at(lease.conn.home).lock().expect("pool lock");
        // Read under the lock that `retire_all` clears under, after its bump: a connection
        // either sees the bump here or is in the list it clears.
        if !self.is_current(lease.conn.generation) {
            drop(idle);
            return;
        }
        idle.push(Idle {
            conn: lease.conn,
            permit: lease.permit,
        });
        drop(idle);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.returned.notify_one();
        }
    }

    /// When this thread has no idle connection for `key` and the pool is full: one for
    /// `key` idle on another event thread, lent (it stays registered with that thread's
    /// reactor, which wakes this one for it, and goes back there when released: a cross-
    /// thread wake per exchange while lent, where closing it and logging in again cost
    /// the server a login, as many as a third of all statements with a saturated pool); or
    /// else, closed, the permit of one idle for another key.
    /// A lent connection is one in `schema` if there is one, and never one in a schema for
    /// a session without one (which would have to log in again, see `Session::checkout`).
    fn take_other_idle(
        &self,
        key: &ConnKey,
        schema: Option<&Arc<str>>,
    ) -> Option<Result<Lease, OwnedSemaphorePermit>> {
        let now = Instant::now();
        for part in self.idle.iter() {
            let lent = {
                let mut part = part.lock().expect("pool lock");
                part.get_mut(key).and_then(|v| {
                    let at = v
                        .iter()
                        .rposition(|i| names::same_opt(i.conn.state.schema.as_ref(), schema))
                        .or_else(|| {
                            schema
                                .and_then(|_| v.iter().rposition(|i| i.conn.state.schema.is_some()))
                        })?;
                    Some(v.remove(at))
                })
            };
            let Some(Idle { mut conn, permit }) = lent else {
                continue;
            };
            if !self.is_current(conn.generation)
                || now.saturating_duration_since(conn.idle_since) > Duration::from_secs(1)
                    && conn.looks_closed()
            {
                // Closed by the server while idle (or retired): its permit makes the room.
                return Some(Err(permit));
            }
            return Some(Ok(Lease {
                conn,
                permit,
                reused: true,
            }));
        }
        self.take_any_idle().map(|idle| Err(idle.permit))
    }

    /// Prepared statements open on the server through this pool's connections.
    pub fn open_statements(&self) -> usize {
        self.open_stmts.load(Ordering::Relaxed)
    }

    fn take_any_idle(&self) -> Option<Idle> {
        self.idle.iter().find_map(|part| {
            part.lock()
                .expect("pool lock")
                .lists()
                .find_map(|v| (!v.is_empty()).then(|| v.remove(0)))
        })
    }

    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// Applies a reloaded `max-connections`. Raising it frees permits at once. Lowering it
    /// takes free permits and closes idle connections for theirs; what busy connections hold
    /// is taken as they close, by a task queued on the semaphore ahead of later statements,
    /// so the pool shrinks to the new bound without interrupting anything.
    pub fn resize(&self, new: u32) {
        let _one = self.resizing.lock().expect("resize lock");
        let old = self.max.swap(new, Ordering::Relaxed);
        if new > old {
            let grow = (new - old) as usize;
            let mut repaid = 0;
            let _ = self
                .owed
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |owed| {
                    repaid = owed.min(grow);
                    Some(owed - repaid)
                });
            self.permits.add_permits(grow - repaid);
            return;
        }
        let cut = (old - new) as usize;
        let mut left = cut - self.permits.forget_permits(cut);
        while left > 0 {
            let Some(idle) = self.take_any_idle() else {
                break;
            };
            idle.permit.forget();
            left -= 1;
        }
        if left == 0 || self.owed.fetch_add(left, Ordering::SeqCst) > 0 {
            return;
        }
        let (permits, owed) = (self.permits.clone(), self.owed.clone());
        tokio::spawn(async move {
            while owed.load(Ordering::SeqCst) > 0 {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                // A raise since may have cancelled what was owed: then the permit goes back.
                if owed
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    permit.forget();
                }
            }
        });
    }

    /// Closes connections idle past the timeout, or near the `wait_timeout` after which their
    /// server would close them: the one a session set on the connection, else the one its
    /// login left, else the global one the monitor read. They are closed (a `COM_QUIT` and
    /// a deregistration each) after the thread's lock is let go, which event threads take
    /// twice a statement.
    pub fn reap(&self) {
        let server = match self.server_wait_timeout.load(Ordering::Relaxed) {
            0 => IDLE_TIMEOUT,
            secs => kept_idle(Duration::from_secs(secs)),
        };
        let now = Instant::now();
        let mut expired = Vec::new();
        for part in self.idle.iter() {
            let mut idle = part.lock().expect("pool lock");
            for v in idle.lists() {
                expired.extend(v.extract_if(.., |i| {
                    let login = i.conn.wait_timeout.map_or(server, kept_idle);
                    let limit = match i.conn.state.wait_timeout() {
                        None => login,
                        Some(Some(set)) => kept_idle(set),
                        // `DEFAULT` (the global value) or an expression: the shorter.
                        Some(None) => login.min(server),
                    };
                    now.saturating_duration_since(i.conn.idle_since) >= limit
                }));
            }
            idle.0.retain(|(_, v)| !v.is_empty());
            drop(idle);
            expired.clear();
        }
    }

    /// Closes every connection to the server the address reached until now: the idle ones
    /// now, those in use as they come back (see `is_current`). For an address that reaches
    /// another server now.
    pub fn retire_all(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.clear_idle();
    }

    /// Whether a connection of `generation` was opened since the last [`Pool::retire_all`]:
    /// one opened before reaches a server no longer behind the address.
    pub fn is_current(&self, generation: u64) -> bool {
        generation == self.generation.load(Ordering::Relaxed)
    }

    /// Closes the idle connections. (Busy ones just proved to work: they stay.)
    pub fn clear_idle(&self) {
        for part in self.idle.iter() {
            // Closed (a `COM_QUIT` each) once the lock is let go.
            let closing = std::mem::take(&mut part.lock().expect("pool lock").0);
            drop(closing);
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
        let total = self.max() as usize + self.owed.load(Ordering::SeqCst);
        (total.saturating_sub(self.permits.available_permits()), idle)
    }
}

impl Lease {
    /// Resets a connection that carries session-owned state, then returns it to its
    /// backend's pool, unless an operator took the backend offline (or removed it) meanwhile:
    /// its idle connections were closed then, and this one would stay open, unused.
    pub async fn reset_and_release(mut self, backend: &Backend) {
        if !self.conn.broken && self.conn.needs_reset() {
            if let Err(e) = self.conn.reset().await {
                tracing::debug!("closing backend connection that failed to reset: {e}");
                return;
            }
        }
        if backend.health() != Health::Offline {
            backend.pool.release(self, Instant::now());
        }
    }
}
