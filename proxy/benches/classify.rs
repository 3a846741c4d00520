//! Micro benchmark for what every `COM_QUERY` costs before it is forwarded: the statement
//! classifier, digest normalisation, and the two as the hot path runs them (normalise, then
//! look the shape's classification up). Plain `std::time` so it needs no extra dependency:
//! `cargo bench -p rwproxy --bench classify`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rwproxy::router::cache::classify_shaped;
use rwproxy::router::classify::classify;
use rwproxy::stats::digest::{key_of, normalise};

/// A mix shaped like OLTP traffic: mostly short point queries and DML, some session and
/// transaction statements, a few long or comment-heavy ones.
const CORPUS: &[&str] = &[
    "SELECT 1",
    "SELECT id, name, email FROM users WHERE id = 42",
    "select * from orders where customer_id = 17 and status = 'open' order by created_at desc limit 20",
    "SELECT o.id, SUM(l.qty * l.price) FROM orders o JOIN lines l ON l.order_id = o.id WHERE o.id IN (1, 2, 3) GROUP BY o.id",
    "SELECT * FROM accounts WHERE id = 7 FOR UPDATE",
    "SELECT balance FROM accounts WHERE id = 7 LOCK IN SHARE MODE",
    "/*master*/ SELECT * FROM users WHERE id = 1",
    "/* app=checkout, trace=4bf92f3577b34da6 */ SELECT price FROM items WHERE sku = 'AB-1234'",
    "SELECT SQL_CALC_FOUND_ROWS * FROM posts WHERE topic = 3 LIMIT 10",
    "SELECT FOUND_ROWS()",
    "SELECT LAST_INSERT_ID()",
    "SELECT GET_LOCK('job:42', 10)",
    "INSERT INTO events (user_id, kind, payload, created_at) VALUES (42, 'click', '{\"x\": 1, \"y\": 2}', NOW())",
    "UPDATE users SET last_login = NOW(), login_count = login_count + 1 WHERE id = 42",
    "DELETE FROM sessions WHERE expires_at < NOW()",
    "REPLACE INTO kv (k, v) VALUES ('a', 'b')",
    "WITH recent AS (SELECT id FROM orders WHERE created_at > NOW() - INTERVAL 1 DAY) SELECT COUNT(*) FROM recent",
    "SET NAMES utf8mb4",
    "SET autocommit = 0",
    "SET @rank := 0",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "START TRANSACTION READ ONLY",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "USE shop",
    "SHOW TABLES",
    "SHOW MASTER STATUS",
    "DESCRIBE users",
    "EXPLAIN SELECT * FROM users WHERE email = 'a@b.c'",
    "SET STATEMENT max_statement_time=1 FOR SELECT * FROM big",
    "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */",
];

fn main() {
    let stmts: Vec<&[u8]> = CORPUS.iter().map(|s| s.as_bytes()).collect();
    let mut buf = Vec::new();
    measure("classify", &stmts, |s| {
        black_box(classify(s));
    });
    measure("normalise", &stmts, |s| {
        black_box(normalise(s, &mut buf));
    });
    let now = std::time::Instant::now();
    measure("normalise+cached classify", &stmts, |s| {
        let shape = key_of(s, &mut buf);
        black_box(classify_shaped(s, shape, &buf, None, now));
    });
}

/// Runs `f` over the corpus for about a second, five times, and prints the best time per
/// statement.
fn measure(what: &str, stmts: &[&[u8]], mut f: impl FnMut(&[u8])) {
    let bytes: usize = stmts.iter().map(|s| s.len()).sum();
    let mut run = |rounds: u64| {
        for _ in 0..rounds {
            for s in stmts {
                f(black_box(s));
            }
        }
    };
    // Warm up, then size the run to about one second.
    let mut rounds = 1u64;
    loop {
        let start = Instant::now();
        run(rounds);
        if start.elapsed() > Duration::from_millis(100) {
            rounds *= 10;
            break;
        }
        rounds *= 2;
    }

    let per_stmt = |ns: u64| ns as f64 / (rounds as f64 * stmts.len() as f64);
    let (mut best_wall, mut best_cpu) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let cpu0 = cpu_ns();
        let start = Instant::now();
        run(rounds);
        best_wall = best_wall.min(per_stmt(start.elapsed().as_nanos() as u64));
        if let (Some(a), Some(b)) = (cpu0, cpu_ns()) {
            best_cpu = best_cpu.min(per_stmt(b - a));
        }
    }
    println!(
        "{what}: {best_wall:.1} ns/statement wall (best of 5; {} statements, mean {} bytes, {} rounds)",
        stmts.len(),
        bytes / stmts.len(),
        rounds
    );
    if best_cpu < f64::MAX {
        println!("{what}: {best_cpu:.1} ns/statement on-CPU (best of 5)");
    }
}

/// Time this thread actually ran, so a busy shared machine does not inflate the result
/// (Linux only; wall time is printed regardless).
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
