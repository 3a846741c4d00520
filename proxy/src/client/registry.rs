//! A live view of every client session: what the admin console's `SELECT * FROM sessions`
//! shows, and what `KILL` needs to find a session by the id its client saw.
//!
//! Each session owns an `Arc<SessionStatus>` it updates around each command (one uncontended
//! lock, no allocation once the statement buffer has grown); the console only reads.
//!
//! `wait-timeout` is enforced here too: one sweeper wakes the sessions idle past it, so an
//! idle session holds no timer of its own. A registered timer would cost its event thread
//! work on every park (the timer wheel is consulted and the clock read each time: about 300
//! instructions per proxied point select under callgrind). The same sweeper passes a client's
//! end of input on to the backend running its statement (see
//! `SessionStatus::pass_on_client_eof`).

use crate::backend::conn::BackendConn;
use crate::backend::{Backend, Health};
use crate::session::names;
use dashmap::DashMap;
use rwproxy_admin::SessionInfo;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Statements longer than this are shown cut.
const MAX_SHOWN: usize = 1024;

/// The first id the proxy gives a client. Servers number their threads from 1, and those are
/// what a DBA reads in `SHOW PROCESSLIST` (run on a server, also through the proxy): with the
/// proxy's own ids far above them, a `KILL` of a server's thread id through the proxy is an
/// error rather than the kill of some unrelated session that has the same number. Ids stay
/// under `i32::MAX`, for drivers that keep them in a signed 32-bit integer.
pub const FIRST_SESSION_ID: u32 = 1_000_000_000;
const SESSION_IDS: u32 = i32::MAX as u32 - FIRST_SESSION_ID + 1;

#[derive(Default)]
pub struct Registry {
    sessions: DashMap<u32, Arc<SessionStatus>>,
    /// The proxy is stopping: sessions close as soon as they hold no transaction.
    shutting_down: AtomicBool,
    /// Ids handed out so far (see [`Registry::new_id`]); 64 bits, so that it never wraps and
    /// the ids cycle through their range evenly.
    ids: AtomicU64,
}

/// Laid out in declaration order (`repr(C)`): what every command touches first, so that
/// with many sessions per event thread (each out of the cache by its next command) it spans
/// four cache lines rather than five.
#[repr(C)]
pub struct SessionStatus {
    /// Where the session's statement runs right now, and how many kills are being sent to
    /// it. While a kill is on its way the session cannot hand the connection back to the
    /// pool (`stop_running` waits), so the kill can never hit another session's statement.
    /// A plain lock, held for a few instructions: this is touched twice per statement.
    running: Mutex<RunningSlot>,
    /// `KILL CONNECTION` was issued against this session.
    killed: AtomicBool,
    /// A `KILL QUERY` came while the session worked on a command but had no statement running
    /// yet (it was waiting for a pooled connection, syncing state, routing): the command's
    /// statement must not start (see `start_running`), as a server interrupts a statement
    /// it is still parsing. Set under both locks (`running`, then `now`, where the kill sees
    /// whether a command is in progress); cleared when the command ends, under `now`: a
    /// `KILL QUERY` that finds the session waiting for its client does nothing, as on a
    /// server.
    query_killed: AtomicBool,
    /// Bytes from the client were waiting in its socket when the kill came: a command sent
    /// before the kill, which a server would have had already. The session takes it before
    /// it ends: a statement does not start (see `start_running`); other commands (a reset, a
    /// ping, a prepare) run, but their answers no longer reach the client, whose socket the
    /// kill shut for sending, as a server's kill does (see `stop_client_output`). Anything
    /// arriving later may have been sent after the killer's OK, and does not run at all.
    command_at_kill: AtomicBool,
    /// A wake is due: set before `wake` is woken, taken by `interrupted`.
    woken: AtomicBool,
    /// The session holds a transaction open (as the console shows it); written with `now`
    /// locked.
    in_transaction: AtomicBool,
    /// The sweeper has logged a client's end of input for this session.
    eof_logged: AtomicBool,
    /// The session has an idle timeout of its own (`SET wait_timeout`, an interactive
    /// client's), which its own timer keeps: the sweeper leaves it alone.
    own_timeout: AtomicBool,
    pub id: u32,
    /// The client's socket, looked at by the sweeper (see `pass_on_client_eof`).
    client_fd: RawFd,
    now: Mutex<Now>,
    /// Wakes the session from its wait for the client: a kill, the proxy stopping, or the
    /// idle sweeper. Per session, so waiting for a command touches no lock another thread
    /// uses.
    wake: atomic_waker::AtomicWaker,
    /// Wakes a session waiting in `stop_running` when the last kill is done.
    kills_done: tokio::sync::Notify,
    pub client: SocketAddr,
}

