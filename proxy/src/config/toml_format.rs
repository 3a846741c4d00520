//! rwproxy's own TOML format (see `conf/rwproxy.toml` for the documented reference).
//!
//! ```toml
//! [proxy]            # listen, instance, charset, event-threads, client-ips, wait-timeout,
//!                    # interactive-timeout, connect-timeout-ms, drain-timeout, max-allowed-packet,
//!                    # max-prepared-memory, max-client-connections, max-open-files,
//!                    # keepalive, daemon, log-level,
//!                    # log-path, sql-log,
//!                    # sql-log-slow, ssl-cert, ssl-key, ssl-ca, require-secure-transport,
//!                    # backend-ssl, backend-ssl-ca
//! [admin]            # listen, username, password
//! [[backend]]        # address, role, weight, max-connections, offline (one table per server)
//! [[user]]           # name, password | encrypted-password       (one table per user)
//! ```
//!
//! Syntax and type errors come from `toml`/`serde` with their position; semantic checks use
//! [`Spanned`] values so they can name the line too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::session::read_your_writes::{Mode, Settings as ReadYourWrites};
use crate::tls::{BackendTls, ServerTls, TlsError};
use rwproxy_ha::ipvs::director::DirectorConfig;
use serde::Deserialize;
use toml::Spanned;

