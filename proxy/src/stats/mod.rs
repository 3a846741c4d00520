//! Statistics gathered while serving, for the admin console, the Prometheus exporter and the
//! SQL log.

pub mod counters;
pub mod digest;
pub mod exporter;
pub mod sql_log;

/// Everything sessions record about the statements they run, shared by all of them.
#[derive(Default)]
pub struct Stats {
    pub digests: digest::Digests,
    pub counters: counters::Counters,
    pub sql_log: sql_log::SqlLogger,
}
