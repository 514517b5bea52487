//! The `KeyWriter` Durable Object: one per API key id (by name), the single writer of that
//! key's record. Rotate, disable and delete are read-modify-writes of the key's KV records; run
//! here one at a time, two racing calls end in the state one of their two orders gives (before,
//! a rotation racing a disable could write the key back active). Reads need no writer, and a new
//! key has a fresh id, so only its creator writes it.
//!
//! The message (a contract between the control Worker's isolates and this object; its client
//! side is `keys::ask_writer`): `{"method", "id", "tail", "body"?, "now"}` in,
//! `{"status", "op", "id"?, "body"}` out.

#![allow(missing_docs)] // the durable_object macro generates undocumented glue

use super::keys::{in_writer, WriterAnswer, WriterAsk};
use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

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
        let Some(ask) = req.text().await.ok().and_then(|t| crate::core::json::from_text::<WriterAsk>(&t).ok()) else {
            return Response::error("bad request", 400);
        };
        let _turn = self.turn().await;
        let tail: Vec<&str> = ask.tail.split('/').filter(|s| !s.is_empty()).collect();
        let a = in_writer(ask.body, &ask.method, &ask.id, &tail, &self.env, ask.now).await;
        let out = WriterAnswer { status: a.status, op: a.op.to_string(), id: a.id, body: a.body };
        Response::ok(serde_json::to_string(&out)?)
    }
}
