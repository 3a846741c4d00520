//! Failover end to end (issue 8): two "servers" — network namespaces each running mariadbd and
//! `rwproxy serve` (proxy, admin console, VRRP for the write VIP, the built-in promote/rejoin
//! actions) — and a client namespace running a write workload through both proxies that
//! records every acknowledged write.
//!
//! Per failover: the VRRP master's mariadbd and rwproxy are SIGKILLed; the other node takes the
//! VIP, promotes its database and writes succeed again (the time from the kill to the first
//! acknowledged write is measured); every acknowledged write is on the new primary, which is
//! the only writable server. The killed node then comes back, does not take the VIP back
//! (`nopreempt`), rejoins as a replica of the new primary and, once caught up, serves reads
//! again — no human action. Finally a node that comes back holding a write the primary never
//! had (an errant GTID) is kept out, with the reason in `SELECT * FROM ha_status`.
//!
//! Requires root (namespaces, raw sockets); CI runs as root.

// Test code on the test's own runtime: tokio's timers work here (the proxy's clippy.toml
// forbids them for the event threads' sake).
#![allow(clippy::disallowed_methods)]

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};
use rwproxy_admin::client::AdminClient;
use rwproxy_admin::HaStatusInfo;
use rwproxy_sql_tests::netns::{self, node_ip, Lab};
use rwproxy_sql_tests::sandbox::{self, Server};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VIP: &str = "192.0.2.100";
const PROXY_PORT: u16 = 4040;
const ADMIN_PORT: u16 = 2345;
const PRIORITY: [u8; 2] = [150, 100];

/// A mariadbd of the lab; killed when dropped (before the lab's namespaces go).
struct Db(Server);

impl Drop for Db {
    fn drop(&mut self) {
        self.0.kill();
    }
}

#[derive(Clone, Copy, Debug)]
enum Vrrp {
    /// VRRPv2, advert_int 1 s (keepalived's default).
    V2,
    /// VRRPv3, advert_int 0.1 s.
    V3Fast,
}

/// Where the witness check of the partition test connects: a listener in the client namespace,
/// i.e. "can this node still reach the clients?".
const WITNESS_PORT: u16 = 7777;

fn config(i: usize, vrrp: Vrrp, witness: bool) -> String {
    let version = match vrrp {
        Vrrp::V2 => "advert_int = 1",
        Vrrp::V3Fast => "version = 3\nadvert_int = 0.1",
    };
    format!(
        r#"[proxy]
listen = "0.0.0.0:{PROXY_PORT}"
connect-timeout-ms = 500
[admin]
listen = "0.0.0.0:{ADMIN_PORT}"
username = "admin"
password = "admin_pw"
[monitor]
user = "monitor"
password = "monitor_pw"
interval-ms = 100
timeout-ms = 500
fall = 2
rise = 1
write-wait-ms = 3000
[[backend]]
address = "{VIP}:3306"
role = "rw"
[[backend]]
address = "{n0}:3306"
role = "ro"
[[backend]]
address = "{n1}:3306"
role = "ro"
[[user]]
name = "app"
password = "app_pw"
[[ha.vrrp]]
name = "VI_DB"
interface = "eth0"
virtual_router_id = 51
priority = {prio}
{version}
virtual_ipaddress = ["{VIP}/24"]
nopreempt = true
on_master = "promote"
on_backup = "rejoin"
[ha.failover]
address = "{me}:3306"
user = "ha"
password = "ha_pw"
replication_user = "repl"
replication_password = "repl_pw"
drain_timeout = "20s"
interval = "200ms"
remote_proxies = ["{peer}:{ADMIN_PORT}"]
{track}"#,
        n0 = node_ip(0),
        n1 = node_ip(1),
        prio = PRIORITY[i],
        me = node_ip(i),
        peer = node_ip(1 - i),
        track = if witness {
            format!(
                "[[ha.vrrp.track_script]]\nname = \"witness\"\n\
                 script = \"bash -c 'exec 3<>/dev/tcp/{}/{WITNESS_PORT}'\"\n\
                 interval = 0.2\ntimeout = 0.5\nweight = 0\nfall = 2\nrise = 2\n",
                netns::CLIENT_IP
            )
        } else {
            String::new()
        },
    )
}

