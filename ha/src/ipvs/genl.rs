//! The IPVS generic netlink protocol (`include/uapi/linux/ip_vs.h`): requests encoded the way
//! ipvsadm 1.31 encodes them (byte for byte, checked against its captured messages) and replies
//! decoded into [`Service`]/[`DestEntry`].

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use neli::{
    consts::genl::{CtrlAttr, CtrlCmd},
    consts::nl::NlmF,
    genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, Nlattr, NlattrBuilder},
    types::{Buffer, GenlBuffer},
    Size, ToBytes,
};

use super::dest::{Dest, DestEntry, Forward, Info, ServiceEntry, Stats};
use super::service::{Family, Protocol, Service, ServiceFlags, ServiceKey};

/// The family name the kernel registers; its numeric id is assigned at module load.
pub const FAMILY_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`, also what ipvsadm puts in its `CTRL_CMD_GETFAMILY`.
pub const VERSION: u8 = 1;

/// `IPVS_CMD_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    NewService = 1,
    SetService = 2,
    DelService = 3,
    GetService = 4,
    NewDest = 5,
    SetDest = 6,
    DelDest = 7,
    GetDest = 8,
    GetInfo = 15,
    Flush = 17,
}

/// `IPVS_CMD_ATTR_*`: top-level attributes.
mod cmd_attr {
    pub const SERVICE: u16 = 1;
    pub const DEST: u16 = 2;
}

/// `IPVS_SVC_ATTR_*`.
mod svc_attr {
    pub const AF: u16 = 1;
    pub const PROTOCOL: u16 = 2;
    pub const ADDR: u16 = 3;
    pub const PORT: u16 = 4;
    pub const FWMARK: u16 = 5;
    pub const SCHED_NAME: u16 = 6;
    pub const FLAGS: u16 = 7;
    pub const TIMEOUT: u16 = 8;
    pub const NETMASK: u16 = 9;
    pub const STATS: u16 = 10;
    pub const STATS64: u16 = 12;
}

/// `IPVS_DEST_ATTR_*`.
mod dest_attr {
    pub const ADDR: u16 = 1;
    pub const PORT: u16 = 2;
    pub const FWD_METHOD: u16 = 3;
    pub const WEIGHT: u16 = 4;
    pub const U_THRESH: u16 = 5;
    pub const L_THRESH: u16 = 6;
    pub const ACTIVE_CONNS: u16 = 7;
    pub const INACT_CONNS: u16 = 8;
    pub const PERSIST_CONNS: u16 = 9;
    pub const STATS: u16 = 10;
    pub const ADDR_FAMILY: u16 = 11;
    pub const STATS64: u16 = 12;
    pub const TUN_TYPE: u16 = 13;
    pub const TUN_PORT: u16 = 14;
    pub const TUN_FLAGS: u16 = 15;
}

/// `IPVS_STATS_ATTR_*` (u32 values in `STATS`, u64 in `STATS64`).
mod stats_attr {
    pub const CONNS: u16 = 1;
    pub const INPKTS: u16 = 2;
    pub const OUTPKTS: u16 = 3;
    pub const INBYTES: u16 = 4;
    pub const OUTBYTES: u16 = 5;
    pub const CPS: u16 = 6;
    pub const INPPS: u16 = 7;
    pub const OUTPPS: u16 = 8;
    pub const INBPS: u16 = 9;
    pub const OUTBPS: u16 = 10;
}

/// `IPVS_INFO_ATTR_*`.
mod info_attr {
    pub const VERSION: u16 = 1;
    pub const CONN_TAB_SIZE: u16 = 2;
}

/// A message could not be built or a reply did not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IPVS netlink codec: {0}")]
pub struct CodecError(pub String);

fn codec<E: std::fmt::Display>(e: E) -> CodecError {
    CodecError(e.to_string())
}

pub(crate) type Msg = Genlmsghdr<u8, u16>;
type Attr = Nlattr<u16, Buffer>;

/// One IPVS operation, as sent to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    GetInfo,
    NewService(Service),
    SetService(Service),
    DelService(ServiceKey),
    /// A dump of all services.
    GetServices,
    NewDest(ServiceKey, Dest),
    SetDest(ServiceKey, Dest),
    /// Only the address matters to the kernel; the rest is ipvsadm's defaults.
    DelDest(ServiceKey, SocketAddr),
    /// A dump of one service's real servers.
    GetDests(ServiceKey),
    Flush,
}

impl Request {
    pub fn cmd(&self) -> Cmd {
        match self {
            Request::GetInfo => Cmd::GetInfo,
            Request::NewService(_) => Cmd::NewService,
            Request::SetService(_) => Cmd::SetService,
            Request::DelService(_) => Cmd::DelService,
            Request::GetServices => Cmd::GetService,
            Request::NewDest(..) => Cmd::NewDest,
            Request::SetDest(..) => Cmd::SetDest,
            Request::DelDest(..) => Cmd::DelDest,
            Request::GetDests(_) => Cmd::GetDest,
            Request::Flush => Cmd::Flush,
        }
    }

