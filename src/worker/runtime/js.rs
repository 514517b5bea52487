//! The few runtime APIs Edgeward needs beyond fetch, called through their JS interface directly:
//! Workers KV, Durable Object storage and the rate-limiting binding (and the JS call helpers that
//! `webcrypto.rs` uses too). workers-rs wraps each of them
//! with options objects and results converted through `serde_wasm_bindgen` (about 10 KB of the
//! gzip bundle for what is here a handful of strings and numbers); these wrappers pass strings,
//! bytes and numbers as they are, and await through [`super::promise::settle`].

use super::promise::settle;
use crate::core::io::IoError;
use worker::js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::Env;

fn describe(e: &JsValue) -> String {
    Reflect::get(e, &JsValue::from_str("message")).ok().and_then(|m| m.as_string()).or_else(|| e.as_string()).unwrap_or_else(|| "JS error".into())
}

fn method(target: &JsValue, name: &str) -> Result<Function, IoError> {
    Reflect::get(target, &JsValue::from_str(name)).ok().and_then(|f| f.dyn_into::<Function>().ok()).ok_or_else(|| IoError::BadAnswer(format!("no {name}()")))
}

/// Calls `target[name](...args)`, which must return a promise.
pub(crate) fn invoke(target: &JsValue, name: &str, args: &Array) -> Result<Promise, JsValue> {
    let f = method(target, name).map_err(|m| JsValue::from_str(&m.to_string()))?;
    f.apply(target, args)?.dyn_into::<Promise>().map_err(|_| JsValue::from_str(&format!("{name}() returned no promise")))
}

/// `target[name](...args)`, awaited: `Err` with the rejection (or the failure to call).
pub(crate) async fn call(target: &JsValue, name: &str, args: &Array) -> Result<JsValue, JsValue> {
    settle(&invoke(target, name, args)?).await
}

/// [`call`] with the error described as text (for logs and operator messages).
async fn call_text(target: &JsValue, name: &str, args: &Array) -> Result<JsValue, IoError> {
    call(target, name, args).await.map_err(|e| IoError::Failed(describe(&e)))
}

/// A plain JS object of `pairs`.
pub(crate) fn object(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o
}

/// How a capped read ended.
pub enum Capped {
    /// The whole body, at most the cap.
    Whole(Vec<u8>),
    /// More than the cap arrived (this many bytes when reading stopped); the stream was cancelled.
    TooLarge(usize),
}

/// Reads a `ReadableStream` chunk by chunk, and stops (cancelling it) as soon as more than `max`
/// bytes have arrived: a large or endless body never sits whole in memory. The bytes counted are
/// what the runtime delivers, so after any `Content-Encoding` is undone (a small gzip body that
/// inflates past `max` is stopped at `max`).
pub(crate) async fn read_capped(stream: &JsValue, max: usize) -> Result<Capped, IoError> {
    let reader = method(stream, "getReader")?.call0(stream).map_err(|e| IoError::Failed(describe(&e)))?;
    let mut out = Vec::new();
    loop {
        let r = call_text(&reader, "read", &Array::new()).await?;
        if Reflect::get(&r, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()) == Some(true) {
            return Ok(Capped::Whole(out));
        }
        let chunk = Reflect::get(&r, &JsValue::from_str("value"))
            .ok()
            .and_then(|v| v.dyn_into::<Uint8Array>().ok())
            .ok_or_else(|| IoError::BadAnswer("a body chunk that is not bytes".into()))?;
        let len = chunk.length() as usize;
        if out.len() + len > max {
            let _ = invoke(&reader, "cancel", &Array::new());
            return Ok(Capped::TooLarge(out.len() + len));
        }
        out.extend_from_slice(&chunk.to_vec());
    }
}

/// A Workers KV namespace binding.
#[derive(Clone)]
pub struct KvStore(JsValue);

/// One page of [`KvStore::list`].
#[cfg(feature = "control")]
pub struct KvPage {
    /// Key names, in order.
    pub names: Vec<String>,
    /// Where the next page starts, if there is one.
    pub cursor: Option<String>,
}

impl KvStore {
    /// The binding `name` of `env`, if it is bound to a KV namespace.
    pub fn from_env(env: &Env, name: &str) -> Option<KvStore> {
        let v = Reflect::get(env, &JsValue::from_str(name)).ok()?;
        (v.is_object() && method(&v, "get").is_ok()).then_some(KvStore(v))
    }

    /// The value of `key` as text; `None` if absent.
    pub async fn text(&self, key: &str) -> Result<Option<String>, IoError> {
        let v = call_text(&self.0, "get", &Array::of1(&JsValue::from_str(key))).await?;
        Ok(v.as_string())
    }

    /// The value of `key` read as a stream, at most `max` bytes; `None` if absent.
    pub async fn bytes_capped(&self, key: &str, max: usize) -> Result<Option<Vec<u8>>, IoError> {
        let v = call_text(&self.0, "get", &Array::of2(&JsValue::from_str(key), &JsValue::from_str("stream"))).await?;
        if v.is_null() || v.is_undefined() {
            return Ok(None);
        }
        match read_capped(&v, max).await? {
            Capped::Whole(b) => Ok(Some(b)),
            Capped::TooLarge(_) => Err(IoError::TooLarge(max)),
        }
    }

    /// Stores `value` under `key`.
    pub async fn put_bytes(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        call_text(&self.0, "put", &Array::of2(&JsValue::from_str(key), &Uint8Array::from(value))).await.map(|_| ())
    }

    /// Removes `key`.
    #[cfg(feature = "control")]
    pub async fn delete(&self, key: &str) -> Result<(), IoError> {
        call_text(&self.0, "delete", &Array::of1(&JsValue::from_str(key))).await.map(|_| ())
    }

