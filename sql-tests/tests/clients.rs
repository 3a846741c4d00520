//! Real clients through the proxy: the `mariadb` CLI (compared with the same command against
//! the primary), mysql_async prepared statements, and raw-protocol cursors, long data and
//! statement reset.

use mysql_async::prelude::*;
use mysql_async::{Conn, Value};
use rwproxy_sql_tests::cli::mariadb as cli;
use rwproxy_sql_tests::raw::{self, RawConn};
use rwproxy_sql_tests::{proxy, Cluster, APP_PASSWORD, APP_USER, DATABASE};
use tokio::sync::OnceCell;

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async { Cluster::start(2).await.expect("sandbox cluster") })
        .await
}

async fn setup() -> (&'static Cluster, proxy::Proxy) {
    let c = cluster().await;
    let p = proxy::start(&proxy::config_toml(c, &[1, 1], ""))
        .await
        .unwrap();
    (c, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_matches_primary() {
    let (c, p) = setup().await;
    let (pp, dp) = (p.addr.port(), c.primary.port);
    let setup_sql = "CREATE TABLE IF NOT EXISTS cli_t (id INT PRIMARY KEY, s VARCHAR(20) CHARSET utf8mb4, d DECIMAL(6,2), t DATETIME(3)); \
                     REPLACE INTO cli_t VALUES (1, 'one', 1.5, '2024-01-01 10:00:00.123'), (2, 'zwei ü 😀', NULL, NULL), (3, '', -0.25, '1999-12-31 23:59:59')";
    let (ok, _, err) = cli(pp, APP_PASSWORD, &["-e", setup_sql], None);
    assert!(ok, "{err}");
    c.wait_replicas_caught_up().await.unwrap();
    let queries = [
        "SELECT * FROM cli_t ORDER BY id",
        "SELECT COUNT(*), SUM(d), GROUP_CONCAT(s ORDER BY id) FROM cli_t",
        "SHOW COLUMNS FROM cli_t",
        "SELECT 1/0; SHOW WARNINGS",
        "SELECT * FROM cli_t WHERE id > 100",
        "SELECT DATABASE(), CURRENT_USER(), @@character_set_client, @@collation_connection",
    ];
    for q in queries {
        for mode in [
            &["--batch"][..],
            &["--batch", "--raw", "--column-type-info"][..],
            &["--table"][..],
        ] {
            let mut args = mode.to_vec();
            args.extend(["-e", q]);
            let via = cli(pp, APP_PASSWORD, &args, None);
            let direct = cli(dp, APP_PASSWORD, &args, None);
            assert!(direct.0, "direct {q}: {}", direct.2);
            assert_eq!(
                via, direct,
                "mariadb {args:?} through the proxy vs the primary"
            );
        }
    }
    // A failing statement: same exit status and message.
    let via = cli(
        pp,
        APP_PASSWORD,
        &["--batch", "-e", "SELECT * FROM no_such_t"],
        None,
    );
    let direct = cli(
        dp,
        APP_PASSWORD,
        &["--batch", "-e", "SELECT * FROM no_such_t"],
        None,
    );
    assert!(!via.0 && via.2.contains("ERROR 1146 (42S02)"), "{via:?}");
    assert_eq!(via, direct);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_script_on_stdin() {
    let (c, p) = setup().await;
    let script = "DROP TABLE IF EXISTS script_t;\n\
                  CREATE TABLE script_t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10));\n\
                  INSERT INTO script_t (v) VALUES ('a'), ('b');\n\
                  SELECT LAST_INSERT_ID();\n\
                  BEGIN;\n\
                  UPDATE script_t SET v = CONCAT(v, v);\n\
                  SELECT @@server_id = 1 AS on_primary, v FROM script_t ORDER BY id;\n\
                  COMMIT;\n\
                  SET @x := 5;\n\
                  SELECT @x * 2;\n\
                  USE mysql;\n\
                  SELECT DATABASE();\n";
    let (ok, out, err) = cli(p.addr.port(), APP_PASSWORD, &["--batch"], Some(script));
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "LAST_INSERT_ID()\n1\non_primary\tv\n1\taa\n1\tbb\n@x * 2\n10\nDATABASE()\nmysql\n"
    );
    c.wait_replicas_caught_up().await.unwrap();
    let mut d = c.primary.conn().await.unwrap();
    let v: Vec<String> = d.query("SELECT v FROM script_t ORDER BY id").await.unwrap();
    assert_eq!(v, ["aa", "bb"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_wrong_password() {
    let (c, p) = setup().await;
    // Also from a client whose default plugin is not the greeting's: its password comes in the
    // reply to the plugin switch, and the message still says one was used.
    for plugin in [None, Some("--default-auth=caching_sha2_password")] {
        let args: Vec<&str> = plugin.into_iter().chain(["-e", "SELECT 1"]).collect();
        let via = cli(p.addr.port(), "wrong", &args, None);
        assert!(!via.0, "login with a wrong password succeeded: {via:?}");
        assert!(via.2.contains("ERROR 1045 (28000)"), "{}", via.2);
        assert!(
            via.2.contains("(using password: YES)"),
            "{plugin:?}: {}",
            via.2
        );
        let direct = cli(c.primary.port, "wrong", &args, None);
        assert!(!direct.0 && direct.2.contains("ERROR 1045 (28000)"));
        assert!(direct.2.contains("(using password: YES)"), "{}", direct.2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_with_many_types_on_many_connections() {
    let (c, p) = setup().await;
    let mut conn = p.conn().await.unwrap();
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS ps_t (id INT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, \
         f DOUBLE, s VARCHAR(50) CHARSET utf8mb4, b BLOB, dt DATETIME(6), t TIME(6), n INT)",
    )
    .await
    .unwrap();
    conn.query_drop("DELETE FROM ps_t").await.unwrap();
    let ins = conn
        .prep("INSERT INTO ps_t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .await
        .unwrap();
    for id in 0..20i32 {
        let row: Vec<Value> = vec![
            id.into(),
            (-(id as i64) * 1_000_000_007).into(),
            (u64::MAX - id as u64).into(),
            (id as f64 / 3.0).into(),
            format!("s{id} 😀").into(),
            vec![id as u8, 0, 255].into(),
            Value::Date(2024, 2, 29, 12, 34, id as u8, 123_456),
            Value::Time(id % 2 == 1, 34, 22 - id as u8 % 20, 59, 59, 999_999),
            Value::NULL,
        ];
        conn.exec_drop(&ins, row).await.unwrap();
        assert_eq!(conn.affected_rows(), 1);
    }
    c.wait_replicas_caught_up().await.unwrap();

    let sql = "SELECT id, i, u, f, s, b, dt, t, n FROM ps_t WHERE id >= ? ORDER BY id";
    let mut direct = c.primary.conn().await.unwrap();
    let want: Vec<mysql_async::Row> = direct.exec(sql, (5,)).await.unwrap();
    let want: Vec<Vec<Value>> = want.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(want.len(), 15);

    // Many client connections, each executing the same statement many times: the proxy
    // prepares it lazily on whichever backend connection (and replica) runs it.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let opts = p.opts();
        let want = want.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(opts).await.unwrap();
            let st = conn.prep(sql).await.unwrap();
            for _ in 0..25 {
                let got: Vec<mysql_async::Row> = conn.exec(&st, (5,)).await.unwrap();
                let got: Vec<Vec<Value>> = got.into_iter().map(|r| r.unwrap()).collect();
                assert_eq!(got, want);
            }
            // COM_STMT_CLOSE, then another statement on the same connection.
            conn.close(st).await.unwrap();
            let n: Option<i64> = conn
                .exec_first("SELECT COUNT(*) FROM ps_t WHERE s LIKE ?", ("s1%",))
                .await
                .unwrap();
            assert_eq!(n, Some(11));
            conn.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A closed statement id is gone for good.
    let st = conn.prep("SELECT 1").await.unwrap();
    conn.close(st.clone()).await.unwrap();
    let mut raw_closed = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    let (id, _, _) = raw_closed.prepare("SELECT 1").await.unwrap();
    raw_closed.send(&raw::close_packet(id)).await.unwrap();
    raw_closed
        .send(&raw::execute_packet(id, false))
        .await
        .unwrap();
    let r = raw_closed.read().await.unwrap();
    assert!(
        raw::err_text(&r).starts_with("1243 (HY000)"),
        "{}",
        raw::err_text(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_cursor_fetch_long_data_and_reset() {
    let (c, p) = setup().await;
    let mut conn = p.conn().await.unwrap();
    conn.query_drop("CREATE TABLE IF NOT EXISTS cur_t (id INT NOT NULL PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("REPLACE INTO cur_t SELECT seq FROM seq_1_to_10")
        .await
        .unwrap();
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS ld_t (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB)",
    )
    .await
    .unwrap();
    c.wait_replicas_caught_up().await.unwrap();

    // Cursor: COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY, then COM_STMT_FETCH 3 rows at a time.
    let mut r = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    let (id, cols, params) = r.prepare("SELECT id FROM cur_t ORDER BY id").await.unwrap();
    assert_eq!((cols, params), (1, 0));
    r.send(&raw::execute_packet(id, true)).await.unwrap();
    assert_eq!(r.read_columns().await.unwrap(), 1);
    let mut got = Vec::new();
    let mut fetches = 0;
    loop {
        r.send(&raw::fetch_packet(id, 3)).await.unwrap();
        let (rows, status) = r.read_rows().await.unwrap();
        fetches += 1;
        assert!(rows.len() <= 3);
        got.extend(rows.iter().map(|row| raw::binary_row_int(row, 1)));
        if status & 0x80 != 0 {
            break; // SERVER_STATUS_LAST_ROW_SENT
        }
        assert!(fetches < 10, "cursor never ended");
    }
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
    assert_eq!(fetches, 4);

    // Long data: three chunks for parameter 0, then execute with the BLOB type bound.
    let (id, _, params) = r.prepare("INSERT INTO ld_t (b) VALUES (?)").await.unwrap();
    assert_eq!(params, 1);
    let chunk = |n: u8| vec![n; 100_000];
    for n in 1..=3 {
        r.send(&raw::long_data_packet(id, &chunk(n))).await.unwrap();
    }
    r.send(&raw::execute_param_packet(id, false, None))
        .await
        .unwrap();
    let ok = r.read().await.unwrap();
    assert_eq!(ok[0], 0, "{}", raw::err_text(&ok));

    // COM_STMT_RESET drops long data sent so far.
    r.send(&raw::long_data_packet(id, b"discarded"))
        .await
        .unwrap();
    r.send(&raw::reset_packet(id)).await.unwrap();
    let ok = r.read().await.unwrap();
    assert_eq!(ok[0], 0, "reset: {}", raw::err_text(&ok));
    r.send(&raw::long_data_packet(id, b"kept")).await.unwrap();
    r.send(&raw::execute_param_packet(id, false, None))
        .await
        .unwrap();
    let ok = r.read().await.unwrap();
    assert_eq!(ok[0], 0, "{}", raw::err_text(&ok));

    let mut d = c.primary.conn().await.unwrap();
    let rows: Vec<(u64, String)> = d
        .query("SELECT LENGTH(b), IF(LENGTH(b) < 10, b, MD5(b)) FROM ld_t ORDER BY id DESC LIMIT 2")
        .await
        .unwrap();
    let mut expect_big = chunk(1);
    expect_big.extend(chunk(2));
    expect_big.extend(chunk(3));
    let md5: Option<String> = d.exec_first("SELECT MD5(?)", (expect_big,)).await.unwrap();
    assert_eq!(
        rows[0],
        (4, "kept".into()),
        "COM_STMT_RESET did not discard long data"
    );
    assert_eq!(rows[1], (300_000, md5.unwrap()));
}

/// Schema `db` with a table `t (v INT)` holding `values` (an SQL list of rows), everywhere.
async fn cursor_table(c: &Cluster, db: &str, values: &str) {
    as_root(
        c,
        &[
            &format!("CREATE DATABASE IF NOT EXISTS {db}"),
            &format!("CREATE OR REPLACE TABLE {db}.t (v INT)"),
            &format!("INSERT INTO {db}.t VALUES {values}"),
        ],
    )
    .await;
}

/// What a fetch from a cursor over `t` returned: the values, or the error.
async fn fetched(r: &mut RawConn) -> String {
    match r.read_rows().await {
        Ok((rows, _)) => format!(
            "{:?}",
            rows.iter()
                .map(|row| raw::binary_row_int(row, 1))
                .collect::<Vec<_>>()
        ),
        Err(e) => e.to_string(),
    }
}

/// Runs `sqls` on the primary as root and waits for the replicas to apply them.
async fn as_root(c: &Cluster, sqls: &[&str]) {
    let mut root = c.primary.root_conn().await.unwrap();
    for sql in sqls {
        root.query_drop(*sql).await.unwrap();
    }
    c.wait_replicas_caught_up().await.unwrap();
}

/// A statement resolves its tables against the schema current when it was prepared, on the
/// server as through the proxy: after `USE` another schema, executing it again still reads
/// the first schema's table, however many backend connections the proxy prepared it on,
/// and the session keeps its new schema and variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statement_keeps_the_schema_it_was_prepared_in() {
    let (c, p) = setup().await;
    as_root(
        c,
        &[
            "CREATE DATABASE IF NOT EXISTS ps_schema_a",
            "CREATE DATABASE IF NOT EXISTS ps_schema_b",
            "CREATE OR REPLACE TABLE ps_schema_a.t (v VARCHAR(5))",
            "CREATE OR REPLACE TABLE ps_schema_b.t (v VARCHAR(5))",
            "INSERT INTO ps_schema_a.t VALUES ('a')",
            "INSERT INTO ps_schema_b.t VALUES ('b')",
        ],
    )
    .await;
    async fn run(mut conn: Conn) -> Vec<Option<String>> {
        let mut seen = Vec::new();
        conn.query_drop("USE ps_schema_a").await.unwrap();
        let st = conn.prep("SELECT v FROM t").await.unwrap();
        let count = conn
            .prep("SELECT CAST(COUNT(*) AS CHAR) FROM t")
            .await
            .unwrap();
        seen.push(conn.exec_first(&st, ()).await.unwrap());
        conn.query_drop("USE ps_schema_b").await.unwrap();
        conn.query_drop("SET time_zone = '+01:00'").await.unwrap();
        for _ in 0..6 {
            seen.push(conn.exec_first(&st, ()).await.unwrap());
        }
        // Preparing in the old state left the session's own state in place.
        seen.push(conn.query_first("SELECT v FROM t").await.unwrap());
        seen.push(conn.query_first("SELECT @@time_zone").await.unwrap());
        // First executed inside a transaction: preparing it in the old schema must not
        // disturb the transaction (a connection reset would roll it back).
        conn.query_drop("BEGIN").await.unwrap();
        conn.query_drop("INSERT INTO t VALUES ('x')").await.unwrap();
        seen.push(conn.exec_first(&count, ()).await.unwrap());
        let mine = "SELECT CAST(COUNT(*) AS CHAR) FROM t WHERE v = 'x'";
        seen.push(conn.query_first(mine).await.unwrap());
        conn.query_drop("ROLLBACK").await.unwrap();
        seen.push(conn.query_first(mine).await.unwrap());
        // The session's own schema dropped under it: the statement still reads its own.
        conn.query_drop("CREATE DATABASE ps_schema_c")
            .await
            .unwrap();
        conn.query_drop("USE ps_schema_c").await.unwrap();
        conn.query_drop("DROP DATABASE ps_schema_c").await.unwrap();
        for _ in 0..3 {
            seen.push(conn.exec_first(&st, ()).await.unwrap());
        }
        seen.push(
            conn.query_first("SELECT IFNULL(DATABASE(), '-')")
                .await
                .unwrap(),
        );
        seen
    }
    let direct = run(c.primary.conn().await.unwrap()).await;
    assert_eq!(direct[..2], [Some("a".into()), Some("a".into())]);
    assert_eq!(run(p.conn().await.unwrap()).await, direct);
}

/// One text prepared in two schemas by one session: both stay prepared on the backend
/// connection, so executing one does not close the other's copy and with it the cursor
/// open on it (a direct connection keeps both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_text_in_two_schemas_keeps_a_cursor_open() {
    let (c, p) = setup().await;
    as_root(
        c,
        &[
            "CREATE DATABASE IF NOT EXISTS ps_cur_a",
            "CREATE DATABASE IF NOT EXISTS ps_cur_b",
            "CREATE OR REPLACE TABLE ps_cur_a.t (v VARCHAR(5))",
            "CREATE OR REPLACE TABLE ps_cur_b.t (v VARCHAR(5))",
            "INSERT INTO ps_cur_a.t VALUES ('a1'), ('a2'), ('a3')",
            "INSERT INTO ps_cur_b.t VALUES ('b1')",
        ],
    )
    .await;
    async fn rows(r: &mut RawConn) -> String {
        match r.read_rows().await {
            Ok((rows, _)) => format!("{rows:?}"),
            Err(e) => e.to_string(),
        }
    }
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_cur_a")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let (in_a, _, _) = r.prepare("SELECT v FROM t ORDER BY v").await.unwrap();
        r.query("USE ps_cur_b").await.unwrap();
        let (in_b, _, _) = r.prepare("SELECT v FROM t ORDER BY v").await.unwrap();
        r.send(&raw::execute_packet(in_a, true)).await.unwrap();
        r.read_columns().await.unwrap();
        r.send(&raw::fetch_packet(in_a, 1)).await.unwrap();
        seen.push(rows(&mut r).await);
        for _ in 0..2 {
            r.send(&raw::execute_packet(in_b, false)).await.unwrap();
            r.read_columns().await.unwrap();
            seen.push(rows(&mut r).await);
            r.send(&raw::fetch_packet(in_a, 1)).await.unwrap();
            seen.push(rows(&mut r).await);
        }
        seen
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert!(direct.iter().all(|s| s.starts_with("[[")), "{direct:?}");
    assert_eq!(script(p.addr).await, direct);
}

/// A fetch on a statement that has no open cursor gets the server's 1421, naming the
/// client's own statement id (the proxy answers it itself when the session holds no
/// connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_without_a_cursor_names_the_statement() {
    let (c, p) = setup().await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (id, _, _) = r.prepare("SELECT 1").await.unwrap();
            r.send(&raw::fetch_packet(id, 1)).await.unwrap();
            let reply = raw::err_text(&r.read().await.unwrap());
            seen.push(reply.replace(&format!("({id})"), "(own id)"));
        }
        seen
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert!(direct.iter().all(|s| s.contains("(own id)")), "{direct:?}");
    assert_eq!(script(p.addr).await, direct);
}

/// A prepared `SET` while a cursor is open: the proxy stops using the connection's
/// statements (it cannot see what the `SET` changed) but keeps the one under the cursor,
/// so the following fetches go on where they were, as on a direct connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_set_keeps_an_open_cursor() {
    let (c, p) = setup().await;
    cursor_table(c, "ps_cur_set", "(1), (2), (3), (4)").await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_cur_set")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let (select, _, _) = r.prepare("SELECT v FROM t ORDER BY v").await.unwrap();
        let (set, _, _) = r
            .prepare("SET @@session.time_zone = '+01:00'")
            .await
            .unwrap();
        r.send(&raw::execute_packet(select, true)).await.unwrap();
        r.read_columns().await.unwrap();
        for round in 0..3 {
            if round > 0 {
                r.send(&raw::execute_packet(set, false)).await.unwrap();
                let ok = r.read().await.unwrap();
                assert_eq!(ok[0], 0, "{}", raw::err_text(&ok));
            }
            r.send(&raw::fetch_packet(select, 1)).await.unwrap();
            seen.push(fetched(&mut r).await);
        }
        seen
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert_eq!(direct, ["[1]", "[2]", "[3]"]);
    assert_eq!(script(p.addr).await, direct);
}

/// Two client statements with the same text are two statements on a server, each with its
/// own cursor: running one must not close the other's, also after a prepared `SET` (which
/// makes the proxy prepare the text again on the session's connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_text_statements_keep_their_own_cursors() {
    let (c, p) = setup().await;
    cursor_table(c, "ps_cur_twin", "(1), (2), (3), (4)").await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_cur_twin")
            .await
            .unwrap();
        let text = "SELECT v FROM t ORDER BY v";
        let (first, _, _) = r.prepare(text).await.unwrap();
        let (twin, _, _) = r.prepare(text).await.unwrap();
        let (set, _, _) = r
            .prepare("SET @@session.time_zone = '+01:00'")
            .await
            .unwrap();
        let mut seen = Vec::new();
        r.send(&raw::execute_packet(first, true)).await.unwrap();
        r.read_columns().await.unwrap();
        for round in 0..3 {
            r.send(&raw::fetch_packet(first, 1)).await.unwrap();
            seen.push(fetched(&mut r).await);
            if round == 1 {
                r.send(&raw::execute_packet(set, false)).await.unwrap();
                let ok = r.read().await.unwrap();
                assert_eq!(ok[0], 0, "{}", raw::err_text(&ok));
            }
            r.send(&raw::execute_packet(twin, false)).await.unwrap();
            r.read_columns().await.unwrap();
            let (rows, _) = r.read_rows().await.unwrap();
            seen.push(format!("twin: {} rows", rows.len()));
        }
        seen
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert_eq!(
        direct,
        [
            "[1]",
            "twin: 4 rows",
            "[2]",
            "twin: 4 rows",
            "[3]",
            "twin: 4 rows"
        ]
    );
    assert_eq!(script(p.addr).await, direct);
}

/// A statement run again with a cursor, after `SET NAMES` and a prepare of the same text,
/// fetches from its new cursor, as on a server (the proxy prepares the text again for the
/// new character set, and must not leave the fetch on the old copy's cursor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_run_again_fetches_from_its_new_cursor() {
    let (c, p) = setup().await;
    cursor_table(c, "ps_cur_again", "(1), (2), (3)").await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_cur_again")
            .await
            .unwrap();
        let text = "SELECT v FROM t ORDER BY v";
        let (select, _, _) = r.prepare(text).await.unwrap();
        let mut seen = Vec::new();
        for round in 0..2 {
            if round == 1 {
                r.query("SET NAMES latin1").await.unwrap();
                r.prepare(text).await.unwrap();
            }
            r.send(&raw::execute_packet(select, true)).await.unwrap();
            r.read_columns().await.unwrap();
            r.send(&raw::fetch_packet(select, 1)).await.unwrap();
            seen.push(fetched(&mut r).await);
        }
        seen
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert_eq!(direct, ["[1]", "[1]"]);
    assert_eq!(script(p.addr).await, direct);
}

/// Long data sent for a statement whose cursor is open leaves the cursor open, as on a
/// server, also when the proxy has to send it to a new copy of the statement (after
/// `SET NAMES`, a prepare of the same text made one under the new character set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_leaves_an_open_cursor() {
    let (c, p) = setup().await;
    cursor_table(c, "ps_cur_ld", "(1), (2), (3)").await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_cur_ld")
            .await
            .unwrap();
        let text = "SELECT v FROM t WHERE ? IS NOT NULL ORDER BY v";
        let (select, _, _) = r.prepare(text).await.unwrap();
        let mut seen = Vec::new();
        r.send(&raw::long_data_packet(select, b"a")).await.unwrap();
        r.send(&raw::execute_param_packet(select, true, None))
            .await
            .unwrap();
        r.read_columns().await.unwrap();
        for round in 0..2 {
            if round == 1 {
                r.query("SET NAMES latin1").await.unwrap();
                r.prepare(text).await.unwrap();
                r.send(&raw::long_data_packet(select, b"b")).await.unwrap();
            }
            r.send(&raw::fetch_packet(select, 1)).await.unwrap();
            seen.push(fetched(&mut r).await);
        }
        seen
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert_eq!(direct, ["[1]", "[2]"]);
    assert_eq!(script(p.addr).await, direct);
}

/// `COM_STMT_RESET` discards a statement's long data wherever the proxy sent it: here the
/// cursor is on one copy of the statement and, after `SET NAMES`, the long data on another.
/// The execute after the reset must use the value in its own packet, as on a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_discards_long_data_on_every_copy() {
    let (c, p) = setup().await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        let (id, _, _) = r.prepare("SELECT CONCAT('<', ?, '>')").await.unwrap();
        r.send(&raw::execute_param_packet(id, true, Some("first")))
            .await
            .unwrap();
        r.read_columns().await.unwrap();
        r.query("SET NAMES latin1").await.unwrap();
        r.send(&raw::long_data_packet(id, b"stale")).await.unwrap();
        r.send(&raw::reset_packet(id)).await.unwrap();
        let ok = r.read().await.unwrap();
        assert_eq!(ok[0], 0, "reset: {}", raw::err_text(&ok));
        single_string(&mut r, &raw::execute_param_packet(id, false, Some("fresh"))).await
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert_eq!(direct, "<fresh>");
    assert_eq!(script(p.addr).await, direct);
}

/// Sends `execute` and returns the one string value of its one binary row, or the error.
async fn single_string(r: &mut RawConn, execute: &[u8]) -> String {
    r.send(execute).await.unwrap();
    if let Err(e) = r.read_columns().await {
        return e.to_string();
    }
    let (rows, _) = r.read_rows().await.unwrap();
    // A binary row: header, NULL bitmap (the first column's bit is the third), then the
    // string with a one-byte length.
    match rows[0].as_slice() {
        [_, bitmap, ..] if bitmap & 0x04 != 0 => "NULL".into(),
        row => String::from_utf8_lossy(&row[3..3 + usize::from(row[2])]).into_owned(),
    }
}

/// A statement's long data stays with it whatever the session does between the chunks and
/// the execute, as on a server: here `SET NAMES` back and forth (the proxy prepares the
/// text again under each; the statement's cursor holds the first copy) and a prepared
/// `SET` (after which it prepares every statement again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_outlasts_session_changes() {
    let (c, p) = setup().await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, DATABASE)
            .await
            .unwrap();
        r.query("SET NAMES latin1").await.unwrap();
        let (id, _, _) = r.prepare("SELECT CONCAT('<', ?, '>')").await.unwrap();
        let (set, _, _) = r
            .prepare("SET @@session.time_zone = '+01:00'")
            .await
            .unwrap();
        let execute = raw::execute_param_packet(id, false, None);
        r.send(&raw::execute_param_packet(id, true, Some("cursor")))
            .await
            .unwrap();
        r.read_columns().await.unwrap();
        r.query("SET NAMES utf8mb4").await.unwrap();
        r.send(&raw::long_data_packet(id, b"part")).await.unwrap();
        r.query("SET NAMES latin1").await.unwrap();
        r.send(&raw::long_data_packet(id, b" two")).await.unwrap();
        let split = single_string(&mut r, &execute).await;
        r.send(&raw::long_data_packet(id, b"kept")).await.unwrap();
        r.send(&raw::execute_packet(set, false)).await.unwrap();
        let ok = r.read().await.unwrap();
        assert_eq!(ok[0], 0, "{}", raw::err_text(&ok));
        let after_set = single_string(&mut r, &execute).await;
        [split, after_set]
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert_eq!(direct, ["<part two>", "<kept>"]);
    assert_eq!(script(p.addr).await, direct);
}

