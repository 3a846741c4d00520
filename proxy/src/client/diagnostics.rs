//! `GET DIAGNOSTICS` when the messages it reads and the session's user variables are on
//! different connections: after a read that warned or failed on a replica, the messages are
//! held there, while user variables live where writes go. The statement runs where the
//! messages are (see `query`), and the variables it set there are copied to where the
//! session's others are, which keeps the session there as any user variable does.

use super::session::{Diag, Session};
use super::{ClientIo, SessionEnd};
use crate::backend::conn::BackendError;
use crate::client::registry::Stuck;
use crate::router::classify::{DiagTarget, DiagValue};
use crate::router::Target;

/// Before the statement runs: pins the session to a connection where its variables can go,
/// so that a client never gets OK for variables the proxy then has nowhere to keep. False
/// when there is none; the client then has the error, as for any write.
pub async fn pin_for_variables(s: &mut Session, io: &mut ClientIo) -> Result<bool, SessionEnd> {
    if s.pinned.is_some() {
        return Ok(true);
    }
    match s.checkout(Target::Write, &mut Vec::new()).await {
        Ok(c) => {
            s.sticky.server_state = true;
            s.finish(c, Diag::Kept);
            Ok(true)
        }
        Err(_) if s.status.is_killed() => Err(SessionEnd::Killed),
        Err(e) => {
            io.error(&e).await?;
            Ok(false)
        }
    }
}

/// Copies the `targets` a `GET DIAGNOSTICS` just set on the held connection to the pinned
/// one. Nothing is held when it ran on the pinned connection itself (an error the proxy
/// raised there). A copy that fails ends the session, as losing the connection that holds
/// its variables does: the client has its OK already.
pub async fn copy_targets(s: &mut Session, targets: &[DiagTarget]) -> Result<(), SessionEnd> {
    let Some(mut held) = s.held.take() else {
        return Ok(());
    };
    // A variable named twice gets its last item (the server assigns in order).
    let targets: Vec<&DiagTarget> = targets
        .iter()
        .enumerate()
        .filter(|(i, t)| !targets[i + 1..].iter().any(|later| later.same_var(t)))
        .map(|(_, t)| t)
        .collect();
    let literals: Vec<String> = targets.iter().map(|t| literal_of(t)).collect();
    let select = format!("SELECT {}", literals.join(", "));
    let read = held.lease.conn.query_row(&select);
    let values = match s.status.unless_stuck(&held.backend, true, read).await {
        Ok(Ok(values)) => {
            // A `SELECT` of no table keeps the messages.
            s.held = Some(held);
            values
        }
        Ok(Err(e)) => return Err(lost(s, "read", e)),
        Err(stuck) => return Err(stopped(s, "read", stuck, &held.backend.address)),
    };
    let assignments: Vec<String> = targets
        .iter()
        .zip(values)
        .filter_map(|(t, v)| v.map(|v| format!("{} = {v}", t.var)))
        .collect();
    if assignments.is_empty() {
        return Ok(());
    }
    let mut c = match s.checkout(Target::Write, &mut Vec::new()).await {
        Ok(c) => c,
        Err(_) if s.status.is_killed() => return Err(SessionEnd::Killed),
        Err(e) => return Err(lost(s, "copy", BackendError::Server(e))),
    };
    let set = format!("SET {}", assignments.join(", "));
    let ran = c.lease.conn.run(&set);
    match s.status.unless_stuck(&c.backend, false, ran).await {
        Ok(Ok(_)) => {
            s.finish(c, Diag::Kept);
            Ok(())
        }
        Ok(Err(e)) => Err(lost(s, "copy", e)),
        Err(stuck) => Err(stopped(s, "copy", stuck, &c.backend.address)),
    }
}

/// The expression that makes the server write `t`'s value as a literal of its item's type:
/// digits, or a string's bytes in hex with its character set and collation. Nothing of the
/// value itself reaches the `SET` as SQL text, and the result is binary, which
/// `character_set_results` leaves as it is.
fn literal_of(t: &DiagTarget) -> String {
    let v = &t.var;
    let text = match t.value {
        DiagValue::Unsigned => format!("CONCAT('CAST(', CAST({v} AS UNSIGNED), ' AS UNSIGNED)')"),
        DiagValue::Signed => format!("CAST({v} AS SIGNED)"),
        DiagValue::Text => {
            format!("CONCAT('_', CHARSET({v}), ' X''', HEX({v}), ''' COLLATE ', COLLATION({v}))")
        }
    };
    format!("CAST({text} AS BINARY)")
}

fn lost(s: &Session, step: &str, e: impl std::fmt::Display) -> SessionEnd {
    tracing::warn!(
        session = s.id,
        "GET DIAGNOSTICS: could not {step} the variables it set: {e}; the session is closed"
    );
    SessionEnd::BackendLost
}

fn stopped(s: &Session, step: &str, stuck: Stuck, addr: &str) -> SessionEnd {
    match stuck {
        Stuck::SessionKilled => SessionEnd::Killed,
        Stuck::FoundDown => lost(
            s,
            step,
            BackendError::Unanswered {
                addr: addr.to_owned(),
            },
        ),
    }
}
