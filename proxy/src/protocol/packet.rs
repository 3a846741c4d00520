//! Packet framing: 3-byte little-endian length, 1-byte sequence id, payload.
//!
//! Payloads of 2^24-1 bytes or more are split into maximum-size physical packets followed by
//! a (possibly empty) shorter one. The proxy reads commands as whole logical packets (they are
//! small and must be parsed) but forwards results one physical packet at a time, untouched.

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload a single physical packet can carry.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Hard cap on a logical packet a peer may make us buffer (matches the server's 1 GiB
/// `max_allowed_packet` ceiling); anything longer is a protocol violation, not a statement.
pub const MAX_LOGICAL: usize = 1 << 30;

/// A peer announced a logical packet of at least its reader's limit (a server's
/// `max_allowed_packet` is the first size it refuses). The reader fails as soon as the header
/// that reaches the limit arrives, having buffered none of that packet's body.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("packet of {limit} bytes or more")]
pub struct PacketTooLarge {
    pub limit: usize,
    /// Sequence id of the physical packet that reached the limit: an answer follows it.
    pub seq: u8,
}

impl PacketTooLarge {
    /// What a failed read ran into, when that is why it failed.
    pub fn of(e: &io::Error) -> Option<PacketTooLarge> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<PacketTooLarge>())
            .copied()
    }
}

/// One physical packet as it came off the wire: header included, so it can be forwarded as is.
#[derive(Debug, Clone)]
pub struct RawPacket(pub Bytes);

impl RawPacket {
    pub fn seq(&self) -> u8 {
        self.0[3]
    }
    pub fn payload(&self) -> &[u8] {
        &self.0[4..]
    }
    /// A payload of exactly `MAX_PAYLOAD` bytes means the next packet continues this one.
    pub fn continues(&self) -> bool {
        self.0.len() - 4 == MAX_PAYLOAD
    }

    /// A copy with the sequence id moved back by `by`.
    pub fn renumbered_back(&self, by: u8) -> RawPacket {
        let mut p = self.0.to_vec();
        p[3] = p[3].wrapping_sub(by);
        RawPacket(p.into())
    }
}

/// The sequence ids, modulo 256, that a logical packet of `len` bytes takes: one per
/// `MAX_PAYLOAD` bytes, and one more for the shorter (possibly empty) packet that ends it.
pub fn packet_count(len: usize) -> u8 {
    (len / MAX_PAYLOAD + 1) as u8
}

/// What a reader buffers ahead at a time.
const READ_BUF: usize = 16 * 1024;

