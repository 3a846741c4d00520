//! A client session's server-side half: which backend connection it holds (if any), what
//! state it expects a connection to carry, and when it may let go of a connection.

use crate::backend::conn::{
    BackendConn, BackendError, ConnKey, PROXY_TRACKED, TRACKED_LIST, TRANSACTION_INFO,
};
use crate::backend::pool::Lease;
use crate::backend::relay::Relayed;
use crate::backend::{Backend, Health};
use crate::client::prepared::{PreparedMemory, PreparedStmt};
use crate::client::registry::{Killed, Registry, SessionStatus, Stuck};
use crate::client::ClientSettings;
use crate::cluster::{Cluster, ReadPicker};
use crate::protocol::message::{
    self, codes, SqlError, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS,
    SERVER_STATUS_IN_TRANS_READONLY,
};
use crate::protocol::session_track::StateChanges;
use crate::router::classify::{self, Flags, StmtKind};
use crate::router::multibyte::Multibyte;
use crate::router::{DiagEffect, Target};
use crate::session::read_your_writes::{self, ReadPlan};
use crate::session::state::SessionState;
use crate::session::{names, set_stmt};
use crate::stats::Stats;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Instant;

/// Why a session must stay on its connection even outside a transaction.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sticky {
    /// `LOCK TABLES` until `UNLOCK TABLES`.
    pub locked_tables: bool,
    /// Server-side state the proxy cannot replay elsewhere: user variables, temporary tables,
    /// named locks, a sequence's `LASTVAL`, `SQL_CALC_FOUND_ROWS`, text-protocol prepared
    /// statements, cursors, long data. Lasts for the rest of the session; the connection is reset before reuse.
    pub server_state: bool,
    /// `SET TRANSACTION ...` (or its `SET @@tx_isolation` form) for the next transaction, until
    /// that transaction ends, or an autocommit statement uses it up (which the server
    /// reports, see `BackendConn::track_characteristics`).
    pub next_transaction: NextTransaction,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum NextTransaction {
    #[default]
    None,
    /// Characteristics set, transaction not yet begun.
    Pending,
    Started,
}

impl Sticky {
    fn any(&self) -> bool {
        self.locked_tables || self.server_state || self.next_transaction != NextTransaction::None
    }
}

/// What a finished statement did to the server's diagnostics area (`SHOW WARNINGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diag {
    /// It left warnings or an error of its own.
    Left,
    /// It left none and used no tables: the previous statement's messages are still shown.
    Kept,
    /// It left none; whether the previous ones survive only the server that ran it knows.
    Unknown,
    /// It left none and replaced whatever was there.
    Cleared,
}

impl Diag {
    /// For a statement that raised no messages.
    pub fn of(effect: DiagEffect) -> Diag {
        match effect {
            DiagEffect::Keeps => Diag::Kept,
            DiagEffect::Clears => Diag::Cleared,
            DiagEffect::Unknown => Diag::Unknown,
        }
    }
}

/// A backend connection in use by a statement.
pub struct Checkout {
    pub backend: Arc<Backend>,
    pub lease: Lease,
}

impl Checkout {
    pub fn conn(&mut self) -> &mut BackendConn {
        &mut self.lease.conn
    }

    /// Which server connection this is: its backend and the server's thread id for it.
    pub fn id(&self) -> (usize, u32) {
        (
            Arc::as_ptr(&self.backend) as usize,
            self.lease.conn.thread_id,
        )
    }
}

/// Laid out in declaration order (`repr(C)`), the fields every statement reads or writes
/// first: with 16 sessions an event thread, a session's fields are out of the L1 cache by the
/// time its next statement comes, and each cache line they span is a miss.
#[repr(C)]
pub struct Session {
    /// This session's entry in the registry, where `KILL` finds it.
    pub status: Arc<SessionStatus>,
    pub stats: Arc<Stats>,
    pub cluster: Arc<Cluster>,
    /// Every session, for `KILL`.
    pub registry: Arc<Registry>,
    pub pinned: Option<Checkout>,
    /// The session ends once this command is answered: its pinned connection was to a server
    /// no longer behind its backend's address (see `checkout`).
    pub end_after_reply: bool,
    /// The pinned connection holds messages of the session's (its last statement warned or
    /// failed, and those after kept them): a transaction's end keeps them, so the connection
    /// is then held for them rather than given back (see `finish`).
    pinned_messages: bool,
    /// The connection of the last statement that left warnings or an error, kept for a
    /// following `SHOW WARNINGS` (see `finish`).
    pub held: Option<Checkout>,
    /// When the current command arrived, and when the reply of its last statement was
    /// complete: the clock is read once for each, and the pool's idle stamps and the idle
    /// timer reuse the readings (a clock read costs as much as a small statement's routing).
    pub command_at: Instant,
    pub replied_at: Option<Instant>,
    /// The client's own `SET wait_timeout`: a server closes the connection idle that long,
    /// so the proxy closes the session (in place of its `wait-timeout`). Set with
    /// [`Session::set_wait_timeout`].
    pub wait_timeout: Option<std::time::Duration>,
    /// What `wait_timeout` starts as, and goes back to on a reset or change of user: an
    /// interactive client's `interactive-timeout` (as a server's `interactive_timeout`).
    pub login_wait_timeout: Option<std::time::Duration>,
    pub state: SessionState,
    pub key: ConnKey,
    /// Reused for normalising statements into digests.
    pub digest_buf: Vec<u8>,
    /// Which replica the session's reads go to.
    reads: ReadPicker,
    /// What `ROW_COUNT()` answers in this session: it describes its previous statement,
    /// which ran on a pooled connection it may no longer hold.
    pub row_count: i64,
    /// The connection that ran the statement `row_count` describes ([`Checkout::id`]).
    pub row_count_on: Option<(usize, u32)>,
    /// The rows of the session's last result set, which may have come from a connection it
    /// no longer holds: what `FOUND_ROWS()` answers when the statement says so (see
    /// [`Session::known_found_rows`]). `None` after a statement that changed it without
    /// showing how (`SELECT … INTO`): then only the server knows.
    pub found_rows: Option<i64>,
    /// The connection that ran the statement `found_rows` describes.
    pub found_rows_on: Option<(usize, u32)>,
    /// The digest key of the statement `found_rows` counts (0: none known).
    pub found_rows_stmt: u64,
    /// The GTID the session's last write committed as (the server's `last_gtid`).
    last_write_gtid: Option<String>,
    pub id: u32,
    /// The session's `sql_mode` status flags as a server last reported them
    /// (`message::SQL_MODE_FLAGS`), for the replies the proxy writes itself.
    pub sql_mode_flags: u16,
    pub sticky: Sticky,
    /// The running statement got the connection that holds the session's messages: the
    /// held one, or a pinned one with `pinned_messages`.
    on_held: bool,
    /// The next statement, if a read, runs on the write backend: a replica refused it for
    /// being one (see `client::execute`), now or lately (`PreparedStmt::replica_refused_at`,
    /// `router::cache`). Taken by the next checkout, whatever it is for.
    pub read_on_primary: bool,
    /// The running statement is a `SET STATEMENT ... FOR`: the settings its reply shows end
    /// with it, so `absorb` records no variable and `finish` keeps the session's `sql_mode`
    /// flags.
    pub settings_transient: bool,
    /// A statement reply set `row_count` during the current command.
    pub row_count_recorded: bool,
    /// `autocommit` as the server last reported it. Off, every statement belongs to a
    /// transaction that the next one opens, so reads go to the write backend too (to a
    /// replica while it cannot be reached, see `checkout`); between transactions the session
    /// holds no connection.
    pub autocommit: bool,
    /// The client's plain `BEGIN` was answered by the proxy and has not gone out yet: it goes
    /// with the transaction's first statement (see `client::execute`), which saves the
    /// transaction a round trip to the write backend. Meanwhile the session holds no
    /// connection (unless long data pinned it), its statements route as in a transaction,
    /// and the proxy's own replies say "in transaction". Never set with a transaction open
    /// on the session's connection (see `finish`).
    pub begin_deferred: bool,
    /// `found_rows` was just set: the digest recorded next is its statement's.
    pub found_rows_fresh: bool,
    /// The client negotiated `CLIENT_SESSION_TRACK`: it gets the session-state information
    /// a server would send it.
    pub client_tracks: bool,
    /// The error the proxy answered the session's last command with itself, which no server
    /// connection holds yet for a `SHOW WARNINGS` (see [`Session::raise_proxy_error_on`]).
    pub proxy_error: Option<SqlError>,
    /// Read-your-writes bookkeeping (a no-op when the mode is off).
    pub ryw: read_your_writes::Tracker,
    pub stmts: FxHashMap<u32, PreparedStmt>,
    /// What all sessions' statements may hold (`max-prepared-memory`).
    pub prepared_memory: Arc<PreparedMemory>,
    /// `LAST_INSERT_ID()` as this session would see it on a dedicated connection.
    pub last_insert_id: u64,
    pub next_stmt_id: u32,
    /// What statement id -1 names (see `prepared::resolve_last_prepared`).
    pub last_prepared: Option<u32>,
    /// Atlas's `charset`: every session starts with `SET NAMES <charset>`, also after a
    /// reset or a change of user.
    charset: Option<String>,
    /// The client's character set when its two-byte characters may end in an ASCII byte:
    /// the lexers then read statements through [`crate::router::multibyte::lexable`]. From
    /// the handshake (or `charset`), then as session tracking reports `character_set_client`.
    pub multibyte: Option<Multibyte>,
    /// The client's address, for the SQL log.
    pub peer: std::net::SocketAddr,
    /// The greeting's scramble, which a `COM_CHANGE_USER` with caching_sha2_password
    /// answers again.
    pub scramble: [u8; 20],
    /// Refused `COM_CHANGE_USER` attempts so far.
    pub failed_change_user: u8,
}

