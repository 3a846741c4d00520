//! Commands that change the session itself rather than run a statement: `COM_CHANGE_USER`
//! and `COM_SET_OPTION`.

use super::session::{Checkout, Session};
use super::{ClientIo, SessionEnd};
use crate::protocol::handshake;
use crate::protocol::message::{self, codes};
use crate::router::Target;
use crate::session::names;
use crate::stats::counters::ErrorKind;
use mysql_common::constants::CapabilityFlags;

/// Failed `COM_CHANGE_USER` attempts after which a connection gets no more (MariaDB's rule).
const MAX_FAILED_CHANGE_USER: u8 = 3;

/// `COM_CHANGE_USER`: the proxy authenticates the new user itself, as at login. Like a
/// server, it first starts the session over (transaction rolled back, variables, prepared
/// statements and pins dropped), and a refused change leaves the session as the old user, in
/// the old schema; after three refusals the command is refused outright.
pub async fn change_user(
    s: &mut Session,
    io: &mut ClientIo,
    packet: &[u8],
) -> Result<(), SessionEnd> {
    let old_schema = s.state.schema.take();
    s.start_over(old_schema.clone()).await;
    io.follow_net_write_timeout(&s.state);
    // MariaDB's guard against password guessing on an open connection (after the start
    // over, as there); a request it cannot read counts among the failures.
    let req = match handshake::parse_change_user(packet) {
        Some(req) if s.failed_change_user < MAX_FAILED_CHANGE_USER => req,
        _ => {
            s.failed_change_user = s.failed_change_user.saturating_add(1);
            s.state.schema = old_schema;
            io.error(&message::err(codes::UNKNOWN_COM, "Unknown command"))
                .await?;
            return Ok(());
        }
    };
    let password = s.cluster.password_of(&req.user);
    // Like MariaDB, ask with an auth switch to mysql_native_password for a reply to the
    // greeting's own scramble: libmariadb's mysql_change_user answers a switch to the plugin
    // it already used with the reply it computed for that scramble, whatever the switch
    // carries. MySQL 8 drivers answering with caching_sha2_password get its fast path, as
    // MySQL gives them.
    let sha2 = req.plugin.as_deref() == Some(b"caching_sha2_password".as_slice());
    let (plugin, data) = match sha2 {
        true => (req.plugin.as_deref(), &req.auth_data[..]),
        false => (None, &[][..]),
    };
    let scramble = s.scramble;
    let secure = io.reader.get_ref().is_tls();
    let (ok, seq, sent) = handshake::check_reply(
        &mut io.reader,
        &mut io.writer,
        &scramble,
        plugin,
        data,
        1,
        password.clone(),
        secure,
    )
    .await?;
    let old = s.status.credentials();
    // Connections are opened with one-byte collation ids; a larger one keeps the current.
    let collation = req
        .collation
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(s.key.collation);
    let result = match ok {
        true => enter(s, &req, password, collation).await,
        false => {
            let host = s.status.client.ip().to_string();
            Err(handshake::denied(&req.user, &host, sent))
        }
    };
    // The reply follows the authentication exchange's numbering.
    io.reply_seq = seq;
    match result {
        Ok(()) => {
            tracing::debug!(session = s.id, user = %req.user, "changed user");
            let ok = handshake::login_ok(s.status(), req.database.as_deref(), s.client_tracks);
            io.reply(&ok).await?;
        }
        Err(e) => {
            tracing::info!(session = s.id, "change user refused: {e}");
            s.stats.counters.error(ErrorKind::Auth);
            s.failed_change_user = s.failed_change_user.saturating_add(1);
            // The server keeps the packet's collation even then.
            s.switch_user(&old.0, old.1, collation);
            s.state.schema = old_schema;
            // Through `io`, so that `SHOW WARNINGS` shows it next, as a server's would.
            io.error(&e).await?;
        }
    }
    Ok(())
}

/// Makes the session the new user's, in the requested schema. A server refuses an unknown
/// schema (1049, or 1044 without rights to it) here as at login; so does the proxy, by
/// bringing a connection of the new user to it.
async fn enter(
    s: &mut Session,
    req: &handshake::ChangeUser,
    password: Option<String>,
    collation: u8,
) -> Result<(), message::SqlError> {
    s.switch_user(&req.user, password.unwrap_or_default(), collation);
    s.state.schema = req.database.as_deref().map(names::intern);
    if req.database.is_some() {
        let c = s.checkout(Target::Read, &mut Vec::new()).await?;
        s.release_keeping_run(c);
    }
    Ok(())
}

/// `COM_SET_OPTION`: multi-statements on (0) or off (1). Pools are keyed by capabilities, so
/// later statements take connections opened the new way; a pinned or held connection is
/// switched in place. Answered with EOF, as a server does.
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
    if let Some(c) = s.pinned.as_mut() {
        match switch_in_place(c, packet, capabilities).await {
            Ok(None) => {}
            // Refused: the session keeps its capabilities, as its connection does.
            Ok(Some(e)) => {
                io.error(&e).await?;
                return Ok(());
            }
            Err(_) => return Err(SessionEnd::BackendLost),
        }
    }
    s.key.capabilities = capabilities;
    // The connection kept for `SHOW WARNINGS` may run the next statement too.
    if let Some(c) = s.held.as_mut() {
        if !matches!(switch_in_place(c, packet, capabilities).await, Ok(None)) {
            s.held = None;
        }
    }
    io.reply(&message::eof_payload(0, s.status())).await?;
    Ok(())
}

/// Sends `COM_SET_OPTION` on a connection the session keeps, which is then filed under the
/// new capabilities; the server's error, if it refused.
async fn switch_in_place(
    c: &mut Checkout,
    packet: &[u8],
    capabilities: u32,
) -> std::io::Result<Option<message::SqlError>> {
    let conn = c.conn();
    conn.send_command(packet).await?;
    let reply = conn.read_raw().await?;
    conn.broken = false;
    if let Some(e) = message::SqlError::parse(reply.payload()) {
        return Ok(Some(e));
    }
    conn.key.capabilities = capabilities;
    Ok(None)
}
