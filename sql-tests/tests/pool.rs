//! Connection pooling: pooled backend connections never leak one client's session state to
//! the next, and many idle clients share a bounded number of backend connections.
//!
//! One cluster for this binary; the tests take turns (they measure server-wide connection
//! counts) through `TURN`.

use mysql_async::prelude::*;
use mysql_async::Conn;
use rwproxy_sql_tests::{proxy, raw, Cluster};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OnceCell};

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();
static TURN: Mutex<()> = Mutex::const_new(());

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async { Cluster::start(2).await.expect("sandbox cluster") })
        .await
}

fn config(c: &Cluster, max_connections: u32) -> String {
    proxy::config_toml(c, &[1, 1], "").replace(
        "max-connections = 50",
        &format!("max-connections = {max_connections}"),
    )
}

/// (open, idle) per backend, primary first.
fn pool_counts(p: &proxy::Proxy) -> Vec<(usize, usize)> {
    p.backends
        .backends()
        .iter()
        .map(|b| b.pool.counts())
        .collect()
}

async fn threads_connected(c: &Cluster) -> Vec<u64> {
    let mut out = Vec::new();
    for s in c.servers() {
        let mut conn = s.root_conn().await.unwrap();
        let row: Option<(String, u64)> = conn
            .query_first("SHOW STATUS LIKE 'Threads_connected'")
            .await
            .unwrap();
        out.push(row.unwrap().1);
        conn.disconnect().await.unwrap();
    }
    out
}

type StateRow = (String, Option<i64>, String, u32);
const PROBE: &str = "SELECT @@sql_mode, @u, @@time_zone, @@server_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_does_not_leak_between_clients() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    let p = proxy::start(&config(cl, 2)).await.unwrap();
    let mut direct = cl.primary.conn().await.unwrap();
    let (default_mode, default_tz): (String, String) = direct
        .query_first("SELECT @@GLOBAL.sql_mode, @@GLOBAL.time_zone")
        .await
        .unwrap()
        .unwrap();
    drop(direct);

    // Clients A: dirty every backend's pooled connections with session variables and, on the
    // connections they pin, a user variable.
    for round in 0..6 {
        let mut a = p.conn().await.unwrap();
        a.query_drop("SET SESSION sql_mode = 'ANSI'").await.unwrap();
        a.query_drop("SET time_zone = '+03:00'").await.unwrap();
        let mut seen = BTreeSet::new();
        for _ in 0..20 {
            let (mode, _u, tz, id): StateRow = a
                .query_first(format!("/*slave*/ {PROBE}"))
                .await
                .unwrap()
                .unwrap();
            assert!(mode.contains("ANSI_QUOTES"), "{mode}");
            assert_eq!(tz, "+03:00");
            seen.insert(id);
        }
        let (_, _, tz, id): StateRow = a
            .query_first(format!("/*master*/ {PROBE}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((tz.as_str(), id), ("+03:00", 1));
        // The user variable pins the session: to the primary, or (hinted) to a replica.
        if round % 2 == 0 {
            a.query_drop("SET @u = 1").await.unwrap();
        } else {
            a.query_drop("/*slave*/ SELECT @u := 1").await.unwrap();
        }
        let (_, u, _, id): StateRow = a.query_first(PROBE).await.unwrap().unwrap();
        assert_eq!(u, Some(1), "@u on server {id}");
        a.disconnect().await.unwrap();
    }
    for (i, (open, _)) in pool_counts(&p).into_iter().enumerate() {
        assert!(open <= 2, "backend {i}: {open} connections open, max is 2");
    }

    // Clients B, one after another, on the same (at most 2 per backend) connections.
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let mut b = p.conn().await.unwrap();
        for hint in ["/*slave*/", "/*master*/", "/*slave*/", ""] {
            for _ in 0..4 {
                let (mode, u, tz, id): StateRow = b
                    .query_first(format!("{hint} {PROBE}"))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(mode, default_mode, "sql_mode leaked to server {id}");
                assert_eq!(u, None, "@u leaked to server {id}");
                assert_eq!(tz, default_tz, "time_zone leaked to server {id}");
                seen.insert(id);
            }
        }
        b.disconnect().await.unwrap();
    }
    assert_eq!(seen, BTreeSet::from([1, 2, 3]), "every backend checked");
    for (i, (open, _)) in pool_counts(&p).into_iter().enumerate() {
        assert!(open <= 2, "backend {i}: {open} connections open, max is 2");
    }
}

