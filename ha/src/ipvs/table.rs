//! The kernel table printed the way `ipvsadm -Ln` (and `-Ln --stats`) prints it, so scripts
//! and eyes used to ipvsadm read `rwproxy ipvs list` without surprises.

use std::fmt::Write;

use super::dest::{Info, ServiceEntry};
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

/// Renders the table, header included.
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
    for e in services {
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
        for d in &e.dests {
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
