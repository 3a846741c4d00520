//! A small VRRP daemon for the integration tests (and for trying the library by hand).
//!
//! `vrrpd-test run --name VI_1 --iface eth0 --vrid 51 --prio 150 --vip 192.0.2.100/24 [--v3]
//!   [--advert-ms 1000] [--nopreempt] [--preempt-delay-ms N] [--auth PASS] [--unicast-src IP]
//!   [--peer IP]... [--notify CMD] [--notify-master CMD] [--notify-backup CMD] [--listen PORT]
//!   [--track CMD [--track-weight W] [--track-fall N] [--track-rise N]]` (scripts every 0.2 s)
//!   runs one instance until SIGTERM/SIGINT (clean stop: priority-0 advert).
//! `vrrpd-test inject SRC TTL VRID PRIO VIP [COUNT]`: sends COUNT (default 10) VRRPv2 adverts to
//!   224.0.0.18 from SRC with the given IP TTL, 100 ms apart (to test the receivers' checks).
//! `vrrpd-test listen NAME PORT`: answers every TCP connection with NAME.
//! `vrrpd-test probe ADDR:PORT`: connects (300 ms timeout), prints the answer; exit 1 on failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use rwproxy_ha::vrrp::{self, Instance, TrackScript, Version, Vip};

fn listen(name: String, port: u16) {
    let l = TcpListener::bind(("0.0.0.0", port)).expect("bind listener");
    for mut s in l.incoming().flatten() {
        let _ = s.write_all(name.as_bytes());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("listen") => listen(args[1].clone(), args[2].parse().expect("port")),
        Some("probe") => {
            let addr: SocketAddr = args[1].parse().expect("address");
            let mut s = match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => s,
                Err(_) => std::process::exit(1),
            };
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut out = String::new();
            if s.read_to_string(&mut out).is_err() {
                std::process::exit(1);
            }
            print!("{out}");
        }
        Some("run") => run(&args[1..]),
        Some("inject") => inject(&args[1..]),
        _ => {
            eprintln!("usage: vrrpd-test run|listen|probe ...");
            std::process::exit(2);
        }
    }
}

fn run(args: &[String]) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut inst = Instance::new("VI_1", "eth0", 51, 100, Vec::new());
    let mut listen_port = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().expect("missing value").clone();
        match a.as_str() {
            "--name" => inst.name = v(),
            "--iface" => inst.interface = v(),
            "--vrid" => inst.virtual_router_id = v().parse().unwrap(),
            "--prio" => inst.priority = v().parse().unwrap(),
            "--vip" => inst.virtual_ipaddress.push(v().parse::<Vip>().unwrap()),
            "--v3" => inst.version = Version::V3,
            "--advert-ms" => inst.advert_int = Duration::from_millis(v().parse().unwrap()),
            "--nopreempt" => inst.preempt = false,
            "--preempt-delay-ms" => {
                inst.preempt_delay = Duration::from_millis(v().parse().unwrap())
            }
            "--auth" => inst.auth_pass = Some(v()),
            "--unicast-src" => inst.unicast_src_ip = Some(v().parse().unwrap()),
            "--peer" => inst.unicast_peer.push(v().parse().unwrap()),
            "--notify" => inst.notify.notify = Some(v()),
            "--notify-master" => inst.notify.master = Some(v()),
            "--notify-backup" => inst.notify.backup = Some(v()),
            "--track" => {
                let mut t = TrackScript::new("chk", &v());
                t.interval = Duration::from_millis(200);
                t.timeout = Duration::from_millis(500);
                inst.track_script.push(t);
            }
            "--track-weight" => inst.track_script.last_mut().unwrap().weight = v().parse().unwrap(),
            "--track-fall" => inst.track_script.last_mut().unwrap().fall = v().parse().unwrap(),
            "--track-rise" => inst.track_script.last_mut().unwrap().rise = v().parse().unwrap(),
            "--listen" => listen_port = Some(v().parse::<u16>().unwrap()),
            other => panic!("unknown option {other}"),
        }
    }
    if let Some(port) = listen_port {
        let name = inst.name.clone();
        std::thread::spawn(move || listen(name, port));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).unwrap();
            let mut int = signal(SignalKind::interrupt()).unwrap();
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let running = vrrp::run(inst, shutdown);
        let mut status = running.status.clone();
        tokio::spawn(async move {
            let mut last = None;
            while status.changed().await.is_ok() {
                let s = status.borrow().clone();
                if last != Some((s.state, s.master)) {
                    last = Some((s.state, s.master));
                    println!("STATE {} {:?}", s.state.keepalived_name(), s.master);
                }
            }
        });
        match running.handle.await.unwrap() {
            Ok(()) => {}
            Err(e) => {
                eprintln!("vrrpd-test: {e}");
                std::process::exit(1);
            }
        }
    });
}

fn inject(args: &[String]) {
    use rwproxy_ha::vrrp::packet::{Advert, Auth, VRRP_GROUP};
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddrV4};
    let src: Ipv4Addr = args[0].parse().unwrap();
    let ttl: u32 = args[1].parse().unwrap();
    let advert = Advert {
        version: Version::V2,
        vrid: args[2].parse().unwrap(),
        priority: args[3].parse().unwrap(),
        interval: 1,
        addrs: vec![args[4].parse().unwrap()],
        auth: Auth::None([0; 8]),
    };
    let count: usize = args.get(5).map_or(10, |c| c.parse().unwrap());
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
    s.bind(&SockAddr::from(SocketAddrV4::new(src, 0))).unwrap();
    s.set_multicast_if_v4(&src).unwrap();
    s.set_multicast_ttl_v4(ttl).unwrap();
    let msg = advert.encode(src, VRRP_GROUP).unwrap();
    for _ in 0..count {
        s.send_to(&msg, &SockAddr::from(SocketAddrV4::new(VRRP_GROUP, 0)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
}
