//! End-to-end test support for rwproxy: real MariaDB clusters to run the proxy against.

pub mod proxy;
pub mod sandbox;

pub use sandbox::{Cluster, Options, Server, APP_PASSWORD, APP_USER, DATABASE};
