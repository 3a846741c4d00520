//! Arbitrary bytes as a MySQL/MariaDB server sends them, into what reads server replies and
//! `packet` does not reach: OK packets' session-state blocks, what the proxy makes of them for
//! a client (`client_ok`, `client_eof`) and for read-your-writes (the tracked `last_gtid`),
//! and, through a fake server on loopback TCP (`BackendConn` has no other constructor), a
//! backend connection reading them: its login, the relay that forwards a reply to the client
//! (`relay`'s private `Scanner`), and the exchanges the proxy runs for itself (`command`,
//! `query_row`, `prepare`, `prepare_for_client`, `track_session`, `reset`).
//!
//! Input: byte 0 picks the exchange, byte 1 the relay's settings, byte 2 the variables only the
//! proxy tracks; the rest is the server's side after the command (for a login, all of it). The
//! whole input and every packet framed in the rest also go to the pure parsers as payloads.
//! Whatever the server says, no exchange may wait once it has closed its side.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rwproxy::backend::conn::{hidden_names, session_capabilities, BackendConn, ConnKey, Dial};
use rwproxy::backend::relay::{relay, Expect, RunsOn, StmtIds};
use rwproxy::protocol::handshake::{Greeting, Hello};
use rwproxy::protocol::message::{
    eof_payload, is_eof, ok_payload, parse_eof, parse_ok, Completion, SERVER_STATUS_AUTOCOMMIT,
    SERVER_STATUS_IN_TRANS, SERVER_STATUS_IN_TRANS_READONLY,
};
use rwproxy::protocol::packet::{frame_len, read_lenenc, write_lenenc, PacketReader, PacketWriter};
use rwproxy::protocol::session_track::{
    self, client_eof, client_ok, schema_block, StateChanges,
    SERVER_SESSION_STATE_CHANGED as CHANGED, TRANSACTION_INFO_ENTRIES, TRANSACTION_STATE_ENTRIES,
};
use rwproxy::session::read_your_writes::{wait_statement, Mode, ReadPlan, Settings, Tracker};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Variables (a mask over `PROXY_TRACKED`) and entry types a backend connection may hide from
/// its client.
const HIDING: [(u8, u8); 3] = [(0xFF, TRANSACTION_INFO_ENTRIES), (0x01, 0), (0x00, 0b11)];

/// The exchange whose server side is the whole input: the login itself.
const LOGIN: u8 = 9;

fn completion(p: &[u8]) {
    if let Some(c) = parse_ok(p) {
        assert_eq!(parse_ok(&ok_payload(&c)), Some(c));
    }
    if let Some(c) = parse_eof(p) {
        let again = eof_payload(c.warnings, c.status);
        assert!(is_eof(&again));
        assert_eq!(parse_eof(&again), Some(c));
    }
    let mut b = p;
    let mut out = Vec::new();
    while let Some(v) = read_lenenc(&mut b) {
        out.clear();
        write_lenenc(&mut out, v);
        let mut again = &out[..];
        assert_eq!(read_lenenc(&mut again), Some(v));
        assert!(again.is_empty());
    }
}

/// Whatever `last_gtid` a server reports, a causal read's wait keeps it inside one literal.
fn read_your_writes(changes: &StateChanges) {
    let settings = Settings {
        mode: Mode::Causal,
        ..Settings::default()
    };
    let mut t = Tracker::new(&settings, "app");
    t.wrote(changes.var("last_gtid"));
    if let ReadPlan::WaitFor(gtid, timeout) = t.plan("replica:3306") {
        assert!(
            !gtid.contains(['\'', '\\']),
            "GTID {gtid:?} would end its literal"
        );
        assert_eq!(wait_statement(gtid, timeout).matches('\'').count(), 2);
    }
}

