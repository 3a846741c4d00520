//! Server side of the connection phase: greeting, login request, authentication.
//!
//! The proxy authenticates clients itself (it knows every user's password) so that it can
//! answer before any backend is involved and then serve the session from pooled backend
//! connections. It offers `mysql_native_password` and also accepts `caching_sha2_password`,
//! which MySQL 8 drivers send by default: the fast path, and full authentication over TLS.
//!
//! With TLS configured the greeting offers `CLIENT_SSL`; a client that wants it sends an
//! SSLRequest, the caller switches the socket to TLS and passes the real login request to
//! [`authenticate`].

use super::message::{codes, err, ok_payload, Completion, SqlError, SERVER_STATUS_AUTOCOMMIT};
use super::packet::{write_lenenc, PacketReader, PacketTooLarge, PacketWriter};
use super::session_track::{schema_block, SERVER_SESSION_STATE_CHANGED};
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthSwitchRequest, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use mysql_common::scramble::{scramble_native, scramble_sha256};
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};

const NATIVE: &[u8] = b"mysql_native_password";
const CACHING_SHA2: &[u8] = b"caching_sha2_password";

/// What the proxy offers clients. Notably absent: `CLIENT_DEPRECATE_EOF` (backend connections
/// are opened without it too, so result sets are framed identically on both sides and can be
/// forwarded raw), `CLIENT_SSL` (only when TLS is configured: drivers switch to TLS whenever it
/// is offered) and compression.
pub fn server_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_IGNORE_SPACE
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_INTERACTIVE
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_SESSION_TRACK
}

/// A client that has logged in.
#[derive(Debug, Clone)]
pub struct ClientLogin {
    pub user: String,
    pub database: Option<String>,
    /// The intersection of what the client asked for and what the proxy offers.
    pub capabilities: CapabilityFlags,
    pub collation: u8,
    /// Sequence id of the proxy's next packet to this client: the login's final OK or ERR.
    pub next_seq: u8,
    /// The greeting's scramble: a `COM_CHANGE_USER` with caching_sha2_password answers it
    /// again.
    pub scramble: [u8; 20],
}

/// Ends the connection phase with OK. Kept apart from [`accept`] so the caller can still
/// refuse the login (an unknown default schema gets ERR 1049 here, as from a server).
pub async fn admit<W: AsyncWrite + Unpin>(
    writer: &mut PacketWriter<W>,
    login: &ClientLogin,
    status: u16,
) -> io::Result<()> {
    let tracks = login
        .capabilities
        .contains(CapabilityFlags::CLIENT_SESSION_TRACK);
    let payload = login_ok(status, login.database.as_deref(), tracks);
    writer.write_packet(login.next_seq, &payload).await?;
    writer.flush().await
}

/// The OK that ends a login or a `COM_CHANGE_USER`: a server reports the schema it put the
/// session in to a client that tracks session state (`tracks`).
pub fn login_ok(status: u16, database: Option<&str>, tracks: bool) -> Vec<u8> {
    let mut done = Completion {
        status,
        ..Completion::default()
    };
    let Some(db) = database.filter(|_| tracks) else {
        return ok_payload(&done);
    };
    done.status |= SERVER_SESSION_STATE_CHANGED;
    let mut payload = ok_payload(&done);
    let block = schema_block(db);
    write_lenenc(&mut payload, 0);
    write_lenenc(&mut payload, block.len() as u64);
    payload.extend_from_slice(&block);
    payload
}

/// Ends the connection phase with an error after the password was accepted.
pub async fn refuse<W: AsyncWrite + Unpin>(
    writer: &mut PacketWriter<W>,
    login: &ClientLogin,
    e: &SqlError,
) -> io::Result<()> {
    writer.write_packet(login.next_seq, &e.payload()).await?;
    writer.flush().await
}

/// Why a login failed; the client has already been sent the matching ERR packet when possible.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Rejected(SqlError),
    #[error("client i/o: {0}")]
    Io(#[from] io::Error),
}