    /// Netlink flags besides `NLM_F_REQUEST`: dumps for listings, an ACK for the rest (as
    /// ipvsadm).
    pub fn flags(&self) -> NlmF {
        match self {
            Request::GetServices | Request::GetDests(_) => NlmF::DUMP,
            _ => NlmF::ACK,
        }
    }

    /// The generic netlink message (header + attributes).
    pub fn to_genl(&self) -> Result<Msg, CodecError> {
        let mut attrs = GenlBuffer::new();
        match self {
            Request::GetInfo | Request::GetServices | Request::Flush => {}
            Request::NewService(s) | Request::SetService(s) => attrs.push(service_nest(s)?),
            Request::DelService(k) | Request::GetDests(k) => {
                attrs.push(service_nest(&Service::key_only(*k))?)
            }
            Request::NewDest(k, d) | Request::SetDest(k, d) => {
                attrs.push(service_nest(&Service::key_only(*k))?);
                attrs.push(dest_nest(d)?);
            }
            Request::DelDest(k, a) => {
                attrs.push(service_nest(&Service::key_only(*k))?);
                attrs.push(dest_nest(&Dest::new(*a))?);
            }
        }
        GenlmsghdrBuilder::default()
            .cmd(self.cmd() as u8)
            .version(VERSION)
            .attrs(attrs)
            .build()
            .map_err(codec)
    }
}

/// The generic netlink payload as bytes (what the vectors hold).
pub fn to_bytes<P: Size + ToBytes>(msg: &P) -> Result<Vec<u8>, CodecError> {
    let mut c = Cursor::new(Vec::with_capacity(msg.padded_size()));
    msg.to_bytes(&mut c).map_err(codec)?;
    Ok(c.into_inner())
}

/// `CTRL_CMD_GETFAMILY "IPVS"` with ipvsadm's version byte (neli's own resolver sends 2).
pub fn get_family() -> Result<Genlmsghdr<CtrlCmd, CtrlAttr>, CodecError> {
    let mut attrs = GenlBuffer::new();
    attrs.push(
        NlattrBuilder::default()
            .nla_type(
                AttrTypeBuilder::default()
                    .nla_type(CtrlAttr::FamilyName)
                    .build()
                    .map_err(codec)?,
            )
            .nla_payload(FAMILY_NAME)
            .build()
            .map_err(codec)?,
    );
    GenlmsghdrBuilder::default()
        .cmd(CtrlCmd::Getfamily)
        .version(VERSION)
        .attrs(attrs)
        .build()
        .map_err(codec)
}

/// The family id from a `CTRL_CMD_NEWFAMILY` reply.
pub fn family_id(reply: &Genlmsghdr<CtrlCmd, CtrlAttr>) -> Result<u16, CodecError> {
    reply
        .attrs()
        .get_attr_handle()
        .get_attr_payload_as::<u16>(CtrlAttr::FamilyId)
        .map_err(codec)
}

fn attr<P: Size + ToBytes>(t: u16, payload: P) -> Result<Attr, CodecError> {
    NlattrBuilder::default()
        .nla_type(
            AttrTypeBuilder::default()
                .nla_type(t)
                .build()
                .map_err(codec)?,
        )
        .nla_payload(payload)
        .build()
        .map_err(codec)
}

fn nest(t: u16, children: Vec<Attr>) -> Result<Attr, CodecError> {
    let mut outer = NlattrBuilder::default()
        .nla_type(
            AttrTypeBuilder::default()
                .nla_type(t)
                .nla_nested(true)
                .build()
                .map_err(codec)?,
        )
        .nla_payload(Buffer::new())
        .build()
        .map_err(codec)?;
    for c in &children {
        outer = outer.nest(c).map_err(codec)?;
    }
    Ok(outer)
}

/// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first four.
fn inet_addr(a: &IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// Ports travel in network byte order.
fn be16(port: u16) -> [u8; 2] {
    port.to_be_bytes()
}

fn service_nest(s: &Service) -> Result<Attr, CodecError> {
    let mut a = vec![attr(svc_attr::AF, s.key.family().number())?];
    match s.key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            a.push(attr(svc_attr::PROTOCOL, protocol.number())?);
            a.push(attr(svc_attr::ADDR, inet_addr(&addr))?);
            a.push(attr(svc_attr::PORT, be16(port))?);
        }
        ServiceKey::Fwmark { mark, .. } => a.push(attr(svc_attr::FWMARK, mark)?),
    }
    a.push(attr(svc_attr::SCHED_NAME, s.scheduler.as_str())?);
    // struct ip_vs_flags { flags, mask }: ipvsadm sets every bit of the mask.
    let mut flags = [0u8; 8];
    flags[..4].copy_from_slice(&s.flags.0.to_ne_bytes());
    flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    a.push(attr(svc_attr::FLAGS, flags)?);
    a.push(attr(svc_attr::TIMEOUT, s.timeout)?);
    a.push(attr(svc_attr::NETMASK, s.netmask)?);
    nest(cmd_attr::SERVICE, a)
}

