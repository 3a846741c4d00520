//! A running VRRP instance: raw sockets, the state machine, VIPs, GARP, notify.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::garp;
use super::netlink::{self, Rtnl, Vip};
use super::notify::{Notifier, NotifyConfig};
use super::packet::{
    Advert, Auth, Delivery, PacketError, Version, IPPROTO_VRRP, PRIORITY_OWNER, VRRP_GROUP,
    VRRP_TTL,
};
use super::state::{Action, Event, Machine, NotifyKind, Params, State};
use super::track::{self, TrackScript, Tracker};

/// One `vrrp_instance`, with keepalived's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// keepalived's instance name (`vrrp_instance NAME`), used in logs and `notify`.
    pub name: String,
    pub interface: String,
    pub virtual_router_id: u8,
    /// 1–255; 255 only for the address owner.
    pub priority: u8,
    pub version: Version,
    /// v2: whole seconds (1–255). v3: centiseconds (0.01–40.95 s).
    pub advert_int: Duration,
    pub virtual_ipaddress: Vec<Vip>,
    /// v2 only: `authentication { auth_type PASS; auth_pass … }` (first 8 bytes used).
    pub auth_pass: Option<String>,
    /// `false`: keepalived's `nopreempt`.
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Source address; default the interface's first address that is not a VIP.
    pub unicast_src_ip: Option<Ipv4Addr>,
    /// Unicast peers; empty: multicast to 224.0.0.18.
    pub unicast_peer: Vec<Ipv4Addr>,
    /// GARPs sent per VIP at takeover (keepalived default 5).
    pub garp_master_repeat: u32,
    /// A second burst after this delay (keepalived default 5 s); zero: none.
    pub garp_master_delay: Duration,
    /// keepalived's `garp_master_refresh`: while MASTER, a GARP burst this often; zero: never.
    pub garp_master_refresh: Duration,
    /// Link down on `interface` → FAULT (keepalived tracks the instance interface by default).
    pub track_interface: bool,
    /// `track_script`: weights move the priority; a weight-0 script failing means FAULT.
    pub track_script: Vec<TrackScript>,
    pub notify: NotifyConfig,
}

impl Instance {
    /// An instance with keepalived's defaults.
    pub fn new(name: &str, interface: &str, vrid: u8, priority: u8, vips: Vec<Vip>) -> Instance {
        Instance {
            name: name.to_string(),
            interface: interface.to_string(),
            virtual_router_id: vrid,
            priority,
            version: Version::V2,
            advert_int: Duration::from_secs(1),
            virtual_ipaddress: vips,
            auth_pass: None,
            preempt: true,
            preempt_delay: Duration::ZERO,
            unicast_src_ip: None,
            unicast_peer: Vec::new(),
            garp_master_repeat: 5,
            garp_master_delay: Duration::from_secs(5),
            garp_master_refresh: Duration::ZERO,
            track_interface: true,
            track_script: Vec::new(),
            notify: NotifyConfig::default(),
        }
    }

    /// Settings the protocol cannot run with. Config loading calls this so a bad instance
    /// stops `check-config` and `serve` at once; the instance itself checks again, for
    /// instances built by hand.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |key, message| Err(InvalidSetting { key, message });
        if self.virtual_router_id == 0 {
            return bad("virtual_router_id", "must be 1-255");
        }
        if self.priority == 0 {
            return bad("priority", "must be 1-255");
        }
        match self.version {
            Version::V2 => {
                let s = self.advert_int.as_secs();
                if self.advert_int.subsec_nanos() != 0 || !(1..=255).contains(&s) {
                    return bad("advert_int", "VRRPv2 needs whole seconds 1-255");
                }
            }
            Version::V3 => {
                let cs = self.advert_int.as_millis() / 10;
                if !(1..=4095).contains(&cs) {
                    return bad("advert_int", "VRRPv3 needs 0.01-40.95 s");
                }
                if self.auth_pass.is_some() {
                    return bad("auth_pass", "VRRPv3 has no authentication");
                }
            }
        }
        if self.virtual_ipaddress.is_empty() {
            return bad("virtual_ipaddress", "at least one address is needed");
        }
        Ok(())
    }

    fn interval_field(&self) -> u16 {
        match self.version {
            Version::V2 => self.advert_int.as_secs() as u16,
            Version::V3 => (self.advert_int.as_millis() / 10) as u16,
        }
    }

    fn auth(&self) -> Auth {
        match &self.auth_pass {
            Some(p) => Auth::simple(p),
            None => Auth::None([0; 8]),
        }
    }
}

