//! Differential testing support: run a statement on two connections (through the proxy and
//! directly against the primary) and capture everything a client can observe about it, so
//! the two outcomes can be compared with `==`.

use mysql_async::prelude::*;
use mysql_async::{Column, Conn, Params, Row, Value};

/// One statement of a corpus file (see `sql-tests/data/differential.sql` for the format).
#[derive(Debug, Clone)]
pub struct Stmt {
    /// 1-based line of the statement's first line, for messages.
    pub line: usize,
    pub sql: String,
    pub params: Option<Vec<Literal>>,
    pub text: bool,
    pub binary: bool,
    /// Open fresh connections on both sides before this statement.
    pub reconnect: bool,
}

/// A parameter literal: inlined as SQL text in the text protocol, bound in the binary one.
#[derive(Debug, Clone)]
pub struct Literal {
    pub sql: String,
    pub value: Value,
}

pub fn parse_corpus(src: &str) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut start = 0;
    let mut params = None;
    let (mut text, mut binary, mut reconnect) = (true, true, false);
    for (i, line) in src.lines().enumerate() {
        let t = line.trim();
        if buf.is_empty() {
            if t.is_empty() {
                continue;
            }
            if let Some(c) = t.strip_prefix("--") {
                let c = c.trim();
                if let Some(p) = c.strip_prefix("params:") {
                    params = Some(parse_params(p));
                } else if c == "text-only" {
                    binary = false;
                } else if c == "binary-only" {
                    text = false;
                } else if c == "reconnect" {
                    reconnect = true;
                }
                continue;
            }
            start = i + 1;
        }
        if !buf.is_empty() {
            buf.push('\n');
        }
        buf.push_str(line.trim_end());
        if t.ends_with(';') {
            buf.pop();
            out.push(Stmt {
                line: start,
                sql: std::mem::take(&mut buf),
                params: params.take(),
                text,
                binary,
                reconnect,
            });
            (text, binary, reconnect) = (true, true, false);
        }
    }
    assert!(
        buf.trim().is_empty(),
        "unterminated statement at line {start}: {buf}"
    );
    out
}

fn parse_params(s: &str) -> Vec<Literal> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for ch in s.chars() {
        match ch {
            '\'' => {
                in_q = !in_q;
                cur.push(ch)
            }
            ',' if !in_q => items.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    items.push(cur);
    items
        .into_iter()
        .map(|i| {
            let sql = i.trim().to_string();
            let value = literal_value(&sql);
            Literal { sql, value }
        })
        .collect()
}

fn literal_value(s: &str) -> Value {
    if s.eq_ignore_ascii_case("NULL") {
        Value::NULL
    } else if let Some(h) = s.strip_prefix("x'").and_then(|h| h.strip_suffix('\'')) {
        Value::Bytes(
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex literal"))
                .collect(),
        )
    } else if let Some(q) = s.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
        Value::Bytes(q.as_bytes().to_vec())
    } else if let Ok(i) = s.parse::<i64>() {
        Value::Int(i)
    } else if let Ok(u) = s.parse::<u64>() {
        Value::UInt(u)
    } else {
        Value::Double(s.parse().unwrap_or_else(|_| panic!("bad literal {s}")))
    }
}

/// The statement with `?` placeholders (outside quotes) replaced by the literals.
pub fn inline_params(sql: &str, params: &[Literal]) -> String {
    let mut out = String::new();
    let mut it = params.iter();
    let mut quote: Option<char> = None;
    for ch in sql.chars() {
        match (quote, ch) {
            (None, '\'' | '"' | '`') => {
                quote = Some(ch);
                out.push(ch)
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(ch)
            }
            (None, '?') => out.push_str(&it.next().expect("too few params").sql),
            _ => out.push(ch),
        }
    }
    assert!(it.next().is_none(), "too many params for {sql}");
    out
}

/// Everything a client sees of one column definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ColMeta {
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    pub column_type: String,
    pub flags: String,
    pub decimals: u8,
    pub charset: u16,
    pub length: u32,
}

impl ColMeta {
    fn new(c: &Column, norm: &dyn Fn(&str) -> String) -> Self {
        ColMeta {
            schema: norm(&c.schema_str()),
            table: norm(&c.table_str()),
            org_table: norm(&c.org_table_str()),
            name: norm(&c.name_str()),
            org_name: norm(&c.org_name_str()),
            column_type: format!("{:?}", c.column_type()),
            flags: format!("{:?}", c.flags()),
            decimals: c.decimals(),
            charset: c.character_set(),
            length: c.column_length(),
        }
    }
}

/// One result (a result set, or an OK for a statement without one).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultOut {
    pub columns: Vec<ColMeta>,
    pub rows: Vec<Vec<Value>>,
    pub affected_rows: u64,
    pub last_insert_id: Option<u64>,
    pub warnings: u16,
    pub info: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrOut {
    pub code: u16,
    pub state: String,
    pub message: String,
}

/// The whole observable outcome of one statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// For the binary protocol: the prepared statement's parameter and column definitions.
    pub prepared: Option<(Vec<ColMeta>, Vec<ColMeta>)>,
    pub results: Vec<ResultOut>,
    pub error: Option<ErrOut>,
    /// `SHOW WARNINGS` run right after the statement on the same connection.
    pub show_warnings: Vec<Vec<Value>>,
}

impl Outcome {
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }
}

