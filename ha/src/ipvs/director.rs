//! The director loop inside `rwproxy serve`: check every real server, compute the desired
//! table, reconcile the kernel; follow a VRRP instance when told to (services present only
//! while it is MASTER, as keepalived does); remove what it owns when stopping.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::check::{self, Check, Health, VirtualServer};
use super::client::{Ipvs, IpvsError};
use super::reconcile::{DesiredService, Reconciler};
use crate::db::{DbTarget, IoThread, Prober};
use crate::vrrp::{State, Status};

/// The `[ha.ipvs]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectorConfig {
    pub virtual_servers: Vec<VirtualServer>,
    /// Name of the VRRP instance whose MASTER state the services follow; `None`: always
    /// installed.
    pub vrrp_instance: Option<String>,
}

/// One real server's latest verdict, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServerState {
    pub service: super::ServiceKey,
    pub addr: SocketAddr,
    pub health: Health,
}

/// A running director.
pub struct Running {
    pub handle: JoinHandle<Result<(), IpvsError>>,
    pub health: watch::Receiver<Vec<RealServerState>>,
}

/// Runs the health checks, keeping one database connection per real server between rounds.
#[derive(Default)]
pub struct Checker {
    probers: HashMap<SocketAddr, Prober>,
    /// The last verdict on each replication-checked server.
    up: HashMap<SocketAddr, bool>,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    async fn check_one(&mut self, check: &Check, addr: SocketAddr) -> Health {
        match check {
            Check::None => Health::up("not checked"),
            Check::Misc {
                script,
                timeout,
                dynamic,
            } => {
                let args = [addr.ip().to_string(), addr.port().to_string()];
                check::run_misc(script, &args, *timeout, *dynamic).await
            }
            Check::Replication {
                user,
                password,
                max_lag,
                timeout,
            } => {
                let prober = self.probers.entry(addr).or_insert_with(|| {
                    Prober::new(DbTarget {
                        address: addr.to_string(),
                        user: user.clone(),
                        password: password.clone(),
                        timeout: *timeout,
                    })
                });
                let probe = prober.probe().await;
                // Only a replica that was serving, whose IO thread now retries its primary.
                let retrying = probe
                    .as_ref()
                    .ok()
                    .and_then(|s| s.replica.as_ref())
                    .filter(|r| {
                        r.io_thread == IoThread::Connecting && self.up.get(&addr) == Some(&true)
                    });
                let primary_gone = match retrying {
                    Some(r) => !greets(&r.primary_host, r.primary_port, *timeout).await,
                    None => false,
                };
                let h = check::replication_verdict(&probe, *max_lag, primary_gone);
                self.up.insert(addr, h.up);
                h
            }
        }
    }

    /// One round over every virtual server: the table it calls for, and each verdict.
    pub async fn round(
        &mut self,
        cfg: &DirectorConfig,
    ) -> (Vec<DesiredService>, Vec<RealServerState>) {
        let mut desired = Vec::new();
        let mut states = Vec::new();
        for vs in &cfg.virtual_servers {
            let mut health = Vec::with_capacity(vs.real_servers.len());
            for rs in &vs.real_servers {
                let h = self.check_one(&vs.check, rs.addr).await;
                states.push(RealServerState {
                    service: vs.service.key,
                    addr: rs.addr,
                    health: h.clone(),
                });
                health.push(h);
            }
            desired.push(vs.desired(&health));
        }
        (desired, states)
    }
}

/// Whether a MySQL server answers at `host:port`: it greets within `timeout` (a hung one
/// accepts the connection in the kernel and says nothing).
async fn greets(host: &str, port: u16, timeout: Duration) -> bool {
    let greeting = async {
        let mut s = tokio::net::TcpStream::connect((host, port)).await?;
        let mut b = [0u8; 1];
        tokio::io::AsyncReadExt::read(&mut s, &mut b).await
    };
    matches!(tokio::time::timeout(timeout, greeting).await, Ok(Ok(n)) if n > 0)
}

type Applied = (Ipvs, Reconciler, Result<(), IpvsError>);

