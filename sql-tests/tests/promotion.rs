//! Promotion and rejoin against a real sandbox cluster (HA-LAB.md, "MariaDB 10.11 failover"):
//! the replica applies everything it received before it becomes writable, the old primary
//! comes back as its replica, and one holding a write the new primary never got (errant GTID)
//! is kept out with the GTID named. Nor is a server promoted while another has transactions it
//! lacks, and a stopped replica's relay log is never thrown away to look drained.

use mysql_async::prelude::*;
use rwproxy_ha::db::{self, DbTarget, PromoteError, Promoted, RejoinError, Rejoined, Replication};
use rwproxy_sql_tests::sandbox::{Server, REPL_PASSWORD, REPL_USER};
use rwproxy_sql_tests::Cluster;
use std::time::Duration;

fn target(s: &Server) -> DbTarget {
    DbTarget {
        address: s.addr(),
        user: "root".into(),
        password: String::new(),
        timeout: Duration::from_secs(10),
    }
}

/// Every server of the cluster, as promotion's peers (the one promoted among them, as the
/// failover config lists it too).
fn peers(cluster: &Cluster) -> Vec<String> {
    cluster.servers().map(Server::addr).collect()
}

fn replication_to(s: &Server) -> Replication {
    Replication {
        host: "127.0.0.1".into(),
        port: s.port,
        user: REPL_USER.into(),
        password: REPL_PASSWORD.into(),
    }
}

async fn q<T: FromValue + Send + 'static>(s: &Server, sql: &str) -> T {
    let mut c = s.root_conn().await.unwrap();
    c.query_first(sql).await.unwrap().unwrap()
}

async fn exec(s: &Server, sql: &str) {
    let mut c = s.root_conn().await.unwrap();
    c.query_drop(sql).await.unwrap();
}

async fn setup_table(cluster: &Cluster) {
    exec(
        &cluster.primary,
        "CREATE TABLE rwtest.t (id INT PRIMARY KEY, v VARCHAR(20))",
    )
    .await;
    cluster.wait_replicas_caught_up().await.unwrap();
}