/// Buffered packet reader over any byte stream.
pub struct PacketReader<R> {
    inner: R,
    buf: BytesMut,
    /// How long a packet that has started may wait for its next bytes; `None`: as long as
    /// it takes.
    stall: Option<std::time::Duration>,
    /// Longest logical packet `read_logical` accepts: the memory one command may take.
    limit: usize,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(READ_BUF),
            stall: None,
            limit: MAX_LOGICAL,
        }
    }

    /// Makes `read_logical` fail with [`PacketTooLarge`] on a packet of `limit` bytes or more.
    pub fn set_packet_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Fails a packet read (`TimedOut`) when the peer sends nothing more of it for `limit`.
    /// Only reads that wait cost a timer: a packet already buffered whole arms none.
    pub fn stalling_at_most(mut self, limit: std::time::Duration) -> Self {
        self.stall = Some(limit);
        self
    }

    /// Reads one physical packet. EOF before a header is `UnexpectedEof` like any other cut.
    pub async fn read_raw(&mut self) -> io::Result<RawPacket> {
        let total = self.buffer_frame().await?;
        Ok(RawPacket(self.buf.split_to(total).freeze()))
    }

    /// Reads a whole logical packet (joining continuations); returns the last sequence id.
    /// Continuations must each take the next sequence id (`InvalidData` otherwise, MariaDB's
    /// "Got packets out of order"). Copies straight out of the read buffer: no `Bytes` handle
    /// per packet (every command comes this way).
    pub async fn read_logical(&mut self, out: &mut Vec<u8>) -> io::Result<u8> {
        out.clear();
        let mut previous: Option<u8> = None;
        loop {
            // A command mostly arrives whole in one read: then no wait is entered (callgrind:
            // each awaited call costs about 30 instructions even when ready).
            let total = match frame_len(&self.buf) {
                Some(total) => total,
                None => self.buffer_header().await?,
            };
            let len = total - 4;
            let seq = self.buf[3];
            if previous.is_some_and(|p| seq != p.wrapping_add(1)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "Got packets out of order",
                ));
            }
            previous = Some(seq);
            if out.len() + len >= self.limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    PacketTooLarge {
                        limit: self.limit,
                        seq,
                    },
                ));
            }
            if self.buf.len() < total {
                self.buffer_body(total).await?;
            }
            out.extend_from_slice(&self.buf[4..total]);
            self.buf.advance(total);
            if total > crate::client::trim::BIG_BUFFER && self.buf.is_empty() {
                // Grown for this packet alone: not kept for the rest of the connection.
                crate::client::trim::freed(total);
                self.buf = BytesMut::with_capacity(READ_BUF);
            }
            if len != MAX_PAYLOAD {
                return Ok(seq);
            }
        }
    }

    /// Waits until a whole physical packet is buffered; returns its length, header included.
    async fn buffer_frame(&mut self) -> io::Result<usize> {
        let total = self.buffer_header().await?;
        self.buffer_body(total).await?;
        Ok(total)
    }

    /// Waits until a packet header is buffered; returns the packet's length, header included.
    async fn buffer_header(&mut self) -> io::Result<usize> {
        while self.buf.len() < 4 {
            self.fill_packet().await?;
        }
        Ok(frame_len(&self.buf).expect("a header is buffered"))
    }

    /// Waits until the packet of length `total` whose header is buffered is buffered whole.
    async fn buffer_body(&mut self, total: usize) -> io::Result<()> {
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            while self.buf.len() < total {
                self.fill_packet().await?;
            }
        }
        Ok(())
    }

    /// [`Self::fill`] for the rest of a packet, within the stall limit.
    async fn fill_packet(&mut self) -> io::Result<()> {
        let Some(limit) = self.stall else {
            return self.fill().await;
        };
        crate::timer::timeout(limit, self.fill())
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "peer sent nothing more of a packet for {} s",
                        limit.as_secs()
                    ),
                ))
            })
    }

    /// True when bytes are already buffered: a peer that sent something we did not ask for.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// A whole packet that ends a logical one is buffered: `read_logical` will not wait.
    pub fn has_whole_packet(&self) -> bool {
        frame_len(&self.buf)
            .is_some_and(|total| total <= self.buf.len() && total - 4 != MAX_PAYLOAD)
    }

    /// Bytes received and not yet consumed, for callers that walk packets in place.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// [`buffered`](Self::buffered), for callers that rewrite packet headers in place.
    pub fn buffered_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// Reads more bytes, making room for at least `want` buffered bytes in total.
    pub async fn fill_to(&mut self, want: usize) -> io::Result<()> {
        if want > self.buf.len() {
            self.buf.reserve(want - self.buf.len());
        }
        self.fill().await
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The stream; bytes read but not yet consumed are dropped.
    pub fn into_inner(self) -> R {
        self.inner
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(READ_BUF);
        }
        let n = self.inner.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Longest packet accepted before a connection is authenticated, in either direction: a
/// greeting or a login request with connection attributes is a few hundred bytes.
pub const MAX_HANDSHAKE: usize = 64 * 1024;

/// Reads one packet of the connection phase without reading past it, so that a TLS handshake
/// that may follow (after an SSLRequest) finds its first bytes still in the socket.
pub async fn read_handshake_packet<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len >= MAX_HANDSHAKE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            PacketTooLarge {
                limit: MAX_HANDSHAKE,
                seq: header[3],
            },
        ));
    }
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await?;
    Ok((header[3], payload))
}

