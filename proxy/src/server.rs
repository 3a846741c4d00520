//! The proxy listener: accepts clients, applies the client address filter, and hands each
//! session to an event thread.

use crate::client::slots::{client_limit, ClientSlots};
use crate::client::{self, ClientSettings};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::event_threads::EventThreads;
use crate::protocol::message::codes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel queues: test suites and pool warm-ups open hundreds at once.
const LISTEN_BACKLOG: u32 = 4096;

/// What the proxy reports as its version when no backend could be asked: MariaDB-style, so
/// clients enable MariaDB behaviour.
const FALLBACK_VERSION: &str = "5.5.5-10.11.0-rwproxy";

pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What every session is told: the greeting's version (the write backend's, so clients see
/// the real server's features) and the config's per-session settings. Sessions are asked to
/// close (see `Registry::shut_down`) once `shutdown` turns true, and idle ones after
/// `wait-timeout` (see `Registry::sweep`).
pub async fn client_settings(
    cfg: &Config,
    cluster: &Cluster,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> ClientSettings {
    let registry: Arc<crate::client::registry::Registry> = Arc::default();
    let sessions = registry.clone();
    tokio::spawn(async move {
        if shutdown.wait_for(|stop| *stop).await.is_ok() {
            sessions.shut_down();
        }
    });
    registry.sweep(cfg.wait_timeout);
    let slots = ClientSlots::new(client_limit(
        cfg.max_client_connections,
        crate::process::open_files_limit(),
    ));
    client::trim::spawn(slots.clone());
    ClientSettings {
        version: backend_version(cluster).await,
        wait_timeout: cfg.wait_timeout,
        interactive_timeout: cfg.interactive_timeout,
        max_allowed_packet: cfg.max_allowed_packet,
        prepared_memory: crate::client::prepared::PreparedMemory::new(cfg.max_prepared_memory),
        charset: cfg.charset.clone(),
        slots,
        active: Arc::default(),
        registry,
        stats: Arc::new(crate::stats::Stats::new(
            cfg.event_thread_count(),
            crate::stats::sql_log::SqlLogger::start(
                cfg.sql_log,
                cfg.log_path.as_deref(),
                &cfg.instance,
                cfg.sql_log_slow_ms,
            )
            .unwrap_or_else(|e| {
                tracing::error!("cannot open the SQL log: {e}; statements are not logged");
                Default::default()
            }),
        )),
        tls: cfg.client_tls.as_ref().map(|t| t.acceptor()),
        require_secure_transport: cfg.require_secure_transport,
    }
}

/// The version the write backend greets with, announced with "-rwproxy" appended.
async fn backend_version(cluster: &Cluster) -> String {
    let Some(b) = cluster.write_backend() else {
        return FALLBACK_VERSION.into();
    };
    match cluster.greet(&b.address, cluster.dial.timeout).await {
        (Some(v), _) => format!("{v}-rwproxy"),
        (None, _) => FALLBACK_VERSION.into(),
    }
}

/// At most one line per this long about failing or refused accepts.
const ACCEPT_ERROR_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Counts events that would flood the log (20 a second for as long as they last) and says
/// when a line with the count is due: the first, then one per [`ACCEPT_ERROR_EVERY`].
#[derive(Default)]
struct Throttled {
    unlogged: u64,
    last_logged: Option<std::time::Instant>,
}

impl Throttled {
    /// One more; `Some(count since the last line)` when a line is due.
    fn count(&mut self) -> Option<u64> {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|t| t.elapsed() < ACCEPT_ERROR_EVERY)
        {
            return None;
        }
        self.last_logged = Some(std::time::Instant::now());
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Failing accepts of one listener (out of descriptors, mostly): each backs off 50 ms
/// instead of spinning, and the log gets a line per `ACCEPT_ERROR_EVERY` with the count.
pub struct AcceptFailures {
    listener: &'static str,
    log: Throttled,
}

impl AcceptFailures {
    pub fn new(listener: &'static str) -> Self {
        AcceptFailures {
            listener,
            log: Throttled::default(),
        }
    }

    pub async fn back_off(&mut self, e: std::io::Error) {
        if let Some(n) = self.log.count() {
            let hint = match rwproxy_ha::db::is_local_shortage(&e) {
                true => " (raise the open-files limit: LimitNOFILE= in systemd, ulimit -n)",
                false => "",
            };
            tracing::warn!("{} accept failed {n} time(s): {e}{hint}", self.listener);
        }
        crate::timer::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Sends error `code` and `message` in place of the greeting and closes. Before any
/// capabilities are agreed, MariaDB sends no `#SQLSTATE` marker (clients would show it as
/// part of the text); neither does the proxy. One non-blocking write: a new socket's buffer
/// takes the few bytes, so the descriptor is given back at once, with no task per refusal.
fn refuse(stream: tokio::net::TcpStream, code: u16, message: &str) {
    let len = 3 + message.len();
    let mut packet = Vec::with_capacity(4 + len);
    packet.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    packet.push(0);
    packet.push(0xFF);
    packet.extend_from_slice(&code.to_le_bytes());
    packet.extend_from_slice(message.as_bytes());
    // A plain write on the socket: tokio's `try_write` would refuse it until the reactor has
    // seen the new socket writable.
    if let Ok(mut s) = stream.into_std() {
        let _ = std::io::Write::write(&mut s, &packet);
    }
}

/// Runs the accept loop until the listener fails.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    info: Arc<ClientSettings>,
    threads: Arc<EventThreads>,
) -> std::io::Result<()> {
    tracing::info!(listen = %listener.local_addr()?, version = %info.version, max_clients = %info.slots.describe(), "proxy listening");
    let mut failures = AcceptFailures::new("client");
    let mut refusals = Throttled::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                failures.back_off(e).await;
                continue;
            }
        };
        let id = info.registry.new_id();
        info.stats
            .counters
            .clients_accepted
            .fetch_add(1, Ordering::Relaxed);
        if cluster.refuses_lvs(peer.ip()) {
            tracing::debug!(client = %peer, "LVS director refused: offline for LVS (SIGUSR2)");
            drop(stream);
            continue;
        }
        let Some(slot) = info.slots.take() else {
            if let Some(n) = refusals.count() {
                tracing::warn!(
                    "{n} client(s) refused with 1040: {} client connections are open, and \
                     max-client-connections allows {}",
                    info.slots.open(),
                    info.slots.limit()
                );
            }
            info.stats
                .counters
                .clients_refused
                .fetch_add(1, Ordering::Relaxed);
            refuse(
                stream,
                codes::TOO_MANY_CONNECTIONS.0,
                "Too many connections",
            );
            continue;
        };
        if !cluster.client_allowed(peer.ip()) {
            tracing::warn!(client = %peer, "client address not in client-ips; refused");
            info.stats
                .counters
                .error(crate::stats::counters::ErrorKind::Auth);
            let message = format!(
                "Host '{}' is not allowed to connect to this rwproxy server",
                peer.ip()
            );
            refuse(stream, codes::HOST_NOT_PRIVILEGED.0, &message);
            continue;
        }
        // Leaves this runtime's reactor; the event thread registers it with its own.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(client = %peer, "cannot hand the client to an event thread: {e}");
                continue;
            }
        };
        let cluster = cluster.clone();
        let info = info.clone();
        threads.spawn(move || async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => client::serve(stream, peer, id, cluster, info).await,
                Err(e) => tracing::warn!(client = %peer, "cannot adopt the client socket: {e}"),
            }
            drop(slot);
        });
    }
}
