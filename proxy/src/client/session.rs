//! A client session's server-side half: which backend connection it holds (if any), what
//! state it expects a connection to carry, and when it may let go of a connection.

use crate::backend::conn::{BackendConn, BackendError, ConnKey};
use crate::backend::pool::Lease;
use crate::backend::relay::Relayed;
use crate::backend::{Backend, Health};
use crate::client::prepared::PreparedStmt;
use crate::client::registry::{Registry, SessionStatus};
use crate::client::ClientSettings;
use crate::cluster::Cluster;
use crate::protocol::message::{self, codes, SqlError, SERVER_STATUS_AUTOCOMMIT};
use crate::router::Target;
use crate::session::state::SessionState;
use crate::stats::Stats;
use std::collections::HashMap;
use std::sync::Arc;

/// Why a session must stay on its connection even outside a transaction.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sticky {
    /// `LOCK TABLES` until `UNLOCK TABLES`.
    pub locked_tables: bool,
    /// Server-side state the proxy cannot replay elsewhere: user variables, temporary tables,
    /// named locks, `SQL_CALC_FOUND_ROWS`, text-protocol prepared statements, cursors, long
    /// data. Lasts for the rest of the session; the connection is reset before reuse.
    pub server_state: bool,
    /// `SET TRANSACTION ...` for the next transaction, until that transaction ends.
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

/// A backend connection in use by a statement.
pub struct Checkout {
    pub backend: Arc<Backend>,
    pub lease: Lease,
}

impl Checkout {
    pub fn conn(&mut self) -> &mut BackendConn {
        &mut self.lease.conn
    }
}

pub struct Session {
    pub id: u32,
    pub cluster: Arc<Cluster>,
    pub key: ConnKey,
    password: String,
    pub state: SessionState,
    pub pinned: Option<Checkout>,
    /// The connection of the last statement that left warnings or an error, kept for a
    /// following `SHOW WARNINGS` (see `finish`).
    pub held: Option<Checkout>,
    pub sticky: Sticky,
    /// `LAST_INSERT_ID()` as this session would see it on a dedicated connection.
    pub last_insert_id: u64,
    pub stmts: HashMap<u32, PreparedStmt>,
    pub next_stmt_id: u32,
    /// This session's entry in the registry, where `KILL` finds it.
    pub status: Arc<SessionStatus>,
    /// Every session, for `KILL`.
    pub registry: Arc<Registry>,
    /// The greeting's scramble, which a `COM_CHANGE_USER` with caching_sha2_password
    /// answers again.
    pub scramble: [u8; 20],
    /// Refused `COM_CHANGE_USER` attempts so far.
    pub failed_change_user: u8,
    /// Atlas's `charset`: every session starts with `SET NAMES <charset>`, also after a
    /// reset or a change of user.
    charset: Option<String>,
    pub stats: Arc<Stats>,
    /// The client's address, for the SQL log.
    pub peer: std::net::SocketAddr,
    /// Reused for normalising statements into digests.
    digest_buf: Vec<u8>,
}

impl Session {
    pub fn new(
        cluster: Arc<Cluster>,
        key: ConnKey,
        password: String,
        info: &ClientSettings,
        status: Arc<SessionStatus>,
        scramble: [u8; 20],
    ) -> Self {
        let mut s = Session {
            id: status.id,
            cluster,
            key,
            password,
            state: SessionState::default(),
            pinned: None,
            held: None,
            sticky: Sticky::default(),
            last_insert_id: 0,
            stmts: HashMap::new(),
            next_stmt_id: 1,
            peer: status.client,
            status,
            registry: info.registry.clone(),
            scramble,
            failed_change_user: 0,
            charset: info.charset.clone(),
            stats: info.stats.clone(),
            digest_buf: Vec::new(),
        };
        s.apply_charset();
        s
    }

    fn apply_charset(&mut self) {
        if let Some(cs) = &self.charset {
            self.state.set_var("names".into(), format!("NAMES {cs}"));
        }
    }

    /// The password the session's backend connections log in with.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Later statements run as `user` (pools are keyed by user), on connections opened with
    /// `collation`.
    pub fn switch_user(&mut self, user: &str, password: String, collation: u8) {
        self.key.user = user.into();
        self.key.collation = collation;
        self.password = password;
        self.status.set_user(user);
    }

    /// Starts the session over, as `COM_RESET_CONNECTION` and `COM_CHANGE_USER` do on a
    /// server: its connections go back (rolled back and reset before anyone reuses them),
    /// variables, prepared statements and reasons to stay pinned are forgotten, and the
    /// schema is `schema`.
    pub async fn start_over(&mut self, schema: Option<String>) {
        self.close().await;
        self.state = SessionState {
            schema,
            vars: Vec::new(),
        };
        self.apply_charset();
        self.sticky = Sticky::default();
        self.stmts.clear();
        self.last_insert_id = 0;
    }

    /// Counts a finished statement in the digest table: rows read, or else rows changed.
    pub fn record_digest(&mut self, sql: &[u8], r: &Relayed) {
        let rows = if r.rows > 0 {
            r.rows
        } else {
            r.completion.affected_rows
        };
        self.stats
            .digests
            .record(sql, &mut self.digest_buf, r.latency_us, rows);
    }

    /// Status flags for replies the proxy writes itself.
    pub fn status(&self) -> u16 {
        match &self.pinned {
            Some(c) => c.lease.conn.status,
            None => SERVER_STATUS_AUTOCOMMIT,
        }
    }

