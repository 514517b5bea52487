//! The control plane (feature `control`): the admin API under `admin.path_prefix` and the
//! Durable Objects, `RevocationLedger`, `RateLimiter`, `KeyWriter` (one per API key id: the
//! single writer of its record), `ReplayGuard` (`dpop.replay: "exact"`) and `AuditTrail` (the
//! hash-chained record of admin calls). None of this code is in the gate's
//! bundle: the gate Worker (feature `worker` alone) reaches it through bindings, the Durable
//! Objects by `script_name` (the rate limiter in `exact` mode, the ledger on `sensitive` routes:
//! their clients are the gate's), the admin API through the `EDGEWARD_CONTROL` service binding.
//! The messages between the two Workers (`limiter::Ask`, `Decision`, the ledger's commands) are a
//! contract between separately deployed Workers: change them only backward-compatibly. A build
//! with `control` is also a complete single Worker (gate included).

pub mod admin;
mod answer;
mod audit;
pub(crate) mod blocks;
mod keys;
mod keywriter;
mod ledger;
mod limiter;
mod replay;
pub(crate) mod usage;

pub use audit::AuditTrail;
pub use keywriter::KeyWriter;
pub use ledger::RevocationLedger;
pub use limiter::RateLimiter;
pub use replay::ReplayGuard;
pub use usage::UsageStore;
