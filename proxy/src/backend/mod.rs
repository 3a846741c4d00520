//! Backends: the servers behind the proxy, their health, and their connection pools.

pub mod conn;
pub mod pool;
pub mod relay;

use crate::config::{BackendConfig, Role};
use crate::event_threads::PerThread;
use conn::Dial;
use pool::Pool;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// Whether a backend gets new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Not probed yet: served optimistically, so a restart does not wait for the monitor.
    Unknown = 0,
    Up = 1,
    /// Unreachable (failed probes or a failed connect); the monitor brings it back.
    Down = 2,
    /// Taken out by an operator; only an operator brings it back.
    Offline = 3,
    /// A replica that answers but must not serve reads (replication stopped or lagging);
    /// the monitor brings it back once it has caught up.
    Excluded = 4,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Unknown,
            1 => Health::Up,
            2 => Health::Down,
            3 => Health::Offline,
            _ => Health::Excluded,
        }
    }

    /// Whether new statements may be sent to a backend in this state.
    pub fn serves(self) -> bool {
        matches!(self, Health::Up | Health::Unknown)
    }
}

/// What the monitor last saw of a backend, for the admin console and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Why the backend is not serving (down, excluded), in words a DBA reads.
    pub reason: Option<String>,
    /// Replication lag in seconds, for replicas that report one.
    pub lag_seconds: Option<u64>,
    pub read_only: Option<bool>,
}

#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    errors: AtomicU64,
    /// Sum of statement latencies (send to last reply packet), for the average in `stats`.
    latency_us: AtomicU64,
}

pub struct Backend {
    pub address: String,
    pub role: Role,
    pub weight: AtomicU32,
    health: AtomicU8,
    pub pool: Pool,
    /// Per event thread: every statement adds to them, and one shared line would move
    /// between cores (and away from `health`, which every statement reads) each time.
    counters: PerThread<Counters>,
    /// When an operator took it offline: sessions still pinned to it get until then plus the
    /// drain timeout.
    offline_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// Set by the monitor when the server reports `read_only=ON` (checked on every write
    /// checkout, so an atomic rather than behind `observed`'s lock).
    read_only: AtomicBool,
    /// The monitor's last `fall` probes got no answer at all (see `Damper::silent`). Only
    /// this cuts statements that cannot be run again elsewhere from a server that hangs (see
    /// `client::registry`): one failed connection marks a backend down too (`mark_down`),
    /// and a busy server can drop one connect.
    silent: AtomicBool,
    observed: std::sync::Mutex<Observed>,
}