impl Session {
    pub fn new(
        cluster: Arc<Cluster>,
        key: ConnKey,
        info: &ClientSettings,
        status: Arc<SessionStatus>,
        scramble: [u8; 20],
    ) -> Self {
        let ryw = read_your_writes::Tracker::new(&cluster.read_your_writes(), &key.user);
        let mut s = Session {
            id: status.id,
            cluster,
            key,
            state: SessionState::default(),
            pinned: None,
            pinned_messages: false,
            end_after_reply: false,
            held: None,
            on_held: false,
            read_on_primary: false,
            sticky: Sticky::default(),
            last_insert_id: 0,
            sql_mode_flags: 0,
            settings_transient: false,
            row_count: 0,
            row_count_on: None,
            row_count_recorded: false,
            wait_timeout: None,
            login_wait_timeout: None,
            autocommit: true,
            begin_deferred: false,
            found_rows: None,
            found_rows_stmt: 0,
            found_rows_fresh: false,
            found_rows_on: None,
            stmts: FxHashMap::default(),
            prepared_memory: info.prepared_memory.clone(),
            next_stmt_id: 1,
            last_prepared: None,
            proxy_error: None,
            peer: status.client,
            status,
            registry: info.registry.clone(),
            scramble,
            failed_change_user: 0,
            charset: info.charset.clone(),
            multibyte: None,
            stats: info.stats.clone(),
            ryw,
            reads: ReadPicker::new(),
            digest_buf: Vec::new(),
            client_tracks: false,
            last_write_gtid: None,
            command_at: Instant::now(),
            replied_at: None,
        };
        s.apply_charset();
        s
    }

    /// Atlas's `charset`, for a client whose handshake names no character set the server
    /// knows: none (0), or MySQL 8's `utf8mb4_0900_ai_ci` (255). A client that names one
    /// keeps it, as on a server: given another, it would decode the results wrongly.
    /// Called on a session that has no `SET NAMES` of its own (new, or started over).
    fn apply_charset(&mut self) {
        self.state.vars.retain(|(k, _)| k != "names");
        let named = !matches!(self.key.collation, 0 | 255);
        self.multibyte = Multibyte::of_collation(self.key.collation.into());
        if let Some(cs) = self.charset.as_ref().filter(|_| !named) {
            self.state.set_var("names".into(), format!("NAMES {cs}"));
            self.multibyte = Multibyte::of_charset(cs);
        }
    }

    /// The GTID of this session's last committed write, as the write backend reported it;
    /// a replica that has applied it shows the session its own writes.
    pub fn last_write_gtid(&self) -> Option<&str> {
        self.last_write_gtid.as_deref()
    }

    /// After a reply whose result set raised the state-changed flag (an EOF has no room to
    /// say what changed): a `write` statement (`… RETURNING`, a `CALL`), or a stored
    /// function's write run again here after a replica refused it, committed a GTID no packet
    /// reported. Its reads see it as after any write the server did not report.
    pub fn note_unreported_write(&mut self, write: bool, r: &Relayed) {
        let unreported = r.changes.as_ref().is_some_and(|ch| ch.unreported);
        if unreported && (write || r.after_replica_refused) {
            self.ryw.wrote(None);
        }
    }

    /// Brings the session's picture of itself (and of the connection that ran `packet`) up to
    /// date with what the server's session tracking reported.
    pub fn absorb(
        &mut self,
        conn: &mut BackendConn,
        packet: &[u8],
        changes: Option<&StateChanges>,
    ) {
        let Some(changes) = changes.filter(|c| !c.is_empty()) else {
            return;
        };
        if changes.next_transaction_set == Some(false)
            && self.sticky.next_transaction == NextTransaction::Pending
            && !conn.in_transaction()
        {
            // An autocommit statement used up what `SET TRANSACTION` set, as a transaction
            // would have: the session may move again.
            self.sticky.next_transaction = NextTransaction::None;
        }
        if let Some(db) = &changes.schema {
            // Dropping the current schema leaves none selected.
            let db = Some(db).filter(|d| !d.is_empty()).map(|d| names::intern(d));
            conn.state.schema.clone_from(&db);
            self.state.schema = db;
        }
        // Worked out only for a change worth recording: every write reports `last_gtid`.
        let mut plain_set = None;
        for (name, value) in &changes.vars {
            if name == "character_set_client" {
                // However it changed: `SET NAMES`, a procedure, a multi-statement.
                self.multibyte = Multibyte::of_charset(value);
            }
            if name == "last_gtid" {
                if !value.is_empty() {
                    // A transaction committed: the session's reads must now see it.
                    self.ryw.wrote(Some(value));
                    self.last_write_gtid = Some(value.clone());
                }
                continue;
            }
            if !PROXY_TRACKED.contains(&name.as_str())
                || self.settings_transient
                || *plain_set.get_or_insert_with(|| recorded_in_own_words(self.multibyte, packet))
            {
                continue;
            }
            let text = format!("@@session.{name} = {}", sql_value(name, value));
            conn.state.set_var(name.clone(), text.clone());
            self.state.set_var(name.clone(), text);
        }
    }

