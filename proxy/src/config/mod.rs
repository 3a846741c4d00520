//! Configuration: one model, two file formats.
//!
//! rwproxy reads its own TOML format and, so Atlas users can migrate by pointing `-c` at the
//! file they already have, Atlas's `.cnf` (`[mysql-proxy]` section). Both parse into [`Config`];
//! everything downstream only ever sees that struct.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod atlas;
mod client_filter;
mod ha;
mod monitor;
pub mod pwcrypt;
pub mod save;
mod toml_format;

pub use client_filter::{ClientEntry, ClientFilter};
pub use monitor::MonitorConfig;
pub use pwcrypt::{atlas_decrypt, atlas_encrypt, DecryptError};
pub use save::{save, Snapshot};

/// Defaults shared by both formats (where Atlas differs, `atlas.rs` says so).
pub mod defaults {
    /// Client listener (Atlas `proxy-address`).
    pub const LISTEN: &str = "0.0.0.0:1234";
    /// Admin listener. Atlas binds `0.0.0.0:2345`; rwproxy only binds the loopback unless told.
    pub const ADMIN_LISTEN: &str = "127.0.0.1:2345";
    /// Prometheus exporter, when `[metrics]` is present without `listen`.
    pub const METRICS_LISTEN: &str = "127.0.0.1:9104";
    pub const ADMIN_USERNAME: &str = "admin";
    pub const ADMIN_PASSWORD: &str = "admin";
    /// Instance name for the TOML format (Atlas derives it from the file name).
    pub const INSTANCE: &str = "rwproxy";
    /// 0 = one event thread per CPU core.
    pub const EVENT_THREADS: usize = 0;
    /// More event threads than this is a typo: each is an OS thread with its own runtime.
    pub const MAX_EVENT_THREADS: usize = 1024;
    pub const LOG_LEVEL: &str = "info";
    /// Idle client timeout of the TOML format, seconds (MySQL's own default); Atlas's is 0 = never.
    pub const WAIT_TIMEOUT_SECS: u64 = 28_800;
    pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
    /// Longest client command, bytes: MySQL 8's `max_allowed_packet` default (MariaDB's is
    /// 16 MiB), so commands a default server accepts pass.
    pub const MAX_ALLOWED_PACKET: usize = 64 << 20;
    /// Smallest `max-allowed-packet`, as MariaDB's.
    pub const MIN_ALLOWED_PACKET: u64 = 1024;
    /// Statement text all sessions' prepared statements may hold together, bytes.
    pub const MAX_PREPARED_MEMORY: usize = 1 << 30;
    /// Smallest `max-prepared-memory`.
    pub const MIN_PREPARED_MEMORY: u64 = 1 << 20;
    /// Backend port when an Atlas backend address omits it.
    pub const BACKEND_PORT: u16 = 3306;
    pub const WEIGHT: u32 = 1;
    /// Pool bound per backend when the file does not set one; an explicit 0 means no limit
    /// ([`u32::MAX`]).
    pub const MAX_CONNECTIONS: u32 = 200;
    /// How long sessions may finish their work on a backend taken offline, seconds.
    pub const DRAIN_TIMEOUT_SECS: u64 = 30;
    /// The longest `drain-timeout` taken: a year, as for `wait_timeout` on a server.
    pub const MAX_DRAIN_TIMEOUT_SECS: u64 = 31_536_000;
}

/// `interactive-timeout` as both formats take it, given the `wait-timeout` taken: `set`
/// seconds (0: never); unset, no shorter than `wait-timeout` nor than a server's default
/// `interactive_timeout` (8 hours), so an interactive session is never closed sooner than
/// other clients' by default, and never when they are never closed.
fn interactive_timeout(
    wait: Option<Duration>,
    set: Option<u64>,
) -> Result<Option<Duration>, String> {
    Ok(match set {
        Some(0) => None,
        // A session adds it to a clock reading.
        Some(secs) if secs > defaults::MAX_DRAIN_TIMEOUT_SECS => {
            return Err(format!(
                "must be at most {} seconds (a year; 0 never closes them)",
                defaults::MAX_DRAIN_TIMEOUT_SECS
            ))
        }
        Some(secs) => Some(Duration::from_secs(secs)),
        None => wait.map(|w| w.max(Duration::from_secs(defaults::WAIT_TIMEOUT_SECS))),
    })
}

