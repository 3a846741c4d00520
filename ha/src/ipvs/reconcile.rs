//! Desired state versus the kernel table: the smallest list of requests that makes the services
//! rwproxy owns look exactly as configured, without touching anybody else's.

use std::collections::BTreeSet;

use super::client::{Ipvs, IpvsError};
use super::dest::{Dest, ServiceEntry};
use super::genl::Request;
use super::service::{Service, ServiceKey};

/// One virtual service as it should be in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    pub service: Service,
    pub dests: Vec<Dest>,
}

fn same_dest(a: &Dest, b: &Dest) -> bool {
    a.forward == b.forward
        && a.weight == b.weight
        && a.upper_threshold == b.upper_threshold
        && a.lower_threshold == b.lower_threshold
}

/// What to send so that the kernel holds `desired`, and no service in `owned` that is not
/// desired. Services neither desired nor owned (somebody else's) are left alone; a desired
/// service that already exists is taken over as it is, then corrected.
pub fn plan(
    current: &[ServiceEntry],
    desired: &[DesiredService],
    owned: &BTreeSet<ServiceKey>,
) -> Vec<Request> {
    let mut services = Vec::new();
    let mut del_dests = Vec::new();
    let mut set_dests = Vec::new();
    let mut add_dests = Vec::new();
    for want in desired {
        let key = want.service.key;
        let have = current.iter().find(|e| e.service.key == key);
        match have {
            None => services.push(Request::NewService(want.service.clone())),
            Some(h) if !h.service.same_settings(&want.service) => {
                services.push(Request::SetService(want.service.clone()))
            }
            Some(_) => {}
        }
        let have_dests = have.map(|h| h.dests.as_slice()).unwrap_or_default();
        for d in &want.dests {
            match have_dests
                .iter()
                .find(|h| h.dest.socket_addr() == d.socket_addr())
            {
                None => add_dests.push(Request::NewDest(key, d.clone())),
                Some(h) if !same_dest(&h.dest, d) => {
                    set_dests.push(Request::SetDest(key, d.clone()))
                }
                Some(_) => {}
            }
        }
        for h in have_dests {
            let addr = h.dest.socket_addr();
            if !want.dests.iter().any(|d| d.socket_addr() == addr) {
                del_dests.push(Request::DelDest(key, addr));
            }
        }
    }
    let mut del_services = Vec::new();
    for e in current {
        let key = e.service.key;
        if owned.contains(&key) && !desired.iter().any(|d| d.service.key == key) {
            del_services.push(Request::DelService(key));
        }
    }
    // Removals of real servers before additions, so a quorum's sorry server and the servers
    // replacing it never both take new connections longer than needed.
    services
        .into_iter()
        .chain(del_dests)
        .chain(set_dests)
        .chain(add_dests)
        .chain(del_services)
        .collect()
}

/// Keeps the kernel in line with the desired state and remembers which services it owns
/// (configured now, or created earlier by this process).
#[derive(Debug, Default)]
pub struct Reconciler {
    owned: BTreeSet<ServiceKey>,
}

impl Reconciler {
    pub fn new() -> Reconciler {
        Reconciler::default()
    }

    pub fn owned(&self) -> &BTreeSet<ServiceKey> {
        &self.owned
    }

    /// One pass: read the table, send the plan. Every request is tried even when one fails;
    /// the returned list holds what was applied, the error the first failure (the next pass
    /// retries whatever is still different).
    pub fn reconcile(
        &mut self,
        ipvs: &Ipvs,
        desired: &[DesiredService],
    ) -> Result<Vec<Request>, IpvsError> {
        self.owned.extend(desired.iter().map(|d| d.service.key));
        let current = ipvs.services()?;
        let mut applied = Vec::new();
        let mut first_error = None;
        for req in plan(&current, desired, &self.owned) {
            match ipvs.request(&req) {
                Ok(_) => {
                    if let Request::DelService(k) = &req {
                        self.owned.remove(k);
                    }
                    applied.push(req);
                }
                Err(e) => {
                    tracing::warn!("IPVS: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(applied),
        }
    }

    /// Removes every owned service (shutdown, or the VRRP instance left MASTER).
    pub fn release(&mut self, ipvs: &Ipvs) -> Result<(), IpvsError> {
        self.reconcile(ipvs, &[]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::{DestEntry, Stats};

    fn entry(svc: Service, dests: &[Dest]) -> ServiceEntry {
        ServiceEntry {
            service: svc,
            stats: Stats::default(),
            dests: dests
                .iter()
                .map(|d| DestEntry {
                    dest: d.clone(),
                    active_conns: 0,
                    inact_conns: 0,
                    persist_conns: 0,
                    stats: Stats::default(),
                })
                .collect(),
        }
    }

    fn dest(s: &str, w: u32) -> Dest {
        Dest {
            weight: w,
            ..Dest::new(s.parse().unwrap())
        }
    }

    #[test]
    fn plan_fixes_owned_and_leaves_foreign_alone() {
        let ours = ServiceKey::tcp("192.0.2.200".parse().unwrap(), 3306);
        let stale = ServiceKey::tcp("192.0.2.201".parse().unwrap(), 3306);
        let foreign = ServiceKey::tcp("192.0.2.202".parse().unwrap(), 80);
        let current = vec![
            entry(
                Service::new(ours, "rr"),
                &[dest("192.0.2.21:3306", 1), dest("192.0.2.29:3306", 1)],
            ),
            entry(Service::new(stale, "rr"), &[]),
            entry(Service::new(foreign, "wlc"), &[dest("192.0.2.9:80", 1)]),
        ];
        let want = DesiredService {
            service: Service::new(ours, "wrr"),
            dests: vec![dest("192.0.2.21:3306", 3), dest("192.0.2.22:3306", 1)],
        };
        let owned = [ours, stale].into_iter().collect();
        let p = plan(&current, std::slice::from_ref(&want), &owned);
        assert_eq!(
            p,
            vec![
                Request::SetService(want.service.clone()),
                Request::DelDest(ours, "192.0.2.29:3306".parse().unwrap()),
                Request::SetDest(ours, dest("192.0.2.21:3306", 3)),
                Request::NewDest(ours, dest("192.0.2.22:3306", 1)),
                Request::DelService(stale),
            ]
        );
        // Applied, nothing is left to do.
        let done = vec![
            entry(want.service.clone(), &want.dests),
            entry(Service::new(foreign, "wlc"), &[dest("192.0.2.9:80", 1)]),
        ];
        assert!(plan(&done, &[want], &owned).is_empty());
    }

    #[test]
    fn kernel_flags_do_not_count_as_a_difference() {
        let key = ServiceKey::tcp("192.0.2.200".parse().unwrap(), 3306);
        let want = Service::new(key, "rr").with_persistence(300, 24);
        let mut have = want.clone();
        have.flags.0 |= crate::ipvs::ServiceFlags::HASHED;
        let d = DesiredService {
            service: want,
            dests: vec![],
        };
        assert!(plan(&[entry(have, &[])], &[d], &BTreeSet::new()).is_empty());
    }
}
