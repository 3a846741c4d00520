//! Process lifecycle options from Atlas: `daemon` (detach from the terminal) and `keepalive`
//! (a supervisor parent that restarts the proxy if it dies).
//!
//! Both must run before the tokio runtime starts: `fork` in a multi-threaded process keeps
//! only the calling thread.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Set in the environment of a child started by the supervisor so it does not supervise too;
/// its value is the descriptor the child reports its startup on (see [`Ready`]).
const SUPERVISED_ENV: &str = "RWPROXY_SUPERVISED";

/// A starting proxy's promise to tell whoever waits for it (the parent of `daemon`, the
/// supervisor of `keepalive`) whether it started. Without it a daemon's parent would exit 0
/// before the listeners are even bound, and the error would go to the daemon's /dev/null.
///
/// On the pipe: `R` for ready, or `E` and the error message. The end of the pipe without
/// either means the process died before it could say.
pub struct Ready(OwnedFd);

impl Ready {
    /// The report channel the supervisor handed this process, if it is a supervised child.
    pub fn from_supervisor() -> Option<Ready> {
        let fd: RawFd = supervision()?.parse().ok()?;
        // Never stdin/stdout/stderr: the supervisor's pipe comes after them.
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return None;
        }
        // SAFETY: the supervisor opened this descriptor for us and nothing else in this
        // process uses it. FD_CLOEXEC keeps it from hooks this process runs.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            Some(Ready(OwnedFd::from_raw_fd(fd)))
        }
    }

    /// The proxy is serving.
    pub fn ready(self) {
        self.send(b"R");
    }

    /// The proxy could not start, because of `error`.
    pub fn failed(self, error: &str) {
        self.send(format!("E{error}").as_bytes());
    }

    fn send(self, report: &[u8]) {
        // The waiting side may be gone (killed); then nobody is left to tell.
        let _ = std::fs::File::from(self.0).write_all(report);
    }
}

/// The pid file: this process's pid, removed again when dropped (a clean exit).
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(path: PathBuf) -> std::io::Result<PidFile> {
        match std::fs::write(&path, format!("{}\n", std::process::id())) {
            Ok(()) => Ok(PidFile(path)),
            Err(e) => Err(std::io::Error::new(
                e.kind(),
                format!("cannot write the pid file {}: {e}", path.display()),
            )),
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a starting process said on its [`Ready`] pipe; `None` if it said nothing.
fn read_report(pipe: OwnedFd) -> Option<Result<(), String>> {
    let mut report = Vec::new();
    let _ = std::fs::File::from(pipe).read_to_end(&mut report);
    match report.split_first() {
        Some((b'R', _)) => Some(Ok(())),
        Some((b'E', msg)) => Some(Err(String::from_utf8_lossy(msg).into_owned())),
        _ => None,
    }
}

/// A pipe whose ends are both closed on exec: `(read, write)`.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array, which we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Detaches from the controlling terminal: fork, the child starts a new session with
/// stdin/stdout/stderr on /dev/null (logs should go to `log-path`). The parent stays until the
/// child reports on the returned [`Ready`], so `rwproxy serve` exits 0 only once the proxy
/// serves, and otherwise exits 1 with the child's error on its own stderr.
pub fn daemonize() -> std::io::Result<Ready> {
    let (report, ready) = pipe()?;
    // SAFETY: called before any other thread exists (no runtime yet), so both sides of the
    // fork may go on as normal single-threaded programs.
    unsafe {
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {}
            _ => {
                drop(ready);
                let code = match read_report(report) {
                    Some(Ok(())) => 0,
                    Some(Err(e)) => {
                        eprintln!("rwproxy: {e}");
                        1
                    }
                    None => {
                        eprintln!("rwproxy: the daemon exited while starting");
                        1
                    }
                };
                std::process::exit(code);
            }
        }
        drop(report);
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
    Ok(Ready(ready))
}

/// What the supervisor put in `SUPERVISED_ENV`, taken out of the environment so that hooks
/// (notify scripts, track and health checks) do not inherit it: an `rwproxy serve` started
/// from one would take itself for a supervised child. Called first thing in `main`, while the
/// process has one thread (changing the environment is not thread-safe).
pub fn take_supervision() {
    let value = std::env::var(SUPERVISED_ENV).ok();
    std::env::remove_var(SUPERVISED_ENV);
    let _ = SUPERVISION.set(value);
}

static SUPERVISION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn supervision() -> Option<&'static str> {
    SUPERVISION.get().and_then(|v| v.as_deref())
}

pub fn is_supervised() -> bool {
    supervision().is_some()
}

/// The supervised proxy's pid, for [`forward`]; 0 while none runs.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Set by SIGTERM and SIGINT: the supervisor restarts nothing more and exits with the proxy.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The supervisor's handler: scripts and init systems signal the process they started (or
/// the pid file's), so the proxy must get what the supervisor gets — SIGHUP reloads,
/// SIGUSR1/2 restore and drain the LVS pool, SIGTERM stops.
extern "C" fn forward(sig: libc::c_int) {
    if sig == libc::SIGTERM || sig == libc::SIGINT {
        STOPPING.store(true, Ordering::SeqCst);
    }
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; `pid` is our unreaped child (see `wait`).
        unsafe { libc::kill(pid, sig) };
    }
}

