//! Atlas 2.2.1's `.cnf` format: a GLib key file whose `[mysql-proxy]` group holds the options.
//!
//! The parser is written for this format rather than borrowed from an INI crate so that every
//! error can name its line: `conf/x.cnf:12: unknown key 'proxy-adress' in [mysql-proxy]`.
//!
//! Syntax (as GLib's `GKeyFile`): `key = value` lines; whole-line comments starting with `#` or
//! `;`; lists separated by `,`; surrounding whitespace is ignored. Groups other than
//! `[mysql-proxy]` are ignored with a warning (Atlas never reads them). When a key repeats, the
//! last value wins (as in GLib), with a warning.
//!
//! Keys and how rwproxy treats them — see `conf/atlas.cnf` for the user-facing reference:
//!
//! | key | handling |
//! |---|---|
//! | `proxy-address` | `listen` (default `0.0.0.0:1234`) |
//! | `admin-address` | `admin_listen` (default `127.0.0.1:2345`; Atlas binds `0.0.0.0`) |
//! | `admin-username`, `admin-password` | admin credentials (default `admin`/`admin`) |
//! | `proxy-backend-addresses` | read-write backends `host[:port][@weight]` (Atlas default `127.0.0.1:3306`) |
//! | `proxy-read-only-backend-addresses` | read-only backends `host[:port][@weight]` |
//! | `pwds` | users, `user:encrypted`, decrypted with [`super::pwcrypt`] |
//! | `client-ips` | allow-list, see [`super::ClientFilter`] |
//! | `lvs-ips` | LVS directors that health-check the proxy: SIGUSR2 turns them away, SIGUSR1 back in |
//! | `charset`, `instance`, `log-path`, `daemon`, `keepalive` | same-named fields |
//! | `event-threads` | `event_threads` (0 = one per core, also the default) |
//! | `log-level` | message→info, warning→warn, critical/error→error, debug→debug |
//! | `sql-log`, `sql-log-slow` | `sql_log` (OFF/ON/REALTIME), `sql_log_slow_ms` (0 = log all) |
//! | `wait-timeout` | idle client timeout, seconds; 0 (Atlas's default) = never |
//! | `interactive-timeout` | the same for interactive clients (rwproxy's own key) |
//! | `max-connections`, `max_conn_for_a_backend` | per-backend pool bound (0 = unlimited) |
//! | `max-open-files` | the open-files limit set at start (MySQL Proxy's key) |
//! | `max-client-connections` | bound on client connections (rwproxy's own key) |
//! | `max-allowed-packet` | longest command a client may send, bytes (rwproxy's own key) |
//! | `max-prepared-memory` | statement text of all open prepared statements, bytes (rwproxy's own key) |
//! | `tables` | refused unless empty: rwproxy does not shard |
//! | [`IGNORED`] keys | accepted with a warning: no meaning in rwproxy |
//! | anything else | error naming key and line |

use std::path::Path;
use std::time::Duration;

use super::{
    backend_name, check_unique, client_charset, defaults, map_log_level, parse_backend_address,
    parse_listen, parse_sql_log, pwcrypt, user_name, BackendConfig, ClientEntry, Config,
    ConfigError, ConfigFormat, Role, SqlLog, UserConfig, LOG_LEVEL_HELP,
};

pub(super) const SECTION: &str = "mysql-proxy";

/// Atlas / MySQL Proxy options that are valid in an Atlas file but mean nothing to rwproxy
/// (Lua, plugins, process management, Atlas's own health checker). They are
/// accepted so an existing Atlas file loads unchanged, and logged as ignored.
pub const IGNORED: &[&str] = &[
    // MySQL Proxy chassis
    "plugins",
    "plugin-dir",
    "basedir",
    "user",
    "pid-file",
    "lua-path",
    "lua-cpath",
    "log-use-syslog",
    "log-backtrace-on-crash",
    "verbose-shutdown",
    // admin / proxy plugins
    "admin-lua-script",
    "proxy-lua-script",
    "proxy-skip-profiling",
    "proxy-fix-bug-25371",
    "no-proxy",
    "proxy-pool-no-change-user",
    "min-idle-connections",
    // Atlas features rwproxy does not have (or does differently)
    "latency",
    "forbidden-sql",
    "check_time",
    "connect_times",
    "keep-connection-time",
    "master-standby-addresses",
];

