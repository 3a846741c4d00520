//! Configuration: one model, two file formats.
//!
//! rwproxy reads its own TOML format and, so Atlas users can migrate by pointing `-c` at the
//! file they already have, Atlas's `.cnf` (`[mysql-proxy]` section). Both parse into [`Config`];
//! everything downstream only ever sees that struct.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Whether a backend takes writes (Atlas `proxy-backend-addresses`) or only reads
/// (`proxy-read-only-backend-addresses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ReadWrite,
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// `host:port`; the host may be a name, resolved on every connect.
    pub address: String,
    pub role: Role,
    /// Share of reads relative to the other read backends (Atlas `@weight`, default 1).
    pub weight: u32,
    /// Upper bound of pooled connections to this backend (all users together).
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub name: String,
    /// Plain text: the proxy must log in to backends as this user and verify
    /// `caching_sha2_password` scrambles, both of which need it.
    pub password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlLog {
    Off,
    On,
    Realtime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFormat {
    Toml,
    Atlas,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, so `SAVE CONFIG` can rewrite it in its own format.
    pub path: PathBuf,
    pub format: ConfigFormat,
    pub instance: String,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_username: String,
    pub admin_password: String,
    pub backends: Vec<BackendConfig>,
    pub users: Vec<UserConfig>,
    /// Allowed client source addresses: exact IPs, CIDR prefixes, or Atlas-style leading octets
    /// (`192.168.1`); empty means everyone.
    pub client_ips: Vec<String>,
    /// Default character set for clients whose handshake does not choose one.
    pub charset: Option<String>,
    pub event_threads: usize,
    pub log_level: String,
    pub log_path: Option<PathBuf>,
    pub sql_log: SqlLog,
    pub sql_log_slow_ms: Option<u64>,
    pub daemon: bool,
    pub keepalive: bool,
    /// Idle client sessions are closed after this long (`None`: never).
    pub wait_timeout: Option<Duration>,
    pub connect_timeout: Duration,
}
