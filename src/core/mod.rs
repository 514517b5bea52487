//! The sans-I/O core: pure functions of (input, state, `now`). It names no runtime.

pub mod access;
pub mod alg;
pub mod apikey;
pub mod canonical;
pub mod claims;
pub mod config;
pub mod cookie;
pub mod cors;
pub mod crypto;
pub mod error;
pub mod identity;
pub mod io;
pub mod json;
pub mod jwk;
pub mod jwks_cache;
pub mod log;
mod lookalike;
pub mod pipeline;
pub mod ratelimit;
pub mod request;
pub mod revocation;
pub mod route;
mod scope;
pub mod state;
pub mod token;
pub mod token_cache;
pub mod verify;
