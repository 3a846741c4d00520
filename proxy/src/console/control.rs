//! The proxy's side of the admin console: `rwproxy_admin::ControlPlane` over the live
//! [`Cluster`], so every change takes effect for the next statement without a restart.

use crate::backend::{Backend, Health};
use crate::client::kill::kill_in_background;
use crate::client::registry::Registry;
use crate::client::ClientSettings;
use crate::cluster::{ChangeError, Cluster};
use crate::config::{self, atlas_decrypt, atlas_encrypt, BackendConfig, Config, Role};
use crate::stats::Stats;
use rwproxy_admin::{
    AdminError, BackendInfo, BackendRole, BackendState, BackendStats, ControlPlane, DigestInfo,
    HaStatusInfo, SessionInfo, UserPassword, VrrpInfo,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub struct ProxyControl {
    cluster: Arc<Cluster>,
    /// The VRRP instances this process runs.
    vrrp: Vec<tokio::sync::watch::Receiver<rwproxy_ha::vrrp::Status>>,
    /// The failover actions' state, when `[ha.failover]` runs here.
    ha_status: Option<tokio::sync::watch::Receiver<HaStatusInfo>>,
    /// Where admin SWITCHOVER requests go.
    switchover: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    sessions: Arc<Registry>,
    stats: Arc<Stats>,
    /// The config as loaded: where `SAVE CONFIG` writes, and the admin credentials.
    config: Config,
    version: String,
    started: Instant,
}

impl ProxyControl {
    pub fn new(
        cluster: Arc<Cluster>,
        config: Config,
        clients: &ClientSettings,
        vrrp: Vec<tokio::sync::watch::Receiver<rwproxy_ha::vrrp::Status>>,
    ) -> Self {
        ProxyControl {
            cluster,
            vrrp,
            ha_status: None,
            switchover: None,
            sessions: clients.registry.clone(),
            stats: clients.stats.clone(),
            config,
            version: clients.version.clone(),
            started: Instant::now(),
        }
    }

    /// Shows the failover actions' state in `SELECT * FROM ha_status` and passes SWITCHOVER
    /// to them.
    pub fn with_failover(
        mut self,
        status: tokio::sync::watch::Receiver<HaStatusInfo>,
        switchover: tokio::sync::mpsc::UnboundedSender<()>,
    ) -> Self {
        self.ha_status = Some(status);
        self.switchover = Some(switchover);
        self
    }

    pub fn admin_credentials(&self) -> (String, String) {
        (
            self.config.admin_username.clone(),
            self.config.admin_password.clone(),
        )
    }

    pub fn server_version(&self) -> String {
        self.version.clone()
    }

    /// The line `COM_STATISTICS` (the CLI's `status`) shows.
    pub fn statistics_line(&self) -> String {
        let b = self.cluster.backends();
        let queries: u64 = b.iter().map(|b| b.queries()).sum();
        format!(
            "Uptime: {}  Backends: {}  Queries: {queries}",
            self.started.elapsed().as_secs(),
            b.len()
        )
    }
}

/// Backend `b`'s row, as number `ndx` (1-based) of the list.
fn info(ndx: usize, b: &Backend) -> BackendInfo {
    BackendInfo {
        ndx,
        address: b.address.clone(),
        state: state(b.health()),
        role: role(b.role),
        weight: b.weight.load(Ordering::Relaxed),
    }
}

fn state(h: Health) -> BackendState {
    match h {
        Health::Up => BackendState::Up,
        Health::Down => BackendState::Down,
        Health::Offline => BackendState::Offline,
        Health::Unknown => BackendState::Unknown,
        Health::Excluded => BackendState::Excluded,
    }
}

fn role(r: Role) -> BackendRole {
    match r {
        Role::ReadWrite => BackendRole::ReadWrite,
        Role::ReadOnly => BackendRole::ReadOnly,
    }
}

impl From<ChangeError> for AdminError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::NoSuchBackend(ndx) => AdminError::NoSuchBackend { ndx },
            // The console's parser leaves client entries to the cluster, which knows the
            // config's rules for them: a bad one is still a parse error.
            ChangeError::BadClient(why) => AdminError::Syntax(why),
            other => AdminError::failed(other.to_string()),
        }
    }
}

impl ControlPlane for ProxyControl {
    fn backends(&self) -> Vec<BackendInfo> {
        self.cluster
            .backends()
            .iter()
            .enumerate()
            .map(|(i, b)| info(i + 1, b))
            .collect()
    }

    // The reply shows the backend changed, as it is then: read back by number, it could be
    // another if one was removed meanwhile.
    fn set_offline(&self, ndx: usize) -> Result<BackendInfo, AdminError> {
        let b = self.cluster.set_backend_offline(ndx, true)?;
        self.sessions.wake_all();
        Ok(info(ndx, &b))
    }

    fn set_online(&self, ndx: usize) -> Result<BackendInfo, AdminError> {
        let b = self.cluster.set_backend_offline(ndx, false)?;
        Ok(info(ndx, &b))
    }

    fn add_backend(&self, address: &str, r: BackendRole, weight: u32) -> Result<(), AdminError> {
        let role = match r {
            BackendRole::ReadWrite => Role::ReadWrite,
            BackendRole::ReadOnly => Role::ReadOnly,
        };
        // The console's syntax has no limit: the documented default, not another backend's.
        self.cluster.add_backend(&BackendConfig {
            address: address.to_string(),
            role,
            weight,
            max_connections: config::defaults::MAX_CONNECTIONS,
            offline: false,
        })?;
        Ok(())
    }

