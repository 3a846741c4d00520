//! The live set of backends and users the proxy serves, shared by every session and changed
//! at run time by the admin console and the health prober.

use crate::backend::conn::{BackendConn, BackendError, ConnKey, Dial};
use crate::backend::{Backend, Health};
use crate::config::{BackendConfig, ClientEntry, ClientFilter, Config, Role, Snapshot, UserConfig};
use crate::session::read_your_writes::Settings as ReadYourWrites;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Allowed client addresses as configured, and the matcher built from them.
struct Clients {
    entries: Vec<String>,
    filter: ClientFilter,
    /// LVS directors (`lvs-ips`): let in whatever `client-ips` says, and refused while the
    /// proxy is "offline for LVS".
    lvs: Vec<IpAddr>,
}

impl Clients {
    /// Compared in canonical form, as `ClientFilter` does: on a `[::]` listener an IPv4
    /// director arrives as `::ffff:a.b.c.d`, and would never match the `a.b.c.d` configured.
    fn is_lvs(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.lvs.iter().any(|l| l.to_canonical() == ip)
    }
}

pub struct Cluster {
    /// Copy-on-write: sessions read it on every statement without a lock; changes (admin
    /// console, reload) swap in a new list, one at a time under `editing`.
    backends: ArcSwap<Vec<Arc<Backend>>>,
    /// Held by every change to what `SAVE CONFIG` writes (backends, offline states, users,
    /// client-ips, the drain time), by the save itself and by a reload: a reload that found
    /// the file current then cannot undo a change, nor a save miss one.
    editing: Mutex<()>,
    users: RwLock<Arc<BTreeMap<String, String>>>,
    clients: RwLock<Arc<Clients>>,
    /// SIGUSR2 sets it, SIGUSR1 clears it, as in Atlas (see `set_lvs_offline`).
    lvs_offline: AtomicBool,
    /// How long sessions pinned to an offline or removed backend may keep using it
    /// (`drain-timeout`, admin `SET drain_timeout = seconds`).
    drain_timeout_ms: AtomicU64,
    /// How backend connections are opened (timeout, TLS).
    pub dial: Dial,
    /// Pools keep idle connections per event thread.
    event_threads: usize,
    read_only_check: bool,
    write_wait: Duration,
    read_your_writes: RwLock<Arc<ReadYourWrites>>,
    /// The admin console changed backends, users or client-ips since the config file was
    /// loaded or saved: the file is stale, and a reload would undo them (see `reload_from`).
    console_changed: AtomicBool,
    /// The config file is TOML, which holds offline states (`offline`) and the drain time;
    /// Atlas's format cannot. With an Atlas file, `SET OFFLINE` and `SET drain_timeout` leave
    /// the file as current as it was, and a reload leaves them alone: the file saying nothing
    /// must not bring a server in maintenance back.
    toml_file: bool,
    /// The offline backends and drain time as the file holds them (loaded, reloaded or last
    /// saved). Running ones that differ make the file stale as a console change does; unlike
    /// that flag, a change undone (`SET OFFLINE` then `SET ONLINE`, which failover hooks send)
    /// leaves it current, so the nightly SIGHUP still applies it.
    file_states: Mutex<FileStates>,
}

/// What of the running state a TOML file holds besides the console's changes.
struct FileStates {
    offline: Vec<(String, Role)>,
    drain_timeout: Duration,
}

impl FileStates {
    fn of(cfg: &Config) -> Self {
        FileStates {
            offline: cfg
                .backends
                .iter()
                .filter(|b| b.offline)
                .map(|b| (b.address.clone(), b.role))
                .collect(),
            drain_timeout: cfg.drain_timeout,
        }
    }

    /// The same states, whatever the order of the backends.
    fn same(&self, other: &FileStates) -> bool {
        self.drain_timeout == other.drain_timeout
            && self.offline.len() == other.offline.len()
            && self.offline.iter().all(|b| other.offline.contains(b))
    }
}

/// How many consecutive reads of a session go to the replica it picked (see [`ReadPicker`]).
const READ_RUN: u32 = 16;

/// 2^64 / φ: stepping a phase by it visits [0, 1) as evenly as any sequence can.
const GOLDEN_RATIO_FRACTION: u64 = 0x9E37_79B9_7F4A_7C15;