/// A sequence's `LASTVAL()` is its connection's: the session that took a value keeps that
/// connection, and the next client on it sees none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequences_last_value_stays_with_its_client() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    let mut direct = cl.primary.conn().await.unwrap();
    direct
        .query_drop("CREATE OR REPLACE SEQUENCE pool_seq")
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let p = proxy::start(&config(cl, 2)).await.unwrap();
    let last = "SELECT LASTVAL(pool_seq)";
    let mut a = p.conn().await.unwrap();
    let mut b = p.conn().await.unwrap();
    let got_a: i64 = a
        .query_first("SELECT NEXTVAL(pool_seq)")
        .await
        .unwrap()
        .unwrap();
    let got_b: i64 = b
        .query_first("SELECT NEXTVAL(pool_seq)")
        .await
        .unwrap()
        .unwrap();
    for _ in 0..4 {
        // Reads and writes in between take whatever connection is free.
        a.query_drop("SELECT 1").await.unwrap();
        b.query_drop("DO 1").await.unwrap();
        let seen: (Option<i64>, Option<i64>) = (
            a.query_first(last).await.unwrap().unwrap(),
            b.query_first(last).await.unwrap().unwrap(),
        );
        assert_eq!(seen, (Some(got_a), Some(got_b)));
    }
    a.disconnect().await.unwrap();
    b.disconnect().await.unwrap();
    for _ in 0..4 {
        let mut next = p.conn().await.unwrap();
        let seen: Option<i64> = next.query_first(last).await.unwrap().unwrap();
        assert_eq!(seen, None, "a later client saw another's LASTVAL");
        next.disconnect().await.unwrap();
    }
    direct.query_drop("DROP SEQUENCE pool_seq").await.unwrap();
}

/// Statements whose effect on the connection the proxy cannot see keep the session on that
/// connection, and it is reset before another client gets it: a procedure's user and session
/// variables do not leak to the next client, and `FLUSH TABLES WITH READ LOCK` or an open
/// `HANDLER` do not outlive the client that took them (on a direct connection the server
/// releases them when the client leaves; a pooled connection that kept them would block
/// every write on the primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_connection_state_does_not_outlive_its_client() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    let mut root = cl.primary.root_conn().await.unwrap();
    for sql in [
        "CREATE DATABASE IF NOT EXISTS pool_unseen",
        "CREATE OR REPLACE TABLE pool_unseen.t (v INT)",
        "CREATE OR REPLACE PROCEDURE pool_unseen.p(OUT o INT) \
         BEGIN SET @secret = 'alice'; SET SESSION sql_safe_updates = 1; SET o = 60; END",
    ] {
        root.query_drop(sql).await.unwrap();
    }
    // One connection per backend: every client gets the one its predecessor used.
    let p = proxy::start(&config(cl, 1)).await.unwrap();
    type Vars = (Option<i64>, Option<String>, i64);
    const VARS: &str = "SELECT @out, @secret, @@sql_safe_updates";

    let mut a = p.conn().await.unwrap();
    a.query_drop("CALL pool_unseen.p(@out)").await.unwrap();
    let own: Vars = a.query_first(VARS).await.unwrap().unwrap();
    assert_eq!(
        own,
        (Some(60), Some("alice".into()), 1),
        "the caller's session"
    );
    a.disconnect().await.unwrap();
    for hint in ["/*master*/", "/*slave*/"] {
        let mut b = p.conn().await.unwrap();
        let next: Vars = b
            .query_first(format!("{hint} {VARS}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next, (None, None, 0), "the next client ({hint})");
        b.disconnect().await.unwrap();
    }

    // The transaction tracking the proxy switches on for a `SET TRANSACTION` (to learn when
    // it is used up) ends with its client; so does a `SET TRANSACTION` left waiting.
    for used_up in [true, false] {
        let mut a = p.conn().await.unwrap();
        a.query_drop("SET TRANSACTION READ ONLY").await.unwrap();
        if used_up {
            a.query_drop("SELECT COUNT(*) FROM pool_unseen.t")
                .await
                .unwrap();
        }
        a.disconnect().await.unwrap();
        let mut b = p.conn().await.unwrap();
        let tracking: String = b
            .query_first("/*master*/ SELECT @@session.session_track_transaction_info")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tracking, "OFF", "the next client (used up: {used_up})");
        b.query_drop("/*master*/ INSERT INTO pool_unseen.t VALUES (1)")
            .await
            .unwrap();
        b.disconnect().await.unwrap();
    }

    for lock in ["FLUSH TABLES WITH READ LOCK", "HANDLER pool_unseen.t OPEN"] {
        let mut a = p.conn().await.unwrap();
        a.query_drop(lock).await.unwrap();
        a.disconnect().await.unwrap();
        // Blocked by either lock while it is held; the wait covers the proxy's reset.
        root.query_drop("SET SESSION lock_wait_timeout = 10")
            .await
            .unwrap();
        let started = Instant::now();
        let truncated = root.query_drop("TRUNCATE TABLE pool_unseen.t").await;
        assert!(
            truncated.is_ok(),
            "{lock} outlived its client: {truncated:?} after {:?}",
            started.elapsed()
        );
    }
    root.disconnect().await.unwrap();
}

