//! `daemon` and `keepalive` through the real binary: what `rwproxy serve` reports when it
//! detaches, and how the supervisor passes signals on.

use mysql_async::prelude::*;
use rwproxy_sql_tests::process::{wait_for, Spawned};
use rwproxy_sql_tests::sandbox::{free_port, scratch_dir};
use rwproxy_sql_tests::{proxy, Cluster, APP_PASSWORD, APP_USER, DATABASE};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A proxy config logging to `dir`. Its backend is a port nobody listens on: nothing here
/// needs a database.
fn write_config(dir: &Path, listen: u16, admin: u16, process: &str) -> PathBuf {
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{listen}\"\ninstance = \"life\"\n\
             log-path = \"{}\"\n{process}\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\nusername = \"admin\"\npassword = \"pw\"\n\
             [[backend]]\naddress = \"127.0.0.1:{}\"\nrole = \"rw\"\n",
            dir.display(),
            free_port().unwrap()
        ),
    )
    .unwrap();
    path
}

/// Processes whose command line names `config`: the ones these tests started, however they
/// detached.
fn processes_of(config: &Path) -> Vec<i32> {
    let needle = config.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).split('\0').any(|a| a == needle))
                .unwrap_or(false)
        })
        .filter(|pid| !zombie(*pid))
        .collect()
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a process this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}");
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("life.log")).unwrap_or_default()
}

