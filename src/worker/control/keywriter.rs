//! The `KeyWriter` Durable Object: one per API key id (by name), the single writer of that
//! key's record. Rotate, disable and delete are read-modify-writes of the key's KV records; run
//! here one at a time, two racing calls end in the state one of their two orders gives (before,
//! a rotation racing a disable could write the key back active). Reads need no writer, and a new
//! key has a fresh id, so only its creator writes it.
//!
//! The message (a contract between the control Worker's isolates and this object):
//! `{"method", "id", "tail", "body"?, "now"}` in, `{"status", "op", "id"?, "body"}` out.

#![allow(missing_docs)] // the durable_object macro generates undocumented glue

use super::answer::AdminAnswer;
use crate::worker::runtime::post_request;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

/// Name of the Durable Object binding (control Worker).
pub const KEYS_BINDING: &str = "EDGEWARD_KEYS";

#[derive(Serialize, Deserialize)]
struct Ask {
    method: String,
    id: String,
    tail: String,
    #[serde(default)]
    body: Option<serde_json::Value>,
    now: i64,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    status: u16,
    op: String,
    #[serde(default)]
    id: Option<String>,
    body: serde_json::Value,
}

/// The audit log's name of an operation (the writer's answer carries it as text).
fn op_name(op: &str) -> &'static str {
    match op {
        "key_get" => "key_get",
        "key_delete" => "key_delete",
        "key_rotate" => "key_rotate",
        "key_disable" => "key_disable",
        "keys" => "keys",
        _ => "unknown",
    }
}

/// Runs a write on key `id` in its writer. `None` when the binding is not configured.
pub async fn ask(env: &Env, method: &str, id: &str, tail: &str, body: Option<&serde_json::Value>, now: i64) -> Option<AdminAnswer> {
    let ns = env.durable_object(KEYS_BINDING).ok()?;
    let ask = Ask { method: method.into(), id: id.into(), tail: tail.into(), body: body.cloned(), now };
    let answered = async {
        let stub = ns.get_by_name(id)?;
        let text = serde_json::to_string(&ask)?;
        let req = post_request("https://keys/op", &text).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let mut resp = stub.fetch_with_request(req).await?;
        let text = resp.text().await?;
        worker::Result::Ok(serde_json::from_str::<Answer>(&text)?)
    };
    Some(match answered.await {
        Ok(a) => AdminAnswer { status: a.status, op: op_name(&a.op), id: a.id, body: a.body },
        Err(e) => {
            let e: worker::Error = e;
            worker::console_error!("{}", serde_json::json!({"event": "api_key_admin_error", "op": "key_writer", "error": e.to_string()}));
            AdminAnswer {
                status: 503,
                op: "keys",
                id: Some(id.to_string()),
                body: serde_json::json!({"code": "api_keys_unavailable", "message": "key store unavailable; retry later"}),
            }
        }
    })
}

/// The writer of one key id.
#[durable_object]
pub struct KeyWriter {
    env: Env,
    busy: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

/// This object's turn: the next waiting call goes when it is dropped.
struct Turn<'a>(&'a KeyWriter);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.busy.set(false);
        for w in std::mem::take(&mut *self.0.waiters.borrow_mut()) {
            w.wake();
        }
    }
}

impl KeyWriter {
    /// Waits until no other call of this object is writing. (The runtime delivers the next
    /// event while one awaits KV, which is not the object's storage: hence this lock.)
    async fn turn(&self) -> Turn<'_> {
        std::future::poll_fn(|cx| {
            if self.busy.get() {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                self.busy.set(true);
                Poll::Ready(())
            }
        })
        .await;
        Turn(self)
    }
}

impl DurableObject for KeyWriter {
    fn new(_state: State, env: Env) -> Self {
        KeyWriter { env, busy: Cell::new(false), waiters: RefCell::new(Vec::new()) }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Some(ask) = req.text().await.ok().and_then(|t| crate::core::json::from_text::<Ask>(&t).ok()) else {
            return Response::error("bad request", 400);
        };
        let _turn = self.turn().await;
        let tail: Vec<&str> = ask.tail.split('/').filter(|s| !s.is_empty()).collect();
        let a = super::keys::in_writer(ask.body, &ask.method, &ask.id, &tail, &self.env, ask.now).await;
        let out = Answer { status: a.status, op: a.op.to_string(), id: a.id, body: a.body };
        Response::ok(serde_json::to_string(&out)?)
    }
}
