//! One connection from the proxy to a MariaDB/MySQL server, logged in as an application user.
//!
//! It knows what session state has been applied to it (so the pool can hand it to another
//! client only after making that state right), which prepared statements it holds, and its
//! transaction status as of the last reply.

use crate::protocol::command::{
    COM_INIT_DB, COM_QUERY, COM_QUIT, COM_RESET_CONNECTION, COM_STMT_CLOSE, COM_STMT_PREPARE,
};
use crate::protocol::message::{
    self, codes, Completion, SqlError, SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_AUTOCOMMIT,
};
use crate::protocol::packet::{
    read_handshake_packet, read_lenenc, PacketReader, PacketWriter, RawPacket,
};
use crate::protocol::session_track::{
    SERVER_SESSION_STATE_CHANGED, TRANSACTION_INFO_ENTRIES, TRANSACTION_STATE_ENTRIES,
};
use crate::protocol::stream::{self, StreamRead, StreamWrite};
use crate::session::state::SessionState;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use mysql_common::scramble::{scramble_native, scramble_sha256};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Why talking to a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("can't connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("timed out connecting to {addr}")]
    ConnectTimeout { addr: String },
    /// TLS to the backend failed: it does not offer TLS, or its certificate did not verify.
    #[error("TLS to {addr} failed: {message}")]
    Tls { addr: String, message: String },
    #[error("{addr} refused login: {error}")]
    Login { addr: String, error: SqlError },
    #[error("{0}")]
    Server(SqlError),
    #[error("lost connection to backend: {0}")]
    Io(#[from] io::Error),
    #[error("protocol error from backend: {0}")]
    Protocol(String),
    /// The server did not answer an exchange made before the statement went out, and the
    /// monitor found it down meanwhile (see `SessionStatus::unless_stuck`).
    #[error("no answer from {addr}, found down by the monitor")]
    Unanswered { addr: String },
    /// Every pooled connection is busy: the backend is fine, just saturated.
    #[error("all {max} connections to {addr} are busy (max-connections)")]
    PoolExhausted { addr: String, max: u32 },
}

impl BackendError {
    /// Failures that say the backend itself is unreachable or broken; not the proxy's own
    /// shortage of descriptors or memory, which every backend would show alike.
    pub fn means_down(&self) -> bool {
        match self {
            BackendError::Login { .. }
            | BackendError::Server(_)
            | BackendError::PoolExhausted { .. } => false,
            BackendError::Connect { source, .. } => !rwproxy_ha::db::is_local_shortage(source),
            _ => true,
        }
    }
}

impl BackendError {
    /// The server refused a login for want of room (`max_connections`: 1040;
    /// `max_user_connections`: 1203), not for who asked: another server may take it.
    pub fn server_full(&self) -> bool {
        matches!(self, BackendError::Login { error, .. } if [1040, 1203].contains(&error.code))
    }

    /// The error a client sees for this failure.
    pub fn to_sql_error(&self, what: &str) -> SqlError {
        match self {
            BackendError::Server(e) | BackendError::Login { error: e, .. } => e.clone(),
            BackendError::Io(_) => message::err(
                codes::BACKEND_LOST,
                format!("rwproxy: lost connection to {what} during query"),
            ),
            other => message::err(
                codes::BACKEND_UNREACHABLE,
                format!("rwproxy: {what}: {other}"),
            ),
        }
    }
}

/// Capabilities the proxy asks of backends: the same framing it offers clients (no
/// DEPRECATE_EOF) so results forward unchanged, and session tracking, whose OK-packet
/// additions the relay fits to each client (see `session_track`).
fn backend_capabilities(client: CapabilityFlags) -> CapabilityFlags {
    let base = CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_SESSION_TRACK;
    base | (client & session_capabilities())
}

/// Client capabilities that change statement semantics, so pooled connections are kept
/// apart by them. `CLIENT_LOCAL_FILES`: a server refuses `LOAD DATA LOCAL` to a client that
/// does not offer it, with its own error, rather than asking it for a file. Multi-results:
/// without them a server refuses a `CALL` that returns rows (1312) rather than send a client
/// results it cannot read.
pub fn session_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_IGNORE_SPACE
        | CapabilityFlags::CLIENT_INTERACTIVE
}

/// System variables the proxy has every backend connection track, on top of whatever the
/// client asked for: `last_gtid` (the GTID each write committed as, for read-your-writes) and
/// the session variables a statement can change behind the classifier's back (a procedure
/// or function setting them), so the session's picture of itself stays exact. Not `sql_mode`:
/// routines run under their own and restore the caller's. `net_write_timeout` also for the
/// proxy's own writes to the client, which follow the value the server reports however the
/// session set it: a multi-statement, a prepared `SET`, an executable comment, `DEFAULT`.
pub const PROXY_TRACKED: [&str; 8] = [
    "last_gtid",
    "autocommit",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
    "time_zone",
    "net_write_timeout",
];
const _: () = assert!(
    PROXY_TRACKED.len() <= 8,
    "Tracking::hidden has a bit for each"
);

/// The variable listing the tracked variables; the proxy adds its own to whatever a client
/// sets it to.
pub const TRACKED_LIST: &str = "session_track_system_variables";

/// The names of a `Tracking::hidden` mask.
pub fn hidden_names(mask: u8) -> Vec<&'static str> {
    PROXY_TRACKED
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Session tracking on a backend connection: what the client may see of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tracking {
    /// Bits over `PROXY_TRACKED`: variables tracked only because the proxy asked, whose
    /// changes the client must not see.
    pub hidden: u8,
    /// The session using the connection negotiated `CLIENT_SESSION_TRACK`.
    pub client_tracks: bool,
    /// The client changed `session_track_system_variables`: the proxy's additions must be
    /// put back before the connection's next reply is relayed.
    pub stale: bool,
    /// The server accepted `CLIENT_SESSION_TRACK` at login.
    pub supported: bool,
    /// Replies report the next transaction's characteristics (`session_track_transaction_info
    /// = CHARACTERISTICS`), so the proxy sees when a `SET TRANSACTION` is used up.
    pub characteristics: bool,
    /// Entry types (`session_track::TRANSACTION_INFO_ENTRIES`) the proxy switched on, which
    /// the client must not see.
    pub hidden_entries: u8,
    /// The server does not know `session_track_transaction_info`.
    pub no_transaction_info: bool,
}

/// The variable the proxy raises to `CHARACTERISTICS` (see `track_characteristics`).
pub const TRANSACTION_INFO: &str = "session_track_transaction_info";

impl Tracking {
    /// After a reset, or when the client sets `session_track_transaction_info` itself: the
    /// server reports what the session's own setting asks for.
    pub fn forget_transaction_info(&mut self) {
        self.characteristics = false;
        self.hidden_entries = 0;
    }
}

/// What a backend connection is opened as.
#[derive(Debug, Clone, Eq)]
pub struct ConnKey {
    pub user: Arc<str>,
    pub collation: u8,
    pub capabilities: u32,
}

/// The pool finds idle connections by key for every statement: the user name compares by
/// pointer first (see `names::same`).
impl PartialEq for ConnKey {
    fn eq(&self, other: &ConnKey) -> bool {
        self.collation == other.collation
            && self.capabilities == other.capabilities
            && crate::session::names::same(&self.user, &other.user)
    }
}

