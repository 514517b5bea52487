//! The `RateLimiter` Durable Object: in `exact` mode, the owner of one shard of keys (the client
//! side is the gate's `WorkerIo::ask_limiter`, in `worker::runtime`).

#![allow(missing_docs)] // the durable_object macro generates undocumented glue

use crate::core::ratelimit::{gcra, LocalLimiter, DEFAULT_LOCAL_CAPACITY};
use crate::worker::runtime::js::DoStorage;
use crate::worker::runtime::LimiterAsk as Ask;
use std::cell::RefCell;
use worker::{durable_object, DurableObject, Env, Request, Response, State};
/// The Durable Object owning the TATs of one shard of keys. Each check is a read-modify-write
/// that runs to completion before the next event is delivered (storage awaits hold the input
/// gate), so concurrent requests for one key are counted exactly. Storage holds every TAT; memory
/// holds a [`LocalLimiter`] of `rate_limits.local_capacity` keys per rule in front of it, so an
/// eviction from memory costs a storage read, never a fresh bucket.
#[durable_object]
pub struct RateLimiter {
    storage: Option<DoStorage>,
    tats: RefCell<LocalLimiter>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, env: Env) -> Self {
        let capacity = crate::worker::runtime::isolate(&env).gate.as_ref().map_or(DEFAULT_LOCAL_CAPACITY, |g| g.policy().rate_limits.local_capacity);
        RateLimiter { storage: DoStorage::of(state), tats: RefCell::new(LocalLimiter::new(capacity)) }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Some(ask) = req.text().await.ok().and_then(|t| crate::core::json::from_text::<Ask>(&t).ok()) else {
            return Response::error("bad request", 400);
        };
        let Some(storage) = &self.storage else { return Response::error("no storage", 500) };
        let now = worker::Date::now().as_millis() as i64;
        let known = self.tats.borrow_mut().tat(&ask.key);
        let tat = match known {
            Some(t) => Some(t),
            None => storage.number(&ask.key).await.ok().flatten().map(|t| t as i64),
        };
        let d = gcra(tat, now, &ask.quota);
        // Kept in memory whether allowed or not (when denied, the TAT read from storage), so the
        // next ask for this key needs no storage read.
        self.tats.borrow_mut().record(&ask.key, d.tat_ms, now);
        if d.allowed {
            // Persisted so an evicted object does not hand out a fresh burst.
            let _ = storage.put_number(&ask.key, d.tat_ms as f64).await;
        }
        let body = serde_json::to_string(&d)?;
        let mut r = Response::ok(body)?;
        let _ = r.headers_mut().set("content-type", "application/json");
        Ok(r)
    }
}
