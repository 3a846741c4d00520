//! The `[monitor]` section of rwproxy's TOML: how backends are probed and when they leave or
//! rejoin service. See `conf/rwproxy.toml` for the reference.

use serde::Deserialize;
use std::time::Duration;

/// How the health monitor probes backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    /// The monitor's own account (`None`: probes only check that the port accepts TCP
    /// connections, so `read_only` and replication are not watched).
    pub user: Option<(String, String)>,
    pub interval: Duration,
    /// Bound on one probe (connect, ping and queries together).
    pub timeout: Duration,
    /// Consecutive bad probes before a backend leaves service.
    pub fall: u32,
    /// Consecutive good probes before it returns.
    pub rise: u32,
    /// Replicas further behind leave the read pool (a `MASTER_DELAY` counts: their reads are
    /// that stale).
    pub max_replication_lag: Option<Duration>,
    /// Treat a write backend reporting `read_only=ON` as not writable.
    pub read_only_check: bool,
    /// How long a write waits for a read-only write backend to become writable.
    pub write_wait: Duration,
}

pub mod defaults {
    pub const INTERVAL_MS: u64 = 1_000;
    pub const TIMEOUT_MS: u64 = 1_000;
    pub const FALL: u32 = 3;
    pub const RISE: u32 = 2;
    pub const MAX_REPLICATION_LAG_SECS: u64 = 30;
    pub const WRITE_WAIT_MS: u64 = 5_000;
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            user: None,
            interval: Duration::from_millis(defaults::INTERVAL_MS),
            timeout: Duration::from_millis(defaults::TIMEOUT_MS),
            fall: defaults::FALL,
            rise: defaults::RISE,
            max_replication_lag: Some(Duration::from_secs(defaults::MAX_REPLICATION_LAG_SECS)),
            read_only_check: true,
            write_wait: Duration::from_millis(defaults::WRITE_WAIT_MS),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct MonitorToml {
    user: Option<String>,
    password: Option<String>,
    encrypted_password: Option<String>,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    fall: Option<u32>,
    rise: Option<u32>,
    /// Seconds; 0 turns the lag check off.
    max_replication_lag: Option<u64>,
    read_only_check: Option<bool>,
    write_wait_ms: Option<u64>,
}

/// Validates the section; errors are `(key, message)`.
pub(super) fn monitor(t: &MonitorToml) -> Result<MonitorConfig, (String, String)> {
    let bad = |key: &str, msg: &str| (format!("monitor.{key}"), msg.to_string());
    let at_least_one = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(bad(key, "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let password = match (&t.password, &t.encrypted_password) {
        (Some(p), None) => Some(p.clone()),
        (None, Some(e)) => Some(super::pwcrypt::atlas_decrypt(e).map_err(|err| {
            (
                "monitor.encrypted-password".to_string(),
                format!("cannot decrypt: {err}"),
            )
        })?),
        (Some(_), Some(_)) => {
            return Err(bad(
                "password",
                "set password or encrypted-password, not both",
            ))
        }
        (None, None) => None,
    };
    let user = match (&t.user, password) {
        (Some(u), Some(p)) if !u.trim().is_empty() => Some((u.trim().to_string(), p)),
        (Some(_), Some(_)) => return Err(bad("user", "empty user name")),
        (Some(_), None) => return Err(bad("password", "monitor.user is set but no password")),
        (None, Some(_)) => return Err(bad("user", "a monitor password is set but no user")),
        (None, None) => None,
    };
    let interval = at_least_one("interval-ms", t.interval_ms, defaults::INTERVAL_MS)?;
    let timeout = at_least_one("timeout-ms", t.timeout_ms, defaults::TIMEOUT_MS)?;
    let fall = at_least_one("fall", t.fall.map(u64::from), u64::from(defaults::FALL))?;
    let rise = at_least_one("rise", t.rise.map(u64::from), u64::from(defaults::RISE))?;
    let max_lag = t
        .max_replication_lag
        .unwrap_or(defaults::MAX_REPLICATION_LAG_SECS);
    Ok(MonitorConfig {
        user,
        interval: Duration::from_millis(interval),
        timeout: Duration::from_millis(timeout),
        fall: fall as u32,
        rise: rise as u32,
        max_replication_lag: (max_lag > 0).then(|| Duration::from_secs(max_lag)),
        read_only_check: t.read_only_check.unwrap_or(true),
        write_wait: Duration::from_millis(t.write_wait_ms.unwrap_or(defaults::WRITE_WAIT_MS)),
    })
}
