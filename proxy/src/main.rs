//! The `rwproxy` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rwproxy::cluster::Cluster;
use rwproxy::console::control::ProxyControl;
use rwproxy::{config, process};
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
}

fn main() -> ExitCode {
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
        Command::CheckConfig { config } => {
            println!("{}", config::check(&config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let cfg = config::load(&config)?;
            if cfg.daemon && !process::is_supervised() {
                process::daemonize().context("cannot daemonize")?;
            }
            init_logging(&cfg)?;
            if cfg.keepalive && !process::is_supervised() {
                return Ok(process::supervise());
            }
            let threads = if cfg.event_threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                cfg.event_threads
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()?
                .block_on(serve(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
    }
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
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

async fn serve(cfg: config::Config) -> Result<()> {
    let cluster = Cluster::new(&cfg);
    cluster.spawn_maintenance();
    let listener = rwproxy::server::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let admin = rwproxy::server::bind(cfg.admin_listen)
        .await
        .with_context(|| format!("cannot listen on admin-address {}", cfg.admin_listen))?;
    let settings = Arc::new(rwproxy::server::client_settings(&cfg, &cluster).await);
    let control = Arc::new(ProxyControl::new(
        cluster.clone(),
        cfg.clone(),
        settings.version.clone(),
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = rwproxy::server::serve(listener, cluster, settings) => r.context("proxy listener failed"),
        r = rwproxy::console::serve(admin, control) => r.context("admin listener failed"),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("SIGINT: shutting down");
            Ok(())
        }
        _ = term.recv() => {
            tracing::info!("SIGTERM: shutting down");
            Ok(())
        }
    }
}