/// Accounts and schema on one node, outside the binlog: both nodes start with the same
/// (empty) GTID state, as HA-LAB.md prescribes for the replication user.
const SETUP: &[&str] = &[
    "SET sql_log_bin = 0",
    "CREATE USER 'repl'@'%' IDENTIFIED BY 'repl_pw'",
    "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
    "CREATE USER 'ha'@'%' IDENTIFIED BY 'ha_pw'",
    "GRANT ALL PRIVILEGES ON *.* TO 'ha'@'%'",
    "CREATE USER 'app'@'%' IDENTIFIED BY 'app_pw'",
    "GRANT ALL PRIVILEGES ON *.* TO 'app'@'%'",
    // The application must not be able to write to a read-only server.
    "REVOKE READ_ONLY ADMIN ON *.* FROM 'app'@'%'",
    "CREATE USER 'monitor'@'%' IDENTIFIED BY 'monitor_pw'",
    "GRANT REPLICATION CLIENT, PROCESS, SLAVE MONITOR ON *.* TO 'monitor'@'%'",
    "CREATE DATABASE rwtest",
    "CREATE TABLE rwtest.w (id BIGINT PRIMARY KEY, via INT NOT NULL)",
];

/// Writers through both proxies, recording each acknowledged insert.
struct Workload {
    acked: Arc<Mutex<Vec<(u64, Instant)>>>,
    /// Every failed write: the server's error code, or 0 for connection trouble.
    failed: Arc<Mutex<Vec<u16>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    fn start(rt: &tokio::runtime::Runtime) -> Workload {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicU64::new(1));
        let tasks = (0..2)
            .map(|i| {
                rt.spawn(writer(
                    i,
                    next.clone(),
                    acked.clone(),
                    failed.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Workload {
            acked,
            failed,
            stop,
            tasks,
        }
    }

    fn acked(&self) -> Vec<(u64, Instant)> {
        self.acked.lock().unwrap().clone()
    }

    /// The first write acknowledged after `t`.
    fn first_after(&self, t: Instant) -> Option<Instant> {
        self.acked()
            .into_iter()
            .map(|(_, at)| at)
            .filter(|at| *at > t)
            .min()
    }

    fn stop(self, rt: &tokio::runtime::Runtime) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = rt.block_on(t);
        }
    }
}

fn proxy_opts(i: usize) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(node_ip(i))
        .tcp_port(PROXY_PORT)
        .user(Some("app"))
        .pass(Some("app_pw"))
        .db_name(Some("rwtest"))
        .prefer_socket(false)
}

