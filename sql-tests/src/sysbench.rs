//! Running `sysbench` against a proxy or a server and reading its report.

use crate::sandbox::{APP_PASSWORD, APP_USER, DATABASE};
use std::process::Command;

/// Runs `sysbench <test> <args…> <cmd>` as the application user against `127.0.0.1:port`
/// on the test database, and asserts that it succeeded. Returns stdout and stderr together.
pub fn run(test: &str, port: u16, args: &[&str], cmd: &str) -> String {
    crate::sandbox::ensure_installed("sysbench", &["sysbench"]).expect("installing sysbench");
    let out = Command::new("sysbench")
        .arg(test)
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={port}"))
        .arg(format!("--mysql-user={APP_USER}"))
        .arg(format!("--mysql-password={APP_PASSWORD}"))
        .arg(format!("--mysql-db={DATABASE}"))
        .args(args)
        .arg(cmd)
        .output()
        .expect("running sysbench (apt-get install sysbench)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sysbench {test} {args:?} {cmd} failed ({}):\n{text}",
        out.status
    );
    text
}

/// The first number after `label` on its line, e.g. `transactions:   1234   (246.5 per sec.)`.
pub fn stat(out: &str, label: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` in sysbench output:\n{out}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse `{line}`"))
}