/// `rwproxy serve -c config` (run through `wrapper`, e.g. `prlimit`, when not empty), once it
/// answers on `admin`; with `keepalive = true` in `config` the process is the supervisor.
fn serving(wrapper: &[&str], config: &Path, admin: u16) -> Spawned {
    let mut argv = wrapper.to_vec();
    argv.extend([env!("CARGO_BIN_EXE_rwproxy"), "serve", "-c"]);
    let proxy = Spawned(
        Command::new(argv[0])
            .args(&argv[1..])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rwproxy"),
    );
    wait_for("the proxy", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    proxy
}

/// `rwproxy serve` of a daemon `config`, which must report success; the daemon's pids.
fn daemon_started(config: &Path) -> Vec<i32> {
    let out = serve(config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    processes_of(config)
}

fn serve(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(["serve", "-c"])
        .arg(config)
        .output()
        .expect("run rwproxy")
}

#[test]
fn daemon_reports_whether_it_started() {
    let dir = scratch_dir("daemon").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let admin = free_port().unwrap();

    // The listen port is taken: serve fails, says why, and logs it; under a supervisor too,
    // which does not retry a proxy that never started.
    for process in ["daemon = true\nkeepalive = true", "daemon = true"] {
        let config = write_config(&dir, busy, admin, process);
        let out = serve(&config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{process}: stderr: {stderr}");
        let why = format!("cannot listen on 127.0.0.1:{busy}");
        assert!(stderr.contains(&why), "{process}: stderr: {stderr}");
        assert!(log(&dir).contains(&why), "{process}: log: {}", log(&dir));
        assert!(log(&dir).contains("ERROR"), "{process}: log: {}", log(&dir));
        // The failed proxy reports before it exits, so give it a moment to finish.
        wait_for("the failed proxy to exit", Duration::from_secs(5), || {
            processes_of(&config).is_empty()
        });
        std::fs::remove_file(dir.join("life.log")).unwrap();
    }

    // With the port free, serve returns once the proxy accepts clients.
    drop(taken);
    let config = write_config(&dir, busy, admin, "daemon = true");
    let daemon = daemon_started(&config);
    assert_eq!(daemon.len(), 1, "{daemon:?}");
    TcpStream::connect(("127.0.0.1", busy)).expect("the daemon listens when serve returns");
    signal(daemon[0], libc::SIGTERM);
    wait_for("the daemon to stop", Duration::from_secs(10), || {
        processes_of(&config).is_empty()
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The supervisor's one child: the proxy.
fn child_of(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn keepalive_passes_signals_to_the_proxy() {
    let dir = scratch_dir("keepalive").unwrap();
    let admin = free_port().unwrap();
    let config = write_config(&dir, free_port().unwrap(), admin, "keepalive = true");
    let mut supervisor = serving(&[], &config, admin);
    let parent = supervisor.0.id() as i32;
    let proxy = child_of(parent).expect("the supervisor's child");

    // SIGHUP reaches the proxy, which reloads; nobody dies.
    signal(parent, libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(5), || {
        log(&dir).contains("client-ips and drain-timeout reloaded")
    });
    assert!(
        supervisor.0.try_wait().unwrap().is_none(),
        "supervisor died"
    );
    assert_eq!(child_of(parent), Some(proxy), "the proxy was restarted");
    assert!(!zombie(proxy));

    // SIGTERM stops both, the proxy first.
    signal(parent, libc::SIGTERM);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = supervisor.0.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(5) {
            let _ = supervisor.0.kill();
            signal(proxy, libc::SIGKILL);
            panic!("the supervisor did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert_eq!(processes_of(&config), Vec::<i32>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn pid_file(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("life.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn pid_file_names_the_process_to_signal() {
    // A daemon: the file is there when serve returns, and goes when the daemon stops.
    let dir = scratch_dir("pid-daemon").unwrap();
    let config = write_config(
        &dir,
        free_port().unwrap(),
        free_port().unwrap(),
        "daemon = true",
    );
    let daemon = daemon_started(&config);
    assert_eq!(pid_file(&dir).map(|p| vec![p]), Some(daemon.clone()));
    signal(daemon[0], libc::SIGTERM);
    wait_for("the daemon to stop", Duration::from_secs(10), || {
        processes_of(&config).is_empty()
    });
    assert!(!dir.join("life.pid").exists());
    std::fs::remove_dir_all(&dir).unwrap();

    // keepalive: the supervisor's pid, the one that passes signals on.
    let dir = scratch_dir("pid-keepalive").unwrap();
    let admin = free_port().unwrap();
    let config = write_config(&dir, free_port().unwrap(), admin, "keepalive = true");
    let mut supervisor = serving(&[], &config, admin);
    assert_eq!(pid_file(&dir), Some(supervisor.0.id() as i32));
    signal(supervisor.0.id() as i32, libc::SIGTERM);
    let status = supervisor.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!dir.join("life.pid").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// logrotate renames the log file and sends SIGHUP: the proxy then writes to a new file of
/// the configured name, not on into the renamed one.
#[test]
fn sighup_reopens_the_log_file() {
    let dir = scratch_dir("logrotate").unwrap();
    let admin = free_port().unwrap();
    let config = write_config(&dir, free_port().unwrap(), admin, "");
    let proxy = serving(&[], &config, admin);
    std::fs::rename(dir.join("life.log"), dir.join("life.log.1")).unwrap();
    signal(proxy.0.id() as i32, libc::SIGHUP);
    wait_for("a new log file", Duration::from_secs(5), || {
        log(&dir).contains("SIGHUP: log file reopened")
    });
    let rotated = std::fs::read_to_string(dir.join("life.log.1")).unwrap();
    assert!(!rotated.contains("SIGHUP"), "{rotated}");
}

/// SIGHUP reopens the SQL log by name too: statements after it go to the new file.
#[test]
fn sighup_reopens_the_sql_log() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(Cluster::start(0)).unwrap();
    let dir = scratch_dir("sql-logrotate").unwrap();
    let (proxy, port, _) = serve_in_front_of(&cluster, &dir, &[], "sql-log = \"REALTIME\"\n");
    let url = format!(
        "mysql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/{DATABASE}?prefer_socket=false"
    );
    let mut c = rt.block_on(mysql_async::Conn::from_url(url)).unwrap();
    let sql_log = dir.join("sql_life.log");
    let logged = |path: &Path, what: &str| {
        std::fs::read_to_string(path).is_ok_and(|text| text.contains(what))
    };
    rt.block_on(c.query_drop("SELECT 'before the rotation'"))
        .unwrap();
    wait_for(
        "the first statement in the SQL log",
        Duration::from_secs(5),
        || logged(&sql_log, "before the rotation"),
    );
    std::fs::rename(&sql_log, dir.join("sql_life.log.1")).unwrap();
    signal(proxy.0.id() as i32, libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(5), || {
        log(&dir).contains("SIGHUP: log file reopened")
    });
    rt.block_on(c.query_drop("SELECT 'after the rotation'"))
        .unwrap();
    wait_for("a new SQL log", Duration::from_secs(5), || {
        logged(&sql_log, "after the rotation")
    });
    assert!(!logged(&dir.join("sql_life.log.1"), "after the rotation"));
}

/// `rwproxy serve` in front of `cluster`, its config and log in `dir`, `[proxy]` settings
/// `keys` added, run through the `wrapper` command line (e.g. `prlimit`) when not empty;
/// (process, port, admin port).
fn serve_in_front_of(
    cluster: &Cluster,
    dir: &Path,
    wrapper: &[&str],
    keys: &str,
) -> (Spawned, u16, u16) {
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let config = dir.join("proxy.toml");
    let toml = proxy::config_toml(cluster, &[], "")
        .replace(
            "listen = \"127.0.0.1:0\"\n",
            &format!(
                "listen = \"127.0.0.1:{port}\"\ninstance = \"life\"\nlog-path = \"{}\"\n{keys}",
                dir.display()
            ),
        )
        .replace(
            "[admin]\n",
            &format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
        )
        // A quick monitor that takes a backend down at the first failed probe.
        + "[monitor]\ninterval-ms = 100\nfall = 1\n";
    std::fs::write(&config, toml).unwrap();
    let proxy = serving(wrapper, &config, admin);
    (proxy, port, admin)
}

/// Out of file descriptors (here a limit of 64 and 120 clients), the proxy says so in the
/// log about once per 10 s, not 20 times a second, and takes no backend for down: the
/// shortage is its own (the monitor probes 30 times meanwhile, each failing with it).
#[test]
fn running_out_of_descriptors_is_logged_once_and_downs_no_backend() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(Cluster::start(1)).unwrap();
    let dir = scratch_dir("emfile").unwrap();
    let (_proxy, port, admin) = serve_in_front_of(&cluster, &dir, &["prlimit", "--nofile=64"], "");
    let clients: Vec<_> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let accept_lines = log(&dir).matches("accept failed").count();
    assert!(
        (1..=2).contains(&accept_lines),
        "{accept_lines} lines:\n{}",
        log(&dir)
    );
    assert!(log(&dir).contains("open-files limit"), "{}", log(&dir));
    assert!(!log(&dir).contains("backend down"), "{}", log(&dir));
    drop(clients);
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{admin}"),
            "-uadmin",
            "-padmin_pw",
        ])
        .args([
            "--batch",
            "--skip-column-names",
            "-e",
            "SELECT state FROM backends",
        ])
        .output()
        .expect("run mariadb");
    let states = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!states.contains("down"), "{states}");
}

/// A stopping proxy waits for open transactions, with its admin console still open; a
/// second SIGTERM ends the wait at once.
#[test]
fn a_second_sigterm_ends_the_grace_period() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(Cluster::start(0)).unwrap();
    let dir = scratch_dir("second-term").unwrap();
    let (mut proxy, port, admin) = serve_in_front_of(&cluster, &dir, &[], "");
    // Not over the server's socket, which mysql_async would switch to.
    let url = format!(
        "mysql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/{DATABASE}?prefer_socket=false"
    );
    let mut c = rt.block_on(mysql_async::Conn::from_url(url)).unwrap();
    rt.block_on(async {
        c.query_drop("CREATE TABLE IF NOT EXISTS second_term (id INT)")
            .await
            .unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("INSERT INTO second_term VALUES (1)")
            .await
            .unwrap();
    });
    let pid = proxy.0.id() as i32;
    signal(pid, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        proxy.0.try_wait().unwrap().is_none(),
        "stopped with a transaction open"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", admin)).is_ok(),
        "console closed"
    );
    let t0 = Instant::now();
    signal(pid, libc::SIGTERM);
    wait_for("the proxy to stop", Duration::from_secs(5), || {
        proxy.0.try_wait().unwrap().is_some()
    });
    println!("stopped {:?} after the second SIGTERM", t0.elapsed());
}
