//! A tiny raw-protocol MySQL client for commands high-level drivers do not expose (cursors
//! with COM_STMT_FETCH, COM_STMT_SEND_LONG_DATA, COM_STMT_RESET, COM_CHANGE_USER with any
//! plugin and collation, unknown command bytes): log in with `mysql_native_password`, then
//! send packets and read replies as raw payloads.

use anyhow::{bail, Context, Result};
use mysql_common::constants::CapabilityFlags as Cap;
use mysql_common::io::ParseBuf;
use mysql_common::packets::HandshakePacket;
use mysql_common::proto::MyDeserialize;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawConn {
    stream: TcpStream,
    seq: u8,
    /// The greeting's scramble, which COM_CHANGE_USER answers again.
    nonce: Vec<u8>,
    /// The thread id from the greeting.
    pub id: u32,
    /// The greeting's status flags.
    pub greeting_status: u16,
    /// The server's final login reply (OK, or ERR when logging in failed).
    pub login_reply: Vec<u8>,
}

/// What a raw login asks for beyond the basics, or without some of them.
#[derive(Debug, Clone, Copy)]
pub struct LoginOptions {
    pub extra_capabilities: Cap,
    /// Taken out of the basics (an old client without multi-results, say).
    pub missing_capabilities: Cap,
    pub collation: u8,
    /// The login request's sequence id, when not the right one (1).
    pub login_seq: Option<u8>,
}

impl Default for LoginOptions {
    fn default() -> Self {
        LoginOptions {
            extra_capabilities: Cap::empty(),
            missing_capabilities: Cap::empty(),
            collation: 45,
            login_seq: None,
        }
    }
}

/// SERVER_MORE_RESULTS_EXISTS in OK/EOF status flags.
const MORE_RESULTS: u16 = 0x0008;

impl RawConn {
    pub async fn connect(addr: SocketAddr, user: &str, pass: &str, db: &str) -> Result<RawConn> {
        let c = Self::login(addr, user, pass, db, LoginOptions::default()).await?;
        if c.login_reply.first() != Some(&0) {
            bail!("login failed: {}", err_text(&c.login_reply));
        }
        Ok(c)
    }

