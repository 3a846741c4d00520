//! Read-your-writes against real replication whose SQL thread runs 2 s behind
//! (`MASTER_DELAY`): with the mode off a read right after a write misses it on the replica
//! (which proves the setup), `causal` sees it every time (waiting on the replica, or on the
//! write backend when the wait times out), and so does `primary-window`.

use mysql_async::prelude::*;
use rwproxy_sql_tests::{proxy, Cluster, APP_USER};
use std::time::Instant;

const DELAY_SECS: u32 = 2;

async fn delayed_cluster() -> Cluster {
    let cluster = Cluster::start(1).await.unwrap();
    let mut p = cluster.primary.conn().await.unwrap();
    p.query_drop("CREATE TABLE IF NOT EXISTS ryw (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    let mut root = cluster.replicas[0].root_conn().await.unwrap();
    root.query_drop("STOP SLAVE").await.unwrap();
    root.query_drop(format!("CHANGE MASTER TO MASTER_DELAY = {DELAY_SECS}"))
        .await
        .unwrap();
    root.query_drop("START SLAVE").await.unwrap();
    cluster
}

/// Writes `n` rows through the proxy, each immediately read back; returns how many reads
/// saw their row and the server ids that answered.
async fn write_then_read(p: &proxy::Proxy, first_id: u32, n: u32) -> (u32, Vec<u32>) {
    let mut c = p.conn().await.unwrap();
    let mut seen = 0;
    let mut servers = Vec::new();
    for id in first_id..first_id + n {
        c.query_drop(format!("INSERT INTO ryw VALUES ({id})"))
            .await
            .unwrap();
        let (count, server): (u32, u32) = c
            .query_first(format!(
                "SELECT COUNT(*), @@server_id FROM ryw WHERE id = {id}"
            ))
            .await
            .unwrap()
            .unwrap();
        seen += count;
        servers.push(server);
    }
    (seen, servers)
}

async fn ids(cluster: &Cluster) -> (u32, u32) {
    let mut ids = Vec::new();
    for s in [&cluster.primary, &cluster.replicas[0]] {
        let mut c = s.root_conn().await.unwrap();
        ids.push(c.query_first("SELECT @@server_id").await.unwrap().unwrap());
    }
    (ids[0], ids[1])
}

fn config(cluster: &Cluster, proxy_keys: &str, user_keys: &str) -> String {
    proxy::config_toml(cluster, &[], "")
        .replacen("[proxy]\n", &format!("[proxy]\n{proxy_keys}"), 1)
        .replacen(
            &format!("name = \"{APP_USER}\"\n"),
            &format!("name = \"{APP_USER}\"\n{user_keys}"),
            1,
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_read_your_writes_the_replica_misses_fresh_writes() {
    let cluster = delayed_cluster().await;
    let p = proxy::start(&config(&cluster, "", "")).await.unwrap();
    let (_, replica) = ids(&cluster).await;
    let (seen, servers) = write_then_read(&p, 1, 5).await;
    assert!(servers.iter().all(|s| *s == replica), "{servers:?}");
    assert!(
        seen < 5,
        "a 2 s delayed replica saw {seen} of 5 fresh writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causal_waits_on_the_replica_until_it_has_the_write() {
    let cluster = delayed_cluster().await;
    let toml = config(
        &cluster,
        "read-your-writes = \"causal\"\nread-your-writes-timeout-ms = 10000\n",
        "",
    );
    let p = proxy::start(&toml).await.unwrap();
    let (_, replica) = ids(&cluster).await;
    let t0 = Instant::now();
    let (seen, servers) = write_then_read(&p, 100, 3).await;
    assert_eq!(seen, 3, "every read sees its write");
    assert!(
        servers.iter().all(|s| *s == replica),
        "the replica answered after catching up: {servers:?}"
    );
    eprintln!(
        "3 causal reads on a {DELAY_SECS} s delayed replica took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causal_reads_move_to_the_write_backend_when_the_wait_times_out() {
    let cluster = delayed_cluster().await;
    // Per user: the default stays off, the application user is causal.
    let toml = config(
        &cluster,
        "read-your-writes-timeout-ms = 200\n",
        "read-your-writes = \"causal\"\n",
    );
    let p = proxy::start(&toml).await.unwrap();
    let (primary, _) = ids(&cluster).await;
    let (seen, servers) = write_then_read(&p, 200, 5).await;
    assert_eq!(seen, 5);
    assert!(servers.iter().all(|s| *s == primary), "{servers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_window_keeps_reads_on_the_write_backend_after_a_write() {
    let cluster = delayed_cluster().await;
    let toml = config(
        &cluster,
        "read-your-writes = \"primary-window\"\nread-your-writes-window-ms = 3000\n",
        "",
    );
    let p = proxy::start(&toml).await.unwrap();
    let (primary, replica) = ids(&cluster).await;
    let (seen, servers) = write_then_read(&p, 300, 5).await;
    assert_eq!(seen, 5);
    assert!(servers.iter().all(|s| *s == primary), "{servers:?}");
    // Once the window has passed, reads spread to the replica again.
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    assert_eq!(p.read_ids(10).await, [replica].into());
}

/// Reads `n` times where the session is; returns the values of `t.a` and the servers that
/// answered.
async fn read_fresh(c: &mut mysql_async::Conn, n: usize) -> Vec<(u32, u32)> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(
            c.query_first("SELECT a, @@server_id FROM t")
                .await
                .unwrap()
                .unwrap(),
        );
    }
    seen
}

/// A schema made on the primary that the replica has not replicated yet (its replication is
/// stopped here, as a lagging replica would be behind a fresh `CREATE DATABASE`) is read on
/// the primary: a login naming it, and a session that moved there with `USE` while its
/// pooled replica connection stays in another schema, where switching fails (1049). Once
/// the replica has the schema, reads go there again; a schema no server has is still
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_the_replica_does_not_have_yet_is_read_on_the_primary() {
    use mysql_async::{Conn, OptsBuilder};
    let cluster = Cluster::start(1).await.unwrap();
    let (primary, replica) = ids(&cluster).await;
    let mut replica_root = cluster.replicas[0].root_conn().await.unwrap();
    replica_root.query_drop("STOP SLAVE").await.unwrap();
    let mut primary_root = cluster.primary.root_conn().await.unwrap();
    for sql in [
        "CREATE DATABASE fresh_schema",
        "CREATE TABLE fresh_schema.t (a INT)",
        "INSERT INTO fresh_schema.t VALUES (7)",
    ] {
        primary_root.query_drop(sql).await.unwrap();
    }
    let p = proxy::start(&config(&cluster, "", "")).await.unwrap();
    let in_schema = |db: &str| OptsBuilder::from_opts(p.opts()).db_name(Some(db.to_string()));

    let mut logged_in = Conn::new(in_schema("fresh_schema")).await.unwrap();
    assert_eq!(read_fresh(&mut logged_in, 5).await, vec![(7, primary); 5]);

    let mut moved = p.conn().await.unwrap();
    let first: u32 = moved
        .query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, replica, "a read in the replicated schema");
    moved.query_drop("USE fresh_schema").await.unwrap();
    assert_eq!(read_fresh(&mut moved, 5).await, vec![(7, primary); 5]);
    // Nothing is held after reads without messages: a pooled connection answers, which the
    // replica's cannot bring to the schema either. (Its own session: the statement after
    // it would run where it ran.)
    let mut asking = Conn::new(in_schema("fresh_schema")).await.unwrap();
    assert_eq!(read_fresh(&mut asking, 1).await, vec![(7, primary)]);
    let warnings: Vec<mysql_async::Row> = asking.query("SHOW WARNINGS").await.unwrap();
    assert!(warnings.is_empty());
    drop(asking);

    let unknown = Conn::new(in_schema("no_such_schema")).await.unwrap_err();
    match unknown {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 1049, "{e}"),
        other => panic!("{other}"),
    }

    replica_root.query_drop("START SLAVE").await.unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    assert_eq!(read_fresh(&mut moved, 5).await, vec![(7, replica); 5]);
    assert_eq!(read_fresh(&mut logged_in, 5).await, vec![(7, replica); 5]);
}

/// A server's count of the prepares it was sent, failed ones included.
async fn prepares(root: &mut mysql_async::Conn) -> u64 {
    let (_, n): (String, u64) = root
        .query_first("SHOW GLOBAL STATUS LIKE 'Com_stmt_prepare'")
        .await
        .unwrap()
        .unwrap();
    n
}

/// A table made on the primary that the replica has not replicated yet (its replication is
/// stopped here) is read on the primary, as text or prepared: the replica's "no such table"
/// (1146) or "no such schema" (1049, for a name qualified with a new schema) never reaches
/// the client. A table
/// that exists nowhere gets the primary's error, as directly, and `SHOW WARNINGS` shows it.
/// Once the replica has the table, reads of it go there again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_replica_does_not_have_yet_is_read_on_the_primary() {
    let cluster = Cluster::start(1).await.unwrap();
    let (primary, replica) = ids(&cluster).await;
    let mut primary_root = cluster.primary.root_conn().await.unwrap();
    primary_root
        .query_drop(
            "CREATE TABLE rwtest.replicated (a INT); INSERT INTO rwtest.replicated VALUES (1)",
        )
        .await
        .unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    let mut replica_root = cluster.replicas[0].root_conn().await.unwrap();
    replica_root.query_drop("STOP SLAVE").await.unwrap();
    for sql in [
        "CREATE TABLE rwtest.fresh_table (a INT)",
        "INSERT INTO rwtest.fresh_table VALUES (8)",
        "CREATE DATABASE fresh_db",
        "CREATE TABLE fresh_db.t (a INT)",
        "INSERT INTO fresh_db.t VALUES (9)",
    ] {
        primary_root.query_drop(sql).await.unwrap();
    }
    let p = proxy::start(&config(&cluster, "", "")).await.unwrap();
    let mut c = p.conn().await.unwrap();
    for (sql, want) in [
        ("SELECT a, @@server_id FROM fresh_table", 8),
        ("SELECT a, @@server_id FROM fresh_db.t", 9),
    ] {
        for _ in 0..5 {
            let got: (u32, u32) = c.query_first(sql).await.unwrap().unwrap();
            assert_eq!(got, (want, primary), "{sql}");
        }
    }
    // Prepared (binary protocol): the replica cannot prepare it either, neither at the
    // prepare nor at an execute, which prepares it on the connection that runs it. Once it
    // failed there, its executes go to the primary directly for a while, rather than each
    // fail a prepare on the replica first.
    let before = prepares(&mut replica_root).await;
    for _ in 0..3 {
        let got: (u32, u32) = c
            .exec_first("SELECT a, @@server_id FROM fresh_table WHERE a = ?", (8,))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (8, primary));
    }
    assert_eq!(prepares(&mut replica_root).await - before, 1);
    let direct = cluster
        .primary
        .conn()
        .await
        .unwrap()
        .query_drop("SELECT * FROM no_such_table")
        .await;
    let through = c.query_drop("SELECT * FROM no_such_table").await;
    match (direct, through) {
        (Err(mysql_async::Error::Server(d)), Err(mysql_async::Error::Server(t))) => {
            assert_eq!(
                (t.code, &t.message, &t.state),
                (d.code, &d.message, &d.state)
            );
            assert_eq!(t.code, 1146);
        }
        other => panic!("{other:?}"),
    }
    let warnings: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].1, 1146, "{warnings:?}");
    // Only the reads that failed moved. The statement after an error runs where its message
    // is held (the write backend), the one after that on the replica again.
    let mut servers = Vec::new();
    for _ in 0..2 {
        let id: u32 = c
            .query_first("SELECT @@server_id FROM replicated")
            .await
            .unwrap()
            .unwrap();
        servers.push(id);
    }
    assert_eq!(servers, vec![primary, replica]);

    replica_root.query_drop("START SLAVE").await.unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    // Another shape: the one the replica refused goes to the write backend for a while yet
    // (`router::REPLICA_RECHECK`).
    for _ in 0..5 {
        let got: (u32, u32) = c
            .query_first("SELECT a, @@server_id FROM fresh_table WHERE a > 0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (8, replica));
    }
}

