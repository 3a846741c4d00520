//! rwproxy's high availability: VRRP speaker (keepalived-compatible), virtual IPs, notify hooks,
//! and IPVS for the read VIP.

pub mod ipvs;
pub mod vrrp;
