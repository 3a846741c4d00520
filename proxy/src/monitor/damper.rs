//! Rise/fall damping: how probe results turn into state changes, so that one lost probe does
//! not empty a pool and one good probe does not bring back a flapping server.

use crate::backend::Health;

/// One probe's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Reachable and fit for its role.
    Good,
    /// Did not answer (connect, ping or query failed or timed out).
    Unreachable(String),
    /// Answers, but as a replica must not serve reads (replication stopped or lagging).
    Unfit(String),
    /// Answers, but the monitor cannot query it (its login is refused, or a query is): the
    /// server is reachable, and nothing more is known.
    Answered,
}

/// Consecutive good and bad probes of one backend.
#[derive(Debug, Clone)]
pub struct Damper {
    rise: u32,
    fall: u32,
    good: u32,
    bad: u32,
    /// What the last probe that could query the server found wrong with it as a replica.
    /// Probes that cannot query it leave this as it is: they know no better, so a replica
    /// that goes down and comes back while the monitor cannot query it is still unfit.
    unfit: Option<String>,
    /// Consecutive probes the server did not answer at all.
    silent: u32,
    /// The state the last probe left the backend in. Another state at the next probe was
    /// set elsewhere (`Backend::mark_down` on a failed connection, an operator), and the
    /// counts from before it do not carry over: else one good probe would bring back a
    /// server a client just found down.
    seen: Health,
}

impl Damper {
    pub fn new(rise: u32, fall: u32) -> Self {
        Damper {
            rise: rise.max(1),
            fall: fall.max(1),
            good: 0,
            bad: 0,
            unfit: None,
            silent: 0,
            seen: Health::Unknown,
        }
    }

    /// The last `fall` probes got no answer at all: the server is hung or cut off, not just
    /// unfit, and not just one failed connection (`Backend::mark_down`).
    pub fn silent(&self) -> bool {
        self.silent >= self.fall
    }

    /// Counts `finding` and says which state the backend should move to from `current`, with
    /// the reason to show; `None` leaves it where it is. An operator's `Offline` is never
    /// left here.
    pub fn next(&mut self, current: Health, finding: &Finding) -> Option<(Health, Option<String>)> {
        if current != self.seen {
            self.good = 0;
        }
        // The first probe of a backend settles it, also one an operator put in service at
        // once (ADD SLAVE): a replica added while not replicating leaves now, rather than
        // serve stale reads for `fall` probes.
        let current = match (self.seen, current) {
            (Health::Unknown, Health::Up) => Health::Unknown,
            _ => current,
        };
        let next = self.count(current, finding);
        self.seen = next.as_ref().map_or(current, |(state, _)| *state);
        next
    }

