//! Real servers (IPVS "destinations") and the counters the kernel keeps.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// How packets reach a real server (`IP_VS_CONN_F_*` forwarding methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT (`-m`, keepalived `lb_kind NAT`).
    Masq,
    Local,
    /// IP-in-IP (`-i`, `lb_kind TUN`).
    Tunnel,
    /// Direct routing (`-g`, `lb_kind DR`), ipvsadm's default.
    Route,
    Bypass,
}

impl Forward {
    pub fn number(self) -> u32 {
        match self {
            Forward::Masq => 0,
            Forward::Local => 1,
            Forward::Tunnel => 2,
            Forward::Route => 3,
            Forward::Bypass => 4,
        }
    }

    pub fn from_number(n: u32) -> Option<Forward> {
        Some(match n & 0x7 {
            0 => Forward::Masq,
            1 => Forward::Local,
            2 => Forward::Tunnel,
            3 => Forward::Route,
            4 => Forward::Bypass,
            _ => return None,
        })
    }
}

impl fmt::Display for Forward {
    /// ipvsadm's column text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forward::Masq => "Masq",
            Forward::Local => "Local",
            Forward::Tunnel => "Tunnel",
            Forward::Route => "Route",
            Forward::Bypass => "Bypass",
        })
    }
}

impl std::str::FromStr for Forward {
    type Err = String;
    /// keepalived's `lb_kind` words (NAT, DR, TUN) and ipvsadm's column names.
    fn from_str(s: &str) -> Result<Forward, String> {
        match s.to_ascii_uppercase().as_str() {
            "NAT" | "MASQ" => Ok(Forward::Masq),
            "DR" | "ROUTE" => Ok(Forward::Route),
            "TUN" | "TUNNEL" => Ok(Forward::Tunnel),
            _ => Err(format!("'{s}': expected NAT, DR or TUN")),
        }
    }
}

/// A real server of a virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
    pub forward: Forward,
    /// 0 = quiesced: existing connections stay, no new ones (keepalived's `inhibit_on_failure`).
    pub weight: u32,
    /// Connection thresholds; 0 = none.
    pub upper_threshold: u32,
    pub lower_threshold: u32,
}

impl Dest {
    /// ipvsadm's defaults: direct routing, weight 1, no thresholds.
    pub fn new(addr: SocketAddr) -> Dest {
        Dest {
            addr: addr.ip(),
            port: addr.port(),
            forward: Forward::Route,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
}

/// The kernel's traffic counters and rate estimates of a service or real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// A real server as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestEntry {
    pub dest: Dest,
    pub active_conns: u32,
    pub inact_conns: u32,
    pub persist_conns: u32,
    pub stats: Stats,
}

/// A virtual service as listed by the kernel, with its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub service: super::Service,
    pub stats: Stats,
    pub dests: Vec<DestEntry>,
}

/// `GET_INFO`: the IPVS version and connection table size ipvsadm prints in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// `0x010201` = 1.2.1.
    pub version: u32,
    pub conn_tab_size: u32,
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IP Virtual Server version {}.{}.{} (size={})",
            (self.version >> 16) & 0xff,
            (self.version >> 8) & 0xff,
            self.version & 0xff,
            self.conn_tab_size
        )
    }
}
