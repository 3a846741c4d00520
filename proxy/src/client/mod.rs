//! One client connection: login, then a loop reading commands and dispatching them.

pub mod command;
pub mod diagnostics;
pub mod kill;
pub mod prepared;
pub mod query;
pub mod registry;
pub mod session;
pub mod slots;
pub mod trim;

use crate::backend::conn::{BackendConn, BackendError, ConnKey};
use crate::backend::relay::{self, Expect, RelayError, RunsOn};
use crate::backend::Health;
use crate::cluster::Cluster;
use crate::protocol::command::*;
use crate::protocol::handshake::{self, ClientLogin, Greeting, Hello, LoginError};
use crate::protocol::message::{self, codes, Completion, SqlError};
use crate::protocol::packet::{
    packet_count, read_handshake_packet, PacketReader, PacketTooLarge, PacketWriter, MAX_HANDSHAKE,
};
use crate::protocol::stream::{self, StreamRead, StreamWrite};
use crate::router::Target;
use crate::session::names;
use crate::session::state::NEVER;
use crate::stats::counters::{ErrorKind, Route};
use registry::{Killed, Stuck};
use session::{Checkout, Diag, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// How long a client has from connecting to being logged in (MariaDB's default
/// `connect_timeout`): a socket that never finishes its login must not hold a file
/// descriptor forever.
pub(crate) const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a client may stall in the middle of a packet: a client that stops half-way
/// through a command must not keep its session, and a transaction's locks, forever.
/// (MariaDB waits `wait_timeout`, 8 hours by default, for the rest of a command; this is
/// MariaDB's `net_read_timeout` instead.) The bound is on silence, not on the whole packet,
/// so a large command over a slow link is not cut off.
const NET_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a client may take nothing of a reply before its session ends: MariaDB's default
/// `net_write_timeout`; a session that sets its own gets that, as on a server. A client that
/// stops reading must not keep its backend connection, and a transaction's locks, forever;
/// the server behind gives up on the proxy after its own `net_write_timeout` and frees its
/// side, not the proxy's.
const NET_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a session keeps the connection of a statement that left warnings, waiting for
/// the client's next command (see `Session::finish`).
const HOLD_FOR_DIAGNOSTICS: std::time::Duration = std::time::Duration::from_secs(1);

/// The client's side of the socket.
pub struct ClientIo {
    pub reader: PacketReader<StreamRead>,
    pub writer: PacketWriter<StreamWrite>,
    /// The error the proxy answered the current command with itself, if it did.
    pub sent_error: Option<SqlError>,
    /// The sequence id a reply to the current command starts at: one past its last packet's,
    /// 1 unless the command took packets of 16 MiB and more.
    pub reply_seq: u8,
}

impl ClientIo {
    /// Until the login is done, a packet may be no longer than a handshake's.
    fn new((r, w): (StreamRead, StreamWrite)) -> Self {
        let mut reader = PacketReader::new(r).stalling_at_most(NET_READ_TIMEOUT);
        reader.set_packet_limit(MAX_HANDSHAKE);
        let mut writer = PacketWriter::new(w);
        writer.set_stall_limit(NET_WRITE_TIMEOUT);
        ClientIo {
            reader,
            writer,
            sent_error: None,
            reply_seq: 1,
        }
    }

    /// Takes the session's `net_write_timeout` (after a `SET`, or a reset that drops it).
    pub fn follow_net_write_timeout(&mut self, state: &crate::session::state::SessionState) {
        let limit = state.net_write_timeout().flatten();
        self.writer
            .set_stall_limit(limit.unwrap_or(NET_WRITE_TIMEOUT));
    }

    /// Takes the `net_write_timeout` a server reported for the session, which is the number
    /// whatever the statement said (`DEFAULT`, an expression, a procedure's `SET`).
    fn follow_reported_write_timeout(&mut self, value: &str) {
        if let Some(limit) = crate::session::state::seconds_of(value) {
            self.writer.set_stall_limit(limit);
        }
    }

    /// Sends a reply the proxy made itself to the current command.
    pub async fn reply(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.writer.write_packet(self.reply_seq, payload).await?;
        self.writer.flush().await
    }

    pub async fn error(&mut self, e: &SqlError) -> std::io::Result<()> {
        self.sent_error = Some(e.clone());
        self.reply(&e.payload()).await
    }

    pub async fn ok(&mut self, status: u16) -> std::io::Result<()> {
        self.reply(&message::ok_payload(&Completion {
            status,
            ..Completion::default()
        }))
        .await
    }
}

/// What ends a session early.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("client i/o: {0}")]
    Client(#[from] std::io::Error),
    #[error("backend lost mid-reply or mid-transaction; client disconnected")]
    BackendLost,
    #[error("killed by KILL CONNECTION")]
    Killed,
    #[error("COMMIT/ROLLBACK with RELEASE: disconnected, as by a server")]
    Released,
    #[error("idle past its wait_timeout")]
    IdleTimeout,
}

/// What the listener tells every session.
pub struct ClientSettings {
    /// Server version announced in the greeting.
    pub version: String,
    /// Idle clients are disconnected after this long (`wait-timeout`).
    pub wait_timeout: Option<std::time::Duration>,
    /// The same for interactive clients (`interactive-timeout`).
    pub interactive_timeout: Option<std::time::Duration>,
    /// The first command size refused to a logged-in client (`max-allowed-packet`).
    pub max_allowed_packet: usize,
    /// Atlas's `charset`: sessions whose handshake names no known character set start with
    /// `SET NAMES <charset>`.
    pub charset: Option<String>,
    /// Client connections open (logging in or logged in) and their bound.
    pub slots: Arc<slots::ClientSlots>,
    /// Client sessions alive now.
    pub active: Arc<std::sync::atomic::AtomicUsize>,
    /// What each session is doing, for the admin console.
    pub registry: Arc<registry::Registry>,
    /// Digests, counters and the SQL log every session records into.
    pub stats: Arc<crate::stats::Stats>,
    /// Offered to clients when configured (`ssl-cert`, `ssl-key`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `require-secure-transport`: plain-TCP logins are refused.
    pub require_secure_transport: bool,
    /// `max-prepared-memory`, shared by every session.
    pub prepared_memory: Arc<prepared::PreparedMemory>,
}

/// Counts a session as alive for as long as it exists.
struct ActiveSession(Arc<std::sync::atomic::AtomicUsize>);

impl ActiveSession {
    fn new(n: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ActiveSession(n.clone())
    }
}

impl Drop for ActiveSession {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    id: u32,
    cluster: Arc<Cluster>,
    info: Arc<ClientSettings>,
) {
    let _ = stream.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let logged_in = crate::timer::timeout(LOGIN_TIMEOUT, login(stream, peer, id, &cluster, &info));
    let Ok(logged_in) = logged_in.await else {
        tracing::info!(client = %peer, "login not completed within {} s; closing", LOGIN_TIMEOUT.as_secs());
        return;
    };
    let (mut io, login) = match logged_in {
        Ok(x) => x,
        Err(LoginError::Rejected(e)) => {
            tracing::info!(client = %peer, "login refused: {e}");
            info.stats.counters.error(ErrorKind::Auth);
            return;
        }
        Err(LoginError::Io(e)) => {
            tracing::debug!(client = %peer, "client left during login: {e}");
            return;
        }
    };
    io.reader.set_packet_limit(info.max_allowed_packet);
    let password = cluster.password_of(&login.user).unwrap_or_default();
    let key = ConnKey {
        user: names::intern(&login.user),
        collation: login.collation,
        capabilities: (login.capabilities & crate::backend::conn::session_capabilities()).bits(),
    };
    let entry = info.registry.enter(id, peer, fd, &login.user, &password);
    let mut session = Session::new(cluster, key, &info, entry.status.clone(), login.scramble);
    session.client_tracks = login
        .capabilities
        .contains(mysql_common::constants::CapabilityFlags::CLIENT_SESSION_TRACK);
    if info.interactive_timeout != info.wait_timeout
        && login
            .capabilities
            .contains(mysql_common::constants::CapabilityFlags::CLIENT_INTERACTIVE)
    {
        // As a server starts an interactive session's `wait_timeout` at `interactive_timeout`
        // (a `SET wait_timeout` replaces it, `DEFAULT` gives the proxy's `wait-timeout`).
        session.login_wait_timeout = Some(info.interactive_timeout.unwrap_or(NEVER));
        session.set_wait_timeout(session.login_wait_timeout);
    }
    tracing::debug!(client = %peer, user = %login.user, session = id, "logged in");
    let known_mode = session.cluster.sql_mode_flags();
    if login.database.is_some() || known_mode.is_none() {
        // A server refuses a login naming an unknown schema (1049); so does the proxy, by
        // bringing a pooled connection to it (free when one is already there). A read
        // backend does, so logins keep working while the write backend is down. The
        // connection also tells the sql_mode flags, when none is known yet.
        session.state.schema = login.database.as_deref().map(names::intern);
        let mut exclude = Vec::new();
        match session.checkout(Target::Read, &mut exclude).await {
            Ok(c) => {
                session.sql_mode_flags = c.lease.conn.status & message::SQL_MODE_FLAGS;
                session.release_keeping_run(c);
            }
            Err(e) if login.database.is_some() => {
                tracing::info!(client = %peer, "login refused: {e}");
                // No server to check the schema, or the server's own answer to the login
                // (an unknown or forbidden schema).
                let kind = match e.code {
                    // Stopped by a kill or the proxy's shutdown: no failure of anyone's.
                    c if c == codes::QUERY_INTERRUPTED.0 || c == codes::CONNECTION_KILLED.0 => None,
                    c if c == codes::BACKEND_UNREACHABLE.0 || e.state.starts_with(b"08") => {
                        Some(ErrorKind::NoBackend)
                    }
                    _ => Some(ErrorKind::Auth),
                };
                if let Some(kind) = kind {
                    session.stats.counters.error(kind);
                }
                let _ = handshake::refuse(&mut io.writer, &login, &e).await;
                return;
            }
            Err(_) => {}
        }
    } else {
        session.sql_mode_flags = known_mode.unwrap_or_default();
    }
    let status = message::SERVER_STATUS_AUTOCOMMIT | session.sql_mode_flags;
    if handshake::admit(&mut io.writer, &login, status)
        .await
        .is_err()
    {
        return;
    }
    // The console shows the login's schema before the first command ends.
    entry.status.end(
        std::time::Instant::now(),
        session.state.schema.as_ref(),
        None,
        false,
        None,
    );
    let _active = ActiveSession::new(&info.active);
    let end = match run(&mut session, &mut io, &info).await {
        // A reply cut off by the kill's shutdown of the client's socket.
        Err(SessionEnd::Client(_)) if entry.status.is_killed() => Err(SessionEnd::Killed),
        end => end,
    };
    session.close();
    if matches!(end, Err(SessionEnd::IdleTimeout)) {
        entry.status.client_closing();
        // As MariaDB at `wait_timeout`: the client's next command then fails to send
        // ("server has gone away", 2006), which client libraries and frameworks take as the
        // cue to reconnect and retry. After an orderly close it would be sent and its reply
        // never come ("lost connection during query", 2013), which they must not retry: the
        // statement may have run. Nothing is waiting to be sent when a session is idle, so
        // the reset loses nothing.
        stream::close_with_reset(io.reader.into_inner(), io.writer.into_inner());
    }
    if let Err(e) = end {
        tracing::debug!(client = %peer, session = id, "session ended: {e}");
    }
}

/// Greets the client, switches to TLS if it asks, and authenticates it.
async fn login(
    mut stream: TcpStream,
    peer: SocketAddr,
    id: u32,
    cluster: &Cluster,
    info: &ClientSettings,
) -> Result<(ClientIo, ClientLogin), LoginError> {
    let greeting = Greeting {
        server_version: &info.version,
        connection_id: id,
        collation: 45, // utf8mb4_general_ci
        sql_mode_flags: cluster.sql_mode_flags().unwrap_or_default(),
    };
    let hello = Hello::new(info.tls.is_some(), info.require_secure_transport);
    let mut w = PacketWriter::new(&mut stream);
    w.write_packet(0, &hello.payload(&greeting)).await?;
    w.flush().await?;
    let (seq, first) = match read_handshake_packet(&mut stream).await {
        Ok(read) => read,
        Err(e) => {
            let mut w = PacketWriter::new(&mut stream);
            return Err(handshake::refuse_oversized(&mut w, e).await);
        }
    };
    let (mut io, seq, first) = match &info.tls {
        Some(acceptor) if handshake::is_ssl_request(&first) => {
            let tls = acceptor.accept(stream).await.map_err(|e| {
                LoginError::Io(std::io::Error::new(
                    e.kind(),
                    format!("TLS handshake failed: {e}"),
                ))
            })?;
            let mut io = ClientIo::new(stream::tls(tls));
            match read_handshake_packet(io.reader.get_mut()).await {
                Ok((seq, login_request)) => (io, seq, login_request),
                Err(e) => return Err(handshake::refuse_oversized(&mut io.writer, e).await),
            }
        }
        _ => (ClientIo::new(stream::plain(stream)), seq, first),
    };
    let secure = io.reader.get_ref().is_tls();
    let login = handshake::authenticate(
        &mut io.reader,
        &mut io.writer,
        &hello,
        (seq, &first),
        secure,
        &peer.ip().to_string(),
        |u| cluster.password_of(u),
    )
    .await;
    match login {
        Ok(login) => Ok((io, login)),
        Err(LoginError::Io(e)) => Err(handshake::refuse_oversized(&mut io.writer, e).await),
        Err(rejected) => Err(rejected),
    }
}

/// Why the wait for a client's next command ended.
enum Wake {
    Command,
    /// Idle past `wait-timeout`.
    IdleTimeout,
    /// The proxy is shutting down and this session holds no transaction.
    Shutdown,
    /// `KILL CONNECTION` from another session.
    Killed,
    /// Pinned to a backend taken offline, whose drain time ran out.
    Drained,
    /// The client closed the connection.
    Closed,
}

/// Waits until the client sends something, releasing a connection kept for `SHOW WARNINGS`
/// once the client falls silent, and ending sessions idle since `idle_since` for
/// `wait_timeout` (the registry's sweeper wakes them) or the client's own `SET wait_timeout`,
/// or on shutdown. A read that loses to a timer or a wake is cancelled without losing bytes.
/// `status` is `s.status`, which the caller holds a reference to for the whole session: a
/// reference taken per wait cost two atomic operations on a shared cache line per command.
async fn wait_for_command(
    s: &mut Session,
    status: &registry::SessionStatus,
    io: &mut ClientIo,
    idle_since: std::time::Instant,
    wait_timeout: Option<std::time::Duration>,
) -> std::io::Result<Wake> {
    if io.reader.has_buffered() {
        // Pipelined commands come from the buffer, and writes skip tokio's budget (see
        // `protocol::stream`): without this, a client pipelining thousands of pings would keep
        // every other session of its event thread waiting.
        tokio::task::coop::consume_budget().await;
        return Ok(Wake::Command);
    }
    loop {
        if status.is_killed() {
            return Ok(Wake::Killed);
        }
        if s.registry.is_shutting_down() && !s.in_transaction() {
            return Ok(Wake::Shutdown);
        }
        let hold_until = s
            .held
            .is_some()
            .then(|| tokio::time::Instant::from_std(idle_since + HOLD_FOR_DIAGNOSTICS));
        // A transaction idle on a backend taken offline holds its locks no longer than the
        // drain time (a wake starts the clock when the operator acts).
        let drain_at = drain_deadline(s).map(tokio::time::Instant::from_std);
        // The client's own `SET wait_timeout` (rare: a timer only then).
        let own_timeout_at = s
            .wait_timeout
            .map(|t| tokio::time::Instant::from_std(idle_since + t));
        // One timer for all: every select branch costs each wait a poll.
        let wake_at = hold_until
            .into_iter()
            .chain(drain_at)
            .chain(own_timeout_at)
            .min();
        tokio::select! {
            // The client's bytes first: when they are what woke the session, the timers and
            // the kill/shutdown wake are not polled at all (the loop's checks above see a
            // kill or shutdown before the next wait anyway).
            biased;
            // Reads rather than waits for readiness: over TLS, decrypted bytes may already
            // sit in the TLS layer while the socket has nothing more. A cancelled read
            // loses nothing.
            r = io.reader.fill_to(1) => return match r {
                // A kill's wake and the client's bytes can come together; the bytes win
                // this select, but not over a kill that came before them.
                Ok(()) if status.killed_before_command() => Ok(Wake::Killed),
                Ok(()) => Ok(Wake::Command),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Wake::Closed),
                Err(e) => Err(e),
            },
            // A connection kept only for a possible `SHOW WARNINGS` goes back to the pool if
            // the client falls silent, so idle clients never sit on backend connections.
            () = sleep_until(wake_at) => {
                // Still offline, with the drain time as it is now (it may have been raised,
                // or the backend brought back).
                if drain_deadline(s).is_some_and(|d| std::time::Instant::now() >= d) {
                    return Ok(Wake::Drained);
                }
                if s.wait_timeout.is_some_and(|t| idle_since.elapsed() >= t) {
                    return Ok(Wake::IdleTimeout);
                }
                if hold_until.is_some_and(|h| tokio::time::Instant::now() >= h) {
                    s.release_held();
                }
            }
            // Killed, shutting down, or idle too long: the checks above say which of the
            // first two, the clock whether the sweeper's wake still holds.
            () = status.interrupted() => {
                // The client's own timeout replaces the proxy's, as on a server.
                if s.wait_timeout.or(wait_timeout).is_some_and(|t| idle_since.elapsed() >= t) {
                    return Ok(Wake::IdleTimeout);
                }
            }
        }
    }
}