/// Greeting parameters chosen by the listener.
pub struct Greeting<'a> {
    pub server_version: &'a str,
    pub connection_id: u32,
    pub collation: u8,
    /// The servers' `sql_mode` status flags, which a driver may escape strings by before
    /// the login's OK says them again.
    pub sql_mode_flags: u16,
}

pub fn random_scramble() -> [u8; 20] {
    // Printable bytes only: some clients treat the scramble as a C string, and it must not
    // contain NUL since the greeting terminates it with one.
    let mut s = [0u8; 20];
    for b in &mut s {
        *b = rand::random_range(0x21u8..0x7F);
    }
    s
}

/// The greeting as sent: its scramble is what the client's reply is checked against.
pub struct Hello {
    scramble: [u8; 20],
    /// `CLIENT_SSL` was offered: TLS is configured.
    tls: bool,
    /// Clients that did not switch to TLS are refused (`require-secure-transport`).
    require_secure: bool,
}

impl Hello {
    pub fn new(tls: bool, require_secure: bool) -> Self {
        Hello {
            scramble: random_scramble(),
            tls,
            require_secure,
        }
    }

    /// The greeting's payload (sequence id 0).
    pub fn payload(&self, greeting: &Greeting<'_>) -> Vec<u8> {
        let mut scramble_2 = self.scramble[8..].to_vec();
        scramble_2.push(0);
        let mut caps = server_capabilities();
        if self.tls {
            caps |= CapabilityFlags::CLIENT_SSL;
        }
        let hello = HandshakePacket::new(
            10,
            greeting.server_version.as_bytes(),
            greeting.connection_id,
            self.scramble[..8].try_into().expect("8 bytes"),
            Some(scramble_2),
            caps,
            greeting.collation,
            StatusFlags::from_bits_retain(SERVER_STATUS_AUTOCOMMIT | greeting.sql_mode_flags),
            Some(NATIVE),
        );
        let mut buf = Vec::with_capacity(128);
        hello.serialize(&mut buf);
        buf
    }
}

/// An SSLRequest: the first 32 bytes of a login request, with `CLIENT_SSL`, and nothing else.
pub fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == 32
        && CapabilityFlags::from_bits_truncate(u32::from_le_bytes(
            payload[..4].try_into().expect("4 bytes"),
        ))
        .contains(CapabilityFlags::CLIENT_SSL)
}

/// Runs the connection phase on a connection that never switches to TLS (the admin port).
pub async fn accept<R, W>(
    reader: &mut PacketReader<R>,
    writer: &mut PacketWriter<W>,
    greeting: &Greeting<'_>,
    peer_host: &str,
    password_of: impl Fn(&str) -> Option<String>,
) -> Result<ClientLogin, LoginError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello = Hello::new(false, false);
    writer.write_packet(0, &hello.payload(greeting)).await?;
    writer.flush().await?;
    let mut payload = Vec::new();
    let seq = reader.read_logical(&mut payload).await?;
    authenticate(
        reader,
        writer,
        &hello,
        (seq, &payload),
        false,
        peer_host,
        password_of,
    )
    .await
}

