//! Event threads (`event-threads`): the threads client sessions run on.
//!
//! Each event thread drives a current-thread tokio runtime of its own. The listener hands every
//! accepted client to the thread running the fewest sessions, and the session stays there for
//! life: its client socket and the backend connections it takes from the pool (see
//! `backend::pool`, which keeps idle connections per thread, and lends one across threads
//! only when the pool is full) are all served by that thread's epoll; its rare timers, by the main runtime (see `timer`). A statement's four socket
//! operations then never wait for a wake-up from another thread, which on a work-stealing
//! runtime costs a futex wake and often a context switch per hop — the same model as Atlas's
//! event threads and HAProxy's threads.
//!
//! The rest of the proxy (listener, admin console, monitor, HA) runs on the main runtime.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The event thread the caller runs on, if it is one.
pub fn current() -> Option<usize> {
    INDEX.get()
}

/// The running event threads. Dropping this ends them, and with them every session they run:
/// keep it alive until sessions have finished.
pub struct EventThreads {
    threads: Vec<Thread>,
}

struct Thread {
    /// Sessions are spawned straight onto the thread's runtime: the task holds the session's
    /// future itself, not a box of it, which saves a pointer chase and a future level (two
    /// cache lines) each time the session wakes.
    runtime: tokio::runtime::Handle,
    sessions: Arc<AtomicUsize>,
    /// Cleared when the thread ends (see `Alive`).
    alive: Arc<AtomicBool>,
    /// Dropped with the thread handle: the runtime then stops, dropping its sessions.
    _stop: oneshot::Sender<()>,
}

/// Clears its thread's `alive` flag when dropped, also by a panic unwinding the thread:
/// `spawn` then passes the thread over. (Its session count, back at zero as the runtime
/// drops its sessions, would otherwise win every choice, and a spawn onto a stopped runtime
/// drops the session without a word.)
struct Alive(Arc<AtomicBool>, usize);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
        if std::thread::panicking() {
            tracing::error!(
                "event thread {} stopped by a panic; its sessions ended",
                self.1
            );
        }
    }
}

/// Counts a session against its thread for as long as it runs.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventThreads {
    /// Starts `n` event threads (at least one), whose timers `timers` serves (see `timer`):
    /// a runtime that keeps running while they do.
    pub fn start(n: usize, timers: &tokio::runtime::Handle) -> std::io::Result<Self> {
        let mut threads = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            // Only I/O. tokio still adds its signal and process drivers to every runtime with
            // I/O (the workspace needs those features for HA hooks); they cost ~50
            // instructions each time the thread parks (callgrind).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            let handle = runtime.handle().clone();
            let alive = Arc::new(AtomicBool::new(true));
            let flag = alive.clone();
            let timers = timers.clone();
            std::thread::Builder::new()
                .name(format!("rwproxy-event-{i}"))
                .spawn(move || {
                    let _alive = Alive(flag, i);
                    INDEX.set(Some(i));
                    crate::timer::serve_this_thread_from(timers);
                    // Drives the sessions spawned onto it until told to stop.
                    let _ = runtime.block_on(stopped);
                })?;
            threads.push(Thread {
                runtime: handle,
                sessions: Arc::default(),
                alive,
                _stop: stop,
            });
        }
        Ok(EventThreads { threads })
    }

    /// Runs the future `session` makes on the event thread with the fewest sessions. The
    /// future is made and first polled there, so sockets it creates or adopts
    /// (`TcpStream::from_std`) register with that thread's reactor.
    pub fn spawn<F>(&self, session: impl FnOnce() -> F + Send + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(thread) = self
            .threads
            .iter()
            .filter(|t| t.alive.load(Ordering::Relaxed))
            .min_by_key(|t| t.sessions.load(Ordering::Relaxed))
        else {
            tracing::error!("no event thread left running; client dropped");
            return;
        };
        thread.sessions.fetch_add(1, Ordering::Relaxed);
        let running = Running(thread.sessions.clone());
        thread.runtime.spawn(async move {
            let _running = running;
            session().await;
        });
    }

    /// Sessions running on each thread.
    #[cfg(test)]
    fn sessions(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|t| t.sessions.load(Ordering::Relaxed))
            .collect()
    }
}

