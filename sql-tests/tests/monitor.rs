//! The health monitor against real replication: replicas leave the read pool when their
//! replication stops or lags and come back by themselves once caught up; dead servers go
//! `down` and return; a read-only write backend holds writes back; the operator's
//! `SET OFFLINE` wins over the monitor. Every test runs its own cluster.

use mysql_async::prelude::*;
use rwproxy_admin::client::AdminClient;
use rwproxy_admin::control::{BackendState, BackendStats};
use rwproxy_sql_tests::relay::Relay;
use rwproxy_sql_tests::sandbox::{MONITOR_PASSWORD, MONITOR_USER};
use rwproxy_sql_tests::sysbench::{run, stat};
use rwproxy_sql_tests::{proxy, Cluster};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Probes every 200 ms, two bad ones take a backend out, two good ones bring it back.
fn monitor_section(max_lag: u64) -> String {
    format!(
        "[monitor]\nuser = \"{MONITOR_USER}\"\npassword = \"{MONITOR_PASSWORD}\"\n\
         interval-ms = 200\ntimeout-ms = 1000\nfall = 2\nrise = 2\n\
         max-replication-lag = {max_lag}\nwrite-wait-ms = 3000\n"
    )
}

async fn start(replicas: usize, max_lag: u64) -> (Cluster, proxy::Proxy) {
    let cluster = Cluster::start(replicas).await.unwrap();
    let toml = proxy::config_toml(&cluster, &[], "") + &monitor_section(max_lag);
    let p = proxy::start(&toml).await.unwrap();
    (cluster, p)
}

/// Checks the admin `stats` row of `address` with `check` every `every` for `lasting`.
async fn holds_for(
    p: &proxy::Proxy,
    address: &str,
    lasting: Duration,
    every: Duration,
    check: impl Fn(&BackendStats),
) {
    let mut admin = p.admin().await;
    let t0 = Instant::now();
    while t0.elapsed() < lasting {
        check(&stats_of(&mut admin, address).await);
        tokio::time::sleep(every).await;
    }
}

/// The admin `stats` row of `address`.
async fn stats_of(admin: &mut AdminClient, address: &str) -> BackendStats {
    admin
        .stats()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.address == address)
        .expect("backend listed")
}

async fn server_id(s: &rwproxy_sql_tests::sandbox::Server) -> u32 {
    let mut c = s.root_conn().await.unwrap();
    c.query_first("SELECT @@server_id").await.unwrap().unwrap()
}

