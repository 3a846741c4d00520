//! Failures: backends dying (killed with SIGKILL, restarted in place), backends dying in the
//! middle of a result, clients sending garbage, wrong passwords, other auth plugins, and
//! client-address filtering.
//!
//! This binary owns its cluster and kills its servers; the tests take turns (`TURN`) so one
//! test's kill never lands in another's assertions. Every test leaves all servers running.

use mysql_async::prelude::*;
use mysql_async::Conn;
use mysql_common::constants::CapabilityFlags;
use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
use mysql_common::proto::{MyDeserialize, MySerialize};
use mysql_common::scramble::{scramble_native, scramble_sha256};
use rwproxy_sql_tests::{proxy, Cluster, Server, APP_PASSWORD, APP_USER, DATABASE};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard, OnceCell};

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();
static TURN: Mutex<()> = Mutex::const_new(());
/// The sandbox's `max_connections`.
const MAX_CONNECTIONS: u64 = 3000;

async fn cluster() -> (MutexGuard<'static, ()>, &'static Cluster) {
    let turn = TURN.lock().await;
    let c = CLUSTER
        .get_or_init(|| async { Cluster::start(2).await.expect("sandbox cluster") })
        .await;
    // A test that failed half-way may have left a server down, or full (see `Filled`):
    // bring it back first.
    for s in c.servers() {
        if !s.is_running() {
            s.restart().await.unwrap();
        }
        s.resume();
        let mut root = s.root_conn().await.unwrap();
        root.query_drop(format!("SET GLOBAL max_connections = {MAX_CONNECTIONS}"))
            .await
            .unwrap();
    }
    c.wait_replicas_caught_up().await.unwrap();
    (turn, c)
}

async fn sid(c: &mut Conn) -> mysql_async::Result<u32> {
    Ok(c.query_first("SELECT @@server_id").await?.unwrap())
}

/// Reads enough to see both replicas of equal weight: a session reads from one for runs of
/// 16 (the first one partly spent by the driver's own queries at connect), and its picks
/// never repeat a replica three times in a row.
const BOTH: usize = 60;

/// Reads `n` times and returns the server ids that answered; every read must succeed.
async fn read_ids(c: &mut Conn, n: usize) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    for i in 0..n {
        seen.insert(
            sid(c)
                .await
                .unwrap_or_else(|e| panic!("read #{i} failed: {e}")),
        );
    }
    seen
}

