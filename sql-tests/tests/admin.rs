//! The admin console end to end: Atlas's commands through the stock `mariadb` CLI (as
//! keepalived notify scripts run them) and through the typed client, acting on a live proxy.

use mysql_async::prelude::*;
use rwproxy_admin::client::ClientError;
use rwproxy_admin::{BackendRole, BackendState};
use rwproxy_sql_tests::proxy::{self, Proxy, ADMIN_PASSWORD, ADMIN_USER};
use rwproxy_sql_tests::Cluster;
use std::process::Command;
use tokio::sync::OnceCell;

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async { Cluster::start(2).await.expect("sandbox cluster") })
        .await
}

/// Runs the `mariadb` CLI against the admin port; returns (success, stdout, stderr).
fn cli(p: &Proxy, password: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{}", p.admin_addr.port()),
            &format!("-u{ADMIN_USER}"),
            &format!("-p{password}"),
        ])
        .args(args)
        .output()
        .expect("run mariadb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A driver (mysql_async, multi-statements on) logged in to the admin console.
async fn admin_driver(p: &Proxy) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(p.admin_addr.port())
        .user(Some(ADMIN_USER))
        .pass(Some(ADMIN_PASSWORD))
        .prefer_socket(false)
        .stmt_cache_size(0);
    mysql_async::Conn::new(opts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atlas_commands_through_the_mariadb_cli() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();

    let (ok, out, err) = cli(
        &p,
        ADMIN_PASSWORD,
        &["--batch", "-e", "SELECT * FROM backends"],
    );
    assert!(ok, "{err}");
    let expected = format!(
        "backend_ndx\taddress\tstate\ttype\n1\t{}\tup\trw\n2\t{}\tup\tro\n3\t{}\tup\tro\n",
        cl.primary_addr(),
        cl.replica_addrs()[0],
        cl.replica_addrs()[1]
    );
    assert_eq!(out, expected);

    // Case, whitespace and a trailing `;` as scripts write them.
    let (ok, out, err) = cli(
        &p,
        ADMIN_PASSWORD,
        &["--batch", "-e", "select   *  from HELP;"],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("command\tdescription\n"), "{out}");
    assert!(out.contains("SELECT * FROM backends"), "{out}");

    // A keepalived notify hook's line, verbatim: the replica leaves the read pool at once.
    let (ok, out, err) = cli(&p, ADMIN_PASSWORD, &["-e", "SET OFFLINE 3;"]);
    assert!(ok, "{err}");
    assert!(out.contains("offline"), "{out}");
    let replica2 = cl.replicas[1].server_id;
    assert!(!p.read_ids(40).await.contains(&replica2));
    let (ok, _, err) = cli(&p, ADMIN_PASSWORD, &["-e", "set online 3"]);
    assert!(ok, "{err}");
    assert!(p.read_ids(60).await.contains(&replica2));

    // Errors are MySQL errors that say what was wrong.
    let (ok, _, err) = cli(&p, ADMIN_PASSWORD, &["-e", "SELECT * FROM nothing"]);
    assert!(!ok);
    assert!(
        err.contains("use 'SELECT * FROM help' to see the supported commands"),
        "{err}"
    );
    let (ok, _, err) = cli(&p, ADMIN_PASSWORD, &["-e", "REMOVE BACKEND 9"]);
    assert!(!ok);
    assert!(err.contains("backend 9 does not exist"), "{err}");

    // Admin credentials are not application credentials, and vice versa.
    let (ok, _, err) = cli(&p, "wrong", &["-e", "SELECT * FROM backends"]);
    assert!(!ok);
    assert!(err.contains("ERROR 1045 (28000)"), "{err}");
    let mut app_on_admin = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(p.admin_addr.port())
        .user(Some(rwproxy_sql_tests::APP_USER))
        .pass(Some(rwproxy_sql_tests::APP_PASSWORD))
        .prefer_socket(false);
    app_on_admin = app_on_admin.stmt_cache_size(0);
    assert!(mysql_async::Conn::new(app_on_admin).await.is_err());
}

/// The console's numbers are declared as numbers, as Atlas declares `backend_ndx`: drivers
/// hand them to scripts as numbers, and the `mysql` client aligns them to the right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_numbers_are_declared_as_numbers() {
    use mysql_async::consts::{ColumnFlags, ColumnType};
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut admin = admin_driver(&p).await;
    let rows: Vec<mysql_async::Row> = admin.query("SELECT * FROM backends").await.unwrap();
    let columns = rows[0].columns();
    assert_eq!(columns[0].name_str(), "backend_ndx");
    assert_eq!(columns[0].column_type(), ColumnType::MYSQL_TYPE_LONGLONG);
    assert!(columns[0]
        .flags()
        .contains(ColumnFlags::NUM_FLAG | ColumnFlags::UNSIGNED_FLAG));
    assert_eq!(columns[1].column_type(), ColumnType::MYSQL_TYPE_VAR_STRING);
    let ndx: Vec<u32> = rows.iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(ndx, [1, 2, 3]);
    let rows: Vec<mysql_async::Row> = admin.query("SELECT * FROM stats").await.unwrap();
    for r in &rows {
        let integers: Vec<String> = r
            .columns_ref()
            .iter()
            .filter(|c| c.column_type() == ColumnType::MYSQL_TYPE_LONGLONG)
            .map(|c| c.name_str().into_owned())
            .collect();
        assert_eq!(
            integers,
            [
                "backend_ndx",
                "weight",
                "conns_in_use",
                "conns_idle",
                "queries",
                "errors",
                "avg_latency_us",
                "lag_seconds"
            ]
        );
    }
    // The typed client reads them as before.
    let mut client = p.admin().await;
    assert_eq!(client.backends().await.unwrap().len(), 3);
}