    /// After a reply that said the session changed without saying how (see
    /// `StateChanges::unreported`), or an error: while the session waits with a `SET
    /// TRANSACTION` outside a transaction, asks the server whether that is used up.
    pub async fn confirm_next_transaction(&mut self, backend: &Backend, conn: &mut BackendConn) {
        if self.sticky.next_transaction != NextTransaction::Pending
            || conn.in_transaction()
            || !conn.track.characteristics
            || conn.broken
        {
            return;
        }
        let asked = conn.report_characteristics();
        match self.status.unless_stuck(backend, false, asked).await {
            Ok(Ok(Some(false))) => self.sticky.next_transaction = NextTransaction::None,
            Ok(Ok(_)) => {}
            // Mid-exchange: it closes; the pinned session's next statement finds it lost.
            Err(_) => conn.broken = true,
            Ok(Err(e)) => {
                tracing::warn!(
                    session = self.id,
                    "could not ask whether SET TRANSACTION was used up: {e}"
                );
                conn.broken = true;
            }
        }
        // What the server's `ROW_COUNT()` answers there is now the proxy's `SET`'s.
        self.row_count_on = None;
    }

    /// The password a new backend connection logs in with: the user's as the proxy knows it
    /// now, so a password rotated on the servers and at the console (`ADD PWD`) reaches
    /// sessions that logged in before; the session's own (kept with its status) if the user
    /// was removed since.
    pub fn backend_password(&self) -> String {
        self.cluster
            .password_of(&self.key.user)
            .unwrap_or_else(|| self.status.credentials().1)
    }

    /// Later statements run as `user` (pools are keyed by user), on connections opened with
    /// `collation`.
    pub fn switch_user(&mut self, user: &str, password: String, collation: u8) {
        if *self.key.user != *user {
            // Read-your-writes may be set per user.
            self.ryw.switch_user(&self.cluster.read_your_writes(), user);
        }
        self.key.user = names::intern(user);
        self.key.collation = collation;
        // The session was started over under the old collation.
        self.apply_charset();
        self.status.set_user(user, &password);
    }

    /// Starts the session over, as `COM_RESET_CONNECTION` and `COM_CHANGE_USER` do on a
    /// server: its connections go back (rolled back and reset before anyone reuses them),
    /// variables, prepared statements and reasons to stay pinned are forgotten, and the
    /// schema is `schema`.
    pub async fn start_over(&mut self, schema: Option<Arc<str>>) {
        self.close();
        self.state = SessionState {
            schema,
            vars: Vec::new(),
        };
        self.apply_charset();
        self.sticky = Sticky::default();
        self.stmts.clear();
        self.last_prepared = None;
        self.last_insert_id = 0;
        self.row_count = 0;
        self.row_count_on = None;
        // A server forgets its errors and warnings with the rest.
        self.proxy_error = None;
        self.autocommit = true;
        self.begin_deferred = false;
        self.set_wait_timeout(self.login_wait_timeout);
        // FOUND_ROWS() survives a reset on a server (measured on MariaDB 10.11).
        // The server's default sql_mode again.
        self.sql_mode_flags = self.cluster.sql_mode_flags().unwrap_or_default();
    }

    /// What `FOUND_ROWS()` answers, when the proxy knows: the rows of the last result set,
    /// if its statement is one whose rows are the answer (not a `SELECT` with an offset, nor
    /// `SHOW WARNINGS`, ...). Looked up only when a statement calls `FOUND_ROWS()`.
    pub fn known_found_rows(&self) -> Option<i64> {
        let n = self.found_rows?;
        let found = self.stats.digests.found_rows_of(self.found_rows_stmt)?;
        found.then_some(n)
    }

    /// Counts a finished statement in the digest table under its key
    /// ([`crate::stats::digest::key_of`]): rows read, or else rows changed.
    pub fn record_digest_keyed(&mut self, key: u64, sql: &[u8], r: &Relayed) {
        if std::mem::take(&mut self.found_rows_fresh) {
            self.found_rows_stmt = key;
        }
        let rows = if r.rows > 0 {
            r.rows
        } else {
            r.completion.affected_rows
        };
        self.stats
            .digests
            .record_keyed(key, sql, &mut self.digest_buf, r.latency_us, rows);
    }

    /// Status flags for replies the proxy writes itself: those of the session, not of the
    /// last reply (a cursor, a slow query).
    pub fn status(&self) -> u16 {
        let session = match &self.pinned {
            Some(c) => c.lease.conn.status & message::SESSION_FLAGS & !message::SQL_MODE_FLAGS,
            None if self.autocommit => SERVER_STATUS_AUTOCOMMIT,
            None => 0,
        };
        let deferred = match self.begin_deferred {
            true => SERVER_STATUS_IN_TRANS,
            false => 0,
        };
        session | deferred | self.sql_mode_flags
    }

    /// Whether the client is in a transaction: one open on the session's connection, or a
    /// `BEGIN` the proxy answered and has yet to send (the client was told it is in one).
    pub fn in_transaction(&self) -> bool {
        self.begin_deferred
            || self
                .pinned
                .as_ref()
                .is_some_and(|c| c.lease.conn.in_transaction())
    }

    /// A connection for the next statement, carrying this session's state: the pinned one, or
    /// The session's own idle timeout (`None`: the proxy's `wait-timeout`), kept by the
    /// session's timer rather than the registry's sweeper.
    pub fn set_wait_timeout(&mut self, t: Option<std::time::Duration>) {
        self.wait_timeout = t;
        self.status.set_own_timeout(t.is_some());
    }