    /// Logs in with the given capabilities and collation; the reply is in `login_reply`.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        pass: &str,
        db: &str,
        opts: LoginOptions,
    ) -> Result<RawConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = RawConn {
            stream,
            seq: 0,
            nonce: Vec::new(),
            id: 0,
            greeting_status: 0,
            login_reply: Vec::new(),
        };
        let hs = c.read().await?;
        let hs = HandshakePacket::deserialize((), &mut ParseBuf(&hs)).context("handshake")?;
        c.nonce = hs.nonce();
        c.id = hs.connection_id();
        c.greeting_status = hs.status_flags().bits();
        let caps = Cap::CLIENT_PROTOCOL_41
            | Cap::CLIENT_SECURE_CONNECTION
            | Cap::CLIENT_LONG_PASSWORD
            | Cap::CLIENT_TRANSACTIONS
            | Cap::CLIENT_CONNECT_WITH_DB
            | Cap::CLIENT_PLUGIN_AUTH
            | Cap::CLIENT_MULTI_STATEMENTS
            | Cap::CLIENT_MULTI_RESULTS
            | Cap::CLIENT_PS_MULTI_RESULTS
            | opts.extra_capabilities;
        let caps = caps - opts.missing_capabilities;
        let mut p = Vec::new();
        p.extend_from_slice(&caps.bits().to_le_bytes());
        p.extend_from_slice(&(16u32 << 20).to_le_bytes());
        p.push(opts.collation);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        let auth = mysql_common::scramble::scramble_native(&hs.nonce(), pass.as_bytes())
            .map(|a| a.to_vec())
            .unwrap_or_default();
        p.push(auth.len() as u8);
        p.extend_from_slice(&auth);
        p.extend_from_slice(db.as_bytes());
        p.push(0);
        p.extend_from_slice(b"mysql_native_password\0");
        if let Some(seq) = opts.login_seq {
            c.seq = seq;
        }
        c.write(&p).await?;
        c.login_reply = c.read().await?;
        Ok(c)
    }

    /// Runs a text query that must succeed and returns every reply packet up to the end of
    /// its last result; an ERR packet anywhere in the reply is an `Err` naming it.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Vec<u8>>> {
        let reply = self.query_reply(sql).await?;
        match reply.iter().find(|p| p.first() == Some(&0xff)) {
            Some(err) => bail!("{sql}: {}", err_text(err)),
            None => Ok(reply),
        }
    }

    /// Runs a text query and returns its reply as it came, an ERR packet included.
    pub async fn query_reply(&mut self, sql: &str) -> Result<Vec<Vec<u8>>> {
        self.command(&[&[0x03][..], sql.as_bytes()].concat()).await
    }

    /// Answers a `LOCAL INFILE` request with the given packets (an empty one is added).
    pub async fn send_file(&mut self, chunks: &[&[u8]]) -> Result<Vec<u8>> {
        for c in chunks {
            self.write(c).await?;
        }
        self.write(&[]).await?;
        self.read().await
    }

    async fn write(&mut self, payload: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(payload.len() + 4);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
        buf.push(self.seq);
        buf.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.stream.write_all(&buf).await?;
        Ok(())
    }

    /// The socket after login, for a test that writes and reads at once (pipelining).
    /// The greeting's scramble.
    pub fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads one packet's payload (replies here stay under 16 MiB).
    pub async fn read(&mut self) -> Result<Vec<u8>> {
        let mut h = [0u8; 4];
        self.stream.read_exact(&mut h).await?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
        self.seq = h[3].wrapping_add(1);
        let mut p = vec![0; len];
        self.stream.read_exact(&mut p).await?;
        Ok(p)
    }

    /// Starts a new command of any size (sequence id 0), split into packets of at most
    /// 16 MiB - 1 as the protocol wants, without reading a reply.
    pub async fn send_split(&mut self, payload: &[u8]) -> Result<()> {
        const MAX: usize = 0xFF_FFFF;
        self.seq = 0;
        let mut rest = payload;
        loop {
            let (part, tail) = rest.split_at(rest.len().min(MAX));
            self.write(part).await?;
            if part.len() < MAX {
                return Ok(());
            }
            rest = tail;
        }
    }

    /// Reads one packet: its sequence id and payload.
    pub async fn read_with_seq(&mut self) -> Result<(u8, Vec<u8>)> {
        let p = self.read().await?;
        Ok((self.seq.wrapping_sub(1), p))
    }

    /// Starts a new command (sequence id 0) without reading a reply.
    pub async fn send(&mut self, payload: &[u8]) -> Result<()> {
        self.seq = 0;
        self.write(payload).await
    }

    /// Sends a command and reads its whole reply: every packet up to the OK, EOF or ERR that
    /// ends it (through all result sets of a multi-result reply).
    pub async fn command(&mut self, payload: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.send(payload).await?;
        self.read_reply().await
    }

    /// Reads a reply to a command: OK, EOF, ERR or a LOCAL INFILE request, or result sets
    /// (text protocol) until one ends without SERVER_MORE_RESULTS_EXISTS.
    pub async fn read_reply(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let first = self.read().await?;
            out.push(first.clone());
            match first[0] {
                0xff | 0xfe | 0xfb => return Ok(out),
                0x00 if ok_status(&first) & MORE_RESULTS == 0 => return Ok(out),
                0x00 => continue,
                _ => {}
            }
            // Column definitions and rows, each run ending with an EOF.
            let mut eofs = 0;
            while eofs < 2 {
                let p = self.read().await?;
                let err = p[0] == 0xff;
                eofs += usize::from(p[0] == 0xfe && p.len() < 9);
                out.push(p);
                if err {
                    return Ok(out);
                }
            }
            if status_of_last(&out) & MORE_RESULTS == 0 {
                return Ok(out);
            }
        }
    }

    /// Reads packets up to and including an EOF or ERR (the reply to COM_FIELD_LIST).
    pub async fn read_until_eof(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let p = self.read().await?;
            let end = p[0] == 0xff || (p[0] == 0xfe && p.len() < 9);
            out.push(p);
            if end {
                return Ok(out);
            }
        }
    }

    /// COM_CHANGE_USER answering the greeting's scramble with `plugin`'s reply (an unknown
    /// plugin sends an empty reply), following an auth switch to `mysql_native_password` or
    /// a caching_sha2 fast-auth notice. Returns every packet the server sent.
    pub async fn change_user(
        &mut self,
        user: &str,
        pass: &str,
        db: &str,
        collation: u16,
        plugin: &str,
    ) -> Result<Vec<Vec<u8>>> {
        let auth = match plugin {
            "mysql_native_password" => {
                mysql_common::scramble::scramble_native(&self.nonce, pass.as_bytes())
                    .map(|a| a.to_vec())
            }
            "caching_sha2_password" => {
                mysql_common::scramble::scramble_sha256(&self.nonce, pass.as_bytes())
                    .map(|a| a.to_vec())
            }
            _ => None,
        }
        .unwrap_or_default();
        let mut p = vec![0x11];
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        p.push(auth.len() as u8);
        p.extend_from_slice(&auth);
        p.extend_from_slice(db.as_bytes());
        p.push(0);
        p.extend_from_slice(&collation.to_le_bytes());
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
        self.send(&p).await?;
        let mut out = Vec::new();
        loop {
            let r = self.read().await?;
            out.push(r.clone());
            match r.as_slice() {
                [0xfe, rest @ ..] => {
                    let nul = rest.iter().position(|b| *b == 0).context("switch")?;
                    let nonce = &rest[nul + 1..];
                    let nonce = nonce.strip_suffix(&[0]).unwrap_or(nonce);
                    let reply = mysql_common::scramble::scramble_native(nonce, pass.as_bytes())
                        .map(|a| a.to_vec())
                        .unwrap_or_default();
                    self.write(&reply).await?;
                }
                [0x01, 0x03] => {}
                _ => return Ok(out),
            }
        }
    }

    /// COM_STMT_PREPARE: returns (statement id, columns, params) after reading the definitions.
    pub async fn prepare(&mut self, sql: impl AsRef<[u8]>) -> Result<(u32, u16, u16)> {
        let mut p = vec![0x16];
        p.extend_from_slice(sql.as_ref());
        self.send(&p).await?;
        let r = self.read().await?;
        if r[0] != 0 {
            bail!("prepare: {}", err_text(&r));
        }
        let id = u32::from_le_bytes(r[1..5].try_into()?);
        let cols = u16::from_le_bytes([r[5], r[6]]);
        let params = u16::from_le_bytes([r[7], r[8]]);
        for n in [params, cols] {
            if n > 0 {
                for _ in 0..n {
                    self.read().await?;
                }
                self.read().await?; // EOF
            }
        }
        Ok((id, cols, params))
    }

    /// Reads a result set's column definitions and its terminating EOF; returns the count.
    pub async fn read_columns(&mut self) -> Result<usize> {
        let first = self.read().await?;
        if first[0] == 0xff {
            bail!("{}", err_text(&first));
        }
        let n = first[0] as usize;
        for _ in 0..n {
            self.read().await?;
        }
        let eof = self.read().await?;
        if eof[0] != 0xfe {
            bail!("expected EOF after columns, got {eof:?}");
        }
        Ok(n)
    }

    /// Reads rows until EOF; returns the raw row payloads and the EOF's status flags.
    pub async fn read_rows(&mut self) -> Result<(Vec<Vec<u8>>, u16)> {
        let mut rows = Vec::new();
        loop {
            let p = self.read().await?;
            match p[0] {
                0xfe if p.len() < 9 => return Ok((rows, u16::from_le_bytes([p[3], p[4]]))),
                0xff => bail!("{}", err_text(&p)),
                _ => rows.push(p),
            }
        }
    }
}

