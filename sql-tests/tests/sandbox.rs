//! The harness itself has to be trustworthy before proxy suites build on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use rwproxy_sql_tests::sandbox::{Cluster, MONITOR_PASSWORD, MONITOR_USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replicates_and_survives_replica_restart() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let cluster = Cluster::start(2).await?;
    eprintln!("cluster (primary + 2 replicas) up in {:?}", t0.elapsed());

    let mut p = cluster.primary.conn().await?;
    let (id, ro): (u32, u8) = p
        .query_first("SELECT @@server_id, @@read_only")
        .await?
        .unwrap();
    assert_eq!((id, ro), (1, 0));
    for (i, r) in cluster.replicas.iter().enumerate() {
        let mut c = r.conn().await?;
        let (id, ro): (u32, u8) = c
            .query_first("SELECT @@server_id, @@read_only")
            .await?
            .unwrap();
        assert_eq!((id, ro), (i as u32 + 2, 1));
        // The app user must not be able to bypass read_only, or a misrouted
        // write would silently diverge the replica.
        let err = c
            .query_drop("CREATE TABLE nope (id INT)")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("read-only"), "{err}");
    }

    p.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await?;
    p.query_drop("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
        .await?;
    cluster.wait_replicas_caught_up().await?;
    for r in &cluster.replicas {
        let mut c = r.conn().await?;
        let rows: Vec<(u32, String)> = c.query("SELECT id, v FROM t ORDER BY id").await?;
        assert_eq!(rows, vec![(1, "one".into()), (2, "two".into())]);
    }

    // Crash a replica, write while it is down, bring it back: it must resume
    // from its GTID position on the same port.
    let victim = &cluster.replicas[0];
    let old_pid = victim.pid();
    victim.kill();
    assert!(!victim.is_running());
    assert!(victim.conn().await.is_err());
    p.query_drop("INSERT INTO t VALUES (3, 'three')").await?;
    let t1 = Instant::now();
    victim.restart().await?;
    eprintln!("replica restarted in {:?}", t1.elapsed());
    assert_ne!(victim.pid(), old_pid);
    cluster.wait_replicas_caught_up().await?;
    let mut c = victim.conn().await?;
    let n: u32 = c.query_first("SELECT COUNT(*) FROM t").await?.unwrap();
    assert_eq!(n, 3);

    // A paused server keeps its port but answers nothing.
    let other = &cluster.replicas[1];
    other.pause();
    let hung = tokio::time::timeout(std::time::Duration::from_millis(500), other.conn()).await;
    assert!(hung.is_err(), "a paused server must not answer");
    other.resume();
    other.conn().await?.query_drop("SELECT 1").await?;

    // Crash the primary: the replicas must reconnect on their own once it is back.
    drop(p);
    let t3 = Instant::now();
    cluster.primary.kill();
    cluster.primary.restart().await?;
    eprintln!("primary restarted in {:?}", t3.elapsed());
    let mut p = cluster.primary.conn().await?;
    p.query_drop("INSERT INTO t VALUES (4, 'four')").await?;
    let t4 = Instant::now();
    cluster.wait_replicas_caught_up().await?;
    eprintln!(
        "replicas caught up after primary restart in {:?}",
        t4.elapsed()
    );
    for r in &cluster.replicas {
        let n: u32 = r
            .conn()
            .await?
            .query_first("SELECT COUNT(*) FROM t")
            .await?
            .unwrap();
        assert_eq!(n, 4);
    }

    // The monitor account sees replication state (what health checks will poll).
    let mut m = Conn::new(cluster.replicas[0].opts(MONITOR_USER, MONITOR_PASSWORD)).await?;
    let st: Option<Row> = m.query_first("SHOW SLAVE STATUS").await?;
    let io: String = st.unwrap().get("Slave_IO_Running").unwrap();
    assert_eq!(io, "Yes");
    drop(m);

    let dir = cluster.dir().to_path_buf();
    let t2 = Instant::now();
    drop(cluster);
    eprintln!("cluster torn down in {:?}", t2.elapsed());
    assert!(!dir.exists());
    Ok(())
}

#[tokio::test]
async fn two_clusters_in_parallel_get_distinct_ports() -> anyhow::Result<()> {
    let (a, b) = tokio::try_join!(Cluster::start(1), Cluster::start(1))?;
    let mut ports: Vec<u16> = a.servers().chain(b.servers()).map(|s| s.port).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 4);
    a.wait_replicas_caught_up().await?;
    b.wait_replicas_caught_up().await?;
    Ok(())
}

/// `sandbox up` and `down` on a directory of the user's touch only their own: a failed `up`
/// removed the whole directory, `down` removed every subdirectory named `node…`, and a pid
/// file whose pid now belonged to another sandbox's server (in a directory whose name this
/// one's prefixes) stopped that server.
#[test]
fn the_sandbox_command_leaves_what_is_not_its_own() -> anyhow::Result<()> {
    let base = std::env::temp_dir().join(format!("rwproxy-own-{}", std::process::id()));
    let mine = PathBuf::from(format!("{}b", base.display()));
    for d in [&base, &mine] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d.join("node_modules/x"))?;
        std::fs::create_dir_all(d.join("nodes"))?;
        std::fs::write(d.join("important.txt"), "keep")?;
    }
    let _down = Down([base.clone(), mine.clone()]);
    let kept = |d: &Path| {
        ["important.txt", "node_modules/x", "nodes"]
            .iter()
            .all(|f| d.join(f).exists())
    };

    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = busy.local_addr()?.port().to_string();
    let failed = sandbox(&[
        "up",
        "--dir",
        &base.display().to_string(),
        "--base-port",
        &port,
        "--replicas",
        "0",
    ])?;
    assert!(!failed.status.success(), "up on a busy port succeeded");
    assert!(kept(&base), "a failed up removed what was in its directory");
    drop(busy);

    let up = sandbox(&[
        "up",
        "--dir",
        &mine.display().to_string(),
        "--replicas",
        "0",
    ])?;
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let pid = std::fs::read_to_string(mine.join("node1/server.pid"))?;
    // A stale pid file in `base`, whose pid is now `mine`'s server.
    std::fs::create_dir_all(base.join("node1"))?;
    std::fs::write(base.join("node1/server.pid"), &pid)?;
    std::fs::write(base.join("node1/error.log"), "")?;
    let down = sandbox(&["down", "--dir", &base.display().to_string()])?;
    assert!(down.status.success());
    let alive = Path::new(&format!("/proc/{}", pid.trim())).exists();
    assert!(
        alive,
        "down of {} stopped the server of {}",
        base.display(),
        mine.display()
    );

    let down = sandbox(&["down", "--dir", &mine.display().to_string()])?;
    assert!(down.status.success());
    assert!(kept(&mine), "down removed what was not the sandbox's");
    assert!(!mine.join("node1").exists());
    Ok(())
}

fn sandbox(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(args)
        .output()?)
}

/// Stops what the test started and removes its directories, pass or fail.
struct Down([PathBuf; 2]);

impl Drop for Down {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = sandbox(&["down", "--dir", &d.display().to_string()]);
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