/// A setting an [`Instance`] cannot run with, by its keepalived key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidSetting {
    pub key: &'static str,
    pub message: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn ctx<T>(r: io::Result<T>, context: impl Into<String>) -> Result<T, VrrpError> {
    r.map_err(|source| VrrpError::Io {
        context: context.into(),
        source,
    })
}

/// What an instance looks like now (for the admin port's `SELECT * FROM vrrp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub instance: String,
    pub interface: String,
    pub vrid: u8,
    pub state: State,
    pub priority: u8,
    pub effective_priority: u8,
    pub master: Option<Ipv4Addr>,
    pub vips: Vec<Vip>,
    /// Packets dropped by the receive checks.
    pub bad_packets: u64,
}

impl Status {
    /// The admin port's `SELECT * FROM vrrp` row.
    pub fn to_vrrp_info(&self) -> rwproxy_admin::control::VrrpInfo {
        rwproxy_admin::control::VrrpInfo {
            instance: self.instance.clone(),
            interface: self.interface.clone(),
            vrid: self.vrid,
            state: self.state.keepalived_name().to_string(),
            priority: self.priority,
            effective_priority: self.effective_priority,
            virtual_ips: self.vips.iter().map(|v| v.to_string()).collect(),
            master: self.master.map(|m| m.to_string()),
        }
    }
}

/// Requests to a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Planned switchover: a MASTER gives the VIP up and stays BACKUP.
    Resign,
}

/// A started instance.
pub struct Running {
    pub handle: JoinHandle<Result<(), VrrpError>>,
    pub status: watch::Receiver<Status>,
    pub control: tokio::sync::mpsc::UnboundedSender<Control>,
}

/// Starts `instance` on the current tokio runtime. When `shutdown` completes the instance stops
/// cleanly: a MASTER sends a priority-0 advert and removes its VIPs, `notify_stop` runs, and the
/// task ends once the hooks have run.
pub fn run<F>(instance: Instance, shutdown: F) -> Running
where
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = watch::channel(Status {
        instance: instance.name.clone(),
        interface: instance.interface.clone(),
        vrid: instance.virtual_router_id,
        state: State::Initialize,
        priority: instance.priority,
        effective_priority: instance.priority,
        master: None,
        vips: instance.virtual_ipaddress.clone(),
        bad_packets: 0,
    });
    let (control, requests) = tokio::sync::mpsc::unbounded_channel();
    let handle = tokio::spawn(async move {
        let name = instance.name.clone();
        let result = run_instance(instance, shutdown, &tx, requests).await;
        // Logged now, not when the process stops: until then nothing else would tell.
        if let Err(e) = &result {
            tracing::error!(instance = %name, "VRRP instance stopped: {e}");
            tx.send_modify(|s| s.state = State::Fault);
        }
        result
    });
    Running {
        handle,
        status: rx,
        control,
    }
}

struct Io {
    inst: Instance,
    ifindex: u32,
    mac: [u8; 6],
    src: Ipv4Addr,
    send: Socket,
    rtnl: Rtnl,
    notifier: Notifier,
}

