//! The MySQL wire protocol as the proxy needs it: framing, the handful of messages it reads
//! or writes itself, and the server side of the connection phase.

pub mod command;
pub mod handshake;
pub mod message;
pub mod packet;
pub mod resultset;
pub mod session_track;
pub mod stream;
