//! Timers that work on every thread of the proxy, event threads included.
//!
//! Event threads (`event_threads`) run without tokio's time driver. With one, each park of
//! the thread locks the driver's timer wheel and reads the clock, timers armed or not:
//! ~240 instructions per proxied statement in the plain `dist` build (callgrind; the PGO
//! build had already moved most of it out of the way), and a session arms none in steady
//! state. The few timers their sessions do arm (connect and login timeouts, pool waits, the
//! wait for a writable primary, the hold of a statement's diagnostics) register with the
//! main runtime's driver instead, whose thread wakes the session's task when one fires.
//!
//! tokio's own constructors would panic on an event thread ("timers are disabled"), so the
//! crate's clippy.toml forbids them outside this module. Elsewhere these are tokio's.

#![allow(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::future::IntoFuture;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::time::{Instant, Interval, Sleep, Timeout};

thread_local! {
    /// On an event thread: the runtime whose time driver serves its timers.
    static DRIVER: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Makes `runtime` serve the timers of the calling thread, an event thread.
pub(crate) fn serve_this_thread_from(runtime: Handle) {
    DRIVER.set(Some(runtime));
}

/// Runs `make` (which creates a timer: tokio binds it to the current runtime's driver
/// then) in the context of the thread's timer runtime, if it has one.
fn bound<T>(make: impl FnOnce() -> T) -> T {
    DRIVER.with_borrow(|driver| match driver {
        Some(runtime) => {
            let _enter = runtime.enter();
            make()
        }
        None => make(),
    })
}

/// [`tokio::time::timeout`].
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    bound(|| tokio::time::timeout(duration, future))
}

/// [`tokio::time::sleep`].
pub fn sleep(duration: Duration) -> Sleep {
    bound(|| tokio::time::sleep(duration))
}

/// [`tokio::time::sleep_until`].
pub fn sleep_until(deadline: Instant) -> Sleep {
    bound(|| tokio::time::sleep_until(deadline))
}

/// [`tokio::time::interval`].
pub fn interval(period: Duration) -> Interval {
    bound(|| tokio::time::interval(period))
}