impl Backend {
    /// A statement is sent to it.
    pub fn count_query(&self) {
        self.counters
            .local()
            .queries
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A statement's reply is complete, `us` after it was sent.
    pub fn add_latency(&self, us: u64) {
        self.counters
            .local()
            .latency_us
            .fetch_add(us, Ordering::Relaxed);
    }

    /// A failed connect, or a connection lost.
    pub fn count_error(&self) {
        self.counters.local().errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queries(&self) -> u64 {
        self.sum(|c| &c.queries)
    }

    pub fn errors(&self) -> u64 {
        self.sum(|c| &c.errors)
    }

    pub fn latency_us(&self) -> u64 {
        self.sum(|c| &c.latency_us)
    }

    fn sum(&self, field: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.counters
            .iter()
            .map(|c| field(c).load(Ordering::Relaxed))
            .sum()
    }

    pub fn new(cfg: &BackendConfig, dial: &Dial, event_threads: usize) -> Self {
        let health = match cfg.offline {
            true => Health::Offline,
            false => Health::Unknown,
        };
        Backend {
            address: cfg.address.clone(),
            role: cfg.role,
            weight: AtomicU32::new(cfg.weight.max(1)),
            health: AtomicU8::new(health as u8),
            pool: Pool::new(cfg.max_connections, dial.clone(), event_threads),
            counters: PerThread::new(event_threads),
            offline_since: std::sync::Mutex::new(cfg.offline.then(std::time::Instant::now)),
            read_only: AtomicBool::new(false),
            silent: AtomicBool::new(false),
            observed: Default::default(),
        }
    }

    /// The backend as a config entry, for `SAVE CONFIG`.
    pub fn config(&self) -> BackendConfig {
        BackendConfig {
            address: self.address.clone(),
            role: self.role,
            weight: self.weight.load(Ordering::Relaxed),
            max_connections: self.pool.max(),
            offline: self.health() == Health::Offline,
        }
    }

    /// An operator's `SET OFFLINE` / `REMOVE BACKEND`: no new work; idle connections closed.
    pub fn set_offline(&self) {
        self.offline_since
            .lock()
            .expect("offline lock")
            .get_or_insert_with(std::time::Instant::now);
        self.set_health(Health::Offline);
        self.pool.clear_idle();
        tracing::info!(backend = %self.address, "backend set offline");
    }

    /// An operator's `SET ONLINE` (or `ADD`): in service at once, as the operator said; the
    /// monitor takes it out again if its probes disagree.
    pub fn set_online(&self) {
        *self.offline_since.lock().expect("offline lock") = None;
        self.set_health(Health::Up);
        tracing::info!(backend = %self.address, "backend set online");
    }

    /// An operator's state, which has no reason: the monitor's last one (an exclusion, say)
    /// would otherwise stay next to it, as the monitor sets reasons only when it moves the
    /// backend. Stored under the `observed` lock, so a monitor's transition racing with it
    /// cannot write its reason after this one is cleared (see [`Backend::set_reason`]).
    fn set_health(&self, to: Health) {
        let mut o = self.observed.lock().expect("observed lock");
        self.health.store(to as u8, Ordering::Relaxed);
        o.reason = None;
    }

    /// Shows `reason` for the state the backend is in now, if that state has one (`Down`,
    /// `Excluded`), read under the lock that [`Backend::set_health`] changes it under.
    fn set_reason(&self, reason: Option<String>) {
        let mut o = self.observed.lock().expect("observed lock");
        o.reason = reason.filter(|_| matches!(self.health(), Health::Down | Health::Excluded));
    }

    /// When sessions still on it must let go: `drain` after it was taken offline; `None`
    /// while it is not offline.
    pub fn drain_deadline(&self, drain: Duration) -> Option<std::time::Instant> {
        if self.health() != Health::Offline {
            return None;
        }
        let since = *self.offline_since.lock().expect("offline lock");
        since.map(|t| t + drain)
    }

    /// Offline for longer than `drain`: sessions still on it must let go.
    pub fn drained(&self, drain: Duration) -> bool {
        self.health() == Health::Offline
            && self
                .offline_since
                .lock()
                .expect("offline lock")
                .is_some_and(|t| t.elapsed() > drain)
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Whether new statements may be sent here.
    pub fn serves(&self) -> bool {
        self.health().serves()
    }

    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }

    /// Down, and the monitor's probes get no answer at all.
    pub fn found_silent(&self) -> bool {
        self.silent.load(Ordering::Relaxed) && self.health() == Health::Down
    }

    /// Whether the server last reported `read_only=ON`.
    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    pub fn observed(&self) -> Observed {
        self.observed.lock().expect("observed lock").clone()
    }

    /// Records what a probe saw (not the verdict: see [`Backend::transition`]). A `read_only`
    /// the probe could not read is unknown, which counts as writable, as before the first
    /// probe: an `ON` from an older probe would hold back every write for as long as the
    /// monitor cannot look, even once the server is writable, whereas a server still
    /// read-only refuses the writes itself.
    pub fn observe(&self, read_only: Option<bool>, lag_seconds: Option<u64>) {
        let ro = read_only.unwrap_or(false);
        let was = self.read_only.swap(ro, Ordering::Relaxed);
        if was != ro && self.role == Role::ReadWrite {
            match read_only {
                Some(true) => {
                    tracing::warn!(backend = %self.address, "write backend reports read_only=ON: writes wait for it to become writable")
                }
                Some(false) => {
                    tracing::info!(backend = %self.address, "write backend writable again (read_only=OFF)")
                }
                None => {
                    tracing::warn!(backend = %self.address, "write backend's read_only is unknown (the monitor cannot query it): writes are no longer held back")
                }
            }
        }
        let mut o = self.observed.lock().expect("observed lock");
        // A replica that takes writes runs those that reach it (a stored function's, under a
        // `SELECT`; see `relay::refused_as_replica`) and drifts from the primary. Said when
        // seen so (again after the monitor lost sight of it), and when it ends.
        if self.role == Role::ReadOnly && read_only.is_some() && read_only != o.read_only {
            match read_only {
                Some(false) => {
                    tracing::warn!(backend = %self.address, "replica reports read_only=OFF: a write that reaches it (a stored function called by a SELECT) would run there, not on the primary; set read_only=ON on replicas")
                }
                _ if o.read_only == Some(false) => {
                    tracing::info!(backend = %self.address, "replica read-only again (read_only=ON)")
                }
                _ => {}
            }
        }
        o.read_only = read_only;
        o.lag_seconds = lag_seconds;
    }

    /// Moves to `to` unless an operator's `Offline` stands (that always wins), logging why.
    /// Leaving service closes the idle pooled connections.
    pub fn transition(&self, to: Health, reason: Option<String>) {
        let from = loop {
            let cur = self.health.load(Ordering::Relaxed);
            if cur == Health::Offline as u8 || cur == to as u8 {
                self.set_reason(reason);
                return;
            }
            if self
                .health
                .compare_exchange(cur, to as u8, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                break Health::from_u8(cur);
            }
        };
        let why = reason.as_deref().unwrap_or("healthy");
        match to {
            Health::Up if from == Health::Unknown => {
                tracing::debug!(backend = %self.address, "backend up")
            }
            Health::Up => {
                tracing::info!(backend = %self.address, "backend back in service ({why})")
            }
            Health::Down => tracing::warn!(backend = %self.address, "backend down: {why}"),
            Health::Excluded => {
                tracing::warn!(backend = %self.address, "replica leaves the read pool: {why}")
            }
            Health::Unknown | Health::Offline => {}
        }
        if !to.serves() {
            self.pool.clear_idle();
        }
        self.set_reason(reason);
    }

    /// A connection attempt failed: out of service at once (not after `fall` probes), so the
    /// next statements go elsewhere; the monitor brings it back.
    pub fn mark_down(&self, why: &dyn std::fmt::Display) {
        if self.serves() || self.health() == Health::Excluded {
            self.transition(Health::Down, Some(why.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn replica() -> Backend {
        let cfg = BackendConfig {
            address: "127.0.0.1:1".into(),
            role: Role::ReadOnly,
            weight: 1,
            max_connections: 1,
            offline: false,
        };
        let dial = Dial {
            timeout: Duration::from_secs(1),
            tls: None,
        };
        Backend::new(&cfg, &dial, 1)
    }

    /// What `observe` logs over `reports`, one line per message.
    fn logged_over(b: &Backend, reports: &[Option<bool>]) -> Vec<String> {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || SharedBuf(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for &r in reports {
                b.observe(r, None);
            }
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    struct SharedBuf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_writable_replica_is_warned_of_when_seen_so() {
        let b = replica();
        let lines = logged_over(&b, &[Some(true), Some(false), Some(false), Some(true)]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("WARN") && lines[0].contains("read_only=OFF"));
        assert!(lines[1].contains("INFO") && lines[1].contains("read_only=ON"));
        // Writable from its first report on; said again when the monitor, having lost
        // sight of it, sees it so again.
        let b = replica();
        let lines = logged_over(&b, &[Some(false), None, Some(false)]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|l| l.contains("read_only=OFF")));
    }

    fn shown(b: &Backend) -> (Health, Option<String>) {
        (b.health(), b.observed().reason)
    }

    #[test]
    fn the_reason_shown_is_the_current_states() {
        let b = replica();
        let stopped = || Some("replication SQL thread stopped".to_string());
        b.transition(Health::Excluded, stopped());
        assert_eq!(shown(&b), (Health::Excluded, stopped()));
        b.set_offline();
        assert_eq!(shown(&b), (Health::Offline, None));
        // The monitor still finds it unfit while it is offline: no state, no reason.
        b.transition(Health::Excluded, stopped());
        assert_eq!(shown(&b), (Health::Offline, None));
        b.set_online();
        assert_eq!(shown(&b), (Health::Up, None));

        b.transition(Health::Down, Some("connection refused".into()));
        b.set_online();
        assert_eq!(shown(&b), (Health::Up, None));
        b.transition(Health::Excluded, stopped());
        b.transition(Health::Up, None);
        assert_eq!(shown(&b), (Health::Up, None));
    }
}