fn dest_nest(d: &Dest) -> Result<Attr, CodecError> {
    let a = vec![
        attr(dest_attr::ADDR_FAMILY, Family::of(&d.addr).number())?,
        attr(dest_attr::ADDR, inet_addr(&d.addr))?,
        attr(dest_attr::PORT, be16(d.port))?,
        attr(dest_attr::FWD_METHOD, d.forward.number())?,
        attr(dest_attr::WEIGHT, d.weight)?,
        // Tunnel type/port/flags: IPIP with no encapsulation options, as ipvsadm sends.
        attr(dest_attr::TUN_TYPE, 0u8)?,
        attr(dest_attr::TUN_PORT, be16(0))?,
        attr(dest_attr::TUN_FLAGS, 0u16)?,
        attr(dest_attr::U_THRESH, d.upper_threshold)?,
        attr(dest_attr::L_THRESH, d.lower_threshold)?,
    ];
    nest(cmd_attr::DEST, a)
}

/// Typed access to one level of attributes.
struct Attrs<'a>(neli::genl::GenlAttrHandle<'a, u16>);

impl<'a> Attrs<'a> {
    fn get(&self, t: u16) -> Option<&[u8]> {
        self.0.get_attribute(t).map(|a| a.nla_payload().as_ref())
    }

    fn need(&self, t: u16, what: &str) -> Result<&[u8], CodecError> {
        self.get(t)
            .ok_or_else(|| CodecError(format!("reply without {what}")))
    }

    fn u16(&self, t: u16, what: &str) -> Result<u16, CodecError> {
        let b = self.need(t, what)?;
        b.get(..2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .ok_or_else(|| CodecError(format!("{what}: short attribute")))
    }

    fn u32(&self, t: u16, what: &str) -> Result<u32, CodecError> {
        let b = self.need(t, what)?;
        b.get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| CodecError(format!("{what}: short attribute")))
    }

    fn opt_u32(&self, t: u16, what: &str) -> Result<u32, CodecError> {
        if self.get(t).is_some() {
            self.u32(t, what)
        } else {
            Ok(0)
        }
    }

    fn be16(&self, t: u16, what: &str) -> Result<u16, CodecError> {
        Ok(u16::from_be(self.u16(t, what)?))
    }

    fn addr(&self, t: u16, family: Family, what: &str) -> Result<IpAddr, CodecError> {
        let b = self.need(t, what)?;
        match family {
            Family::V4 => b
                .get(..4)
                .map(|b| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            Family::V6 => b
                .get(..16)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        }
        .ok_or_else(|| CodecError(format!("{what}: short address")))
    }

    fn nested(&self, t: u16) -> Result<Option<Attrs<'_>>, CodecError> {
        match self.0.get_attribute(t) {
            Some(a) => Ok(Some(Attrs(a.get_attr_handle::<u16>().map_err(codec)?))),
            None => Ok(None),
        }
    }

    fn string(&self, t: u16, what: &str) -> Result<String, CodecError> {
        let b = self.need(t, what)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8(b[..end].to_vec()).map_err(codec)
    }
}

/// Counters: `STATS64` when the kernel sends it (3.18+), else the 32-bit `STATS`.
fn stats(a: &Attrs<'_>, stats64: u16, stats32: u16) -> Result<Stats, CodecError> {
    let (nest, wide) = match a.nested(stats64)? {
        Some(n) => (n, true),
        None => match a.nested(stats32)? {
            Some(n) => (n, false),
            None => return Ok(Stats::default()),
        },
    };
    let v = |t: u16| -> u64 {
        let Some(b) = nest.get(t) else { return 0 };
        if wide && b.len() >= 8 {
            u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        } else if b.len() >= 4 {
            u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        } else {
            0
        }
    };
    Ok(Stats {
        conns: v(stats_attr::CONNS),
        inpkts: v(stats_attr::INPKTS),
        outpkts: v(stats_attr::OUTPKTS),
        inbytes: v(stats_attr::INBYTES),
        outbytes: v(stats_attr::OUTBYTES),
        cps: v(stats_attr::CPS),
        inpps: v(stats_attr::INPPS),
        outpps: v(stats_attr::OUTPPS),
        inbps: v(stats_attr::INBPS),
        outbps: v(stats_attr::OUTBPS),
    })
}

