//! The two halves of a client or backend socket, plain TCP or TLS.
//!
//! An enum rather than `Box<dyn AsyncRead>`: the plain-TCP hot path pays one predictable
//! branch per read or write, no allocation and no virtual call. TLS halves share the stream
//! through `tokio::io::split`, which the relay needs (it reads one side while writing the other).
//!
//! A plain socket is written with tokio's `try_write` first, which skips the cooperative
//! budget and the readiness loop of `poll_write` (callgrind: ~120 instructions per proxied
//! point select); the full path runs only when the socket would block. Reads keep
//! tokio's path: it clears the readiness after a short read, so the next read waits for the
//! reactor instead of asking the kernel, and a direct read measured no cheaper. Writes outside
//! tokio's budget cannot keep a task from yielding: the proxy writes what it has read, its
//! reads go through that budget, and a command taken from what was read already (a client
//! pipelining) is charged to it by the session (`client::wait_for_command`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// TLS over TCP, as server (client leg) or as client (backend leg).
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

pub enum StreamRead {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream>),
}

pub enum StreamWrite {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream>),
}

pub fn plain(s: TcpStream) -> (StreamRead, StreamWrite) {
    let (r, w) = s.into_split();
    (StreamRead::Plain(r), StreamWrite::Plain(w))
}

pub fn tls(s: impl Into<TlsStream>) -> (StreamRead, StreamWrite) {
    let (r, w) = tokio::io::split(s.into());
    (StreamRead::Tls(r), StreamWrite::Tls(w))
}

/// Closes the socket with a reset rather than in order (`SO_LINGER` 0), and without a FIN
/// first: plain TCP's owned write half would shut the sending side down when dropped on its
/// own, so the halves are put back together first.
pub fn close_with_reset(r: StreamRead, w: StreamWrite) {
    let reset = |tcp: &TcpStream| {
        if let Err(e) = socket2::SockRef::from(tcp).set_linger(Some(std::time::Duration::ZERO)) {
            tracing::debug!("could not make a close a reset: {e}");
        }
    };
    match (r, w) {
        (StreamRead::Plain(r), StreamWrite::Plain(w)) => {
            if let Ok(tcp) = r.reunite(w) {
                reset(&tcp);
            }
        }
        (StreamRead::Tls(r), StreamWrite::Tls(w)) => reset(r.unsplit(w).get_ref().0),
        // Never made: both halves come from one `plain` or `tls` call.
        _ => {}
    }
}

impl StreamRead {
    pub fn is_tls(&self) -> bool {
        matches!(self, StreamRead::Tls(_))
    }

    /// Whether a socket nobody expects data on has been closed or sent something: true on
    /// EOF, error or unexpected bytes (which are then lost; the caller discards the stream).
    /// Never waits.
    pub fn closed_or_garbage(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            StreamRead::Plain(r) => match r.try_read(&mut probe) {
                Ok(_) => true,
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            },
            // TLS records that carry no data (a TLS 1.3 session ticket) are consumed here
            // and leave the stream usable; anything else is as bad as on plain TCP.
            StreamRead::Tls(r) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut buf = ReadBuf::new(&mut probe);
                !matches!(Pin::new(r).poll_read(&mut cx, &mut buf), Poll::Pending)
            }
        }
    }
}

impl AsyncRead for StreamRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamRead::Plain(r) => Pin::new(r).poll_read(cx, buf),
            StreamRead::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for StreamWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => match w.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Pin::new(w).poll_write(cx, buf),
                done => Poll::Ready(done),
            },
            StreamWrite::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_flush(cx),
            StreamWrite::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_shutdown(cx),
            StreamWrite::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            StreamWrite::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            StreamWrite::Plain(w) => w.is_write_vectored(),
            StreamWrite::Tls(w) => w.is_write_vectored(),
        }
    }
}