/// Checks the login request `first` (with its sequence id), which arrived after `hello`;
/// `secure` says whether it came over TLS. `password_of` returns a user's configured password.
pub async fn authenticate<R, W>(
    reader: &mut PacketReader<R>,
    writer: &mut PacketWriter<W>,
    hello: &Hello,
    (seq, first): (u8, &[u8]),
    secure: bool,
    peer_host: &str,
    password_of: impl Fn(&str) -> Option<String>,
) -> Result<ClientLogin, LoginError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let scramble = hello.scramble;
    // The exchange counts from the greeting (0) and an SSLRequest (1), as MariaDB's does: a
    // login request with another sequence id gets its "Got packets out of order".
    let expected = if secure { 2 } else { 1 };
    if seq != expected {
        let e = err(codes::NET_PACKETS_OUT_OF_ORDER, "Got packets out of order");
        return reject(writer, expected, e).await;
    }
    let reply_seq = seq.wrapping_add(1);
    // An SSLRequest here means TLS was not offered, so this client is broken.
    if first.len() == 32 {
        let e = err(
            codes::HANDSHAKE_ERROR,
            "Bad handshake: TLS requested but not configured on rwproxy",
        );
        return reject(writer, reply_seq, e).await;
    }
    let Ok(resp) = ParseBuf(first).parse::<HandshakeResponse>(()) else {
        return reject(
            writer,
            reply_seq,
            err(codes::HANDSHAKE_ERROR, "Bad handshake"),
        )
        .await;
    };
    let capabilities = resp.capabilities() & server_capabilities();
    if !capabilities.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        let e = err(
            codes::HANDSHAKE_ERROR,
            "Bad handshake: client does not speak protocol 4.1",
        );
        return reject(writer, reply_seq, e).await;
    }
    // Not offered; a client that turns it on anyway (Connector/Python's `compress=True`)
    // would take every later packet for garbage and hang up without saying why.
    if resp
        .capabilities()
        .contains(CapabilityFlags::CLIENT_COMPRESS)
    {
        let e = err(
            codes::NOT_SUPPORTED,
            "rwproxy does not support the compressed protocol: connect without compression",
        );
        return reject(writer, reply_seq, e).await;
    }
    let user = String::from_utf8_lossy(resp.user()).into_owned();
    let database = resp
        .db_name()
        .filter(|d| !d.is_empty())
        .map(|d| String::from_utf8_lossy(d).into_owned());
    let collation = resp.collation();
    // A client without plugin support names none, and answers the greeting's scramble as
    // mysql_native_password does: checked as such, as MariaDB does. (An auth switch, which
    // such a client need not understand, was sent instead.)
    let plugin = match resp
        .capabilities()
        .contains(CapabilityFlags::CLIENT_PLUGIN_AUTH)
    {
        true => resp.auth_plugin().map(|p| p.as_bytes().to_vec()),
        false => Some(NATIVE.to_vec()),
    };
    let auth_data = resp.scramble_buf().to_vec();
    // MariaDB 10.11 answers a plain-TCP login under require_secure_transport with this very
    // Access denied (1045, 28000), whatever the password; MySQL's 3159 is not a MariaDB code.
    if hello.require_secure && !secure {
        return reject(
            writer,
            reply_seq,
            denied(&user, peer_host, !auth_data.is_empty()),
        )
        .await;
    }
    let (ok, next_seq, sent) = check_reply(
        reader,
        writer,
        &scramble,
        plugin.as_deref(),
        &auth_data,
        reply_seq,
        password_of(&user),
        secure,
    )
    .await?;
    if !ok {
        let e = denied(&user, peer_host, sent);
        return reject(writer, next_seq, e).await;
    }
    Ok(ClientLogin {
        user,
        database,
        capabilities,
        collation,
        next_seq,
        scramble,
    })
}

/// The server's wording for a wrong user or password.
pub fn denied(user: &str, peer_host: &str, sent_password: bool) -> SqlError {
    err(
        codes::ACCESS_DENIED,
        format!(
            "Access denied for user '{user}'@'{peer_host}' (using password: {})",
            if sent_password { "YES" } else { "NO" }
        ),
    )
}