/// `COM_STMT_EXECUTE` of statement `id` with no parameters; `cursor` asks for a read-only
/// cursor, whose rows then come by `COM_STMT_FETCH` ([`fetch_packet`]).
pub fn execute_packet(id: u32, cursor: bool) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(u8::from(cursor)); // CURSOR_TYPE_READ_ONLY
    p.extend_from_slice(&1u32.to_le_bytes()); // iteration count
    p
}

/// `COM_STMT_EXECUTE` of statement `id` with one parameter: `value` as a string, or with
/// `None` a BLOB whose value was sent as long data ([`long_data_packet`]); `cursor` as in
/// [`execute_packet`].
pub fn execute_param_packet(id: u32, cursor: bool, value: Option<&str>) -> Vec<u8> {
    let mut p = execute_packet(id, cursor);
    p.push(0); // NULL bitmap
    p.push(1); // new params bound
    match value {
        // MYSQL_TYPE_VAR_STRING, then the value (short: a one-byte length).
        Some(v) => {
            p.extend_from_slice(&[0xfd, 0, v.len() as u8]);
            p.extend_from_slice(v.as_bytes());
        }
        // MYSQL_TYPE_BLOB; the value came as long data.
        None => p.extend_from_slice(&[0xfc, 0]),
    }
    p
}