/// `max-client-connections` as both formats take it: 0 is no bound but the open-files limit.
fn max_client_connections(v: u64) -> usize {
    match v {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

/// `max-open-files` as both formats take it: the proxy's own listeners, event threads, logs
/// and monitor connections need a few dozen descriptors before any client comes.
fn max_open_files(v: u64) -> Result<u64, String> {
    const MIN: u64 = 64;
    if v >= MIN {
        Ok(v)
    } else {
        Err(format!(
            "must be at least {MIN} (the proxy's listeners, event threads, logs and monitor \
             need a few dozen descriptors)"
        ))
    }
}

/// `max-allowed-packet` as both formats take it: within MariaDB's own bounds.
/// Character sets a MariaDB client may `SET NAMES` to (`SHOW CHARACTER SET` less `ucs2`,
/// `utf16`, `utf16le` and `utf32`, which a server refuses for a client), and `utf8`. The
/// `charset` key is pasted into `SET NAMES`, so a typo there would fail every statement of the
/// clients it applies to: it is checked against this list when the file is read.
const CLIENT_CHARSETS: &[&str] = &[
    "armscii8", "ascii", "big5", "binary", "cp1250", "cp1251", "cp1256", "cp1257", "cp850",
    "cp852", "cp866", "cp932", "dec8", "eucjpms", "euckr", "gb2312", "gbk", "geostd8", "greek",
    "hebrew", "hp8", "keybcs2", "koi8r", "koi8u", "latin1", "latin2", "latin5", "latin7", "macce",
    "macroman", "sjis", "swe7", "tis620", "ujis", "utf8", "utf8mb3", "utf8mb4",
];

/// `charset`: empty is unset; otherwise a client character set, lower-cased.
pub(crate) fn client_charset(v: &str) -> Result<Option<String>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let lower = v.to_ascii_lowercase();
    if CLIENT_CHARSETS.contains(&lower.as_str()) {
        Ok(Some(lower))
    } else {
        Err(format!(
            "unknown character set '{v}' (one a client can use, as in SET NAMES: utf8mb4, latin1, ...)"
        ))
    }
}

fn max_allowed_packet(v: u64) -> Result<usize, String> {
    let max = crate::protocol::packet::MAX_LOGICAL;
    if (defaults::MIN_ALLOWED_PACKET..=max as u64).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!(
            "must be between {} and {max} bytes (1 GiB)",
            defaults::MIN_ALLOWED_PACKET
        ))
    }
}

