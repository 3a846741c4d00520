//! Differential SQL tests: every statement of `data/differential.sql` runs through the proxy
//! and directly against the primary, in the text and in the binary protocol, and everything a
//! client can observe must be identical (rows, column definitions, affected rows, last insert
//! id, warnings and `SHOW WARNINGS`, error code/SQLSTATE/message).
//!
//! Each side works in its own schema (created fresh per run), so writes are applied once per
//! side and both see the same data; the schema name is normalised away before comparing.
//! After every statement that may write, the replicas are waited for, so that reads the proxy
//! sends to a replica see what the primary has.

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Value};
use rwproxy_sql_tests::diff::{self, Normalizer, Outcome};
use rwproxy_sql_tests::{proxy, Cluster};
use tokio::sync::{Mutex, OnceCell};

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();
/// The text and binary runs take turns. Both create and drop routines, and any routine's
/// change invalidates every session's routine cache on the server: a statement calling one,
/// prepared before the other run's `CREATE FUNCTION` and executed after, is prepared again,
/// which clears the previous statement's messages on that side alone (measured on MariaDB
/// 10.11; a CI run saw `SHOW WARNINGS` after `SELECT f_add(2, 3)` empty directly, not
/// through the proxy).
static TURN: Mutex<()> = Mutex::const_new(());

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async { Cluster::start(2).await.expect("sandbox cluster") })
        .await
}

fn corpus() -> Vec<diff::Stmt> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/differential.sql");
    diff::parse_corpus(&std::fs::read_to_string(path).expect("corpus"))
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Protocol {
    Text,
    Binary,
}

struct Sides {
    proxy: Conn,
    direct: Conn,
}

async fn connect(cluster: &Cluster, p: &proxy::Proxy, proxy_db: &str, direct_db: &str) -> Sides {
    let proxy = Conn::new(OptsBuilder::from_opts(p.opts()).db_name(Some(proxy_db)))
        .await
        .expect("connect through proxy");
    let direct = Conn::new(
        OptsBuilder::from_opts(cluster.primary.opts("app", "app_pw")).db_name(Some(direct_db)),
    )
    .await
    .expect("connect to primary");
    Sides { proxy, direct }
}

