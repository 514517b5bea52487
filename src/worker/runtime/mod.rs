//! The runtime layer both Workers share (the gate and the control plane): the executor and
//! promise glue, the JS APIs of KV, Durable Object storage and the rate-limiting binding,
//! WebCrypto, the per-isolate [`Isolate`] (configuration, core gate and its state, in one
//! owner), and [`WorkerIo`], the core pipeline's I/O in a Worker.

pub(crate) mod executor;
mod io;
pub(crate) mod js;
pub(crate) mod promise;
pub(crate) mod webcrypto;

#[cfg(feature = "control")]
pub(crate) use io::{ask_ledger, post_request, LimiterAsk};
pub use io::{kv_binding, now_ms, now_secs, WorkerIo, DO_BINDING, KV_BINDING, LEDGER_BINDING, USAGE_BINDING};

use crate::core::config::{ConfigError, Policy};
use crate::core::pipeline::Gate;
use std::cell::RefCell;
use std::rc::Rc;
use worker::{console_error, console_warn, Env};

/// Name of the var holding the configuration JSON.
pub const CONFIG_VAR: &str = "EDGEWARD_CONFIG";

/// Per-isolate state, in one owner: the configuration text, and the gate built from it (the
/// policy and every cache) or the error that fails every request closed. A changed
/// configuration replaces all of it at once.
pub struct Isolate {
    config_text: Option<String>,
    /// The gate, or why the configuration is refused.
    pub gate: Result<Rc<Gate>, ConfigError>,
}

thread_local! {
    static ISOLATE: RefCell<Option<Rc<Isolate>>> = const { RefCell::new(None) };
}

/// This isolate's state for the current configuration (built on first use and on change).
pub fn isolate(env: &Env) -> Rc<Isolate> {
    let text = env.var(CONFIG_VAR).map(|v| v.to_string()).ok();
    if let Some(i) = ISOLATE.with(|s| s.borrow().clone()).filter(|i| i.config_text == text) {
        return i;
    }
    let policy = match &text {
        None => Err(ConfigError { field: CONFIG_VAR.into(), message: "the var is not set".into() }),
        Some(t) => Policy::from_json(t),
    };
    match &policy {
        Ok(p) => {
            for w in &p.warnings {
                console_warn!("{}", serde_json::json!({"event": "config_warning", "message": w}));
            }
        }
        Err(e) => console_error!("{}", serde_json::json!({"event": "config_invalid", "field": e.field, "message": e.to_string()})),
    }
    // Everything the isolate kept for the old configuration goes: the gate's state with the old
    // gate, and the imported WebCrypto keys (the runtime's own cache, of JS objects).
    webcrypto::reset();
    let i = Rc::new(Isolate { config_text: text, gate: policy.map(|p| Rc::new(Gate::new(p))) });
    ISOLATE.with(|s| *s.borrow_mut() = Some(i.clone()));
    i
}

/// A random request id (hex of 16 bytes).
pub fn request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: still unique enough per isolate for correlation, never for security.
        b[..8].copy_from_slice(&now_ms().to_be_bytes());
    }
    hex::encode(b)
}