/// Which replica a session's autocommit reads go to.
///
/// Picking afresh for every read spreads one session's statements over all replicas, so each
/// lands on another server thread, cold, and the kernel can no longer keep the proxy's thread
/// and the server's on one CPU: one sysbench client through two replicas ran at 0.8x the QPS
/// and 1.2x the proxy CPU per query of the same client through one. So a session keeps its
/// replica for `READ_RUN` reads (fewer if it fails, leaves the pool, or a read keeps its
/// connection: see [`ReadPicker::give_back`]), then picks the next. Picks follow a
/// golden-ratio sequence over the weights from a random phase: each session's reads match
/// the configured split within a few runs, where random picks would wander.
pub struct ReadPicker {
    phase: u64,
    /// The run's replica; `None` while lent to a read, and between runs.
    current: Option<Arc<Backend>>,
    /// Reads left in the current run.
    left: u32,
}

impl ReadPicker {
    pub fn new() -> Self {
        ReadPicker {
            phase: rand::random(),
            current: None,
            left: 0,
        }
    }

    /// Takes back the backend of a statement whose connection went back to the pool, for
    /// the rest of the run. The picker lends its replica rather than sharing it: a shared one
    /// costs a reference count taken and dropped per read, atomic writes to a cache line
    /// that every event thread writes. A read whose connection stays with the session (held
    /// for `SHOW WARNINGS`, pinned) gives nothing back, and the next read starts a new run.
    /// Whatever else comes back (the write backend after a write, or after a read fell back
    /// to it) is harmless: `read_backend` takes `current` only while it is an eligible
    /// replica.
    pub fn give_back(&mut self, backend: Arc<Backend>) {
        if self.current.is_none() && self.left > 0 {
            self.current = Some(backend);
        }
    }
}

impl Default for ReadPicker {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a live change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("backend {0} does not exist")]
    NoSuchBackend(usize),
    #[error("no read-only backend at {0}")]
    NoSuchReader(String),
    #[error("backend {0} already exists")]
    DuplicateBackend(String),
    #[error("client {0} already exists")]
    DuplicateClient(String),
    #[error("client {0} does not exist")]
    NoSuchClient(String),
    /// An empty `client-ips` admits every address, so removing the last entry would open the
    /// proxy to everyone: the opposite of what the DBA removing an address means.
    #[error(
        "client {0} is the last client-ips entry, and an empty list admits every address: \
         ADD CLIENT the addresses to keep first (or empty client-ips in the config file and reload)"
    )]
    LastClient(String),
    /// The message names the entry and what is wrong with it.
    #[error("{0}")]
    BadClient(String),
    #[error("user {0} does not exist")]
    NoSuchUser(String),
    /// As Atlas: a typo'd `ADD PWD` must not silently replace another user's password.
    #[error("user {0} already exists: REMOVE PWD {0} first to change its password")]
    DuplicateUser(String),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// A reload would undo what the console changed (a failover's `ADD MASTER` among them),
    /// and logrotate sends SIGHUP every night.
    #[error(
        "the admin console changed backends, users or client-ips since the config file was \
         loaded or saved, and applying the file would undo that: SAVE CONFIG first (or edit \
         the file and restart)"
    )]
    UnsavedConsoleChanges,
}

impl Cluster {
    pub fn new(cfg: &Config) -> Arc<Self> {
        let dial = Dial {
            timeout: cfg.connect_timeout,
            tls: cfg.backend_tls.as_ref().map(|t| t.connector()),
        };
        let backends = cfg
            .backends
            .iter()
            .map(|b| Arc::new(Backend::new(b, &dial, cfg.event_thread_count())))
            .collect();
        let users = cfg
            .users
            .iter()
            .map(|u| (u.name.clone(), u.password.clone()))
            .collect();
        let clients = Clients {
            entries: cfg.client_ips.clone(),
            // Entries were validated when the file was loaded.
            filter: cfg
                .client_filter()
                .unwrap_or_else(|_| ClientFilter::allow_all()),
            lvs: cfg.lvs_ips.clone(),
        };
        Arc::new(Cluster {
            backends: ArcSwap::from_pointee(sort_backends(backends)),
            editing: Mutex::new(()),
            users: RwLock::new(Arc::new(users)),
            clients: RwLock::new(Arc::new(clients)),
            lvs_offline: AtomicBool::new(false),
            drain_timeout_ms: AtomicU64::new(cfg.drain_timeout.as_millis() as u64),
            dial,
            event_threads: cfg.event_thread_count(),
            read_only_check: cfg.monitor.read_only_check,
            write_wait: cfg.monitor.write_wait,
            read_your_writes: RwLock::new(Arc::new(cfg.read_your_writes.clone())),
            console_changed: AtomicBool::new(false),
            toml_file: cfg.format == crate::config::ConfigFormat::Toml,
            file_states: Mutex::new(FileStates::of(cfg)),
        })
    }