#[derive(Default)]
struct RunningSlot {
    /// The latest statement's; `running` says whether it still is. Kept after it ends so that
    /// the next statement on the same backend takes no new reference to it: a reference count
    /// is an atomic write to a cache line every event thread's sessions write, and this
    /// happens for every statement.
    last: Option<Running>,
    /// Whether `last` is still running; its `backend_fd` may be closed or reused otherwise.
    running: bool,
    kills: u32,
    /// The client's end of input was passed on to the running statement's backend connection,
    /// which can then take no further statement.
    eof_passed: bool,
    /// A `KILL CONNECTION` found the statement running and goes out for its backend
    /// connection, which is then dead or about to be, even when the statement finished first.
    /// Set before the killer dials the backend: a kill that fails there still costs the
    /// connection (safe, only wasteful).
    conn_killed: bool,
    /// The session is closing its client's socket: `client_fd` may be closed or reused.
    client_closed: bool,
    /// The running statement is a plain read, which another server can run if this one is
    /// found down under it (see `cut_if_stuck`).
    read: bool,
    /// `cut_if_stuck` shut the statement's connection (said once).
    cut: bool,
    /// A `KILL QUERY` that could not reach the statement's server shut its connection
    /// instead (see [`KillGuard::cut`]): the statement ends as killed, not as lost.
    query_cut: bool,
}

impl Running {
    /// Shuts the statement's backend connection both ways, which ends the session's wait for
    /// its reply. Only while a kill holds the slot (see [`KillGuard`]), or with the slot
    /// locked and the statement running: until then the session keeps the connection, and
    /// the descriptor open.
    pub fn cut(&self) {
        // SAFETY: the caller holds a `KillGuard` or the slot, see above.
        let fd = unsafe { BorrowedFd::borrow_raw(self.backend_fd) };
        let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
    }
}

impl RunningSlot {
    /// Whether the statement's connection cannot be used again, once no kill is in flight.
    fn spent_unless_kills_in_flight(&self) -> Option<bool> {
        (self.kills == 0).then_some(self.eof_passed || self.conn_killed)
    }
}

/// A kill that stops the session's statement before it goes out (`start_running`,
/// `unless_killed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// `KILL CONNECTION`: the session ends.
    Session,
    /// `KILL QUERY` during the command: the statement is answered "interrupted".
    Query,
}

/// Why `SessionStatus::unless_stuck` stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stuck {
    /// `KILL CONNECTION`.
    SessionKilled,
    /// The monitor found the server down (silent) while it did not answer.
    FoundDown,
}

/// How often `unless_stuck` looks at the monitor's verdict: as often as the sweeper does.
const STUCK_CHECK: Duration = Duration::from_secs(1);

/// A statement on a backend connection: in progress, where a kill finds it.
#[derive(Clone)]
pub struct Running {
    pub backend: Arc<Backend>,
    /// The server's id of the connection running it.
    pub thread_id: u32,
    /// That connection's socket.
    backend_fd: RawFd,
    /// That connection's pool generation: once it is not the pool's, the thread id is one
    /// of a server no longer behind the address (see `Pool::retire_all`).
    pub generation: u64,
}