/// A multi-statement whose last statement raised no warning leaves the first one's on the
/// connection (`SELECT 1/0; SELECT 1`: the second uses no table, so the server keeps them,
/// and the reply's last EOF counts 0). Its client sees them; the next client of that
/// connection does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_of_a_multi_statement_stay_with_their_client() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    // The primary alone, over one connection.
    let full = proxy::config_toml(cl, &[1, 1], "");
    let replicas = full
        .find(&format!(
            "[[backend]]\naddress = \"{}\"",
            cl.replica_addrs()[0]
        ))
        .unwrap();
    let users = full.find("[[user]]").unwrap();
    let toml = format!("{}{}", &full[..replicas], &full[users..])
        .replace("max-connections = 50", "max-connections = 1");
    assert!(!toml.contains("role = \"ro\""), "{toml}");
    let p = proxy::start(&toml).await.unwrap();
    type Warning = (String, u32, String);
    for look in [false, true] {
        let mut a = p.conn().await.unwrap();
        a.query_drop("SELECT 1/0; SELECT 1").await.unwrap();
        if look {
            let own: Vec<Warning> = a.query("SHOW WARNINGS").await.unwrap();
            assert_eq!(own.len(), 1, "{own:?}");
            assert_eq!(own[0].1, 1365, "{own:?}");
        }
        a.disconnect().await.unwrap();
        let mut b = p.conn().await.unwrap();
        let next: Vec<Warning> = b.query("SHOW WARNINGS").await.unwrap();
        assert_eq!(next, [], "the next client (after one that looked: {look})");
        b.disconnect().await.unwrap();
    }
}

