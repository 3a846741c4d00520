//! Protocol details a driver can observe, each compared with a direct connection to the
//! primary: session tracking in OK packets, warnings across backends, packets of 16 MiB and
//! more, `LOAD DATA LOCAL INFILE`, and handshake collations.

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, WhiteListFsHandler};
use mysql_common::constants::CapabilityFlags as Cap;
use rwproxy_sql_tests::diff::{self, Normalizer};
use rwproxy_sql_tests::raw::{self, LoginOptions, RawConn};
use rwproxy_sql_tests::sandbox::{APP_PASSWORD, APP_USER, DATABASE};
use rwproxy_sql_tests::{proxy, Cluster};
use std::net::SocketAddr;
use tokio::sync::OnceCell;

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async { Cluster::start(1).await.expect("sandbox cluster") })
        .await
}

fn primary_addr(c: &Cluster) -> SocketAddr {
    c.primary_addr().parse().unwrap()
}

async fn raw(addr: SocketAddr, opts: LoginOptions) -> RawConn {
    let c = RawConn::login(addr, APP_USER, APP_PASSWORD, DATABASE, opts)
        .await
        .unwrap();
    assert_eq!(c.login_reply[0], 0, "{}", raw::err_text(&c.login_reply));
    c
}

fn tracking() -> LoginOptions {
    LoginOptions {
        extra_capabilities: Cap::CLIENT_SESSION_TRACK,
        ..LoginOptions::default()
    }
}

/// The last packet of a reply: its OK, ERR or final EOF.
fn last(reply: &[Vec<u8>]) -> Vec<u8> {
    reply.last().unwrap().clone()
}

/// Equal replies, except that the system variables of one session-state block may come in
/// another order: the server lists changed variables in its own hash order, which differs
/// between a connection tracking its default list and one tracking more.
fn same_reply(via: &[Vec<u8>], direct: &[Vec<u8>]) -> bool {
    use rwproxy::protocol::session_track::parse;
    let unordered = |a: &Vec<u8>, b: &Vec<u8>| {
        a.len() == b.len()
            && a.as_slice().first() == Some(&0)
            && match (parse(a), parse(b)) {
                (Some(mut x), Some(mut y)) => {
                    x.vars.sort();
                    y.vars.sort();
                    x == y
                }
                _ => false,
            }
    };
    via.len() == direct.len()
        && via
            .iter()
            .zip(direct)
            .all(|(a, b)| a == b || unordered(a, b))
}

/// Session-state changes reach the client exactly as from a server: the login's schema, the
/// default tracked variables and schema changes for a client that asked for tracking, nothing
/// for one that did not, and never the proxy's own `last_gtid` unless the client tracks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tracking_matches_direct() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut setup = cluster.primary.conn().await.unwrap();
    setup
        .query_drop("CREATE TABLE IF NOT EXISTS track_t (v INT)")
        .await
        .unwrap();
    let script = [
        "SET time_zone = '+01:00'",
        "INSERT INTO track_t VALUES (1)",
        "BEGIN",
        "INSERT INTO track_t VALUES (1)",
        "COMMIT",
        "SET NAMES latin1",
        "SELECT 1",
        "USE mysql",
        // Not a tracked variable: a tracked one's restored value would be reported on the
        // connection that ran the read, after a later statement there (see README).
        "SET STATEMENT sql_mode = '' FOR SELECT 1",
        "DO 1",
        "USE rwtest",
        // The proxy has the server report when a `SET TRANSACTION` is used up; the client
        // sees none of it.
        "SET TRANSACTION READ ONLY",
        "SELECT 1",
        // Refused (1792) by the read-only transaction it would start.
        "INSERT INTO track_t VALUES (1)",
        "SELECT COUNT(*) FROM track_t",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "INSERT INTO track_t VALUES (1)",
        "SET TRANSACTION READ ONLY",
        "BEGIN",
        "SELECT COUNT(*) FROM track_t",
        "COMMIT",
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET autocommit = 0",
        "SELECT COUNT(*) FROM track_t",
        "COMMIT",
        "SET autocommit = 1",
    ];
    for opts in [tracking(), LoginOptions::default()] {
        let mut direct = raw(primary_addr(cluster), opts).await;
        let mut via = raw(p.addr, opts).await;
        assert_eq!(via.login_reply, direct.login_reply, "login OK, {opts:?}");
        for sql in script {
            let d = direct.query_reply(sql).await.unwrap();
            let v = via.query_reply(sql).await.unwrap();
            if !same_reply(&v, &d) {
                assert_eq!(v, d, "{sql} with {opts:?}");
            }
        }
    }

    // A client tracking `last_gtid` itself gets it, with the GTID its write really got.
    let mut via = raw(p.addr, tracking()).await;
    let ok = last(
        &via.query("SET session_track_system_variables = 'last_gtid'")
            .await
            .unwrap(),
    );
    assert_eq!(ok[0], 0, "{}", raw::err_text(&ok));
    let ok = last(&via.query("INSERT INTO track_t VALUES (1)").await.unwrap());
    let reported = gtid_in(&ok).expect("last_gtid in the OK packet");
    let binlog: String = setup
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    let seq = |g: &str| -> u64 { g.rsplit('-').next().unwrap().parse().unwrap() };
    assert!(
        seq(&reported) <= seq(&binlog) && reported.starts_with("0-1-"),
        "reported {reported}, binlog at {binlog}"
    );
    // After a reset the client's own list is what a fresh server session has again.
    let ok = last(
        &via.query("SET session_track_system_variables = DEFAULT")
            .await
            .unwrap(),
    );
    assert_eq!(ok[0], 0);
    let ok = last(&via.query("INSERT INTO track_t VALUES (1)").await.unwrap());
    assert_eq!(gtid_in(&ok), None, "{ok:02x?}");
}

/// The `last_gtid` value in an OK packet's session-state block.
fn gtid_in(ok: &[u8]) -> Option<String> {
    let needle = b"\x09last_gtid";
    let at = ok.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let len = usize::from(ok[at]);
    Some(String::from_utf8_lossy(&ok[at + 1..at + 1 + len]).into_owned())
}

