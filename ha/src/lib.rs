//! rwproxy's high availability: VRRP speaker (keepalived-compatible), virtual IPs, notify hooks,
//! IPVS for the read VIP, and the database-side operations (health probes, promotion) they
//! drive.

pub mod db;
pub mod failover;
pub mod ipvs;
pub mod script;
pub mod vrrp;
