//! Throwaway MariaDB clusters (one primary, N GTID replicas) for end-to-end tests
//! and the demo.
//!
//! Speed matters because every test binary starts at least one cluster: the
//! system tables are initialised once per process into a template datadir
//! (`mariadb-install-db` takes seconds) and each server gets a plain file copy
//! of it (milliseconds). A server then boots in about 0.2 s.
//!
//! Tests usually park a `Cluster` in a process-wide static, which is never
//! dropped, so `Drop` alone cannot promise cleanup. Every process that starts a
//! sandbox therefore also starts one watchdog shell that blocks reading a pipe
//! only this process holds open; when the process dies, however it dies, the
//! pipe reaches EOF and the watchdog kills this process's servers and removes
//! their directories. `PR_SET_PDEATHSIG` was not usable: it fires when the
//! forking *thread* exits, and test threads come and go.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

/// The account the proxy and the tests log in as, on every server.
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app_pw";
/// Read-only account meant for health monitoring (replication lag, processlist).
pub const MONITOR_USER: &str = "monitor";
pub const MONITOR_PASSWORD: &str = "monitor_pw";
/// Account the replicas' IO threads use against the primary.
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "repl_pw";
/// Database created on the primary (and replicated) so tests have somewhere to write.
pub const DATABASE: &str = "rwtest";

/// Directory-name prefix of per-process sandboxes under `scratch_root()`; the owner's
/// pid follows it so stale ones of dead processes can be recognised and swept.
const DIR_PREFIX: &str = "rwproxy-sandbox-";
/// Name of the file, in each server's directory, holding the pid we spawned.
/// Ours rather than mariadbd's own `--pid-file`, which appears only late in
/// startup and so would miss a server that hangs while booting.
const PID_FILE: &str = "server.pid";
/// How long a server may take to accept connections before we give up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `wait_replicas_caught_up` waits for each replica.
const CATCH_UP_TIMEOUT_SECS: u32 = 30;
/// Auto-picked ports come from below Linux's default ephemeral range, so that the
/// kernel does not hand the same port to an outgoing connection between our
/// probe and mariadbd's bind.
const AUTO_PORT_RANGE: std::ops::Range<u16> = 20000..32000;
/// Start attempts with a fresh port when another process grabbed ours first.
const PORT_ATTEMPTS: usize = 8;

/// InnoDB sizes shared by the template and the servers: they must agree, or each
/// server would rebuild its redo log on first boot.
const INNODB_ARGS: &[&str] = &[
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=16M",
    "--innodb-data-file-path=ibdata1:12M:autoextend",
    // Many sandboxes at once can exhaust the kernel's aio-max-nr.
    "--innodb-use-native-aio=0",
];

/// Semi-synchronous replication of a failover lab node (see `Server::args`). The timeout is
/// how long a commit waits for a replica that stopped answering without disconnecting (a
/// partition) before the primary falls back to asynchronous replication.
const SEMI_SYNC_ARGS: &[&str] = &[
    "--rpl-semi-sync-master-enabled=ON",
    "--rpl-semi-sync-slave-enabled=ON",
    "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
    "--rpl-semi-sync-master-wait-no-slave=OFF",
    "--rpl-semi-sync-master-timeout=10000",
    // Whatever the node was, it boots as a replica-to-be: crash recovery then truncates the
    // binlog of transactions that were never acknowledged (MariaDB >= 10.6.19 / 10.11.9).
    "--init-rpl-role=SLAVE",
];

/// How to start a cluster; `Cluster::start` covers the common case.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub replicas: usize,
    /// Where the servers live. `None` means a per-process directory under
    /// `scratch_root()` that the watchdog removes when the process exits.
    pub dir: Option<PathBuf>,
    /// Primary on `base_port`, replica i on `base_port + i`. `None` picks free ports.
    pub base_port: Option<u16>,
    /// Servers outlive this process (for `sandbox up`): no watchdog, no kill on drop.
    pub detached: bool,
    /// Every server offers TLS with this certificate (`--ssl-cert`, `--ssl-key`).
    pub tls: Option<ServerCert>,
}