    /// one from the target's pool. `exclude` lists backends that already failed this statement.
    pub async fn checkout(
        &mut self,
        target: Target,
        exclude: &mut Vec<Arc<Backend>>,
    ) -> Result<Checkout, SqlError> {
        // A statement that lost its connection before `finish` leaves no mark behind.
        self.on_held = false;
        // For this statement only, wherever it runs; a preference, which a write backend known
        // not to serve cannot take (the replica then answers, refusing again or not: a table
        // it lacked may have come since).
        let read_on_primary = std::mem::take(&mut self.read_on_primary) && self.write_serves();
        // Messages stay where they were raised, even when the session has since been
        // pinned to another connection.
        if target == Target::Diagnostics {
            if let Some(c) = self.held.take() {
                self.on_held = true;
                return Ok(c);
            }
        }
        // Messages on a backend taken offline are not worth keeping its connection open
        // for more than a `SHOW WARNINGS`: a session sending statements back to back would
        // otherwise hold it for good.
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.backend.health() == Health::Offline)
        {
            self.release_held();
        }
        // With autocommit off a read opens a transaction, which must be where writes go:
        // while the write backend can take it. Otherwise the transaction runs on a read
        // backend, so reads keep working (Connector/Python and SQLAlchemy turn autocommit
        // off by default), and its writes are refused there (`refuse_on_replica`).
        // So does a read after a `BEGIN` still to go out, which goes with it. A setting then
        // goes to the write backend alone: it too takes the `BEGIN` along, and a transaction
        // must not begin on a replica only because the write backend's pool is busy.
        let read_in_transaction =
            target == Target::Read && (!self.autocommit || self.begin_deferred);
        let target = match target {
            _ if read_in_transaction => Target::Write,
            Target::Session if self.begin_deferred => Target::Write,
            _ => target,
        };
        if let Some(c) = self.pinned.take() {
            let messages = std::mem::take(&mut self.pinned_messages);
            let drain = self.cluster.drain_timeout();
            if c.backend.drained(drain) {
                // Closing the connection makes the server roll the transaction back.
                tracing::warn!(backend = %c.backend.address, session = self.id, "drain time over; closing the session's connection to the offline backend");
                return Err(message::err(
                    codes::CONNECTION_KILLED,
                    format!(
                        "rwproxy: backend {} was taken offline and its drain time ({} s) ran out; the transaction was rolled back",
                        c.backend.address,
                        drain.as_secs()
                    ),
                ));
            }
            if !c.backend.pool.is_current(c.lease.conn.generation) {
                // Its server is no longer behind the address (a failover moved it): what the
                // session holds there (a transaction, variables, locks) cannot follow, and a
                // commit there would be a write the new primary never sees. The session
                // ends, as a direct client's connection to the moved address would.
                tracing::warn!(backend = %c.backend.address, session = self.id, "another server answers at the session's backend now; closing the session, whose connection is to the old one (its transaction rolls back there)");
                self.end_after_reply = true;
                return Err(message::err(
                    codes::CONNECTION_KILLED,
                    format!(
                        "rwproxy: another server answers at backend {} now (a failover); this session's connection to the old one was closed, and its transaction rolled back",
                        c.backend.address
                    ),
                ));
            }
            self.on_held = messages;
            return Ok(c);
        }
        // A statement right after one that left messages runs where they are when it may, so
        // the server itself decides whether it clears them; otherwise they stay held until
        // the statement's outcome says (see `finish`).
        if let Some(h) = &self.held {
            // Only when bringing it to the session's state needs no reset (which would clear
            // the messages).
            let conn = &h.lease.conn;
            let syncable = self.state.vars_delta(&conn.state).is_some()
                && (self.state.schema.is_some() || conn.state.schema.is_none());
            let fits = syncable
                && match target {
                    Target::Diagnostics => false,
                    Target::Read => {
                        !read_on_primary
                            && h.backend.serves()
                            && !exclude.iter().any(|b| Arc::ptr_eq(b, &h.backend))
                            // A replica only if it shows the session its writes as it is
                            // (read-your-writes would otherwise wait, or go to the primary).
                            && (h.backend.role == crate::config::Role::ReadWrite
                                || self.ryw.plan(&h.backend.address) == ReadPlan::Replica)
                    }
                    Target::Write | Target::Session => self
                        .cluster
                        .write_backend()
                        .is_some_and(|w| Arc::ptr_eq(&w, &h.backend)),
                }
                // Not to a server no longer behind the address (see `Pool::retire_all`).
                && h.backend.pool.is_current(conn.generation);
            if fits {
                let mut c = self.held.take().expect("checked");
                let addr = c.backend.address.clone();
                let sync = self.sync_state(&addr, &mut c.lease.conn);
                let read = target == Target::Read;
                // Boxed, as every wait of this function the common case does not take: the
                // session's future would otherwise hold room for each, spreading what a
                // statement touches over more cache lines (see `SessionStatus::unless_stuck`).
                let synced = match Box::pin(self.status.unless_stuck(&c.backend, read, sync)).await
                {
                    Ok(synced) => synced,
                    Err(Stuck::SessionKilled) => return Err(stopped_by(Killed::Session)),
                    Err(Stuck::FoundDown) => Err(BackendError::Unanswered { addr }),
                };
                match synced {
                    Ok(()) => {
                        self.on_held = true;
                        return Ok(c);
                    }
                    Err(e) => {
                        tracing::debug!(session = self.id, "held connection unusable: {e}");
                        drop(c);
                    }
                }
            }
        }
        // Read-your-writes may send a read to the write backend after all (and keeps a read
        // in a transaction there, down or not).
        let reads = target == Target::Read || read_in_transaction;
        // What a replica behind on the session's schema cannot answer, the write backend can
        // (see `lacks_schema`): reads, and the diagnostics statements (`SHOW WARNINGS` with
        // nothing held) that any pooled connection answers alike.
        let behind_goes_primary = reads || target == Target::Diagnostics;
        let mut primary_only = reads && (read_on_primary || self.ryw.plan("") == ReadPlan::Primary);
        // A session setting, or such a read, goes to a read backend when the write backend is
        // known not to serve, or once it failed the statement (the read: only by being down,
        // not by being busy).
        let may_read = target == Target::Session || read_in_transaction && !primary_only;
        let mut on_read = may_read && !self.write_serves();
        loop {
            let backend = match target {
                _ if primary_only => None,
                // With nothing held, the session's last statement left no messages, and a
                // pooled connection (reset after any) has none either.
                Target::Read | Target::Diagnostics => {
                    self.cluster.read_backend(&mut self.reads, exclude)
                }
                _ if on_read => self.cluster.read_backend(&mut self.reads, exclude),
                Target::Write | Target::Session => None,
            };
            let (backend, is_write) = match backend {
                Some(b) => (b, false),
                // A write waits here for a read-only primary to become writable (during a
                // switchover, up to `write-wait-ms`), unless a kill comes first.
                None => match self
                    .status
                    .unless_killed(self.write_backend(target == Target::Write, reads))
                    .await
                {
                    Ok(Ok(b)) => (b, true),
                    Ok(Err(_))
                        if may_read
                            && !on_read
                            && (target == Target::Session || !self.write_serves()) =>
                    {
                        on_read = true;
                        continue;
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(kill) => return Err(stopped_by(kill)),
                },
            };
            // Most statements find an idle connection in step with the session, and nothing
            // to wait for: that path awaits nothing, so it writes no futures into the
            // session's (cold by the time it runs again: a few cache misses per future).
            let schema = self.state.schema.as_ref();
            let mut waited = false;
            let acquired = match backend.pool.take_idle(&self.key, schema, self.command_at) {
                Some(lease) => Ok(lease),
                None => {
                    waited = true;
                    let (key, password) = (&self.key, &self.backend_password());
                    // A session setting does not wait for a full write pool: a read backend
                    // can answer it (the session applies it wherever it runs next), and
                    // clients send settings as they connect. Nor does a read for a full
                    // replica's pool while another replica may have room.
                    let wait = match is_write {
                        true => target != Target::Session || on_read,
                        false => !self.cluster.other_read_backend(&backend, exclude),
                    };
                    let acquire =
                        backend
                            .pool
                            .acquire(&backend.address, key, password, schema, wait);
                    // A full pool can keep a statement waiting for `connect-timeout-ms`; a
                    // kill ends the wait, as it interrupts a statement waiting on a lock.
                    match Box::pin(self.status.unless_killed(acquire)).await {
                        Ok(acquired) => acquired,
                        Err(kill) => return Err(stopped_by(kill)),
                    }
                }
            };
            match acquired {
                // The wait for room in a full pool can be long (`connect-timeout-ms`): an
                // operator may have taken the backend out of service meanwhile (SET OFFLINE,
                // REMOVE BACKEND: in a failover, the old primary). The statement goes where
                // the list says now. (Not for the monitor's verdicts: a write backend found
                // down during a switchover is waited for, see `write_backend`, and a fresh
                // connection to it is the one to use.)
                Ok(lease) if waited && backend.health() == Health::Offline => {
                    self.release_lease(&backend, lease);
                    continue;
                }
                Ok(mut lease) => {
                    // Closed by the server while pooled (restart, `wait_timeout`, a DBA's
                    // KILL)? A statement sent there could not be retried (see `execute`), so
                    // the write backend's connections are looked at before any goes out, at
                    // one system call per checkout. Reads skip it: a failed read is retried.
                    if is_write && lease.reused && lease.conn.looks_closed() {
                        tracing::debug!(backend = %backend.address, session = self.id, "pooled connection closed by the server; taking another");
                        continue;
                    }
                    let mut c = Checkout { backend, lease };
                    let synced = match c.lease.conn.state == self.state {
                        true => Ok(()),
                        false => {
                            let sync = self.sync_differing(&c.backend.address, &mut c.lease.conn);
                            match Box::pin(self.status.unless_stuck(&c.backend, !is_write, sync))
                                .await
                            {
                                Ok(synced) => synced,
                                Err(Stuck::SessionKilled) => {
                                    return Err(stopped_by(Killed::Session))
                                }
                                Err(Stuck::FoundDown) => Err(BackendError::Unanswered {
                                    addr: c.backend.address.clone(),
                                }),
                            }
                        }
                    };
                    match synced {
                        Ok(()) if is_write || !reads => return Ok(c),
                        Ok(()) => {
                            let wait =
                                matches!(self.ryw.plan(&c.backend.address), ReadPlan::WaitFor(..));
                            if !wait || Box::pin(self.replica_has_our_writes(&mut c)).await {
                                return Ok(c);
                            }
                            self.release(c);
                            primary_only = true;
                        }
                        // A replica that has not replicated the session's schema yet (a
                        // `CREATE DATABASE` just made, or left out by replication filters)
                        // is behind the primary for this session: the read runs there, as a
                        // direct connection to the primary would.
                        Err(BackendError::Server(e))
                            if !is_write && behind_goes_primary && lacks_schema(&e) =>
                        {
                            schema_missing_on(&c.backend.address, self.id, &e);
                            // The refusal is its last message: reset before anyone takes it.
                            c.lease.conn.dirty = true;
                            self.release(c);
                            primary_only = true;
                        }
                        Err(BackendError::Server(e)) => {
                            c.lease.conn.dirty = true;
                            self.release(c);
                            return Err(e);
                        }
                        Err(e) if !is_write => {
                            // Nothing was sent for the client's statement yet: a read can
                            // still go elsewhere, as when the connect itself fails.
                            backend_failed(&c.backend, &e, c.lease.reused);
                            exclude.push(c.backend.clone());
                        }
                        Err(e) => {
                            let what = role_name(is_write, &c.backend.address);
                            return Err(e.to_sql_error(&what));
                        }
                    }
                }
                // The same, found by the login of a new connection, which names the schema.
                Err(BackendError::Login { error, .. })
                    if !is_write && behind_goes_primary && lacks_schema(&error) =>
                {
                    schema_missing_on(&backend.address, self.id, &error);
                    primary_only = true;
                }
                Err(e) => {
                    // A full pool is the backend working at its limit, not failing.
                    if !matches!(e, BackendError::PoolExhausted { .. }) {
                        backend.count_error();
                    }
                    if e.means_down() {
                        backend.mark_down(&e);
                    }
                    // A read tries the next backend when this one is down or saturated (its
                    // pool, or the server's own connection limit), ending on the write
                    // backend; a login refusal would repeat everywhere.
                    let login_refused = matches!(e, BackendError::Login { .. }) && !e.server_full();
                    let down = e.means_down() || !self.write_serves();
                    if is_write
                        && may_read
                        && !on_read
                        && !login_refused
                        && (target == Target::Session || down)
                    {
                        tracing::debug!(backend = %backend.address, "write backend failed a session setting or a read, trying a read backend: {e}");
                        on_read = true;
                        continue;
                    }
                    if is_write || login_refused {
                        return Err(e.to_sql_error(&role_name(is_write, &backend.address)));
                    }
                    match e {
                        BackendError::PoolExhausted { .. } => {
                            tracing::debug!(backend = %backend.address, "read backend's pool full, trying another")
                        }
                        _ => {
                            tracing::warn!(backend = %backend.address, "read backend failed, trying another: {e}")
                        }
                    }
                    exclude.push(backend);
                }
            }
        }
    }