fn session_state(p: &[u8], extra: (u8, u8)) {
    let ok = parse_ok(p);
    let all = session_track::parse(p);
    if let Some(all) = &all {
        let c = ok.expect("a session-state block comes in an OK packet");
        assert_ne!(
            c.status & CHANGED,
            0,
            "a block the status does not announce"
        );
        assert!(!all.unreported);
        for (name, _) in &all.vars {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(all.var(name).is_some());
        }
        let mut twice = all.clone();
        twice.merge(all.clone());
        assert_eq!(twice.vars.len(), 2 * all.vars.len());
        assert_eq!(twice.schema, all.schema);
        assert_eq!(twice.next_transaction_set, all.next_transaction_set);
        read_your_writes(all);
    }
    for (mask, entries) in HIDING.into_iter().chain([extra]) {
        let hidden = hidden_names(mask);
        for tracks in [false, true] {
            let Some(out) = client_ok(p, tracks, &hidden, entries) else {
                continue;
            };
            let before = ok.expect("client_ok rewrites only OK packets");
            let all = all
                .as_ref()
                .expect("client_ok rewrites only packets with a block");
            let after = parse_ok(&out).expect("client_ok's packet is an OK packet");
            let counters = |c: Completion| (c.affected_rows, c.last_insert_id, c.warnings);
            assert_eq!(counters(after), counters(before));
            assert_eq!(after.status | CHANGED, before.status | CHANGED);
            // Nothing is left to take out.
            assert_eq!(client_ok(&out, tracks, &hidden, entries), None);
            let seen = session_track::parse(&out);
            assert_eq!(seen.is_some(), after.status & CHANGED != 0);
            if !tracks {
                assert_eq!(seen, None, "a client without session tracking got a block");
                continue;
            }
            let Some(seen) = seen else { continue };
            // What the client sees is what the server said, less what it must not see.
            let mut from_server = all.vars.iter();
            for v in &seen.vars {
                assert!(
                    !hidden.iter().any(|h| h.eq_ignore_ascii_case(&v.0)),
                    "hidden variable {} shown",
                    v.0
                );
                assert!(
                    from_server.any(|w| w == v),
                    "{v:?} is not the server's, or out of order"
                );
            }
            let shown = |kind: u8| entries & (1 << kind) == 0;
            if !shown(0) {
                assert!(seen.vars.is_empty());
            }
            let schema = if shown(1) { all.schema.clone() } else { None };
            assert_eq!(seen.schema, schema);
            let next = all.next_transaction_set.filter(|_| shown(4));
            assert_eq!(seen.next_transaction_set, next);
        }
    }
    for tracks in [false, true] {
        if let Some(out) = client_eof(p, tracks) {
            assert!(!tracks, "an EOF rewritten for a client that tracks");
            let before = parse_eof(p).expect("client_eof rewrites only EOF-sized packets");
            let after = parse_eof(&out).expect("client_eof's packet is an EOF");
            assert_eq!(out.len(), p.len());
            let status = before.status & !CHANGED;
            assert_eq!(after, Completion { status, ..before });
            assert_eq!(client_eof(&out, tracks), None);
        }
    }
}

/// The block the proxy writes into a login OK reads back as the schema it names.
fn schema_round_trip(name: &str) {
    let block = schema_block(name);
    let mut ok = vec![0, 0, 0];
    ok.extend_from_slice(&(CHANGED | SERVER_STATUS_AUTOCOMMIT).to_le_bytes());
    ok.extend_from_slice(&[0, 0, 0]);
    write_lenenc(&mut ok, block.len() as u64);
    ok.extend_from_slice(&block);
    let got = session_track::parse(&ok).expect("a login OK with a schema block");
    assert_eq!(got.schema.as_deref(), Some(name));
    let hidden = client_ok(&ok, true, &[], 1 << 1).expect("the schema entry hidden");
    assert_eq!(session_track::parse(&hidden), None);
}

fn payloads(p: &[u8], extra: (u8, u8)) {
    completion(p);
    session_state(p, extra);
}

/// The payloads of the whole packets framed at the start of `b`.
fn frames(mut b: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = frame_len(b)?;
        let p = b.get(4..len)?;
        b = &b[len..];
        Some(p)
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn listener() -> &'static TcpListener {
    static L: OnceLock<TcpListener> = OnceLock::new();
    L.get_or_init(|| {
        runtime()
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("loopback listener")
    })
}

/// The server: a greeting and an OK to any login, then, once the first command has come,
/// `reply` as is (with `login`, `reply` is all it says, from the start). Then it closes its
/// side and takes whatever the proxy still sends until the proxy hangs up.
async fn server(sock: TcpStream, reply: &[u8], login: bool) {
    let (r, w) = sock.into_split();
    let mut reader = PacketReader::new(r);
    let mut writer = PacketWriter::new(w);
    if !login {
        let greeting = Greeting {
            server_version: "10.11.6-MariaDB-fuzz",
            connection_id: 42,
            collation: 45,
            sql_mode_flags: 0,
        };
        let hello = Hello::new(false, false).payload(&greeting);
        if writer.write_packet(0, &hello).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        let Ok(response) = reader.read_raw().await else {
            return;
        };
        let ok = ok_payload(&Completion {
            status: SERVER_STATUS_AUTOCOMMIT,
            ..Completion::default()
        });
        let seq = response.seq().wrapping_add(1);
        if writer.write_packet(seq, &ok).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        if reader.read_raw().await.is_err() {
            return;
        }
    }
    let _ = writer.write_through(reply).await;
    let mut w = writer.into_inner();
    let _ = w.shutdown().await;
    let mut r = reader.into_inner();
    let mut sink = [0u8; 4096];
    while let Ok(1..) = r.read(&mut sink).await {}
}

