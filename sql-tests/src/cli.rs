//! The `mariadb` command-line client, run as a user would run it.

use crate::sandbox::{APP_USER, DATABASE};
use std::io::Write;
use std::process::{Command, Stdio};

/// `mariadb` as the app user on `port` with `args`, stdin fed from `input`;
/// (exit ok, stdout, stderr).
pub fn mariadb(
    port: u16,
    pass: &str,
    args: &[&str],
    input: Option<&str>,
) -> (bool, String, String) {
    let mut child = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--default-character-set=utf8mb4",
            "-h127.0.0.1",
            "--protocol=TCP",
        ])
        .arg(format!("-P{port}"))
        .arg(format!("-u{APP_USER}"))
        .arg(format!("-p{pass}"))
        .arg(DATABASE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mariadb client (apt-get install mariadb-client)");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(i) = input {
        stdin.write_all(i.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
