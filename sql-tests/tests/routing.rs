//! Where statements go, observed on real servers: every statement that reveals its server
//! (`@@server_id`, `@@port`, `@@pseudo_thread_id`) is checked against the routing rules of
//! DESIGN.md. Primary is server_id 1, the replicas 2 and 3.
//!
//! One cluster is shared by every test of this binary (servers only: connections belong to a
//! test's own runtime); each test starts its own proxy in front of it.

use mysql_async::prelude::*;
use mysql_async::Conn;
use rwproxy_sql_tests::raw::{self, RawConn};
use rwproxy_sql_tests::{proxy, Cluster, APP_PASSWORD, APP_USER, DATABASE};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::OnceCell;

const PRIMARY: u32 = 1;
const REPLICAS: [u32; 2] = [2, 3];

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async {
            let c = Cluster::start(2).await.expect("sandbox cluster");
            let mut p = c.primary.conn().await.unwrap();
            for s in [
                "CREATE TABLE IF NOT EXISTS rows10 (id INT PRIMARY KEY, v VARCHAR(20))",
                "INSERT IGNORE INTO rows10 VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e'),\
                 (6,'f'),(7,'g'),(8,'h'),(9,'i'),(10,'j')",
                "CREATE DATABASE IF NOT EXISTS rt_other",
                "CREATE TABLE IF NOT EXISTS rt_other.marker (x INT)",
            ] {
                p.query_drop(s).await.unwrap();
            }
            drop(p);
            c.wait_replicas_caught_up().await.unwrap();
            c
        })
        .await
}

async fn start_proxy(weights: &[u32]) -> (&'static Cluster, proxy::Proxy) {
    let c = cluster().await;
    let p = proxy::start(&proxy::config_toml(c, weights, ""))
        .await
        .unwrap();
    (c, p)
}

/// A proxy whose write backend has one pooled connection: what one session holds there, the
/// others wait for.
async fn start_one_write_connection_proxy() -> (&'static Cluster, proxy::Proxy) {
    let c = cluster().await;
    let toml = proxy::config_toml(c, &[1, 1], "").replacen(
        "role = \"rw\"\nmax-connections = 50",
        "role = \"rw\"\nmax-connections = 1",
        1,
    );
    assert!(toml.contains("max-connections = 1\n"));
    (c, proxy::start(&toml).await.unwrap())
}

async fn sid(c: &mut Conn, sql: &str) -> u32 {
    c.query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap()
}

/// The thread id of the backend connection that runs the statement (`CONNECTION_ID()` is
/// the proxy's id for the whole session; the variable defaults to the server's own id).
async fn conn_id(c: &mut Conn) -> u64 {
    c.query_first("SELECT @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap()
}

/// Server ids that answered `n` runs of `sql` (which must return the server id).
async fn ids_over(c: &mut Conn, sql: &str, n: usize) -> BTreeMap<u32, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen.entry(sid(c, sql).await).or_default() += 1;
    }
    seen
}

fn assert_replicas_only(seen: &BTreeMap<u32, usize>, what: &str) {
    let ids: BTreeSet<u32> = seen.keys().copied().collect();
    assert_eq!(
        ids,
        REPLICAS.into_iter().collect(),
        "{what}: expected reads on both replicas and nowhere else, got {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_primary_and_reads_to_replicas() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop(
        "CREATE TABLE IF NOT EXISTS rt_writes (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40))",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO rt_writes (v) VALUES ('through-proxy')")
        .await
        .unwrap();
    let id = c.last_insert_id().unwrap();
    // On the primary itself, at once (no waiting for replication).
    let mut direct = cl.primary.conn().await.unwrap();
    let v: Option<String> = direct
        .exec_first("SELECT v FROM rt_writes WHERE id = ?", (id,))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("through-proxy"));

    // A multi-statement goes to the primary as a whole: the SELECT after the write answers 1.
    let mut r = c
        .query_iter("INSERT INTO rt_writes (v) VALUES ('multi'); SELECT @@server_id, @@port")
        .await
        .unwrap();
    let mut rows: Vec<(u32, u16)> = Vec::new();
    while !r.is_empty() {
        rows.extend(r.collect::<(u32, u16)>().await.unwrap());
    }
    drop(r);
    assert_eq!(rows, vec![(PRIMARY, cl.primary.port)]);
    // UPDATE/DELETE/REPLACE change the primary's data.
    c.query_drop("UPDATE rt_writes SET v = 'updated' WHERE id = 1")
        .await
        .unwrap();
    c.query_drop("REPLACE INTO rt_writes (id, v) VALUES (1000, 'replaced')")
        .await
        .unwrap();
    c.query_drop("DELETE FROM rt_writes WHERE v = 'multi'")
        .await
        .unwrap();
    let got: Vec<(u32, String)> = direct
        .query("SELECT id, v FROM rt_writes WHERE id IN (1, 1000) ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![(1, "updated".to_string()), (1000, "replaced".to_string())]
    );
    let n: u32 = direct
        .query_first("SELECT COUNT(*) FROM rt_writes WHERE v = 'multi'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);

    // Autocommit reads: replicas only, both of them; @@port agrees with @@server_id.
    let seen = ids_over(&mut c, "SELECT @@server_id", 200).await;
    assert_replicas_only(&seen, "autocommit SELECT");
    let ports: BTreeSet<u16> = cl.replicas.iter().map(|r| r.port).collect();
    for _ in 0..40 {
        let (id, port): (u32, u16) = c
            .query_first("SELECT @@server_id, @@port")
            .await
            .unwrap()
            .unwrap();
        assert!(
            REPLICAS.contains(&id) && ports.contains(&port),
            "{id} {port}"
        );
        assert_eq!(port, cl.replicas[(id - 2) as usize].port);
    }
    // SHOW / DESC / EXPLAIN are reads too: the replica rejects nothing, the answers are right.
    let v: Option<(String, String)> = c
        .query_first("SHOW VARIABLES LIKE 'server_id'")
        .await
        .unwrap();
    let v: u32 = v.unwrap().1.parse().unwrap();
    assert!(REPLICAS.contains(&v), "SHOW VARIABLES answered by {v}");
    c.query_drop("DESC rows10").await.unwrap();
    c.query_drop("EXPLAIN SELECT * FROM rows10").await.unwrap();
    // A replica's read_only would have refused writes: no write reached a replica.
    for r in &cl.replicas {
        let ro: u32 = r
            .conn()
            .await
            .unwrap()
            .query_first("SELECT @@read_only")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ro, 1);
    }
}

/// Binlog positions are the primary's: a replica has a binlog and GTID position of its own,
/// which is older (or, for a file and offset of the primary's binlog, means nothing there).
/// A DBA turns `SHOW MASTER STATUS`'s file and offset into a GTID with `BINLOG_GTID_POS()`,
/// and an application waiting for its write on a replica reads `@@gtid_binlog_pos` first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_positions_are_the_primarys() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    let (file, pos): (String, u64) = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|row: mysql_async::Row| (row.get(0).unwrap(), row.get(1).unwrap()))
        .unwrap();
    let by_name = format!("SELECT @@server_id, BINLOG_GTID_POS('{file}', {pos})");
    let direct: (u32, Option<String>) = cl
        .primary
        .conn()
        .await
        .unwrap()
        .query_first(&by_name)
        .await
        .unwrap()
        .unwrap();
    assert!(direct.1.is_some(), "the primary knows its own position");
    for sql in [
        "SELECT @@server_id, @@gtid_binlog_pos",
        "SELECT @@server_id, @@global.gtid_current_pos",
        "SELECT @@server_id, @@gtid_binlog_state",
        // The server also takes the name quoted, and spaces around the scope's dot.
        "SELECT @@server_id, @@`gtid_binlog_pos`",
        "SELECT @@server_id, @@GLOBAL . gtid_current_pos",
        by_name.as_str(),
    ] {
        for _ in 0..40 {
            let (id, _): (u32, Option<String>) = c
                .query_first(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .unwrap();
            assert_eq!(id, PRIMARY, "{sql}");
        }
    }
    let got: (u32, Option<String>) = c.query_first(&by_name).await.unwrap().unwrap();
    assert_eq!(got, direct);
    // Read by name, as variables: `SHOW VARIABLES` and `information_schema`. The same
    // statement shape naming another variable still reads on a replica, before and after.
    let server_id_with = |name: &str| {
        format!("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('server_id', '{name}')")
    };
    let server_of = |rows: Vec<(String, String)>| -> u32 {
        let (_, id) = rows
            .iter()
            .find(|(n, _)| n == "server_id")
            .expect("server_id row");
        id.parse().unwrap()
    };
    for round in 0..3 {
        for sql in [
            server_id_with("gtid_binlog_pos"),
            server_id_with("GTID_CURRENT_POS"),
            "SHOW VARIABLES WHERE Variable_name = 'server_id' OR Variable_name LIKE 'gtid\\_binlog\\_%'"
                .to_string(),
            "SELECT 'server_id', (SELECT @@server_id) FROM information_schema.GLOBAL_VARIABLES \
             WHERE VARIABLE_NAME = 'gtid_binlog_state'"
                .to_string(),
        ] {
            let rows: Vec<(String, String)> = c.query(&sql).await.unwrap();
            assert_eq!(server_of(rows), PRIMARY, "{sql}");
        }
        let mut seen = BTreeMap::new();
        for _ in 0..20 {
            let rows: Vec<(String, String)> = c.query(server_id_with("read_only")).await.unwrap();
            *seen.entry(server_of(rows)).or_insert(0) += 1;
        }
        assert!(
            seen.keys().all(|id| REPLICAS.contains(id)),
            "SHOW VARIABLES of read_only, round {round}: read on a replica, got {seen:?}"
        );
    }
    // A replica's own replication position is still read on a replica.
    let seen = ids_over(
        &mut c,
        "SELECT @@server_id FROM (SELECT @@gtid_slave_pos) s",
        40,
    )
    .await;
    assert_replicas_only(&seen, "@@gtid_slave_pos");
}

/// Statements the proxy sent to the replicas (backends 2 and 3).
async fn replica_queries(admin: &mut rwproxy_admin::client::AdminClient) -> u64 {
    let stats = admin.stats().await.unwrap();
    stats.iter().skip(1).map(|b| b.queries).sum()
}

async fn fn_calls(root: &mut Conn) -> u64 {
    root.query_first("SELECT COUNT(*) FROM rt_fn_calls")
        .await
        .unwrap()
        .unwrap()
}