/// Checks a client's first authentication reply `auth_data` against `password` (`None`: an
/// unknown user) with the plugin the client chose, switching plugins or asking for more as
/// that plugin needs; `secure`: over TLS. Shared by the login and `COM_CHANGE_USER`. Returns
/// whether the password matched, the sequence id of the final OK/ERR, which the caller
/// sends, and whether the reply checked carried a password at all (`using password: YES`):
/// after a plugin switch that is the client's second reply, not `auth_data`.
#[allow(clippy::too_many_arguments)]
pub async fn check_reply<R, W>(
    reader: &mut PacketReader<R>,
    writer: &mut PacketWriter<W>,
    scramble: &[u8; 20],
    plugin: Option<&[u8]>,
    auth_data: &[u8],
    reply_seq: u8,
    password: Option<String>,
    secure: bool,
) -> io::Result<(bool, u8, bool)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let scramble = *scramble;
    let mut next_seq = reply_seq;
    let mut payload = Vec::new();
    let mut sent = !auth_data.is_empty();
    let sha2 = |pw: &[u8]| scramble_sha256(&scramble, pw).map(|s| s.to_vec());
    let ok = match plugin {
        Some(p) if p == CACHING_SHA2 => {
            let mut reply = auth_data;
            if reply.is_empty() {
                // A client whose default plugin differs from the greeting's (mariadb
                // --default-auth=caching_sha2_password) sends no scramble and waits for this
                // plugin's own challenge, as a server sends when switching plugins; with an
                // empty password too (libmysqlclient sends one NUL instead, and waits for
                // nothing).
                switch_plugin(writer, next_seq, CACHING_SHA2, &scramble).await?;
                next_seq = reader.read_logical(&mut payload).await?.wrapping_add(1);
                reply = &payload;
                sent = !reply.is_empty();
            }
            if password.as_deref() == Some("") && no_password(reply) {
                // No password: the client reads the final OK, with no "fast auth success"
                // before it (MySQL 8 sends none; libmysqlclient and libmariadb fail the login
                // on one).
                sent = false;
                true
            } else if check(&password, reply, sha2) {
                // "fast auth success": the client then waits for the final OK.
                next_seq = writer.write_packet(next_seq, &[0x01, 0x03]).await?;
                true
            } else if secure {
                // "perform full authentication": over TLS the client answers with its
                // password in clear. On plain TCP it would need the server's RSA key, which
                // the proxy does not have; a failed fast path there is simply a wrong password.
                writer.write_packet(next_seq, &[0x01, 0x04]).await?;
                writer.flush().await?;
                let mut clear = Vec::new();
                next_seq = reader.read_logical(&mut clear).await?.wrapping_add(1);
                let clear = clear.strip_suffix(&[0]).unwrap_or(&clear);
                check(&password, clear, |pw| (!pw.is_empty()).then(|| pw.to_vec()))
            } else {
                false
            }
        }
        Some(p) if p == NATIVE => check(&password, auth_data, |pw| {
            scramble_native(&scramble, pw).map(|s| s.to_vec())
        }),
        _ => {
            switch_plugin(writer, next_seq, NATIVE, &scramble).await?;
            next_seq = reader.read_logical(&mut payload).await?.wrapping_add(1);
            sent = !payload.is_empty();
            check(&password, &payload, |pw| {
                scramble_native(&scramble, pw).map(|s| s.to_vec())
            })
        }
    };
    Ok((ok, next_seq, sent))
}

/// A `COM_CHANGE_USER` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser {
    pub user: String,
    pub auth_data: Vec<u8>,
    pub database: Option<String>,
    /// Absent in requests from very old clients, which keep the current one.
    pub collation: Option<u16>,
    pub plugin: Option<Vec<u8>>,
}

/// Parses `COM_CHANGE_USER` (command byte included): user, length-prefixed auth reply,
/// schema, then optionally collation, plugin name and connection attributes (ignored, as at
/// login). `None` when the mandatory part is cut short.
pub fn parse_change_user(payload: &[u8]) -> Option<ChangeUser> {
    fn cstr<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let end = b.iter().position(|c| *c == 0)?;
        let s = &b[..end];
        *b = &b[end + 1..];
        Some(s)
    }
    let mut b = payload.get(1..)?;
    let user = String::from_utf8_lossy(cstr(&mut b)?).into_owned();
    let (&len, rest) = b.split_first()?;
    let auth_data = rest.get(..usize::from(len))?.to_vec();
    b = &rest[usize::from(len)..];
    // Old clients may end the packet right after the schema, without its NUL.
    let database = match cstr(&mut b) {
        Some(d) => d,
        None => std::mem::take(&mut b),
    };
    let database = (!database.is_empty()).then(|| String::from_utf8_lossy(database).into_owned());
    let collation = match b {
        [lo, hi, rest @ ..] => {
            b = rest;
            Some(u16::from_le_bytes([*lo, *hi]))
        }
        _ => None,
    };
    let plugin = cstr(&mut b).filter(|p| !p.is_empty()).map(<[u8]>::to_vec);
    Some(ChangeUser {
        user,
        auth_data,
        database,
        collation,
        plugin,
    })
}