/// Waits until the replica's IO thread has received `pos` (its relay log holds it).
async fn wait_received(r: &Server, pos: &str) {
    for _ in 0..200 {
        let mut c = r.root_conn().await.unwrap();
        let row: mysql_async::Row = c.query_first("SHOW SLAVE STATUS").await.unwrap().unwrap();
        let io: String = row.get("Gtid_IO_Pos").unwrap();
        if io == pos {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica never received {pos}");
}

/// A backlog: 200 rows the replica received but has not applied when the primary dies.
/// Returns the primary's last position, which the replica received.
async fn backlog_then_primary_dies(cluster: &Cluster) -> String {
    let (p, r) = (&cluster.primary, &cluster.replicas[0]);
    exec(r, "STOP SLAVE SQL_THREAD").await;
    let mut c = p.root_conn().await.unwrap();
    for i in 0..200 {
        c.exec_drop("INSERT INTO rwtest.t VALUES (?, 'before')", (i,))
            .await
            .unwrap();
    }
    drop(c);
    let pos: String = q(p, "SELECT @@gtid_binlog_pos").await;
    wait_received(r, &pos).await;
    p.kill();
    pos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_drains_the_relay_log_and_the_old_primary_rejoins() {
    let cluster = Cluster::start(1).await.unwrap();
    setup_table(&cluster).await;
    let (p, r) = (&cluster.primary, &cluster.replicas[0]);
    let pos = backlog_then_primary_dies(&cluster).await;

    let out = db::promote(&target(r), &peers(&cluster), Duration::from_secs(30), false)
        .await
        .unwrap();
    assert!(
        matches!(&out, Promoted::Drained { applied, .. } if *applied == pos),
        "{out:?}"
    );
    assert_eq!(q::<u64>(r, "SELECT COUNT(*) FROM rwtest.t").await, 200);
    assert_eq!(q::<u8>(r, "SELECT @@read_only").await, 0);
    let mut c = r.root_conn().await.unwrap();
    let st: Option<mysql_async::Row> = c.query_first("SHOW SLAVE STATUS").await.unwrap();
    assert!(st.is_none(), "replication was not reset");
    // Promoting a primary again only (re)asserts read_only=OFF.
    assert_eq!(
        db::promote(&target(r), &peers(&cluster), Duration::from_secs(5), false)
            .await
            .unwrap(),
        Promoted::AlreadyPrimary
    );

    // The new primary takes writes; the old one comes back and rejoins as its replica.
    exec(r, "INSERT INTO rwtest.t VALUES (1000, 'after')").await;
    p.restart().await.unwrap();
    let out = db::rejoin(&target(p), &target(r), &replication_to(r))
        .await
        .unwrap();
    assert!(matches!(out, Rejoined::Started { .. }), "{out:?}");
    assert_eq!(q::<u8>(p, "SELECT @@read_only").await, 1);
    let pos: String = q(r, "SELECT @@gtid_binlog_pos").await;
    p.wait_gtid(&pos).await.unwrap();
    assert_eq!(q::<u64>(p, "SELECT COUNT(*) FROM rwtest.t").await, 201);
    // Asking again changes nothing.
    assert_eq!(
        db::rejoin(&target(p), &target(r), &replication_to(r))
            .await
            .unwrap(),
        Rejoined::AlreadyReplicating
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errant_transactions_keep_the_old_primary_out() {
    let cluster = Cluster::start(1).await.unwrap();
    setup_table(&cluster).await;
    let (p, r) = (&cluster.primary, &cluster.replicas[0]);
    // The replica stops hearing from the primary (a partition), which acknowledges one more
    // write, then dies.
    exec(r, "STOP SLAVE").await;
    exec(p, "INSERT INTO rwtest.t VALUES (1, 'errant')").await;
    let errant: String = q(p, "SELECT @@gtid_binlog_pos").await;
    p.kill();
    db::promote(&target(r), &peers(&cluster), Duration::from_secs(10), false)
        .await
        .unwrap();
    exec(r, "INSERT INTO rwtest.t VALUES (2, 'new primary')").await;

    p.restart().await.unwrap();
    let err = db::rejoin(&target(p), &target(r), &replication_to(r))
        .await
        .unwrap_err();
    assert!(err.needs_human(), "{err}");
    match &err {
        RejoinError::Errant { gtids, .. } => {
            assert_eq!(
                gtids.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
                vec![errant.clone()]
            )
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&errant), "{err}");
    // Read-only, and nothing replicates.
    assert_eq!(q::<u8>(p, "SELECT @@read_only").await, 1);
    let mut c = p.root_conn().await.unwrap();
    let st: Option<mysql_async::Row> = c.query_first("SHOW SLAVE STATUS").await.unwrap();
    assert!(st.is_none());
    assert_eq!(
        q::<String>(p, "SELECT GROUP_CONCAT(v) FROM rwtest.t").await,
        "errant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_sql_thread_is_not_promoted_unless_asked() {
    let cluster = Cluster::start(1).await.unwrap();
    setup_table(&cluster).await;
    let (p, r) = (&cluster.primary, &cluster.replicas[0]);
    // A row only the replica has makes the primary's insert of the same key fail there.
    exec(
        r,
        "SET STATEMENT sql_log_bin=0 FOR INSERT INTO rwtest.t VALUES (7, 'replica only')",
    )
    .await;
    exec(p, "INSERT INTO rwtest.t VALUES (7, 'primary')").await;
    for _ in 0..200 {
        let mut c = r.root_conn().await.unwrap();
        let row: mysql_async::Row = c.query_first("SHOW SLAVE STATUS").await.unwrap().unwrap();
        if row.get::<String, _>("Slave_SQL_Running").unwrap() == "No" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.kill();
    let err = db::promote(&target(r), &peers(&cluster), Duration::from_secs(5), false)
        .await
        .unwrap_err();
    assert!(err.is_drain_failure(), "{err}");
    assert!(
        matches!(err, PromoteError::SqlThread { errno: 1062, .. }),
        "{err}"
    );
    assert_eq!(q::<u8>(r, "SELECT @@read_only").await, 1, "made writable");
    // promote_anyway: availability over consistency, by choice.
    let out = db::promote(&target(r), &peers(&cluster), Duration::from_secs(2), true)
        .await
        .unwrap();
    assert!(matches!(out, Promoted::Anyway { .. }), "{out:?}");
    assert_eq!(q::<u8>(r, "SELECT @@read_only").await, 0);
}

/// Relay log files the replica still has.
async fn relay_logs(r: &Server) -> usize {
    let mut c = r.root_conn().await.unwrap();
    let dir: String = c.query_first("SELECT @@datadir").await.unwrap().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.contains("relay") && !name.ends_with(".index") && !name.ends_with(".info")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_keeps_its_relay_log_and_is_not_promoted() {
    let cluster = Cluster::start(1).await.unwrap();
    setup_table(&cluster).await;
    let r = &cluster.replicas[0];
    let pos = backlog_then_primary_dies(&cluster).await;
    // Both threads stopped (an operator, or --skip-slave-start after a restart): starting one
    // would discard the 200 rows received.
    exec(r, "STOP SLAVE IO_THREAD").await;
    let logs = relay_logs(r).await;
    let err = db::promote(&target(r), &peers(&cluster), Duration::from_secs(5), false)
        .await
        .unwrap_err();
    assert!(matches!(err, PromoteError::Stranded { .. }), "{err}");
    assert!(err.is_drain_failure(), "{err}");
    assert_eq!(q::<u8>(r, "SELECT @@read_only").await, 1, "made writable");
    let mut c = r.root_conn().await.unwrap();
    let row: mysql_async::Row = c.query_first("SHOW SLAVE STATUS").await.unwrap().unwrap();
    assert_eq!(row.get::<String, _>("Gtid_IO_Pos").unwrap(), pos);
    assert_eq!(row.get::<String, _>("Slave_SQL_Running").unwrap(), "No");
    assert_eq!(relay_logs(r).await, logs, "relay log touched");
    assert!(logs > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_another_is_not_promoted_nor_a_stale_old_primary() {
    let cluster = Cluster::start(2).await.unwrap();
    setup_table(&cluster).await;
    let (p, behind, ahead) = (&cluster.primary, &cluster.replicas[0], &cluster.replicas[1]);
    // `behind` stopped receiving; the primary acknowledged 50 more rows, which only `ahead` got.
    exec(behind, "STOP SLAVE IO_THREAD").await;
    let mut c = p.root_conn().await.unwrap();
    for i in 0..50 {
        c.exec_drop("INSERT INTO rwtest.t VALUES (?, 'acked')", (i,))
            .await
            .unwrap();
    }
    drop(c);
    let pos: String = q(p, "SELECT @@gtid_binlog_pos").await;
    ahead.wait_gtid(&pos).await.unwrap();
    // Then a tail of five rows only the primary logged (acknowledged, never replicated).
    exec(ahead, "STOP SLAVE IO_THREAD").await;
    let mut c = p.root_conn().await.unwrap();
    for i in 100..105 {
        c.exec_drop("INSERT INTO rwtest.t VALUES (?, 'tail')", (i,))
            .await
            .unwrap();
    }
    drop(c);
    p.kill();

    let err = db::promote(
        &target(behind),
        &peers(&cluster),
        Duration::from_secs(5),
        false,
    )
    .await
    .unwrap_err();
    match &err {
        PromoteError::PeerAhead { peer, gtids } => {
            assert_eq!(
                (peer.as_str(), gtids.as_str()),
                (ahead.addr().as_str(), pos.as_str())
            )
        }
        other => panic!("{other}"),
    }
    assert!(err.is_drain_failure(), "{err}");
    assert_eq!(q::<u8>(behind, "SELECT @@read_only").await, 1);
    // The one that has everything is promoted.
    let out = db::promote(
        &target(ahead),
        &peers(&cluster),
        Duration::from_secs(5),
        false,
    )
    .await
    .unwrap();
    assert!(matches!(out, Promoted::Drained { .. }), "{out:?}");
    for id in 1000..1003 {
        exec(
            ahead,
            &format!("INSERT INTO rwtest.t VALUES ({id}, 'new primary')"),
        )
        .await;
    }

    // The old primary comes back (read-only, as advised) and, say, takes the VIP back by
    // preemption. Its tail numbers past the new primary's three writes, which it lacks: the
    // histories diverged, and it is not made the primary.
    p.restart().await.unwrap();
    exec(p, "SET GLOBAL read_only = ON").await;
    let err = db::promote(&target(p), &peers(&cluster), Duration::from_secs(5), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PromoteError::PeerAhead { peer, .. } if *peer == ahead.addr()),
        "{err}"
    );
    assert_eq!(q::<u8>(p, "SELECT @@read_only").await, 1);
    assert_eq!(q::<u64>(p, "SELECT COUNT(*) FROM rwtest.t").await, 55);
    // A primary at work told MASTER again (the HA daemon restarted) is left writable.
    assert_eq!(
        db::promote(
            &target(ahead),
            &peers(&cluster),
            Duration::from_secs(5),
            false
        )
        .await
        .unwrap(),
        Promoted::AlreadyPrimary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoin_does_not_wait_on_commits_no_replica_acknowledges() {
    let cluster = Cluster::start(1).await.unwrap();
    setup_table(&cluster).await;
    let (p, r) = (&cluster.primary, &cluster.replicas[0]);
    // Semi-sync with no replica acknowledging (as when partitioned from them): a commit waits
    // 60 s for an acknowledgement, then succeeds anyway.
    exec(
        p,
        "SET GLOBAL rpl_semi_sync_master_timeout = 60000, \
         rpl_semi_sync_master_wait_no_slave = ON, rpl_semi_sync_master_enabled = ON",
    )
    .await;
    let mut writer = p.root_conn().await.unwrap();
    let insert = tokio::spawn(async move {
        writer
            .query_drop("INSERT INTO rwtest.t VALUES (1, 'waits for an ack')")
            .await
    });
    for _ in 0..100 {
        let waiting: u64 = q(
            p,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE STATE LIKE 'Waiting for semi-sync ACK%'",
        )
        .await;
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The node lost the VIP (a track script lowered its priority): BACKUP, rejoin.
    let started = std::time::Instant::now();
    let rejoined = tokio::time::timeout(
        Duration::from_secs(20),
        db::rejoin(&target(p), &target(r), &replication_to(r)),
    )
    .await;
    assert!(
        rejoined.is_ok(),
        "rejoin still waiting after {:?}",
        started.elapsed()
    );
    assert_eq!(q::<u8>(p, "SELECT @@read_only").await, 1);
    // Its client is told nothing was acknowledged: the connection was killed.
    let r = insert.await.unwrap();
    assert!(r.is_err(), "the write was acknowledged: {r:?}");
    exec(p, "SET GLOBAL rpl_semi_sync_master_enabled = OFF").await;
}