/// Long data pins the session to the connection it went to, as a cursor does: a read's
/// long data must go to the write backend, or every later write of the session would meet
/// a read-only replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_for_a_read_leaves_writes_working() {
    let (c, p) = setup().await;
    cursor_table(c, "ps_ld_write", "(1)").await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_ld_write")
            .await
            .unwrap();
        let (id, _, _) = r.prepare("SELECT CONCAT('<', ?, '>')").await.unwrap();
        r.send(&raw::long_data_packet(id, b"read")).await.unwrap();
        let read = single_string(&mut r, &raw::execute_param_packet(id, false, None)).await;
        let reply = r.query("INSERT INTO t VALUES (2)").await.unwrap();
        let write = match reply[0][0] {
            0 => "inserted".to_string(),
            _ => raw::err_text(&reply[0]),
        };
        [read, write]
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert_eq!(direct, ["<read>", "inserted"]);
    assert_eq!(script(p.addr).await, direct);
}

/// Statements closed while they hold a cursor: the proxy closes its server-side copies as
/// well, or a session preparing, fetching and closing in a loop would leave one statement
/// per round on the server (up to the connection's limit of copies, and towards the
/// server-wide `max_prepared_stmt_count`). Counted on the session's own connection (it is
/// in a transaction), where other tests' statements do not show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_statements_free_their_cursors_on_the_server() {
    const ROUNDS: u64 = 300;
    let (_, p) = setup().await;
    let mut r = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    async fn closes(r: &mut RawConn) -> u64 {
        let rows = r
            .query("SHOW SESSION STATUS LIKE 'Com_stmt_close'")
            .await
            .unwrap();
        // Column count, two definitions, EOF, the row, EOF: the value ends the row.
        let row = String::from_utf8_lossy(&rows[rows.len() - 2]).into_owned();
        row.rsplit(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    }
    r.query("BEGIN").await.unwrap();
    let before = closes(&mut r).await;
    for _ in 0..ROUNDS {
        let (id, _, _) = r.prepare("SELECT 1 UNION SELECT 2").await.unwrap();
        r.send(&raw::execute_packet(id, true)).await.unwrap();
        r.read_columns().await.unwrap();
        r.send(&raw::fetch_packet(id, 1)).await.unwrap();
        r.read_rows().await.unwrap();
        r.send(&raw::close_packet(id)).await.unwrap();
    }
    // Each round's copy is closed with the next command on the connection: the last one
    // with the `SHOW` that counts, as a server closes it at once.
    let closed = closes(&mut r).await - before;
    assert_eq!(
        closed, ROUNDS,
        "server-side statements closed over {ROUNDS} rounds"
    );
}