/// The proxy learns each write's GTID (for read-your-writes) and shows it per session on the
/// admin console; a replica that waited for it has the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_write_gtid_is_tracked() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE TABLE IF NOT EXISTS gtid_t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let mut admin = p.admin().await;
    // The CREATE TABLE committed a GTID of its own; the first INSERT's must differ from it,
    // or a poll that runs before the session publishes the INSERT's would take the old one.
    let mut last = None;
    for _ in 0..50 {
        last = admin.sessions().await.unwrap()[0].last_gtid.clone();
        if last.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(last.is_some(), "a GTID after CREATE TABLE");
    for id in 1..=3 {
        c.exec_drop("INSERT INTO gtid_t VALUES (?)", (id,))
            .await
            .unwrap();
        // The session publishes the GTID right after the client got its OK: poll briefly.
        let mut tries = 0;
        let gtid = loop {
            let sessions = admin.sessions().await.unwrap();
            assert_eq!(sessions.len(), 1, "{sessions:?}");
            let gtid = sessions[0].last_gtid.clone();
            tries += 1;
            if (gtid.is_some() && gtid != last) || tries == 50 {
                break gtid.expect("a GTID after a write");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_ne!(Some(&gtid), last.as_ref(), "a new GTID per write");
        let mut replica = cluster.replicas[0].root_conn().await.unwrap();
        let waited: i64 = replica
            .exec_first("SELECT MASTER_GTID_WAIT(?, 30)", (&gtid,))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(waited, 0, "replica reached {gtid}");
        let seen: Option<u32> = replica
            .exec_first("SELECT id FROM rwtest.gtid_t WHERE id = ?", (id,))
            .await
            .unwrap();
        assert_eq!(seen, Some(id));
        last = Some(gtid);
    }
}

/// A procedure changing `time_zone` is invisible to the classifier; session tracking tells
/// the proxy, so the session's next read on another connection has the same time zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_set_by_a_procedure_follow_the_session() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut setup = cluster.primary.conn().await.unwrap();
    setup
        .query_drop(
            "CREATE OR REPLACE PROCEDURE set_tz() BEGIN SET SESSION time_zone = '+03:00'; END",
        )
        .await
        .unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    let mut c = p.conn().await.unwrap();
    c.query_drop("CALL set_tz()").await.unwrap();
    for _ in 0..5 {
        let (tz, id): (String, u32) = c
            .query_first("SELECT @@time_zone, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tz, "+03:00", "on server {id}");
    }
}

/// What `SHOW WARNINGS`, `SHOW COUNT(*) WARNINGS` and `@@warning_count` return after each
/// statement of a script, through any connection.
async fn diagnostics_after(c: &mut Conn, script: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, sql) in script.iter().enumerate() {
        let r = c.query_drop(*sql).await;
        out.push(format!("{i} {sql}: {:?}", r.err().map(|e| e.to_string())));
        if sql.starts_with("SHOW") || sql.contains("warning_count") {
            continue;
        }
        let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
        out.push(format!("  show warnings: {w:?}"));
    }
    out
}

/// Messages survive statements that use no tables and raise none (`SELECT 1`, `SET @a`,
/// `DO`), wherever those run, and are gone after one that uses a table, as on a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_follow_the_statement_that_raised_them() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut setup = cluster.primary.conn().await.unwrap();
    setup
        .query_drop("CREATE OR REPLACE TABLE warn_t (v VARCHAR(3))")
        .await
        .unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    let script = [
        // A read with a warning (on a replica through the proxy), then message-free ones.
        "SELECT 1/0",
        "SELECT 1",
        "SELECT @@warning_count",
        "SHOW COUNT(*) WARNINGS",
        "SET @a = 1",
        // Leading comments (sqlcommenter's, an ORM's) change nothing.
        "/* app='shop' */ SET @b = 2",
        "DO 2",
        "SELECT * FROM warn_t",
        // A write with a warning, then a read that could run on a replica.
        "INSERT INTO warn_t VALUES ('abcdef')",
        "SELECT 2",
        "SELECT @@warning_count, @@error_count",
        "SELECT COUNT(*) FROM warn_t",
        // An error, then a statement using no tables.
        "SELECT * FROM no_such_table",
        "SELECT 3",
        "SHOW ERRORS",
        "INSERT INTO warn_t VALUES ('a')",
        // A warning on the primary, then a table read that runs on a replica.
        "INSERT INTO warn_t VALUES ('wxyz')",
        "SELECT v FROM warn_t LIMIT 1",
        // An error the proxy answers itself (no server runs a KILL of an unknown id), then
        // statements that keep it and one that clears it.
        "SELECT 1/0",
        "KILL 1987654321",
        "SELECT 4",
        "SELECT @@warning_count, @@error_count",
        "SHOW ERRORS",
        "SELECT COUNT(*) FROM warn_t",
        "KILL QUERY 1987654321",
        "SELECT * FROM warn_t",
        // A change of schema keeps them, as on a server.
        "SELECT 1/0",
        "USE rwtest",
        "SELECT @@warning_count",
        // So does the end of a transaction: its last statement's messages stay.
        "BEGIN",
        "SELECT 1/0",
        "SELECT 5",
        "COMMIT",
        "SELECT 6",
        "SELECT * FROM warn_t",
        "START TRANSACTION",
        "INSERT INTO warn_t VALUES ('abcdef')",
        "ROLLBACK",
        "SELECT @@warning_count",
        "SET autocommit = 0",
        "SELECT * FROM no_such_table",
        "COMMIT",
        "SELECT COUNT(*) FROM warn_t",
        "SELECT * FROM no_such_table",
        "SELECT 7",
        "ROLLBACK",
        "SET autocommit = 1",
        "SELECT @@warning_count, @@error_count",
        // Savepoints keep them too, also while they stay where they were raised (after a
        // table read has cleared the earlier ones).
        "SELECT COUNT(*) FROM warn_t",
        "SELECT 1/0",
        "START TRANSACTION",
        "SAVEPOINT s",
        "RELEASE SAVEPOINT s",
        "COMMIT",
    ];
    let mut via = p.conn().await.unwrap();
    let mut direct = cluster.primary.conn().await.unwrap();
    let v = diagnostics_after(&mut via, &script).await;
    let d = diagnostics_after(&mut direct, &script).await;
    assert_eq!(v, d);
    // A read-only transaction (on a replica through the proxy: these sessions hold no
    // state, unlike the one above after its `SET @a`) that a `BEGIN` ends keeps its last
    // messages, whatever the session's `completion_type` (a plain `ROLLBACK` would chain
    // there); one a DDL ends loses them to the DDL's.
    let scripts: [&[&str]; 2] = [
        &[
            "START TRANSACTION READ ONLY",
            "SELECT 1/0",
            "BEGIN",
            "COMMIT",
            "START TRANSACTION READ ONLY",
            "SELECT 1/0",
            "/* app */ BEGIN",
            "COMMIT",
            "START TRANSACTION READ ONLY",
            "SELECT 1/0",
            "CREATE TABLE IF NOT EXISTS warn_t (v VARCHAR(3))",
        ],
        &[
            "SET completion_type = 1",
            "START TRANSACTION READ ONLY",
            "SELECT 1/0",
            "BEGIN",
            "ROLLBACK AND NO CHAIN",
        ],
    ];
    for script in scripts {
        let v = diagnostics_after(&mut p.conn().await.unwrap(), script).await;
        let d = diagnostics_after(&mut cluster.primary.conn().await.unwrap(), script).await;
        assert_eq!(v, d);
    }
    // So does `COM_INIT_DB` (the `mariadb` client's `use`).
    let mut replies = Vec::new();
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        c.query("SELECT 1/0").await.unwrap();
        c.command(&[&[0x02][..], DATABASE.as_bytes()].concat())
            .await
            .unwrap();
        replies.push(c.query("SELECT @@warning_count").await.unwrap());
    }
    assert_eq!(replies[0], replies[1]);
    // The counts themselves, read after a warning elsewhere.
    for c in [&mut via, &mut direct] {
        c.query_drop("SELECT 1/0").await.unwrap();
        let n: (u32, u32) = c
            .query_first("SELECT @@warning_count, @@error_count")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, (1, 0));
    }
    // A transaction's last messages, with nothing asking for them before it ends.
    let mut replies = Vec::new();
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        for end in ["COMMIT", "ROLLBACK"] {
            for sql in ["BEGIN", "SELECT 1/0", end] {
                c.query(sql).await.unwrap();
            }
            replies.push(c.query("SHOW WARNINGS").await.unwrap());
        }
    }
    assert_eq!(replies[..2], replies[2..]);
}