    /// One page of at most `limit` key names starting with `prefix`, from `cursor`.
    #[cfg(feature = "control")]
    pub async fn list(&self, prefix: &str, limit: u32, cursor: Option<&str>) -> Result<KvPage, IoError> {
        let mut opts = vec![("prefix", JsValue::from_str(prefix)), ("limit", JsValue::from(limit))];
        if let Some(c) = cursor {
            opts.push(("cursor", JsValue::from_str(c)));
        }
        let v = call_text(&self.0, "list", &Array::of1(&object(&opts))).await?;
        let keys = Reflect::get(&v, &JsValue::from_str("keys"))
            .ok()
            .and_then(|k| k.dyn_into::<Array>().ok())
            .ok_or_else(|| IoError::BadAnswer("list answered without keys".into()))?;
        let names = keys.iter().filter_map(|k| Reflect::get(&k, &JsValue::from_str("name")).ok()?.as_string()).collect();
        let complete = Reflect::get(&v, &JsValue::from_str("list_complete")).ok().and_then(|c| c.as_bool()).unwrap_or(true);
        let cursor = if complete { None } else { Reflect::get(&v, &JsValue::from_str("cursor")).ok().and_then(|c| c.as_string()).filter(|c| !c.is_empty()) };
        Ok(KvPage { names, cursor })
    }
}

/// A Durable Object's transactional storage.
#[cfg(feature = "control")]
pub struct DoStorage(JsValue);

#[cfg(feature = "control")]
impl DoStorage {
    /// The storage of the object whose state is `state`.
    pub fn of(state: worker::State) -> Option<DoStorage> {
        let raw: JsValue = state._inner().into();
        let s = Reflect::get(&raw, &JsValue::from_str("storage")).ok()?;
        s.is_object().then_some(DoStorage(s))
    }

    /// The stored number under `key`; `None` if absent (or not a number).
    pub async fn number(&self, key: &str) -> Result<Option<f64>, IoError> {
        Ok(call_text(&self.0, "get", &Array::of1(&JsValue::from_str(key))).await?.as_f64())
    }

    /// Stores the number `value` under `key`.
    pub async fn put_number(&self, key: &str, value: f64) -> Result<(), IoError> {
        call_text(&self.0, "put", &Array::of2(&JsValue::from_str(key), &JsValue::from_f64(value))).await.map(|_| ())
    }

    /// Every `(key, string value)` whose key starts with `prefix`, in key order.
    pub async fn list_strings(&self, prefix: &str) -> Result<Vec<(String, String)>, IoError> {
        let m = call_text(&self.0, "list", &Array::of1(&object(&[("prefix", JsValue::from_str(prefix))]))).await?;
        let m = m.dyn_into::<worker::js_sys::Map>().map_err(|_| IoError::BadAnswer("list answered without a map".into()))?;
        let mut out = Vec::new();
        m.for_each(&mut |v, k| {
            if let (Some(k), Some(v)) = (k.as_string(), v.as_string()) {
                out.push((k, v));
            }
        });
        Ok(out)
    }

    /// Removes `keys` (one atomic call).
    pub async fn delete_all_of(&self, keys: &[String]) -> Result<(), IoError> {
        let arr: Array = keys.iter().map(|k| JsValue::from_str(k)).collect();
        call_text(&self.0, "delete", &Array::of1(&arr)).await.map(|_| ())
    }

    /// Sets the object's alarm `in_ms` from now.
    pub async fn set_alarm_in(&self, in_ms: u64) -> Result<(), IoError> {
        let at = worker::js_sys::Date::now() + in_ms as f64;
        call_text(&self.0, "setAlarm", &Array::of1(&JsValue::from_f64(at))).await.map(|_| ())
    }
}

/// The Analytics Engine binding `name` of `env`, if bound (an object with `writeDataPoint`).
pub fn analytics(env: &Env, name: &str) -> Option<JsValue> {
    let v = Reflect::get(env, &JsValue::from_str(name)).ok()?;
    (v.is_object() && method(&v, "writeDataPoint").is_ok()).then_some(v)
}

/// `binding.writeDataPoint({indexes, blobs, doubles})` (synchronous: the platform sends it).
pub fn write_data_point(binding: &JsValue, p: &crate::core::usage::AnalyticsPoint) -> Result<(), IoError> {
    let strings = |v: &[String]| v.iter().map(|s| JsValue::from_str(s)).collect::<Array>();
    let doubles: Array = p.doubles.iter().map(|d| JsValue::from_f64(*d)).collect();
    let point = object(&[("indexes", strings(&p.indexes).into()), ("blobs", strings(&p.blobs).into()), ("doubles", doubles.into())]);
    let f = method(binding, "writeDataPoint")?;
    f.call1(binding, &point).map(|_| ()).map_err(|e| IoError::Failed(describe(&e)))
}

/// Asks the rate-limiting binding `name` about `key`: `Ok(true)` when the request may pass.
pub async fn rate_limit(env: &Env, name: &str, key: &str) -> Result<bool, IoError> {
    let binding = Reflect::get(env, &JsValue::from_str(name)).ok().filter(JsValue::is_object).ok_or(IoError::NotBound("rate-limiting"))?;
    let outcome = call_text(&binding, "limit", &Array::of1(&object(&[("key", JsValue::from_str(key))]))).await?;
    Reflect::get(&outcome, &JsValue::from_str("success"))
        .ok()
        .and_then(|s| s.as_bool())
        .ok_or_else(|| IoError::BadAnswer("limit() answered without success".into()))
}
