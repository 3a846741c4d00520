//! rwproxy's high availability: VRRP speaker (keepalived-compatible), virtual IPs, notify hooks,
//! and the database-side operations (health probes, promotion) they drive.

pub mod db;
pub mod vrrp;
