//! Read-your-writes: after a session writes, its reads must see the write even though they
//! go to replicas that apply it later.
//!
//! - `causal`: the session remembers the GTID its last write committed as (tracked in the
//!   write's OK packet) and a replica read first waits, on that replica, with
//!   `MASTER_GTID_WAIT(gtid, timeout)`; a replica that does not catch up in time is left
//!   and the read runs on the write backend. A replica that caught up once is not asked
//!   again until the next write.
//! - `primary-window`: reads go to the write backend for a fixed time after each write.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Off,
    Causal,
    PrimaryWindow,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Some(Mode::Off),
            "causal" => Some(Mode::Causal),
            "primary-window" => Some(Mode::PrimaryWindow),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Causal => "causal",
            Mode::PrimaryWindow => "primary-window",
        }
    }
}

/// The `[proxy]` settings, with per-user modes from `[[user]]` tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    /// `primary-window`: how long after a write reads stay on the write backend.
    pub window: Duration,
    /// `causal`: how long a replica may take to catch up before the read moves.
    pub timeout: Duration,
    pub per_user: std::collections::BTreeMap<String, Mode>,
}

pub mod defaults {
    pub const WINDOW_MS: u64 = 1_000;
    pub const TIMEOUT_MS: u64 = 1_000;
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Off,
            window: Duration::from_millis(defaults::WINDOW_MS),
            timeout: Duration::from_millis(defaults::TIMEOUT_MS),
            per_user: Default::default(),
        }
    }
}

impl Settings {
    pub fn mode_for(&self, user: &str) -> Mode {
        self.per_user.get(user).copied().unwrap_or(self.mode)
    }
}

/// What a read must do before it may run on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadPlan<'a> {
    /// Any replica will do.
    Replica,
    /// Only the write backend has the session's writes for sure.
    Primary,
    /// A replica that has applied this GTID set, waiting at most the duration.
    WaitFor(&'a str, Duration),
}

/// One session's read-your-writes bookkeeping. `mode` comes first (`repr(C)`): every read
/// looks at it, and with the mode off at nothing else, so the rest stays out of the cache.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Tracker {
    mode: Mode,
    window: Duration,
    timeout: Duration,
    last_write: Option<Instant>,
    /// GTID of the last write (causal mode).
    gtid: Option<String>,
    /// Replicas known to have applied `gtid`, by address.
    caught_up: Vec<String>,
}

