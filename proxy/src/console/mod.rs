//! The admin port: a MySQL-protocol console speaking Atlas's command language (parsed and
//! executed by the `rwproxy-admin` crate against [`control::ProxyControl`]).
//!
//! It authenticates with the admin credentials only, never with application users, and
//! binds where `admin-address` says (loopback by default).

pub mod control;

use crate::protocol::command::{
    COM_FIELD_LIST, COM_INIT_DB, COM_PING, COM_QUERY, COM_QUIT, COM_STATISTICS,
};
use crate::protocol::handshake::{self, Greeting, LoginError};
use crate::protocol::message::{self, codes, eof_payload, Completion, SqlError};
use crate::protocol::packet::{PacketReader, PacketWriter, MAX_HANDSHAKE, MAX_PAYLOAD};
use crate::protocol::resultset::write_text_resultset;
use control::ProxyControl;
use rwproxy_admin::{AdminError, ColumnType, ExecContext, Reply};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

const STATUS: u16 = message::SERVER_STATUS_AUTOCOMMIT;

pub async fn serve(listener: TcpListener, control: Arc<ProxyControl>) -> std::io::Result<()> {
    tracing::info!(listen = %listener.local_addr()?, "admin console listening");
    let ids = AtomicU32::new(1);
    let mut failures = crate::server::AcceptFailures::new("admin");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                failures.back_off(e).await;
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let control = control.clone();
        tokio::spawn(async move {
            if let Err(e) = session(stream, peer, id, control).await {
                tracing::debug!(client = %peer, "admin session ended: {e}");
            }
        });
    }
}

async fn session(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    id: u32,
    control: Arc<ProxyControl>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut reader = PacketReader::new(r);
    reader.set_packet_limit(MAX_HANDSHAKE);
    let mut writer = PacketWriter::new(w);
    let version = control.server_version();
    let greeting = Greeting {
        server_version: &version,
        connection_id: id,
        collation: 33,
        sql_mode_flags: 0,
    };
    let (admin_user, admin_password) = control.admin_credentials();
    // As on the client port: a socket that never finishes its login must not hold a file
    // descriptor forever (enough of them starve the client port of descriptors).
    let login = crate::timer::timeout(
        crate::client::LOGIN_TIMEOUT,
        handshake::accept(
            &mut reader,
            &mut writer,
            &greeting,
            &peer.ip().to_string(),
            |u| (u == admin_user).then(|| admin_password.clone()),
        ),
    )
    .await;
    let Ok(login) = login else {
        tracing::info!(client = %peer, "admin login not completed within {} s; closing", crate::client::LOGIN_TIMEOUT.as_secs());
        return Ok(());
    };
    let login = match login {
        Ok(l) => l,
        Err(LoginError::Rejected(e)) => {
            tracing::warn!(client = %peer, "admin login refused: {e}");
            return Ok(());
        }
        Err(LoginError::Io(e)) => return Err(e),
    };
    handshake::admit(&mut writer, &login, message::SERVER_STATUS_AUTOCOMMIT).await?;
    // Admin commands are short; one physical packet holds any of them.
    reader.set_packet_limit(MAX_PAYLOAD);
    tracing::info!(client = %peer, user = %login.user, "admin session opened");
    let mut ctx = ExecContext {
        user: format!("{}@{}", login.user, peer.ip()),
        schema: login.database,
        connection_id: id,
    };
    let mut packet = Vec::new();
    loop {
        match reader.read_logical(&mut packet).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        match packet.first().copied() {
            Some(COM_QUIT) => return Ok(()),
            Some(COM_QUERY) => {
                // Read any other way, a password's bytes would silently become others.
                let Ok(sql) = std::str::from_utf8(&packet[1..]) else {
                    let e = message::err(
                        codes::INVALID_CHARACTER_STRING,
                        "Invalid utf8 character string: the admin console takes commands in UTF-8",
                    );
                    writer.write_packet(1, &e.payload()).await?;
                    writer.flush().await?;
                    continue;
                };
                let reply = rwproxy_admin::execute_in(sql, control.as_ref(), &mut ctx);
                let shown = for_log(sql);
                // Changes are worth a line each; a monitoring script's polls are not.
                let change = !["select", "show", "help", "desc", "describe"]
                    .iter()
                    .any(|w| {
                        shown
                            .get(..w.len())
                            .is_some_and(|h| h.eq_ignore_ascii_case(w))
                    });
                match (&reply, change) {
                    (Ok(_), true) => tracing::info!(client = %peer, "admin: {shown}"),
                    (Ok(_), false) => tracing::debug!(client = %peer, "admin: {shown}"),
                    (Err(e), _) => {
                        // The error may quote the secret back ("failed to decrypt '...'",
                        // an unknown command's text): then only its code is logged.
                        let why = e.to_string();
                        let quoted = secret_of(sql)
                            .and_then(|s| s.split([' ', '\t', '\n', ';']).next())
                            .is_some_and(|token| !token.is_empty() && why.contains(token));
                        match quoted {
                            true => {
                                tracing::info!(client = %peer, "admin: {shown} -> error {} (its message quotes the password)", e.code())
                            }
                            false => tracing::info!(client = %peer, "admin: {shown} -> {why}"),
                        }
                    }
                }
                send_reply(&mut writer, reply).await?;
            }
            Some(COM_INIT_DB) => {
                ctx.schema = Some(String::from_utf8_lossy(&packet[1..]).into_owned());
                send_ok(&mut writer, 0).await?;
            }
            Some(COM_PING) => send_ok(&mut writer, 0).await?,
            // Tab completion asks for each table's fields: the console's tables have none.
            Some(COM_FIELD_LIST) => {
                writer.write_packet(1, &eof_payload(0, STATUS)).await?;
                writer.flush().await?;
            }
            Some(COM_STATISTICS) => {
                writer
                    .write_packet(1, control.statistics_line().as_bytes())
                    .await?;
                writer.flush().await?;
            }
            _ => {
                let e = message::err(codes::UNKNOWN_COM, "Unknown command");
                writer.write_packet(1, &e.payload()).await?;
                writer.flush().await?;
            }
        }
    }
}