/// A statement that finds every connection of its backend busy waits for one to be given
/// back and runs on it, instead of failing at the connect timeout (regression: the wait only
/// ended when a connection was closed, not when one came back idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_queues_statements() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    // One connection per backend, waits of up to a second (`connect-timeout-ms`).
    let p = proxy::start(&config(cl, 1)).await.unwrap();
    let mut holder = p.conn().await.unwrap();
    holder.query_drop("BEGIN").await.unwrap();
    holder.query_drop("SELECT 1").await.unwrap();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let mut w = p.conn().await.unwrap();
        waiters.push(tokio::spawn(async move {
            let got: Option<(u32, u32)> = w
                .query_first(format!("/*master*/ SELECT {i}, @@server_id"))
                .await
                .unwrap();
            got
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder.query_drop("COMMIT").await.unwrap();
    for (i, w) in waiters.into_iter().enumerate() {
        assert_eq!(w.await.unwrap(), Some((i as u32, 1)), "waiter {i}");
    }
}

/// Session settings do not wait for a full write pool: a replica answers them (the session
/// applies them wherever it runs next). Clients send settings as they connect (PyMySQL's
/// `SET autocommit`, `SET NAMES`), so before, every new client of a saturated proxy hung for
/// `connect-timeout-ms` (10 s here) before the setting fell back to a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_do_not_wait_for_a_full_write_pool() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    let toml = config(cl, 1).replace("connect-timeout-ms = 1000", "connect-timeout-ms = 10000");
    let p = proxy::start(&toml).await.unwrap();
    let mut holder = p.conn().await.unwrap();
    holder.query_drop("BEGIN").await.unwrap();
    holder.query_drop("SELECT 1 FOR UPDATE").await.unwrap();
    let mut c = p.conn().await.unwrap();
    let t0 = Instant::now();
    for set in [
        "SET NAMES latin1",
        "SET autocommit = 1",
        "SET time_zone = '+03:00'",
    ] {
        c.query_drop(set).await.unwrap();
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "settings took {took:?}");
    let seen: Option<(String, String)> = c
        .query_first("SELECT @@character_set_client, @@time_zone")
        .await
        .unwrap();
    assert_eq!(seen, Some(("latin1".into(), "+03:00".into())));
    holder.query_drop("COMMIT").await.unwrap();
    // The write that waited for the pool sees them too.
    let on_primary: Option<(String, u32)> = c
        .query_first("/*master*/ SELECT @@time_zone, @@server_id")
        .await
        .unwrap();
    assert_eq!(on_primary, Some(("+03:00".into(), 1)));
}

/// `COM_RESET_CONNECTION`, which cleans a pooled connection between clients, keeps the schema
/// but sets `@@collation_database` back to the server default; the next client must still see
/// its schema's collation, as on a fresh login. Found by DBD::MariaDB's suite, which refuses to
/// run when `@@collation_database` is not the one it created its database with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_defaults_survive_connection_reset() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    let mut direct = cl.primary.conn().await.unwrap();
    direct
        .query_drop("CREATE DATABASE IF NOT EXISTS cset COLLATE utf8mb4_unicode_ci")
        .await
        .unwrap();
    drop(direct);
    cl.wait_replicas_caught_up().await.unwrap();
    // Few connections per backend: the pool hands out the most recently released one that
    // is in the schema, so the next client gets the connection just reset.
    let toml = config(cl, 2).replace("connect-timeout-ms = 1000", "connect-timeout-ms = 10000");
    let p = proxy::start(&toml).await.unwrap();
    let opts = || mysql_async::OptsBuilder::from_opts(p.opts()).db_name(Some("cset"));
    let probe = "SELECT @@collation_database, @@server_id";
    for hint in ["/*master*/", "/*slave*/"] {
        // A user variable makes the connection dirty: it is reset before the next client.
        let mut a = Conn::new(opts()).await.unwrap();
        a.query_drop(format!("{hint} SELECT @u := 1"))
            .await
            .unwrap();
        a.disconnect().await.unwrap();
        for _ in 0..4 {
            let mut b = Conn::new(opts()).await.unwrap();
            let (collation, id): (String, u32) = b
                .query_first(format!("{hint} {probe}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(collation, "utf8mb4_unicode_ci", "{hint} on server {id}");
            b.disconnect().await.unwrap();
        }
    }
}

/// 2 000 clients connected at once through a proxy allowed 20 connections per backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_clients_few_backend_connections() {
    const CLIENTS: usize = 2000;
    const MAX: usize = 20;
    // Each client costs two sockets here (its own and the proxy's side), plus the backends.
    rwproxy_sql_tests::process::raise_nofile(2 * CLIENTS as u64 + 1000);
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    let baseline = threads_connected(cl).await;
    let p = Arc::new(proxy::start(&config(cl, MAX as u32)).await.unwrap());

    // Watch the pools the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (p, stop) = (p.clone(), stop.clone());
        tokio::spawn(async move {
            let mut peak = vec![0usize; 3];
            while !stop.load(Ordering::Relaxed) {
                for (i, (open, _)) in pool_counts(&p).into_iter().enumerate() {
                    peak[i] = peak[i].max(open);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };

    let t0 = Instant::now();
    // All 2 000 end up connected at once; logins are let in 100 at a time, as a fleet of
    // application servers would arrive, rather than as one 2 000-query burst (which on a 2-CPU
    // debug build queues past the proxy's 1 s wait for a pooled connection).
    let logins = Arc::new(tokio::sync::Semaphore::new(100));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let opts = p.opts();
        let logins = logins.clone();
        set.spawn(async move {
            let _login = logins.acquire_owned().await.unwrap();
            let mut c = Conn::new(opts)
                .await
                .map_err(|e| format!("client {i} connect: {e}"))?;
            let id: u32 = c
                .query_first("SELECT @@server_id")
                .await
                .map_err(|e| format!("client {i} query: {e}"))?
                .unwrap();
            Ok::<_, String>((c, id))
        });
    }
    let mut conns = Vec::with_capacity(CLIENTS);
    let mut errors = Vec::new();
    let mut by_server = [0usize; 4];
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok((c, id)) => {
                by_server[id as usize] += 1;
                conns.push(c);
            }
            Err(e) => errors.push(e),
        }
    }
    let health: Vec<_> = p.backends.backends().iter().map(|b| b.health()).collect();
    println!(
        "{} clients connected and queried in {:?}; {} failed; reads per server {:?}; health {health:?}",
        conns.len(),
        t0.elapsed(),
        errors.len(),
        &by_server[1..]
    );
    assert!(
        errors.is_empty(),
        "{} failures, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(
        by_server[1], 0,
        "autocommit reads served by the primary while replicas were up"
    );

    // A few of them work while the rest idle; some pin connections (transaction, user variable)
    // and will leave without cleaning up.
    let mut busy = tokio::task::JoinSet::new();
    for (n, mut c) in conns.drain(..40).enumerate() {
        busy.spawn(async move {
            match n % 4 {
                0 => {
                    c.query_drop("BEGIN").await.unwrap();
                    let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
                    assert_eq!(id, 1);
                }
                1 => {
                    c.query_drop("SET @pinned = 1").await.unwrap();
                }
                _ => {
                    for _ in 0..20 {
                        let _: Option<u32> = c.query_first("SELECT @@server_id").await.unwrap();
                    }
                }
            }
            c
        });
    }
    while let Some(c) = busy.join_next().await {
        conns.push(c.unwrap());
    }
    let during = threads_connected(cl).await;
    println!(
        "Threads_connected before {baseline:?}, with {CLIENTS} clients {during:?}; pools {:?}",
        pool_counts(&p)
    );
    for (i, (d, b)) in during.iter().zip(&baseline).enumerate() {
        assert!(
            *d <= *b + MAX as u64,
            "server {}: {d} threads connected, baseline {b} + at most {MAX} from the proxy",
            i + 1
        );
    }

    // Everyone leaves.
    let mut closing = tokio::task::JoinSet::new();
    for c in conns {
        closing.spawn(async move { c.disconnect().await });
    }
    while let Some(r) = closing.join_next().await {
        r.unwrap().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts = pool_counts(&p);
        if counts.iter().all(|(open, idle)| open == idle) {
            println!("after close: pools {counts:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections still checked out 5 s after every client left: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let peak = watcher.await.unwrap();
    println!("peak open connections per backend: {peak:?}");
    for (i, pk) in peak.iter().enumerate() {
        assert!(*pk <= MAX, "backend {i}: peak {pk} > {MAX}");
    }
    // The pinned connections were given back clean: a fresh client sees no @pinned and no
    // open transaction on the primary.
    let mut c = p.conn().await.unwrap();
    for _ in 0..30 {
        let (v, trx): (Option<i64>, u32) = c
            .query_first("/*master*/ SELECT @pinned, @@in_transaction")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((v, trx), (None, 0));
    }
}

/// A full pool is load, not an outage: a replica whose connections are all pinned must stay
/// `Up` (regression: it was marked down, sending every read to the primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_pool_is_not_a_down_backend() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    // The primary and one replica, one connection each.
    let toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nconnect-timeout-ms = 300\n\
         [[backend]]\naddress = \"{}\"\nrole = \"rw\"\nmax-connections = 1\n\
         [[backend]]\naddress = \"{}\"\nrole = \"ro\"\nmax-connections = 1\n\
         [[user]]\nname = \"{}\"\npassword = \"{}\"\n",
        cl.primary_addr(),
        cl.replicas[0].addr(),
        rwproxy_sql_tests::APP_USER,
        rwproxy_sql_tests::APP_PASSWORD
    );
    let p = proxy::start(&toml).await.unwrap();
    let mut holder = p.conn().await.unwrap();
    let _: Option<u32> = holder
        .query_first("/*slave*/ SELECT @held := @@server_id")
        .await
        .unwrap();
    assert_eq!(
        pool_counts(&p)[1],
        (1, 0),
        "the replica's one connection is pinned"
    );
    let mut other = p.conn().await.unwrap();
    // The replica is busy; the read waits, then is served by the primary.
    let id: u32 = other
        .query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, 1);
    let health: Vec<_> = p.backends.backends().iter().map(|b| b.health()).collect();
    assert_eq!(
        health,
        vec![rwproxy::backend::Health::Up; 2],
        "a busy pool marked its backend down"
    );
    holder.disconnect().await.unwrap();
    // Freed (reset in the background, then back in the pool): the replica serves reads again.
    let deadline = Instant::now() + Duration::from_millis(3000);
    loop {
        let id: u32 = other
            .query_first("SELECT @@server_id")
            .await
            .unwrap()
            .unwrap();
        if id == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica not used after its connection was freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A reloaded `max-connections` applies to the running pool. Raised, a statement that found
/// it full gets a connection at once. Lowered, idle connections over the bound close at once
/// and busy ones as they are given back or lost, without interrupting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_resizes_the_pool() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    let reload = |p: &proxy::Proxy, max: u32| {
        let cfg = rwproxy::config::parse_str(
            std::path::Path::new("test.toml"),
            &config(cl, max),
            rwproxy::config::ConfigFormat::Toml,
        )
        .unwrap();
        p.backends.reload(&cfg).unwrap();
    };
    // Sessions that hold a connection of the primary each (a transaction).
    async fn hold(p: &proxy::Proxy) -> Conn {
        let mut c = p.conn().await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("SELECT 1").await.unwrap();
        c
    }
    async fn primary_is(p: &proxy::Proxy, want: (usize, usize)) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while pool_counts(p)[0] != want {
            assert!(
                Instant::now() < deadline,
                "primary pool (open, idle) {:?}, expected {want:?}",
                pool_counts(p)[0]
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    const READ: &str = "/*master*/ SELECT 1";

    let p = proxy::start(&config(cl, 2)).await.unwrap();
    let (mut a, mut b) = (hold(&p).await, hold(&p).await);
    let mut c = p.conn().await.unwrap();
    let full = c.query_drop(READ).await.unwrap_err().to_string();
    assert!(full.contains("all 2 connections"), "{full}");

    reload(&p, 4);
    c.query_drop(READ).await.unwrap();
    let mut d = hold(&p).await;
    primary_is(&p, (4, 1)).await;

    // Lowered to 1 with three connections busy: the idle one closes now...
    reload(&p, 1);
    primary_is(&p, (3, 0)).await;
    // ... one given back closes instead of going idle ...
    a.query_drop("COMMIT").await.unwrap();
    primary_is(&p, (2, 0)).await;
    // ... and one lost does not leave its place to a new connection.
    let thread: u64 = b
        .query_first("SELECT @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap();
    let mut root = cl.primary.root_conn().await.unwrap();
    root.query_drop(format!("KILL {thread}")).await.unwrap();
    assert!(b.query_drop("SELECT 1").await.is_err());
    primary_is(&p, (1, 0)).await;
    let full = c.query_drop(READ).await.unwrap_err().to_string();
    assert!(full.contains("all 1 connections"), "{full}");

    d.query_drop("COMMIT").await.unwrap();
    c.query_drop(READ).await.unwrap();
    primary_is(&p, (1, 1)).await;
    let on_server: u64 = root
        .query_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE USER = 'app' AND COMMAND <> 'Killed'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on_server, 1, "connections of the proxy on the primary");
}

/// `COMMIT RELEASE` (or `completion_type = RELEASE`) disconnects the client, as a server
/// does, and the backend connection the server closed is not pooled again: the next client
/// (here on a one-connection pool) gets a live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_release_disconnects_and_pools_nothing_dead() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    let p = proxy::start(&config(cl, 1)).await.unwrap();
    let mut setup = p.conn().await.unwrap();
    setup
        .query_drop("CREATE OR REPLACE TABLE pl_release (id INT PRIMARY KEY)")
        .await
        .unwrap();
    setup.disconnect().await.unwrap();
    for (i, ending) in [
        &["COMMIT RELEASE"][..],
        &["ROLLBACK WORK RELEASE"],
        &["SET completion_type = 2", "COMMIT"],
        &["SET completion_type = 'RELEASE'", "ROLLBACK"],
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = p.conn().await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop(format!("INSERT INTO pl_release VALUES ({i})"))
            .await
            .unwrap();
        for sql in ending {
            c.query_drop(*sql).await.unwrap();
        }
        assert!(
            c.query_drop("SELECT 1").await.is_err(),
            "{ending:?}: still connected"
        );
        let mut next = p.conn().await.unwrap();
        let _: Option<i64> = next
            .query_first("/*master*/ SELECT COUNT(*) FROM pl_release")
            .await
            .unwrap_or_else(|e| panic!("{ending:?}: the next client failed: {e}"));
        next.disconnect().await.unwrap();
    }
    // Kept: the two COMMITs; the ROLLBACKs undid theirs.
    let mut c = p.conn().await.unwrap();
    let kept: Vec<i64> = c
        .query("/*master*/ SELECT id FROM pl_release ORDER BY id")
        .await
        .unwrap();
    assert_eq!(kept, [0, 2]);
}

/// A read does not wait for room in a replica's full pool while another replica has some:
/// it goes there at once. (It waited the whole `connect-timeout-ms` first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_passes_a_full_replica_pool_by() {
    // Its logins must not land in another test's count of them.
    let _turn = TURN.lock().await;
    let c = cluster().await;
    let first = &c.replica_addrs()[0];
    let toml = proxy::config_toml(c, &[1, 1], "").replacen(
        &format!("address = \"{first}\"\nrole = \"ro\"\nweight = 1\nmax-connections = 50"),
        &format!("address = \"{first}\"\nrole = \"ro\"\nweight = 1\nmax-connections = 1"),
        1,
    );
    assert!(toml.contains("max-connections = 1\n"));
    let p = proxy::start(&toml).await.unwrap();
    // A read-only transaction on the first replica holds its one connection.
    let mut holder = p.conn().await.unwrap();
    let mut held = false;
    for _ in 0..40 {
        holder
            .query_drop("START TRANSACTION READ ONLY")
            .await
            .unwrap();
        let port: u16 = holder.query_first("SELECT @@port").await.unwrap().unwrap();
        if first.ends_with(&format!(":{port}")) {
            held = true;
            break;
        }
        holder.query_drop("COMMIT").await.unwrap();
        // A fresh session picks afresh.
        holder = p.conn().await.unwrap();
    }
    assert!(held, "no transaction landed on {first}");
    // (A login reads too: it checks the schema.)
    for _ in 0..8 {
        let t0 = Instant::now();
        let mut r = p.conn().await.unwrap();
        for _ in 0..4 {
            let port: u16 = r.query_first("SELECT @@port").await.unwrap().unwrap();
            assert!(
                !first.ends_with(&format!(":{port}")),
                "read on the full replica"
            );
        }
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "login and reads took {took:?}"
        );
    }
    holder.query_drop("COMMIT").await.unwrap();
}