/// Reads until `want` answers, for at most `within`.
async fn wait_for_reads_on(c: &mut Conn, want: u32, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if sid(c).await.unwrap() == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "server {want} got no reads within {within:?} of coming back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With the primary down, a read opens `c`'s transaction (`what` began it) on a replica
/// (`SELECT @@server_id` alone would not open one), where it stays and a write in it is
/// refused with a clear error. The replica's server id.
async fn transaction_on_a_replica(c: &mut Conn, what: &str) -> u32 {
    let rows: Option<u64> = c.query_first("SELECT COUNT(*) FROM f_w").await.unwrap();
    assert!(rows.is_some());
    let on = sid(c).await.unwrap();
    assert!([2, 3].contains(&on), "{what}: transaction on {on}");
    let in_transaction: Option<u32> = c.query_first("SELECT @@in_transaction").await.unwrap();
    assert_eq!(in_transaction, Some(1), "{what}");
    for _ in 0..4 {
        assert_eq!(sid(c).await.unwrap(), on, "{what}: a transaction stays put");
    }
    let e = c.query_drop("INSERT INTO f_w VALUES ()").await.unwrap_err();
    let se = server_error(&e).unwrap_or_else(|| panic!("{what}: not a MySQL error: {e:?}"));
    assert_eq!(se.code, 1290, "{what}: {se:?}");
    assert!(
        se.message.contains("write backend could not be reached"),
        "{what}: {}",
        se.message
    );
    on
}

fn server_error(e: &mysql_async::Error) -> Option<&mysql_async::ServerError> {
    match e {
        mysql_async::Error::Server(s) => Some(s),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_backend_killed() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE TABLE IF NOT EXISTS f_w (id INT AUTO_INCREMENT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO f_w VALUES ()").await.unwrap();
    // A read a replica refused lately (its table had not reached the replicas yet) goes to
    // the write backend for a while (10 s per statement shape), even once the table is there.
    cl.wait_replicas_caught_up().await.unwrap();
    let mut replica_roots = Vec::new();
    for r in &cl.replicas {
        let mut root = r.root_conn().await.unwrap();
        root.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
        replica_roots.push(root);
    }
    // Made by another client: the session's own write would send its next read to the
    // primary anyway (read-your-writes).
    let mut primary_root = cl.primary.root_conn().await.unwrap();
    primary_root
        .query_drop("CREATE TABLE rwtest.f_late (id INT)")
        .await
        .unwrap();
    drop(primary_root);
    // A shape with an `@`, which the classification cache keeps no entry for, is noted too.
    const LATE: &str = "SELECT @@server_id, COUNT(*) FROM f_late";
    let on: Option<(u32, u64)> = c.query_first(LATE).await.unwrap();
    assert_eq!(
        on,
        Some((1, 0)),
        "a table the replicas lack is read on the primary"
    );
    for root in &mut replica_roots {
        root.query_drop("START SLAVE SQL_THREAD").await.unwrap();
    }
    cl.wait_replicas_caught_up().await.unwrap();
    let on: Option<(u32, u64)> = c.query_first(LATE).await.unwrap();
    assert_eq!(on, Some((1, 0)), "a shape a replica refused lately");

    // A `BEGIN` the proxy answered itself, to go out with the transaction's first statement.
    let mut begun = p.conn().await.unwrap();
    begun.query_drop("BEGIN").await.unwrap();

    cl.primary.kill();
    let t0 = Instant::now();
    let e = c.query_drop("INSERT INTO f_w VALUES ()").await.unwrap_err();
    let took = t0.elapsed();
    println!("write with the primary down, after {took:?}: {e}");
    let se = server_error(&e).unwrap_or_else(|| panic!("not a MySQL error packet: {e:?}"));
    println!(
        "  code {} state {} message {:?}",
        se.code, se.state, se.message
    );
    assert!(
        se.message.contains(&cl.primary_addr()),
        "error must name the write backend {}: {}",
        cl.primary_addr(),
        se.message
    );
    assert!(took < Duration::from_secs(3), "write error took {took:?}");
    // The MariaDB client library shows the message: a code of 2000-2999 from a server would
    // be "Received malformed packet".
    assert!(se.code < 2000, "a client-side code: {}", se.code);
    // That preference yields to the write backend being down: the read is the replica's to
    // answer, well within the shape's 10 s.
    let on: Option<(u32, u64)> = c.query_first(LATE).await.unwrap();
    assert!(
        matches!(on, Some((2 | 3, 0))),
        "a refused shape's read with the primary down: {on:?}"
    );
    let (ok, _, stderr) = rwproxy_sql_tests::cli::mariadb(
        p.addr.port(),
        APP_PASSWORD,
        &["-e", "INSERT INTO f_w VALUES ()"],
        None,
    );
    assert!(!ok && stderr.contains(&cl.primary_addr()), "{stderr}");
    // New clients still log in and read: session settings (drivers set their charset at
    // connect) go to a replica while the write backend cannot be reached.
    let (ok, out, stderr) = rwproxy_sql_tests::cli::mariadb(
        p.addr.port(),
        APP_PASSWORD,
        &[
            "--init-command=SET NAMES utf8mb4",
            "-N",
            "-e",
            "SET time_zone = '+01:00'; USE rwtest; SELECT @@time_zone, @@server_id > 1",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    assert_eq!(out.trim(), "+01:00\t1");
    // The client's connection survives, and reads keep working on the replicas.
    let seen = read_ids(&mut c, BOTH).await;
    assert_eq!(seen, BTreeSet::from([2, 3]));
    let mut fresh = p.conn().await.unwrap();
    assert_eq!(read_ids(&mut fresh, BOTH).await, BTreeSet::from([2, 3]));
    // So does a session with autocommit off (Connector/Python's default): its transaction
    // runs on a replica, which refuses its writes with a clear error, until it ends.
    let mut manual = p.conn().await.unwrap();
    manual.query_drop("SET autocommit = 0").await.unwrap();
    let on = transaction_on_a_replica(&mut manual, "autocommit=0").await;
    // Nor may anything that would lock or leave state there.
    for sql in ["SELECT * FROM f_w FOR UPDATE", "SET @f_w = 1"] {
        let e = manual.query_drop(sql).await.unwrap_err();
        let se = server_error(&e).unwrap_or_else(|| panic!("{sql}: not a MySQL error: {e:?}"));
        assert_eq!(se.code, 1290, "{sql}: {se:?}");
    }
    assert_eq!(sid(&mut manual).await.unwrap(), on);
    manual.query_drop("ROLLBACK").await.unwrap();
    assert!([2, 3].contains(&sid(&mut manual).await.unwrap()));
    // So does the transaction of a `BEGIN` that had not gone out when the primary went down:
    // it begins with its first read, on a replica.
    transaction_on_a_replica(&mut begun, "put-off BEGIN").await;
    begun.query_drop("COMMIT").await.unwrap();
    // With the write backend known down, a `BEGIN` fails at once, naming it, as before.
    let e = begun.query_drop("BEGIN").await.unwrap_err();
    assert!(e.to_string().contains(&cl.primary_addr()), "{e}");
    // A second write fails the same way, not slower.
    let t0 = Instant::now();
    let e = c.query_drop("INSERT INTO f_w VALUES ()").await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(e.to_string().contains(&cl.primary_addr()), "{e}");

    cl.primary.restart().await.unwrap();
    let t0 = Instant::now();
    loop {
        match c.query_drop("INSERT INTO f_w VALUES ()").await {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "writes still failing 5 s after the primary came back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    println!("writes work again {:?} after the restart", t0.elapsed());
    // The autocommit=0 session's next transaction runs on the primary again.
    let t0 = Instant::now();
    loop {
        manual.query_drop("ROLLBACK").await.unwrap();
        if sid(&mut manual).await.unwrap() == 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "autocommit=0 reads still on replicas 5 s after the primary came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    manual
        .query_drop("INSERT INTO f_w VALUES ()")
        .await
        .unwrap();
    manual.query_drop("COMMIT").await.unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
}

/// A monitor that finds a hung server down within about a second.
fn fast_monitor() -> String {
    use rwproxy_sql_tests::sandbox::{MONITOR_PASSWORD, MONITOR_USER};
    format!(
        "[monitor]\nuser = \"{MONITOR_USER}\"\npassword = \"{MONITOR_PASSWORD}\"\n\
         interval-ms = 200\ntimeout-ms = 500\nfall = 2\n"
    )
}

/// Fills `server` to a lowered `max_connections` with connections of the proxy's user;
/// [`Filled::empty`] puts it back.
struct Filled {
    root: Conn,
    held: Vec<Conn>,
}

impl Filled {
    async fn fill(server: &Server) -> Filled {
        let mut root = server.root_conn().await.unwrap();
        root.query_drop("SET GLOBAL max_connections = 10")
            .await
            .unwrap();
        let mut held = Vec::new();
        loop {
            match mysql_async::Conn::new(server.opts(APP_USER, APP_PASSWORD)).await {
                Ok(c) => held.push(c),
                Err(e) => {
                    let se = server_error(&e).unwrap_or_else(|| panic!("{e:?}"));
                    assert_eq!(se.code, 1040, "{se:?}");
                    break;
                }
            }
            assert!(held.len() < 20, "max_connections not reached");
        }
        Filled { root, held }
    }

    async fn empty(mut self) {
        for c in self.held.drain(..) {
            c.disconnect().await.unwrap();
        }
        self.root
            .query_drop(format!("SET GLOBAL max_connections = {MAX_CONNECTIONS}"))
            .await
            .unwrap();
    }
}

/// A server at its own connection limit (1040) is full, not refusing the user, and it is
/// passed over as a busy one: reads go to the other replica, and session settings (which
/// drivers send as they connect) to a replica while the primary is full. (Both failed with
/// 1040: another app's connection storm on one server stopped most traffic.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_at_its_connection_limit_is_passed_over() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let full = Filled::fill(&cl.replicas[0]).await;
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let mut c = p.conn().await.unwrap();
        for _ in 0..4 {
            seen.insert(sid(&mut c).await.unwrap());
        }
    }
    full.empty().await;
    assert_eq!(seen, BTreeSet::from([3]), "reads while replica 2 is full");

    let full = Filled::fill(&cl.primary).await;
    let mut c = p.conn().await.unwrap();
    let settled = async {
        c.query_drop("SET NAMES utf8mb4").await?;
        c.query_drop("SET time_zone = '+02:00'").await?;
        c.query_first::<String, _>("SELECT @@time_zone").await
    }
    .await;
    let write = c.query_drop("INSERT INTO f_w VALUES ()").await;
    full.empty().await;
    assert_eq!(settled.unwrap().as_deref(), Some("+02:00"));
    let e = write.unwrap_err();
    assert_eq!(server_error(&e).map(|e| e.code), Some(1040), "{e:?}");
}

/// `KILL CONNECTION` of a session whose statement waits on a hung server (stopped, cut off)
/// ends the session at once: the proxy cannot reach that server to kill its thread, so it
/// closes the session's connection to it. (The kill did nothing: the client got its result
/// when the server ran again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_frees_a_session_stuck_on_a_hung_server() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut victim = p.conn().await.unwrap();
    victim
        .query_drop("START TRANSACTION READ ONLY")
        .await
        .unwrap();
    let on = sid(&mut victim).await.unwrap();
    let replica = &cl.replicas[on as usize - 2];
    let id: u64 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let sleeping = tokio::spawn(async move {
        let r = victim.query_drop("SELECT SLEEP(3)").await;
        (victim, r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    replica.pause();
    let t0 = Instant::now();
    p.admin()
        .await
        .execute(&format!("KILL {id}"))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(8), sleeping).await;
    replica.resume();
    let (mut victim, r, at) = outcome.expect("the killed session still waits").unwrap();
    let took = at - t0;
    println!("killed session freed after {took:?}: {r:?}");
    assert!(r.is_err(), "{r:?}");
    assert!(took < Duration::from_secs(4), "freed after {took:?}");
    assert!(
        victim.query_drop("SELECT 1").await.is_err(),
        "session ended"
    );
}

/// `KILL QUERY` of a read waiting on a hung server interrupts it (1317) and the session
/// goes on: when the kill cannot reach the server, the proxy closes the read's connection.
/// (The kill failed with the connect error and the read went on waiting.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_query_interrupts_a_read_on_a_hung_server() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut victim = p.conn().await.unwrap();
    // The session's next read runs where this one did (runs of reads stay on a replica).
    let on = sid(&mut victim).await.unwrap();
    let replica = &cl.replicas[on as usize - 2];
    let id: u64 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let reading = tokio::spawn(async move {
        let r: mysql_async::Result<Option<u32>> = victim
            .query_first("SELECT @@server_id + SLEEP(3) * 0")
            .await;
        (victim, r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    replica.pause();
    let t0 = Instant::now();
    let killed = p.admin().await.execute(&format!("KILL QUERY {id}")).await;
    let outcome = tokio::time::timeout(Duration::from_secs(8), reading).await;
    replica.resume();
    killed.unwrap();
    let (mut victim, r, at) = outcome.expect("the read still waits").unwrap();
    println!("read interrupted after {:?}: {r:?}", at - t0);
    let e = r.unwrap_err();
    assert_eq!(server_error(&e).map(|e| e.code), Some(1317), "{e:?}");
    assert!(at - t0 < Duration::from_secs(4));
    // The session goes on.
    let n: u32 = victim.query_first("SELECT 7").await.unwrap().unwrap();
    assert_eq!(n, 7);
}

/// A client gone while its read waits on a hung server: once the monitor finds that server
/// down, the proxy closes the connection and the session ends. (It stayed, holding its
/// backend connection, until the server ran again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_abandoned_on_a_hung_server_ends() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&(proxy::config_toml(cl, &[1, 1], "") + &fast_monitor()))
        .await
        .unwrap();
    // A raw client, whose socket closes when it is dropped.
    let mut victim =
        rwproxy_sql_tests::raw::RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
    victim.query("START TRANSACTION READ ONLY").await.unwrap();
    let mut admin = p.admin().await;
    let sessions = admin.sessions().await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let (id, addr) = (sessions[0].id, sessions[0].backend.clone().unwrap());
    let replica = cl.replicas.iter().find(|r| r.addr() == addr).unwrap();
    victim.send(b"\x03SELECT SLEEP(3)").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    replica.pause();
    drop(victim);
    let t0 = Instant::now();
    let gone = loop {
        let sessions = admin.sessions().await.unwrap();
        if !sessions.iter().any(|s| s.id == id) {
            break Some(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(10) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    replica.resume();
    let took = gone.expect("the abandoned session still there after 10 s");
    println!("abandoned session ended {took:?} after its client left");
}

/// Reads waiting on a server that hangs (stopped, cut off) are answered from another
/// replica once the monitor finds it down, rather than when it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_a_hung_replica_are_run_elsewhere() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&(proxy::config_toml(cl, &[1, 1], "") + &fast_monitor()))
        .await
        .unwrap();
    let mut readers = Vec::new();
    for _ in 0..6 {
        let mut c = p.conn().await.unwrap();
        let on = sid(&mut c).await.unwrap();
        readers.push((c, on));
    }
    let hung = &cl.replicas[0];
    let t0 = Instant::now();
    let waiting: Vec<_> = readers
        .into_iter()
        .map(|(mut c, on)| {
            tokio::spawn(async move {
                let r: mysql_async::Result<Option<u32>> =
                    c.query_first("SELECT @@server_id + SLEEP(1) * 0").await;
                (on, r, t0.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    hung.pause();
    let mut results = Vec::new();
    for w in waiting {
        results.push(tokio::time::timeout(Duration::from_secs(10), w).await);
    }
    hung.resume();
    for r in results {
        let (on, r, took) = r.expect("a read still waits after 10 s").unwrap();
        println!("read begun on {on}: {r:?} after {took:?}");
        assert_eq!(r.unwrap(), Some(3), "begun on {on}");
    }
}

/// `n` sessions whose next read goes to replica 2 (server id 2; a session reads from one
/// replica in runs), where the read each just made left a pooled connection.
async fn sessions_reading_from_replica_2(p: &proxy::Proxy, n: usize) -> Vec<Conn> {
    let mut found = Vec::new();
    for _ in 0..60 {
        let mut c = p.conn().await.unwrap();
        if sid(&mut c).await.unwrap() == 2 {
            found.push(c);
            if found.len() == n {
                return found;
            }
        }
    }
    panic!("{} of {n} sessions reading from replica 2", found.len());
}

/// The outcome of a read and when it came.
type TimedRead = (mysql_async::Result<Option<(String, u32)>>, Duration);

/// Four sessions reading from replica 2 set `time_zone`, then read `@@time_zone` and
/// `@@server_id` while replica 2 hangs (SIGSTOP); with `kill_queries`, another session sends
/// each a `KILL QUERY` every 300 ms meanwhile. Panics if a read still waits after 10 s.
async fn reads_while_replica_2_hangs(cl: &Cluster, kill_queries: bool) -> Vec<TimedRead> {
    let p = proxy::start(&(proxy::config_toml(cl, &[1, 1], "") + &fast_monitor()))
        .await
        .unwrap();
    let mut readers = sessions_reading_from_replica_2(&p, 4).await;
    let mut ids = Vec::new();
    for c in &mut readers {
        c.query_drop("SET time_zone = '+02:00'").await.unwrap();
        ids.push(c.id());
    }
    // Connected before the replica hangs: the driver's own queries at connect are reads.
    let mut killer = p.conn().await.unwrap();
    let hung = &cl.replicas[0];
    hung.pause();
    let t0 = Instant::now();
    let waiting: Vec<_> = readers
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let r = c.query_first("SELECT @@time_zone, @@server_id").await;
                (r, t0.elapsed())
            })
        })
        .collect();
    let kills = tokio::spawn(async move {
        if !kill_queries {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for id in &ids {
                let _ = killer.query_drop(format!("KILL QUERY {id}")).await;
            }
        }
    });
    let mut results = Vec::new();
    for w in waiting {
        results.push(tokio::time::timeout(Duration::from_secs(10), w).await);
    }
    kills.abort();
    hung.resume();
    results
        .into_iter()
        .map(|r| {
            let (r, took) = r.expect("a read still waits after 10 s").unwrap();
            println!("read: {r:?} after {took:?}");
            (r, took)
        })
        .collect()
}

/// A read whose pooled connection must first be brought to the session's state (here its
/// `time_zone`) on a replica that hangs during that exchange runs on another replica once
/// the monitor finds the hung one down, as a read waiting for its reply does. (It waited
/// as long as the server did: still after 10 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_syncing_state_on_a_hung_replica_runs_elsewhere() {
    let (_turn, cl) = cluster().await;
    let mut longest = Duration::ZERO;
    for (r, took) in reads_while_replica_2_hangs(cl, false).await {
        assert_eq!(r.unwrap(), Some(("+02:00".to_string(), 3)));
        longest = longest.max(took);
    }
    // One at least waited for the monitor's verdict (two 200 ms probes timing out after
    // 500 ms), so it had begun on the hung replica.
    assert!(
        longest >= Duration::from_millis(900),
        "longest read {longest:?}"
    );
}

/// The same, while `KILL QUERY` keeps coming for the waiting sessions (a DBA's tool, or an
/// application's timeout): a kill lets the exchange go on, and the check that gives up on
/// the hung replica still comes on time. (Each kill put the check off by a second: as long
/// as they came, the reads waited for the server.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_does_not_put_off_giving_up_on_a_hung_replica() {
    let (_turn, cl) = cluster().await;
    for (r, took) in reads_while_replica_2_hangs(cl, true).await {
        // Run on the other replica, or refused for the kill that came while it waited.
        match r {
            Ok(row) => assert_eq!(row, Some(("+02:00".to_string(), 3))),
            Err(e) => assert!(e.to_string().contains("1317"), "{e}"),
        }
        // The monitor's verdict takes about a second, the check another at most.
        assert!(took < Duration::from_secs(5), "a read took {took:?}");
    }
}

/// `SHOW WARNINGS` after an error the proxy answered itself raises that error on a server
/// for the statement; when that server hangs, another one raises it once the monitor finds
/// the first down. (It waited as long as the server did.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_warnings_of_the_proxys_error_moves_off_a_hung_replica() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&(proxy::config_toml(cl, &[1, 1], "") + &fast_monitor()))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    for r in &cl.replicas {
        r.pause();
    }
    let t0 = Instant::now();
    let killed = c
        .query_drop("KILL 1987654321")
        .await
        .expect_err("no such id");
    let shown = tokio::time::timeout(
        Duration::from_secs(10),
        c.query::<(String, u32, String), _>("SHOW WARNINGS"),
    )
    .await;
    for r in &cl.replicas {
        r.resume();
    }
    let shown = shown
        .expect("SHOW WARNINGS still waits after 10 s")
        .unwrap();
    println!(
        "{killed}; SHOW WARNINGS after {:?}: {shown:?}",
        t0.elapsed()
    );
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!((shown[0].0.as_str(), shown[0].1), ("Error", 1094));
}

/// `GET DIAGNOSTICS` after a read failed on a replica, whose connection (held for those
/// messages) a DBA then kills there: the statement gets an error and the session goes on, as
/// `SHOW WARNINGS` on a lost connection does. (The session was pinned to the write backend
/// first, for the variables, and that made the lost replica connection end it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_diagnostics_on_a_lost_replica_connection_keeps_the_session() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    // An error a replica answers for itself (a missing table would be asked of the write
    // backend again, see read_your_writes.rs).
    c.query_drop("SELECT no_such_column")
        .await
        .expect_err("no such column");
    kill_app_connections_on_replicas(cl).await;
    let lost = c
        .query_drop("GET DIAGNOSTICS CONDITION 1 @e = MYSQL_ERRNO")
        .await
        .expect_err("its messages' connection is gone");
    // The proxy's word for the lost connection, not the server's for the kill.
    assert!(lost.to_string().contains("1158"), "{lost}");
    let n: Option<u32> = c
        .query_first("SELECT 1")
        .await
        .unwrap_or_else(|e| panic!("session ended after GET DIAGNOSTICS failed ({lost}): {e}"));
    assert_eq!(n, Some(1));
}

/// Kills every connection of the application's user on the replicas: the proxy's, as a
/// DBA's cleanup of idle connections (or a replica's restart) would.
async fn kill_app_connections_on_replicas(cl: &Cluster) {
    for r in &cl.replicas {
        let mut root = r.root_conn().await.unwrap();
        let ids: Vec<u64> = root
            .query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")
            .await
            .unwrap();
        for id in ids {
            let _ = root.query_drop(format!("KILL {id}")).await;
        }
    }
}

/// Prepared reads whose pooled replica connections the servers had closed run on live
/// connections, as text reads do: a prepare, and an execute that must first prepare its
/// statement there. (Both got 1158, lost connection.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_reads_pass_closed_pooled_connections_by() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    // Prepared in a transaction: only the primary has it, and an execute on a replica
    // prepares it there first.
    c.query_drop("BEGIN").await.unwrap();
    let stmt = c.prep("SELECT ? + 1, @@server_id").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        seen.insert(sid(&mut c).await.unwrap());
    }
    assert_eq!(seen, [2, 3].into(), "pooled connections on both replicas");
    kill_app_connections_on_replicas(cl).await;
    let (n, _): (u32, u32) = c
        .exec_first(&stmt, (1,))
        .await
        .expect("an execute on closed pooled connections")
        .unwrap();
    assert_eq!(n, 2);
    for _ in 0..40 {
        sid(&mut c).await.unwrap();
    }
    kill_app_connections_on_replicas(cl).await;
    let fresh = c
        .prep("SELECT ? + 2, @@server_id")
        .await
        .expect("a prepare on closed pooled connections");
    let (n, _): (u32, u32) = c.exec_first(&fresh, (1,)).await.unwrap().unwrap();
    assert_eq!(n, 3);
}

/// A read prepared (`COM_STMT_PREPARE`) on a pooled connection of a replica that hangs
/// is prepared on another replica once the monitor finds the hung one down, and runs there.
/// (It waited as long as the server did; then, for a while, it got an error.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_on_a_hung_replica_runs_elsewhere() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&(proxy::config_toml(cl, &[1, 1], "") + &fast_monitor()))
        .await
        .unwrap();
    let mut c = sessions_reading_from_replica_2(&p, 1).await.remove(0);
    let hung = &cl.replicas[0];
    hung.pause();
    let t0 = Instant::now();
    let prepared = tokio::time::timeout(Duration::from_secs(10), async {
        let st = c.prep("SELECT @@server_id + 0 * ?").await?;
        c.exec_first::<u32, _, _>(&st, (1,)).await
    })
    .await;
    let took = t0.elapsed();
    hung.resume();
    println!("prepared read: {prepared:?} after {took:?}");
    assert_eq!(
        prepared.expect("still waiting after 10 s").unwrap(),
        Some(3)
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

/// Statements other than plain reads on a hung primary fail once the monitor finds it
/// down, as on a server that died under them: an autocommit write gets 1158 naming the
/// backend (the session goes on), a statement in a transaction loses the connection (the
/// transaction is gone). (Both waited as long as the server did: still after 10 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_a_hung_primary_fail_once_it_is_found_down() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&(proxy::config_toml(cl, &[1, 1], "") + &fast_monitor()))
        .await
        .unwrap();
    let mut writer = p.conn().await.unwrap();
    writer
        .query_drop("CREATE TABLE IF NOT EXISTS f_hung (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    writer
        .query_drop("REPLACE INTO f_hung VALUES (1, 0), (2, 0)")
        .await
        .unwrap();
    let mut in_txn = p.conn().await.unwrap();
    in_txn.query_drop("BEGIN").await.unwrap();
    in_txn
        .query_drop("UPDATE f_hung SET v = v + 1 WHERE id = 2")
        .await
        .unwrap();
    cl.primary.pause();
    let t0 = Instant::now();
    let write = tokio::spawn(async move {
        let r = writer
            .query_drop("UPDATE f_hung SET v = v + 1 WHERE id = 1")
            .await;
        (writer, r, t0.elapsed())
    });
    let txn = tokio::spawn(async move {
        let r = in_txn
            .query_drop("UPDATE f_hung SET v = v + 1 WHERE id = 2")
            .await;
        (in_txn, r, t0.elapsed())
    });
    let write = tokio::time::timeout(Duration::from_secs(10), write).await;
    let txn = tokio::time::timeout(Duration::from_secs(10), txn).await;
    cl.primary.resume();
    let (mut writer, r, took) = write.expect("the write still waits after 10 s").unwrap();
    println!("autocommit write on the hung primary: {r:?} after {took:?}");
    match r {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!((e.code, e.state.as_str()), (1158, "08S01"), "{e:?}");
            assert!(e.message.contains(&cl.primary.addr()), "{e:?}");
            assert!(e.message.contains("may have run"), "{e:?}");
        }
        other => panic!("expected 1158, got {other:?}"),
    }
    let (mut in_txn, r, took) = txn
        .expect("the transaction still waits after 10 s")
        .unwrap();
    println!("statement in a transaction on the hung primary: {r:?} after {took:?}");
    assert!(
        r.is_err() && !matches!(r, Err(mysql_async::Error::Server(_))),
        "the connection is lost: {r:?}"
    );
    assert!(
        in_txn.query_drop("SELECT 1").await.is_err(),
        "session ended"
    );
    // The writer's session goes on, and writes again once the primary is back.
    let t1 = Instant::now();
    loop {
        match writer
            .query_drop("UPDATE f_hung SET v = 10 WHERE id = 1")
            .await
        {
            Ok(()) => break,
            Err(e) if t1.elapsed() < Duration::from_secs(10) => {
                println!("write after the resume: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no write 10 s after the resume: {e}"),
        }
    }
    // The transaction was rolled back with its connection: its row lock goes.
    let mut direct = cl.primary.root_conn().await.unwrap();
    let t2 = Instant::now();
    loop {
        let open: Option<u64> = direct
            .query_first("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
            .await
            .unwrap();
        if open == Some(0) {
            break;
        }
        assert!(
            t2.elapsed() < Duration::from_secs(10),
            "{open:?} transactions still open 10 s after the resume"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v: Option<i64> = direct
        .query_first(format!("SELECT v FROM {DATABASE}.f_hung WHERE id = 2"))
        .await
        .unwrap();
    assert_eq!(v, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_and_restarted() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    assert_eq!(read_ids(&mut c, BOTH).await, BTreeSet::from([2, 3]));

    // One replica gone: every read still succeeds, on the other one.
    cl.replicas[0].kill();
    assert_eq!(read_ids(&mut c, 60).await, BTreeSet::from([3]));
    let mut fresh = p.conn().await.unwrap();
    assert_eq!(read_ids(&mut fresh, 20).await, BTreeSet::from([3]));
    cl.replicas[0].restart().await.unwrap();
    let back = wait_for_reads_on(&mut c, 2, Duration::from_secs(5)).await;
    println!("replica 2 serving reads {back:?} after its restart");

    // Both gone: the primary serves reads.
    cl.replicas[0].kill();
    cl.replicas[1].kill();
    assert_eq!(read_ids(&mut c, 40).await, BTreeSet::from([1]));
    let mut fresh = p.conn().await.unwrap();
    assert_eq!(read_ids(&mut fresh, 20).await, BTreeSet::from([1]));
    cl.replicas[0].restart().await.unwrap();
    cl.replicas[1].restart().await.unwrap();
    let t0 = Instant::now();
    wait_for_reads_on(&mut c, 2, Duration::from_secs(5)).await;
    wait_for_reads_on(&mut c, 3, Duration::from_secs(5)).await;
    println!(
        "both replicas serving reads {:?} after restart",
        t0.elapsed()
    );
    assert_eq!(read_ids(&mut c, 60).await, BTreeSet::from([2, 3]));
    cl.wait_replicas_caught_up().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_mid_result() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();

    // Bystanders read in a loop the whole time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut others = Vec::new();
    for _ in 0..4 {
        let mut c = p.conn().await.unwrap();
        let stop = stop.clone();
        others.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match sid(&mut c).await {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (ok, errors, c)
        }));
    }

    let mut big = p.conn().await.unwrap();
    let mut result = big
        .query_iter("SELECT seq, @@server_id, REPEAT('x', 200) FROM seq_1_to_5000000")
        .await
        .unwrap();
    let first = result.next().await.unwrap().expect("a first row");
    let victim: u32 = first.get(1).unwrap();
    assert!(victim == 2 || victim == 3, "big read went to {victim}");
    cl.replicas[victim as usize - 2].kill();
    let mut rows = 1u64;
    let outcome = loop {
        match result.next().await {
            Ok(Some(_)) => rows += 1,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    drop(result);
    println!("big result from server {victim}: {rows} rows, then {outcome:?}");
    assert!(
        outcome.is_err(),
        "the client whose backend died mid-result must get an error"
    );
    assert!(rows < 5_000_000);

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in others {
        let (ok, errors, mut c) = t.await.unwrap();
        println!("bystander: {ok} reads, errors {errors:?}");
        assert!(ok > 0);
        assert!(errors.is_empty(), "a bystander's read failed: {errors:?}");
        assert_eq!(
            read_ids(&mut c, 20).await,
            BTreeSet::from([5 - victim]),
            "reads after the kill go to the surviving replica"
        );
    }
    let mut fresh = p.conn().await.unwrap();
    read_ids(&mut fresh, 10).await;
    cl.replicas[victim as usize - 2].restart().await.unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
}

/// A DBA's `KILL` on a replica ends the read it ran there: the server closes the connection
/// without a word, as a crash would, but it still takes connections, so the read is not run
/// again on the other replica (which would undo the kill and answer seconds later). The
/// client gets 1317, as from `KILL QUERY`, at once, and its session goes on; neither replica
/// is taken out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_killed_on_its_replica_is_not_run_again() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    let started = Instant::now();
    let read = tokio::spawn(async move {
        let r: mysql_async::Result<Option<(u32, u32)>> =
            c.query_first("SELECT SLEEP(4), @@server_id").await;
        (r, started.elapsed(), c)
    });
    const RUNNING: &str = "SELECT id FROM information_schema.processlist \
                           WHERE info LIKE 'SELECT SLEEP(4)%' AND command <> 'Killed'";
    // As a DBA would: at a statement that has been running a while.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut killed_on = None;
    for _ in 0..100 {
        for r in &cl.replicas {
            let mut dba = r.conn().await.unwrap();
            if let Some(id) = dba.query_first::<u64, _>(RUNNING).await.unwrap() {
                dba.query_drop(format!("KILL {id}")).await.unwrap();
                killed_on = Some(r.server_id);
            }
        }
        if killed_on.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_on = killed_on.expect("the read running on a replica");
    let (r, took, mut c) = read.await.unwrap();
    match r {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!((e.code, e.state.as_str()), (1317, "70100"), "{e:?}");
            assert!(e.message.contains("killed there"), "{}", e.message);
        }
        other => panic!("a read killed on replica {killed_on} answered {other:?} after {took:?}"),
    }
    assert!(took < Duration::from_secs(3), "the read took {took:?}");
    for r in cl.replicas.iter().filter(|r| r.server_id != killed_on) {
        let mut dba = r.conn().await.unwrap();
        let running: Option<u64> = dba.query_first(RUNNING).await.unwrap();
        assert_eq!(
            running, None,
            "the read runs again on server {}",
            r.server_id
        );
    }
    assert_eq!(read_ids(&mut c, BOTH).await, BTreeSet::from([2, 3]));
}

/// A raw client: just enough protocol to log in and send hand-made packets.
struct Raw {
    s: TcpStream,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s }
    }

    /// With a fixed 64 KiB receive buffer: the kernel's autotuning (up to `tcp_rmem`'s
    /// maximum, 32 MiB on some machines) would otherwise take in a whole large result.
    async fn connect_with_small_window(addr: SocketAddr) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let s = socket.connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s }
    }

    /// The session's id, as `CONNECTION_ID()` answers (ten digits).
    async fn session_id(&mut self) -> u64 {
        self.write_packet(0, b"\x03SELECT CONNECTION_ID()").await;
        let mut id = None;
        loop {
            let (_, packet) = self.read_packet().await.unwrap();
            if packet.len() == 11 && packet[0] == 10 {
                id = String::from_utf8(packet[1..].to_vec()).ok();
            } else if packet[0] == 0xFE && id.is_some() {
                return id.unwrap().parse().unwrap();
            }
        }
    }

    /// A logged-in client with a small window.
    async fn logged_in_with_small_window(addr: SocketAddr) -> Raw {
        let mut r = Raw::connect_with_small_window(addr).await;
        let reply = r.login(AuthPlugin::MysqlNativePassword, APP_PASSWORD).await;
        assert_eq!(reply.last().unwrap()[0], 0x00, "login: {reply:?}");
        r
    }

    /// The same, whose session has `net_write_timeout` = 2.
    async fn logged_in_with_2s_write_timeout(addr: SocketAddr) -> Raw {
        let mut r = Raw::logged_in_with_small_window(addr).await;
        let ok = r.query_first_packet("SET net_write_timeout = 2").await;
        assert_eq!(ok[0], 0x00, "{ok:?}");
        r
    }

    async fn read_packet(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut h = [0u8; 4];
        self.s.read_exact(&mut h).await?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
        let mut p = vec![0; len];
        self.s.read_exact(&mut p).await?;
        Ok((h[3], p))
    }

    async fn write_packet(&mut self, seq: u8, payload: &[u8]) {
        let len = (payload.len() as u32).to_le_bytes();
        let mut out = vec![len[0], len[1], len[2], seq];
        out.extend_from_slice(payload);
        self.s.write_all(&out).await.unwrap();
    }

    /// Reads the greeting and answers it with `plugin`'s scramble of the app password.
    /// Returns the packets the server sent back up to and including OK or ERR.
    async fn login(&mut self, plugin: AuthPlugin<'static>, password: &str) -> Vec<Vec<u8>> {
        self.login_with_attributes(plugin, password, None).await
    }

    async fn login_with_attributes(
        &mut self,
        plugin: AuthPlugin<'static>,
        password: &str,
        attributes: Option<std::collections::HashMap<String, String>>,
    ) -> Vec<Vec<u8>> {
        let (seq, greeting) = self.read_packet().await.unwrap();
        assert_eq!(seq, 0);
        let hp =
            HandshakePacket::deserialize((), &mut mysql_common::io::ParseBuf(&greeting)).unwrap();
        let nonce = hp.nonce();
        assert_eq!(nonce.len(), 20);
        let scramble: Vec<u8> = match plugin {
            AuthPlugin::CachingSha2Password => scramble_sha256(&nonce, password.as_bytes())
                .unwrap()
                .to_vec(),
            _ => scramble_native(&nonce, password.as_bytes())
                .unwrap()
                .to_vec(),
        };
        let caps = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_CONNECT_WITH_DB
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            | CapabilityFlags::CLIENT_LONG_FLAG
            | CapabilityFlags::CLIENT_TRANSACTIONS;
        let caps = match attributes {
            Some(_) => caps | CapabilityFlags::CLIENT_CONNECT_ATTRS,
            None => caps,
        };
        let resp = HandshakeResponse::new(
            Some(scramble),
            (10, 11, 0),
            Some(APP_USER.as_bytes()),
            Some(DATABASE.as_bytes()),
            Some(plugin),
            caps,
            attributes,
            16 * 1024 * 1024,
        );
        let mut buf = Vec::new();
        resp.serialize(&mut buf);
        self.write_packet(1, &buf).await;
        let mut got = Vec::new();
        let mut expect_seq = 2u8;
        loop {
            let (seq, p) = self.read_packet().await.unwrap();
            assert_eq!(seq, expect_seq, "sequence id of login reply {p:?}");
            expect_seq += 1;
            let last = matches!(p.as_slice().first(), Some(0x00) | Some(0xFF));
            got.push(p);
            if last {
                return got;
            }
        }
    }

    /// Sends a COM_QUERY and returns the first packet of the reply.
    async fn query_first_packet(&mut self, sql: &str) -> Vec<u8> {
        let mut p = vec![0x03];
        p.extend_from_slice(sql.as_bytes());
        self.write_packet(0, &p).await;
        self.read_packet().await.unwrap().1
    }

    /// Reads until the peer closes; `Ok(packets)` if it closed within `within`.
    async fn read_until_closed(&mut self, within: Duration) -> Result<Vec<Vec<u8>>, String> {
        let mut packets = Vec::new();
        let r = tokio::time::timeout(within, async {
            loop {
                match self.read_packet().await {
                    Ok((_, p)) => packets.push(p),
                    Err(_) => return,
                }
            }
        })
        .await;
        match r {
            Ok(()) => Ok(packets),
            Err(_) => Err(format!("still open after {within:?}; got {packets:?}")),
        }
    }
}

fn err_code(p: &[u8]) -> Option<u16> {
    (p.first() == Some(&0xFF)).then(|| u16::from_le_bytes([p[1], p[2]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_packets() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut bystander = p.conn().await.unwrap();

    // An unknown command byte: an error, and the connection stays usable.
    let mut r = Raw::connect(p.addr).await;
    let reply = r.login(AuthPlugin::MysqlNativePassword, APP_PASSWORD).await;
    assert_eq!(reply.last().unwrap()[0], 0x00, "native login: {reply:?}");
    r.write_packet(0, &[0xEE, 1, 2, 3]).await;
    let (_, e) = r.read_packet().await.unwrap();
    println!("unknown command -> {:?}", String::from_utf8_lossy(&e));
    assert_eq!(err_code(&e), Some(1047));
    let first = r.query_first_packet("SELECT 1").await;
    assert_eq!(
        first,
        vec![1],
        "column count of SELECT 1 after the bad command"
    );

    // A packet out of sequence: MariaDB answers an error and closes; so must the proxy.
    let mut r = Raw::connect(cl.primary.addr().parse().unwrap()).await;
    r.login(AuthPlugin::MysqlNativePassword, APP_PASSWORD).await;
    r.write_packet(7, b"\x03SELECT 1").await;
    let direct = r.read_until_closed(Duration::from_secs(3)).await;
    println!("out-of-sequence packet, MariaDB directly -> {direct:?}");
    let mut r = Raw::connect(p.addr).await;
    r.login(AuthPlugin::MysqlNativePassword, APP_PASSWORD).await;
    r.write_packet(7, b"\x03SELECT 1").await;
    let got = r.read_until_closed(Duration::from_secs(3)).await.unwrap();
    println!("out-of-sequence packet -> {got:?}");
    let direct = direct.unwrap();
    assert_eq!(err_code(&direct[0]), Some(1156));
    assert_eq!(got.len(), 1, "one error, then closed: {got:?}");
    assert_eq!(err_code(&got[0]), Some(1156), "{got:?}");

    // The same in the middle of a multi-packet command (seq 0, 0, 2 for 0, 1, 2): the last
    // packet's id alone looks right.
    let mut wire = Vec::new();
    for (seq, len) in [(0u8, 0xFF_FFFF), (0, 0xFF_FFFF), (2, 8)] {
        wire.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        wire.push(seq);
        wire.resize(wire.len() + len, b' ');
    }
    wire[4] = 0x03;
    let mut answers = Vec::new();
    for addr in [cl.primary.addr().parse().unwrap(), p.addr] {
        let mut r = Raw::connect(addr).await;
        r.login(AuthPlugin::MysqlNativePassword, APP_PASSWORD).await;
        // The server may hang up before it has it all.
        let _ = r.s.write_all(&wire).await;
        answers.push(r.read_until_closed(Duration::from_secs(5)).await.unwrap());
    }
    println!("continuation out of sequence -> {answers:?}");
    assert_eq!(err_code(&answers[0][0]), Some(1156), "MariaDB: {answers:?}");
    assert_eq!(answers[1].len(), 1, "one error, then closed: {answers:?}");
    assert_eq!(err_code(&answers[1][0]), Some(1156), "{answers:?}");

    // A header announcing 16 MiB followed by a few bytes and EOF: the proxy drops it.
    let mut r = Raw::connect(p.addr).await;
    r.login(AuthPlugin::MysqlNativePassword, APP_PASSWORD).await;
    r.s.write_all(b"\xfe\xff\xff\x00\x03SELECT garbage")
        .await
        .unwrap();
    r.s.shutdown().await.unwrap();
    let got = r.read_until_closed(Duration::from_secs(3)).await.unwrap();
    println!("truncated packet -> {got:?}");

    // Garbage instead of a login.
    let mut r = Raw::connect(p.addr).await;
    r.read_packet().await.unwrap();
    r.s.write_all(&[0x05, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .await
        .unwrap();
    let got = r.read_until_closed(Duration::from_secs(3)).await.unwrap();
    println!(
        "garbage login -> {:?}",
        got.iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect::<Vec<_>>()
    );
    assert!(got.iter().any(|p| err_code(p).is_some()), "{got:?}");

    // Everyone else is fine.
    let id = sid(&mut bystander).await.unwrap();
    assert!(id == 2 || id == 3);
    let mut fresh = p.conn().await.unwrap();
    assert!(sid(&mut fresh).await.is_ok());
}

/// A command of `max-allowed-packet` bytes or more gets MariaDB's own answer to one of its
/// `max_allowed_packet` (ERR 1153, then the connection closes), as soon as its header says
/// so: the proxy buffers none of it. A command one byte shorter still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_longer_than_max_allowed_packet_are_refused() {
    const LIMIT: usize = 1 << 20;
    let (_turn, cl) = cluster().await;
    let toml = proxy::config_toml(cl, &[1, 1], "").replacen(
        "[proxy]\n",
        &format!("[proxy]\nmax-allowed-packet = {LIMIT}\n"),
        1,
    );
    let p = proxy::start(&toml).await.unwrap();
    let mut bystander = p.conn().await.unwrap();

    // MariaDB, sent a whole command of its limit.
    let mut root = cl.primary.conn().await.unwrap();
    let server_limit: usize = root
        .query_first("SELECT @@max_allowed_packet")
        .await
        .unwrap()
        .unwrap();
    let mut r = Raw::connect(cl.primary.addr().parse().unwrap()).await;
    r.login(AuthPlugin::MysqlNativePassword, APP_PASSWORD).await;
    // (`COM_QUERY` and spaces, in full 16 MiB packets and a shorter last one.)
    let mut full = vec![b' '; 0xFF_FFFF];
    full[0] = 0x03;
    let (whole, rest) = (server_limit / full.len(), server_limit % full.len());
    for seq in 0..whole {
        r.write_packet(seq as u8, &full).await;
        full[0] = b' ';
    }
    r.write_packet(whole as u8, &full[..rest]).await;
    let direct = r.read_until_closed(Duration::from_secs(10)).await.unwrap();
    println!("direct, {server_limit} bytes -> {direct:?}");
    assert_eq!(direct.len(), 1, "{direct:?}");

    // The proxy, sent only the header of a command of its limit and the first bytes of it:
    // the same error at once, then closed.
    let mut r = Raw::connect(p.addr).await;
    r.login(AuthPlugin::MysqlNativePassword, APP_PASSWORD).await;
    let len = (LIMIT as u32).to_le_bytes();
    r.s.write_all(&[len[0], len[1], len[2], 0, 0x03, b'S', b'E'])
        .await
        .unwrap();
    let got = r.read_until_closed(Duration::from_secs(5)).await.unwrap();
    println!("proxy, header of {LIMIT} bytes -> {got:?}");
    assert_eq!(got, direct, "the proxy answers as MariaDB does");
    assert_eq!(err_code(&got[0]), Some(1153));
    assert_eq!(&got[0][3..9], b"#08S01");

    // A command one byte shorter runs.
    let mut c = p.conn().await.unwrap();
    let head = "SELECT LENGTH('";
    let tail = "')";
    let filler = "a".repeat(LIMIT - 2 - head.len() - tail.len());
    let n: usize = c
        .query_first(format!("{head}{filler}{tail}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, filler.len());
    assert!(sid(&mut bystander).await.is_ok(), "others are untouched");
}

/// A login packet of 64 KiB or more (here: made long by a connection attribute) gets
/// MariaDB's own answer, 1043 "Bad handshake" after it, and the close; the proxy answers as
/// soon as the header arrives. One a little shorter is checked as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_packets_of_64_kib_are_refused() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    for (length, refused) in [(64_000, false), (70_000, true)] {
        let mut answers = Vec::new();
        for addr in [cl.primary.addr().parse().unwrap(), p.addr] {
            let mut r = Raw::connect(addr).await;
            let attributes = [("long".to_string(), "a".repeat(length))].into();
            answers.push(
                r.login_with_attributes(AuthPlugin::MysqlNativePassword, "wrong", Some(attributes))
                    .await,
            );
        }
        println!("attribute of {length} bytes: {:?}", answers[0]);
        assert_eq!(answers[1], answers[0], "proxy and MariaDB, {length} bytes");
        let code = err_code(&answers[0][0]);
        assert_eq!(code, Some(if refused { 1043 } else { 1045 }), "{answers:?}");
    }
    let mut r = Raw::connect(p.addr).await;
    r.read_packet().await.unwrap();
    r.s.write_all(&[0, 0, 1, 1, 0x0f]).await.unwrap();
    let got = r.read_until_closed(Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(err_code(&got[0]), Some(1043));
    assert_eq!(&got[0][3..], b"#08S01Bad handshake");
}

/// A client that connects and never finishes logging in — silent after the greeting, or
/// stopping half-way through its login packet — is disconnected after 10 s, as MariaDB does
/// (`connect_timeout`), instead of holding a socket forever; on the admin console's port too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_logins_time_out() {
    // The turn is held throughout: the other tests here restart the primary, which would
    // close the direct sockets early.
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut sockets = Vec::new();
    for (addr, who) in [
        (cl.primary.addr().parse().unwrap(), "direct"),
        (p.addr, "proxy"),
        (p.admin_addr, "admin console"),
    ] {
        for partial in [&b""[..], b"\x40\x00\x00\x01abc"] {
            let mut r = Raw::connect(addr).await;
            r.read_packet().await.unwrap();
            r.s.write_all(partial).await.unwrap();
            sockets.push((who, partial.len(), r));
        }
    }
    let started = Instant::now();
    for (who, sent, mut r) in sockets {
        let closed = r.read_until_closed(Duration::from_secs(20)).await;
        let waited = started.elapsed();
        assert!(closed.is_ok(), "{who}, {sent} bytes of login: {closed:?}");
        assert!(
            waited >= Duration::from_secs(8),
            "{who}: closed after {waited:?}"
        );
    }
}

/// A logged-in client that stops in the middle of a command, here inside a transaction
/// holding a row lock, is disconnected after 30 s without a byte, and its transaction's lock
/// is released: the proxy neither waits forever nor keeps the backend connection. (MariaDB
/// itself waits `wait_timeout`, 8 hours by default, for the rest of a command.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_commands_time_out() {
    // The turn is held throughout: the other tests here restart servers, which would end
    // these sessions early.
    let (_turn, cl) = cluster().await;
    let mut root = cl.primary.conn().await.unwrap();
    root.query_drop("CREATE OR REPLACE TABLE half_sent (id INT PRIMARY KEY)")
        .await
        .unwrap();
    root.query_drop("INSERT INTO half_sent VALUES (1), (2)")
        .await
        .unwrap();
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut sockets = Vec::new();
    for (row, partial) in [
        // A header announcing 32 bytes, and three of them.
        (1, &[0x20, 0x00, 0x00, 0x00, 0x03, b'S', b'E'][..]),
        // Half a header.
        (2, &[0x20, 0x00]),
    ] {
        let mut r = Raw::connect(p.addr).await;
        let reply = r.login(AuthPlugin::MysqlNativePassword, APP_PASSWORD).await;
        assert_eq!(reply.last().unwrap()[0], 0x00, "login: {reply:?}");
        r.write_packet(0, b"\x03BEGIN").await;
        r.read_packet().await.unwrap();
        let lock = format!("\x03UPDATE half_sent SET id = id WHERE id = {row}");
        r.write_packet(0, lock.as_bytes()).await;
        let ok = r.read_packet().await.unwrap().1;
        assert_eq!(ok[0], 0, "row {row} locked");
        r.s.write_all(partial).await.unwrap();
        sockets.push((partial.len(), r));
    }
    let started = Instant::now();
    for (sent, mut r) in sockets {
        let closed = r.read_until_closed(Duration::from_secs(45)).await;
        assert!(closed.is_ok(), "{sent} bytes sent: {closed:?}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(25),
            "{sent} bytes sent: closed after {waited:?}"
        );
    }
    // The locks went with the connections: another transaction gets the rows at once.
    let mut root = cl.primary.conn().await.unwrap();
    root.query_drop("SET SESSION innodb_lock_wait_timeout = 5")
        .await
        .unwrap();
    root.query_drop("UPDATE half_sent SET id = id + 10")
        .await
        .unwrap();
}

/// Rows of 1 MiB each: a result larger than the socket buffers between proxy and client.
fn mib_rows(n: usize) -> Vec<u8> {
    format!("\x03SELECT REPEAT('x', 1048576) FROM seq_1_to_{n}").into_bytes()
}

/// A client that takes nothing of a large result for its session's `net_write_timeout` is
/// disconnected, and the session gives its backend connection up; a client that reads slowly
/// but steadily, for longer than that in all, gets the whole result. (The session waited for
/// the client for good, holding its backend connection: a `KILL` after 4 s found it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_let_go() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    // 1 MiB every 250 ms: 4 s for the 16 rows, twice the limit.
    let mut slow = Raw::logged_in_with_2s_write_timeout(p.addr).await;
    slow.write_packet(0, &mib_rows(16)).await;
    let mut rows = 0;
    loop {
        let (_, packet) = slow.read_packet().await.expect("the slow reader's result");
        match packet.len() {
            n if n > 1 << 20 => {
                rows += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            n if packet[0] == 0xFE && n < 0xFF_FFFF && rows > 0 => break,
            _ => assert_ne!(packet[0], 0xFF, "{}", String::from_utf8_lossy(&packet)),
        }
    }
    assert_eq!(rows, 16);
    // Now one that reads nothing for 4 s: its session has ended by then (a `KILL` finds no
    // such session).
    let mut stalled = Raw::logged_in_with_2s_write_timeout(p.addr).await;
    let id = stalled.session_id().await;
    stalled.write_packet(0, &mib_rows(32)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut c = p.conn().await.unwrap();
    let gone = c.query_drop(format!("KILL {id}")).await.unwrap_err();
    assert_eq!(server_error(&gone).map(|e| e.code), Some(1094), "{gone}");
    let got = stalled
        .read_until_closed(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("the stalled client: {e}"));
    let rows = got.iter().filter(|p| p.len() > 1 << 20).count();
    assert!(rows < 32, "the whole result came: {rows} rows");
    // The other sessions go on.
    let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

/// The session's `net_write_timeout` is followed however the session set it, not only by a
/// plain `SET` of a number: in an executable comment (as dump files carry their settings),
/// in a procedure, as an expression. (Only the plain `SET` of a number was: these stalled
/// clients stayed for the default 60 s, and the `KILL` after 4 s found them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_timeout_set_any_way_is_followed() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE OR REPLACE PROCEDURE write_timeout_2() SET net_write_timeout = 2")
        .await
        .unwrap();
    for set in [
        "/*!40101 SET net_write_timeout = 2 */",
        "CALL write_timeout_2()",
        "SET net_write_timeout = 1 + 1",
    ] {
        let mut stalled = Raw::logged_in_with_small_window(p.addr).await;
        let ok = stalled.query_first_packet(set).await;
        assert_eq!(ok[0], 0x00, "{set}: {}", String::from_utf8_lossy(&ok));
        let id = stalled.session_id().await;
        stalled.write_packet(0, &mib_rows(32)).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let gone = c.query_drop(format!("KILL {id}")).await.unwrap_err();
        assert_eq!(
            server_error(&gone).map(|e| e.code),
            Some(1094),
            "{set}: {gone}"
        );
    }
}

/// `KILL CONNECTION` of a session blocked writing a result its client does not read ends it
/// at once, as on a server, which shuts the killed connection's socket: a second `KILL` finds
/// it gone (1094). (The session stayed blocked until the client read: the second `KILL` got
/// OK.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_session_blocked_on_its_client() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut blocked = Raw::logged_in_with_small_window(p.addr).await;
    let mut killer = p.conn().await.unwrap();
    let id = blocked.session_id().await;
    blocked.write_packet(0, &mib_rows(32)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    killer.query_drop(format!("KILL {id}")).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match killer.query_drop(format!("KILL {id}")).await {
                Err(e) => break e,
                Ok(()) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("the killed session was still there after 5 s");
    assert_eq!(server_error(&gone).map(|e| e.code), Some(1094), "{gone}");
    let got = blocked
        .read_until_closed(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(got.iter().filter(|p| p.len() > 1 << 20).count() < 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_access_denied() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let opts = mysql_async::OptsBuilder::from_opts(p.opts()).pass(Some("wrong"));
    let e = Conn::new(opts).await.unwrap_err();
    println!("proxy: {e}");
    let se = server_error(&e).unwrap_or_else(|| panic!("not a server error: {e:?}"));
    assert_eq!(se.code, 1045);
    assert_eq!(se.state, "28000");
    assert_eq!(
        se.message,
        "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
    );
    // The same as MariaDB itself says.
    let direct = mysql_async::OptsBuilder::from_opts(cl.primary.opts(APP_USER, "wrong"));
    let d = Conn::new(direct).await.unwrap_err();
    println!("direct: {d:?}");
    let dse = server_error(&d).unwrap();
    assert_eq!(
        (dse.code, &dse.state, &dse.message),
        (se.code, &se.state, &se.message)
    );
    // The proxy still lets the right password in.
    p.conn().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_password_login() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut r = Raw::connect(p.addr).await;
    let reply = r.login(AuthPlugin::CachingSha2Password, APP_PASSWORD).await;
    assert_eq!(reply.len(), 2, "{reply:?}");
    assert_eq!(reply[0], vec![0x01, 0x03], "fast auth success");
    assert_eq!(reply[1][0], 0x00, "then OK: {reply:?}");
    // Logged in: a statement works, and the schema from the handshake is selected.
    let first = r.query_first_packet("SELECT DATABASE()").await;
    assert_eq!(first, vec![1]);
    let (_, _coldef) = r.read_packet().await.unwrap();
    let (_, eof) = r.read_packet().await.unwrap();
    assert_eq!(eof[0], 0xFE);
    let (_, row) = r.read_packet().await.unwrap();
    assert_eq!(&row[1..], DATABASE.as_bytes());

    // And a wrong sha2 scramble is refused.
    let mut r = Raw::connect(p.addr).await;
    let reply = r.login(AuthPlugin::CachingSha2Password, "nope").await;
    assert_eq!(err_code(reply.last().unwrap()), Some(1045), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ips_refuse_other_addresses() {
    let (_turn, cl) = cluster().await;
    let toml = proxy::config_toml(cl, &[1, 1], "").replacen(
        "[proxy]\n",
        "[proxy]\nclient-ips = [\"10.9.9.9\"]\n",
        1,
    );
    let p = proxy::start(&toml).await.unwrap();
    let e = p.conn().await.unwrap_err();
    println!("refused: {e}");
    let e = e.downcast::<mysql_async::Error>().unwrap();
    let se = server_error(&e).unwrap_or_else(|| panic!("not an error packet: {e:?}"));
    assert_eq!(se.code, 1130);
    assert_eq!(
        se.message,
        "Host '127.0.0.1' is not allowed to connect to this rwproxy server"
    );
}

/// Like a server, the proxy refuses a login that names a schema that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_unknown_schema_is_refused() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let opts =
        |db: &str| mysql_async::OptsBuilder::from_opts(p.opts()).db_name(Some(db.to_string()));
    let err = mysql_async::Conn::new(opts("no_such_db"))
        .await
        .unwrap_err()
        .to_string();
    let direct = mysql_async::Conn::new(
        mysql_async::OptsBuilder::from_opts(
            cl.primary
                .opts(rwproxy_sql_tests::APP_USER, rwproxy_sql_tests::APP_PASSWORD),
        )
        .db_name(Some("no_such_db")),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("1049") && err.contains("Unknown database 'no_such_db'"),
        "{err}"
    );
    assert_eq!(err, direct);
    mysql_async::Conn::new(opts("rwtest")).await.unwrap();
}

/// A client that closes its connection during a statement does not leave it running on the
/// backend: the proxy passes the end of input on, so the server ends the statement where it
/// would for a direct client (here a `SLEEP`), then closes the connection and rolls the
/// transaction back: its locks are free (a proxy's backend connection would never close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_statement_frees_its_locks() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut other = p.conn().await.unwrap();
    other
        .query_drop("CREATE OR REPLACE TABLE fl_orphan (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    other
        .query_drop("INSERT INTO fl_orphan VALUES (1, 0)")
        .await
        .unwrap();
    other
        .query_drop("SET SESSION innodb_lock_wait_timeout = 20")
        .await
        .unwrap();
    // How long the lock outlives its client: directly, then through the proxy.
    let mut held = Vec::new();
    for addr in [cl.primary_addr().parse().unwrap(), p.addr] {
        let mut gone =
            rwproxy_sql_tests::raw::RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
                .await
                .unwrap();
        for sql in ["BEGIN", "UPDATE fl_orphan SET v = v + 1 WHERE id = 1"] {
            gone.query(sql).await.unwrap();
        }
        let mut sleep = vec![0x03];
        sleep.extend_from_slice(b"SELECT SLEEP(60) AS orphan");
        gone.send(&sleep).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(gone);
        let t0 = Instant::now();
        other
            .query_drop("UPDATE fl_orphan SET v = 0 WHERE id = 1")
            .await
            .unwrap();
        held.push(t0.elapsed());
    }
    println!(
        "lock held after the client left: directly {:?}, through the proxy {:?}",
        held[0], held[1]
    );
    // The proxy's sweeper looks once a second.
    assert!(
        held[1] < held[0] + Duration::from_millis(2500),
        "held {:?} through the proxy, {:?} directly",
        held[1],
        held[0]
    );
    // The abandoned transaction rolled back, and nothing of it runs on the primary.
    let v: Option<i64> = other
        .query_first("/*master*/ SELECT v FROM fl_orphan WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(v, Some(0));
    let mut root = cl.primary.root_conn().await.unwrap();
    let left: u64 = root
        .query_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%AS orphan'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left, 0);
}

/// A client that shuts only its sending side after a statement still gets the reply, as from
/// a server: the end of input reaches the backend, which finishes and answers (a statement
/// the server does not interrupt runs to its end, and commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_still_gets_its_reply() {
    let (_turn, cl) = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut setup = p.conn().await.unwrap();
    setup
        .query_drop("CREATE OR REPLACE TABLE fl_half (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    setup
        .query_drop("INSERT INTO fl_half VALUES (1, 0)")
        .await
        .unwrap();
    let statements = [
        // Still sleeping when the sweeper passes the end of input on.
        "UPDATE fl_half SET v = 42 + SLEEP(1.5) WHERE id = 1",
        "/*master*/ SELECT v, 'answered' FROM fl_half",
    ];
    let mut replies = Vec::new();
    for addr in [cl.primary_addr().parse().unwrap(), p.addr] {
        setup
            .query_drop("/*master*/ UPDATE fl_half SET v = 0")
            .await
            .unwrap();
        let conn = rwproxy_sql_tests::raw::RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        let mut stream = conn.into_stream();
        for sql in statements {
            let mut packet = Vec::new();
            let len = (sql.len() + 1) as u32;
            packet.extend_from_slice(&len.to_le_bytes()[..3]);
            packet.extend_from_slice(&[0, 0x03]);
            packet.extend_from_slice(sql.as_bytes());
            stream.write_all(&packet).await.unwrap();
        }
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
            .await
            .expect("the reply, then the close")
            .unwrap();
        replies.push(reply);
    }
    for reply in &replies {
        let text = String::from_utf8_lossy(reply);
        assert!(text.contains("answered"), "{text:?}");
    }
    let v: Option<i64> = setup
        .query_first("/*master*/ SELECT v FROM fl_half")
        .await
        .unwrap();
    assert_eq!(v, Some(42), "the update committed");
    assert_eq!(replies[1], replies[0], "the proxy's reply is the server's");
}
