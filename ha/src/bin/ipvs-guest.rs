//! The IPVS suite that runs inside a qemu guest booted by `tests/ipvs_qemu.rs` (a stock Debian
//! kernel with ip_vs; the host kernel has none). Static binary, no test harness: prints one line
//! per check (`ok NAME` / `FAIL NAME: why`) and `DONE pass=N fail=M` at the end, which the host
//! reads from the guest's second serial port.

use std::net::SocketAddr;
use std::process::Command;

use rwproxy_ha::ipvs::{
    table::{self, Format},
    DesiredService, Dest, Family, Forward, Ipvs, IpvsError, Reconciler, Request, Service,
    ServiceKey,
};

struct Suite {
    pass: usize,
    fail: usize,
}

impl Suite {
    fn check(&mut self, name: &str, r: Result<(), String>) {
        match r {
            Ok(()) => {
                self.pass += 1;
                println!("ok {name}");
            }
            Err(e) => {
                self.fail += 1;
                // One line per result: the host parses lines.
                println!("FAIL {name}: {}", e.replace('\n', "\\n"));
            }
        }
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn key(s: &str) -> ServiceKey {
    let a = addr(s);
    ServiceKey::tcp(a.ip(), a.port())
}

fn dest(s: &str, weight: u32) -> Dest {
    Dest {
        weight,
        ..Dest::new(addr(s))
    }
}

fn ipvsadm(args: &[&str]) -> Result<String, String> {
    let out = Command::new("/usr/sbin/ipvsadm")
        .args(args)
        .output()
        .map_err(|e| format!("ipvsadm: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ipvsadm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Our rendering of the kernel table against ipvsadm's own, both formats.
fn same_as_ipvsadm(ipvs: &Ipvs) -> Result<(), String> {
    let info = ipvs.info().map_err(|e| e.to_string())?;
    let services = ipvs.services().map_err(|e| e.to_string())?;
    for (format, args) in [
        (Format::Plain, &["-Ln"][..]),
        (Format::Stats, &["-Ln", "--stats"][..]),
    ] {
        let ours = table::render(&info, &services, format);
        let theirs = ipvsadm(args)?;
        if ours != theirs {
            return Err(format!(
                "{args:?} differs\n--- ipvsadm\n{theirs}--- rwproxy\n{ours}"
            ));
        }
    }
    Ok(())
}

fn expect_err(r: Result<(), IpvsError>, errno: i32, text: &str) -> Result<(), String> {
    match r {
        Ok(()) => Err(format!("succeeded, expected errno {errno}")),
        Err(e) if e.errno() == Some(errno) && e.to_string().contains(text) => Ok(()),
        Err(e) => Err(format!(
            "got {e} (errno {:?}), expected errno {errno} and '{text}'",
            e.errno()
        )),
    }
}

fn weights(ipvs: &Ipvs, k: &ServiceKey) -> Result<Vec<(SocketAddr, u32)>, String> {
    let mut v: Vec<_> = ipvs
        .dests(k)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|d| (d.dest.socket_addr(), d.dest.weight))
        .collect();
    v.sort();
    Ok(v)
}

fn main() {
    let mut s = Suite { pass: 0, fail: 0 };
    let ipvs = match Ipvs::connect() {
        Ok(i) => i,
        Err(e) => {
            println!("FAIL connect: {e}");
            println!("DONE pass=0 fail=1");
            return;
        }
    };
    s.check(
        "family_resolved",
        if ipvs.family_id() >= 16 {
            Ok(())
        } else {
            Err(format!("family id {}", ipvs.family_id()))
        },
    );
    let vip = key("192.0.2.200:3306");

    s.check(
        "service_add",
        (|| {
            ipvs.add_service(&Service::new(vip, "wrr"))
                .map_err(|e| e.to_string())?;
            let list = ipvs.services().map_err(|e| e.to_string())?;
            match list.as_slice() {
                [e] if e.service.same_settings(&Service::new(vip, "wrr")) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })(),
    );
    s.check(
        "service_duplicate_eexist",
        expect_err(
            ipvs.add_service(&Service::new(vip, "wrr")),
            libc::EEXIST,
            "already exists",
        ),
    );
    s.check(
        "scheduler_unknown_enoent",
        expect_err(
            ipvs.add_service(&Service::new(key("192.0.2.201:3306"), "nosuch")),
            libc::ENOENT,
            "scheduler \"nosuch\"",
        ),
    );
    s.check(
        "dest_to_missing_service_esrch",
        expect_err(
            ipvs.add_dest(&key("192.0.2.202:3306"), &dest("192.0.2.21:3306", 1)),
            libc::ESRCH,
            "does not exist",
        ),
    );
    s.check(
        "bad_ipv6_netmask_einval",
        expect_err(
            ipvs.add_service(&Service {
                netmask: 0,
                ..Service::new(key("[2001:db8::1]:3306"), "rr").with_persistence(60, 128)
            }),
            libc::EINVAL,
            "invalid argument",
        ),
    );
    s.check(
        "dests_add_edit_drain",
        (|| {
            ipvs.add_dest(&vip, &dest("192.0.2.21:3306", 3))
                .map_err(|e| e.to_string())?;
            ipvs.add_dest(&vip, &dest("192.0.2.22:3306", 1))
                .map_err(|e| e.to_string())?;
            expect_err(
                ipvs.add_dest(&vip, &dest("192.0.2.22:3306", 1)),
                libc::EEXIST,
                "already in",
            )?;
            ipvs.update_dest(&vip, &dest("192.0.2.22:3306", 5))
                .map_err(|e| e.to_string())?;
            // Drain: weight 0 keeps established connections, takes no new ones.
            ipvs.update_dest(&vip, &dest("192.0.2.21:3306", 0))
                .map_err(|e| e.to_string())?;
            let w = weights(&ipvs, &vip)?;
            if w != vec![(addr("192.0.2.21:3306"), 0), (addr("192.0.2.22:3306"), 5)] {
                return Err(format!("{w:?}"));
            }
            same_as_ipvsadm(&ipvs)
        })(),
    );
    s.check(
        "dest_delete_missing_enoent",
        expect_err(
            ipvs.del_dest(&vip, addr("192.0.2.99:3306")),
            libc::ENOENT,
            "is not in virtual service",
        ),
    );
    s.check(
        "dest_edit_missing_enoent",
        expect_err(
            ipvs.update_dest(&vip, &dest("192.0.2.99:3306", 1)),
            libc::ENOENT,
            "is not in virtual service",
        ),
    );
    s.check(
        "dest_delete",
        (|| {
            ipvs.del_dest(&vip, addr("192.0.2.21:3306"))
                .map_err(|e| e.to_string())?;
            let w = weights(&ipvs, &vip)?;
            if w != vec![(addr("192.0.2.22:3306"), 5)] {
                return Err(format!("{w:?}"));
            }
            Ok(())
        })(),
    );
    s.check(
        "varied_services_print_like_ipvsadm",
        (|| {
            let persistent = key("192.0.2.203:3306");
            ipvs.add_service(&Service::new(persistent, "rr").with_persistence(300, 24))
                .map_err(|e| e.to_string())?;
            ipvs.add_dest(
                &persistent,
                &Dest {
                    forward: Forward::Masq,
                    ..dest("10.1.0.5:3307", 2)
                },
            )
            .map_err(|e| e.to_string())?;
            ipvs.add_dest(
                &persistent,
                &Dest {
                    forward: Forward::Tunnel,
                    ..dest("192.0.2.23:3306", 1)
                },
            )
            .map_err(|e| e.to_string())?;
            let fwm = ServiceKey::Fwmark {
                family: Family::V4,
                mark: 7,
            };
            ipvs.add_service(&Service::new(fwm, "lc"))
                .map_err(|e| e.to_string())?;
            ipvs.add_dest(&fwm, &dest("192.0.2.24:0", 1))
                .map_err(|e| e.to_string())?;
            let v6 = key("[2001:db8::10]:3306");
            ipvs.add_service(&Service::new(v6, "sh"))
                .map_err(|e| e.to_string())?;
            ipvs.add_dest(&v6, &dest("[2001:db8::21]:3306", 1))
                .map_err(|e| e.to_string())?;
            same_as_ipvsadm(&ipvs)?;
            // Settings round-trip through the kernel.
            let listed = ipvs.services().map_err(|e| e.to_string())?;
            let p = listed
                .iter()
                .find(|e| e.service.key == persistent)
                .ok_or("persistent service missing")?;
            if !p
                .service
                .same_settings(&Service::new(persistent, "rr").with_persistence(300, 24))
            {
                return Err(format!("{:?}", p.service));
            }
            ipvs.update_service(&Service::new(persistent, "wlc"))
                .map_err(|e| e.to_string())?;
            same_as_ipvsadm(&ipvs)
        })(),
    );
    s.check(
        "flush",
        (|| {
            ipvs.flush().map_err(|e| e.to_string())?;
            if !ipvs.services().map_err(|e| e.to_string())?.is_empty() {
                return Err("services left".into());
            }
            same_as_ipvsadm(&ipvs)
        })(),
    );

    s.check(
        "reconcile_messy_state",
        (|| {
            // Somebody else's service, made with ipvsadm: must survive everything below.
            ipvsadm(&["-A", "-t", "192.0.2.250:80", "-s", "rr"])?;
            ipvsadm(&[
                "-a",
                "-t",
                "192.0.2.250:80",
                "-r",
                "192.0.2.9:80",
                "-g",
                "-w",
                "4",
            ])?;
            // Our VIP exists with the wrong scheduler, a stray server, a wrong weight.
            ipvsadm(&["-A", "-t", "192.0.2.200:3306", "-s", "rr"])?;
            ipvsadm(&[
                "-a",
                "-t",
                "192.0.2.200:3306",
                "-r",
                "192.0.2.21:3306",
                "-g",
                "-w",
                "9",
            ])?;
            ipvsadm(&[
                "-a",
                "-t",
                "192.0.2.200:3306",
                "-r",
                "192.0.2.29:3306",
                "-g",
                "-w",
                "1",
            ])?;
            let stale = key("192.0.2.201:3306");
            let mut r = Reconciler::new();
            let want_stale = DesiredService {
                service: Service::new(stale, "rr"),
                dests: vec![dest("192.0.2.31:3306", 1)],
            };
            let want_vip = DesiredService {
                service: Service::new(vip, "wrr").with_persistence(60, 32),
                dests: vec![dest("192.0.2.21:3306", 3), dest("192.0.2.22:3306", 1)],
            };
            r.reconcile(&ipvs, &[want_vip.clone(), want_stale])
                .map_err(|e| e.to_string())?;
            // The stale service is no longer wanted: removed because we own it.
            let applied = r
                .reconcile(&ipvs, std::slice::from_ref(&want_vip))
                .map_err(|e| e.to_string())?;
            if applied != vec![Request::DelService(stale)] {
                return Err(format!("second pass applied {applied:?}"));
            }
            let again = r
                .reconcile(&ipvs, std::slice::from_ref(&want_vip))
                .map_err(|e| e.to_string())?;
            if !again.is_empty() {
                return Err(format!("not idempotent: {again:?}"));
            }
            let listed = ipvs.services().map_err(|e| e.to_string())?;
            let keys: Vec<_> = listed.iter().map(|e| e.service.key).collect();
            if keys.len() != 2 || !keys.contains(&vip) || !keys.contains(&key("192.0.2.250:80")) {
                return Err(format!("services {keys:?}"));
            }
            let w = weights(&ipvs, &vip)?;
            if w != vec![(addr("192.0.2.21:3306"), 3), (addr("192.0.2.22:3306"), 1)] {
                return Err(format!("{w:?}"));
            }
            if weights(&ipvs, &key("192.0.2.250:80"))? != vec![(addr("192.0.2.9:80"), 4)] {
                return Err("foreign service touched".into());
            }
            same_as_ipvsadm(&ipvs)?;
            r.release(&ipvs).map_err(|e| e.to_string())?;
            let keys: Vec<_> = ipvs
                .services()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|e| e.service.key)
                .collect();
            if keys != vec![key("192.0.2.250:80")] {
                return Err(format!("after release: {keys:?}"));
            }
            Ok(())
        })(),
    );

    s.check("director_follows_health_and_vrrp", director(&ipvs));

    println!("DONE pass={} fail={}", s.pass, s.fail);
}

/// Polls the kernel until `ok` holds for the director's service (the loop runs every 200 ms;
/// the deadline is generous for a loaded host running the guest under TCG).
fn wait_for(
    ipvs: &Ipvs,
    what: &str,
    ok: impl Fn(&[rwproxy_ha::ipvs::ServiceEntry]) -> bool,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let list = ipvs.services().map_err(|e| e.to_string())?;
        if ok(&list) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{what}: table stayed {list:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The real director loop, MISC_CHECK scripts reading their exit code from files: drain on
/// failure, misc_dynamic weights, the sorry server below quorum, and services present only
/// while the followed VRRP instance is MASTER.
fn director(ipvs: &Ipvs) -> Result<(), String> {
    use rwproxy_ha::ipvs::check::{Check, RealServer, VirtualServer};
    use rwproxy_ha::ipvs::director::{self, DirectorConfig};
    use rwproxy_ha::vrrp::{State, Status};
    use std::time::Duration;

    ipvs.flush().map_err(|e| e.to_string())?;
    let vip = key("192.0.2.210:3306");
    let rs = ["192.0.2.41", "192.0.2.42"];
    let set = |ip: &str, code: u8| std::fs::write(format!("/tmp/rs-{ip}"), code.to_string());
    for ip in rs {
        set(ip, 0).map_err(|e| e.to_string())?;
    }
    let cfg = DirectorConfig {
        virtual_servers: vec![VirtualServer {
            service: Service::new(vip, "wrr"),
            forward: Forward::Route,
            real_servers: rs
                .iter()
                .map(|ip| RealServer {
                    addr: addr(&format!("{ip}:3306")),
                    weight: 2,
                })
                .collect(),
            // The director appends the server's address and port: $0 and $1 here.
            check: Check::Misc {
                script: "/bin/sh -c 'exit $(cat /tmp/rs-$0)'".into(),
                timeout: Duration::from_secs(10),
                dynamic: true,
            },
            delay_loop: Duration::from_millis(200),
            inhibit_on_failure: true,
            quorum: 2,
            sorry_server: Some(addr("192.0.2.10:3306")),
        }],
        vrrp_instance: Some("VI_1".into()),
    };
    let (vrrp_tx, vrrp_rx) = tokio::sync::watch::channel(Status {
        instance: "VI_1".into(),
        interface: "lo".into(),
        vrid: 51,
        state: State::Backup,
        priority: 100,
        effective_priority: 100,
        master: None,
        vips: vec![],
        bad_packets: 0,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = rt
        .block_on(async {
            director::run(cfg, Some(vrrp_rx), async {
                let _ = stop_rx.await;
            })
        })
        .map_err(|e| e.to_string())?;
    let weights_are = |want: &[(&str, u32)]| {
        let want: Vec<(SocketAddr, u32)> = want.iter().map(|(a, w)| (addr(a), *w)).collect();
        move |list: &[rwproxy_ha::ipvs::ServiceEntry]| {
            let Some(e) = list.iter().find(|e| e.service.key == vip) else {
                return false;
            };
            let mut have: Vec<_> = e
                .dests
                .iter()
                .map(|d| (d.dest.socket_addr(), d.dest.weight))
                .collect();
            have.sort();
            let mut want = want.clone();
            want.sort();
            have == want
        }
    };
    // BACKUP: nothing installed, even with healthy servers.
    std::thread::sleep(Duration::from_millis(600));
    if !ipvs.services().map_err(|e| e.to_string())?.is_empty() {
        return Err("services installed while BACKUP".into());
    }
    let set_state = |st: State| vrrp_tx.send_modify(|s| s.state = st);
    set_state(State::Master);
    wait_for(
        ipvs,
        "MASTER, all healthy",
        weights_are(&[("192.0.2.41:3306", 2), ("192.0.2.42:3306", 2)]),
    )?;
    // .42 fails: drained (inhibit_on_failure); alive weight 2 still meets quorum 2.
    set(rs[1], 1).map_err(|e| e.to_string())?;
    wait_for(
        ipvs,
        "one drained",
        weights_are(&[("192.0.2.41:3306", 2), ("192.0.2.42:3306", 0)]),
    )?;
    // misc_dynamic: exit 3 = weight 1, now under quorum 2: the sorry server joins.
    set(rs[0], 3).map_err(|e| e.to_string())?;
    wait_for(
        ipvs,
        "sorry server",
        weights_are(&[
            ("192.0.2.41:3306", 1),
            ("192.0.2.42:3306", 0),
            ("192.0.2.10:3306", 1),
        ]),
    )?;
    // Recovery: back to full weights, sorry server gone.
    set(rs[0], 0).map_err(|e| e.to_string())?;
    set(rs[1], 0).map_err(|e| e.to_string())?;
    wait_for(
        ipvs,
        "recovered",
        weights_are(&[("192.0.2.41:3306", 2), ("192.0.2.42:3306", 2)]),
    )?;
    same_as_ipvsadm(ipvs)?;
    // Leaving MASTER removes the service; a foreign one stays through it all.
    ipvsadm(&["-A", "-t", "192.0.2.250:80", "-s", "rr"])?;
    set_state(State::Backup);
    wait_for(ipvs, "BACKUP again", |l| {
        l.len() == 1 && l[0].service.key == key("192.0.2.250:80")
    })?;
    set_state(State::Master);
    wait_for(
        ipvs,
        "MASTER again",
        weights_are(&[("192.0.2.41:3306", 2), ("192.0.2.42:3306", 2)]),
    )?;
    // Stopping releases what the director owns.
    let _ = stop_tx.send(());
    rt.block_on(running.handle)
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let left: Vec<_> = ipvs
        .services()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|e| e.service.key)
        .collect();
    if left != vec![key("192.0.2.250:80")] {
        return Err(format!("after stop: {left:?}"));
    }
    Ok(())
}