/// When a session pinned to a backend taken offline must let go of it.
fn drain_deadline(s: &Session) -> Option<std::time::Instant> {
    let c = s.pinned.as_ref()?;
    c.backend.drain_deadline(s.cluster.drain_timeout())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => crate::timer::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn run(s: &mut Session, io: &mut ClientIo, info: &ClientSettings) -> Result<(), SessionEnd> {
    let mut packet = Vec::with_capacity(1024);
    // When the last reply went out.
    let mut idle_since = std::time::Instant::now();
    let status = s.status.clone();
    loop {
        if status.is_killed() {
            // Like a server, close without a word.
            return Err(SessionEnd::Killed);
        }
        if s.end_after_reply {
            return Ok(());
        }
        if packet.capacity() > trim::BIG_BUFFER {
            // Grown for the last command alone.
            trim::freed(packet.capacity());
            packet = Vec::with_capacity(1024);
        }
        match wait_for_command(s, &status, io, idle_since, info.wait_timeout).await? {
            Wake::Command => {}
            Wake::IdleTimeout => return Err(SessionEnd::IdleTimeout),
            Wake::Shutdown => {
                tracing::debug!(session = s.id, "proxy shutting down; closing idle session");
                return Ok(());
            }
            Wake::Killed => return Err(SessionEnd::Killed),
            Wake::Drained => {
                tracing::warn!(session = s.id, "drain time over on an offline backend; closing the idle session (its transaction rolls back)");
                return Ok(());
            }
            Wake::Closed => return Ok(()),
        }
        let read = if io.reader.has_whole_packet() {
            io.reader.read_logical(&mut packet).await
        } else {
            match read_rest_unless_killed(&mut io.reader, &mut packet, &status).await {
                Some(read) => read,
                None => return Err(SessionEnd::Killed),
            }
        };
        match read {
            // A command starts a new exchange at sequence 0; its last packet's id is the
            // number of full 16 MiB packets before it. Anything else is what MariaDB calls
            // "Got packets out of order": answer that and hang up, as it does.
            Ok(seq) if seq != (packet.len() / 0xFF_FFFF) as u8 => {
                io.error(&message::err(
                    codes::NET_PACKETS_OUT_OF_ORDER,
                    "Got packets out of order",
                ))
                .await?;
                return Ok(());
            }
            Ok(seq) => io.reply_seq = seq.wrapping_add(1),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            // As a server does: say so after the packet that reached the limit, and hang up
            // without reading the rest of it.
            Err(e) if let Some(too_large) = PacketTooLarge::of(&e) => {
                tracing::info!(session = s.id, "closing: client sent a {e}");
                let err = message::err(
                    codes::NET_PACKET_TOO_LARGE,
                    "Got a packet bigger than 'max_allowed_packet' bytes",
                );
                io.writer
                    .write_packet(too_large.seq.wrapping_add(1), &err.payload())
                    .await?;
                io.writer.flush().await?;
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                io.error(&message::err(
                    codes::NET_PACKETS_OUT_OF_ORDER,
                    e.to_string(),
                ))
                .await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let Some(&cmd) = packet.first() else {
            io.error(&message::err(codes::UNKNOWN_COM, "Unknown command"))
                .await?;
            continue;
        };
        prepared::resolve_last_prepared(s, &mut packet);
        s.command_at = std::time::Instant::now();
        s.replied_at = None;
        status.begin(
            match cmd {
                COM_QUERY => &packet[1..],
                COM_STMT_EXECUTE => prepared::stmt_id(&packet)
                    .and_then(|id| s.stmts.get(&id))
                    .map_or(b"EXECUTE", |st| &st.sql[..]),
                _ => command_name(cmd).as_bytes(),
            },
            s.command_at,
        );
        s.row_count_recorded = false;
        s.settings_transient = false;
        io.sent_error = None;
        dispatch(s, io, cmd, &packet).await?;
        if cmd == COM_QUIT {
            return Ok(());
        }
        let answered_with_error = io.sent_error.is_some();
        if let Some(e) = io.sent_error.take() {
            s.raised_by_proxy(e);
        }
        if !s.row_count_recorded {
            if let Some(n) = row_count_after(cmd, answered_with_error) {
                s.row_count = n;
                s.row_count_on = None;
            }
        }
        // A command that ran no statement reads the clock.
        idle_since = s.replied_at.unwrap_or_else(std::time::Instant::now);
        status.end(
            idle_since,
            s.state.schema.as_ref(),
            s.pinned.as_ref().map(|c| c.backend.address.as_str()),
            s.in_transaction(),
            s.last_write_gtid(),
        );
    }
}

/// Reads a command whose first bytes have come; `None` once the session is killed. A client
/// that stops part-way through a packet would otherwise keep a killed session open until
/// `NET_READ_TIMEOUT`; a server closes it at once. Only for a command not yet buffered
/// whole: the select costs every command that takes it a poll of the session's wake.
async fn read_rest_unless_killed(
    reader: &mut PacketReader<StreamRead>,
    packet: &mut Vec<u8>,
    status: &registry::SessionStatus,
) -> Option<std::io::Result<u8>> {
    let reading = reader.read_logical(packet);
    tokio::pin!(reading);
    loop {
        tokio::select! {
            biased;
            read = &mut reading => return Some(read),
            // Other wakes (the idle sweeper, shutdown) wait for the command's end.
            () = status.interrupted() => {
                if status.is_killed() {
                    return None;
                }
            }
        }
    }
}

/// What `ROW_COUNT()` is after a command no statement reply described (the proxy answered
/// it, or its reply has no count), as a server leaves it; `None`: unchanged.
/// `COM_RESET_CONNECTION` and `COM_CHANGE_USER` start the session over, which sets 0.
fn row_count_after(cmd: u8, answered_with_error: bool) -> Option<i64> {
    match cmd {
        COM_PING | COM_STMT_RESET => Some(0),
        COM_SET_OPTION | COM_FIELD_LIST => Some(-1),
        COM_QUERY | COM_STMT_EXECUTE | COM_INIT_DB if answered_with_error => Some(-1),
        COM_QUERY | COM_STMT_EXECUTE | COM_INIT_DB => Some(0),
        _ => None,
    }
}

/// How the console shows a command that carries no statement.
fn command_name(cmd: u8) -> &'static str {
    match cmd {
        COM_QUIT => "Quit",
        COM_INIT_DB => "Init DB",
        COM_FIELD_LIST => "Field List",
        COM_STATISTICS => "Statistics",
        COM_PING => "Ping",
        COM_STMT_PREPARE => "Prepare",
        COM_STMT_SEND_LONG_DATA => "Long Data",
        COM_STMT_CLOSE => "Close stmt",
        COM_STMT_RESET => "Reset stmt",
        COM_STMT_FETCH => "Fetch",
        COM_RESET_CONNECTION => "Reset connection",
        COM_CHANGE_USER => "Change user",
        COM_SET_OPTION => "Set option",
        COM_PROCESS_KILL => "Kill",
        COM_DEBUG => "Debug",
        COM_REFRESH => "Refresh",
        _ => "Command",
    }
}

async fn dispatch(
    s: &mut Session,
    io: &mut ClientIo,
    cmd: u8,
    packet: &[u8],
) -> Result<(), SessionEnd> {
    match cmd {
        COM_QUIT => {}
        COM_PING => io.ok(s.status()).await?,
        COM_QUERY => query::query(s, io, packet).await?,
        COM_INIT_DB => query::init_db(s, io, packet).await?,
        COM_FIELD_LIST => passthrough(s, io, packet, Target::Read, Expect::UntilEof).await?,
        COM_STATISTICS => passthrough(s, io, packet, Target::Read, Expect::One).await?,
        // Answered by the server, whose privilege checks decide (OK/EOF or ERR 1227): a
        // debug dump to its error log, or a FLUSH.
        COM_DEBUG | COM_REFRESH => passthrough(s, io, packet, Target::Write, Expect::One).await?,
        COM_CHANGE_USER => command::change_user(s, io, packet).await?,
        COM_SET_OPTION => command::set_option(s, io, packet).await?,
        COM_PROCESS_KILL => kill::process_kill(s, io, packet).await?,
        COM_STMT_PREPARE => prepared::prepare(s, io, packet).await?,
        COM_STMT_EXECUTE => prepared::execute(s, io, packet).await?,
        COM_STMT_SEND_LONG_DATA => prepared::send_long_data(s, io, packet).await?,
        COM_STMT_CLOSE => prepared::close(s, packet),
        COM_STMT_RESET => prepared::reset(s, io, packet).await?,
        COM_STMT_FETCH => prepared::fetch(s, io, packet).await?,
        COM_RESET_CONNECTION => {
            let schema = s.state.schema.take();
            s.start_over(schema).await;
            io.follow_net_write_timeout(&s.state);
            io.ok(s.status()).await?;
        }
        // What a server answers for commands it does not know; the replication protocol
        // (COM_BINLOG_DUMP, COM_REGISTER_SLAVE...) and COM_SHUTDOWN are among them here.
        _ => {
            io.error(&message::err(codes::UNKNOWN_COM, "Unknown command"))
                .await?
        }
    }
    Ok(())
}

/// Work on the chosen connection before the client's packet goes out.
#[derive(Debug, Clone, Copy)]
pub enum Prep {
    Nothing,
    /// Make `LAST_INSERT_ID()` answer what this session last generated.
    LastInsertId,
    /// Have the server report when a `SET TRANSACTION` is used up (see
    /// `BackendConn::track_characteristics`).
    TrackCharacteristics,
    /// Prepare the statement here if needed and rewrite the packet to the backend's id (and,
    /// for execute, the parameter types); first, for a statement reading it, make
    /// `LAST_INSERT_ID()` answer what this session last generated.
    Stmt {
        id: u32,
        execute: bool,
        last_insert_id: bool,
    },
}

impl Prep {
    /// A replica refused the prepared statement for being one: its reads go to the write
    /// backend for a while (see `PreparedStmt::replica_refused_at`).
    fn note_replica_refused(self, s: &mut Session) {
        if let Prep::Stmt { id, .. } = self {
            if let Some(st) = s.stmts.get_mut(&id) {
                st.replica_refused_at = Some(s.command_at);
            }
        }
    }

    /// The work done when it needs no round trip (none to do, or a statement already
    /// prepared on `conn`), so that most statements build no future for it: `None` when
    /// [`Prep::apply`] must wait for the server. Its result, error (an unknown statement id)
    /// or not, is `apply`'s.
    fn ready(
        self,
        s: &mut Session,
        conn: &mut BackendConn,
        packet: &[u8],
    ) -> Option<Result<Option<Vec<u8>>, SqlError>> {
        match self {
            Prep::Nothing => Some(Ok(None)),
            Prep::LastInsertId if last_insert_id_synced(s, conn) => Some(Ok(None)),
            Prep::LastInsertId | Prep::TrackCharacteristics => None,
            Prep::Stmt {
                id,
                execute,
                last_insert_id,
            } => {
                if last_insert_id && !last_insert_id_synced(s, conn) {
                    return None;
                }
                prepared::rewrite_ready(s, conn, id, packet, execute).map(|r| r.map(Some))
            }
        }
    }

    /// Then, when `begin`, the session's deferred `BEGIN` (see `Session::begin_deferred`),
    /// on its own: the statement is not a read, which must not run if the `BEGIN` fails.
    async fn apply(
        self,
        s: &mut Session,
        conn: &mut BackendConn,
        packet: &[u8],
        begin: bool,
    ) -> Result<Option<Vec<u8>>, SqlError> {
        let prepared = self.apply_own(s, conn, packet).await?;
        if begin {
            conn.run("BEGIN")
                .await
                .map_err(|e| e.to_sql_error("backend"))?;
        }
        Ok(prepared)
    }

    async fn apply_own(
        self,
        s: &mut Session,
        conn: &mut BackendConn,
        packet: &[u8],
    ) -> Result<Option<Vec<u8>>, SqlError> {
        match self {
            Prep::Nothing => Ok(None),
            Prep::LastInsertId => {
                sync_last_insert_id(s, conn).await?;
                Ok(None)
            }
            Prep::TrackCharacteristics => {
                conn.track_characteristics()
                    .await
                    .map_err(|e| e.to_sql_error("backend"))?;
                Ok(None)
            }
            Prep::Stmt {
                id,
                execute,
                last_insert_id,
            } => {
                if last_insert_id {
                    sync_last_insert_id(s, conn).await?;
                }
                prepared::rewrite(s, conn, id, packet, execute)
                    .await
                    .map(Some)
            }
        }
    }
}

/// Counts and logs a read's exchange given up on a server found down (see
/// `SessionStatus::unless_stuck`) before the read goes to another.
fn gave_up_on(s: &Session, backend: &crate::backend::Backend) {
    backend.count_error();
    s.stats.counters.error(ErrorKind::BackendLost);
    tracing::warn!(backend = %backend.address, session = s.id, "no answer from a backend found down before the statement went out: it runs on another server");
}

/// Makes `LAST_INSERT_ID()` on `conn` answer what the session last generated, wherever that
/// was.
async fn sync_last_insert_id(s: &Session, conn: &mut BackendConn) -> Result<(), SqlError> {
    if !last_insert_id_synced(s, conn) {
        let sync = format!("DO LAST_INSERT_ID({})", s.last_insert_id);
        conn.run(&sync)
            .await
            .map_err(|e| e.to_sql_error("backend"))?;
        conn.last_insert_id = s.last_insert_id;
    }
    Ok(())
}

/// Whether `LAST_INSERT_ID()` on `conn` already answers what the session last generated.
fn last_insert_id_synced(s: &Session, conn: &BackendConn) -> bool {
    conn.last_insert_id == s.last_insert_id
}

/// Attempts for one read whose backend connections fail before replying.
pub(crate) const MAX_READ_TRIES: u32 = 4;

/// How long a read must have run on a server that then closed its connection (and is up)
/// for the close to be taken as a kill there rather than a stale pooled connection: no DBA
/// kills a statement within its first 100 ms.
const RAN_BEFORE_KILL: std::time::Duration = std::time::Duration::from_millis(100);

/// Sends `packet` to a backend for `target` and relays the reply; the common path of every
/// command. Retries once elsewhere when a read fails before the client saw anything.
pub async fn execute(
    s: &mut Session,
    io: &mut ClientIo,
    packet: &[u8],
    target: Target,
    expect: Expect,
    prep: Prep,
    mut after: impl FnMut(&mut Session, &mut BackendConn, &relay::Relayed),
) -> Result<Option<relay::Relayed>, SessionEnd> {
    let mut exclude = Vec::new();
    let mut attempts = 0;
    // A replica's refusal for being one (no such table or schema yet, or `read_only`), held
    // back while the read runs again on the write backend (see `RunsOn::ReplicaFirst`).
    let mut refused_on_replica: Option<SqlError> = None;
    // Sent to the write backend because a replica refused it lately (see `checkout`).
    let refusal_routed = s.read_on_primary;
    loop {
        attempts += 1;
        // Messages held apart from the pinned connection are read where they are: losing
        // that connection costs the session nothing more.
        let on_held = target == Target::Diagnostics && s.held.is_some();
        let was_pinned = s.pinned.is_some() && !on_held;
        let mut c: Checkout = match s.checkout(target, &mut exclude).await {
            Ok(c) => c,
            // Killed while waiting for a connection: closed without a word, as on any kill.
            Err(_) if s.status.is_killed() => return Err(SessionEnd::Killed),
            // The write backend cannot take the read again: the replica's answer stands
            // (a kill's interruption meanwhile is the answer instead).
            Err(e) if e.code != codes::QUERY_INTERRUPTED.0 && refused_on_replica.is_some() => {
                let replica_said = refused_on_replica.take().expect("checked");
                s.stats.counters.error(ErrorKind::Server);
                log_unserved(s, packet);
                io.error(&replica_said).await?;
                return Ok(None);
            }
            Err(e) => {
                if e.code != codes::QUERY_INTERRUPTED.0 {
                    s.stats.counters.error(ErrorKind::NoBackend);
                }
                log_unserved(s, packet);
                io.error(&e).await?;
                // A pinned session that lost its connection lost its transaction too: end
                // it rather than let later statements run outside it.
                if was_pinned && s.pinned.is_none() {
                    return Err(SessionEnd::BackendLost);
                }
                return Ok(None);
            }
        };
        // Once only: a second attempt runs on the write backend.
        let replica_first = refused_on_replica.is_none()
            && s.may_read_again_on_primary(target == Target::Read && !was_pinned, &c);
        if target == Target::Diagnostics && s.proxy_error.is_some() {
            // Boxed, as the waits `checkout` seldom needs: see `SessionStatus::unless_stuck`.
            match Box::pin(s.raise_proxy_error_on(&c.backend, !was_pinned, &mut c.lease.conn)).await
            {
                Ok(()) => {}
                Err(Stuck::SessionKilled) => return Err(SessionEnd::Killed),
                // Any server can raise it: another one does, unless this was the session's
                // own connection (its transaction went with it).
                Err(Stuck::FoundDown) if was_pinned => return Err(SessionEnd::BackendLost),
                Err(Stuck::FoundDown) => {
                    gave_up_on(s, &c.backend);
                    if attempts <= MAX_READ_TRIES {
                        exclude.push(c.backend.clone());
                        continue;
                    }
                    let e = BackendError::Unanswered {
                        addr: c.backend.address.clone(),
                    };
                    drop(c);
                    io.error(&e.to_sql_error("backend")).await?;
                    return Ok(None);
                }
            }
        }
        // The client's `BEGIN`, answered by the proxy, goes out now: in the same write as a
        // read, whose reply follows its OK; on its own before anything else, which must not
        // run outside the transaction should the server refuse the `BEGIN`. Only a reply
        // relayed whole ends the wait for it: a statement run again elsewhere takes it along.
        // Not for `SHOW WARNINGS` and the like, which any connection answers alike.
        let begin = s.begin_deferred && target != Target::Diagnostics;
        let pipelined = begin && target == Target::Read;
        // Awaited only when the server must answer first: a future costs the session's
        // state cache misses. Boxed, so that the session's future holds no room for it (see
        // `SessionStatus::unless_stuck`).
        let ready = match begin && !pipelined {
            true => None,
            false => prep.ready(s, &mut c.lease.conn, packet),
        };
        let prepared = match ready {
            Some(done) => done,
            None => {
                let status = s.status.clone();
                let read = target == Target::Read && !was_pinned;
                let apply = prep.apply(s, &mut c.lease.conn, packet, begin && !pipelined);
                match Box::pin(status.unless_stuck(&c.backend, read, apply)).await {
                    Ok(prepared) => prepared,
                    Err(Stuck::SessionKilled) => return Err(SessionEnd::Killed),
                    // Nothing of the statement went out: a read runs elsewhere.
                    Err(Stuck::FoundDown) if read && attempts <= MAX_READ_TRIES => {
                        gave_up_on(s, &c.backend);
                        exclude.push(c.backend.clone());
                        continue;
                    }
                    Err(Stuck::FoundDown) => Err(BackendError::Unanswered {
                        addr: c.backend.address.clone(),
                    }
                    .to_sql_error("backend")),
                }
            }
        };
        let rewritten = match prepared {
            Ok(p) => p,
            // The connection failed while being prepared for the statement: a pinned one took
            // the session's transaction or server state with it.
            Err(_) if c.lease.conn.broken && was_pinned => return Err(SessionEnd::BackendLost),
            // A pooled connection the server had closed, found by the `BEGIN` sent ahead of
            // the statement: nothing of the statement went out, and a fresh connection takes
            // it, as it would have taken the `BEGIN` on its own before.
            Err(_)
                if c.lease.conn.broken
                    && begin
                    && !pipelined
                    && c.lease.reused
                    && attempts == 1 =>
            {
                drop(c);
                continue;
            }
            // A read's connection failed while being readied for it (a pooled one the server
            // had closed, found by the prepare an execute needs there first): nothing of the
            // read went out, and it runs elsewhere, as one that failed before its reply.
            Err(e)
                if c.lease.conn.broken
                    && target == Target::Read
                    && !on_held
                    && attempts <= MAX_READ_TRIES =>
            {
                c.backend.count_error();
                s.stats.counters.error(ErrorKind::BackendLost);
                tracing::warn!(backend = %c.backend.address, session = s.id, "backend connection failed before a read went out: {e}; it runs on another");
                // A read a replica refused for being one goes to the write backend again,
                // on another connection; any other tries another server.
                match refused_on_replica.is_some() || refusal_routed {
                    true => s.read_on_primary = true,
                    false => exclude.push(c.backend.clone()),
                }
                drop(c);
                continue;
            }
            Err(e) if c.lease.conn.broken => {
                drop(c);
                io.error(&e).await?;
                return Ok(None);
            }
            // A prepared read whose statement the replica cannot prepare for lack of its
            // table or schema: as a text read's answer saying so (see `RunsOn::ReplicaFirst`).
            Err(e)
                if replica_first
                    && relay::says_missing(&e)
                    && matches!(prep, Prep::Stmt { execute: true, .. }) =>
            {
                tracing::debug!(backend = %c.backend.address, session = s.id, "replica cannot prepare a statement for lack of its table or schema: the read runs on the write backend");
                prep.note_replica_refused(s);
                s.read_again_on_primary(c);
                refused_on_replica = Some(e);
                continue;
            }
            Err(e) => {
                s.finish(c, Diag::Left);
                io.error(&e).await?;
                return Ok(None);
            }
        };
        let payload = rewritten.as_deref().unwrap_or(packet);
        let ids = match prep {
            Prep::Stmt { id, .. } => prepared::stmt_id(payload).map(|backend| relay::StmtIds {
                backend,
                client: id,
            }),
            Prep::Nothing | Prep::LastInsertId | Prep::TrackCharacteristics => None,
        };
        match s.status.start_running(
            &c.backend,
            &c.lease.conn,
            target == Target::Read && !was_pinned,
        ) {
            Ok(()) => {}
            // Killed before the statement went out: it never runs, and the client's connection
            // closes as on any kill.
            Err(Killed::Session) => return Err(SessionEnd::Killed),
            Err(Killed::Query) => {
                s.finish(c, Diag::Unknown);
                io.error(&kill::query_interrupted()).await?;
                return Ok(None);
            }
        }
        c.backend.count_query();
        c.conn().track.client_tracks = s.client_tracks;
        // A rewrite (here or by the caller) that took the command across a multiple of
        // 16 MiB changed the number of packets it takes, and so where the server's numbering
        // of the reply starts. (The client's command took `reply_seq` packets.)
        let seq_shift = io.reply_seq.wrapping_sub(packet_count(payload.len()));
        let on_replica = c.backend.role == crate::config::Role::ReadOnly;
        // Where the statement went, for the latency histograms: taken before `finish`
        // changes what the session knows.
        let route = match target {
            _ if was_pinned => Route::Session,
            Target::Diagnostics => Route::Session,
            // With autocommit off, or the `BEGIN` going out with it, a read opens a
            // transaction, on the write backend while it can take it (see
            // `Session::checkout`).
            Target::Read if (!s.autocommit || begin) && !on_replica => Route::Write,
            Target::Read => Route::Read,
            Target::Write | Target::Session => Route::Write,
        };
        let started = std::time::Instant::now();
        let sent = match pipelined {
            false => c.conn().send_command(payload).await,
            true => c.conn().send_after_begin(payload).await,
        };
        let went_out = sent.is_ok();
        // Refused, the read runs outside a transaction all the same, as the server goes on to
        // the next command (harmless for a read), and the session's next statement begins it.
        let mut begin_refused = false;
        let began = match sent {
            Ok(()) if pipelined => match c.conn().read_begin_reply().await {
                Ok(Some(e)) => {
                    tracing::warn!(backend = %c.backend.address, session = s.id, "the server refused a deferred BEGIN: {e}");
                    begin_refused = true;
                    // Its error may stay in the connection's messages under a read that
                    // keeps them.
                    c.conn().dirty = true;
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(source) => Err(source),
            },
            sent => sent,
        };
        let result = match began {
            Err(source) if went_out => Err(RelayError::Backend {
                source,
                sent: false,
            }),
            Ok(()) => {
                relay::relay(
                    c.conn(),
                    &mut io.reader,
                    &mut io.writer,
                    expect,
                    ids,
                    seq_shift,
                    match on_replica {
                        false => RunsOn::Primary,
                        // A read, text or prepared (an execute that opens a cursor runs on
                        // the write backend, one with long data on the session's pinned
                        // connection): the statement a table or schema was just made for is
                        // often such a read, and so is a `SELECT` of a stored function.
                        true if replica_first
                            && matches!(packet.first(), Some(&(COM_QUERY | COM_STMT_EXECUTE))) =>
                        {
                            RunsOn::ReplicaFirst
                        }
                        true => RunsOn::Replica,
                    },
                )
                .await
            }
            Err(source) => match c.conn().parting_error().await {
                // Only the refusal of a command too large: any other parting word (a server
                // shutting down) is a failed backend, as before.
                Some(refusal) if refusal.code == codes::NET_PACKET_TOO_LARGE.0 => {
                    Err(RelayError::Refused(refusal))
                }
                _ => Err(RelayError::Backend {
                    source,
                    sent: false,
                }),
            },
        };
        let spent = match s.status.stop_running() {
            Some(spent) => spent,
            None => s.status.after_kills().await,
        };
        match result {
            // Nothing reached the client: the read runs again on the write backend, which a
            // replica that has not replicated a new table or schema yet is behind, and which
            // can run the write a stored function makes. (A read of a table that exists
            // nowhere costs that second round trip, and gets the write backend's answer.)
            Ok(r) if r.refused_on_replica && !spent => {
                let code = r.error.as_ref().map_or(0, |e| e.code);
                tracing::debug!(backend = %c.backend.address, session = s.id, code, "replica refused a read for being one (no such table or schema yet, or read-only): it runs on the write backend");
                prep.note_replica_refused(s);
                s.read_again_on_primary(c);
                refused_on_replica = r.error;
                continue;
            }
            Ok(r) if r.refused_on_replica => {
                // A kill reached the connection, which cannot be used again: the client gets
                // the replica's answer.
                c.conn().broken = true;
                drop(c);
                s.stats.counters.error(ErrorKind::Server);
                if let Some(e) = &r.error {
                    io.error(e).await?;
                }
                return Ok(None);
            }
            // A command just over the server's `max_allowed_packet` is read whole, refused,
            // and the connection closed: as the refusal while it was still being sent, though
            // the client already has the server's error.
            Ok(r)
                if r.error
                    .as_ref()
                    .is_some_and(|e| e.code == codes::NET_PACKET_TOO_LARGE.0) =>
            {
                tracing::info!(backend = %c.backend.address, session = s.id, "backend refused a {} byte command and closed the connection", payload.len());
                c.conn().broken = true;
                drop(c);
                s.stats.counters.statement(route, started.elapsed());
                s.stats.counters.error(ErrorKind::Server);
                if was_pinned {
                    return Err(SessionEnd::BackendLost);
                }
                return Ok(None);
            }
            Ok(mut r) => {
                if begin && !begin_refused {
                    s.begin_deferred = false;
                }
                r.after_replica_refused = refused_on_replica.is_some();
                let replied = std::time::Instant::now();
                s.replied_at = Some(replied);
                let latency = replied.saturating_duration_since(started);
                r.latency_us = latency.as_micros() as u64;
                c.backend.add_latency(r.latency_us);
                s.absorb(c.conn(), packet, r.changes.as_deref());
                let counters = &s.stats.counters;
                counters.statement(route, latency);
                if r.error.is_some() {
                    counters.error(ErrorKind::Server);
                }
                if s.stats.sql_log.enabled() {
                    // As the client saw it (Atlas's measure): a wait for a connection and a
                    // replica's refusal before the write backend's answer count too.
                    let seen = replied.saturating_duration_since(s.command_at);
                    log_statement(s, &c.backend.address, packet, &r, seen);
                }
                if let Some(n) = r.row_count {
                    s.row_count = n;
                    s.row_count_on = Some(c.id());
                    s.row_count_recorded = true;
                }
                // `SHOW WARNINGS` and friends leave the count alone.
                if let Some(n) = r.found_rows.filter(|_| target != Target::Diagnostics) {
                    // Too many to count: the server that ran it answers.
                    s.found_rows = (n != u32::MAX).then_some(i64::from(n));
                    s.found_rows_on = Some(c.id());
                    // Known once the caller records the statement's digest.
                    s.found_rows_stmt = 0;
                    s.found_rows_fresh = true;
                }
                after(s, c.conn(), &r);
                if let Some(v) = r.changes.as_ref().and_then(|c| c.var("net_write_timeout")) {
                    io.follow_reported_write_timeout(v);
                }
                // (An error reports nothing, though the statement may have begun a
                // transaction before it failed.)
                if !spent && (r.error.is_some() || r.changes.as_ref().is_some_and(|c| c.unreported))
                {
                    s.confirm_next_transaction(&c.backend, &mut c.lease.conn)
                        .await;
                }
                if spent {
                    // Marked last: a later exchange on it would clear the mark (`broken` also
                    // means "left mid-exchange"), and none may run on it.
                    c.conn().broken = true;
                } else if c.conn().track.stale && !c.conn().broken {
                    if let Err(e) = c.conn().track_session().await {
                        tracing::warn!(session = s.id, "could not restore session tracking: {e}");
                        c.conn().broken = true;
                    }
                }
                let diag = if r.warned || r.error.is_some() || target == Target::Diagnostics {
                    Diag::Left
                } else if s.diagnostics_held() || s.proxy_error.is_some() {
                    diag_of(s, packet)
                } else {
                    // Nothing to keep or clear: what the statement did to messages does not
                    // matter, so it is not worked out.
                    Diag::Unknown
                };
                // The proxy's own error survives only statements that keep messages.
                if s.proxy_error.is_some() && diag != Diag::Kept {
                    s.proxy_error = None;
                }
                // The server holds the error it raised: the client's is raised there for a
                // `SHOW WARNINGS` as the proxy's own are.
                if r.error_rewritten {
                    s.proxy_error = r.error.clone();
                }
                s.finish(c, diag);
                return Ok(Some(r));
            }
            // `KILL CONNECTION` shut the client's socket under the reply.
            Err(RelayError::Client(_)) if s.status.is_killed() => {
                return Err(SessionEnd::Killed);
            }
            Err(RelayError::Client(e)) => {
                drop(c);
                if e.kind() == std::io::ErrorKind::TimedOut {
                    tracing::warn!(session = s.id, client = %s.peer, "closing the session: its client {e} (net_write_timeout); the statement's backend connection is closed with it");
                }
                // The server ran it; only the client did not take the reply.
                s.stats.counters.statement(route, started.elapsed());
                s.stats.counters.error(ErrorKind::Client);
                return Err(SessionEnd::Client(e));
            }
            // Every server would refuse it alike: not retried elsewhere, and the server is fine.
            Err(RelayError::Refused(e)) => {
                tracing::info!(backend = %c.backend.address, session = s.id, "backend refused a {} byte command and closed the connection: {e}", payload.len());
                drop(c);
                io.error(&e).await?;
                // The session's transaction or server state went with the connection.
                if was_pinned {
                    return Err(SessionEnd::BackendLost);
                }
                return Ok(None);
            }
            // `KILL CONNECTION` closed the backend connection under the statement.
            Err(RelayError::Backend { .. }) if s.status.is_killed() => {
                return Err(SessionEnd::Killed)
            }
            // A `KILL QUERY` that could not reach the server closed it: the statement ends as
            // killed; the session goes on, unless the connection held more than it.
            Err(RelayError::Backend { sent, .. }) if s.status.query_cut() => {
                let address = c.backend.address.clone();
                drop(c);
                if sent || was_pinned {
                    return Err(SessionEnd::BackendLost);
                }
                io.error(&message::err(codes::QUERY_INTERRUPTED, format!("Query execution was interrupted (rwproxy: backend {address} could not be reached to kill it there; its connection was closed)"))).await?;
                return Ok(None);
            }
            Err(RelayError::Backend { source, sent }) => {
                // Before this failure's own `mark_down` below: cut by the sweeper (see
                // `Registry::sweep`), not just a server that closed it or died.
                let found_silent = c.backend.found_silent();
                c.backend.count_error();
                s.stats.counters.error(ErrorKind::BackendLost);
                // A read may try each replica once (their pooled connections can all be
                // stale after a crash), then the write backend. Anything else only when no
                // server ran it: once a server has read it, it may have run in part or whole
                // (a DBA's KILL on the server, a crash after the commit), and running it
                // again would apply it twice or undo the kill. A reset in answer shows that
                // nobody read it: the address now leads to a host that does not know the
                // connection (the write VIP moved), or the server closed it with the
                // statement unread. (A pooled connection closed in an orderly way is found
                // out before a write goes out: see `Session::checkout`.)
                let unread = !went_out || source.kind() == std::io::ErrorKind::ConnectionReset;
                // (Messages lost with their connection are not found anywhere else.)
                // A read a replica refused for being one may be a stored function that
                // writes: once it went out on the write backend it is not run again.
                let retryable = !sent
                    && !was_pinned
                    && !on_held
                    && !(went_out && (refusal_routed || refused_on_replica.is_some()))
                    && (attempts == 1 || (target == Target::Read && attempts <= MAX_READ_TRIES))
                    && (target == Target::Read || (c.lease.reused && unread));
                // A server that closed the connection in order under a read that had been
                // running there for a while, and still greets and takes a login (see
                // `Cluster::greet`), was not lost: a DBA's `KILL` (or pt-kill's) ends a
                // running statement that way, without a word, and running the read on another
                // server would undo it. A crashed server refuses the connect at once; a
                // pooled connection the server had closed before the read came fails at once,
                // and is retried as before. (A hung server does not greet; the monitor finds
                // it down too, and the proxy itself closed the read's connection, see
                // `Registry::sweep`.)
                let killed_there = retryable
                    && target == Target::Read
                    && c.backend.health() != Health::Down
                    && went_out
                    && source.kind() == std::io::ErrorKind::UnexpectedEof
                    && started.elapsed() >= RAN_BEFORE_KILL
                    && matches!(
                        Box::pin(s.cluster.greet(&c.backend.address, s.cluster.dial.timeout)).await,
                        (_, Ok(()) | Err(BackendError::Login { .. }))
                    );
                if killed_there {
                    tracing::info!(backend = %c.backend.address, session = s.id, "backend closed the connection under a read and is up: taken as a KILL on the server, not run again");
                } else {
                    tracing::warn!(backend = %c.backend.address, session = s.id, "backend failed during a statement: {source}");
                    if !c.lease.reused {
                        c.backend.mark_down(&source);
                    }
                    if target == Target::Read {
                        exclude.push(c.backend.clone());
                    }
                }
                let address = c.backend.address.clone();
                drop(c);
                if retryable && !killed_there {
                    continue;
                }
                if sent || was_pinned {
                    return Err(SessionEnd::BackendLost);
                }
                // Interrupted, as by `KILL QUERY`: the session goes on, and drivers do not
                // take 1317 for a lost connection to run the statement again on.
                let error = match killed_there {
                    true => message::err(codes::QUERY_INTERRUPTED, format!("Query execution was interrupted (rwproxy: backend {address} closed the connection under it and is up: killed there, not run again)")),
                    false if found_silent && went_out => message::err(codes::BACKEND_LOST, format!("rwproxy: lost connection to backend {address} during query: the backend stopped answering and was found down; the statement may have run there")),
                    false => message::err(codes::BACKEND_LOST, format!("rwproxy: lost connection to backend during query: {source}")),
                };
                io.error(&error).await?;
                return Ok(None);
            }
        }
    }
}

/// The SQL a command runs: a `COM_QUERY`'s text, or that of the prepared statement a
/// `COM_STMT_EXECUTE` runs.
fn statement_sql<'a>(s: &'a Session, packet: &'a [u8]) -> Option<&'a [u8]> {
    match packet.first() {
        Some(&COM_QUERY) => Some(&packet[1..]),
        Some(&COM_STMT_EXECUTE) => prepared::stmt_id(packet)
            .and_then(|id| s.stmts.get(&id))
            .map(|p| &p.sql[..]),
        _ => None,
    }
}

/// What a statement that raised no messages did to the previous statement's. A change of
/// schema keeps them on a server, as `USE` does.
fn diag_of(s: &Session, packet: &[u8]) -> Diag {
    if packet.first() == Some(&COM_INIT_DB) {
        return Diag::Kept;
    }
    statement_sql(s, packet).map_or(Diag::Unknown, |sql| {
        let sql = crate::router::multibyte::lexable(s.multibyte, sql);
        Diag::of(crate::router::diag_effect(&sql))
    })
}

/// Writes the SQL log line of a statement (Atlas logs queries; other commands are not).
fn log_statement(
    s: &Session,
    backend: &str,
    packet: &[u8],
    r: &relay::Relayed,
    latency: std::time::Duration,
) {
    if let Some(sql) = statement_sql(s, packet) {
        s.stats
            .sql_log
            .log(s.peer, backend, r.error.is_none(), latency, sql);
    }
}

/// A statement that failed for want of a backend connection (all busy, the write backend
/// down), logged as `S:rwproxy`: the client waited and failed, and the SQL log is where a DBA
/// looks for that.
fn log_unserved(s: &Session, packet: &[u8]) {
    if let Some(sql) = statement_sql(s, packet).filter(|_| s.stats.sql_log.enabled()) {
        let waited = s.command_at.elapsed();
        s.stats.sql_log.log(s.peer, "rwproxy", false, waited, sql);
    }
}

/// Commands whose reply needs nothing from the proxy but forwarding.
async fn passthrough(
    s: &mut Session,
    io: &mut ClientIo,
    packet: &[u8],
    target: Target,
    expect: Expect,
) -> Result<(), SessionEnd> {
    execute(s, io, packet, target, expect, Prep::Nothing, |_, _, _| {}).await?;
    Ok(())
}