/// A prepared statement as this connection knows it.
#[derive(Debug, Clone)]
pub struct BackendStmt {
    pub id: u32,
    /// When it was last prepared or found for a command, on the connection's
    /// `stmt_clock`: the statements used least recently go first (see `trim_cache`).
    used: u64,
    /// The session state at prepare time: tables resolve against the schema then current,
    /// literals against the character set, and so on. Kept whole and compared exactly: a
    /// hash of it would be cheaper to keep but costs more per execute than the comparison
    /// (SipHash over the state: ~270 instructions per execute, callgrind) and could collide.
    pub state: SessionState,
    /// The client statement (by the session's id for it) that opened a cursor or sent long
    /// data on this copy, last. Closing the copy would lose them, so it is not closed when
    /// the connection has too many; and no other client statement of the same text runs
    /// here, since on a server each statement has its own cursor and long data. It is
    /// retired when its holder is executed on another copy or closed.
    pub holder: Option<u32>,
    /// The holder sent long data here that no execute or reset has used up yet. Its next
    /// long data and its execute come here whatever changed in the session meanwhile: a
    /// server keeps one statement, with all of its long data.
    pub long_data: bool,
    /// Kept only for its holder when the connection's statements were retired (see
    /// [`BackendConn::retire_stmts`]): fetches and resets still reach its cursor, and an
    /// execute its long data, as on a server; no other execute runs this copy again.
    pub holder_only: bool,
}

/// What a command leaves on the statement copy it ran on, for its client statement alone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Hold {
    Nothing,
    Cursor,
    LongData,
}

/// Prepared statements kept per connection before one is closed. Copies holding a cursor or
/// long data are never closed for it: a connection goes over the limit instead, by no more
/// than the statements its one pinned session holds open (which the server limits).
const MAX_STMTS_PER_CONN: usize = 256;

/// Bytes of statement text a connection keeps prepared only for reuse (no client statement
/// holds a copy), counted once per text, before a prepare closes such texts' copies, those
/// used least recently first. The
/// statement count alone would let a connection keep 256 statements as long as a command
/// may be (64 MiB): clients preparing and closing ever new large statements would grow the
/// proxy by that much on every connection, outside `max-prepared-memory` (which counts open
/// client statements). Ordinary statements are far shorter: at 1 MiB the count stays the
/// bound for them.
const MAX_STMT_TEXT_PER_CONN: usize = 1 << 20;

/// Prepared statements kept open on one server through all of a backend's connections
/// before a prepare closes one of its connection's first (see `open_stmts`). The server's
/// limit is server-wide (`max_prepared_stmt_count`, 16382 by default) and shared with every
/// other client: 256 on each of a pool's connections would reach it with 64 connections,
/// and every client's prepare would then fail with 1461. A quarter of the default leaves
/// room for three proxies and the direct clients.
const MAX_STMTS_PER_BACKEND: usize = 4096;

/// How connections to backends are opened.
#[derive(Clone)]
pub struct Dial {
    /// For the TCP connect and, separately, for the whole login.
    pub timeout: Duration,
    /// TLS with certificate verification (`backend-ssl`).
    pub tls: Option<tokio_rustls::TlsConnector>,
}

pub struct BackendConn {
    pub reader: PacketReader<StreamRead>,
    pub writer: PacketWriter<StreamWrite>,
    /// The server's thread id, for `KILL`.
    pub thread_id: u32,
    /// The TCP socket (under TLS too), for passing on a client's end of input (see
    /// `client::registry`).
    pub fd: std::os::fd::RawFd,
    pub key: ConnKey,
    /// Session state as applied on the server.
    pub state: SessionState,
    /// Server-side state we cannot replay (user variables, temporary tables, locks...):
    /// the connection must be reset before anyone else uses it.
    pub dirty: bool,
    pub status: u16,
    /// `LAST_INSERT_ID()` as the server would answer it now.
    pub last_insert_id: u64,
    /// Prepared statements by SQL text, shared by every session that uses this connection:
    /// one per schema the text was prepared in, so sessions in different schemas running the
    /// same text do not close each other's copy (and with it an open cursor), and one more
    /// per client statement holding a cursor or long data (see [`BackendStmt::holder`]).
    pub stmts: rustc_hash::FxHashMap<Arc<[u8]>, Vec<BackendStmt>>,
    /// Server-side ids of statements no longer used here but not yet closed (see
    /// [`BackendConn::retire_stmts`] and [`BackendConn::note_run`]); `send_command` closes
    /// them ahead of the next command.
    retired: Vec<u32>,
    /// Counts the uses of statements prepared here (see [`BackendStmt::used`]).
    stmt_clock: u64,
    /// Statements open on the server through this connection and the others of its pool
    /// (`Pool` shares one count per backend): what `MAX_STMTS_PER_BACKEND` bounds. Counted
    /// up at each prepare, down as closes go out (`send_command`), at a reset, and when the
    /// connection closes.
    pub open_stmts: Arc<std::sync::atomic::AtomicUsize>,
    pub idle_since: Instant,
    /// The server's `wait_timeout` for this connection as its login left it (the global
    /// `interactive_timeout` for an interactive client's, or what `init_connect` set), read
    /// with the session tracking; `None`: not read (see `Pool::reap`).
    pub wait_timeout: Option<Duration>,
    /// The session's `completion_type` is `NO_CHAIN` (as its login left it: the global one,
    /// or what `init_connect` set): a `COMMIT` with nothing open does nothing. `false` when
    /// not read.
    pub plain_completion: bool,
    /// The event thread whose reactor its socket is registered with ([`event_threads::slot`]
    /// there): its pool keeps it there when idle (see `Pool::release`).
    ///
    /// [`event_threads::slot`]: crate::event_threads::slot
    pub home: usize,
    /// The pool's generation when it was opened (see `Pool::retire_all`).
    pub generation: u64,
    /// Set when an exchange was cut off mid-way: the connection must not be reused.
    pub broken: bool,
    /// Holds what a reset would not clean up but a close does (an XA transaction: see
    /// `Flags::XA`): closed when its session lets go, never pooled.
    pub close_on_release: bool,
    pub track: Tracking,
}

/// The server's reply to a client's `COM_STMT_PREPARE`, for that client alone: it is not kept
/// with the statement, whose copies outlive it in the cache (its packets share the read
/// buffer they arrived in, which they would keep allocated).
pub struct PrepareReply {
    pub params: u16,
    pub columns: u16,
    pub packets: Vec<RawPacket>,
}

/// What a login got from a server.
pub struct Greeting {
    /// The version the server greeted with; `None`: it did not greet.
    pub version: Option<String>,
    pub login: Result<BackendConn, BackendError>,
}

/// A TCP connection to `addr` (a name is resolved now); `None`: no answer within `timeout`.
/// With TCP keepalive: a host that crashed or rebooted under a connection sends nothing,
/// and a probe waiting on it (see `monitor::watch`) or an idle pooled one would otherwise
/// wait for good; a hung server's kernel still answers keepalives.
async fn tcp_connect(addr: &str, timeout: Duration) -> Option<io::Result<TcpStream>> {
    let stream = crate::timer::timeout(timeout, TcpStream::connect(addr))
        .await
        .ok()?;
    Some(stream.inspect(|s| {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(10))
            .with_interval(Duration::from_secs(5))
            .with_retries(3);
        let _ = socket2::SockRef::from(s).set_tcp_keepalive(&keepalive);
    }))
}