impl Io {
    fn send_advert(&self, priority: u8) {
        let advert = Advert {
            version: self.inst.version,
            vrid: self.inst.virtual_router_id,
            priority,
            interval: self.inst.interval_field(),
            addrs: self.inst.virtual_ipaddress.iter().map(|v| v.addr).collect(),
            auth: self.inst.auth(),
        };
        let dsts: Vec<Ipv4Addr> = if self.inst.unicast_peer.is_empty() {
            vec![VRRP_GROUP]
        } else {
            self.inst.unicast_peer.clone()
        };
        for dst in dsts {
            let msg = match advert.encode(self.src, dst) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(instance = %self.inst.name, "cannot encode advert: {e}");
                    return;
                }
            };
            let to = SockAddr::from(SocketAddrV4::new(dst, 0));
            if let Err(e) = self.send.send_to(&msg, &to) {
                tracing::warn!(instance = %self.inst.name, %dst, "send advert: {e}");
            }
        }
    }

    fn add_vips(&self) {
        for vip in &self.inst.virtual_ipaddress {
            match self.rtnl.add(self.ifindex, *vip) {
                Ok(_) => {}
                Err(e) => tracing::error!(instance = %self.inst.name, %vip, "add VIP: {e}"),
            }
        }
        self.garp();
    }

    fn garp(&self) {
        let ips: Vec<Ipv4Addr> = self.inst.virtual_ipaddress.iter().map(|v| v.addr).collect();
        for _ in 0..self.inst.garp_master_repeat.max(1) {
            if let Err(e) = garp::send(self.ifindex, self.mac, &ips) {
                tracing::warn!(instance = %self.inst.name, "gratuitous ARP: {e}");
                break;
            }
        }
    }

    fn remove_vips(&self) {
        for vip in &self.inst.virtual_ipaddress {
            if let Err(e) = self.rtnl.remove(self.ifindex, *vip) {
                tracing::error!(instance = %self.inst.name, %vip, "remove VIP: {e}");
            }
        }
    }
}

fn recv_socket(inst: &Instance, ifindex: u32) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )?;
    s.bind_device(Some(inst.interface.as_bytes()))?;
    if inst.unicast_peer.is_empty() {
        // With the ifindex: INADDR_ANY without a default route fails with ENODEV.
        s.join_multicast_v4_n(&VRRP_GROUP, &InterfaceIndexOrAddress::Index(ifindex))?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

fn send_socket(inst: &Instance, src: Ipv4Addr) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )?;
    s.bind_device(Some(inst.interface.as_bytes()))?;
    s.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
    s.set_multicast_ttl_v4(u32::from(VRRP_TTL))?;
    s.set_ttl_v4(u32::from(VRRP_TTL))?;
    s.set_multicast_loop_v4(false)?;
    s.set_multicast_if_v4(&src)?;
    s.set_tos_v4(0xc0)?;
    // Never read from: keep its receive queue empty.
    s.set_recv_buffer_size(0)?;
    Ok(s)
}

/// Why a received packet was dropped.
#[derive(Debug)]
enum Rejected {
    Packet(PacketError),
    Other(String),
}

fn check(
    inst: &Instance,
    own: Ipv4Addr,
    datagram: &[u8],
) -> Result<Option<(Ipv4Addr, Advert)>, Rejected> {
    let delivery = match inst.unicast_peer.is_empty() {
        true => Delivery::Multicast,
        false => Delivery::Unicast,
    };
    let (ip, adv) = Advert::decode_ip(datagram, delivery).map_err(Rejected::Packet)?;
    if ip.src == own {
        return Ok(None);
    }
    if !inst.unicast_peer.is_empty() && !inst.unicast_peer.contains(&ip.src) {
        return Err(Rejected::Other(format!(
            "advert from {} is not from a unicast peer",
            ip.src
        )));
    }
    if adv.vrid != inst.virtual_router_id {
        return Ok(None);
    }
    if adv.version != inst.version {
        return Err(Rejected::Other(format!(
            "VRRPv{} advert, this instance speaks v{}",
            adv.version.number(),
            inst.version.number()
        )));
    }
    if inst.version == Version::V2 {
        if !inst.auth().accepts(&adv.auth) {
            return Err(Rejected::Other(format!(
                "authentication mismatch from {}",
                ip.src
            )));
        }
        if adv.interval != inst.interval_field() {
            return Err(Rejected::Other(format!(
                "advertisement interval mismatch: {} s from {}",
                adv.interval, ip.src
            )));
        }
    }
    let mut ours: Vec<Ipv4Addr> = inst.virtual_ipaddress.iter().map(|v| v.addr).collect();
    let mut theirs = adv.addrs.clone();
    ours.sort();
    theirs.sort();
    // Another router's VRID (a second cluster on the VLAN with the same virtual_router_id):
    // obeying its adverts would give up our VIP to a router that does not hold it. Only the
    // addresses' owner (255) is followed anyway (RFC 3768 §7.1, RFC 5798 §7.1, keepalived).
    if ours != theirs && adv.priority != PRIORITY_OWNER {
        return Err(Rejected::Other(format!(
            "advert from {} lists VIPs {theirs:?}, ours are {ours:?}: another virtual router \
             with the same virtual_router_id?",
            ip.src
        )));
    }
    Ok(Some((ip.src, adv)))
}

