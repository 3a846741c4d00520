//! The built-in failover actions bound to VRRP transitions — what the classic recipe's
//! keepalived `notify` script (`mysqlrpladmin failover`, then `REMOVE BACKEND` on Atlas) and its
//! cron job (`add slave` once caught up) did, made safe:
//!
//! - MASTER with `on_master = "promote"`: drain and promote the local database
//!   ([`crate::db::promote`]); a failed drain leaves it read-only (degraded) unless
//!   `promote_anyway` is set. The promoted server leaves every proxy's read pool.
//! - Any other state: `read_only = ON` first — a node that is not MASTER never has a writable
//!   database. BACKUP with `on_backup = "rejoin"`: replicate from the new primary
//!   ([`crate::db::rejoin`]), back into the read pools once caught up; errant transactions keep
//!   it out of every pool for a human.
//!
//! The same decision runs from `rwproxy notify` ([`act`]) for sites that keep keepalived.

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rwproxy_admin::client::AdminClient;
use rwproxy_admin::{BackendRole, ControlPlane, HaStatusInfo};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::{self, DbTarget, Prober, Promoted, Rejoined, Replication, ServerStatus};
use crate::vrrp::state::NotifyKind;
use crate::vrrp::{Control, State, Status};
use mysql_async::prelude::Queryable;

/// `[ha.failover]`: the local database and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverConfig {
    /// The `[[ha.vrrp]]` instance whose transitions drive the actions; `None`: keepalived
    /// drives them through `rwproxy notify`.
    pub instance: Option<String>,
    /// `on_master = "promote"`.
    pub promote: bool,
    /// `on_backup = "rejoin"`.
    pub rejoin: bool,
    /// This node's database with the operator account; `address` spelled as the proxies'
    /// `[[backend]]` lists spell it.
    pub local: DbTarget,
    /// The other database servers (the proxy's `[[backend]]` addresses; the local one and the
    /// write VIP, which reach this server, are recognised by `server_id`): promotion asks them
    /// first and refuses if one has transactions the local server lacks.
    pub peers: Vec<String>,
    pub replication_user: String,
    pub replication_password: String,
    /// Where a rejoining database replicates from; `None`: the VRRP master's address with the
    /// local database's port.
    pub primary: Option<String>,
    pub drain_timeout: Duration,
    pub promote_anyway: bool,
    /// How often the database is probed and the proxies' read pools reconciled.
    pub interval: Duration,
    /// Read weight when this database is added back to a read pool.
    pub read_weight: u32,
    /// Other proxies to reconfigure, through their admin port.
    pub remote_proxies: Vec<RemoteProxy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteProxy {
    /// The admin port, `host:port`.
    pub address: String,
    pub user: String,
    pub password: String,
}

/// A proxy whose read pool follows this database's role.
#[derive(Clone)]
pub enum Proxy {
    /// This process.
    Local(Arc<dyn ControlPlane>),
    Remote(RemoteProxy),
}

/// What an action left the local database as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Writable primary.
    Primary(String),
    /// Replicating from the primary.
    Replica(String),
    /// Read-only, nothing else asked (FAULT, STOP, INIT, or no rejoin configured).
    ReadOnly,
    /// MASTER, but the drain failed: read-only, not promoted.
    Degraded(String),
    /// Errant transactions (or a similar conflict): read-only, out of every pool, for a human.
    Held(String),
    /// Could not act (a server unreachable); tried again on the next round.
    Failed(String),
}

impl Outcome {
    /// The `role` column: what the database should be now.
    fn role(&self) -> &'static str {
        match self {
            Outcome::Primary(_) => "primary",
            Outcome::Replica(_) => "replica",
            _ => "none",
        }
    }

    /// The `result` column.
    fn result(&self) -> String {
        match self {
            Outcome::Primary(s) | Outcome::Replica(s) => format!("ok: {s}"),
            Outcome::ReadOnly => "ok: read_only=ON".into(),
            Outcome::Degraded(s) => format!("degraded: {s}"),
            Outcome::Held(s) => format!("errant: {s}"),
            Outcome::Failed(s) => format!("error: {s}"),
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Degraded(_) | Outcome::Held(_) | Outcome::Failed(_)
        )
    }
}