fn forward_signals() -> std::io::Result<()> {
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: a zeroed sigaction is valid; the handler only touches atomics and kill.
        // SA_RESTART keeps the supervisor's blocking reads and waits going.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(sig, &action, std::ptr::null_mut()) == -1 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Waits for the child to exit, and stops forwarding signals to it before it is reaped, when
/// its pid could go to another process.
fn wait(child: &mut Child) -> std::io::Result<ExitStatus> {
    loop {
        // SAFETY: waitid fills `info`; WNOWAIT leaves the child for `Child::wait` to reap.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                child.id(),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        let error = std::io::Error::last_os_error();
        if r == 0 || error.kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    CHILD.store(0, Ordering::SeqCst);
    child.wait()
}

/// Runs this same command line as a child again and again until it exits cleanly. A child
/// that keeps dying quickly is restarted with a growing delay (up to 30 s) so a broken config
/// does not spin the CPU; one that never started (the first) is not restarted at all, since
/// the same config will fail the same way, and its error goes to `ready`.
///
/// The pid file (`pid_path`) holds the supervisor's pid, not the proxy's: it outlives restarts
/// and passes signals on.
pub fn supervise(mut ready: Option<Ready>, mut pid_path: Option<PathBuf>) -> ExitCode {
    let setup = std::env::current_exe().and_then(|exe| {
        forward_signals()?;
        Ok(exe)
    });
    // Written once the first proxy serves: a second `serve` of a running instance, whose
    // proxy cannot bind, must not replace (and then remove) the running one's.
    let mut _pid_file = None;
    let exe = match setup {
        Ok(s) => s,
        Err(e) => {
            let why = format!("keepalive: cannot start: {e}");
            tracing::error!("{why}");
            if let Some(r) = ready.take() {
                r.failed(&why);
            }
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let mut delay = Duration::from_millis(500);
    let mut served = false;
    loop {
        if STOPPING.load(Ordering::SeqCst) {
            return ExitCode::SUCCESS;
        }
        let started = Instant::now();
        let (report, child_ready) = match pipe() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("keepalive: cannot start rwproxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        let fd = child_ready.as_raw_fd();
        let mut cmd = Command::new(&exe);
        cmd.args(&args).env(SUPERVISED_ENV, fd.to_string());
        // SAFETY: only fcntl, which is async-signal-safe, runs between fork and exec. The
        // child's report descriptor must survive exec; every other one of ours is CLOEXEC.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        drop(child_ready);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("keepalive: cannot start rwproxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        CHILD.store(child.id() as i32, Ordering::SeqCst);
        if STOPPING.load(Ordering::SeqCst) {
            // The signal came before there was a child to pass it to.
            forward(libc::SIGTERM);
        }
        let report = read_report(report);
        if !served {
            if let Some(Ok(())) = report {
                served = true;
                match pid_path.take().map(PidFile::create).transpose() {
                    Ok(file) => _pid_file = file,
                    Err(e) => {
                        let why = format!("keepalive: {e}");
                        tracing::error!("{why}");
                        forward(libc::SIGTERM);
                        let _ = wait(&mut child);
                        if let Some(r) = ready.take() {
                            r.failed(&why);
                        }
                        return ExitCode::FAILURE;
                    }
                }
                if let Some(r) = ready.take() {
                    r.ready();
                }
            } else {
                let exited = match wait(&mut child) {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::error!("keepalive: rwproxy did not start ({exited}); not restarting");
                let why = match report {
                    Some(Err(e)) => e,
                    _ => format!("rwproxy exited while starting ({exited})"),
                };
                if let Some(r) = ready.take() {
                    r.failed(&why);
                }
                return ExitCode::FAILURE;
            }
        }
        let status = wait(&mut child);
        if STOPPING.load(Ordering::SeqCst) {
            tracing::info!("keepalive: rwproxy stopped; exiting");
            return match status {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            };
        }
        match status {
            Ok(s) if s.success() => return ExitCode::SUCCESS,
            Ok(s) => tracing::error!("keepalive: rwproxy exited ({s}); restarting"),
            Err(e) => tracing::error!("keepalive: cannot wait for rwproxy: {e}"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            delay = Duration::from_millis(500);
        }
        let restart = Instant::now() + delay;
        while Instant::now() < restart && !STOPPING.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// The process's open-files limit (`RLIMIT_NOFILE`): soft and hard.
fn nofile() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
        0 => Ok(lim),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The soft open-files limit: what this process may open.
pub fn open_files_limit() -> u64 {
    nofile().map_or(1024, |l| l.rlim_cur)
}

/// Sets the open-files limit at start, as MySQL Proxy's `max-open-files` did: to `want`, or
/// when unset, to the hard limit (distributions start services at a soft limit of 1024, which
/// a proxy with a few hundred clients and their backend connections soon meets). A `want`
/// above the hard limit raises that too when the process may (root); otherwise it gets the
/// hard limit and a warning, as MariaDB's `open_files_limit` does. Returns the limit set.
pub fn set_open_files_limit(want: Option<u64>) -> u64 {
    let Ok(mut lim) = nofile() else {
        return 1024;
    };
    // The kernel refuses more than `fs.nr_open` whatever the hard limit says (it may say
    // unlimited).
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20);
    let target = want.unwrap_or(lim.rlim_max.min(nr_open));
    if target == lim.rlim_cur {
        return lim.rlim_cur;
    }
    rwproxy_ha::script::restore_open_files_limit(lim.rlim_cur);
    let set = |l: &libc::rlimit| {
        // SAFETY: setrlimit only reads the struct passed.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, l) == 0 }
    };
    let wanted = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max.min(nr_open).max(target),
    };
    if set(&wanted) {
        return target;
    }
    let err = std::io::Error::last_os_error();
    lim.rlim_cur = target.min(lim.rlim_max);
    let got = if set(&lim) {
        lim.rlim_cur
    } else {
        open_files_limit()
    };
    tracing::warn!(
        "could not set the open-files limit to {target} ({err}); it is {got} \
         (raise the hard limit: LimitNOFILE= in systemd, ulimit -Hn)"
    );
    got
}