/// A fetch after a cursor ran out, in a transaction: the backend itself raises 1421, naming
/// its own id for the statement; the client must read its own id there, as on a direct
/// connection. The prepared `SET` makes the proxy prepare the statement again on the
/// session's connection, so the two ids differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_name_the_clients_statement_id() {
    let (c, p) = setup().await;
    cursor_table(c, "ps_cur_end", "(1), (2)").await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_cur_end")
            .await
            .unwrap();
        let (select, _, _) = r.prepare("SELECT v FROM t ORDER BY v").await.unwrap();
        let (set, _, _) = r
            .prepare("SET @@session.time_zone = '+01:00'")
            .await
            .unwrap();
        r.query("BEGIN").await.unwrap();
        r.send(&raw::execute_packet(select, false)).await.unwrap();
        r.read_columns().await.unwrap();
        r.read_rows().await.unwrap();
        r.send(&raw::execute_packet(set, false)).await.unwrap();
        let ok = r.read().await.unwrap();
        assert_eq!(ok[0], 0, "{}", raw::err_text(&ok));
        r.send(&raw::execute_packet(select, true)).await.unwrap();
        r.read_columns().await.unwrap();
        r.send(&raw::fetch_packet(select, 10)).await.unwrap();
        let (rows, _) = r.read_rows().await.unwrap();
        assert_eq!(rows.len(), 2);
        r.send(&raw::fetch_packet(select, 1)).await.unwrap();
        let reply = raw::err_text(&r.read().await.unwrap());
        reply.replace(&format!("({select})"), "(own id)")
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert!(
        direct.contains("1421") && direct.contains("(own id)"),
        "{direct:?}"
    );
    assert_eq!(script(p.addr).await, direct);
}