/// A `SELECT` of a stored function that writes: the replica refuses the write for its
/// `read_only` (1290) before it happens, and the read runs again on the write backend, text
/// and prepared, writing once per call. A function that only reads stays on the replicas.
/// (The sandbox's replicas run with `read_only=ON`, and the proxy's user lacks `READ ONLY
/// ADMIN`, as the README asks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_of_a_function_that_writes_runs_on_the_primary() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut root = cl.primary.conn().await.unwrap();
    for sql in [
        "CREATE TABLE IF NOT EXISTS rt_fn_calls (id INT AUTO_INCREMENT PRIMARY KEY, server INT)",
        "CREATE OR REPLACE FUNCTION rt_note_call() RETURNS INT MODIFIES SQL DATA DETERMINISTIC \
         BEGIN INSERT INTO rt_fn_calls (server) VALUES (@@server_id); RETURN @@server_id; END",
        "CREATE OR REPLACE FUNCTION rt_server() RETURNS INT READS SQL DATA DETERMINISTIC \
         RETURN @@server_id",
    ] {
        root.query_drop(sql).await.unwrap();
    }
    cl.wait_replicas_caught_up().await.unwrap();
    let before = fn_calls(&mut root).await;
    let mut c = p.conn().await.unwrap();
    let mut admin = p.admin().await;
    let at_start = replica_queries(&mut admin).await;
    for _ in 0..10 {
        let id: u32 = c
            .query_first("SELECT rt_note_call()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id, PRIMARY, "text");
    }
    // One try on a replica; after its refusal the shape goes to the write backend.
    let after_text = replica_queries(&mut admin).await;
    assert_eq!(after_text - at_start, 1, "text calls tried on a replica");
    for _ in 0..5 {
        let id: u32 = c
            .exec_first("SELECT rt_note_call() + ?", (0,))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id, PRIMARY, "prepared");
    }
    // The first execute (a prepare counts as no query).
    assert_eq!(
        replica_queries(&mut admin).await - after_text,
        1,
        "prepared calls tried on a replica"
    );
    assert_eq!(fn_calls(&mut root).await - before, 15, "one write per call");
    let seen = ids_over(&mut c, "SELECT rt_server()", 40).await;
    assert_replicas_only(&seen, "a function that only reads");
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        let id: u32 = c
            .exec_first("SELECT rt_server() + ?", (0,))
            .await
            .unwrap()
            .unwrap();
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_replicas_only(&seen, "a function that only reads, prepared");
}

/// The tuning routine `FLUSH STATUS; <query>; SHOW SESSION STATUS` counts the query alone,
/// as directly: `FLUSH STATUS` keeps the session on the connection whose counters it
/// zeroed. (The reads went on to a replica's pooled connection, whose counters held every
/// earlier read of it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_status_then_session_status_counts_one_query() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let routine = |mut c: Conn| async move {
        for _ in 0..3 {
            c.query_drop("SELECT COUNT(*) FROM rows10").await.unwrap();
        }
        c.query_drop("FLUSH STATUS").await.unwrap();
        c.query_drop("SELECT COUNT(*) FROM rows10").await.unwrap();
        let (_, n): (String, u64) = c
            .query_first("SHOW SESSION STATUS LIKE 'Com_select'")
            .await
            .unwrap()
            .unwrap();
        n
    };
    assert_eq!(routine(cl.primary.conn().await.unwrap()).await, 1);
    assert_eq!(routine(p.conn().await.unwrap()).await, 1);
}

/// `SET profiling = 1` keeps the session on its connection, so `SHOW PROFILES` lists the
/// session's statements, writes and reads alike, as directly. (The reads went to a replica
/// where profiling was replayed, the writes to the primary: each listed some.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_profiles_lists_the_sessions_statements() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut setup = p.conn().await.unwrap();
    setup
        .query_drop("CREATE TABLE IF NOT EXISTS rt_profiled (v INT)")
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let profiled = |mut c: Conn| async move {
        c.query_drop("SET profiling = 1").await.unwrap();
        for sql in [
            "SELECT COUNT(*) FROM rows10",
            "INSERT INTO rt_profiled VALUES (1)",
            "SELECT COUNT(*) FROM rt_profiled",
            "SELECT 1",
        ] {
            c.query_drop(sql).await.unwrap();
        }
        let listed: Vec<(u32, f64, String)> = c.query("SHOW PROFILES").await.unwrap();
        listed.into_iter().map(|(_, _, q)| q).collect::<Vec<_>>()
    };
    let direct = profiled(cl.primary.conn().await.unwrap()).await;
    assert_eq!(direct.len(), 4, "{direct:?}");
    assert_eq!(profiled(p.conn().await.unwrap()).await, direct);
}

/// Weights 1 and 3: 10 000 reads split 25 % / 75 %, within ±5 percentage points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_reads() {
    let (_cl, p) = start_proxy(&[1, 3]).await;
    const N: usize = 10_000;
    const CLIENTS: usize = 8;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = p.conn().await.unwrap();
        tasks.push(tokio::spawn(async move {
            ids_over(&mut c, "SELECT @@server_id", N / CLIENTS).await
        }));
    }
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *seen.entry(k).or_default() += v;
        }
    }
    assert_eq!(seen.values().sum::<usize>(), N);
    assert_replicas_only(&seen, "weighted reads");
    let pct2 = seen[&2] as f64 * 100.0 / N as f64;
    let pct3 = seen[&3] as f64 * 100.0 / N as f64;
    println!("weights 1:3 -> server 2: {pct2:.2} %, server 3: {pct3:.2} %");
    assert!(
        (pct2 - 25.0).abs() <= 5.0,
        "server 2 got {pct2:.2} % (want 25 ± 5 points)"
    );
    assert!(
        (pct3 - 75.0).abs() <= 5.0,
        "server 3 got {pct3:.2} % (want 75 ± 5 points)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_stay_on_primary() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    for begin in ["BEGIN", "START TRANSACTION", "begin work"] {
        c.query_drop(begin).await.unwrap();
        let cid = conn_id(&mut c).await;
        for _ in 0..10 {
            assert_eq!(sid(&mut c, "SELECT @@server_id").await, PRIMARY, "{begin}");
            assert_eq!(conn_id(&mut c).await, cid, "{begin}: connection changed");
        }
        let n: u32 = c
            .query_first("SELECT COUNT(*) FROM rows10")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 10);
        c.query_drop("COMMIT").await.unwrap();
        let seen = ids_over(&mut c, "SELECT @@server_id", 60).await;
        assert_replicas_only(&seen, &format!("after {begin} … COMMIT"));
    }
    // ROLLBACK ends it too.
    c.query_drop("START TRANSACTION").await.unwrap();
    assert_eq!(sid(&mut c, "SELECT @@server_id").await, PRIMARY);
    c.query_drop("ROLLBACK").await.unwrap();
    assert_replicas_only(
        &ids_over(&mut c, "SELECT @@server_id", 60).await,
        "after ROLLBACK",
    );
}

/// The one number `sql` reads, as text or as a prepared statement.
async fn count_of(c: &mut Conn, sql: &str, prepared: bool) -> i64 {
    let n: Option<i64> = match prepared {
        true => c.exec_first(sql, ()).await.unwrap(),
        false => c.query_first(sql).await.unwrap(),
    };
    n.unwrap()
}

/// A setting after a `BEGIN` the proxy put off waits for the write backend's connection, as
/// the `BEGIN` itself did before: the transaction does not begin on a replica because the
/// primary's pool is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_after_a_put_off_begin_waits_for_the_primary() {
    let (_, p) = start_one_write_connection_proxy().await;
    let mut a = p.conn().await.unwrap();
    a.query_drop("CREATE OR REPLACE TABLE rt_busy (id INT)")
        .await
        .unwrap();
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO rt_busy VALUES (1)")
        .await
        .unwrap();
    let mut b = p.conn().await.unwrap();
    b.query_drop("BEGIN").await.unwrap();
    let set = tokio::spawn(async move {
        let r = b.query_drop("SET time_zone = '+01:00'").await;
        (b, r)
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !set.is_finished(),
        "the setting ran elsewhere while the primary's only connection was busy"
    );
    a.query_drop("COMMIT").await.unwrap();
    let (mut b, r) = set.await.unwrap();
    r.unwrap();
    assert_eq!(sid(&mut b, "SELECT @@server_id").await, PRIMARY);
    assert_eq!(sid(&mut b, "SELECT @@in_transaction").await, 1);
    b.query_drop("INSERT INTO rt_busy VALUES (2)")
        .await
        .unwrap();
    b.query_drop("COMMIT").await.unwrap();
}