    /// The write backend exists and is not known to be down or offline.
    fn write_serves(&self) -> bool {
        self.cluster.write_backend().is_some_and(|w| w.serves())
    }

    /// Causal read-your-writes: whether the replica behind `c` has applied the session's
    /// last write, waiting for it (`MASTER_GTID_WAIT`) up to the configured timeout.
    async fn replica_has_our_writes(&mut self, c: &mut Checkout) -> bool {
        let ReadPlan::WaitFor(gtid, timeout) = self.ryw.plan(&c.backend.address) else {
            return true;
        };
        let wait = read_your_writes::wait_statement(gtid, timeout);
        let waited = c.lease.conn.query_value(&wait);
        match self.status.unless_stuck(&c.backend, true, waited).await {
            Ok(Ok(Some(v))) if v == "0" => {
                self.ryw.caught_up(&c.backend.address);
                true
            }
            Ok(Ok(_)) => {
                tracing::debug!(backend = %c.backend.address, session = self.id, "replica did not apply the session's last write in time; reading from the write backend");
                false
            }
            Ok(Err(e)) => {
                tracing::debug!(backend = %c.backend.address, session = self.id, "read-your-writes wait failed ({e}); reading from the write backend");
                false
            }
            // Found down: the read goes to the write backend. Killed: the statement is
            // refused before it goes out (`start_running`).
            Err(_) => false,
        }
    }