/// A prepared `SET` makes the proxy stop using the statements prepared on that connection
/// (it cannot see what the `SET` changed); the server's copies must be closed, not just
/// forgotten, or a session alternating it with another statement leaks one server-side
/// statement per round towards the server-wide `max_prepared_stmt_count`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_prepared_statements_are_closed_on_the_server() {
    const ROUNDS: u64 = 400;
    let (c, p) = setup().await;
    async fn open_on_servers(c: &Cluster) -> u64 {
        let mut total = 0;
        for server in std::iter::once(&c.primary).chain(&c.replicas) {
            let mut root = server.root_conn().await.unwrap();
            let n: Option<(String, u64)> = root
                .query_first("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")
                .await
                .unwrap();
            total += n.unwrap().1;
        }
        total
    }
    let mut conn = p.conn().await.unwrap();
    let set = conn.prep("SET time_zone = ?").await.unwrap();
    let select = conn.prep("SELECT @@time_zone").await.unwrap();
    conn.exec_drop(&set, ("+00:00",)).await.unwrap();
    let before = open_on_servers(c).await;
    for round in 0..ROUNDS {
        let zone = format!("+0{}:00", round % 10);
        conn.exec_drop(&set, (zone.as_str(),)).await.unwrap();
        let seen: Option<String> = conn.exec_first(&select, ()).await.unwrap();
        assert_eq!(seen.as_deref(), Some(zone.as_str()));
    }
    let after = open_on_servers(c).await;
    // Other tests share the servers and prepare statements of their own meanwhile: the
    // margin is theirs; a leak would add one per round.
    assert!(
        after < before + ROUNDS / 2,
        "server-side prepared statements grew from {before} to {after} over {ROUNDS} rounds"
    );
}