/// `GET DIAGNOSTICS` reads the messages where the statement before left them (a replica,
/// for a read) and sets user variables the session then reads where its others are (the
/// write backend): values, their types, a condition number out of range, and variables
/// that outlive the connection held for the messages. Each script runs on a fresh session
/// directly and through the proxy; `PAUSE` idles past the proxy's hold of a connection kept
/// only for messages (after which an unpinned session's messages are gone, a documented
/// difference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_diagnostics_reads_the_messages_where_they_are() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let scripts: [&[&str]; 6] = [
        // An error on a replica, read into variables of each type.
        &[
            "SELECT * FROM no_such_table",
            "GET DIAGNOSTICS CONDITION 1 @e = MYSQL_ERRNO, @m = MESSAGE_TEXT, @`s s` = RETURNED_SQLSTATE, @r = ROW_NUMBER",
            "GET CURRENT DIAGNOSTICS @n = NUMBER, @rc = ROW_COUNT",
            "SELECT @e, @m, @`s s`, @r, @n, @rc",
            "CREATE TEMPORARY TABLE diag_types AS SELECT @e AS e, @m AS m, @n AS n, @rc AS rc",
            "SHOW CREATE TABLE diag_types",
        ],
        // A warning on a replica, then a session pinned to the write backend by a variable
        // that keeps the messages; a condition number out of range sets nothing.
        &[
            "SELECT 1/0",
            "SET @a = 'before'",
            "GET DIAGNOSTICS CONDITION 1 @e = MYSQL_ERRNO, @m = MESSAGE_TEXT",
            "GET DIAGNOSTICS CONDITION 2 @a = MESSAGE_TEXT",
            "SHOW WARNINGS",
            "SELECT @e, @m, @a",
        ],
        // A warning on the write backend, and the variable after the session falls idle.
        &[
            "DROP TABLE IF EXISTS diag_none",
            "GET DIAGNOSTICS CONDITION 1 @e = MYSQL_ERRNO",
            "PAUSE",
            "SELECT @e",
            "SELECT * FROM no_such_table",
            "GET DIAGNOSTICS CONDITION 1 @e = MYSQL_ERRNO",
            "SELECT @e",
        ],
        // Quoted names, one variable named twice, a `BEGIN` in between; a condition out of
        // range after the variable changed leaves it changed.
        &[
            "SELECT 1/0",
            "BEGIN",
            "GET DIAGNOSTICS CONDITION 1 @`a``b` = MYSQL_ERRNO, @'x''y' = MESSAGE_TEXT, @x = MYSQL_ERRNO, @X = CLASS_ORIGIN",
            "COMMIT",
            "SELECT @`a``b`, @'x''y', @x",
            "SET @`a``b` = 0",
            "GET DIAGNOSTICS CONDITION 2 @`a``b` = MYSQL_ERRNO",
            "SELECT @`a``b`",
        ],
        // A connection character set that widens every character.
        &[
            "SET character_set_connection = ucs2",
            "SELECT 1/0",
            "GET DIAGNOSTICS CONDITION 1 @e = MYSQL_ERRNO, @m = MESSAGE_TEXT",
            "GET DIAGNOSTICS @n = NUMBER, @rc = ROW_COUNT",
            "SELECT @e, @m, @n, @rc",
        ],
        // An error the proxy answers itself.
        &[
            "KILL 1987654321",
            "GET DIAGNOSTICS CONDITION 1 @k = MYSQL_ERRNO, @s = RETURNED_SQLSTATE",
            "SELECT @k, @s",
        ],
    ];
    let n = Normalizer {
        schema: DATABASE.into(),
    };
    for script in scripts {
        let mut outcomes = Vec::new();
        for opts in [cluster.primary.opts(APP_USER, APP_PASSWORD), p.opts()] {
            let mut c = Conn::new(OptsBuilder::from_opts(opts).db_name(Some(DATABASE)))
                .await
                .unwrap();
            let mut out = Vec::new();
            for sql in script {
                if *sql == "PAUSE" {
                    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
                    continue;
                }
                out.push(format!(
                    "{sql}:\n{}",
                    diff::render(&diff::run_text(&mut c, sql, &n).await)
                ));
            }
            outcomes.push(out);
        }
        assert_eq!(outcomes[1], outcomes[0], "through the proxy, then directly");
    }
}

/// A prepared statement's text reaches the server byte for byte, as a text query's does: in
/// a latin1 session `'café'` is `caf\xe9`, which is no UTF-8, and a `_binary` literal may hold
/// any bytes. (The proxy kept the text as UTF-8, each such byte becoming U+FFFD: an insert
/// stored `636166EFBFBD` for `café`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statement_text_passes_byte_for_byte() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        c.query("SET NAMES latin1").await.unwrap();
        let (id, cols, _) = c
            .prepare(&b"SELECT HEX('caf\xe9'), HEX(_binary'\xff\x80')"[..])
            .await
            .unwrap();
        assert_eq!(cols, 2);
        c.send(&raw::execute_packet(id, false)).await.unwrap();
        c.read_columns().await.unwrap();
        let (rows, _) = c.read_rows().await.unwrap();
        // A binary row: 0x00, a one-byte NULL bitmap, then two length-prefixed strings.
        let row = &rows[0];
        let first = &row[3..3 + usize::from(row[2])];
        let rest = &row[3 + first.len()..];
        let second = &rest[1..1 + usize::from(rest[0])];
        seen.push((
            String::from_utf8_lossy(first).into_owned(),
            String::from_utf8_lossy(second).into_owned(),
        ));
    }
    assert_eq!(
        seen[0],
        ("636166E9".to_string(), "FF80".to_string()),
        "direct"
    );
    assert_eq!(seen[1], seen[0], "through the proxy");
}

/// A reply the proxy makes itself to a command of 16 MiB and more (two packets) carries the
/// sequence id that follows the command's last packet, as a server's does: with 1, strict
/// clients (pymysql, mysqlnd) dropped the connection. Here the proxy's own `KILL` of an
/// unknown thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_large_commands_follow_their_sequence() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut command = b"\x03KILL 1987654321 /*".to_vec();
    command.resize(17 * 1024 * 1024, b'x');
    command.extend_from_slice(b"*/");
    let mut seen = Vec::new();
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        c.send_split(&command).await.unwrap();
        let (seq, reply) = c.read_with_seq().await.unwrap();
        seen.push((seq, raw::err_text(&reply)));
    }
    assert_eq!(seen[0].0, 2, "direct: {:?}", seen[0]);
    assert_eq!(seen[1], seen[0], "through the proxy, then directly");
}

/// A raw login offering `CLIENT_LOCAL_FILES`, for `LOAD DATA LOCAL`.
async fn raw_local_files(addr: SocketAddr) -> RawConn {
    raw(
        addr,
        LoginOptions {
            extra_capabilities: Cap::CLIENT_LOCAL_FILES,
            ..LoginOptions::default()
        },
    )
    .await
}

/// The sequence ids of a one-row text result's packets, and the row.
async fn one_row_result(c: &mut RawConn) -> (Vec<u8>, Vec<u8>) {
    let (seq, count) = c.read_with_seq().await.unwrap();
    assert_ne!(count[0], 0xFF, "{}", raw::err_text(&count));
    let mut seqs = vec![seq];
    for _ in 0..count[0] {
        seqs.push(c.read_with_seq().await.unwrap().0);
    }
    let is_eof = |p: &[u8]| p[0] == 0xFE && p.len() < 9;
    let (mut seq, mut row) = c.read_with_seq().await.unwrap();
    if is_eof(&row) {
        seqs.push(seq);
        (seq, row) = c.read_with_seq().await.unwrap();
    }
    seqs.push(seq);
    let (seq, end) = c.read_with_seq().await.unwrap();
    assert!(is_eof(&end), "one row, then the end: {end:?}");
    seqs.push(seq);
    (seqs, row)
}

