//! `KILL [CONNECTION | QUERY] n` and `COM_PROCESS_KILL n`, where n is the id the proxy gave
//! its client in the greeting. Backend thread ids mean nothing to clients (and forwarding
//! them would kill an unrelated pooled connection), so the proxy finds the session in its
//! registry and kills what runs for it: the statement on the backend connection where it
//! actually runs, from a fresh connection as the same user, or the whole session. The admin
//! console's `KILL` may kill any session.

use super::registry::{Running, SessionStatus, FIRST_SESSION_ID};
use super::session::Session;
use super::{ClientIo, SessionEnd};
use crate::backend::conn::{BackendConn, BackendError, ConnKey, Dial};
use crate::cluster::Cluster;
use crate::protocol::message::{self, codes, SqlError};
use crate::router::classify;
use std::sync::Arc;

/// Server error for a thread that is gone between lookup and kill.
const UNKNOWN_THREAD: u16 = codes::UNKNOWN_THREAD.0;

/// What a server answers a statement `KILL QUERY` stopped.
pub fn query_interrupted() -> SqlError {
    message::err(codes::QUERY_INTERRUPTED, "Query execution was interrupted")
}

pub async fn kill_statement(
    s: &mut Session,
    io: &mut ClientIo,
    sql: &[u8],
) -> Result<(), SessionEnd> {
    let Some(t) = classify::kill_target(sql) else {
        io.error(&message::err(
            codes::NOT_SUPPORTED,
            "rwproxy supports only KILL [HARD | SOFT] [CONNECTION | QUERY] <thread id>, alone in its command",
        ))
        .await?;
        return Ok(());
    };
    let id = t.id.unwrap_or(u64::from(s.id));
    kill(s, io, id, t.query_only).await
}

/// `COM_PROCESS_KILL`: kills the connection. A server reads the 4-byte id from whatever was
/// sent, so a short packet names a small id rather than being an error.
pub async fn process_kill(
    s: &mut Session,
    io: &mut ClientIo,
    packet: &[u8],
) -> Result<(), SessionEnd> {
    let mut id = [0u8; 4];
    for (d, b) in id.iter_mut().zip(packet.iter().skip(1)) {
        *d = *b;
    }
    kill(s, io, u64::from(u32::from_le_bytes(id)), false).await
}

async fn kill(
    s: &mut Session,
    io: &mut ClientIo,
    id: u64,
    query_only: bool,
) -> Result<(), SessionEnd> {
    let target = u32::try_from(id).ok().and_then(|n| s.registry.get(n));
    let Some(target) = target else {
        let hint = match id < u64::from(FIRST_SESSION_ID) {
            true => format!(" (rwproxy: this is no session of the proxy, whose ids start at {FIRST_SESSION_ID}, as CONNECTION_ID() shows; a server's thread ids, as its SHOW PROCESSLIST lists them, can be killed on that server)"),
            false => String::new(),
        };
        io.error(&message::err(
            codes::UNKNOWN_THREAD,
            format!("Unknown thread id: {id}{hint}"),
        ))
        .await?;
        return Ok(());
    };
    if target.user() != s.status.user() {
        io.error(&message::err(
            codes::KILL_DENIED,
            format!("You are not owner of thread {id}"),
        ))
        .await?;
        return Ok(());
    }
    if target.id == s.id {
        // What a server answers a session killing itself; the connection then closes.
        if query_only {
            io.error(&query_interrupted()).await?;
        } else {
            s.status.kill();
            io.error(&message::err(
                codes::CONNECTION_KILLED,
                "Connection was killed",
            ))
            .await?;
        }
        return Ok(());
    }
    let outcome = kill_session(
        &target,
        query_only,
        s.key.clone(),
        &s.backend_password(),
        &s.cluster.dial,
    )
    .await;
    match outcome {
        Ok(()) => io.ok(s.status()).await?,
        Err(e) => io.error(&e).await?,
    }
    tracing::info!(
        session = s.id,
        target = target.id,
        query_only,
        "killed by client"
    );
    Ok(())
}

/// Starts killing `target` (its statement, or the whole session) and returns at once: for
/// callers that cannot wait for the backend (the admin console).
/// Logs in to the backend as the session's user, who may kill its own threads: with the
/// user's password as the proxy knows it now, or the session's own if the user was removed.
pub fn kill_in_background(target: Arc<SessionStatus>, cluster: &Cluster, query_only: bool) {
    let (user, own) = target.credentials();
    let password = cluster.password_of(&user).unwrap_or(own);
    let key = ConnKey {
        user: user.into(),
        collation: 45, // utf8mb4_general_ci; nothing but KILL runs on it
        capabilities: 0,
    };
    let dial = cluster.dial.clone();
    if !query_only {
        // Now, before the console answers: what the client sends after that must not run.
        // (`kill_session` marks it again, which changes nothing.)
        target.kill();
    }
    tokio::spawn(async move {
        if let Err(e) = kill_session(&target, query_only, key, &password, &dial).await {
            tracing::warn!(session = target.id, "KILL failed: {e}");
        }
    });
}