    /// A connection for the next statement, carrying this session's state: the pinned one, or
    /// one from the target's pool. `exclude` lists backends that already failed this statement.
    pub async fn checkout(
        &mut self,
        target: Target,
        exclude: &mut Vec<Arc<Backend>>,
    ) -> Result<Checkout, SqlError> {
        if let Some(c) = self.pinned.take() {
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
            return Ok(c);
        }
        if target == Target::Diagnostics {
            if let Some(c) = self.held.take() {
                return Ok(c);
            }
        }
        self.release_held().await;
        loop {
            let backend = match target {
                // With nothing held, the session's last statement left no messages, and a
                // pooled connection (reset after any) has none either.
                Target::Read | Target::Diagnostics => self.cluster.read_backend(exclude),
                Target::Write => None,
            };
            let (backend, is_write) = match backend {
                Some(b) => (b, false),
                None => (self.write_backend(target).await?, true),
            };
            match backend
                .pool
                .acquire(
                    &backend.address,
                    &self.key,
                    &self.password,
                    self.state.schema.as_deref(),
                )
                .await
            {
                Ok(lease) => {
                    let mut c = Checkout { backend, lease };
                    match self.sync_state(&c.backend.address, &mut c.lease.conn).await {
                        Ok(()) => return Ok(c),
                        Err(BackendError::Server(e)) => {
                            self.release(c).await;
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
                Err(e) => {
                    backend
                        .errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if e.means_down() {
                        backend.mark_down(&e);
                    }
                    // A read tries the next backend when this one is down or saturated
                    // (ending on the write backend); a login refusal would repeat everywhere.
                    let login_refused = matches!(e, BackendError::Login { .. });
                    if is_write || login_refused {
                        return Err(e.to_sql_error(&role_name(is_write, &backend.address)));
                    }
                    tracing::warn!(backend = %backend.address, "read backend failed, trying another: {e}");
                    exclude.push(backend);
                }
            }
        }
    }

    /// The write backend; for a statement that writes, one that is writable (see
    /// [`Cluster::writable_backend`]). Reads falling back to it need not wait.
    async fn write_backend(&self, target: Target) -> Result<Arc<Backend>, SqlError> {
        let picked = if target == Target::Write {
            self.cluster.writable_backend().await
        } else {
            Ok(self.cluster.write_backend())
        };
        match picked {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(message::err(
                codes::CONN_HOST_ERROR,
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
        if conn.state.schema != self.state.schema {
            match &self.state.schema {
                Some(db) => {
                    let mut cmd = vec![crate::backend::conn::COM_INIT_DB];
                    cmd.extend_from_slice(db.as_bytes());
                    conn.command(&cmd).await?;
                    conn.state.schema = Some(db.clone());
                }
                // A server cannot "unselect" a schema; tolerated: statements naming no schema
                // then fail only where they would have without the proxy... except here. Open
                // a fresh connection instead so the client sees "No database selected".
                None => {
                    *conn = BackendConn::connect(
                        addr,
                        self.key.clone(),
                        &self.password,
                        self.cluster.connect_timeout,
                    )
                    .await?;
                }
            }
        }
        if self.state.vars_delta(&conn.state).is_none() {
            conn.reset().await?;
            if conn.state.schema != self.state.schema {
                return Box::pin(self.sync_state(addr, conn)).await;
            }
        }
        let delta = self.state.vars_delta(&conn.state).unwrap_or(&[]).to_vec();
        for (k, text) in delta {
            conn.run(&format!("SET {text}")).await?;
            conn.state.set_var(k, text);
        }
        Ok(())
    }

    /// After a statement: keep the connection if the session must stay on it, else give it
    /// back to its pool.
    ///
    /// `messages`: the statement left warnings or an error behind. The session then keeps
    /// the connection until its next statement, so `SHOW WARNINGS` sees them; such a
    /// connection is reset before anyone else uses it.
    pub async fn finish(&mut self, mut c: Checkout, messages: bool) {
        let in_txn = c.conn().in_transaction();
        self.sticky.next_transaction = match (self.sticky.next_transaction, in_txn) {
            (NextTransaction::Pending, true) => NextTransaction::Started,
            (NextTransaction::Started, false) => NextTransaction::None,
            (n, _) => n,
        };
        if self.sticky.server_state || messages {
            c.conn().dirty = true;
        }
        if in_txn || self.sticky.any() {
            self.pinned = Some(c);
        } else if messages {
            self.held = Some(c);
        } else {
            self.release(c).await;
        }
    }

    /// Lets go of the connection kept for `SHOW WARNINGS`.
    pub async fn release_held(&mut self) {
        if let Some(c) = self.held.take() {
            self.release(c).await;
        }
    }

    pub async fn release(&self, c: Checkout) {
        let Checkout { backend, lease } = c;
        if backend.health() == Health::Offline {
            // Taken out by an operator: its connections close as their sessions let go.
            return;
        }
        if lease.conn.needs_reset() {
            tokio::spawn(async move {
                lease.reset_and_release(&backend.pool).await;
            });
        } else {
            backend.pool.release(lease);
        }
    }

    /// Ends the session: a held connection is rolled back / reset before anyone else gets it.
    pub async fn close(&mut self) {
        if let Some(mut c) = self.pinned.take() {
            // `LOCK TABLES` and a pending `SET TRANSACTION` leave no other trace on the
            // connection that says it must be reset.
            if self.sticky.any() {
                c.conn().dirty = true;
            }
            self.release(c).await;
        }
        self.release_held().await;
    }
}

/// A read backend's connection broke while being brought to the session's state.
fn backend_failed(backend: &Backend, e: &BackendError, reused: bool) {
    backend
        .errors
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