/// An execute whose new-params-bound flag is neither 0 nor 1 is refused as malformed, as
/// MariaDB refuses it (1835), and the session goes on. (The proxy sent it on as 0 or 1,
/// with the client's types left in the packet to be read as values.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_params_bound_flag_other_than_0_or_1_is_malformed() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        let (id, _, params) = c.prepare("SELECT LENGTH(?)").await.unwrap();
        assert_eq!(params, 1);
        let mut execute = raw::execute_param_packet(id, false, Some("abcd"));
        // The flag follows the command byte, id, flags, iteration count and NULL bitmap.
        assert_eq!(execute[11], 1);
        execute[11] = 2;
        c.send(&execute).await.unwrap();
        seen.push(raw::err_text(&c.read().await.unwrap()));
        c.query("SELECT 1").await.unwrap();
    }
    assert_eq!(seen[1], seen[0], "through the proxy, then directly");
    assert!(seen[0].starts_with("1835 (HY000)"), "{}", seen[0]);
}

/// `COM_STMT_EXECUTE` of one-parameter statement `id` that sends no types (new-params-bound
/// 0), as drivers do after the first execute: `value` as a short string.
fn execute_without_types(id: u32, value: &str) -> Vec<u8> {
    let mut p = raw::execute_packet(id, false);
    p.extend_from_slice(&[0, 0, value.len() as u8]); // NULL bitmap, new params bound
    p.extend_from_slice(value.as_bytes());
    p
}

/// Parameter types a client sent once are its statement's from then on, as on a server,
/// even when the proxy answered that first execute itself: a later execute without types
/// must not run with the types another session last bound to the backend's copy of the
/// statement (the proxy shares copies between sessions). (It did: the value was read as
/// the other session's one-byte integer.) A statement executed without ever sending types
/// gets the server's 1210.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_types_sent_once_stay_with_the_clients_statement() {
    let cluster = cluster().await;
    let toml = proxy::config_toml(cluster, &[1], "")
        .replace("max-connections = 50", "max-connections = 1");
    let p = proxy::start(&toml).await.unwrap();
    let mut direct = cluster.primary.conn().await.unwrap();
    direct
        .query_drop("CREATE OR REPLACE TABLE pt_types (v VARCHAR(20))")
        .await
        .unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    let insert = "INSERT INTO pt_types (v) VALUES (?)";
    let mut b = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    let (b_id, _, _) = b.prepare(insert).await.unwrap();
    // A read-only transaction runs on a replica, where the proxy refuses the write itself.
    b.query("START TRANSACTION READ ONLY").await.unwrap();
    let refused = b
        .command(&raw::execute_param_packet(b_id, false, Some("refused")))
        .await
        .unwrap();
    assert!(
        raw::err_text(&refused[0]).starts_with("1792"),
        "{}",
        raw::err_text(&refused[0])
    );
    b.query("COMMIT").await.unwrap();
    // Another session binds a one-byte integer to the same copy (the primary's only
    // connection): MYSQL_TYPE_TINY, 7.
    let mut a = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    let (a_id, _, _) = a.prepare(insert).await.unwrap();
    let mut tiny = raw::execute_packet(a_id, false);
    tiny.extend_from_slice(&[0, 1, 0x01, 0, 7]);
    let reply = a.command(&tiny).await.unwrap();
    assert_eq!(reply[0][0], 0, "{}", raw::err_text(&reply[0]));
    let reply = b
        .command(&execute_without_types(b_id, "from b"))
        .await
        .unwrap();
    assert_eq!(reply[0][0], 0, "{}", raw::err_text(&reply[0]));
    let rows: Vec<String> = direct
        .query("SELECT v FROM pt_types ORDER BY v")
        .await
        .unwrap();
    assert_eq!(rows, ["7", "from b"]);

    // Never sent: refused as the server refuses it.
    let mut seen = Vec::new();
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        let (id, _, _) = c.prepare(insert).await.unwrap();
        let reply = c
            .command(&execute_without_types(id, "untyped"))
            .await
            .unwrap();
        seen.push(raw::err_text(&reply[0]));
    }
    assert_eq!(seen[1], seen[0], "through the proxy, then directly");
    assert!(seen[0].starts_with("1210"), "{}", seen[0]);
    // Unless every value is NULL: then types do not matter, and the server takes them.
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        let (id, _, _) = c.prepare("SELECT ? IS NULL").await.unwrap();
        let mut nulls = raw::execute_packet(id, false);
        nulls.extend_from_slice(&[1, 0]); // NULL bitmap: the one parameter; no types
        let reply = c.command(&nulls).await.unwrap();
        assert_ne!(reply[0][0], 0xff, "{addr}: {}", raw::err_text(&reply[0]));
    }
}

/// A client without `CLIENT_PLUGIN_AUTH` (libmysqlclient before plugins) logs in with its
/// mysql_native_password reply to the greeting, as on the server: it got an auth switch it
/// need not understand (old libmysqlclient takes it for an OK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_auth_plugins_logs_in() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    for (addr, password) in [
        (primary_addr(cluster), APP_PASSWORD),
        (p.addr, APP_PASSWORD),
        (p.addr, "wrong"),
    ] {
        let opts = LoginOptions {
            missing_capabilities: Cap::CLIENT_PLUGIN_AUTH,
            ..LoginOptions::default()
        };
        let mut c = RawConn::login(addr, APP_USER, password, DATABASE, opts)
            .await
            .unwrap();
        match password {
            APP_PASSWORD => {
                assert_eq!(c.login_reply[0], 0, "{addr}: {:?}", c.login_reply);
                c.query("SELECT 1").await.unwrap();
            }
            _ => assert!(
                raw::err_text(&c.login_reply).starts_with("1045 (28000)"),
                "{:?}",
                c.login_reply
            ),
        }
    }
}

/// A client that asks for `CLIENT_IGNORE_SPACE` gets `IGNORE_SPACE` in `sql_mode` on every
/// backend connection, also one the proxy reset to replay the session's settings (the reset
/// took it out: `COUNT (*)` then failed to parse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_space_outlives_a_connection_reset() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let opts = LoginOptions {
        extra_capabilities: Cap::CLIENT_IGNORE_SPACE,
        ..LoginOptions::default()
    };
    let mut c = raw(p.addr, opts).await;
    let check = async |c: &mut RawConn, when: &str| {
        for hint in ["/*slave*/", "/*master*/"] {
            let reply = c
                .query(&format!("{hint} SELECT COUNT (*) FROM (SELECT 1 UNION SELECT 2) AS t WHERE @@sql_mode LIKE '%IGNORE_SPACE%'"))
                .await
                .unwrap_or_else(|e| panic!("{when}, {hint}: {e}"));
            // Column count, its definition, EOF, then the row: one length-coded string.
            assert_eq!(reply[3], b"\x012", "{when}, {hint}");
        }
    };
    check(&mut c, "at login").await;
    // Re-assigned, `time_zone` moves to the end of the session's settings: connections that
    // have the old order are reset and replayed.
    c.query("SET time_zone = '+01:00'").await.unwrap();
    check(&mut c, "after a setting").await;
    c.query("SET div_precision_increment = 5").await.unwrap();
    c.query("SET time_zone = '+02:00'").await.unwrap();
    check(&mut c, "after a reset").await;
}

