//! The executor of the Worker's `fetch` handler: it polls a request's future as soon as it is
//! woken, instead of queueing it for a later microtask.
//!
//! `#[event(fetch)]` runs the handler on wasm-bindgen-futures, whose waker pushes the task on a
//! queue and schedules a `queueMicrotask` that polls it afterwards: every await of a JS promise
//! costs a promise callback into wasm, then a `queueMicrotask` call out of wasm, a second
//! microtask and a second call into wasm before the future resumes. Measured inside workerd
//! (bench mode `await`), that is several µs per await, against well under 1 µs for an `await` in
//! JS, and a cold verification awaits `crypto.subtle.verify` once. Here a wake from outside any
//! poll (a promise callback, the only way JS wakes a future) polls the future right there, in
//! that callback. A wake from inside a poll (a future waking itself, or another task) is deferred
//! to a microtask, so no task is ever polled inside another's poll and no `RefCell` borrow can
//! be re-entered.
//!
//! Tasks live in a thread-local table; a waker names its task by index and generation (no
//! `unsafe`: `std::task::Wake` over an `Arc` of two integers), so a stale waker of a finished
//! task does nothing.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use worker::wasm_bindgen::prelude::*;

type Job = Pin<Box<dyn Future<Output = ()>>>;

enum State {
    /// Waiting for a wake; the future is here.
    Idle(Job),
    /// Being polled (the future is on the poller's stack).
    Polling,
    /// Woken while being polled: poll again on a microtask.
    Repoll,
    /// Finished; the slot is free.
    Free,
}

struct Slot {
    generation: u32,
    state: State,
    waker: Option<Waker>,
}

thread_local! {
    static TASKS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
    static FREE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// How many polls are on the stack (0: a wake comes from JS, outside any poll).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static LATER: Closure<dyn Fn(u32, u32)> = Closure::new(|index, generation| wake(index, generation));
}

#[wasm_bindgen(inline_js = "export function edgeward_later(cb, index, generation) { queueMicrotask(() => cb(index, generation)); }")]
extern "C" {
    fn edgeward_later(cb: &js_sys::Function, index: u32, generation: u32);
}

use worker::js_sys;

struct TaskRef {
    index: u32,
    generation: u32,
}

impl Wake for TaskRef {
    fn wake(self: Arc<Self>) {
        wake(self.index, self.generation);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake(self.index, self.generation);
    }
}

/// Runs `future` to completion, polling it first right away.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    let job: Job = Box::pin(future);
    let (index, generation) = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let index = match FREE.with(|f| f.borrow_mut().pop()) {
            Some(i) => i,
            None => {
                t.push(Slot { generation: 0, state: State::Free, waker: None });
                (t.len() - 1) as u32
            }
        };
        let slot = &mut t[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let generation = slot.generation;
        slot.waker = Some(Waker::from(Arc::new(TaskRef { index, generation })));
        slot.state = State::Idle(job);
        (index, generation)
    });
    wake(index, generation);
}

fn defer(index: u32, generation: u32) {
    LATER.with(|cb| edgeward_later(cb.as_ref().unchecked_ref(), index, generation));
}

fn wake(index: u32, generation: u32) {
    if DEPTH.with(Cell::get) > 0 {
        // Inside some poll: never poll a task there (it could re-enter a borrow); a microtask
        // polls it once the current poll has returned.
        let mark = TASKS.with(|t| match t.borrow_mut().get_mut(index as usize) {
            Some(s) if s.generation == generation && matches!(s.state, State::Polling) => {
                s.state = State::Repoll;
                false
            }
            Some(s) if s.generation == generation && matches!(s.state, State::Idle(_)) => true,
            _ => false,
        });
        if mark {
            defer(index, generation);
        }
        return;
    }
    let taken = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let slot = t.get_mut(index as usize).filter(|s| s.generation == generation)?;
        match std::mem::replace(&mut slot.state, State::Polling) {
            State::Idle(job) => Some((job, slot.waker.clone()?)),
            other => {
                slot.state = other;
                None
            }
        }
    });
    let Some((mut job, waker)) = taken else { return };
    DEPTH.with(|d| d.set(d.get() + 1));
    let ready = job.as_mut().poll(&mut Context::from_waker(&waker)).is_ready();
    DEPTH.with(|d| d.set(d.get() - 1));
    let (finished, again) = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let slot = &mut t[index as usize];
        if ready {
            slot.state = State::Free;
            let waker = slot.waker.take();
            FREE.with(|f| f.borrow_mut().push(index));
            (Some((job, waker)), false)
        } else {
            let again = matches!(slot.state, State::Repoll);
            slot.state = State::Idle(job);
            (None, again)
        }
    });
    // The finished future (and its waker) are dropped outside the table's borrow.
    drop(finished);
    if again {
        defer(index, generation);
    }
}