    /// The write backend; for a statement that writes, one that is `writable` (see
    /// [`Cluster::writable_backend`]). A `read` that opens a transaction waits as a write does
    /// (in a switchover its transaction then runs on the new primary), but then runs on the
    /// read-only server all the same: it answers reads (a DBA's maintenance), and the
    /// transaction's writes get its own refusal, as a direct client's do.
    async fn write_backend(&self, writable: bool, read: bool) -> Result<Arc<Backend>, SqlError> {
        let picked = if writable {
            self.cluster.writable_backend().await
        } else {
            Ok(self.cluster.write_backend())
        };
        match picked {
            Ok(Some(b)) => Ok(b),
            Err(b) if read => Ok(b),
            Ok(None) => Err(message::err(
                codes::BACKEND_UNREACHABLE,
                "rwproxy: no write backend configured or online",
            )),
            Err(b) => Err(message::err(
                codes::OPTION_PREVENTS_STATEMENT,
                format!(
                    "rwproxy: write backend {} is read-only (read_only=ON) and did not become writable within {} ms",
                    b.address,
                    self.cluster.write_wait().as_millis()
                ),
            )),
        }
    }

    /// Brings a connection's schema and session variables to this session's.
    async fn sync_state(&self, addr: &str, conn: &mut BackendConn) -> Result<(), BackendError> {
        // Most statements find the connection already there; checking first keeps the
        // general path's future out of theirs (callgrind: 54 instructions per statement).
        if conn.state == self.state {
            return Ok(());
        }
        self.sync_differing(addr, conn).await
    }

    async fn sync_differing(&self, addr: &str, conn: &mut BackendConn) -> Result<(), BackendError> {
        if conn.state.schema != self.state.schema {
            match &self.state.schema {
                Some(db) => conn.use_schema(db).await?,
                // A server cannot "unselect" a schema; tolerated: statements naming no schema
                // then fail only where they would have without the proxy... except here. Open
                // a fresh connection instead so the client sees "No database selected".
                None => {
                    let (open_stmts, generation) = (conn.open_stmts.clone(), conn.generation);
                    *conn = BackendConn::connect(
                        addr,
                        self.key.clone(),
                        &self.backend_password(),
                        &self.cluster.dial,
                    )
                    .await?;
                    conn.open_stmts = open_stmts;
                    conn.generation = generation;
                }
            }
        }
        if self.state.vars_delta(&conn.state).is_none() {
            conn.reset().await?;
            if conn.state.schema != self.state.schema {
                return Box::pin(self.sync_differing(addr, conn)).await;
            }
        }
        let delta = self.state.vars_delta(&conn.state).unwrap_or(&[]).to_vec();
        for (k, text) in delta {
            conn.run(&format!("SET {text}")).await?;
            if k == TRACKED_LIST {
                conn.track_session().await?;
            }
            if k == TRANSACTION_INFO {
                conn.track.forget_transaction_info();
            }
            conn.state.set_var(k, text);
        }
        Ok(())
    }

    /// After a statement: keep the connection if the session must stay on it, else give it
    /// back to its pool.
    ///
    /// A statement that left messages (`Diag::Left`) has its connection held until a later
    /// statement clears them, so `SHOW WARNINGS` and `@@warning_count` see what a direct
    /// connection would; a held connection is reset before anyone else uses it.
    pub fn finish(&mut self, mut c: Checkout, diag: Diag) {
        let on_held = std::mem::take(&mut self.on_held);
        let messages = diag == Diag::Left;
        // A statement that ran where the messages are leaves the server to decide.
        let kept = diag == Diag::Kept || (on_held && diag == Diag::Unknown);
        if !kept {
            // Whatever was held before this statement shows nothing any more.
            self.release_held();
        }
        let in_txn = c.conn().in_transaction();
        // Whatever began it (a `BEGIN` put off, then sent by a statement killed before it
        // went out), the transaction is open: no second `BEGIN` is to go out.
        if in_txn {
            self.begin_deferred = false;
        }
        self.autocommit = c.conn().status & SERVER_STATUS_AUTOCOMMIT != 0;
        if !std::mem::take(&mut self.settings_transient) {
            self.sql_mode_flags = c.conn().status & message::SQL_MODE_FLAGS;
        }
        self.sticky.next_transaction = match (self.sticky.next_transaction, in_txn) {
            (NextTransaction::Pending, true) => NextTransaction::Started,
            (NextTransaction::Started, false) => NextTransaction::None,
            (n, _) => n,
        };
        if self.sticky.server_state || messages {
            c.conn().dirty = true;
        }
        let keep_held = messages || (on_held && kept);
        if on_held && self.pinned.is_some() {
            // A diagnostics statement of a session pinned elsewhere.
            if keep_held {
                self.held = Some(c);
            } else {
                self.release(c);
            }
        } else if in_txn || self.sticky.any() {
            self.pinned_messages = keep_held;
            self.pinned = Some(c);
        } else if keep_held {
            self.held = Some(c);
        } else {
            self.release_keeping_run(c);
        }
    }

    /// Whether `class` commits implicitly and so ends a transaction the session holds on a
    /// replica, which [`Session::commit_implicitly`] then ends first. Not a `START
    /// TRANSACTION READ ONLY`, which goes on there, nor with state the session made there.
    pub fn ends_replica_transaction(
        &self,
        class: &crate::router::classify::Classification,
    ) -> bool {
        use crate::router::classify::{Flags, StmtKind};
        class.flags.contains(Flags::IMPLICIT_COMMIT)
            && class.kind != (StmtKind::Begin { read_only: true })
            && !self.sticky.server_state
            && !self.sticky.locked_tables
            && self.pinned.as_ref().is_some_and(|c| {
                c.backend.role == crate::config::Role::ReadOnly && c.lease.conn.in_transaction()
            })
    }

    /// Before a statement that commits implicitly (DDL, `BEGIN`, `LOCK TABLES`...): a
    /// transaction held on a replica (a read-only one, or one that began while the write
    /// backend was down) ends here, as the statement would end it on the server, so the
    /// statement routes like any other and a DDL runs on the write backend as it does on a
    /// primary (on the replica its `read_only` refuses it). Giving the connection back resets
    /// it, which rolls the transaction back: the same as a commit for a transaction whose
    /// writes were all refused. A session that made state there (a user variable, a
    /// temporary table) stays, see [`Session::refuse_on_replica`].
    ///
    /// `BEGIN` and `START TRANSACTION` keep the messages the transaction's last statement
    /// left, where a DDL replaces them: for those the proxy ends the transaction with a
    /// `ROLLBACK`, which keeps them too, and holds the connection for `SHOW WARNINGS`.
    ///
    /// Only when [`Session::ends_replica_transaction`] says so: checked by the caller, so
    /// that the common statement that commits implicitly (every `BEGIN`) builds no future.
    pub async fn commit_implicitly(&mut self, sql: &[u8]) {
        let Some(mut c) = self.pinned.take() else {
            return;
        };
        if self.sticky.next_transaction == NextTransaction::Started {
            self.sticky.next_transaction = NextTransaction::None;
        }
        if std::mem::take(&mut self.pinned_messages)
            && crate::router::diag_effect(sql) == DiagEffect::Keeps
        {
            // Spelled out: a plain one follows the session's `completion_type`, which the
            // implicit commit never does (it would chain a transaction, or close).
            let ended = c.lease.conn.run("ROLLBACK AND NO CHAIN NO RELEASE");
            let ended = self.status.unless_stuck(&c.backend, true, ended).await;
            if matches!(ended, Ok(Ok(_))) && !c.lease.conn.in_transaction() {
                self.release_held();
                self.held = Some(c);
                return;
            }
        }
        self.release(c);
    }

