//! The `[ha]` section of rwproxy's TOML: VRRP instances for the write VIP.
//!
//! Keys keep keepalived's names (underscores included) so a `vrrp_instance` block of a
//! keepalived.conf translates line by line; see `conf/rwproxy.toml` for the reference.

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

/// Turns the section into VRRP instances; errors are `(key, message)`.
pub(super) fn instances(ha: &HaToml) -> Result<Vec<Instance>, (String, String)> {
    let notify_timeout = ha
        .notify_timeout
        .as_ref()
        .map(duration)
        .transpose()
        .map_err(|m| ("ha.notify_timeout".to_string(), m))?;
    let mut out = Vec::with_capacity(ha.vrrp.len());
    for (i, v) in ha.vrrp.iter().enumerate() {
        let key = |k: &str| format!("ha.vrrp[{i}].{k}");
        let dur = |d: &Option<DurationToml>, k: &str, default: Duration| {
            d.as_ref()
                .map(duration)
                .transpose()
                .map(|d| d.unwrap_or(default))
                .map_err(|m| (key(k), m))
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
                d.as_ref()
                    .map(duration)
                    .transpose()
                    .map(|d| d.unwrap_or(default))
                    .map_err(|m| (tkey(k), m))
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
        out.push(inst);
    }
    Ok(out)
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
}
