pub mod config;
pub mod router;