/// A statement prepared after `ALTER TABLE` is described as the table is now, also when
/// another client prepared the same text on the same backend connection before: the
/// proxy must not answer the prepare with that earlier reply (2 columns where the server
/// now says 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_after_alter_table_describes_the_table_as_it_is() {
    let c = cluster().await;
    // One event thread and the primary (hinted): both clients get the same connection.
    let toml =
        proxy::config_toml(c, &[1, 1], "").replacen("[proxy]\n", "[proxy]\nevent-threads = 1\n", 1);
    let p = proxy::start(&toml).await.unwrap();
    let text = "/*master*/ SELECT * FROM t";
    let script = |addr| async move {
        cursor_table(c, "ps_alter", "(1)").await;
        let mut before = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_alter")
            .await
            .unwrap();
        let (_, first, _) = before.prepare(text).await.unwrap();
        drop(before);
        as_root(c, &["ALTER TABLE ps_alter.t ADD COLUMN w INT"]).await;
        let mut after = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_alter")
            .await
            .unwrap();
        let (_, second, _) = after.prepare(text).await.unwrap();
        (first, second)
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert_eq!(direct, (1, 2));
    assert_eq!(script(p.addr).await, direct);
}

/// A session with more open cursors than a backend connection keeps statements (256): the
/// proxy may not close any statement holding one, so every cursor still fetches, as on a
/// direct connection (the server's limit is `max_prepared_stmt_count`, far higher).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_open_cursors_than_the_statement_limit() {
    let (c, p) = setup().await;
    cursor_table(c, "ps_cur_over", "(1), (2), (3), (4), (5), (6)").await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_cur_over")
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..300 {
            let text = format!("SELECT v FROM t WHERE v > {} ORDER BY v", i % 5);
            let (id, _, _) = r.prepare(&format!("{text} /* {i} */")).await.unwrap();
            r.send(&raw::execute_packet(id, true)).await.unwrap();
            r.read_columns().await.unwrap();
            ids.push(id);
        }
        let mut seen = Vec::new();
        for id in ids {
            r.send(&raw::fetch_packet(id, 1)).await.unwrap();
            seen.push(fetched(&mut r).await);
        }
        seen
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    let expected: Vec<String> = (0..300).map(|i| format!("[{}]", i % 5 + 1)).collect();
    assert_eq!(direct, expected);
    assert_eq!(script(p.addr).await, direct);
}

