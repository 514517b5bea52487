//! The executor of the Worker's `fetch` handler: a request's future is polled as soon as one of
//! this crate's own awaited promises settles, instead of being queued for a later microtask.
//!
//! `#[event(fetch)]` runs the handler on wasm-bindgen-futures, whose waker pushes the task on a
//! queue and schedules a `queueMicrotask` that polls it afterwards: every await of a JS promise
//! costs a promise callback into wasm, then a `queueMicrotask` call out of wasm, a second
//! microtask and a second call into wasm before the future resumes. Measured inside workerd
//! (bench mode `await`), that is several µs per await, against well under 1 µs for an `await` in
//! JS, and a cold verification awaits `crypto.subtle.verify` once.
//!
//! Here a wake that comes from `promise.rs`'s settle callback ([`wake_settled`]: the outcome is
//! stored before the wake, and no poll is on the stack) polls the future right there, in that
//! callback. Every other wake is deferred to one microtask, as wasm-bindgen-futures does: a
//! foreign waker may wake before it records its own state (workers-rs's `Delay` sets its flag
//! after waking, so a poll inside that wake would see it unset and never be woken again), and a
//! wake from inside a poll (a future waking itself, or another task) must not poll there. So no
//! task is ever polled inside another's poll and no `RefCell` borrow can be re-entered.
//!
//! Tasks live in a thread-local table; a waker names its task by index and generation (no
//! `unsafe`: `std::task::Wake` over an `Arc` of two integers), so a stale waker of a finished
//! task does nothing.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use worker::js_sys;
use worker::wasm_bindgen::prelude::*;

type Job = Pin<Box<dyn Future<Output = ()>>>;

enum State {
    /// Waiting for a wake; the future is here.
    Idle(Job),
    /// Being polled (the future is on the poller's stack).
    Polling,
    /// Finished; the slot is free.
    Free,
}

struct Slot {
    generation: u32,
    state: State,
    waker: Option<Waker>,
    /// A deferred poll is scheduled (at most one at a time).
    queued: bool,
    /// Woken while being polled: poll again once this poll returns.
    woken_while_polling: bool,
}

thread_local! {
    static TASKS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
    static FREE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// How many polls are on the stack.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Set while `promise.rs` delivers a settled outcome (see [`wake_settled`]).
    static SETTLING: Cell<bool> = const { Cell::new(false) };
    static LATER: Closure<dyn Fn(u32, u32)> = Closure::new(|index, generation| {
        TASKS.with(|t| {
            if let Some(s) = t.borrow_mut().get_mut(index as usize).filter(|s| s.generation == generation) {
                s.queued = false;
            }
        });
        run(index, generation);
    });
}

#[wasm_bindgen(inline_js = "export function edgeward_later(cb, index, generation) { queueMicrotask(() => cb(index, generation)); }")]
extern "C" {
    fn edgeward_later(cb: &js_sys::Function, index: u32, generation: u32);
}

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
                t.push(Slot { generation: 0, state: State::Free, waker: None, queued: false, woken_while_polling: false });
                (t.len() - 1) as u32
            }
        };
        let slot = &mut t[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let generation = slot.generation;
        slot.waker = Some(Waker::from(Arc::new(TaskRef { index, generation })));
        slot.state = State::Idle(job);
        slot.queued = false;
        slot.woken_while_polling = false;
        (index, generation)
    });
    run(index, generation);
}

/// Wakes `waker` on behalf of a settled promise whose outcome is already stored: a task of this
/// executor is polled at once (when no poll is on the stack); any other waker is woken as usual.
pub fn wake_settled(waker: Waker) {
    SETTLING.with(|s| s.set(true));
    waker.wake();
    SETTLING.with(|s| s.set(false));
}

fn wake(index: u32, generation: u32) {
    let now = DEPTH.with(Cell::get) == 0 && SETTLING.with(Cell::get);
    if now {
        // Only for this task: a poll it triggers runs with SETTLING cleared.
        SETTLING.with(|s| s.set(false));
        run(index, generation);
        return;
    }
    // Deferred: one microtask polls it (a wake during its own poll re-polls after that poll).
    let schedule = TASKS.with(|t| match t.borrow_mut().get_mut(index as usize) {
        Some(s) if s.generation == generation => match s.state {
            State::Polling => {
                s.woken_while_polling = true;
                false
            }
            State::Idle(_) if !s.queued => {
                s.queued = true;
                true
            }
            _ => false,
        },
        _ => false,
    });
    if schedule {
        defer(index, generation);
    }
}

fn defer(index: u32, generation: u32) {
    LATER.with(|cb| edgeward_later(cb.as_ref().unchecked_ref(), index, generation));
}

/// Polls the task now, if it is waiting.
fn run(index: u32, generation: u32) {
    let taken = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let slot = t.get_mut(index as usize).filter(|s| s.generation == generation)?;
        match std::mem::replace(&mut slot.state, State::Polling) {
            State::Idle(job) => {
                slot.woken_while_polling = false;
                Some((job, slot.waker.clone()?))
            }
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
            slot.state = State::Idle(job);
            let again = std::mem::take(&mut slot.woken_while_polling) && !slot.queued;
            slot.queued |= again;
            (None, again)
        }
    });
    // The finished future (and its waker) are dropped outside the table's borrow.
    drop(finished);
    if again {
        defer(index, generation);
    }
}
