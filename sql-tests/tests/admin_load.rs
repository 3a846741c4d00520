//! The admin console as operators really use it: notify-hook shell scripts run verbatim, live
//! backend changes while sysbench hammers the proxy, and every Atlas command as a DBA sees it
//! in the `mariadb` CLI's table output and in an interactive session.

use rwproxy_admin::{BackendInfo, BackendRole, BackendState, BackendStats};
use rwproxy_sql_tests::proxy::{self, Proxy, ADMIN_PASSWORD, ADMIN_USER};
use rwproxy_sql_tests::sysbench::{run, stat};
use rwproxy_sql_tests::{Cluster, APP_PASSWORD};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::sync::OnceCell;

use mysql_async::prelude::*;

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async { Cluster::start(2).await.expect("sandbox cluster") })
        .await
}

fn backend(ndx: usize, address: &str, state: BackendState, role: BackendRole) -> BackendInfo {
    BackendInfo {
        ndx,
        address: address.to_string(),
        state,
        role,
        weight: 1,
    }
}

/// A scratch directory for this test binary.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("rwproxy-admin-load-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `path` and runs it with bash; returns (success, stdout, stderr).
fn bash(path: &Path, text: &str) -> (bool, String, String) {
    std::fs::write(path, text).unwrap();
    let out = Command::new("bash").arg(path).output().expect("run bash");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `mariadb` command line for the admin port, as a script writes it.
fn mariadb_cmdline(p: &Proxy) -> String {
    format!(
        "mariadb -h127.0.0.1 -P{} -u{ADMIN_USER} -p{ADMIN_PASSWORD}",
        p.admin_addr.port()
    )
}

// ---------------------------------------------------------------------------------------
// 1. Notify hooks
// ---------------------------------------------------------------------------------------

/// The classic keepalived notify hook (`mysql … -e "REMOVE BACKEND 2;"`) and an
/// `auto_maintain`-style script that reads `SELECT * FROM backends` in a shell loop and puts
/// missing replicas back with `add slave`, both run unchanged with bash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_hook_scripts_work_verbatim() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let dir = scratch("hooks");
    let (r1, r2) = (&cl.replica_addrs()[0], &cl.replica_addrs()[1]);
    let (id1, id2) = (cl.replicas[0].server_id, cl.replicas[1].server_id);
    let mut a = p.admin().await;
    assert_eq!(p.read_ids(60).await, BTreeSet::from([id1, id2]));

    // keepalived's notify_backup / notify_fault line.
    let keepalived = format!(
        "#!/bin/bash\n{} -e \"REMOVE BACKEND 2;\"\n",
        mariadb_cmdline(&p)
    );
    let (ok, out, err) = bash(&dir.join("notify_backup.sh"), &keepalived);
    assert!(ok, "keepalived hook failed:\n{out}\n{err}");
    assert_eq!(
        a.backends().await.unwrap(),
        vec![
            backend(
                1,
                &cl.primary_addr(),
                BackendState::Up,
                BackendRole::ReadWrite
            ),
            backend(2, r2, BackendState::Up, BackendRole::ReadOnly),
        ]
    );
    assert_eq!(p.read_ids(40).await, BTreeSet::from([id2]));

    // Take the other replica offline too: the maintenance script must bring it back as well.
    a.set_offline(2).await.unwrap();
    assert_eq!(p.read_ids(20).await, BTreeSet::from([cl.primary.server_id]));

    let auto_maintain = format!(
        r#"#!/bin/bash
# auto_maintain: every replica in SLAVES serves reads.
ADMIN="{admin}"
SLAVES="{r1} {r2}"
backends=$($ADMIN --batch --skip-column-names -e "SELECT * FROM backends") || exit 1
for slave in $SLAVES; do
    ndx=$(echo "$backends" | awk -v a="$slave" '$2 == a && $4 == "ro" {{ print $1 }}')
    if [ -z "$ndx" ]; then
        $ADMIN -e "add slave $slave" || exit 1
        echo "added $slave"
    fi
done
echo "$backends" | awk '$3 == "offline" {{ print $1 }}' | while read ndx; do
    $ADMIN -e "set online $ndx" > /dev/null || exit 1
    echo "online $ndx"
done
"#,
        admin = mariadb_cmdline(&p)
    );
    let script = dir.join("auto_maintain.sh");
    let (ok, out, err) = bash(&script, &auto_maintain);
    assert!(ok, "auto_maintain failed:\n{out}\n{err}");
    assert_eq!(out, format!("added {r1}\nonline 2\n"), "{err}");
    let expected = vec![
        backend(
            1,
            &cl.primary_addr(),
            BackendState::Up,
            BackendRole::ReadWrite,
        ),
        backend(2, r2, BackendState::Up, BackendRole::ReadOnly),
        backend(3, r1, BackendState::Up, BackendRole::ReadOnly),
    ];
    assert_eq!(a.backends().await.unwrap(), expected);
    let weights: Vec<u32> = a.stats().await.unwrap().iter().map(|s| s.weight).collect();
    assert_eq!(weights, vec![1, 1, 1]);
    assert_eq!(p.read_ids(80).await, BTreeSet::from([id1, id2]));

    // Run again: nothing to do, nothing changes.
    let (ok, out, err) = bash(&script, &auto_maintain);
    assert!(ok, "auto_maintain (second run) failed:\n{out}\n{err}");
    assert_eq!(out, "", "{err}");
    assert_eq!(a.backends().await.unwrap(), expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// 2. Live changes under load
// ---------------------------------------------------------------------------------------

const TABLES: &str = "--tables=2";
const TABLE_SIZE: &str = "--table-size=10000";
/// Long enough for every change below to happen while both runs are going.
const LOAD_SECONDS: u64 = 12;

/// A session inside `START TRANSACTION READ ONLY` on the replica with `server_id` (read-only
/// transactions go to a replica, and stay on it until they end).
async fn read_only_txn_on(p: &Proxy, server_id: u32) -> mysql_async::Conn {
    let mut c = p.conn().await.unwrap();
    for _ in 0..100 {
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let sid: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        if sid == server_id {
            return c;
        }
        c.query_drop("COMMIT").await.unwrap();
    }
    panic!("no read-only transaction landed on server {server_id}");
}

/// Still on `server_id` inside its transaction, commits, then reads elsewhere.
async fn finish_txn_on(c: &mut mysql_async::Conn, server_id: u32) {
    for _ in 0..3 {
        let sid: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_eq!(sid, server_id, "transaction moved off its backend");
        let n: u64 = c
            .query_first("SELECT COUNT(*) FROM sbtest1 WHERE id < 100")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 99);
    }
    c.query_drop("COMMIT").await.unwrap();
    for _ in 0..20 {
        let sid: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_ne!(sid, server_id, "read went to a backend out of service");
    }
}

fn by_address<'a>(stats: &'a [BackendStats], address: &str) -> &'a BackendStats {
    stats
        .iter()
        .find(|s| s.address == address)
        .unwrap_or_else(|| panic!("{address} not in stats: {stats:?}"))
}

