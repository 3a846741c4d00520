//! Network namespaces as hosts, for HA tests: a bridge namespace joining node namespaces
//! (`192.0.2.11`, `.12`, … on `eth0`) and a client namespace (`192.0.2.50`). Processes started
//! here are killed by pid before the namespaces go (one left in a deleted namespace would live
//! on). Requires root (CI runs as root).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// At most this many labs at once per test binary: on a 2-core machine, a dozen labs polling
/// in parallel starve the speakers enough to break 100 ms advert intervals.
const MAX_LABS: usize = 3;
static LABS: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

struct LabSlot;

impl LabSlot {
    fn take() -> LabSlot {
        let mut n = LABS.0.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= MAX_LABS {
            n = LABS.1.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        LabSlot
    }
}

impl Drop for LabSlot {
    fn drop(&mut self) {
        *LABS.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        LABS.1.notify_one();
    }
}

pub fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The address of node `i`.
pub fn node_ip(i: usize) -> String {
    format!("192.0.2.{}", 11 + i)
}

pub const CLIENT_IP: &str = "192.0.2.50";

pub struct Lab {
    pub bridge: String,
    pub nodes: Vec<String>,
    pub client: String,
    /// Logs of the processes started with [`Lab::spawn`], and anything else the test keeps.
    pub dir: PathBuf,
    children: Vec<(String, Child)>,
    _slot: LabSlot,
}

impl Lab {
    pub fn new(nodes: usize) -> Lab {
        let slot = LabSlot::take();
        let tag = format!(
            "rwv{}x{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            bridge: format!("{tag}br"),
            nodes: (0..nodes).map(|i| format!("{tag}n{i}")).collect(),
            client: format!("{tag}c"),
            dir,
            children: Vec::new(),
            _slot: slot,
        };
        // The Lab exists before any namespace does, so Drop cleans up on any failure below.
        must(&["ip", "netns", "add", &lab.bridge]);
        must(&[
            "ip",
            "-n",
            &lab.bridge,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
        ]);
        must(&["ip", "-n", &lab.bridge, "link", "set", "br0", "up"]);
        let mut hosts: Vec<(String, String)> = lab
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), format!("{}/24", node_ip(i))))
            .collect();
        hosts.push((lab.client.clone(), format!("{CLIENT_IP}/24")));
        for (i, (ns, addr)) in hosts.iter().enumerate() {
            must(&["ip", "netns", "add", ns]);
            let port = format!("p{i}");
            must(&[
                "ip",
                "-n",
                &lab.bridge,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            ]);
            must(&[
                "ip",
                "-n",
                &lab.bridge,
                "link",
                "set",
                &port,
                "master",
                "br0",
                "up",
            ]);
            must(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"]);
        }
        lab
    }

    /// Runs `cmd` inside namespace `ns`, output to `<dir>/<label>.log` (appended, so a
    /// restarted process keeps its history). Returns the pid (`ip netns exec` execs `cmd`).
    pub fn spawn(&mut self, label: &str, ns: &str, cmd: &[&str]) -> u32 {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{label}.log")))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push((label.to_string(), child));
        pid
    }

    /// Sends `sig` (`-KILL`, `-TERM`…) to `pid`; a killed child of ours is reaped at once, so
    /// it does not linger as a zombie.
    pub fn signal(&mut self, pid: u32, sig: &str) {
        must(&["kill", sig, &pid.to_string()]);
        if sig == "-KILL" {
            for (_, c) in &mut self.children {
                if c.id() == pid {
                    let _ = c.wait();
                }
            }
        }
    }

    /// Whether node `i` holds `addr` on `eth0`.
    pub fn has_addr(&self, i: usize, addr: &str) -> bool {
        let out = sh(&[
            "ip",
            "-n",
            &self.nodes[i],
            "-4",
            "addr",
            "show",
            "dev",
            "eth0",
        ]);
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet {addr}/"))
    }

    /// Polls `cond` every 30 ms; on timeout dumps the logs and panics.
    pub fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Lab) -> bool,
    ) -> Duration {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if cond(self) {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        self.dump_logs();
        panic!("timed out after {timeout:?} waiting for {what}");
    }

    /// Asserts that `cond` holds for the whole `period`.
    pub fn hold(&self, what: &str, period: Duration, cond: impl Fn(&Lab) -> bool) {
        let t = Instant::now();
        while t.elapsed() < period {
            if !cond(self) {
                self.dump_logs();
                panic!("{what} stopped holding after {:?}", t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dump_logs(&self) {
        let mut labels: Vec<&str> = self.children.iter().map(|(l, _)| l.as_str()).collect();
        labels.dedup();
        for label in labels {
            let log =
                std::fs::read_to_string(self.dir.join(format!("{label}.log"))).unwrap_or_default();
            eprintln!("----- {label} -----\n{log}");
        }
    }
}

/// Moves the calling thread into network namespace `ns`: sockets it opens from then on live
/// there (other threads are unaffected). For test code that talks to the lab directly.
pub fn enter(ns: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
    // SAFETY: setns on a valid namespace fd affects only this thread's network namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first (one left in a deleted namespace would live on), by pid.
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Daemons that are not our children leave pid files in `dir`: kill them by those.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "pid") {
                    if let Ok(pid) = std::fs::read_to_string(e.path()) {
                        let _ = sh(&["kill", "-KILL", pid.trim()]);
                    }
                }
            }
        }
        for ns in self.nodes.iter().chain([&self.client, &self.bridge]) {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