/// `SET` on the console is all or nothing, as on a server: a statement with one bad setting
/// changes none. And a runtime setting set with `SESSION` is refused, not ignored while the
/// DBA thinks it took effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_set_is_all_or_nothing() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let drain_timeout = || {
        let (ok, out, err) = cli(&p, ADMIN_PASSWORD, &["-N", "-e", "SELECT @@drain_timeout"]);
        assert!(ok, "{err}");
        out.trim().to_string()
    };
    let before = drain_timeout();
    let (ok, _, err) = cli(
        &p,
        ADMIN_PASSWORD,
        &["-e", "SET GLOBAL drain_timeout = 7, no_such_setting = 1"],
    );
    assert!(!ok);
    assert!(err.contains("ERROR 1193"), "{err}");
    assert_eq!(drain_timeout(), before);
    let (ok, _, err) = cli(
        &p,
        ADMIN_PASSWORD,
        &["-e", "SET drain_timeout = 7, drain_timeout = 'x'"],
    );
    assert!(!ok);
    assert!(err.contains("ERROR 1231"), "{err}");
    assert_eq!(drain_timeout(), before);
    let (ok, _, err) = cli(&p, ADMIN_PASSWORD, &["-e", "SET SESSION drain_timeout = 7"]);
    assert!(!ok);
    assert!(err.contains("ERROR 1229 (HY000)"), "{err}");
    assert!(err.contains("should be set with SET GLOBAL"), "{err}");
    assert_eq!(drain_timeout(), before);
    let (ok, _, err) = cli(&p, ADMIN_PASSWORD, &["-e", "SET GLOBAL drain_timeout = 7"]);
    assert!(ok, "{err}");
    assert_eq!(drain_timeout(), "7");
}

/// Text the console cannot parse, non-ASCII included, gets a parse error and the session goes
/// on: a non-ASCII character next to a keyword used to panic the session, which dropped the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_statements_get_parse_errors() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut a = p.admin().await;
    for sql in [
        "SET aaaaé=1",
        "SHOW VARIABLES liké",
        "SET naméé=1",
        "SET GLOBAL 😀 = 1",
        "SHOW VARIABLES LIKE 'é",
        "SELECT 'é",
    ] {
        match a.execute(sql).await {
            Err(ClientError::Server {
                code,
                state,
                message,
            }) => assert_eq!((code, state.as_str()), (1064, "42000"), "{sql}: {message}"),
            other => panic!("{sql}: {other:?}"),
        }
        assert_eq!(a.backends().await.unwrap().len(), 3, "after {sql}");
    }
}

