//! The VRRP state machine (RFC 3768 §6.4, RFC 5798 §6.4), pure and deterministic.
//!
//! Time is a [`Duration`] since an arbitrary origin that the caller supplies with every event; the
//! machine keeps one deadline ([`Machine::deadline`]: the Adver_Timer as MASTER, the
//! Master_Down_Timer as BACKUP) and the caller feeds [`Event::Timer`] when it passes. Every call
//! returns the [`Action`]s to perform, in order.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::packet::{Version, PRIORITY_OWNER};

/// Instance state. `Initialize` is also where a stopped instance rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl State {
    /// The word keepalived uses (in logs and as `notify`'s STATE argument).
    pub fn keepalived_name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// What notify hook to run: a state entered, or the instance stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyKind {
    Master,
    Backup,
    Fault,
    Stop,
}

impl NotifyKind {
    pub fn word(self) -> &'static str {
        match self {
            NotifyKind::Master => "MASTER",
            NotifyKind::Backup => "BACKUP",
            NotifyKind::Fault => "FAULT",
            NotifyKind::Stop => "STOP",
        }
    }
}

/// The state machine's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub version: Version,
    /// Configured priority, 1–255 (255: the address owner).
    pub priority: u8,
    /// Advert_Interval. v2 sends whole seconds; v3 centiseconds.
    pub advert_int: Duration,
    pub preempt: bool,
    /// keepalived's `preempt_delay`: a preemptive BACKUP preempts a lower-priority master only
    /// this long after it started (or left FAULT), or after it first saw that master's adverts
    /// since a master of its own priority or higher: a node whose track script recovers does
    /// not fail back at once.
    pub preempt_delay: Duration,
    /// This router's primary address, compared on equal priority (higher wins).
    pub primary_ip: Ipv4Addr,
}

/// Inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The instance starts (RFC "Startup").
    Startup,
    /// A valid advertisement for this VRID. `interval_cs` is its advert interval in centiseconds
    /// (v2 seconds × 100).
    Advert {
        from: Ipv4Addr,
        priority: u8,
        interval_cs: u16,
    },
    /// The pending deadline passed.
    Timer,
    /// Clean shutdown (RFC "Shutdown").
    Shutdown,
    /// A tracked interface or script went bad (`true`) or recovered (`false`).
    Fault(bool),
    /// Track-script weights changed the effective priority (clamped to 1–254 by the caller unless
    /// the base priority is 255).
    Priority(u8),
    /// A planned switchover: a MASTER hands the VIP over (priority-0 advert, as on shutdown)
    /// and stays running as BACKUP; a backup takes over after Skew_Time.
    Resign,
}

/// Outputs, to be performed in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement carrying this priority (0 on shutdown or fault).
    SendAdvert { priority: u8 },
    /// Add the VIPs and send gratuitous ARPs for them.
    AddVips,
    /// Remove the VIPs.
    RemoveVips,
    /// Run the notify hooks for this transition.
    Notify(NotifyKind),
}

/// One VRRP instance's state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    params: Params,
    state: State,
    priority: u8,
    /// Master_Adver_Interval (v3 learns it from the master's adverts).
    master_adver_int: Duration,
    deadline: Option<Duration>,
    /// Until when a preemptive backup does not preempt; `None`: from the next lower-priority
    /// master's advert on (plus `preempt_delay`).
    preempt_after: Option<Duration>,
    /// This node handed the VIP over (`Resign`): it does not preempt the master that took it,
    /// or a switchover with `preempt` would bounce straight back. Until it is master again or
    /// restarts (a FAULT in between, a link flap, does not end it).
    resigned: bool,
    fault: bool,
    master: Option<Ipv4Addr>,
}

const CS: Duration = Duration::from_millis(10);