/// PEM files of a server certificate (the chain, then the key).
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A primary with its replicas.
pub struct Cluster {
    pub primary: Server,
    pub replicas: Vec<Server>,
    dir: PathBuf,
    /// A directory the caller named is theirs: a failed start removes nothing in it, never
    /// the directory (`sandbox up --dir $HOME`).
    owns_dir: bool,
    detached: bool,
}

/// One mariadbd. Restartable in place (same port and datadir) so failure tests
/// can kill and revive a backend the proxy is configured for.
pub struct Server {
    pub port: u16,
    pub server_id: u32,
    /// `<dir>/node<server_id>`: datadir, socket, logs and our pid file.
    pub dir: PathBuf,
    pub datadir: PathBuf,
    pub socket: PathBuf,
    pub error_log: PathBuf,
    read_only: bool,
    /// Runs inside this network namespace, listening on `bind` there; the harness then
    /// reaches it through its Unix socket (sockets cross namespaces, TCP does not).
    netns: Option<String>,
    bind: String,
    mariadbd: PathBuf,
    tls: Option<ServerCert>,
    pid: AtomicU32,
    child: Mutex<Option<Child>>,
}

impl Cluster {
    /// Starts a primary and `replicas` replicas on free ports in a temp directory.
    pub async fn start(replicas: usize) -> Result<Cluster> {
        Self::start_with(Options {
            replicas,
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(opts: Options) -> Result<Cluster> {
        if opts.detached && opts.dir.is_none() {
            bail!("a detached cluster needs an explicit dir: temp sandboxes are removed at exit");
        }
        if let Some(b) = opts.base_port {
            if b == 0 || u32::from(b) + opts.replicas as u32 > u32::from(u16::MAX) {
                bail!(
                    "--base-port {b} with {} replicas needs ports {b}..={}, beyond 65535",
                    opts.replicas,
                    u32::from(b) + opts.replicas as u32
                );
            }
        }
        let t0 = Instant::now();
        let template = template().await?;
        let mariadbd = find_binary("mariadbd")?;
        let dir = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                d.canonicalize()?
            }
            None => {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let n = NEXT.fetch_add(1, Ordering::SeqCst);
                let d = scratch_root().join(format!("{DIR_PREFIX}{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&d);
                std::fs::create_dir_all(&d)?;
                d
            }
        };

        // Spawn everything first so the servers boot in parallel, then wait.
        let mut servers = Vec::new();
        for i in 0..=opts.replicas {
            let server_id = i as u32 + 1;
            let port = opts.base_port.map(|b| b + i as u16);
            let node_dir = dir.join(format!("node{server_id}"));
            let socket = socket_path(&node_dir, &dir, server_id);
            servers.push(Server {
                port: port.unwrap_or(0),
                server_id,
                datadir: node_dir.join("data"),
                error_log: node_dir.join("error.log"),
                socket,
                dir: node_dir,
                read_only: i > 0,
                netns: None,
                bind: "127.0.0.1".into(),
                mariadbd: mariadbd.clone(),
                tls: opts.tls.clone(),
                pid: AtomicU32::new(0),
                child: Mutex::new(None),
            });
        }
        // Build the cluster now so a failure below still tears down what started.
        let mut cluster = Cluster {
            primary: servers.remove(0),
            replicas: servers,
            dir,
            owns_dir: opts.dir.is_none(),
            detached: false,
        };
        let fixed = opts.base_port.is_some();
        for s in cluster.servers_mut() {
            s.prepare_datadir(&template)?;
            if !fixed {
                s.port = pick_port()?;
            }
            s.spawn()?;
        }
        for s in cluster.servers_mut() {
            s.wait_ready_or_move(fixed, &template).await?;
        }
        cluster.setup_replication().await?;
        cluster.detached = opts.detached;
        tracing::info!(
            dir = %cluster.dir.display(),
            primary = cluster.primary.port,
            replicas = ?cluster.replicas.iter().map(|r| r.port).collect::<Vec<_>>(),
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "sandbox cluster up"
        );
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn primary_addr(&self) -> String {
        self.primary.addr()
    }

    pub fn replica_addrs(&self) -> Vec<String> {
        self.replicas.iter().map(Server::addr).collect()
    }

    /// Primary first, then the replicas in order.
    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    fn servers_mut(&mut self) -> impl Iterator<Item = &mut Server> {
        std::iter::once(&mut self.primary).chain(self.replicas.iter_mut())
    }

    /// Blocks until every replica has applied everything the primary has
    /// binlogged so far, so a read on any replica sees earlier writes.
    pub async fn wait_replicas_caught_up(&self) -> Result<()> {
        let mut p = self.primary.root_conn().await?;
        let pos: String = p
            .query_first("SELECT @@gtid_binlog_pos")
            .await?
            .unwrap_or_default();
        drop(p);
        for r in &self.replicas {
            r.wait_gtid(&pos).await?;
        }
        Ok(())
    }

    /// Leaves the servers running after this value is gone (for `sandbox up`).
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Pids of the servers of a (detached) cluster in `dir` that are still running.
    pub fn running_pids(dir: &Path) -> Vec<u32> {
        dir.canonicalize()
            .map(|d| live_pids_in(&d))
            .unwrap_or_default()
    }

    /// Removes the node directories of a stopped sandbox in `dir` (for `sandbox down`), and
    /// nothing else: `dir` may be a directory of the user's.
    pub fn remove_nodes(dir: &Path) -> Result<usize> {
        let mut n = 0;
        for e in std::fs::read_dir(dir)?.flatten() {
            if is_node_dir(&e.path()) {
                std::fs::remove_dir_all(e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Stops the servers of a detached cluster in `dir` (for `sandbox down`):
    /// SIGTERM so they shut down cleanly, SIGKILL after `grace`.
    pub fn stop_dir(dir: &Path, grace: Duration) -> Result<usize> {
        let dir = dir.canonicalize()?;
        let pids = live_pids_in(&dir);
        for &p in &pids {
            signal(p, libc::SIGCONT);
            signal(p, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for &p in &pids {
            if alive(p) {
                signal(p, libc::SIGKILL);
            }
        }
        Ok(pids.len())
    }

    async fn setup_replication(&self) -> Result<()> {
        // Everything is created on the primary before any replica attaches. The
        // primary's binlog starts empty with the datadir, so each replica
        // replays it from the beginning and ends up with the same users and
        // database; read-only does not stop the replication SQL thread.
        let mut p = self.primary.root_conn().await?;
        let mut stmts = vec![
            format!("CREATE USER '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}'"),
            format!("GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1'"),
        ];
        for host in ["%", "127.0.0.1", "localhost"] {
            stmts.push(format!(
                "CREATE USER '{APP_USER}'@'{host}' IDENTIFIED BY '{APP_PASSWORD}'"
            ));
            stmts.push(format!(
                "GRANT ALL PRIVILEGES ON *.* TO '{APP_USER}'@'{host}' WITH GRANT OPTION"
            ));
            // Without this the app could write to read-only replicas, so a proxy
            // routing bug would silently fork the data instead of failing.
            stmts.push(format!(
                "REVOKE READ_ONLY ADMIN ON *.* FROM '{APP_USER}'@'{host}'"
            ));
            stmts.push(format!(
                "CREATE USER '{MONITOR_USER}'@'{host}' IDENTIFIED BY '{MONITOR_PASSWORD}'"
            ));
            // SLAVE MONITOR is what SHOW SLAVE STATUS needs since 10.5.
            stmts.push(format!(
                "GRANT REPLICATION CLIENT, PROCESS, SLAVE MONITOR ON *.* TO '{MONITOR_USER}'@'{host}'"
            ));
        }
        stmts.push(format!("CREATE DATABASE {DATABASE}"));
        for s in &stmts {
            p.query_drop(s)
                .await
                .with_context(|| format!("primary: {s}"))?;
        }
        drop(p);

        for r in &self.replicas {
            let mut c = r.root_conn().await?;
            // Retry quickly: restart tests kill the primary and expect the
            // replicas back within seconds, not the default minute.
            c.query_drop(format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
                 MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', \
                 MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
                self.primary.port
            ))
            .await?;
            c.query_drop("START SLAVE").await?;
        }
        self.wait_replicas_caught_up().await?;
        // Prove the proxy's login works everywhere, not just that events applied.
        for s in self.servers() {
            let mut c = s
                .conn()
                .await
                .with_context(|| format!("logging in as {APP_USER} on server {}", s.server_id))?;
            c.query_drop("SELECT 1").await?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let servers: Vec<&Server> = self.servers().collect();
        for s in &servers {
            s.send(libc::SIGCONT);
            s.send(libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for s in &servers {
            s.reap_until(deadline);
        }
        // A directory the caller named keeps the error logs a failed start points to;
        // `sandbox down` removes its node directories.
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Server {
    /// A lone server (no replication set up) inside network namespace `netns`, on port 3306
    /// of `bind` there, read-only and with replication not started at boot: a node of a
    /// failover lab. Its datadir lives in `dir` (under [`scratch_root`] so the watchdog
    /// reaps it if the test process dies); stop it with [`Server::kill`].
    pub async fn start_in_netns(
        dir: &Path,
        server_id: u32,
        netns: &str,
        bind: &str,
    ) -> Result<Server> {
        let template = template().await?;
        let node_dir = dir.join(format!("node{server_id}"));
        let s = Server {
            port: 3306,
            server_id,
            datadir: node_dir.join("data"),
            error_log: node_dir.join("error.log"),
            socket: socket_path(&node_dir, dir, server_id),
            dir: node_dir,
            read_only: true,
            netns: Some(netns.to_string()),
            bind: bind.to_string(),
            mariadbd: find_binary("mariadbd")?,
            tls: None,
            pid: AtomicU32::new(0),
            child: Mutex::new(None),
        };
        s.prepare_datadir(&template)?;
        s.spawn()?;
        if let Err(e) = s.wait_ready().await {
            s.kill();
            return Err(e.into_anyhow(&s));
        }
        Ok(s)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The pid of the current mariadbd process; changes on `restart`.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// TCP-only options: mysql_async otherwise reads `@@socket` after connecting
    /// and silently switches to the Unix socket, bypassing whatever sits on the port.
    pub fn opts(&self, user: &str, pass: &str) -> Opts {
        let b = OptsBuilder::default().user(Some(user)).pass(Some(pass));
        if self.netns.is_some() {
            return b.socket(Some(self.socket.to_string_lossy())).into();
        }
        b.ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .prefer_socket(false)
            .into()
    }

    /// A connection as the app user with `rwtest` selected.
    pub async fn conn(&self) -> Result<Conn> {
        let opts =
            OptsBuilder::from_opts(self.opts(APP_USER, APP_PASSWORD)).db_name(Some(DATABASE));
        Ok(Conn::new(opts).await?)
    }

    /// Root has no password in the sandbox; only the harness uses it.
    pub async fn root_conn(&self) -> Result<Conn> {
        Ok(Conn::new(self.opts("root", "")).await?)
    }

    /// A server-wide status counter (`SHOW GLOBAL STATUS`), read over a connection closed
    /// in order, so that it adds no aborted client of its own.
    pub async fn global_status(&self, name: &str) -> Result<u64> {
        let mut c = self.root_conn().await?;
        let row: Option<(String, u64)> = c
            .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
            .await?;
        c.disconnect().await?;
        Ok(row.with_context(|| format!("no status variable {name}"))?.1)
    }

    /// SIGKILL, i.e. a crash: no clean shutdown, the datadir stays as it was.
    pub fn kill(&self) {
        self.send(libc::SIGCONT);
        self.send(libc::SIGKILL);
        self.reap_until(Instant::now() + Duration::from_secs(10));
    }

    /// Boots the server again on the same port and datadir. Replicas resume
    /// replicating on their own: the CHANGE MASTER settings are persistent.
    pub async fn restart(&self) -> Result<()> {
        if self.is_running() {
            bail!("server {} is still running", self.server_id);
        }
        self.spawn()?;
        match self.wait_ready().await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill();
                Err(e.into_anyhow(self))
            }
        }
    }

    /// SIGSTOP: the port stays open and connects complete in the kernel
    /// backlog, but nothing answers, which is how a hung backend looks. Returns once every
    /// thread of the server has stopped: `kill` returns before they do, and on a loaded
    /// machine a thread may run on for a while (a test once saw two replies 1 ms after it).
    pub fn pause(&self) {
        self.send(libc::SIGSTOP);
        // A thread in uninterruptible sleep (a slow fsync) stops once it wakes.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.all_threads_stopped() {
            assert!(
                Instant::now() < deadline,
                "server {} did not stop within 30 s of SIGSTOP",
                self.server_id
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether every thread of the server is in the stopped state (`T` in its `stat`); a
    /// server no longer running counts as stopped.
    fn all_threads_stopped(&self) -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return true;
        };
        tasks.filter_map(|t| t.ok()).all(|t| {
            std::fs::read_to_string(t.path().join("stat")).map_or(true, |stat| {
                // The state follows the command name, which is in parentheses.
                stat.rsplit_once(')')
                    .is_none_or(|(_, rest)| rest.trim_start().starts_with(['T', 'X', 'Z']))
            })
        })
    }

    pub fn resume(&self) {
        self.send(libc::SIGCONT);
    }

    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap();
        match guard.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => alive(self.pid()),
        }
    }

    /// Waits until this replica has applied the GTID position `pos`.
    pub async fn wait_gtid(&self, pos: &str) -> Result<()> {
        let mut c = self.root_conn().await?;
        let r: Option<i64> = c
            .exec_first(
                "SELECT MASTER_GTID_WAIT(?, ?)",
                (pos, CATCH_UP_TIMEOUT_SECS),
            )
            .await?;
        if r == Some(0) {
            return Ok(());
        }
        let st: Option<mysql_async::Row> = c.query_first("SHOW SLAVE STATUS").await?;
        let field = |name: &str| -> String {
            st.as_ref()
                .and_then(|row| row.get_opt::<Option<String>, _>(name))
                .and_then(|v| v.ok())
                .flatten()
                .unwrap_or_default()
        };
        bail!(
            "replica {} did not reach {pos:?} in {CATCH_UP_TIMEOUT_SECS}s (io={}, sql={}, \
             last_io_error={:?}, last_sql_error={:?}, gtid_slave_pos={:?})",
            self.server_id,
            field("Slave_IO_Running"),
            field("Slave_SQL_Running"),
            field("Last_IO_Error"),
            field("Last_SQL_Error"),
            field("Gtid_Slave_Pos"),
        )
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", self.datadir.display()),
            format!("--socket={}", self.socket.display()),
            format!("--pid-file={}", self.dir.join("mariadbd.pid").display()),
            format!("--log-error={}", self.error_log.display()),
            format!("--port={}", self.port),
            format!("--bind-address={}", self.bind),
            format!("--server-id={}", self.server_id),
            "--log-bin=mysql-bin".into(),
            "--relay-log=relay-bin".into(),
            "--log-slave-updates".into(),
            "--gtid-strict-mode=1".into(),
            "--binlog-format=ROW".into(),
            "--skip-name-resolve".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--sync-binlog=0".into(),
            "--max-connections=3000".into(),
            // Health checks that only open a TCP connection count as connect
            // errors; the default 100 would get 127.0.0.1 blocked mid-suite.
            "--max-connect-errors=1000000000".into(),
            // Notice a paused or killed primary in seconds, not a minute.
            "--slave-net-timeout=5".into(),
            // What a Debian-configured server uses, rather than latin1.
            "--character-set-server=utf8mb4".into(),
            "--collation-server=utf8mb4_general_ci".into(),
            // Room for the 40 MB BLOBs of the large-packet tests (the default is 16 MiB).
            "--max-allowed-packet=256M".into(),
        ];
        a.extend(INNODB_ARGS.iter().map(|s| s.to_string()));
        a.extend(run_as().map(String::from));
        if self.read_only {
            a.push("--read-only=1".into());
        }
        if self.netns.is_some() {
            // How a failover node boots: its role is decided by whoever manages it, not by
            // leftover replication settings.
            a.push("--skip-slave-start".into());
            // Lossless failover: a commit returns to the client only once a replica has the
            // transaction in its relay log (AFTER_SYNC), so the promoted replica holds every
            // acknowledged write. Every node is configured for both roles. A lone primary does
            // not wait for a replica it does not have; and a crashed primary coming back as a
            // replica drops from its binlog what it wrote but never got acknowledged (MariaDB's
            // semi-sync crash recovery, see `--init-rpl-role`), instead of holding it as an
            // errant transaction.
            a.extend(SEMI_SYNC_ARGS.iter().map(|s| s.to_string()));
        }
        if let Some(t) = &self.tls {
            a.push(format!("--ssl-cert={}", t.cert.display()));
            a.push(format!("--ssl-key={}", t.key.display()));
        }
        a
    }

    fn prepare_datadir(&self, template: &Path) -> Result<()> {
        if self.dir.exists() && !is_node_dir(&self.dir) {
            bail!(
                "{} exists and is not a sandbox node (no data/ or server logs in it): \
                 not deleting it; choose another --dir",
                self.dir.display()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir)?;
        copy_dir(template, &self.datadir)
            .with_context(|| format!("copying template to {}", self.datadir.display()))
    }

    fn spawn(&self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))?;
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the server, so the pid is mariadbd's own.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.mariadbd);
                c
            }
            None => Command::new(&self.mariadbd),
        };
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a terminal's Ctrl-C must not hit the servers
            // before the watchdog (or `sandbox down`) deals with them.
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.mariadbd.display()))?;
        let pid = child.id();
        self.pid.store(pid, Ordering::SeqCst);
        std::fs::write(self.dir.join(PID_FILE), format!("{pid}\n"))?;
        *self.child.lock().unwrap() = Some(child);
        Ok(())
    }

    /// Waits for the first boot; if the auto-picked port was taken by someone
    /// else in the meantime, starts over on another one.
    async fn wait_ready_or_move(&mut self, fixed_port: bool, template: &Path) -> Result<()> {
        let mut attempt = 1;
        loop {
            match self.wait_ready().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.kill();
                    if fixed_port || attempt >= PORT_ATTEMPTS || !e.maybe_port_clash() {
                        return Err(e.into_anyhow(self));
                    }
                    tracing::debug!(port = self.port, "sandbox port clash, retrying");
                    attempt += 1;
                    self.prepare_datadir(template)?;
                    self.port = pick_port()?;
                    self.spawn()?;
                }
            }
        }
    }

    async fn wait_ready(&self) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            {
                let mut guard = self.child.lock().unwrap();
                if let Some(c) = guard.as_mut() {
                    if let Ok(Some(status)) = c.try_wait() {
                        return Err(StartError::Exited(status.to_string()));
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(StartError::Timeout);
            }
            let attempt =
                tokio::time::timeout(Duration::from_secs(2), Conn::new(self.opts("root", "")))
                    .await;
            if let Ok(Ok(mut c)) = attempt {
                // Something answered; make sure it is our server and not one of
                // a concurrent test binary that won the race for the port.
                let sock: Option<String> = c
                    .query_first("SELECT @@socket")
                    .await
                    .map_err(|e| StartError::Other(e.to_string()))?;
                let _ = c.disconnect().await;
                if sock.as_deref() == Some(&*self.socket.to_string_lossy()) {
                    return Ok(());
                }
                return Err(StartError::PortStolen);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn send(&self, sig: libc::c_int) {
        if self.is_running() {
            signal(self.pid(), sig);
        }
    }

    /// Waits for the process to exit (so no zombie is left), SIGKILLing it at
    /// `deadline`.
    fn reap_until(&self, deadline: Instant) {
        let mut guard = self.child.lock().unwrap();
        let Some(child) = guard.as_mut() else {
            return;
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        *guard = None;
    }
}

enum StartError {
    Exited(String),
    Timeout,
    PortStolen,
    Other(String),
}

impl StartError {
    fn maybe_port_clash(&self) -> bool {
        matches!(self, StartError::Exited(_) | StartError::PortStolen)
    }

    fn into_anyhow(self, s: &Server) -> anyhow::Error {
        let what = match self {
            StartError::Exited(st) => format!("exited during startup ({st})"),
            StartError::Timeout => format!("not accepting connections after {READY_TIMEOUT:?}"),
            StartError::PortStolen => "port is served by another mariadbd".to_string(),
            StartError::Other(e) => e,
        };
        anyhow!(
            "mariadbd server_id={} port={} {what}; end of {}:\n{}",
            s.server_id,
            s.port,
            s.error_log.display(),
            tail(&s.error_log, 3000)
        )
    }
}

/// The per-process template datadir, created on first use.
async fn template() -> Result<PathBuf> {
    static TEMPLATE: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_try_init(|| async {
            // Blocking work (apt, install-db, process spawning) off the runtime.
            tokio::task::spawn_blocking(init_template)
                .await
                .map_err(|e| anyhow!("template init panicked: {e}"))?
        })
        .await
        .cloned()
}

fn init_template() -> Result<PathBuf> {
    ensure_mariadb_installed()?;
    start_watchdog()?;
    sweep_stale();
    let t0 = Instant::now();
    let dir = scratch_root().join(format!("{DIR_PREFIX}{}-template", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let datadir = dir.join("data");
    let log = dir.join("install-db.log");
    let out = std::fs::File::create(&log)?;
    let status = Command::new(find_binary("mariadb-install-db")?)
        .arg("--no-defaults")
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg(format!("--datadir={}", datadir.display()))
        .args(run_as())
        .args(INNODB_ARGS)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .context("running mariadb-install-db")?;
    if !status.success() {
        bail!(
            "mariadb-install-db failed ({status}):\n{}",
            tail(&log, 4000)
        );
    }
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "sandbox template ready"
    );
    Ok(datadir)
}

/// CI and fresh machines may lack MariaDB; the harness installs it rather than
/// making every entry point remember to.
fn ensure_mariadb_installed() -> Result<()> {
    for binary in ["mariadbd", "mariadb-install-db", "mariadb"] {
        ensure_installed(binary, &["mariadb-server", "mariadb-client"])?;
    }
    Ok(())
}

/// Installs Debian `packages` with apt-get when `binary` is not on this machine, so the test
/// command works on a fresh one (tests run as root there).
pub fn ensure_installed(binary: &str, packages: &[&str]) -> Result<()> {
    if find_binary(binary).is_ok() {
        return Ok(());
    }
    tracing::warn!("{binary} not found, installing {packages:?} with apt-get");
    let apt = |args: &[&str]| -> Result<()> {
        let st = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .context("running apt-get (is this Debian/Ubuntu, running as root?)")?;
        if !st.success() {
            bail!("apt-get {args:?} failed: {st}");
        }
        Ok(())
    };
    apt(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args)?;
    find_binary(binary).map(|_| ())
}

/// A fresh directory for files a test makes (certificates, configs, logs), removed with this
/// process's sandboxes when it exits, whether its tests passed or not.
pub fn scratch_dir(name: &str) -> Result<PathBuf> {
    start_watchdog()?;
    let d = scratch_root().join(format!("{DIR_PREFIX}{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Looks in PATH and then the sbin directories, which a non-login PATH often lacks.
fn find_binary(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{name} not found in PATH or sbin directories"))
}

/// See the module docs. The write end of the pipe lives in a static, so it
/// closes exactly when this process exits.
fn start_watchdog() -> Result<()> {
    // Held while starting: a second watchdog's pipe, dropped, would set it off at once.
    static STDIN: Mutex<Option<ChildStdin>> = Mutex::new(None);
    let mut held = STDIN.lock().unwrap_or_else(|e| e.into_inner());
    if held.is_some() {
        return Ok(());
    }
    let pattern = scratch_root().join(format!("{DIR_PREFIX}{}-", std::process::id()));
    let script = format!(
        r#"trap '' INT HUP TERM
read _ || true
for d in '{p}'*; do
  [ -d "$d" ] || continue
  for f in "$d"/*/{PID_FILE}; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    if grep -qaF -- "--datadir=$d/node" /proc/"$p"/cmdline 2>/dev/null; then kill -CONT "$p"; kill -KILL "$p"; fi
  done
  rm -rf -- "$d"
done"#,
        p = pattern.display()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawning sandbox watchdog")?;
    *held = child.stdin.take();
    // Not waited for: it must outlive us, and init reaps it.
    std::mem::forget(child);
    Ok(())
}

/// Removes sandboxes left by processes that died before their watchdog could
/// act (e.g. the machine rebooted, or the watchdog itself was killed).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(scratch_root()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if owner == std::process::id() || alive(owner) {
            continue;
        }
        let dir = e.path();
        for p in live_pids_in(&dir) {
            signal(p, libc::SIGCONT);
            signal(p, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `--user=root` as root, which mariadbd refuses to run as otherwise; nothing for anyone
/// else, who runs the servers as themselves.
fn run_as() -> Option<&'static str> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    (unsafe { libc::geteuid() } == 0).then_some("--user=root")
}

/// `node<N>` holding what a sandbox server leaves there: `sandbox down` and `up` delete
/// such directories, so a user's `node_modules` or `nodes` must not look like one.
fn is_node_dir(path: &Path) -> bool {
    let numbered = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("node"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    numbered
        && (path.join("data").is_dir()
            || path.join("stderr.log").is_file()
            || path.join("error.log").is_file())
}

/// Pids from `<dir>/*/server.pid` that are still mariadbds of this directory
/// (checked against their command line, as the pid may have been reused: by then it may
/// be another sandbox's server, whose directory may share this one's prefix).
fn live_pids_in(dir: &Path) -> Vec<u32> {
    let prefix = format!("--datadir={}/node", dir.display());
    let ours = |arg: &str| {
        arg.strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix("/data"))
            .is_some_and(|n| n.parse::<u32>().is_ok())
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join(PID_FILE)).ok())
        .filter_map(|s| s.trim().parse::<u32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| {
                    c.split(|&b| b == 0)
                        .any(|a| ours(&String::from_utf8_lossy(a)))
                })
                .unwrap_or(false)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: libc::c_int) {
    if pid != 0 {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// Where per-process sandboxes live: `$RWPROXY_SANDBOX_ROOT` if set, else
/// `/dev/shm` when writable, else `temp_dir()`. tmpfs matters: the system-table
/// bootstrap does about a thousand fdatasyncs, which took mariadb-install-db
/// from 0.5 s on tmpfs to 4.3 s on this machine's disk.
/// A fresh directory for servers started outside a [`Cluster`]; the watchdog kills what
/// runs there and removes it when this process exits.
pub fn process_dir(tag: &str) -> Result<PathBuf> {
    let d = scratch_root().join(format!("{DIR_PREFIX}{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

pub fn scratch_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Some(d) = std::env::var_os("RWPROXY_SANDBOX_ROOT") {
            return PathBuf::from(d);
        }
        let shm = Path::new("/dev/shm");
        let probe = shm.join(format!("{DIR_PREFIX}probe-{}", std::process::id()));
        if std::fs::create_dir(&probe).is_ok() {
            let _ = std::fs::remove_dir(&probe);
            return shm.to_path_buf();
        }
        std::env::temp_dir()
    })
    .clone()
}

/// A port nobody listens on right now, for things started next to a sandbox
/// (e.g. the proxy). Racy by nature: whoever binds it should retry on clash.
pub fn free_port() -> Result<u16> {
    pick_port()
}

/// A port nobody listens on right now; racy by nature, hence the retries.
fn pick_port() -> Result<u16> {
    let span = (AUTO_PORT_RANGE.end - AUTO_PORT_RANGE.start) as u64;
    for _ in 0..200 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        let port = AUTO_PORT_RANGE.start + (h.finish() % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    // Fall back to whatever the kernel offers.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Unix socket paths are limited to 108 bytes; a deep `--dir` would exceed that.
fn socket_path(node_dir: &Path, root: &Path, server_id: u32) -> PathBuf {
    let p = node_dir.join("mariadbd.sock");
    if p.as_os_str().len() < 100 {
        return p;
    }
    let mut h = RandomState::new().build_hasher();
    h.write(root.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("rwproxy-{:x}-{server_id}.sock", h.finish()))
}

pub(crate) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
