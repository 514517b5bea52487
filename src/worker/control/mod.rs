//! The control plane (feature `control`): the admin API under `admin.path_prefix` and the two
//! Durable Objects, `RevocationLedger` and `RateLimiter`. None of it runs on the gate's request
//! path, so the gate Worker (feature `worker` alone) is built without it and reaches it through
//! bindings: the Durable Objects by `script_name`, the admin API through the `EDGEWARD_CONTROL`
//! service binding. A build with `control` is also a complete single Worker (gate included).

pub mod admin;
mod keys;
mod ledger;
mod limiter;

pub use ledger::RevocationLedger;
pub use limiter::RateLimiter;
