//! A live view of every client session, for the admin console's `SELECT * FROM sessions`.
//!
//! Each session owns an `Arc<SessionStatus>` it updates around each command (one uncontended
//! lock, no allocation once the statement buffer has grown); the console only reads.

use dashmap::DashMap;
use rwproxy_admin::SessionInfo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Statements longer than this are shown cut.
const MAX_SHOWN: usize = 1024;

#[derive(Default)]
pub struct Registry {
    sessions: DashMap<u32, Arc<SessionStatus>>,
}

pub struct SessionStatus {
    pub id: u32,
    pub client: SocketAddr,
    pub user: String,
    now: Mutex<Now>,
}

#[derive(Default)]
struct Now {
    schema: Option<String>,
    backend: Option<String>,
    in_transaction: bool,
    statement: String,
    since: Option<Instant>,
    last_gtid: Option<String>,
}

impl Registry {
    /// Registers a session; it disappears when the returned guard is dropped.
    pub fn enter(self: &Arc<Self>, id: u32, client: SocketAddr, user: &str) -> Entry {
        let status = Arc::new(SessionStatus {
            id,
            client,
            user: user.to_string(),
            now: Mutex::new(Now::default()),
        });
        self.sessions.insert(id, status.clone());
        Entry {
            registry: self.clone(),
            status,
        }
    }

    /// Every session as the console's `sessions` table shows it, oldest first.
    pub fn view(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|e| {
                let s = e.value();
                let now = s.now.lock().expect("session status lock");
                SessionInfo {
                    id: u64::from(s.id),
                    client: s.client.to_string(),
                    user: s.user.clone(),
                    schema: now.schema.clone(),
                    backend: now.backend.clone(),
                    in_transaction: now.in_transaction,
                    statement: now.since.map(|_| now.statement.clone()),
                    statement_age_ms: now.since.map(|t| t.elapsed().as_millis() as u64),
                    last_gtid: now.last_gtid.clone(),
                }
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

/// A session's registration.
pub struct Entry {
    registry: Arc<Registry>,
    pub status: Arc<SessionStatus>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry.sessions.remove(&self.status.id);
    }
}

impl SessionStatus {
    /// A command starts running.
    pub fn begin(&self, what: &[u8]) {
        let mut now = self.now.lock().expect("session status lock");
        now.statement.clear();
        let shown = &what[..what.len().min(MAX_SHOWN)];
        now.statement.push_str(&String::from_utf8_lossy(shown));
        now.since = Some(Instant::now());
    }

    /// The command finished; what the session holds now.
    pub fn end(
        &self,
        schema: Option<&str>,
        backend: Option<&str>,
        in_transaction: bool,
        last_gtid: Option<&str>,
    ) {
        let mut now = self.now.lock().expect("session status lock");
        if now.last_gtid.as_deref() != last_gtid {
            now.last_gtid = last_gtid.map(str::to_string);
        }
        now.since = None;
        now.in_transaction = in_transaction;
        if now.schema.as_deref() != schema {
            now.schema = schema.map(str::to_string);
        }
        if now.backend.as_deref() != backend {
            now.backend = backend.map(str::to_string);
        }
    }
}
