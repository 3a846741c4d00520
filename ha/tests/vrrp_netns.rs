//! VRRP between network namespaces made here: real packets, real VIPs, a real keepalived.
//!
//! Topology per test: a bridge namespace, node namespaces `192.0.2.11`, `.12` (eth0, veth to the
//! bridge), and a client `192.0.2.50`. The VIP is 192.0.2.100/24; every node runs a TCP listener
//! answering with its name, so a client probe tells who holds the VIP (and that GARP moved it).
//! Requires root (CI runs as root).

use rwproxy_sql_tests::netns::{must, sh, Lab};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vrrpd-test");
const VIP: &str = "192.0.2.100";
const PORT: u16 = 8080;

/// Numbers keepalived starts (fresh pid file names per start).
static STARTS: AtomicUsize = AtomicUsize::new(0);

/// The VRRP lab's own operations on the shared namespace lab.
trait VrrpLab {
    fn vrrpd(&mut self, i: usize, name: &str, extra: &[&str]) -> u32;
    fn listener(&mut self, i: usize, name: &str);
    fn has_vip(&self, i: usize) -> bool;
    fn probe(&self) -> Option<String>;
    fn wait_answer(&self, name: &str, timeout: Duration) -> Duration;
    fn failover_to(&self, i: usize, name: &str, t: Instant) -> (Duration, Duration);
    fn mac(&self, i: usize) -> String;
    fn client_neigh(&self) -> String;
}

impl VrrpLab for Lab {
    /// Starts our VRRP speaker on node `i` named `name` (also its TCP listener).
    fn vrrpd(&mut self, i: usize, name: &str, extra: &[&str]) -> u32 {
        let ns = self.nodes[i].clone();
        let mut cmd = vec![
            BIN,
            "run",
            "--name",
            name,
            "--iface",
            "eth0",
            "--vrid",
            "51",
            "--vip",
            "192.0.2.100/24",
        ];
        cmd.extend_from_slice(extra);
        let port = PORT.to_string();
        cmd.extend_from_slice(&["--listen", &port]);
        self.spawn(name, &ns, &cmd)
    }

    fn listener(&mut self, i: usize, name: &str) {
        let ns = self.nodes[i].clone();
        let port = PORT.to_string();
        self.spawn(
            &format!("{name}-listen"),
            &ns,
            &[BIN, "listen", name, &port],
        );
    }

    fn has_vip(&self, i: usize) -> bool {
        self.has_addr(i, VIP)
    }

