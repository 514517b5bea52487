//! The sans-I/O core: pure functions of (input, state, `now`). It names no runtime.

pub mod alg;
pub mod config;
pub mod crypto;
pub mod error;
pub mod json;
pub mod jwk;
pub mod route;
pub mod token;
pub mod verify;
pub mod jwks_cache;
pub mod log;
pub mod request;
pub mod gate;
pub mod cookie;
pub mod token_cache;
pub mod ratelimit;
pub mod revocation;
pub mod apikey;
pub mod identity;
pub mod canonical;
mod lookalike;
