//! `rwproxy serve` with an `[ha]` section, end to end: in a network namespace made here, the
//! process becomes VRRP MASTER, adds the VIP, shows it on the admin console, and on SIGTERM
//! gives the VIP up again.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace with loopback up and `eth0` (one end of a veth pair whose other end, `eth1`,
/// stays in the namespace too) holding 192.0.2.11/24; deleted on drop.
struct Ns(String);

impl Ns {
    fn new() -> Ns {
        let name = format!("rwpx-ha-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        ip(&["netns", "add", &name]);
        let ns = Ns(name);
        ns.exec_ip(&["link", "set", "lo", "up"]);
        ns.exec_ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ]);
        ns.exec_ip(&["addr", "add", "192.0.2.11/24", "dev", "eth0"]);
        ns.exec_ip(&["link", "set", "eth1", "up"]);
        ns.exec_ip(&["link", "set", "eth0", "up"]);
        ns
    }

    fn exec_ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn has_vip(&self) -> bool {
        self.exec_ip(&["-4", "addr", "show", "dev", "eth0"])
            .contains("192.0.2.100/24")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_holds_the_vip_and_shows_it_on_the_console() {
    let ns = Ns::new();
    let dir = std::env::temp_dir().join(format!("rwproxy-ha-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("ha.toml");
    std::fs::write(
        &conf,
        "[admin]\nlisten = \"127.0.0.1:2345\"\nusername = \"admin\"\npassword = \"pw\"\n\
         [[ha.vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\n\
         priority = 150\nversion = 3\nadvert_int = \"100ms\"\n\
         virtual_ipaddress = [\"192.0.2.100/24\"]\n",
    )
    .unwrap();
    let mut child = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                env!("CARGO_BIN_EXE_rwproxy"),
                "serve",
                "-c",
            ])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rwproxy"),
    );
    wait_for("the VIP", Duration::from_secs(10), || ns.has_vip());

    // The console (inside the namespace) shows the instance as MASTER with its VIP.
    let mut row = String::new();
    wait_for("SELECT * FROM vrrp", Duration::from_secs(10), || {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0, "mariadb", "-h127.0.0.1", "-P2345"])
            .args(["-uadmin", "-ppw", "--batch", "--skip-column-names"])
            .args(["-e", "SELECT * FROM vrrp"])
            .output()
            .expect("run mariadb");
        row = String::from_utf8_lossy(&out.stdout).into_owned();
        row.contains("MASTER")
    });
    assert!(row.starts_with("VI_1\teth0\t51\tMASTER\t150\t150"), "{row}");
    assert!(row.contains("192.0.2.100"), "{row}");

    // SIGTERM: the VIP goes away and the process exits cleanly.
    // SAFETY: signals our own child, which is still running (not yet reaped).
    let killed = unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(killed, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "rwproxy did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    assert!(!ns.has_vip());
    std::fs::remove_dir_all(&dir).unwrap();
}