    /// Whether `client-ips` lets `ip` in. An LVS director always passes, as in Atlas (whose
    /// sample says to set `lvs-ips` whenever `client-ips` is): its health checks must reach
    /// the proxy whatever the application clients' list says.
    pub fn client_allowed(&self, ip: IpAddr) -> bool {
        let clients = self.clients.read().expect("clients lock");
        clients.filter.allows(ip) || clients.is_lvs(ip)
    }

    /// Atlas's LVS drain: while set, connections from the `lvs-ips` directors are closed
    /// before the greeting, so their MySQL health checks fail and the director stops sending
    /// new clients here; everyone else is served as before.
    pub fn set_lvs_offline(&self, offline: bool) {
        self.lvs_offline.store(offline, Ordering::Relaxed);
        tracing::info!(
            "{} for the LVS directors",
            if offline { "offline" } else { "online" }
        );
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms.load(Ordering::Relaxed))
    }

    /// An operator's `SET drain_timeout`, which `SAVE CONFIG` keeps. Under the edit lock, so
    /// that a reload that found the file current cannot undo it.
    pub fn set_drain_timeout(&self, d: Duration) {
        let _editing = self.editing.lock().expect("backends edit lock");
        self.drain_timeout_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether a connection from `ip` is an LVS director's to be turned away now.
    pub fn refuses_lvs(&self, ip: IpAddr) -> bool {
        self.lvs_offline.load(Ordering::Relaxed)
            && self.clients.read().expect("clients lock").is_lvs(ip)
    }

    pub fn clients(&self) -> Vec<String> {
        self.clients.read().expect("clients lock").entries.clone()
    }

    /// Adds an entry as written, unless one admitting the same addresses is there already,
    /// however written (the file's `192.168.1` is the console's `192.168.1.*`).
    pub fn add_client(&self, entry: &str) -> Result<(), ChangeError> {
        let _editing = self.editing.lock().expect("backends edit lock");
        let new: ClientEntry = entry.parse().map_err(ChangeError::BadClient)?;
        let mut guard = self.clients.write().expect("clients lock");
        if let Some(old) = guard.entries.iter().find(|e| e.parse() == Ok(new)) {
            return Err(ChangeError::DuplicateClient(old.clone()));
        }
        let mut entries = guard.entries.clone();
        entries.push(entry.to_string());
        let filter = ClientFilter::new(&entries).map_err(ChangeError::BadClient)?;
        *guard = Arc::new(Clients {
            entries,
            filter,
            lvs: guard.lvs.clone(),
        });
        self.changed_at_console();
        Ok(())
    }

    /// Removes every entry admitting the same addresses as `entry`, however written (the
    /// file's `FE80::1` is the console's `fe80::1`): one left behind would still admit them.
    pub fn remove_client(&self, entry: &str) -> Result<(), ChangeError> {
        let _editing = self.editing.lock().expect("backends edit lock");
        let gone: ClientEntry = entry.parse().map_err(ChangeError::BadClient)?;
        let mut guard = self.clients.write().expect("clients lock");
        let entries: Vec<String> = guard
            .entries
            .iter()
            .filter(|e| e.parse() != Ok(gone))
            .cloned()
            .collect();
        if entries.len() == guard.entries.len() {
            return Err(ChangeError::NoSuchClient(entry.into()));
        }
        if entries.is_empty() {
            return Err(ChangeError::LastClient(entry.into()));
        }
        let filter = ClientFilter::new(&entries).map_err(ChangeError::BadClient)?;
        *guard = Arc::new(Clients {
            entries,
            filter,
            lvs: guard.lvs.clone(),
        });
        self.changed_at_console();
        Ok(())
    }

    /// Logs in to `address` as the application user first by name (none: as nobody) and
    /// quits, as a client does; returns the version the server greeted with, if it did, and
    /// how the login went. What the proxy asks of a server without a monitor account (see
    /// `monitor::answers`): a connection closed at the connect or the greeting, as by a TCP
    /// check, is an aborted handshake, which a server logs and counts against the proxy's
    /// host until, after `max_connect_errors` of them (100 by default) with no good login
    /// between, it refuses the host every login (1129) — the proxy's own included. A refused
    /// login is not counted that way.
    pub async fn greet(
        &self,
        address: &str,
        timeout: Duration,
    ) -> (Option<String>, Result<(), BackendError>) {
        let users = self.users();
        let (user, password) = users
            .iter()
            .next()
            .map_or(("", ""), |(u, p)| (u.as_str(), p.as_str()));
        let key = ConnKey {
            user: user.into(),
            collation: 45, // utf8mb4_general_ci; nothing runs on it
            capabilities: 0,
        };
        let dial = Dial {
            timeout,
            tls: self.dial.tls.clone(),
        };
        let greeting = BackendConn::log_in(address, key, password, &dial).await;
        let login = match greeting.login {
            Ok(conn) => {
                conn.quit().await;
                Ok(())
            }
            Err(e) => Err(e),
        };
        (greeting.version, login)
    }

    /// Users and their plain-text passwords, by name.
    pub fn users(&self) -> Arc<BTreeMap<String, String>> {
        self.users.read().expect("users lock").clone()
    }

    /// Adds a user or changes its password; new sessions use it at once.
    pub fn add_user(&self, name: &str, password: &str) -> Result<(), ChangeError> {
        let _editing = self.editing.lock().expect("backends edit lock");
        let mut guard = self.users.write().expect("users lock");
        if guard.contains_key(name) {
            return Err(ChangeError::DuplicateUser(name.into()));
        }
        let mut users = (**guard).clone();
        users.insert(name.to_string(), password.to_string());
        *guard = Arc::new(users);
        self.changed_at_console();
        Ok(())
    }

    pub fn remove_user(&self, name: &str) -> Result<(), ChangeError> {
        let _editing = self.editing.lock().expect("backends edit lock");
        let mut guard = self.users.write().expect("users lock");
        let mut users = (**guard).clone();
        users
            .remove(name)
            .ok_or_else(|| ChangeError::NoSuchUser(name.into()))?;
        *guard = Arc::new(users);
        self.changed_at_console();
        Ok(())
    }

    /// The backend with 1-based admin index `ndx` (masters first).
    pub fn backend(&self, ndx: usize) -> Result<Arc<Backend>, ChangeError> {
        ndx.checked_sub(1)
            .and_then(|i| self.backends().get(i).cloned())
            .ok_or(ChangeError::NoSuchBackend(ndx))
    }

    /// An operator's `SET OFFLINE` (`offline`) or `SET ONLINE`, which `SAVE CONFIG` keeps.
    /// Under the edit lock, so that a reload that found the file current cannot undo it.
    pub fn set_backend_offline(
        &self,
        ndx: usize,
        offline: bool,
    ) -> Result<Arc<Backend>, ChangeError> {
        let _editing = self.editing.lock().expect("backends edit lock");
        let b = self.backend(ndx)?;
        if offline {
            b.set_offline();
        } else {
            b.set_online();
        }
        Ok(b)
    }

    pub fn add_backend(&self, cfg: &BackendConfig) -> Result<(), ChangeError> {
        let _editing = self.editing.lock().expect("backends edit lock");
        let current = self.backends.load_full();
        // One address may serve in both roles (as in a config file, and in Atlas): a
        // failover adds the promoted replica as a master before removing the old one.
        // Host names in any case: the config file keeps them as written, the console
        // lower-cases them.
        if current
            .iter()
            .any(|b| b.address.eq_ignore_ascii_case(&cfg.address) && b.role == cfg.role)
        {
            return Err(ChangeError::DuplicateBackend(format!(
                "{} ({})",
                cfg.address, cfg.role
            )));
        }
        let mut list = (*current).clone();
        let added = Arc::new(Backend::new(cfg, &self.dial, self.event_threads));
        // An operator's ADD puts it in service at once, as SET ONLINE does (and as Atlas
        // shows it); the monitor's first probe of it settles it (see `Damper::next`).
        added.set_online();
        list.push(added);
        self.backends.store(Arc::new(sort_backends(list)));
        self.changed_at_console();
        tracing::info!(backend = %cfg.address, role = %cfg.role, "backend added");
        Ok(())
    }

    /// Takes a backend out of the list: no new statement goes to it; sessions using one of
    /// its connections finish with it, and its idle connections are closed.
    pub fn remove_backend(&self, ndx: usize) -> Result<Arc<Backend>, ChangeError> {
        let _editing = self.editing.lock().expect("backends edit lock");
        let current = self.backends.load_full();
        let i = ndx
            .checked_sub(1)
            .filter(|i| *i < current.len())
            .ok_or(ChangeError::NoSuchBackend(ndx))?;
        Ok(self.remove_at(&current, i))
    }

    /// Takes the read-only backend at `address` out of the list (host names in any case, as
    /// `add_backend` compares): found and removed under one lock, so no other edit can shift
    /// the list in between.
    pub fn remove_reader(&self, address: &str) -> Result<Arc<Backend>, ChangeError> {
        let _editing = self.editing.lock().expect("backends edit lock");
        let current = self.backends.load_full();
        let i = current
            .iter()
            .position(|b| b.role == Role::ReadOnly && b.address.eq_ignore_ascii_case(address))
            .ok_or_else(|| ChangeError::NoSuchReader(address.to_string()))?;
        Ok(self.remove_at(&current, i))
    }

    /// With the edit lock held.
    fn remove_at(&self, current: &Arc<Vec<Arc<Backend>>>, i: usize) -> Arc<Backend> {
        let mut list = (**current).clone();
        let gone = list.remove(i);
        self.backends.store(Arc::new(list));
        gone.set_offline();
        self.changed_at_console();
        tracing::info!(backend = %gone.address, "backend removed");
        gone
    }

    /// Applies a re-read config file (SIGHUP): backends are matched by address — new ones
    /// added, missing ones removed (their sessions finish where they are), weights,
    /// `max-connections` and `offline` updated — users and client addresses replaced, and the
    /// drain time set.
    /// Nothing in flight is interrupted.
    pub fn reload(&self, cfg: &Config) -> Result<(), ChangeError> {
        let editing = self.editing.lock().expect("backends edit lock");
        self.apply(cfg, &editing)
    }

    /// [`Cluster::reload`] with the edit lock held.
    fn apply(&self, cfg: &Config, _editing: &MutexGuard<'_, ()>) -> Result<(), ChangeError> {
        let filter = ClientFilter::new(&cfg.client_ips).map_err(ChangeError::BadClient)?;
        {
            let current = self.backends.load_full();
            let mut list = Vec::with_capacity(cfg.backends.len());
            for b in &cfg.backends {
                match current
                    .iter()
                    .find(|old| old.address == b.address && old.role == b.role)
                {
                    Some(old) => {
                        old.weight.store(b.weight.max(1), Ordering::Relaxed);
                        let running = old.pool.max();
                        if running != b.max_connections {
                            tracing::info!(backend = %b.address, "reload: max-connections {running} -> {}", b.max_connections);
                            old.pool.resize(b.max_connections);
                        }
                        let offline = old.health() == Health::Offline;
                        if self.toml_file && b.offline != offline {
                            match b.offline {
                                true => old.set_offline(),
                                false => old.set_online(),
                            }
                        }
                        list.push(old.clone());
                    }
                    None => {
                        tracing::info!(backend = %b.address, role = %b.role, "reload: backend added");
                        list.push(Arc::new(Backend::new(b, &self.dial, self.event_threads)));
                    }
                }
            }
            for old in current.iter() {
                if !list.iter().any(|b| Arc::ptr_eq(b, old)) {
                    tracing::info!(backend = %old.address, "reload: backend removed");
                    old.set_offline();
                }
            }
            self.backends.store(Arc::new(sort_backends(list)));
        }
        let users = cfg
            .users
            .iter()
            .map(|u| (u.name.clone(), u.password.clone()))
            .collect();
        *self.users.write().expect("users lock") = Arc::new(users);
        if self.toml_file {
            self.drain_timeout_ms
                .store(cfg.drain_timeout.as_millis() as u64, Ordering::Relaxed);
        }
        *self.file_states.lock().expect("file states lock") = FileStates::of(cfg);
        *self.read_your_writes.write().expect("ryw lock") = Arc::new(cfg.read_your_writes.clone());
        *self.clients.write().expect("clients lock") = Arc::new(Clients {
            entries: cfg.client_ips.clone(),
            filter,
            lvs: cfg.lvs_ips.clone(),
        });
        Ok(())
    }

    /// SIGHUP: re-reads the config file and applies it with [`Cluster::reload`]; returns what
    /// it read. A file that does not load changes nothing; nor does one the console's changes
    /// have made stale ([`ChangeError::UnsavedConsoleChanges`]).
    pub fn reload_from(&self, path: &std::path::Path) -> Result<Config, ChangeError> {
        // Read under the edit lock too: a file read before a `SAVE CONFIG` that lands
        // meanwhile would be applied over the changes it saved.
        let editing = self.editing.lock().expect("backends edit lock");
        if self.stale() {
            return Err(ChangeError::UnsavedConsoleChanges);
        }
        let cfg = crate::config::load(path)?;
        self.apply(&cfg, &editing)?;
        Ok(cfg)
    }

    /// Whether the file lacks what runs: the console's changes, or offline states and a
    /// drain time other than the file's (TOML files only: Atlas files hold neither).
    fn stale(&self) -> bool {
        if self.console_changed.load(Ordering::Relaxed) {
            return true;
        }
        self.toml_file
            && !self
                .file_states
                .lock()
                .expect("file states lock")
                .same(&self.running_states())
    }

    fn running_states(&self) -> FileStates {
        FileStates {
            offline: self
                .backends()
                .iter()
                .filter(|b| b.health() == Health::Offline)
                .map(|b| (b.address.clone(), b.role))
                .collect(),
            drain_timeout: self.drain_timeout(),
        }
    }

    /// `SAVE CONFIG`: `write` puts what runs into the config file. The edit lock is held from
    /// the snapshot to the end of the write, so no console change, no other save (whose older
    /// snapshot could land last) and no reload comes between them; the file counts as having
    /// the console's changes only once `write` succeeded.
    pub fn save<E>(&self, write: impl FnOnce(&Snapshot) -> Result<(), E>) -> Result<(), E> {
        let _editing = self.editing.lock().expect("backends edit lock");
        let users = self.users();
        let snap = Snapshot {
            backends: self.backends().iter().map(|b| b.config()).collect(),
            users: users
                .iter()
                .map(|(name, password)| UserConfig {
                    name: name.clone(),
                    password: password.clone(),
                })
                .collect(),
            client_ips: self.clients(),
            drain_timeout: self.drain_timeout(),
        };
        write(&snap)?;
        self.console_changed.store(false, Ordering::Relaxed);
        *self.file_states.lock().expect("file states lock") = self.running_states();
        Ok(())
    }

    /// The config file no longer has what runs: a reload would undo it.
    fn changed_at_console(&self) {
        self.console_changed.store(true, Ordering::Relaxed);
    }

    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends.load_full()
    }

    /// Read-your-writes settings for new sessions.
    pub fn read_your_writes(&self) -> Arc<ReadYourWrites> {
        self.read_your_writes.read().expect("ryw lock").clone()
    }

    pub fn password_of(&self, user: &str) -> Option<String> {
        self.users.read().expect("users lock").get(user).cloned()
    }

    /// The backend writes go to: the first read-write backend an operator has not taken
    /// offline. A `Down` one is still returned so the client's error names it.
    /// The `sql_mode` status flags a new session starts with (see
    /// `message::SQL_MODE_FLAGS`), as the write backend's connections last reported them, or
    /// any backend's; `None` before a connection was opened.
    pub fn sql_mode_flags(&self) -> Option<u16> {
        let write = self.write_backend().and_then(|b| b.pool.sql_mode_flags());
        write.or_else(|| {
            let all = self.backends.load();
            all.iter().find_map(|b| b.pool.sql_mode_flags())
        })
    }

    pub fn write_backend(&self) -> Option<Arc<Backend>> {
        let all = self.backends.load();
        let mut rw = all.iter().filter(|b| b.role == Role::ReadWrite);
        let first_not_offline = rw.clone().find(|b| b.health() != Health::Offline);
        rw.find(|b| b.serves()).or(first_not_offline).cloned()
    }

    /// Whether a read could go to a read-only backend other than `b` and those in `exclude`:
    /// then it does not wait for room in `b`'s full pool.
    pub fn other_read_backend(&self, b: &Arc<Backend>, exclude: &[Arc<Backend>]) -> bool {
        self.backends.load().iter().any(|o| {
            o.role == Role::ReadOnly
                && o.serves()
                && o.weight.load(Ordering::Relaxed) > 0
                && !Arc::ptr_eq(o, b)
                && !exclude.iter().any(|e| Arc::ptr_eq(e, o))
        })
    }

    /// The read-only backend for a session's next read, skipping `exclude` (backends that
    /// already failed this statement). `None`: reads go to the write backend. The run goes
    /// on with the same backend only if the read gives it back ([`ReadPicker::give_back`]).
    pub fn read_backend(
        &self,
        picker: &mut ReadPicker,
        exclude: &[Arc<Backend>],
    ) -> Option<Arc<Backend>> {
        let all = self.backends.load();
        let eligible = |b: &Arc<Backend>| {
            b.role == Role::ReadOnly && b.serves() && !exclude.iter().any(|e| Arc::ptr_eq(e, b))
        };
        let weight = |b: &Arc<Backend>| u64::from(b.weight.load(Ordering::Relaxed));
        // A removed backend is offline, so it no longer serves either.
        if picker.left > 0 && picker.current.as_ref().is_some_and(eligible) {
            picker.left -= 1;
            return picker.current.take();
        }
        picker.current = None;
        let total: u64 = all.iter().filter(|b| eligible(b)).map(weight).sum();
        if total == 0 {
            return None;
        }
        picker.phase = picker.phase.wrapping_add(GOLDEN_RATIO_FRACTION);
        // The phase as a fraction of the total weight.
        let mut ticket = ((u128::from(picker.phase) * u128::from(total)) >> 64) as u64;
        for b in all.iter().filter(|b| eligible(b)) {
            let w = weight(b);
            if ticket < w {
                picker.left = READ_RUN - 1;
                return Some(b.clone());
            }
            ticket -= w;
        }
        None
    }

    /// Background upkeep: closes long-idle pooled connections. (Health is the monitor's.)
    pub fn spawn_maintenance(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = crate::timer::interval(crate::backend::pool::REAP_EVERY);
            loop {
                tick.tick().await;
                let Some(cluster) = me.upgrade() else { return };
                for b in cluster.backends().iter() {
                    b.pool.reap();
                }
            }
        });
    }

    /// The write backend once it is writable: while the monitor sees `read_only=ON` on it
    /// (a VIP that moved to a server not promoted yet), wait up to `write-wait-ms` for it
    /// — or for an operator to point writes elsewhere — and then give up with the backend
    /// that stayed read-only.
    pub async fn writable_backend(&self) -> Result<Option<Arc<Backend>>, Arc<Backend>> {
        // The clock is read only once the backend turns out read-only: every write
        // checkout comes through here.
        let mut deadline = None;
        loop {
            let Some(b) = self.write_backend() else {
                return Ok(None);
            };
            if !self.read_only_check || !b.read_only() {
                return Ok(Some(b));
            }
            let now = tokio::time::Instant::now();
            if now >= *deadline.get_or_insert(now + self.write_wait) {
                return Err(b);
            }
            crate::timer::sleep(WRITABLE_POLL).await;
        }
    }

    pub fn write_wait(&self) -> Duration {
        self.write_wait
    }
}