/// `max-prepared-memory` as both formats take it.
fn max_prepared_memory(v: u64) -> Result<usize, String> {
    match usize::try_from(v) {
        Ok(n) if v >= defaults::MIN_PREPARED_MEMORY => Ok(n),
        _ => Err(format!(
            "must be at least {} bytes (1 MiB)",
            defaults::MIN_PREPARED_MEMORY
        )),
    }
}

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
    /// Out of service by an operator's `SET OFFLINE` (TOML `offline = true`): a server taken
    /// out for maintenance stays out across a restart or reload until `SET ONLINE`, instead
    /// of getting traffic again the moment the proxy comes back.
    pub offline: bool,
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
    /// What in the file rwproxy ignores or fills in itself (an Atlas option with no meaning
    /// here, a repeated key, Atlas's default backend), each naming its line: `check-config`
    /// prints them, and `serve` logs them once its log is open (the file is read before).
    pub warnings: Vec<String>,
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
    /// The same for clients that log in as interactive (`CLIENT_INTERACTIVE`: the `mariadb`
    /// command line), as a server's `interactive_timeout`; its default is worked out by
    /// `interactive_timeout()`.
    pub interactive_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    /// How long a session in a transaction on a backend taken offline or removed may go on
    /// there (`drain-timeout`, admin `SET drain_timeout`).
    pub drain_timeout: Duration,
    /// The first command size refused (`max-allowed-packet`, as a server's
    /// `max_allowed_packet`): bounds what one command may make the proxy buffer.
    pub max_allowed_packet: usize,
    /// The statement text all sessions' open prepared statements may hold together
    /// (`max-prepared-memory`): without a bound, clients that prepare large statements and
    /// never close them grow the proxy's memory until it is killed, with every session.
    pub max_prepared_memory: usize,
    /// Most client connections at once (`max-client-connections`; `usize::MAX`: no bound);
    /// `None`: derived from the open-files limit (see `client::slots::client_limit`).
    pub max_client_connections: Option<usize>,
    /// The open-files limit set at start (`max-open-files`); `None`: the hard limit.
    pub max_open_files: Option<u64>,
    /// Addresses of LVS directors whose health checks decide whether this proxy gets
    /// traffic: after SIGUSR2 their connections are refused (the director takes this proxy
    /// out), after SIGUSR1 accepted again (Atlas's `lvs-ips`). They pass `client-ips`.
    pub lvs_ips: Vec<std::net::IpAddr>,
    /// VRRP instances holding the write VIP (`[ha]` in TOML; Atlas files have none).
    pub vrrp: Vec<rwproxy_ha::vrrp::Instance>,
    /// Backend health probes (`[monitor]` in TOML; Atlas files get the defaults).
    pub monitor: MonitorConfig,
    /// Where Prometheus scrapes `/metrics` (`[metrics] listen`); `None`: no exporter.
    pub metrics_listen: Option<SocketAddr>,
    /// Read-your-writes for sessions (`[proxy] read-your-writes…`, per `[[user]]`).
    pub read_your_writes: crate::session::read_your_writes::Settings,
    /// IPVS virtual servers for the read VIP (`[ha.ipvs]` in TOML).
    pub ipvs: rwproxy_ha::ipvs::director::DirectorConfig,
    /// The built-in failover actions and the local database they act on (`[ha.failover]`).
    pub failover: Option<rwproxy_ha::failover::FailoverConfig>,
    /// The proxy's certificate for clients (`ssl-cert`/`ssl-key`). Without it `CLIENT_SSL`
    /// is not offered: several drivers switch to TLS whenever a server offers it.
    pub client_tls: Option<crate::tls::ServerTls>,
    /// Refuse clients that did not switch to TLS, as a server with `require_secure_transport`.
    pub require_secure_transport: bool,
    /// TLS to every backend, its certificate verified against `backend-ssl-ca`.
    pub backend_tls: Option<crate::tls::BackendTls>,
}

