//! The `rwproxy` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rwproxy::cluster::Cluster;
use rwproxy::console::control::ProxyControl;
use rwproxy::event_threads::EventThreads;
use rwproxy::{config, process};
use rwproxy_ha::vrrp::state::NotifyKind;
use rwproxy_ha::{failover, vrrp};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "rwproxy",
    version,
    about = "MySQL/MariaDB read/write-splitting proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (and whatever else the config enables).
    Serve {
        /// rwproxy TOML or Atlas .cnf file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Check a config file and print what it configures.
    CheckConfig {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Encrypt a password the way Atlas's `encrypt` does, for `pwds` / `ADD ENPWD`.
    Encrypt { password: String },
    /// A keepalived `notify` hook: `rwproxy notify [-c CONFIG] INSTANCE|GROUP NAME STATE
    /// PRIORITY`, the words keepalived (and rwproxy's own VRRP) append to the configured
    /// command. With a config holding `[ha.failover]` it runs the failover actions: promote on
    /// MASTER, read-only and rejoin on BACKUP, read-only on FAULT and STOP.
    Notify {
        /// rwproxy TOML with an `[ha.failover]` section; without it the call is only logged.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// `INSTANCE` or `GROUP`.
        kind: String,
        name: String,
        /// `MASTER`, `BACKUP`, `FAULT` or `STOP`.
        state: String,
        priority: u8,
    },
    /// The kernel's IPVS table (the read VIP's director), printed like `ipvsadm -Ln`.
    Ipvs {
        #[command(subcommand)]
        command: IpvsCommand,
    },
}

#[derive(Subcommand)]
enum IpvsCommand {
    /// Virtual services and their real servers (`ipvsadm -Ln`).
    List {
        /// Traffic counters instead of weights and connections (`ipvsadm -Ln --stats`).
        #[arg(long)]
        stats: bool,
    },
}

fn main() -> ExitCode {
    process::take_supervision();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rwproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Encrypt { password } => {
            println!("{}", config::atlas_encrypt(&password));
            Ok(ExitCode::SUCCESS)
        }
        Command::Notify {
            config,
            kind,
            name,
            state,
            priority,
        } => {
            if !matches!(kind.as_str(), "INSTANCE" | "GROUP") {
                anyhow::bail!("notify: '{kind}' is not INSTANCE or GROUP");
            }
            let transition = match state.as_str() {
                "MASTER" => NotifyKind::Master,
                "BACKUP" => NotifyKind::Backup,
                "FAULT" => NotifyKind::Fault,
                "STOP" => NotifyKind::Stop,
                _ => anyhow::bail!("notify: '{state}' is not MASTER, BACKUP, FAULT or STOP"),
            };
            // keepalived logs hooks' stderr; this is the record of the transition.
            eprintln!("rwproxy notify: {kind} {name} is now {state} (priority {priority})");
            let Some(path) = config else {
                return Ok(ExitCode::SUCCESS);
            };
            let cfg = config::load(&path)?;
            let f = cfg.failover.clone().with_context(|| {
                format!("{}: no [ha.failover] section to act on", path.display())
            })?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(notify(cfg, f, transition))
        }
        Command::Ipvs {
            command: IpvsCommand::List { stats },
        } => {
            use rwproxy_ha::ipvs::{table, Ipvs};
            let ipvs = Ipvs::connect()?;
            let format = if stats {
                table::Format::Stats
            } else {
                table::Format::Plain
            };
            print!(
                "{}",
                table::render(&ipvs.info()?, &ipvs.services()?, format)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => {
            println!("{}", config::check(&config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let cfg = config::load(&config)?;
            let mut ready = if process::is_supervised() {
                process::Ready::from_supervisor()
            } else if cfg.daemon {
                Some(process::daemonize().context("cannot daemonize")?)
            } else {
                None
            };
            let logs_to_file = cfg.log_path.is_some();
            let outcome = start(cfg, &mut ready);
            if let Err(e) = &outcome {
                // A daemon's stderr is /dev/null: the log file is where the error stays.
                if logs_to_file {
                    tracing::error!("{e:#}");
                }
                if let Some(r) = ready.take() {
                    r.failed(&format!("{e:#}"));
                }
            }
            outcome
        }
    }
}

/// `rwproxy serve` once the config is loaded (and the process daemonized): the supervisor
/// of `keepalive`, or the proxy, which reports on `ready` once it serves.
fn start(cfg: config::Config, ready: &mut Option<process::Ready>) -> Result<ExitCode> {
    init_logging(&cfg)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if cfg.keepalive && !process::is_supervised() {
        return Ok(process::supervise(ready.take(), cfg.pid_path()));
    }
    // Sessions run on their own event threads (see `event_threads`); this runtime
    // has the listener, the console, the monitor and HA, which mostly sleep.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CONTROL_THREADS)
        .enable_all()
        .build()?
        .block_on(serve(cfg, ready))?;
    Ok(ExitCode::SUCCESS)
}

/// `rwproxy notify` with `[ha.failover]`: the action for the transition, then the read pools
/// of this node's proxy (through its admin port: it is another process) and the remote ones.
async fn notify(
    cfg: config::Config,
    f: failover::FailoverConfig,
    transition: NotifyKind,
) -> Result<ExitCode> {
    let action = failover::action_name(&f, transition);
    let started = std::time::Instant::now();
    let outcome = failover::act(&f, transition, None).await;
    eprintln!(
        "rwproxy notify: {action}: {outcome:?} ({} ms)",
        started.elapsed().as_millis()
    );
    let mut proxies: Vec<failover::Proxy> = f
        .remote_proxies
        .iter()
        .cloned()
        .map(failover::Proxy::Remote)
        .collect();
    if !cfg.backends.is_empty() {
        let mut admin = cfg.admin_listen;
        if admin.ip().is_unspecified() {
            admin.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        proxies.push(failover::Proxy::Remote(failover::RemoteProxy {
            address: admin.to_string(),
            user: cfg.admin_username.clone(),
            password: cfg.admin_password.clone(),
        }));
    }
    let probe = rwproxy_ha::db::Prober::new(f.local.clone())
        .probe()
        .await
        .ok();
    if let Some(present) = failover::wanted_in_read_pool(&outcome, probe.as_ref()) {
        for p in &proxies {
            if let Err(e) = p
                .set_reader(&f.local.address, present, f.read_weight, f.local.timeout)
                .await
            {
                eprintln!("rwproxy notify: read pool not updated: {e}");
            }
        }
    }
    Ok(if outcome.is_failure() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn init_logging(cfg: &config::Config) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match &cfg.log_path {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create log-path {}", dir.display()))?;
            let path = dir.join(format!("{}.log", cfg.instance));
            let file = rwproxy::log_file::LogFile::open(&path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(move || file.writer())
                .init();
        }
        // Colours only for a person at a terminal: redirected to a file or a journal, the
        // escape codes would garble every line.
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

/// Worker threads of the main runtime (everything but client sessions): two, so a slow
/// netlink or DNS call in one task never holds up accepting clients.
const CONTROL_THREADS: usize = 2;

/// How long a stopping proxy waits for sessions in a transaction to finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

async fn serve(cfg: config::Config, ready: &mut Option<process::Ready>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // First: a supervisor passes these on at any time, and until a handler is in place
    // their default action would end the process (a HUP from logrotate during start-up).
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let open_files = process::set_open_files_limit(cfg.max_open_files);
    tracing::info!(open_files, "open-files limit set");
    let cluster = Cluster::new(&cfg);
    cluster.spawn_maintenance();
    let monitors = rwproxy::monitor::spawn(&cluster, cfg.monitor.clone(), cfg.max_allowed_packet);
    let listener = rwproxy::server::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let threads = Arc::new(
        EventThreads::start(cfg.event_thread_count(), &tokio::runtime::Handle::current())
            .context("cannot start event threads")?,
    );
    let admin = rwproxy::server::bind(cfg.admin_listen)
        .await
        .with_context(|| format!("cannot listen on admin-address {}", cfg.admin_listen))?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let vrrp: Vec<vrrp::Running> = cfg
        .vrrp
        .iter()
        .map(|inst| {
            let mut stopping = stopping.clone();
            vrrp::run(inst.clone(), async move {
                let _ = stopping.wait_for(|s| *s).await;
            })
        })
        .collect();
    let director = if cfg.ipvs.virtual_servers.is_empty() {
        None
    } else {
        let follow = cfg.ipvs.vrrp_instance.as_ref().and_then(|name| {
            vrrp.iter()
                .find(|r| r.status.borrow().instance == *name)
                .map(|r| r.status.clone())
        });
        let mut stopping = stopping.clone();
        Some(
            rwproxy_ha::ipvs::director::run(cfg.ipvs.clone(), follow, async move {
                let _ = stopping.wait_for(|s| *s).await;
            })
            .context("cannot start the IPVS director ([ha.ipvs])")?,
        )
    };
    let failover_stopping = stopping.clone();
    let settings = Arc::new(rwproxy::server::client_settings(&cfg, &cluster, stopping).await);
    // The failover actions follow their VRRP instance (config validation made sure it exists).
    let failover = cfg.failover.as_ref().and_then(|f| {
        let name = f.instance.as_ref()?;
        let follow = vrrp.iter().find(|r| r.status.borrow().instance == *name)?;
        let (tx, rx) = tokio::sync::watch::channel(failover::initial_status(f));
        let (switch_tx, switch_rx) = tokio::sync::mpsc::unbounded_channel();
        Some((
            f.clone(),
            follow.status.clone(),
            follow.control.clone(),
            (tx, rx),
            (switch_tx, switch_rx),
        ))
    });
    let mut control = ProxyControl::new(
        cluster.clone(),
        cfg.clone(),
        &settings,
        vrrp.iter().map(|r| r.status.clone()).collect(),
    );
    if let Some((_, _, _, (_, rx), (switch_tx, _))) = &failover {
        control = control.with_failover(rx.clone(), switch_tx.clone());
    }
    let control = Arc::new(control);
    let failover = failover.map(|(f, follow, resign, (tx, _), (_, switch_rx))| {
        let mut proxies: Vec<failover::Proxy> = f
            .remote_proxies
            .iter()
            .cloned()
            .map(failover::Proxy::Remote)
            .collect();
        if !cfg.backends.is_empty() {
            proxies.push(failover::Proxy::Local(control.clone()));
        }
        let mut stopping = failover_stopping.clone();
        failover::spawn(f, follow, resign, switch_rx, proxies, tx, async move {
            let _ = stopping.wait_for(|s| *s).await;
        })
    });
    if let Some(addr) = cfg.metrics_listen {
        let sources = rwproxy::stats::exporter::Sources {
            cluster: cluster.clone(),
            stats: settings.stats.clone(),
            active_clients: settings.active.clone(),
            max_clients: settings.slots.clone(),
        };
        rwproxy::stats::exporter::start(addr, sources)
            .await
            .with_context(|| format!("cannot listen on metrics.listen {addr}"))?;
    }
    // An HA-only node (no backends) holds the VIP and serves the console, nothing else.
    let proxying = !cfg.backends.is_empty();
    let mut proxy = Box::pin(async {
        if proxying {
            rwproxy::server::serve(listener, cluster.clone(), settings.clone(), threads.clone())
                .await
        } else {
            drop(listener);
            std::future::pending().await
        }
    });
    let mut console = Box::pin(rwproxy::console::serve(admin, control));
    // Under keepalive the supervisor's pid is the one to signal, and it writes the file.
    let _pid_file = match cfg.pid_path().filter(|_| !process::is_supervised()) {
        Some(path) => Some(process::PidFile::create(path)?),
        None => None,
    };
    if let Some(r) = ready.take() {
        r.ready();
    }
    loop {
        tokio::select! {
            r = &mut proxy => return r.context("proxy listener failed"),
            r = &mut console => return r.context("admin listener failed"),
            _ = hup.recv() => {
                rwproxy::log_file::reopen();
                match cluster.reload_from(&cfg.path) {
                    Ok(new) => {
                        for w in &new.warnings {
                            tracing::warn!("SIGHUP: {w}");
                        }
                        // Sessions pinned to a backend the file no longer has start draining.
                        settings.registry.wake_all();
                        settings.slots.set_limit(rwproxy::client::slots::client_limit(
                            new.max_client_connections,
                            process::open_files_limit(),
                        ));
                        tracing::info!(path = %cfg.path.display(), max_clients = %settings.slots.describe(), "SIGHUP: log file reopened; backends (with offline states), users, client-ips, drain-timeout and max-client-connections reloaded");
                        let stale = config::needs_restart(&cfg, &new);
                        if !stale.is_empty() {
                            tracing::warn!("SIGHUP: changed in the file but applied only at the next start: {}", stale.join(", "));
                        }
                    }
                    Err(e) => tracing::error!("SIGHUP: {e}; keeping the running configuration"),
                }
            }
            // As Atlas: USR1 online, USR2 offline.
            _ = usr1.recv() => cluster.set_lvs_offline(false),
            _ = usr2.recv() => cluster.set_lvs_offline(true),
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT: shutting down");
                break;
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM: no new clients; waiting for open transactions");
                break;
            }
        }
    }
    // The client listener closes with its future; idle sessions close at once, sessions in
    // a transaction get until the grace period ends, or a second SIGTERM or SIGINT. The
    // console stays open meanwhile: a DBA may want to see (or KILL) what holds it up.
    drop(proxy);
    let _ = stop.send(true);
    let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
    let mut console_done = false;
    while settings.active.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        if std::time::Instant::now() > deadline {
            tracing::warn!(
                sessions = settings.active.load(std::sync::atomic::Ordering::Relaxed),
                "grace period over; closing remaining sessions"
            );
            break;
        }
        tokio::select! {
            () = rwproxy::timer::sleep(std::time::Duration::from_millis(50)) => {}
            _ = term.recv() => {
                tracing::warn!("second SIGTERM: closing remaining sessions now");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::warn!("second SIGINT: closing remaining sessions now");
                break;
            }
            _ = &mut console, if !console_done => console_done = true,
        }
    }
    drop(console);
    // VRRP instances stopped with the same signal: a MASTER sends its priority-0 advert and
    // drops the VIP so a backup takes over at once; wait for that.
    for r in vrrp {
        match rwproxy::timer::timeout(std::time::Duration::from_secs(15), r.handle).await {
            // Stopped, cleanly or with an error it logged when it happened.
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("VRRP instance task failed: {e}"),
            Err(_) => tracing::warn!("VRRP instance did not stop in time"),
        }
    }
    // The failover task sets the local database read-only on its way out.
    if let Some(f) = failover {
        if rwproxy::timer::timeout(std::time::Duration::from_secs(15), f)
            .await
            .is_err()
        {
            tracing::warn!("failover actions did not stop in time");
        }
    }
    // The director removes the virtual services it owns, as keepalived does on exit.
    if let Some(d) = director {
        match rwproxy::timer::timeout(std::time::Duration::from_secs(15), d.handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!("IPVS director stopped with an error: {e}"),
            Ok(Err(e)) => tracing::error!("IPVS director task failed: {e}"),
            Err(_) => tracing::warn!("IPVS director did not stop in time"),
        }
    }
    // Connections closed in order, so servers count no aborted clients for them: the
    // monitor's, and the idle pooled ones (those of sessions cut at the end of the grace
    // period close as the process exits, as their clients' do).
    monitors.stop().await;
    for b in cluster.backends().iter() {
        b.pool.clear_idle();
    }
    tracing::info!("stopped");
    Ok(())
}
