//! Talking to the kernel: resolve the IPVS family, send [`Request`]s, turn errnos into messages a
//! DBA can act on.

use std::net::SocketAddr;

use neli::{
    consts::{
        genl::{CtrlAttr, CtrlCmd},
        nl::{GenlId, NlmF},
        socket::NlFamily,
    },
    err::RouterError,
    genl::Genlmsghdr,
    nl::NlPayload,
    router::synchronous::NlRouter,
    utils::Groups,
};

use super::dest::{Dest, DestEntry, Info, ServiceEntry};
use super::genl::{self, CodecError, Msg, Request};
use super::service::{Endpoint, Service, ServiceKey};

/// Why an IPVS operation failed, worded for whoever runs the director.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    #[error("IPVS unavailable: the kernel has no \"IPVS\" generic netlink family (is the ip_vs module available? try `modprobe ip_vs`)")]
    Unavailable,
    #[error("permission denied while trying to {op}: changing IPVS needs root (CAP_NET_ADMIN)")]
    PermissionDenied { op: String },
    #[error("virtual service {0} already exists")]
    ServiceExists(ServiceKey),
    #[error("virtual service {0} does not exist")]
    NoSuchService(ServiceKey),
    #[error("real server {dest} is already in virtual service {service}")]
    DestExists { service: ServiceKey, dest: String },
    #[error("real server {dest} is not in virtual service {service}")]
    NoSuchDest { service: ServiceKey, dest: String },
    #[error("scheduler \"{0}\" is not available in this kernel (no ip_vs_{0} module)")]
    UnknownScheduler(String),
    #[error("the kernel rejected the request to {op}: invalid argument (check addresses, scheduler, flags and weights)")]
    Invalid { op: String },
    #[error("cannot {op}: {source}")]
    Os {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {op}: {message}")]
    Netlink { op: String, message: String },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl IpvsError {
    /// The kernel's errno for this failure, when there was one.
    pub fn errno(&self) -> Option<i32> {
        Some(match self {
            IpvsError::Unavailable => libc::ENOENT,
            IpvsError::PermissionDenied { .. } => libc::EPERM,
            IpvsError::ServiceExists(_) | IpvsError::DestExists { .. } => libc::EEXIST,
            IpvsError::NoSuchService(_) => libc::ESRCH,
            IpvsError::NoSuchDest { .. } | IpvsError::UnknownScheduler(_) => libc::ENOENT,
            IpvsError::Invalid { .. } => libc::EINVAL,
            IpvsError::Os { source, .. } => return source.raw_os_error(),
            IpvsError::Netlink { .. } | IpvsError::Codec(_) => return None,
        })
    }
}

/// What a request does, in words, for error messages.
fn describe(req: &Request) -> String {
    match req {
        Request::GetInfo => "read the IPVS version".into(),
        Request::NewService(s) => format!("add virtual service {} ({})", s.key, s.scheduler),
        Request::SetService(s) => format!("update virtual service {} ({})", s.key, s.scheduler),
        Request::DelService(k) => format!("delete virtual service {k}"),
        Request::GetServices => "list virtual services".into(),
        Request::NewDest(k, d) => format!("add real server {} to {k}", Endpoint(&d.addr, d.port)),
        Request::SetDest(k, d) => format!("edit real server {} of {k}", Endpoint(&d.addr, d.port)),
        Request::DelDest(k, a) => format!("delete real server {a} from {k}"),
        Request::GetDests(k) => format!("list the real servers of {k}"),
        Request::Flush => "flush the IPVS table".into(),
    }
}

fn dest_name(req: &Request) -> String {
    match req {
        Request::NewDest(_, d) | Request::SetDest(_, d) => Endpoint(&d.addr, d.port).to_string(),
        Request::DelDest(_, a) => a.to_string(),
        _ => String::new(),
    }
}

fn service_of(req: &Request) -> Option<ServiceKey> {
    match req {
        Request::NewService(s) | Request::SetService(s) => Some(s.key),
        Request::DelService(k)
        | Request::GetDests(k)
        | Request::NewDest(k, _)
        | Request::SetDest(k, _)
        | Request::DelDest(k, _) => Some(*k),
        _ => None,
    }
}

/// Maps the kernel's answer to `req` (errno as the kernel reports it, positive) to an error.
pub fn map_errno(req: &Request, errno: i32) -> IpvsError {
    let op = describe(req);
    let svc = service_of(req);
    match (errno, req, svc) {
        (libc::EPERM, ..) => IpvsError::PermissionDenied { op },
        (libc::EEXIST, Request::NewService(_), Some(k)) => IpvsError::ServiceExists(k),
        (libc::EEXIST, Request::NewDest(..), Some(k)) => IpvsError::DestExists {
            service: k,
            dest: dest_name(req),
        },
        (libc::ESRCH, _, Some(k)) => IpvsError::NoSuchService(k),
        (libc::ENOENT, Request::NewService(s) | Request::SetService(s), _) => {
            IpvsError::UnknownScheduler(s.scheduler.clone())
        }
        (libc::ENOENT, Request::SetDest(..) | Request::DelDest(..), Some(k)) => {
            IpvsError::NoSuchDest {
                service: k,
                dest: dest_name(req),
            }
        }
        (libc::EINVAL, ..) => IpvsError::Invalid { op },
        _ => IpvsError::Os {
            op,
            source: std::io::Error::from_raw_os_error(errno),
        },
    }
}

fn router_error<T: std::fmt::Debug, P: std::fmt::Debug>(
    req: &Request,
    e: RouterError<T, P>,
) -> IpvsError {
    match e {
        RouterError::Nlmsgerr(e) => map_errno(req, e.error().abs()),
        RouterError::Io(kind) => IpvsError::Os {
            op: describe(req),
            source: std::io::Error::from(kind),
        },
        other => IpvsError::Netlink {
            op: describe(req),
            message: other.to_string(),
        },
    }
}

/// A generic netlink socket bound to the kernel's IPVS family.
pub struct Ipvs {
    router: NlRouter,
    family: u16,
}

impl Ipvs {
    /// Connects and resolves the family id (dynamic: assigned when ip_vs loads, and resolving
    /// it loads the module on demand).
    pub fn connect() -> Result<Ipvs, IpvsError> {
        let op = || "open a generic netlink socket".to_string();
        let (router, _) =
            NlRouter::connect(NlFamily::Generic, None, Groups::empty()).map_err(|e| {
                IpvsError::Netlink {
                    op: op(),
                    message: e.to_string(),
                }
            })?;
        let recv = router
            .send::<_, _, GenlId, Genlmsghdr<CtrlCmd, CtrlAttr>>(
                GenlId::Ctrl,
                NlmF::ACK,
                NlPayload::Payload(genl::get_family()?),
            )
            .map_err(|e| IpvsError::Netlink {
                op: op(),
                message: e.to_string(),
            })?;
        let mut family = None;
        for msg in recv {
            match msg {
                Ok(m) => {
                    if let NlPayload::Payload(p) = m.nl_payload() {
                        family = Some(genl::family_id(p)?);
                    }
                }
                Err(RouterError::Nlmsgerr(e)) if e.error().abs() == libc::ENOENT => {
                    return Err(IpvsError::Unavailable)
                }
                Err(e) => {
                    return Err(IpvsError::Netlink {
                        op: "resolve the IPVS netlink family".into(),
                        message: e.to_string(),
                    })
                }
            }
        }
        let family = family.ok_or(IpvsError::Unavailable)?;
        Ok(Ipvs { router, family })
    }

    /// The numeric generic netlink family id the kernel gave IPVS.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    /// Sends `req` and collects the reply messages (none for plain commands, one per object for
    /// dumps).
    pub fn request(&self, req: &Request) -> Result<Vec<Msg>, IpvsError> {
        let recv = self
            .router
            .send::<u16, Msg, u16, Msg>(
                self.family,
                req.flags(),
                NlPayload::Payload(req.to_genl()?),
            )
            .map_err(|e| router_error(req, e))?;
        let mut out = Vec::new();
        for msg in recv {
            let msg = msg.map_err(|e| router_error(req, e))?;
            if let NlPayload::Payload(p) = msg.nl_payload() {
                out.push(p.clone());
            }
        }
        Ok(out)
    }

    fn command(&self, req: Request) -> Result<(), IpvsError> {
        self.request(&req).map(drop)
    }

    pub fn info(&self) -> Result<Info, IpvsError> {
        let replies = self.request(&Request::GetInfo)?;
        let first = replies.first().ok_or_else(|| IpvsError::Netlink {
            op: describe(&Request::GetInfo),
            message: "no reply".into(),
        })?;
        Ok(genl::parse_info(first)?)
    }

    /// Every virtual service with its real servers, in kernel order.
    pub fn services(&self) -> Result<Vec<ServiceEntry>, IpvsError> {
        let mut out = Vec::new();
        for m in self.request(&Request::GetServices)? {
            let mut e = genl::parse_service(&m)?;
            e.dests = self.dests(&e.service.key)?;
            out.push(e);
        }
        Ok(out)
    }

    pub fn dests(&self, key: &ServiceKey) -> Result<Vec<DestEntry>, IpvsError> {
        self.request(&Request::GetDests(*key))?
            .iter()
            .map(|m| genl::parse_dest(m, key.family()).map_err(IpvsError::from))
            .collect()
    }

    pub fn add_service(&self, s: &Service) -> Result<(), IpvsError> {
        self.command(Request::NewService(s.clone()))
    }

    pub fn update_service(&self, s: &Service) -> Result<(), IpvsError> {
        self.command(Request::SetService(s.clone()))
    }

    pub fn del_service(&self, key: &ServiceKey) -> Result<(), IpvsError> {
        self.command(Request::DelService(*key))
    }

    pub fn add_dest(&self, key: &ServiceKey, d: &Dest) -> Result<(), IpvsError> {
        self.command(Request::NewDest(*key, d.clone()))
    }

    pub fn update_dest(&self, key: &ServiceKey, d: &Dest) -> Result<(), IpvsError> {
        self.command(Request::SetDest(*key, d.clone()))
    }

    pub fn del_dest(&self, key: &ServiceKey, addr: SocketAddr) -> Result<(), IpvsError> {
        self.command(Request::DelDest(*key, addr))
    }

    /// Removes every virtual service, also ones rwproxy does not own (`ipvsadm -C`).
    pub fn flush(&self) -> Result<(), IpvsError> {
        self.command(Request::Flush)
    }
}