/// All sessions' open prepared statements together hold at most `max-prepared-memory` bytes
/// of text: a prepare past it gets 1461 naming the bound, in any session, until statements
/// are closed. (There was no such bound: every prepare succeeded.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_share_a_memory_bound() {
    let cluster = cluster().await;
    let toml = proxy::config_toml(cluster, &[1], "").replacen(
        "[proxy]\n",
        "[proxy]\nmax-prepared-memory = 1048576\n",
        1,
    );
    let p = proxy::start(&toml).await.unwrap();
    // 300 000 bytes each: three fit in 1 MiB, a fourth does not.
    let text = |n: usize| format!("SELECT {n} /* {} */", "x".repeat(300_000));
    let mut a = p.conn().await.unwrap();
    let mut b = p.conn().await.unwrap();
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(a.prep(text(n)).await.unwrap());
    }
    for c in [&mut a, &mut b] {
        match c.prep(text(3)).await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!((e.code, e.state.as_str()), (1461, "42000"), "{e:?}");
                assert!(e.message.contains("max-prepared-memory"), "{}", e.message);
            }
            other => panic!("a fourth statement: {other:?}"),
        }
    }
    // COM_STMT_CLOSE has no reply: the ping's answer shows the proxy has taken it.
    a.close(held.pop().unwrap()).await.unwrap();
    a.ping().await.unwrap();
    let st = b.prep(text(3)).await.unwrap();
    let three: Option<i64> = b.exec_first(&st, ()).await.unwrap();
    assert_eq!(three, Some(3));
}

/// A backend connection keeps the statements its clients closed prepared for the next
/// client, but not without bound: one client preparing and closing ever new long statements
/// must not make it keep them all (the server's count of open statements shows what it
/// keeps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_long_statements_do_not_pile_up_on_a_backend_connection() {
    let (cl, p) = proxy_on_one_connection().await;
    // 100 000 bytes each: ten fit in a connection's 1 MiB, besides the one just prepared.
    let text = |n: usize| format!("SELECT {n} /* {} */", "x".repeat(100_000));
    let mut c = p.conn().await.unwrap();
    for n in 0..40 {
        let st = c.prep(text(n)).await.unwrap();
        let got: Option<usize> = c.exec_first(&st, ()).await.unwrap();
        assert_eq!(got, Some(n));
        c.close(st).await.unwrap();
    }
    // The closes of the statements the connection let go go out ahead of its next command.
    let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    let mut root = cl.primary.root_conn().await.unwrap();
    let open = global_status(&mut root, "Prepared_stmt_count").await;
    assert!(
        (1..=11).contains(&open),
        "{open} statements open on the server"
    );
    // The statements kept still run.
    let st = c.prep(text(39)).await.unwrap();
    let got: Option<usize> = c.exec_first(&st, ()).await.unwrap();
    assert_eq!(got, Some(39));
}

/// What a backend connection lets go to keep within its bound is what was used least
/// recently: a long statement a client keeps running stays prepared while one-off long
/// statements come and go (the server's count of prepares shows none of it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_in_use_stays_prepared_among_long_one_offs() {
    let (cl, p) = proxy_on_one_connection().await;
    let mut root = cl.primary.root_conn().await.unwrap();
    let mut c = p.conn().await.unwrap();
    // The longest text on the connection, run between every one-off.
    let hot = c
        .prep(format!("SELECT ? /* {} */", "h".repeat(300_000)))
        .await
        .unwrap();
    let before = global_status(&mut root, "Com_stmt_prepare").await;
    for n in 0..20 {
        let once = c
            .prep(format!("SELECT {n} /* {} */", "x".repeat(100_000)))
            .await
            .unwrap();
        let got: Option<usize> = c.exec_first(&once, ()).await.unwrap();
        assert_eq!(got, Some(n));
        c.close(once).await.unwrap();
        let got: Option<usize> = c.exec_first(&hot, (n,)).await.unwrap();
        assert_eq!(got, Some(n));
    }
    assert_eq!(
        global_status(&mut root, "Com_stmt_prepare").await - before,
        20,
        "the one-offs' prepares only"
    );
}

/// A proxy in front of a cluster of its own, a primary alone, which it reaches through one
/// connection: what the server counts is that connection's doing.
async fn proxy_on_one_connection() -> (Cluster, proxy::Proxy) {
    let cl = Cluster::start(0).await.unwrap();
    let toml =
        proxy::config_toml(&cl, &[], "").replace("max-connections = 50", "max-connections = 1");
    let p = proxy::start(&toml).await.unwrap();
    (cl, p)
}

/// A server's global status counter `name`.
async fn global_status(root: &mut Conn, name: &str) -> usize {
    let row: Option<(String, usize)> = root
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await
        .unwrap();
    row.unwrap().1
}