/// The action a transition calls for.
pub fn action_name(cfg: &FailoverConfig, kind: NotifyKind) -> &'static str {
    match kind {
        NotifyKind::Master if cfg.promote => "promote",
        NotifyKind::Backup if cfg.rejoin => "rejoin",
        _ => "read_only",
    }
}

/// Runs the action for `kind`. `master` is the VRRP master's address, where a rejoining
/// database replicates from unless `primary` is configured.
pub async fn act(cfg: &FailoverConfig, kind: NotifyKind, master: Option<Ipv4Addr>) -> Outcome {
    match action_name(cfg, kind) {
        "promote" => match db::promote(
            &cfg.local,
            &cfg.peers,
            cfg.drain_timeout,
            cfg.promote_anyway,
        )
        .await
        {
            Ok(Promoted::AlreadyPrimary) => Outcome::Primary("read_only=OFF".into()),
            Ok(Promoted::Drained { applied, waited }) => Outcome::Primary(format!(
                "promoted after applying {} in {} ms",
                if applied.is_empty() { "-" } else { &applied },
                waited.as_millis()
            )),
            Ok(Promoted::Anyway { reason }) => {
                Outcome::Primary(format!("promoted anyway (promote_anyway): {reason}"))
            }
            Err(e) if e.is_drain_failure() => Outcome::Degraded(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        },
        "rejoin" => {
            let Some(primary) = primary_address(cfg, master) else {
                // Read-only now; where to replicate from is known once the master is heard.
                return match db::read_only(&cfg.local).await {
                    Ok(()) => Outcome::Failed(
                        "no primary known: the VRRP master was not heard yet (rwproxy notify needs [ha.failover] primary)".into(),
                    ),
                    Err(e) => Outcome::Failed(e.to_string()),
                };
            };
            let Some((host, port)) = primary.rsplit_once(':') else {
                return Outcome::Failed(format!("{primary}: not host:port"));
            };
            let Ok(port) = port.parse() else {
                return Outcome::Failed(format!("{primary}: not host:port"));
            };
            let repl = Replication {
                host: host.to_string(),
                port,
                user: cfg.replication_user.clone(),
                password: cfg.replication_password.clone(),
            };
            let primary_target = DbTarget {
                address: primary.clone(),
                ..cfg.local.clone()
            };
            match db::rejoin(&cfg.local, &primary_target, &repl).await {
                Ok(Rejoined::AlreadyReplicating) => {
                    Outcome::Replica(format!("replicating from {primary}"))
                }
                Ok(Rejoined::Started { from }) => Outcome::Replica(format!(
                    "replicating from {primary} after {}",
                    if from.is_empty() { "-" } else { &from }
                )),
                Err(e) if e.needs_human() => Outcome::Held(e.to_string()),
                Err(e) => Outcome::Failed(e.to_string()),
            }
        }
        _ => match db::read_only(&cfg.local).await {
            Ok(()) => Outcome::ReadOnly,
            Err(e) => Outcome::Failed(e.to_string()),
        },
    }
}

fn primary_address(cfg: &FailoverConfig, master: Option<Ipv4Addr>) -> Option<String> {
    if let Some(p) = &cfg.primary {
        return Some(p.clone());
    }
    let port = cfg.local.address.rsplit_once(':')?.1;
    master.map(|m| format!("{m}:{port}"))
}

/// Whether the local database belongs in the read pools: `None` leaves them as they are.
/// A replica goes back only once caught up, so a stale replica never serves reads.
pub fn wanted_in_read_pool(outcome: &Outcome, probe: Option<&ServerStatus>) -> Option<bool> {
    match outcome {
        Outcome::Primary(_) | Outcome::Held(_) | Outcome::Degraded(_) => Some(false),
        Outcome::Replica(_) => probe
            .and_then(|s| s.replica.as_ref())
            .filter(|r| r.health(Some(Duration::ZERO)).is_healthy())
            .map(|_| true),
        Outcome::ReadOnly | Outcome::Failed(_) => None,
    }
}

impl Proxy {
    /// Adds `address` to, or removes it from, the proxy's read backends. Returns whether
    /// anything changed.
    pub async fn set_reader(
        &self,
        address: &str,
        present: bool,
        weight: u32,
        timeout: Duration,
    ) -> Result<bool, String> {
        match self {
            Proxy::Local(cp) => {
                let found = cp
                    .backends()
                    .into_iter()
                    .find(|b| b.role == BackendRole::ReadOnly && b.address == address);
                match (found, present) {
                    (None, true) => cp
                        .add_backend(address, BackendRole::ReadOnly, weight)
                        .map(|_| true)
                        .map_err(|e| e.to_string()),
                    // By address: an index read above may be stale by now.
                    (Some(_), false) => cp
                        .remove_reader(address)
                        .map(|_| true)
                        .map_err(|e| e.to_string()),
                    _ => Ok(false),
                }
            }
            Proxy::Remote(r) => {
                let work = async {
                    let (host, port) = r
                        .address
                        .rsplit_once(':')
                        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                        .ok_or_else(|| format!("{}: not host:port", r.address))?;
                    let mut c = AdminClient::connect(host, port, &r.user, &r.password)
                        .await
                        .map_err(|e| e.to_string())?;
                    let found = c
                        .backends()
                        .await
                        .map_err(|e| e.to_string())?
                        .into_iter()
                        .find(|b| b.role == BackendRole::ReadOnly && b.address == address);
                    let changed = match (found, present) {
                        (None, true) => c.add_slave(address, weight).await.map(|_| true),
                        (Some(_), false) => c.remove_slave(address).await.map(|_| true),
                        _ => Ok(false),
                    }
                    .map_err(|e| e.to_string())?;
                    let _ = c.disconnect().await;
                    Ok(changed)
                };
                match tokio::time::timeout(timeout, work).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("{}: no answer within {timeout:?}", r.address)),
                }
            }
        }
    }

    fn name(&self) -> String {
        match self {
            Proxy::Local(_) => "this proxy".into(),
            Proxy::Remote(r) => format!("proxy {}", r.address),
        }
    }
}