/// `COM_STMT_SEND_LONG_DATA`: `data` for parameter 0 of statement `id` (no reply).
pub fn long_data_packet(id: u32, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0x18];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(data);
    p
}

/// `COM_STMT_RESET` of statement `id`: ends its cursor and drops its long data.
pub fn reset_packet(id: u32) -> Vec<u8> {
    let mut p = vec![0x1a];
    p.extend_from_slice(&id.to_le_bytes());
    p
}

/// `COM_STMT_CLOSE` of statement `id` (the server sends no reply).
pub fn close_packet(id: u32) -> Vec<u8> {
    let mut p = vec![0x19];
    p.extend_from_slice(&id.to_le_bytes());
    p
}

/// `COM_STMT_FETCH` of up to `rows` rows from statement `id`'s cursor.
pub fn fetch_packet(id: u32, rows: u32) -> Vec<u8> {
    let mut p = vec![0x1c];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&rows.to_le_bytes());
    p
}

/// Status flags of an OK packet.
pub fn ok_status(p: &[u8]) -> u16 {
    let mut b = &p[1..];
    for _ in 0..2 {
        let skip = match b[0] {
            0xfc => 3,
            0xfd => 4,
            0xfe => 9,
            _ => 1,
        };
        b = &b[skip..];
    }
    u16::from_le_bytes([b[0], b[1]])
}

fn status_of_last(packets: &[Vec<u8>]) -> u16 {
    let p = packets.last().expect("a packet");
    u16::from_le_bytes([p[3], p[4]])
}

/// `code (state): message` of an ERR packet.
pub fn err_text(p: &[u8]) -> String {
    if p.first() != Some(&0xff) || p.len() < 9 {
        return format!("not an error packet: {p:?}");
    }
    let code = u16::from_le_bytes([p[1], p[2]]);
    format!(
        "{code} ({}): {}",
        String::from_utf8_lossy(&p[4..9]),
        String::from_utf8_lossy(&p[9..])
    )
}

/// First value of a binary-protocol row whose first column is a non-NULL 4-byte INT.
pub fn binary_row_int(row: &[u8], columns: usize) -> i32 {
    let bitmap = (columns + 7 + 2) / 8;
    let at = 1 + bitmap;
    i32::from_le_bytes(row[at..at + 4].try_into().unwrap())
}
