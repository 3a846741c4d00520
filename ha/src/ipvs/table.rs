//! The kernel table printed the way `ipvsadm -Ln` (and `-Ln --stats`) prints it, so scripts
//! and eyes used to ipvsadm read `rwproxy ipvs list` without surprises.

use std::fmt::Write;

use std::net::IpAddr;

use super::dest::{DestEntry, Info, ServiceEntry};
use super::service::{Endpoint, Family, ServiceFlags, ServiceKey};

/// Columns to print after the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Scheduler, flags, forwarding, weight, connections (`ipvsadm -Ln`).
    Plain,
    /// Traffic counters (`ipvsadm -Ln --stats`).
    Stats,
}

/// ipvsadm's service column: `TCP  10.0.0.1:3306` (two spaces), `FWM  7`.
fn service_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => format!("{protocol}  {}", Endpoint(addr, *port)),
        ServiceKey::Fwmark { family, mark } => match family {
            Family::V4 => format!("FWM  {mark}"),
            Family::V6 => format!("FWM  {mark} IPv6"),
        },
    }
}

/// ipvsadm's counter column: exact below 100 million, then K/M/G/T.
fn largenum(out: &mut String, n: u64) {
    let _ = match n {
        0..=99_999_999 => write!(out, "{n:>9}"),
        100_000_000..=999_999_999 => write!(out, "{:>8}K", n / 1_000),
        1_000_000_000..=99_999_999_999 => write!(out, "{:>8}M", n / 1_000_000),
        100_000_000_000..=99_999_999_999_999 => write!(out, "{:>8}G", n / 1_000_000_000),
        _ => write!(out, "{:>8}T", n / 1_000_000_000_000),
    };
}

fn stats_cols(out: &mut String, s: &super::Stats) {
    for n in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
        largenum(out, n);
    }
}

/// The address as the four big-endian words of `union nf_inet_addr`.
fn words(a: &IpAddr) -> [u32; 4] {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b = v6.octets(),
    }
    [0, 4, 8, 12].map(|i| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]))
}

/// ipvsadm orders by `a - b` computed in C `int`s, which wraps: 192.0.2.23 sorts before
/// 10.1.0.5. Same arithmetic here, so the listings match line for line.
fn c_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn cmp_addrs(a: &IpAddr, b: &IpAddr) -> i32 {
    let (a, b) = (words(a), words(b));
    (0..4)
        .map(|i| c_diff(a[i], b[i]))
        .find(|&r| r != 0)
        .unwrap_or(0)
}

fn cmp_services(a: &ServiceEntry, b: &ServiceEntry) -> i32 {
    let part = |k: &ServiceKey| match *k {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => (0, Family::of(&addr), protocol.number(), Some(addr), port),
        ServiceKey::Fwmark { family, mark } => (mark, family, 0, None, 0),
    };
    let (am, af, ap, aa, aport) = part(&a.service.key);
    let (bm, bf, bp, ba, bport) = part(&b.service.key);
    [
        c_diff(am, bm),
        c_diff(u32::from(af.number()), u32::from(bf.number())),
        c_diff(u32::from(ap), u32::from(bp)),
        match (aa, ba) {
            (Some(x), Some(y)) if af == Family::V4 => c_diff(words(&x)[0], words(&y)[0]),
            (Some(x), Some(y)) => cmp_addrs(&x, &y),
            _ => 0,
        },
        c_diff(u32::from(aport), u32::from(bport)),
    ]
    .into_iter()
    .find(|&r| r != 0)
    .unwrap_or(0)
}

fn cmp_dests(a: &DestEntry, b: &DestEntry) -> i32 {
    match cmp_addrs(&a.dest.addr, &b.dest.addr) {
        0 => c_diff(u32::from(a.dest.port), u32::from(b.dest.port)),
        r => r,
    }
}

/// A stable insertion sort: the comparator above is not a total order (it wraps), which the
/// standard library's sorts may reject; these lists are short.
fn sorted<T: Clone>(items: &[T], cmp: impl Fn(&T, &T) -> i32) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for it in items {
        let at = out
            .iter()
            .rposition(|o| cmp(o, it) <= 0)
            .map_or(0, |i| i + 1);
        out.insert(at, it.clone());
    }
    out
}

/// Renders the table, header included, in ipvsadm's order.
pub fn render(info: &Info, services: &[ServiceEntry], format: Format) -> String {
    let mut out = format!("{info}\n");
    match format {
        Format::Plain => out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        ),
        Format::Stats => out.push_str(
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\n",
        ),
    }
    for e in sorted(services, cmp_services) {
        let s = &e.service;
        let name = service_name(&s.key);
        match format {
            Format::Plain => {
                let _ = write!(out, "{name} {}", s.scheduler);
                if s.flags.contains(ServiceFlags::PERSISTENT) {
                    let _ = write!(out, " persistent {}", s.timeout);
                    match s.key.family() {
                        Family::V4 if s.netmask != u32::MAX => {
                            let _ = write!(out, " mask {}", s.netmask_v4());
                        }
                        Family::V6 if s.netmask != 128 => {
                            let _ = write!(out, " mask {}", s.netmask);
                        }
                        _ => {}
                    }
                }
                if s.flags.contains(ServiceFlags::ONEPACKET) {
                    out.push_str(" ops");
                }
            }
            Format::Stats => {
                let _ = write!(out, "{name:<33}");
                stats_cols(&mut out, &e.stats);
            }
        }
        out.push('\n');
        for d in sorted(&e.dests, cmp_dests) {
            let addr = Endpoint(&d.dest.addr, d.dest.port).to_string();
            match format {
                Format::Plain => {
                    let _ = writeln!(
                        out,
                        "  -> {addr:<28} {:<7} {:<6} {:<10} {:<10}",
                        d.dest.forward.to_string(),
                        d.dest.weight,
                        d.active_conns,
                        d.inact_conns
                    );
                }
                Format::Stats => {
                    let _ = write!(out, "  -> {addr:<28}");
                    stats_cols(&mut out, &d.stats);
                    out.push('\n');
                }
            }
        }
    }
    out
}