/// A plain `BEGIN` is answered by the proxy and goes out with the transaction's first
/// statement (in the same write as a read; before anything else, on its own). The client
/// sees "in transaction" at once; the snapshot is taken at the first read, as InnoDB takes
/// it after a real `BEGIN`, and kept; reads and writes, text and prepared, run in the
/// transaction on the primary; and `BEGIN` … `COMMIT` with nothing between reaches no server.
/// A prepared `BEGIN` likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_goes_out_with_the_transactions_first_statement() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let queries = || {
        p.backends
            .backends()
            .iter()
            .map(|b| b.queries())
            .sum::<u64>()
    };
    let mut raw = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    // (A `COMMIT` is answered without a server once the write backend's `completion_type`
    // is known, from its first connection.)
    raw.query("/*master*/ SELECT 1").await.unwrap();
    let before = queries();
    for begin in ["BEGIN", "start transaction;", "/* c */ begin work"] {
        let reply = raw.query(begin).await.unwrap();
        assert_eq!(reply[0][0], 0x00, "{begin}: OK");
        assert_eq!(
            raw::ok_status(&reply[0]) & 3,
            3,
            "{begin}: in transaction, autocommit"
        );
    }
    let (begin, _, _) = raw.prepare("BEGIN").await.unwrap();
    let reply = raw
        .command(&raw::execute_packet(begin, false))
        .await
        .unwrap();
    assert_eq!(
        raw::ok_status(&reply[0]) & 3,
        3,
        "prepared BEGIN: in transaction"
    );
    let reply = raw.query("COMMIT").await.unwrap();
    assert_eq!(
        raw::ok_status(&reply[0]) & 3,
        2,
        "COMMIT: autocommit, no transaction"
    );
    // Both prepared, as sysbench's `--db-ps-mode=auto` sends them.
    let (commit, _, _) = raw.prepare("COMMIT").await.unwrap();
    raw.command(&raw::execute_packet(begin, false))
        .await
        .unwrap();
    let reply = raw
        .command(&raw::execute_packet(commit, false))
        .await
        .unwrap();
    assert_eq!(
        raw::ok_status(&reply[0]) & 3,
        2,
        "prepared COMMIT: autocommit, no transaction"
    );
    assert_eq!(
        queries(),
        before,
        "BEGIN … COMMIT with nothing between went to a server"
    );

    let mut direct = cl.primary.conn().await.unwrap();
    direct
        .query_drop("CREATE OR REPLACE TABLE rt_snap (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let count = "SELECT COUNT(*) FROM rt_snap";
    let mut c = p.conn().await.unwrap();
    for prepared in [false, true] {
        direct.query_drop("DELETE FROM rt_snap").await.unwrap();
        // sysbench's `--db-ps-mode=auto` prepares its `BEGIN` too.
        match prepared {
            true => c.exec_drop("BEGIN", ()).await.unwrap(),
            false => c.query_drop("BEGIN").await.unwrap(),
        }
        direct
            .query_drop("INSERT INTO rt_snap VALUES (1)")
            .await
            .unwrap();
        assert_eq!(
            count_of(&mut c, count, prepared).await,
            1,
            "prepared {prepared}: the snapshot is the first read's"
        );
        direct
            .query_drop("INSERT INTO rt_snap VALUES (2)")
            .await
            .unwrap();
        assert_eq!(
            count_of(&mut c, count, prepared).await,
            1,
            "prepared {prepared}: the first read ran in the transaction"
        );
        assert_eq!(sid(&mut c, "SELECT @@server_id").await, PRIMARY);
        assert_eq!(sid(&mut c, "SELECT @@in_transaction").await, 1);
        c.query_drop("COMMIT").await.unwrap();
        // The read goes to a replica: once it has the direct inserts.
        cl.wait_replicas_caught_up().await.unwrap();
        assert_eq!(
            count_of(&mut c, count, prepared).await,
            2,
            "prepared {prepared}: after COMMIT"
        );
    }

    // A write first: it runs in the transaction, which rolls back.
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO rt_snap VALUES (10)")
        .await
        .unwrap();
    assert_eq!(sid(&mut c, "SELECT @@in_transaction").await, 1);
    c.query_drop("ROLLBACK").await.unwrap();
    let n: Option<i64> = direct
        .query_first("SELECT COUNT(*) FROM rt_snap WHERE id = 10")
        .await
        .unwrap();
    assert_eq!(n, Some(0), "the write ran in the rolled-back transaction");

    // Messages first: any connection answers them alike, and the read after them takes the
    // `BEGIN` to the primary.
    c.query_drop("BEGIN").await.unwrap();
    let warnings: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(sid(&mut c, "SELECT @@server_id").await, PRIMARY);
    assert_eq!(sid(&mut c, "SELECT @@in_transaction").await, 1);
    c.query_drop("COMMIT").await.unwrap();

    // What is not plain goes to the server as written.
    c.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .unwrap();
    direct
        .query_drop("INSERT INTO rt_snap VALUES (3)")
        .await
        .unwrap();
    let n: Option<i64> = c.query_first(count).await.unwrap();
    assert_eq!(n, Some(2), "the snapshot is the START TRANSACTION's");
    c.query_drop("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transaction_stays_on_one_server() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    let mut servers_used = BTreeSet::new();
    for _ in 0..8 {
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let first = sid(&mut c, "SELECT @@server_id").await;
        let cid = conn_id(&mut c).await;
        for _ in 0..10 {
            assert_eq!(sid(&mut c, "SELECT @@server_id").await, first);
            assert_eq!(conn_id(&mut c).await, cid);
            let n: u32 = c
                .query_first("SELECT COUNT(*) FROM rows10")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, 10);
        }
        // A write inside a read-only transaction fails as on the primary (1792: the replica
        // itself says 1290, its `read_only`), and the transaction stays where it was.
        match c.query_drop("INSERT INTO rows10 VALUES (99, 'no')").await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!((e.code, e.state.as_str()), (1792, "25006"), "{e:?}");
                assert_eq!(
                    e.message,
                    "Cannot execute statement in a READ ONLY transaction"
                );
            }
            other => panic!("a write in a READ ONLY transaction: {other:?}"),
        }
        // The diagnostics say so too (the replica holds its own 1290).
        let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
        assert_eq!(
            w,
            [(
                "Error".to_string(),
                1792,
                "Cannot execute statement in a READ ONLY transaction".to_string()
            )]
        );
        assert_eq!(sid(&mut c, "SELECT @@server_id").await, first);
        c.query_drop("COMMIT").await.unwrap();
        servers_used.insert(first);
    }
    println!("READ ONLY transactions ran on {servers_used:?}");
    // The last transaction's error outlived its COMMIT, as on a server, holding table-less
    // reads where it is; a read of a table clears it.
    let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    c.query_drop("SELECT COUNT(*) FROM rows10").await.unwrap();
    assert_replicas_only(
        &ids_over(&mut c, "SELECT @@server_id", 60).await,
        "after READ ONLY transactions",
    );
}

async fn begin_on_replica(c: &mut Conn) {
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let on = sid(c, "SELECT @@server_id").await;
    assert!(REPLICAS.contains(&on), "read-only transaction on {on}");
}

async fn created(direct: &mut Conn, table: &str) -> bool {
    let n: u32 = direct
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = ?",
            (table,),
        )
        .await
        .unwrap()
        .unwrap();
    n == 1
}

/// A statement that commits implicitly ends a read-only transaction as a primary would, and
/// then runs where it belongs: DDL (text, and prepared before the transaction), a read-write `START TRANSACTION`,
/// `LOCK TABLES` on the primary. On the replica holding the transaction the DDL was refused
/// (1792) and the new transaction's writes too. A session that made state on that replica
/// cannot move: its DDL gets the proxy's refusal, and the transaction goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_commits_end_a_read_only_transaction() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    let mut direct = cl.primary.conn().await.unwrap();
    for ddl in [
        "DROP TABLE IF EXISTS rt_ddl",
        "DROP TABLE IF EXISTS rt_ddl_ps",
    ] {
        direct.query_drop(ddl).await.unwrap();
    }

    begin_on_replica(&mut c).await;
    c.query_drop("CREATE TABLE rt_ddl (a INT)").await.unwrap();
    assert!(created(&mut direct, "rt_ddl").await);
    let in_txn: u32 = c
        .query_first("SELECT @@in_transaction")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_txn, 0, "the DDL ended the transaction");

    // A server refuses to prepare DDL in a read-only transaction (checked on MariaDB
    // 10.11: 1792 on the primary too), but runs one prepared before.
    begin_on_replica(&mut c).await;
    let on = sid(&mut c, "SELECT @@server_id").await;
    match c.prep("CREATE TABLE rt_ddl_ps (a INT)").await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1792, "{e:?}"),
        other => panic!("DDL prepared in a read-only transaction: {other:?}"),
    }
    assert_eq!(sid(&mut c, "SELECT @@server_id").await, on);
    c.query_drop("COMMIT").await.unwrap();
    let ddl = c.prep("CREATE TABLE rt_ddl_ps (a INT)").await.unwrap();
    begin_on_replica(&mut c).await;
    c.exec_drop(&ddl, ()).await.unwrap();
    assert!(created(&mut direct, "rt_ddl_ps").await);

    begin_on_replica(&mut c).await;
    c.query_drop("START TRANSACTION").await.unwrap();
    assert_eq!(sid(&mut c, "SELECT @@server_id").await, PRIMARY);
    c.query_drop("INSERT INTO rt_ddl VALUES (1)").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let rows: u32 = direct
        .query_first("SELECT COUNT(*) FROM rt_ddl")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows, 1,
        "the read-write transaction committed on the primary"
    );

    begin_on_replica(&mut c).await;
    c.query_drop("LOCK TABLES rt_ddl WRITE").await.unwrap();
    assert_eq!(sid(&mut c, "SELECT @@server_id").await, PRIMARY);
    c.query_drop("INSERT INTO rt_ddl VALUES (2)").await.unwrap();
    c.query_drop("UNLOCK TABLES").await.unwrap();

    // A `SET TRANSACTION` the server refuses sets nothing for the next transaction: the
    // session is not held for one.
    match c
        .query_drop("SET TRANSACTION ISOLATION LEVEL SOMETIMES")
        .await
    {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1064, "{e:?}"),
        other => panic!("a malformed SET TRANSACTION: {other:?}"),
    }
    // (A read of a table clears the error, which held reads where it is.)
    c.query_drop("SELECT COUNT(*) FROM rows10").await.unwrap();
    let seen = ids_over(&mut c, "SELECT @@server_id", 20).await;
    assert!(
        seen.keys().all(|id| REPLICAS.contains(id)),
        "reads after a refused SET TRANSACTION: {seen:?}"
    );

    // State made on the replica holds the session there.
    begin_on_replica(&mut c).await;
    let on = sid(&mut c, "SELECT @@server_id").await;
    c.query_drop("SET @rt_state = 1").await.unwrap();
    match c.query_drop("DROP TABLE rt_ddl").await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!(e.code, 1290, "{e:?}");
            assert!(e.message.contains("server state"), "{}", e.message);
        }
        other => panic!("DDL with state on the replica: {other:?}"),
    }
    assert_eq!(sid(&mut c, "SELECT @@server_id").await, on);
    let v: u32 = c.query_first("SELECT @rt_state").await.unwrap().unwrap();
    assert_eq!(v, 1);
    c.query_drop("COMMIT").await.unwrap();
    assert!(
        created(&mut direct, "rt_ddl").await,
        "the refused DROP did not run"
    );
    for ddl in ["DROP TABLE rt_ddl", "DROP TABLE rt_ddl_ps"] {
        direct.query_drop(ddl).await.unwrap();
    }
}

