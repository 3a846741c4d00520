//! The live set of backends and users the proxy serves, shared by every session and changed
//! at run time by the admin console and the health prober.

use crate::backend::{Backend, Health};
use crate::config::{Config, Role};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct Cluster {
    backends: RwLock<Arc<Vec<Arc<Backend>>>>,
    users: RwLock<Arc<HashMap<String, String>>>,
    pub connect_timeout: Duration,
}

impl Cluster {
    pub fn new(cfg: &Config) -> Arc<Self> {
        let backends = cfg
            .backends
            .iter()
            .map(|b| Arc::new(Backend::new(b, cfg.connect_timeout)))
            .collect();
        let users = cfg
            .users
            .iter()
            .map(|u| (u.name.clone(), u.password.clone()))
            .collect();
        Arc::new(Cluster {
            backends: RwLock::new(Arc::new(backends)),
            users: RwLock::new(Arc::new(users)),
            connect_timeout: cfg.connect_timeout,
        })
    }

    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends.read().expect("backends lock").clone()
    }

    pub fn password_of(&self, user: &str) -> Option<String> {
        self.users.read().expect("users lock").get(user).cloned()
    }

    /// The backend writes go to: the first read-write backend an operator has not taken
    /// offline. A `Down` one is still returned so the client's error names it.
    pub fn write_backend(&self) -> Option<Arc<Backend>> {
        let all = self.backends();
        let mut rw = all.iter().filter(|b| b.role == Role::ReadWrite);
        let first_not_offline = rw.clone().find(|b| b.health() != Health::Offline);
        rw.find(|b| b.is_up()).or(first_not_offline).cloned()
    }

    /// A healthy read-only backend picked at random in proportion to its weight, skipping
    /// `exclude` (backends that already failed this statement). `None`: reads go to the
    /// write backend.
    pub fn read_backend(&self, exclude: &[Arc<Backend>]) -> Option<Arc<Backend>> {
        let all = self.backends();
        let candidates = || {
            all.iter().filter(|b| {
                b.role == Role::ReadOnly && b.is_up() && !exclude.iter().any(|e| Arc::ptr_eq(e, b))
            })
        };
        let total: u64 = candidates()
            .map(|b| u64::from(b.weight.load(std::sync::atomic::Ordering::Relaxed)))
            .sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rand::random_range(0..total);
        for b in candidates() {
            let w = u64::from(b.weight.load(std::sync::atomic::Ordering::Relaxed));
            if ticket < w {
                return Some(b.clone());
            }
            ticket -= w;
        }
        None
    }

    /// Background upkeep: brings `Down` backends back once they accept connections again and
    /// closes long-idle pooled connections.
    pub fn spawn_maintenance(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(cluster) = me.upgrade() else { return };
                for b in cluster.backends().iter() {
                    b.pool.reap();
                    if b.health() == Health::Down {
                        let probe = tokio::time::timeout(
                            cluster.connect_timeout,
                            tokio::net::TcpStream::connect(&b.address),
                        )
                        .await;
                        if matches!(probe, Ok(Ok(_))) {
                            b.mark_up();
                        }
                    }
                }
            }
        });
    }
}
