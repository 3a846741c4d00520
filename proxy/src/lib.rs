//! rwproxy: a MySQL/MariaDB read/write-splitting proxy.
//!
//! Data flows `server` (listener) → `client` (one task per connection: session, routing via
//! `router`, prepared statements) → `backend` (pools, connections, raw relay of replies), all
//! speaking through `protocol`. `cluster` is the live backend/user set the admin console
//! (`console`, Atlas's command language from the `rwproxy-admin` crate) changes; `config`
//! reads and saves the files.

pub mod backend;
pub mod client;
pub mod cluster;
pub mod config;
pub mod console;
pub mod event_threads;
pub mod log_file;
pub mod monitor;
pub mod process;
pub mod protocol;
pub mod router;
pub mod server;
pub mod session;
pub mod stats;
pub mod timer;
pub mod tls;