/// A server logs a connection closed without `COM_QUIT` as aborted ("Got an error reading
/// communication packets") and counts it in `Aborted_clients`, which DBAs watch for clients
/// that crash or are cut off. A connection the proxy closes between exchanges (retired from
/// the pool, or its session ended) says goodbye; one cut off mid-exchange (`broken`) was not
/// closed in order, and does not. Over TLS the goodbye is encrypted and written without
/// waiting: into an idle socket's empty send buffer it goes at once; should the socket not
/// take it (or the reactor be gone, at shutdown), the connection closes without it.
impl Drop for BackendConn {
    fn drop(&mut self) {
        // The server closes them with the connection.
        self.forget_stmts();
        if self.broken {
            return;
        }
        if let StreamWrite::Plain(w) = self.writer.get_mut() {
            // Straight to the socket: a drop at shutdown comes after the reactor is gone.
            // Five bytes into an idle socket's empty send buffer never block.
            let _ = socket2::SockRef::from(w.as_ref()).send(&[1, 0, 0, 0, COM_QUIT]);
        } else if let StreamWrite::Tls(w) = self.writer.get_mut() {
            use std::future::Future;
            use std::task::{Context, Poll, Waker};
            use tokio::io::AsyncWrite;
            // Unconstrained: a session that used up its task's budget would otherwise be told
            // to yield, and the goodbye would not go out.
            let goodbye = tokio::task::unconstrained(std::future::poll_fn(|cx| {
                let mut w = std::pin::Pin::new(&mut *w);
                if let Poll::Ready(Ok(5)) = w.as_mut().poll_write(cx, &[1, 0, 0, 0, COM_QUIT]) {
                    let _ = w.poll_flush(cx);
                }
                Poll::Ready(())
            }));
            let _ = std::pin::pin!(goodbye).poll(&mut Context::from_waker(Waker::noop()));
        }
    }
}

impl BackendConn {
    pub async fn connect(
        addr: &str,
        key: ConnKey,
        password: &str,
        dial: &Dial,
    ) -> Result<Self, BackendError> {
        let mut conn = Self::log_in(addr, key, password, dial).await.login?;
        match crate::timer::timeout(dial.timeout, conn.track_session()).await {
            Ok(tracked) => tracked?,
            Err(_) => {
                return Err(BackendError::ConnectTimeout {
                    addr: addr.to_string(),
                })
            }
        }
        Ok(conn)
    }

    /// A login and nothing more (no session tracking set up): what a health probe asks of a
    /// server (see `Cluster::greet`).
    pub async fn log_in(addr: &str, key: ConnKey, password: &str, dial: &Dial) -> Greeting {
        let mut version = None;
        let login = Self::connect_and_log_in(addr, key, password, dial, &mut version).await;
        Greeting { version, login }
    }

    async fn connect_and_log_in(
        addr: &str,
        key: ConnKey,
        password: &str,
        dial: &Dial,
        version: &mut Option<String>,
    ) -> Result<Self, BackendError> {
        let addr_s = addr.to_string();
        let stream = match tcp_connect(addr, dial.timeout).await {
            None => return Err(BackendError::ConnectTimeout { addr: addr_s }),
            Some(Err(e)) => {
                return Err(BackendError::Connect {
                    addr: addr_s,
                    source: e,
                })
            }
            Some(Ok(s)) => s,
        };
        stream.set_nodelay(true)?;
        let login = Self::login(stream, addr, key, password, dial.tls.as_ref(), version);
        match crate::timer::timeout(dial.timeout, login).await {
            Err(_) => Err(BackendError::ConnectTimeout { addr: addr_s }),
            Ok(Err(BackendError::Server(error))) => Err(BackendError::Login {
                addr: addr_s,
                error,
            }),
            Ok(r) => r,
        }
    }

