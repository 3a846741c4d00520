//! Query digests: statements grouped by their text with literals taken out, with counts and
//! timings — what `SELECT * FROM digests` on the admin console shows.
//!
//! Normalising runs on the hot path, so it is one pass over the bytes into a buffer the
//! session reuses; a digest's text is copied only the first time it is seen.

use crate::event_threads::PerThread;
use rwproxy_admin::DigestInfo;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// Distinct digests kept per event thread; later new ones are counted under one catch-all
/// entry so a workload of ever-new statement shapes cannot grow memory without bound.
const MAX_DIGESTS: usize = 10_000;
const OTHER: &str = "(other statements beyond the digest table's limit)";
/// Longest normalised text a digest keeps (the key still hashes all of it): a table of
/// 10 000 digests of megabyte statements held gigabytes, for good.
const MAX_TEXT: usize = 2048;

/// `normalised` as a digest keeps it: its first [`MAX_TEXT`] bytes, and `...` if cut.
fn stored_text(normalised: &[u8]) -> String {
    match normalised.get(..MAX_TEXT) {
        Some(head) if normalised.len() > MAX_TEXT => {
            String::from_utf8_lossy(head).into_owned() + "..."
        }
        _ => String::from_utf8_lossy(normalised).into_owned(),
    }
}

/// Keys are already hashes of the digest text: the map need not hash them again.
type KeyHasher = std::hash::BuildHasherDefault<rustc_hash::FxHasher>;

/// Each event thread counts into its own table (an uncontended lock on a line no other core
/// writes); the console's view adds the tables up.
pub struct Digests {
    parts: PerThread<Mutex<HashMap<u64, Entry, KeyHasher>>>,
}

struct Entry {
    text: String,
    /// [`rows_are_found_rows`] of the whole normalised text (`text` may be cut short).
    found_rows: bool,
    count: u64,
    total_us: u64,
    max_us: u64,
    rows: u64,
}

impl Digests {
    pub fn new(event_threads: usize) -> Self {
        Digests {
            parts: PerThread::new(event_threads),
        }
    }

    /// Records one execution of `sql` under its [`key_of`] (which a session computes before
    /// routing, and a prepared statement once at prepare); `sql` is only normalised again,
    /// into the caller's `scratch`, the first time a thread sees it.
    pub fn record_keyed(
        &self,
        mut key: u64,
        sql: &[u8],
        scratch: &mut Vec<u8>,
        micros: u64,
        rows: u64,
    ) {
        let mut map = self.parts.local().lock().expect("digest lock");
        if let Some(entry) = map.get_mut(&key) {
            entry.add(micros, rows);
            return;
        }
        normalise(sql, scratch);
        if map.len() >= MAX_DIGESTS {
            key = 0;
        }
        map.entry(key)
            .or_insert_with(|| Entry {
                text: if key == 0 {
                    OTHER.to_string()
                } else {
                    stored_text(scratch)
                },
                found_rows: key != 0 && rows_are_found_rows(&String::from_utf8_lossy(scratch)),
                count: 0,
                total_us: 0,
                max_us: 0,
                rows: 0,
            })
            .add(micros, rows);
    }

    /// Whether the rows of the statement recorded under `key` (on this event thread or
    /// another) are what `FOUND_ROWS()` answers after it (see [`rows_are_found_rows`]).
    pub fn found_rows_of(&self, key: u64) -> Option<bool> {
        let find = |part: &Mutex<HashMap<u64, Entry, KeyHasher>>| {
            part.lock()
                .expect("digest lock")
                .get(&key)
                .map(|e| e.found_rows)
        };
        find(self.parts.local()).or_else(|| self.parts.iter().find_map(find))
    }