    /// Refuses, when the session is held on a replica, what must not run there:
    /// - in a transaction that began (autocommit=0, or a `BEGIN` the proxy sent with a read)
    ///   while the write backend could not be reached, anything but reads and settings: a
    ///   locking read there locks nothing the primary's clients see, and a user variable or
    ///   temporary table would hold the session on the replica for good;
    /// - a statement that changes data (outside a read-only transaction, whose server refuses
    ///   it itself; inside one, a DDL the server would run after committing): state the
    ///   session made there (a user variable or temporary table in a read-only transaction or
    ///   under a `/*slave*/` hint) cannot move, and the write must not run on a replica, where
    ///   a user allowed to bypass `read_only` would change it behind replication's back;
    /// - a named lock (`GET_LOCK` and friends): taken on a replica, it excludes no client of
    ///   the primary's, and `IS_FREE_LOCK` there answers about the wrong server;
    /// - `SELECT … INTO OUTFILE|DUMPFILE`, which would write its file on the replica's host
    ///   where the client expects the primary's.
    pub fn refuse_on_replica(
        &self,
        class: &crate::router::classify::Classification,
    ) -> Option<SqlError> {
        use crate::router::classify::{Flags, StmtKind};
        let c = self.pinned.as_ref()?;
        if c.backend.role != crate::config::Role::ReadOnly {
            return None;
        }
        let addr = &c.backend.address;
        let refuse = |why: String| Some(message::err(codes::OPTION_PREVENTS_STATEMENT, why));
        let read_only_transaction = c.lease.conn.status & SERVER_STATUS_IN_TRANS_READONLY != 0;
        // Nothing else holds a session on a replica in a read-write transaction.
        let began_without_primary =
            c.lease.conn.in_transaction() && !read_only_transaction && !self.sticky.server_state;
        if began_without_primary && !reads_or_settings(class) {
            return refuse(format!(
                "rwproxy: this transaction runs on replica {addr}: it began (with autocommit=0, or a BEGIN sent with its first read) while the write backend could not be reached, and only reads run there; end it and retry"
            ));
        }
        if class.flags.contains(Flags::GET_LOCK) {
            return refuse(format!(
                "rwproxy: this session is held on replica {addr} (a read-only transaction, or state it made there), where a named lock would exclude no other client; take named locks outside read-only transactions"
            ));
        }
        if class.flags.contains(Flags::SELECT_INTO) && !class.flags.contains(Flags::USER_VAR_WRITE)
        {
            return refuse(format!(
                "rwproxy: this session is held on replica {addr} (a read-only transaction, or state it made there), where SELECT ... INTO OUTFILE or DUMPFILE would write its file on that replica's host; send it outside read-only transactions, from a session that keeps no state on a replica"
            ));
        }
        // In a read-only transaction the server refuses a write itself, unless the write
        // commits the transaction first (DDL), which `commit_implicitly` did not allow.
        if class.kind != StmtKind::Write
            || read_only_transaction && !class.flags.contains(Flags::IMPLICIT_COMMIT)
        {
            return None;
        }
        refuse(format!(
            "rwproxy: this session keeps server state (user variables, temporary tables, named locks or cursors) on replica {addr}, where writes cannot run; reconnect to write"
        ))
    }

    /// The proxy answered the last command with an error of its own: the messages of any
    /// earlier statement are gone, as on a server, and this error is what `SHOW WARNINGS`
    /// and friends must show.
    pub fn raised_by_proxy(&mut self, e: SqlError) {
        self.release_held();
        self.pinned_messages = false;
        self.proxy_error = Some(e);
    }

    /// Raises the proxy's own error on `conn` (`SIGNAL`) before a diagnostics statement
    /// (`SHOW WARNINGS`, `@@warning_count`...) runs there: the connection then holds it as a
    /// server holds its last error, and keeps holding it for the statements after, as a held
    /// connection does. Until such a statement comes, the error waits in the session (the
    /// statements in between keep it only if they keep messages, see `execute`), so a
    /// session's reads still spread over the replicas after an error, and the extra round
    /// trip is paid only by a diagnostics statement.
    ///
    /// A server found down while it does not answer is given up on as before a statement
    /// (see `SessionStatus::unless_stuck`; `leavable`: the connection is not the session's
    /// own, so down is enough); the error then waits in the session again.
    pub async fn raise_proxy_error_on(
        &mut self,
        backend: &Backend,
        leavable: bool,
        conn: &mut BackendConn,
    ) -> Result<(), Stuck> {
        let Some(e) = self.proxy_error.take() else {
            return Ok(());
        };
        // A SIGNAL's message may have 512 characters; the hex literal reads the same under
        // any sql_mode or connection character set.
        let text: String = e.message.chars().take(512).collect();
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        let state = String::from_utf8_lossy(&e.state);
        let signal = format!(
            "SIGNAL SQLSTATE '{state}' SET MYSQL_ERRNO = {}, MESSAGE_TEXT = _utf8mb4 x'{hex}'",
            e.code
        );
        let status = self.status.clone();
        let raised = match status
            .unless_stuck(backend, leavable, conn.run(&signal))
            .await
        {
            Ok(raised) => raised,
            Err(stuck) => {
                self.proxy_error = Some(e);
                return Err(stuck);
            }
        };
        match raised {
            Err(BackendError::Server(raised)) if raised.code == e.code => {
                self.on_held = true;
                // It holds messages now: reset before another session gets it.
                conn.dirty = true;
            }
            Err(other) => {
                tracing::debug!(
                    session = self.id,
                    "could not raise the proxy's error on the backend for SHOW WARNINGS: {other}"
                )
            }
            Ok(_) => {}
        }
        Ok(())
    }

    /// A connection is kept for `SHOW WARNINGS`, or the running statement got it: the
    /// statement's effect on messages decides what `finish` does with it.
    pub fn diagnostics_held(&self) -> bool {
        self.held.is_some() || self.on_held || self.pinned_messages
    }

    /// The messages of the session's last statement are held on a connection other than the
    /// one its user variables live on: the pinned one, or else one to the write backend.
    pub fn messages_apart_from_variables(&self) -> bool {
        self.held.as_ref().is_some_and(|h| {
            self.pinned.is_some()
                || !self
                    .cluster
                    .write_backend()
                    .is_some_and(|w| Arc::ptr_eq(&w, &h.backend))
        })
    }

    /// Nothing a `COMMIT` or `ROLLBACK` could end or change: no connection pinned (so no
    /// transaction, table locks or server-side state), no characteristics waiting for the
    /// next transaction (an empty `COMMIT` would use them up), and a `completion_type` that
    /// neither chains a transaction nor releases: the server's (the write backend's login
    /// tells), with none set by the session. Messages kept for `SHOW WARNINGS` stay kept, as
    /// a server keeps them; a connection held for them is in no transaction while autocommit
    /// is on (with it off, its status could be stale after an error).
    pub fn nothing_to_end(&self) -> bool {
        self.pinned.is_none()
            && !self.sticky.any()
            && (self.held.is_none() || self.autocommit)
            && !self.state.vars.iter().any(|(k, _)| k == "completion_type")
            && self
                .cluster
                .write_backend()
                .is_some_and(|b| b.pool.plain_completion())
    }