use super::{
    backend_name, check_unique, client_charset, defaults, line_of, map_log_level,
    parse_backend_address, parse_listen, pwcrypt, user_name, BackendConfig, ClientEntry, Config,
    ConfigError, ConfigFormat, Role, SqlLog, UserConfig, LOG_LEVEL_HELP,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    proxy: Proxy,
    #[serde(default)]
    admin: Admin,
    #[serde(default)]
    backend: Vec<Backend>,
    #[serde(default)]
    user: Vec<User>,
    #[serde(default)]
    ha: super::ha::HaToml,
    #[serde(default)]
    monitor: super::monitor::MonitorToml,
    metrics: Option<Metrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metrics {
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Proxy {
    listen: Option<Spanned<String>>,
    instance: Option<Spanned<String>>,
    charset: Option<Spanned<String>>,
    event_threads: Option<Spanned<usize>>,
    #[serde(default)]
    client_ips: Vec<Spanned<String>>,
    #[serde(default)]
    lvs_ips: Vec<Spanned<String>>,
    wait_timeout: Option<u64>,
    interactive_timeout: Option<Spanned<u64>>,
    connect_timeout_ms: Option<Spanned<u64>>,
    drain_timeout: Option<Spanned<u64>>,
    max_allowed_packet: Option<Spanned<u64>>,
    max_prepared_memory: Option<Spanned<u64>>,
    max_client_connections: Option<u64>,
    max_open_files: Option<Spanned<u64>>,
    #[serde(default)]
    keepalive: bool,
    #[serde(default)]
    daemon: bool,
    log_level: Option<Spanned<String>>,
    log_path: Option<Spanned<PathBuf>>,
    sql_log: Option<Spanned<String>>,
    sql_log_slow: Option<u64>,
    ssl_cert: Option<Spanned<PathBuf>>,
    ssl_key: Option<Spanned<PathBuf>>,
    ssl_ca: Option<Spanned<PathBuf>>,
    require_secure_transport: Option<Spanned<bool>>,
    backend_ssl: Option<Spanned<bool>>,
    backend_ssl_ca: Option<Spanned<PathBuf>>,
    read_your_writes: Option<Spanned<String>>,
    read_your_writes_window_ms: Option<u64>,
    read_your_writes_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Admin {
    listen: Option<Spanned<String>>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Backend {
    address: Spanned<String>,
    role: RoleToml,
    weight: Option<Spanned<u32>>,
    max_connections: Option<u32>,
    offline: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
enum RoleToml {
    #[serde(rename = "rw")]
    ReadWrite,
    #[serde(rename = "ro")]
    ReadOnly,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct User {
    name: Spanned<String>,
    password: Option<String>,
    encrypted_password: Option<Spanned<String>>,
    read_your_writes: Option<Spanned<String>>,
}

/// The read backends as `[ha.ipvs]` takes its default real servers from: address, weight.
fn read_backends(backends: &[BackendConfig]) -> Vec<(String, u32)> {
    backends
        .iter()
        .filter(|b| b.role == Role::ReadOnly)
        .map(|b| (b.address.clone(), b.weight))
        .collect()
}

/// The `[ha.ipvs]` section of `text` as it loads with `backends` in place of the file's own:
/// what `SAVE CONFIG` must expect back, since virtual servers without `real_server` tables
/// follow the read backends.
pub(super) fn ipvs_with_backends(
    path: &Path,
    text: &str,
    backends: &[BackendConfig],
) -> Result<DirectorConfig, ConfigError> {
    let file = deserialize(path, text)?;
    super::ha::ipvs(&file.ha, &read_backends(backends))
        .map_err(|(key, m)| ConfigError::invalid(path, None, Some(&key), m))
}

fn deserialize(path: &Path, text: &str) -> Result<File, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError::invalid(path, line, None, e.message().trim_end())
    })
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let file = deserialize(path, text)?;
    let at = |offset: usize| Some(line_of(text, offset));
    let invalid = |line: Option<usize>, key: &str, msg: String| {
        ConfigError::invalid(path, line, Some(key), msg)
    };
    let listen_of = |v: &Option<Spanned<String>>, key: &str, default: &str| match v {
        Some(s) => parse_listen(s.get_ref()).map_err(|m| invalid(at(s.span().start), key, m)),
        None => parse_listen(default).map_err(|m| invalid(None, key, m)),
    };

    let p = file.proxy;
    let listen = listen_of(&p.listen, "proxy.listen", defaults::LISTEN)?;
    let admin_listen = listen_of(&file.admin.listen, "admin.listen", defaults::ADMIN_LISTEN)?;
    let metrics_listen = match &file.metrics {
        Some(m) => Some(listen_of(
            &m.listen,
            "metrics.listen",
            defaults::METRICS_LISTEN,
        )?),
        None => None,
    };

    for ip in &p.client_ips {
        ip.get_ref()
            .parse::<ClientEntry>()
            .map_err(|m| invalid(at(ip.span().start), "proxy.client-ips", m))?;
    }
    let charset = match &p.charset {
        Some(c) => client_charset(c.get_ref())
            .map_err(|m| invalid(at(c.span().start), "proxy.charset", m))?,
        None => None,
    };
    // Both name files (the pid file, the log): an empty one is a slip, not a choice.
    if let Some(i) = p
        .instance
        .as_ref()
        .filter(|i| i.get_ref().trim().is_empty())
    {
        return Err(invalid(
            at(i.span().start),
            "proxy.instance",
            "is empty (leave the key out for the default)".into(),
        ));
    }
    if let Some(l) = p
        .log_path
        .as_ref()
        .filter(|l| l.get_ref().as_os_str().is_empty())
    {
        return Err(invalid(
            at(l.span().start),
            "proxy.log-path",
            "is empty (leave the key out to log to standard error)".into(),
        ));
    }
    let log_level = match &p.log_level {
        Some(l) => map_log_level(l.get_ref()).ok_or_else(|| {
            invalid(
                at(l.span().start),
                "proxy.log-level",
                format!("unknown level '{}': {LOG_LEVEL_HELP}", l.get_ref()),
            )
        })?,
        None => defaults::LOG_LEVEL,
    };
    let sql_log = match &p.sql_log {
        Some(s) => super::parse_sql_log(s.get_ref()).ok_or_else(|| {
            invalid(
                at(s.span().start),
                "proxy.sql-log",
                format!(
                    "unknown value '{}' (expected OFF, ON or REALTIME)",
                    s.get_ref()
                ),
            )
        })?,
        None => SqlLog::Off,
    };
    let connect_timeout_ms = match &p.connect_timeout_ms {
        Some(v) if *v.get_ref() == 0 => {
            return Err(invalid(
                at(v.span().start),
                "proxy.connect-timeout-ms",
                "must be at least 1".into(),
            ))
        }
        Some(v) => *v.get_ref(),
        None => defaults::CONNECT_TIMEOUT_MS,
    };
    let event_threads = match &p.event_threads {
        Some(v) if *v.get_ref() > defaults::MAX_EVENT_THREADS => {
            return Err(invalid(
                at(v.span().start),
                "proxy.event-threads",
                format!(
                    "must be at most {} (0: one per core)",
                    defaults::MAX_EVENT_THREADS
                ),
            ));
        }
        Some(v) => *v.get_ref(),
        None => defaults::EVENT_THREADS,
    };
    let wait_timeout = p.wait_timeout.unwrap_or(defaults::WAIT_TIMEOUT_SECS);
    let wait_timeout = (wait_timeout > 0).then(|| Duration::from_secs(wait_timeout));
    let drain_timeout = match &p.drain_timeout {
        Some(v) if *v.get_ref() > defaults::MAX_DRAIN_TIMEOUT_SECS => {
            return Err(invalid(
                at(v.span().start),
                "proxy.drain-timeout",
                format!(
                    "must be at most {} seconds (a year)",
                    defaults::MAX_DRAIN_TIMEOUT_SECS
                ),
            ))
        }
        Some(v) => *v.get_ref(),
        None => defaults::DRAIN_TIMEOUT_SECS,
    };
    let interactive_timeout = super::interactive_timeout(
        wait_timeout,
        p.interactive_timeout.as_ref().map(|v| *v.get_ref()),
    )
    .map_err(|m| {
        let start = p.interactive_timeout.as_ref().map_or(0, |v| v.span().start);
        invalid(at(start), "proxy.interactive-timeout", m)
    })?;
    let max_allowed_packet = match &p.max_allowed_packet {
        Some(v) => super::max_allowed_packet(*v.get_ref())
            .map_err(|m| invalid(at(v.span().start), "proxy.max-allowed-packet", m))?,
        None => defaults::MAX_ALLOWED_PACKET,
    };
    let max_prepared_memory = match &p.max_prepared_memory {
        Some(v) => super::max_prepared_memory(*v.get_ref())
            .map_err(|m| invalid(at(v.span().start), "proxy.max-prepared-memory", m))?,
        None => defaults::MAX_PREPARED_MEMORY,
    };
    let max_open_files = match &p.max_open_files {
        Some(v) => Some(
            super::max_open_files(*v.get_ref())
                .map_err(|m| invalid(at(v.span().start), "proxy.max-open-files", m))?,
        ),
        None => None,
    };
    let (client_tls, require_secure_transport, backend_tls) = tls(&p, &at, &invalid)?;

    let mut backends = Vec::with_capacity(file.backend.len());
    for (i, b) in file.backend.iter().enumerate() {
        let address = parse_backend_address(b.address.get_ref(), None).map_err(|m| {
            invalid(
                at(b.address.span().start),
                &format!("backend[{i}].address"),
                m,
            )
        })?;
        let weight = match &b.weight {
            Some(w) if *w.get_ref() == 0 => {
                return Err(invalid(
                    at(w.span().start),
                    &format!("backend[{i}].weight"),
                    "weight must be at least 1".into(),
                ))
            }
            Some(w) => *w.get_ref(),
            None => defaults::WEIGHT,
        };
        backends.push(BackendConfig {
            address,
            role: match b.role {
                RoleToml::ReadWrite => Role::ReadWrite,
                RoleToml::ReadOnly => Role::ReadOnly,
            },
            weight,
            max_connections: match b.max_connections {
                Some(0) => u32::MAX,
                Some(n) => n,
                None => defaults::MAX_CONNECTIONS,
            },
            offline: b.offline.unwrap_or(false),
        });
    }
    let lvs_ips = p
        .lvs_ips
        .iter()
        .map(|ip| {
            ip.get_ref().parse().map_err(|_| {
                invalid(
                    at(ip.span().start),
                    "proxy.lvs-ips",
                    format!("invalid LVS director address '{}'", ip.get_ref()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vrrp = super::ha::instances(&file.ha).map_err(|(key, m)| invalid(None, &key, m))?;
    let monitor =
        super::monitor::monitor(&file.monitor).map_err(|(key, m)| invalid(None, &key, m))?;
    let ipvs = super::ha::ipvs(&file.ha, &read_backends(&backends))
        .map_err(|(key, m)| invalid(None, &key, m))?;
    // A node may run only the HA part (the write VIP, an IPVS director) without proxying.
    if backends.is_empty() && vrrp.is_empty() && ipvs.virtual_servers.is_empty() {
        return Err(invalid(
            None,
            "backend",
            "no backends configured (add at least one [[backend]] table, or an [ha] section)"
                .into(),
        ));
    }

    let mut ryw = ReadYourWrites {
        mode: match &p.read_your_writes {
            Some(m) => ryw_mode(m.get_ref())
                .map_err(|msg| invalid(at(m.span().start), "proxy.read-your-writes", msg))?,
            None => Mode::Off,
        },
        ..Default::default()
    };
    if let Some(ms) = p.read_your_writes_window_ms {
        ryw.window = Duration::from_millis(ms);
    }
    if let Some(ms) = p.read_your_writes_timeout_ms {
        ryw.timeout = Duration::from_millis(ms);
    }
    let mut users = Vec::with_capacity(file.user.len());
    for (i, u) in file.user.iter().enumerate() {
        let line = at(u.name.span().start);
        let name = u.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(invalid(
                line,
                &format!("user[{i}].name"),
                "empty user name".into(),
            ));
        }
        let password = match (&u.password, &u.encrypted_password) {
            (Some(p), None) => p.clone(),
            (None, Some(e)) => pwcrypt::atlas_decrypt(e.get_ref()).map_err(|err| {
                invalid(
                    at(e.span().start),
                    &format!("user[{i}].encrypted-password"),
                    format!("cannot decrypt password of user '{name}': {err}"),
                )
            })?,
            (Some(_), Some(_)) => {
                return Err(invalid(
                    line,
                    &format!("user[{i}]"),
                    "set either password or encrypted-password, not both".into(),
                ))
            }
            (None, None) => {
                return Err(invalid(
                    line,
                    &format!("user[{i}]"),
                    "missing password (set password or encrypted-password)".into(),
                ))
            }
        };
        if let Some(m) = &u.read_your_writes {
            let mode = ryw_mode(m.get_ref()).map_err(|msg| {
                invalid(
                    at(m.span().start),
                    &format!("user[{i}].read-your-writes"),
                    msg,
                )
            })?;
            ryw.per_user.insert(name.clone(), mode);
        }
        users.push(UserConfig { name, password });
    }
    check_unique(path, &backends, backend_name, |i| {
        (
            at(file.backend[i].address.span().start),
            format!("backend[{i}].address"),
        )
    })?;
    check_unique(path, &users, user_name, |i| {
        (
            at(file.user[i].name.span().start),
            format!("user[{i}].name"),
        )
    })?;

    let admin_username = file
        .admin
        .username
        .unwrap_or_else(|| defaults::ADMIN_USERNAME.to_string());
    let admin_password = file
        .admin
        .password
        .unwrap_or_else(|| defaults::ADMIN_PASSWORD.to_string());
    let mut failover = super::ha::failover(&file.ha, (&admin_username, &admin_password))
        .map_err(|(key, m)| invalid(None, &key, m))?;
    if let Some(f) = &mut failover {
        f.peers = backends.iter().map(|b| b.address.clone()).collect();
    }

    Ok(Config {
        path: path.to_path_buf(),
        warnings: Vec::new(),
        format: ConfigFormat::Toml,
        instance: p
            .instance
            .map_or_else(|| defaults::INSTANCE.to_string(), Spanned::into_inner),
        listen,
        admin_listen,
        admin_username,
        admin_password,
        backends,
        users,
        client_ips: p
            .client_ips
            .iter()
            .map(|s| s.get_ref().trim().to_string())
            .collect(),
        charset,
        event_threads,
        log_level: log_level.to_string(),
        log_path: p.log_path.map(Spanned::into_inner),
        sql_log,
        sql_log_slow_ms: p.sql_log_slow.filter(|&ms| ms > 0),
        daemon: p.daemon,
        keepalive: p.keepalive,
        wait_timeout,
        interactive_timeout,
        connect_timeout: Duration::from_millis(connect_timeout_ms),
        drain_timeout: Duration::from_secs(drain_timeout),
        max_allowed_packet,
        max_prepared_memory,
        max_client_connections: p.max_client_connections.map(super::max_client_connections),
        max_open_files,
        lvs_ips,
        vrrp,
        client_tls,
        require_secure_transport,
        backend_tls,
        monitor,
        metrics_listen,
        ipvs,
        failover,
        read_your_writes: ryw,
    })
}

fn ryw_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| {
        format!("unknown mode '{s}' (expected \"off\", \"causal\" or \"primary-window\")")
    })
}

type Tls = (Option<ServerTls>, bool, Option<BackendTls>);

/// The TLS keys of `[proxy]`: which go together, and whether their files load.
fn tls(
    p: &Proxy,
    at: &dyn Fn(usize) -> Option<usize>,
    invalid: &dyn Fn(Option<usize>, &str, String) -> ConfigError,
) -> Result<Tls, ConfigError> {
    let line = |v: &Spanned<PathBuf>| at(v.span().start);
    // A TLS file error names the key of the file it came from.
    let file_error = |e: TlsError| {
        let spanned = match e.key {
            "ssl-key" => p.ssl_key.as_ref(),
            "ssl-ca" => p.ssl_ca.as_ref(),
            "backend-ssl-ca" => p.backend_ssl_ca.as_ref(),
            _ => p.ssl_cert.as_ref(),
        };
        invalid(
            spanned.and_then(line),
            &format!("proxy.{}", e.key),
            e.message,
        )
    };
    let client_tls = match (&p.ssl_cert, &p.ssl_key) {
        (Some(cert), Some(key)) => Some(
            ServerTls::load(
                cert.get_ref().clone(),
                key.get_ref().clone(),
                p.ssl_ca.as_ref().map(|c| c.get_ref().clone()),
            )
            .map_err(file_error)?,
        ),
        (Some(cert), None) => {
            return Err(invalid(
                line(cert),
                "proxy.ssl-key",
                "missing: ssl-cert needs the private key of its certificate in ssl-key".into(),
            ))
        }
        (None, Some(key)) => {
            return Err(invalid(
                line(key),
                "proxy.ssl-cert",
                "missing: ssl-key needs the certificate chain in ssl-cert".into(),
            ))
        }
        (None, None) => {
            if let Some(ca) = &p.ssl_ca {
                return Err(invalid(
                    line(ca),
                    "proxy.ssl-ca",
                    "client certificates need TLS: set ssl-cert and ssl-key too".into(),
                ));
            }
            None
        }
    };
    let require = match &p.require_secure_transport {
        Some(r) if *r.get_ref() && client_tls.is_none() => {
            return Err(invalid(
                at(r.span().start),
                "proxy.require-secure-transport",
                "no client could connect: set ssl-cert and ssl-key to offer TLS".into(),
            ))
        }
        Some(r) => *r.get_ref(),
        None => false,
    };
    let backend_ssl = p.backend_ssl.as_ref().is_some_and(|b| *b.get_ref());
    let backend_tls = match (&p.backend_ssl, &p.backend_ssl_ca) {
        (_, Some(ca)) if backend_ssl => {
            Some(BackendTls::load(ca.get_ref().clone()).map_err(file_error)?)
        }
        (Some(b), None) if backend_ssl => {
            return Err(invalid(
                at(b.span().start),
                "proxy.backend-ssl-ca",
                "missing: backend-ssl needs the CA that signed the backends' certificates".into(),
            ))
        }
        (_, Some(ca)) => {
            return Err(invalid(
                line(ca),
                "proxy.backend-ssl",
                "backend-ssl-ca is set but backend-ssl is not true".into(),
            ))
        }
        _ => None,
    };
    Ok((client_tls, require, backend_tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[proxy]
listen = "127.0.0.1:4000"
instance = "shop"
charset = "utf8mb4"
event-threads = 4
client-ips = ["127.0.0.1", "10.0.0.0/8", "192.168.1"]
wait-timeout = 60
connect-timeout-ms = 500
keepalive = true
daemon = true
log-level = "debug"
log-path = "/var/log/rwproxy"
sql-log = "REALTIME"
sql-log-slow = 100
drain-timeout = 90
max-client-connections = 5000
max-open-files = 65536

[admin]
listen = "127.0.0.1:4001"
username = "root"
password = "toor"

[[backend]]
address = "10.0.0.1:3306"
role = "rw"
max-connections = 50

[[backend]]
address = "db2.example.com:3307"
role = "ro"
weight = 3
max-connections = 0
offline = true

[[user]]
name = "app"
password = "secret"

[[user]]
name = "report"
encrypted-password = "HJBoxfRsjeI="
"#;

    fn parse_text(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("conf/x.toml"), text)
    }

    fn err(text: &str) -> String {
        parse_text(text).unwrap_err().to_string()
    }

    const ONE_BACKEND: &str = "[[backend]]\naddress = \"127.0.0.1:3306\"\nrole = \"rw\"\n";

    #[test]
    fn every_key() {
        let c = parse_text(FULL).unwrap();
        assert_eq!(c.format, ConfigFormat::Toml);
        assert_eq!(c.path, Path::new("conf/x.toml"));
        assert_eq!(c.listen, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(c.instance, "shop");
        assert_eq!(c.charset.as_deref(), Some("utf8mb4"));
        assert_eq!(c.event_threads, 4);
        assert_eq!(c.client_ips, ["127.0.0.1", "10.0.0.0/8", "192.168.1"]);
        assert_eq!(c.wait_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.drain_timeout, Duration::from_secs(90));
        assert_eq!(c.max_client_connections, Some(5000));
        assert_eq!(c.max_open_files, Some(65536));
        assert!(c.keepalive && c.daemon);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.log_path.as_deref(), Some(Path::new("/var/log/rwproxy")));
        assert_eq!(c.sql_log, SqlLog::Realtime);
        assert_eq!(c.sql_log_slow_ms, Some(100));
        assert_eq!(c.admin_listen, "127.0.0.1:4001".parse().unwrap());
        assert_eq!(
            (c.admin_username.as_str(), c.admin_password.as_str()),
            ("root", "toor")
        );
        assert_eq!(
            c.backends,
            [
                BackendConfig {
                    address: "10.0.0.1:3306".into(),
                    role: Role::ReadWrite,
                    weight: 1,
                    max_connections: 50,
                    offline: false,
                },
                BackendConfig {
                    address: "db2.example.com:3307".into(),
                    role: Role::ReadOnly,
                    weight: 3,
                    max_connections: u32::MAX,
                    offline: true,
                },
            ]
        );
        assert_eq!(
            c.users,
            [
                UserConfig {
                    name: "app".into(),
                    password: "secret".into()
                },
                UserConfig {
                    name: "report".into(),
                    password: "mypwd".into()
                },
            ]
        );
    }

    #[test]
    fn defaults_apply() {
        let c = parse_text(ONE_BACKEND).unwrap();
        assert_eq!(c.listen, "0.0.0.0:1234".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:2345".parse().unwrap());
        assert_eq!(c.admin_username, "admin");
        assert_eq!(c.instance, "rwproxy");
        assert_eq!(c.event_threads, 0);
        assert_eq!(c.log_level, "info");
        assert_eq!(c.sql_log, SqlLog::Off);
        assert_eq!(c.sql_log_slow_ms, None);
        assert_eq!(c.wait_timeout, Some(Duration::from_secs(28_800)));
        assert_eq!(c.interactive_timeout, Some(Duration::from_secs(28_800)));
        assert_eq!(c.connect_timeout, Duration::from_millis(2_000));
        assert_eq!(c.max_allowed_packet, 64 << 20);
        assert_eq!(c.max_prepared_memory, 1 << 30);
        assert!(!c.daemon && !c.keepalive);
        assert!(c.users.is_empty() && c.client_ips.is_empty() && c.charset.is_none());
        assert_eq!(c.backends[0].weight, 1);
        assert_eq!(c.backends[0].max_connections, 200);

        let c = parse_text(&format!("[proxy]\nwait-timeout = 0\n{ONE_BACKEND}")).unwrap();
        assert_eq!(c.wait_timeout, None);
        assert_eq!(c.interactive_timeout, None, "never, as other clients");
        // Interactive sessions are not closed sooner than others by default.
        for (wait, interactive) in [(60, 28_800), (90_000, 90_000)] {
            let c = parse_text(&format!("[proxy]\nwait-timeout = {wait}\n{ONE_BACKEND}")).unwrap();
            assert_eq!(
                c.interactive_timeout,
                Some(Duration::from_secs(interactive))
            );
        }
        let c = parse_text(&format!(
            "[proxy]\nwait-timeout = 60\ninteractive-timeout = 0\n{ONE_BACKEND}"
        ))
        .unwrap();
        assert_eq!(c.interactive_timeout, None);
        let c = parse_text(&format!("[proxy]\ninteractive-timeout = 5\n{ONE_BACKEND}")).unwrap();
        assert_eq!(c.interactive_timeout, Some(Duration::from_secs(5)));
        let e = parse_text(&format!(
            "[proxy]\ninteractive-timeout = 99999999999\n{ONE_BACKEND}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("interactive-timeout") && e.contains("a year"),
            "{e}"
        );
        let c = parse_text(&format!(
            "[proxy]\nmax-allowed-packet = 1024\n{ONE_BACKEND}"
        ))
        .unwrap();
        assert_eq!(c.max_allowed_packet, 1024);
        assert_eq!((c.max_client_connections, c.max_open_files), (None, None));
        let c = parse_text(&format!(
            "[proxy]\nmax-client-connections = 0\n{ONE_BACKEND}"
        ))
        .unwrap();
        assert_eq!(c.max_client_connections, Some(usize::MAX));
        assert_eq!(
            err(&format!("[proxy]\nmax-open-files = 10\n{ONE_BACKEND}")),
            "conf/x.toml:2: proxy.max-open-files: must be at least 64 (the proxy's listeners, \
             event threads, logs and monitor need a few dozen descriptors)"
        );
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let e = err(&format!(
            "[proxy]\nlisten = \":1\"\nlisten-adress = \"x\"\n{ONE_BACKEND}"
        ));
        assert!(e.starts_with("conf/x.toml:3: "), "{e}");
        assert!(e.contains("listen-adress"), "{e}");
        let e = err(&format!("{ONE_BACKEND}wieght = 2\n"));
        assert!(
            e.starts_with("conf/x.toml:4: ") && e.contains("wieght"),
            "{e}"
        );
        let e = err("[frontend]\nx = 1\n");
        assert!(e.contains("frontend"), "{e}");
    }

    #[test]
    fn bad_addresses_name_the_key() {
        let text = format!("{ONE_BACKEND}\n[[backend]]\naddress = \"foo\"\nrole = \"ro\"\n");
        assert_eq!(
            err(&text),
            "conf/x.toml:6: backend[1].address: invalid address 'foo' (expected host:port)"
        );
        let e = err(&format!("[proxy]\nlisten = \"1.2.3.4\"\n{ONE_BACKEND}"));
        assert!(
            e.starts_with("conf/x.toml:2: proxy.listen: invalid listen address"),
            "{e}"
        );
        let e = err(&format!("[admin]\nlisten = \"nowhere:1\"\n{ONE_BACKEND}"));
        assert!(e.starts_with("conf/x.toml:2: admin.listen: "), "{e}");
    }

    #[test]
    fn charset_instance_log_path_and_duplicate_backends_are_checked() {
        let e = err(&format!("[proxy]\ncharset = \"utf8mb5\"\n{ONE_BACKEND}"));
        assert!(
            e.starts_with("conf/x.toml:2: proxy.charset: unknown character set 'utf8mb5'"),
            "{e}"
        );
        // A server refuses these for a client's SET NAMES.
        assert!(err(&format!("[proxy]\ncharset = \"utf16\"\n{ONE_BACKEND}")).contains("utf16"));
        let c = parse_text(&format!("[proxy]\ncharset = \"Latin1\"\n{ONE_BACKEND}")).unwrap();
        assert_eq!(c.charset.as_deref(), Some("latin1"));
        let c = parse_text(&format!("[proxy]\ncharset = \" \"\n{ONE_BACKEND}")).unwrap();
        assert_eq!(c.charset, None);
        let e = err(&format!("[proxy]\ninstance = \"\"\n{ONE_BACKEND}"));
        assert!(
            e.starts_with("conf/x.toml:2: proxy.instance: is empty"),
            "{e}"
        );
        let e = err(&format!(
            "{ONE_BACKEND}[[backend]]\naddress = \"127.0.0.1:3306\"\nrole = \"rw\"\n"
        ));
        assert_eq!(
            e,
            "conf/x.toml:5: backend[1].address: duplicate backend '127.0.0.1:3306' (rw)"
        );
        let e = err(&format!("[proxy]\nlog-path = \"\"\n{ONE_BACKEND}"));
        assert!(
            e.starts_with("conf/x.toml:2: proxy.log-path: is empty"),
            "{e}"
        );
    }

    #[test]
    fn weights() {
        let e = err(&format!("{ONE_BACKEND}weight = 0\n"));
        assert_eq!(
            e,
            "conf/x.toml:4: backend[0].weight: weight must be at least 1"
        );
        let e = err(&format!("{ONE_BACKEND}weight = -1\n"));
        assert!(e.starts_with("conf/x.toml:4: "), "{e}");
        let c = parse_text(&format!("{ONE_BACKEND}weight = 7\n")).unwrap();
        assert_eq!(c.backends[0].weight, 7);
    }

    #[test]
    fn semantic_errors() {
        assert_eq!(
            err("[proxy]\n"),
            "conf/x.toml: backend: no backends configured (add at least one [[backend]] table, or an [ha] section)"
        );
        let e = err("[[backend]]\naddress = \"h:1\"\nrole = \"master\"\n");
        assert!(
            e.starts_with("conf/x.toml:3: ") && e.contains("master"),
            "{e}"
        );
        let e = err("[[backend]]\naddress = \"h:1\"\n");
        assert!(e.contains("role"), "{e}");
        let e = err(&format!(
            "[proxy]\nclient-ips = [\"1.2.3.4\", \"nope\"]\n{ONE_BACKEND}"
        ));
        assert!(e.starts_with("conf/x.toml:2: proxy.client-ips: invalid client address 'nope'"));
        let e = err(&format!("[proxy]\nlog-level = \"loud\"\n{ONE_BACKEND}"));
        assert!(
            e.starts_with("conf/x.toml:2: proxy.log-level: unknown level 'loud'"),
            "{e}"
        );
        let e = err(&format!("[proxy]\nsql-log = \"MAYBE\"\n{ONE_BACKEND}"));
        assert!(e.starts_with("conf/x.toml:2: proxy.sql-log: "), "{e}");
        let e = err(&format!("[proxy]\nconnect-timeout-ms = 0\n{ONE_BACKEND}"));
        assert!(
            e.starts_with("conf/x.toml:2: proxy.connect-timeout-ms"),
            "{e}"
        );
        for bad in [1023, (1 << 30) + 1] {
            let e = err(&format!(
                "[proxy]\nmax-allowed-packet = {bad}\n{ONE_BACKEND}"
            ));
            assert!(
                e.starts_with("conf/x.toml:2: proxy.max-allowed-packet: must be between 1024 and"),
                "{e}"
            );
        }
        let e = err(&format!(
            "[proxy]\nmax-prepared-memory = 1048575\n{ONE_BACKEND}"
        ));
        assert!(
            e.starts_with("conf/x.toml:2: proxy.max-prepared-memory: must be at least 1048576"),
            "{e}"
        );
        let e = err(&format!("[proxy]\ndrain-timeout = 31536001\n{ONE_BACKEND}"));
        assert!(
            e.starts_with("conf/x.toml:2: proxy.drain-timeout: must be at most 31536000 seconds"),
            "{e}"
        );
        let e = err(&format!(
            "[proxy]\nevent-threads = 18446744073709551615\n{ONE_BACKEND}"
        ));
        assert!(
            e.starts_with("conf/x.toml:2: proxy.event-threads: must be at most 1024"),
            "{e}"
        );
        let e = err("[proxy\n");
        assert!(e.starts_with("conf/x.toml:1: "), "{e}");
    }

    #[test]
    fn tls_keys_go_together_and_name_their_file() {
        let proxy = |keys: &str| err(&format!("[proxy]\n{keys}\n{ONE_BACKEND}"));
        let e = proxy("ssl-cert = \"/c.pem\"");
        assert!(
            e.starts_with("conf/x.toml:2: proxy.ssl-key: missing"),
            "{e}"
        );
        let e = proxy("ssl-key = \"/k.pem\"");
        assert!(
            e.starts_with("conf/x.toml:2: proxy.ssl-cert: missing"),
            "{e}"
        );
        let e = proxy("ssl-ca = \"/ca.pem\"");
        assert!(e.starts_with("conf/x.toml:2: proxy.ssl-ca: "), "{e}");
        let e = proxy("require-secure-transport = true");
        assert!(
            e.starts_with("conf/x.toml:2: proxy.require-secure-transport: no client could connect"),
            "{e}"
        );
        let e = proxy("backend-ssl = true");
        assert!(
            e.starts_with("conf/x.toml:2: proxy.backend-ssl-ca: missing"),
            "{e}"
        );
        let e = proxy("backend-ssl-ca = \"/ca.pem\"");
        assert!(e.starts_with("conf/x.toml:2: proxy.backend-ssl: "), "{e}");
        let e = proxy("ssl-cert = \"/nonexistent/c.pem\"\nssl-key = \"/nonexistent/k.pem\"");
        assert!(
            e.starts_with(
                "conf/x.toml:2: proxy.ssl-cert: cannot read certificates from /nonexistent/c.pem"
            ),
            "{e}"
        );
        let e = proxy("backend-ssl = true\nbackend-ssl-ca = \"/nonexistent/ca.pem\"");
        assert!(
            e.starts_with("conf/x.toml:3: proxy.backend-ssl-ca: cannot read"),
            "{e}"
        );
        // A file with no PEM certificate in it.
        let dir = std::env::temp_dir().join(format!("rwproxy-tls-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = proxy(&format!(
            "backend-ssl = true\nbackend-ssl-ca = {:?}",
            empty.display().to_string()
        ));
        assert!(
            e.contains("proxy.backend-ssl-ca: no PEM certificate in"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        // Off is off.
        let c = parse(
            Path::new("conf/x.toml"),
            &format!(
                "[proxy]\nrequire-secure-transport = false\nbackend-ssl = false\n{ONE_BACKEND}"
            ),
        )
        .unwrap();
        assert!(c.client_tls.is_none() && c.backend_tls.is_none() && !c.require_secure_transport);
    }

    #[test]
    fn users() {
        let u = |body: &str| err(&format!("{ONE_BACKEND}[[user]]\n{body}"));
        assert_eq!(
            u("name = \"a\"\npassword = \"x\"\n[[user]]\nname = \"a\"\npassword = \"y\"\n"),
            "conf/x.toml:8: user[1].name: duplicate user 'a'"
        );
        assert!(u("name = \"a\"\n").contains("user[0]: missing password"));
        assert!(
            u("name = \"a\"\npassword = \"x\"\nencrypted-password = \"HJBoxfRsjeI=\"\n")
                .contains("not both")
        );
        assert!(u("name = \"a\"\nencrypted-password = \"plain\"\n")
            .starts_with("conf/x.toml:6: user[0].encrypted-password: cannot decrypt"));
        assert!(u("name = \" \"\npassword = \"\"\n").contains("empty user name"));
        // An empty password is legal (MySQL allows it).
        let c = parse_text(&format!(
            "{ONE_BACKEND}[[user]]\nname = \"a\"\npassword = \"\"\n"
        ));
        assert_eq!(c.unwrap().users[0].password, "");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "",
            "\u{feff}",
            "=",
            "[[backend]]\n[[backend]]",
            "a = 1",
            "\0",
            "[proxy]\nlisten = 5",
        ] {
            let _ = parse_text(text);
        }
    }
}
