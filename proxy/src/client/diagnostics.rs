//! `GET DIAGNOSTICS` when the messages it reads and the session's user variables are on
//! different connections: after a read that warned or failed on a replica, the messages are
//! held there, while user variables live where writes go. The statement runs where the
//! messages are (see `query`), and the variables it set there are copied to where the
//! session's others are, which then keeps the session as any user variable does.

use super::session::{Diag, Session};
use super::SessionEnd;
use crate::backend::conn::BackendError;
use crate::client::registry::Stuck;
use crate::router::classify::{DiagTarget, DiagValue};
use crate::router::Target;

/// Copies the `targets` a `GET DIAGNOSTICS` just set on the held connection. The client has
/// its reply already: a copy that cannot be made ends the session (its variables would
/// otherwise be silently missing), as losing the connection that holds them does.
pub async fn copy_targets(s: &mut Session, targets: &[DiagTarget]) -> Result<(), SessionEnd> {
    let Some(mut held) = s.held.take() else {
        return Ok(());
    };
    // The server writes each value as a literal of its own type. A variable the statement
    // left alone (a condition number out of range) reads `NULL` there, where the session's
    // variables start out unset, and is left alone here too.
    let literals: Vec<String> = targets.iter().map(literal_of).collect();
    let select = format!("SELECT {}", literals.join(", "));
    let read = held.lease.conn.query_row(&select);
    let values = match s.status.unless_stuck(&held.backend, true, read).await {
        Ok(Ok(values)) => {
            // A `SELECT` of no table keeps the messages.
            s.held = Some(held);
            values
        }
        Ok(Err(e)) => return Err(lost(s, "read", e)),
        Err(stuck) => return Err(stopped(s, stuck, &held.backend.address)),
    };
    let assignments: Vec<String> = targets
        .iter()
        .zip(values)
        .filter_map(|(t, v)| v.map(|v| format!("{} = {v}", t.var)))
        .collect();
    if assignments.is_empty() {
        return Ok(());
    }
    s.sticky.server_state = true;
    let mut c = match s.checkout(Target::Write, &mut Vec::new()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(session = s.id, "GET DIAGNOSTICS: no connection to keep the variables it set on: {e}; the session is closed");
            return Err(SessionEnd::BackendLost);
        }
    };
    let set = format!("SET {}", assignments.join(", "));
    let ran = c.lease.conn.run(&set);
    match s.status.unless_stuck(&c.backend, false, ran).await {
        Ok(Ok(_)) => {
            s.finish(c, Diag::Kept);
            Ok(())
        }
        Ok(Err(e)) => Err(lost(s, "copy", e)),
        Err(stuck) => Err(stopped(s, stuck, &c.backend.address)),
    }
}

/// The expression that makes the server write `t`'s value as a literal of its type.
fn literal_of(t: &DiagTarget) -> String {
    let v = &t.var;
    match t.value {
        DiagValue::Unsigned => format!("CONCAT('CAST(', {v}, ' AS UNSIGNED)')"),
        DiagValue::Signed => format!("CAST({v} AS CHAR)"),
        DiagValue::Text => {
            format!("CONCAT('_', CHARSET({v}), ' X''', HEX({v}), ''' COLLATE ', COLLATION({v}))")
        }
    }
}

fn lost(s: &Session, step: &str, e: BackendError) -> SessionEnd {
    tracing::warn!(
        session = s.id,
        "GET DIAGNOSTICS: could not {step} the variables it set: {e}; the session is closed"
    );
    SessionEnd::BackendLost
}

fn stopped(s: &Session, stuck: Stuck, addr: &str) -> SessionEnd {
    match stuck {
        Stuck::SessionKilled => SessionEnd::Killed,
        Stuck::FoundDown => lost(
            s,
            "copy",
            BackendError::Unanswered {
                addr: addr.to_owned(),
            },
        ),
    }
}