/// A session may hold as many prepared statements as MariaDB allows by default
/// (`max_prepared_stmt_count`, 16 382), and gets the server's error beyond that: the proxy
/// keeps every client statement, so one that never closes its statements must not grow the
/// proxy's memory without bound. Closing one makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_per_session_are_capped() {
    const LIMIT: usize = 16_382;
    let (_c, p) = setup().await;
    let mut r = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    let mut last = 0;
    for i in 0..LIMIT {
        last = r.prepare(&format!("SELECT ? /* {i} */")).await.unwrap().0;
    }
    let e = r.prepare("SELECT 'one too many'").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "prepare: 1461 (42000): Can't create more than max_prepared_stmt_count \
             statements (current value: {LIMIT})"
        )
    );
    r.send(&raw::close_packet(last)).await.unwrap();
    r.prepare("SELECT 'room again'").await.unwrap();
    let mut other = p.conn().await.unwrap();
    let one: u8 = other.exec_first("SELECT ?", (1,)).await.unwrap().unwrap();
    assert_eq!(one, 1, "other sessions prepare as before");
}

/// A session with an open cursor that prepares many more statements than a backend
/// connection keeps (256): the proxy closes older ones to stay under the limit, but never the
/// one the cursor is open on, so fetching goes on as on a direct connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_prepares_keep_an_open_cursor() {
    let (c, p) = setup().await;
    as_root(
        c,
        &[
            "CREATE DATABASE IF NOT EXISTS ps_many",
            "CREATE OR REPLACE TABLE ps_many.t (id INT PRIMARY KEY)",
            "INSERT INTO ps_many.t SELECT seq FROM ps_many.seq_1_to_10",
        ],
    )
    .await;
    let script = |addr| async move {
        let mut r = RawConn::connect(addr, APP_USER, APP_PASSWORD, "ps_many")
            .await
            .unwrap();
        let (id, _, _) = r.prepare("SELECT id FROM t ORDER BY id").await.unwrap();
        r.send(&raw::execute_packet(id, true)).await.unwrap();
        r.read_columns().await.unwrap();
        let fetch = raw::fetch_packet(id, 2);
        let mut seen = Vec::new();
        for round in 0..4 {
            r.send(&fetch).await.unwrap();
            seen.push(match r.read_rows().await {
                Ok((rows, _)) => format!("{rows:?}"),
                Err(e) => e.to_string(),
            });
            for i in 0..600 {
                r.prepare(&format!("SELECT {round} + {i}")).await.unwrap();
            }
        }
        seen
    };
    let direct = script(c.primary_addr().parse().unwrap()).await;
    assert!(direct.iter().all(|s| s.starts_with("[[")), "{direct:?}");
    assert_eq!(script(p.addr).await, direct);
}