/// `oltp_point_select` (autocommit reads, prepared) and `oltp_read_write` (transactions on the
/// primary), 8 threads each, while a replica is taken offline, brought online, removed and
/// added back with a weight. No client error (deadlocks aside), no reconnect; `stats` shows the
/// reads moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_changes_under_sysbench_load() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let primary = cl.primary.port;
    tokio::task::spawn_blocking(move || {
        run("oltp_read_write", primary, &[TABLES, TABLE_SIZE], "prepare")
    })
    .await
    .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let (r1, r2) = (cl.replica_addrs()[0].clone(), cl.replica_addrs()[1].clone());

    let port = p.addr.port();
    let time = format!("--time={LOAD_SECONDS}");
    let load = |test: &'static str, ignore: &'static str| {
        let time = time.clone();
        tokio::task::spawn_blocking(move || {
            run(
                test,
                port,
                &[
                    TABLES,
                    TABLE_SIZE,
                    "--threads=8",
                    &time,
                    "--report-interval=0",
                    ignore,
                ],
                "run",
            )
        })
    };
    let point_select = load("oltp_point_select", "--mysql-ignore-errors=none");
    let read_write = load("oltp_read_write", "--mysql-ignore-errors=1213");
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    let mut a = p.admin().await;
    pause(1500).await;
    let s = a.stats().await.unwrap();
    assert!(by_address(&s, &r1).queries > 0, "no reads on {r1}: {s:?}");
    assert!(by_address(&s, &r2).queries > 0, "no reads on {r2}: {s:?}");

    // SET OFFLINE: no new statement goes to the replica, but an open transaction on it
    // finishes there; then its connections are closed and its query counter stands still.
    let (id1, id2) = (cl.replicas[0].server_id, cl.replicas[1].server_id);
    let mut txn = read_only_txn_on(&p, id1).await;
    let off = a.set_offline(2).await.unwrap();
    assert_eq!(
        (off.address.as_str(), off.state),
        (r1.as_str(), BackendState::Offline)
    );
    pause(300).await;
    let s = a.stats().await.unwrap();
    assert!(
        by_address(&s, &r1).conns_in_use >= 1,
        "transaction's connection gone: {s:?}"
    );
    finish_txn_on(&mut txn, id1).await;
    pause(300).await;
    let before = a.stats().await.unwrap();
    pause(1500).await;
    let after = a.stats().await.unwrap();
    let (b1, a1) = (by_address(&before, &r1), by_address(&after, &r1));
    assert_eq!(a1.state, BackendState::Offline);
    assert_eq!(b1.queries, a1.queries, "offline {r1} still gets queries");
    assert_eq!(
        (a1.conns_in_use, a1.conns_idle),
        (0, 0),
        "offline {r1} keeps connections: {a1:?}"
    );
    assert!(by_address(&after, &r2).queries > by_address(&before, &r2).queries);

    // SET ONLINE: reads come back to it.
    let on = a.set_online(2).await.unwrap();
    assert_eq!(on.state, BackendState::Up);
    pause(1500).await;
    let s = a.stats().await.unwrap();
    assert!(
        by_address(&s, &r1).queries > a1.queries,
        "{r1} not back: {s:?}"
    );

    // REMOVE BACKEND: the replica leaves the list; the removed backend (still reachable here
    // through the Arc the cluster handed out) gets nothing more and lets its connections go.
    let removed = p.backends.backends()[2].clone();
    assert_eq!(removed.address, r2);
    let mut txn = read_only_txn_on(&p, id2).await;
    a.remove_backend(3).await.unwrap();
    pause(300).await;
    assert!(
        removed.pool.counts().0 >= 1,
        "transaction's connection gone"
    );
    finish_txn_on(&mut txn, id2).await;
    pause(300).await;
    let q = removed.queries();
    let s = a.stats().await.unwrap();
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(s.iter().all(|b| b.address != r2));
    pause(1500).await;
    assert_eq!(removed.queries(), q, "removed {r2} still gets queries");
    assert_eq!(
        removed.pool.counts(),
        (0, 0),
        "removed {r2} keeps connections"
    );
    let s2 = a.stats().await.unwrap();
    assert!(by_address(&s2, &r1).queries > by_address(&s, &r1).queries);

    // ADD SLAVE with a weight: a fresh backend at the end of the list, serving at once.
    a.add_slave(&r2, 2).await.unwrap();
    let b = a.backends().await.unwrap();
    assert_eq!(
        b[2],
        backend(3, &r2, BackendState::Up, BackendRole::ReadOnly)
    );
    let at_add = by_address(&a.stats().await.unwrap(), &r1).queries;
    pause(1500).await;
    let s = a.stats().await.unwrap();
    let added = by_address(&s, &r2);
    assert_eq!((added.ndx, added.weight), (3, 2));
    assert!(added.queries > 0, "re-added {r2} serves no reads: {s:?}");
    // Weight 2 against 1: about twice the reads (thousands of them, so 1.5× is safe).
    let other = by_address(&s, &r1).queries - at_add;
    assert!(
        added.queries * 2 >= other * 3,
        "weight 2 got {} reads, weight 1 got {other}",
        added.queries
    );
    assert!(
        !point_select.is_finished() && !read_write.is_finished(),
        "sysbench ended before the last change: raise LOAD_SECONDS"
    );

    let ps = point_select.await.unwrap();
    let rw = read_write.await.unwrap();
    println!("{ps}\n{rw}");
    assert!(stat(&ps, "transactions:") > 0, "{ps}");
    assert_eq!(stat(&ps, "ignored errors:"), 0, "{ps}");
    assert_eq!(stat(&ps, "reconnects:"), 0, "{ps}");
    let (tx, deadlocks) = (stat(&rw, "transactions:"), stat(&rw, "ignored errors:"));
    assert!(tx > 0, "{rw}");
    assert!(
        deadlocks * 10 <= tx,
        "{deadlocks} deadlocks in {tx} transactions is not rare:\n{rw}"
    );
    assert_eq!(stat(&rw, "reconnects:"), 0, "{rw}");
    // The proxy saw no backend failure either.
    let s = a.stats().await.unwrap();
    assert!(s.iter().all(|b| b.errors == 0), "{s:?}");
}

