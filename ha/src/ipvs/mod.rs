//! IPVS, the kernel's L4 load balancer, programmed over generic netlink: a read VIP fanned out
//! across healthy replicas (what keepalived's `virtual_server` blocks and `ipvsadm` scripts did
//! in the classic recipe).
//!
//! Layers: [`genl`] encodes requests and decodes replies, [`Ipvs`] sends them, [`reconcile`]
//! turns a desired state into requests, [`check`] decides what the desired state is from real
//! servers' health, [`director`] runs all that inside `rwproxy serve`, [`table`] prints the
//! table like `ipvsadm -Ln`.

pub mod check;
mod client;
mod dest;
pub mod director;
pub mod genl;
pub mod reconcile;
mod service;
pub mod table;

pub use client::{map_errno, Ipvs, IpvsError};
pub use dest::{Dest, DestEntry, Forward, Info, ServiceEntry, Stats};
pub use genl::Request;
pub use reconcile::{DesiredService, Reconciler};
pub use service::{Family, Protocol, Service, ServiceFlags, ServiceKey};