/// Keeps one proxy's read pool in line with `wanted`, retrying every `interval` (a proxy that
/// restarts with its config file gets corrected again).
fn spawn_read_pool_sync(
    proxy: Proxy,
    address: String,
    weight: u32,
    interval: Duration,
    mut wanted: watch::Receiver<Option<bool>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_error = None;
        loop {
            let want = *wanted.borrow_and_update();
            if let Some(present) = want {
                match proxy
                    .set_reader(
                        &address,
                        present,
                        weight,
                        interval.max(Duration::from_secs(1)),
                    )
                    .await
                {
                    Ok(true) => tracing::info!(
                        backend = %address,
                        "{}: {} the read pool",
                        proxy.name(),
                        if present { "added to" } else { "removed from" }
                    ),
                    Ok(false) => last_error = None,
                    Err(e) => {
                        if last_error.as_ref() != Some(&e) {
                            tracing::warn!("{}: cannot update the read pool: {e}", proxy.name());
                        }
                        last_error = Some(e);
                    }
                }
            }
            tokio::select! {
                r = wanted.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(interval) => {}
            }
        }
    })
}

/// The initial `ha_status` row.
pub fn initial_status(cfg: &FailoverConfig) -> HaStatusInfo {
    HaStatusInfo {
        instance: cfg.instance.clone().unwrap_or_default(),
        vrrp_state: State::Initialize.keepalived_name().into(),
        role: "none".into(),
        db_role: "unknown".into(),
        replication: String::new(),
        last_action: None,
        result: None,
        duration_ms: None,
    }
}