async fn run_instance<F>(
    inst: Instance,
    shutdown: F,
    status: &watch::Sender<Status>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Control>,
) -> Result<(), VrrpError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let name = inst.name.clone();
    inst.validate()
        .map_err(|e| VrrpError::Config(format!("{name}: {e}")))?;
    let ifindex = ctx(netlink::ifindex(&inst.interface), &inst.interface)?;
    let rtnl = ctx(Rtnl::new(), "rtnetlink")?;
    let link = ctx(
        rtnl.link(ifindex),
        format!("link state of {}", inst.interface),
    )?;
    let mac = link.mac.ok_or_else(|| {
        VrrpError::Config(format!(
            "{name}: {} has no Ethernet address",
            inst.interface
        ))
    })?;
    let vip_addrs: Vec<Ipv4Addr> = inst.virtual_ipaddress.iter().map(|v| v.addr).collect();
    // Stale VIPs (a crashed master leaves them on the interface) go first.
    for vip in &inst.virtual_ipaddress {
        if ctx(rtnl.remove(ifindex, *vip), format!("removing stale {vip}"))? {
            tracing::info!(instance = %name, %vip, "removed stale VIP");
        }
    }
    let src = match inst.unicast_src_ip {
        Some(s) => s,
        None => ctx(rtnl.addresses(ifindex), "listing addresses")?
            .into_iter()
            .find(|a| !vip_addrs.contains(a))
            .ok_or_else(|| {
                VrrpError::Config(format!("{name}: no IPv4 address on {}", inst.interface))
            })?,
    };
    let recv_sock = ctx(recv_socket(&inst, ifindex), "VRRP receive socket")?;
    // SAFETY: the AsyncFd owns the socket, so the descriptor stays open while registered.
    let recv = unsafe { AsyncFd::register(recv_sock) }.map_err(|e| VrrpError::Io {
        context: "registering the receive socket".into(),
        source: io::Error::other(e.to_string()),
    })?;
    let send = ctx(send_socket(&inst, src), "VRRP send socket")?;
    let notifier = Notifier::spawn(name.clone(), inst.notify.clone());
    let mut machine = Machine::new(Params {
        version: inst.version,
        priority: inst.priority,
        advert_int: inst.advert_int,
        preempt: inst.preempt,
        preempt_delay: inst.preempt_delay,
        primary_ip: src,
    });
    let io = Io {
        inst: inst.clone(),
        ifindex,
        mac,
        src,
        send,
        rtnl,
        notifier,
    };
    let start = Instant::now();
    let mut garp_again: Option<Instant> = None;
    let mut bad_packets = 0u64;
    let mut link_poll = tokio::time::interval(Duration::from_millis(100));
    link_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut link_ok = true;

    let apply = |machine: &Machine,
                 actions: Vec<Action>,
                 garp_again: &mut Option<Instant>,
                 bad_packets: u64| {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => io.send_advert(priority),
                Action::AddVips => {
                    io.add_vips();
                    let next = if inst.garp_master_delay.is_zero() {
                        inst.garp_master_refresh
                    } else {
                        inst.garp_master_delay
                    };
                    if !next.is_zero() {
                        *garp_again = Some(Instant::now() + next);
                    }
                }
                Action::RemoveVips => {
                    io.remove_vips();
                    *garp_again = None;
                }
                Action::Notify(kind) => {
                    match kind {
                        NotifyKind::Stop => tracing::info!("({name}) Stopping"),
                        k => tracing::info!("({name}) Entering {} STATE", k.word()),
                    }
                    io.notifier.notify(kind, machine.priority());
                }
            }
        }
        status.send_replace(Status {
            instance: name.clone(),
            interface: inst.interface.clone(),
            vrid: inst.virtual_router_id,
            state: machine.state(),
            priority: inst.priority,
            effective_priority: machine.priority(),
            master: machine.master(),
            vips: inst.virtual_ipaddress.clone(),
            bad_packets,
        });
    };

    let mut trackers: Vec<Tracker> = inst
        .track_script
        .iter()
        .map(|t| Tracker::new(t.rise, t.fall))
        .collect();
    let mut faulted = false;
    let (track_tx, mut track_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, bool)>();
    let track_tasks: Vec<JoinHandle<()>> = inst
        .track_script
        .iter()
        .enumerate()
        .map(|(i, t)| {
            tokio::spawn(track::run_script(
                name.clone(),
                i,
                t.clone(),
                track_tx.clone(),
            ))
        })
        .collect();
    drop(track_tx);

    if inst.track_interface && !link.usable() {
        link_ok = false;
        faulted = true;
        tracing::info!("({name}) interface {} is down", inst.interface);
        machine.handle(start.elapsed(), Event::Fault(true));
    }
    let actions = machine.handle(start.elapsed(), Event::Startup);
    apply(&machine, actions, &mut garp_again, bad_packets);

    tokio::pin!(shutdown);
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 65536];
    loop {
        let deadline = machine
            .deadline()
            .map(|d| tokio::time::Instant::from_std(start + d));
        tokio::select! {
            _ = &mut shutdown => {
                let actions = machine.handle(start.elapsed(), Event::Shutdown);
                apply(&machine, actions, &mut garp_again, bad_packets);
                break;
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                let actions = machine.handle(start.elapsed(), Event::Timer);
                apply(&machine, actions, &mut garp_again, bad_packets);
            }
            _ = async { tokio::time::sleep_until(tokio::time::Instant::from_std(garp_again.unwrap())).await }, if garp_again.is_some() => {
                garp_again = None;
                if machine.state() == State::Master {
                    io.garp();
                    if !inst.garp_master_refresh.is_zero() {
                        garp_again = Some(Instant::now() + inst.garp_master_refresh);
                    }
                }
            }
            _ = link_poll.tick(), if inst.track_interface => {
                let up = match io.rtnl.link(ifindex) {
                    Ok(l) => l.usable(),
                    Err(e) => {
                        tracing::warn!("({name}) cannot read the state of {}: {e}", inst.interface);
                        false
                    }
                };
                if up != link_ok {
                    link_ok = up;
                    tracing::info!("({name}) interface {} is {}", inst.interface, if up { "up" } else { "down" });
                }
            }
            Some(Control::Resign) = requests.recv() => {
                tracing::info!("({name}) switchover requested: resigning as master");
                let actions = machine.handle(start.elapsed(), Event::Resign);
                apply(&machine, actions, &mut garp_again, bad_packets);
            }
            Some((i, ok)) = track_rx.recv() => {
                if let Some(good) = trackers[i].record(ok) {
                    tracing::info!("({name}) Script({}) {}", inst.track_script[i].name, if good { "succeeded" } else { "failed" });
                }
            }
            r = recv.readable() => {
                let mut guard = ctx(r, "waiting for VRRP packets")?;
                loop {
                    let n = match guard.get_inner().recv(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(e) => return ctx(Err(e), "receiving VRRP packets"),
                    };
                    // SAFETY: recv initialised the first n bytes.
                    let datagram: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n) };
                    match check(&inst, src, datagram) {
                        Ok(None) => {}
                        Ok(Some((from, adv))) => {
                            let interval_cs = match adv.version {
                                Version::V2 => adv.interval.saturating_mul(100),
                                Version::V3 => adv.interval,
                            };
                            let before = machine.state();
                            let actions = machine.handle(start.elapsed(), Event::Advert { from, priority: adv.priority, interval_cs });
                            if before == State::Master && machine.state() == State::Backup {
                                tracing::info!("({name}) Master received advert from {from} with higher priority {}, ours {}", adv.priority, machine.priority());
                            }
                            apply(&machine, actions, &mut garp_again, bad_packets);
                        }
                        Err(rejected) => {
                            bad_packets += 1;
                            match rejected {
                                Rejected::Packet(e) => tracing::warn!("({name}) dropping bad packet: {e}"),
                                Rejected::Other(e) => tracing::warn!("({name}) dropping advert: {e}"),
                            }
                        }
                    }
                }
            }
        }
        let (prio, script_fault) = track::effective(
            inst.priority,
            inst.track_script
                .iter()
                .zip(&trackers)
                .map(|(t, k)| (t.weight, k.good())),
        );
        if prio != machine.priority() {
            tracing::info!(
                "({name}) Changing effective priority from {} to {prio}",
                machine.priority()
            );
            let actions = machine.handle(start.elapsed(), Event::Priority(prio));
            apply(&machine, actions, &mut garp_again, bad_packets);
        }
        let fault = !link_ok || script_fault;
        if fault != faulted {
            faulted = fault;
            let actions = machine.handle(start.elapsed(), Event::Fault(fault));
            apply(&machine, actions, &mut garp_again, bad_packets);
        }
    }
    for t in track_tasks {
        t.abort();
    }
    let Io { notifier, .. } = io;
    notifier.finish().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
    const OWN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

    fn inst() -> Instance {
        Instance::new(
            "VI_1",
            "eth0",
            51,
            100,
            vec!["192.0.2.100/24".parse().unwrap()],
        )
    }

    fn datagram(src: Ipv4Addr, ttl: u8, adv: &Advert) -> Vec<u8> {
        let msg = adv.encode(src, VRRP_GROUP).unwrap();
        let mut d = vec![0x45, 0xc0, 0, 0, 0, 1, 0, 0, ttl, IPPROTO_VRRP, 0, 0];
        d[2..4].copy_from_slice(&((20 + msg.len()) as u16).to_be_bytes());
        d.extend_from_slice(&src.octets());
        d.extend_from_slice(&VRRP_GROUP.octets());
        d.extend_from_slice(&msg);
        d
    }

    fn advert(i: &Instance) -> Advert {
        Advert {
            version: i.version,
            vrid: i.virtual_router_id,
            priority: 150,
            interval: i.interval_field(),
            addrs: vec![Ipv4Addr::new(192, 0, 2, 100)],
            auth: i.auth(),
        }
    }

    fn rejected(r: Result<Option<(Ipv4Addr, Advert)>, Rejected>) -> String {
        match r {
            Err(Rejected::Packet(e)) => e.to_string(),
            Err(Rejected::Other(e)) => e,
            Ok(x) => panic!("accepted: {x:?}"),
        }
    }

    #[test]
    fn receive_checks() {
        let i = inst();
        let good = advert(&i);
        let (from, a) = check(&i, OWN, &datagram(PEER, 255, &good))
            .unwrap()
            .unwrap();
        assert_eq!((from, a.priority), (PEER, 150));
        // Our own multicast and other VRIDs: ignored silently.
        assert!(check(&i, OWN, &datagram(OWN, 255, &good))
            .unwrap()
            .is_none());
        let other = Advert {
            vrid: 52,
            ..good.clone()
        };
        assert!(check(&i, OWN, &datagram(PEER, 255, &other))
            .unwrap()
            .is_none());
        // TTL, version, auth, interval: counted and dropped.
        assert!(rejected(check(&i, OWN, &datagram(PEER, 254, &good))).contains("TTL 254"));
        let v3 = Advert {
            version: Version::V3,
            interval: 100,
            ..good.clone()
        };
        assert!(rejected(check(&i, OWN, &datagram(PEER, 255, &v3))).contains("VRRPv3"));
        let auth = Advert {
            auth: Auth::simple("x"),
            ..good.clone()
        };
        assert!(rejected(check(&i, OWN, &datagram(PEER, 255, &auth))).contains("authentication"));
        let slow = Advert {
            interval: 2,
            ..good.clone()
        };
        assert!(rejected(check(&i, OWN, &datagram(PEER, 255, &slow))).contains("interval"));
        // Unicast: only configured peers.
        let mut u = inst();
        u.unicast_peer = vec![Ipv4Addr::new(192, 0, 2, 13)];
        assert!(rejected(check(&u, OWN, &datagram(PEER, 255, &good))).contains("unicast peer"));
        u.unicast_peer.push(PEER);
        assert!(check(&u, OWN, &datagram(PEER, 255, &good))
            .unwrap()
            .is_some());
        // ... which may be routers away: no TTL check (as keepalived).
        assert!(check(&u, OWN, &datagram(PEER, 61, &good))
            .unwrap()
            .is_some());
    }

    /// Another virtual router with our VRID (its own VIPs) would otherwise make our master
    /// give up the VIP to a router that does not hold it.
    #[test]
    fn adverts_for_other_addresses_are_dropped_unless_from_their_owner() {
        let i = inst();
        let other = Advert {
            addrs: vec![Ipv4Addr::new(192, 0, 2, 200)],
            ..advert(&i)
        };
        let why = rejected(check(&i, OWN, &datagram(PEER, 255, &other)));
        assert!(why.contains("same virtual_router_id"), "{why}");
        let owner = Advert {
            priority: PRIORITY_OWNER,
            ..other
        };
        assert!(check(&i, OWN, &datagram(PEER, 255, &owner))
            .unwrap()
            .is_some());
    }

    /// Type 0's data is ignored on receipt (RFC 3768 §5.3.6.1).
    #[test]
    fn no_authentication_ignores_its_data() {
        let i = inst();
        let padded = Advert {
            auth: Auth::None(*b"garbage!"),
            ..advert(&i)
        };
        assert!(check(&i, OWN, &datagram(PEER, 255, &padded))
            .unwrap()
            .is_some());
    }

    #[test]
    fn config_validation() {
        assert!(inst().validate().is_ok());
        let mut i = inst();
        i.advert_int = Duration::from_millis(1500);
        assert!(i.validate().is_err(), "v2 needs whole seconds");
        i.version = Version::V3;
        assert!(i.validate().is_ok());
        assert_eq!(i.interval_field(), 150);
        i.auth_pass = Some("x".into());
        assert!(i.validate().is_err(), "v3 has no auth");
        let mut i = inst();
        i.virtual_ipaddress.clear();
        assert_eq!(i.validate().unwrap_err().key, "virtual_ipaddress");
        let mut i = inst();
        i.virtual_router_id = 0;
        assert_eq!(i.validate().unwrap_err().key, "virtual_router_id");
        let mut i = inst();
        i.priority = 0;
        assert_eq!(i.validate().unwrap_err().key, "priority");
    }

    #[test]
    fn status_row_for_the_admin_port() {
        let s = Status {
            instance: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 51,
            state: State::Master,
            priority: 150,
            effective_priority: 90,
            master: Some(OWN),
            vips: vec!["192.0.2.100/24".parse().unwrap()],
            bad_packets: 0,
        };
        let row = s.to_vrrp_info();
        assert_eq!(row.state, "MASTER");
        assert_eq!(row.virtual_ips, vec!["192.0.2.100/24".to_string()]);
        assert_eq!(row.master.as_deref(), Some("192.0.2.11"));
        assert_eq!(row.effective_priority, 90);
    }
}
