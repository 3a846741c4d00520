//! The two halves of a client or backend socket, plain TCP or TLS.
//!
//! An enum rather than `Box<dyn AsyncRead>`: the plain-TCP hot path pays one predictable
//! branch per read or write, no allocation and no virtual call. TLS halves share the stream
//! through `tokio::io::split`, which the relay needs (it reads one side while writing the other).
//!
//! A plain socket is read and written directly first (tokio's `try_read_buf`/`try_write`,
//! which still keep its readiness up to date) and goes through the waker-registering path
//! only when the socket would block: a statement's reply is usually there when the session is
//! woken for it, and the full path costs ~250 instructions more per call (callgrind: 8 370 ->
//! 7 855 per proxied point select). The direct calls bypass tokio's cooperative budget, so
//! a task yields after a run of them by itself.

use std::cell::Cell;
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

/// Direct calls in a row, on one thread, before the running task yields: a session relaying a
/// large result between two sockets that never block would otherwise keep its event thread
/// from every other session (tokio's own budget lets a task do 128 operations).
const EAGER_RUN: u8 = 32;

thread_local! {
    /// Direct calls since a call on this thread last had to wait. Per thread, not per
    /// socket: a task that made it this far has kept the thread all that time, and a
    /// backend socket written once per statement never blocks but never runs alone.
    static RUN: Cell<u8> = const { Cell::new(0) };
}

/// `direct` on `half` first; the full path (`slow`) when it would block. After `EAGER_RUN`
/// direct successes the task yields once instead.
fn poll_eager<T: Unpin, B: ?Sized, R>(
    half: &mut T,
    cx: &mut Context<'_>,
    buf: &mut B,
    direct: impl FnOnce(&T, &mut B) -> io::Result<R>,
    slow: impl FnOnce(Pin<&mut T>, &mut Context<'_>, &mut B) -> Poll<io::Result<R>>,
) -> Poll<io::Result<R>> {
    let run = RUN.get();
    if run == EAGER_RUN {
        RUN.set(0);
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    match direct(half, buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            RUN.set(0);
            slow(Pin::new(half), cx, buf)
        }
        done => {
            RUN.set(run + 1);
            Poll::Ready(done)
        }
    }
}

pub fn tls(s: impl Into<TlsStream>) -> (StreamRead, StreamWrite) {
    let (r, w) = tokio::io::split(s.into());
    (StreamRead::Tls(r), StreamWrite::Tls(w))
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
            StreamRead::Plain(r) => poll_eager(
                r,
                cx,
                buf,
                |h, buf| h.try_read_buf(buf).map(drop),
                |h, cx, buf| h.poll_read(cx, buf),
            ),
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
            StreamWrite::Plain(w) => poll_eager(
                w,
                cx,
                &mut { buf },
                |h, buf| h.try_write(buf),
                |h, cx, buf| h.poll_write(cx, buf),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    struct CountWakes(AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A socket that always has data is read directly `EAGER_RUN` times, then the task
    /// yields once (woken at once, so it is polled again after the others), then reading
    /// goes on.
    #[tokio::test]
    async fn a_run_of_direct_reads_yields_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        peer.write_all(&[7; 4096]).await.unwrap();
        ours.readable().await.unwrap();
        let (mut r, _w) = plain(ours);
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        RUN.set(0);
        let mut read_one = || {
            let mut byte = [0u8; 1];
            let mut buf = ReadBuf::new(&mut byte);
            Pin::new(&mut r)
                .poll_read(&mut cx, &mut buf)
                .map(|res| res.map(|()| buf.filled().to_vec()))
        };
        for i in 0..EAGER_RUN {
            assert!(
                matches!(read_one(), Poll::Ready(Ok(ref b)) if b == &[7]),
                "read {i}"
            );
        }
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0);
        assert!(read_one().is_pending());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert!(matches!(read_one(), Poll::Ready(Ok(ref b)) if b == &[7]));
    }
}