    /// Who answers on the VIP, seen from the client namespace.
    fn probe(&self) -> Option<String> {
        let target = format!("{VIP}:{PORT}");
        let out = sh(&["ip", "netns", "exec", &self.client, BIN, "probe", &target]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wait_answer(&self, name: &str, timeout: Duration) -> Duration {
        self.wait(&format!("{name} to answer on the VIP"), timeout, |l| {
            l.probe().as_deref() == Some(name)
        })
    }

    /// After a kill at `t`: when node `i` held the VIP, and when it answered on it.
    ///
    /// The two differ when the dead speaker's kernel still holds the VIP (SIGKILL leaves it):
    /// that kernel may ARP the client from the VIP (to finish a connection) and win the client's
    /// neighbour entry back; the new master's second GARP burst (garp_master_delay, 5 s) settles
    /// it. keepalived behaves the same.
    fn failover_to(&self, i: usize, name: &str, t: Instant) -> (Duration, Duration) {
        self.wait("the VIP to move", LONG, |l| l.has_vip(i));
        let vip = t.elapsed();
        self.wait_answer(name, Duration::from_secs(15));
        (vip, t.elapsed())
    }

    fn mac(&self, i: usize) -> String {
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            &self.nodes[i],
            "cat",
            "/sys/class/net/eth0/address",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The client's neighbour entry for the VIP.
    fn client_neigh(&self) -> String {
        let out = sh(&["ip", "-n", &self.client, "neigh", "show", VIP]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

const LONG: Duration = Duration::from_secs(10);

#[test]
fn election_by_priority_sigkill_failover_and_stale_vip_on_restart() {
    let mut lab = Lab::new(2);
    let a = lab.vrrpd(0, "A", &["--prio", "150"]);
    lab.vrrpd(1, "B", &["--prio", "100"]);
    lab.wait_answer("A", LONG);
    lab.wait("B to stay or step down to backup", LONG, |l| !l.has_vip(1));

    random_phase(Duration::from_secs(1));
    let t = Instant::now();
    lab.signal(a, "-KILL");
    let (failover, answering) = lab.failover_to(1, "B", t);
    println!(
        "rwproxy->rwproxy v2 advert 1s SIGKILL failover: VIP on B after {failover:?}, answering after {answering:?}"
    );
    assert!(failover > Duration::from_millis(2000) && failover < Duration::from_secs(6));
    // After SIGKILL the VIP is still on A's interface, and A's kernel would still answer ARP for
    // it: the client follows B because of B's gratuitous ARP.
    assert!(lab.has_vip(0));
    let neigh = lab.client_neigh();
    assert!(
        neigh.contains(&lab.mac(1)),
        "client neighbour entry {neigh:?} is not B's MAC"
    );
    // ...until A starts again: it removes the stale VIP, then preempts B (priority 150 > 100).
    lab.vrrpd(0, "A", &["--prio", "150"]);
    lab.wait("A's stale VIP removed or retaken", LONG, |l| {
        !l.has_vip(1) && l.has_vip(0)
    });
    lab.wait_answer("A", LONG);
}

#[test]
fn sigterm_sends_priority_zero_for_a_fast_failover() {
    let mut lab = Lab::new(2);
    let a = lab.vrrpd(0, "A", &["--prio", "150"]);
    lab.vrrpd(1, "B", &["--prio", "100"]);
    lab.wait_answer("A", LONG);
    random_phase(Duration::from_secs(1));
    let t = Instant::now();
    lab.signal(a, "-TERM");
    lab.wait_answer("B", LONG);
    let failover = t.elapsed();
    println!("rwproxy->rwproxy v2 advert 1s SIGTERM failover: {failover:?}");
    // Skew_Time for priority 100 is 0.61 s; without the priority-0 advert it would be 3.6 s.
    assert!(failover < Duration::from_millis(2000), "{failover:?}");
    assert!(!lab.has_vip(0), "a clean stop removes the VIP");
}

#[test]
fn nopreempt_keeps_the_running_master() {
    let mut lab = Lab::new(2);
    lab.vrrpd(1, "B", &["--prio", "100", "--nopreempt"]);
    lab.wait_answer("B", LONG);
    lab.vrrpd(0, "A", &["--prio", "150", "--nopreempt"]);
    lab.hold("B as master under nopreempt", Duration::from_secs(5), |l| {
        l.has_vip(1) && !l.has_vip(0)
    });
}

#[test]
fn preempt_delay_postpones_the_takeover() {
    let mut lab = Lab::new(2);
    lab.vrrpd(1, "B", &["--prio", "100"]);
    lab.wait_answer("B", LONG);
    let t = Instant::now();
    lab.vrrpd(0, "A", &["--prio", "150", "--preempt-delay-ms", "6000"]);
    lab.wait("A to preempt", Duration::from_secs(15), |l| l.has_vip(0));
    let took = t.elapsed();
    println!("preempt_delay 6 s: A preempted after {took:?}");
    assert!(took > Duration::from_secs(6), "{took:?}");
}

#[test]
fn unicast_v3_fast_adverts_sigkill_failover() {
    let mut lab = Lab::new(2);
    let common = ["--v3", "--advert-ms", "100"];
    let mut a_args = vec![
        "--prio",
        "150",
        "--unicast-src",
        "192.0.2.11",
        "--peer",
        "192.0.2.12",
    ];
    a_args.extend(common);
    let mut b_args = vec![
        "--prio",
        "100",
        "--unicast-src",
        "192.0.2.12",
        "--peer",
        "192.0.2.11",
    ];
    b_args.extend(common);
    let a = lab.vrrpd(0, "A", &a_args);
    lab.vrrpd(1, "B", &b_args);
    lab.wait_answer("A", LONG);
    lab.wait("B to stay or step down to backup", LONG, |l| !l.has_vip(1));
    lab.hold("a single master", Duration::from_secs(2), |l| {
        l.has_vip(0) && !l.has_vip(1)
    });
    random_phase(Duration::from_millis(100));
    let t = Instant::now();
    lab.signal(a, "-KILL");
    lab.wait("B to take the VIP", LONG, |l| l.has_vip(1));
    let failover = t.elapsed();
    lab.wait_answer("B", LONG);
    println!(
        "rwproxy->rwproxy unicast v3 advert 0.1s SIGKILL: VIP added after {failover:?}, answering after {:?}",
        t.elapsed()
    );
    assert!(failover < Duration::from_secs(2), "{failover:?}");
}

#[test]
fn auth_mismatch_is_ignored() {
    let mut lab = Lab::new(2);
    lab.vrrpd(0, "A", &["--prio", "150", "--auth", "secret1"]);
    lab.vrrpd(1, "B", &["--prio", "100", "--auth", "other"]);
    // Neither accepts the other's adverts: both end up master.
    lab.wait("both to be master", LONG, |l| l.has_vip(0) && l.has_vip(1));
    lab.hold("both masters", Duration::from_secs(2), |l| {
        l.has_vip(0) && l.has_vip(1)
    });
    let log = std::fs::read_to_string(lab.dir.join("B.log")).unwrap();
    assert!(log.contains("authentication mismatch"), "{log}");
}

#[test]
fn matching_auth_elects_one_master() {
    let mut lab = Lab::new(2);
    lab.vrrpd(0, "A", &["--prio", "150", "--auth", "secret1"]);
    lab.vrrpd(1, "B", &["--prio", "100", "--auth", "secret1"]);
    lab.wait_answer("A", LONG);
    lab.wait("B to stay or step down to backup", LONG, |l| !l.has_vip(1));
    lab.hold("A alone", Duration::from_secs(2), |l| {
        l.has_vip(0) && !l.has_vip(1)
    });
}

#[test]
fn notify_hooks_get_keepalived_arguments() {
    let mut lab = Lab::new(1);
    let log = lab.dir.join("notify.log");
    let script = lab.dir.join("hook.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = script.display().to_string();
    let master = format!("{s} became master");
    let a = lab.vrrpd(
        0,
        "VI_A",
        &["--prio", "255", "--notify", &s, "--notify-master", &master],
    );
    lab.wait("notify", LONG, |_| {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() >= 2)
    });
    lab.signal(a, "-TERM");
    lab.wait("notify stop", LONG, |_| {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() >= 3)
    });
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "became master\nINSTANCE VI_A MASTER 255\nINSTANCE VI_A STOP 255\n"
    );
}

/// Starts keepalived on node `i`; returns (parent pid, path of the VRRP child's pid file).
fn keepalived(lab: &mut Lab, i: usize, prio: u8, v3: bool) -> (u32, PathBuf) {
    keepalived_with(lab, i, prio, v3, "")
}

/// The interop tests need Debian's keepalived; install it on a fresh machine (as root) so the
/// test command works there, without starting its service.
fn ensure_keepalived() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::path::Path::new("/usr/sbin/keepalived").exists() {
            return;
        }
        let apt = |args: &[&str]| {
            let st = Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=600"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("RUNLEVEL", "1")
                .stdin(std::process::Stdio::null())
                .status()
                .expect("running apt-get (as root on Debian?)");
            assert!(st.success(), "apt-get {args:?} failed: {st}");
        };
        apt(&["update"]);
        apt(&["install", "-y", "--no-install-recommends", "keepalived"]);
    });
}

/// keepalived with extra lines in its `vrrp_instance` block.
fn keepalived_with(lab: &mut Lab, i: usize, prio: u8, v3: bool, extra: &str) -> (u32, PathBuf) {
    ensure_keepalived();
    let d = lab.dir.clone();
    let conf = d.join("keepalived.conf");
    let (version, advert) = if v3 { (3, "0.1") } else { (2, "1") };
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n  router_id K\n  vrrp_version {version}\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n\
             \x20 priority {prio}\n  advert_int {advert}\n{extra}\n\
             \x20 virtual_ipaddress {{\n    192.0.2.100/24\n  }}\n}}\n"
        ),
    )
    .unwrap();
    // Fresh pid files per start: a stale one (its process killed, maybe not yet reaped) makes
    // keepalived exit with "daemon is already running".
    let run = STARTS.fetch_add(1, Ordering::SeqCst);
    let p = |n: &str| d.join(format!("k{run}-{n}.pid")).display().to_string();
    let vrrp_pid = PathBuf::from(p("vrrp"));
    let conf = conf.display().to_string();
    let (p1, p2, p3, p4) = (p("main"), p("vrrp"), p("check"), p("bfd"));
    let ns = lab.nodes[i].clone();
    let pid = lab.spawn(
        &format!("keepalived{run}"),
        &ns,
        &[
            "keepalived",
            "--vrrp",
            "--dont-fork",
            "--dont-respawn",
            "--log-console",
            "--no-syslog",
            "-f",
            &conf,
            "-p",
            &p1,
            "-r",
            &p2,
            "-c",
            &p3,
            "-b",
            &p4,
        ],
    );
    (pid, vrrp_pid)
}

