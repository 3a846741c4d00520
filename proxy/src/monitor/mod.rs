//! The health monitor: probes every backend on an interval and moves it in and out of
//! service — `auto_maintain_atlas.sh` and keepalived's `check_slave.sh`, built in.
//!
//! Each backend gets its own task (a slow server delays only its own probes) that ends when
//! the backend leaves the cluster. With monitor credentials a probe is a real login, ping,
//! `@@read_only` and the replication status; without them, that the server greets and takes
//! a login (see `answers`).

mod damper;

pub use damper::{Damper, Finding};

use crate::backend::conn::BackendError;
use crate::backend::{Backend, Health};
use crate::cluster::Cluster;
use crate::config::{MonitorConfig, Role};
use rwproxy_ha::db::{DbTarget, IoThread, Prober, ReplicaHealth, ServerStatus};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// The running monitor, until [`Monitors::stop`]. Dropping it leaves the monitor running.
pub struct Monitors {
    stop: tokio::sync::watch::Sender<bool>,
    /// Held by every backend's watch while it runs.
    live: Arc<()>,
}

impl Monitors {
    /// Ends every watch, its probe connection closed in order (`COM_QUIT`): a server counts
    /// a connection closed without it as an aborted client and logs a warning, on every
    /// restart of the proxy. Waits for that, a second at most.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while Arc::strong_count(&self.live) > 1 && std::time::Instant::now() < deadline {
            crate::timer::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Resolves once `stop` says so (never, if its sender is gone without saying it).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Starts watching every backend of `cluster`, including ones added later. `packet_limit`
/// is the proxy's `max-allowed-packet`, compared with each server's.
pub fn spawn(cluster: &Arc<Cluster>, cfg: MonitorConfig, packet_limit: usize) -> Monitors {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let live = Arc::new(());
    let handle = Monitors {
        stop,
        live: live.clone(),
    };
    if cfg.user.is_none() {
        tracing::warn!("no [monitor] user configured: a backend is only checked to greet and take a login (as the [[user]] first by name); read_only and replication are not watched");
    }
    let me = Arc::downgrade(cluster);
    tokio::spawn(async move {
        let mut watched: Vec<Weak<Backend>> = Vec::new();
        let mut tick = crate::timer::interval(cfg.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut stop = stopping.clone();
        // Only while spawning: `Monitors::stop` waits for the watches it counts.
        let live = Arc::downgrade(&live);
        loop {
            let Some(cluster) = me.upgrade() else { return };
            let Some(live) = live.upgrade() else { return };
            watched.retain(|w| w.strong_count() > 0);
            for b in cluster.backends().iter() {
                if !watched.iter().any(|w| w.as_ptr() == Arc::as_ptr(b)) {
                    watched.push(Arc::downgrade(b));
                    tokio::spawn(watch(
                        me.clone(),
                        Arc::downgrade(b),
                        cfg.clone(),
                        packet_limit,
                        (stopping.clone(), live.clone()),
                    ));
                }
            }
            drop((cluster, live));
            tokio::select! {
                _ = tick.tick() => {}
                () = stopped(&mut stop) => return,
            }
        }
    });
    handle
}

/// How long a probe that gets no answer is kept waiting (see `watch`). Past it the
/// connection closes, which a server that runs again counts as one aborted handshake.
const LINGER: Duration = Duration::from_secs(600);

/// A probe on its way, across ticks.
type InFlight = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>;

/// What a probe came back with.
enum Outcome {
    /// With the monitor's account (its prober comes back with it).
    Account(Prober, Result<ServerStatus, rwproxy_ha::db::DbError>),
    /// Without one (see `answers`).
    NoAccount(std::io::Result<(Finding, Option<String>)>),
    /// The same, while the monitor's account is refused.
    Liveness(std::io::Result<(Finding, Option<String>)>),
    /// Nothing yet, within the monitor's `timeout`.
    Silent,
}

/// Probes of a write backend per monitor login.
const FRESH_LOGIN_EVERY: u32 = 10;

/// How often a server that refused the monitor's login is probed.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// Probes one backend until it leaves the cluster.
async fn watch(
    cluster: Weak<Cluster>,
    backend: Weak<Backend>,
    cfg: MonitorConfig,
    packet_limit: usize,
    (mut stopping, _live): (tokio::sync::watch::Receiver<bool>, Arc<()>),
) {
    let Some((address, role)) = backend.upgrade().map(|b| (b.address.clone(), b.role)) else {
        return;
    };
    // Its own deadline is `LINGER`; the monitor's `timeout` is applied here, around it.
    let mut prober = cfg.user.as_ref().map(|(user, password)| {
        let p = Prober::new(DbTarget {
            address: address.clone(),
            user: user.clone(),
            password: password.clone(),
            timeout: LINGER.max(cfg.timeout),
        });
        // To see another server answer at a write backend's address (see `server_id`).
        match role {
            Role::ReadWrite => p.fresh_login_every(FRESH_LOGIN_EVERY),
            Role::ReadOnly => p,
        }
    });
    // A probe that got no answer within `timeout` is kept and waited on again at the next
    // tick rather than dropped and started over: a server that hangs keeps each connection
    // it has not greeted in its backlog, and when it runs again greets them all, and counts
    // each one closed by then as an aborted handshake against the proxy's host (see
    // `Cluster::greet`): a probe a second would get the host blocked after a hang of
    // `max_connect_errors` seconds.
    let mut in_flight: Option<InFlight> = None;
    // The server answers the monitor but refuses its queries (said once).
    let mut logged_unqueried = false;
    let mut damper = Damper::new(cfg.rise, cfg.fall);
    // When the probe's login was last refused (see `REFUSED_RETRY`).
    let mut refused_at: Option<std::time::Instant> = None;
    // The last probe failed for want of descriptors here: said once, until one gets through.
    let mut shortage = false;
    // The server's `max_allowed_packet` last warned about: said once per value.
    let mut warned_limit = None;
    // The `server_id` the last probe found behind the address.
    let mut server_id = None;
    let mut tick = crate::timer::interval(cfg.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(&mut stopping) => {
                if let Some(p) = prober.as_mut() {
                    p.close().await;
                }
                return;
            }
        }
        // A refused login, every second, fills the server's log with access denials (and
        // may lock the account, `max_password_errors`): it is tried once a minute. Without
        // a monitor account nothing else is tried meanwhile; with one, the probe meanwhile
        // only checks the server answers, by the login without an account.
        let backing_off = refused_at.is_some_and(|t| t.elapsed() < REFUSED_RETRY);
        if backing_off && prober.is_none() && in_flight.is_none() {
            continue;
        }
        let (Some(live), Some(b)) = (cluster.upgrade(), backend.upgrade()) else {
            return;
        };
        if !live.backends().iter().any(|x| Arc::ptr_eq(x, &b)) {
            tracing::debug!(backend = %address, "backend left the cluster; monitor stops");
            return;
        }
        drop(live);
        let probe = in_flight.get_or_insert_with(|| match prober.take() {
            Some(mut p) if !backing_off => Box::pin(async move {
                let r = p.probe().await;
                Outcome::Account(p, r)
            }),
            kept => {
                let liveness = kept.is_some();
                prober = kept;
                let (cluster, address) = (cluster.clone(), address.clone());
                Box::pin(async move {
                    let r =
                        probe_without_account(&cluster, &address, LINGER.max(cfg.timeout)).await;
                    match liveness {
                        true => Outcome::Liveness(r),
                        false => Outcome::NoAccount(r),
                    }
                })
            }
        });
        let outcome = match crate::timer::timeout(cfg.timeout, probe.as_mut()).await {
            Ok(outcome) => {
                in_flight = None;
                outcome
            }
            Err(_) => Outcome::Silent,
        };
        let finding = match outcome {
            Outcome::Silent => {
                Finding::Unreachable(format!("{address}: no answer within {:?}", cfg.timeout))
            }
            Outcome::Account(p, result) => {
                prober = Some(p);
                match result {
                    Ok(status) => {
                        refused_at = None;
                        let limit = status.max_allowed_packet;
                        if warned_limit != Some(limit) {
                            if let Some(w) = packet_limit_warning(limit, packet_limit) {
                                tracing::warn!(backend = %address, "{w}");
                            }
                            warned_limit = Some(limit);
                        }
                        // Write backends only: a read address may be a balancer over replicas
                        // (the read VIP), where each login may reach another of them, and a
                        // stale read connection writes nothing anywhere.
                        let moved = server_id.filter(|id| *id != status.server_id);
                        if let Some(old) = moved.filter(|_| role == Role::ReadWrite) {
                            tracing::warn!(backend = %address, "another server answers at this address now (server_id {old}, now {}): pooled connections to the old one are closed", status.server_id);
                            b.pool.retire_all();
                        }
                        server_id = Some(status.server_id);
                        b.pool.set_server_wait_timeout(status.wait_timeout);
                        let lag = status.replica.as_ref().and_then(|r| r.seconds_behind);
                        b.observe(Some(status.read_only), lag);
                        let primary = cluster.upgrade().and_then(|c| c.write_backend());
                        let mut primary_serves = primary.as_ref().is_some_and(|w| w.serves());
                        let io_connecting = status
                            .replica
                            .as_ref()
                            .is_some_and(|r| r.io_thread == IoThread::Connecting);
                        if let Some(w) = primary.filter(|_| primary_serves && io_connecting) {
                            // A replica may find its primary gone before the primary's own probe
                            // does: ask the primary now, rather than take the replica out for
                            // the primary's failure.
                            primary_serves = matches!(
                                probe_without_account(&cluster, &w.address, cfg.timeout).await,
                                Ok((Finding::Good, _))
                            );
                        }
                        // Out already (behind, or cut off), or down: not known to be current.
                        let excluded = matches!(b.health(), Health::Excluded | Health::Down);
                        judge(b.role, &status, &cfg, primary_serves, excluded)
                    }
                    Err(e) if e.server_answered() => {
                        // The server answered: it is up; the monitor's account is the problem,
                        // which must not take healthy servers out of service, nor bring back
                        // ones it can no longer check.
                        let refusal = e.server_code().is_some_and(refuses_login);
                        if refusal && refused_at.is_none() {
                            tracing::error!(backend = %address, "monitor cannot log in, so read_only and replication are not checked (its login is tried once a minute; meanwhile only that the server answers): {e}");
                        } else if !refusal && !logged_unqueried {
                            tracing::error!(backend = %address, "monitor cannot query the server, so read_only and replication are not checked: {e}");
                        }
                        logged_unqueried = !refusal;
                        if refusal {
                            refused_at = Some(std::time::Instant::now());
                        }
                        b.observe(None, None);
                        Finding::Answered
                    }
                    Err(e) if e.is_local_shortage() => {
                        short_of_descriptors(&address, &mut shortage, &e.to_string());
                        continue;
                    }
                    Err(e) => Finding::Unreachable(e.to_string()),
                }
            }
            Outcome::Liveness(result) | Outcome::NoAccount(result)
                if result
                    .as_ref()
                    .is_err_and(rwproxy_ha::db::is_local_shortage) =>
            {
                short_of_descriptors(&address, &mut shortage, "out of file descriptors");
                continue;
            }
            // The monitor's account is refused: the server answers, nothing more is known.
            Outcome::Liveness(result) => match result {
                Ok((Finding::Good, _)) => Finding::Answered,
                Ok((finding, _)) => finding,
                Err(e) => Finding::Unreachable(format!("{address}: {e}")),
            },
            Outcome::NoAccount(result) => match result {
                Err(e) => Finding::Unreachable(format!("{address}: {e}")),
                Ok((finding, None)) => {
                    refused_at = None;
                    finding
                }
                Ok((finding, Some(why))) => {
                    if refused_at.is_none() {
                        tracing::error!(backend = %address, "the server refused the application user's login that probes it (no [monitor] account is configured), so it is probed only once a minute until it takes one: {why}");
                    }
                    refused_at = Some(std::time::Instant::now());
                    finding
                }
            },
        };
        shortage = false;
        if let Some((to, why)) = damper.next(b.health(), &finding) {
            b.transition(to, why);
        }
        b.set_silent(damper.silent());
    }
}

/// Replicas must be replicating and caught up to serve reads; a write backend only has to
/// answer (`read_only` is handled at write time, see `Backend::read_only`). A read-only
/// server that replicates from nowhere (`RESET SLAVE ALL`, or a named multi-source
/// connection the probe does not read) falls behind unseen: it is out too. A writable one
/// listed for reads is a primary taking reads, which is up to date.
///
/// Except when the primary is down (`primary_serves` false) and the replica's IO thread is
/// only trying to reach it (its SQL thread still applying): the replica then holds everything
/// the primary sent, and taking every replica out would fail the reads as well as the writes.
/// Not one already out (`excluded`) when the primary went: it was behind, or its IO thread
/// could not reach the primary even then, and it has not caught up since.
fn judge(
    role: Role,
    status: &ServerStatus,
    cfg: &MonitorConfig,
    primary_serves: bool,
    excluded: bool,
) -> Finding {
    match (role, &status.replica) {
        (Role::ReadOnly, Some(r)) => match r.health(cfg.max_replication_lag) {
            h if h.is_healthy() => Finding::Good,
            ReplicaHealth::IoConnecting(_) if !primary_serves && r.sql_running && !excluded => {
                Finding::Good
            }
            h => Finding::Unfit(h.to_string()),
        },
        (Role::ReadOnly, None) if status.read_only => {
            Finding::Unfit("read-only but not replicating (SHOW REPLICA STATUS is empty)".into())
        }
        _ => Finding::Good,
    }
}

/// What to tell the DBA when a server takes longer commands than the proxy passes on: those
/// fail at the proxy (1153) but not when sent to the server directly. Servers often have
/// `max_allowed_packet` raised for BLOBs; the proxy's bound is its own (the memory one
/// command may take), set apart. The other way round needs no word: the server refuses
/// what is too long for it, and its error reaches the client.
fn packet_limit_warning(server: u64, proxy: usize) -> Option<String> {
    (server > proxy as u64).then(|| {
        format!(
            "the server takes commands of up to {server} bytes (its max_allowed_packet) but the proxy refuses them from {proxy} bytes (max-allowed-packet): longer ones fail with error 1153 through the proxy only; set max-allowed-packet = {server} in the proxy's config file to pass them"
        )
    })
}

/// The probe without a monitor account: the server must greet within `timeout` (a hung
/// server's kernel still takes the TCP connection, but the server says nothing) and take a
/// login, which `Cluster::greet` ends as a client does. A server that refused the login, or
/// failed it after greeting, answered: it is up, and the refusal comes back to be said.
/// `Err`: the connect failed with this error.
async fn answers(
    cluster: &Cluster,
    address: &str,
    timeout: Duration,
) -> std::io::Result<(Finding, Option<String>)> {
    let (version, login) = cluster.greet(address, timeout).await;
    let unreachable = match login {
        Ok(()) => return Ok((Finding::Good, None)),
        Err(BackendError::Connect { source, .. }) => return Err(source),
        Err(BackendError::ConnectTimeout { .. }) => match version {
            None => format!("{address}: no greeting within {timeout:?}"),
            Some(_) => format!("{address}: greeted but took no login within {timeout:?}"),
        },
        // In place of a greeting too: 1040 at `max_connections`, a blocked host.
        Err(BackendError::Login { error, .. }) => {
            let refusal = refuses_login(error.code).then(|| error.to_string());
            return Ok((Finding::Good, refusal));
        }
        Err(_) if version.is_some() => return Ok((Finding::Good, None)),
        Err(e) => format!("{address}: {e}"),
    };
    Ok((Finding::Unreachable(unreachable), None))
}

/// Server errors that refuse a login as such (who, from where), which trying again every
/// second only repeats: access denied (1044, 1045, 1698), a blocked or unknown host (1129,
/// 1130), a locked account (MariaDB 4151, MySQL 3118), an authentication plugin the proxy
/// does not speak (1251, its own).
fn refuses_login(code: u16) -> bool {
    matches!(code, 1044 | 1045 | 1698 | 1129 | 1130 | 1251 | 3118 | 4151)
}

async fn probe_without_account(
    cluster: &Weak<Cluster>,
    address: &str,
    timeout: Duration,
) -> std::io::Result<(Finding, Option<String>)> {
    match cluster.upgrade() {
        Some(c) => answers(&c, address, timeout).await,
        // The proxy is stopping.
        None => Ok((Finding::Good, None)),
    }
}

/// A probe that failed for want of descriptors here says nothing about the backend: it is
/// skipped, and logged once until probes get through again.
fn short_of_descriptors(address: &str, logged: &mut bool, e: &str) {
    if !std::mem::replace(logged, true) {
        tracing::warn!(backend = %address, "monitor probe skipped: this process is out of descriptors or memory ({e}); the backend's state is kept");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rwproxy_ha::db::ReplicaStatus;

    fn replica(io_thread: IoThread, sql_running: bool) -> ServerStatus {
        ServerStatus {
            read_only: true,
            server_id: 2,
            max_allowed_packet: 16 << 20,
            wait_timeout: 28_800,
            replica: Some(ReplicaStatus {
                primary_host: "10.0.0.1".into(),
                primary_port: 3306,
                io_thread,
                sql_running,
                seconds_behind: None,
                last_io_error: "error connecting to master".into(),
                last_sql_error: String::new(),
                last_sql_errno: 0,
                gtid_io_pos: String::new(),
            }),
        }
    }

    #[test]
    fn a_server_taking_longer_commands_than_the_proxy_is_pointed_out() {
        let w = packet_limit_warning(256 << 20, 64 << 20).unwrap();
        assert!(w.contains("268435456") && w.contains("67108864"), "{w}");
        assert!(w.contains("max-allowed-packet = 268435456"), "{w}");
        assert_eq!(packet_limit_warning(64 << 20, 64 << 20), None);
        assert_eq!(packet_limit_warning(16 << 20, 64 << 20), None);
    }

    #[test]
    fn a_replica_that_cannot_reach_a_dead_primary_keeps_serving_reads() {
        let cfg = MonitorConfig::default();
        let connecting = replica(IoThread::Connecting, true);
        assert_eq!(
            judge(Role::ReadOnly, &connecting, &cfg, false, false),
            Finding::Good
        );
        // Unless it was out already (behind, or cut off from the primary before it died).
        assert!(matches!(
            judge(Role::ReadOnly, &connecting, &cfg, false, true),
            Finding::Unfit(_)
        ));
        // The primary is fine, so the replica's own link is broken: out.
        assert!(matches!(
            judge(Role::ReadOnly, &connecting, &cfg, true, false),
            Finding::Unfit(_)
        ));
        // Not applying what it has either, or replication stopped on purpose: out.
        for status in [
            replica(IoThread::Connecting, false),
            replica(IoThread::Stopped, true),
        ] {
            assert!(matches!(
                judge(Role::ReadOnly, &status, &cfg, false, false),
                Finding::Unfit(_)
            ));
        }
    }

    #[test]
    fn a_read_only_server_that_replicates_from_nowhere_serves_no_reads() {
        let cfg = MonitorConfig::default();
        let mut status = replica(IoThread::Running, true);
        status.replica = None;
        status.read_only = true;
        assert!(matches!(
            judge(Role::ReadOnly, &status, &cfg, true, false),
            Finding::Unfit(_)
        ));
        // A writable one is a primary listed for reads; the write backend only has to answer.
        assert_eq!(
            judge(Role::ReadWrite, &status, &cfg, true, false),
            Finding::Good
        );
        status.read_only = false;
        assert_eq!(
            judge(Role::ReadOnly, &status, &cfg, true, false),
            Finding::Good
        );
    }
}
