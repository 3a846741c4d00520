//! rwproxy's high availability: VRRP speaker (keepalived-compatible), virtual IPs, notify hooks.

pub mod vrrp;
