//! Observability: the Prometheus exporter scraped over HTTP and parsed with a Prometheus
//! text-format parser, and Atlas's SQL log written by a proxy in front of a real cluster.

use mysql_async::prelude::*;
use prometheus_parse::{Scrape, Value};
use rwproxy_sql_tests::raw::RawConn;
use rwproxy_sql_tests::sandbox::{MONITOR_PASSWORD, MONITOR_USER};
use rwproxy_sql_tests::{proxy, Cluster, APP_PASSWORD, APP_USER, DATABASE};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one HTTP/1.1 request and returns (status line, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

async fn scrape(addr: std::net::SocketAddr) -> Scrape {
    let (status, body) = http_get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid exposition text")
}

/// The value of the sample `name` whose labels include all of `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"));
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name}: unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_and_parsed() {
    let cluster = Cluster::start(2).await.unwrap();
    let toml = proxy::config_toml(&cluster, &[], "")
        + &format!(
            "[monitor]\nuser = \"{MONITOR_USER}\"\npassword = \"{MONITOR_PASSWORD}\"\ninterval-ms = 200\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n"
        );
    let p = proxy::start(&toml).await.unwrap();
    let addr = p.metrics_addr.expect("exporter started");

    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE TABLE IF NOT EXISTS m (id INT PRIMARY KEY)")
        .await
        .unwrap();
    for i in 0..20 {
        let _: Option<u32> = c.query_first("SELECT @@server_id").await.unwrap();
        c.query_drop(format!("REPLACE INTO m VALUES ({i})"))
            .await
            .unwrap();
    }
    // Enough reads for both replicas: a session reads from one for runs of 16.
    for _ in 0..40 {
        let _: Option<u32> = c.query_first("SELECT @@server_id").await.unwrap();
    }
    c.query_drop("BEGIN").await.unwrap();
    for _ in 0..5 {
        let _: Option<i64> = c.query_first("SELECT COUNT(*) FROM m").await.unwrap();
    }
    c.query_drop("COMMIT").await.unwrap();
    assert!(c.query_drop("SELECT * FROM no_such_table").await.is_err());
    // Lag is probed in whole seconds: a replica still applying the writes can show 1.
    cluster.wait_replicas_caught_up().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;

    let s = scrape(addr).await;
    let read = value(&s, "rwproxy_queries_total", &[("route", "read")]);
    let write = value(&s, "rwproxy_queries_total", &[("route", "write")]);
    let session = value(&s, "rwproxy_queries_total", &[("route", "session")]);
    // The proxy answers the `BEGIN` and sends it with the transaction's first read, which
    // counts as a write (it opens the transaction on the write backend), the other reads
    // and the `COMMIT` as the session's.
    assert!(read >= 21.0, "read {read}");
    assert!(write >= 22.0, "write {write}");
    assert!(session >= 5.0, "session {session}");
    let hist = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "rwproxy_query_duration_seconds" && x.labels.get("route") == Some("read")
        })
        .expect("latency histogram");
    let Value::Histogram(buckets) = &hist.value else {
        panic!("{:?}", hist.value)
    };
    let inf = buckets.last().unwrap();
    assert!(
        inf.less_than.is_infinite() && inf.count == read,
        "{buckets:?}"
    );
    assert!(
        value(&s, "rwproxy_errors_total", &[("kind", "server_error")]) >= 1.0,
        "the failed SELECT is counted"
    );
    assert_eq!(value(&s, "rwproxy_client_connections", &[]), 1.0);
    assert_eq!(
        value(&s, "rwproxy_client_connections_refused_total", &[]),
        0.0
    );
    assert!(value(&s, "rwproxy_client_connections_max", &[]) >= 16.0);
    for b in std::iter::once(cluster.primary_addr()).chain(cluster.replica_addrs()) {
        let labels = [("backend", b.as_str()), ("state", "up")];
        assert_eq!(value(&s, "rwproxy_backend_state", &labels), 1.0, "{b}");
        assert!(value(&s, "rwproxy_backend_queries_total", &[("backend", &b)]) > 0.0);
        let in_use = [("backend", b.as_str()), ("state", "idle")];
        assert!(value(&s, "rwproxy_backend_connections", &in_use) >= 0.0);
    }
    for r in cluster.replica_addrs() {
        assert_eq!(
            value(
                &s,
                "rwproxy_backend_replication_lag_seconds",
                &[("backend", &r)]
            ),
            0.0
        );
        assert_eq!(
            value(&s, "rwproxy_backend_read_only", &[("backend", &r)]),
            1.0
        );
    }
    assert_eq!(
        value(
            &s,
            "rwproxy_backend_read_only",
            &[("backend", &cluster.primary_addr())]
        ),
        0.0
    );

    // With autocommit off a read opens a transaction on the primary: counted there.
    let before = scrape(addr).await;
    c.query_drop("SET autocommit = 0").await.unwrap();
    for _ in 0..3 {
        let _: Option<i64> = c.query_first("SELECT COUNT(*) FROM m").await.unwrap();
        c.query_drop("COMMIT").await.unwrap();
    }
    c.query_drop("SET autocommit = 1").await.unwrap();
    // A login naming an unknown schema is refused by the server behind, as a failed login.
    let unknown_schema = mysql_async::OptsBuilder::from_opts(p.opts()).db_name(Some("no_such_db"));
    match mysql_async::Conn::new(unknown_schema).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1049, "{e:?}"),
        other => panic!("login to an unknown schema: {other:?}"),
    }
    // A client that leaves under a large result: the statement ran.
    let mut raw = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    let big = "SELECT REPEAT('x', 60000) FROM seq_1_to_2000";
    raw.send(&[&[0x03][..], big.as_bytes()].concat())
        .await
        .unwrap();
    // Closed unread: the kernel answers the reply's data with a reset.
    drop(raw);
    let mut after = scrape(addr).await;
    for _ in 0..50 {
        if value(&after, "rwproxy_errors_total", &[("kind", "client")]) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = scrape(addr).await;
    }
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        ["read", "write", "session"].map(|r| delta("rwproxy_queries_total", &[("route", r)])),
        [1.0, 5.0, 3.0],
        "statements by route: SET, 3 reads opening transactions and SET on the primary, 3 \
         COMMITs on the pinned connection, the reset client's read"
    );
    assert_eq!(delta("rwproxy_errors_total", &[("kind", "auth")]), 1.0);
    assert_eq!(delta("rwproxy_errors_total", &[("kind", "client")]), 1.0);
    drop(c);

    let (status, _) = http_get(addr, "/other").await;
    assert!(status.contains("404"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_log_writes_atlas_lines_and_honours_the_slow_threshold() {
    let cluster = Cluster::start(1).await.unwrap();
    let dir = tempdir("sqllog");
    let toml = proxy::config_toml(&cluster, &[], "").replacen(
        "[proxy]\n",
        &format!(
            "[proxy]\ninstance = \"t\"\nlog-path = \"{}\"\nsql-log = \"REALTIME\"\n",
            dir.display()
        ),
        1,
    );
    let p = proxy::start(&toml).await.unwrap();
    let mut c = p.conn().await.unwrap();
    let _: Option<u32> = c.query_first("SELECT 41 + 1").await.unwrap();
    assert!(c.query_drop("SELECT * FROM no_such_table").await.is_err());
    let _: Vec<u32> = c.exec("SELECT ? + 1", (1,)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = std::fs::read_to_string(dir.join("sql_t.log")).expect("sql_t.log written");
    let lines: Vec<&str> = log.lines().collect();
    let ok = lines
        .iter()
        .find(|l| l.ends_with("\"SELECT 41 + 1\""))
        .unwrap_or_else(|| panic!("no line for SELECT 41 + 1 in:\n{log}"));
    // [MM/DD/YYYY HH:MM:SS] C:client S:backend OK latency "sql"
    let (stamp, rest) = ok.split_once("] ").unwrap();
    let b = stamp.as_bytes();
    assert!(
        b[0] == b'[' && b[3] == b'/' && b[6] == b'/' && b[11] == b' ',
        "{ok}"
    );
    let fields: Vec<&str> = rest.splitn(5, ' ').collect();
    assert!(fields[0].starts_with("C:127.0.0.1:"), "{ok}");
    assert!(fields[1].starts_with("S:127.0.0.1:"), "{ok}");
    assert_eq!(fields[2], "OK");
    assert!(fields[3].parse::<f64>().is_ok(), "latency in ms: {ok}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" ERR ") && l.ends_with("\"SELECT * FROM no_such_table\"")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with("\"SELECT ? + 1\"")),
        "prepared statements are logged with their text:\n{log}"
    );
    drop(c);
    drop(p);

    // sql-log-slow: only statements slower than the threshold.
    let toml = proxy::config_toml(&cluster, &[], "").replacen(
        "[proxy]\n",
        &format!(
            "[proxy]\ninstance = \"slow\"\nlog-path = \"{}\"\nsql-log = \"ON\"\nsql-log-slow = 300\n",
            dir.display()
        ),
        1,
    );
    let p = proxy::start(&toml).await.unwrap();
    let mut c = p.conn().await.unwrap();
    let _: Option<u32> = c.query_first("SELECT 1").await.unwrap();
    let _: Option<u32> = c.query_first("SELECT SLEEP(0.5)").await.unwrap();
    // ON mode flushes at least once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = std::fs::read_to_string(dir.join("sql_slow.log")).unwrap();
    assert!(log.contains("\"SELECT SLEEP(0.5)\""), "{log}");
    assert!(!log.contains("\"SELECT 1\""), "{log}");
    drop(c);
    drop(p);

    // The time a client waited for a pooled connection is its statement's (it was left out,
    // and such a statement never looked slow), and a statement that got no connection at all
    // is logged as failed (it was not logged).
    let toml = proxy::config_toml(&cluster, &[], "")
        .replacen(
            "[proxy]\n",
            &format!(
                "[proxy]\ninstance = \"wait\"\nlog-path = \"{}\"\nsql-log = \"REALTIME\"\nsql-log-slow = 300\n",
                dir.display()
            ),
            1,
        )
        .replacen("max-connections = 50", "max-connections = 1", 1);
    let p = proxy::start(&toml).await.unwrap();
    let (mut a, mut b) = (p.conn().await.unwrap(), p.conn().await.unwrap());
    let hold = |secs: f64| format!("/*master*/ SELECT SLEEP({secs}), 'holds'");
    let holding = tokio::spawn(async move {
        let _: Option<(u32, String)> = a.query_first(hold(0.7)).await.unwrap();
        let _: Option<(u32, String)> = a.query_first(hold(1.6)).await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: Option<String> = b.query_first("/*master*/ SELECT 'waited'").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = b.query_drop("/*master*/ SELECT 'no connection'").await;
    assert!(refused.unwrap_err().to_string().contains("busy"));
    holding.await.unwrap();
    let log = std::fs::read_to_string(dir.join("sql_wait.log")).unwrap();
    let line = |sql: &str| {
        log.lines()
            .find(|l| l.ends_with(&format!("\"{sql}\"")))
            .unwrap_or_else(|| panic!("no line for {sql} in:\n{log}"))
            .to_string()
    };
    let waited = line("/*master*/ SELECT 'waited'");
    assert!(waited.contains(" OK "), "{waited}");
    let refused = line("/*master*/ SELECT 'no connection'");
    assert!(refused.contains(" S:rwproxy ERR "), "{refused}");
    std::fs::remove_dir_all(&dir).ok();
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = rwproxy_sql_tests::sandbox::scratch_root().join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A scraper that connects and sends nothing, or half a request, is closed once it has taken
/// 10 s over its headers: it held a descriptor for good, outside `max-client-connections`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_scrapers_are_closed() {
    let toml = "[proxy]\nlisten = \"127.0.0.1:0\"\n\
                [admin]\nusername = \"admin\"\npassword = \"admin_pw\"\n\
                [[backend]]\naddress = \"127.0.0.1:1\"\nrole = \"rw\"\n\
                [[user]]\nname = \"app\"\npassword = \"app_pw\"\n\
                [metrics]\nlisten = \"127.0.0.1:0\"\n";
    let p = proxy::start(toml).await.unwrap();
    let addr = p.metrics_addr.expect("exporter started");
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    for mut s in [silent, half] {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
            .await
            .expect("closed within the header timeout")
            .unwrap_or(0);
        // Closed, maybe after a 408.
        if n > 0 {
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
        }
    }
    assert!(t0.elapsed() >= Duration::from_secs(9), "{:?}", t0.elapsed());
    let after = scrape(addr).await;
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric.starts_with("rwproxy_")));
}