struct Entry<'a> {
    line: usize,
    key: &'a str,
    value: &'a str,
}

/// Split the file into the `[mysql-proxy]` entries.
fn scan<'a>(
    path: &Path,
    text: &'a str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Entry<'a>>, ConfigError> {
    let mut entries = Vec::new();
    let mut section: Option<&str> = None;
    let mut saw_section = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_start_matches('\u{feff}').trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(rest) = l.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or_else(|| {
                ConfigError::invalid(
                    path,
                    Some(line),
                    None,
                    format!("malformed group header '{l}'"),
                )
            })?;
            let name = name.trim();
            if name == SECTION {
                saw_section = true;
            } else {
                warnings.push(format!(
                    "{}:{line}: ignoring group [{name}]: rwproxy, like Atlas, only reads [{SECTION}]",
                    path.display()
                ));
            }
            section = Some(name);
            continue;
        }
        let Some((key, value)) = l.split_once('=') else {
            return Err(ConfigError::invalid(
                path,
                Some(line),
                None,
                format!("expected 'key = value', found '{l}'"),
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::invalid(
                path,
                Some(line),
                None,
                "missing key before '='",
            ));
        }
        match section {
            None => {
                return Err(ConfigError::invalid(
                    path,
                    Some(line),
                    Some(key),
                    format!("key outside any group (put it under [{SECTION}])"),
                ))
            }
            Some(SECTION) => entries.push(Entry {
                line,
                key,
                value: value.trim(),
            }),
            Some(_) => {}
        }
    }
    if !saw_section {
        return Err(ConfigError::invalid(
            path,
            None,
            None,
            format!("no [{SECTION}] group: not an Atlas configuration file"),
        ));
    }
    Ok(entries)
}

pub(super) fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A backend as Atlas writes it: `host[:port][@weight]`.
pub(super) fn backend(item: &str) -> Result<(String, u32), String> {
    let (addr, weight) = match item.rsplit_once('@') {
        Some((a, w)) => {
            let w = w.trim();
            let n: u32 = w.parse().map_err(|_| {
                format!("invalid weight '{w}' in '{item}' (expected an integer >= 1)")
            })?;
            if n == 0 {
                return Err(format!("weight must be at least 1 in '{item}'"));
            }
            (a, n)
        }
        None => (item, defaults::WEIGHT),
    };
    Ok((
        parse_backend_address(addr, Some(defaults::BACKEND_PORT))?,
        weight,
    ))
}

fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn number(v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("invalid value '{v}' (expected a non-negative integer)"))
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let entries = scan(path, text, &mut warnings)?;

    // Instance name: Atlas uses the config file's name without its extension.
    let instance = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(defaults::INSTANCE)
        .to_string();
    let mut c = Config {
        path: path.to_path_buf(),
        warnings,
        format: ConfigFormat::Atlas,
        instance,
        listen: parse_listen(defaults::LISTEN).expect("valid default"),
        admin_listen: parse_listen(defaults::ADMIN_LISTEN).expect("valid default"),
        admin_username: defaults::ADMIN_USERNAME.to_string(),
        admin_password: defaults::ADMIN_PASSWORD.to_string(),
        backends: Vec::new(),
        users: Vec::new(),
        client_ips: Vec::new(),
        charset: None,
        event_threads: defaults::EVENT_THREADS,
        log_level: defaults::LOG_LEVEL.to_string(),
        log_path: None,
        sql_log: SqlLog::Off,
        sql_log_slow_ms: None,
        daemon: false,
        keepalive: false,
        wait_timeout: None,
        interactive_timeout: None,
        connect_timeout: Duration::from_millis(defaults::CONNECT_TIMEOUT_MS),
        drain_timeout: Duration::from_secs(defaults::DRAIN_TIMEOUT_SECS),
        max_allowed_packet: defaults::MAX_ALLOWED_PACKET,
        max_prepared_memory: defaults::MAX_PREPARED_MEMORY,
        max_client_connections: None,
        max_open_files: None,
        lvs_ips: Vec::new(),
        monitor: Default::default(),
        metrics_listen: None,
        read_your_writes: Default::default(),
        vrrp: Vec::new(),
        failover: None,
        ipvs: Default::default(),
        client_tls: None,
        require_secure_transport: false,
        backend_tls: None,
    };
    let mut rw: Option<Vec<(String, u32)>> = None;
    let mut ro: Vec<(String, u32)> = Vec::new();
    let mut max_connections = defaults::MAX_CONNECTIONS;
    let mut interactive_timeout = None;
    let mut user_lines: Vec<usize> = Vec::new();
    let mut seen: Vec<(&str, usize)> = Vec::new();

    for e in &entries {
        let (line, key, v) = (e.line, e.key, e.value);
        let err = |msg: String| ConfigError::invalid(path, Some(line), Some(key), msg);
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            c.warnings.push(format!(
                "{}:{line}: '{key}' repeats line {first}; the last value wins",
                path.display()
            ));
        }
        seen.push((key, line));
        match key {
            "proxy-address" => c.listen = parse_listen(v).map_err(err)?,
            "admin-address" => c.admin_listen = parse_listen(v).map_err(err)?,
            "admin-username" => c.admin_username = v.to_string(),
            "admin-password" => c.admin_password = v.to_string(),
            "proxy-backend-addresses" => {
                rw = Some(
                    list(v)
                        .map(backend)
                        .collect::<Result<_, _>>()
                        .map_err(err)?,
                )
            }
            "proxy-read-only-backend-addresses" => {
                ro = list(v)
                    .map(backend)
                    .collect::<Result<_, _>>()
                    .map_err(err)?
            }
            "pwds" => {
                c.users.clear();
                user_lines.clear();
                for item in list(v) {
                    let (user, enc) = item
                        .split_once(':')
                        .map(|(u, p)| (u.trim(), p.trim()))
                        .filter(|(u, p)| !u.is_empty() && !p.is_empty())
                        .ok_or_else(|| {
                            err(format!(
                                "invalid entry '{item}' (expected user:encrypted_password)"
                            ))
                        })?;
                    let password = pwcrypt::atlas_decrypt(enc).map_err(|why| {
                        err(format!(
                            "cannot decrypt password of user '{user}': {why} \
                             (pwds needs passwords encrypted with `rwproxy encrypt`)"
                        ))
                    })?;
                    c.users.push(UserConfig {
                        name: user.to_string(),
                        password,
                    });
                    user_lines.push(line);
                }
            }
            "client-ips" => {
                let ips: Vec<String> = list(v).map(str::to_string).collect();
                for ip in &ips {
                    ip.parse::<ClientEntry>().map_err(err)?;
                }
                c.client_ips = ips;
            }
            "lvs-ips" => {
                c.lvs_ips = list(v)
                    .map(|ip| {
                        ip.parse()
                            .map_err(|_| err(format!("invalid LVS director address '{ip}'")))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "charset" => c.charset = client_charset(v).map_err(err)?,
            "event-threads" => {
                c.event_threads = number(v)
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n <= defaults::MAX_EVENT_THREADS)
                    .ok_or_else(|| {
                        err(format!(
                            "invalid value '{v}' (expected 0, one per core, up to {})",
                            defaults::MAX_EVENT_THREADS
                        ))
                    })?
            }
            "log-level" => {
                c.log_level = map_log_level(v)
                    .ok_or_else(|| err(format!("unknown level '{v}': {LOG_LEVEL_HELP}")))?
                    .to_string()
            }
            "log-path" => c.log_path = (!v.is_empty()).then(|| v.into()),
            "sql-log" => {
                c.sql_log = parse_sql_log(v).ok_or_else(|| {
                    err(format!(
                        "unknown value '{v}' (expected OFF, ON or REALTIME)"
                    ))
                })?
            }
            "sql-log-slow" => c.sql_log_slow_ms = Some(number(v).map_err(err)?).filter(|&n| n > 0),
            "instance" => {
                if v.is_empty() {
                    return Err(err("instance name is empty".into()));
                }
                c.instance = v.to_string()
            }
            "daemon" | "keepalive" => {
                let b = boolean(v)
                    .ok_or_else(|| err(format!("invalid value '{v}' (expected true or false)")))?;
                if key == "daemon" {
                    c.daemon = b
                } else {
                    c.keepalive = b
                }
            }
            "wait-timeout" => {
                let secs = number(v).map_err(err)?;
                c.wait_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            // rwproxy's own, as in its TOML format: Atlas closed interactive clients at
            // `wait-timeout` too.
            "interactive-timeout" => {
                let secs = number(v).map_err(err)?;
                super::interactive_timeout(None, Some(secs)).map_err(err)?;
                interactive_timeout = Some(secs);
            }
            // rwproxy's own, as in its TOML format: Atlas had no such bound.
            "max-allowed-packet" => {
                c.max_allowed_packet =
                    super::max_allowed_packet(number(v).map_err(err)?).map_err(err)?
            }
            "max-prepared-memory" => {
                c.max_prepared_memory =
                    super::max_prepared_memory(number(v).map_err(err)?).map_err(err)?
            }
            // MySQL Proxy's own, which Atlas kept.
            "max-open-files" => {
                c.max_open_files =
                    Some(super::max_open_files(number(v).map_err(err)?).map_err(err)?)
            }
            // rwproxy's own, as in its TOML format: Atlas had no such bound.
            "max-client-connections" => {
                c.max_client_connections =
                    Some(super::max_client_connections(number(v).map_err(err)?))
            }
            "max-connections" | "max_conn_for_a_backend" => {
                max_connections = match number(v).map_err(err)? {
                    0 => u32::MAX,
                    n => u32::try_from(n).map_err(|_| err(format!("value {n} is too large")))?,
                }
            }
            // Atlas had no TLS; rwproxy's TLS options are in its own format only, so an
            // Atlas file keeps meaning what it meant to Atlas.
            "ssl-cert"
            | "ssl-key"
            | "ssl-ca"
            | "require-secure-transport"
            | "backend-ssl"
            | "backend-ssl-ca" => {
                return Err(err(
                    "TLS is configured in rwproxy's TOML format ([proxy] section), \
                     not in an Atlas .cnf file"
                        .into(),
                ))
            }
            // Atlas rewrote `t` to its sub-tables `t_0`…`t_N-1`; ignored, every statement on a
            // sharded table would reach a table `t` that is empty or missing. An empty value
            // shards nothing.
            "tables" if !v.is_empty() => {
                return Err(err(format!(
                    "Atlas's table sharding ('{v}') is not supported by rwproxy: queries would \
                     reach the unsharded table; remove the key to run without sharding"
                )))
            }
            "tables" => {}
            k if IGNORED.contains(&k) => c.warnings.push(format!(
                "{}:{line}: ignoring Atlas option '{k}': it has no meaning in rwproxy",
                path.display()
            )),
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    Some(line),
                    None,
                    format!("unknown key '{key}' in [{SECTION}]"),
                ))
            }
        }
    }

    let rw = rw.unwrap_or_else(|| {
        // Atlas's own fallback when proxy-backend-addresses is absent.
        c.warnings.push(format!(
            "{}: proxy-backend-addresses not set; using Atlas's default 127.0.0.1:3306",
            path.display()
        ));
        vec![(
            format!("127.0.0.1:{}", defaults::BACKEND_PORT),
            defaults::WEIGHT,
        )]
    });
    let with_role = |role: Role| {
        move |(address, weight): (String, u32)| BackendConfig {
            address,
            role,
            weight,
            max_connections,
            offline: false,
        }
    };
    c.backends = rw.into_iter().map(with_role(Role::ReadWrite)).collect();
    c.backends
        .extend(ro.into_iter().map(with_role(Role::ReadOnly)));
    if c.backends.is_empty() {
        // The last of repeated lines: it is the one that counts.
        let line = seen
            .iter()
            .rfind(|(k, _)| *k == "proxy-backend-addresses")
            .map(|(_, l)| *l);
        return Err(ConfigError::invalid(
            path,
            line,
            Some("proxy-backend-addresses"),
            "no backends configured",
        ));
    }
    check_unique(path, &c.backends, backend_name, |i| {
        let key = match c.backends[i].role {
            Role::ReadWrite => "proxy-backend-addresses",
            Role::ReadOnly => "proxy-read-only-backend-addresses",
        };
        let line = seen.iter().rfind(|(k, _)| *k == key).map(|(_, l)| *l);
        (line, key.to_string())
    })?;
    check_unique(path, &c.users, user_name, |i| {
        (user_lines.get(i).copied(), "pwds".to_string())
    })?;
    c.interactive_timeout = super::interactive_timeout(c.wait_timeout, interactive_timeout)
        .expect("checked at its line");
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parse_text(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("conf/x.cnf"), text)
    }

    fn err(text: &str) -> String {
        parse_text(text).unwrap_err().to_string()
    }

    /// What rwproxy ignores or fills in is kept with the config (the log is not open yet
    /// when the file is read: these warnings were lost).
    #[test]
    fn what_is_ignored_or_filled_in_is_kept_as_warnings() {
        let c = parse_text(
            "[mysql-proxy]\nplugins = proxy\nevent-threads = 2\nevent-threads = 3\n\
             [mysql-proxy-backends]\nproxy-backend-addresses = 10.1.1.1:3306\n",
        )
        .unwrap();
        assert_eq!(
            c.warnings,
            [
                "conf/x.cnf:5: ignoring group [mysql-proxy-backends]: rwproxy, like Atlas, only reads [mysql-proxy]",
                "conf/x.cnf:2: ignoring Atlas option 'plugins': it has no meaning in rwproxy",
                "conf/x.cnf:4: 'event-threads' repeats line 3; the last value wins",
                "conf/x.cnf: proxy-backend-addresses not set; using Atlas's default 127.0.0.1:3306",
            ]
        );
    }

    const FULL: &str = "\
# an Atlas 2.2.1 file
[mysql-proxy]
admin-username = root
admin-password = toor
proxy-backend-addresses = 10.0.0.1:3306, db0.example.com
proxy-read-only-backend-addresses = 10.0.0.2:3307@1,10.0.0.3@3, [::1]:3309@2
pwds = app:HJBoxfRsjeI=, report:/iZxz+0GRoA=
daemon = true
keepalive = true
event-threads = 8
log-level = message
log-path = /usr/local/mysql-proxy/log
sql-log = REALTIME
sql-log-slow = 10
instance = test
proxy-address = 0.0.0.0:1234
admin-address = 0.0.0.0:2345
charset = utf8
client-ips = 127.0.0.1, 192.168.1
wait-timeout = 60
max-connections = 300
max-allowed-packet = 268435456
max-prepared-memory = 2097152
max-client-connections = 5000
max-open-files = 65536
; GLib-style comment
lvs-ips = 192.168.1.1
tables =
plugins = admin, proxy
";

    #[test]
    fn every_key() {
        let c = parse_text(FULL).unwrap();
        assert_eq!(c.format, ConfigFormat::Atlas);
        assert_eq!(c.admin_username, "root");
        assert_eq!(c.admin_password, "toor");
        let b: Vec<(&str, Role, u32, u32)> = c
            .backends
            .iter()
            .map(|b| (b.address.as_str(), b.role, b.weight, b.max_connections))
            .collect();
        assert_eq!(
            b,
            [
                ("10.0.0.1:3306", Role::ReadWrite, 1, 300),
                ("db0.example.com:3306", Role::ReadWrite, 1, 300),
                ("10.0.0.2:3307", Role::ReadOnly, 1, 300),
                ("10.0.0.3:3306", Role::ReadOnly, 3, 300),
                ("[::1]:3309", Role::ReadOnly, 2, 300),
            ]
        );
        assert_eq!(
            c.users,
            [
                UserConfig {
                    name: "app".into(),
                    password: "mypwd".into()
                },
                UserConfig {
                    name: "report".into(),
                    password: "123456".into()
                }
            ]
        );
        assert!(c.daemon && c.keepalive);
        assert_eq!(c.event_threads, 8);
        assert_eq!(c.log_level, "info");
        assert_eq!(
            c.log_path,
            Some(PathBuf::from("/usr/local/mysql-proxy/log"))
        );
        assert_eq!(c.sql_log, SqlLog::Realtime);
        assert_eq!(c.sql_log_slow_ms, Some(10));
        assert_eq!(c.instance, "test");
        assert_eq!(c.listen, "0.0.0.0:1234".parse().unwrap());
        assert_eq!(c.admin_listen, "0.0.0.0:2345".parse().unwrap());
        assert_eq!(c.charset.as_deref(), Some("utf8"));
        assert_eq!(c.client_ips, ["127.0.0.1", "192.168.1"]);
        assert_eq!(c.wait_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.interactive_timeout, Some(Duration::from_secs(28_800)));
        assert_eq!(c.max_allowed_packet, 256 << 20);
        assert_eq!(c.max_prepared_memory, 2 << 20);
        assert_eq!(c.max_client_connections, Some(5000));
        assert_eq!(c.max_open_files, Some(65536));
        let c = parse(
            Path::new("x.cnf"),
            "[mysql-proxy]\nwait-timeout = 60\ninteractive-timeout = 600\n",
        )
        .unwrap();
        assert_eq!(c.interactive_timeout, Some(Duration::from_secs(600)));
    }

    #[test]
    fn atlas_defaults() {
        let c = parse(Path::new("/etc/atlas/shop.cnf"), "[mysql-proxy]\n").unwrap();
        assert_eq!(c.instance, "shop");
        assert_eq!(c.listen, "0.0.0.0:1234".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:2345".parse().unwrap());
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.backends[0].address, "127.0.0.1:3306");
        assert_eq!(c.backends[0].role, Role::ReadWrite);
        assert_eq!(c.backends[0].max_connections, 200);
        assert_eq!(c.wait_timeout, None);
        assert_eq!(c.interactive_timeout, None);
        assert_eq!(c.sql_log, SqlLog::Off);
        assert_eq!(c.log_level, "info");
        assert!(c.users.is_empty());
        assert_eq!((c.max_client_connections, c.max_open_files), (None, None));

        let c = parse_text(
            "[mysql-proxy]\nmax_conn_for_a_backend = 0\nsql-log-slow = 0\nmax-client-connections = 0\n",
        );
        let c = c.unwrap();
        assert_eq!(c.backends[0].max_connections, u32::MAX);
        assert_eq!(c.max_client_connections, Some(usize::MAX));
        assert_eq!(
            err("[mysql-proxy]\nmax-open-files = 63\n"),
            "conf/x.cnf:2: max-open-files: must be at least 64 (the proxy's listeners, event \
             threads, logs and monitor need a few dozen descriptors)"
        );
        assert_eq!(c.sql_log_slow_ms, None);
        assert_eq!(
            err("[mysql-proxy]\nmax-prepared-memory = 1000\n"),
            "conf/x.cnf:2: max-prepared-memory: must be at least 1048576 bytes (1 MiB)"
        );
        assert_eq!(
            err("[mysql-proxy]\nmax-allowed-packet = 1023\n"),
            "conf/x.cnf:2: max-allowed-packet: must be between 1024 and 1073741824 bytes (1 GiB)"
        );
    }

    #[test]
    fn log_levels_map_to_tracing() {
        for (atlas, tracing) in [
            ("message", "info"),
            ("warning", "warn"),
            ("critical", "error"),
            ("error", "error"),
            ("debug", "debug"),
        ] {
            let c = parse_text(&format!("[mysql-proxy]\nlog-level = {atlas}\n")).unwrap();
            assert_eq!(c.log_level, tracing);
        }
        assert_eq!(
            err("[mysql-proxy]\nlog-level = chatty\n"),
            format!("conf/x.cnf:2: log-level: unknown level 'chatty': {LOG_LEVEL_HELP}")
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        assert_eq!(
            err("[mysql-proxy]\n\n# c\nproxy-adress = 0.0.0.0:1\n"),
            "conf/x.cnf:4: unknown key 'proxy-adress' in [mysql-proxy]"
        );
    }

    /// Sharding ignored would send every statement on a sharded table to the unsharded one.
    #[test]
    fn table_sharding_is_refused() {
        assert_eq!(
            err("[mysql-proxy]\ntables = person.mt.id.3\n"),
            "conf/x.cnf:2: tables: Atlas's table sharding ('person.mt.id.3') is not supported by \
             rwproxy: queries would reach the unsharded table; remove the key to run without \
             sharding"
        );
        let c = parse_text("[mysql-proxy]\ntables =\nproxy-backend-addresses = db:3306\n");
        assert!(c.unwrap().warnings.is_empty());
    }

    #[test]
    fn tls_keys_point_to_the_toml_format() {
        assert_eq!(
            err("[mysql-proxy]\nssl-cert = /etc/cert.pem\n"),
            "conf/x.cnf:2: ssl-cert: TLS is configured in rwproxy's TOML format ([proxy] section), \
             not in an Atlas .cnf file"
        );
    }

    #[test]
    fn bad_values_name_key_and_line() {
        assert_eq!(
            err("[mysql-proxy]\nproxy-backend-addresses = 10.0.0.1:3306, bad host\n"),
            "conf/x.cnf:2: proxy-backend-addresses: invalid address 'bad host' (expected host[:port])"
        );
        assert!(err("[mysql-proxy]\nproxy-address = 0.0.0.0\n")
            .starts_with("conf/x.cnf:2: proxy-address: invalid listen address"));
        assert!(
            err("[mysql-proxy]\nadmin-address = x:1\n").starts_with("conf/x.cnf:2: admin-address:")
        );
        assert!(err("[mysql-proxy]\ndaemon = ture\n")
            .starts_with("conf/x.cnf:2: daemon: invalid value"));
        for threads in ["-1", "1025", "18446744073709551615"] {
            assert!(
                err(&format!("[mysql-proxy]\nevent-threads = {threads}\n"))
                    .starts_with("conf/x.cnf:2: event-threads:"),
                "{threads}"
            );
        }
        assert!(
            err("[mysql-proxy]\nwait-timeout = soon\n").starts_with("conf/x.cnf:2: wait-timeout:")
        );
        assert!(err("[mysql-proxy]\nsql-log = YES\n").starts_with("conf/x.cnf:2: sql-log: unknown"));
        assert!(err("[mysql-proxy]\nclient-ips = 1.2.3.999\n")
            .starts_with("conf/x.cnf:2: client-ips: invalid client address '1.2.3.999'"));
        assert!(err("[mysql-proxy]\ninstance =\n").contains("instance name is empty"));
        assert_eq!(
            err("[mysql-proxy]\nproxy-backend-addresses = h:1\nproxy-read-only-backend-addresses = h:2, H:2@3\n"),
            "conf/x.cnf:3: proxy-read-only-backend-addresses: duplicate backend 'h:2' (ro)"
        );
        // The same server in both roles is allowed (a failover adds before it removes).
        assert!(
            parse(Path::new("conf/x.cnf"), "[mysql-proxy]\nproxy-backend-addresses = h:1\nproxy-read-only-backend-addresses = h:1\n").is_ok()
        );
        assert!(err("[mysql-proxy]\ncharset = utf-8\n")
            .starts_with("conf/x.cnf:2: charset: unknown character set 'utf-8'"));
    }

    #[test]
    fn weights() {
        assert_eq!(
            err("[mysql-proxy]\nproxy-read-only-backend-addresses = 10.0.0.2:3306@0\n"),
            "conf/x.cnf:2: proxy-read-only-backend-addresses: weight must be at least 1 in '10.0.0.2:3306@0'"
        );
        assert!(
            err("[mysql-proxy]\nproxy-read-only-backend-addresses = h:1@x\n")
                .contains("invalid weight 'x'")
        );
        let c = parse_text("[mysql-proxy]\nproxy-backend-addresses = h:1@5\n").unwrap();
        assert_eq!(c.backends[0].weight, 5);
    }

    #[test]
    fn pwds() {
        let e = err("[mysql-proxy]\npwds = app:plaintext\n");
        assert!(
            e.starts_with("conf/x.cnf:2: pwds: cannot decrypt password of user 'app'"),
            "{e}"
        );
        assert!(err("[mysql-proxy]\npwds = app\n").contains("expected user:encrypted_password"));
        assert!(err("[mysql-proxy]\npwds = :HJBoxfRsjeI=\n").contains("invalid entry"));
        assert_eq!(
            err("[mysql-proxy]\npwds = a:HJBoxfRsjeI=, a:/iZxz+0GRoA=\n"),
            "conf/x.cnf:2: pwds: duplicate user 'a'"
        );
        // The last `pwds` line wins, like GLib's key file.
        let c =
            parse_text("[mysql-proxy]\npwds = a:HJBoxfRsjeI=\npwds = b:/iZxz+0GRoA=\n").unwrap();
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.users[0].name, "b");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            err("proxy-address = :1\n[mysql-proxy]\n"),
            "conf/x.cnf:1: proxy-address: key outside any group (put it under [mysql-proxy])"
        );
        assert_eq!(
            err("[mysql-proxy]\njust some words\n"),
            "conf/x.cnf:2: expected 'key = value', found 'just some words'"
        );
        assert!(err("[mysql-proxy\n").starts_with("conf/x.cnf:1: malformed group header"));
        assert!(err("[other]\nx = 1\n").contains("no [mysql-proxy] group"));
        assert!(err("[mysql-proxy]\n= 1\n").contains("missing key"));
        // Other groups are skipped, unknown keys in them included.
        let c = parse_text("[mysql-proxy]\ninstance = a\n[client]\nwhatever = 1\n").unwrap();
        assert_eq!(c.instance, "a");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "",
            "\u{feff}[mysql-proxy]",
            "[]",
            "[mysql-proxy]\n=",
            "[mysql-proxy]\nproxy-backend-addresses = ,,,",
            "[mysql-proxy]\nproxy-read-only-backend-addresses = @@@",
            "[mysql-proxy]\npwds = :::,",
            "[mysql-proxy]\nmax-connections = 99999999999999",
            "[mysql-proxy]\nclient-ips = /,.,*",
        ] {
            let _ = parse_text(text);
        }
        assert!(parse_text("[mysql-proxy]\nproxy-backend-addresses = ,,,").is_err());
    }
}