/// In declaration order (`repr(C)`): what every command reads or writes (two cache lines
/// with the lock), then `user`.
#[repr(C)]
struct Now {
    /// As the client sent it; made text only when someone looks.
    statement: Vec<u8>,
    since: Option<Instant>,
    /// When the last command's reply went out (or the session started).
    idle_since: Instant,
    /// The session's own (shared, see `session::names`): compared for every statement.
    schema: Option<Arc<str>>,
    backend: Option<String>,
    last_gtid: Option<String>,
    /// Change on `COM_CHANGE_USER`.
    user: String,
    /// What the session's backend connections log in with: the console's `KILL` logs in
    /// with it too when the user was removed from the proxy since (its sessions run on).
    password: String,
}

impl Registry {
    /// An id for a new client, from [`FIRST_SESSION_ID`] up; after a wrap, ids of sessions
    /// still open are skipped.
    pub fn new_id(&self) -> u32 {
        loop {
            let n = self.ids.fetch_add(1, Ordering::Relaxed) % u64::from(SESSION_IDS);
            let id = FIRST_SESSION_ID + n as u32;
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Registers a session; it disappears when the returned guard is dropped.
    pub fn enter(
        self: &Arc<Self>,
        id: u32,
        client: SocketAddr,
        client_fd: RawFd,
        user: &str,
        password: &str,
    ) -> Entry {
        let status = Arc::new(SessionStatus {
            id,
            client,
            client_fd,
            eof_logged: AtomicBool::new(false),
            own_timeout: AtomicBool::new(false),
            now: Mutex::new(Now {
                user: user.to_string(),
                password: password.to_string(),
                schema: None,
                backend: None,
                statement: Vec::new(),
                since: None,
                idle_since: Instant::now(),
                last_gtid: None,
            }),
            running: Mutex::default(),
            kills_done: tokio::sync::Notify::new(),
            killed: AtomicBool::new(false),
            query_killed: AtomicBool::new(false),
            command_at_kill: AtomicBool::new(false),
            wake: atomic_waker::AtomicWaker::new(),
            woken: AtomicBool::new(false),
            in_transaction: AtomicBool::new(false),
        });
        self.sessions.insert(id, status.clone());
        Entry {
            registry: self.clone(),
            status,
        }
    }

    /// Asks every session to close once it holds no transaction, and sessions that start
    /// from now on to close at once.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for s in self.sessions.iter() {
            s.value().interrupt();
        }
    }