fn top(msg: &Msg) -> Attrs<'_> {
    Attrs(msg.attrs().get_attr_handle())
}

/// One service of a `GET_SERVICE` dump (its real servers are fetched separately).
pub fn parse_service(msg: &Msg) -> Result<ServiceEntry, CodecError> {
    let t = top(msg);
    let s = t
        .nested(cmd_attr::SERVICE)?
        .ok_or_else(|| CodecError("service reply without a service".into()))?;
    let af = s.u16(svc_attr::AF, "address family")?;
    let family = Family::from_number(af)
        .ok_or_else(|| CodecError(format!("unknown address family {af}")))?;
    let key = if s.get(svc_attr::FWMARK).is_some() {
        ServiceKey::Fwmark {
            family,
            mark: s.u32(svc_attr::FWMARK, "fwmark")?,
        }
    } else {
        let p = s.u16(svc_attr::PROTOCOL, "protocol")?;
        ServiceKey::Addr {
            protocol: Protocol::from_number(p)
                .ok_or_else(|| CodecError(format!("unknown protocol {p}")))?,
            addr: s.addr(svc_attr::ADDR, family, "service address")?,
            port: s.be16(svc_attr::PORT, "service port")?,
        }
    };
    let service = Service {
        key,
        scheduler: s.string(svc_attr::SCHED_NAME, "scheduler")?,
        flags: ServiceFlags(s.u32(svc_attr::FLAGS, "flags")?),
        timeout: s.opt_u32(svc_attr::TIMEOUT, "timeout")?,
        netmask: s.opt_u32(svc_attr::NETMASK, "netmask")?,
    };
    Ok(ServiceEntry {
        service,
        stats: stats(&s, svc_attr::STATS64, svc_attr::STATS)?,
        dests: Vec::new(),
    })
}

/// One real server of a `GET_DEST` dump of a service of `family`.
pub fn parse_dest(msg: &Msg, family: Family) -> Result<DestEntry, CodecError> {
    let t = top(msg);
    let d = t
        .nested(cmd_attr::DEST)?
        .ok_or_else(|| CodecError("dest reply without a dest".into()))?;
    // Since 5.3 a real server may have another family than its service (IPv6 over IPv4 tunnels).
    let family = match d.get(dest_attr::ADDR_FAMILY) {
        Some(_) => {
            let af = d.u16(dest_attr::ADDR_FAMILY, "address family")?;
            Family::from_number(af)
                .ok_or_else(|| CodecError(format!("unknown address family {af}")))?
        }
        None => family,
    };
    let fwd = d.u32(dest_attr::FWD_METHOD, "forwarding method")?;
    let dest = Dest {
        addr: d.addr(dest_attr::ADDR, family, "real server address")?,
        port: d.be16(dest_attr::PORT, "real server port")?,
        forward: Forward::from_number(fwd)
            .ok_or_else(|| CodecError(format!("unknown forwarding method {fwd}")))?,
        weight: d.u32(dest_attr::WEIGHT, "weight")?,
        upper_threshold: d.opt_u32(dest_attr::U_THRESH, "upper threshold")?,
        lower_threshold: d.opt_u32(dest_attr::L_THRESH, "lower threshold")?,
    };
    Ok(DestEntry {
        dest,
        active_conns: d.opt_u32(dest_attr::ACTIVE_CONNS, "active connections")?,
        inact_conns: d.opt_u32(dest_attr::INACT_CONNS, "inactive connections")?,
        persist_conns: d.opt_u32(dest_attr::PERSIST_CONNS, "persistent connections")?,
        stats: stats(&d, dest_attr::STATS64, dest_attr::STATS)?,
    })
}

/// The `GET_INFO` reply.
pub fn parse_info(msg: &Msg) -> Result<Info, CodecError> {
    let t = top(msg);
    Ok(Info {
        version: t.u32(info_attr::VERSION, "version")?,
        conn_tab_size: t.u32(info_attr::CONN_TAB_SIZE, "connection table size")?,
    })
}

/// Parses an IPVS generic netlink payload received from the kernel.
pub fn from_bytes(b: &[u8]) -> Result<Msg, CodecError> {
    use neli::FromBytesWithInput;
    Msg::from_bytes_with_input(&mut Cursor::new(b), b.len()).map_err(codec)
}

/// Parses a `CTRL_CMD_NEWFAMILY` payload (the answer to [`get_family`]).
pub fn family_reply_from_bytes(b: &[u8]) -> Result<Genlmsghdr<CtrlCmd, CtrlAttr>, CodecError> {
    use neli::FromBytesWithInput;
    Genlmsghdr::from_bytes_with_input(&mut Cursor::new(b), b.len()).map_err(codec)
}
