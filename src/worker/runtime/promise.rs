//! Awaiting a JS promise from Rust for one JS call instead of `JsFuture`'s three. `JsFuture`
//! creates two wasm closures per await (resolve and reject, each a JS function object made by a
//! call out of wasm, and dropped by another) before calling `then`. Here one closure lives for the
//! isolate's lifetime; each await takes a slot number and makes one call to a tiny JS function
//! that attaches `then` handlers passing the slot back.
//!
//! The hot path (every `crypto.subtle.verify` of a cold token) goes further: [`verify`] makes the
//! WebCrypto call *and* attaches the handlers in one call out of wasm, hands signature and signing
//! input over as views of wasm memory (WebCrypto copies its inputs when called, so nothing is
//! copied twice), borrows the cached key and algorithm object instead of cloning their handles,
//! and is called back with a plain boolean: no JS value crosses back into wasm.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use wasm_bindgen::prelude::*;
use worker::js_sys::{Function, Promise};

#[wasm_bindgen(inline_js = "export function edgeward_settle(p, slot, cb) { p.then((v) => cb(slot, true, v), (e) => cb(slot, false, e)); }
export function edgeward_verify(alg, key, sig, data, slot, cb) {
  try {
    crypto.subtle.verify(alg, key, sig, data).then((v) => cb(slot, v === true), () => cb(slot, false));
    return true;
  } catch (e) {
    return false;
  }
}")]
extern "C" {
    fn edgeward_settle(p: &Promise, slot: u32, cb: &Function);
    fn edgeward_verify(alg: &JsValue, key: &JsValue, sig: &[u8], data: &[u8], slot: u32, cb: &Function) -> bool;
}

enum Slot {
    Free,
    Waiting(Option<Waker>),
    Done(bool, JsValue),
    /// The future was dropped before the promise settled; the slot frees when it does.
    Abandoned,
}

struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

thread_local! {
    static SLOTS: RefCell<Slots> = const { RefCell::new(Slots { slots: Vec::new(), free: Vec::new() }) };
    static CALLBACK: Closure<dyn Fn(u32, bool, JsValue)> = Closure::new(settled);
    static VERDICT: Closure<dyn Fn(u32, bool)> = Closure::new(|slot, ok| settled(slot, ok, JsValue::UNDEFINED));
}

fn settled(slot: u32, ok: bool, value: JsValue) {
    let waker = SLOTS.with(|s| {
        let mut s = s.borrow_mut();
        let i = slot as usize;
        match s.slots.get_mut(i) {
            Some(Slot::Waiting(w)) => {
                let w = w.take();
                s.slots[i] = Slot::Done(ok, value);
                w
            }
            Some(Slot::Abandoned) => {
                s.slots[i] = Slot::Free;
                s.free.push(slot);
                None
            }
            _ => None,
        }
    });
    // Woken outside the borrow, with the outcome stored: the request's executor polls right away.
    if let Some(w) = waker {
        super::executor::wake_settled(w);
    }
}

/// A promise being awaited.
pub struct Settle {
    slot: u32,
    /// Ready was returned: the slot is no longer this future's.
    finished: bool,
}

fn take_slot() -> u32 {
    SLOTS.with(|s| {
        let mut s = s.borrow_mut();
        match s.free.pop() {
            Some(i) => {
                s.slots[i as usize] = Slot::Waiting(None);
                i
            }
            None => {
                s.slots.push(Slot::Waiting(None));
                (s.slots.len() - 1) as u32
            }
        }
    })
}

/// Awaits `promise`: `Ok(value)` when it fulfils, `Err(reason)` when it rejects.
pub fn settle(promise: &Promise) -> Settle {
    let slot = take_slot();
    CALLBACK.with(|cb| edgeward_settle(promise, slot, cb.as_ref().unchecked_ref()));
    Settle { slot, finished: false }
}

/// `crypto.subtle.verify(alg, key, sig, data)`, awaited: `Ok(_)` only when WebCrypto answered
/// `true`; `Err(_)` when it answered `false`, rejected, or threw. `sig` and `data` are read by
/// WebCrypto during the call (views of wasm memory, copied by WebCrypto before it returns).
pub fn verify(alg: &JsValue, key: &JsValue, sig: &[u8], data: &[u8]) -> Settle {
    let slot = take_slot();
    let started = VERDICT.with(|cb| edgeward_verify(alg, key, sig, data, slot, cb.as_ref().unchecked_ref()));
    if !started {
        // Threw before a promise existed: settle the slot now (refused).
        settled(slot, false, JsValue::UNDEFINED);
    }
    Settle { slot, finished: false }
}

impl Future for Settle {
    type Output = Result<JsValue, JsValue>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Pending;
        }
        let slot = this.slot;
        let out = SLOTS.with(|s| {
            let mut s = s.borrow_mut();
            let i = slot as usize;
            match std::mem::replace(&mut s.slots[i], Slot::Free) {
                Slot::Done(ok, v) => {
                    s.free.push(slot);
                    Poll::Ready(if ok { Ok(v) } else { Err(v) })
                }
                Slot::Waiting(_) | Slot::Free | Slot::Abandoned => {
                    s.slots[i] = Slot::Waiting(Some(cx.waker().clone()));
                    Poll::Pending
                }
            }
        });
        this.finished = out.is_ready();
        out
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        SLOTS.with(|s| {
            let mut s = s.borrow_mut();
            let i = self.slot as usize;
            match s.slots.get(i) {
                // Still pending: free the slot when the promise settles.
                Some(Slot::Waiting(_)) => s.slots[i] = Slot::Abandoned,
                // Settled but never polled: free it now.
                Some(Slot::Done(..)) => {
                    s.slots[i] = Slot::Free;
                    s.free.push(self.slot);
                }
                _ => {}
            }
        });
    }
}
