//! Virtual IP addresses over rtnetlink (neli): add, remove, interface lookups.

use std::io;
use std::net::Ipv4Addr;

use neli::{
    attr::Attribute,
    consts::{
        nl::NlmF,
        rtnl::{Ifa, Iff, Ifla, RtAddrFamily, RtScope, Rtm},
        socket::NlFamily,
    },
    err::RouterError,
    nl::NlPayload,
    router::synchronous::NlRouter,
    rtnl::{Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, RtattrBuilder},
    types::RtBuffer,
    utils::Groups,
};

/// An IPv4 address with its prefix length, as in keepalived's `virtual_ipaddress` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Vip {
    type Err = String;
    /// `192.0.2.100` (a /32, as keepalived) or `192.0.2.100/24`.
    fn from_str(s: &str) -> Result<Vip, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().map_err(|e| format!("{s}: {e}"))?),
            None => (s, 32),
        };
        if p > 32 {
            return Err(format!("{s}: prefix over 32"));
        }
        let addr = a.parse().map_err(|e| format!("{s}: {e}"))?;
        Ok(Vip { addr, prefix: p })
    }
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The interface index of `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// An interface's state as rtnetlink reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`) and operational (`IFF_RUNNING`).
    pub running: bool,
    pub mac: Option<[u8; 6]>,
}

impl Link {
    /// What keepalived's interface tracking calls up.
    pub fn usable(&self) -> bool {
        self.up && self.running
    }
}

/// An rtnetlink connection.
pub struct Rtnl {
    router: NlRouter,
}

fn to_io<T, P>(e: RouterError<T, P>) -> io::Error {
    match e {
        RouterError::Nlmsgerr(e) => io::Error::from_raw_os_error(e.error().abs()),
        RouterError::Io(kind) => io::Error::from(kind),
        RouterError::Msg(m) => io::Error::other(m.to_string()),
        RouterError::De(e) => io::Error::other(e.to_string()),
        RouterError::Socket(e) => io::Error::other(e.to_string()),
        _ => io::Error::other("unexpected netlink reply"),
    }
}

impl Rtnl {
    pub fn new() -> io::Result<Rtnl> {
        let (router, _) = NlRouter::connect(NlFamily::Route, None, Groups::empty())
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Rtnl { router })
    }

    fn addr_msg(ifindex: u32, vip: Vip) -> io::Result<Ifaddrmsg> {
        let mut attrs = RtBuffer::new();
        for kind in [Ifa::Local, Ifa::Address] {
            attrs.push(
                RtattrBuilder::default()
                    .rta_type(kind)
                    .rta_payload(u32::from_ne_bytes(vip.addr.octets()))
                    .build()
                    .map_err(|e| io::Error::other(e.to_string()))?,
            );
        }
        IfaddrmsgBuilder::default()
            .ifa_family(RtAddrFamily::Inet)
            .ifa_prefixlen(vip.prefix)
            .ifa_scope(RtScope::Universe)
            .ifa_index(ifindex)
            .rtattrs(attrs)
            .build()
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn request(&self, kind: Rtm, flags: NlmF, msg: Ifaddrmsg) -> io::Result<()> {
        let recv = self
            .router
            .send::<_, _, Rtm, Ifaddrmsg>(kind, flags | NlmF::ACK, NlPayload::Payload(msg))
            .map_err(to_io)?;
        for r in recv {
            r.map_err(to_io)?;
        }
        Ok(())
    }

    /// Adds `vip` to the interface. Already present: `Ok(false)`.
    pub fn add(&self, ifindex: u32, vip: Vip) -> io::Result<bool> {
        match self.request(
            Rtm::Newaddr,
            NlmF::CREATE | NlmF::EXCL,
            Self::addr_msg(ifindex, vip)?,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes `vip` from the interface. Not present: `Ok(false)`.
    pub fn remove(&self, ifindex: u32, vip: Vip) -> io::Result<bool> {
        match self.request(Rtm::Deladdr, NlmF::empty(), Self::addr_msg(ifindex, vip)?) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The interface's flags and MAC address (RTM_GETLINK).
    pub fn link(&self, ifindex: u32) -> io::Result<Link> {
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(ifindex as i32)
            .build()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let recv = self
            .router
            .send::<_, _, Rtm, Ifinfomsg>(Rtm::Getlink, NlmF::ACK, NlPayload::Payload(msg))
            .map_err(to_io)?;
        let mut link = None;
        for r in recv {
            let h = r.map_err(to_io)?;
            if let NlPayload::Payload(p) = h.nl_payload() {
                if *p.ifi_index() as u32 != ifindex {
                    continue;
                }
                let flags = p.ifi_flags();
                let mut mac = None;
                for a in p.rtattrs().iter() {
                    if *a.rta_type() == Ifla::Address {
                        let b: &[u8] = a.rta_payload().as_ref();
                        if let Ok(m) = <[u8; 6]>::try_from(b) {
                            mac = Some(m);
                        }
                    }
                }
                link = Some(Link {
                    up: flags.contains(Iff::UP),
                    running: flags.contains(Iff::RUNNING) && flags.contains(Iff::LOWERUP),
                    mac,
                });
            }
        }
        link.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// The IPv4 addresses on the interface, in the kernel's order (primary first).
    pub fn addresses(&self, ifindex: u32) -> io::Result<Vec<Ipv4Addr>> {
        let msg = IfaddrmsgBuilder::default()
            .ifa_family(RtAddrFamily::Inet)
            .ifa_prefixlen(0)
            .ifa_scope(RtScope::Universe)
            .ifa_index(0)
            .build()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let recv = self
            .router
            .send::<_, _, Rtm, Ifaddrmsg>(Rtm::Getaddr, NlmF::DUMP, NlPayload::Payload(msg))
            .map_err(to_io)?;
        let mut out = Vec::new();
        for r in recv {
            let h = r.map_err(to_io)?;
            if let NlPayload::Payload(p) = h.nl_payload() {
                if *p.ifa_index() != ifindex {
                    continue;
                }
                for a in p.rtattrs().iter() {
                    if *a.rta_type() == Ifa::Local {
                        let v = a
                            .get_payload_as::<u32>()
                            .map_err(|e| io::Error::other(e.to_string()))?;
                        out.push(Ipv4Addr::from(v.to_ne_bytes()));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_syntax_as_keepalived() {
        let v: Vip = "192.0.2.100/24".parse().unwrap();
        assert_eq!((v.addr, v.prefix), (Ipv4Addr::new(192, 0, 2, 100), 24));
        assert_eq!(v.to_string(), "192.0.2.100/24");
        let v: Vip = "192.0.2.100".parse().unwrap();
        assert_eq!(v.prefix, 32, "no prefix means a /32, as keepalived");
        assert!("192.0.2.100/33".parse::<Vip>().is_err());
        assert!("192.0.2/24".parse::<Vip>().is_err());
        assert!("192.0.2.1/x".parse::<Vip>().is_err());
    }
}