/// Long data that reaches no server (here: the write backend's only connection is busy
/// past the pool wait) is not dropped without a word: `COM_STMT_SEND_LONG_DATA` has no
/// reply, so the next execute answers with the reason, not with a parameter missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_long_data_fails_the_next_execute_with_the_reason() {
    let cl = cluster().await;
    let toml = proxy::config_toml(cl, &[1], "")
        .replacen("max-connections = 50", "max-connections = 1", 1)
        .replace("connect-timeout-ms = 1000", "connect-timeout-ms = 300");
    let p = proxy::start(&toml).await.unwrap();
    let mut holder = p.conn().await.unwrap();
    holder
        .query_drop(
            "CREATE TABLE IF NOT EXISTS ld_lost (id INT AUTO_INCREMENT PRIMARY KEY, b BLOB)",
        )
        .await
        .unwrap();
    let mut r = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    let (id, _, _) = r
        .prepare("INSERT INTO ld_lost (b) VALUES (?)")
        .await
        .unwrap();
    holder.query_drop("BEGIN").await.unwrap();
    holder
        .query_drop("INSERT INTO ld_lost (b) VALUES ('held')")
        .await
        .unwrap();
    r.send(&raw::long_data_packet(id, b"lost")).await.unwrap();
    // Past the pool wait: the long data has been given up on.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    holder.query_drop("ROLLBACK").await.unwrap();
    r.send(&raw::execute_param_packet(id, false, None))
        .await
        .unwrap();
    let reply = r.read().await.unwrap();
    let text = raw::err_text(&reply);
    assert!(text.contains("max-connections"), "{text}");
    // The statement works again once resent.
    r.send(&raw::long_data_packet(id, b"kept")).await.unwrap();
    r.send(&raw::execute_param_packet(id, false, None))
        .await
        .unwrap();
    let ok = r.read().await.unwrap();
    assert_eq!(ok[0], 0, "{}", raw::err_text(&ok));
}

