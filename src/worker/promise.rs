//! Awaiting a JS promise from Rust for one JS call instead of `JsFuture`'s three. `JsFuture`
//! creates two wasm closures per await (resolve and reject, each a JS function object made by a
//! call out of wasm, and dropped by another) before calling `then`. Here one closure lives for the
//! isolate's lifetime; each await takes a slot number and makes one call to a tiny JS function
//! that attaches `then` handlers passing the slot back. On the hot path (every
//! `crypto.subtle.verify` of a cold token) that is the difference measured by the bench's
//! `rawsig` / `rawsig_js` modes.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use wasm_bindgen::prelude::*;
use worker::js_sys::{Function, Promise};

#[wasm_bindgen(inline_js = "export function edgeward_settle(p, slot, cb) { p.then((v) => cb(slot, true, v), (e) => cb(slot, false, e)); }")]
extern "C" {
    fn edgeward_settle(p: &Promise, slot: u32, cb: &Function);
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
    // Woken outside the borrow: the executor may poll right away.
    if let Some(w) = waker {
        w.wake();
    }
}

/// A promise being awaited.
pub struct Settle {
    slot: u32,
    /// Ready was returned: the slot is no longer this future's.
    finished: bool,
}

/// Awaits `promise`: `Ok(value)` when it fulfils, `Err(reason)` when it rejects.
pub fn settle(promise: &Promise) -> Settle {
    let slot = SLOTS.with(|s| {
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
    });
    CALLBACK.with(|cb| edgeward_settle(promise, slot, cb.as_ref().unchecked_ref()));
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