/// One `T` per event thread plus one shared by every other thread: statistics the hot path
/// updates without bouncing a cache line between cores (two threads adding to one atomic
/// trade the line on every statement). Readers add the parts up.
pub struct PerThread<T> {
    slots: Box<[Padded<T>]>,
}

/// A slot on cache lines of its own: 128 bytes, as adjacent lines are fetched in pairs.
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T: Default> PerThread<T> {
    pub fn new(event_threads: usize) -> Self {
        PerThread {
            slots: (0..=event_threads).map(|_| Padded::default()).collect(),
        }
    }
}

/// The calling thread's part of every [`PerThread`] (see [`PerThread::at`]).
pub fn slot() -> usize {
    current().map_or(0, |i| i + 1)
}

impl<T> PerThread<T> {
    /// The calling thread's part.
    pub fn local(&self) -> &T {
        self.at(slot())
    }

    /// The part of the thread whose [`slot`] this is.
    pub fn at(&self, slot: usize) -> &T {
        &self.slots.get(slot).unwrap_or(&self.slots[0]).0
    }

    /// Every part.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|p| &p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A runtime of its own to serve the event threads' timers, running until dropped.
    fn timer_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn timers_fire_on_event_threads() {
        let timers = timer_runtime();
        let threads = EventThreads::start(1, timers.handle()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        threads.spawn(move || async move {
            crate::timer::sleep(Duration::from_millis(5)).await;
            let waited =
                crate::timer::timeout(Duration::from_millis(5), std::future::pending::<()>()).await;
            tx.send((current(), waited.is_err())).unwrap();
        });
        let fired = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(fired, Ok((Some(0), true)));
    }

    #[test]
    fn sessions_go_to_the_least_busy_thread_and_run_there() {
        let timers = timer_runtime();
        let threads = EventThreads::start(2, timers.handle()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (hold, release) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let tx = tx.clone();
            let mut release = release.clone();
            threads.spawn(move || async move {
                tx.send(current()).unwrap();
                let _ = release.wait_for(|r| *r).await;
            });
        }
        let mut seen: Vec<_> = (0..4).map(|_| rx.recv().unwrap()).collect();
        seen.sort();
        assert_eq!(seen, vec![Some(0), Some(0), Some(1), Some(1)]);
        assert_eq!(threads.sessions(), vec![2, 2]);
        hold.send(true).unwrap();
        for _ in 0..200 {
            if threads.sessions() == vec![0, 0] {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(threads.sessions(), vec![0, 0]);
        assert_eq!(current(), None);
    }

    #[test]
    fn each_thread_counts_in_its_own_part() {
        use std::sync::atomic::AtomicU64;
        let parts = Arc::new(PerThread::<AtomicU64>::new(2));
        let timers = timer_runtime();
        let threads = EventThreads::start(2, timers.handle()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Both sessions run until both have counted: one that ended first would leave its
        // thread the least busy again, and the second would go there too.
        let (hold, release) = tokio::sync::watch::channel(false);
        for _ in 0..2 {
            let (parts, tx, mut release) = (parts.clone(), tx.clone(), release.clone());
            threads.spawn(move || async move {
                parts.local().fetch_add(1, Ordering::Relaxed);
                tx.send(()).unwrap();
                let _ = release.wait_for(|r| *r).await;
            });
        }
        rx.recv().unwrap();
        rx.recv().unwrap();
        hold.send(true).unwrap();
        parts.local().fetch_add(5, Ordering::Relaxed);
        let seen: Vec<u64> = parts.iter().map(|p| p.load(Ordering::Relaxed)).collect();
        assert_eq!(seen, vec![5, 1, 1]);
    }
}