/// How often a waiting write looks again for a writable backend.
const WRITABLE_POLL: Duration = Duration::from_millis(50);

/// Read-write backends first (Atlas numbers masters before slaves), otherwise in the order
/// they were configured or added.
fn sort_backends(mut list: Vec<Arc<Backend>>) -> Vec<Arc<Backend>> {
    list.sort_by_key(|b| b.role != Role::ReadWrite);
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, ConfigFormat};
    use std::path::Path;

    /// A write backend and two replicas (`:11`, `:12`) of the given weights.
    fn cluster(w11: u32, w12: u32) -> Arc<Cluster> {
        let text = format!(
            "[[backend]]\naddress = \"127.0.0.1:10\"\nrole = \"rw\"\n\
             [[backend]]\naddress = \"127.0.0.1:11\"\nrole = \"ro\"\nweight = {w11}\n\
             [[backend]]\naddress = \"127.0.0.1:12\"\nrole = \"ro\"\nweight = {w12}\n"
        );
        Cluster::new(&parse_str(Path::new("t.toml"), &text, ConfigFormat::Toml).unwrap())
    }

    fn port(b: &Option<Arc<Backend>>) -> &str {
        b.as_ref().map_or("none", |b| &b.address[10..])
    }

    fn backend(c: &Cluster, port: &str) -> Arc<Backend> {
        c.backends()
            .iter()
            .find(|b| b.address.ends_with(port))
            .unwrap()
            .clone()
    }

    #[test]
    fn lvs_directors_are_refused_however_their_address_arrives() {
        let text = "[proxy]\nlvs-ips = [\"192.168.1.1\", \"::ffff:10.0.0.7\", \"fd00::1\"]\n\
                    [[backend]]\naddress = \"127.0.0.1:10\"\nrole = \"rw\"\n";
        let c = Cluster::new(&parse_str(Path::new("t.toml"), text, ConfigFormat::Toml).unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let directors = [
            "192.168.1.1",
            "::ffff:192.168.1.1",
            "10.0.0.7",
            "::ffff:10.0.0.7",
            "fd00::1",
        ];
        assert!(directors.iter().all(|d| !c.refuses_lvs(ip(d))));
        c.set_lvs_offline(true);
        for d in directors {
            assert!(c.refuses_lvs(ip(d)), "{d}");
        }
        for other in ["192.168.1.2", "::ffff:192.168.1.2", "::1", "fd00::2"] {
            assert!(!c.refuses_lvs(ip(other)), "{other}");
        }
        c.set_lvs_offline(false);
        assert!(!c.refuses_lvs(ip("::ffff:192.168.1.1")));
    }

    /// A read as a session makes it: the backend is given back when the statement is done.
    fn read(c: &Cluster, p: &mut ReadPicker, exclude: &[Arc<Backend>]) -> Option<Arc<Backend>> {
        let b = c.read_backend(p, exclude)?;
        p.give_back(b.clone());
        Some(b)
    }

    #[test]
    fn a_run_goes_on_only_with_its_replica_given_back() {
        let c = cluster(1, 2);
        let mut p = ReadPicker::new();
        let first = read(&c, &mut p, &[]).unwrap();
        let second = c.read_backend(&mut p, &[]).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(p.left, READ_RUN - 2);
        // Kept (say, for `SHOW WARNINGS`): the next read starts a new run.
        read(&c, &mut p, &[]).unwrap();
        assert_eq!(p.left, READ_RUN - 1);
        // The write backend a read fell back to does not become the run's replica.
        let w = c.write_backend().unwrap();
        let lent = c.read_backend(&mut p, &[]).unwrap();
        p.give_back(w);
        drop(lent);
        assert_eq!(read(&c, &mut p, &[]).unwrap().role, Role::ReadOnly);
    }

    #[test]
    fn reads_come_in_runs_that_follow_the_weights() {
        let c = cluster(1, 3);
        let mut p = ReadPicker::new();
        let picks: Vec<String> = (0..16 * 400)
            .map(|_| port(&read(&c, &mut p, &[])).to_string())
            .collect();
        for run in picks.chunks(READ_RUN as usize) {
            assert!(run.iter().all(|x| *x == run[0]), "{run:?}");
        }
        let on_11 = picks.iter().filter(|x| *x == "11").count();
        // 400 runs: a quarter of them within a few runs (random picks: +-9 runs, 1 sigma).
        assert!(
            (on_11 as i64 - 1600).abs() <= 3 * 16,
            "{on_11} of 6400 on :11"
        );
    }

    #[test]
    fn a_run_ends_when_its_replica_stops_serving_or_leaves() {
        let c = cluster(1, 1);
        let mut p = ReadPicker::new();
        let first = read(&c, &mut p, &[]).unwrap();
        first.transition(Health::Down, Some("test".into()));
        for _ in 0..20 {
            let b = read(&c, &mut p, &[]).unwrap();
            assert!(!Arc::ptr_eq(&b, &first));
        }
        first.transition(Health::Up, None);
        // The other replica leaves the cluster: the next read goes back to the first.
        let other = read(&c, &mut p, &[]).unwrap();
        let ndx = c
            .backends()
            .iter()
            .position(|b| Arc::ptr_eq(b, &other))
            .unwrap();
        c.remove_backend(ndx + 1).unwrap();
        assert!(Arc::ptr_eq(&read(&c, &mut p, &[]).unwrap(), &first));
    }

    #[test]
    fn excluded_replicas_are_skipped_and_none_left_means_the_write_backend() {
        let c = cluster(1, 1);
        let mut p = ReadPicker::new();
        let (r11, r12) = (backend(&c, ":11"), backend(&c, ":12"));
        for _ in 0..40 {
            let b = read(&c, &mut p, std::slice::from_ref(&r11));
            assert_eq!(port(&b), "12");
        }
        assert!(read(&c, &mut p, &[r11, r12]).is_none());
    }
}