// ---------------------------------------------------------------------------------------
// 3. What a DBA sees in the mariadb CLI
// ---------------------------------------------------------------------------------------

/// A `--table` result as (header, rows). Checks the frame: borders above and below the
/// header and at the end, every line as wide as the border; cells are cut at the border's
/// `+` positions, so a `|` inside a value cannot confuse the parse.
fn parse_table(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 4, "not a table:\n{out}");
    let border = lines[0];
    assert!(
        border.starts_with("+-") && border.bytes().all(|b| b == b'+' || b == b'-'),
        "bad border:\n{out}"
    );
    assert_eq!(lines[2], border, "{out}");
    assert_eq!(lines[lines.len() - 1], border, "{out}");
    let cuts: Vec<usize> = border.match_indices('+').map(|(i, _)| i).collect();
    let cells = |line: &str| -> Vec<String> {
        assert_eq!(line.len(), border.len(), "ragged line `{line}` in:\n{out}");
        for &c in &cuts {
            assert_eq!(&line[c..c + 1], "|", "`{line}` in:\n{out}");
        }
        cuts.windows(2)
            .map(|w| line[w[0] + 1..w[1]].trim().to_string())
            .collect()
    };
    let header = cells(lines[1]);
    let rows = lines[3..lines.len() - 1].iter().map(|l| cells(l)).collect();
    (header, rows)
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Runs one statement with `mariadb --table -e`; it must succeed.
fn admin_cli(p: &Proxy, sql: &str) -> std::process::Output {
    Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{}", p.admin_addr.port()),
            &format!("-u{ADMIN_USER}"),
            &format!("-p{ADMIN_PASSWORD}"),
            "--table",
            "-e",
            sql,
        ])
        .output()
        .expect("run mariadb")
}