impl Machine {
    pub fn new(params: Params) -> Machine {
        Machine {
            priority: params.priority,
            master_adver_int: params.advert_int,
            params,
            state: State::Initialize,
            deadline: None,
            preempt_after: None,
            resigned: false,
            fault: false,
            master: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The priority currently advertised (the configured one adjusted by tracking).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The current master's address as last seen (ours when MASTER).
    pub fn master(&self) -> Option<Ipv4Addr> {
        self.master
    }

    /// When the caller must feed [`Event::Timer`].
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Skew_Time for a given priority: v2 `(256 − Priority) / 256` seconds; v3
    /// `((256 − Priority) × Master_Adver_Interval) / 256`.
    pub fn skew_time(&self) -> Duration {
        let p = 256 - u32::from(self.priority);
        match self.params.version {
            Version::V2 => Duration::from_secs(1) * p / 256,
            Version::V3 => self.master_adver_int * p / 256,
        }
    }

    fn preemption_delayed(&mut self, now: Duration) -> bool {
        let after = *self
            .preempt_after
            .get_or_insert(now + self.params.preempt_delay);
        now < after
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_int * 3 + self.skew_time()
    }

    fn become_backup(&mut self, now: Duration, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        self.state = State::Backup;
        self.deadline = Some(now + self.master_down_interval());
        if was_master {
            out.push(Action::RemoveVips);
        }
        out.push(Action::Notify(NotifyKind::Backup));
    }

    fn become_master(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.state = State::Master;
        self.resigned = false;
        self.master = Some(self.params.primary_ip);
        out.push(Action::SendAdvert {
            priority: self.priority,
        });
        out.push(Action::AddVips);
        out.push(Action::Notify(NotifyKind::Master));
        self.deadline = Some(now + self.params.advert_int);
    }

    fn initialize(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.master_adver_int = self.params.advert_int;
        self.master = None;
        self.preempt_after = Some(now + self.params.preempt_delay);
        if self.priority == PRIORITY_OWNER {
            self.become_master(now, out);
        } else {
            self.become_backup(now, out);
        }
    }

    /// Feeds one event; returns what to do.
    pub fn handle(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, event) {
            (State::Initialize, Event::Startup) => {
                if self.fault {
                    self.state = State::Fault;
                    out.push(Action::Notify(NotifyKind::Fault));
                } else {
                    self.initialize(now, &mut out);
                }
            }
            (_, Event::Startup) => {}

            (State::Initialize, Event::Fault(f)) => self.fault = f,
            (State::Fault, Event::Fault(true)) => {}
            (State::Fault, Event::Fault(false)) => {
                self.fault = false;
                self.initialize(now, &mut out);
            }
            (State::Backup | State::Master, Event::Fault(false)) => self.fault = false,
            (State::Backup | State::Master, Event::Fault(true)) => {
                self.fault = true;
                if self.state == State::Master {
                    out.push(Action::SendAdvert { priority: 0 });
                    out.push(Action::RemoveVips);
                }
                self.state = State::Fault;
                self.deadline = None;
                self.master = None;
                out.push(Action::Notify(NotifyKind::Fault));
            }

            (_, Event::Priority(p)) => self.priority = p,

            (State::Initialize | State::Fault, Event::Advert { .. } | Event::Timer) => {}

            (State::Backup, Event::Timer) => {
                if self.deadline.is_some_and(|d| now >= d) {
                    self.become_master(now, &mut out);
                }
            }
            (State::Master, Event::Timer) => {
                if self.deadline.is_some_and(|d| now >= d) {
                    out.push(Action::SendAdvert {
                        priority: self.priority,
                    });
                    self.deadline = Some(now + self.params.advert_int);
                }
            }

            (
                State::Backup,
                Event::Advert {
                    from,
                    priority,
                    interval_cs,
                },
            ) => {
                if priority >= self.priority {
                    // The next lower-priority master starts the delay anew (keepalived).
                    self.preempt_after = None;
                }
                if priority == 0 {
                    // The master is leaving: take over after Skew_Time.
                    self.deadline = Some(now + self.skew_time());
                } else if !self.params.preempt
                    || self.resigned
                    || priority >= self.priority
                    || self.preemption_delayed(now)
                {
                    if self.params.version == Version::V3 {
                        self.master_adver_int = CS * u32::from(interval_cs.max(1));
                    }
                    self.master = Some(from);
                    self.deadline = Some(now + self.master_down_interval());
                }
                // Otherwise: a lower-priority master and we preempt — discard; the
                // Master_Down_Timer fires and we take over.
            }
            (
                State::Master,
                Event::Advert {
                    from,
                    priority,
                    interval_cs,
                },
            ) => {
                if priority == 0 {
                    out.push(Action::SendAdvert {
                        priority: self.priority,
                    });
                    self.deadline = Some(now + self.params.advert_int);
                } else if priority > self.priority
                    || (priority == self.priority && from > self.params.primary_ip)
                {
                    if self.params.version == Version::V3 {
                        self.master_adver_int = CS * u32::from(interval_cs.max(1));
                    }
                    self.master = Some(from);
                    self.become_backup(now, &mut out);
                }
                // Otherwise discard: we stay master and our next advert tells them.
            }

            (State::Master, Event::Resign) => {
                out.push(Action::SendAdvert { priority: 0 });
                self.master = None;
                self.become_backup(now, &mut out);
                self.resigned = true;
            }
            (_, Event::Resign) => {}

            (State::Initialize, Event::Shutdown) => {}
            (state, Event::Shutdown) => {
                if state == State::Master {
                    out.push(Action::SendAdvert { priority: 0 });
                    out.push(Action::RemoveVips);
                }
                self.state = State::Initialize;
                self.deadline = None;
                self.master = None;
                out.push(Action::Notify(NotifyKind::Stop));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
    const LOWER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
    const HIGHER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

    fn params(version: Version, priority: u8) -> Params {
        Params {
            version,
            priority,
            advert_int: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_ip: ME,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn adv(from: Ipv4Addr, priority: u8) -> Event {
        Event::Advert {
            from,
            priority,
            interval_cs: 100,
        }
    }

    fn started(p: Params) -> Machine {
        let mut m = Machine::new(p);
        m.handle(Duration::ZERO, Event::Startup);
        m
    }

    fn master(p: Params) -> Machine {
        let mut m = started(p);
        let d = m.deadline().unwrap();
        let a = m.handle(d, Event::Timer);
        assert_eq!(m.state(), State::Master, "{a:?}");
        m
    }

    #[test]
    fn timers_follow_the_rfcs() {
        let m = started(params(Version::V2, 100));
        // v2: skew = (256-100)/256 s = 609.375 ms; down = 3 s + skew.
        assert_eq!(m.skew_time(), Duration::from_micros(609_375));
        assert_eq!(m.master_down_interval(), Duration::from_micros(3_609_375));
        assert_eq!(m.deadline(), Some(Duration::from_micros(3_609_375)));

        let mut p = params(Version::V3, 200);
        p.advert_int = ms(100);
        let m = started(p);
        // v3: skew = (56 × 100 ms)/256 = 21.875 ms; down = 300 ms + skew.
        assert_eq!(m.skew_time(), Duration::from_micros(21_875));
        assert_eq!(m.master_down_interval(), Duration::from_micros(321_875));
    }

    #[test]
    fn startup_goes_backup_then_master_when_nobody_speaks() {
        let mut m = Machine::new(params(Version::V2, 100));
        assert_eq!(m.state(), State::Initialize);
        let a = m.handle(Duration::ZERO, Event::Startup);
        assert_eq!(a, vec![Action::Notify(NotifyKind::Backup)]);
        assert_eq!(m.state(), State::Backup);
        // An early timer does nothing.
        assert!(m.handle(ms(100), Event::Timer).is_empty());
        let d = m.deadline().unwrap();
        let a = m.handle(d, Event::Timer);
        assert_eq!(
            a,
            vec![
                Action::SendAdvert { priority: 100 },
                Action::AddVips,
                Action::Notify(NotifyKind::Master)
            ]
        );
        assert_eq!(m.deadline(), Some(d + ms(1000)));
        assert_eq!(m.master(), Some(ME));
        // The advert timer repeats.
        let a = m.handle(d + ms(1000), Event::Timer);
        assert_eq!(a, vec![Action::SendAdvert { priority: 100 }]);
        assert_eq!(m.deadline(), Some(d + ms(2000)));
    }

    #[test]
    fn owner_is_master_at_once() {
        let mut m = Machine::new(params(Version::V3, 255));
        let a = m.handle(Duration::ZERO, Event::Startup);
        assert_eq!(m.state(), State::Master);
        assert_eq!(a[0], Action::SendAdvert { priority: 255 });
        assert!(a.contains(&Action::AddVips));
    }

    #[test]
    fn backup_resets_its_timer_on_higher_or_equal_priority() {
        for prio in [100, 150, 255] {
            let mut m = started(params(Version::V2, 100));
            let a = m.handle(ms(2000), adv(LOWER_IP, prio));
            assert!(a.is_empty());
            assert_eq!(m.state(), State::Backup);
            assert_eq!(m.master(), Some(LOWER_IP));
            assert_eq!(m.deadline(), Some(ms(2000) + m.master_down_interval()));
        }
    }

    #[test]
    fn preemptive_backup_ignores_a_lower_master_and_takes_over() {
        let mut m = started(params(Version::V2, 150));
        let d = m.deadline().unwrap();
        assert!(m.handle(ms(1000), adv(HIGHER_IP, 100)).is_empty());
        assert_eq!(
            m.deadline(),
            Some(d),
            "lower priority adverts do not reset the timer"
        );
        m.handle(d, Event::Timer);
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn nopreempt_backup_stays_backup_under_a_lower_master() {
        let mut p = params(Version::V2, 150);
        p.preempt = false;
        let mut m = started(p);
        for t in (1..20).map(|s| ms(s * 1000)) {
            m.handle(t, adv(HIGHER_IP, 100));
            assert!(m.handle(t, Event::Timer).is_empty());
        }
        assert_eq!(m.state(), State::Backup);
        // But takes over when that master dies.
        let d = m.deadline().unwrap();
        m.handle(d, Event::Timer);
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn preempt_delay_postpones_preemption() {
        let mut p = params(Version::V2, 150);
        p.preempt_delay = ms(10_000);
        let mut m = started(p);
        for s in 1..10 {
            m.handle(ms(s * 1000), adv(HIGHER_IP, 100));
        }
        assert_eq!(m.state(), State::Backup);
        // After the delay the lower master's adverts no longer hold us back.
        m.handle(ms(10_500), adv(HIGHER_IP, 100));
        let d = m.deadline().unwrap();
        assert_eq!(d, ms(9000) + m.master_down_interval());
        m.handle(d, Event::Timer);
        assert_eq!(m.state(), State::Master);
    }

    /// keepalived's meaning: the delay runs from the first advert of a lower-priority master
    /// since one at or above our priority, not only from start-up (a recovered track script
    /// failed back at once).
    #[test]
    fn preempt_delay_runs_from_the_first_lower_master() {
        let mut p = params(Version::V2, 150);
        p.preempt_delay = ms(10_000);
        let mut m = started(p);
        for s in 1..30 {
            m.handle(ms(s * 1000), adv(HIGHER_IP, 200));
        }
        // That master's priority drops below ours at 30 s: no preemption before 40 s.
        for s in 30..40 {
            m.handle(ms(s * 1000), adv(HIGHER_IP, 100));
            assert!(m.handle(ms(s * 1000 + 500), Event::Timer).is_empty());
        }
        assert_eq!(m.state(), State::Backup);
        m.handle(ms(40_000), adv(HIGHER_IP, 100));
        let d = m.deadline().unwrap();
        assert_eq!(d, ms(39_000) + m.master_down_interval());
        m.handle(d, Event::Timer);
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn priority_zero_makes_the_backup_take_over_after_skew() {
        let mut m = started(params(Version::V2, 100));
        m.handle(ms(500), adv(HIGHER_IP, 150));
        m.handle(ms(1000), adv(HIGHER_IP, 0));
        assert_eq!(m.deadline(), Some(ms(1000) + m.skew_time()));
        m.handle(ms(1000) + m.skew_time(), Event::Timer);
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn master_answers_priority_zero_with_an_advert() {
        let mut m = master(params(Version::V2, 100));
        let a = m.handle(ms(5000), adv(HIGHER_IP, 0));
        assert_eq!(a, vec![Action::SendAdvert { priority: 100 }]);
        assert_eq!(m.deadline(), Some(ms(6000)));
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn master_yields_to_higher_priority() {
        let mut m = master(params(Version::V2, 100));
        let a = m.handle(ms(5000), adv(LOWER_IP, 101));
        assert_eq!(
            a,
            vec![Action::RemoveVips, Action::Notify(NotifyKind::Backup)]
        );
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master(), Some(LOWER_IP));
        assert_eq!(m.deadline(), Some(ms(5000) + m.master_down_interval()));
    }

    #[test]
    fn master_keeps_its_role_against_lower_priority() {
        let mut m = master(params(Version::V2, 100));
        assert!(m.handle(ms(5000), adv(HIGHER_IP, 99)).is_empty());
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn equal_priority_tie_breaks_on_the_higher_primary_address() {
        let mut m = master(params(Version::V2, 100));
        assert!(m.handle(ms(5000), adv(LOWER_IP, 100)).is_empty());
        assert_eq!(m.state(), State::Master);
        m.handle(ms(5100), adv(HIGHER_IP, 100));
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn v3_backup_learns_the_masters_interval() {
        let mut m = started(params(Version::V3, 100));
        m.handle(
            ms(100),
            Event::Advert {
                from: HIGHER_IP,
                priority: 200,
                interval_cs: 10,
            },
        );
        // 3 × 100 ms + (156 × 100 ms)/256
        assert_eq!(m.master_down_interval(), Duration::from_nanos(360_937_500));
        // v2 does not learn (the interval must match the configured one).
        let mut m = started(params(Version::V2, 100));
        m.handle(
            ms(100),
            Event::Advert {
                from: HIGHER_IP,
                priority: 200,
                interval_cs: 10,
            },
        );
        assert_eq!(m.master_down_interval(), Duration::from_micros(3_609_375));
    }

    #[test]
    fn shutdown_from_master_sends_priority_zero_and_removes_vips() {
        let mut m = master(params(Version::V2, 100));
        let a = m.handle(ms(5000), Event::Shutdown);
        assert_eq!(
            a,
            vec![
                Action::SendAdvert { priority: 0 },
                Action::RemoveVips,
                Action::Notify(NotifyKind::Stop)
            ]
        );
        assert_eq!(m.state(), State::Initialize);
        assert_eq!(m.deadline(), None);
        // Nothing more happens.
        assert!(m.handle(ms(6000), Event::Timer).is_empty());
        assert!(m.handle(ms(6000), adv(HIGHER_IP, 1)).is_empty());
        assert!(m.handle(ms(6000), Event::Shutdown).is_empty());
    }

    #[test]
    fn shutdown_from_backup_only_notifies() {
        let mut m = started(params(Version::V2, 100));
        let a = m.handle(ms(5), Event::Shutdown);
        assert_eq!(a, vec![Action::Notify(NotifyKind::Stop)]);
    }

    #[test]
    fn fault_from_master_and_recovery() {
        let mut m = master(params(Version::V2, 100));
        let a = m.handle(ms(5000), Event::Fault(true));
        assert_eq!(
            a,
            vec![
                Action::SendAdvert { priority: 0 },
                Action::RemoveVips,
                Action::Notify(NotifyKind::Fault)
            ]
        );
        assert_eq!(m.state(), State::Fault);
        assert_eq!(m.deadline(), None);
        assert!(m.handle(ms(5100), adv(HIGHER_IP, 1)).is_empty());
        assert!(m.handle(ms(5100), Event::Fault(true)).is_empty());
        let a = m.handle(ms(6000), Event::Fault(false));
        assert_eq!(a, vec![Action::Notify(NotifyKind::Backup)]);
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn fault_from_backup_and_at_startup() {
        let mut m = started(params(Version::V2, 100));
        let a = m.handle(ms(5), Event::Fault(true));
        assert_eq!(a, vec![Action::Notify(NotifyKind::Fault)]);

        let mut m = Machine::new(params(Version::V2, 100));
        m.handle(Duration::ZERO, Event::Fault(true));
        let a = m.handle(Duration::ZERO, Event::Startup);
        assert_eq!(a, vec![Action::Notify(NotifyKind::Fault)]);
        assert_eq!(m.state(), State::Fault);
        // Shutdown from FAULT: STOP, no advert.
        let a = m.handle(ms(1), Event::Shutdown);
        assert_eq!(a, vec![Action::Notify(NotifyKind::Stop)]);
    }

    #[test]
    fn priority_change_goes_out_in_the_next_advert_and_changes_election() {
        let mut m = master(params(Version::V2, 100));
        assert!(m.handle(ms(5000), Event::Priority(80)).is_empty());
        let d = m.deadline().unwrap();
        assert_eq!(
            m.handle(d, Event::Timer),
            vec![Action::SendAdvert { priority: 80 }]
        );
        // Now a 90 beats us.
        m.handle(d + ms(10), adv(LOWER_IP, 90));
        assert_eq!(m.state(), State::Backup);
        // And a raised priority preempts the 90 at Master_Down.
        m.handle(d + ms(20), Event::Priority(120));
        m.handle(d + ms(1000), adv(LOWER_IP, 90));
        let dd = m.deadline().unwrap();
        m.handle(dd, Event::Timer);
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn every_state_event_pair_is_handled_without_panicking() {
        let events = [
            Event::Startup,
            adv(HIGHER_IP, 0),
            adv(HIGHER_IP, 255),
            adv(LOWER_IP, 1),
            Event::Timer,
            Event::Shutdown,
            Event::Fault(true),
            Event::Fault(false),
            Event::Priority(50),
        ];
        for version in [Version::V2, Version::V3] {
            for first in events {
                for second in events {
                    for third in events {
                        let mut m = Machine::new(params(version, 100));
                        let mut t = Duration::ZERO;
                        for e in [first, second, third, Event::Timer] {
                            t += ms(4000);
                            let a = m.handle(t, e);
                            // Invariants: VIPs are added only when entering MASTER, and
                            // a priority-0 advert is sent only when leaving MASTER.
                            if a.contains(&Action::AddVips) {
                                assert_eq!(m.state(), State::Master);
                            }
                            if a.contains(&Action::SendAdvert { priority: 0 }) {
                                assert_ne!(m.state(), State::Master);
                            }
                            if m.state() == State::Backup || m.state() == State::Master {
                                assert!(m.deadline().is_some());
                            } else {
                                assert!(m.deadline().is_none());
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn resign_hands_the_vip_over_and_stays_backup() {
        let mut m = Machine::new(Params {
            version: Version::V2,
            priority: 150,
            advert_int: Duration::from_secs(1),
            preempt: false,
            preempt_delay: Duration::ZERO,
            primary_ip: ME,
        });
        m.handle(Duration::ZERO, Event::Startup);
        m.handle(Duration::from_secs(4), Event::Timer);
        assert_eq!(m.state(), State::Master);
        let a = m.handle(Duration::from_secs(5), Event::Resign);
        assert_eq!(
            a,
            vec![
                Action::SendAdvert { priority: 0 },
                Action::RemoveVips,
                Action::Notify(NotifyKind::Backup)
            ]
        );
        assert_eq!(m.state(), State::Backup);
        // The new master's adverts keep it BACKUP (nopreempt).
        m.handle(
            Duration::from_secs(6),
            Event::Advert {
                from: HIGHER_IP,
                priority: 100,
                interval_cs: 100,
            },
        );
        m.handle(Duration::from_secs(7), Event::Timer);
        assert_eq!(m.state(), State::Backup);
        assert!(m.handle(Duration::from_secs(8), Event::Resign).is_empty());
    }

    /// With `preempt`, a resigned node does not take the VIP back from the lower-priority
    /// master it handed it to (the switchover bounced back after Master_Down_Interval); it
    /// takes over again only when that master goes.
    #[test]
    fn a_resigned_master_does_not_preempt_its_successor() {
        let mut m = started(params(Version::V2, 150));
        m.handle(ms(4000), Event::Timer);
        assert_eq!(m.state(), State::Master);
        m.handle(ms(5000), Event::Resign);
        for s in 6..30 {
            m.handle(ms(s * 1000), adv(HIGHER_IP, 100));
            assert!(m.handle(ms(s * 1000 + 500), Event::Timer).is_empty());
            if s == 10 {
                // A link flap in between does not end it.
                m.handle(ms(s * 1000 + 600), Event::Fault(true));
                m.handle(ms(s * 1000 + 700), Event::Fault(false));
            }
        }
        assert_eq!(m.state(), State::Backup);
        let d = m.deadline().unwrap();
        m.handle(d, Event::Timer);
        assert_eq!(m.state(), State::Master);
        // Master again: preemptive as configured.
        m.handle(d + ms(100), adv(HIGHER_IP, 200));
        m.handle(d + ms(1000), adv(HIGHER_IP, 100));
        let d2 = m.deadline().unwrap();
        m.handle(d2, Event::Timer);
        assert_eq!(m.state(), State::Master);
    }
}
