//! Session state the proxy tracks on the client's behalf.

pub mod set_stmt;
pub mod state;