fn table_cli(p: &Proxy, sql: &str) -> String {
    let out = admin_cli(p, sql);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{sql}` failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A statement whose answer is a table: its header and rows.
fn table(p: &Proxy, sql: &str) -> (Vec<String>, Vec<Vec<String>>) {
    parse_table(&table_cli(p, sql))
}

/// A change: Atlas answers with an empty result set, which the CLI prints as nothing.
fn change(p: &Proxy, sql: &str) {
    let out = table_cli(p, sql);
    assert_eq!(out, "", "`{sql}` printed something");
}

const BACKEND_HEADER: [&str; 4] = ["backend_ndx", "address", "state", "type"];

/// Atlas 2.2.1's sixteen commands, as its help lists them.
const ATLAS_COMMANDS: [&str; 16] = [
    "SELECT * FROM help",
    "SELECT * FROM backends",
    "SET OFFLINE $backend_id",
    "SET ONLINE $backend_id",
    "ADD MASTER $backend",
    "ADD SLAVE $backend",
    "REMOVE BACKEND $backend_id",
    "SELECT * FROM clients",
    "ADD CLIENT $client",
    "REMOVE CLIENT $client",
    "SELECT * FROM pwds",
    "ADD PWD $pwd",
    "ADD ENPWD $pwd",
    "REMOVE PWD $pwd",
    "SAVE CONFIG",
    "SELECT VERSION",
];

/// Every Atlas command through `mariadb --table -e`, checking the header and the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_atlas_command_in_table_mode() {
    let cl = cluster().await;
    let dir = scratch("table");
    let path = dir.join("rwproxy.toml");
    std::fs::write(&path, proxy::config_toml(cl, &[1, 1], "")).unwrap();
    let p = proxy::start_config(rwproxy::config::load(&path).unwrap())
        .await
        .unwrap();
    let (primary, r1, r2) = (
        cl.primary_addr(),
        cl.replica_addrs()[0].clone(),
        cl.replica_addrs()[1].clone(),
    );
    let three = vec![
        row(&["1", &primary, "up", "rw"]),
        row(&["2", &r1, "up", "ro"]),
        row(&["3", &r2, "up", "ro"]),
    ];

    // SELECT * FROM help
    let (h, rows) = table(&p, "SELECT * FROM help");
    assert_eq!(h, ["command", "description"]);
    let commands: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(commands[..16], ATLAS_COMMANDS);
    assert!(rows.iter().all(|r| !r[1].is_empty()), "{rows:?}");

    // SELECT * FROM backends
    assert_eq!(
        table(&p, "SELECT * FROM backends"),
        (row(&BACKEND_HEADER), three.clone())
    );

    // SET OFFLINE / SET ONLINE answer with the backend's row.
    assert_eq!(
        table(&p, "SET OFFLINE 3"),
        (
            row(&BACKEND_HEADER),
            vec![row(&["3", &r2, "offline", "ro"])]
        )
    );
    assert_eq!(table(&p, "SELECT * FROM backends").1[2][2], "offline");
    assert_eq!(
        table(&p, "SET ONLINE 3"),
        (row(&BACKEND_HEADER), vec![row(&["3", &r2, "up", "ro"])])
    );

    // ADD MASTER: masters are numbered first, so the replicas move down one.
    let spare = rwproxy_sql_tests::sandbox::free_port().unwrap();
    let master2 = format!("127.0.0.1:{spare}");
    change(&p, &format!("ADD MASTER {master2}"));
    let (h, rows) = table(&p, "SELECT * FROM backends");
    assert_eq!(h, BACKEND_HEADER);
    assert_eq!(
        rows,
        vec![
            row(&["1", &primary, "up", "rw"]),
            row(&["2", &master2, "up", "rw"]),
            row(&["3", &r1, "up", "ro"]),
            row(&["4", &r2, "up", "ro"]),
        ]
    );
    // REMOVE BACKEND
    change(&p, "REMOVE BACKEND 2");
    assert_eq!(table(&p, "SELECT * FROM backends").1, three);

    // ADD SLAVE, with a hostname and a weight; stats shows the weight.
    let by_name = format!("localhost:{}", cl.replicas[0].port);
    change(&p, &format!("ADD SLAVE {by_name}@3"));
    let (_, rows) = table(&p, "SELECT * FROM backends");
    assert_eq!(rows[3], row(&["4", &by_name, "up", "ro"]));
    let (h, rows) = table(&p, "SELECT * FROM stats");
    assert_eq!(
        h[..5],
        ["backend_ndx", "address", "state", "type", "weight"]
    );
    assert_eq!(rows[3][..5], row(&["4", &by_name, "up", "ro", "3"]));
    change(&p, "REMOVE BACKEND 4");
    assert_eq!(table(&p, "SELECT * FROM backends").1, three);

    // Clients: none configured prints nothing (an empty set); added ones are listed.
    assert_eq!(table_cli(&p, "SELECT * FROM clients"), "");
    change(&p, "ADD CLIENT 127.0.0.1");
    change(&p, "ADD CLIENT 192.168.1.2");
    assert_eq!(
        table(&p, "SELECT * FROM clients"),
        (
            row(&["client"]),
            vec![row(&["127.0.0.1"]), row(&["192.168.1.2"])]
        )
    );
    change(&p, "REMOVE CLIENT 192.168.1.2");
    assert_eq!(
        table(&p, "SELECT * FROM clients"),
        (row(&["client"]), vec![row(&["127.0.0.1"])])
    );

    // Users: passwords shown Atlas-encrypted.
    let app = row(&["app", &rwproxy::config::atlas_encrypt(APP_PASSWORD)]);
    let pwd_header = row(&["username", "password"]);
    assert_eq!(
        table(&p, "SELECT * FROM pwds"),
        (pwd_header.clone(), vec![app.clone()])
    );
    change(&p, "ADD PWD tbl_user:tbl_pwd");
    change(&p, "ADD ENPWD enc_user:HJBoxfRsjeI=");
    assert_eq!(
        table(&p, "SELECT * FROM pwds"),
        (
            pwd_header.clone(),
            vec![
                app.clone(),
                row(&["enc_user", "HJBoxfRsjeI="]),
                row(&["tbl_user", &rwproxy::config::atlas_encrypt("tbl_pwd")]),
            ]
        )
    );
    change(&p, "REMOVE PWD enc_user");

    // SAVE CONFIG writes what is live now into the file the proxy started from.
    change(&p, "SAVE CONFIG");
    let saved = rwproxy::config::load(&path).unwrap();
    let addrs: Vec<&str> = saved.backends.iter().map(|b| b.address.as_str()).collect();
    assert_eq!(addrs, [primary.as_str(), r1.as_str(), r2.as_str()]);
    let users: Vec<&str> = saved.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(users, ["app", "tbl_user"]);
    assert_eq!(saved.client_ips, ["127.0.0.1"]);
    change(&p, "REMOVE PWD tbl_user");
    // The last entry stays: an empty list would admit every address.
    let refused = admin_cli(&p, "REMOVE CLIENT 127.0.0.1");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is the last client-ips entry"),
        "{refused:?}"
    );
    assert_eq!(
        table(&p, "SELECT * FROM clients"),
        (row(&["client"]), vec![row(&["127.0.0.1"])])
    );
    assert_eq!(table(&p, "SELECT * FROM pwds").1, vec![app]);

    // SELECT VERSION
    assert_eq!(
        table(&p, "SELECT VERSION"),
        (row(&["version"]), vec![row(&[env!("CARGO_PKG_VERSION")])])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The CLI without `-e`: commands piped on stdin (batch), and a real interactive session on
/// a terminal, where the CLI first asks `select @@version_comment limit 1` for its banner and
/// prints tables. Neither startup query may break the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_sessions_without_e() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let r2 = cl.replica_addrs()[1].clone();
    let commands = "SELECT * FROM backends;\nSET OFFLINE 3;\nselect version;\nset online 3;\n\
                    SELECT * FROM backends;\n";

    // Piped stdin: batch mode, tab-separated.
    let mut child = Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{}", p.admin_addr.port()),
            &format!("-u{ADMIN_USER}"),
            &format!("-p{ADMIN_PASSWORD}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mariadb");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(commands.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = format!("3\t{r2}\tup\tro");
    let expected = [
        "backend_ndx\taddress\tstate\ttype",
        &format!("1\t{}\tup\trw", cl.primary_addr()),
        &format!("2\t{}\tup\tro", cl.replica_addrs()[0]),
        &up,
        "backend_ndx\taddress\tstate\ttype",
        &format!("3\t{r2}\toffline\tro"),
        "version",
        env!("CARGO_PKG_VERSION"),
        "backend_ndx\taddress\tstate\ttype",
        &up,
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..expected.len()], expected, "{stdout}");

    // A terminal (script(1) gives the CLI a pty): the banner shows the version comment the
    // CLI asked for, and results come as tables. With a database on the command line and
    // auto-rehash the CLI also lists databases and tables for completion on connect.
    let shell = format!("{} --table -Dadmin --auto-rehash", mariadb_cmdline(&p));
    let mut child = Command::new("timeout")
        .args(["30", "script", "-qec", &shell, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"SET OFFLINE 3;\nSELECT * FROM backends;\nset online 3;\nstatus\nuse admin\nSELECT * FROM help;\nquit\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let tty = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        out.status.success(),
        "{tty}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tty.contains("rwproxy admin console"),
        "no version comment in banner:\n{tty}"
    );
    let table_rows: Vec<Vec<&str>> = tty
        .lines()
        .filter(|l| l.starts_with('|') && l.ends_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert!(
        table_rows.contains(&vec!["3", r2.as_str(), "offline", "ro"]),
        "{tty}"
    );
    assert!(table_rows.contains(&vec!["backend_ndx", "address", "state", "type"]));
    assert!(table_rows.contains(&vec!["SELECT VERSION", "shows the version"]));
    assert!(tty.contains("Database changed"), "{tty}");
    assert!(
        tty.contains("Backends: 3"),
        "`status` shows no statistics:\n{tty}"
    );
    assert!(!tty.contains("ERROR"), "{tty}");
}