/// Buffered packet writer: packets accumulate until `flush`, so a result set costs one
/// syscall per buffer-full rather than one per row.
pub struct PacketWriter<W> {
    inner: W,
    buf: Vec<u8>,
    /// How long a write may wait for the peer to take any of it; `None`: as long as it takes.
    stall: Option<std::time::Duration>,
}

/// Flush early once this much is buffered, bounding memory on huge result sets.
const FLUSH_AT: usize = 64 * 1024;

impl<W: AsyncWrite + Unpin> PacketWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(FLUSH_AT),
            stall: None,
        }
    }

    /// Fails a write (`TimedOut`) when the peer takes none of it for `limit`: a peer that
    /// stops reading must not hold what the writer's owner holds (a backend connection, a
    /// transaction's locks) forever. Only writes that wait cost a timer.
    pub fn set_stall_limit(&mut self, limit: std::time::Duration) {
        self.stall = Some(limit);
    }

    /// Frames `payload` starting at sequence id `seq`; returns the next sequence id.
    pub async fn write_packet(&mut self, mut seq: u8, mut payload: &[u8]) -> io::Result<u8> {
        loop {
            let chunk = payload.len().min(MAX_PAYLOAD);
            let len = chunk as u32;
            self.buf
                .extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, seq]);
            self.buf.extend_from_slice(&payload[..chunk]);
            payload = &payload[chunk..];
            seq = seq.wrapping_add(1);
            if self.buf.len() >= FLUSH_AT {
                self.flush_buf().await?;
            }
            if chunk < MAX_PAYLOAD {
                return Ok(seq);
            }
        }
    }

    /// Sends already framed bytes, without copying them when nothing else is queued.
    pub async fn write_through(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buf.is_empty() {
            return self.write_all(bytes).await;
        }
        self.buf.extend_from_slice(bytes);
        self.flush_buf().await
    }

    /// Queues an already framed packet.
    pub async fn write_raw(&mut self, p: &RawPacket) -> io::Result<()> {
        if p.0.len() >= FLUSH_AT {
            self.flush_buf().await?;
            return self.write_all(&p.0).await;
        }
        self.buf.extend_from_slice(&p.0);
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.flush_buf().await?;
        let stall = self.stall;
        within(stall, &mut self.inner, |w, cx| Pin::new(w).poll_flush(cx)).await
    }

    async fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            write_all(&mut self.inner, self.stall, &self.buf).await?;
            self.buf.clear();
            if self.buf.capacity() > crate::client::trim::BIG_BUFFER {
                // Grown for one big packet (a command passed on whole): not kept for the
                // rest of the connection, which a pool may keep for long.
                crate::client::trim::freed(self.buf.capacity());
                self.buf = Vec::with_capacity(FLUSH_AT);
            }
        }
        Ok(())
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        write_all(&mut self.inner, self.stall, bytes).await
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The stream; packets not yet flushed are dropped.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// `write_all`, each write within the stall limit (see [`PacketWriter::set_stall_limit`]).
async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    stall: Option<std::time::Duration>,
    mut bytes: &[u8],
) -> io::Result<()> {
    if stall.is_none() {
        return w.write_all(bytes).await;
    }
    while !bytes.is_empty() {
        let n = within(stall, w, |w, cx| Pin::new(w).poll_write(cx, bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Runs the poll `op` on `w` to completion; with a limit, fails (`TimedOut`) when it is still
/// pending after it. The first poll arms no timer: most writes complete at once.
async fn within<W, T>(
    limit: Option<std::time::Duration>,
    w: &mut W,
    mut op: impl FnMut(&mut W, &mut Context<'_>) -> Poll<io::Result<T>>,
) -> io::Result<T> {
    let mut first = true;
    let at_once = std::future::poll_fn(|cx| match op(w, cx) {
        Poll::Pending if first && limit.is_some() => {
            first = false;
            Poll::Ready(None)
        }
        Poll::Pending => Poll::Pending,
        Poll::Ready(r) => Poll::Ready(Some(r)),
    })
    .await;
    if let Some(r) = at_once {
        return r;
    }
    let limit = limit.expect("only a limited op stops after its first poll");
    let waited = std::future::poll_fn(|cx| op(w, cx));
    crate::timer::timeout(limit, waited)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("peer took nothing written to it for {} s", limit.as_secs()),
            ))
        })
}

/// The length of the physical packet starting at `buf[0]`, header included, if its header
/// is there.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    match buf {
        [a, b, c, _, ..] => {
            Some(4 + (usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16))
        }
        _ => None,
    }
}