    /// Whether a plain `BEGIN` may wait to go out with the transaction's first statement
    /// (`begin_deferred`): when it starts from nothing and its OK says nothing the proxy's
    /// would not. Not with a connection held (a transaction to end, or messages), state that
    /// pins the session, `autocommit=0`, a `SET TRANSACTION` waiting for it, an error of the
    /// proxy's own still to show, session tracking the client set (the server's OK would
    /// carry it), or a write backend known not to serve (its `BEGIN` fails at once, as
    /// before).
    pub fn may_defer_begin(&self) -> bool {
        self.pinned.is_none()
            && self.held.is_none()
            && self.autocommit
            && !self.sticky.any()
            && self.proxy_error.is_none()
            && !self
                .state
                .vars
                .iter()
                .any(|(k, _)| k.starts_with("session_track"))
            && self.write_serves()
    }

    /// Whether a read (`read`: unpinned, to a read backend) on `c` may run again on the write
    /// backend when its replica refuses it for being one (`relay::refused_as_replica`): an
    /// autocommit one on a replica, not one that took a `BEGIN` put off there (the
    /// transaction began with it).
    pub fn may_read_again_on_primary(&self, read: bool, c: &Checkout) -> bool {
        read && self.autocommit
            && !self.begin_deferred
            && c.backend.role == crate::config::Role::ReadOnly
    }

    /// Gives back the replica connection of a read its replica refused for being one
    /// (`relay::refused_as_replica`), and sends the read, run again, to the write backend.
    /// The connection's last message is that error: it is reset before reuse.
    pub fn read_again_on_primary(&mut self, mut c: Checkout) {
        c.lease.conn.dirty = true;
        self.release(c);
        self.read_on_primary = true;
    }

    /// Lets go of the connection kept for `SHOW WARNINGS`.
    pub fn release_held(&mut self) {
        if let Some(c) = self.held.take() {
            self.release(c);
        }
    }

    pub fn release(&self, c: Checkout) {
        self.release_lease(&c.backend, c.lease);
    }

    /// Gives a connection back to the pool and its backend to the read picker, whose run
    /// then goes on with it (see [`ReadPicker::give_back`]).
    pub fn release_keeping_run(&mut self, c: Checkout) {
        let Checkout { backend, lease } = c;
        self.release_lease(&backend, lease);
        self.reads.give_back(backend);
    }

    fn release_lease(&self, backend: &Arc<Backend>, lease: Lease) {
        if backend.health() == Health::Offline {
            // Taken out by an operator: its connections close as their sessions let go.
            return;
        }
        // Held an XA transaction: closing (not resetting) it leaves that to the server. Or to
        // a server no longer behind the address: no reset either (see `Pool::release`).
        // Every connection a session gives back comes through here.
        if lease.conn.close_on_release || !backend.pool.is_current(lease.conn.generation) {
            return;
        }
        if lease.conn.needs_reset() {
            let backend = backend.clone();
            tokio::spawn(async move {
                lease.reset_and_release(&backend).await;
            });
        } else {
            backend
                .pool
                .release(lease, self.replied_at.unwrap_or(self.command_at));
        }
    }

    /// Ends the session: a held connection is rolled back / reset before anyone else gets it.
    pub fn close(&mut self) {
        self.pinned_messages = false;
        if let Some(mut c) = self.pinned.take() {
            // `LOCK TABLES` and a pending `SET TRANSACTION` leave no other trace on the
            // connection that says it must be reset.
            if self.sticky.any() {
                c.conn().dirty = true;
            }
            self.release(c);
        }
        self.release_held();
    }
}

/// A tracked variable's value as SQL: a string literal, except the empty character set a
/// server reports for `character_set_results = NULL`.
/// A statement that runs on a replica as it would anywhere: a plain read, a setting, the end
/// of the transaction.
fn reads_or_settings(class: &crate::router::classify::Classification) -> bool {
    use crate::router::classify::{Flags, StmtKind};
    match class.kind {
        StmtKind::Read | StmtKind::Empty => matches!(
            crate::router::target(class),
            Target::Read | Target::Diagnostics
        ),
        StmtKind::Set => !class
            .flags
            .intersects(super::query::SERVER_STATE | Flags::USER_VAR_READ),
        StmtKind::EndTransaction | StmtKind::Use | StmtKind::Begin { .. } | StmtKind::Kill => true,
        _ => false,
    }
}

/// A plain `SET`, which the proxy records in the client's own words (`query`), unless some of
/// it was not understood (an executable comment, `/*!40101 SET ... */`): then what the server
/// reports is all the proxy learns.
fn recorded_in_own_words(cs: Option<Multibyte>, packet: &[u8]) -> bool {
    packet.first() == Some(&crate::protocol::command::COM_QUERY) && {
        // Read as `query` read it: a `SET` holding two-byte characters was not recorded.
        let sql = crate::router::multibyte::lexable(cs, &packet[1..]);
        let c = classify::classify(&sql);
        matches!(sql, std::borrow::Cow::Borrowed(_))
            && c.kind == StmtKind::Set
            && !c.flags.contains(Flags::MULTI_STATEMENT)
            && !set_stmt::parse(&String::from_utf8_lossy(&sql))
                .contains(&set_stmt::Assignment::Other)
    }
}

fn sql_value(name: &str, value: &str) -> String {
    if value.is_empty() && name.starts_with("character_set_") {
        return "NULL".into();
    }
    // A number variable (`net_write_timeout`) refuses a quoted value (1232).
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for ch in value.chars() {
        if ch == '\'' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// The error that ends a statement a kill stopped before it went out (`KILL CONNECTION`'s is
/// never shown: the session closes without a word).
fn stopped_by(kill: Killed) -> SqlError {
    match kill {
        Killed::Query => crate::client::kill::query_interrupted(),
        Killed::Session => message::err(codes::CONNECTION_KILLED, "Connection was killed"),
    }
}

/// The server refused the session's schema as unknown (1049).
fn lacks_schema(e: &SqlError) -> bool {
    e.code == codes::BAD_DB.0
}

fn schema_missing_on(replica: &str, session: u32, e: &SqlError) {
    tracing::debug!(backend = %replica, session, "replica does not have the session's schema yet ({}): the read runs on the write backend", e.message);
}

/// A read backend's connection broke while being brought to the session's state.
fn backend_failed(backend: &Backend, e: &BackendError, reused: bool) {
    backend.count_error();
    if !reused {
        backend.mark_down(e);
    }
    tracing::warn!(backend = %backend.address, "read backend failed, trying another: {e}");
}

fn role_name(is_write: bool, addr: &str) -> String {
    if is_write {
        format!("write backend {addr}")
    } else {
        format!("read backend {addr}")
    }
}