/// Why a configuration file could not be loaded. `Display` always names the file, and the line
/// and key when there are ones: `conf/x.cnf:12: unknown key 'proxy-adress' in [mysql-proxy]`,
/// `conf/x.toml:7: backend[1].address: invalid address 'foo' (expected host:port)`.
/// Settings of `new` that differ from the running `old` and that a reload does not apply
/// (only backends, their weights and `max-connections`, users, read-your-writes, client-ips,
/// lvs-ips and `max-client-connections` are), by the name a DBA knows them by: a SIGHUP says these wait for a restart.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name: &'static str, same: bool| {
        if !same {
            changed.push(name);
        }
    };
    check("instance", old.instance == new.instance);
    check("listen", old.listen == new.listen);
    check("admin listen", old.admin_listen == new.admin_listen);
    check(
        "admin credentials",
        (&old.admin_username, &old.admin_password) == (&new.admin_username, &new.admin_password),
    );
    check("charset", old.charset == new.charset);
    check("event-threads", old.event_threads == new.event_threads);
    check("log-level", old.log_level == new.log_level);
    check("log-path", old.log_path == new.log_path);
    check(
        "sql-log",
        (&old.sql_log, old.sql_log_slow_ms) == (&new.sql_log, new.sql_log_slow_ms),
    );
    check(
        "daemon/keepalive",
        (old.daemon, old.keepalive) == (new.daemon, new.keepalive),
    );
    check("wait-timeout", old.wait_timeout == new.wait_timeout);
    // Unset, it follows `wait-timeout`, whose change is reported by that name.
    let derived =
        |c: &Config| interactive_timeout(c.wait_timeout, None) == Ok(c.interactive_timeout);
    check(
        "interactive-timeout",
        old.interactive_timeout == new.interactive_timeout || derived(old) && derived(new),
    );
    check(
        "connect-timeout-ms",
        old.connect_timeout == new.connect_timeout,
    );
    check(
        "max-allowed-packet",
        old.max_allowed_packet == new.max_allowed_packet,
    );
    check(
        "max-prepared-memory",
        old.max_prepared_memory == new.max_prepared_memory,
    );
    check("max-open-files", old.max_open_files == new.max_open_files);
    check("[monitor]", old.monitor == new.monitor);
    check("[metrics]", old.metrics_listen == new.metrics_listen);
    check(
        "[ha]",
        (&old.vrrp, &old.ipvs, &old.failover) == (&new.vrrp, &new.ipvs, &new.failover),
    );
    check(
        "TLS",
        (
            &old.client_tls,
            old.require_secure_transport,
            &old.backend_tls,
        ) == (
            &new.client_tls,
            new.require_secure_transport,
            &new.backend_tls,
        ),
    );
    changed
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {}", path.display(), io_message(source))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_invalid(path, *line, key.as_deref(), message))]
    Invalid {
        path: PathBuf,
        /// 1-based line of the offending text, when known.
        line: Option<usize>,
        /// The key in the file's own spelling (`proxy-address`, `backend[0].weight`).
        key: Option<String>,
        message: String,
    },
    /// `SAVE CONFIG` could not replace the file; the original is left as it was.
    #[error("cannot write {}: {what}: {}", path.display(), io_message(source))]
    Write {
        path: PathBuf,
        /// The step that failed (`creating a temporary file in conf`, `renaming ...`).
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    pub(crate) fn invalid(
        path: &Path,
        line: Option<usize>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            key: key.map(str::to_string),
            message: message.into(),
        }
    }
}

fn io_message(e: &std::io::Error) -> String {
    // "No such file or directory (os error 2)" -> "No such file or directory"
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn render_invalid(path: &Path, line: Option<usize>, key: Option<&str>, message: &str) -> String {
    let mut out = path.display().to_string();
    if let Some(l) = line {
        out.push_str(&format!(":{l}"));
    }
    out.push_str(": ");
    if let Some(k) = key {
        out.push_str(k);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}

/// Load a configuration file, choosing the format from the name and content:
/// `*.toml` is rwproxy's TOML; `*.cnf`, `*.conf`, or any file with a `[mysql-proxy]` section is
/// Atlas's format; anything else is tried as TOML.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let format = detect_format(path, &text);
    parse_str(path, &text, format)
}

/// Parse already-read text as `format`; `path` is only used in errors and [`Config::path`].
pub fn parse_str(path: &Path, text: &str, format: ConfigFormat) -> Result<Config, ConfigError> {
    match format {
        ConfigFormat::Toml => toml_format::parse(path, text),
        ConfigFormat::Atlas => atlas::parse(path, text),
    }
}

/// The format [`load`] would use for this file name and content.
pub fn detect_format(path: &Path, text: &str) -> ConfigFormat {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("toml") => ConfigFormat::Toml,
        Some("cnf") | Some("conf") => ConfigFormat::Atlas,
        _ if text
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("[mysql-proxy]")) =>
        {
            ConfigFormat::Atlas
        }
        _ => ConfigFormat::Toml,
    }
}

/// Load `path` and describe what it configures, for `rwproxy check-config`.
pub fn check(path: &Path) -> Result<String, ConfigError> {
    load(path).map(|c| {
        let mut out = c.summary();
        for w in &c.warnings {
            out.push_str("\nwarning: ");
            out.push_str(w);
        }
        out
    })
}

impl Config {
    /// `<log-path>/<instance>.pid`, where scripts find the process to signal; none without
    /// `log-path`, as in Atlas.
    pub fn pid_path(&self) -> Option<PathBuf> {
        let dir = self.log_path.as_ref()?;
        Some(dir.join(format!("{}.pid", self.instance)))
    }