/// The password of an `ADD PWD`/`ADD ENPWD` command, however mistyped (`add pwds u:pw`,
/// `ADDPWD u:pw`, `ADD PWD u pw`, `-- c` before it, `; SAVE CONFIG` after it): whatever
/// follows the first colon of a command that mentions a password, or of any `ADD` but of a
/// backend or a client; with no colon, whatever follows such an `ADD`'s second word. A
/// mistyped password command is refused, and logged, as written.
fn secret_of(sql: &str) -> Option<&str> {
    let cmd = match rwproxy_admin::command::command_start(sql) {
        // An unterminated or executable comment: the whole text may hold it.
        "" => sql.trim_start(),
        cmd => cmd,
    };
    let lower = cmd.to_ascii_lowercase();
    let add = lower.starts_with("add") && lower[3..].starts_with(char::is_whitespace);
    let rest = cmd.get(3..).unwrap_or("").trim_start();
    let what_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let public = add
        && ["master", "slave", "client"]
            .iter()
            .any(|w| rest[..what_len].eq_ignore_ascii_case(w));
    let names_password = lower.contains("pwd") || lower.contains("passw");
    if public || !(add || names_password) {
        return None;
    }
    match cmd.split_once(':') {
        Some((_, secret)) => Some(secret.trim()),
        None if add => Some(rest[what_len..].trim()),
        None => None,
    }
}

/// An admin command as the log shows it: passwords masked, and cut at 200 characters.
fn for_log(sql: &str) -> String {
    let sql = sql.trim();
    let shown = match secret_of(sql).filter(|s| !s.is_empty()) {
        // The secret runs to the command's end (trimmed): it is a suffix of `sql`.
        Some(secret) => format!("{}***", &sql[..sql.len() - secret.len()]),
        None => sql.to_string(),
    };
    match shown.char_indices().nth(200) {
        Some((cut, _)) => format!("{}... ({} bytes)", &shown[..cut], sql.len()),
        None => shown,
    }
}

async fn send_ok(w: &mut PacketWriter<OwnedWriteHalf>, affected: u64) -> std::io::Result<()> {
    let ok = message::ok_payload(&Completion {
        affected_rows: affected,
        status: STATUS,
        ..Completion::default()
    });
    w.write_packet(1, &ok).await?;
    w.flush().await
}

async fn send_reply(
    w: &mut PacketWriter<OwnedWriteHalf>,
    reply: Result<Reply, AdminError>,
) -> std::io::Result<()> {
    match reply {
        Ok(Reply::Rows(rs)) => {
            let integer: Vec<bool> = rs.types.iter().map(|t| *t == ColumnType::Integer).collect();
            write_text_resultset(w, &rs.columns, &integer, &rs.rows, STATUS).await
        }
        Ok(Reply::Ok { affected, .. }) => send_ok(w, affected).await,
        Err(e) => {
            let err = SqlError::new(e.code(), e.sqlstate(), e.message());
            w.write_packet(1, &err.payload()).await?;
            w.flush().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{for_log, secret_of};

    #[test]
    fn logged_commands_hide_passwords_and_stay_short() {
        assert_eq!(for_log(" ADD PWD rep2:S3cret-Pw "), "ADD PWD rep2:***");
        assert_eq!(
            for_log("add   enpwd app:KsWNCR6qyNk="),
            "add   enpwd app:***"
        );
        assert_eq!(for_log("REMOVE PWD app"), "REMOVE PWD app");
        assert_eq!(secret_of("ADD ENPWD u:'Secret444' "), Some("'Secret444'"));
        assert_eq!(secret_of("SET OFFLINE 2"), None);
        for typo in [
            "add pwds app:S3cret",
            "ADD PASSWORD app:S3cret",
            "/* x */ add pwd app:S3cret",
            "/*a*//*b*/Add Pwd app:S3cret",
            "-- rotate\nADD PWD app:S3cret",
            "# x\nADD PWD app:S3cret",
            "ADD PWD app:S3cret; SAVE CONFIG",
            "ADD PWD app:S3cret /* rotated */",
            "ADD PWD app S3cret",
            "ADDPWD app:S3cret",
            "--x\nADD PWD app:S3cret",
            "/*!ADD PWD app:S3cret*/",
            "/* open ADD PWD app:S3cret",
        ] {
            assert!(secret_of(typo).unwrap().contains("S3cret"), "{typo}");
            assert!(!for_log(typo).contains("S3cret"), "{typo}");
        }
        assert_eq!(secret_of("ADD SLAVE 10.0.0.2:3306"), None);
        assert_eq!(for_log("add master db1:3306"), "add master db1:3306");
        assert_eq!(for_log("SET OFFLINE 2"), "SET OFFLINE 2");
        let long = "x".repeat(100_000);
        let shown = for_log(&long);
        assert!(shown.starts_with(&"x".repeat(200)), "{shown}");
        assert!(shown.ends_with("... (100000 bytes)"), "{shown}");
        assert_eq!(
            for_log(&"é".repeat(300)).chars().count(),
            200 + "... (600 bytes)".len()
        );
    }
}
