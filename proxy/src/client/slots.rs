//! The bound on client connections (`max-client-connections`).
//!
//! Without it a flood of clients ran the process out of file descriptors: backend connects
//! then failed for everyone, the write backend was blamed (1429), and the admin console could
//! not be reached to see why. With it the client over the bound gets MariaDB's
//! `1040 Too many connections`, and the descriptors left keep the other sessions' backend
//! connections, the monitor and the console working.
//!
//! A slot is taken at accept, before the login (a handshake holds a descriptor too), and
//! given back when the session's socket closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Descriptors kept aside for listeners, event threads, logs and the monitor when the bound
/// is derived from the open-files limit; smaller limits keep half of themselves aside.
const RESERVED_FDS: u64 = 64;

/// The client connections open and the most allowed.
#[derive(Debug)]
pub struct ClientSlots {
    open: AtomicUsize,
    limit: AtomicUsize,
    /// The most open at once since [`ClientSlots::take_peak`] last asked.
    peak: AtomicUsize,
}

/// One client connection's place under the bound, given back on drop.
#[derive(Debug)]
pub struct Slot(Arc<ClientSlots>);

impl ClientSlots {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ClientSlots {
            open: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            peak: AtomicUsize::new(0),
        })
    }

    /// A place for one more client, or `None` at the bound.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        let limit = self.limit.load(Ordering::Relaxed);
        let before = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.peak.fetch_max(before + 1, Ordering::Relaxed);
        Some(Slot(self.clone()))
    }

    /// The most connections open at once since the last call (or the start). Reading
    /// resets it: one reader only (`client::trim`).
    pub fn take_peak(&self) -> usize {
        self.peak.swap(self.open(), Ordering::Relaxed)
    }

    /// Applies a reloaded bound. Clients over a lowered bound stay; new ones are refused
    /// until enough have left.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// The bound as logs show it: a number, or `unbounded` (`max-client-connections = 0`).
    pub fn describe(&self) -> String {
        match self.limit() {
            usize::MAX => "unbounded".into(),
            n => n.to_string(),
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The bound `max-client-connections` gives: `configured` (`usize::MAX` for no bound), or
/// when unset, derived from the process's open-files limit `nofile`: each client may need a
/// backend connection too, so half of what is left after the reserve. A configured bound
/// above that is kept, with a warning: past it, clients use up the descriptors that backend
/// connects and the console need, for everyone.
pub fn client_limit(configured: Option<usize>, nofile: u64) -> usize {
    let reserve = RESERVED_FDS.min(nofile / 2);
    let served = usize::try_from((nofile - reserve) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    match configured {
        Some(n) if n != usize::MAX && n > served => {
            tracing::warn!(
                "max-client-connections = {n} is more than the open-files limit ({nofile}) can serve: {served} clients, two descriptors each with {reserve} kept back; raise max-open-files (or the service's LimitNOFILE), or lower max-client-connections"
            );
            n
        }
        Some(n) => n,
        None => served,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_limit_and_come_back_on_drop() {
        let slots = ClientSlots::new(2);
        let a = slots.take().expect("first");
        let _b = slots.take().expect("second");
        assert!(slots.take().is_none());
        drop(a);
        let _c = slots.take().expect("room again");
        assert_eq!(slots.open(), 2);
        assert_eq!(slots.take_peak(), 2);
        slots.set_limit(1);
        assert!(slots.take().is_none(), "over a lowered limit");
        slots.set_limit(3);
        assert!(slots.take().is_some());
        assert_eq!(slots.describe(), "3");
        slots.set_limit(usize::MAX);
        assert_eq!(slots.describe(), "unbounded");
    }

    #[test]
    fn the_default_limit_leaves_a_descriptor_per_client_for_its_backend() {
        assert_eq!(client_limit(Some(7), 1024), 7);
        assert_eq!(client_limit(None, 1024), 480);
        assert_eq!(client_limit(None, 64), 16);
        assert_eq!(client_limit(None, 1), 1);
        assert_eq!(client_limit(None, 1 << 20), 524_256);
    }
}
