//! Backends: the servers behind the proxy, their health, and their connection pools.

pub mod conn;
pub mod pool;
pub mod relay;

use crate::config::{BackendConfig, Role};
use conn::Dial;
use pool::Pool;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// Whether a backend gets new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Serving, or never tried yet.
    Up = 0,
    /// The last connection attempt failed; a prober brings it back.
    Down = 1,
    /// Taken out by an operator; only an operator brings it back.
    Offline = 2,
}

pub struct Backend {
    pub address: String,
    pub role: Role,
    pub weight: AtomicU32,
    max_connections: u32,
    health: AtomicU8,
    pub pool: Pool,
    pub queries: AtomicU64,
    pub errors: AtomicU64,
    /// Sum of statement latencies (send to last reply packet), for the average in `stats`.
    pub latency_us: AtomicU64,
    /// When an operator took it offline: sessions still pinned to it get until then plus the
    /// drain timeout.
    offline_since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Backend {
    pub fn new(cfg: &BackendConfig, dial: &Dial) -> Self {
        Backend {
            address: cfg.address.clone(),
            role: cfg.role,
            weight: AtomicU32::new(cfg.weight.max(1)),
            max_connections: cfg.max_connections,
            health: AtomicU8::new(Health::Up as u8),
            pool: Pool::new(cfg.max_connections, dial.clone()),
            queries: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            offline_since: std::sync::Mutex::new(None),
        }
    }

    /// The backend as a config entry, for `SAVE CONFIG`.
    pub fn config(&self) -> BackendConfig {
        BackendConfig {
            address: self.address.clone(),
            role: self.role,
            weight: self.weight.load(Ordering::Relaxed),
            max_connections: self.max_connections,
        }
    }

    /// An operator's `SET OFFLINE` / `REMOVE BACKEND`: no new work; idle connections closed.
    pub fn set_offline(&self) {
        self.offline_since
            .lock()
            .expect("offline lock")
            .get_or_insert_with(std::time::Instant::now);
        self.health.store(Health::Offline as u8, Ordering::Relaxed);
        self.pool.clear_idle();
        tracing::info!(backend = %self.address, "backend set offline");
    }

    /// An operator's `SET ONLINE`: back in service; a failed connection marks it down again.
    pub fn set_online(&self) {
        *self.offline_since.lock().expect("offline lock") = None;
        self.health.store(Health::Up as u8, Ordering::Relaxed);
        tracing::info!(backend = %self.address, "backend set online");
    }

    /// Offline for longer than `drain`: sessions still on it must let go.
    pub fn drained(&self, drain: Duration) -> bool {
        self.health() == Health::Offline
            && self
                .offline_since
                .lock()
                .expect("offline lock")
                .is_some_and(|t| t.elapsed() > drain)
    }

    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            0 => Health::Up,
            1 => Health::Down,
            _ => Health::Offline,
        }
    }

    pub fn is_up(&self) -> bool {
        self.health() == Health::Up
    }

    /// Records a failed connection attempt; an operator's `Offline` is never overridden.
    pub fn mark_down(&self, why: &dyn std::fmt::Display) {
        if self
            .health
            .compare_exchange(
                Health::Up as u8,
                Health::Down as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            tracing::warn!(backend = %self.address, "backend down: {why}");
            self.pool.clear_idle();
        }
    }

    pub fn mark_up(&self) {
        if self
            .health
            .compare_exchange(
                Health::Down as u8,
                Health::Up as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            tracing::info!(backend = %self.address, "backend up again");
        }
    }
}