    fn remove_backend(&self, ndx: usize) -> Result<(), AdminError> {
        self.cluster.remove_backend(ndx)?;
        self.sessions.wake_all();
        Ok(())
    }

    fn remove_reader(&self, address: &str) -> Result<(), AdminError> {
        self.cluster.remove_reader(address)?;
        self.sessions.wake_all();
        Ok(())
    }

    fn clients(&self) -> Vec<String> {
        self.cluster.clients()
    }

    fn add_client(&self, ip: &str) -> Result<(), AdminError> {
        Ok(self.cluster.add_client(ip)?)
    }

    fn remove_client(&self, ip: &str) -> Result<(), AdminError> {
        Ok(self.cluster.remove_client(ip)?)
    }

    fn users(&self) -> Vec<(String, String)> {
        self.cluster
            .users()
            .iter()
            .map(|(u, p)| (u.clone(), atlas_encrypt(p)))
            .collect()
    }

    fn add_user(&self, name: &str, password: UserPassword) -> Result<(), AdminError> {
        let plain = match password {
            UserPassword::Plain(p) => p,
            UserPassword::Encrypted(e) => atlas_decrypt(&e)
                .map_err(|err| AdminError::failed(format!("failed to decrypt '{e}': {err}")))?,
        };
        Ok(self.cluster.add_user(name, &plain)?)
    }

    fn remove_user(&self, name: &str) -> Result<(), AdminError> {
        Ok(self.cluster.remove_user(name)?)
    }

    fn save_config(&self) -> Result<(), AdminError> {
        self.cluster
            .save(|snap| config::save::save(&self.config.path, self.config.format.clone(), snap))
            .map_err(|e| AdminError::failed(format!("SAVE CONFIG failed: {e}")))?;
        tracing::info!(path = %self.config.path.display(), "configuration saved");
        Ok(())
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    fn stats(&self) -> Vec<BackendStats> {
        self.cluster
            .backends()
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (open, idle) = b.pool.counts();
                let observed = b.observed();
                let queries = b.queries();
                BackendStats {
                    ndx: i + 1,
                    address: b.address.clone(),
                    state: state(b.health()),
                    role: role(b.role),
                    weight: b.weight.load(Ordering::Relaxed),
                    conns_in_use: open.saturating_sub(idle) as u64,
                    conns_idle: idle as u64,
                    queries,
                    errors: b.errors(),
                    avg_latency_us: b.latency_us() / queries.max(1),
                    lag_seconds: observed.lag_seconds,
                    reason: observed.reason,
                }
            })
            .collect()
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions.view()
    }

    fn digests(&self) -> Vec<DigestInfo> {
        self.stats.digests.view()
    }

    fn vrrp(&self) -> Vec<VrrpInfo> {
        self.vrrp
            .iter()
            .map(|s| s.borrow().to_vrrp_info())
            .collect()
    }

    fn ha_status(&self) -> Vec<HaStatusInfo> {
        self.ha_status.iter().map(|s| s.borrow().clone()).collect()
    }

    fn switchover(&self) -> Result<(), AdminError> {
        match &self.switchover {
            Some(tx) => tx
                .send(())
                .map_err(|_| AdminError::failed("SWITCHOVER: the failover task has stopped")),
            None => Err(AdminError::failed(
                "SWITCHOVER: no failover actions run in this process ([ha.failover])",
            )),
        }
    }

    /// Starts the kill and returns: the console's calls are synchronous, and a kill waits
    /// for the backend.
    fn kill_session(&self, id: u64, query_only: bool) -> Result<(), AdminError> {
        let target = u32::try_from(id)
            .ok()
            .and_then(|n| self.sessions.get(n))
            .ok_or(AdminError::UnknownThread(id))?;
        kill_in_background(target, &self.cluster, query_only);
        tracing::info!(session = id, query_only, "killed from the admin console");
        Ok(())
    }

    fn variables(&self) -> Vec<(String, String)> {
        vec![
            ("instance".into(), self.config.instance.clone()),
            ("version".into(), env!("CARGO_PKG_VERSION").into()),
            (
                "connect_timeout_ms".into(),
                self.config.connect_timeout.as_millis().to_string(),
            ),
            (
                "drain_timeout".into(),
                self.cluster.drain_timeout().as_secs().to_string(),
            ),
        ]
    }

    fn is_writable(&self, name: &str) -> bool {
        name == "drain_timeout"
    }

    fn set_variables(&self, settings: &[(String, String)]) -> Result<(), AdminError> {
        // Checked first, all of them: nothing changes unless everything can.
        let mut drain_timeout = None;
        for (name, value) in settings {
            match name.as_str() {
                "drain_timeout" => {
                    let secs: u64 = value
                        .trim_matches(['\'', '"'])
                        .parse()
                        .ok()
                        .filter(|s| *s <= config::defaults::MAX_DRAIN_TIMEOUT_SECS)
                        .ok_or_else(|| AdminError::WrongValue {
                            name: name.clone(),
                            value: value.clone(),
                        })?;
                    drain_timeout = Some(secs);
                }
                _ if self.variables().iter().any(|(n, _)| n == name) => {
                    return Err(AdminError::ReadOnlyVariable(name.clone()))
                }
                _ => return Err(AdminError::UnknownVariable(name.clone())),
            }
        }
        if let Some(secs) = drain_timeout {
            self.cluster
                .set_drain_timeout(std::time::Duration::from_secs(secs));
            // Sessions already draining look at their deadline again.
            self.sessions.wake_all();
            tracing::info!("drain_timeout set to {secs} s");
        }
        Ok(())
    }
}
