//! `sandbox up|down`: a long-lived MariaDB cluster plus a matching
//! `rwproxy.toml`, so the demo (and humans) can poke at a real setup without
//! writing any test code.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use rwproxy_sql_tests::sandbox::{self, Cluster, Options, APP_PASSWORD, APP_USER, DATABASE};

#[derive(Parser)]
#[command(about = "Start or stop a sandbox MariaDB primary + replicas for rwproxy")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a cluster that keeps running after this command exits.
    Up {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Primary on this port, replica i on base+i; free ports when omitted.
        #[arg(long)]
        base_port: Option<u16>,
        /// Port rwproxy.toml tells the proxy to listen on (default: after the
        /// replicas with --base-port, else a free port).
        #[arg(long)]
        proxy_port: Option<u16>,
        /// Port for the proxy's admin interface (default: proxy port + 1 with
        /// --base-port, else a free port).
        #[arg(long)]
        admin_port: Option<u16>,
    },
    /// Stop the cluster in DIR and delete its datadirs (configs and logs stay).
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Up {
            dir,
            replicas,
            base_port,
            proxy_port,
            admin_port,
        } => up(dir, replicas, base_port, proxy_port, admin_port).await,
        Cmd::Down { dir } => down(&dir),
    }
}

async fn up(
    dir: PathBuf,
    replicas: usize,
    base_port: Option<u16>,
    proxy_port: Option<u16>,
    admin_port: Option<u16>,
) -> Result<()> {
    let running = Cluster::running_pids(&dir);
    if !running.is_empty() {
        bail!(
            "a sandbox is already running in {} (pids {running:?}); run `sandbox down --dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    // After the servers' ports: base..=base+replicas.
    let after = |n: usize| {
        base_port
            .and_then(|b| u16::try_from(usize::from(b) + replicas + n).ok())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no room for the proxy's ports above the servers' below 65536: \
                     lower --base-port, or set --proxy-port and --admin-port"
                )
            })
    };
    let proxy_port = match (proxy_port, base_port) {
        (Some(p), _) => p,
        (None, Some(_)) => after(1)?,
        (None, None) => sandbox::free_port()?,
    };
    let admin_port = match (admin_port, base_port) {
        (Some(p), _) => p,
        (None, Some(_)) => proxy_port.checked_add(1).ok_or_else(|| {
            anyhow::anyhow!("no admin port after proxy port 65535: set --admin-port")
        })?,
        (None, None) => loop {
            let p = sandbox::free_port()?;
            if p != proxy_port {
                break p;
            }
        },
    };
    let t0 = Instant::now();
    let cluster = Cluster::start_with(Options {
        replicas,
        dir: Some(dir.clone()),
        base_port,
        detached: true,
        tls: None,
    })
    .await?;
    let elapsed = t0.elapsed();
    let dir = cluster.dir().to_path_buf();

    let mut toml = String::new();
    // The servers take commands of up to 256 MiB (`sandbox`): so does the proxy.
    writeln!(
        toml,
        "[proxy]\nlisten = \"127.0.0.1:{proxy_port}\"\nmax-allowed-packet = {}\n",
        256 << 20
    )?;
    // The monitor's own account, which every sandbox server has: health checks that watch
    // read_only and replication, not only the port.
    writeln!(
        toml,
        "[monitor]\nuser = \"{}\"\npassword = \"{}\"\n",
        sandbox::MONITOR_USER,
        sandbox::MONITOR_PASSWORD
    )?;
    writeln!(
        toml,
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\nusername = \"admin\"\npassword = \"admin\"\n"
    )?;
    writeln!(
        toml,
        "[[backend]]\naddress = \"{}\"\nrole = \"rw\"\n",
        cluster.primary_addr()
    )?;
    for addr in cluster.replica_addrs() {
        writeln!(
            toml,
            "[[backend]]\naddress = \"{addr}\"\nrole = \"ro\"\nweight = 1\n"
        )?;
    }
    writeln!(
        toml,
        "[[user]]\nname = \"{APP_USER}\"\npassword = \"{APP_PASSWORD}\""
    )?;
    std::fs::write(dir.join("rwproxy.toml"), toml)?;

    // Shell-sourceable, so scripts need not parse the TOML.
    let replica_ports: Vec<String> = cluster
        .replicas
        .iter()
        .map(|r| r.port.to_string())
        .collect();
    std::fs::write(
        dir.join("ports.env"),
        format!(
            "PROXY_PORT={proxy_port}\nADMIN_PORT={admin_port}\nPRIMARY_PORT={}\nREPLICA_PORTS=\"{}\"\n",
            cluster.primary.port,
            replica_ports.join(" ")
        ),
    )?;

    println!(
        "sandbox up in {:.1}s, dir {}",
        elapsed.as_secs_f64(),
        dir.display()
    );
    for s in cluster.servers() {
        let role = if s.server_id == 1 {
            "primary"
        } else {
            "replica"
        };
        println!(
            "  {role:<7} server_id={} 127.0.0.1:{} pid={}",
            s.server_id,
            s.port,
            s.pid()
        );
    }
    println!(
        "  proxy config: {} (proxy {proxy_port}, admin {admin_port})",
        dir.join("rwproxy.toml").display()
    );
    println!(
        "  direct: mariadb -h127.0.0.1 -P{} -u{APP_USER} -p{APP_PASSWORD} {DATABASE}",
        cluster.primary.port
    );
    cluster.detach();
    Ok(())
}

fn down(dir: &Path) -> Result<()> {
    if !dir.exists() {
        println!("nothing to stop: {} does not exist", dir.display());
        return Ok(());
    }
    let n = Cluster::stop_dir(dir, Duration::from_secs(15))?;
    // ports.env is ours only where nodes were.
    if Cluster::remove_nodes(dir)? > 0 {
        let _ = std::fs::remove_file(dir.join("ports.env"));
    }
    println!("stopped {n} server(s) in {}", dir.display());
    Ok(())
}