/// Asks the client to authenticate with `plugin` against `scramble`; its answer follows.
async fn switch_plugin<W: AsyncWrite + Unpin>(
    writer: &mut PacketWriter<W>,
    seq: u8,
    plugin: &[u8],
    scramble: &[u8; 20],
) -> io::Result<()> {
    let mut data = scramble.to_vec();
    data.push(0);
    let mut sw = Vec::new();
    AuthSwitchRequest::new(plugin, data).serialize(&mut sw);
    writer.write_packet(seq, &sw).await?;
    writer.flush().await
}

/// A connection-phase packet of `MAX_HANDSHAKE` bytes or more gets MariaDB's answer
/// (measured: 1043 "Bad handshake", after the packet) before the close; other read errors
/// pass through.
pub async fn refuse_oversized<W: AsyncWrite + Unpin>(
    writer: &mut PacketWriter<W>,
    e: io::Error,
) -> LoginError {
    let Some(too_large) = PacketTooLarge::of(&e) else {
        return LoginError::Io(e);
    };
    let bad = err(codes::HANDSHAKE_ERROR, "Bad handshake");
    refusal(writer, too_large.seq.wrapping_add(1), bad).await
}

async fn reject<W: AsyncWrite + Unpin>(
    writer: &mut PacketWriter<W>,
    seq: u8,
    e: SqlError,
) -> Result<ClientLogin, LoginError> {
    Err(refusal(writer, seq, e).await)
}

/// Sends `e` as the login's last packet.
async fn refusal<W: AsyncWrite + Unpin>(
    writer: &mut PacketWriter<W>,
    seq: u8,
    e: SqlError,
) -> LoginError {
    let sent = match writer.write_packet(seq, &e.payload()).await {
        Ok(_) => writer.flush().await,
        Err(io) => Err(io),
    };
    match sent {
        Ok(()) => LoginError::Rejected(e),
        Err(io) => LoginError::Io(io),
    }
}

/// Whether a scramble reply says "no password": empty, or one NUL (libmysqlclient's
/// caching_sha2_password client sends that).
fn no_password(reply: &[u8]) -> bool {
    matches!(reply, [] | [0])
}

/// Compares a client's scramble reply with the expected one; an empty password expects
/// [`no_password`]. Unknown users never match.
fn check(
    password: &Option<String>,
    reply: &[u8],
    expected: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> bool {
    let Some(password) = password else {
        return false;
    };
    match expected(password.as_bytes()) {
        None => no_password(reply),
        Some(want) => {
            want.len() == reply.len()
                && want.iter().zip(reply).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_user_packets() {
        let mut p = vec![0x11];
        p.extend_from_slice(b"bob\0");
        p.push(3);
        p.extend_from_slice(b"xyz");
        p.extend_from_slice(b"db1\0");
        p.extend_from_slice(&224u16.to_le_bytes());
        p.extend_from_slice(b"mysql_native_password\0");
        p.extend_from_slice(&[0]); // empty connection attributes
        let c = parse_change_user(&p).unwrap();
        assert_eq!(c.user, "bob");
        assert_eq!(c.auth_data, b"xyz");
        assert_eq!(c.database.as_deref(), Some("db1"));
        assert_eq!(c.collation, Some(224));
        assert_eq!(c.plugin.as_deref(), Some(NATIVE));

        // An old client: no schema terminator, nothing after it.
        let old = [&[0x11][..], b"bob\0", &[0], b"db"].concat();
        let c = parse_change_user(&old).unwrap();
        assert_eq!(
            (c.database.as_deref(), c.collation, c.plugin),
            (Some("db"), None, None)
        );

        let no_db = [&[0x11][..], b"bob\0", &[0], b"\0"].concat();
        assert_eq!(parse_change_user(&no_db).unwrap().database, None);

        // Cut short before the auth reply ends: refused, never a panic.
        assert_eq!(parse_change_user(&[0x11, b'a', 0, 5, 1]), None);
        for end in 0..p.len() {
            let _ = parse_change_user(&p[..end]);
        }
    }
}