/// Kills `target`'s running statement, or the whole session, logging in to the backend as
/// `key`'s user (one allowed to kill that user's backend threads).
pub async fn kill_session(
    target: &SessionStatus,
    query_only: bool,
    key: ConnKey,
    password: &str,
    dial: &Dial,
) -> Result<(), SqlError> {
    if !query_only {
        // First, so that the session ends (rather than retrying) when its backend
        // connection is closed under it, and closes at once when idle.
        target.kill();
        target.stop_client_output();
    }
    // Marked killed, the session starts no statement after this looks.
    let guard = target.lock_running(query_only);
    match guard.running.as_ref() {
        Some(r) => match kill_on_backend(r, query_only, key, password, dial).await {
            // The server answers but will not take the kill (too many connections, a login
            // refused) or the connection (nothing listens on its port now): a `KILL QUERY`
            // fails, rather than cost the session its connection and transaction.
            Err(e) if query_only && !hung(&e) => {
                let mut e = e.to_sql_error(&format!("backend {}", r.backend.address));
                // A connection error's class (08: 1040's 08004) would tell the killer's
                // driver that its own connection failed.
                if e.state.starts_with(b"08") {
                    e.state = *b"HY000";
                }
                Err(e)
            }
            // The server cannot be reached to kill its thread (hung, cut off): the session's
            // connection to it is closed instead, which frees the client at once (after a
            // `KILL QUERY` with `1317`, as a server answers); the server sees the close when
            // it runs again.
            Err(e) => {
                tracing::warn!(session = target.id, backend = %r.backend.address, "KILL could not be sent to the backend ({e}); closing the session's connection to it instead");
                guard.cut(query_only);
                Ok(())
            }
            Ok(()) => Ok(()),
        },
        None => Ok(()),
    }
}

/// Kills the statement (or the connection) `r` on its backend. The caller holds the lock on
/// `r`, so the connection is still the session's while this runs.
async fn kill_on_backend(
    r: &Running,
    query_only: bool,
    key: ConnKey,
    password: &str,
    dial: &Dial,
) -> Result<(), BackendError> {
    if !r.backend.pool.is_current(r.generation) {
        // Another server answers at the address now, where the thread id names nothing, or
        // another connection: the statement's own connection is cut instead (see `hung`).
        return Err(BackendError::Unanswered {
            addr: r.backend.address.clone(),
        });
    }
    let mut conn = BackendConn::connect(&r.backend.address, key, password, dial).await?;
    let scope = if query_only { "QUERY" } else { "CONNECTION" };
    let result = conn.run(&format!("KILL {scope} {}", r.thread_id)).await;
    conn.quit().await;
    match result {
        Ok(_) => Ok(()),
        // The backend connection closed meanwhile: nothing is left to kill.
        Err(BackendError::Server(e)) if e.code == UNKNOWN_THREAD => Ok(()),
        Err(e) => Err(e),
    }
}

/// The kill got no answer at all: the server is hung or cut off, and so may be the
/// statement's connection. (A refused connection is an answer: nothing listens there now.
/// Nor is a shortage of descriptors or memory here a sign of the server's.)
fn hung(e: &BackendError) -> bool {
    match e {
        BackendError::Connect { source, .. } => {
            source.kind() != std::io::ErrorKind::ConnectionRefused
                && !rwproxy_ha::db::is_local_shortage(source)
        }
        BackendError::ConnectTimeout { .. }
        | BackendError::Io(_)
        | BackendError::Unanswered { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_failed(errno: i32) -> BackendError {
        BackendError::Connect {
            addr: "192.0.2.1:3306".into(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    /// Only silence cuts the target's connection: a server that refuses, or a proxy short of
    /// descriptors, leaves it alone and tells the killer.
    #[test]
    fn only_a_kill_without_an_answer_counts_as_hung() {
        assert!(hung(&connect_failed(libc::ETIMEDOUT)));
        assert!(hung(&connect_failed(libc::EHOSTUNREACH)));
        assert!(hung(&BackendError::ConnectTimeout {
            addr: "192.0.2.1:3306".into()
        }));
        assert!(!hung(&connect_failed(libc::ECONNREFUSED)));
        assert!(!hung(&connect_failed(libc::EMFILE)));
        assert!(!hung(&connect_failed(libc::ENFILE)));
    }
}
