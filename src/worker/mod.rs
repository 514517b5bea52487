//! The Cloudflare Worker adapters: `runtime` (what both Workers share: the executor, the JS APIs,
//! WebCrypto, the isolate's state and the pipeline's I/O), `gate` (the request path: read,
//! decide in the core, answer) and `control` (feature `control`: the admin API and the Durable
//! Objects). All policy lives in [`crate::core`].

#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "control")]
pub mod control;
mod gate;
pub mod runtime;
mod socket;

#[cfg(feature = "control")]
pub use control::{AuditTrail, KeyWriter, RateLimiter, ReplayGuard, RevocationLedger, UsageStore};
pub use gate::CONTROL_BINDING;
pub use runtime::{CONFIG_VAR, KV_BINDING};

use worker::{console_error, Context, Env, Request};

/// The Worker's `fetch` export (what `#[event(fetch)]` would generate), with the request's
/// future driven by the runtime's executor, which resumes it as soon as an awaited promise settles.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = fetch)]
pub fn fetch_export(req: worker::worker_sys::web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> worker::js_sys::Promise {
    let mut resolver = None;
    let promise = worker::js_sys::Promise::new(&mut |resolve, _reject| resolver = Some(resolve));
    let Some(resolve) = resolver else { return promise };
    runtime::executor::spawn(async move {
        let raw = match gate::fetch(Request::from(req), env, Context::new(ctx)).await {
            Ok(r) => worker::web_sys::Response::from(r),
            Err(e) => {
                console_error!("{}", serde_json::json!({"event": "internal_error", "message": e.to_string()}));
                panic_free_error()
            }
        };
        let _ = resolve.call1(&worker::wasm_bindgen::JsValue::UNDEFINED, &raw);
    });
    promise
}

/// A bare 500 for the one case where no response could be built at all.
fn panic_free_error() -> worker::web_sys::Response {
    let init = worker::web_sys::ResponseInit::new();
    init.set_status(500);
    worker::web_sys::Response::new_with_opt_str_and_init(Some("internal error"), &init).unwrap_or_else(|_| worker::web_sys::Response::error())
}