    /// All digests, most total time first.
    pub fn view(&self) -> Vec<DigestInfo> {
        let mut merged: HashMap<u64, DigestInfo, KeyHasher> = HashMap::default();
        for part in self.parts.iter() {
            for (key, e) in part.lock().expect("digest lock").iter() {
                let d = merged.entry(*key).or_insert_with(|| DigestInfo {
                    digest: e.text.clone(),
                    count: 0,
                    total_time_us: 0,
                    max_time_us: 0,
                    rows: 0,
                });
                d.count += e.count;
                d.total_time_us += e.total_us;
                d.max_time_us = d.max_time_us.max(e.max_us);
                d.rows += e.rows;
            }
        }
        let mut v: Vec<DigestInfo> = merged.into_values().collect();
        v.sort_by(|a, b| {
            b.total_time_us
                .cmp(&a.total_time_us)
                .then_with(|| a.digest.cmp(&b.digest))
        });
        v
    }
}

/// A statement's digest key, and what normalising it took out.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Hash of the normalised text.
    pub key: u64,
    /// Only literal values and whitespace were taken out: no comment, nothing unterminated.
    /// Two such statements with the same text differ in nothing a parser reads as code.
    pub literal_only: bool,
}

/// The digest key of `sql`: a hash of its normalised text (left in `scratch`).
pub fn key_of(sql: &[u8], scratch: &mut Vec<u8>) -> Shape {
    let literal_only = normalise(sql, scratch);
    let mut h = rustc_hash::FxHasher::default();
    scratch.hash(&mut h);
    Shape {
        key: h.finish(),
        literal_only,
    }
}

/// Whether the rows of the statement with normalised text `text` are what `FOUND_ROWS()`
/// answers after it (without `SQL_CALC_FOUND_ROWS`): those of a `SELECT` without an offset
/// (with one the server counts the skipped rows too), or of a `SHOW` other than the
/// diagnostics ones, which leave the count alone (as `EXPLAIN`, `HELP` and table maintenance
/// statements do; measured on MariaDB 10.11).
pub fn rows_are_found_rows(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    let mut words = upper.split([' ', '(']).filter(|w| !w.is_empty());
    match words.next() {
        Some("SELECT" | "WITH") => {
            let mut prev = "";
            for w in upper.split(' ') {
                if w == "OFFSET" || (prev == "LIMIT" && w.contains(',')) {
                    return false;
                }
                prev = w;
            }
            true
        }
        Some("SHOW") => !matches!(words.next(), Some("WARNINGS" | "ERRORS" | "COUNT")),
        _ => false,
    }
}

impl Entry {
    fn add(&mut self, micros: u64, rows: u64) {
        self.count += 1;
        self.total_us += micros;
        self.max_us = self.max_us.max(micros);
        self.rows += rows;
    }
}

