//! Commands that change the session itself rather than run a statement: `COM_CHANGE_USER`
//! and `COM_SET_OPTION`.

use super::session::Session;
use super::{ClientIo, SessionEnd};
use crate::protocol::handshake;
use crate::protocol::message::{self, codes};
use crate::router::Target;
use mysql_common::constants::CapabilityFlags;

/// `COM_CHANGE_USER`: the proxy authenticates the new user itself, as at login. Like a
/// server, it first starts the session over (transaction rolled back, variables, prepared
/// statements and pins dropped), and a refused change leaves the session as the old user, in
/// the old schema.
pub async fn change_user(
    s: &mut Session,
    io: &mut ClientIo,
    packet: &[u8],
) -> Result<(), SessionEnd> {
    let old_schema = s.state.schema.take();
    s.start_over(old_schema.clone()).await;
    let Some(req) = handshake::parse_change_user(packet) else {
        io.error(&message::err(codes::UNKNOWN_COM, "Unknown command"))
            .await?;
        return Ok(());
    };
    let password = s.cluster.password_of(&req.user);
    let (ok, seq) = handshake::authenticate(
        &mut io.reader,
        &mut io.writer,
        &s.scramble,
        req.plugin.as_deref(),
        &req.auth_data,
        1,
        password.clone(),
    )
    .await?;
    let reply = |seq: u8, payload: Vec<u8>| async move {
        io.writer.write_packet(seq, &payload).await?;
        io.writer.flush().await
    };
    if !ok {
        let host = s.status.client.ip().to_string();
        let e = handshake::denied(&req.user, &host, !req.auth_data.is_empty());
        tracing::info!(session = s.id, "change user refused: {e}");
        reply(seq, e.payload()).await?;
        return Ok(());
    }
    let old = (s.key.user.clone(), s.password().to_string(), s.key.collation);
    // Connections are opened with one-byte collation ids; a larger one keeps the current.
    let collation = req
        .collation
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(s.key.collation);
    s.switch_user(&req.user, password.unwrap_or_default(), collation);
    if let Some(db) = &req.database {
        // A server refuses an unknown schema (1049) here as at login; so does the proxy,
        // by bringing a connection of the new user to it.
        s.state.schema = Some(db.clone());
        match s.checkout(Target::Read, &mut Vec::new()).await {
            Ok(c) => s.release(c).await,
            Err(e) => {
                s.switch_user(&old.0, old.1, old.2);
                s.state.schema = old_schema;
                reply(seq, e.payload()).await?;
                return Ok(());
            }
        }
    } else {
        s.state.schema = None;
    }
    tracing::debug!(session = s.id, user = %req.user, "changed user");
    let done = message::ok_payload(&message::Completion {
        status: s.status(),
        ..Default::default()
    });
    reply(seq, done).await?;
    Ok(())
}

/// `COM_SET_OPTION`: multi-statements on (0) or off (1). Pools are keyed by capabilities, so
/// later statements take connections opened the new way; a pinned connection is switched
/// in place. Answered with EOF, as a server does.
pub async fn set_option(
    s: &mut Session,
    io: &mut ClientIo,
    packet: &[u8],
) -> Result<(), SessionEnd> {
    // A server reads two bytes whatever was sent; missing ones read as 0.
    let option = u16::from_le_bytes([
        packet.get(1).copied().unwrap_or(0),
        packet.get(2).copied().unwrap_or(0),
    ]);
    let multi = CapabilityFlags::CLIENT_MULTI_STATEMENTS.bits();
    let capabilities = match option {
        0 => s.key.capabilities | multi,
        1 => s.key.capabilities & !multi,
        _ => {
            io.error(&message::err(codes::UNKNOWN_COM, "Unknown command"))
                .await?;
            return Ok(());
        }
    };
    s.key.capabilities = capabilities;
    if let Some(c) = s.pinned.as_mut() {
        let conn = c.conn();
        conn.broken = true;
        conn.send_command(packet)
            .await
            .map_err(|_| SessionEnd::BackendLost)?;
        let reply = conn.read_raw().await.map_err(|_| SessionEnd::BackendLost)?;
        conn.broken = false;
        if let Some(e) = message::SqlError::parse(reply.payload()) {
            io.error(&e).await?;
            return Ok(());
        }
        conn.key.capabilities = capabilities;
    }
    io.reply(&message::eof_payload(0, s.status())).await?;
    Ok(())
}
