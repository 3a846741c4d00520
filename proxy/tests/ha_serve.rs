//! `rwproxy serve` with an `[ha]` section, end to end: in a network namespace made here, the
//! process becomes VRRP MASTER, adds the VIP, shows it on the admin console, and on SIGTERM
//! gives the VIP up again. An instance that cannot start says so at once.

use rwproxy_sql_tests::netns::Lab;
use rwproxy_sql_tests::process::{wait_for, Spawned};
use rwproxy_sql_tests::sandbox::{free_port, scratch_dir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serve_holds_the_vip_and_shows_it_on_the_console() {
    let lab = Lab::new(1);
    let ns = &lab.nodes[0];
    let has_vip = || lab.has_addr(0, "192.0.2.100");
    let dir = scratch_dir("ha-serve").unwrap();
    let conf = dir.join("ha.toml");
    std::fs::write(
        &conf,
        "[admin]\nlisten = \"127.0.0.1:2345\"\nusername = \"admin\"\npassword = \"pw\"\n\
         [[ha.vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\n\
         priority = 150\nversion = 3\nadvert_int = \"100ms\"\n\
         virtual_ipaddress = [\"192.0.2.100/24\"]\n",
    )
    .unwrap();
    let mut child = Spawned(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
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
    wait_for("the VIP", Duration::from_secs(10), has_vip);

    // The console (inside the namespace) shows the instance as MASTER with its VIP.
    let mut row = String::new();
    wait_for("SELECT * FROM vrrp", Duration::from_secs(10), || {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "mariadb", "-h127.0.0.1", "-P2345"])
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
    assert!(!has_vip());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Under `keepalive`, hooks run by the supervised proxy do not inherit the supervisor's
/// handle in their environment: an `rwproxy serve` started from one would take itself for a
/// supervised child.
#[test]
fn hooks_of_a_supervised_proxy_see_no_supervisor_handle() {
    let lab = Lab::new(1);
    let dir = scratch_dir("ha-hook-env").unwrap();
    let hook = dir.join("hook.sh");
    let seen = dir.join("env");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nenv > {0}.tmp && mv {0}.tmp {0}\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = dir.join("ha.toml");
    std::fs::write(
        &conf,
        format!(
            "[proxy]\nkeepalive = true\n\
             [admin]\nlisten = \"127.0.0.1:2345\"\nusername = \"admin\"\npassword = \"pw\"\n\
             [[ha.vrrp]]\nname = \"VI_2\"\ninterface = \"eth0\"\nvirtual_router_id = 52\n\
             priority = 150\nversion = 3\nadvert_int = \"100ms\"\n\
             virtual_ipaddress = [\"192.0.2.102/24\"]\nnotify_master = \"{}\"\n",
            hook.display()
        ),
    )
    .unwrap();
    let _supervisor = Spawned(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.nodes[0],
                env!("CARGO_BIN_EXE_rwproxy"),
                "serve",
                "-c",
            ])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rwproxy"),
    );
    wait_for("the notify_master hook", Duration::from_secs(10), || {
        seen.exists()
    });
    let env = std::fs::read_to_string(&seen).unwrap();
    assert!(env.contains("PATH="), "{env}");
    assert!(!env.contains("RWPROXY_SUPERVISED"), "{env}");
}

/// An instance that cannot start (its interface is missing) says so when it stops, not when
/// the proxy does, and the console shows it as FAULT meanwhile.
#[test]
fn a_failed_instance_is_logged_at_once() {
    let dir = scratch_dir("ha-fail").unwrap();
    let admin = free_port().unwrap();
    let conf = dir.join("ha.toml");
    std::fs::write(
        &conf,
        format!(
            "[proxy]\nlog-path = \"{}\"\ninstance = \"ha\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\nusername = \"admin\"\npassword = \"pw\"\n\
             [[ha.vrrp]]\nname = \"VI_9\"\ninterface = \"rwproxy-none0\"\n\
             virtual_router_id = 59\npriority = 100\nvirtual_ipaddress = [\"192.0.2.109/24\"]\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_rwproxy"))
            .args(["serve", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rwproxy"),
    );
    let log = || std::fs::read_to_string(dir.join("ha.log")).unwrap_or_default();
    wait_for("the instance's error", Duration::from_secs(10), || {
        log()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("VI_9") && l.contains("rwproxy-none0"))
    });
    assert!(child.0.try_wait().unwrap().is_none(), "the proxy stopped");
    let out = Command::new("mariadb")
        .args(["-h127.0.0.1", &format!("-P{admin}"), "-uadmin", "-ppw"])
        .args(["--batch", "--skip-column-names", "-e", "SELECT * FROM vrrp"])
        .output()
        .expect("run mariadb");
    let row = String::from_utf8_lossy(&out.stdout);
    assert!(row.starts_with("VI_9\trwproxy-none0\t59\tFAULT"), "{row}");
    std::fs::remove_dir_all(&dir).unwrap();
}