/// Polls the admin `stats` row of `address` until `pred` holds; returns it and the wait.
async fn wait_stats(
    p: &proxy::Proxy,
    address: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&BackendStats) -> bool,
) -> (BackendStats, Duration) {
    let mut admin = p.admin().await;
    let t0 = Instant::now();
    loop {
        let row = stats_of(&mut admin, address).await;
        if pred(&row) {
            return (row, t0.elapsed());
        }
        assert!(
            t0.elapsed() < within,
            "{address}: not {what} within {within:?}; last: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_sql_thread_leaves_the_read_pool_and_returns() {
    let (cluster, p) = start(2, 30).await;
    let r1 = &cluster.replicas[0];
    let addr = r1.addr();
    let (id1, id2) = (server_id(r1).await, server_id(&cluster.replicas[1]).await);
    wait_stats(&p, &addr, Duration::from_secs(10), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    assert_eq!(p.read_ids(60).await, [id1, id2].into());

    let mut root = r1.root_conn().await.unwrap();
    root.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    let (row, took) = wait_stats(&p, &addr, Duration::from_secs(10), "excluded", |s| {
        s.state == BackendState::Excluded
    })
    .await;
    let reason = row.reason.unwrap_or_default();
    assert!(reason.contains("SQL thread stopped"), "reason: {reason}");
    eprintln!("SQL thread stopped -> excluded after {took:?}");
    assert_eq!(
        p.read_ids(60).await,
        [id2].into(),
        "reads avoid the stopped replica"
    );

    root.query_drop("START SLAVE").await.unwrap();
    let (row, took) = wait_stats(&p, &addr, Duration::from_secs(10), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    assert_eq!(row.reason, None);
    eprintln!("START SLAVE -> up after {took:?}");
    assert_eq!(p.read_ids(60).await, [id1, id2].into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_is_excluded_until_caught_up() {
    // MASTER_DELAY = 4 s against a 1 s limit: a write makes the replica fall behind.
    let (cluster, p) = start(1, 1).await;
    let r = &cluster.replicas[0];
    let addr = r.addr();
    let mut root = r.root_conn().await.unwrap();
    root.query_drop("STOP SLAVE").await.unwrap();
    root.query_drop("CHANGE MASTER TO MASTER_DELAY = 4")
        .await
        .unwrap();
    root.query_drop("START SLAVE").await.unwrap();
    wait_stats(&p, &addr, Duration::from_secs(10), "up", |s| {
        s.state == BackendState::Up
    })
    .await;

    let mut w = cluster.primary.conn().await.unwrap();
    w.query_drop("CREATE TABLE IF NOT EXISTS lag_probe (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let (row, took) = wait_stats(&p, &addr, Duration::from_secs(15), "excluded", |s| {
        s.state == BackendState::Excluded
    })
    .await;
    let reason = row.reason.clone().unwrap_or_default();
    assert!(reason.contains("lag"), "reason: {reason}");
    assert!(row.lag_seconds.unwrap_or(0) > 1, "{row:?}");
    eprintln!("lag over the limit -> excluded after {took:?} ({reason})");
    // With the only replica out, reads go to the primary.
    let primary_id = server_id(&cluster.primary).await;
    assert_eq!(p.read_ids(20).await, [primary_id].into());

    let (row, took) = wait_stats(&p, &addr, Duration::from_secs(20), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    assert!(row.lag_seconds.unwrap_or(0) <= 1, "{row:?}");
    eprintln!("caught up -> up after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_replica_goes_down_and_returns_without_read_errors() {
    let (cluster, p) = start(2, 30).await;
    let primary = cluster.primary.port;
    tokio::task::spawn_blocking(move || {
        run(
            "oltp_read_only",
            primary,
            &["--tables=1", "--table-size=1000"],
            "prepare",
        )
    })
    .await
    .unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    let r1 = &cluster.replicas[0];
    let addr = r1.addr();
    wait_stats(&p, &addr, Duration::from_secs(10), "up", |s| {
        s.state == BackendState::Up
    })
    .await;

    // Autocommit reads (no BEGIN/COMMIT) so they are spread over the replicas.
    let port = p.addr.port();
    let bench = tokio::task::spawn_blocking(move || {
        run(
            "oltp_read_only",
            port,
            &[
                "--tables=1",
                "--table-size=1000",
                "--skip_trx=on",
                "--threads=8",
                "--time=12",
                "--report-interval=0",
            ],
            "run",
        )
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    r1.kill();
    let (row, took) = wait_stats(&p, &addr, Duration::from_secs(10), "down", |s| {
        s.state == BackendState::Down
    })
    .await;
    eprintln!("replica killed -> down after {took:?}: {:?}", row.reason);
    tokio::time::sleep(Duration::from_secs(2)).await;
    r1.restart().await.unwrap();
    let (_, took) = wait_stats(&p, &addr, Duration::from_secs(15), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    eprintln!("replica restarted -> up after {took:?}");
    let out = bench.await.unwrap();
    assert_eq!(stat(&out, "ignored errors:"), 0, "{out}");
    assert_eq!(stat(&out, "reconnects:"), 0, "{out}");
    assert!(stat(&out, "transactions:") > 0, "{out}");
    let queries_after = {
        let before = wait_stats(&p, &addr, Duration::from_secs(1), "listed", |_| true)
            .await
            .0
            .queries;
        p.read_ids(100).await;
        wait_stats(&p, &addr, Duration::from_secs(1), "listed", |_| true)
            .await
            .0
            .queries
            - before
    };
    assert!(
        queries_after > 0,
        "the restarted replica serves reads again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_write_backend_holds_writes_back() {
    let (cluster, p) = start(1, 30).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE TABLE IF NOT EXISTS ro_probe (id INT PRIMARY KEY)")
        .await
        .unwrap();
    // Read later on the replica.
    cluster.wait_replicas_caught_up().await.unwrap();
    let mut root = cluster.primary.root_conn().await.unwrap();
    root.query_drop("SET GLOBAL read_only = ON").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Stays read-only: the write waits write-wait-ms, then fails like the server would.
    let t0 = Instant::now();
    let e = c
        .query_drop("INSERT INTO ro_probe VALUES (1)")
        .await
        .unwrap_err();
    let waited = t0.elapsed();
    let mysql_async::Error::Server(e) = e else {
        panic!("expected a server error, got {e}")
    };
    assert_eq!((e.code, e.state.as_str()), (1290, "HY000"), "{}", e.message);
    assert!(e.message.contains("read-only"), "{}", e.message);
    assert!(waited >= Duration::from_secs(2), "waited only {waited:?}");
    // Reads are not held back.
    let n: i64 = c
        .query_first("SELECT COUNT(*) FROM ro_probe")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    // Those of a transaction wait as writes do (in a switchover the transaction then runs on
    // the new primary), and then run on the read-only server, which answers them as it would
    // a direct client (autocommit off: Connector/Python, SQLAlchemy).
    let mut t = p.conn().await.unwrap();
    for begin in ["BEGIN", "SET autocommit = 0"] {
        t.query_drop(begin).await.unwrap();
        let n: i64 = t
            .query_first("SELECT COUNT(*) FROM ro_probe")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        t.query_drop("COMMIT").await.unwrap();
    }
    drop(t);

    // A kill ends the wait at once: KILL QUERY answers 1317, KILL CONNECTION closes the
    // session (before, both waited out write-wait-ms).
    let mut killer = p.conn().await.unwrap();
    for kill in ["QUERY", "CONNECTION"] {
        let mut victim = p.conn().await.unwrap();
        let id = victim.id();
        let t0 = Instant::now();
        let waiting =
            tokio::spawn(async move { victim.query_drop("INSERT INTO ro_probe VALUES (3)").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        killer
            .query_drop(format!("KILL {kill} {id}"))
            .await
            .unwrap();
        let e = waiting.await.unwrap().unwrap_err();
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(1), "KILL {kill}: {took:?}");
        match e {
            mysql_async::Error::Server(e) => {
                assert_eq!((kill, e.code), ("QUERY", 1317), "{}", e.message)
            }
            e => assert_eq!(kill, "CONNECTION", "{e}"),
        }
    }

    // Becomes writable while a write waits: the write goes through.
    let writer = tokio::spawn(async move { c.query_drop("INSERT INTO ro_probe VALUES (2)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    root.query_drop("SET GLOBAL read_only = OFF").await.unwrap();
    writer.await.unwrap().expect("write after read_only=OFF");
    let n: i64 = root
        .query_first("SELECT COUNT(*) FROM rwtest.ro_probe")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
}

/// The reason in `stats` is always the current state's: a replica excluded for its
/// replication, taken offline, repaired and set online again shows none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_online_leave_no_stale_reason() {
    let (cluster, p) = start(1, 30).await;
    let r = &cluster.replicas[0];
    let addr = r.addr();
    wait_stats(&p, &addr, Duration::from_secs(10), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    let mut root = r.root_conn().await.unwrap();
    root.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    wait_stats(&p, &addr, Duration::from_secs(10), "excluded", |s| {
        s.state == BackendState::Excluded
            && s.reason
                .as_deref()
                .unwrap_or("")
                .contains("SQL thread stopped")
    })
    .await;

    let mut admin = p.admin().await;
    admin.set_offline(2).await.unwrap();
    // Probes go on while it is offline, and find it unfit: still no reason.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (row, _) = wait_stats(&p, &addr, Duration::ZERO, "offline", |_| true).await;
    assert_eq!((row.state, row.reason), (BackendState::Offline, None));
    root.query_drop("START SLAVE").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    admin.set_online(2).await.unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        let (row, _) = wait_stats(&p, &addr, Duration::ZERO, "up", |_| true).await;
        assert_eq!((row.state, row.reason), (BackendState::Up, None));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Changes the monitor account's password on `server` alone (not replicated) and kills its
/// connections: every later probe is refused at login.
async fn lock_out_monitor(server: &rwproxy_sql_tests::sandbox::Server) {
    let mut root = server.root_conn().await.unwrap();
    root.query_drop("SET SESSION sql_log_bin = 0")
        .await
        .unwrap();
    for host in ["%", "127.0.0.1", "localhost"] {
        root.query_drop(format!(
            "ALTER USER '{MONITOR_USER}'@'{host}' IDENTIFIED BY 'changed'"
        ))
        .await
        .unwrap();
    }
    let ids: Vec<u64> = root
        .query(format!(
            "SELECT id FROM information_schema.processlist WHERE user = '{MONITOR_USER}'"
        ))
        .await
        .unwrap();
    for id in ids {
        // It may have gone by itself meanwhile.
        let _ = root.query_drop(format!("KILL {id}")).await;
    }
}

/// The monitor saw the primary read-only and a replica's replication broken, then lost its
/// login to both: it knows nothing more about either. The primary made writable again takes
/// writes at once (until the monitor can look again the server is the judge of read_only),
/// and the broken replica stays out of the read pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_locked_out_keeps_no_stale_read_only_and_brings_back_no_replica() {
    let (cluster, p) = start(1, 30).await;
    let replica = &cluster.replicas[0];
    let addr = replica.addr();
    wait_stats(&p, &addr, Duration::from_secs(10), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE TABLE IF NOT EXISTS locked_out (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let mut primary = cluster.primary.root_conn().await.unwrap();
    primary
        .query_drop("SET GLOBAL read_only = ON")
        .await
        .unwrap();
    replica
        .root_conn()
        .await
        .unwrap()
        .query_drop("STOP SLAVE SQL_THREAD")
        .await
        .unwrap();
    wait_stats(&p, &addr, Duration::from_secs(10), "excluded", |s| {
        s.state == BackendState::Excluded
    })
    .await;
    // Four probe intervals: the primary's probes have seen read_only=ON too.
    tokio::time::sleep(Duration::from_millis(800)).await;

    lock_out_monitor(&cluster.primary).await;
    lock_out_monitor(replica).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    primary
        .query_drop("SET GLOBAL read_only = OFF")
        .await
        .unwrap();
    let t0 = Instant::now();
    c.query_drop("INSERT INTO locked_out VALUES (1)")
        .await
        .expect("a write to the writable primary");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "the write was held back for {:?}",
        t0.elapsed()
    );

    // Ten more probe intervals, and the replica is still out, for its replication.
    holds_for(
        &p,
        &addr,
        Duration::from_secs(2),
        Duration::from_millis(50),
        |row| {
            assert_eq!(row.state, BackendState::Excluded, "{row:?}");
            let reason = row.reason.as_deref().unwrap_or_default();
            assert!(reason.contains("SQL thread stopped"), "reason: {reason}");
        },
    )
    .await;
    let primary_id = server_id(&cluster.primary).await;
    assert_eq!(p.read_ids(20).await, [primary_id].into());
}

/// The monitor's connection killed on a live server (an operator's `KILL`, `wait_timeout`)
/// is not a failed probe: the probe connects again at once. With `fall = 1`, one failed
/// probe would take the replica down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_monitor_connection_is_not_a_failed_probe() {
    let cluster = Cluster::start(1).await.unwrap();
    let toml = proxy::config_toml(&cluster, &[], "")
        + &monitor_section(30).replace("fall = 2", "fall = 1");
    let p = proxy::start(&toml).await.unwrap();
    let replica = &cluster.replicas[0];
    let addr = replica.addr();
    wait_stats(&p, &addr, Duration::from_secs(10), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    let mut root = replica.root_conn().await.unwrap();
    let mut killed = 0;
    for _ in 0..5 {
        let ids: Vec<u64> = root
            .query(format!(
                "SELECT id FROM information_schema.processlist WHERE user = '{MONITOR_USER}'"
            ))
            .await
            .unwrap();
        for id in ids {
            killed += usize::from(root.query_drop(format!("KILL {id}")).await.is_ok());
        }
        // Three probe intervals; a replica taken down would stay down for two (rise).
        holds_for(
            &p,
            &addr,
            Duration::from_millis(600),
            Duration::from_millis(20),
            |row| assert_eq!(row.state, BackendState::Up, "{row:?}"),
        )
        .await;
    }
    assert!(killed >= 5, "killed {killed} monitor connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_wins_and_bad_monitor_credentials_take_nothing_down() {
    let cluster = Cluster::start(1).await.unwrap();
    let toml = proxy::config_toml(&cluster, &[], "")
        + "[monitor]\nuser = \"monitor\"\npassword = \"wrong\"\ninterval-ms = 200\nfall = 1\n";
    let p = proxy::start(&toml).await.unwrap();
    let addr = cluster.replicas[0].addr();
    // Refused logins mean the server is there: it must stay in service.
    wait_stats(&p, &addr, Duration::from_secs(5), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut admin = p.admin().await;
    assert!(admin
        .stats()
        .await
        .unwrap()
        .iter()
        .all(|s| s.state == BackendState::Up));

    admin.set_offline(2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let row = wait_stats(&p, &addr, Duration::from_secs(1), "offline", |s| {
        s.state == BackendState::Offline
    })
    .await
    .0;
    assert_eq!(row.reason, None);
    admin.set_online(2).await.unwrap();
    wait_stats(&p, &addr, Duration::from_secs(5), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
}

/// The primary dies: the monitor takes it out, while the replicas, whose IO threads now only
/// retry it, stay in the read pool, so reads keep working and writes fail naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_primary_leaves_the_replicas_serving_reads() {
    let (cluster, p) = start(2, 30).await;
    for r in &cluster.replicas {
        wait_stats(&p, &r.addr(), Duration::from_secs(10), "up", |s| {
            s.state == BackendState::Up
        })
        .await;
    }
    let replica_ids: std::collections::BTreeSet<u32> =
        cluster.replicas.iter().map(|r| r.server_id).collect();

    cluster.primary.kill();
    // From the kill until ten probe intervals after the primary is out (by then every
    // replica has seen its IO thread fail to reconnect), no replica may leave the pool.
    let mut admin = p.admin().await;
    let t0 = Instant::now();
    let mut down_at = None;
    while down_at.is_none_or(|d: Duration| t0.elapsed() < d + Duration::from_secs(2)) {
        for s in admin.stats().await.unwrap() {
            if s.address == cluster.primary_addr() {
                if down_at.is_none() && s.state == BackendState::Down {
                    eprintln!(
                        "primary killed -> down after {:?}: {:?}",
                        t0.elapsed(),
                        s.reason
                    );
                    down_at = Some(t0.elapsed());
                }
            } else {
                assert_eq!(s.state, BackendState::Up, "{s:?}");
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "primary not down after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(p.read_ids(60).await, replica_ids);
    let mut c = p.conn().await.unwrap();
    let e = c
        .query_drop("CREATE TABLE dead_primary (id INT)")
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&cluster.primary_addr()), "{e}");
}

/// A replica that was out when the primary died (behind by its MASTER_DELAY) stays out: the
/// primary being down is no news about it, and it has not caught up. A read-only replica that
/// replicates from nowhere (`RESET SLAVE ALL`) is out too: nothing tells how far behind it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_out_for_their_replication_stay_out_when_the_primary_dies() {
    let (cluster, p) = start(2, 1).await;
    let (nowhere, delayed) = (&cluster.replicas[0], &cluster.replicas[1]);
    for r in &cluster.replicas {
        wait_stats(&p, &r.addr(), Duration::from_secs(10), "up", |s| {
            s.state == BackendState::Up
        })
        .await;
    }
    let mut root = nowhere.root_conn().await.unwrap();
    root.query_drop("STOP SLAVE").await.unwrap();
    root.query_drop("RESET SLAVE ALL").await.unwrap();
    let (row, _) = wait_stats(
        &p,
        &nowhere.addr(),
        Duration::from_secs(10),
        "excluded",
        |s| s.state == BackendState::Excluded,
    )
    .await;
    let reason = row.reason.unwrap_or_default();
    assert!(reason.contains("not replicating"), "reason: {reason}");

    let mut root = delayed.root_conn().await.unwrap();
    root.query_drop("STOP SLAVE").await.unwrap();
    root.query_drop("CHANGE MASTER TO MASTER_DELAY = 60")
        .await
        .unwrap();
    root.query_drop("START SLAVE").await.unwrap();
    let mut w = cluster.primary.conn().await.unwrap();
    w.query_drop("CREATE TABLE IF NOT EXISTS delayed_probe (id INT PRIMARY KEY)")
        .await
        .unwrap();
    wait_stats(
        &p,
        &delayed.addr(),
        Duration::from_secs(15),
        "excluded",
        |s| s.state == BackendState::Excluded,
    )
    .await;

    cluster.primary.kill();
    wait_stats(
        &p,
        &cluster.primary_addr(),
        Duration::from_secs(10),
        "down",
        |s| s.state == BackendState::Down,
    )
    .await;
    // Twenty probe intervals: long enough for the replica's IO thread to be seen retrying.
    for r in [nowhere, delayed] {
        holds_for(
            &p,
            &r.addr(),
            Duration::from_secs(2),
            Duration::from_millis(50),
            |s| assert_eq!(s.state, BackendState::Excluded, "{s:?}"),
        )
        .await;
    }
}

/// A replica added at the console serves at once (as Atlas shows it, `up`), but the monitor's
/// first probe of it settles it: one that is not replicating leaves then, rather than serve
/// stale reads until `fall` probes (here ten, two seconds) have found it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_added_at_the_console_is_settled_by_its_first_probe() {
    let cluster = Cluster::start(2).await.unwrap();
    let toml = proxy::config_toml(&cluster, &[], "")
        + &monitor_section(30).replace("fall = 2", "fall = 10");
    let p = proxy::start(&toml).await.unwrap();
    let r = &cluster.replicas[1];
    wait_stats(&p, &r.addr(), Duration::from_secs(10), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    let mut root = r.root_conn().await.unwrap();
    root.query_drop("STOP SLAVE").await.unwrap();
    let mut admin = p.admin().await;
    let ndx = stats_of(&mut admin, &r.addr()).await.ndx;
    admin.remove_backend(ndx).await.unwrap();
    admin.add_slave(&r.addr(), 1).await.unwrap();
    let (_, took) = wait_stats(&p, &r.addr(), Duration::from_secs(1), "excluded", |s| {
        s.state == BackendState::Excluded
    })
    .await;
    eprintln!("added while not replicating -> excluded after {took:?}");
}

/// Everything this test binary logs at WARN and above. The proxy runs in the test process and
/// its monitor tasks on the runtime's worker threads, so the subscriber must be global; tests
/// then look only for lines naming their own cluster's addresses.
static WARNINGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        WARNINGS.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_warnings() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init()
            .expect("the test binary's only log subscriber");
    });
}

/// Captured lines that name `address` and say `what`.
fn warned(address: &str, what: &str) -> usize {
    String::from_utf8_lossy(&WARNINGS.lock().unwrap())
        .lines()
        .filter(|l| l.contains(&format!("backend={address}")) && l.contains(what))
        .count()
}

/// A server that takes longer commands than the proxy passes on (the sandbox's take 256 MiB)
/// is named in the log once, with the setting that fixes it, and again when its own limit
/// changes; with the proxy's bound at or above the server's, nothing is said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_taking_longer_commands_than_the_proxy_is_named_once() {
    capture_warnings();
    let cluster = Cluster::start(1).await.unwrap();
    let (primary, replica) = (cluster.primary_addr(), cluster.replica_addrs()[0].clone());
    let with_limit = |bytes: u64| {
        proxy::config_toml(&cluster, &[], "").replacen(
            "[proxy]\n",
            &format!("[proxy]\nmax-allowed-packet = {bytes}\n"),
            1,
        ) + &monitor_section(30)
    };
    // 1 GiB: nothing to say about the servers' 256 MiB, nor later about 512 MiB, should
    // this proxy's monitor outlive it for a moment.
    let same = proxy::start(&with_limit(1 << 30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(warned(&primary, "max_allowed_packet"), 0);
    drop(same);

    let p = proxy::start(&with_limit(32 << 20)).await.unwrap();
    let fix = format!("set max-allowed-packet = {}", 256 << 20);
    let t0 = Instant::now();
    while (warned(&primary, &fix) == 0 || warned(&replica, &fix) == 0)
        && t0.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(warned(&primary, &fix), 1, "the primary is named");
    assert_eq!(warned(&replica, &fix), 1, "the replica is named");
    // Probes every 200 ms: several more, and still one line each.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(warned(&primary, "max_allowed_packet"), 1);

    let mut root = cluster.replicas[0].root_conn().await.unwrap();
    root.query_drop("SET GLOBAL max_allowed_packet = 512 * 1024 * 1024")
        .await
        .unwrap();
    let fix = format!("set max-allowed-packet = {}", 512 << 20);
    let t0 = Instant::now();
    while warned(&replica, &fix) == 0 && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        warned(&replica, &fix),
        1,
        "the replica's new limit is named"
    );
    assert_eq!(warned(&primary, "max_allowed_packet"), 1);
    drop(p);
}

/// Without a monitor account a probe waits for the server's greeting and logs in as an
/// application user, then quits: a hung server (whose kernel still takes the TCP
/// connection) goes down, and the probes leave no aborted handshakes, which a server
/// counts against the proxy's host until it blocks it (`max_connect_errors`). (Before: a
/// TCP connect and close, one aborted connect per probe, and a hung server stayed up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_without_an_account_greet_log_in_and_find_a_hung_server() {
    let cluster = Cluster::start(1).await.unwrap();
    let servers = [&cluster.primary, &cluster.replicas[0]];
    let mut before = Vec::new();
    for s in servers {
        before.push((
            s.global_status("Aborted_connects").await.unwrap(),
            s.global_status("Connections").await.unwrap(),
        ));
    }
    let toml = proxy::config_toml(&cluster, &[], "")
        + "[monitor]\ninterval-ms = 100\ntimeout-ms = 500\nfall = 2\nrise = 2\n";
    let p = proxy::start(&toml).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (s, (aborted, connections)) in servers.iter().zip(before) {
        let probes = s.global_status("Connections").await.unwrap() - connections;
        let aborted = s.global_status("Aborted_connects").await.unwrap() - aborted;
        eprintln!("{}: {probes} connections, {aborted} aborted", s.addr());
        assert!(probes >= 10, "{}: only {probes} probes in 2 s", s.addr());
        assert_eq!(aborted, 0, "{}: aborted connects", s.addr());
    }
    let hung = &cluster.replicas[0];
    let aborted_before_hang = hung.global_status("Aborted_connects").await.unwrap();
    hung.pause();
    let down = tokio::time::timeout(
        Duration::from_secs(10),
        wait_stats(&p, &hung.addr(), Duration::from_secs(5), "down", |s| {
            s.state == BackendState::Down
        }),
    )
    .await;
    hung.resume();
    let (row, took) = down.expect("admin console answers");
    eprintln!("hung replica down after {took:?}: {:?}", row.reason);
    assert!(
        row.reason.unwrap_or_default().contains("no answer"),
        "reason names the silence"
    );
    wait_stats(&p, &hung.addr(), Duration::from_secs(10), "up", |s| {
        s.state == BackendState::Up
    })
    .await;
    // The probe waiting through the hang was kept, not abandoned each tick: the server
    // greets it when it runs again and it logs in; none is left in the server's backlog
    // to become an aborted handshake.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let aborted = hung.global_status("Aborted_connects").await.unwrap() - aborted_before_hang;
    assert_eq!(aborted, 0, "aborted handshakes after the hang");
}

/// A write backend behind an address that moves to another server (a VIP whose old node
/// still answers, a DNS name, a load balancer): once a probe finds another `server_id`
/// there, connections pooled to the old server are closed, idle ones at once and busy ones
/// as they come back, so no statement goes on to the old primary; a session pinned there (a
/// transaction) ends at its next statement. (Before: they served the old primary, still
/// writable here, for as long as they lived.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_an_address_that_moves_to_another_server() {
    capture_warnings();
    let cluster = Cluster::start(1).await.unwrap();
    let vip = Relay::start(&cluster.primary_addr()).await.unwrap();
    let toml = proxy::config_toml(&cluster, &[], "").replacen(
        &format!("\"{}\"", cluster.primary_addr()),
        &format!("\"{}\"", vip.address),
        1,
    ) + &monitor_section(30);
    assert!(toml.contains(&vip.address));
    let p = proxy::start(&toml).await.unwrap();
    let mut setup = p.conn().await.unwrap();
    setup
        .query_drop("CREATE TABLE moved_txn (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    // Four transactions at once: four pooled connections to the primary.
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let mut c = p.conn().await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        assert_eq!(writer_id(&mut c).await, 1);
        sessions.push(c);
    }
    // One transaction stays open across the move, with a write; the others end.
    let mut open = sessions.remove(0);
    open.query_drop("INSERT INTO moved_txn VALUES (1)")
        .await
        .unwrap();
    for c in &mut sessions {
        c.query_drop("COMMIT").await.unwrap();
    }
    // And one statement runs across it, its connection busy.
    let mut busy = sessions.pop().unwrap();
    let running = tokio::spawn(async move {
        let id: Option<(u32, u32)> = busy
            .query_first("/*master*/ SELECT SLEEP(4), @@server_id")
            .await
            .unwrap();
        (busy, id)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut promote = cluster.replicas[0].root_conn().await.unwrap();
    for sql in [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "SET GLOBAL read_only = OFF",
        "CREATE TABLE rwtest.moved (id INT PRIMARY KEY)",
    ] {
        promote.query_drop(sql).await.unwrap();
    }
    vip.point_to(&cluster.replica_addrs()[0]);
    let retired = "pooled connections to the old one are closed";
    let t0 = Instant::now();
    while warned(&vip.address, retired) == 0 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(warned(&vip.address, retired), 1);
    // (Seen while the statement runs: its connection is retired as it comes back.)
    assert!(
        !running.is_finished(),
        "the move was seen only after the busy statement"
    );
    let (busy, on) = running.await.unwrap();
    assert_eq!(on, Some((0, 1)), "the busy statement ran where it began");
    sessions.push(busy);
    for c in &mut sessions {
        assert_eq!(writer_id(c).await, 2);
        c.query_drop("INSERT INTO moved VALUES (1) ON DUPLICATE KEY UPDATE id = id")
            .await
            .unwrap();
    }
    // The open transaction cannot follow: it is refused, rolled back where it was, and its
    // session ends.
    let e = open.query_drop("COMMIT").await.unwrap_err();
    let mysql_async::Error::Server(e) = e else {
        panic!("expected a server error, got {e}")
    };
    assert_eq!((e.code, e.state.as_str()), (1927, "70100"), "{}", e.message);
    assert!(
        e.message.contains("another server answers"),
        "{}",
        e.message
    );
    assert!(open.query_drop("SELECT 1").await.is_err(), "session closed");
    // Rolled back there: the same row goes in (not 1062: never committed), once its lock is
    // gone (not 1205: the transaction ended when the old server read the close).
    let mut old = cluster.primary.root_conn().await.unwrap();
    old.query_drop("SET SESSION innodb_lock_wait_timeout = 5")
        .await
        .unwrap();
    old.query_drop("INSERT INTO rwtest.moved_txn VALUES (1)")
        .await
        .expect("the transaction rolled back on the old primary");
    let rows: i64 = promote
        .query_first("SELECT COUNT(*) FROM rwtest.moved")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows, 1);
    drop(p);
}

/// The server id of the write backend's connection for the session's next statement.
async fn writer_id(c: &mut mysql_async::Conn) -> u32 {
    c.query_first("/*master*/ SELECT @@server_id")
        .await
        .unwrap()
        .unwrap()
}