/// Reads a length-encoded integer, advancing `buf`; `None` on truncation or the NULL marker.
pub fn read_lenenc(buf: &mut &[u8]) -> Option<u64> {
    let first = *buf.first()?;
    let n = match first {
        0..=0xFA => {
            buf.advance(1);
            return Some(u64::from(first));
        }
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    if buf.len() < 1 + n {
        return None;
    }
    let mut v = 0u64;
    for (i, b) in buf[1..=n].iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    buf.advance(1 + n);
    Some(v)
}

pub fn write_lenenc(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xFA => out.push(v as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logical_packet_roundtrip_across_continuations() {
        for size in [
            0,
            1,
            MAX_PAYLOAD - 1,
            MAX_PAYLOAD,
            MAX_PAYLOAD + 5,
            2 * MAX_PAYLOAD,
        ] {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut w = PacketWriter::new(Vec::new());
            w.write_packet(0, &payload).await.unwrap();
            w.flush().await.unwrap();
            let wire = std::mem::take(w.get_mut());
            let mut r = PacketReader::new(&wire[..]);
            let mut out = Vec::new();
            let last = r.read_logical(&mut out).await.unwrap();
            assert_eq!(out, payload, "size {size}");
            assert_eq!(usize::from(last), size / MAX_PAYLOAD);
        }
    }

    /// A buffer grown for one big packet is not kept: an idle session or pooled connection
    /// held each one's size.
    #[tokio::test]
    async fn buffers_grown_for_a_big_packet_are_given_back() {
        let payload = vec![7u8; 3 * 1024 * 1024];
        let mut w = PacketWriter::new(Vec::new());
        w.write_packet(0, &payload).await.unwrap();
        w.flush().await.unwrap();
        assert!(w.buf.capacity() <= FLUSH_AT, "{}", w.buf.capacity());
        let wire = std::mem::take(w.get_mut());
        let mut r = PacketReader::new(&wire[..]);
        let mut out = Vec::new();
        r.read_logical(&mut out).await.unwrap();
        assert_eq!(out.len(), payload.len());
        assert!(r.buf.capacity() <= READ_BUF, "{}", r.buf.capacity());
    }

    /// `has_whole_packet` says whether `read_logical` can finish from the buffer alone.
    #[tokio::test]
    async fn whole_packets_are_known_from_the_buffer() {
        async fn buffered(wire: &[u8]) -> PacketReader<&[u8]> {
            let mut r = PacketReader::new(wire);
            while r.buffered().len() < wire.len() {
                r.fill_to(wire.len()).await.unwrap();
            }
            r
        }
        let mut w = PacketWriter::new(Vec::new());
        w.write_packet(0, b"\x03SELECT 1").await.unwrap();
        w.write_packet(0, &vec![0; MAX_PAYLOAD + 1]).await.unwrap();
        w.flush().await.unwrap();
        let wire = std::mem::take(w.get_mut());
        let first = 4 + 9;
        for (have, whole) in [
            (0, false),
            (3, false),
            (4, false),
            (first - 1, false),
            (first, true),
            (first + 100, true),
        ] {
            assert_eq!(
                buffered(&wire[..have]).await.has_whole_packet(),
                whole,
                "{have} bytes"
            );
        }
        // A full-size packet continues in the next one.
        let full = first + 4 + MAX_PAYLOAD;
        assert!(!buffered(&wire[first..full]).await.has_whole_packet());
        assert!(!buffered(&wire[first..]).await.has_whole_packet());
    }

    /// The limit counts the whole logical packet, continuations included, and a packet
    /// reaching it fails on its header: the reader never waits for (or buffers) its body.
    #[tokio::test]
    async fn logical_packets_of_the_limit_fail_on_their_header() {
        for (size, limit, fits) in [
            (99, 100, true),
            (100, 100, false),
            (MAX_PAYLOAD + 5, MAX_PAYLOAD + 6, true),
            (MAX_PAYLOAD + 5, MAX_PAYLOAD + 5, false),
        ] {
            let mut w = PacketWriter::new(Vec::new());
            w.write_packet(0, &vec![7; size]).await.unwrap();
            w.flush().await.unwrap();
            let mut wire = std::mem::take(w.get_mut());
            if !fits {
                // Cut the last packet after its header: a reader that waited for its
                // body would see EOF instead.
                let last = size / MAX_PAYLOAD * (MAX_PAYLOAD + 4);
                wire.truncate(last + 4);
            }
            let mut r = PacketReader::new(&wire[..]);
            r.set_packet_limit(limit);
            let mut out = Vec::new();
            let got = r.read_logical(&mut out).await;
            match got {
                Ok(_) => assert!(fits, "size {size}, limit {limit}"),
                Err(e) => {
                    assert!(!fits, "size {size}, limit {limit}: {e}");
                    let t = PacketTooLarge::of(&e).expect("too large");
                    assert_eq!((t.limit, usize::from(t.seq)), (limit, size / MAX_PAYLOAD));
                }
            }
        }
    }

    /// Every continuation takes the next sequence id, not only the last one.
    #[tokio::test]
    async fn continuations_out_of_sequence_are_refused() {
        for (seqs, ok) in [([0u8, 1, 2], true), ([0, 0, 2], false), ([3, 5, 5], false)] {
            let mut wire = Vec::new();
            for (i, seq) in seqs.into_iter().enumerate() {
                let len: usize = if i < 2 { MAX_PAYLOAD } else { 3 };
                wire.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
                wire.push(seq);
                wire.resize(wire.len() + len, b'x');
            }
            let mut r = PacketReader::new(&wire[..]);
            let got = r.read_logical(&mut Vec::new()).await;
            match got {
                Ok(last) => assert!(ok && last == 2, "{seqs:?}"),
                Err(e) => {
                    assert!(!ok, "{seqs:?}: {e}");
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                    assert_eq!(e.to_string(), "Got packets out of order");
                }
            }
        }
    }

    /// The stall limit bounds each wait for the peer to take bytes, not the whole write: a
    /// peer reading slowly but steadily gets everything, one that stops is given up on.
    #[tokio::test(start_paused = true)]
    async fn a_write_fails_only_when_the_peer_stalls() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut w = PacketWriter::new(ours);
        w.set_stall_limit(std::time::Duration::from_secs(1));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut chunk = [0u8; 64];
            while got < 1024 + 4 {
                crate::timer::sleep(std::time::Duration::from_millis(500)).await;
                got += theirs.read(&mut chunk).await.unwrap();
            }
            theirs
        });
        let started = tokio::time::Instant::now();
        w.write_packet(0, &[b'x'; 1024]).await.unwrap();
        w.flush().await.unwrap();
        assert!(started.elapsed() > std::time::Duration::from_secs(5));
        let _theirs = reader.await.unwrap();
        w.write_packet(1, &[b'y'; 1024]).await.unwrap();
        let stalled = w.flush().await.unwrap_err();
        assert_eq!(stalled.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn truncated_stream_is_an_error() {
        let mut r = PacketReader::new(&[5u8, 0, 0, 0, b'a'][..]);
        assert!(r.read_raw().await.is_err());
        let mut r = PacketReader::new(&[1u8, 0][..]);
        assert!(r.read_raw().await.is_err());
    }

    #[test]
    fn lenenc_roundtrip() {
        for v in [
            0u64,
            250,
            251,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_lenenc(&mut out, v);
            let mut s = &out[..];
            assert_eq!(read_lenenc(&mut s), Some(v));
            assert!(s.is_empty());
        }
        assert_eq!(read_lenenc(&mut &[0xFC, 1][..]), None);
        assert_eq!(read_lenenc(&mut &[0xFB][..]), None);
    }
}