    /// How many event threads to run: `event-threads`, or one per CPU when it is 0.
    pub fn event_thread_count(&self) -> usize {
        match self.event_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The client allow-list. Entries were validated by [`load`]; a hand-built `Config` with a
    /// bad entry gets the error here.
    pub fn client_filter(&self) -> Result<ClientFilter, String> {
        ClientFilter::new(&self.client_ips)
    }

    /// One paragraph describing the configuration (no secrets).
    pub fn summary(&self) -> String {
        let rw = self
            .backends
            .iter()
            .filter(|b| b.role == Role::ReadWrite)
            .count();
        let ro = self.backends.len() - rw;
        let format = match self.format {
            ConfigFormat::Toml => "TOML",
            ConfigFormat::Atlas => "Atlas",
        };
        let mut s = format!(
            "{}: OK ({format} format)\n  instance {}: clients on {}, admin on {}\n  {} backend(s): {rw} read-write, {ro} read-only\n",
            self.path.display(),
            self.instance,
            self.listen,
            self.admin_listen,
            self.backends.len(),
        );
        for b in &self.backends {
            let role = match b.role {
                Role::ReadWrite => "rw",
                Role::ReadOnly => "ro",
            };
            let max = if b.max_connections == u32::MAX {
                "unlimited".to_string()
            } else {
                b.max_connections.to_string()
            };
            s.push_str(&format!(
                "    {role} {} weight {} max-connections {max}\n",
                b.address, b.weight
            ));
        }
        let names: Vec<&str> = self.users.iter().map(|u| u.name.as_str()).collect();
        s.push_str(&format!(
            "  {} user(s): {}\n",
            names.len(),
            names.join(", ")
        ));
        if self.client_ips.is_empty() {
            s.push_str("  clients: any address\n");
        } else {
            s.push_str(&format!("  clients: {}\n", self.client_ips.join(", ")));
        }
        match self.max_client_connections {
            None => s.push_str("  client connections: at most (open-files limit - 64) / 2\n"),
            Some(usize::MAX) => {
                s.push_str("  client connections: no bound but the open-files limit\n")
            }
            Some(n) => s.push_str(&format!("  client connections: at most {n}\n")),
        }
        s
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::ReadWrite => "rw",
            Role::ReadOnly => "ro",
        })
    }
}

/// Map a log level in either vocabulary to a `tracing` level name: Atlas's
/// `message|warning|critical|error|debug` or tracing's `trace|debug|info|warn|error`.
pub(crate) fn map_log_level(s: &str) -> Option<&'static str> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "error" | "critical" => "error",
        "warn" | "warning" => "warn",
        "info" | "message" => "info",
        "debug" => "debug",
        "trace" => "trace",
        _ => return None,
    })
}

pub(crate) const LOG_LEVEL_HELP: &str =
    "expected one of error, warn, info, debug, trace (or Atlas's critical, warning, message)";

pub(crate) fn parse_sql_log(s: &str) -> Option<SqlLog> {
    match s.trim().to_ascii_uppercase().as_str() {
        "OFF" => Some(SqlLog::Off),
        "ON" => Some(SqlLog::On),
        "REALTIME" => Some(SqlLog::Realtime),
        _ => None,
    }
}

/// Split `host:port` / `[v6]:port` / `host` into host and optional port text.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        // A bare IPv6 address has several colons; it must be bracketed when a port follows.
        Some((h, _)) if h.contains(':') => None,
        Some((h, p)) => Some((h, Some(p))),
        None => Some((s, None)),
    }
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
        })
}

/// A listen address: `ip:port`, `[v6]:port`, `:port` (all IPv4 interfaces) or `localhost:port`.
/// Port 0 asks the kernel for a free port (tests and embedding use it).
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let bad = || format!("invalid listen address '{s}' (expected ip:port, e.g. 0.0.0.0:1234)");
    let (host, port) = split_host_port(s).ok_or_else(bad)?;
    let port = port.ok_or_else(bad)?;
    let port = if port == "0" {
        0
    } else {
        parse_port(port).ok_or_else(bad)?
    };
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse::<IpAddr>().map_err(|_| bad())?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// A backend address, normalised to `host:port` (`[v6]:port` for IPv6). `default_port` is used
/// when the port is omitted (Atlas allows that); `None` makes the port mandatory.
pub(crate) fn parse_backend_address(s: &str, default_port: Option<u16>) -> Result<String, String> {
    let s = s.trim();
    let expected = if default_port.is_some() {
        "host[:port]"
    } else {
        "host:port"
    };
    let bad = || format!("invalid address '{s}' (expected {expected})");
    let (host, port) = split_host_port(s).ok_or_else(bad)?;
    let port = match port {
        Some(p) => parse_port(p).ok_or_else(bad)?,
        None => default_port.ok_or_else(bad)?,
    };
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return Ok(format!("[{v6}]:{port}"));
    }
    if host.parse::<Ipv4Addr>().is_ok() || valid_hostname(host) && !looks_like_bad_ipv4(host) {
        return Ok(format!("{host}:{port}"));
    }
    Err(bad())
}

