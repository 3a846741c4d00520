//! VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798) for IPv4, interoperable with keepalived.

pub mod garp;
pub mod netlink;
pub mod notify;
pub mod packet;
pub mod state;
