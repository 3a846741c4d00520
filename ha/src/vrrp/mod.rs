//! VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798) for IPv4, interoperable with keepalived.

pub mod garp;
pub mod instance;
pub mod netlink;
pub mod notify;
pub mod packet;
pub mod state;
pub mod track;

pub use instance::{run, Control, Instance, InvalidSetting, Running, Status, VrrpError};
pub use netlink::Vip;
pub use notify::NotifyConfig;
pub use packet::Version;
pub use state::State;
pub use track::TrackScript;
