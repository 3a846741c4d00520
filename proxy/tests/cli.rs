//! The `rwproxy` command line as a user runs it: exit codes and messages.

use rwproxy_sql_tests::sandbox::scratch_dir;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn rwproxy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("run rwproxy")
}

/// [`rwproxy`] for commands that should end by themselves but, if broken, would serve on.
fn rwproxy_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rwproxy");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("{args:?} still running after {limit:?}: {}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn encrypt_matches_atlas() {
    for (plain, enc) in [("mypwd", "HJBoxfRsjeI="), ("123456", "/iZxz+0GRoA=")] {
        let o = rwproxy(&["encrypt", plain]);
        assert!(o.status.success());
        assert_eq!(stdout(&o).trim(), enc);
    }
}

#[test]
fn sample_configs_check_out() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/");
    for f in ["rwproxy.toml", "atlas.cnf"] {
        let o = rwproxy(&["check-config", "-c", &format!("{root}{f}")]);
        assert!(o.status.success(), "{f}: {}", stderr(&o));
        assert!(stdout(&o).contains("OK"), "{}", stdout(&o));
    }
}

fn check_bad(name: &str, text: &str, expect: &[&str]) {
    let path = scratch_dir(&format!("cli-{name}")).unwrap().join(name);
    std::fs::write(&path, text).unwrap();
    for cmd in ["check-config", "serve"] {
        let o = rwproxy_within(
            &[cmd, "-c", path.to_str().unwrap()],
            Duration::from_secs(10),
        );
        assert_eq!(o.status.code(), Some(1), "{cmd} {name}");
        let err = stderr(&o);
        for e in expect {
            assert!(err.contains(e), "{cmd} {name}: {err:?} lacks {e:?}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(!err.contains("backtrace"), "{err}");
    }
}

/// What the file says that rwproxy ignores or fills in is printed by `check-config` (the log
/// is not open yet when the file is read: these warnings went nowhere).
#[test]
fn check_config_prints_what_it_ignores() {
    let path = scratch_dir("cli-warnings").unwrap().join("grp.cnf");
    std::fs::write(
        &path,
        "[mysql-proxy]\nproxy-address = 127.0.0.1:5781\n[mysql-proxy-backends]\nproxy-backend-addresses = 10.1.1.1:3306\n",
    )
    .unwrap();
    let o = rwproxy(&["check-config", "-c", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for w in [
        "grp.cnf:3: ignoring group [mysql-proxy-backends]",
        "proxy-backend-addresses not set; using Atlas's default 127.0.0.1:3306",
    ] {
        assert!(out.contains(w), "{out:?} lacks {w:?}");
    }
    assert_eq!(out.matches("\nwarning: ").count(), 2, "{out:?}");
}

#[test]
fn config_errors_name_the_line_and_key() {
    // A thread count past any use (it overflowed the event threads' allocation: a panic).
    check_bad(
        "threads.cnf",
        "[mysql-proxy]\nevent-threads = 18446744073709551615\n",
        &["threads.cnf:2", "event-threads"],
    );
    check_bad(
        "unknown.cnf",
        "[mysql-proxy]\nproxy-address = 0.0.0.0:1234\nproxy-adress = 1\n",
        &["unknown.cnf:3", "proxy-adress"],
    );
    check_bad(
        "badaddr.cnf",
        "[mysql-proxy]\nproxy-backend-addresses = 10.0.0.1:99999\n",
        &["badaddr.cnf:2", "proxy-backend-addresses", "10.0.0.1:99999"],
    );
    check_bad(
        "unknown.toml",
        "[proxy]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n[[backend]]\naddress = \"a:1\"\nrole = \"rw\"\n",
        &["unknown.toml:3", "lisen"],
    );
    check_bad(
        "badaddr.toml",
        "[[backend]]\naddress = \"nohost\"\nrole = \"rw\"\n",
        &["badaddr.toml:2", "address", "nohost"],
    );
}

#[test]
fn vrrp_settings_the_protocol_cannot_use_fail_at_load() {
    let head = "[admin]\nlisten = \"127.0.0.1:0\"\n[proxy]\nlisten = \"127.0.0.1:0\"\n\
                [[ha.vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\n";
    for (name, settings, key) in [
        (
            "prio0.toml",
            "virtual_router_id = 51\npriority = 0\nvirtual_ipaddress = [\"192.0.2.1\"]\n",
            "ha.vrrp[0].priority",
        ),
        (
            "vrid0.toml",
            "virtual_router_id = 0\npriority = 100\nvirtual_ipaddress = [\"192.0.2.1\"]\n",
            "ha.vrrp[0].virtual_router_id",
        ),
        (
            "novip.toml",
            "virtual_router_id = 51\npriority = 100\nvirtual_ipaddress = []\n",
            "ha.vrrp[0].virtual_ipaddress",
        ),
        (
            "advert.toml",
            "virtual_router_id = 51\npriority = 100\nadvert_int = 0.5\n\
             virtual_ipaddress = [\"192.0.2.1\"]\n",
            "ha.vrrp[0].advert_int",
        ),
    ] {
        check_bad(name, &format!("{head}{settings}"), &[name, key]);
    }
}

#[test]
fn unreadable_file_is_a_clear_error() {
    let o = rwproxy(&["serve", "-c", "/nonexistent/rwproxy.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read /nonexistent/rwproxy.toml"));
}

#[test]
fn notify_takes_keepalived_arguments() {
    let o = rwproxy(&["notify", "INSTANCE", "VI_1", "MASTER", "150"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("INSTANCE VI_1 is now MASTER (priority 150)"));
    let o = rwproxy(&["notify", "GROUP", "G1", "STOP", "0"]);
    assert!(o.status.success());
    for bad in [
        &["notify", "INSTANCE", "VI_1", "LEADER", "150"][..],
        &["notify", "SOMETHING", "VI_1", "MASTER", "150"],
        &["notify", "INSTANCE", "VI_1", "MASTER", "300"],
        &["notify", "INSTANCE", "VI_1"],
    ] {
        let o = rwproxy(bad);
        assert!(!o.status.success(), "{bad:?}");
        assert!(!stderr(&o).contains("panicked"));
    }
}
