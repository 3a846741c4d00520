//! The `[ha]` section of rwproxy's TOML: VRRP instances for the write VIP, IPVS virtual
//! servers for the read VIP.
//!
//! Keys keep keepalived's names (underscores included) so a `vrrp_instance` block of a
//! keepalived.conf translates line by line; see `conf/rwproxy.toml` for the reference.

use rwproxy_ha::db::DbTarget;
use rwproxy_ha::failover::{FailoverConfig, RemoteProxy};
use rwproxy_ha::ipvs::check::{Check, RealServer, VirtualServer};
use rwproxy_ha::ipvs::director::DirectorConfig;
use rwproxy_ha::ipvs::{Family, Forward, Protocol, Service, ServiceKey};
use rwproxy_ha::vrrp::{Instance, NotifyConfig, TrackScript, Version, Vip};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HaToml {
    notify_timeout: Option<DurationToml>,
    #[serde(default)]
    vrrp: Vec<VrrpToml>,
    ipvs: Option<IpvsToml>,
    failover: Option<FailoverToml>,
}

/// `[ha.failover]`: the local database the built-in `promote` / `rejoin` actions act on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverToml {
    address: String,
    user: String,
    #[serde(default)]
    password: String,
    replication_user: Option<String>,
    #[serde(default)]
    replication_password: String,
    primary: Option<String>,
    drain_timeout: Option<DurationToml>,
    #[serde(default)]
    promote_anyway: bool,
    interval: Option<DurationToml>,
    connect_timeout: Option<DurationToml>,
    read_weight: Option<u32>,
    #[serde(default)]
    remote_proxies: Vec<String>,
    remote_admin_user: Option<String>,
    remote_admin_password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IpvsToml {
    vrrp_instance: Option<String>,
    #[serde(default)]
    virtual_server: Vec<VirtualServerToml>,
}

/// keepalived's `virtual_server` block; `check` chooses between the built-in
/// `check_slave.sh` and a `MISC_CHECK` script.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VirtualServerToml {
    ip: Option<std::net::IpAddr>,
    port: Option<u16>,
    fwmark: Option<u32>,
    protocol: Option<String>,
    lb_algo: Option<String>,
    lb_kind: Option<String>,
    persistence_timeout: Option<u32>,
    persistence_granularity: Option<String>,
    delay_loop: Option<DurationToml>,
    quorum: Option<u32>,
    sorry_server: Option<std::net::SocketAddr>,
    #[serde(default)]
    inhibit_on_failure: bool,
    check: Option<String>,
    user: Option<String>,
    password: Option<String>,
    max_lag: Option<DurationToml>,
    connect_timeout: Option<DurationToml>,
    misc_path: Option<String>,
    misc_timeout: Option<DurationToml>,
    #[serde(default)]
    misc_dynamic: bool,
    #[serde(default)]
    real_server: Vec<RealServerToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealServerToml {
    ip: std::net::IpAddr,
    port: Option<u16>,
    weight: Option<u32>,
}

