//! Runs rwproxy in-process in front of a sandbox cluster, on a free loopback port.

use crate::sandbox::{Cluster, APP_PASSWORD, APP_USER, DATABASE};
use anyhow::Result;
use mysql_async::{Conn, Opts, OptsBuilder};
use rwproxy::cluster::Cluster as Backends;
use rwproxy::config::{self, Config, ConfigFormat};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub struct Proxy {
    pub addr: SocketAddr,
    pub backends: Arc<Backends>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The TOML config the tests start from: the cluster's primary as `rw`, its replicas as `ro`
/// with the given weights (1 each when `weights` is shorter), user `app`.
pub fn config_toml(cluster: &Cluster, weights: &[u32], extra_backend: &str) -> String {
    let mut s = String::from("[proxy]\nlisten = \"127.0.0.1:0\"\nconnect-timeout-ms = 1000\n");
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

pub async fn start_config(cfg: Config) -> Result<Proxy> {
    let backends = Backends::new(&cfg);
    backends.spawn_maintenance();
    let listener = rwproxy::server::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let b = backends.clone();
    let task = tokio::spawn(async move {
        let _ = rwproxy::server::serve(listener, &cfg, b).await;
    });
    Ok(Proxy {
        addr,
        backends,
        task,
    })
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
}
