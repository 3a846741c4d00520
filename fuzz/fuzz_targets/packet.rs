//! Arbitrary bytes into every parser that reads what a network peer sent: packet framing,
//! OK/EOF/ERR, COM_CHANGE_USER, length-encoded integers, `SET` statements, and the server side of the login
//! handshake with the input as the client's half of the conversation, on plain TCP and as if
//! over TLS (where `caching_sha2_password` full authentication is reachable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rwproxy::protocol::handshake::{accept, authenticate, parse_change_user, Greeting, Hello};
use rwproxy::protocol::message::{parse_eof, parse_ok, SqlError};
use rwproxy::protocol::packet::{read_lenenc, PacketReader, PacketWriter};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
    })
}

fn password_of(user: &str) -> Option<String> {
    match user {
        "app" => Some("app_pw".into()),
        "nopw" => Some(String::new()),
        _ => None,
    }
}

async fn framing(data: &[u8]) {
    let mut r = PacketReader::new(data);
    while let Ok(p) = r.read_raw().await {
        assert_eq!(p.0.len(), p.payload().len() + 4);
        let _ = p.seq();
        let _ = p.continues();
    }
    // A packet the reader calls whole is read from its buffer alone, all of it and no more.
    let mut r = PacketReader::new(data);
    let mut out = Vec::new();
    loop {
        let whole = r.has_whole_packet();
        let before = r.buffered().len();
        match r.read_logical(&mut out).await {
            Ok(_) => {
                if whole {
                    assert_eq!(before - r.buffered().len(), out.len() + 4);
                }
                messages(&out);
            }
            Err(_) => {
                assert!(!whole, "a whole packet failed to read");
                break;
            }
        }
    }
}

fn messages(payload: &[u8]) {
    let _ = parse_change_user(payload);
    let _ = parse_ok(payload);
    let _ = parse_eof(payload);
    if let Some(e) = SqlError::parse(payload) {
        let _ = e.to_string();
        // What the proxy would send on: must parse back to the same error.
        let again = SqlError::parse(&e.payload()).expect("re-parse own ERR");
        assert_eq!(again.code, e.code);
    }
    let mut b = payload;
    while !b.is_empty() {
        if read_lenenc(&mut b).is_none() {
            break;
        }
    }
}

async fn handshake(data: &[u8], tls: bool) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (sr, sw) = tokio::io::split(server);
    let (mut cr, mut cw) = tokio::io::split(client);
    let server = async move {
        let mut reader = PacketReader::new(sr);
        let mut writer = PacketWriter::new(sw);
        let greeting = Greeting {
            server_version: "10.11.0-MariaDB-rwproxy",
            connection_id: 7,
            collation: 45,
            sql_mode_flags: 0,
        };
        if tls {
            // What follows the SSLRequest and the TLS handshake.
            let hello = Hello::new(true, true);
            let mut first = Vec::new();
            if let Ok(seq) = reader.read_logical(&mut first).await {
                let _ = authenticate(
                    &mut reader,
                    &mut writer,
                    &hello,
                    (seq, &first),
                    true,
                    "127.0.0.1",
                    password_of,
                )
                .await;
            }
        } else {
            let _ = accept(
                &mut reader,
                &mut writer,
                &greeting,
                "127.0.0.1",
                password_of,
            )
            .await;
        }
    };
    let client_send = async move {
        let _ = cw.write_all(data).await;
        let _ = cw.shutdown().await;
    };
    let client_drain = async move {
        let mut sink = Vec::new();
        let _ = cr.read_to_end(&mut sink).await;
    };
    let all = async { tokio::join!(server, client_send, client_drain) };
    // The clock is paused: this fires as soon as everything is blocked, which must not
    // happen since the client's EOF ends every wait.
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("handshake stalled although the client closed its side");
}

fuzz_target!(|data: &[u8]| {
    messages(data);
    let _ = rwproxy::session::set_stmt::parse(&String::from_utf8_lossy(data));
    runtime().block_on(async {
        framing(data).await;
        handshake(data, false).await;
        handshake(data, true).await;
    });
});