/// A command the proxy rewrites (writing in the value of `CONNECTION_ID()`, adding an
/// execute's parameter types: both make it longer) can take more packets than the client's
/// when it is just under a multiple of 16 MiB. The server numbers its reply after the packets it got; the client must see it
/// numbered after its own, as from the server directly, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_commands_across_a_packet_boundary_keep_the_clients_numbering() {
    const MAX: usize = 0xFF_FFFF;
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    // (head, tail, total payload): grown within two packets; one packet grown to two, by
    // `CONNECTION_ID()`, `ROW_COUNT()` and, after a result set, `FOUND_ROWS()` (each written
    // in as the value the proxy holds, in an expression as wide as the call's result).
    let cases = [
        (
            "\x03SELECT CONNECTION_ID() > 0 AS c, LENGTH('",
            "')",
            MAX + 3,
        ),
        ("\x03SELECT CONNECTION_ID() > 0, LENGTH('", "')", MAX - 5),
        (
            "\x03SELECT ROW_COUNT() IS NOT NULL AS c, LENGTH('",
            "')",
            MAX - 5,
        ),
        (
            "\x03SELECT FOUND_ROWS() IS NOT NULL AS c, LENGTH('",
            "')",
            MAX - 5,
        ),
    ];
    for (head, tail, total) in cases {
        let mut command = head.as_bytes().to_vec();
        command.resize(total - tail.len(), b'x');
        command.extend_from_slice(tail.as_bytes());
        assert_eq!(command.len(), total);
        let mut seen = Vec::new();
        for addr in [primary_addr(cluster), p.addr] {
            let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
                .await
                .unwrap();
            // A result set first, for `FOUND_ROWS()` to have a count the proxy knows.
            c.query("SELECT 1").await.unwrap();
            c.send_split(&command).await.unwrap();
            seen.push(one_row_result(&mut c).await);
            let after = c.query("SELECT 1").await.unwrap();
            assert_eq!(after.last().map(|r| r[0]), Some(0xFE), "{after:?}");
        }
        assert_eq!(
            seen[1], seen[0],
            "through the proxy, then directly ({total} bytes)"
        );
        assert_eq!(seen[0].0[0], (total / MAX + 1) as u8);
    }
    // `LOAD DATA LOCAL`: the client's file must reach the server numbered the server's way.
    let mut setup = cluster.primary.conn().await.unwrap();
    setup
        .query_drop("CREATE OR REPLACE TABLE renumber_t (a INT, b BIGINT UNSIGNED)")
        .await
        .unwrap();
    let head =
        "\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE renumber_t (a) SET b = CONNECTION_ID() /*";
    let mut command = head.as_bytes().to_vec();
    command.resize(MAX - 5 - 2, b'x');
    command.extend_from_slice(b"*/");
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = raw_local_files(addr).await;
        c.send_split(&command).await.unwrap();
        let (seq, request) = c.read_with_seq().await.unwrap();
        assert_eq!((seq, &request[..]), (1, &b"\xfbf"[..]), "{addr}");
        let ok = c.send_file(&[b"7\n"]).await.unwrap();
        assert_eq!(ok[..3], [0, 1, 0], "{addr}: {}", raw::err_text(&ok));
    }
    let loaded: Vec<(i32, bool)> = setup
        .query("SELECT a, b > 0 FROM renumber_t")
        .await
        .unwrap();
    assert_eq!(loaded, [(7, true), (7, true)]);
    // A piece of the file exactly 16 MiB - 1 long takes an empty packet to end it, which is
    // not yet the empty packet that ends the file. (The proxy took it for that: the server
    // waited for the rest, and the file's real end was read as the next command.)
    setup
        .query_drop("CREATE OR REPLACE TABLE infile_len_t (n BIGINT)")
        .await
        .unwrap();
    let mut line = vec![b'x'; MAX - 1];
    line.push(b'\n');
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = raw_local_files(addr).await;
        c.send(b"\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE infile_len_t (@x) SET n = LENGTH(@x)")
            .await
            .unwrap();
        let (_, request) = c.read_with_seq().await.unwrap();
        assert_eq!(request, b"\xfbf", "{addr}");
        let pieces: [&[u8]; 2] = [&line, b""];
        let ok = tokio::time::timeout(std::time::Duration::from_secs(20), c.send_file(&pieces))
            .await
            .unwrap_or_else(|_| panic!("{addr}: no reply to the file in 20 s"))
            .unwrap();
        assert_eq!(ok[0], 0, "{addr}: {}", raw::err_text(&ok));
        let after = c.query("SELECT 1").await.unwrap();
        assert_eq!(after.last().map(|r| r[0]), Some(0xFE), "{addr}: {after:?}");
    }
    let loaded: Vec<i64> = setup.query("SELECT n FROM infile_len_t").await.unwrap();
    assert_eq!(loaded, [MAX as i64 - 1; 2]);

    // A prepared statement executed again without its parameter types: the proxy adds the
    // types the client sent the first time (2 bytes), taking a one-packet command to two.
    let mut seen = Vec::new();
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        let (id, _, params) = c.prepare("SELECT LENGTH(?)").await.unwrap();
        assert_eq!(params, 1);
        c.send(&raw::execute_param_packet(id, false, Some("abc")))
            .await
            .unwrap();
        one_row_result(&mut c).await;
        let mut again = raw::execute_packet(id, false);
        again.extend_from_slice(&[0, 0]); // NULL bitmap; no new types
        let len = MAX - 1 - again.len() - 4;
        again.push(0xfd);
        again.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        again.resize(MAX - 1, b'y');
        c.send_split(&again).await.unwrap();
        seen.push(one_row_result(&mut c).await);
    }
    assert_eq!(seen[1], seen[0], "through the proxy, then directly");
    assert_eq!(seen[0].0[0], 1);
}

/// A command over a server's `max_allowed_packet` (but within the proxy's) gets the server's
/// refusal, 1153, as a direct client does: the server says so and hangs up while the command
/// is still coming. The failed write is not a failed server: the command is not sent to every
/// other backend in turn, and none is marked down. The session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_the_servers_limit_gets_its_refusal() {
    // A cluster of its own: the servers' limit is global.
    let cluster = Cluster::start(1).await.unwrap();
    for server in cluster.servers() {
        let mut root = server.root_conn().await.unwrap();
        root.query_drop("SET GLOBAL max_allowed_packet = 1048576")
            .await
            .unwrap();
    }
    let p = proxy::start(&proxy::config_toml(&cluster, &[1], ""))
        .await
        .unwrap();
    // Raw: a driver would refuse it itself, having read the servers' limit.
    let mut c = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    c.query("CREATE TABLE IF NOT EXISTS big_t (v INT)")
        .await
        .unwrap();
    // Far over, the server hangs up while the command is still coming; just over, it reads the
    // whole command, answers 1153 and then hangs up: that connection is gone all the same.
    for size in [8 << 20, (1 << 20) + 1024] {
        let mut big = b"\x03SELECT LENGTH('".to_vec();
        big.resize(size, b'x');
        big.extend_from_slice(b"')");
        c.send_split(&big).await.unwrap();
        let refusal = raw::err_text(&c.read().await.unwrap());
        assert!(refusal.starts_with("1153 (08S01)"), "{size}: {refusal}");
        c.query("SELECT 1").await.unwrap();
        c.query("INSERT INTO big_t VALUES (1)").await.unwrap();
    }
    // In a transaction, the transaction went with the connection: the session ends, as a
    // direct client's connection does.
    c.query("BEGIN").await.unwrap();
    c.query("INSERT INTO big_t VALUES (2)").await.unwrap();
    let mut big = b"\x03SELECT LENGTH('".to_vec();
    big.resize((1 << 20) + 1024, b'x');
    big.extend_from_slice(b"')");
    c.send_split(&big).await.unwrap();
    assert!(raw::err_text(&c.read().await.unwrap()).starts_with("1153 (08S01)"));
    assert!(c.query("SELECT 1").await.is_err());
    let backends = p.admin().await.backends().await.unwrap();
    assert!(
        backends
            .iter()
            .all(|b| b.state != rwproxy_admin::BackendState::Down),
        "{backends:?}"
    );
    let failures: u64 = p
        .admin()
        .await
        .stats()
        .await
        .unwrap()
        .iter()
        .map(|b| b.errors)
        .sum();
    assert_eq!(failures, 0, "backend failures counted");
}

/// The compressed protocol is not offered. A client that asks for it anyway (Connector/Python
/// with `compress=True` does) is refused at login with a message saying so, where it used to
/// fail later with a lost connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_asked_for_anyway_is_refused_clearly() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let greeting = RawConn::login(
        p.addr,
        APP_USER,
        APP_PASSWORD,
        DATABASE,
        LoginOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(greeting.login_reply[0], 0, "a plain login works");
    let c = RawConn::login(
        p.addr,
        APP_USER,
        APP_PASSWORD,
        DATABASE,
        LoginOptions {
            extra_capabilities: Cap::CLIENT_COMPRESS,
            ..LoginOptions::default()
        },
    )
    .await
    .unwrap();
    let refusal = raw::err_text(&c.login_reply);
    assert!(
        refusal.starts_with("1235 (42000)") && refusal.contains("compressed protocol"),
        "{refusal}"
    );
}

/// A login request out of sequence is refused as MariaDB refuses it: 1156 "Got packets out of
/// order" (it was accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_out_of_sequence_is_refused_as_by_the_server() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for addr in [primary_addr(cluster), p.addr] {
        let opts = LoginOptions {
            login_seq: Some(5),
            ..LoginOptions::default()
        };
        let c = RawConn::login(addr, APP_USER, APP_PASSWORD, DATABASE, opts)
            .await
            .unwrap();
        seen.push(raw::err_text(&c.login_reply));
    }
    assert!(seen[0].starts_with("1156 (08S01)"), "direct: {}", seen[0]);
    assert_eq!(seen[1], seen[0], "through the proxy, then directly");
}

