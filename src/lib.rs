//! Edgeward
#![forbid(unsafe_code)]
pub mod core;
#[cfg(feature = "worker")]
pub mod worker;