async fn run(protocol: Protocol) -> usize {
    let _turn = TURN.lock().await;
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1, 1], ""))
        .await
        .unwrap();
    let tag = match protocol {
        Protocol::Text => "text",
        Protocol::Binary => "bin",
    };
    let (proxy_db, direct_db) = (format!("diff_{tag}_p"), format!("diff_{tag}_d"));
    {
        let mut root = cluster.primary.root_conn().await.unwrap();
        for db in [&proxy_db, &direct_db] {
            root.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
                .await
                .unwrap();
            root.query_drop(format!(
                "CREATE DATABASE {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            ))
            .await
            .unwrap();
        }
    }
    cluster.wait_replicas_caught_up().await.unwrap();
    let np = Normalizer {
        schema: proxy_db.clone(),
    };
    let nd = Normalizer {
        schema: direct_db.clone(),
    };
    let mut sides = connect(cluster, &p, &proxy_db, &direct_db).await;

    let mut compared = 0;
    let mut errors = 0;
    let mut mismatches = Vec::new();
    for st in corpus() {
        let enabled = match protocol {
            Protocol::Text => st.text,
            Protocol::Binary => st.binary,
        };
        if !enabled {
            continue;
        }
        if st.reconnect {
            sides = connect(cluster, &p, &proxy_db, &direct_db).await;
        }
        let (via_proxy, direct): (Outcome, Outcome) = match protocol {
            Protocol::Text => {
                let sql = match &st.params {
                    Some(ps) => diff::inline_params(&st.sql, ps),
                    None => st.sql.clone(),
                };
                let d = diff::run_text(&mut sides.direct, &sql, &nd).await;
                let v = diff::run_text(&mut sides.proxy, &sql, &np).await;
                (v, d)
            }
            Protocol::Binary => {
                let params: Vec<Value> = st
                    .params
                    .iter()
                    .flatten()
                    .map(|l| l.value.clone())
                    .collect();
                let d = diff::run_binary(&mut sides.direct, &st.sql, &params, &nd).await;
                let v = diff::run_binary(&mut sides.proxy, &st.sql, &params, &np).await;
                (v, d)
            }
        };
        let mut direct = direct;
        // Documented deviation: a server keeps the previous statement's messages after any
        // statement that uses no tables and raises none. rwproxy knows that of `SELECT`,
        // `SET` and `DO` without tables (see `router::diag_effect`); other message-free
        // statements (`CREATE PROCEDURE`, `BEGIN`, `HELP` ...) leave the decision to the
        // server when they ran where the messages are, and otherwise show none.
        if direct.error.is_none()
            && direct.results.iter().all(|r| r.warnings == 0)
            && via_proxy.show_warnings.is_empty()
            && rwproxy::router::diag_effect(st.sql.as_bytes()) != rwproxy::router::DiagEffect::Keeps
        {
            direct.show_warnings.clear();
        }
        if !diff::is_read(&st.sql) {
            cluster.wait_replicas_caught_up().await.unwrap();
        }
        compared += 1;
        if direct.is_error() {
            errors += 1;
        }
        if via_proxy != direct {
            let mut fields = Vec::new();
            if via_proxy.prepared != direct.prepared {
                fields.push("prepared");
            }
            if via_proxy.results != direct.results {
                fields.push("results");
            }
            if via_proxy.error != direct.error {
                fields.push("error");
            }
            if via_proxy.show_warnings != direct.show_warnings {
                fields.push("show_warnings");
            }
            mismatches.push(format!(
                "line {} [{protocol:?}] {fields:?}: {}\n  direct:\n{}  proxy:\n{}",
                st.line,
                st.sql.chars().take(200).collect::<String>(),
                diff::render(&direct),
                diff::render(&via_proxy),
            ));
        }
    }
    println!(
        "{protocol:?} protocol: {compared} statements compared ({errors} of them errors), {} mismatches",
        mismatches.len()
    );
    for m in &mismatches {
        println!("{m}\n");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} statements differ through the proxy ({protocol:?}); first: {}",
        mismatches.len(),
        mismatches[0].chars().take(3000).collect::<String>()
    );
    // The corpus must really exercise the success path, not compare two identical errors.
    assert!(
        compared > 150 && errors < compared / 3,
        "{errors} errors of {compared}"
    );
    compared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_protocol_matches_primary() {
    run(Protocol::Text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_protocol_matches_primary() {
    run(Protocol::Binary).await;
}

/// The values the corpus leaves out because they reveal routing: reads land on replicas,
/// writes, transactions and locking reads on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_is_visible_only_in_excluded_values() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1, 1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        seen.insert(id);
    }
    assert!(
        !seen.contains(&1),
        "autocommit reads went to the primary: {seen:?}"
    );
    let ports: Vec<u16> = cluster.replicas.iter().map(|r| r.port).collect();
    let port: u16 = c.query_first("SELECT @@port").await.unwrap().unwrap();
    assert!(
        ports.contains(&port),
        "read on port {port}, replicas {ports:?}"
    );

    c.query_drop("CREATE TABLE IF NOT EXISTS routing_t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let before: String = cluster
        .primary
        .conn()
        .await
        .unwrap()
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    c.query_drop("INSERT INTO routing_t VALUES (1)")
        .await
        .unwrap();
    let after: String = cluster
        .primary
        .conn()
        .await
        .unwrap()
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        before, after,
        "the INSERT did not reach the primary's binlog"
    );

    c.query_drop("BEGIN").await.unwrap();
    let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!(id, 1, "a read inside a transaction left the primary");
    c.query_drop("COMMIT").await.unwrap();
    let id: u32 = c
        .query_first("SELECT @@server_id FROM routing_t WHERE id = 1 FOR UPDATE")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, 1, "SELECT ... FOR UPDATE left the primary");
}