/// Named locks are the primary's: inside a read-only transaction, which runs on a replica,
/// `GET_LOCK` and friends are refused (taken there, a lock would exclude nobody), as is
/// `SELECT … INTO OUTFILE` (its file would land on the replica's host); and a quoted
/// function name (`` `get_lock`(…) ``, `` `connection_id`() ``) is the built-in
/// still, routed and answered as the plain one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_locks_are_never_taken_on_a_replica() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let on = sid(&mut c, "SELECT @@server_id").await;
    assert!(
        REPLICAS.contains(&on),
        "a read-only transaction runs on a replica"
    );
    for sql in [
        "SELECT GET_LOCK('rt_ro', 0)",
        "SELECT `get_lock`('rt_ro', 0)",
        "SELECT IS_FREE_LOCK('rt_ro')",
    ] {
        match c.query_drop(sql).await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!(e.code, 1290, "{sql}: {e:?}");
                assert!(e.message.contains("named lock"), "{sql}: {}", e.message);
            }
            other => panic!("{sql} in a read-only transaction: {other:?}"),
        }
    }
    // A file written by the transaction would land on the replica's host.
    match c.query_drop("SELECT 1 INTO OUTFILE 'rt_ro.txt'").await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!(e.code, 1290, "{e:?}");
            assert!(e.message.contains("OUTFILE"), "{}", e.message);
        }
        other => panic!("INTO OUTFILE in a read-only transaction: {other:?}"),
    }
    // The transaction goes on where it was.
    assert_eq!(sid(&mut c, "SELECT @@server_id").await, on);
    c.query_drop("COMMIT").await.unwrap();
    let got: u32 = c
        .query_first("SELECT `get_lock`('rt_quoted', 0)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, 1);
    let mut direct = cl.primary.conn().await.unwrap();
    let holder: Option<u64> = direct
        .query_first("SELECT IS_USED_LOCK('rt_quoted')")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder, Some(conn_id(&mut c).await), "the primary holds it");
    let same: u32 = c
        .query_first("SELECT `connection_id`() = CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same, 1, "a quoted CONNECTION_ID() is the session's id");
    for sql in [
        "CREATE TABLE IF NOT EXISTS rt_quoted_rc (id INT PRIMARY KEY, n INT)",
        "REPLACE INTO rt_quoted_rc VALUES (1, 0), (2, 0), (3, 0)",
        "UPDATE rt_quoted_rc SET n = n + 1",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    let counted: i64 = c
        .query_first("SELECT `row_count`()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counted, 3,
        "a quoted ROW_COUNT() counts the session's last statement"
    );
    c.query_drop("DO RELEASE_LOCK('rt_quoted')").await.unwrap();
}

/// `autocommit=0`: every statement belongs to a transaction, so reads go to the primary too,
/// and a transaction keeps its connection to its end; between transactions the session
/// holds none. Drivers such as PyMySQL turn autocommit off by default, and their idle
/// sessions must not use up the pool: here one primary connection serves two of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocommit_off_runs_transactions_on_the_primary() {
    let (_, p) = start_one_write_connection_proxy().await;
    let mut setup = p.conn().await.unwrap();
    setup
        .query_drop("CREATE OR REPLACE TABLE rt_ac0 (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    setup
        .query_drop("INSERT INTO rt_ac0 VALUES (1, 0)")
        .await
        .unwrap();
    setup.disconnect().await.unwrap();
    let (mut a, mut b) = (p.conn().await.unwrap(), p.conn().await.unwrap());
    for c in [&mut a, &mut b] {
        c.query_drop("SET autocommit=0").await.unwrap();
        assert_eq!(sid(c, "SELECT @@server_id").await, PRIMARY);
        assert_eq!(sid(c, "SELECT @@autocommit").await, 0);
    }
    // A transaction keeps the connection to its end: the other session waits for it...
    a.query_drop("UPDATE rt_ac0 SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    let cid = conn_id(&mut a).await;
    let waiting = tokio::spawn(async move {
        let v: Option<i64> = b
            .query_first("SELECT v FROM rt_ac0 WHERE id = 1")
            .await
            .unwrap();
        (b, v)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "ran beside a's transaction");
    assert_eq!(sid(&mut a, "SELECT @@in_transaction").await, 1);
    assert_eq!(
        conn_id(&mut a).await,
        cid,
        "connection changed in a transaction"
    );
    a.query_drop("COMMIT").await.unwrap();
    // ... and gets it when the transaction ends, on the primary (it sees the commit).
    let (mut b, v) = waiting.await.unwrap();
    assert_eq!(v, Some(1));
    assert_eq!(sid(&mut b, "SELECT @@in_transaction").await, 1);
    b.query_drop("COMMIT").await.unwrap();
    // `autocommit=0` goes with the session: a rolled-back change is gone.
    a.query_drop("UPDATE rt_ac0 SET v = 100 WHERE id = 1")
        .await
        .unwrap();
    a.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(sid(&mut a, "SELECT v FROM rt_ac0 WHERE id = 1").await, 1);
    a.query_drop("COMMIT").await.unwrap();
    // Replies the proxy writes itself tell the client autocommit is off.
    let mut raw = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    let set = raw.query("SET autocommit=0").await.unwrap();
    assert_eq!(raw::ok_status(&set[0]) & 2, 0, "SET autocommit=0 reply");
    let ping = raw.command(&[0x0e]).await.unwrap();
    assert_eq!(raw::ok_status(&ping[0]) & 2, 0, "ping reply");
    drop(raw);
    a.query_drop("SET autocommit=1").await.unwrap();
    let seen = ids_over(&mut a, "SELECT @@server_id", 60).await;
    assert_replicas_only(&seen, "after SET autocommit=1");
    assert_eq!(sid(&mut a, "SELECT @@autocommit").await, 1);
}

/// A `COMMIT` or `ROLLBACK` with nothing to end is answered by the proxy as a server answers
/// it, without a backend connection: a pool that sends one for every connection given back
/// (SQLAlchemy) no longer waits for a full pool (before: 1429 after the connect timeout,
/// with the primary's only connection in another session's transaction). One that has
/// something to end, or may chain or release, still goes to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_no_transaction_takes_no_connection() {
    let (_, p) = start_one_write_connection_proxy().await;
    let mut raw = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    raw.query("SET autocommit=0").await.unwrap();
    let mut a = p.conn().await.unwrap();
    a.query_drop("CREATE OR REPLACE TABLE rt_end (id INT)")
        .await
        .unwrap();
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO rt_end VALUES (1)").await.unwrap();

    let t0 = std::time::Instant::now();
    for sql in [
        "ROLLBACK",
        "COMMIT",
        "commit work",
        "/* pool reset */ ROLLBACK",
    ] {
        let reply = raw.query(sql).await.unwrap();
        assert_eq!(reply.len(), 1, "{sql}");
        assert_eq!(reply[0][0], 0x00, "{sql}: OK");
        assert_eq!(raw::ok_status(&reply[0]) & 2, 0, "{sql}: autocommit is off");
    }
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    // One that may start a transaction waits for the primary as before.
    let chain = tokio::spawn(async move {
        let r = raw.query("COMMIT AND CHAIN").await;
        (raw, r)
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !chain.is_finished(),
        "COMMIT AND CHAIN answered without the server"
    );
    a.query_drop("COMMIT").await.unwrap();
    let (raw, r) = chain.await.unwrap();
    r.unwrap();
    drop(raw);
    let n: Option<i64> = a.query_first("SELECT COUNT(*) FROM rt_end").await.unwrap();
    assert_eq!(n, Some(1), "a's transaction committed");

    // As on a server: ROW_COUNT() is 0 after it, and messages are kept.
    a.query_drop("INSERT INTO rt_end VALUES (2), (3)")
        .await
        .unwrap();
    a.query_drop("COMMIT").await.unwrap();
    let rc: Option<i64> = a.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(rc, Some(0));
    let _: Option<Option<i64>> = a.query_first("SELECT 1/0").await.unwrap();
    a.query_drop("ROLLBACK").await.unwrap();
    let warnings: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].1, 1365);
    // What the server must judge goes there: a syntax error, settings for the statement.
    let mut d = p.conn().await.unwrap();
    let e = d.query_drop("COMMIT foo").await.unwrap_err().to_string();
    assert!(e.contains("1064"), "{e}");
    let e = d
        .query_drop("SET STATEMENT no_such_variable = 1 FOR COMMIT")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("1193"), "{e}");
}

/// With the server's `completion_type = CHAIN`, a `ROLLBACK` starts a transaction even with
/// none open: it goes to the server, and the session keeps that transaction's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaining_server_gets_every_commit() {
    // A cluster of its own: the setting is global.
    let cl = Cluster::start(0).await.unwrap();
    let mut root = cl.primary.root_conn().await.unwrap();
    root.query_drop("SET GLOBAL completion_type = 'CHAIN'")
        .await
        .unwrap();
    let p = proxy::start(&proxy::config_toml(&cl, &[], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(sid(&mut c, "SELECT @@in_transaction").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_tables_pins_until_unlock() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    // A table of its own: a lock on `rows10` would make other tests' `FOR UPDATE NOWAIT`
    // on it fail.
    cl.primary
        .conn()
        .await
        .unwrap()
        .query_drop("CREATE OR REPLACE TABLE rt_locked AS SELECT * FROM rows10")
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop("LOCK TABLES rt_locked READ").await.unwrap();
    let cid = conn_id(&mut c).await;
    for _ in 0..10 {
        // Only the locked table is usable: a server without the lock would not say so.
        let (n, id): (u32, u32) = c
            .query_first("SELECT COUNT(*), @@server_id FROM rt_locked")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((n, id), (10, PRIMARY));
        assert_eq!(conn_id(&mut c).await, cid);
    }
    let e = c
        .query_drop("SELECT * FROM rt_other.marker")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("was not locked"),
        "a table not locked must be refused under LOCK TABLES: {e}"
    );
    c.query_drop("UNLOCK TABLES").await.unwrap();
    // The refusal outlived UNLOCK TABLES, as on a server, holding table-less reads where it
    // is; a read of a table clears it.
    let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    c.query_drop("SELECT COUNT(*) FROM rt_locked")
        .await
        .unwrap();
    assert_replicas_only(
        &ids_over(&mut c, "SELECT @@server_id", 60).await,
        "after UNLOCK TABLES",
    );
    // A transaction's start releases the locks too (a table not locked can be read again),
    // and once it ends reads spread again.
    c.query_drop("LOCK TABLES rt_locked READ").await.unwrap();
    c.query_drop("START TRANSACTION").await.unwrap();
    c.query_drop("SELECT COUNT(*) FROM rows10").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert_replicas_only(
        &ids_over(&mut c, "SELECT @@server_id", 60).await,
        "after START TRANSACTION released the locks",
    );
}

/// A multi-statement that writes and then reads the messages (`SHOW WARNINGS`,
/// `@@warning_count`) runs on the write backend, as any write does: it went where the
/// previous statement's messages were, a replica, which refused the write (1290), and a
/// procedure's write there (its definer may write on a read-only server) made the replica's
/// data differ and stopped its replication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_beside_a_read_of_messages_runs_on_the_primary() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut root = cl.primary.root_conn().await.unwrap();
    root.query_drop("CREATE OR REPLACE TABLE rwtest.rt_diag (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    root.query_drop(
        "CREATE OR REPLACE DEFINER = root@localhost PROCEDURE rwtest.rt_diag_add(n INT) \
         SQL SECURITY DEFINER INSERT INTO rwtest.rt_diag VALUES (n, @@server_id)",
    )
    .await
    .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let mut c = p.conn().await.unwrap();
    // A read first, so that its messages are held on a replica.
    c.query_drop("SELECT 1 FROM rows10 WHERE 'a' = 0")
        .await
        .unwrap();
    c.query_drop("INSERT INTO rt_diag VALUES (1, 0); SHOW WARNINGS")
        .await
        .unwrap();
    c.query_drop("SELECT 1 FROM rows10 WHERE 'a' = 0")
        .await
        .unwrap();
    c.query_drop("UPDATE rt_diag SET v = v + 1 WHERE id = 1; SELECT @@warning_count")
        .await
        .unwrap();
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO rt_diag VALUES (2, 0); SHOW WARNINGS")
        .await
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    c.query_drop("SELECT 1 FROM rows10 WHERE 'a' = 0")
        .await
        .unwrap();
    c.query_drop("CALL rt_diag_add(3); SHOW WARNINGS")
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    for server in std::iter::once(&cl.primary).chain(&cl.replicas) {
        let rows: Vec<(u32, u32)> = server
            .root_conn()
            .await
            .unwrap()
            .query("SELECT id, v FROM rwtest.rt_diag ORDER BY id")
            .await
            .unwrap();
        assert_eq!(
            rows,
            [(1, 1), (2, 0), (3, PRIMARY)],
            "on server {}",
            server.server_id
        );
    }
}