fn keepalived_sigkill(lab: &mut Lab, parent: u32, vrrp_pid: &PathBuf) {
    let child = std::fs::read_to_string(vrrp_pid).expect("keepalived's VRRP pid file");
    must(&["kill", "-KILL", child.trim()]);
    lab.signal(parent, "-KILL");
}

/// Sleeps a pseudo-random part of an advert interval, so that kills land at any phase of the
/// advert cycle and the printed failover times form a distribution.
fn random_phase(advert: Duration) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::thread::sleep(advert * (nanos % 1000) / 1000);
}

fn advert_of(v3: bool) -> Duration {
    if v3 {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    }
}

fn our_args(prio: &'static str, v3: bool) -> Vec<&'static str> {
    let mut a = vec!["--prio", prio];
    if v3 {
        a.extend(["--v3", "--advert-ms", "100"]);
    }
    a
}

fn interop_keepalived_wins(v3: bool) {
    let v = if v3 { 3 } else { 2 };
    let mut lab = Lab::new(2);
    let (kpid, kvrrp) = keepalived(&mut lab, 0, 150, v3);
    lab.listener(0, "K");
    lab.vrrpd(1, "R", &our_args("100", v3));
    lab.wait_answer("K", Duration::from_secs(15));
    // Started together, ours may have been master for a moment before keepalived (slower to
    // start) preempted it: give it the time to step down.
    lab.wait("ours to step down", LONG, |l| !l.has_vip(1));
    lab.hold("keepalived alone as master", Duration::from_secs(2), |l| {
        l.has_vip(0) && !l.has_vip(1)
    });
    random_phase(advert_of(v3));
    let t = Instant::now();
    keepalived_sigkill(&mut lab, kpid, &kvrrp);
    let (took, answering) = lab.failover_to(1, "R", t);
    println!(
        "keepalived->rwproxy v{v} SIGKILL failover: VIP on rwproxy after {took:?}, answering after {answering:?}"
    );
    assert!(
        took < Duration::from_secs(if v3 { 3 } else { 6 }),
        "{took:?}"
    );

    // keepalived comes back with the higher priority: it removes the stale VIP and preempts us.
    let (kpid, _) = keepalived(&mut lab, 0, 150, v3);
    lab.wait_answer("K", Duration::from_secs(15));
    lab.wait("our VIP removed", LONG, |l| !l.has_vip(1));
    // A clean keepalived stop: its priority-0 advert makes us take over within Skew_Time.
    random_phase(advert_of(v3));
    let t = Instant::now();
    lab.signal(kpid, "-TERM");
    lab.wait_answer("R", LONG);
    let took = t.elapsed();
    println!("keepalived->rwproxy v{v} SIGTERM failover (answering on the VIP): {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

fn interop_rwproxy_wins(v3: bool) {
    let v = if v3 { 3 } else { 2 };
    let mut lab = Lab::new(2);
    // keepalived first: it becomes master alone, then ours preempts it.
    keepalived(&mut lab, 0, 100, v3);
    lab.listener(0, "K");
    lab.wait_answer("K", Duration::from_secs(15));
    let r = lab.vrrpd(1, "R", &our_args("150", v3));
    lab.wait_answer("R", LONG);
    lab.wait("keepalived to step down", LONG, |l| !l.has_vip(0));
    lab.hold("rwproxy alone as master", Duration::from_secs(2), |l| {
        l.has_vip(1) && !l.has_vip(0)
    });
    // A clean stop: keepalived takes over on our priority-0 advert.
    random_phase(advert_of(v3));
    let t = Instant::now();
    lab.signal(r, "-TERM");
    lab.wait_answer("K", LONG);
    let took = t.elapsed();
    println!("rwproxy->keepalived v{v} SIGTERM failover (answering on the VIP): {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Back again, preempting keepalived; then killed without a word.
    let r = lab.vrrpd(1, "R", &our_args("150", v3));
    lab.wait_answer("R", LONG);
    lab.wait("keepalived's VIP removed", LONG, |l| !l.has_vip(0));
    random_phase(advert_of(v3));
    let t = Instant::now();
    lab.signal(r, "-KILL");
    let (took, answering) = lab.failover_to(0, "K", t);
    println!(
        "rwproxy->keepalived v{v} SIGKILL failover: VIP on keepalived after {took:?}, answering after {answering:?}"
    );
    assert!(
        took < Duration::from_secs(if v3 { 3 } else { 6 }),
        "{took:?}"
    );
}

#[test]
fn keepalived_v2_wins_and_fails_over_to_rwproxy() {
    interop_keepalived_wins(false);
}

#[test]
fn keepalived_v3_wins_and_fails_over_to_rwproxy() {
    interop_keepalived_wins(true);
}

#[test]
fn rwproxy_v2_preempts_keepalived_and_fails_over_to_it() {
    interop_rwproxy_wins(false);
}

#[test]
fn rwproxy_v3_preempts_keepalived_and_fails_over_to_it() {
    interop_rwproxy_wins(true);
}

#[test]
fn link_down_is_fault() {
    let mut lab = Lab::new(2);
    lab.vrrpd(0, "A", &["--prio", "150"]);
    lab.vrrpd(1, "B", &["--prio", "100"]);
    lab.wait_answer("A", LONG);
    let t = Instant::now();
    must(&["ip", "-n", &lab.bridge, "link", "set", "p0", "down"]);
    lab.wait("B to take over", LONG, |l| l.has_vip(1));
    lab.wait("A to drop the VIP (FAULT)", LONG, |l| !l.has_vip(0));
    println!("link down on A: B master after {:?}", t.elapsed());
    let log = std::fs::read_to_string(lab.dir.join("A.log")).unwrap();
    assert!(log.contains("Entering FAULT STATE"), "{log}");
    // Link back: FAULT → BACKUP, then A preempts B again.
    must(&["ip", "-n", &lab.bridge, "link", "set", "p0", "up"]);
    lab.wait_answer("A", LONG);
    lab.wait("B to step down", LONG, |l| !l.has_vip(1));
}

#[test]
fn track_script_failure_moves_the_vip_and_recovery_takes_it_back() {
    let mut lab = Lab::new(2);
    let flag = lab.dir.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let check = format!("test -e {}", flag.display());
    lab.vrrpd(
        0,
        "A",
        &[
            "--prio",
            "150",
            "--track",
            &check,
            "--track-weight",
            "-60",
            "--track-fall",
            "2",
        ],
    );
    lab.vrrpd(1, "B", &["--prio", "100"]);
    lab.wait_answer("A", LONG);
    let t = Instant::now();
    std::fs::remove_file(&flag).unwrap();
    // A drops to 90: B preempts after its Master_Down_Interval.
    lab.wait_answer("B", LONG);
    println!("track script failed: B answering after {:?}", t.elapsed());
    lab.wait("A to step down", LONG, |l| !l.has_vip(0));
    std::fs::write(&flag, "").unwrap();
    lab.wait_answer("A", LONG);
}

#[test]
fn track_script_with_weight_zero_means_fault() {
    let mut lab = Lab::new(2);
    let flag = lab.dir.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let check = format!("test -e {}", flag.display());
    lab.vrrpd(0, "A", &["--prio", "150", "--track", &check]);
    lab.vrrpd(1, "B", &["--prio", "100"]);
    lab.wait_answer("A", LONG);
    let t = Instant::now();
    std::fs::remove_file(&flag).unwrap();
    // FAULT from MASTER sends priority 0: B takes over after its Skew_Time.
    lab.wait_answer("B", LONG);
    let took = t.elapsed();
    println!("weight-0 track script failed: B answering after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let log = std::fs::read_to_string(lab.dir.join("A.log")).unwrap();
    assert!(log.contains("Entering FAULT STATE"), "{log}");
    std::fs::write(&flag, "").unwrap();
    lab.wait_answer("A", LONG);
}

#[test]
fn adverts_without_ttl_255_are_dropped() {
    let mut lab = Lab::new(1);
    lab.vrrpd(0, "A", &["--prio", "150"]);
    lab.wait_answer("A", LONG);
    let client = lab.client.clone();
    // A priority-255 advert with TTL 254 (as if routed): must be ignored.
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &client,
        BIN,
        "inject",
        "192.0.2.50",
        "254",
        "51",
        "255",
        VIP,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab.has_vip(0), "A yielded to an advert with TTL 254");
    let log = std::fs::read_to_string(lab.dir.join("A.log")).unwrap();
    assert!(log.contains("invalid TTL 254"), "{log}");
    // The same advert with TTL 255: A yields at once (priority 255 beats 150).
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &client,
        BIN,
        "inject",
        "192.0.2.50",
        "255",
        "51",
        "255",
        VIP,
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !lab.has_vip(0),
        "A did not yield to a valid priority-255 advert"
    );
}

#[test]
fn keepalived_unicast_with_auth_pass_interoperates() {
    // (No `!` or `#` in the password: keepalived's config parser takes them as comments.)
    let mut lab = Lab::new(2);
    let (kpid, _) = keepalived_with(
        &mut lab,
        0,
        150,
        false,
        "  unicast_src_ip 192.0.2.11\n  unicast_peer {\n    192.0.2.12\n  }\n\
         \x20 authentication {\n    auth_type PASS\n    auth_pass s3cretxy\n  }",
    );
    lab.listener(0, "K");
    lab.vrrpd(
        1,
        "R",
        &[
            "--prio",
            "100",
            "--unicast-src",
            "192.0.2.12",
            "--peer",
            "192.0.2.11",
            "--auth",
            "s3cretxy",
        ],
    );
    lab.wait_answer("K", Duration::from_secs(15));
    lab.wait("ours to stay backup", LONG, |l| !l.has_vip(1));
    lab.hold("keepalived alone as master", Duration::from_secs(3), |l| {
        l.has_vip(0) && !l.has_vip(1)
    });
    let log = std::fs::read_to_string(lab.dir.join("R.log")).unwrap();
    assert!(!log.contains("dropping"), "{log}");
    let t = Instant::now();
    lab.signal(kpid, "-TERM");
    lab.wait_answer("R", LONG);
    println!(
        "keepalived->rwproxy v2 unicast+auth SIGTERM failover: {:?}",
        t.elapsed()
    );
    // And keepalived accepts ours: started again at a lower priority, it stays backup.
    keepalived_with(
        &mut lab,
        0,
        50,
        false,
        "  unicast_src_ip 192.0.2.11\n  unicast_peer {\n    192.0.2.12\n  }\n\
         \x20 authentication {\n    auth_type PASS\n    auth_pass s3cretxy\n  }",
    );
    lab.hold("rwproxy alone as master", Duration::from_secs(5), |l| {
        l.has_vip(1) && !l.has_vip(0)
    });
}