    /// The connection phase: greeting, TLS if configured, login request, authentication.
    async fn login(
        mut stream: TcpStream,
        addr: &str,
        key: ConnKey,
        password: &str,
        tls: Option<&tokio_rustls::TlsConnector>,
        version: &mut Option<String>,
    ) -> Result<Self, BackendError> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let (seq, payload) = read_handshake_packet(&mut stream).await?;
        if message::is_err(&payload) {
            return Err(BackendError::Server(
                SqlError::parse(&payload).unwrap_or_else(|| bad("greeting")),
            ));
        }
        if scramble_len_overflows(&payload) {
            return Err(proto("bad greeting: auth-plugin-data length over 127"));
        }
        let hello = ParseBuf(&payload)
            .parse::<HandshakePacket>(())
            .map_err(|e| BackendError::Protocol(format!("bad greeting: {e}")))?;
        *version = Some(String::from_utf8_lossy(hello.server_version_ref()).into_owned());
        let mut caps = backend_capabilities(CapabilityFlags::from_bits_truncate(key.capabilities))
            & hello.capabilities();
        let mut seq = seq.wrapping_add(1);
        let halves = match tls {
            None => stream::plain(stream),
            Some(connector) => {
                let tls_err = |message: String| BackendError::Tls {
                    addr: addr.to_string(),
                    message,
                };
                if !hello.capabilities().contains(CapabilityFlags::CLIENT_SSL) {
                    return Err(tls_err(
                        "the server does not offer TLS (start it with --ssl-cert and --ssl-key)"
                            .into(),
                    ));
                }
                caps |= CapabilityFlags::CLIENT_SSL;
                let mut request = Vec::with_capacity(36);
                request.extend_from_slice(&[32, 0, 0, seq]);
                request.extend_from_slice(&caps.bits().to_le_bytes());
                request.extend_from_slice(&(16u32 << 20).to_le_bytes());
                request.push(key.collation);
                request.extend_from_slice(&[0; 23]);
                stream.write_all(&request).await?;
                seq = seq.wrapping_add(1);
                let name = server_name(addr).map_err(tls_err)?;
                let tls = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| tls_err(e.to_string()))?;
                stream::tls(tls)
            }
        };
        let mut conn = BackendConn {
            reader: PacketReader::new(halves.0),
            writer: PacketWriter::new(halves.1),
            thread_id: hello.connection_id(),
            fd,
            key,
            state: SessionState::default(),
            dirty: false,
            status: SERVER_STATUS_AUTOCOMMIT,
            last_insert_id: 0,
            stmts: Default::default(),
            retired: Vec::new(),
            stmt_clock: 0,
            open_stmts: Arc::default(),
            idle_since: Instant::now(),
            wait_timeout: None,
            plain_completion: false,
            home: crate::event_threads::slot(),
            generation: 0,
            // Until logged in (see the `Drop` impl).
            broken: true,
            close_on_release: false,
            track: Tracking::default(),
        };
        conn.authenticate(&hello, caps, seq, password).await?;
        conn.broken = false;
        Ok(conn)
    }

    async fn authenticate(
        &mut self,
        hello: &HandshakePacket<'_>,
        caps: CapabilityFlags,
        seq: u8,
        password: &str,
    ) -> Result<(), BackendError> {
        let nonce = hello.nonce();
        // The greeting names the server's default plugin, not the user's: one the proxy does
        // not speak is answered as native, and the server switches to the user's own if it
        // differs (only a switch to one it does not speak is refused, in `auth_reply`).
        let plugin = hello
            .auth_plugin_name_ref()
            .and_then(|n| ParseBuf(n).parse::<AuthPlugin>(()).ok())
            .map(AuthPlugin::into_owned)
            .filter(speaks)
            .unwrap_or(AuthPlugin::MysqlNativePassword);
        let version = hello
            .maria_db_server_version_parsed()
            .or_else(|| hello.server_version_parsed())
            .unwrap_or((5, 7, 0));
        self.track.supported = caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK);
        let scramble = auth_reply(&plugin, &nonce, password, &self.key.user)?;
        let resp = HandshakeResponse::new(
            Some(scramble),
            version,
            Some(self.key.user.as_bytes()),
            None::<&[u8]>,
            Some(plugin),
            caps,
            Some(HashMap::from([(
                "program_name".to_string(),
                "rwproxy".to_string(),
            )])),
            16 * 1024 * 1024,
        );
        let mut buf = Vec::new();
        resp.serialize(&mut buf);
        // mysql_common always asks for utf8mb4_general_ci; the client's own collation goes in
        // the byte after the capability flags and max packet size.
        buf[8] = self.key.collation;
        self.writer.write_packet(seq, &buf).await?;
        self.writer.flush().await?;
        let mut payload = Vec::new();
        loop {
            let s = self.reader.read_logical(&mut payload).await?;
            match payload.first() {
                Some(0x00) => {
                    // Its status says how the server's sql_mode has strings quoted.
                    if let Some(done) = message::parse_ok(&payload) {
                        self.finish(done);
                    }
                    return Ok(());
                }
                Some(0xFF) => {
                    return Err(BackendError::Server(
                        SqlError::parse(&payload).unwrap_or_else(|| bad("login")),
                    ))
                }
                Some(0xFE) => {
                    let (plugin, nonce) = auth_switch(&payload[1..])?;
                    let reply = auth_reply(&plugin, &nonce, password, &self.key.user)?;
                    self.writer.write_packet(s.wrapping_add(1), &reply).await?;
                    self.writer.flush().await?;
                }
                // caching_sha2_password: 0x01 0x03 = fast auth done, OK follows.
                Some(0x01) if payload.get(1) == Some(&0x03) => continue,
                // caching_sha2_password: 0x01 0x04 = full authentication. Over TLS the
                // password goes in clear; without it the server's RSA key would be needed.
                Some(0x01) if payload.get(1) == Some(&0x04) && self.reader.get_ref().is_tls() => {
                    let mut clear = password.as_bytes().to_vec();
                    clear.push(0);
                    self.writer.write_packet(s.wrapping_add(1), &clear).await?;
                    self.writer.flush().await?;
                }
                Some(0x01) => {
                    return Err(BackendError::Protocol(
                        "backend wants caching_sha2_password full authentication, which needs \
                         TLS (backend-ssl) or mysql_native_password for proxy users"
                            .into(),
                    ))
                }
                _ => return Err(BackendError::Protocol("unexpected login reply".into())),
            }
        }
    }

    /// Adds the proxy's variables (`PROXY_TRACKED`) to the session's tracked ones, remembering
    /// which of them the client did not ask for. Needed after login, a reset, and whenever the
    /// client sets `session_track_system_variables` itself.
    pub async fn track_session(&mut self) -> Result<(), BackendError> {
        self.track.stale = false;
        if !self.track.supported {
            return Ok(());
        }
        // The session's `wait_timeout` and `completion_type` come along for free: a login and
        // a reset (which this follows) set them.
        let row = self
            .query_row(
                "SELECT @@session.session_track_system_variables, @@session.wait_timeout, \
                 @@session.completion_type",
            )
            .await?;
        let mut row = row.into_iter();
        let list = row.next().flatten().unwrap_or_default();
        self.wait_timeout = row
            .next()
            .flatten()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs);
        self.plain_completion = row
            .next()
            .flatten()
            .is_some_and(|v| v == "NO_CHAIN" || v == "0");
        let tracked: Vec<&str> = list.split(',').map(str::trim).collect();
        let all = tracked.contains(&"*");
        let mut hidden = 0u8;
        let mut missing = Vec::new();
        for (i, name) in PROXY_TRACKED.iter().enumerate() {
            if !all && !tracked.iter().any(|t| t.eq_ignore_ascii_case(name)) {
                hidden |= 1 << i;
                missing.push(*name);
            }
        }
        if !missing.is_empty() {
            let mut full: Vec<&str> = tracked.into_iter().filter(|t| !t.is_empty()).collect();
            full.extend(missing);
            let set = format!(
                "SET SESSION session_track_system_variables = '{}'",
                full.join(",")
            );
            match self.run(&set).await {
                Ok(_) => {}
                // A server that knows fewer variables: the client's tracking stays as it was.
                Err(BackendError::Server(e)) => {
                    tracing::debug!("backend refused the proxy's session tracking: {e}");
                    hidden = 0;
                }
                Err(e) => return Err(e),
            }
        }
        self.track.hidden = hidden;
        Ok(())
    }

    /// Makes the server report the next transaction's characteristics, so the proxy learns
    /// when a `SET TRANSACTION` is used up (by an autocommit statement that touches a
    /// transactional table) and the session may move again. Switched on only for a session
    /// about to `SET TRANSACTION`, as it adds entries to every transaction's replies; the
    /// connection is reset before its next session, which switches it off again.
    ///
    /// What the client sees of it follows the session's own `SET
    /// session_track_transaction_info` on this connection; without one the server's default
    /// is taken to be `OFF`. (Asking the server would take a `SELECT`, which changes what
    /// `FOUND_ROWS()` answers on the session's connection.) On a server whose global default
    /// is `STATE`, a client tracking sessions then misses the transaction-state entries it
    /// would get directly, until this connection is reset.
    pub async fn track_characteristics(&mut self) -> Result<(), BackendError> {
        if self.track.characteristics || !self.track.supported || self.track.no_transaction_info {
            return Ok(());
        }
        let own = self.state.vars.iter().rfind(|(k, _)| k == TRANSACTION_INFO);
        let own = own.map(|(_, text)| {
            let value = text.rsplit('=').next().unwrap_or_default();
            value.trim().trim_matches(['\'', '"']).to_ascii_uppercase()
        });
        let hidden = match own.as_deref() {
            Some("CHARACTERISTICS" | "2") => 0,
            Some("STATE" | "1") => TRANSACTION_INFO_ENTRIES & !TRANSACTION_STATE_ENTRIES,
            _ => TRANSACTION_INFO_ENTRIES,
        };
        if hidden != 0 {
            match self.report_characteristics().await {
                Ok(_) => self.dirty = true,
                // Older than MariaDB 10.3 / MySQL 5.7: the session waits for its transaction.
                Err(BackendError::Server(e)) => {
                    if e.code == codes::UNKNOWN_SYSTEM_VARIABLE.0 {
                        self.track.no_transaction_info = true;
                    }
                    tracing::debug!("backend cannot report transaction characteristics: {e}");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        self.track.characteristics = true;
        self.track.hidden_entries = hidden;
        Ok(())
    }

    /// Sets `session_track_transaction_info = CHARACTERISTICS`, which also reports the
    /// characteristics set for the next transaction now: whether any are (`None`: the reply
    /// did not say). Changes what `ROW_COUNT()` answers on this connection, as any `SET`.
    pub async fn report_characteristics(&mut self) -> Result<Option<bool>, BackendError> {
        let sql = format!("SET SESSION {TRANSACTION_INFO} = 'CHARACTERISTICS'");
        self.send_command(&[&[COM_QUERY], sql.as_bytes()].concat())
            .await?;
        let reply = self.reader.read_raw().await?;
        let body = reply.payload();
        self.broken = false;
        if message::is_err(body) {
            return Err(BackendError::Server(
                SqlError::parse(body).unwrap_or_else(|| bad("error")),
            ));
        }
        if body.first() != Some(&0) {
            self.broken = true;
            return Err(proto("unexpected reply to SET"));
        }
        self.finish(message::parse_ok(body).unwrap_or_default());
        Ok(crate::protocol::session_track::parse(body).and_then(|c| c.next_transaction_set))
    }

    /// The first column of the first row of a one-row query the proxy asks itself.
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<String>, BackendError> {
        Ok(self.query_row(sql).await?.into_iter().next().flatten())
    }

    /// The columns of the first row of a query the proxy asks itself (`NULL`: `None`; no
    /// row: empty).
    pub async fn query_row(&mut self, sql: &str) -> Result<Vec<Option<String>>, BackendError> {
        let mut cmd = Vec::with_capacity(sql.len() + 1);
        cmd.push(COM_QUERY);
        cmd.extend_from_slice(sql.as_bytes());
        self.broken = true;
        self.send_command(&cmd).await?;
        let first = self.reader.read_raw().await?;
        let body = first.payload();
        if message::is_err(body) {
            self.broken = false;
            return Err(BackendError::Server(
                SqlError::parse(body).unwrap_or_else(|| bad("error")),
            ));
        }
        let mut b = body;
        let columns = read_lenenc(&mut b).ok_or_else(|| proto("bad column count"))?;
        for _ in 0..=columns {
            self.reader.read_raw().await?;
        }
        let mut values = Vec::new();
        let mut first = true;
        loop {
            let p = self.reader.read_raw().await?;
            let body = p.payload();
            if message::is_eof(body) {
                self.finish(message::parse_eof(body).unwrap_or_default());
                break;
            }
            if message::is_err(body) {
                self.broken = false;
                return Err(BackendError::Server(
                    SqlError::parse(body).unwrap_or_else(|| bad("error")),
                ));
            }
            if std::mem::take(&mut first) {
                let mut b = body;
                for _ in 0..columns {
                    if b.first() == Some(&0xFB) {
                        b = &b[1..];
                        values.push(None);
                        continue;
                    }
                    let len = read_lenenc(&mut b).ok_or_else(|| proto("bad row"))? as usize;
                    let v = b.get(..len).ok_or_else(|| proto("bad row"))?;
                    values.push(Some(String::from_utf8_lossy(v).into_owned()));
                    b = &b[len..];
                }
            }
        }
        self.broken = false;
        Ok(values)
    }

    /// Sends a command as a fresh exchange (sequence id 0), after the closes of the
    /// statements this connection has retired: `COM_STMT_CLOSE` has no reply, so they share
    /// the command's write, and a retired statement never outlives the next command on the
    /// server. Leaves the connection `broken` (mid-exchange) until whoever reads the reply
    /// clears it: a drop on the way closes it without a goodbye, which could otherwise land
    /// inside a half-written packet.
    pub async fn send_command(&mut self, payload: &[u8]) -> io::Result<()> {
        self.broken = true;
        if self.retired.is_empty() {
            self.writer.write_packet(0, payload).await?;
            return self.writer.flush().await;
        }
        // A statement that has left `stmts` but cannot be closed may stay on the server: when
        // a write fails, `broken` stays set and the connection is not pooled again.
        while let Some(id) = self.retired.pop() {
            self.open_stmts
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let mut close = [COM_STMT_CLOSE; 5];
            close[1..].copy_from_slice(&id.to_le_bytes());
            self.writer.write_packet(0, &close).await?;
        }
        self.writer.write_packet(0, payload).await?;
        self.writer.flush().await
    }

    /// Sends `BEGIN` and then `payload` in one write, as two commands, so that a transaction
    /// a read opens costs one round trip: the server reads and answers them in turn, the
    /// `BEGIN` first (read with [`BackendConn::read_begin_reply`]). Only ahead of a read: a
    /// refused `BEGIN` does not stop the server running the next command, outside any
    /// transaction.
    pub async fn send_after_begin(&mut self, payload: &[u8]) -> io::Result<()> {
        self.broken = true;
        self.writer.write_packet(0, b"\x03BEGIN").await?;
        self.send_command(payload).await
    }

    /// The reply to the `BEGIN` of [`BackendConn::send_after_begin`], which the client must
    /// not see (the proxy answered its `BEGIN`): `Some` error when the server refused it.
    /// Session-state changes in its OK are dropped: the proxy tracks none that a `BEGIN`
    /// changes.
    pub async fn read_begin_reply(&mut self) -> io::Result<Option<SqlError>> {
        let p = self.reader.read_raw().await?;
        let body = p.payload();
        if message::is_err(body) {
            return Ok(Some(SqlError::parse(body).unwrap_or_else(|| bad("error"))));
        }
        let ok = (body.first() == Some(&0x00))
            .then(|| message::parse_ok(body))
            .flatten()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad reply to BEGIN"))?;
        self.finish(ok);
        Ok(None)
    }

    /// After a command failed to go out whole: the error the server sent before it closed the
    /// connection, if it did and it can still be read. A server answers a command over its
    /// `max_allowed_packet` with 1153 and hangs up while the rest is still coming; the
    /// failed write is then the server's refusal, not a failure of the server.
    pub async fn parting_error(&mut self) -> Option<SqlError> {
        const WAIT: std::time::Duration = std::time::Duration::from_millis(200);
        let packet = crate::timer::timeout(WAIT, self.reader.read_raw())
            .await
            .ok()?
            .ok()?;
        message::is_err(packet.payload())
            .then(|| SqlError::parse(packet.payload()))
            .flatten()
    }

    /// Runs a statement whose rows the proxy discards (state replay, `DO ...`), returning its
    /// final completion or the server's error. The connection stays usable after an error.
    pub async fn run(&mut self, sql: &str) -> Result<Completion, BackendError> {
        let mut cmd = Vec::with_capacity(sql.len() + 1);
        cmd.push(COM_QUERY);
        cmd.extend_from_slice(sql.as_bytes());
        self.command(&cmd).await
    }

    /// Sends any command answered by OK/ERR or result sets, draining them.
    pub async fn command(&mut self, payload: &[u8]) -> Result<Completion, BackendError> {
        self.broken = true;
        self.send_command(payload).await?;
        let mut in_rows = false;
        let mut columns_left: u64 = 0;
        let mut err = None;
        loop {
            let p = self.reader.read_raw().await?;
            let body = p.payload();
            if columns_left > 0 {
                columns_left -= 1;
                continue;
            }
            if in_rows {
                if message::is_eof(body) {
                    let c = message::parse_eof(body).unwrap_or_default();
                    if !self.finish(c) {
                        in_rows = false;
                        continue;
                    }
                    self.broken = false;
                    return Ok(c);
                }
                if message::is_err(body) {
                    self.broken = false;
                    return Err(BackendError::Server(
                        SqlError::parse(body).unwrap_or_else(|| bad("error")),
                    ));
                }
                continue;
            }
            match body.first() {
                Some(0x00) => {
                    let c = message::parse_ok(body).ok_or_else(|| proto("bad OK"))?;
                    if c.last_insert_id != 0 {
                        self.last_insert_id = c.last_insert_id;
                    }
                    if self.finish(c) {
                        self.broken = false;
                        return match err {
                            Some(e) => Err(e),
                            None => Ok(c),
                        };
                    }
                }
                Some(0xFF) => {
                    self.broken = false;
                    let e = SqlError::parse(body).unwrap_or_else(|| bad("error"));
                    return Err(BackendError::Server(e));
                }
                Some(0xFB) => {
                    // LOCAL INFILE request during replay: refuse with an empty file.
                    self.writer
                        .write_packet(p.seq().wrapping_add(1), &[])
                        .await?;
                    self.writer.flush().await?;
                    err = Some(BackendError::Protocol("LOAD DATA LOCAL in replay".into()));
                }
                _ => {
                    let mut b = body;
                    columns_left = read_lenenc(&mut b).ok_or_else(|| proto("bad column count"))?;
                    // Column definitions, then their EOF (which the loop skips as a column).
                    columns_left += 1;
                    in_rows = true;
                }
            }
        }
    }

    /// Records a completion's status; true when no further result follows.
    pub fn finish(&mut self, c: Completion) -> bool {
        self.status = c.status & !SERVER_SESSION_STATE_CHANGED;
        c.status & SERVER_MORE_RESULTS_EXISTS == 0
    }

    /// Returns the connection to a clean server-side session: rolls back, drops temporary
    /// tables, user variables, locks and prepared statements.
    ///
    /// The server keeps the current schema across the reset but sets `character_set_database`
    /// and `collation_database` back to the server's defaults instead of the schema's, which a
    /// fresh login to that schema would see (and `LOAD DATA` reads files in). Selecting the
    /// schema again restores them.
    pub async fn reset(&mut self) -> Result<(), BackendError> {
        self.command(&[COM_RESET_CONNECTION]).await?;
        // The server has dropped its statements: forgotten here at once, so a failure below
        // cannot leave ids pointing at nothing.
        self.forget_stmts();
        // The reset takes `IGNORE_SPACE` out of `sql_mode`, where the client's capability
        // put it at login (MariaDB 10.11): a fresh login's `sql_mode` has it.
        let ignore_space = CapabilityFlags::CLIENT_IGNORE_SPACE.bits();
        if self.key.capabilities & ignore_space != 0 {
            self.run(
                "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'IGNORE_SPACE')",
            )
            .await?;
        }
        if let Some(db) = &self.state.schema {
            let mut cmd = vec![COM_INIT_DB];
            cmd.extend_from_slice(db.as_bytes());
            self.command(&cmd).await?;
        }
        self.track.forget_transaction_info();
        self.track_session().await?;
        self.state = SessionState::default_after_reset(&self.state);
        self.dirty = false;
        self.last_insert_id = 0;
        Ok(())
    }

    /// Says goodbye (`COM_QUIT`) and closes, over TLS too (see the `Drop` impl).
    pub async fn quit(mut self) {
        if !self.broken && self.writer.write_packet(0, &[COM_QUIT]).await.is_ok() {
            let _ = self.writer.flush().await;
        }
        // Said, or not to be said.
        self.broken = true;
    }

    /// Whether the connection must go through `reset` before another session may use it.
    pub fn needs_reset(&self) -> bool {
        self.dirty || self.in_transaction()
    }

    /// A transaction is open (the server's `IN_TRANS`). With `autocommit=0` one opens at the
    /// next statement that uses a transactional table, not before: between transactions
    /// such a connection holds nothing another session could trip over, and its
    /// `autocommit=0` is session state like any other `SET` (`state.vars`).
    pub fn in_transaction(&self) -> bool {
        self.status & message::SERVER_STATUS_IN_TRANS != 0
    }

    /// A connection idle in the pool may have been closed by the server (`wait_timeout`,
    /// restart); a readable socket with nothing asked means EOF or garbage.
    pub fn looks_closed(&mut self) -> bool {
        self.reader.has_buffered() || self.reader.get_mut().closed_or_garbage()
    }

    /// The id of statement `sql` as prepared on this connection in schema `schema` (any,
    /// for `None`: a statement prepared without a schema names none it depends on), if it
    /// is, for client statement `client`: the copy holding its unused long data, whatever
    /// the session variables; else its own copy under the connection's current variables;
    /// else such a copy no client statement holds.
    /// `for_cursor`: the command works on the statement's open cursor (fetch, reset), which
    /// sits on its own copy, kept for it whatever the variables.
    pub fn prepared_id(
        &mut self,
        sql: &[u8],
        schema: Option<&Arc<str>>,
        client: u32,
        for_cursor: bool,
    ) -> Option<u32> {
        let copies = self.stmts.get_mut(sql)?;
        let in_schema = |st: &&BackendStmt| {
            schema.is_none() || crate::session::names::same_opt(st.state.schema.as_ref(), schema)
        };
        // The client statement's own copy first: its cursor or long data is there.
        let mut mine = copies
            .iter()
            .filter(in_schema)
            .filter(|st| st.holder == Some(client));
        let own = if for_cursor {
            mine.next()
        } else {
            mine.clone()
                .find(|st| st.long_data)
                .or_else(|| mine.find(|st| !st.holder_only && st.state.vars == self.state.vars))
        };
        let id = own
            .or_else(|| {
                copies.iter().filter(in_schema).find(|st| {
                    st.holder.is_none() && !st.holder_only && st.state.vars == self.state.vars
                })
            })?
            .id;
        self.stmt_clock += 1;
        if let Some(st) = copies.iter_mut().find(|st| st.id == id) {
            st.used = self.stmt_clock;
        }
        Some(id)
    }

    /// Statement `sql` as prepared on this connection under its current session state for
    /// client statement `client`, preparing it first when it is not (or was under another
    /// state, or another client statement holds that copy).
    pub async fn prepare(
        &mut self,
        sql: &Arc<[u8]>,
        client: u32,
    ) -> Result<&BackendStmt, BackendError> {
        // Exactly this state: a schema of `None` here means none, not any.
        let current = self.stmts.get(sql).and_then(|copies| {
            copies.iter().position(|st| {
                let free = st.holder.is_none() || st.holder == Some(client);
                free && !st.holder_only && st.state == self.state
            })
        });
        let at = match current {
            Some(at) => at,
            None => self.prepare_now(sql).await?.0,
        };
        self.stmt_clock += 1;
        let st = &mut self.stmts.get_mut(sql).expect("prepared")[at];
        st.used = self.stmt_clock;
        Ok(st)
    }

    /// A client's `COM_STMT_PREPARE`: always prepared on the server, so that its reply (the
    /// column definitions, the warnings) describes the tables as they are now, where a copy
    /// prepared before an `ALTER TABLE` would describe them as they were. The copies it
    /// replaces (same text and state, held by no client statement) are retired.
    pub async fn prepare_for_client(
        &mut self,
        sql: &Arc<[u8]>,
    ) -> Result<PrepareReply, BackendError> {
        let (at, reply) = self.prepare_now(sql).await?;
        let copies = self.stmts.get_mut(sql).expect("just prepared");
        let fresh = copies[at].id;
        let state = &self.state;
        retire_where(copies, &mut self.retired, |st| {
            st.id != fresh && st.holder.is_none() && !st.holder_only && st.state == *state
        });
        Ok(reply)
    }

    /// Client statement `client` (text `sql`) was sent to copy `id`, which now carries what
    /// `hold` says (see [`BackendStmt::holder`]). When it was executed or reset (`anew`), its
    /// long data is used up and the other copies it held go: on a server either ends the
    /// statement's cursor and long data, and neither may be found on an old copy here later.
    /// Sending long data leaves them.
    pub fn note_run(&mut self, sql: &[u8], id: u32, client: u32, hold: Hold, anew: bool) {
        if anew {
            self.retire_held(sql, client, Some(id));
        }
        let copy = self
            .stmts
            .get_mut(sql)
            .and_then(|copies| copies.iter_mut().find(|st| st.id == id));
        let Some(st) = copy else { return };
        if anew {
            st.long_data = false;
        }
        match hold {
            Hold::Nothing => {}
            Hold::Cursor => st.holder = Some(client),
            Hold::LongData => {
                st.holder = Some(client);
                st.long_data = true;
            }
        }
    }

    /// Client statement `client` (text `sql`) was closed: so are the copies holding its
    /// cursor or long data, which nothing else would use again.
    pub fn close_held(&mut self, sql: &[u8], client: u32) {
        self.retire_held(sql, client, None);
    }

    /// Retires the copies of `sql` that `client` holds, but `keep`.
    fn retire_held(&mut self, sql: &[u8], client: u32, keep: Option<u32>) {
        let Some(copies) = self.stmts.get_mut(sql) else {
            return;
        };
        retire_where(copies, &mut self.retired, |st| {
            st.holder == Some(client) && Some(st.id) != keep
        });
        if copies.is_empty() {
            self.stmts.remove(sql);
        }
    }

    /// Makes `db` the default schema (`COM_INIT_DB`: unlike a reset, harmless inside a
    /// transaction).
    pub async fn use_schema(&mut self, db: &Arc<str>) -> Result<(), BackendError> {
        let mut cmd = Vec::with_capacity(db.len() + 1);
        cmd.push(COM_INIT_DB);
        cmd.extend_from_slice(db.as_bytes());
        self.command(&cmd).await?;
        self.state.schema = Some(db.clone());
        Ok(())
    }

    /// Stops using every statement prepared here, when the session may have changed in ways
    /// the proxy did not see (a prepared `SET`). Forgetting them would leave the server
    /// holding them for as long as the connection lives: a session that keeps re-preparing
    /// on one connection would then count up to the server-wide `max_prepared_stmt_count`
    /// and make every client's prepare fail. Their closes go out with the next command.
    /// A copy a client statement holds stays, for that statement's cursor and long data only
    /// (`holder_only`).
    pub fn retire_stmts(&mut self) {
        let retired = &mut self.retired;
        self.stmts.retain(|_, copies| {
            retire_where(copies, retired, |st| st.holder.is_none());
            for st in copies.iter_mut() {
                st.holder_only = true;
            }
            !copies.is_empty()
        });
    }

    /// Prepares `sql` under the current state; returns its index among the text's copies,
    /// and the server's reply. Statements this connection no longer uses are closed on the
    /// server first.
    async fn prepare_now(
        &mut self,
        sql: &Arc<[u8]>,
    ) -> Result<(usize, PrepareReply), BackendError> {
        match self.prepare_once(sql).await {
            // The server holds as many statements as it takes (`max_prepared_stmt_count`,
            // server-wide): the ones kept here for reuse go first, and it is asked again.
            Err(BackendError::Server(e))
                if e.code == codes::MAX_PREPARED_STMT_COUNT_REACHED.0 && self.retire_unheld() =>
            {
                self.prepare_once(sql).await
            }
            r => r,
        }
    }

    /// Retires every statement no client statement holds (see [`BackendStmt::holder`]);
    /// whether there was any.
    fn retire_unheld(&mut self) -> bool {
        let before = self.retired.len();
        let retired = &mut self.retired;
        self.stmts.retain(|_, copies| {
            retire_where(copies, retired, |st| st.holder.is_none() && !st.holder_only);
            !copies.is_empty()
        });
        self.retired.len() > before
    }

    async fn prepare_once(
        &mut self,
        sql: &Arc<[u8]>,
    ) -> Result<(usize, PrepareReply), BackendError> {
        // A copy in this schema under other session variables will not be used again, unless
        // it carries a statement's cursor or long data (`note_run` retires it when that
        // statement is executed again).
        if let Some(copies) = self.stmts.get_mut(sql) {
            let schema = &self.state.schema;
            retire_where(copies, &mut self.retired, |st| {
                st.state.schema == *schema && st.holder.is_none()
            });
            if copies.is_empty() {
                self.stmts.remove(sql);
            }
        }
        let backend_full =
            self.open_stmts.load(std::sync::atomic::Ordering::Relaxed) >= MAX_STMTS_PER_BACKEND;
        if backend_full || self.stmts.values().map(Vec::len).sum::<usize>() >= MAX_STMTS_PER_CONN {
            // The copy used least recently.
            let unheld = self
                .stmts
                .iter()
                .flat_map(|(k, copies)| copies.iter().enumerate().map(move |(at, st)| (k, at, st)))
                .filter(|(_, _, st)| st.holder.is_none())
                .min_by_key(|(_, _, st)| st.used)
                .map(|(k, at, _)| (k.clone(), at));
            if let Some((k, at)) = unheld {
                let copies = self.stmts.get_mut(&k).expect("just found");
                self.retired.push(copies.remove(at).id);
                if copies.is_empty() {
                    self.stmts.remove(&k);
                }
            }
        }
        // The prepare's reply is read in parts: until the whole of it is, the connection is
        // mid-exchange.
        self.broken = true;
        let mut cmd = Vec::with_capacity(sql.len() + 1);
        cmd.push(COM_STMT_PREPARE);
        cmd.extend_from_slice(sql);
        self.send_command(&cmd).await?;
        let first = self.reader.read_raw().await?;
        let body = first.payload();
        if message::is_err(body) {
            self.broken = false;
            return Err(BackendError::Server(
                SqlError::parse(body).unwrap_or_else(|| bad("error")),
            ));
        }
        if body.len() < 12 || body[0] != 0 {
            return Err(proto("bad prepare reply"));
        }
        let id = u32::from_le_bytes([body[1], body[2], body[3], body[4]]);
        let columns = u16::from_le_bytes([body[5], body[6]]);
        let params = u16::from_le_bytes([body[7], body[8]]);
        let mut packets = vec![first];
        let defs = |n: u16| if n > 0 { usize::from(n) + 1 } else { 0 };
        for _ in 0..defs(params) + defs(columns) {
            packets.push(self.reader.read_raw().await?);
        }
        self.broken = false;
        self.stmt_clock += 1;
        let st = BackendStmt {
            id,
            used: self.stmt_clock,
            state: self.state.clone(),
            holder: None,
            long_data: false,
            holder_only: false,
        };
        self.open_stmts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copies = self.stmts.entry(sql.clone()).or_default();
        copies.push(st);
        let at = copies.len() - 1;
        // Other texts only: the new copy stays where it is.
        self.trim_cache(sql);
        let reply = PrepareReply {
            params,
            columns,
            packets,
        };
        Ok((at, reply))
    }

    /// Keeps the text of the statements kept here only for reuse within
    /// `MAX_STMT_TEXT_PER_CONN`: retires the texts no client statement holds a copy of, but
    /// `fresh` (just prepared, about to be used), those used least recently first. (A held
    /// copy's text is its client statement's, counted in `max-prepared-memory`.)
    fn trim_cache(&mut self, fresh: &Arc<[u8]>) {
        let mut free: Vec<(u64, Arc<[u8]>)> = self
            .stmts
            .iter()
            .filter(|(k, copies)| k[..] != fresh[..] && copies.iter().all(|st| st.holder.is_none()))
            .map(|(k, copies)| {
                (
                    copies.iter().map(|st| st.used).max().unwrap_or(0),
                    k.clone(),
                )
            })
            .collect();
        let mut total: usize = free.iter().map(|(_, k)| k.len()).sum();
        if total <= MAX_STMT_TEXT_PER_CONN {
            return;
        }
        free.sort_unstable_by_key(|(used, _)| *used);
        for (_, k) in free {
            if total <= MAX_STMT_TEXT_PER_CONN {
                break;
            }
            if let Some(copies) = self.stmts.remove(&k) {
                self.retired.extend(copies.iter().map(|st| st.id));
                total -= k.len();
            }
        }
    }

    /// The server has dropped every statement of this connection (a reset, or the
    /// connection closing): forgotten here, and in the backend's count.
    fn forget_stmts(&mut self) {
        let open = self.stmts.values().map(Vec::len).sum::<usize>() + self.retired.len();
        self.open_stmts
            .fetch_sub(open, std::sync::atomic::Ordering::Relaxed);
        self.stmts.clear();
        self.retired.clear();
    }

    pub async fn read_raw(&mut self) -> io::Result<RawPacket> {
        self.reader.read_raw().await
    }
}

/// A greeting with `CLIENT_SECURE_CONNECTION` whose auth-plugin-data length byte is 0x80 to
/// 0x87 makes mysql_common's `HandshakePacket` parse overflow (it takes the byte as an `i8`
/// and subtracts 8): a panic in a build with overflow checks (found by the `reply` fuzz
/// target). Every length of 0x80 or more is refused: none is a real scramble's (20 bytes
/// and a NUL), and no server sends one.
fn scramble_len_overflows(greeting: &[u8]) -> bool {
    const CLIENT_SECURE_CONNECTION: u8 = 0x80; // 0x8000, in the flags' second byte
    let Some(nul) = greeting.iter().skip(1).position(|&b| b == 0) else {
        return false;
    };
    // Protocol version, the version string and its NUL; then connection id (4), scramble
    // (8), filler (1), capabilities (2), collation (1), status (2), capabilities (2), and
    // the length byte.
    let fixed = &greeting[nul + 2..];
    fixed.len() > 20 && fixed[14] & CLIENT_SECURE_CONNECTION != 0 && fixed[20] >= 0x80
}

/// Removes the copies `gone` picks from `copies`, each onto `retired`: their closes go out
/// ahead of the connection's next command.
fn retire_where(
    copies: &mut Vec<BackendStmt>,
    retired: &mut Vec<u32>,
    mut gone: impl FnMut(&BackendStmt) -> bool,
) {
    copies.retain(|st| {
        let g = gone(st);
        if g {
            retired.push(st.id);
        }
        !g
    });
}

/// An auth switch request's body (after 0xFE): the plugin's name, NUL, its nonce.
fn auth_switch(body: &[u8]) -> Result<(AuthPlugin<'static>, Vec<u8>), BackendError> {
    let nul = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    let plugin = ParseBuf(&body[..nul])
        .parse::<AuthPlugin>(())
        .map_err(|e| BackendError::Protocol(e.to_string()))?
        .into_owned();
    let mut nonce = body.get(nul + 1..).unwrap_or(&[]).to_vec();
    // The password scrambles' 20 bytes come with a NUL; ed25519's 32 do not, and may end in
    // a zero byte of their own.
    if nonce.last() == Some(&0) && plugin != AuthPlugin::Ed25519 {
        nonce.pop();
    }
    Ok((plugin, nonce))
}

/// Whether [`auth_reply`] can answer `plugin`.
fn speaks(plugin: &AuthPlugin<'_>) -> bool {
    matches!(
        plugin,
        AuthPlugin::CachingSha2Password
            | AuthPlugin::MysqlClearPassword
            | AuthPlugin::MysqlNativePassword
            | AuthPlugin::Ed25519
    )
}

/// What the proxy answers a server's authentication request for `user` with. A plugin it
/// does not know is refused with the server's name for it, where a native-password answer
/// would only have earned an `Access denied` that hides why.
fn auth_reply(
    plugin: &AuthPlugin<'_>,
    nonce: &[u8],
    password: &str,
    user: &str,
) -> Result<Vec<u8>, BackendError> {
    Ok(match plugin {
        AuthPlugin::CachingSha2Password => scramble_sha256(nonce, password.as_bytes())
            .map(|s| s.to_vec())
            .unwrap_or_default(),
        AuthPlugin::MysqlClearPassword => {
            let mut v = password.as_bytes().to_vec();
            v.push(0);
            v
        }
        AuthPlugin::MysqlNativePassword => scramble_native(nonce, password.as_bytes())
            .map(|s| s.to_vec())
            .unwrap_or_default(),
        AuthPlugin::Ed25519 => {
            mysql_common::scramble::create_response_for_ed25519(password.as_bytes(), nonce).to_vec()
        }
        AuthPlugin::MysqlOldPassword | AuthPlugin::MariadbParsec { .. } | AuthPlugin::Other(_) => {
            return Err(BackendError::Server(message::err(
                codes::NOT_SUPPORTED_AUTH_MODE,
                format!(
                    "rwproxy: the backend asks user '{user}' to authenticate with plugin '{}', \
                     which rwproxy does not speak to servers (it speaks mysql_native_password, \
                     caching_sha2_password, client_ed25519 and mysql_clear_password)",
                    String::from_utf8_lossy(plugin.as_bytes())
                ),
            )))
        }
    })
}

fn bad(what: &str) -> SqlError {
    message::err(
        codes::BACKEND_LOST,
        format!("malformed {what} packet from backend"),
    )
}

fn proto(what: &str) -> BackendError {
    BackendError::Protocol(what.to_string())
}

/// The name a backend's certificate must carry: the host of its address (a DNS name or an IP).
fn server_name(addr: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("'{host}' is not a valid TLS server name: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_switch_nonces_keep_what_belongs_to_them() {
        let switch = |name: &[u8], nonce: &[u8]| [name, b"\0", nonce].concat();
        let mut ed = [7u8; 32];
        ed[31] = 0;
        let (plugin, nonce) = auth_switch(&switch(b"client_ed25519", &ed)).unwrap();
        assert_eq!((plugin, nonce), (AuthPlugin::Ed25519, ed.to_vec()));
        let native = [[9u8; 20].as_slice(), b"\0"].concat();
        let (plugin, nonce) = auth_switch(&switch(b"mysql_native_password", &native)).unwrap();
        assert_eq!(
            (plugin, nonce),
            (AuthPlugin::MysqlNativePassword, [9u8; 20].to_vec())
        );
        let (plugin, _) = auth_switch(&switch(b"dialog", b"")).unwrap();
        assert!(!speaks(&plugin));
        let refused = auth_reply(&plugin, &[], "pw", "u").unwrap_err();
        assert!(refused.to_string().contains("plugin 'dialog'"), "{refused}");
    }

    #[test]
    fn greetings_whose_scramble_length_would_overflow_are_refused() {
        // MariaDB 10.11's greeting, then the fuzz target's find (length byte 0x81).
        let mut greeting =
            b"\x0a10.11.6-MariaDB\0\x07\0\0\0abcdefgh\0\xfe\xf7\x2d\x02\0\xff\x81\x15".to_vec();
        greeting.extend_from_slice(&[0; 10]);
        greeting.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
        assert!(!scramble_len_overflows(&greeting));
        assert!(ParseBuf(&greeting).parse::<HandshakePacket>(()).is_ok());
        let length = greeting.iter().position(|&b| b == 0).unwrap() + 21;
        for bad in [0x80, 0x81, 0x87, 0xFF] {
            greeting[length] = bad;
            assert!(scramble_len_overflows(&greeting), "{bad:#x}");
        }
        // Without CLIENT_SECURE_CONNECTION the byte is not read.
        greeting[length - 6] &= !0x80;
        assert!(!scramble_len_overflows(&greeting));
        assert!(!scramble_len_overflows(b"\x0a10.11"));
    }

    #[test]
    fn the_proxys_own_shortages_do_not_take_a_backend_down() {
        let connect = |errno| BackendError::Connect {
            addr: "db:3306".into(),
            source: io::Error::from_raw_os_error(errno),
        };
        assert!(connect(libc::ECONNREFUSED).means_down());
        assert!(connect(libc::EHOSTUNREACH).means_down());
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(!connect(errno).means_down(), "errno {errno}");
        }
    }
}
