//! `rwproxy notify -c CONFIG INSTANCE name STATE prio`, as keepalived calls it, against a real
//! sandbox cluster: BACKUP leaves a healthy replica alone, MASTER promotes it after the
//! primary died, and BACKUP on the returning old primary makes it a replica of the new one.

use mysql_async::prelude::*;
use rwproxy_sql_tests::sandbox::{Server, REPL_PASSWORD, REPL_USER};
use rwproxy_sql_tests::Cluster;
use std::path::Path;
use std::process::Command;

fn config(dir: &Path, name: &str, local: &Server, primary: &Server) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[admin]\nlisten = \"127.0.0.1:1\"\n\
             [[backend]]\naddress = \"{p}\"\nrole = \"rw\"\n\
             [ha.failover]\naddress = \"{l}\"\nuser = \"root\"\n\
             replication_user = \"{REPL_USER}\"\nreplication_password = \"{REPL_PASSWORD}\"\n\
             primary = \"{p}\"\ndrain_timeout = 10\n",
            p = primary.addr(),
            l = local.addr(),
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn notify(conf: &str, state: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(["notify", "-c", conf, "INSTANCE", "VI_1", state, "100"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn read_only(s: &Server) -> u8 {
    let mut c = s.root_conn().await.unwrap();
    c.query_first("SELECT @@read_only").await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalived_notify_promotes_and_rejoins() {
    let cluster = Cluster::start(1).await.unwrap();
    let (p, r) = (&cluster.primary, &cluster.replicas[0]);
    let dir = cluster.dir().to_path_buf();
    let on_replica = config(&dir, "replica.toml", r, p);
    let (ok, err) = notify(&on_replica, "BACKUP");
    assert!(ok, "{err}");
    assert!(err.contains("Replica"), "{err}");
    assert_eq!(read_only(r).await, 1);

    let mut c = p.root_conn().await.unwrap();
    c.query_drop("CREATE TABLE rwtest.n (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO rwtest.n VALUES (1), (2)")
        .await
        .unwrap();
    drop(c);
    cluster.wait_replicas_caught_up().await.unwrap();
    p.kill();
    let (ok, err) = notify(&on_replica, "MASTER");
    assert!(ok, "{err}");
    assert!(err.contains("Primary"), "{err}");
    assert_eq!(read_only(r).await, 0);

    // The old primary returns; keepalived makes it BACKUP.
    p.restart().await.unwrap();
    let on_old = config(&dir, "old.toml", p, r);
    let (ok, err) = notify(&on_old, "BACKUP");
    assert!(ok, "{err}");
    assert_eq!(read_only(p).await, 1);
    let mut c = r.root_conn().await.unwrap();
    c.query_drop("INSERT INTO rwtest.n VALUES (3)")
        .await
        .unwrap();
    let pos: String = c
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    p.wait_gtid(&pos).await.unwrap();

    // FAULT: read-only, nothing else.
    let (ok, err) = notify(&on_replica, "FAULT");
    assert!(ok, "{err}");
    assert_eq!(read_only(r).await, 1);
}
