//! Runs rwproxy in-process in front of a sandbox cluster, on a free loopback port.

use crate::sandbox::{Cluster, APP_PASSWORD, APP_USER, DATABASE};
use anyhow::Result;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use rwproxy::cluster::Cluster as Backends;
use rwproxy::config::{self, Config, ConfigFormat};
use rwproxy::console::control::ProxyControl;
use rwproxy::event_threads::EventThreads;
use rwproxy_admin::client::AdminClient;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub struct Proxy {
    pub addr: SocketAddr,
    /// The admin console (Atlas's command language).
    pub admin_addr: SocketAddr,
    pub backends: Arc<Backends>,
    /// The Prometheus exporter, when the config has `[metrics]`.
    pub metrics_addr: Option<SocketAddr>,
    /// Asks sessions to close once they hold no transaction (what SIGTERM does).
    pub stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where the sessions run; dropped with the proxy, which ends them.
    _threads: Arc<EventThreads>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The TOML config the tests start from: the cluster's primary as `rw`, its replicas as `ro`
/// with the given weights (1 each when `weights` is shorter), user `app`.
pub fn config_toml(cluster: &Cluster, weights: &[u32], extra_backend: &str) -> String {
    let mut s = String::from("[proxy]\nlisten = \"127.0.0.1:0\"\nconnect-timeout-ms = 1000\n");
    s += &format!("[admin]\nusername = \"{ADMIN_USER}\"\npassword = \"{ADMIN_PASSWORD}\"\n");
    s += &format!(
        "[[backend]]\naddress = \"{}\"\nrole = \"rw\"\nmax-connections = 50\n",
        cluster.primary_addr()
    );
    for (i, a) in cluster.replica_addrs().iter().enumerate() {
        let w = weights.get(i).copied().unwrap_or(1);
        s += &format!(
            "[[backend]]\naddress = \"{a}\"\nrole = \"ro\"\nweight = {w}\nmax-connections = 50\n"
        );
    }
    s += extra_backend;
    s += &format!("[[user]]\nname = \"{APP_USER}\"\npassword = \"{APP_PASSWORD}\"\n");
    s
}

pub async fn start(toml: &str) -> Result<Proxy> {
    let cfg: Config = config::parse_str(Path::new("test.toml"), toml, ConfigFormat::Toml)?;
    start_config(cfg).await
}

/// Admin console credentials in [`config_toml`].
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin_pw";

/// Starts the proxy and its admin console; the console always gets a free port, so tests
/// running side by side never collide on the default 2345.
pub async fn start_config(mut cfg: Config) -> Result<Proxy> {
    cfg.admin_listen.set_port(0);
    let backends = Backends::new(&cfg);
    backends.spawn_maintenance();
    // Runs until the test's runtime ends.
    drop(rwproxy::monitor::spawn(
        &backends,
        cfg.monitor.clone(),
        cfg.max_allowed_packet,
    ));
    let listener = rwproxy::server::bind(cfg.listen).await?;
    let threads = Arc::new(EventThreads::start(
        cfg.event_thread_count(),
        &tokio::runtime::Handle::current(),
    )?);
    let addr = listener.local_addr()?;
    let admin = rwproxy::server::bind(cfg.admin_listen).await?;
    let admin_addr = admin.local_addr()?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let settings = Arc::new(rwproxy::server::client_settings(&cfg, &backends, stopping).await);
    let metrics_addr = match cfg.metrics_listen {
        Some(addr) => Some(
            rwproxy::stats::exporter::start(
                addr,
                rwproxy::stats::exporter::Sources {
                    cluster: backends.clone(),
                    stats: settings.stats.clone(),
                    active_clients: settings.active.clone(),
                    max_clients: settings.slots.clone(),
                },
            )
            .await?,
        ),
        None => None,
    };
    let control = Arc::new(ProxyControl::new(
        backends.clone(),
        cfg,
        &settings,
        Vec::new(),
    ));
    let b = backends.clone();
    let sessions_threads = threads.clone();
    let tasks = vec![
        tokio::spawn(async move {
            let _ = rwproxy::server::serve(listener, b, settings, sessions_threads).await;
        }),
        tokio::spawn(async move {
            let _ = rwproxy::console::serve(admin, control).await;
        }),
    ];
    settle(&backends).await;
    Ok(Proxy {
        addr,
        admin_addr,
        backends,
        metrics_addr,
        stop,
        tasks,
        _threads: threads,
    })
}

/// Waits (a few seconds at most) until the monitor has probed every backend once, so tests
/// start from `up`/`down` rather than the `unknown` of a proxy that just started.
async fn settle(backends: &Backends) {
    for _ in 0..100 {
        if backends
            .backends()
            .iter()
            .all(|b| b.health() != rwproxy::backend::Health::Unknown)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl Proxy {
    pub fn opts(&self) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname(self.addr.ip().to_string())
            .tcp_port(self.addr.port())
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .db_name(Some(DATABASE))
            .prefer_socket(false)
            .into()
    }

    pub async fn conn(&self) -> Result<Conn> {
        Ok(Conn::new(self.opts()).await?)
    }

    /// A typed admin-console client logged in as [`ADMIN_USER`].
    pub async fn admin(&self) -> AdminClient {
        AdminClient::connect(
            "127.0.0.1",
            self.admin_addr.port(),
            ADMIN_USER,
            ADMIN_PASSWORD,
        )
        .await
        .expect("admin login")
    }

    /// `@@server_id` of `n` autocommit reads on one client connection.
    pub async fn read_ids(&self, n: usize) -> BTreeSet<u32> {
        let mut c = self.conn().await.expect("client login");
        let mut ids = BTreeSet::new();
        for _ in 0..n {
            let id: u32 = c
                .query_first("SELECT @@server_id")
                .await
                .expect("read")
                .expect("a row");
            ids.insert(id);
        }
        ids
    }
}
