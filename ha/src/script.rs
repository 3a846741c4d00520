//! Running the operator's scripts: VRRP track and notify scripts, IPVS `MISC_CHECK`.
//!
//! The proxy raises its own open-files limit at start (`max-open-files`, by default to the
//! hard limit), and children inherit it. Under a soft limit of a million, a program that
//! closes every descriptor up to the limit is slow to start (a track script that times out
//! moves the VIP), and `select()`-based tools fail past 1 024. Scripts run with the limit
//! the process started with, as they would from keepalived.

use std::sync::atomic::{AtomicU64, Ordering};

/// The soft open-files limit the process started with, once it changed it; 0: unchanged.
static STARTED_WITH: AtomicU64 = AtomicU64::new(0);

/// Scripts run from now on get back `soft`, the soft open-files limit the process started
/// with (at most the hard limit then in force).
pub fn restore_open_files_limit(soft: u64) {
    STARTED_WITH.store(soft, Ordering::Relaxed);
}

/// A command for `program` with no stdin, killed if dropped, and the process's original
/// open-files limit.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    c.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let soft = STARTED_WITH.load(Ordering::Relaxed);
    if soft != 0 {
        // SAFETY: runs in the child between fork and exec, where only async-signal-safe
        // calls may be made: getrlimit and setrlimit are plain system calls on a local.
        unsafe {
            c.pre_exec(move || {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                    lim.rlim_cur = soft.min(lim.rlim_max);
                    libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                }
                Ok(())
            });
        }
    }
    c
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn scripts_get_the_limit_the_process_started_with() {
        super::restore_open_files_limit(200);
        let out = super::command("sh")
            .args(["-c", "ulimit -n"])
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200");
    }
}