/// keepalived writes intervals in (fractional) seconds; `"100ms"`, `"1.5s"`, `"2m"` are
/// accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationToml {
    Seconds(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VrrpToml {
    name: String,
    interface: String,
    virtual_router_id: u8,
    priority: u8,
    version: Option<u8>,
    advert_int: Option<DurationToml>,
    virtual_ipaddress: Vec<String>,
    /// keepalived's initial `state`; accepted for compatibility, the RFC decides the start.
    state: Option<String>,
    #[serde(default)]
    nopreempt: bool,
    preempt_delay: Option<DurationToml>,
    auth_pass: Option<String>,
    unicast_src_ip: Option<Ipv4Addr>,
    #[serde(default)]
    unicast_peer: Vec<Ipv4Addr>,
    garp_master_repeat: Option<u32>,
    garp_master_delay: Option<DurationToml>,
    garp_master_refresh: Option<DurationToml>,
    track_interface: Option<bool>,
    notify_master: Option<String>,
    notify_backup: Option<String>,
    notify_fault: Option<String>,
    notify_stop: Option<String>,
    notify: Option<String>,
    on_master: Option<String>,
    on_backup: Option<String>,
    #[serde(default)]
    track_script: Vec<TrackScriptToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackScriptToml {
    name: String,
    script: String,
    interval: Option<DurationToml>,
    timeout: Option<DurationToml>,
    weight: Option<i32>,
    rise: Option<u32>,
    fall: Option<u32>,
}

fn duration(d: &DurationToml) -> Result<Duration, String> {
    let bad =
        || "expected seconds (1, 0.5) or a duration like \"100ms\", \"1s\", \"2m\"".to_string();
    let secs = match d {
        DurationToml::Seconds(s) => *s,
        DurationToml::Text(t) => {
            let t = t.trim();
            let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
                Some(i) => (&t[..i], &t[i..]),
                None => (t, "s"),
            };
            let n: f64 = num.trim().parse().map_err(|_| bad())?;
            match unit {
                "ms" => n / 1000.0,
                "s" => n,
                "m" => n * 60.0,
                _ => return Err(bad()),
            }
        }
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Keys whose 0 has a meaning (no delay, no refresh, no drain, no lag). Any other duration of 0 is a
/// slip that would break HA outright: a 0 `notify_timeout` kills every hook at once, a 0
/// `interval` spins.
const ZERO_ALLOWED: &[&str] = &[
    "preempt_delay",
    "garp_master_delay",
    "garp_master_refresh",
    "drain_timeout",
    // A replica must be fully caught up.
    "max_lag",
];

/// Key `k` of a section, or `default` when it is absent.
fn duration_or(d: &Option<DurationToml>, k: &str, default: Duration) -> Result<Duration, String> {
    let Some(d) = d else { return Ok(default) };
    let d = duration(d)?;
    if d.is_zero() && !ZERO_ALLOWED.contains(&k) {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

/// Turns the section into VRRP instances; errors are `(key, message)`.
pub(super) fn instances(ha: &HaToml) -> Result<Vec<Instance>, (String, String)> {
    let notify_timeout = match &ha.notify_timeout {
        Some(_) => Some(
            duration_or(&ha.notify_timeout, "notify_timeout", Duration::ZERO)
                .map_err(|m| ("ha.notify_timeout".to_string(), m))?,
        ),
        None => None,
    };
    let mut out = Vec::with_capacity(ha.vrrp.len());
    for (i, v) in ha.vrrp.iter().enumerate() {
        let key = |k: &str| format!("ha.vrrp[{i}].{k}");
        let dur = |d: &Option<DurationToml>, k: &str, default: Duration| {
            duration_or(d, k, default).map_err(|m| (key(k), m))
        };
        let vips = v
            .virtual_ipaddress
            .iter()
            .map(|s| s.parse::<Vip>().map_err(|m| (key("virtual_ipaddress"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut inst = Instance::new(&v.name, &v.interface, v.virtual_router_id, v.priority, vips);
        inst.version = match v.version.unwrap_or(2) {
            2 => Version::V2,
            3 => Version::V3,
            n => return Err((key("version"), format!("{n}: expected 2 or 3"))),
        };
        inst.advert_int = dur(&v.advert_int, "advert_int", inst.advert_int)?;
        if let Some(s) = &v.state {
            if !matches!(s.to_ascii_uppercase().as_str(), "MASTER" | "BACKUP") {
                return Err((key("state"), format!("'{s}': expected MASTER or BACKUP")));
            }
        }
        inst.preempt = !v.nopreempt;
        inst.preempt_delay = dur(&v.preempt_delay, "preempt_delay", inst.preempt_delay)?;
        inst.auth_pass = v.auth_pass.clone();
        inst.unicast_src_ip = v.unicast_src_ip;
        inst.unicast_peer = v.unicast_peer.clone();
        inst.garp_master_repeat = v.garp_master_repeat.unwrap_or(inst.garp_master_repeat);
        inst.garp_master_delay = dur(
            &v.garp_master_delay,
            "garp_master_delay",
            inst.garp_master_delay,
        )?;
        inst.garp_master_refresh = dur(
            &v.garp_master_refresh,
            "garp_master_refresh",
            inst.garp_master_refresh,
        )?;
        inst.track_interface = v.track_interface.unwrap_or(inst.track_interface);
        inst.notify = NotifyConfig {
            master: v.notify_master.clone(),
            backup: v.notify_backup.clone(),
            fault: v.notify_fault.clone(),
            stop: v.notify_stop.clone(),
            notify: v.notify.clone(),
            timeout: notify_timeout,
        };
        for (j, t) in v.track_script.iter().enumerate() {
            let tkey = |k: &str| format!("ha.vrrp[{i}].track_script[{j}].{k}");
            let tdur = |d: &Option<DurationToml>, k: &str, default: Duration| {
                duration_or(d, k, default).map_err(|m| (tkey(k), m))
            };
            inst.track_script.push(TrackScript {
                name: t.name.clone(),
                script: t.script.clone(),
                interval: tdur(&t.interval, "interval", Duration::from_secs(1))?,
                timeout: tdur(&t.timeout, "timeout", Duration::from_secs(1))?,
                weight: t.weight.unwrap_or(0),
                rise: t.rise.unwrap_or(1),
                fall: t.fall.unwrap_or(1),
            });
        }
        // A missing interface is not an error here: it may come up after rwproxy (a VLAN or
        // bond made by the network scripts), and check-config may run on another host. The
        // instance reports it when it starts, and the console shows it as FAULT.
        inst.validate()
            .map_err(|e| (key(e.key), e.message.to_string()))?;
        out.push(inst);
    }
    Ok(out)
}

fn host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// The `[ha.failover]` section with the instance whose `on_master` / `on_backup` drive it.
/// `admin` is this node's admin login, the default for the remote proxies.
pub(super) fn failover(
    ha: &HaToml,
    admin: (&str, &str),
) -> Result<Option<FailoverConfig>, (String, String)> {
    let mut bound = None;
    for (i, v) in ha.vrrp.iter().enumerate() {
        let key = |k: &str| format!("ha.vrrp[{i}].{k}");
        let promote = match v.on_master.as_deref() {
            None => false,
            Some("promote") => true,
            Some(o) => return Err((key("on_master"), format!("'{o}': expected \"promote\""))),
        };
        let rejoin = match v.on_backup.as_deref() {
            None => false,
            Some("rejoin") => true,
            Some(o) => return Err((key("on_backup"), format!("'{o}': expected \"rejoin\""))),
        };
        if promote || rejoin {
            if bound.is_some() {
                return Err((
                    key("on_master"),
                    "only one [[ha.vrrp]] instance may carry on_master / on_backup: there is one local database".into(),
                ));
            }
            bound = Some((v.name.clone(), promote, rejoin));
        }
    }
    let Some(f) = &ha.failover else {
        return match bound {
            Some(_) => Err((
                "ha.failover".into(),
                "on_master / on_backup need an [ha.failover] section (the local database)".into(),
            )),
            None => Ok(None),
        };
    };
    // No instance of ours carries the actions: keepalived runs VRRP and calls
    // `rwproxy notify`, which promotes on MASTER and rejoins on BACKUP.
    let (instance, promote, rejoin) = match bound {
        Some((name, promote, rejoin)) => (Some(name), promote, rejoin),
        None => (None, true, true),
    };
    let key = |k: &str| format!("ha.failover.{k}");
    let dur = |d: &Option<DurationToml>, k: &str, default: Duration| {
        duration_or(d, k, default).map_err(|m| (key(k), m))
    };
    if !host_port(&f.address) {
        return Err((
            key("address"),
            format!("'{}': expected host:port", f.address),
        ));
    }
    if let Some(p) = f.primary.as_ref().filter(|p| !host_port(p)) {
        return Err((key("primary"), format!("'{p}': expected host:port")));
    }
    let replication_user = match (&f.replication_user, rejoin) {
        (Some(u), _) => u.clone(),
        (None, false) => String::new(),
        (None, true) => {
            return Err((
                key("replication_user"),
                "required with on_backup = \"rejoin\"".into(),
            ))
        }
    };
    let remote_proxies = f
        .remote_proxies
        .iter()
        .map(|a| {
            if !host_port(a) {
                return Err((key("remote_proxies"), format!("'{a}': expected host:port")));
            }
            Ok(RemoteProxy {
                address: a.clone(),
                user: f
                    .remote_admin_user
                    .clone()
                    .unwrap_or_else(|| admin.0.to_string()),
                password: f
                    .remote_admin_password
                    .clone()
                    .unwrap_or_else(|| admin.1.to_string()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let read_weight = f.read_weight.unwrap_or(1);
    if read_weight == 0 {
        return Err((key("read_weight"), "must be at least 1".into()));
    }
    Ok(Some(FailoverConfig {
        instance,
        promote,
        rejoin,
        local: DbTarget {
            address: f.address.clone(),
            user: f.user.clone(),
            password: f.password.clone(),
            timeout: dur(
                &f.connect_timeout,
                "connect_timeout",
                Duration::from_secs(2),
            )?,
        },
        peers: Vec::new(),
        replication_user,
        replication_password: f.replication_password.clone(),
        primary: f.primary.clone(),
        drain_timeout: dur(&f.drain_timeout, "drain_timeout", Duration::from_secs(30))?,
        promote_anyway: f.promote_anyway,
        interval: dur(&f.interval, "interval", Duration::from_secs(1))?,
        read_weight,
        remote_proxies,
    }))
}

/// `persistence_granularity`: a netmask (`255.255.255.0`, as keepalived) or a prefix length.
fn granularity(s: &str, family: Family) -> Result<u8, String> {
    let max = if family == Family::V4 { 32 } else { 128 };
    if let Ok(n) = s.parse::<u8>() {
        if n <= max {
            return Ok(n);
        }
    }
    if family == Family::V4 {
        if let Ok(mask) = s.parse::<Ipv4Addr>() {
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() == 32 {
                return Ok(bits.leading_ones() as u8);
            }
        }
    }
    Err(format!(
        "'{s}': expected a netmask like 255.255.255.0 or a prefix length 0-{max}"
    ))
}

/// The `[ha.ipvs]` section. Virtual servers without `real_server` tables balance over the
/// proxy's read backends (`read_backends`: address, weight), resolved now.
pub(super) fn ipvs(
    ha: &HaToml,
    read_backends: &[(String, u32)],
) -> Result<DirectorConfig, (String, String)> {
    let Some(section) = &ha.ipvs else {
        return Ok(DirectorConfig::default());
    };
    if let Some(name) = &section.vrrp_instance {
        if !ha.vrrp.iter().any(|v| &v.name == name) {
            return Err((
                "ha.ipvs.vrrp_instance".into(),
                format!("no [[ha.vrrp]] instance is named '{name}'"),
            ));
        }
    }
    let mut out = Vec::with_capacity(section.virtual_server.len());
    for (i, v) in section.virtual_server.iter().enumerate() {
        let key = |k: &str| format!("ha.ipvs.virtual_server[{i}].{k}");
        let dur = |d: &Option<DurationToml>, k: &str, default: Duration| {
            duration_or(d, k, default).map_err(|m| (key(k), m))
        };
        let protocol = match &v.protocol {
            Some(p) => p.parse::<Protocol>().map_err(|m| (key("protocol"), m))?,
            None => Protocol::Tcp,
        };
        let svc_key = match (v.ip, v.port, v.fwmark) {
            (Some(addr), Some(port), None) => ServiceKey::Addr {
                protocol,
                addr,
                port,
            },
            (None, None, Some(mark)) if mark > 0 => ServiceKey::Fwmark {
                family: Family::V4,
                mark,
            },
            _ => {
                return Err((
                    key("ip"),
                    "give either ip and port, or a non-zero fwmark".into(),
                ))
            }
        };
        let scheduler = v.lb_algo.clone().unwrap_or_else(|| "wrr".into());
        if scheduler.is_empty()
            || !scheduler
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err((
                key("lb_algo"),
                format!("'{scheduler}': not a scheduler name (rr, wrr, lc, wlc, sh, ...)"),
            ));
        }
        let forward = match &v.lb_kind {
            Some(k) => k.parse::<Forward>().map_err(|m| (key("lb_kind"), m))?,
            None => Forward::Route,
        };
        let mut service = Service::new(svc_key, &scheduler);
        if let Some(t) = v.persistence_timeout.filter(|&t| t > 0) {
            let family = svc_key.family();
            let prefix = match &v.persistence_granularity {
                Some(g) => {
                    granularity(g, family).map_err(|m| (key("persistence_granularity"), m))?
                }
                None if family == Family::V4 => 32,
                None => 128,
            };
            service = service.with_persistence(t, prefix);
        }
        let default_port = v.port.unwrap_or(3306);
        let real_servers = if v.real_server.is_empty() {
            let mut rs = Vec::new();
            for (address, weight) in read_backends {
                use std::net::ToSocketAddrs;
                let addr = address
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        (
                            key("real_server"),
                            format!("read backend '{address}' does not resolve to an address"),
                        )
                    })?;
                rs.push(RealServer {
                    addr,
                    weight: *weight,
                });
            }
            rs
        } else {
            v.real_server
                .iter()
                .map(|r| RealServer {
                    addr: std::net::SocketAddr::new(r.ip, r.port.unwrap_or(default_port)),
                    weight: r.weight.unwrap_or(1),
                })
                .collect()
        };
        if real_servers.is_empty() {
            return Err((
                key("real_server"),
                "no [[...real_server]] tables and no read backends to take them from".into(),
            ));
        }
        let check = match v.check.as_deref().unwrap_or("replication") {
            "replication" => Check::Replication {
                user: v.user.clone().ok_or_else(|| {
                    (
                        key("user"),
                        "required for check = \"replication\"".to_string(),
                    )
                })?,
                password: v.password.clone().unwrap_or_default(),
                max_lag: dur(&v.max_lag, "max_lag", Duration::from_secs(60))?,
                timeout: dur(
                    &v.connect_timeout,
                    "connect_timeout",
                    Duration::from_secs(3),
                )?,
            },
            "misc" => Check::Misc {
                script: v.misc_path.clone().ok_or_else(|| {
                    (
                        key("misc_path"),
                        "required for check = \"misc\"".to_string(),
                    )
                })?,
                timeout: dur(&v.misc_timeout, "misc_timeout", Duration::from_secs(5))?,
                dynamic: v.misc_dynamic,
            },
            "none" => Check::None,
            other => {
                return Err((
                    key("check"),
                    format!("'{other}': expected replication, misc or none"),
                ))
            }
        };
        out.push(VirtualServer {
            service,
            forward,
            real_servers,
            check,
            delay_loop: dur(&v.delay_loop, "delay_loop", Duration::from_secs(6))?,
            inhibit_on_failure: v.inhibit_on_failure,
            quorum: v.quorum.unwrap_or(1),
            sorry_server: v.sorry_server,
        });
    }
    Ok(DirectorConfig {
        virtual_servers: out,
        vrrp_instance: section.vrrp_instance.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_becomes_instances() {
        let text = r#"
            notify_timeout = "5s"
            [[vrrp]]
            name = "VI_1"
            interface = "veth0"
            virtual_router_id = 51
            priority = 150
            version = 3
            advert_int = "100ms"
            virtual_ipaddress = ["192.0.2.100/24", "192.0.2.101"]
            nopreempt = true
            unicast_peer = ["192.0.2.12"]
            notify = "/usr/bin/rwproxy notify"
            [[vrrp.track_script]]
            name = "chk"
            script = "/bin/true"
            weight = -20
            fall = 2
        "#;
        let ha: HaToml = toml::from_str(text).unwrap();
        let v = instances(&ha).unwrap();
        assert_eq!(v.len(), 1);
        let i = &v[0];
        assert_eq!(
            (i.virtual_router_id, i.priority, i.version),
            (51, 150, Version::V3)
        );
        assert_eq!(i.advert_int, Duration::from_millis(100));
        assert_eq!(i.virtual_ipaddress.len(), 2);
        assert!(!i.preempt);
        assert_eq!(i.unicast_peer, vec![Ipv4Addr::new(192, 0, 2, 12)]);
        assert_eq!(i.notify.timeout, Some(Duration::from_secs(5)));
        assert_eq!((i.track_script[0].weight, i.track_script[0].fall), (-20, 2));

        let bad: HaToml = toml::from_str(
            "[[vrrp]]\nname='x'\ninterface='e'\nvirtual_router_id=1\npriority=1\nversion=4\nvirtual_ipaddress=[]\n",
        )
        .unwrap();
        assert_eq!(instances(&bad).unwrap_err().0, "ha.vrrp[0].version");
        assert!(toml::from_str::<HaToml>("[[vrrp]]\nnam='x'\n").is_err());
    }

    #[test]
    fn ipvs_section() {
        let text = r#"
            [[vrrp]]
            name = "VI_1"
            interface = "eth0"
            virtual_router_id = 51
            priority = 150
            virtual_ipaddress = ["192.0.2.100/24"]
            [ipvs]
            vrrp_instance = "VI_1"
            [[ipvs.virtual_server]]
            ip = "192.0.2.200"
            port = 3306
            lb_algo = "wlc"
            lb_kind = "NAT"
            persistence_timeout = 300
            persistence_granularity = "255.255.255.0"
            quorum = 2
            sorry_server = "192.0.2.10:3306"
            inhibit_on_failure = true
            user = "monitor"
            max_lag = 30
            [[ipvs.virtual_server.real_server]]
            ip = "192.0.2.21"
            weight = 3
            [[ipvs.virtual_server]]
            fwmark = 7
            check = "misc"
            misc_path = "/usr/local/bin/check_slave.sh"
            misc_dynamic = true
        "#;
        let ha: HaToml = toml::from_str(text).unwrap();
        let backends = [("127.0.0.1:3307".to_string(), 2)];
        let d = ipvs(&ha, &backends).unwrap();
        assert_eq!(d.vrrp_instance.as_deref(), Some("VI_1"));
        let v = &d.virtual_servers[0];
        assert_eq!(v.service.scheduler, "wlc");
        assert_eq!(v.service.netmask_v4(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(v.service.timeout, 300);
        assert_eq!(v.forward, Forward::Masq);
        assert_eq!(
            v.real_servers,
            vec![RealServer {
                addr: "192.0.2.21:3306".parse().unwrap(),
                weight: 3
            }]
        );
        assert_eq!(
            v.check,
            Check::Replication {
                user: "monitor".into(),
                password: String::new(),
                max_lag: Duration::from_secs(30),
                timeout: Duration::from_secs(3)
            }
        );
        // No real_server tables: the proxy's read backends.
        let f = &d.virtual_servers[1];
        assert_eq!(
            f.real_servers,
            vec![RealServer {
                addr: "127.0.0.1:3307".parse().unwrap(),
                weight: 2
            }]
        );
        assert!(matches!(f.check, Check::Misc { dynamic: true, .. }));

        let err = |t: &str| ipvs(&toml::from_str::<HaToml>(t).unwrap(), &backends).unwrap_err();
        let vs = "[[ipvs.virtual_server]]\nip = '192.0.2.1'\nport = 3306\nuser = 'm'\n";
        assert_eq!(
            err("[ipvs]\nvrrp_instance = 'nope'\n").0,
            "ha.ipvs.vrrp_instance"
        );
        assert_eq!(
            err(&format!("{vs}lb_kind = 'XX'\n")).0,
            "ha.ipvs.virtual_server[0].lb_kind"
        );
        assert_eq!(
            err(&format!("{vs}check = 'tcp'\n")).0,
            "ha.ipvs.virtual_server[0].check"
        );
        assert_eq!(
            err(&format!(
                "{vs}persistence_timeout = 1\npersistence_granularity = '255.0.255.0'\n"
            ))
            .0,
            "ha.ipvs.virtual_server[0].persistence_granularity"
        );
        assert_eq!(
            err("[[ipvs.virtual_server]]\nip = '192.0.2.1'\nport = 1\n").0,
            "ha.ipvs.virtual_server[0].user"
        );
        assert_eq!(
            err("[[ipvs.virtual_server]]\nport = 1\n").0,
            "ha.ipvs.virtual_server[0].ip"
        );
        assert!(ipvs(&toml::from_str::<HaToml>(vs).unwrap(), &[]).is_err());
    }

    #[test]
    fn failover_section() {
        let vrrp = "[[vrrp]]\nname = 'VI_1'\ninterface = 'eth0'\nvirtual_router_id = 51\npriority = 150\nvirtual_ipaddress = ['192.0.2.100/24']\n";
        let parse = |t: &str| failover(&toml::from_str::<HaToml>(t).unwrap(), ("admin", "pw"));
        assert_eq!(parse(vrrp).unwrap(), None);
        let text = format!(
            "{vrrp}on_master = 'promote'\non_backup = 'rejoin'\n[failover]\naddress = '192.0.2.11:3306'\n\
             user = 'ha'\nreplication_user = 'repl'\ndrain_timeout = '5s'\npromote_anyway = true\n\
             remote_proxies = ['192.0.2.12:2345']\n"
        );
        let f = parse(&text).unwrap().unwrap();
        assert_eq!(f.instance.as_deref(), Some("VI_1"));
        assert!(f.promote && f.rejoin && f.promote_anyway);
        assert_eq!(f.drain_timeout, Duration::from_secs(5));
        assert_eq!(f.primary, None);
        assert_eq!(
            f.remote_proxies,
            vec![RemoteProxy {
                address: "192.0.2.12:2345".into(),
                user: "admin".into(),
                password: "pw".into()
            }]
        );
        let err = |t: &str| parse(t).unwrap_err().0;
        assert_eq!(
            err(&format!("{vrrp}on_master = 'yes'\n")),
            "ha.vrrp[0].on_master"
        );
        assert_eq!(
            err(&format!("{vrrp}on_master = 'promote'\n")),
            "ha.failover"
        );
        // Without on_master / on_backup: for `rwproxy notify` from keepalived.
        let k = parse("[failover]\naddress = 'a:1'\nuser = 'u'\nreplication_user = 'r'\n")
            .unwrap()
            .unwrap();
        assert_eq!((k.instance, k.promote, k.rejoin), (None, true, true));
        assert_eq!(
            err(&format!(
                "{vrrp}on_backup = 'rejoin'\n[failover]\naddress = 'a:1'\nuser = 'u'\n"
            )),
            "ha.failover.replication_user"
        );
        assert_eq!(
            err(&format!(
                "{vrrp}on_master = 'promote'\n[failover]\naddress = 'db1'\nuser = 'u'\n"
            )),
            "ha.failover.address"
        );
    }

    #[test]
    fn durations() {
        let t = |s: &str| duration(&DurationToml::Text(s.into()));
        assert_eq!(t("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(t("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(t("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(t("3").unwrap(), Duration::from_secs(3));
        assert_eq!(
            duration(&DurationToml::Seconds(0.25)).unwrap(),
            Duration::from_millis(250)
        );
        for bad in ["", "1h", "x", "-1s"] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_zero_duration_is_refused_where_it_would_break_ha() {
        let vrrp = "[[vrrp]]\nname = 'VI_1'\ninterface = 'eth0'\nvirtual_router_id = 51\npriority = 150\nvirtual_ipaddress = ['192.0.2.100/24']\n";
        let vrrp_err = |t: &str| instances(&toml::from_str::<HaToml>(t).unwrap()).unwrap_err();
        let (key, message) = vrrp_err(&format!("notify_timeout = 0\n{vrrp}"));
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("ha.notify_timeout", "must be more than 0")
        );
        assert_eq!(
            vrrp_err(&format!(
                "{vrrp}[[vrrp.track_script]]\nname = 'c'\nscript = '/bin/true'\ninterval = '0ms'\n"
            ))
            .0,
            "ha.vrrp[0].track_script[0].interval"
        );
        let ok =
            instances(&toml::from_str::<HaToml>(&format!("{vrrp}preempt_delay = 0\n")).unwrap())
                .unwrap();
        assert_eq!(ok[0].preempt_delay, Duration::ZERO);

        let fo = |extra: &str| {
            failover(
                &toml::from_str::<HaToml>(&format!(
                    "[failover]\naddress = 'a:1'\nuser = 'u'\nreplication_user = 'r'\n{extra}"
                ))
                .unwrap(),
                ("admin", "pw"),
            )
        };
        assert_eq!(fo("interval = 0\n").unwrap_err().0, "ha.failover.interval");
        assert_eq!(
            fo("connect_timeout = '0s'\n").unwrap_err().0,
            "ha.failover.connect_timeout"
        );
        assert_eq!(
            fo("drain_timeout = 0\n").unwrap().unwrap().drain_timeout,
            Duration::ZERO
        );
    }
}
