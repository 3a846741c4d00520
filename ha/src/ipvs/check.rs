//! Health of real servers and what it means for the kernel table: keepalived's
//! `virtual_server` semantics (weight, `inhibit_on_failure`, `quorum`, `sorry_server`) with the
//! classic `check_slave.sh` built in and keepalived's `MISC_CHECK` hook.

use std::net::SocketAddr;
use std::time::Duration;

use super::dest::{Dest, Forward};
use super::reconcile::DesiredService;
use super::service::Service;
use crate::db::{DbError, ReplicaHealth, ServerStatus};

/// How a real server is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `check_slave.sh`: connect, `SHOW SLAVE STATUS`, IO and SQL threads running, lag at most
    /// `max_lag`. A server that is not a replica counts as down: the read VIP is for replicas.
    Replication {
        user: String,
        password: String,
        max_lag: Duration,
        timeout: Duration,
    },
    /// keepalived's `MISC_CHECK`: a command (split into words like keepalived, no shell) whose
    /// exit code decides; with `dynamic` (`misc_dynamic`) codes 2–255 set the weight to code − 2.
    /// One script serves every real server of the virtual server, so it gets the server's
    /// address and port appended as two arguments (keepalived users write them into
    /// `misc_path` by hand, once per real server).
    Misc {
        script: String,
        timeout: Duration,
        dynamic: bool,
    },
    /// Always in, with its configured weight.
    None,
}

/// One check's verdict on one real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub up: bool,
    /// A weight the check asked for (`misc_dynamic`), replacing the configured one.
    pub weight: Option<u32>,
    /// Why, for logs and `rwproxy ipvs list`.
    pub reason: String,
}

impl Health {
    pub fn up(reason: impl Into<String>) -> Health {
        Health {
            up: true,
            weight: None,
            reason: reason.into(),
        }
    }

    pub fn down(reason: impl Into<String>) -> Health {
        Health {
            up: false,
            weight: None,
            reason: reason.into(),
        }
    }
}

/// The `check_slave.sh` verdict on one probe.
///
/// `primary_gone`: the replica was up, and its primary does not answer now. Its IO thread then
/// only retries (`Connecting`) while it holds everything the primary sent, as every replica
/// does at once: taking them all out would send the read VIP's clients nowhere, or to the
/// dead primary as sorry server. The proxy's monitor keeps such replicas serving too.
pub fn replication_verdict(
    probe: &Result<ServerStatus, DbError>,
    max_lag: Duration,
    primary_gone: bool,
) -> Health {
    match probe {
        Err(e) => Health::down(e.to_string()),
        Ok(s) => match &s.replica {
            None => Health::down("not a replica (no SHOW SLAVE STATUS row)"),
            Some(r) => {
                let h = r.health(Some(max_lag));
                if matches!(h, ReplicaHealth::IoConnecting(_)) && r.sql_running && primary_gone {
                    Health::up("its primary does not answer: kept, it holds all it was sent")
                } else if h.is_healthy() {
                    Health::up(format!(
                        "replicating, {}s behind",
                        r.seconds_behind.unwrap_or(0)
                    ))
                } else {
                    Health::down(h.to_string())
                }
            }
        },
    }
}

/// keepalived's `misc_dynamic` exit codes: 0 up, 1 down, 2–255 up with weight `code − 2`.
/// Without `dynamic`, any non-zero code is down.
pub fn misc_verdict(code: Option<i32>, dynamic: bool) -> Health {
    match code {
        Some(0) => Health::up("check script exited 0"),
        Some(c @ 2..=255) if dynamic => Health {
            up: true,
            weight: Some(c as u32 - 2),
            reason: format!("check script exited {c}: weight {}", c - 2),
        },
        Some(c) => Health::down(format!("check script exited {c}")),
        None => Health::down("check script killed by a signal"),
    }
}

/// Runs a `MISC_CHECK` command once, with `args` appended.
pub async fn run_misc(script: &str, args: &[String], timeout: Duration, dynamic: bool) -> Health {
    let argv = match crate::vrrp::notify::split_words(script) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => return Health::down("empty check script"),
        Err(e) => return Health::down(format!("check script: {e}")),
    };
    let child = crate::script::command(&argv[0])
        .args(&argv[1..])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match child {
        Ok(mut c) => match tokio::time::timeout(timeout, c.wait()).await {
            Ok(Ok(status)) => misc_verdict(status.code(), dynamic),
            Ok(Err(e)) => Health::down(format!("check script: {e}")),
            Err(_) => {
                crate::script::kill_group(c.id());
                Health::down(format!("check script timed out after {timeout:?}"))
            }
        },
        Err(e) => Health::down(format!("cannot run check script {}: {e}", argv[0])),
    }
}

/// A real server as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// A `virtual_server` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    pub service: Service,
    pub forward: Forward,
    pub real_servers: Vec<RealServer>,
    pub check: Check,
    /// Seconds between checks (keepalived's `delay_loop`).
    pub delay_loop: Duration,
    /// Failing servers stay with weight 0 (existing connections finish) instead of being
    /// removed.
    pub inhibit_on_failure: bool,
    /// Minimum total weight of healthy servers; below it the sorry server joins.
    pub quorum: u32,
    pub sorry_server: Option<SocketAddr>,
}

