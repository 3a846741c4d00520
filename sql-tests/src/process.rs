//! Processes a test starts itself (the proxy's binary, mostly), and waiting on what they do.

use std::process::Child;
use std::time::{Duration, Instant};

/// A child process stopped and reaped when the test is done with it, passed or failed:
/// SIGTERM first, so a supervisor can stop what it started, then SIGKILL after 5 s.
pub struct Spawned(pub Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child, not yet reaped, so its pid is still ours.
            unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 50 ms until it holds; fails the test naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Raises this process's soft open-files limit to `want` (at most the hard limit): a test
/// with thousands of clients holds two sockets for each (its own and, in process, the
/// proxy's). Children started afterwards inherit it.
pub fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    println!("RLIMIT_NOFILE soft limit: {}", lim.rlim_cur);
}
