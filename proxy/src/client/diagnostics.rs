//! `GET DIAGNOSTICS` when the messages it reads and the session's user variables are on
//! different connections: after a read that warned or failed on a replica, the messages are
//! held there, while user variables live where writes go. The statement runs where the
//! messages are (see `query`), and the variables it set there are copied to where the
//! session's others are, which keeps the session there as any user variable does.

use super::registry::Stuck;
use super::session::{Diag, Session};
use super::{ClientIo, SessionEnd};
use crate::backend::conn::BackendError;
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
    let columns: Vec<String> = targets.iter().map(|t| columns_of(t)).collect();
    let select = format!("SELECT {}", columns.join(", "));
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
    let mut values = values.into_iter();
    let mut assignments = Vec::new();
    for t in &targets {
        let taken = match t.value {
            DiagValue::Unsigned | DiagValue::Signed => 1,
            DiagValue::Text => 3,
        };
        let parts: Vec<Option<String>> = values.by_ref().take(taken).collect();
        if parts.iter().any(Option::is_none) {
            continue;
        }
        let parts: Vec<String> = parts.into_iter().flatten().collect();
        match literal(t.value, &parts) {
            Some(l) => assignments.push(format!("{} = {l}", t.var)),
            None => return Err(lost(s, "read", format!("unexpected value {parts:?}"))),
        }
    }
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

/// What the server is asked for `t`'s value: its digits, or a string's character set, bytes
/// in hex and collation; each as ASCII in a binary column, which neither the connection's
/// character set (UCS-2 would widen the digits) nor `character_set_results` changes. A
/// variable the statement left alone (`NULL`: the session's variables start out unset on
/// the held connection) is left alone here too.
fn columns_of(t: &DiagTarget) -> String {
    let v = &t.var;
    let ascii = |e: String| format!("CAST(CONVERT({e} USING ascii) AS BINARY)");
    match t.value {
        DiagValue::Unsigned => ascii(format!("CAST({v} AS UNSIGNED)")),
        DiagValue::Signed => ascii(format!("CAST({v} AS SIGNED)")),
        DiagValue::Text => [
            ascii(format!("CHARSET({v})")),
            ascii(format!("HEX({v})")),
            ascii(format!("COLLATION({v})")),
        ]
        .join(", "),
    }
}

/// The literal the `SET` assigns, of the item's type, from what [`columns_of`] read; `None`
/// for anything but digits, hex and plain names, so no value text reaches the `SET` as SQL.
fn literal(value: DiagValue, parts: &[String]) -> Option<String> {
    let all = |s: &str, ok: fn(&u8) -> bool| !s.is_empty() && s.as_bytes().iter().all(ok);
    let digits = |s: &str| all(s.strip_prefix('-').unwrap_or(s), u8::is_ascii_digit);
    let name = |s: &str| all(s, |b| b.is_ascii_alphanumeric() || *b == b'_');
    match (value, parts) {
        (DiagValue::Unsigned, [n]) if digits(n) => Some(format!("CAST({n} AS UNSIGNED)")),
        (DiagValue::Signed, [n]) if digits(n) => Some(n.clone()),
        (DiagValue::Text, [cs, hex, coll])
            if name(cs) && name(coll) && (hex.is_empty() || all(hex, u8::is_ascii_hexdigit)) =>
        {
            Some(format!("_{cs} X'{hex}' COLLATE {coll}"))
        }
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_only_digits_hex_and_names() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            literal(DiagValue::Unsigned, &p(&["1146"])).as_deref(),
            Some("CAST(1146 AS UNSIGNED)")
        );
        assert_eq!(
            literal(DiagValue::Signed, &p(&["-1"])).as_deref(),
            Some("-1")
        );
        assert_eq!(
            literal(
                DiagValue::Text,
                &p(&["utf8mb3", "4142", "utf8mb3_general_ci"])
            )
            .as_deref(),
            Some("_utf8mb3 X'4142' COLLATE utf8mb3_general_ci")
        );
        assert_eq!(
            literal(DiagValue::Text, &p(&["utf8mb3", "", "utf8mb3_general_ci"])).as_deref(),
            Some("_utf8mb3 X'' COLLATE utf8mb3_general_ci")
        );
        for (value, parts) in [
            (DiagValue::Unsigned, p(&["1 OR 1"])),
            (DiagValue::Signed, p(&["-"])),
            (DiagValue::Unsigned, p(&[""])),
            (DiagValue::Text, p(&["utf8'", "41", "x"])),
            (DiagValue::Text, p(&["utf8", "4G", "x"])),
            (DiagValue::Text, p(&["utf8", "41"])),
        ] {
            assert_eq!(literal(value, &parts), None, "{parts:?}");
        }
    }
}
