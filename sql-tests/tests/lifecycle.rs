//! Proxy lifecycle: stopping without cutting transactions short (what SIGTERM does), and
//! re-reading the config file live (what SIGHUP does).

use mysql_async::prelude::*;
use rwproxy_sql_tests::raw::{LoginOptions, RawConn};
use rwproxy_sql_tests::{cli, proxy, Cluster, APP_PASSWORD, APP_USER, DATABASE};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::OnceCell;

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async { Cluster::start(2).await.expect("sandbox cluster") })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_lets_open_transactions_finish() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut idle = p.conn().await.unwrap();
    let _: Option<u32> = idle.query_first("SELECT 1").await.unwrap();
    let mut txn = p.conn().await.unwrap();
    txn.query_drop("CREATE TABLE IF NOT EXISTS lc_t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    txn.query_drop("DELETE FROM lc_t").await.unwrap();
    txn.query_drop("BEGIN").await.unwrap();
    txn.query_drop("INSERT INTO lc_t VALUES (1)").await.unwrap();

    p.stop.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The idle session is closed; the transaction goes on and commits.
    assert!(idle.query_drop("SELECT 1").await.is_err());
    txn.query_drop("INSERT INTO lc_t VALUES (2)").await.unwrap();
    txn.query_drop("COMMIT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(txn.query_drop("SELECT 1").await.is_err());
    let mut direct = cl.primary.conn().await.unwrap();
    let n: u32 = direct
        .query_first("SELECT COUNT(*) FROM lc_t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_backends_users_and_clients() {
    let cl = cluster().await;
    let dir = std::env::temp_dir().join(format!("rwproxy-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rwproxy.toml");
    let full = proxy::config_toml(cl, &[1, 1], "");
    std::fs::write(&path, &full).unwrap();
    let p = proxy::start_config(rwproxy::config::load(&path).unwrap())
        .await
        .unwrap();
    let (r1, r2) = (cl.replicas[0].server_id, cl.replicas[1].server_id);
    assert_eq!(p.read_ids(60).await, BTreeSet::from([r1, r2]));

    // Drop the second replica and let only 10.9.9.9 in: a session that is already open keeps
    // working, new logins from loopback are refused.
    let second = format!(
        "[[backend]]\naddress = \"{}\"\nrole = \"ro\"\nweight = 1\nmax-connections = 50\n",
        cl.replica_addrs()[1]
    );
    let mut open = p.conn().await.unwrap();
    std::fs::write(
        &path,
        full.replace(&second, "").replacen(
            "[proxy]\n",
            "[proxy]\nclient-ips = [\"10.9.9.9\"]\n",
            1,
        ),
    )
    .unwrap();
    p.backends.reload_from(&path).unwrap();
    let mut ids = BTreeSet::new();
    for _ in 0..40 {
        ids.insert(
            open.query_first::<u32, _>("SELECT @@server_id")
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(ids, BTreeSet::from([r1]));
    assert!(p.conn().await.is_err());

    // A broken file changes nothing.
    std::fs::write(&path, "[proxy]\nlisten = \"nowhere\"\n").unwrap();
    assert!(p.backends.reload_from(&path).is_err());
    assert!(p.conn().await.is_err());

    // Back to the full file: both replicas and loopback clients again.
    std::fs::write(&path, &full).unwrap();
    p.backends.reload_from(&path).unwrap();
    assert_eq!(p.read_ids(60).await, BTreeSet::from([r1, r2]));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reload (SIGHUP, which logrotate sends every night) does not undo what the admin console
/// changed since the file was loaded or saved: a failover's `ADD MASTER`/`REMOVE BACKEND`,
/// a password, a client address. It is refused, naming SAVE CONFIG, until the console's
/// changes are saved; then the file (now holding them) applies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_never_undoes_unsaved_console_changes() {
    let cl = cluster().await;
    let dir = std::env::temp_dir().join(format!("rwproxy-unsaved-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rwproxy.toml");
    std::fs::write(&path, proxy::config_toml(cl, &[1], "")).unwrap();
    let p = proxy::start_config(rwproxy::config::load(&path).unwrap())
        .await
        .unwrap();
    let r1 = cl.replicas[0].server_id;
    let mut admin = p.admin().await;
    // The first replica, taken out at the console.
    admin.remove_backend(2).await.unwrap();
    assert!(!p.read_ids(20).await.contains(&r1));
    let refused = p.backends.reload_from(&path).unwrap_err().to_string();
    assert!(refused.contains("SAVE CONFIG"), "{refused}");
    assert!(
        !p.read_ids(20).await.contains(&r1),
        "the reload undid the removal"
    );

    admin.execute("SAVE CONFIG").await.unwrap();
    p.backends.reload_from(&path).unwrap();
    assert!(
        !p.read_ids(20).await.contains(&r1),
        "the saved file lost the removal"
    );
    admin.add_slave(&cl.replica_addrs()[0], 1).await.unwrap();
    assert!(p.backends.reload_from(&path).is_err());
    assert!(p.read_ids(40).await.contains(&r1));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A client's own `SET wait_timeout` closes its session when idle that long, as a server
/// closes the connection, whichever backend connections its statements borrowed (here with
/// `autocommit=0` too, between transactions); `DEFAULT` gives the proxy's timeout back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_own_wait_timeout_closes_it() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut short = p.conn().await.unwrap();
    let mut transactional = p.conn().await.unwrap();
    let mut reverted = p.conn().await.unwrap();
    short.query_drop("SET wait_timeout = 1").await.unwrap();
    transactional
        .query_drop("SET autocommit = 0, wait_timeout = 1")
        .await
        .unwrap();
    transactional.query_drop("COMMIT").await.unwrap();
    reverted.query_drop("SET wait_timeout = 1").await.unwrap();
    reverted
        .query_drop("SET wait_timeout = DEFAULT")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(short.query_drop("SELECT 1").await.is_err());
    assert!(transactional.query_drop("SELECT 1").await.is_err());
    let one: Option<u32> = reverted.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

/// The next command of a session closed at its `wait_timeout` fails as it does against the
/// server: "server has gone away" (2006), on which client libraries and frameworks reconnect
/// and retry, not "lost connection during query" (2013), on which they must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_is_server_gone_away_as_on_the_server() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let script = "SET SESSION wait_timeout = 1;\nSELECT 1;\n\\! sleep 2.5\nSELECT 2;\n";
    let [direct, via] = [cl.primary.port, p.addr.port()]
        .map(|port| cli::mariadb(port, APP_PASSWORD, &["--skip-reconnect"], Some(script)));
    assert!(!direct.0, "{direct:?}");
    assert!(direct.2.contains("ERROR 2006 (HY000)"), "{direct:?}");
    assert_eq!(via, direct);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timeout_closes_idle_sessions_only() {
    let cl = cluster().await;
    let toml = proxy::config_toml(cl, &[1, 1], "").replacen(
        "connect-timeout-ms = 1000\n",
        "connect-timeout-ms = 1000\nwait-timeout = 1\n",
        1,
    );
    assert!(toml.contains("wait-timeout = 1"));
    let p = proxy::start(&toml).await.unwrap();
    let mut idle = p.conn().await.unwrap();
    let mut busy = p.conn().await.unwrap();
    let _: Option<u32> = idle.query_first("SELECT 1").await.unwrap();
    // A statement every 300 ms for 2.4 s: never idle for the timeout, though its session
    // outlives it twice over (the idle sweeper passes over it about ten times).
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let one: Option<u32> = busy.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    assert!(idle.query_drop("SELECT 1").await.is_err());
    let one: Option<u32> = busy.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

/// Interactive clients (the `mariadb` command line) are closed at `interactive-timeout`, not
/// `wait-timeout`, as a server does; `SET wait_timeout = DEFAULT` gives them `wait-timeout`.
/// (Before: closed at `wait-timeout` like any client.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_clients_wait_interactive_timeout() {
    let cl = cluster().await;
    let toml = proxy::config_toml(cl, &[1, 1], "").replacen(
        "connect-timeout-ms = 1000\n",
        "connect-timeout-ms = 1000\nwait-timeout = 1\ninteractive-timeout = 3\n",
        1,
    );
    let p = proxy::start(&toml).await.unwrap();
    let interactive = || async {
        let opts = LoginOptions {
            extra_capabilities: mysql_common::constants::CapabilityFlags::CLIENT_INTERACTIVE,
            ..Default::default()
        };
        let c = RawConn::login(p.addr, APP_USER, APP_PASSWORD, DATABASE, opts)
            .await
            .unwrap();
        assert_eq!(c.login_reply[..1], [0], "logged in");
        c
    };
    let mut cli = interactive().await;
    let mut reverted = interactive().await;
    reverted.query("SET wait_timeout = DEFAULT").await.unwrap();
    let mut plain = p.conn().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(plain.query_drop("SELECT 1").await.is_err(), "closed at 1 s");
    assert!(reverted.query("SELECT 1").await.is_err(), "closed at 1 s");
    cli.query("SELECT 1").await.expect("still open after 2 s");
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert!(cli.query("SELECT 1").await.is_err(), "closed at 3 s");
}
