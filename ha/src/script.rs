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

/// A command for `program` with no stdin, killed if dropped, in a process group of its own
/// (see [`kill_group`]), and the process's original open-files limit.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    c.stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
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

/// Kills a script that overran its time together with what it started: dropping the child
/// kills only the script itself, and a shell's children (`sh -c "mysql ..."`) would run on,
/// one more at every timeout. `pid` is the script's, which leads its group (`command`), as
/// keepalived runs its scripts.
pub fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|&p| p > 0) {
        // SAFETY: a plain system call; a group already gone is ESRCH, nothing else.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
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

    #[tokio::test]
    async fn a_timed_out_script_takes_its_children_with_it() {
        let dir = std::env::temp_dir().join(format!("rwproxy-kill-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("grandchild");
        let mut child = super::command("sh")
            .args([
                "-c",
                &format!("sleep 30 & echo $! > {}; wait", pidfile.display()),
            ])
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n')) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        super::kill_group(child.id());
        child.wait().await.unwrap();
        let mut gone = false;
        for _ in 0..100 {
            // Gone, or dead and waiting for its new parent to reap it.
            let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat"));
            if stat.map_or(true, |s| {
                s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))
            }) {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(gone, "the script's child {grandchild} outlived it");
    }
}