impl VirtualServer {
    /// What the kernel should hold given each real server's health (same order as
    /// `real_servers`).
    pub fn desired(&self, health: &[Health]) -> DesiredService {
        let mut dests = Vec::new();
        let mut alive_weight = 0u32;
        for (rs, h) in self.real_servers.iter().zip(health) {
            let dest = |weight| Dest {
                forward: self.forward,
                weight,
                ..Dest::new(rs.addr)
            };
            if h.up {
                let w = h.weight.unwrap_or(rs.weight);
                alive_weight = alive_weight.saturating_add(w);
                dests.push(dest(w));
            } else if self.inhibit_on_failure {
                dests.push(dest(0));
            }
        }
        if alive_weight < self.quorum {
            if let Some(sorry) = self.sorry_server {
                if !dests.iter().any(|d| d.socket_addr() == sorry) {
                    dests.push(Dest {
                        forward: self.forward,
                        ..Dest::new(sorry)
                    });
                }
            }
        }
        DesiredService {
            service: self.service.clone(),
            dests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::ServiceKey;

    fn vs(inhibit: bool, quorum: u32) -> VirtualServer {
        VirtualServer {
            service: Service::new(ServiceKey::tcp("192.0.2.200".parse().unwrap(), 3306), "wrr"),
            forward: Forward::Route,
            real_servers: vec![
                RealServer {
                    addr: "192.0.2.21:3306".parse().unwrap(),
                    weight: 3,
                },
                RealServer {
                    addr: "192.0.2.22:3306".parse().unwrap(),
                    weight: 1,
                },
            ],
            check: Check::None,
            delay_loop: Duration::from_secs(1),
            inhibit_on_failure: inhibit,
            quorum,
            sorry_server: Some("192.0.2.10:3306".parse().unwrap()),
        }
    }

    fn weights(d: &DesiredService) -> Vec<(String, u32)> {
        d.dests
            .iter()
            .map(|d| (d.socket_addr().to_string(), d.weight))
            .collect()
    }

    #[test]
    fn failing_servers_drain_or_go() {
        let h = [Health::up("ok"), Health::down("SQL thread stopped")];
        assert_eq!(
            weights(&vs(true, 1).desired(&h)),
            vec![("192.0.2.21:3306".into(), 3), ("192.0.2.22:3306".into(), 0)]
        );
        assert_eq!(
            weights(&vs(false, 1).desired(&h)),
            vec![("192.0.2.21:3306".into(), 3)]
        );
    }

    #[test]
    fn quorum_brings_the_sorry_server() {
        let down = [Health::down("x"), Health::down("y")];
        assert_eq!(
            weights(&vs(false, 1).desired(&down)),
            vec![("192.0.2.10:3306".into(), 1)]
        );
        // Weight 1 alive < quorum 2: sorry server joins the survivor.
        let one = [Health::down("x"), Health::up("ok")];
        assert_eq!(
            weights(&vs(true, 2).desired(&one)),
            vec![
                ("192.0.2.21:3306".into(), 0),
                ("192.0.2.22:3306".into(), 1),
                ("192.0.2.10:3306".into(), 1)
            ]
        );
        let all = [Health::up("a"), Health::up("b")];
        assert_eq!(weights(&vs(true, 2).desired(&all)).len(), 2);
    }

    #[test]
    fn misc_dynamic_exit_codes() {
        assert!(misc_verdict(Some(0), true).up);
        assert!(!misc_verdict(Some(1), true).up);
        assert_eq!(misc_verdict(Some(2), true).weight, Some(0));
        assert_eq!(misc_verdict(Some(7), true).weight, Some(5));
        assert_eq!(misc_verdict(Some(255), true).weight, Some(253));
        assert!(!misc_verdict(Some(7), false).up);
        assert!(!misc_verdict(None, true).up);
        let dynamic = [misc_verdict(Some(12), true), Health::up("ok")];
        assert_eq!(
            weights(&vs(false, 1).desired(&dynamic)),
            vec![
                ("192.0.2.21:3306".into(), 10),
                ("192.0.2.22:3306".into(), 1)
            ]
        );
    }

    #[tokio::test]
    async fn misc_script_runs_without_a_shell() {
        let args = ["192.0.2.21".to_string(), "3306".to_string()];
        let t = Duration::from_secs(10);
        let h = run_misc("/bin/sh -c 'exit $(($1 - 3301))'", &args, t, true).await;
        assert_eq!((h.up, h.weight), (true, Some(3)), "{h:?}");
        assert!(!run_misc("/bin/false", &[], t, true).await.up);
        let slow = run_misc("/bin/sleep 5", &[], Duration::from_millis(100), true).await;
        assert!(!slow.up && slow.reason.contains("timed out"), "{slow:?}");
        assert!(!run_misc("/nonexistent/check", &[], t, true).await.up);
    }
}