async fn writer(
    i: usize,
    next: Arc<AtomicU64>,
    acked: Arc<Mutex<Vec<(u64, Instant)>>>,
    failed: Arc<Mutex<Vec<u16>>>,
    stop: Arc<AtomicBool>,
) {
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::SeqCst) {
        let c = match &mut conn {
            Some(c) => c,
            None => {
                match tokio::time::timeout(Duration::from_secs(2), Conn::new(proxy_opts(i))).await {
                    Ok(Ok(c)) => conn.insert(c),
                    _ => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
        };
        let id = next.fetch_add(1, Ordering::SeqCst);
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            c.exec_drop("INSERT INTO w (id, via) VALUES (?, ?)", (id, i)),
        )
        .await;
        match r {
            Ok(Ok(())) => acked.lock().unwrap().push((id, Instant::now())),
            // Refused by the server: the statement did not run; retry on this connection.
            Ok(Err(mysql_async::Error::Server(e))) => {
                failed.lock().unwrap().push(e.code);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Unknown outcome: not counted as acknowledged; a fresh connection next.
            _ => {
                failed.lock().unwrap().push(0);
                conn = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Site {
    rt: tokio::runtime::Runtime,
    confs: [PathBuf; 2],
    proxies: [Option<u32>; 2],
    // Dropped before the lab (fields drop in declaration order): no process outlives its
    // namespace.
    dbs: Vec<Db>,
    lab: Lab,
}

impl Site {
    fn new(vrrp: Vrrp, witness: bool) -> Site {
        let lab = Lab::new(2);
        netns::enter(&lab.client).expect("enter the client namespace");
        // Built after entering: the runtime's threads live in the client namespace too.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        if witness {
            rt.spawn(async {
                let l = tokio::net::TcpListener::bind(("0.0.0.0", WITNESS_PORT))
                    .await
                    .unwrap();
                while let Ok((conn, _)) = l.accept().await {
                    drop(conn);
                }
            });
        }
        let dir = sandbox::process_dir(&format!("failover-{}", lab.client)).unwrap();
        let dbs: Vec<Db> = (0..2)
            .map(|i| {
                let s = rt
                    .block_on(Server::start_in_netns(
                        &dir,
                        i as u32 + 1,
                        &lab.nodes[i],
                        "0.0.0.0",
                    ))
                    .unwrap();
                Db(s)
            })
            .collect();
        for db in &dbs {
            rt.block_on(async {
                let mut c = db.0.root_conn().await.unwrap();
                for s in SETUP {
                    c.query_drop(*s).await.unwrap();
                }
            });
        }
        let confs = [0, 1].map(|i| {
            let p = lab.dir.join(format!("s{}.toml", i + 1));
            std::fs::write(&p, config(i, vrrp, witness)).unwrap();
            p
        });
        Site {
            rt,
            confs,
            proxies: [None, None],
            dbs,
            lab,
        }
    }

    fn start_proxy(&mut self, i: usize) {
        let conf = self.confs[i].display().to_string();
        let ns = self.lab.nodes[i].clone();
        let pid = self.lab.spawn(
            &format!("rwproxy-s{}", i + 1),
            &ns,
            &[env!("CARGO_BIN_EXE_rwproxy"), "serve", "-c", &conf],
        );
        self.proxies[i] = Some(pid);
    }

    /// SIGKILL of node `i`'s rwproxy and mariadbd: a crash.
    fn kill_node(&mut self, i: usize) {
        if let Some(pid) = self.proxies[i].take() {
            self.lab.signal(pid, "-KILL");
        }
        self.dbs[i].0.kill();
    }

    fn restart_db(&self, i: usize) {
        self.rt.block_on(self.dbs[i].0.restart()).unwrap();
    }

    fn ha_status(&self, i: usize) -> Option<HaStatusInfo> {
        self.rt.block_on(async {
            let mut c = tokio::time::timeout(
                Duration::from_secs(2),
                AdminClient::connect(&node_ip(i), ADMIN_PORT, "admin", "admin_pw"),
            )
            .await
            .ok()?
            .ok()?;
            let rows = c.ha_status().await.ok()?;
            rows.into_iter().next()
        })
    }

    fn wait_role(&self, i: usize, role: &str, timeout: Duration) -> HaStatusInfo {
        let mut last = None;
        self.lab
            .wait(&format!("s{} to be {role}", i + 1), timeout, |_| {
                last = self.ha_status(i);
                last.as_ref()
                    .is_some_and(|s| s.role == role && s.db_role == role)
            });
        last.unwrap()
    }

    fn db<T: FromValue + Send + 'static>(&self, i: usize, sql: &str) -> T {
        self.rt.block_on(async {
            let mut c = self.dbs[i].0.root_conn().await.unwrap();
            c.query_first(sql).await.unwrap().unwrap()
        })
    }

    /// Waits until server `i` commits semi-synchronously (its replica acknowledges every
    /// transaction): the lab's lossless failover stands on it.
    fn wait_semi_sync(&self, i: usize) {
        let sql = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                   WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS'";
        self.lab.wait(
            &format!("semi-sync replication on s{}", i + 1),
            LONG,
            |_| self.db::<String>(i, sql) == "ON",
        );
    }

    fn ids(&self, i: usize) -> HashSet<u64> {
        self.rt.block_on(async {
            let mut c = self.dbs[i].0.root_conn().await.unwrap();
            c.query("SELECT id FROM rwtest.w")
                .await
                .unwrap()
                .into_iter()
                .collect()
        })
    }

    /// `@@server_id` as a plain autocommit read through proxy `i` sees it (a read backend's,
    /// or the write backend's when no replica serves).
    fn read_through(&self, i: usize) -> Option<u32> {
        self.rt.block_on(async {
            let mut c = tokio::time::timeout(Duration::from_secs(2), Conn::new(proxy_opts(i)))
                .await
                .ok()?
                .ok()?;
            let id = c.query_first("SELECT @@server_id").await.ok()?;
            let _ = c.disconnect().await;
            id
        })
    }

    /// Reads through proxy `i` all go to server `server_id` (checked on several reads, since
    /// reads are spread by weight).
    fn reads_go_to(&self, i: usize, server_id: u32) -> bool {
        (0..4).all(|_| self.read_through(i) == Some(server_id))
    }

    fn assert_no_loss(&self, acked: &[(u64, Instant)], on: usize) {
        let have = self.ids(on);
        let lost: Vec<u64> = acked
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !have.contains(id))
            .collect();
        if !lost.is_empty() {
            self.lab.dump_logs();
        }
        assert!(
            lost.is_empty(),
            "{} acknowledged writes missing on s{}: {lost:?}",
            lost.len(),
            on + 1
        );
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for i in 0..2 {
            if let Some(pid) = self.proxies[i].take() {
                self.lab.signal(pid, "-KILL");
            }
        }
    }
}

/// The whole story at one VRRP timing: start, `failovers` crash/return cycles alternating
/// between the nodes, then (with `errant`) a node returning with an errant transaction.
/// Returns the kill → first acknowledged write times.
fn run(vrrp: Vrrp, failovers: usize, errant: bool) -> Vec<Duration> {
    std::thread::spawn(move || run_in_client_namespace(vrrp, failovers, errant))
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

const LONG: Duration = Duration::from_secs(30);

/// Both nodes up: s1 primary, s2 its replica serving the reads, a workload running.
fn start_pair(vrrp: Vrrp, witness: bool) -> (Site, Workload) {
    let mut site = Site::new(vrrp, witness);
    let long = LONG;
    // s1 (priority 150) comes up alone: MASTER, its database promoted (it is no replica).
    site.start_proxy(0);
    site.wait_role(0, "primary", long);
    site.start_proxy(1);
    site.wait_role(1, "replica", long);
    // s2 replicates and serves the reads; s1, the primary, is out of both read pools.
    site.lab
        .wait("reads on s2 through both proxies", long, |_| {
            site.reads_go_to(0, 2) && site.reads_go_to(1, 2)
        });

    let work = Workload::start(&site.rt);
    site.lab.wait("writes through both proxies", long, |_| {
        work.acked().len() > 20
    });
    (site, work)
}

fn run_in_client_namespace(vrrp: Vrrp, failovers: usize, errant: bool) -> Vec<Duration> {
    let (mut site, work) = start_pair(vrrp, false);
    let long = LONG;

    let mut times = Vec::new();
    let mut primary = 0;
    for round in 0..failovers {
        let (dead, next) = (primary, 1 - primary);
        site.wait_semi_sync(dead);
        // Scenario 1: the primary's server dies hard.
        site.kill_node(dead);
        // From the moment both processes are gone: a write in flight during the kill may
        // still be acknowledged by the dying server.
        let kill = Instant::now();
        let status = site.wait_role(next, "primary", long);
        assert!(
            status.result.as_deref().unwrap_or("").starts_with("ok"),
            "{status:?}"
        );
        site.lab
            .wait("a write acknowledged after the kill", long, |_| {
                work.first_after(kill).is_some()
            });
        let took = work.first_after(kill).unwrap() - kill;
        eprintln!(
            "{vrrp:?} failover {round}: s{} -> s{}: kill -> first acknowledged write {took:?}",
            dead + 1,
            next + 1
        );
        times.push(took);
        // Zero lost, one writable server.
        site.assert_no_loss(&work.acked(), next);
        assert_eq!(site.db::<u8>(next, "SELECT @@read_only"), 0);
        assert!(site.lab.has_addr(next, VIP));

        // Scenario 2: the dead node returns; it stays BACKUP (nopreempt), rejoins, catches up
        // and serves reads again.
        site.restart_db(dead);
        site.start_proxy(dead);
        site.wait_role(dead, "replica", long);
        let back = dead as u32 + 1;
        site.lab.wait(
            &format!("reads through both proxies on s{back} again"),
            long,
            |_| site.reads_go_to(0, back) && site.reads_go_to(1, back),
        );
        assert!(site.lab.has_addr(next, VIP) && !site.lab.has_addr(dead, VIP));
        assert_eq!(site.db::<u8>(dead, "SELECT @@read_only"), 1);
        primary = next;
    }
    let acked = work.acked();
    work.stop(&site.rt);
    site.assert_no_loss(&acked, primary);
    let replica = 1 - primary;
    let pos: String = site.db(primary, "SELECT @@gtid_binlog_pos");
    site.rt
        .block_on(site.dbs[replica].0.wait_gtid(&pos))
        .unwrap();
    site.assert_no_loss(&acked, replica);

    if errant {
        // Scenario 3: the replica's node goes down, and its database takes a write the
        // primary never receives (as if it had acknowledged one just before a crash).
        if let Some(pid) = site.proxies[replica].take() {
            site.lab.signal(pid, "-KILL");
        }
        site.rt.block_on(async {
            let mut c = site.dbs[replica].0.root_conn().await.unwrap();
            for s in [
                "STOP SLAVE",
                "SET GLOBAL read_only = 0",
                "INSERT INTO rwtest.w VALUES (999999999, 0)",
            ] {
                c.query_drop(s).await.unwrap();
            }
        });
        let errant_gtid: String = site.db(replica, "SELECT @@gtid_binlog_pos");
        site.start_proxy(replica);
        let mut status = None;
        site.lab.wait("the errant node to be held", long, |_| {
            status = site.ha_status(replica);
            status
                .as_ref()
                .and_then(|s| s.result.as_deref())
                .is_some_and(|r| r.starts_with("errant"))
        });
        let status = status.unwrap();
        assert_eq!(status.role, "none", "{status:?}");
        assert!(
            status.result.as_deref().unwrap().contains(&errant_gtid),
            "{status:?} should name {errant_gtid}"
        );
        assert_eq!(site.db::<u8>(replica, "SELECT @@read_only"), 1);
        let io: Option<mysql_async::Row> = site.rt.block_on(async {
            let mut c = site.dbs[replica].0.root_conn().await.unwrap();
            c.query_first("SHOW SLAVE STATUS").await.unwrap()
        });
        let io = io.map(|r| r.get::<String, _>("Slave_IO_Running").unwrap());
        assert_eq!(io.as_deref(), Some("No"), "nothing replicates");
        assert!(!site.ids(primary).contains(&999_999_999));
        // Out of every read pool: reads go to the primary only.
        let p = primary as u32 + 1;
        site.lab
            .wait("the errant node out of the read pools", long, |_| {
                site.reads_go_to(0, p) && site.reads_go_to(1, p)
            });
        site.lab.hold(
            "the errant node staying out",
            Duration::from_secs(2),
            |_| site.reads_go_to(1 - replica, p),
        );
    }
    times
}

/// Scenario 4: s1's link to the others is cut while both nodes live. VRRP alone would make
/// both MASTER (split brain); the witness check (can this node reach the clients?) puts the
/// isolated s1 into FAULT, which sets its database read-only before s2 promotes. A sampler
/// watching both databases' `read_only` proves they are never writable at once.
fn partition_in_client_namespace() {
    let (site, work) = start_pair(Vrrp::V2, true);
    let both = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sockets: Vec<_> = site.dbs.iter().map(|d| d.0.opts("root", "")).collect();
    let sampler = {
        let (both, samples, stop) = (both.clone(), samples.clone(), stop.clone());
        site.rt.spawn(async move {
            let mut conns: Vec<Option<Conn>> = vec![None, None];
            while !stop.load(Ordering::SeqCst) {
                let mut writable = 0;
                for (c, opts) in conns.iter_mut().zip(&sockets) {
                    if c.is_none() {
                        *c = Conn::new(opts.clone()).await.ok();
                    }
                    if let Some(conn) = c {
                        match conn.query_first::<u8, _>("SELECT @@read_only").await {
                            Ok(Some(0)) => writable += 1,
                            Ok(_) => {}
                            Err(_) => *c = None,
                        }
                    }
                }
                samples.fetch_add(1, Ordering::SeqCst);
                if writable > 1 {
                    both.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Cut s1 off the bridge; its own link stays up (no carrier loss to notice).
    netns::must(&[
        "ip",
        "-n",
        &site.lab.bridge,
        "link",
        "set",
        "p0",
        "nomaster",
    ]);
    let cut = Instant::now();
    site.lab.wait("s1 read-only (FAULT)", LONG, |s| {
        site.db::<u8>(0, "SELECT @@read_only") == 1 && !s.has_addr(0, VIP)
    });
    let fault = cut.elapsed();
    site.wait_role(1, "primary", LONG);
    let promoted = cut.elapsed();
    site.lab
        .wait("a write acknowledged after the cut", LONG, |_| {
            work.first_after(cut).is_some()
        });
    let write = work.first_after(cut).unwrap() - cut;
    eprintln!("partition: s1 read-only after {fault:?}, s2 primary after {promoted:?}, first acknowledged write after {write:?}");
    assert!(fault < promoted, "s1 must be read-only before s2 promotes");
    let acked = work.acked();
    work.stop(&site.rt);
    stop.store(true, Ordering::SeqCst);
    site.rt.block_on(sampler).unwrap();
    assert!(samples.load(Ordering::SeqCst) > 50);
    assert_eq!(
        both.load(Ordering::SeqCst),
        0,
        "both databases were writable at the same time"
    );
    // Everything acknowledged (before and after the cut) is on s2.
    site.assert_no_loss(&acked, 1);
    assert_eq!(site.db::<u8>(0, "SELECT @@read_only"), 1);
}

/// Scenario 5: a planned switchover from the admin console. The primary goes read-only,
/// waits until its replica was sent everything, hands the VIP over; the replica drains and
/// promotes; the old primary rejoins it. Writes meanwhile wait in the proxies or get the
/// documented ERR 1290 (read-only), which clients retry: nothing else fails, nothing is lost.
fn switchover_in_client_namespace() {
    let (site, work) = start_pair(Vrrp::V3Fast, false);
    let failed_before = work.failed.lock().unwrap().len();
    let t = Instant::now();
    site.rt.block_on(async {
        let mut a = AdminClient::connect(&node_ip(0), ADMIN_PORT, "admin", "admin_pw")
            .await
            .unwrap();
        a.execute("SWITCHOVER").await.unwrap();
    });
    site.wait_role(1, "primary", LONG);
    let took = t.elapsed();
    site.wait_role(0, "replica", LONG);
    site.lab
        .wait("a write acknowledged after the switchover", LONG, |_| {
            work.first_after(t + took).is_some()
        });
    let first = work.first_after(t).unwrap() - t;
    let s1 = site.ha_status(0).unwrap();
    assert_eq!(s1.vrrp_state, "BACKUP", "{s1:?}");
    site.lab.wait("reads on s1 again", LONG, |_| {
        site.reads_go_to(0, 1) && site.reads_go_to(1, 1)
    });
    let acked = work.acked();
    let failed: Vec<u16> = work.failed.lock().unwrap()[failed_before..].to_vec();
    work.stop(&site.rt);
    eprintln!("switchover: s2 primary after {took:?}, first acknowledged write {first:?} after the command; failed writes meanwhile (error codes): {failed:?}");
    assert!(
        failed.iter().all(|&c| c == 1290),
        "only the documented, retryable ERR 1290 may reach clients: {failed:?}"
    );
    site.assert_no_loss(&acked, 1);
    assert_eq!(site.db::<u8>(0, "SELECT @@read_only"), 1);
    assert_eq!(site.db::<u8>(1, "SELECT @@read_only"), 0);
    assert!(site.lab.has_addr(1, VIP) && !site.lab.has_addr(0, VIP));
}

fn summary(name: &str, times: &[Duration]) {
    let mut ms: Vec<u128> = times.iter().map(|t| t.as_millis()).collect();
    ms.sort();
    eprintln!("{name}: kill -> first acknowledged write (ms, sorted): {ms:?}");
}

#[test]
fn partition_with_a_witness_check_never_has_two_writable_primaries() {
    std::thread::spawn(partition_in_client_namespace)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn planned_switchover_fails_no_transaction() {
    std::thread::spawn(switchover_in_client_namespace)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn failover_with_vrrp_advert_1s() {
    let times = run(Vrrp::V2, 3, false);
    summary("VRRPv2 advert_int 1 s", &times);
}

#[test]
fn failover_with_vrrpv3_advert_100ms_and_an_errant_node() {
    let times = run(Vrrp::V3Fast, 5, true);
    summary("VRRPv3 advert_int 0.1 s", &times);
}