/// Writes `sql` with literals replaced by `?`, lists of them folded to `?,...`, comments
/// dropped and whitespace collapsed. Returns false if it dropped a comment or met an
/// unterminated literal, identifier or comment: then the text no longer says everything
/// about the statement's code.
pub fn normalise(sql: &[u8], out: &mut Vec<u8>) -> bool {
    use crate::router::classify::is_ident as ident;
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    out.clear();
    out.reserve(sql.len());
    let mut literal_only = true;
    let mut i = 0;
    let n = sql.len();
    while i < n {
        i = copy_plain(sql, i, out);
        let Some(&b) = sql.get(i) else { break };
        match b {
            _ if is_space(b) => {
                i += 1;
                while i < n && is_space(sql[i]) {
                    i += 1;
                }
                space(out);
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                i = find(sql, i + 2, b"*/").map_or(n, |e| e + 2);
                literal_only = false;
                space(out);
            }
            b'#' => {
                i = find(sql, i, b"\n").unwrap_or(n);
                literal_only = false;
                space(out);
            }
            // The server's rule (and the classifier's): `--` then a space, a control
            // character or the end.
            b'-' if sql.get(i + 1) == Some(&b'-') && sql.get(i + 2).is_none_or(|&c| c <= b' ') => {
                i = find(sql, i, b"\n").unwrap_or(n);
                literal_only = false;
                space(out);
            }
            b'\'' | b'"' => {
                i = match skip_quoted(sql, i) {
                    Some(end) => end,
                    None => {
                        literal_only = false;
                        n
                    }
                };
                placeholder(out);
            }
            b'`' => {
                let end = match find(sql, i + 1, b"`") {
                    Some(e) => e + 1,
                    None => {
                        literal_only = false;
                        n
                    }
                };
                out.extend_from_slice(&sql[i..end]);
                i = end;
            }
            b'0'..=b'9' if out.last().is_none_or(|c| !ident(*c)) => {
                i += 1;
                // A dot before a letter ends the number, as the server reads `2.INTO`: taken
                // in, it would give `... = 2.INTO OUTFILE` the shape of `... = ? OUTFILE`, and
                // that shape's classification.
                let number_dot = |j: usize| {
                    sql[j] == b'.' && sql.get(j + 1).is_none_or(|c| !c.is_ascii_alphabetic())
                };
                while i < n && (ident(sql[i]) || number_dot(i)) {
                    // Exponent signs: 1e-5 (only before a digit: in `1e-x` the `-` is code).
                    if matches!(sql[i], b'e' | b'E')
                        && matches!(sql.get(i + 1), Some(b'+' | b'-'))
                        && sql.get(i + 2).is_some_and(u8::is_ascii_digit)
                    {
                        i += 1;
                    }
                    i += 1;
                }
                placeholder(out);
            }
            // Words never stop `copy_plain`; what is left here is punctuation it could not
            // copy as it is.
            _ => {
                if b == b',' && out.last() == Some(&b' ') {
                    out.pop();
                }
                out.push(b);
                i += 1;
            }
        }
    }
    while out.last() == Some(&b' ') || out.last() == Some(&b';') {
        out.pop();
    }
    fold_rows(out);
    literal_only
}

/// Folds runs of the same tuple of placeholders (`VALUES (?,...),(?,...),(?,...)`) into
/// one and `,...`: a bulk insert is one shape whatever its row count. (Each row count was a
/// digest of its own, as long as the statement, kept for good.)
fn fold_rows(out: &mut Vec<u8>) {
    const TUPLES: [&[u8]; 2] = [b"(?,...)", b"(?)"];
    let n = out.len();
    let (mut r, mut w) = (0, 0);
    while r < n {
        let Some(t) = TUPLES.iter().find(|t| out[r..].starts_with(t)) else {
            out[w] = out[r];
            (r, w) = (r + 1, w + 1);
            continue;
        };
        out.copy_within(r..r + t.len(), w);
        (r, w) = (r + t.len(), w + t.len());
        let mut folded = false;
        loop {
            // `,` between tuples, a space on either side kept by the normalising.
            let mut s = r + usize::from(out.get(r) == Some(&b' '));
            if out.get(s) != Some(&b',') {
                break;
            }
            s += 1;
            s += usize::from(out.get(s) == Some(&b' '));
            if !out[s..].starts_with(t) {
                break;
            }
            (r, folded) = (s + t.len(), true);
        }
        if folded {
            // At least a `,` and a tuple were skipped: room for `,...`.
            out[w..w + 4].copy_from_slice(b",...");
            w += 4;
        }
    }
    out.truncate(w);
}

/// How [`copy_plain`] treats a byte. The two classes copied without a second look come
/// first, so that test is one comparison in its innermost loop.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Class {
    /// Identifier bytes other than digits.
    Word = 0,
    /// Punctuation that is always copied as it is.
    Punct = 1,
    Digit,
    Comma,
    /// Whitespace, quotes, and the bytes that may open a comment.
    Special,
}

static CLASS: [Class; 256] = {
    let mut t = [Class::Special; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_digit() {
            Class::Digit
        } else if b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80 {
            Class::Word
        } else if b == b',' {
            Class::Comma
        } else if matches!(
            b,
            b' ' | b'\t' | b'\n' | b'\r' | b'\'' | b'"' | b'`' | b'/' | b'#' | b'-'
        ) {
            Class::Special
        } else {
            Class::Punct
        };
        i += 1;
    }
    t
};

