//! Process-wide counters the hot path bumps: statements by route with latency histograms,
//! errors by kind, client connections. Plain atomics, so counting never takes a lock; the
//! Prometheus exporter and the admin console read them.

use crate::event_threads::PerThread;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where a statement ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A replica (or the write backend standing in for absent replicas) picked per statement.
    Read,
    /// The write backend, picked per statement.
    Write,
    /// The connection the session is pinned to (transaction, locks, server-side state) or
    /// holds for `SHOW WARNINGS`.
    Session,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Read, Route::Write, Route::Session];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Read => "read",
            Route::Write => "write",
            Route::Session => "session",
        }
    }
}

/// What went wrong, as the `errors_total` metric splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A backend answered a statement with an ERR packet (the client sees it as-is).
    Server,
    /// No backend could take the statement (down, saturated, read-only, login refused).
    NoBackend,
    /// A backend connection broke during a statement.
    BackendLost,
    /// A client failed to log in (bad password, unknown user, address not allowed).
    Auth,
    /// A client broke the protocol or went away mid-statement.
    Client,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Server,
        ErrorKind::NoBackend,
        ErrorKind::BackendLost,
        ErrorKind::Auth,
        ErrorKind::Client,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Server => "server_error",
            ErrorKind::NoBackend => "no_backend",
            ErrorKind::BackendLost => "backend_lost",
            ErrorKind::Auth => "auth",
            ErrorKind::Client => "client",
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds (100 µs … 10 s).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A fixed-bucket latency histogram (Prometheus semantics: each bucket counts observations
/// up to its bound; here stored per bucket and summed when read).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is +Inf, i.e. the total count) and the sum.
    pub fn snapshot(&self) -> (Vec<u64>, u64) {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        (cumulative, self.sum_us.load(Ordering::Relaxed))
    }
}

/// Statement latencies and errors, kept per event thread (see `PerThread`).
pub struct Counters {
    parts: PerThread<Part>,
    pub clients_accepted: AtomicU64,
    /// Clients refused at `max-client-connections`.
    pub clients_refused: AtomicU64,
}

#[derive(Default)]
struct Part {
    latency: [Histogram; 3],
    errors: [AtomicU64; 5],
}

impl Counters {
    pub fn new(event_threads: usize) -> Self {
        Counters {
            parts: PerThread::new(event_threads),
            clients_accepted: AtomicU64::default(),
            clients_refused: AtomicU64::default(),
        }
    }

    pub fn statement(&self, route: Route, latency: Duration) {
        self.parts.local().latency[route as usize].observe(latency);
    }

    pub fn error(&self, kind: ErrorKind) {
        self.parts.local().errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative bucket counts and the sum of latencies (µs) over all threads.
    pub fn latency(&self, route: Route) -> (Vec<u64>, u64) {
        let mut total = (vec![0; LATENCY_BOUNDS_US.len() + 1], 0);
        for part in self.parts.iter() {
            let (buckets, sum) = part.latency[route as usize].snapshot();
            for (t, b) in total.0.iter_mut().zip(buckets) {
                *t += b;
            }
            total.1 += sum;
        }
        total
    }

    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.parts
            .iter()
            .map(|p| p.errors[kind as usize].load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = Histogram::default();
        for us in [50, 100, 101, 2_000_000, 60_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let (cum, sum) = h.snapshot();
        assert_eq!(cum.len(), LATENCY_BOUNDS_US.len() + 1);
        assert_eq!(cum[0], 2, "50 and 100 fall in le=100");
        assert_eq!(cum[1], 3);
        assert_eq!(cum[LATENCY_BOUNDS_US.len() - 3], 4, "2 s in le=2.5 s");
        assert_eq!(*cum.last().unwrap(), 5, "+Inf counts everything");
        assert_eq!(sum, 50 + 100 + 101 + 2_000_000 + 60_000_000);
    }

    #[test]
    fn routes_and_kinds_index_their_arrays() {
        let c = Counters::new(1);
        for r in Route::ALL {
            c.statement(r, Duration::from_millis(1));
        }
        for k in ErrorKind::ALL {
            c.error(k);
        }
        assert!(Route::ALL
            .iter()
            .all(|r| *c.latency(*r).0.last().unwrap() == 1));
        assert!(ErrorKind::ALL.iter().all(|k| c.errors(*k) == 1));
    }
}