    fn count(&mut self, current: Health, finding: &Finding) -> Option<(Health, Option<String>)> {
        self.silent = match finding {
            Finding::Unreachable(_) => self.silent.saturating_add(1),
            _ => 0,
        };
        match finding {
            Finding::Good => {
                self.good = self.good.saturating_add(1);
                self.bad = 0;
                self.unfit = None;
            }
            // Proof of reachability, which is all a backend that was only unreachable lacks,
            // but nothing for a replica last found unfit.
            Finding::Answered => {
                self.good = match self.unfit {
                    Some(_) => 0,
                    None => self.good.saturating_add(1),
                };
                self.bad = 0;
            }
            Finding::Unreachable(_) => {
                self.bad = self.bad.saturating_add(1);
                self.good = 0;
            }
            Finding::Unfit(why) => {
                self.bad = self.bad.saturating_add(1);
                self.good = 0;
                self.unfit = Some(why.clone());
            }
        }
        match (current, finding) {
            (Health::Offline, _) => None,
            // The first probe settles an unprobed backend at once: there is no service to
            // protect from flapping yet.
            (Health::Unknown, Finding::Good | Finding::Answered) => Some((Health::Up, None)),
            (Health::Unknown, Finding::Unreachable(why)) => Some((Health::Down, Some(why.clone()))),
            (Health::Unknown, Finding::Unfit(why)) => Some((Health::Excluded, Some(why.clone()))),
            (Health::Up, Finding::Good | Finding::Answered) => None,
            (Health::Up, Finding::Unreachable(why)) if self.bad >= self.fall => {
                Some((Health::Down, Some(why.clone())))
            }
            (Health::Up, Finding::Unfit(why)) if self.bad >= self.fall => {
                Some((Health::Excluded, Some(why.clone())))
            }
            (Health::Up, _) => None,
            // Excluded for its replication, which an unqueried probe does not see: it stays
            // out, with its reason, until a probe can check it again; and one that comes
            // back from down is still out for it.
            (Health::Excluded, Finding::Answered) => None,
            (Health::Down, Finding::Answered) if self.unfit.is_some() => {
                Some((Health::Excluded, self.unfit.clone()))
            }
            (Health::Down | Health::Excluded, Finding::Good | Finding::Answered)
                if self.good >= self.rise =>
            {
                Some((Health::Up, None))
            }
            (Health::Down | Health::Excluded, Finding::Good | Finding::Answered) => None,
            // Reachable again but not fit: still out, now for the replication reason.
            (Health::Down, Finding::Unfit(why)) => Some((Health::Excluded, Some(why.clone()))),
            (Health::Excluded, Finding::Unreachable(why)) => {
                Some((Health::Down, Some(why.clone())))
            }
            // Same state, fresher reason (the lag figure changes).
            (state, Finding::Unfit(why) | Finding::Unreachable(why)) => {
                Some((state, Some(why.clone())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Finding {
        Finding::Unreachable("connection refused".into())
    }

    fn lag() -> Finding {
        Finding::Unfit("replication lag 40s, over the limit".into())
    }

    /// Feeds findings in order, applying each transition, and returns the states seen; the
    /// damper has seen `start` already.
    fn run(start: Health, rise: u32, fall: u32, findings: &[Finding]) -> Vec<Health> {
        let mut d = Damper::new(rise, fall);
        d.seen = start;
        let mut state = start;
        findings
            .iter()
            .map(|f| {
                if let Some((to, _)) = d.next(state, f) {
                    state = to;
                }
                state
            })
            .collect()
    }

    #[test]
    fn a_backend_marked_down_between_probes_needs_rise_good_probes() {
        use Health::*;
        let mut d = Damper::new(3, 2);
        d.seen = Up;
        for _ in 0..5 {
            assert_eq!(d.next(Up, &Finding::Good), None);
        }
        // A client's connection failed: `mark_down`, not the monitor.
        assert_eq!(d.next(Down, &Finding::Good), None);
        assert_eq!(d.next(Down, &Finding::Good), None);
        assert_eq!(d.next(Down, &Finding::Good), Some((Up, None)));
    }

    #[test]
    fn the_first_probe_settles_a_backend_an_operator_added() {
        // ADD SLAVE puts it up at once; not replicating, it leaves at the first probe.
        let mut d = Damper::new(2, 3);
        assert_eq!(
            d.next(Health::Up, &lag()).map(|(h, _)| h),
            Some(Health::Excluded)
        );
        let mut d = Damper::new(2, 3);
        assert_eq!(d.next(Health::Up, &Finding::Good), Some((Health::Up, None)));
        assert_eq!(d.next(Health::Up, &down()), None);
    }

    #[test]
    fn first_probe_settles_unknown() {
        use Health::*;
        assert_eq!(run(Unknown, 2, 3, &[Finding::Good]), [Up]);
        assert_eq!(run(Unknown, 2, 3, &[down()]), [Down]);
        assert_eq!(run(Unknown, 2, 3, &[lag()]), [Excluded]);
    }

    #[test]
    fn fall_counts_consecutive_failures() {
        use Health::*;
        let f = [down(), down(), Finding::Good, down(), down(), down()];
        assert_eq!(run(Up, 2, 3, &f), [Up, Up, Up, Up, Up, Down]);
    }

    #[test]
    fn silence_counts_only_probes_left_unanswered() {
        let mut d = Damper::new(2, 2);
        let lag = Finding::Unfit("lagging".into());
        for (finding, silent) in [
            (down(), false),
            (lag.clone(), false),
            (down(), false),
            (down(), true),
            (Finding::Answered, false),
            (down(), false),
            (down(), true),
            (Finding::Good, false),
        ] {
            d.next(Health::Up, &finding);
            assert_eq!(d.silent(), silent, "after {finding:?}");
        }
    }

    #[test]
    fn rise_counts_consecutive_successes() {
        use Health::*;
        let f = [Finding::Good, down(), Finding::Good, Finding::Good];
        assert_eq!(run(Down, 2, 3, &f), [Down, Down, Down, Up]);
    }

    #[test]
    fn lagging_replica_leaves_and_returns_after_catching_up() {
        use Health::*;
        let f = [lag(), lag(), Finding::Good, Finding::Good];
        assert_eq!(run(Up, 2, 2, &f), [Up, Excluded, Excluded, Up]);
    }

    #[test]
    fn down_replica_coming_back_lagging_stays_out_with_the_new_reason() {
        let mut d = Damper::new(2, 2);
        let (to, why) = d.next(Health::Down, &lag()).unwrap();
        assert_eq!(to, Health::Excluded);
        assert_eq!(why.unwrap(), "replication lag 40s, over the limit");
    }

    #[test]
    fn an_unqueried_answer_brings_back_a_down_backend_but_not_an_excluded_one() {
        use Health::*;
        let answered = [Finding::Answered, Finding::Answered, Finding::Answered];
        assert_eq!(run(Unknown, 2, 2, &answered), [Up, Up, Up]);
        assert_eq!(run(Up, 2, 2, &answered), [Up, Up, Up]);
        assert_eq!(run(Down, 2, 2, &answered), [Down, Up, Up]);
        assert_eq!(run(Excluded, 2, 2, &answered), [Excluded; 3]);
        // Once the monitor can query again, `rise` good probes are needed all the same.
        let f = [
            lag(),
            lag(),
            Finding::Answered,
            Finding::Good,
            Finding::Good,
        ];
        assert_eq!(run(Up, 2, 2, &f), [Up, Excluded, Excluded, Excluded, Up]);
        // Excluded, then unreachable for a probe (the monitor's connection was killed), then
        // answering without a query: still out, for the replication reason.
        let f = [
            lag(),
            down(),
            Finding::Answered,
            Finding::Answered,
            Finding::Answered,
        ];
        assert_eq!(
            run(Up, 2, 1, &f),
            [Excluded, Down, Excluded, Excluded, Excluded]
        );
        let mut d = Damper::new(1, 1);
        d.next(Up, &lag());
        d.next(Excluded, &down());
        let (to, why) = d.next(Down, &Finding::Answered).unwrap();
        assert_eq!(to, Excluded);
        assert_eq!(why.unwrap(), "replication lag 40s, over the limit");
    }

    #[test]
    fn offline_is_never_left() {
        use Health::*;
        let f = [Finding::Good, Finding::Good, Finding::Good, down(), lag()];
        assert_eq!(run(Offline, 1, 1, &f), [Offline; 5]);
    }

    #[test]
    fn flapping_server_is_damped() {
        use Health::*;
        let f: Vec<Finding> = (0..10)
            .map(|i| if i % 2 == 0 { down() } else { Finding::Good })
            .collect();
        assert!(run(Up, 2, 2, &f).iter().all(|s| *s == Up));
        assert!(run(Down, 2, 2, &f).iter().all(|s| *s == Down));
    }
}