/// Copies, in one piece, the stretch from `i` that normalising leaves as it is: words,
/// digits inside them, punctuation, and single spaces between such bytes. Returns where it
/// stopped; the caller handles that byte. Most of a statement is such stretches, so this
/// saves a match per byte and a copy per word.
fn copy_plain(sql: &[u8], start: usize, out: &mut Vec<u8>) -> usize {
    use crate::router::classify::is_ident as ident;
    let plain = |b: u8| matches!(CLASS[usize::from(b)], Class::Word | Class::Punct);
    let n = sql.len();
    let mut i = start;
    loop {
        // Words and punctuation, most of a statement, need no further look (callgrind: a
        // third of the instructions per byte of the general match below).
        while i < n && plain(sql[i]) {
            i += 1;
        }
        let Some(&b) = sql.get(i) else { break };
        let copies = match CLASS[usize::from(b)] {
            Class::Word | Class::Punct => true,
            // A digit continues a word; one that starts a token is a literal.
            Class::Digit => match i.checked_sub(1).filter(|&p| p >= start) {
                Some(p) => ident(sql[p]),
                None => out.last().is_some_and(|&c| ident(c)),
            },
            // A comma after a space takes the space's place; inside a stretch the byte before
            // is never a space.
            Class::Comma => i > start,
            Class::Special => b == b' ' && i > start && sql.get(i + 1).is_some_and(|&c| plain(c)),
        };
        if !copies {
            break;
        }
        i += 1;
    }
    out.extend_from_slice(&sql[start..i]);
    i
}

fn space(out: &mut Vec<u8>) {
    if !out.is_empty() && out.last() != Some(&b' ') {
        out.push(b' ');
    }
}

/// Emits `?`, folding `?,?` and `?, ?` runs into `?,...`.
fn placeholder(out: &mut Vec<u8>) {
    let trimmed = out.len() - usize::from(out.last() == Some(&b' '));
    let t = &out[..trimmed];
    if t.ends_with(b"?,...,") || t.ends_with(b"?,") {
        out.truncate(trimmed);
        if !out.ends_with(b"?,...,") {
            out.extend_from_slice(b"...,");
        }
        out.pop();
        return;
    }
    out.push(b'?');
}