/// Sends a command and relays its reply to a client that sends a file when asked (one piece,
/// then the empty packet that ends it).
async fn relayed(conn: &mut BackendConn, expect: Expect, flags: u8) {
    if conn.send_command(b"\x03SELECT 1").await.is_err() {
        return;
    }
    let ids = (flags & 0x20 != 0).then_some(StmtIds {
        backend: 7,
        client: 1,
    });
    let shift = [0, 1, 3, 255][usize::from(flags >> 6)];
    let runs = match (flags & 0x08 != 0, flags & 0x01 != 0) {
        (false, _) => RunsOn::Primary,
        (true, false) => RunsOn::Replica,
        (true, true) => RunsOn::ReplicaFirst,
    };
    let mut client_in = PacketReader::new(&[3, 0, 0, 2, b'a', b'b', b'c', 0, 0, 0, 3][..]);
    let mut client_out = PacketWriter::new(Vec::new());
    let relayed = relay(
        conn,
        &mut client_in,
        &mut client_out,
        expect,
        ids,
        shift,
        runs,
    )
    .await;
    let Ok(r) = relayed else { return };
    assert!(!conn.broken);
    assert_eq!(conn.status & CHANGED, 0);
    if let Some(e) = &r.error {
        let _ = e.to_string();
    }
    // The client gets whole packets: a replaced one is framed anew.
    let out = client_out.into_inner();
    // A held-back answer reaches it not at all.
    assert!(!r.refused_on_replica || out.is_empty());
    let mut at = 0;
    while let Some(len) = frame_len(&out[at..]) {
        at += len;
        assert!(at <= out.len(), "the client got part of a packet");
    }
    assert_eq!(at, out.len(), "the client got part of a packet header");
}

async fn client(addr: &str, op: u8, flags: u8, hidden: u8) {
    let key = ConnKey {
        user: Arc::from("app"),
        collation: 45,
        capabilities: session_capabilities().bits(),
    };
    let dial = Dial {
        timeout: Duration::from_secs(20),
        tls: None,
    };
    let mut conn = match BackendConn::log_in(addr, key, "app_pw", &dial).await.login {
        Ok(conn) => conn,
        Err(e) => {
            assert_eq!(op, LOGIN, "login to the fake server failed: {e}");
            return;
        }
    };
    conn.track.client_tracks = flags & 0x01 != 0;
    let entries = [
        0,
        0,
        TRANSACTION_INFO_ENTRIES & !TRANSACTION_STATE_ENTRIES,
        TRANSACTION_INFO_ENTRIES,
    ];
    let info = usize::from(flags >> 1 & 3);
    conn.track.characteristics = info != 0;
    conn.track.hidden_entries = entries[info];
    conn.track.hidden = hidden;
    if flags & 0x10 != 0 {
        conn.status |= SERVER_STATUS_IN_TRANS | SERVER_STATUS_IN_TRANS_READONLY;
    }
    match op {
        0..=3 => {
            let expect = [Expect::Results, Expect::Rows, Expect::UntilEof, Expect::One];
            relayed(&mut conn, expect[usize::from(op)], flags).await;
        }
        4 => {
            if let Ok(c) = conn.run("DO 1").await {
                assert!(!conn.broken);
                assert_eq!(conn.status, c.status & !CHANGED);
            }
        }
        5 => {
            if conn.query_row("SELECT 1, 2").await.is_ok() {
                assert!(!conn.broken);
            }
        }
        6 if flags & 0x04 != 0 => {
            // A client's prepare: the reply it gets is whole, and the copy stays for reuse.
            let sql: Arc<[u8]> = Arc::from(&b"SELECT ?"[..]);
            if let Ok(reply) = conn.prepare_for_client(&sql).await {
                assert!(!conn.broken);
                let defs = |n: u16| if n > 0 { usize::from(n) + 1 } else { 0 };
                let want = 1 + defs(reply.params) + defs(reply.columns);
                assert_eq!(reply.packets.len(), want);
                assert!(conn.prepared_id(&sql, None, 1, false).is_some());
            }
        }
        6 => {
            let sql: Arc<[u8]> = Arc::from(&b"SELECT ?"[..]);
            if let Ok(st) = conn.prepare(&sql, 1).await {
                let id = st.id;
                assert!(!conn.broken);
                assert_eq!(conn.prepared_id(&sql, None, 1, false), Some(id));
                // Prepared here already: asked again, the server is not.
                let again = conn.prepare(&sql, 1).await.map(|st| st.id).ok();
                assert_eq!(again, Some(id));
            }
        }
        7 => {
            if conn.track_session().await.is_ok() {
                let _ = conn.track_characteristics().await;
            }
        }
        8 => {
            let _ = conn.reset().await;
        }
        _ => {}
    }
    // Whatever the server sent after that reply answers the next command.
    if !conn.broken {
        relayed(&mut conn, Expect::Results, flags).await;
    }
}

fuzz_target!(|data: &[u8]| {
    let [op, flags, hidden, ref reply @ ..] = *data else {
        return;
    };
    let extra = (hidden & 0x7F, flags);
    payloads(data, extra);
    for p in frames(reply) {
        payloads(p, extra);
    }
    schema_round_trip(&String::from_utf8_lossy(reply));

    let op = op % 10;
    let listener = listener();
    runtime().block_on(async {
        let addr = listener.local_addr().expect("listener address").to_string();
        let server = async {
            if let Ok((sock, _)) = listener.accept().await {
                server(sock, reply, op == LOGIN).await;
            }
        };
        let all = async { tokio::join!(server, client(&addr, op, flags, hidden)) };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("an exchange stalled although the server closed its side");
    });
});
