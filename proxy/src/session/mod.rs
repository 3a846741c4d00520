//! Session state the proxy tracks on the client's behalf.

pub mod names;
pub mod read_your_writes;
pub mod set_stmt;
pub mod state;
