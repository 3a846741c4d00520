//! Process lifecycle options from Atlas: `daemon` (detach from the terminal) and `keepalive`
//! (a supervisor parent that restarts the proxy if it dies).
//!
//! Both must run before the tokio runtime starts: `fork` in a multi-threaded process keeps
//! only the calling thread.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Set in the environment of a child started by the supervisor so it does not supervise too.
const SUPERVISED_ENV: &str = "RWPROXY_SUPERVISED";

/// Detaches from the controlling terminal: fork, the parent exits, the child starts a new
/// session with stdin/stdout/stderr on /dev/null (logs should go to `log-path`).
pub fn daemonize() -> std::io::Result<()> {
    // SAFETY: called before any other thread exists (no runtime yet); the child only calls
    // async-signal-safe functions before returning to normal execution.
    unsafe {
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(std::io::Error::last_os_error());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

pub fn is_supervised() -> bool {
    std::env::var_os(SUPERVISED_ENV).is_some()
}

/// Runs this same command line as a child again and again until it exits cleanly. A child
/// that keeps dying quickly is restarted with a growing delay (up to 30 s) so a broken config
/// does not spin the CPU.
pub fn supervise() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("keepalive: cannot find own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let mut delay = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let status = Command::new(&exe)
            .args(&args)
            .env(SUPERVISED_ENV, "1")
            .status();
        match status {
            Ok(s) if s.success() => return ExitCode::SUCCESS,
            Ok(s) => tracing::error!("keepalive: rwproxy exited ({s}); restarting"),
            Err(e) => tracing::error!("keepalive: cannot start rwproxy: {e}"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            delay = Duration::from_millis(500);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
