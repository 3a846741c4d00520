//! Track scripts, as keepalived's `vrrp_script` + `track_script`.
//!
//! A script runs every `interval`; exit status 0 within `timeout` is a success. `fall`
//! consecutive failures make it bad, `rise` consecutive successes good again; until its first
//! result it counts as good. Its `weight`: 0 → a bad script puts the instance in FAULT; > 0 →
//! added to the priority while good; < 0 → subtracted while bad. The effective priority stays in
//! 1–254, and an address owner (255) is not changed by weights.

use std::time::Duration;

use super::packet::PRIORITY_OWNER;

/// One `vrrp_script` as tracked by an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    /// For logs.
    pub name: String,
    /// Split into an argv like the notify hooks (no shell).
    pub script: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub weight: i32,
    pub rise: u32,
    pub fall: u32,
}

impl TrackScript {
    /// keepalived's defaults: interval 1 s, timeout = interval, weight 0, rise 1, fall 1.
    pub fn new(name: &str, script: &str) -> TrackScript {
        TrackScript {
            name: name.to_string(),
            script: script.to_string(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            weight: 0,
            rise: 1,
            fall: 1,
        }
    }
}

/// The rise/fall counter of one script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    rise: u32,
    fall: u32,
    good: bool,
    streak: u32,
}

impl Tracker {
    pub fn new(rise: u32, fall: u32) -> Tracker {
        Tracker {
            rise: rise.max(1),
            fall: fall.max(1),
            good: true,
            streak: 0,
        }
    }

    pub fn good(&self) -> bool {
        self.good
    }

    /// Records one result; returns the new status when it changed.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success == self.good {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if success { self.rise } else { self.fall };
        if self.streak >= needed {
            self.good = success;
            self.streak = 0;
            Some(success)
        } else {
            None
        }
    }
}

/// The effective priority and whether the scripts put the instance in FAULT, given each
/// script's weight and status.
pub fn effective(base: u8, scripts: impl IntoIterator<Item = (i32, bool)>) -> (u8, bool) {
    let mut prio = i32::from(base);
    let mut fault = false;
    for (weight, good) in scripts {
        match (weight, good) {
            (0, false) => fault = true,
            (w, true) if w > 0 => prio += w,
            (w, false) if w < 0 => prio += w,
            _ => {}
        }
    }
    if base == PRIORITY_OWNER {
        return (PRIORITY_OWNER, fault);
    }
    (prio.clamp(1, 254) as u8, fault)
}

/// Runs a track script every `interval` until aborted, reporting `(index, success)`.
pub(crate) async fn run_script(
    instance: String,
    index: usize,
    t: TrackScript,
    tx: tokio::sync::mpsc::UnboundedSender<(usize, bool)>,
) {
    let argv = match super::notify::split_words(&t.script) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            tracing::error!(instance, script = t.name, "empty track script");
            return;
        }
        Err(e) => {
            tracing::error!(instance, script = t.name, "{e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(t.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let child = crate::script::command(&argv[0])
            .args(&argv[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let ok = match child {
            Ok(mut c) => match tokio::time::timeout(t.timeout, c.wait()).await {
                Ok(Ok(status)) => status.success(),
                Ok(Err(_)) => false,
                Err(_) => {
                    crate::script::kill_group(c.id());
                    tracing::warn!(instance, script = t.name, "track script timed out");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(instance, script = t.name, "cannot run track script: {e}");
                false
            }
        };
        if tx.send((index, ok)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall() {
        let mut t = Tracker::new(2, 3);
        assert!(t.good());
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a success resets the failure streak");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        let mut t = Tracker::new(0, 0);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(true), Some(true));
    }

    #[test]
    fn weights() {
        assert_eq!(effective(100, []), (100, false));
        assert_eq!(effective(100, [(-30, true), (20, true)]), (120, false));
        assert_eq!(effective(100, [(-30, false), (20, false)]), (70, false));
        assert_eq!(effective(100, [(0, false)]), (100, true));
        assert_eq!(effective(100, [(0, true)]), (100, false));
        assert_eq!(effective(250, [(50, true)]), (254, false));
        assert_eq!(effective(10, [(-50, false)]), (1, false));
        assert_eq!(effective(255, [(-50, false)]), (255, false));
        assert_eq!(effective(255, [(0, false)]), (255, true));
    }
}