/// Aborted clients on all servers, and connections of the proxy's user still open there.
async fn aborted_clients_and_proxy_connections(cl: &Cluster) -> (u64, u64) {
    let (mut aborted, mut open) = (0, 0);
    for s in cl.servers() {
        aborted += s.global_status("Aborted_clients").await.unwrap();
        let mut root = s.root_conn().await.unwrap();
        let n: Option<u64> = root
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{}'",
                rwproxy_sql_tests::APP_USER
            ))
            .await
            .unwrap();
        open += n.unwrap();
        root.disconnect().await.unwrap();
    }
    (aborted, open)
}

/// Backend connections the proxy closes say goodbye (`COM_QUIT`): the servers count no
/// aborted clients for them and log no "Got an error reading communication packets", which
/// DBAs watch for clients that crash or are cut off. (Before: one aborted client per
/// connection.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_backend_connections_are_not_aborted_clients() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    // Connections an earlier test left closing are closed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, _) = aborted_clients_and_proxy_connections(cl).await;
    let p = proxy::start(&config(cl, 50)).await.unwrap();
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = p.conn().await.unwrap();
        c.query_drop("CREATE TABLE IF NOT EXISTS p_quit (id INT PRIMARY KEY)")
            .await
            .unwrap();
        c.query_drop(format!("REPLACE INTO p_quit VALUES ({i})"))
            .await
            .unwrap();
        // Replicas' connections too (nothing that replication may not have brought yet).
        let _: Option<u32> = c.query_first("SELECT @@server_id").await.unwrap();
        clients.push(c);
    }
    let opened: usize = pool_counts(&p).iter().map(|(open, _)| open).sum();
    for c in clients {
        c.disconnect().await.unwrap();
    }
    // The sessions have given their connections back (a session still ending may be
    // mid-exchange on one, which the stop would then cut, as any stop cuts a statement).
    let t0 = Instant::now();
    while pool_counts(&p).iter().any(|(open, idle)| open != idle) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{:?}",
            pool_counts(&p)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(p);
    let t0 = Instant::now();
    let after = loop {
        let (aborted, open) = aborted_clients_and_proxy_connections(cl).await;
        if open == 0 {
            break aborted;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{open} connections of the proxy still open 5 s after it stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(opened >= 2, "{opened} backend connections opened");
    assert_eq!(
        after - before,
        0,
        "aborted clients among {opened} backend connections"
    );
}

/// Pooled connections are closed (with `COM_QUIT`) before their server's `wait_timeout`
/// would close them: the one a session set on the connection, the one its login left (an
/// interactive client's gets the server's `interactive_timeout`), or the global value the
/// monitor reads. A server that closes an idle connection itself counts an aborted client
/// and logs "Got timeout reading communication packets". (Before: the pool kept them 60 s,
/// and the servers aborted every one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_before_the_servers_wait_timeout() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    async fn set_globals(cl: &Cluster, wait: &str, interactive: &str) {
        for s in cl.servers() {
            let mut root = s.root_conn().await.unwrap();
            root.query_drop(format!(
                "SET GLOBAL wait_timeout = {wait}, GLOBAL interactive_timeout = {interactive}"
            ))
            .await
            .unwrap();
            root.disconnect().await.unwrap();
        }
    }
    set_globals(cl, "4", "2").await;
    // Run apart, so that the servers' settings are put back whatever fails.
    let outcome = tokio::spawn(async move {
        let (before, _) = aborted_clients_and_proxy_connections(cl).await;
        let toml = format!(
            "{}[monitor]\nuser = \"{}\"\npassword = \"{}\"\ninterval-ms = 200\n",
            config(cl, 50),
            rwproxy_sql_tests::sandbox::MONITOR_USER,
            rwproxy_sql_tests::sandbox::MONITOR_PASSWORD
        );
        let p = proxy::start(&toml).await.unwrap();
        // The monitor has read the servers' value.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut plain = p.conn().await.unwrap();
        let mut own = p.conn().await.unwrap();
        own.query_drop("SET wait_timeout = 2").await.unwrap();
        let writes = [
            "CREATE TABLE IF NOT EXISTS p_wait (id INT PRIMARY KEY)",
            "REPLACE INTO p_wait VALUES (1)",
            "SELECT @@server_id",
        ];
        for c in [&mut plain, &mut own] {
            for sql in writes {
                c.query_drop(sql).await.unwrap();
            }
        }
        let opts = raw::LoginOptions {
            extra_capabilities: mysql_common::constants::CapabilityFlags::CLIENT_INTERACTIVE,
            ..Default::default()
        };
        let mut interactive = raw::RawConn::login(
            p.addr,
            rwproxy_sql_tests::APP_USER,
            rwproxy_sql_tests::APP_PASSWORD,
            rwproxy_sql_tests::DATABASE,
            opts,
        )
        .await
        .unwrap();
        for sql in writes {
            interactive.query(sql).await.unwrap();
        }
        plain.disconnect().await.unwrap();
        own.disconnect().await.unwrap();
        drop(interactive);
        let opened: usize = pool_counts(&p).iter().map(|(open, _)| open).sum();
        // Past the global 4 s, by more than a reaper's tick.
        tokio::time::sleep(Duration::from_millis(5500)).await;
        let left = pool_counts(&p);
        let (after, _) = aborted_clients_and_proxy_connections(cl).await;
        (opened, left, after - before)
    })
    .await;
    set_globals(cl, "DEFAULT", "DEFAULT").await;
    let (opened, left, aborted) =
        outcome.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    assert!(opened >= 2, "{opened} backend connections opened");
    assert!(left.iter().all(|&(open, _)| open == 0), "{left:?}");
    assert_eq!(aborted, 0, "aborted clients among {opened} connections");
}