/// The console runs one command at a time, whole: from a driver with multi-statements on
/// (mysql_async, mysqlclient), `a; b` is refused rather than read as one command (a password
/// `s3cret; SAVE CONFIG` was added, and `SET NAMES ...; SET OFFLINE 3` answered OK having
/// done nothing), `SET NAMES` no longer hides the assignments after it, Connector/J's
/// connect-time query (its name in a comment first) is answered, and a command that is not
/// UTF-8 is refused (its bytes became U+FFFD, in a password nobody could type).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_taken_one_at_a_time_and_whole() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut multi = admin_driver(&p).await;
    let mut typed = p.admin().await;
    for sql in [
        "SET NAMES utf8mb4; SET OFFLINE 3",
        "ADD PWD mso:s3cret; SAVE CONFIG",
    ] {
        match multi.query_drop(sql).await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!((e.code, e.state.as_str()), (1064, "42000"), "{sql}");
                assert!(e.message.contains("one command at a time"), "{}", e.message);
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    let backends = typed.backends().await.unwrap();
    assert_eq!(backends[2].state, BackendState::Up);
    let users = typed.users().await.unwrap();
    assert!(users.iter().all(|(u, _)| u != "mso"), "{users:?}");

    multi
        .query_drop("SET NAMES utf8mb4, drain_timeout = 7")
        .await
        .unwrap();
    let row: (u32, u32, String) = multi
        .query_first("/* mysql-connector-j-8.4.0 (Revision: 1a2b3c) */ SELECT @@drain_timeout, @@query_cache_size, @@query_cache_type")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, (7, 0, "OFF".to_string()));

    let mut latin1 =
        rwproxy_sql_tests::raw::RawConn::connect(p.admin_addr, ADMIN_USER, ADMIN_PASSWORD, "")
            .await
            .unwrap();
    let reply = latin1.command(b"\x03ADD PWD dave:caf\xe9").await.unwrap();
    let e = rwproxy_sql_tests::raw::err_text(&reply[0]);
    assert!(e.starts_with("1300 (HY000)"), "{e}");
    let users = typed.users().await.unwrap();
    assert!(users.iter().all(|(u, _)| u != "dave"), "{users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_added_and_removed_live() {
    let cl = cluster().await;
    // Start with only the primary and the first replica.
    let toml = proxy::config_toml(cl, &[1, 1], "");
    let second = format!(
        "[[backend]]\naddress = \"{}\"\nrole = \"ro\"\nweight = 1\nmax-connections = 50\n",
        cl.replica_addrs()[1]
    );
    assert!(toml.contains(&second));
    let without_second = toml.replace(&second, "");
    let p = proxy::start(&without_second).await.unwrap();
    let mut a = p.admin().await;
    assert_eq!(a.backends().await.unwrap().len(), 2);
    let replica2 = cl.replicas[1].server_id;
    assert!(!p.read_ids(30).await.contains(&replica2));

    // Atlas's regex rejected `@weight`; here it works and the new replica serves reads.
    a.add_slave(&cl.replica_addrs()[1], 3).await.unwrap();
    let b = a.backends().await.unwrap();
    assert_eq!(b.len(), 3);
    assert_eq!(b[2].address, cl.replica_addrs()[1]);
    // Unknown until the monitor's first probe (as Atlas), then up.
    assert_eq!(b[2].role, BackendRole::ReadOnly);
    assert!(
        matches!(b[2].state, BackendState::Unknown | BackendState::Up),
        "{:?}",
        b[2].state
    );
    let stats = a.stats().await.unwrap();
    assert_eq!(stats[2].weight, 3);
    assert!(p.read_ids(60).await.contains(&replica2));

    // Hostnames work too (Atlas #99), and duplicates are refused.
    let port = cl.replicas[0].port;
    assert!(a.add_slave(&format!("127.0.0.1:{port}"), 1).await.is_err());
    a.add_slave(&format!("localhost:{port}"), 1).await.unwrap();
    assert_eq!(a.backends().await.unwrap().len(), 4);
    a.remove_backend(4).await.unwrap();

    // An address may serve in both roles, as in a config file and in Atlas: a failover
    // script's `ADD MASTER <replica>` comes before its `REMOVE BACKEND <old primary>`.
    let replica1 = cl.replica_addrs()[0].clone();
    a.add_master(&replica1).await.unwrap();
    assert!(a.add_master(&replica1).await.is_err());
    let added = a
        .backends()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.address == replica1 && b.role == BackendRole::ReadWrite)
        .expect("the replica's address as a master too");
    a.remove_backend(added.ndx).await.unwrap();
    assert_eq!(a.backends().await.unwrap().len(), 3);

    // A session inside a transaction on the primary is not disturbed by removing a replica.
    let mut txn = p.conn().await.unwrap();
    txn.query_drop("BEGIN").await.unwrap();
    let sid: u32 = txn
        .query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    a.remove_backend(3).await.unwrap();
    let again: u32 = txn
        .query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sid, again);
    txn.query_drop("COMMIT").await.unwrap();
    assert!(!p.read_ids(30).await.contains(&replica2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_users_change_live() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut a = p.admin().await;

    // pwds: shown Atlas-encrypted; a new user can log in at once; a removed one cannot.
    let users = a.users().await.unwrap();
    assert!(users.iter().any(|(u, _)| u == "app"));
    let mut root = cl.primary.root_conn().await.unwrap();
    root.query_drop("CREATE USER IF NOT EXISTS 'adm_new'@'%' IDENTIFIED BY 'mypwd'")
        .await
        .unwrap();
    root.query_drop("GRANT SELECT ON *.* TO 'adm_new'@'%'")
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    a.add_encrypted_user("adm_new", "HJBoxfRsjeI=")
        .await
        .unwrap();
    let users = a.users().await.unwrap();
    assert!(users.contains(&("adm_new".to_string(), "HJBoxfRsjeI=".to_string())));
    let opts = |user: &str, pass: &str| {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(p.addr.port())
            .user(Some(user.to_string()))
            .pass(Some(pass.to_string()))
            .prefer_socket(false)
    };
    let mut c = mysql_async::Conn::new(opts("adm_new", "mypwd"))
        .await
        .unwrap();
    let one: u32 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    a.remove_user("adm_new").await.unwrap();
    assert!(mysql_async::Conn::new(opts("adm_new", "mypwd"))
        .await
        .is_err());

    // client-ips: allowing only another address locks loopback clients out, live.
    assert!(a.clients().await.unwrap().is_empty());
    a.add_client("10.9.9.9").await.unwrap();
    assert!(p.conn().await.is_err());
    // The last entry cannot go (the list would admit everyone); loopback back in first.
    match a.remove_client("10.9.9.9").await {
        Err(ClientError::Server { message, .. }) => {
            assert!(message.contains("last client-ips entry"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    a.add_client("127.0.0.1").await.unwrap();
    a.remove_client("10.9.9.9").await.unwrap();
    p.conn().await.unwrap();

    assert_eq!(a.version().await.unwrap(), env!("CARGO_PKG_VERSION"));
}

/// A server user `name` (SELECT on everything) the proxy knows too, a proxy in front of the
/// cluster, and a session logged in as that user.
async fn proxy_and_session_of_new_user(
    cl: &Cluster,
    name: &str,
    password: &str,
) -> (Proxy, mysql_async::Conn) {
    let mut root = cl.primary.root_conn().await.unwrap();
    for sql in [
        format!("CREATE OR REPLACE USER '{name}'@'%' IDENTIFIED BY '{password}'"),
        format!("GRANT SELECT ON *.* TO '{name}'@'%'"),
    ] {
        root.query_drop(sql).await.unwrap();
    }
    cl.wait_replicas_caught_up().await.unwrap();
    let user = format!("[[user]]\nname = \"{name}\"\npassword = \"{password}\"\n");
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], &user))
        .await
        .unwrap();
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(p.addr.port())
        .user(Some(name))
        .pass(Some(password))
        .prefer_socket(false);
    let session = mysql_async::Conn::new(opts).await.unwrap();
    (p, session)
}

/// A password rotated on the servers and then at the console (`REMOVE PWD`, `ADD PWD`)
/// reaches sessions that logged in before it: the backend connections they open from then on
/// log in with the new one (with the old one, every statement that needed a new connection
/// got 1045).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_reaches_open_sessions() {
    let cl = cluster().await;
    let (p, mut open) = proxy_and_session_of_new_user(cl, "adm_rot", "old_pw").await;
    let mut root = cl.primary.root_conn().await.unwrap();
    open.query_drop("SELECT 1").await.unwrap();

    root.query_drop("ALTER USER 'adm_rot'@'%' IDENTIFIED BY 'new_pw'")
        .await
        .unwrap();
    cl.wait_replicas_caught_up().await.unwrap();
    let mut a = p.admin().await;
    // As on Atlas, ADD PWD does not replace a user's password: a typo must not take another
    // user's login.
    let refused = a
        .add_user("adm_rot", "new_pw")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("user adm_rot already exists: REMOVE PWD adm_rot first"),
        "{refused}"
    );
    a.remove_user("adm_rot").await.unwrap();
    a.add_user("adm_rot", "new_pw").await.unwrap();
    // Every pooled connection closed: the session's next statements need new ones.
    for ndx in 1..=3 {
        a.set_offline(ndx).await.unwrap();
        a.set_online(ndx).await.unwrap();
    }
    for _ in 0..10 {
        open.query_drop("SELECT 1").await.unwrap();
    }
    root.query_drop("DROP USER 'adm_rot'@'%'").await.unwrap();
}

