//! Statistics gathered while serving, for the admin console.

pub mod digest;