    /// Has every session waiting for its client look at its situation again (a backend was
    /// taken offline: sessions pinned to it start their drain clock).
    pub fn wake_all(&self) {
        for s in self.sessions.iter() {
            s.value().interrupt();
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Every second (or every quarter of a shorter `wait-timeout`), until the registry is
    /// dropped: wakes sessions idle (waiting for their client's next command) past
    /// `wait_timeout`, and passes on to the backend the end of input of a client that closed
    /// its connection (or its sending side) during a statement. The wake is a hint; each
    /// session decides from its own clock (see `idle_past`).
    pub fn sweep(self: &Arc<Self>, wait_timeout: Option<Duration>) {
        let me: Weak<Self> = Arc::downgrade(self);
        let second = Duration::from_secs(1);
        let every = wait_timeout.map_or(second, |t| (t / 4).min(second));
        tokio::spawn(async move {
            let mut tick = crate::timer::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(registry) = me.upgrade() else { return };
                for s in registry.sessions.iter() {
                    let s = s.value();
                    if wait_timeout
                        .is_some_and(|t| !s.own_timeout.load(Ordering::Relaxed) && s.idle_past(t))
                    {
                        s.interrupt();
                    }
                    if s.pass_on_client_eof() && !s.eof_logged.swap(true, Ordering::Relaxed) {
                        tracing::info!(session = s.id, client = %s.client, "client closed its connection (or its sending side) during a statement: passed on to the backend, which sees what it would see directly");
                    }
                    if let Some(backend) = s.cut_if_stuck() {
                        tracing::warn!(session = s.id, %backend, "a statement waits on a backend found down (hung or cut off): its connection closed (a plain read runs on another server; anything else fails as on a lost connection)");
                    }
                }
            }
        });
    }

    /// The session whose client was given `id` in its greeting.
    pub fn get(&self, id: u32) -> Option<Arc<SessionStatus>> {
        self.sessions.get(&id).map(|e| e.value().clone())
    }

    /// Every session as the console's `sessions` table shows it, oldest first.
    pub fn view(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|e| {
                let s = e.value();
                // Where a statement runs now, though the session holds no connection for
                // longer. The `running` lock first, as a kill takes them.
                let running_on = {
                    let slot = s.running.lock().expect("running lock");
                    slot.last
                        .as_ref()
                        .filter(|_| slot.running)
                        .map(|r| r.backend.address.clone())
                };
                let now = s.now.lock().expect("session status lock");
                SessionInfo {
                    id: u64::from(s.id),
                    client: s.client.to_string(),
                    user: now.user.clone(),
                    schema: now.schema.as_deref().map(str::to_string),
                    backend: running_on.or_else(|| now.backend.clone()),
                    in_transaction: s.in_transaction.load(Ordering::Relaxed),
                    statement: now
                        .since
                        .map(|_| String::from_utf8_lossy(&now.statement).into_owned()),
                    statement_age_ms: now.since.map(|t| t.elapsed().as_millis() as u64),
                    last_gtid: now.last_gtid.clone(),
                }
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

/// A session's registration. Drop it before the client's socket: a kill still in flight
/// then no longer looks at the socket.
pub struct Entry {
    registry: Arc<Registry>,
    pub status: Arc<SessionStatus>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.status.client_closing();
        self.registry.sessions.remove(&self.status.id);
    }
}

impl SessionStatus {
    /// A command starts running.
    pub fn begin(&self, what: &[u8], at: Instant) {
        let mut now = self.now.lock().expect("session status lock");
        now.statement.clear();
        now.statement
            .extend_from_slice(&what[..what.len().min(MAX_SHOWN)]);
        now.since = Some(at);
    }

    /// The command finished at `replied`; what the session holds now.
    pub fn end(
        &self,
        replied: Instant,
        schema: Option<&Arc<str>>,
        backend: Option<&str>,
        in_transaction: bool,
        last_gtid: Option<&str>,
    ) {
        let mut now = self.now.lock().expect("session status lock");
        self.query_killed.store(false, Ordering::Relaxed);
        now.idle_since = replied;
        if now.last_gtid.as_deref() != last_gtid {
            now.last_gtid = last_gtid.map(str::to_string);
        }
        now.since = None;
        self.in_transaction.store(in_transaction, Ordering::Relaxed);
        if !names::same_opt(now.schema.as_ref(), schema) {
            now.schema = schema.cloned();
        }
        if now.backend.as_deref() != backend {
            now.backend = backend.map(str::to_string);
        }
    }

    /// See `own_timeout`.
    pub fn set_own_timeout(&self, own: bool) {
        self.own_timeout.store(own, Ordering::Relaxed);
    }

    /// Waiting for its client's next command, since at least `timeout` ago.
    fn idle_past(&self, timeout: Duration) -> bool {
        let now = self.now.lock().expect("session status lock");
        now.since.is_none() && now.idle_since.elapsed() >= timeout
    }

    pub fn user(&self) -> String {
        self.now.lock().expect("session status lock").user.clone()
    }

    /// The session's user and the password it logged in (or changed user) with.
    pub fn credentials(&self) -> (String, String) {
        let now = self.now.lock().expect("session status lock");
        (now.user.clone(), now.password.clone())
    }

    pub fn set_user(&self, user: &str, password: &str) {
        let mut now = self.now.lock().expect("session status lock");
        user.clone_into(&mut now.user);
        password.clone_into(&mut now.password);
    }

    /// The session's statement is about to go out on `conn` of `backend`, unless killed.
    /// Decided under the lock a kill takes to find the running statement, and a kill marks
    /// the session first: so the kill either finds the statement running and kills it on its
    /// backend, or the statement never starts. (A command that had arrived before the kill,
    /// or that was read before it, would otherwise run to its end, out of the kill's reach;
    /// on a server the kill interrupts it.)
    pub fn start_running(
        &self,
        backend: &Arc<Backend>,
        conn: &BackendConn,
        read: bool,
    ) -> Result<(), Killed> {
        let mut slot = self.running.lock().expect("running lock");
        self.statement_killed()?;
        match &mut slot.last {
            Some(r) if Arc::ptr_eq(&r.backend, backend) => {
                r.thread_id = conn.thread_id;
                r.backend_fd = conn.fd;
                r.generation = conn.generation;
            }
            last => {
                *last = Some(Running {
                    backend: backend.clone(),
                    thread_id: conn.thread_id,
                    backend_fd: conn.fd,
                    generation: conn.generation,
                });
            }
        }
        slot.running = true;
        slot.read = read;
        slot.cut = false;
        slot.query_cut = false;
        slot.eof_passed = false;
        slot.conn_killed = false;
        Ok(())
    }

    /// A kill that stops the statement the session is about to send.
    fn statement_killed(&self) -> Result<(), Killed> {
        if self.is_killed() {
            return Err(Killed::Session);
        }
        if self.query_killed.load(Ordering::Relaxed) {
            return Err(Killed::Query);
        }
        Ok(())
    }

    /// Waits for `work` (a pooled connection, before the statement goes out) unless a kill
    /// that stops the statement comes first.
    pub async fn unless_killed<F: std::future::Future>(
        &self,
        work: F,
    ) -> Result<F::Output, Killed> {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                out = &mut work => return Ok(out),
                // Other wakes (the idle sweeper, shutdown, a backend taken offline) leave
                // the statement to it.
                () = self.interrupted() => self.statement_killed()?,
            }
        }
    }

    /// Runs `work`, an exchange the proxy makes on a connection to `backend` before the
    /// statement goes out (bringing the connection to the session's state, preparing the
    /// statement), until the session is killed or the monitor finds that server down: for a
    /// `read`, down; otherwise silent, the bounds `cut_if_stuck` puts on a running statement.
    /// A server hung or cut off may answer nothing for minutes, and the sweeper watches only
    /// statements. Stopped, the connection is left mid-exchange (`broken`) and closes when
    /// dropped. A `KILL QUERY` lets the exchange finish: a pinned session's connection holds
    /// its transaction, and `start_running` then refuses the statement.
    pub async fn unless_stuck<F: std::future::Future>(
        &self,
        backend: &Backend,
        read: bool,
        work: F,
    ) -> Result<F::Output, Stuck> {
        use std::task::Poll;
        let mut work = std::pin::pin!(work);
        // Many need no answer from the server (a connection's state already in step, a
        // tracking already on): no timer.
        let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
        if let Poll::Ready(out) = first {
            return Ok(out);
        }
        // One timer across the loop: a wake that is no kill of the session (a `KILL QUERY`,
        // the sweeper's) must not put the next check off. Boxed: inline, a timer would take
        // room in every session's future that awaits this (the statement's path among them),
        // spreading what a statement touches over more cache lines; this path waits on a
        // server anyway.
        let mut check = Box::pin(crate::timer::sleep(STUCK_CHECK));
        loop {
            tokio::select! {
                biased;
                out = &mut work => return Ok(out),
                () = self.interrupted() => {
                    if self.is_killed() {
                        return Err(Stuck::SessionKilled);
                    }
                }
                () = &mut check => {
                    let down = match read {
                        true => backend.health() == Health::Down,
                        false => backend.found_silent(),
                    };
                    if down {
                        return Err(Stuck::FoundDown);
                    }
                    check.as_mut().reset(tokio::time::Instant::now() + STUCK_CHECK);
                }
            }
        }
    }

    /// The statement's reply is complete: whether its connection is spent (it cannot be used
    /// again: the client's end of input was passed on to it, see `pass_on_client_eof`, or a
    /// `KILL CONNECTION` went out for it), or `None` while kills are on their way to it: the
    /// connection must not go back to the pool before they are done (`after_kills`). Not
    /// async, so that the common case adds no future to the session's.
    pub fn stop_running(&self) -> Option<bool> {
        let mut slot = self.running.lock().expect("running lock");
        slot.running = false;
        slot.spent_unless_kills_in_flight()
    }

    /// Waits for the kills `stop_running` found in flight; then as `stop_running`.
    pub async fn after_kills(&self) -> bool {
        loop {
            let done = self.kills_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            let stopped = self
                .running
                .lock()
                .expect("running lock")
                .spent_unless_kills_in_flight();
            if let Some(spent) = stopped {
                return spent;
            }
            done.await;
        }
    }

    /// The running statement (if any), for a kill; the session cannot release its
    /// connection while the guard lives.
    /// `query_only`: the kill is a `KILL QUERY`, after which the connection lives on.
    pub fn lock_running(&self, query_only: bool) -> KillGuard<'_> {
        let mut slot = self.running.lock().expect("running lock");
        slot.kills += 1;
        if slot.running && !query_only {
            slot.conn_killed = true;
        }
        if query_only && !slot.running {
            let now = self.now.lock().expect("session status lock");
            if now.since.is_some() {
                self.query_killed.store(true, Ordering::Relaxed);
                // A session waiting for a pooled connection stops waiting (`unless_killed`).
                self.interrupt();
            }
        }
        KillGuard {
            status: self,
            running: slot.running.then(|| slot.last.clone()).flatten(),
        }
    }