/// Runs `reconcile` off the async threads: netlink calls block.
async fn apply(
    ipvs: Ipvs,
    mut r: Reconciler,
    desired: Vec<DesiredService>,
) -> Result<Applied, IpvsError> {
    tokio::task::spawn_blocking(move || {
        let res = r.reconcile(&ipvs, &desired);
        if let Ok(applied) = &res {
            for req in applied {
                tracing::info!("IPVS: {req:?}");
            }
        }
        (ipvs, r, res.map(drop))
    })
    .await
    .map_err(|e| IpvsError::Netlink {
        op: "reconcile the IPVS table".into(),
        message: e.to_string(),
    })
}

/// Where the kernel keeps whether a quiesced (weight 0) real server's persistence templates
/// expire: by default (0) they do not, and a client with affinity to a server taken out by
/// `inhibit_on_failure` keeps being sent there, new connections included.
const EXPIRE_QUIESCENT_TEMPLATE: &str = "/proc/sys/net/ipv4/vs/expire_quiescent_template";

/// With persistence and `inhibit_on_failure` together, weight 0 means "no new connections"
/// only once the kernel expires quiesced servers' templates: turn that on (it is this network
/// namespace's, as the IPVS table is), or say why not.
fn quiesce_persistence(cfg: &DirectorConfig) {
    let needed = cfg
        .virtual_servers
        .iter()
        .any(|v| v.inhibit_on_failure && v.service.timeout > 0);
    if !needed {
        return;
    }
    match std::fs::write(EXPIRE_QUIESCENT_TEMPLATE, "1\n") {
        Ok(()) => tracing::info!("IPVS: net.ipv4.vs.expire_quiescent_template = 1, so persistent clients leave real servers that fail their check (inhibit_on_failure)"),
        Err(e) => tracing::warn!("IPVS: cannot set net.ipv4.vs.expire_quiescent_template = 1 ({e}): persistent clients keep going to real servers that fail their check (inhibit_on_failure); set it, or drop inhibit_on_failure"),
    }
}

/// Starts the director on the current tokio runtime. Fails at once when IPVS is unavailable.
pub fn run<F>(
    cfg: DirectorConfig,
    mut vrrp: Option<watch::Receiver<Status>>,
    shutdown: F,
) -> Result<Running, IpvsError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let ipvs = Ipvs::connect()?;
    quiesce_persistence(&cfg);
    let (tx, rx) = watch::channel(Vec::new());
    let handle = tokio::spawn(async move {
        let mut ipvs = ipvs;
        let mut reconciler = Reconciler::new();
        let mut checker = Checker::new();
        let interval = cfg
            .virtual_servers
            .iter()
            .map(|v| v.delay_loop)
            .min()
            .unwrap_or(Duration::from_secs(6))
            .max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut last: HashMap<(super::ServiceKey, SocketAddr), bool> = HashMap::new();
        // Whether the VRRP instance still runs: once it has stopped (its interface is
        // missing, say), `changed` fails at once every time, and waiting on it would spin.
        // Its last state stays readable and is what the director follows.
        let mut vrrp_runs = vrrp.is_some();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
                running = async {
                    match vrrp.as_mut().filter(|_| vrrp_runs) {
                        Some(v) => v.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                } => if !running {
                    vrrp_runs = false;
                    tracing::warn!("the VRRP instance the IPVS director follows has stopped: the director keeps to its last state");
                }
            }
            let (desired, states) = checker.round(&cfg).await;
            for s in &states {
                let was = last.insert((s.service, s.addr), s.health.up);
                if was != Some(s.health.up) {
                    if s.health.up {
                        tracing::info!(service = %s.service, server = %s.addr, "real server up: {}", s.health.reason);
                    } else {
                        tracing::warn!(service = %s.service, server = %s.addr, "real server down: {}", s.health.reason);
                    }
                }
            }
            let _ = tx.send(states);
            let active = vrrp
                .as_ref()
                .is_none_or(|v| v.borrow().state == State::Master);
            let want = if active { desired } else { Vec::new() };
            let res;
            (ipvs, reconciler, res) = apply(ipvs, reconciler, want).await?;
            if let Err(e) = res {
                tracing::warn!("IPVS reconcile incomplete, retrying next round: {e}");
            }
        }
        let (_, _, res) = apply(ipvs, reconciler, Vec::new()).await?;
        res
    });
    Ok(Running { handle, health: rx })
}
