//! Prometheus metrics over HTTP (`GET /metrics`, text exposition format 0.0.4).
//!
//! Everything is read at scrape time from the counters the data path keeps anyway, so the
//! exporter adds no work per statement.

use super::counters::{ErrorKind, Route, LATENCY_BOUNDS_US};
use super::Stats;
use crate::backend::Health;
use crate::cluster::Cluster;
use crate::config::Role;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// What a scrape reads.
#[derive(Clone)]
pub struct Sources {
    pub cluster: Arc<Cluster>,
    pub stats: Arc<Stats>,
    /// Client sessions alive now.
    pub active_clients: Arc<AtomicUsize>,
    /// The bound on client connections, which a reload may change.
    pub max_clients: Arc<crate::client::slots::ClientSlots>,
}

/// Binds `addr` and serves scrapes in the background; returns the bound address.
pub async fn start(
    addr: std::net::SocketAddr,
    sources: Sources,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, sources));
    Ok(bound)
}

/// How long a scraper may take to send a request's headers, the first or the next on a
/// kept-alive connection: a silent connection held a descriptor for good, outside
/// `max-client-connections`.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connections served at once: a few scrapers need a few; the rest wait in the backlog.
const MAX_CONNECTIONS: usize = 16;

/// Serves scrapes until the listener fails.
async fn serve(listener: TcpListener, sources: Sources) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "metrics exporter listening (GET /metrics)");
    }
    let mut failures = crate::server::AcceptFailures::new("metrics");
    let room = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = room.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                failures.back_off(e).await;
                continue;
            }
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let sources = sources.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &sources)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(io, service)
                .await
            {
                tracing::debug!("metrics: connection ended: {e}");
            }
        });
    }
}

fn answer<B>(req: &Request<B>, sources: &Sources) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(sources),
        ),
        (&hyper::Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "rwproxy serves /metrics only\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

const STATES: [(Health, &str); 5] = [
    (Health::Unknown, "unknown"),
    (Health::Up, "up"),
    (Health::Down, "down"),
    (Health::Offline, "offline"),
    (Health::Excluded, "excluded"),
];

/// The whole exposition text.
pub fn render(sources: &Sources) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let backends = sources.cluster.backends();
    let c = &sources.stats.counters;

    header(&mut out, "rwproxy_backend_state", "gauge", "1 for the backend's current state: unknown, up, down (unreachable), offline (operator), excluded (replica stopped or lagging).");
    for b in backends.iter() {
        let health = b.health();
        for (state, name) in STATES {
            let _ = writeln!(
                out,
                "rwproxy_backend_state{{backend=\"{}\",role=\"{}\",state=\"{name}\"}} {}",
                escape(&b.address),
                role(b.role),
                u8::from(health == state)
            );
        }
    }
    header(
        &mut out,
        "rwproxy_backend_replication_lag_seconds",
        "gauge",
        "Seconds_Behind_Master of replicas, as last probed.",
    );
    for b in backends.iter() {
        if let Some(lag) = b.observed().lag_seconds {
            let _ = writeln!(
                out,
                "rwproxy_backend_replication_lag_seconds{{backend=\"{}\"}} {lag}",
                escape(&b.address)
            );
        }
    }
    header(
        &mut out,
        "rwproxy_backend_read_only",
        "gauge",
        "@@read_only as last probed (1 = ON).",
    );
    for b in backends.iter() {
        if let Some(ro) = b.observed().read_only {
            let _ = writeln!(
                out,
                "rwproxy_backend_read_only{{backend=\"{}\"}} {}",
                escape(&b.address),
                u8::from(ro)
            );
        }
    }
    header(
        &mut out,
        "rwproxy_backend_connections",
        "gauge",
        "Pooled backend connections, lent to sessions (in_use) or idle.",
    );
    for b in backends.iter() {
        let (open, idle) = b.pool.counts();
        for (state, n) in [("in_use", open.saturating_sub(idle)), ("idle", idle)] {
            let _ = writeln!(
                out,
                "rwproxy_backend_connections{{backend=\"{}\",state=\"{state}\"}} {n}",
                escape(&b.address)
            );
        }
    }
    header(
        &mut out,
        "rwproxy_backend_queries_total",
        "counter",
        "Statements sent to the backend.",
    );
    for b in backends.iter() {
        let _ = writeln!(
            out,
            "rwproxy_backend_queries_total{{backend=\"{}\"}} {}",
            escape(&b.address),
            b.queries()
        );
    }
    header(
        &mut out,
        "rwproxy_backend_errors_total",
        "counter",
        "Failed connects and connections lost to the backend.",
    );
    for b in backends.iter() {
        let _ = writeln!(
            out,
            "rwproxy_backend_errors_total{{backend=\"{}\"}} {}",
            escape(&b.address),
            b.errors()
        );
    }

    header(&mut out, "rwproxy_query_duration_seconds", "histogram", "Statement latency (sent to the backend until the last reply packet), by route: read (replica pool), write (write backend), session (the session's pinned connection: transactions, locks).");
    for route in Route::ALL {
        let (cumulative, sum_us) = c.latency(route);
        let r = route.as_str();
        for (bound, n) in LATENCY_BOUNDS_US.iter().zip(&cumulative) {
            let _ = writeln!(
                out,
                "rwproxy_query_duration_seconds_bucket{{route=\"{r}\",le=\"{}\"}} {n}",
                *bound as f64 / 1e6
            );
        }
        let total = cumulative.last().copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "rwproxy_query_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "rwproxy_query_duration_seconds_sum{{route=\"{r}\"}} {}",
            sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "rwproxy_query_duration_seconds_count{{route=\"{r}\"}} {total}"
        );
    }
    header(
        &mut out,
        "rwproxy_queries_total",
        "counter",
        "Statements relayed, by route.",
    );
    for route in Route::ALL {
        let total = c.latency(route).0.last().copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "rwproxy_queries_total{{route=\"{}\"}} {total}",
            route.as_str()
        );
    }
    header(&mut out, "rwproxy_errors_total", "counter", "Errors by kind: server_error (ERR from a backend), no_backend, backend_lost, auth, client.");
    for kind in ErrorKind::ALL {
        let _ = writeln!(
            out,
            "rwproxy_errors_total{{kind=\"{}\"}} {}",
            kind.as_str(),
            c.errors(kind)
        );
    }
    let gauge = "gauge";
    let counter = "counter";
    single(
        &mut out,
        ("rwproxy_client_connections", gauge),
        "Client sessions connected now.",
        sources.active_clients.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        ("rwproxy_client_connections_total", counter),
        "Client connections accepted since start.",
        c.clients_accepted.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        ("rwproxy_client_connections_refused_total", counter),
        "Client connections refused with 1040 at max-client-connections.",
        c.clients_refused.load(Ordering::Relaxed),
    );
    let max = match sources.max_clients.limit() {
        usize::MAX => "+Inf".to_string(),
        n => n.to_string(),
    };
    single(
        &mut out,
        ("rwproxy_client_connections_max", gauge),
        "The most client connections accepted at once (max-client-connections).",
        max,
    );
    single(
        &mut out,
        ("rwproxy_sql_log_dropped_total", counter),
        "SQL log lines lost: dropped because the writer fell behind, or refused by the file (a full disk).",
        sources.stats.sql_log.dropped(),
    );
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric without labels: (name, type), help text, value.
fn single(out: &mut String, (name, kind): (&str, &str), help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn role(r: Role) -> &'static str {
    match r {
        Role::ReadWrite => "rw",
        Role::ReadOnly => "ro",
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
    }
}