/// `2.INTO OUTFILE` is a number and `INTO` to the server: the statement writes a file, and
/// runs on the write backend. (Its shape was a malformed statement's, `2 OUTFILE`, whose
/// classification as a plain read it took from the cache: a replica wrote the file.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_before_into_keeps_its_statement_on_the_primary() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    // (`@@server_id` itself would keep the statement out of the classification cache.)
    cl.primary
        .root_conn()
        .await
        .unwrap()
        .query_drop(
            "CREATE OR REPLACE FUNCTION rwtest.rt_sid() RETURNS INT NO SQL RETURN @@server_id",
        )
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let mut c = p.conn().await.unwrap();
    let dir = std::env::temp_dir().join(format!("rt_into_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("out");
    let _ = std::fs::remove_file(&file);
    let path = file.display();
    c.query_drop(format!(
        "SELECT rt_sid() FROM rows10 WHERE id=2 OUTFILE '{path}'"
    ))
    .await
    .expect_err("malformed");
    c.query_drop(format!(
        "SELECT rt_sid() FROM rows10 WHERE id=2.INTO OUTFILE '{path}'"
    ))
    .await
    .unwrap();
    let written = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(written.trim(), PRIMARY.to_string());
}

/// `optimizer_switch` changes only the flags an assignment names: two `SET`s add up, on every
/// server the session reads from. (Only the last one was replayed elsewhere.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimizer_switch_settings_add_up() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("SET optimizer_switch = 'index_merge=off'")
        .await
        .unwrap();
    c.query_drop("SET SESSION optimizer_switch = 'mrr=on'")
        .await
        .unwrap();
    let probe = "SELECT @@optimizer_switch LIKE '%index_merge=off%' AND @@optimizer_switch LIKE '%mrr=on%', @@server_id";
    let mut seen = BTreeSet::new();
    // A session keeps its replica for a run of 16 reads; three runs reach both replicas.
    for hint in ["/*slave*/", "/*master*/", ""] {
        for _ in 0..24 {
            let (both, id): (u32, u32) = c
                .query_first(format!("{hint} {probe}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(both, 1, "{hint} on server {id}");
            seen.insert(id);
        }
    }
    assert_eq!(seen.len(), 3, "every server: {seen:?}");
}

/// What `SET STATEMENT ... FOR` sets ends with its statement, though the server's reply
/// reports it: later statements, on any server, see the session's own setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_statement_leaves_no_setting_behind() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut direct = cl.primary.conn().await.unwrap();
    direct
        .query_drop("CREATE OR REPLACE TABLE rt_set_stmt (id INT PRIMARY KEY, tz VARCHAR(64))")
        .await
        .unwrap();
    let default_tz: String = direct
        .query_first("SELECT @@time_zone")
        .await
        .unwrap()
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop(
        "SET STATEMENT time_zone = '+05:00' FOR INSERT INTO rt_set_stmt VALUES (1, @@time_zone)",
    )
    .await
    .unwrap();
    // (Replicas first: the server reports the setting put back with the next statement on
    // its connection.)
    for hint in ["/*slave*/", "", "/*master*/"] {
        for _ in 0..4 {
            let (tz, id): (String, u32) = c
                .query_first(format!("{hint} SELECT @@time_zone, @@server_id"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(tz, default_tz, "{hint} on server {id}");
        }
    }
    c.query_drop("INSERT INTO rt_set_stmt VALUES (2, @@time_zone)")
        .await
        .unwrap();
    let rows: Vec<(u32, String)> = direct
        .query("SELECT id, tz FROM rt_set_stmt ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows, [(1, "+05:00".into()), (2, default_tz)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_locks_stay_with_their_connection() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    let got: u32 = c
        .query_first("SELECT GET_LOCK('rt_x', 1)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, 1);
    for _ in 0..10 {
        let holder: Option<u64> = c
            .query_first("SELECT IS_USED_LOCK('rt_x')")
            .await
            .unwrap()
            .unwrap();
        let me = conn_id(&mut c).await;
        assert_eq!(
            holder,
            Some(me),
            "IS_USED_LOCK must name this session's connection"
        );
        // Reads in between do not move the session.
        sid(&mut c, "SELECT @@server_id").await;
    }
    // The primary agrees someone holds it, and another proxy client cannot take it.
    let mut direct = cl.primary.conn().await.unwrap();
    let holder: Option<u64> = direct
        .query_first("SELECT IS_USED_LOCK('rt_x')")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder, Some(conn_id(&mut c).await));
    let mut other = p.conn().await.unwrap();
    let got: Option<u32> = other
        .query_first("SELECT GET_LOCK('rt_x', 0)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, Some(0));
    let rel: u32 = c
        .query_first("SELECT RELEASE_LOCK('rt_x')")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rel, 1);
    let got: Option<u32> = other
        .query_first("SELECT GET_LOCK('rt_x', 1)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, Some(1));
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_stay_visible() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE TEMPORARY TABLE rt_tmp (a INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO rt_tmp VALUES (1), (2), (3)")
        .await
        .unwrap();
    for _ in 0..20 {
        let n: u32 = c
            .query_first("SELECT COUNT(*) FROM rt_tmp")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 3);
        sid(&mut c, "SELECT @@server_id").await;
    }
    // Not visible to another client.
    let mut other = p.conn().await.unwrap();
    assert!(other.query_drop("SELECT * FROM rt_tmp").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_variables_survive() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("SET @a = 5").await.unwrap();
    for _ in 0..20 {
        let a: Option<i64> = c.query_first("SELECT @a").await.unwrap().unwrap();
        assert_eq!(a, Some(5));
        sid(&mut c, "SELECT @@server_id").await;
        let (a, b): (Option<i64>, Option<i64>) =
            c.query_first("SELECT @a, @a + 1").await.unwrap().unwrap();
        assert_eq!((a, b), (Some(5), Some(6)));
    }
    // Set by a SELECT too.
    c.query_drop("SELECT @b := 7").await.unwrap();
    for _ in 0..5 {
        sid(&mut c, "SELECT @@server_id").await;
        let b: Option<i64> = c.query_first("SELECT @b").await.unwrap().unwrap();
        assert_eq!(b, Some(7));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_rows_after_calc_found_rows() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    for limit in [1, 3, 7] {
        let rows: Vec<u32> = c
            .query(format!(
                "SELECT SQL_CALC_FOUND_ROWS id FROM rows10 ORDER BY id LIMIT {limit}"
            ))
            .await
            .unwrap();
        assert_eq!(rows.len(), limit);
        let n: u64 = c.query_first("SELECT FOUND_ROWS()").await.unwrap().unwrap();
        assert_eq!(n, 10, "FOUND_ROWS() after LIMIT {limit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_insert_id_is_this_sessions() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop(
        "CREATE TABLE IF NOT EXISTS rt_autoinc (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await
    .unwrap();
    // Another client inserting in between must not change what this one sees.
    let mut other = p.conn().await.unwrap();
    for i in 0..10 {
        c.query_drop(format!("INSERT INTO rt_autoinc (v) VALUES ({i})"))
            .await
            .unwrap();
        let expected = c.last_insert_id().unwrap();
        assert!(expected > 0);
        other
            .query_drop("INSERT INTO rt_autoinc (v) VALUES (-1)")
            .await
            .unwrap();
        for _ in 0..3 {
            let got: u64 = c
                .query_first("SELECT LAST_INSERT_ID()")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, expected, "LAST_INSERT_ID() after insert #{i}");
            // Reads in between, served by replicas.
            let id = sid(&mut c, "SELECT @@server_id").await;
            assert!(REPLICAS.contains(&id), "read went to {id}");
        }
    }
}

/// A proxy on one event thread: its sessions share one pool of idle connections, so a test
/// can make another client take the connection a session's last statement used.
async fn start_one_thread_proxy() -> (&'static Cluster, proxy::Proxy) {
    let c = cluster().await;
    let toml =
        proxy::config_toml(c, &[1, 1], "").replacen("[proxy]\n", "[proxy]\nevent-threads = 1\n", 1);
    assert!(toml.contains("event-threads = 1"));
    (c, proxy::start(&toml).await.unwrap())
}

/// A prepared XA transaction outlives its client, as on a direct connection: the proxy closes
/// the connection holding it (MariaDB then detaches it, for `XA COMMIT` from any
/// connection) rather than resetting and pooling it. After a `COM_RESET_CONNECTION` the
/// server answers `XA COMMIT` with OK and applies nothing, the transaction keeps its locks,
/// and every later statement on that connection fails with 1031.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_xa_transaction_outlives_its_client() {
    // One write connection: a connection pooled after the XA client left would be the next
    // statement's.
    let (c, p) = start_one_write_connection_proxy().await;
    let mut direct = c.primary.conn().await.unwrap();
    direct
        .query_drop("CREATE TABLE IF NOT EXISTS rt_xa (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    direct.query_drop("DELETE FROM rt_xa").await.unwrap();
    let mut a = p.conn().await.unwrap();
    for sql in [
        "XA START 'rt_xa1'",
        "INSERT INTO rt_xa VALUES (1)",
        "XA END 'rt_xa1'",
        "XA PREPARE 'rt_xa1'",
    ] {
        a.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    a.disconnect().await.unwrap();
    // The write pool serves other clients (the connection that held the transaction is
    // not theirs: there, any statement fails with 1399, or 1031 after a reset).
    let mut b = p.conn().await.unwrap();
    for i in 10..15 {
        b.query_drop(format!("INSERT INTO rt_xa VALUES ({i})"))
            .await
            .unwrap_or_else(|e| panic!("a write after the XA client left: {e}"));
    }
    // The server detached the transaction when the proxy's connection closed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let recovered: Vec<String> = direct
            .query("XA RECOVER")
            .await
            .unwrap()
            .into_iter()
            .map(|row: mysql_async::Row| row.get::<String, _>("data").unwrap_or_default())
            .collect();
        if recovered.iter().any(|x| x == "rt_xa1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "XA RECOVER never listed the prepared transaction: {recovered:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    b.query_drop("XA COMMIT 'rt_xa1'").await.unwrap();
    let committed: u64 = direct
        .query_first("SELECT COUNT(*) FROM rt_xa WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(committed, 1, "the prepared transaction's row is committed");
    // No transaction is left holding the row's lock.
    direct
        .query_drop("SET innodb_lock_wait_timeout = 2")
        .await
        .unwrap();
    direct
        .query_drop("UPDATE rt_xa SET id = 3 WHERE id = 1")
        .await
        .expect("the row is not locked");
    drop(b);
}

/// Makes another client take (and keep, in a transaction) the idle primary connection the
/// session's last statement returned, so the session's next statement runs on another one.
async fn take_last_connection(p: &proxy::Proxy) -> Conn {
    let mut other = p.conn().await.unwrap();
    other.query_drop("BEGIN").await.unwrap();
    other
}

/// `LAST_INSERT_ID()` and its `@@identity` spellings answer the id the session's last
/// binary-protocol insert generated, in text and prepared statements, also on a connection
/// other than the insert's (as on a direct connection, where there is only one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_insert_id_follows_prepared_inserts() {
    let (_cl, p) = start_one_thread_proxy().await;
    let mut c = p.conn().await.unwrap();
    c.query_drop(
        "CREATE TABLE IF NOT EXISTS rt_autoinc_ps (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await
    .unwrap();
    let mut holders = Vec::new();
    for (i, read) in [
        "SELECT LAST_INSERT_ID()",
        "SELECT @@identity",
        "SELECT @@last_insert_id",
        "SELECT LAST_INSERT_ID() + 0 * ?",
    ]
    .into_iter()
    .enumerate()
    {
        c.exec_drop("INSERT INTO rt_autoinc_ps (v) VALUES (?)", (i,))
            .await
            .unwrap();
        let expected = c.last_insert_id().unwrap();
        holders.push(take_last_connection(&p).await);
        let got: u64 = if read.contains('?') {
            c.exec_first(read, (0,)).await.unwrap().unwrap()
        } else {
            c.query_first(read).await.unwrap().unwrap()
        };
        assert_eq!(got, expected, "{read} after a prepared insert");
    }
}

/// `ROW_COUNT()` describes the session's previous statement and `FOUND_ROWS()` its last
/// result set, as on a direct connection, with the same column metadata, also inside
/// expressions, even when another client took the connection that statement ran on (here
/// after every statement), it ran on a replica, or a transaction began since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_count_and_found_rows_describe_the_previous_statement() {
    let (cl, p) = start_one_thread_proxy().await;
    let steps = [
        "CREATE OR REPLACE TABLE {t} (id INT PRIMARY KEY, v INT)",
        "INSERT INTO {t} VALUES (1, 1), (2, 2), (3, 3), (4, 4)",
        "UPDATE {t} SET v = v WHERE id < 3",
        "UPDATE {t} SET v = v + 1 WHERE id < 3",
        "SELECT * FROM {t} WHERE id > 1",
        "INSERT INTO {t} VALUES (1, 1) ON DUPLICATE KEY UPDATE v = v + 10",
        "DELETE FROM {t} WHERE id = 4",
        "SELECT id FROM {t} LIMIT 0",
        "SHOW TABLES LIKE '{t}'",
        "DELETE FROM {t}_missing",
        "DO 1",
        "SELECT v FROM {t} ORDER BY id LIMIT 2",
        "UPDATE {t} SET v = v + 1 WHERE id = 1",
        "BEGIN",
        "UPDATE {t} SET v = v + 1",
        "COMMIT",
        "UPDATE {t} SET v = v + 1",
        // Answered by the proxy itself.
        "",
        "UPDATE {t} SET v = v + 1",
        "KILL QUERY 1999999999",
        "UPDATE {t} SET v = v + 1",
        "PING",
        "UPDATE {t} SET v = v + 1",
        // Sets FOUND_ROWS() without a result set (and holds the session on its connection
        // for the user variable, until the reset).
        "SELECT v FROM {t} ORDER BY id LIMIT 1 INTO @rt_v",
        "SELECT id FROM {t}",
        "RESET",
        "SELECT id FROM {t} LIMIT 3",
        "SELECT 1 UNION SELECT 2; SELECT FOUND_ROWS()",
        "SELECT id FROM {t} LIMIT 2",
        // Leaves FOUND_ROWS() alone.
        "SHOW WARNINGS",
        "SELECT ROW_COUNT(); DO ROW_COUNT(), ROW_COUNT()",
        "INSERT INTO {t} VALUES (10, ROW_COUNT()), (11, ROW_COUNT())",
        "SELECT v FROM {t} WHERE id >= 10",
    ];
    // The last item's column is named after the item as written.
    let check = "SELECT ROW_COUNT(), ROW_COUNT() + 1 AS next, CONCAT('n=', ROW_COUNT()) AS txt, \
                 ROW_COUNT() * 2, FOUND_ROWS(), FOUND_ROWS() - 1";
    let mut runs = Vec::new();
    for via_proxy in [false, true] {
        let (mut c, t) = if via_proxy {
            // Alike in their first 8 bytes, all a row's Debug shows.
            (p.conn().await.unwrap(), "rt_rowc_proxy")
        } else {
            (cl.primary.conn().await.unwrap(), "rt_rowc_direct")
        };
        let mut holders = Vec::new();
        let mut seen = Vec::new();
        let mut values = Vec::new();
        for step in steps {
            // Reads may run on a replica: it must have the writes before them.
            cl.wait_replicas_caught_up().await.unwrap();
            // The rows of the last step show what the insert before it wrote.
            let got = if step == "PING" {
                c.ping().await.unwrap();
                Vec::new()
            } else if step == "RESET" {
                c.reset().await.unwrap();
                Vec::new()
            } else {
                match c.query::<mysql_async::Row, _>(step.replace("{t}", t)).await {
                    Ok(rows) => rows
                        .into_iter()
                        .map(|r| format!("{:?}", r.unwrap()))
                        .collect(),
                    Err(e) => vec![e.to_string()],
                }
            };
            values.push(
                got.into_iter()
                    .map(|v: String| v.replace(t, "{t}"))
                    .collect::<Vec<_>>(),
            );
            if via_proxy {
                holders.push(take_last_connection(&p).await);
            }
            // Twice: the first check is itself a previous statement for the second.
            for _ in 0..2 {
                let mut result = c.query_iter(check).await.unwrap();
                let columns: Vec<_> = result
                    .columns_ref()
                    .iter()
                    .map(|c| {
                        (
                            c.name_str().into_owned(),
                            c.column_type(),
                            c.column_length(),
                            c.flags(),
                        )
                    })
                    .collect();
                let row: Vec<(i64, i64, String, i64, i64, i64)> = result.collect().await.unwrap();
                seen.push((step, row, columns));
            }
        }
        runs.push((seen, values));
    }
    let (direct, proxied) = (&runs[0], &runs[1]);
    assert_eq!(proxied.1, direct.1, "what each step returned");
    assert_eq!(
        direct.1.last().map(|rows| rows.len()),
        Some(2),
        "{:?}",
        direct.1
    );
    for (direct, proxied) in direct.0.iter().zip(&proxied.0) {
        assert_eq!(proxied, direct, "after {}", direct.0);
    }
}

/// `SET insert_id` is used up by the next insert: a second insert gets the next generated
/// id, as on a direct connection, not the same one again (the proxy must not replay it on
/// another connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_id_is_used_once() {
    let (_cl, p) = start_one_thread_proxy().await;
    let mut c = p.conn().await.unwrap();
    c.query_drop(
        "CREATE OR REPLACE TABLE rt_insert_id (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await
    .unwrap();
    c.query_drop("SET insert_id = 1000").await.unwrap();
    c.query_drop("INSERT INTO rt_insert_id (v) VALUES (1)")
        .await
        .unwrap();
    let _holder = take_last_connection(&p).await;
    c.query_drop("INSERT INTO rt_insert_id (v) VALUES (2)")
        .await
        .unwrap();
    let ids: Vec<u64> = c
        .query("/*master*/ SELECT id FROM rt_insert_id ORDER BY id")
        .await
        .unwrap();
    assert_eq!(ids, [1000, 1001]);
}

/// Session settings built in several `SET`s reach a replica as the session has them: an
/// isolation level survives a later `SET SESSION TRANSACTION READ WRITE` (JDBC's
/// `setReadOnly(false)`), and a `sql_mode` computed from the previous one keeps what that
/// one set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_built_in_steps_follow_to_replicas() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let steps = [
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET SESSION TRANSACTION READ WRITE",
        "SET sql_mode = 'ANSI_QUOTES'",
        "SET sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
    ];
    let probe = "SELECT @@tx_isolation, @@tx_read_only, @@sql_mode";
    let mut direct = cl.primary.conn().await.unwrap();
    for s in steps {
        direct.query_drop(s).await.unwrap();
    }
    let want: (String, u8, String) = direct.query_first(probe).await.unwrap().unwrap();
    assert_eq!(
        want,
        (
            "READ-COMMITTED".to_string(),
            0,
            "ANSI_QUOTES,STRICT_ALL_TABLES".to_string()
        )
    );
    let mut c = p.conn().await.unwrap();
    for s in steps {
        c.query_drop(s).await.unwrap();
    }
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        let (iso, ro, mode, id): (String, u8, String, u32) = c
            .query_first("SELECT @@tx_isolation, @@tx_read_only, @@sql_mode, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((iso, ro, mode), want, "server {id}");
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_replicas_only(&seen, "after the SETs");
    let on_primary: (String, u8, String) = c
        .query_first(format!("/*master*/ {probe}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on_primary, want, "primary");
}

/// `SET GLOBAL a = 1, b = 2` sets both globally, as on a server: the proxy does not take `b`
/// for a session setting to carry to the session's other connections. (The global values
/// are set to what they are, so other tests see no change.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_keyword_covers_the_names_after_it() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut direct = cl.primary.conn().await.unwrap();
    let (retries, read_timeout): (u32, u32) = direct
        .query_first("SELECT @@global.net_retry_count, @@global.net_read_timeout")
        .await
        .unwrap()
        .unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop(format!("SET net_read_timeout = {}", read_timeout + 15))
        .await
        .unwrap();
    c.query_drop(format!(
        "SET GLOBAL net_retry_count = {retries}, net_read_timeout = {read_timeout}"
    ))
    .await
    .unwrap();
    // A session reads from one replica in runs of 16: enough runs to see both.
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let (timeout, id): (u32, u32) = c
            .query_first("SELECT @@session.net_read_timeout, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            timeout,
            read_timeout + 15,
            "the session's value, on server {id}"
        );
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_replicas_only(&seen, "after SET GLOBAL");
}

/// `SET @@tx_isolation = ...` and `SET @@tx_read_only = ...`, with `@@` and no scope, set
/// the next transaction's characteristics only, as `SET TRANSACTION` does: the transaction
/// after gets the session's again, on the server directly and through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unscoped_transaction_variables_set_the_next_transaction_only() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    // The running statement names itself, so the transaction it runs in is found in
    // INNODB_TRX whatever server thread runs it.
    async fn isolation_of_transaction(c: &mut Conn) -> Vec<String> {
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("SELECT COUNT(*) FROM rows10").await.unwrap();
        // InnoDB refreshes what INNODB_TRX shows at most every 100 ms.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let level: Option<String> = c
            .query_first(
                "SELECT trx_isolation_level FROM information_schema.INNODB_TRX \
                 WHERE trx_query LIKE '%rt_next_txn_probe%'",
            )
            .await
            .unwrap();
        let write = c
            .query_drop("INSERT INTO rt_next_txn VALUES (1)")
            .await
            .map_or_else(
                |e| match e {
                    mysql_async::Error::Server(e) => e.code.to_string(),
                    e => panic!("{e}"),
                },
                |()| "written".to_string(),
            );
        c.query_drop("ROLLBACK").await.unwrap();
        vec![level.unwrap_or_default(), write]
    }
    let mut direct = cl.primary.conn().await.unwrap();
    direct
        .query_drop("CREATE OR REPLACE TABLE rt_next_txn (v INT)")
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    for (name, conn) in [("direct", &mut direct), ("proxy", &mut c)] {
        let mut seen = Vec::new();
        conn.query_drop("SET @@tx_isolation = 'SERIALIZABLE'")
            .await
            .unwrap();
        seen.push(isolation_of_transaction(conn).await);
        seen.push(isolation_of_transaction(conn).await);
        conn.query_drop("SET @@tx_read_only = 1, @@tx_isolation = 'READ-COMMITTED'")
            .await
            .unwrap();
        seen.push(isolation_of_transaction(conn).await);
        seen.push(isolation_of_transaction(conn).await);
        let session: (String, u8) = conn
            .query_first("SELECT @@tx_isolation, @@tx_read_only")
            .await
            .unwrap()
            .unwrap();
        // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
        let read_only = "1792";
        assert_eq!(
            seen,
            [
                ["SERIALIZABLE", "written"],
                ["REPEATABLE READ", "written"],
                ["READ COMMITTED", read_only],
                ["REPEATABLE READ", "written"],
            ]
            .map(|r| r.map(String::from).to_vec())
            .to_vec(),
            "{name}"
        );
        assert_eq!(session, ("REPEATABLE-READ".to_string(), 0), "{name}");
    }
    direct.query_drop("DROP TABLE rt_next_txn").await.unwrap();
}

/// On a server, `SET TRANSACTION` is used up by the next statement that runs a transaction,
/// an autocommit one too (a read or write of an InnoDB table); a statement that uses no
/// transactional table, or fails before it starts, leaves it waiting. The proxy keeps the
/// session on its connection while it waits, and lets it move once it is used up: its reads
/// spread over the replicas again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_transaction_is_used_up_by_an_autocommit_statement() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut direct = cl.primary.conn().await.unwrap();
    direct
        .query_drop("CREATE OR REPLACE TABLE rt_used_up (v INT)")
        .await
        .unwrap();
    direct
        .query_drop("CREATE OR REPLACE TABLE rt_used_up_myisam (v INT) ENGINE = MyISAM")
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    // A statement's error code, or "ok"; `ROW_COUNT()`'s and `@@error_count`'s values.
    async fn outcome(c: &mut Conn, sql: &str) -> String {
        match c.query_first::<Option<String>, _>(sql).await {
            Ok(Some(Some(v))) if sql.contains("ROW_COUNT") || sql.contains("error_count") => v,
            Ok(_) => "ok".into(),
            Err(mysql_async::Error::Server(e)) => e.code.to_string(),
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    let mut c = p.conn().await.unwrap();
    let script = [
        "SET TRANSACTION READ ONLY",
        "SELECT 1",
        // Refused by the read-only transaction it would start: not used up.
        "INSERT INTO rt_used_up VALUES (1)",
        // Used up by an autocommit read (the reply ends with an EOF packet).
        "SELECT COUNT(*) FROM rt_used_up",
        "INSERT INTO rt_used_up VALUES (2)",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
        "DO 1",
        // Refused, and not used up; then used up by a read that fails after it began (an
        // error reports nothing: the proxy asks).
        "INSERT INTO rt_used_up VALUES (3)",
        "SELECT (SELECT v FROM rt_used_up UNION ALL SELECT v FROM rt_used_up)",
        // The proxy's question leaves the error for `SHOW WARNINGS`.
        "SELECT @@error_count",
        "INSERT INTO rt_used_up VALUES (4)",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        // Used up by an autocommit write (an OK packet).
        "DELETE FROM rt_used_up WHERE v = 0",
        "SET TRANSACTION READ ONLY",
        "INSERT INTO rt_used_up VALUES (5)",
        // With autocommit off a read of a non-transactional table raises the server's
        // state-changed flag, but uses nothing up (the proxy asks the server).
        "SET autocommit = 0",
        "SET TRANSACTION READ ONLY",
        "SELECT COUNT(*) FROM rt_used_up_myisam",
        "SELECT ROW_COUNT()",
        "INSERT INTO rt_used_up VALUES (6)",
        "ROLLBACK",
        "SET autocommit = 1",
        // Nor does a tracked variable's change (here `time_zone`'s, put back).
        "SET TRANSACTION READ ONLY",
        "SET STATEMENT time_zone = '+00:00' FOR SELECT NOW()",
        "SELECT 1",
        "INSERT INTO rt_used_up VALUES (7)",
        "SELECT COUNT(*) FROM rt_used_up",
        "INSERT INTO rt_used_up VALUES (8)",
    ];
    for (name, conn) in [("direct", &mut direct), ("proxy", &mut c)] {
        let mut seen = Vec::new();
        for sql in script {
            seen.push(outcome(conn, sql).await);
        }
        assert_eq!(
            seen,
            [
                "ok", "ok", "1792", "ok", "ok", "ok", "ok", "1792", "1242", "1", "ok", "ok", "ok",
                "ok", "1792", "ok", "ok", "ok", "-1", "1792", "ok", "ok", "ok", "ok", "ok", "1792",
                "ok", "ok"
            ],
            "{name}"
        );
    }
    for used_up_by in [
        "SELECT COUNT(*) FROM rt_used_up",
        "DELETE FROM rt_used_up WHERE v = 0",
        "SELECT (SELECT v FROM rt_used_up UNION ALL SELECT v FROM rt_used_up)",
    ] {
        c.query_drop("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .await
            .unwrap();
        let waiting = ids_over(&mut c, "SELECT @@server_id", 4).await;
        assert_eq!(
            waiting.keys().collect::<Vec<_>>(),
            [&PRIMARY],
            "{used_up_by}"
        );
        match c.query_drop(used_up_by).await {
            Ok(()) => {}
            // (Its error is then cleared by a read of a table, or it would hold the reads
            // below where it is, for `SHOW WARNINGS`.)
            Err(mysql_async::Error::Server(e)) if e.code == 1242 => {
                c.query_drop("SELECT COUNT(*) FROM rows10").await.unwrap();
            }
            Err(e) => panic!("{used_up_by}: {e}"),
        }
        let seen = ids_over(&mut c, "SELECT @@server_id", 60).await;
        assert!(
            REPLICAS.iter().all(|r| seen.contains_key(r)),
            "reads after {used_up_by}: {seen:?}"
        );
    }
    direct
        .query_drop("DROP TABLE rt_used_up, rt_used_up_myisam")
        .await
        .unwrap();
}

/// A session held on a replica by state it made there (a user variable under a `/*slave*/`
/// hint, or in a read-only transaction) gets a clear error for a write, which never runs on
/// the replica: the test user, like many application users, may bypass `read_only`, and a
/// write there would change the replica behind replication's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_never_run_on_a_replica() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut direct = cl.primary.conn().await.unwrap();
    direct
        .query_drop("CREATE OR REPLACE TABLE rt_replica_guard (v INT)")
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    for setup in [
        &["/*slave*/ SELECT @next := 1"][..],
        &[
            "START TRANSACTION READ ONLY",
            "SELECT @next := COUNT(*) + 1 FROM rt_replica_guard",
            "COMMIT",
        ],
        // A transaction that is not read-only changes nothing: it would run there too.
        &["/*slave*/ SELECT @next := 1", "BEGIN"],
        &["/*slave*/ SELECT @next := 1", "SET autocommit = 0"],
    ] {
        let mut c = p.conn().await.unwrap();
        for sql in setup {
            c.query_drop(*sql).await.unwrap();
        }
        let held_on = sid(&mut c, "SELECT @@server_id").await;
        assert!(REPLICAS.contains(&held_on), "{setup:?}: held on {held_on}");
        for write in [
            "INSERT INTO rt_replica_guard VALUES (@next)",
            "DELETE FROM rt_replica_guard",
        ] {
            let e = c.query_drop(write).await.unwrap_err();
            assert!(
                e.to_string().contains("1290") && e.to_string().contains("rwproxy"),
                "{setup:?} then {write}: {e}"
            );
        }
        let e = c
            .exec_drop("INSERT INTO rt_replica_guard VALUES (?)", (2,))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("rwproxy"), "prepared insert: {e}");
        // The session itself goes on: its state is still there.
        let next: Option<i64> = c.query_first("SELECT @next").await.unwrap().unwrap();
        assert_eq!(next, Some(1));
        c.disconnect().await.unwrap();
    }
    for server in cl.servers() {
        let mut conn = server.root_conn().await.unwrap();
        let rows: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM rwtest.rt_replica_guard")
            .await
            .unwrap();
        assert_eq!(rows, Some(0), "rows on server {}", server.port);
    }
}

/// A replica's `read_only` refuses even the plan of a write (1290), so `EXPLAIN UPDATE` and
/// friends go where writes do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_of_writes_are_explained_on_the_primary() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    for sql in [
        "EXPLAIN UPDATE rows10 SET v = 'x' WHERE id = 1",
        "EXPLAIN EXTENDED DELETE FROM rows10 WHERE id = 1",
        "EXPLAIN FORMAT=JSON INSERT INTO rows10 VALUES (11, 'k')",
        "DESCRIBE REPLACE INTO rows10 VALUES (11, 'k')",
    ] {
        let rows: Vec<mysql_async::Row> =
            c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!rows.is_empty(), "{sql}: no plan");
    }
    let n: u32 = c
        .query_first("SELECT COUNT(*) FROM rows10")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 10, "nothing explained ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locking_reads_go_to_primary() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    for sql in [
        "SELECT @@server_id FROM rows10 WHERE id = 1 FOR UPDATE",
        "SELECT @@server_id FROM rows10 WHERE id = 1 LOCK IN SHARE MODE",
        "select @@server_id from rows10 where id = 1 for update nowait",
    ] {
        for _ in 0..10 {
            assert_eq!(sid(&mut c, sql).await, PRIMARY, "{sql}");
        }
    }
    // `FOR SHARE` is MySQL 8 syntax; MariaDB 10.x may reject it. Either way it must be the
    // primary that answers: compare the proxy's per-backend query counters.
    let sql = "SELECT @@server_id FROM rows10 WHERE id = 1 FOR SHARE";
    let direct = cl.primary.conn().await.unwrap().query_drop(sql).await;
    let before: Vec<u64> = p.backends.backends().iter().map(|b| b.queries()).collect();
    for _ in 0..10 {
        match c.query_first::<u32, _>(sql).await {
            Ok(id) => {
                assert!(direct.is_ok(), "direct failed but proxied worked");
                assert_eq!(id, Some(PRIMARY));
            }
            Err(e) => {
                let d = direct.as_ref().unwrap_err();
                assert_eq!(e.to_string(), d.to_string());
            }
        }
    }
    let after: Vec<u64> = p.backends.backends().iter().map(|b| b.queries()).collect();
    assert_eq!(
        after[0] - before[0],
        10,
        "FOR SHARE must run on the primary"
    );
    assert_eq!(after[1..], before[1..], "FOR SHARE reached a replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_slave_hints() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    for _ in 0..20 {
        assert_eq!(sid(&mut c, "/*master*/ SELECT @@server_id").await, PRIMARY);
    }
    let seen = ids_over(&mut c, "/*slave*/ SELECT @@server_id", 60).await;
    assert_replicas_only(&seen, "/*slave*/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_schema_follows_to_replicas() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("USE rt_other").await.unwrap();
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let (db, id): (Option<String>, u32) = c
            .query_first("SELECT DATABASE(), @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(db.as_deref(), Some("rt_other"), "on server {id}");
        *seen.entry(id).or_insert(0) += 1;
        // Unqualified names resolve in the new schema.
        c.query_drop("SELECT * FROM marker").await.unwrap();
    }
    assert_replicas_only(&seen, "after USE");
    // And back.
    c.query_drop("USE rwtest").await.unwrap();
    for _ in 0..20 {
        let db: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap().unwrap();
        assert_eq!(db.as_deref(), Some("rwtest"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_names_follows_to_replicas() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("SET NAMES latin1").await.unwrap();
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let (cs, conn_cs, id): (String, String, u32) = c
            .query_first("SELECT @@character_set_client, @@character_set_connection, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (cs.as_str(), conn_cs.as_str()),
            ("latin1", "latin1"),
            "server {id}"
        );
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_replicas_only(&seen, "after SET NAMES");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_zone_follows_to_replicas() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("SET time_zone = '+05:00'").await.unwrap();
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let (tz, diff, id): (String, i64, u32) = c
            .query_first(
                "SELECT @@time_zone, TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), NOW()), @@server_id",
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tz, "+05:00", "server {id}");
        assert_eq!(diff, 300, "NOW() - UTC_TIMESTAMP() on server {id}");
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_replicas_only(&seen, "after SET time_zone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_mode_follows_to_replicas() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    c.query_drop("SET sql_mode = 'ANSI_QUOTES'").await.unwrap();
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let (mode, id): (String, u32) = c
            .query_first("SELECT @@sql_mode, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mode, "ANSI_QUOTES", "server {id}");
        // The mode is in force, not just reported: "..." is an identifier now.
        let n: u32 = c
            .query_first("SELECT COUNT(\"id\") FROM \"rows10\"")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 10);
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_replicas_only(&seen, "after SET sql_mode");
}

/// A `SET` or `USE` inside a multi-statement is not parsed by the proxy; the session must
/// then stay on that connection so the change stays visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changed_inside_multi_statement_stays_visible() {
    let (_cl, p) = start_proxy(&[1, 1]).await;
    let mut c = p.conn().await.unwrap();
    let mut r = c
        .query_iter("SELECT 1; SET time_zone = '+07:00'")
        .await
        .unwrap();
    while !r.is_empty() {
        r.collect::<u32>().await.unwrap();
    }
    drop(r);
    for _ in 0..20 {
        let tz: String = c.query_first("SELECT @@time_zone").await.unwrap().unwrap();
        assert_eq!(tz, "+07:00");
    }
}

/// In gbk (and big5, sjis, cp932) a character's second byte may be `\`: `乗` is 81 5C. Read
/// byte by byte, the quote after it is escaped, so the string runs on over what follows (to
/// the next quote): an `UPDATE` after it was taken for part of a read and sent to a replica
/// (1290), and a
/// `CONNECTION_ID()` inside a string was rewritten, changing the data stored. A client's
/// character set counts whether its handshake names it or `SET NAMES` sets it later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_byte_characters_ending_in_a_backslash_hide_nothing() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut root = cl.primary.conn().await.unwrap();
    root.query_drop(
        "CREATE TABLE IF NOT EXISTS rt_gbk (id INT PRIMARY KEY, s VARCHAR(100)) CHARSET gbk",
    )
    .await
    .unwrap();
    root.query_drop("REPLACE INTO rt_gbk VALUES (10, 'a'), (11, 'a')")
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let gbk_handshake = raw::LoginOptions {
        collation: 28, // gbk_chinese_ci
        ..Default::default()
    };
    let by_handshake = RawConn::login(p.addr, APP_USER, APP_PASSWORD, DATABASE, gbk_handshake)
        .await
        .unwrap();
    let mut by_set_names = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    by_set_names.query("SET NAMES gbk").await.unwrap();
    for (id, mut c) in [(10, by_handshake), (11, by_set_names)] {
        let hidden_write =
            format!("SELECT '\u{1}\\'; UPDATE rt_gbk SET s = 'written' WHERE id = {id} /* it's */");
        let reply = c.command(&gbk(&hidden_write)).await.unwrap();
        let err = reply
            .iter()
            .find(|p| p[0] == 0xff)
            .map(|p| raw::err_text(p));
        assert_eq!(err, None, "client {id}");
        let s: String = root
            .query_first(format!("SELECT s FROM rt_gbk WHERE id = {id}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s, "written", "client {id}");

        let in_string =
            format!("REPLACE INTO rt_gbk VALUES ({id}, CONCAT('\u{1}\\', ' CONNECTION_ID()'))");
        let reply = c.command(&gbk(&in_string)).await.unwrap();
        assert_eq!(
            reply[0][0],
            0x00,
            "client {id}: {}",
            raw::err_text(&reply[0])
        );
        let hex: String = root
            .query_first(format!("SELECT HEX(s) FROM rt_gbk WHERE id = {id}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hex, "815C20434F4E4E454354494F4E5F49442829", "client {id}");
    }
}

/// A `COM_QUERY` packet of `sql`, with each U+0001 standing for gbk's lead byte 0x81.
fn gbk(sql: &str) -> Vec<u8> {
    let mut p = vec![0x03];
    p.extend(sql.bytes().map(|b| if b == 1 { 0x81 } else { b }));
    p
}

/// A read-only transaction runs on a replica; a statement the server refused there as a
/// whole (a `CREATE TEMPORARY TABLE` gets 1792) left nothing, and does not keep the session
/// there after the transaction: every later write of the session got 1290 "keeps server
/// state … on replica" until it reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_temporary_table_leaves_no_pin_on_the_replica() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let mut root = cl.primary.conn().await.unwrap();
    root.query_drop("CREATE TABLE IF NOT EXISTS rt_ro_after (id INT PRIMARY KEY)")
        .await
        .unwrap();
    root.query_drop("DELETE FROM rt_ro_after").await.unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    assert!(REPLICAS.contains(&sid(&mut c, "SELECT @@server_id").await));
    let refused = c
        .query_drop("CREATE TEMPORARY TABLE rt_ro_tmp (x INT)")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("READ ONLY"), "{refused}");
    c.query_drop("COMMIT").await.unwrap();
    c.query_drop("INSERT INTO rt_ro_after VALUES (2)")
        .await
        .unwrap();
    let n: Option<u32> = root
        .query_first("SELECT COUNT(*) FROM rt_ro_after")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
}

/// A server reads every value of a `SET` before it assigns any: `SET a = 10, b = @@a` gives
/// `b` the old `a`. Replayed one assignment at a time on the replicas, `b` got 10 there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_reading_a_variable_it_sets_means_the_same_everywhere() {
    let (cl, p) = start_proxy(&[1, 1]).await;
    let set = "SET div_precision_increment = 10, sql_select_limit = @@div_precision_increment";
    let probe = "SELECT @@sql_select_limit, @@div_precision_increment";
    let mut direct = cl.primary.conn().await.unwrap();
    direct.query_drop(set).await.unwrap();
    let want: (u64, u64) = direct.query_first(probe).await.unwrap().unwrap();
    assert_ne!(want.0, 10, "a server assigns after reading");
    let mut c = p.conn().await.unwrap();
    c.query_drop(set).await.unwrap();
    for hint in ["/*slave*/", "", "/*master*/"] {
        for _ in 0..20 {
            let got: (u64, u64) = c
                .query_first(format!("{hint} {probe}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, want, "{hint}");
        }
    }
}
