//! Atlas's SQL log: one line per statement,
//! `[MM/DD/YYYY HH:MM:SS] C:client S:backend OK|ERR latency_ms "sql"`, in
//! `sql_INSTANCE.log` beside the main log.
//!
//! Sessions hand lines to a bounded channel and never wait: when the writer falls behind,
//! lines are dropped and counted (`rwproxy_sql_log_dropped_total`), because a slow disk must
//! not slow down queries. So are lines the file refused (a full disk), with one error in the
//! main log when that starts and one line when it ends, not one per statement.

use crate::config::SqlLog as Mode;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Lines that may wait for the writer before new ones are dropped.
const QUEUE: usize = 16_384;
/// In `ON` mode the file is flushed at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One statement to log; formatted by the writer task, off the session's path.
struct Entry {
    at: std::time::SystemTime,
    client: SocketAddr,
    backend: String,
    ok: bool,
    latency: Duration,
    sql: String,
}

/// The sending side, shared by all sessions. Disabled (`sql-log = OFF`) it costs a branch.
#[derive(Default)]
pub struct SqlLogger {
    tx: Option<mpsc::Sender<Entry>>,
    slow: Option<Duration>,
    /// Lines lost: dropped by a session, or refused by the file (shared with the writer).
    dropped: Arc<AtomicU64>,
}

impl SqlLogger {
    /// Opens `dir/sql_INSTANCE.log` (appending) and starts the writer task; `OFF` or no
    /// log directory gives a logger that logs nothing.
    pub fn start(
        mode: Mode,
        dir: Option<&std::path::Path>,
        instance: &str,
        slow_ms: Option<u64>,
    ) -> std::io::Result<Self> {
        let Some(dir) = dir.filter(|_| mode != Mode::Off) else {
            if mode != Mode::Off {
                tracing::warn!("sql-log is on but log-path is unset: no SQL log is written");
            }
            return Ok(SqlLogger::default());
        };
        let path = dir.join(format!("sql_{instance}.log"));
        let file = crate::log_file::Reopening::open(&path)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            out: std::io::BufWriter::new(file),
            path,
            unflushed: 0,
            failing: None,
            dropped: dropped.clone(),
        };
        tokio::spawn(write_lines(rx, writer, mode == Mode::Realtime));
        Ok(SqlLogger {
            tx: Some(tx),
            slow: slow_ms.map(Duration::from_millis),
            dropped,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line unless the statement was faster than `sql-log-slow`.
    pub fn log(&self, client: SocketAddr, backend: &str, ok: bool, latency: Duration, sql: &[u8]) {
        let Some(tx) = &self.tx else { return };
        if self.slow.is_some_and(|s| latency <= s) {
            return;
        }
        let entry = Entry {
            at: std::time::SystemTime::now(),
            client,
            backend: backend.to_string(),
            ok,
            latency,
            sql: String::from_utf8_lossy(sql).into_owned(),
        };
        if tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The file end of the log, and how it fares.
struct Writer {
    out: std::io::BufWriter<crate::log_file::Reopening>,
    path: PathBuf,
    /// Lines written since the last flush: lost if it fails.
    unflushed: u64,
    /// Lines lost since writing started failing.
    failing: Option<u64>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn write(&mut self, line: &str) {
        self.unflushed += 1;
        if let Err(e) = self.out.write_all(line.as_bytes()) {
            self.failed(&e);
        }
    }

    fn flush(&mut self) {
        match self.out.flush() {
            Err(e) => self.failed(&e),
            Ok(()) => {
                self.unflushed = 0;
                if let Some(lost) = self.failing.take() {
                    tracing::warn!(file = %self.path.display(), lost, "the SQL log is written again; lines were lost meanwhile");
                }
            }
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        let lost = self.failing.get_or_insert_with(|| {
            tracing::error!(file = %self.path.display(), "cannot write the SQL log: {e}; its lines are lost (and counted) until it can be written again");
            0
        });
        *lost += self.unflushed;
        self.dropped.fetch_add(self.unflushed, Ordering::Relaxed);
        self.unflushed = 0;
    }
}

async fn write_lines(mut rx: mpsc::Receiver<Entry>, mut w: Writer, realtime: bool) {
    let mut line = String::new();
    let mut last_flush = std::time::Instant::now();
    loop {
        let entry = if realtime {
            rx.recv().await
        } else {
            match crate::timer::timeout(FLUSH_EVERY, rx.recv()).await {
                Ok(e) => e,
                Err(_) => {
                    w.flush();
                    continue;
                }
            }
        };
        let Some(e) = entry else {
            w.flush();
            return;
        };
        line.clear();
        format_line(&mut line, &e);
        w.write(&line);
        if realtime || last_flush.elapsed() >= FLUSH_EVERY {
            w.flush();
            last_flush = std::time::Instant::now();
        }
    }
}

fn format_line(line: &mut String, e: &Entry) {
    use std::fmt::Write as _;
    let t = local_time(e.at);
    let _ = writeln!(
        line,
        "[{:02}/{:02}/{} {:02}:{:02}:{:02}] C:{} S:{} {} {:.3} \"{}\"",
        t.tm_mon + 1,
        t.tm_mday,
        t.tm_year + 1900,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
        e.client,
        e.backend,
        if e.ok { "OK" } else { "ERR" },
        e.latency.as_secs_f64() * 1000.0,
        // One statement per line, whatever newlines it holds.
        e.sql.replace(['\n', '\r'], " ")
    );
}

/// The local wall-clock time, as Atlas writes it (the log is read next to other local logs).
fn local_time(at: std::time::SystemTime) -> libc::tm {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` we own; a zeroed tm is a valid value.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk: each line lost is counted, and the error is logged once, not per line.
    #[test]
    fn lines_a_full_disk_refuses_are_counted() {
        let path = PathBuf::from("/dev/full");
        let dropped = Arc::new(AtomicU64::new(0));
        let mut w = Writer {
            out: std::io::BufWriter::new(crate::log_file::Reopening::open(&path).unwrap()),
            path,
            unflushed: 0,
            failing: None,
            dropped: dropped.clone(),
        };
        for _ in 0..3 {
            w.write("a line\n");
        }
        w.flush();
        w.write("another\n");
        w.flush();
        assert_eq!(w.failing, Some(4));
        assert_eq!(dropped.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn line_has_atlas_layout() {
        let e = Entry {
            at: std::time::SystemTime::now(),
            client: "127.0.0.1:51066".parse().unwrap(),
            backend: "127.0.0.1:3306".into(),
            ok: true,
            latency: Duration::from_micros(561),
            sql: "select 1\nfrom dual".into(),
        };
        let mut line = String::new();
        format_line(&mut line, &e);
        let (stamp, rest) = line.split_once("] ").unwrap();
        assert_eq!(stamp.len(), "[03/01/2016 15:24:12".len(), "{line}");
        assert_eq!(
            rest,
            "C:127.0.0.1:51066 S:127.0.0.1:3306 OK 0.561 \"select 1 from dual\"\n"
        );
    }
}