    /// The running statement's connection was shut by a `KILL QUERY` (see `KillGuard::cut`).
    pub fn query_cut(&self) -> bool {
        self.running.lock().expect("running lock").query_cut
    }

    /// When a running statement's backend is found down (a server hung or cut off answers
    /// nothing, maybe for minutes): shuts the backend connection, so the client hears now
    /// rather than whenever the server runs again. A plain read then runs on another server;
    /// so does one whose client is gone (its end of input passed on), by ending. Anything
    /// else fails as on a lost connection (a write may have run, a transaction is gone), as
    /// when the server dies under it: only when the monitor's probes get no answer either
    /// (`Backend::found_silent`), not for one failed connection. Returns the backend's
    /// address the first time.
    fn cut_if_stuck(&self) -> Option<String> {
        let mut slot = self.running.lock().expect("running lock");
        if !slot.running || slot.cut {
            return None;
        }
        let r = slot.last.as_ref()?;
        let cut = match slot.read || slot.eof_passed {
            true => r.backend.health() == Health::Down,
            false => r.backend.found_silent(),
        };
        if !cut {
            return None;
        }
        // The slot is held, and the statement runs: its connection (and descriptor) is the
        // session's, as for `pass_on_client_eof`.
        r.cut();
        let address = r.backend.address.clone();
        slot.cut = true;
        Some(address)
    }