/// A 40 MB BLOB (three 16 MiB packets) goes in and comes back byte-identical through the
/// text and the binary protocol, as it does directly. The text insert is an 80 MB command:
/// the proxy is told the servers' `max_allowed_packet` (256 MiB in the sandbox), as a DBA
/// whose servers take more than the default 64 MiB must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_megabyte_blob_round_trips() {
    let cluster = cluster().await;
    let toml = proxy::config_toml(cluster, &[1], "").replacen(
        "[proxy]\n",
        "[proxy]\nmax-allowed-packet = 268435456\n",
        1,
    );
    let p = proxy::start(&toml).await.unwrap();
    let blob: Vec<u8> = (0..40_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE OR REPLACE TABLE blob_t (id INT PRIMARY KEY, b LONGBLOB) ENGINE=Aria")
        .await
        .unwrap();
    // Binary protocol in (mysql_async sends it as long data), text protocol in.
    c.exec_drop("INSERT INTO blob_t VALUES (1, ?)", (&blob,))
        .await
        .unwrap();
    let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
    c.query_drop(format!("INSERT INTO blob_t VALUES (2, x'{hex}')"))
        .await
        .unwrap();
    drop(hex);
    cluster.wait_replicas_caught_up().await.unwrap();
    for id in [1, 2] {
        let text: Vec<u8> = c
            .query_first(format!("SELECT b FROM blob_t WHERE id = {id}"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            text == blob,
            "text protocol, row {id}: {} bytes",
            text.len()
        );
        let bin: Vec<u8> = c
            .exec_first("SELECT b FROM blob_t WHERE id = ?", (id,))
            .await
            .unwrap()
            .unwrap();
        assert!(
            bin == blob,
            "binary protocol, row {id}: {} bytes",
            bin.len()
        );
    }
    // Two 40 MB rows in one result set, then the connection is still in step.
    let rows: Vec<Vec<u8>> = c.query("SELECT b FROM blob_t ORDER BY id").await.unwrap();
    assert!(rows.len() == 2 && rows.iter().all(|r| *r == blob));
    let one: u32 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

fn infile(rows: usize) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("rwproxy-infile-{}-{rows}.tsv", std::process::id()));
    let mut data = String::with_capacity(rows * 100);
    for i in 0..rows {
        data += &format!("{i}\t{}\n", "x".repeat(90));
    }
    std::fs::write(&path, data).unwrap();
    path
}