/// A connection kept for `SHOW WARNINGS` on a backend taken offline serves one more, and
/// closes at the session's next other statement: a session that sends statements back to back, each keeping the messages,
/// held it open for good (the idle release never came).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_an_offline_backend_do_not_hold_its_connection() {
    let cl = cluster().await;
    let (p, mut c) = proxy_and_session_of_new_user(cl, "adm_held", "held_pw").await;
    // Warns on a replica, and the next table-less read runs where the warning is.
    c.query_drop("SELECT 1/0").await.unwrap();
    let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    let replica = &cl.replicas[id as usize - 2];
    let mut root = replica.root_conn().await.unwrap();
    let sql = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'adm_held'";
    let open: u32 = root.query_first(sql).await.unwrap().unwrap();
    assert_eq!(open, 1, "the held connection on server {id}");
    let mut a = p.admin().await;
    // Backends are numbered from 1, the primary first.
    a.set_offline(id as usize).await.unwrap();
    // Still there for a SHOW WARNINGS right after.
    let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    let mut counts = Vec::new();
    for _ in 0..12 {
        c.query_drop("SELECT 1").await.unwrap();
        counts.push(root.query_first::<u32, _>(sql).await.unwrap().unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(counts.last(), Some(&0), "connections over time: {counts:?}");
    a.set_online(id as usize).await.unwrap();
    cl.primary
        .root_conn()
        .await
        .unwrap()
        .query_drop("DROP USER 'adm_held'@'%'")
        .await
        .unwrap();
}

/// The console's `KILL QUERY` stops a statement of a user removed from the proxy since it
/// logged in (its sessions run on): the kill logs in with the session's own password then.
/// It answered OK and the statement ran to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_kill_reaches_sessions_of_a_removed_user() {
    let cl = cluster().await;
    let (p, mut c) = proxy_and_session_of_new_user(cl, "adm_gone", "gone_pw").await;
    let mut root = cl.primary.root_conn().await.unwrap();
    let id: u32 = c
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move { c.query_drop("SELECT SLEEP(5)").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut a = p.admin().await;
    a.remove_user("adm_gone").await.unwrap();
    a.execute(&format!("KILL QUERY {id}")).await.unwrap();
    let outcome = sleeper.await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "the statement ran on: {outcome:?}"
    );
    root.query_drop("DROP USER 'adm_gone'@'%'").await.unwrap();
}