fn describe(probe: &Result<ServerStatus, db::DbError>) -> (String, String) {
    match probe {
        Err(e) => ("unreachable".into(), e.to_string()),
        Ok(s) => match &s.replica {
            Some(r) => {
                let health = r.health(None);
                let text = match (health.is_healthy(), r.seconds_behind) {
                    (true, Some(lag)) => format!("{health}, {lag} s behind"),
                    _ => health.to_string(),
                };
                ("replica".into(), text)
            }
            None if !s.read_only => ("primary".into(), String::new()),
            None => ("read-only".into(), String::new()),
        },
    }
}

/// A planned switchover, on the primary: `read_only=ON` (writes wait in the proxies), wait
/// until every connected replica was sent the whole binlog, then give the VIP up; the replica
/// that takes it drains what it received and promotes, and this node rejoins it as BACKUP.
async fn switchover(
    cfg: &FailoverConfig,
    vrrp: &tokio::sync::mpsc::UnboundedSender<Control>,
) -> Result<String, String> {
    let mut conn = db::connect(&cfg.local).await.map_err(|e| e.to_string())?;
    let sql_err = |e: mysql_async::Error| format!("{}: {e}", cfg.local.address);
    // The plain statement, which waits for commits in progress: their replicas are connected
    // and acknowledge them (killing them, as `read_only` does for a partition, would fail
    // writes that did commit).
    conn.query_drop("SET GLOBAL read_only = ON")
        .await
        .map_err(sql_err)?;
    let start = Instant::now();
    loop {
        // The binlog dump threads' state says when everything was sent.
        let (threads, done): (u64, u64) = conn
            .query_first(
                "SELECT COUNT(*), COALESCE(SUM(STATE LIKE 'Master has sent all binlog%'), 0) \
                 FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'",
            )
            .await
            .map_err(sql_err)?
            .unwrap_or_default();
        if threads > 0 && done == threads {
            break;
        }
        if start.elapsed() > cfg.drain_timeout {
            conn.query_drop("SET GLOBAL read_only = OFF")
                .await
                .map_err(sql_err)?;
            return Err(if threads == 0 {
                "no replica connected: nothing to switch over to; still primary".into()
            } else {
                format!(
                    "replicas not sent everything within {:?}; still primary",
                    cfg.drain_timeout
                )
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    vrrp.send(Control::Resign)
        .map_err(|_| "the VRRP instance is not running".to_string())?;
    Ok(format!(
        "read-only, replicas sent everything in {} ms, VIP released",
        start.elapsed().as_millis()
    ))
}

/// Runs the actions for `vrrp`'s transitions until `shutdown`, publishing `ha_status` rows on
/// `status`; `requests` are admin SWITCHOVERs, carried out through `resign`. On shutdown the
/// local database is set read-only: the VIP is leaving this node.
#[allow(clippy::too_many_arguments)]
pub fn spawn<F>(
    cfg: FailoverConfig,
    mut vrrp: watch::Receiver<Status>,
    resign: tokio::sync::mpsc::UnboundedSender<Control>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<()>,
    proxies: Vec<Proxy>,
    status: watch::Sender<HaStatusInfo>,
    shutdown: F,
) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let instance = cfg.instance.clone().unwrap_or_default();
    tokio::spawn(async move {
        let (wanted_tx, wanted_rx) = watch::channel(None);
        let syncs: Vec<JoinHandle<()>> = proxies
            .into_iter()
            .map(|p| {
                spawn_read_pool_sync(
                    p,
                    cfg.local.address.clone(),
                    cfg.read_weight,
                    cfg.interval,
                    wanted_rx.clone(),
                )
            })
            .collect();
        let mut prober = Prober::new(cfg.local.clone());
        // The state acted on, with the master a BACKUP replicates from: when the VIP moves
        // on to another node (a third node's view of a second failover), it follows.
        let mut seen: Option<(State, Option<Ipv4Addr>)> = None;
        let mut outcome: Option<Outcome> = None;
        tokio::pin!(shutdown);
        loop {
            let st = vrrp.borrow_and_update().clone();
            let acting_on = (st.state, st.master.filter(|_| st.state == State::Backup));
            if seen != Some(acting_on) {
                seen = Some(acting_on);
                outcome = None;
            }
            let kind = match st.state {
                State::Master => NotifyKind::Master,
                State::Backup => NotifyKind::Backup,
                State::Fault => NotifyKind::Fault,
                State::Initialize => NotifyKind::Stop,
            };
            let retry = matches!(outcome, None | Some(Outcome::Failed(_)));
            if retry {
                let action = action_name(&cfg, kind);
                let t = Instant::now();
                let o = act(&cfg, kind, st.master).await;
                let ms = t.elapsed().as_millis() as u64;
                let row = o.result();
                match &o {
                    Outcome::Failed(_) => {
                        tracing::debug!(instance = %instance, action, "{row}")
                    }
                    o if o.is_failure() => {
                        tracing::error!(instance = %instance, action, duration_ms = ms, "{row}")
                    }
                    _ => {
                        tracing::info!(instance = %instance, action, duration_ms = ms, "{row}")
                    }
                }
                // A retry that fails again is not news; the first attempt's row stays.
                if !(matches!(o, Outcome::Failed(_)) && outcome.is_some()) {
                    status.send_modify(|s| {
                        s.last_action = Some(action.to_string());
                        s.result = Some(row);
                        s.duration_ms = Some(ms);
                    });
                }
                outcome = Some(o);
            }
            let probe = prober.probe().await;
            if let Ok(p) = &probe {
                if st.state != State::Master && !p.read_only {
                    tracing::warn!(instance = %instance, "database writable while {}: setting read_only=ON", st.state.keepalived_name());
                    if let Err(e) = db::read_only(&cfg.local).await {
                        tracing::error!(instance = %instance, "cannot set read_only=ON: {e}");
                    }
                }
            }
            if let Some(o) = &outcome {
                let want = wanted_in_read_pool(o, probe.as_ref().ok());
                if want.is_some() {
                    wanted_tx.send_if_modified(|w| std::mem::replace(w, want) != want);
                }
            }
            let (db_role, replication) = describe(&probe);
            status.send_modify(|s| {
                s.vrrp_state = st.state.keepalived_name().into();
                s.role = outcome.as_ref().map_or("none", Outcome::role).into();
                s.db_role = db_role;
                s.replication = replication;
            });
            tokio::select! {
                _ = vrrp.changed() => {}
                _ = tokio::time::sleep(cfg.interval) => {}
                Some(()) = requests.recv() => {
                    let t = Instant::now();
                    let result = if st.state == State::Master
                        && matches!(outcome, Some(Outcome::Primary(_)))
                    {
                        switchover(&cfg, &resign).await
                    } else {
                        Err("this node is not the primary".into())
                    };
                    let row = match result {
                        Ok(s) => format!("ok: {s}"),
                        Err(e) => format!("error: {e}"),
                    };
                    tracing::info!(instance = %instance, "switchover: {row}");
                    status.send_modify(|s| {
                        s.last_action = Some("switchover".into());
                        s.result = Some(row);
                        s.duration_ms = Some(t.elapsed().as_millis() as u64);
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        for s in syncs {
            s.abort();
        }
        match db::read_only(&cfg.local).await {
            Ok(()) => {
                tracing::info!(instance = %instance, "stopping: database set read_only=ON")
            }
            Err(e) => {
                tracing::warn!(instance = %instance, "stopping: cannot set read_only=ON: {e}")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{IoThread, ReplicaStatus};

    fn cfg() -> FailoverConfig {
        FailoverConfig {
            instance: Some("VI_1".into()),
            promote: true,
            rejoin: true,
            local: DbTarget {
                address: "192.0.2.11:3306".into(),
                user: "ha".into(),
                password: String::new(),
                timeout: Duration::from_secs(1),
            },
            peers: Vec::new(),
            replication_user: "repl".into(),
            replication_password: String::new(),
            primary: None,
            drain_timeout: Duration::from_secs(30),
            promote_anyway: false,
            interval: Duration::from_secs(1),
            read_weight: 1,
            remote_proxies: Vec::new(),
        }
    }

    #[test]
    fn transitions_choose_actions() {
        let mut c = cfg();
        assert_eq!(action_name(&c, NotifyKind::Master), "promote");
        assert_eq!(action_name(&c, NotifyKind::Backup), "rejoin");
        assert_eq!(action_name(&c, NotifyKind::Fault), "read_only");
        assert_eq!(action_name(&c, NotifyKind::Stop), "read_only");
        c.promote = false;
        c.rejoin = false;
        assert_eq!(action_name(&c, NotifyKind::Master), "read_only");
        assert_eq!(action_name(&c, NotifyKind::Backup), "read_only");
    }

    #[test]
    fn primary_is_the_vrrp_master_unless_configured() {
        let mut c = cfg();
        assert_eq!(primary_address(&c, None), None);
        assert_eq!(
            primary_address(&c, Some(Ipv4Addr::new(192, 0, 2, 12))).as_deref(),
            Some("192.0.2.12:3306")
        );
        c.primary = Some("db-primary:3307".into());
        assert_eq!(
            primary_address(&c, Some(Ipv4Addr::new(192, 0, 2, 12))).as_deref(),
            Some("db-primary:3307")
        );
    }

    fn replica(lag: Option<u64>, sql: bool) -> ServerStatus {
        ServerStatus {
            read_only: true,
            server_id: 1,
            max_allowed_packet: 16 << 20,
            wait_timeout: 28_800,
            replica: Some(ReplicaStatus {
                primary_host: "192.0.2.12".into(),
                primary_port: 3306,
                io_thread: IoThread::Running,
                sql_running: sql,
                seconds_behind: lag,
                last_io_error: String::new(),
                last_sql_error: String::new(),
                last_sql_errno: 0,
                gtid_io_pos: String::new(),
            }),
        }
    }

    #[test]
    fn read_pool_membership() {
        let rep = Outcome::Replica("x".into());
        assert_eq!(
            wanted_in_read_pool(&rep, Some(&replica(Some(0), true))),
            Some(true)
        );
        // Behind, stopped or unknown: not yet, and not removed either (the monitor's call).
        assert_eq!(
            wanted_in_read_pool(&rep, Some(&replica(Some(3), true))),
            None
        );
        assert_eq!(
            wanted_in_read_pool(&rep, Some(&replica(Some(0), false))),
            None
        );
        assert_eq!(wanted_in_read_pool(&rep, None), None);
        for out in [
            Outcome::Primary("x".into()),
            Outcome::Held("errant".into()),
            Outcome::Degraded("drain".into()),
        ] {
            assert_eq!(wanted_in_read_pool(&out, None), Some(false), "{out:?}");
        }
        assert_eq!(wanted_in_read_pool(&Outcome::ReadOnly, None), None);
        assert_eq!(
            wanted_in_read_pool(&Outcome::Failed("x".into()), None),
            None
        );
    }

    #[test]
    fn status_words() {
        assert_eq!(Outcome::Held("0-1-7".into()).result(), "errant: 0-1-7");
        assert_eq!(Outcome::Held("x".into()).role(), "none");
        assert_eq!(Outcome::Primary("x".into()).role(), "primary");
        assert!(Outcome::Degraded("x".into()).is_failure());
        assert!(!Outcome::ReadOnly.is_failure());
    }
}