/// The end of the quoted literal at `start`, or `None` if it never closes.
fn skip_quoted(sql: &[u8], start: usize) -> Option<usize> {
    let q = sql[start];
    let mut i = start + 1;
    while let Some(k) = sql
        .get(i..)
        .and_then(|rest| memchr::memchr2(q, b'\\', rest))
    {
        let j = i + k;
        if sql[j] == q && sql.get(j + 1) != Some(&q) {
            return Some(j + 1);
        }
        // A backslash escapes the next byte; a doubled quote is one quote.
        i = j + 2;
    }
    None
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut out = Vec::new();
        normalise(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_long_statement_keeps_a_short_text() {
        let sql = format!(
            "SELECT '{}', a{} FROM t",
            "x".repeat(5000),
            "b".repeat(3000)
        );
        let mut scratch = Vec::new();
        normalise(sql.as_bytes(), &mut scratch);
        let text = stored_text(&scratch);
        assert_eq!(text.len(), MAX_TEXT + 3);
        assert!(text.starts_with("SELECT ?, abbb") && text.ends_with("b..."));
        assert_eq!(stored_text(b"SELECT ?"), "SELECT ?");
    }

    #[test]
    fn which_rows_found_rows_counts() {
        let text = |sql: &str| {
            let mut out = Vec::new();
            normalise(sql.as_bytes(), &mut out);
            String::from_utf8(out).unwrap()
        };
        for sql in [
            "SELECT * FROM t",
            "select id from t limit 5",
            "(SELECT 1) UNION (SELECT 2)",
            "WITH c AS (SELECT 1) SELECT * FROM c",
            "SHOW TABLES",
            "show variables like 'x%'",
        ] {
            assert!(rows_are_found_rows(&text(sql)), "{sql}");
        }
        for sql in [
            "SELECT * FROM t LIMIT 10, 5",
            "SELECT * FROM t LIMIT 2 OFFSET 10",
            "select * from t limit 3 offset 1",
            "SHOW WARNINGS",
            "show errors",
            "SHOW COUNT(*) WARNINGS",
            "EXPLAIN SELECT 1",
            "HELP 'contents'",
            "CHECKSUM TABLE t",
            "CALL p()",
        ] {
            assert!(!rows_are_found_rows(&text(sql)), "{sql}");
        }
    }

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            norm("SELECT c FROM sbtest1 WHERE id=4711"),
            "SELECT c FROM sbtest1 WHERE id=?"
        );
        assert_eq!(
            norm("select *  from t where a = 'x''y' and b = \"q\\\"\" and c = 1.5e-3;"),
            "select * from t where a = ? and b = ? and c = ?"
        );
        assert_eq!(
            norm("SELECT * FROM t2 WHERE id IN (1, 2,3 , 4)"),
            "SELECT * FROM t2 WHERE id IN (?,...)"
        );
        assert_eq!(
            norm("INSERT INTO t VALUES (1,'a'),(2,'b')"),
            "INSERT INTO t VALUES (?,...),..."
        );
        assert_eq!(
            norm("INSERT INTO t VALUES (1,'a') , (2,'b'), (3, 'c') ON DUPLICATE KEY UPDATE v=1"),
            "INSERT INTO t VALUES (?,...),... ON DUPLICATE KEY UPDATE v=?"
        );
        assert_eq!(
            norm("INSERT INTO t VALUES (1),(2),(3)"),
            norm("INSERT INTO t VALUES (4),(5)")
        );
        assert_eq!(
            norm("INSERT INTO t VALUES (1,2),(now()),(3)"),
            "INSERT INTO t VALUES (?,...),(now()),(?)"
        );
        assert_eq!(
            norm("SELECT 0 IN ((0),(0),(0))"),
            norm("SELECT 0 IN ((0),(0))")
        );
        assert_eq!(
            norm("SELECT col1, t2.c3 FROM `t 1` /* hi */ -- x\n WHERE x>-7"),
            "SELECT col1, t2.c3 FROM `t 1` WHERE x>-?"
        );
        assert_eq!(norm("SELECT 1"), "SELECT ?");
        assert_eq!(norm("SELECT 1.5, 2., 1e5"), "SELECT ?,...");
        assert_eq!(
            norm("SELECT a FROM t WHERE id=2.INTO OUTFILE 'x'"),
            "SELECT a FROM t WHERE id=?.INTO OUTFILE ?"
        );
    }

    #[test]
    fn same_shape_same_digest() {
        let d = Digests::new(1);
        let mut buf = Vec::new();
        let mut record = |sql: &[u8], micros, rows| {
            let key = key_of(sql, &mut buf).key;
            d.record_keyed(key, sql, &mut buf, micros, rows);
        };
        for i in 0..5 {
            record(
                format!("SELECT c FROM t WHERE id = {i}").as_bytes(),
                10 * i,
                1,
            );
        }
        record(b"UPDATE t SET k=k+1 WHERE id=3", 1000, 1);
        let v = d.view();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].digest, "UPDATE t SET k=k+? WHERE id=?");
        assert_eq!(
            (v[1].count, v[1].total_time_us, v[1].max_time_us, v[1].rows),
            (5, 100, 40, 5)
        );
    }

    #[test]
    fn junk_never_panics() {
        let mut out = Vec::new();
        for s in [
            "'",
            "\"\\",
            "/*",
            "--",
            "`",
            "1e",
            "0x",
            "?,",
            "\u{1F600}",
            "",
        ] {
            normalise(s.as_bytes(), &mut out);
        }
    }
}
