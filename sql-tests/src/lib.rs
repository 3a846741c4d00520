//! End-to-end test support for rwproxy: real MariaDB clusters to run the proxy against.

pub mod cli;
pub mod conformance;
pub mod diff;
pub mod netns;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod relay;
pub mod sandbox;
pub mod sysbench;

pub use sandbox::{Cluster, Options, Server, APP_PASSWORD, APP_USER, DATABASE};