    /// When a statement is running and its client has closed its connection, or only its
    /// sending side: shuts the sending side of the statement's backend connection, so the
    /// server sees exactly what a direct client would have shown it. A server notices the end
    /// of input only in some waits (`SLEEP`), and then ends the statement; otherwise it
    /// finishes and answers (which a half-closed client still reads). Either way, once the
    /// statement is over it closes the connection, rolling back an open transaction: without
    /// this, the proxy's connection would keep the transaction's locks, with nobody to end
    /// it. Once per statement; true when done now.
    ///
    /// The running slot's lock is held throughout: the session keeps its client's socket and
    /// its backend connection open at least until its statement stops running (which takes
    /// that lock), so both descriptors are still theirs.
    fn pass_on_client_eof(&self) -> bool {
        let mut slot = self.running.lock().expect("running lock");
        let Some(running) = slot
            .last
            .as_ref()
            .filter(|_| slot.running && !slot.eof_passed)
        else {
            return false;
        };
        // SAFETY: the descriptors are open for as long as `slot` is held (see above).
        let (client, backend) = unsafe {
            (
                BorrowedFd::borrow_raw(self.client_fd),
                BorrowedFd::borrow_raw(running.backend_fd),
            )
        };
        let mut byte = [std::mem::MaybeUninit::uninit()];
        // Tokio's sockets are non-blocking: a live client with nothing sent is `WouldBlock`.
        let ended = match socket2::SockRef::from(&client).peek(&mut byte) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        };
        if !ended {
            return false;
        }
        let _ = socket2::SockRef::from(&backend).shutdown(std::net::Shutdown::Write);
        slot.eof_passed = true;
        true
    }

    /// Marks the session for closing and wakes it if it is waiting for its client. Looks
    /// first whether the client has a command on its way in (see `command_at_kill`).
    pub fn kill(&self) {
        {
            let slot = self.running.lock().expect("running lock");
            // Only the first kill (marked under the lock): a later one would look at bytes
            // sent after the first's OK.
            if !slot.client_closed && !self.is_killed() {
                // SAFETY: the session closes its client's socket only after marking it closed
                // under this lock (`client_closing`).
                let client = unsafe { BorrowedFd::borrow_raw(self.client_fd) };
                let mut byte = [std::mem::MaybeUninit::uninit()];
                let waiting = socket2::SockRef::from(&client)
                    .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
                    .is_ok_and(|n| n > 0);
                self.command_at_kill.store(waiting, Ordering::SeqCst);
            }
            self.killed.store(true, Ordering::SeqCst);
        }
        self.interrupt();
    }

    /// Shuts the sending side of the session's client socket, as a server's `KILL CONNECTION`
    /// does: a session blocked writing a reply its client does not read then fails at once,
    /// and gives back its backend connection. (A killed session closes without a word, so
    /// nothing it still had to say is lost.)
    pub fn stop_client_output(&self) {
        let slot = self.running.lock().expect("running lock");
        if !slot.client_closed {
            // SAFETY: the session closes its client's socket only after marking it closed
            // under this lock (`client_closing`).
            let client = unsafe { BorrowedFd::borrow_raw(self.client_fd) };
            let _ = socket2::SockRef::from(&client).shutdown(std::net::Shutdown::Write);
        }
    }

    /// A kill came and the client's latest bytes may have been sent after the killer got its
    /// OK: on a server the kill closes the connection before it answers, so what follows it
    /// never runs.
    pub fn killed_before_command(&self) -> bool {
        self.is_killed() && !self.command_at_kill.load(Ordering::SeqCst)
    }

    /// The session is about to close its client's socket; a kill no longer looks at it.
    pub fn client_closing(&self) {
        self.running.lock().expect("running lock").client_closed = true;
    }

    fn interrupt(&self) {
        self.woken.store(true, Ordering::SeqCst);
        self.wake.wake();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Resolves when the session is killed, the proxy stops, or the idle sweeper found it idle
    /// past `wait-timeout` (check which; for the last, with the session's own clock), or once
    /// for a wake that came while the session was not waiting.
    pub async fn interrupted(&self) {
        std::future::poll_fn(|cx| {
            // Registered before the flag is looked at, so a wake in between is not lost.
            self.wake.register(cx.waker());
            if self.woken.swap(false, Ordering::SeqCst) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }
}

impl KillGuard<'_> {
    /// Shuts the running statement's backend connection, for a kill that cannot reach its
    /// server (hung, cut off); a `KILL QUERY` marks the statement as killed first.
    pub fn cut(&self, query_only: bool) {
        let Some(r) = &self.running else { return };
        if query_only {
            self.status.running.lock().expect("running lock").query_cut = true;
        }
        r.cut();
    }
}

/// A kill on its way to a session's running statement (see `SessionStatus::lock_running`).
pub struct KillGuard<'a> {
    status: &'a SessionStatus,
    pub running: Option<Running>,
}

impl Drop for KillGuard<'_> {
    fn drop(&mut self) {
        let mut slot = self.status.running.lock().expect("running lock");
        slot.kills -= 1;
        if slot.kills == 0 {
            self.status.kills_done.notify_waiters();
        }
    }
}
