//! Virtual services: what the kernel balances, identified by protocol+address+port or fwmark.

use std::fmt;
use std::net::IpAddr;

/// Transport protocol of an address-based virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IPPROTO_* number the kernel uses.
    pub fn number(self) -> u16 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    pub fn from_number(n: u16) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(format!("'{s}': expected TCP, UDP or SCTP")),
        }
    }
}

/// Address family, needed on its own for fwmark services (which carry no address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// AF_INET / AF_INET6.
    pub fn number(self) -> u16 {
        match self {
            Family::V4 => libc::AF_INET as u16,
            Family::V6 => libc::AF_INET6 as u16,
        }
    }

    pub fn from_number(n: u16) -> Option<Family> {
        match i32::from(n) {
            libc::AF_INET => Some(Family::V4),
            libc::AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }
}

/// What identifies a virtual service in the kernel table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    Addr {
        protocol: Protocol,
        addr: IpAddr,
        port: u16,
    },
    Fwmark {
        family: Family,
        mark: u32,
    },
}

impl ServiceKey {
    pub fn tcp(addr: IpAddr, port: u16) -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr,
            port,
        }
    }

    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

/// `host:port` with IPv6 hosts bracketed, as ipvsadm prints endpoints.
pub(crate) struct Endpoint<'a>(pub &'a IpAddr, pub u16);

impl fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

impl fmt::Display for ServiceKey {
    /// ipvsadm's spelling: `TCP 10.0.0.1:3306`, `FWM 7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => write!(f, "{protocol} {}", Endpoint(addr, *port)),
            ServiceKey::Fwmark { family, mark } => match family {
                Family::V4 => write!(f, "FWM {mark}"),
                Family::V6 => write!(f, "FWM {mark} IPv6"),
            },
        }
    }
}

/// `IP_VS_SVC_F_*` service flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    pub const PERSISTENT: u32 = 0x0001;
    /// Set by the kernel on every hashed (i.e. installed) service; not a setting.
    pub const HASHED: u32 = 0x0002;
    pub const ONEPACKET: u32 = 0x0004;
    pub const SCHED_FLAG_1: u32 = 0x0008;
    pub const SCHED_FLAG_2: u32 = 0x0010;
    pub const SCHED_FLAG_3: u32 = 0x0020;

    /// The flags a user sets, without the kernel's bookkeeping bits.
    pub fn settable(self) -> ServiceFlags {
        ServiceFlags(self.0 & !Self::HASHED)
    }

    pub fn contains(self, bit: u32) -> bool {
        self.0 & bit == bit
    }
}

/// A virtual service and its settings, as created or reported by the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    pub key: ServiceKey,
    /// Scheduler module name without the `ip_vs_` prefix: rr, wrr, lc, wlc, lblc, sh, dh, sed, nq…
    pub scheduler: String,
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds; with it, [`ServiceFlags::PERSISTENT`] is set.
    pub timeout: u32,
    /// Persistence granularity as the kernel stores it: an IPv4 netmask in network byte order
    /// for IPv4 services, a prefix length for IPv6 ones.
    pub netmask: u32,
}

impl Service {
    pub fn new(key: ServiceKey, scheduler: &str) -> Service {
        Service {
            key,
            scheduler: scheduler.to_string(),
            flags: ServiceFlags::default(),
            timeout: 0,
            netmask: Self::full_netmask(key.family()),
        }
    }

    /// What ipvsadm sends when a command names a service but no settings: the kernel only reads
    /// the identity from it, and sending the same bytes keeps us comparable with ipvsadm.
    pub fn key_only(key: ServiceKey) -> Service {
        Service::new(key, "")
    }

    fn full_netmask(family: Family) -> u32 {
        match family {
            Family::V4 => u32::MAX,
            Family::V6 => 128,
        }
    }

    /// Client affinity (keepalived's `persistence_timeout`) with the granularity given as a
    /// prefix length (`persistence_granularity`; 32 / 128 = per client address).
    pub fn with_persistence(mut self, timeout: u32, prefix: u8) -> Service {
        if timeout == 0 {
            self.flags.0 &= !ServiceFlags::PERSISTENT;
            self.timeout = 0;
            self.netmask = Self::full_netmask(self.key.family());
            return self;
        }
        self.flags.0 |= ServiceFlags::PERSISTENT;
        self.timeout = timeout;
        self.netmask = match self.key.family() {
            Family::V4 => {
                let bits = u32::from(prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                // The kernel reads the attribute as __be32: store the network-order bytes.
                u32::from_ne_bytes(mask.to_be_bytes())
            }
            Family::V6 => u32::from(prefix.min(128)),
        };
        self
    }

    /// The netmask as a prefix length, for printing (`mask 255.255.255.0` in ipvsadm).
    pub fn netmask_v4(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(self.netmask.to_ne_bytes())
    }

    /// Equal in everything a user configures (the kernel adds [`ServiceFlags::HASHED`]).
    pub fn same_settings(&self, other: &Service) -> bool {
        self.key == other.key
            && self.scheduler == other.scheduler
            && self.flags.settable() == other.flags.settable()
            && self.timeout == other.timeout
            && self.netmask == other.netmask
    }
}