/// Rows with `id` in `ryw`, read as the session reads.
async fn rows_with(c: &mut mysql_async::Conn, id: u32) -> u32 {
    c.query_first(format!("SELECT COUNT(*) FROM ryw WHERE id = {id}"))
        .await
        .unwrap()
        .unwrap()
}

/// Writes whose reply is a result set (`RETURNING`, a stored function's write under a
/// `SELECT`), whose GTID no packet reports; a write after a warning held on a replica; and a
/// change of user: the read after each still sees it, on the 2 s delayed replica. (Before:
/// each read missed its write.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_a_reported_gtid_and_a_change_of_user_are_still_seen() {
    let cluster = delayed_cluster().await;
    let mut root = cluster.primary.root_conn().await.unwrap();
    for sql in [
        "CREATE OR REPLACE FUNCTION rwtest.ryw_ins(x INT) RETURNS INT MODIFIES SQL DATA DETERMINISTIC \
         BEGIN INSERT INTO rwtest.ryw VALUES (x); RETURN x; END",
        "CREATE USER IF NOT EXISTS 'ryw_other'@'127.0.0.1' IDENTIFIED BY 'other_pw'",
        "GRANT ALL ON rwtest.* TO 'ryw_other'@'127.0.0.1'",
    ] {
        root.query_drop(sql).await.unwrap();
    }
    cluster.wait_replicas_caught_up().await.unwrap();
    let toml = config(
        &cluster,
        "read-your-writes = \"causal\"\nread-your-writes-timeout-ms = 10000\n",
        "",
    ) + "[[user]]\nname = \"ryw_other\"\npassword = \"other_pw\"\n";
    let p = proxy::start(&toml).await.unwrap();
    let mut c = p.conn().await.unwrap();

    let id: Option<u32> = c
        .query_first("INSERT INTO ryw VALUES (300) RETURNING id")
        .await
        .unwrap();
    assert_eq!(id, Some(300));
    assert_eq!(rows_with(&mut c, 300).await, 1, "INSERT … RETURNING");
    let id: Option<u32> = c
        .query_first("DELETE FROM ryw WHERE id = 300 RETURNING id")
        .await
        .unwrap();
    assert_eq!(id, Some(300));
    assert_eq!(rows_with(&mut c, 300).await, 0, "DELETE … RETURNING");
    // Refused by the read-only replica, run again on the primary.
    let id: Option<u32> = c.query_first("SELECT ryw_ins(301)").await.unwrap();
    assert_eq!(id, Some(301));
    assert_eq!(rows_with(&mut c, 301).await, 1, "a function's write");

    // A division by zero warns: its replica connection is held for `SHOW WARNINGS` (a
    // fresh session's, which has no write to wait for yet).
    let mut w = p.conn().await.unwrap();
    let _: Option<Option<u32>> = w.query_first("SELECT 1/0").await.unwrap();
    w.query_drop("DO ryw_ins(302)").await.unwrap();
    assert_eq!(
        rows_with(&mut w, 302).await,
        1,
        "a read where a warning was held"
    );

    c.query_drop("INSERT INTO ryw VALUES (303)").await.unwrap();
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some("ryw_other".into()))
            .with_pass(Some("other_pw".into())),
    )
    .await
    .unwrap();
    assert_eq!(rows_with(&mut c, 303).await, 1, "after COM_CHANGE_USER");
}
