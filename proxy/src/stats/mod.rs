//! Statistics gathered while serving, for the admin console, the Prometheus exporter and the
//! SQL log.

pub mod counters;
pub mod digest;
pub mod exporter;
pub mod sql_log;

/// Everything sessions record about the statements they run, shared by all of them.
pub struct Stats {
    pub digests: digest::Digests,
    pub counters: counters::Counters,
    pub sql_log: sql_log::SqlLogger,
}

impl Stats {
    /// Statistics for sessions running on `event_threads` threads.
    pub fn new(event_threads: usize, sql_log: sql_log::SqlLogger) -> Self {
        Stats {
            digests: digest::Digests::new(event_threads),
            counters: counters::Counters::new(event_threads),
            sql_log,
        }
    }
}
