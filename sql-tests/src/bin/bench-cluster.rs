//! Starts or stops a detached sandbox cluster for `bench/sysbench.sh`.
//!
//!     bench-cluster up --dir DIR [--replicas N]   prints PRIMARY=port and REPLICAS="p1 p2"
//!     bench-cluster down --dir DIR                stops the servers and removes DIR

use anyhow::{bail, Context, Result};
use rwproxy_sql_tests::sandbox::{Cluster, Options};
use std::path::PathBuf;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = None;
    let mut replicas = 2usize;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--dir" => dir = args.get(i + 1).map(PathBuf::from),
            "--replicas" => replicas = args.get(i + 1).context("--replicas N")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
        i += 2;
    }
    let dir = dir.context("--dir DIR is required")?;
    match args.first().map(String::as_str) {
        Some("up") => {
            let c = Cluster::start_with(Options {
                replicas,
                dir: Some(dir),
                base_port: None,
                detached: true,
            })
            .await?;
            println!("PRIMARY={}", c.primary.port);
            let ports: Vec<String> = c.replicas.iter().map(|r| r.port.to_string()).collect();
            println!("REPLICAS=\"{}\"", ports.join(" "));
            c.detach();
            Ok(())
        }
        Some("down") => {
            if dir.exists() {
                Cluster::stop_dir(&dir, Duration::from_secs(10))?;
                std::fs::remove_dir_all(&dir)?;
            }
            Ok(())
        }
        _ => bail!("usage: bench-cluster up|down --dir DIR [--replicas N]"),
    }
}