/// `300.1.2.3` is a valid-looking hostname character-wise but clearly a mistyped IPv4 address.
fn looks_like_bad_ipv4(h: &str) -> bool {
    h.split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
}

/// 1-based line number of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Checks both formats share; `at` yields the line and key to blame for a user index.
/// Refuses a second item with the same `name`: a user listed twice (which password?), or a
/// backend (the same address in the same role: the console's ADD refuses it, and a reload
/// would make both entries one backend). `at` gives an item's line and key.
pub(crate) fn check_unique<T>(
    path: &Path,
    items: &[T],
    name: impl Fn(&T) -> String,
    at: impl Fn(usize) -> (Option<usize>, String),
) -> Result<(), ConfigError> {
    let names: Vec<String> = items.iter().map(name).collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            let (line, key) = at(i);
            return Err(ConfigError::invalid(
                path,
                line,
                Some(&key),
                format!("duplicate {n}"),
            ));
        }
    }
    Ok(())
}

/// A user as [`check_unique`] names it.
pub(crate) fn user_name(u: &UserConfig) -> String {
    format!("user '{}'", u.name)
}

/// A backend as [`check_unique`] names it: host names in any case, as the console compares.
pub(crate) fn backend_name(b: &BackendConfig) -> String {
    format!("backend '{}' ({})", b.address.to_ascii_lowercase(), b.role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_names_the_settings_that_wait_for_a_restart() {
        let cfg = |listen: &str, level: &str, weight: u32| {
            let text = format!(
                "[proxy]\nlisten = \"{listen}\"\nlog-level = \"{level}\"\n\
                 [[backend]]\naddress = \"127.0.0.1:3306\"\nrole = \"rw\"\nweight = {weight}\n"
            );
            parse_str(Path::new("t.toml"), &text, ConfigFormat::Toml).unwrap()
        };
        let old = cfg("127.0.0.1:4000", "info", 1);
        assert!(needs_restart(&old, &cfg("127.0.0.1:4000", "info", 5)).is_empty());
        assert_eq!(
            needs_restart(&old, &cfg("127.0.0.1:4001", "debug", 5)),
            ["listen", "log-level"]
        );
        // An interactive-timeout that follows wait-timeout is not a change of its own.
        let with = |keys: &str| {
            let text = format!(
                "[proxy]\n{keys}\n[[backend]]\naddress = \"127.0.0.1:3306\"\nrole = \"rw\"\n"
            );
            parse_str(Path::new("t.toml"), &text, ConfigFormat::Toml).unwrap()
        };
        let old = with("wait-timeout = 30000");
        assert_eq!(
            needs_restart(&old, &with("wait-timeout = 40000")),
            ["wait-timeout"]
        );
        assert_eq!(
            needs_restart(
                &old,
                &with("wait-timeout = 30000\nmax-prepared-memory = 2097152")
            ),
            ["max-prepared-memory"]
        );
        assert_eq!(
            needs_restart(
                &old,
                &with("wait-timeout = 30000\ninteractive-timeout = 60")
            ),
            ["interactive-timeout"]
        );
        assert!(needs_restart(
            &old,
            &with("wait-timeout = 30000\nmax-client-connections = 9")
        )
        .is_empty());
        assert_eq!(
            needs_restart(&old, &with("wait-timeout = 30000\nmax-open-files = 4096")),
            ["max-open-files"]
        );
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("0.0.0.0:1234").unwrap(),
            "0.0.0.0:1234".parse().unwrap()
        );
        assert_eq!(
            parse_listen(":1234").unwrap(),
            "0.0.0.0:1234".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::]:3306").unwrap(),
            "[::]:3306".parse().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert_eq!(parse_listen("127.0.0.1:0").unwrap().port(), 0);
        for bad in ["", "0.0.0.0", "0.0.0.0:", "1.2.3.4:70000", "::1:80", "db:1"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backend_addresses() {
        let p = |s, d| parse_backend_address(s, d);
        assert_eq!(p("127.0.0.1:3306", None).unwrap(), "127.0.0.1:3306");
        assert_eq!(
            p(" db-1.example.com:3307 ", None).unwrap(),
            "db-1.example.com:3307"
        );
        assert_eq!(p("[::1]:3306", None).unwrap(), "[::1]:3306");
        assert_eq!(p("10.0.0.1", Some(3306)).unwrap(), "10.0.0.1:3306");
        assert_eq!(p("[fe80::1]", Some(3306)).unwrap(), "[fe80::1]:3306");
        assert_eq!(
            p("foo", None).unwrap_err(),
            "invalid address 'foo' (expected host:port)"
        );
        for bad in [
            "",
            ":3306",
            "a b:1",
            "1.2.3.4:x",
            "1.2.3.4:0",
            "300.1.1.1:1",
            "::1",
            "h:-1",
        ] {
            assert!(p(bad, Some(3306)).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_levels() {
        assert_eq!(map_log_level("message"), Some("info"));
        assert_eq!(map_log_level("warning"), Some("warn"));
        assert_eq!(map_log_level("critical"), Some("error"));
        assert_eq!(map_log_level("error"), Some("error"));
        assert_eq!(map_log_level("DEBUG"), Some("debug"));
        assert_eq!(map_log_level("trace"), Some("trace"));
        assert_eq!(map_log_level("loud"), None);
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let err = load(Path::new("/nonexistent/dir/x.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert_eq!(
            err.to_string(),
            "cannot read /nonexistent/dir/x.toml: No such file or directory"
        );
        // A directory is not a readable config file either.
        assert!(matches!(
            load(Path::new("/")),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn format_detection() {
        let d = |p: &str, t: &str| detect_format(Path::new(p), t);
        assert_eq!(d("a.toml", "[mysql-proxy]"), ConfigFormat::Toml);
        assert_eq!(d("a.cnf", ""), ConfigFormat::Atlas);
        assert_eq!(d("a.CONF", ""), ConfigFormat::Atlas);
        assert_eq!(d("a.ini", "# x\n [mysql-proxy] \n"), ConfigFormat::Atlas);
        assert_eq!(d("a", "[proxy]\n"), ConfigFormat::Toml);
    }

    fn sample(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../conf")
            .join(name)
    }

    #[test]
    fn samples_load_and_agree() {
        let t = load(&sample("rwproxy.toml")).unwrap_or_else(|e| panic!("{e}"));
        let a = load(&sample("atlas.cnf")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.format, ConfigFormat::Toml);
        assert_eq!(a.format, ConfigFormat::Atlas);
        for c in [&t, &a] {
            let addrs: Vec<(&str, Role, u32)> = c
                .backends
                .iter()
                .map(|b| (b.address.as_str(), b.role, b.weight))
                .collect();
            assert_eq!(
                addrs,
                [
                    ("127.0.0.1:3306", Role::ReadWrite, 1),
                    ("127.0.0.1:3307", Role::ReadOnly, 1),
                    ("127.0.0.1:3308", Role::ReadOnly, 2),
                ]
            );
            assert_eq!(c.listen, "0.0.0.0:1234".parse().unwrap());
            assert_eq!(c.admin_listen, "127.0.0.1:2345".parse().unwrap());
            assert!(c
                .users
                .iter()
                .any(|u| u.name == "app" && u.password == "app_pass"));
            assert!(c
                .client_filter()
                .unwrap()
                .allows("127.0.0.1".parse().unwrap()));
        }
        assert!(check(&sample("atlas.cnf"))
            .unwrap()
            .contains("OK (Atlas format)"));
    }
}