impl Tracker {
    pub fn new(settings: &Settings, user: &str) -> Self {
        Tracker {
            mode: settings.mode_for(user),
            window: settings.window,
            timeout: settings.timeout,
            ..Default::default()
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The session goes on as `user` (`COM_CHANGE_USER`), whose mode may differ. What it
    /// wrote before is still to be seen: on a server the connection is the same.
    pub fn switch_user(&mut self, settings: &Settings, user: &str) {
        self.mode = settings.mode_for(user);
        self.window = settings.window;
        self.timeout = settings.timeout;
    }

    /// A statement that changed data committed; `gtid` is what the server tracked for it.
    /// In causal mode a write whose GTID is unknown (the server did not say) keeps reads on
    /// the write backend for the window instead, so they are never stale; after it they
    /// still wait for the writes whose GTIDs are known.
    pub fn wrote(&mut self, gtid: Option<&str>) {
        match self.mode {
            Mode::Off => {}
            Mode::PrimaryWindow => self.last_write = Some(Instant::now()),
            Mode::Causal => match gtid.filter(|g| is_gtid_list(g)) {
                Some(g) => {
                    self.gtid = Some(match &self.gtid {
                        Some(old) => merge_gtids(old, g),
                        None => g.to_string(),
                    });
                    self.last_write = None;
                    self.caught_up.clear();
                }
                None => self.last_write = Some(Instant::now()),
            },
        }
    }

    pub fn plan(&self, replica: &str) -> ReadPlan<'_> {
        if self.mode == Mode::Off {
            return ReadPlan::Replica;
        }
        if self.last_write.is_some_and(|t| t.elapsed() < self.window) {
            return ReadPlan::Primary;
        }
        match &self.gtid {
            Some(g) if !self.caught_up.iter().any(|a| a == replica) => {
                ReadPlan::WaitFor(g, self.timeout)
            }
            _ => ReadPlan::Replica,
        }
    }

    /// `replica` has applied the session's last write.
    pub fn caught_up(&mut self, replica: &str) {
        self.caught_up.push(replica.to_string());
    }
}

/// MariaDB GTID lists look like `0-1-21` or `0-1-21,1-2-5`: only digits, `-` and `,`, which
/// also makes them safe to embed in the wait statement.
fn is_gtid_list(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
}

/// `old` with each replication domain `new` names at `new`'s position. A replica may apply
/// domains out of order (parallel replication), so the session waits for its last write in
/// every domain it wrote in, not only for its very last write.
fn merge_gtids(old: &str, new: &str) -> String {
    let domain = |g: &str| g.split('-').next().unwrap_or_default().to_string();
    let mut merged: Vec<&str> = old
        .split(',')
        .filter(|o| !new.split(',').any(|n| domain(n) == domain(o)))
        .collect();
    merged.extend(new.split(','));
    merged.join(",")
}

/// The statement a replica runs before a causal read: `0` when it has applied `gtid` within
/// `timeout`, `-1` when it timed out.
pub fn wait_statement(gtid: &str, timeout: Duration) -> String {
    format!(
        "SELECT MASTER_GTID_WAIT('{gtid}', {:.3})",
        timeout.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(mode: Mode) -> Tracker {
        let settings = Settings {
            mode,
            window: Duration::from_millis(200),
            ..Default::default()
        };
        Tracker::new(&settings, "app")
    }

    #[test]
    fn off_never_changes_reads() {
        let mut t = tracker(Mode::Off);
        t.wrote(Some("0-1-5"));
        assert_eq!(t.plan("r1"), ReadPlan::Replica);
    }

    #[test]
    fn writes_in_several_domains_are_all_waited_for() {
        let mut t = tracker(Mode::Causal);
        t.wrote(Some("0-1-5"));
        t.wrote(Some("7-1-2"));
        t.wrote(Some("0-1-6"));
        assert!(matches!(t.plan("r1"), ReadPlan::WaitFor("7-1-2,0-1-6", _)));
    }

    #[test]
    fn a_write_is_still_to_be_seen_after_a_change_of_user() {
        let settings = Settings {
            mode: Mode::Causal,
            ..Default::default()
        };
        let mut t = Tracker::new(&settings, "app");
        t.wrote(Some("0-1-5"));
        t.switch_user(&settings, "other");
        assert!(matches!(t.plan("r1"), ReadPlan::WaitFor("0-1-5", _)));
    }

    #[test]
    fn primary_window_expires() {
        let mut t = tracker(Mode::PrimaryWindow);
        assert_eq!(t.plan("r1"), ReadPlan::Replica);
        t.wrote(None);
        assert_eq!(t.plan("r1"), ReadPlan::Primary);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.plan("r1"), ReadPlan::Replica);
    }

    #[test]
    fn causal_waits_once_per_replica_per_write() {
        let mut t = tracker(Mode::Causal);
        t.wrote(Some("0-1-5"));
        assert_eq!(
            t.plan("r1"),
            ReadPlan::WaitFor("0-1-5", Duration::from_secs(1))
        );
        t.caught_up("r1");
        assert_eq!(t.plan("r1"), ReadPlan::Replica);
        assert!(matches!(t.plan("r2"), ReadPlan::WaitFor(..)));
        t.wrote(Some("0-1-6"));
        assert_eq!(
            t.plan("r1"),
            ReadPlan::WaitFor("0-1-6", Duration::from_secs(1))
        );
    }

    #[test]
    fn causal_without_a_gtid_falls_back_to_the_primary() {
        let mut t = tracker(Mode::Causal);
        t.wrote(None);
        assert_eq!(t.plan("r1"), ReadPlan::Primary);
        // The window over, a known write is still waited for.
        let mut t = tracker(Mode::Causal);
        t.wrote(Some("0-1-5"));
        t.wrote(None);
        assert_eq!(t.plan("r1"), ReadPlan::Primary);
        std::thread::sleep(Duration::from_millis(250));
        assert!(matches!(t.plan("r1"), ReadPlan::WaitFor("0-1-5", _)));
        let mut t = tracker(Mode::Causal);
        t.wrote(Some("0-1-5'); DROP TABLE t; --"));
        assert_eq!(
            t.plan("r1"),
            ReadPlan::Primary,
            "malformed GTIDs are never embedded"
        );
    }

    #[test]
    fn per_user_mode_overrides_the_default() {
        let mut s = Settings::default();
        s.per_user.insert("report".into(), Mode::Causal);
        assert_eq!(s.mode_for("report"), Mode::Causal);
        assert_eq!(s.mode_for("app"), Mode::Off);
        assert_eq!(
            wait_statement("0-1-5", Duration::from_millis(1500)),
            "SELECT MASTER_GTID_WAIT('0-1-5', 1.500)"
        );
    }
}