/// Replaces the side-specific schema name so the two sides compare equal.
pub struct Normalizer {
    pub schema: String,
}

impl Normalizer {
    pub fn str(&self, s: &str) -> String {
        s.replace(&self.schema, "<db>")
    }

    fn value(&self, v: Value) -> Value {
        match v {
            Value::Bytes(b) => {
                let needle = self.schema.as_bytes();
                if b.windows(needle.len()).any(|w| w == needle) {
                    Value::Bytes(
                        String::from_utf8_lossy(&b)
                            .replace(&self.schema, "<db>")
                            .into_bytes(),
                    )
                } else {
                    Value::Bytes(b)
                }
            }
            v => v,
        }
    }

    fn row(&self, r: Row) -> Vec<Value> {
        r.unwrap().into_iter().map(|v| self.value(v)).collect()
    }
}

fn err_out(e: mysql_async::Error, n: &Normalizer) -> ErrOut {
    match e {
        mysql_async::Error::Server(se) => ErrOut {
            code: se.code,
            state: se.state,
            message: n.str(&se.message),
        },
        other => ErrOut {
            code: 0,
            state: "client".into(),
            message: other.to_string(),
        },
    }
}

/// Every result set of a reply, in either protocol, into `out` (stopping at an error).
async fn collect_results<P: mysql_async::prelude::Protocol>(
    mut r: mysql_async::QueryResult<'_, '_, P>,
    n: &Normalizer,
    out: &mut Outcome,
) {
    while !r.is_empty() {
        let columns: Vec<ColMeta> = r
            .columns_ref()
            .iter()
            .map(|c| ColMeta::new(c, &|s| n.str(s)))
            .collect();
        match r.collect::<Row>().await {
            Ok(rows) => out.results.push(ResultOut {
                columns,
                rows: rows.into_iter().map(|r| n.row(r)).collect(),
                affected_rows: r.affected_rows(),
                last_insert_id: r.last_insert_id(),
                warnings: r.warnings(),
                info: n.str(&r.info()),
            }),
            Err(e) => {
                out.error = Some(err_out(e, n));
                return;
            }
        }
    }
}

/// Text protocol: `COM_QUERY`, all result sets, then `SHOW WARNINGS`.
pub async fn run_text(conn: &mut Conn, sql: &str, n: &Normalizer) -> Outcome {
    let mut out = Outcome::default();
    match conn.query_iter(sql).await {
        Err(e) => out.error = Some(err_out(e, n)),
        Ok(r) => collect_results(r, n, &mut out).await,
    }
    out.show_warnings = show_warnings(conn, n).await;
    out
}

/// Binary protocol: `COM_STMT_PREPARE`, `COM_STMT_EXECUTE` with the literals bound, all
/// result sets, then `SHOW WARNINGS` (text protocol) and `COM_STMT_CLOSE`.
pub async fn run_binary(conn: &mut Conn, sql: &str, params: &[Value], n: &Normalizer) -> Outcome {
    let mut out = Outcome::default();
    let stmt = match conn.prep(sql).await {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(err_out(e, n));
            out.show_warnings = show_warnings(conn, n).await;
            return out;
        }
    };
    let meta = |cs: &[Column]| -> Vec<ColMeta> {
        cs.iter().map(|c| ColMeta::new(c, &|s| n.str(s))).collect()
    };
    out.prepared = Some((meta(stmt.params()), meta(&stmt.columns())));
    let p = if params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(params.to_vec())
    };
    match conn.exec_iter(&stmt, p).await {
        Err(e) => out.error = Some(err_out(e, n)),
        Ok(r) => collect_results(r, n, &mut out).await,
    }
    out.show_warnings = show_warnings(conn, n).await;
    let _ = conn.close(stmt).await;
    out
}

async fn show_warnings(conn: &mut Conn, n: &Normalizer) -> Vec<Vec<Value>> {
    match conn.query::<Row, _>("SHOW WARNINGS").await {
        Ok(rows) => rows.into_iter().map(|r| n.row(r)).collect(),
        Err(e) => vec![vec![Value::Bytes(
            format!("SHOW WARNINGS failed: {e}").into_bytes(),
        )]],
    }
}

/// Statements that only read (and so may run on a replica through the proxy); everything
/// else is followed by a wait for the replicas to catch up.
pub fn is_read(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "SELECT" | "SHOW" | "DESC" | "DESCRIBE" | "EXPLAIN" | "WITH" | "HELP"
    ) && !sql.contains(';')
}

/// `Debug` of an outcome with values written out in full (`Value`'s own `Debug` elides bytes).
pub fn render(o: &Outcome) -> String {
    let vals = |rows: &[Vec<Value>]| -> String {
        rows.iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.as_sql(false))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .map(|r| {
                let r: String = r.chars().take(600).collect();
                format!("({r})")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut s = String::new();
    if let Some(p) = &o.prepared {
        s += &format!("prepared: {p:?}\n");
    }
    for r in &o.results {
        s += &format!(
            "    result: affected={} last_id={:?} warnings={} info={:?}\n      cols: {:?}\n      rows: {}\n",
            r.affected_rows,
            r.last_insert_id,
            r.warnings,
            r.info,
            r.columns,
            vals(&r.rows)
        );
    }
    if let Some(e) = &o.error {
        s += &format!("    error: {e:?}\n");
    }
    s += &format!("    show warnings: {}\n", vals(&o.show_warnings));
    s
}