/// `LOAD DATA LOCAL INFILE` with a 100 MB file, through mysql_async's handler and through the
/// `mariadb --local-infile` CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_local_infile_100mb() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let rows = 1_050_000;
    let path = infile(rows);
    assert!(std::fs::metadata(&path).unwrap().len() > 100_000_000);
    let opts = OptsBuilder::from_opts(p.opts())
        .local_infile_handler(Some(WhiteListFsHandler::new(&[&path][..])));
    let mut c = Conn::new(opts).await.unwrap();
    c.query_drop(
        "CREATE OR REPLACE TABLE infile_t (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=Aria",
    )
    .await
    .unwrap();
    c.query_drop(format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE infile_t",
        path.display()
    ))
    .await
    .unwrap();
    assert_eq!(c.affected_rows(), rows as u64);
    let n: u64 = c
        .query_first("/*master*/ SELECT COUNT(*) FROM infile_t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, rows as u64);

    c.query_drop("TRUNCATE infile_t").await.unwrap();
    let out = std::process::Command::new("mariadb")
        .args([
            "--local-infile=1",
            "-h127.0.0.1",
            &format!("-P{}", p.addr.port()),
            &format!("-u{APP_USER}"),
            &format!("-p{APP_PASSWORD}"),
            DATABASE,
            "-e",
            &format!(
                "LOAD DATA LOCAL INFILE '{}' INTO TABLE infile_t; SELECT ROW_COUNT()",
                path.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: u64 = c
        .query_first("/*master*/ SELECT COUNT(*) FROM infile_t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, rows as u64);
    let _ = std::fs::remove_file(&path);
}

/// A client without `CLIENT_LOCAL_FILES` gets the server's refusal; one that answers the
/// file request with nothing loads nothing; both sessions stay usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_local_refused_like_a_server() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut setup = cluster.primary.conn().await.unwrap();
    setup
        .query_drop("CREATE OR REPLACE TABLE refuse_t (id INT, v TEXT)")
        .await
        .unwrap();
    let load = "LOAD DATA LOCAL INFILE '/nonexistent' INTO TABLE refuse_t";
    for (addr, who) in [(primary_addr(cluster), "direct"), (p.addr, "proxy")] {
        let mut plain = raw(addr, LoginOptions::default()).await;
        let reply = last(&plain.query_reply(load).await.unwrap());
        assert_eq!(
            raw::err_text(&reply),
            "4166 (HY000): The used command is not allowed because the MariaDB server or client has disabled the local infile capability",
            "{who}"
        );
        let ok = last(&plain.query("SELECT 1").await.unwrap());
        assert_eq!(ok[0], 0xfe, "{who}: usable after the refusal");

        let mut willing = raw_local_files(addr).await;
        let request = last(&willing.query(load).await.unwrap());
        assert_eq!(request, b"\xfb/nonexistent", "{who}");
        let ok = willing.send_file(&[]).await.unwrap();
        assert_eq!(ok[..3], [0, 0, 0], "{who}: {}", raw::err_text(&ok));
        let ok = last(&willing.query("SELECT 1").await.unwrap());
        assert_eq!(ok[0], 0xfe, "{who}: usable after an empty file");
    }
}

/// Every collation id a client can put in its login: the session gets what a direct login
/// gets (including the server's fallback for ids it does not know), and text in 4-byte UTF-8
/// comes back byte-identical through both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_collations_and_emoji() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let sql = "SELECT @@character_set_client, @@collation_connection, @@character_set_results";
    let mut differ = Vec::new();
    for id in 1..=255u8 {
        let opts = LoginOptions {
            collation: id,
            ..LoginOptions::default()
        };
        let mut d = RawConn::login(
            primary_addr(cluster),
            APP_USER,
            APP_PASSWORD,
            DATABASE,
            opts,
        )
        .await
        .unwrap();
        let mut v = RawConn::login(p.addr, APP_USER, APP_PASSWORD, DATABASE, opts)
            .await
            .unwrap();
        let (dr, vr) = if d.login_reply[0] == 0 && v.login_reply[0] == 0 {
            (d.query(sql).await.unwrap(), v.query(sql).await.unwrap())
        } else {
            (vec![d.login_reply.clone()], vec![v.login_reply.clone()])
        };
        if dr != vr {
            differ.push(format!("{id}: direct {dr:02x?}\n  proxy {vr:02x?}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));

    let text = "emoji 😀🎉 𝔘𝔫𝔦 🏳️‍🌈 ✓ 中文";
    let mut c = p.conn().await.unwrap();
    c.query_drop("CREATE OR REPLACE TABLE emoji_t (id INT PRIMARY KEY, s VARCHAR(100)) DEFAULT CHARSET=utf8mb4")
        .await
        .unwrap();
    c.exec_drop("INSERT INTO emoji_t VALUES (1, ?)", (text,))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO emoji_t VALUES (2, '{text}')"))
        .await
        .unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    for id in [1, 2] {
        let t: Vec<u8> = c
            .query_first(format!("SELECT s FROM emoji_t WHERE id = {id}"))
            .await
            .unwrap()
            .unwrap();
        let b: Vec<u8> = c
            .exec_first("SELECT s FROM emoji_t WHERE id = ?", (id,))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t, text.as_bytes());
        assert_eq!(b, text.as_bytes());
        let hex: String = c
            .query_first(format!("SELECT HEX(s) FROM emoji_t WHERE id = {id}"))
            .await
            .unwrap()
            .unwrap();
        let want: String = text.bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex, want);
    }
}

/// Drivers that escape strings themselves (Connector/C's `mysql_real_escape_string`,
/// go-sql-driver's interpolation) choose how by the status flags of the last reply. With
/// `NO_BACKSLASH_ESCAPES` in `sql_mode`, a reply lacking its flag makes them escape a quote
/// with a backslash, which the server takes literally: a crafted string ends the literal.
/// The replies the proxy writes itself (greeting, login OK, ping) carry the session's flags
/// as the server's do; here the servers' global `sql_mode` has it. (Only the very first
/// greeting, sent before the proxy has opened any connection, cannot know it; the login's
/// OK, which drivers read the flags from next, already does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_mode_status_flags_reach_the_client() {
    const MODE_FLAGS: u16 = 0x0200 | 0x8000;
    let cl = Cluster::start(1).await.unwrap();
    for s in cl.servers() {
        let mut root = s.root_conn().await.unwrap();
        root.query_drop("SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES')")
            .await
            .unwrap();
    }
    let p = proxy::start(&proxy::config_toml(&cl, &[1], ""))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for addr in [primary_addr(&cl), p.addr] {
        let mut flags = Vec::new();
        // Without a schema first: the proxy has opened no connection yet.
        for db in ["", DATABASE] {
            let c = RawConn::connect(addr, APP_USER, APP_PASSWORD, db)
                .await
                .unwrap();
            flags.push(c.greeting_status & MODE_FLAGS);
            flags.push(raw::ok_status(&c.login_reply) & MODE_FLAGS);
        }
        let mut c = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        for set in [
            "SELECT 1",
            "SET sql_mode = 'ANSI_QUOTES'",
            "SET sql_mode = ''",
            "SET sql_mode = 'NO_BACKSLASH_ESCAPES'",
        ] {
            c.query(set).await.unwrap();
            let ping = c.command(&[0x0e]).await.unwrap();
            flags.push(raw::ok_status(&ping[0]) & MODE_FLAGS);
        }
        // A mode for one statement ends with it; a reset brings the server's default back.
        c.query("SET sql_mode = ''").await.unwrap();
        c.query("SET STATEMENT sql_mode = 'NO_BACKSLASH_ESCAPES' FOR DO 1")
            .await
            .unwrap();
        let ping = c.command(&[0x0e]).await.unwrap();
        flags.push(raw::ok_status(&ping[0]) & MODE_FLAGS);
        c.query("SET sql_mode = 'ANSI_QUOTES'").await.unwrap();
        let reset = c.command(&[0x1f]).await.unwrap();
        flags.push(raw::ok_status(&reset[0]) & MODE_FLAGS);
        let ping = c.command(&[0x0e]).await.unwrap();
        flags.push(raw::ok_status(&ping[0]) & MODE_FLAGS);
        seen.push(flags);
    }
    println!("direct {:x?}, proxy {:x?}", seen[0], seen[1]);
    assert_eq!(seen[0][3], 0x0200, "MariaDB's login OK has the flag");
    assert_eq!(seen[1][1..], seen[0][1..]);
}

/// A client that did not ask for multi-results (an old one) gets the server's refusal of a
/// `CALL` that returns rows (1312), by text and by prepared statement, not results it cannot
/// read; a client that asked gets them, from the same pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_returning_rows_need_multi_results() {
    let cluster = cluster().await;
    let p = proxy::start(&proxy::config_toml(cluster, &[1], ""))
        .await
        .unwrap();
    let mut setup = cluster.primary.conn().await.unwrap();
    setup
        .query_drop("CREATE OR REPLACE PROCEDURE mr_rows() SELECT 1 AS a")
        .await
        .unwrap();
    let old = LoginOptions {
        missing_capabilities: Cap::CLIENT_MULTI_RESULTS
            | Cap::CLIENT_PS_MULTI_RESULTS
            | Cap::CLIENT_MULTI_STATEMENTS,
        ..LoginOptions::default()
    };
    let mut seen = Vec::new();
    for addr in [primary_addr(cluster), p.addr] {
        let mut c = raw(addr, old).await;
        let text = last(&c.query_reply("CALL mr_rows()").await.unwrap());
        let (id, _, _) = c.prepare("CALL mr_rows()").await.unwrap();
        let binary = last(&c.command(&raw::execute_packet(id, false)).await.unwrap());
        let mut modern = raw(addr, LoginOptions::default()).await;
        let rows = modern.query("CALL mr_rows()").await.unwrap().len();
        seen.push((raw::err_text(&text), raw::err_text(&binary), rows));
    }
    println!("{seen:?}");
    assert!(seen[0].0.starts_with("1312"), "{seen:?}");
    assert_eq!(seen[1], seen[0]);
}

/// The character set a client names in its handshake is its session's, as on a server, also
/// with `charset` configured (Atlas's key), which only fills in for a client naming none the
/// server knows (0, or MySQL 8's utf8mb4_0900_ai_ci). Before, the configured one won: a
/// latin1 client got utf8mb4 results it decoded as latin1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_charset_wins_over_the_configured_one() {
    let cl = cluster().await;
    let toml = proxy::config_toml(cl, &[], "").replacen(
        "[proxy]\n",
        "[proxy]\ncharset = \"utf8mb4\"\n",
        1,
    );
    let p = proxy::start(&toml).await.unwrap();
    const PROBE: &str = "SELECT CONCAT_WS('/', @@character_set_client, @@collation_connection, \
                         @@character_set_results)";
    /// The session's character set after a login with `collation`, and after a change user
    /// with `changed` if given.
    async fn session_charset(addr: SocketAddr, collation: u8, changed: Option<u8>) -> String {
        let mut c = raw(
            addr,
            LoginOptions {
                collation,
                ..LoginOptions::default()
            },
        )
        .await;
        if let Some(to) = changed {
            let reply = c
                .change_user(
                    APP_USER,
                    APP_PASSWORD,
                    DATABASE,
                    to.into(),
                    "mysql_native_password",
                )
                .await
                .unwrap();
            assert_eq!(reply.last().unwrap()[0], 0, "change user");
        }
        let reply = c.query(PROBE).await.unwrap();
        // Column count, its definition, EOF, then the row: one length-prefixed string.
        let row = &reply[3];
        String::from_utf8_lossy(&row[1..1 + usize::from(row[0])]).into_owned()
    }
    for (collation, name) in [(8, "latin1"), (33, "utf8mb3"), (45, "utf8mb4")] {
        for (login, changed) in [(collation, None), (45, Some(collation))] {
            let direct = session_charset(primary_addr(cl), login, changed).await;
            assert!(direct.starts_with(name), "{direct}");
            assert_eq!(session_charset(p.addr, login, changed).await, direct);
        }
    }
    for none in [0, 255] {
        for (login, changed) in [(none, None), (8, Some(none))] {
            assert_eq!(
                session_charset(p.addr, login, changed).await,
                "utf8mb4/utf8mb4_general_ci/utf8mb4",
                "handshake collation {none}"
            );
        }
    }
    // A real client's choice.
    let (ok, out, err) = rwproxy_sql_tests::cli::mariadb(
        p.addr.port(),
        APP_PASSWORD,
        &["--default-character-set=latin1", "-N", "-e", PROBE],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "latin1/latin1_swedish_ci/latin1\n");
}