/// `ADD CLIENT` and `REMOVE CLIENT` take exactly the entries an Atlas file's `client-ips`
/// takes, and find the file's entries however they are written there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_entries_as_the_config_file_writes_them() {
    let cl = cluster().await;
    let cnf = format!(
        "[mysql-proxy]\nproxy-address = 127.0.0.1:0\nadmin-address = 127.0.0.1:0\n\
         admin-username = {ADMIN_USER}\nadmin-password = {ADMIN_PASSWORD}\n\
         proxy-backend-addresses = {}\nproxy-read-only-backend-addresses = {}\n\
         pwds = app:{}\nclient-ips = 127.0.0.1, FE80::1, 10.1.*\n",
        cl.primary_addr(),
        cl.replica_addrs()[0],
        rwproxy::config::atlas_encrypt(rwproxy_sql_tests::APP_PASSWORD)
    );
    let cfg = rwproxy::config::parse_str(
        std::path::Path::new("atlas.cnf"),
        &cnf,
        rwproxy::config::ConfigFormat::Atlas,
    )
    .unwrap();
    let p = proxy::start_config(cfg).await.unwrap();
    let mut a = p.admin().await;

    a.add_client("192.168.1.*").await.unwrap();
    p.conn().await.unwrap();
    // The same addresses written another way are already there, under the name the list has.
    match a.add_client("192.168.1.0/24").await {
        Err(ClientError::Server { message, .. }) => assert!(
            message.contains("client 192.168.1.* already exists"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    a.remove_client("fe80::1").await.unwrap();
    a.remove_client("10.1.0.0/16").await.unwrap();
    assert_eq!(a.clients().await.unwrap(), ["127.0.0.1", "192.168.1.*"]);

    // What the file refuses, the console refuses, as a parse error.
    for bad in ["192.168.1.*.*", "host.example", "10.0.0.0/33", "fe80::g"] {
        match a.add_client(bad).await {
            Err(ClientError::Server {
                code,
                state,
                message,
            }) => {
                assert_eq!((code, state.as_str()), (1064, "42000"), "{bad}: {message}");
                assert!(
                    message.contains(&format!("invalid client address '{bad}'")),
                    "{message}"
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    a.remove_client("127.0.0.1").await.unwrap();
    assert!(p.conn().await.is_err(), "loopback is no longer allowed");
}

/// `SAVE CONFIG` writes the live backend list, weights, users and clients into the file the
/// proxy was started with, in its own format; a proxy started from it again is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_config_survives_a_restart() {
    let cl = cluster().await;
    let dir = std::env::temp_dir().join(format!("rwproxy-admin-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml_path = dir.join("rwproxy.toml");
    let text = format!(
        "# operators' comment, kept\n{}",
        proxy::config_toml(cl, &[1], "")
    );
    let second = format!(
        "[[backend]]\naddress = \"{}\"\nrole = \"ro\"\nweight = 1\nmax-connections = 50\n",
        cl.replica_addrs()[1]
    );
    std::fs::write(&toml_path, text.replace(&second, "")).unwrap();
    let atlas_path = dir.join("atlas.cnf");
    std::fs::write(
        &atlas_path,
        format!(
            "[mysql-proxy]\n# Atlas style\nproxy-address = 127.0.0.1:0\nadmin-address = 127.0.0.1:0\n\
             admin-username = {ADMIN_USER}\nadmin-password = {ADMIN_PASSWORD}\n\
             proxy-backend-addresses = {}\nproxy-read-only-backend-addresses = {}\n\
             pwds = app:{}\n",
            cl.primary_addr(),
            cl.replica_addrs()[0],
            rwproxy::config::atlas_encrypt(rwproxy_sql_tests::APP_PASSWORD)
        ),
    )
    .unwrap();

    for path in [&toml_path, &atlas_path] {
        let before = std::fs::read_to_string(path).unwrap();
        let cfg = rwproxy::config::load(path).unwrap();
        let p = proxy::start_config(cfg).await.unwrap();
        let mut a = p.admin().await;
        a.add_slave(&cl.replica_addrs()[1], 4).await.unwrap();
        a.add_user("saved_user", "s3cret").await.unwrap();
        a.add_client("127.0.0.1").await.unwrap();
        a.save_config().await.unwrap();
        let live = a.backends().await.unwrap();
        let live_stats = a.stats().await.unwrap();
        let live_users = a.users().await.unwrap();
        drop(p);

        let after = std::fs::read_to_string(path).unwrap();
        let first_comment = before.lines().find(|l| l.starts_with('#')).unwrap();
        assert!(after.contains(first_comment), "{after}");
        let p = proxy::start_config(rwproxy::config::load(path).unwrap())
            .await
            .unwrap();
        let mut a = p.admin().await;
        // States are the monitor's (a backend added live may not be probed yet).
        let shape = |b: Vec<rwproxy_admin::control::BackendInfo>| {
            b.into_iter()
                .map(|b| (b.ndx, b.address, b.role, b.weight))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shape(a.backends().await.unwrap()),
            shape(live),
            "{}",
            path.display()
        );
        let weights: Vec<u32> = a.stats().await.unwrap().iter().map(|s| s.weight).collect();
        let live_weights: Vec<u32> = live_stats.iter().map(|s| s.weight).collect();
        assert_eq!(weights, live_weights);
        assert_eq!(weights, vec![1, 1, 4]);
        assert_eq!(a.users().await.unwrap(), live_users);
        assert_eq!(a.clients().await.unwrap(), vec!["127.0.0.1".to_string()]);
        // The saved user and the application user both still log in through the proxy.
        p.conn().await.unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A replica taken out for maintenance stays out across a restart: `SAVE CONFIG` writes
/// `offline = true` for it (and the drain time), a proxy started from the file keeps it
/// offline (no reads reach it), a reload applies the key, and once the replica is back
/// online and saved again the key is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_states_survive_save_config_and_a_restart() {
    let cl = cluster().await;
    let dir = std::env::temp_dir().join(format!("rwproxy-admin-offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rwproxy.toml");
    let original = proxy::config_toml(cl, &[1, 1], "");
    std::fs::write(&path, &original).unwrap();
    let replica2 = cl.replicas[1].server_id;
    let start = || async {
        proxy::start_config(rwproxy::config::load(&path).unwrap())
            .await
            .unwrap()
    };

    let p = start().await;
    let mut a = p.admin().await;
    // A change undone (as failover hooks do) leaves the file current: SIGHUP still applies.
    a.set_offline(3).await.unwrap();
    a.set_online(3).await.unwrap();
    a.set_variable("drain_timeout", "7").await.unwrap();
    a.set_variable("drain_timeout", "30").await.unwrap();
    p.backends.reload_from(&path).unwrap();
    a.set_offline(3).await.unwrap();
    // Unsaved, the state makes the file stale: a reload would bring the replica back.
    assert!(p.backends.reload_from(&path).is_err());
    a.set_variable("drain_timeout", "7").await.unwrap();
    a.save_config().await.unwrap();
    let saved = std::fs::read_to_string(&path).unwrap();
    assert_eq!(saved.matches("offline = true").count(), 1, "{saved}");
    assert!(saved.contains("\ndrain-timeout = 7\n"), "{saved}");
    drop(p);

    let p = start().await;
    let mut a = p.admin().await;
    let state = |b: Vec<rwproxy_admin::control::BackendInfo>| b[2].state;
    assert_eq!(state(a.backends().await.unwrap()), BackendState::Offline);
    assert!(!p.read_ids(40).await.contains(&replica2));
    let drain = ("drain_timeout".to_string(), "7".to_string());
    assert!(a.variables(None).await.unwrap().contains(&drain));
    // The monitor leaves it alone.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(state(a.backends().await.unwrap()), BackendState::Offline);

    a.set_online(3).await.unwrap();
    assert!(p.read_ids(60).await.contains(&replica2));
    a.set_variable("drain_timeout", "30").await.unwrap();
    a.save_config().await.unwrap();
    // The key written stays, with the value.
    let back = std::fs::read_to_string(&path).unwrap();
    assert_eq!(back.replace("drain-timeout = 30\n", ""), original);

    // A reload applies the key both ways.
    std::fs::write(&path, &saved).unwrap();
    p.backends.reload_from(&path).unwrap();
    assert_eq!(state(a.backends().await.unwrap()), BackendState::Offline);
    assert!(!p.read_ids(40).await.contains(&replica2));
    assert!(a.variables(None).await.unwrap().contains(&drain));
    std::fs::write(&path, &original).unwrap();
    p.backends.reload_from(&path).unwrap();
    assert!(p.read_ids(60).await.contains(&replica2));
    drop(p);

    // An Atlas file cannot hold the state: a reload (logrotate's nightly SIGHUP) leaves it
    // as the operator set it rather than bringing the replica back.
    let atlas = dir.join("atlas.cnf");
    std::fs::write(
        &atlas,
        format!(
            "[mysql-proxy]\nproxy-address = 127.0.0.1:0\nadmin-address = 127.0.0.1:0\n\
             admin-username = {ADMIN_USER}\nadmin-password = {ADMIN_PASSWORD}\n\
             proxy-backend-addresses = {}\nproxy-read-only-backend-addresses = {}\n\
             pwds = app:{}\n",
            cl.primary_addr(),
            cl.replica_addrs().join(","),
            rwproxy::config::atlas_encrypt(rwproxy_sql_tests::APP_PASSWORD)
        ),
    )
    .unwrap();
    let p = proxy::start_config(rwproxy::config::load(&atlas).unwrap())
        .await
        .unwrap();
    let mut a = p.admin().await;
    a.set_offline(3).await.unwrap();
    a.set_variable("drain_timeout", "7").await.unwrap();
    p.backends.reload_from(&atlas).unwrap();
    assert_eq!(state(a.backends().await.unwrap()), BackendState::Offline);
    assert!(a.variables(None).await.unwrap().contains(&drain));
    assert!(!p.read_ids(40).await.contains(&replica2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `SELECT * FROM sessions` shows who is connected, where their transaction runs and what
/// they are running right now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_table_shows_live_sessions() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut a = p.admin().await;
    // Logged in to the schema, no command sent yet.
    let fresh = rwproxy_sql_tests::raw::RawConn::connect(
        p.addr,
        rwproxy_sql_tests::APP_USER,
        rwproxy_sql_tests::APP_PASSWORD,
        rwproxy_sql_tests::DATABASE,
    )
    .await
    .unwrap();
    let mut idle = p.conn().await.unwrap();
    idle.query_drop("SELECT 1").await.unwrap();
    let mut txn = p.conn().await.unwrap();
    txn.query_drop("BEGIN").await.unwrap();
    txn.query_drop("SELECT 1").await.unwrap();
    let mut busy = p.conn().await.unwrap();
    let sleeper = tokio::spawn(async move {
        busy.query_drop("SELECT SLEEP(1.5)").await.unwrap();
        busy
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let sessions = a.sessions().await.unwrap();
    assert_eq!(sessions.len(), 4, "{sessions:?}");
    assert!(sessions.iter().all(|s| s.user == "app"));
    assert!(sessions
        .iter()
        .all(|s| s.schema.as_deref() == Some("rwtest")));
    let in_txn: Vec<_> = sessions.iter().filter(|s| s.in_transaction).collect();
    assert_eq!(in_txn.len(), 1, "{sessions:?}");
    assert_eq!(
        in_txn[0].backend.as_deref(),
        Some(cl.primary_addr().as_str())
    );
    let running: Vec<_> = sessions.iter().filter(|s| s.statement.is_some()).collect();
    assert_eq!(running.len(), 1, "{sessions:?}");
    assert_eq!(running[0].statement.as_deref(), Some("SELECT SLEEP(1.5)"));
    assert!(running[0].statement_age_ms.unwrap() >= 500);
    // Where it runs, though the session holds no connection between statements: a DBA
    // about to take that backend offline sees it.
    let on = running[0]
        .backend
        .as_deref()
        .expect("the running statement's backend");
    assert!(cl.replica_addrs().iter().any(|r| r == on), "{on}");
    drop(sleeper.await.unwrap());
    drop(idle);
    drop(fresh);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(a.sessions().await.unwrap().len(), 1);
    txn.query_drop("COMMIT").await.unwrap();
}

/// `SELECT * FROM digests` groups statements by shape, over both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_group_statements_by_shape() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE TABLE IF NOT EXISTS dg_t (id INT PRIMARY KEY, v VARCHAR(10))")
        .await
        .unwrap();
    c.query_drop("DELETE FROM dg_t").await.unwrap();
    for i in 0..5 {
        c.query_drop(format!("INSERT INTO dg_t VALUES ({i}, 'v{i}')"))
            .await
            .unwrap();
    }
    cl.wait_replicas_caught_up().await.unwrap();
    for i in 0..3 {
        let _: Vec<(i32, String)> = c
            .exec("SELECT id, v FROM dg_t WHERE id >= ?", (i,))
            .await
            .unwrap();
    }
    let mut a = p.admin().await;
    // A statement's digest is recorded just after its reply has gone to the client.
    let t0 = std::time::Instant::now();
    let d = loop {
        let d = a.digests().await.unwrap();
        let selects = d
            .iter()
            .find(|x| x.digest == "SELECT id, v FROM dg_t WHERE id >= ?")
            .map_or(0, |x| x.count);
        if selects >= 3 || t0.elapsed() > std::time::Duration::from_secs(2) {
            break d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let find = |text: &str| {
        d.iter()
            .find(|x| x.digest == text)
            .unwrap_or_else(|| panic!("no digest {text:?} in {d:?}"))
    };
    let ins = find("INSERT INTO dg_t VALUES (?,...)");
    assert_eq!((ins.count, ins.rows), (5, 5));
    let sel = find("SELECT id, v FROM dg_t WHERE id >= ?");
    assert_eq!((sel.count, sel.rows), (3, 5 + 4 + 3));
    assert!(sel.max_time_us > 0 && sel.total_time_us >= sel.max_time_us);
}

/// A transaction on a backend taken offline may finish within `drain_timeout`; after that its
/// session is closed and the server rolls the transaction back, releasing its locks even
/// while the client stays silent. (A statement that comes after the drain time, before the
/// session is closed, gets 1927 naming it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_ends_sessions_left_on_an_offline_backend() {
    let cl = cluster().await;
    let p = proxy::start(&proxy::config_toml(cl, &[1, 1], ""))
        .await
        .unwrap();
    let mut a = p.admin().await;
    assert!(a
        .variables(Some("drain_timeout"))
        .await
        .unwrap()
        .contains(&("drain_timeout".to_string(), "30".to_string())));
    // Past a year is refused (it wrapped to milliseconds before).
    assert!(a
        .set_variable("drain_timeout", "18446744073709552")
        .await
        .is_err());

    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE TABLE IF NOT EXISTS drain_t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    c.query_drop("INSERT IGNORE INTO drain_t VALUES (1, 0)")
        .await
        .unwrap();
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE drain_t SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    a.set_offline(1).await.unwrap();
    // Within the drain time the transaction goes on where it is.
    c.query_drop("UPDATE drain_t SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    // A shorter drain time applies to sessions already draining too.
    a.set_variable("drain_timeout", "1").await.unwrap();
    // Then, with the client silent, its row lock goes.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut d = cl.primary.conn().await.unwrap();
    d.query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .unwrap();
    d.query_drop("UPDATE drain_t SET v = v WHERE id = 1")
        .await
        .expect("the drained transaction still holds its lock");
    assert!(
        c.query_drop("SELECT 1").await.is_err(),
        "session must be closed"
    );
    a.set_online(1).await.unwrap();
    // A backend brought back within the drain time keeps its sessions.
    let mut c = p.conn().await.unwrap();
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE drain_t SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    a.set_offline(1).await.unwrap();
    a.set_online(1).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    c.query_drop("COMMIT")
        .await
        .expect("the session of a backend back online");
    p.conn()
        .await
        .unwrap()
        .query_drop("SELECT 1")
        .await
        .unwrap();
}

/// `SAVE CONFIG` after changes that also move settings derived from them: a user's own
/// `read-your-writes` goes with the user, and a `[ha.ipvs]` virtual server without
/// `real_server` tables balances over whatever read backends there are. Neither may make the
/// save refuse (the file cannot be saved otherwise, ever again), and the file must load as
/// the live configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_config_after_changes_to_derived_settings() {
    let dir = std::env::temp_dir().join(format!("rwproxy-admin-derived-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rwproxy.toml");
    // Backends nobody listens on: saving needs no database.
    let port = || rwproxy_sql_tests::sandbox::free_port().unwrap();
    let (primary, replica, added) = (port(), port(), port());
    std::fs::write(
        &path,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n\
             [admin]\nusername = \"{ADMIN_USER}\"\npassword = \"{ADMIN_PASSWORD}\"\n\
             [[backend]]\naddress = \"127.0.0.1:{primary}\"\nrole = \"rw\"\n\
             [[backend]]\naddress = \"127.0.0.1:{replica}\"\nrole = \"ro\"\n\
             [[user]]\nname = \"app\"\npassword = \"app_pw\"\n\
             [[user]]\nname = \"reporting\"\npassword = \"r_pw\"\nread-your-writes = \"causal\"\n\
             [[ha.ipvs.virtual_server]]\nip = \"192.0.2.200\"\nport = 3306\nuser = \"monitor\"\n"
        ),
    )
    .unwrap();
    let p = proxy::start_config(rwproxy::config::load(&path).unwrap())
        .await
        .unwrap();
    let mut a = p.admin().await;

    a.remove_user("reporting").await.unwrap();
    a.save_config().await.unwrap();
    let saved = rwproxy::config::load(&path).unwrap();
    assert!(!saved.users.iter().any(|u| u.name == "reporting"));
    assert!(saved.read_your_writes.per_user.is_empty());

    a.add_slave(&format!("127.0.0.1:{added}"), 3).await.unwrap();
    a.save_config().await.unwrap();
    let saved = rwproxy::config::load(&path).unwrap();
    let real: Vec<(u16, u32)> = saved.ipvs.virtual_servers[0]
        .real_servers
        .iter()
        .map(|r| (r.addr.port(), r.weight))
        .collect();
    assert_eq!(real, vec![(replica, 1), (added, 3)]);

    a.remove_backend(2).await.unwrap();
    a.save_config().await.unwrap();
    let saved = rwproxy::config::load(&path).unwrap();
    assert_eq!(saved.ipvs.virtual_servers[0].real_servers.len(), 1);
    assert_eq!(saved.backends.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A write waiting for room in the write backend's full pool goes where the backend list says
/// once it gets a connection: not to the backend an operator set offline meanwhile (in a
/// failover, the old primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_for_a_connection_does_not_run_on_a_backend_set_offline_meanwhile() {
    let c = cluster().await;
    let toml = proxy::config_toml(c, &[1, 1], "").replacen(
        "max-connections = 50",
        "max-connections = 1",
        1,
    );
    let p = proxy::start(&toml).await.unwrap();
    let mut a = p.conn().await.unwrap();
    a.query_drop("CREATE TABLE IF NOT EXISTS waited_t (who VARCHAR(8))")
        .await
        .unwrap();
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO waited_t VALUES ('a')")
        .await
        .unwrap();
    let mut b = p.conn().await.unwrap();
    let waiting =
        tokio::spawn(async move { b.query_drop("INSERT INTO waited_t VALUES ('b')").await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    p.admin().await.execute("SET OFFLINE 1").await.unwrap();
    // The transaction on it may finish (drain-timeout); its connection goes back to the pool.
    a.query_drop("COMMIT").await.unwrap();
    let e = waiting.await.unwrap().unwrap_err();
    match &e {
        mysql_async::Error::Server(se) => assert_eq!(se.code, 1429, "{e}"),
        other => panic!("{other}"),
    }
    let mut direct = c.primary.conn().await.unwrap();
    let rows: Vec<String> = direct.query("SELECT who FROM waited_t").await.unwrap();
    assert_eq!(rows, ["a"]);
}