/// Statements a client prepares and closes stay prepared on the server for the next client
/// (the proxy's cache), but not without bound: all of a backend's connections together keep
/// at most 4096, so the proxy never takes the server towards its server-wide
/// `max_prepared_stmt_count` (16382 by default), past which every client's prepare fails
/// with 1461. (Before: 256 on each connection, 5120 here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_kept_for_reuse_stay_within_a_backend_budget() {
    const SESSIONS: usize = 20;
    const TEXTS: usize = 300;
    let (c, p) = setup().await;
    async fn open_on_primary(c: &Cluster) -> u64 {
        c.primary
            .global_status("Prepared_stmt_count")
            .await
            .unwrap()
    }
    let before = open_on_primary(c).await;
    let mut sessions = Vec::new();
    for s in 0..SESSIONS {
        let mut conn = p.conn().await.unwrap();
        sessions.push(tokio::spawn(async move {
            for t in 0..TEXTS {
                let text = format!("/*master*/ SELECT ? + {}", s * TEXTS + t);
                let stmt = conn.prep(text).await.unwrap();
                let _: Option<i64> = conn.exec_first(&stmt, (1,)).await.unwrap();
                conn.close(stmt).await.unwrap();
            }
            conn
        }));
    }
    let mut open = Vec::new();
    for s in sessions {
        open.push(s.await.unwrap());
    }
    let after = open_on_primary(c).await;
    // Other tests share the servers and prepare and close statements of their own
    // meanwhile: the proxy's own count is what is asserted (run alone, the server's count
    // grew by 4 115 here, against 5 120 before the bound).
    let kept = p.backends.backends()[0].pool.open_statements();
    eprintln!(
        "prepared statements on the primary: {before} before, {after} after; the proxy's: {kept}"
    );
    assert!(
        kept <= 4096 + SESSIONS,
        "{kept} statements kept by the proxy"
    );
    assert!(
        kept >= 4096,
        "{kept}: the proxy's count lost statements it holds"
    );
}

/// A user without a password logs in with caching_sha2_password (MySQL 8 drivers' default)
/// and changes to it: the client sends no scramble and reads the final OK, and a "fast auth
/// success" before it failed the login (2012 "Error in server handshake").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_password_logs_in_with_either_plugin() {
    let c = cluster().await;
    let mut root = c.primary.root_conn().await.unwrap();
    root.query_drop("CREATE USER IF NOT EXISTS 'cl_nopw'@'%'")
        .await
        .unwrap();
    root.query_drop(format!("GRANT ALL ON {DATABASE}.* TO 'cl_nopw'@'%'"))
        .await
        .unwrap();
    c.wait_replicas_caught_up().await.unwrap();
    let users = "[[user]]\nname = \"cl_nopw\"\npassword = \"\"\n";
    let p = proxy::start(&format!("{}{users}", proxy::config_toml(c, &[1, 1], "")))
        .await
        .unwrap();
    for plugin in [None, Some("--default-auth=caching_sha2_password")] {
        for port in [p.addr.port(), c.primary.port] {
            let out = std::process::Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    "--protocol=TCP",
                    "-ucl_nopw",
                ])
                .arg(format!("-P{port}"))
                .args(plugin)
                .args(["-N", "-e", "SELECT CURRENT_USER()", DATABASE])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{plugin:?} on {port}: {err}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "cl_nopw@%\n");
        }
    }
    let mut raw = RawConn::connect(p.addr, APP_USER, APP_PASSWORD, DATABASE)
        .await
        .unwrap();
    let reply = raw
        .change_user("cl_nopw", "", DATABASE, 45, "caching_sha2_password")
        .await
        .unwrap();
    // Challenged (no scramble came), then the OK: no "fast auth success" in between.
    assert!(!reply.contains(&vec![0x01, 0x03]), "{reply:?}");
    let last = reply.last().unwrap();
    assert_eq!(last[0], 0x00, "{}", raw::err_text(last));
}