/// A server at its `max_prepared_stmt_count` (server-wide) refuses a prepare with 1461; the
/// statements the proxy keeps on that connection for reuse are closed and the prepare asked
/// again, so a client that closes what it prepares never sees the limit. (Before: 1461 at
/// the 51st statement with the limit at 50.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_kept_for_reuse_give_way_at_the_servers_limit() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    let mut root = cl.primary.root_conn().await.unwrap();
    root.query_drop("SET GLOBAL max_prepared_stmt_count = 50")
        .await
        .unwrap();
    let p = proxy::start(&config(cl, 50)).await.unwrap();
    let mut c = p.conn().await.unwrap();
    let mut outcome = Ok(());
    for n in 0..120 {
        // Errors are kept, not unwrapped: the limit is put back first.
        let round = async {
            let stmt = c.prep(format!("/*master*/ SELECT ? + {n}")).await?;
            let _: Option<i64> = c.exec_first(&stmt, (1,)).await?;
            c.close(stmt).await
        };
        if let Err(e) = round.await {
            outcome = Err(format!("statement {n}: {e}"));
            break;
        }
    }
    root.query_drop("SET GLOBAL max_prepared_stmt_count = DEFAULT")
        .await
        .unwrap();
    outcome.unwrap();
}

/// A saturated pool with more than one event thread lends a connection idle on another
/// thread rather than closing it and logging in again. (Before: with 150 clients on 50
/// connections a replica took some 1 200 logins a second.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_lends_connections_across_event_threads() {
    let _turn = TURN.lock().await;
    let cl = cluster().await;
    async fn logins(cl: &Cluster) -> u64 {
        let mut n = 0;
        for s in &cl.replicas {
            n += s.global_status("Connections").await.unwrap();
        }
        n
    }
    let toml = config(cl, 4).replacen("[proxy]\n", "[proxy]\nevent-threads = 2\n", 1);
    let p = proxy::start(&toml).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(p.conn().await.unwrap());
    }
    let before = logins(cl).await;
    let t0 = Instant::now();
    let mut running = Vec::new();
    for mut c in clients {
        running.push(tokio::spawn(async move {
            let mut n = 0;
            while t0.elapsed() < Duration::from_secs(2) {
                let _: Option<u32> = c.query_first("SELECT SLEEP(0.005)").await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut reads = 0;
    for r in running {
        reads += r.await.unwrap();
    }
    let logins = logins(cl).await - before;
    eprintln!("{reads} reads on 2 x 4 replica connections: {logins} new server connections");
    // The pools' first logins, the health probes and this test's own root connections.
    assert!(logins < 30, "{logins} logins for {reads} reads");
}
