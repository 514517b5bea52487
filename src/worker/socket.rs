//! A WebSocket through the gate, once the core approved the upgrade and the origin accepted it:
//! a `WebSocketPair` for the client, frames shuttled both ways by a few lines of JS (no call into
//! wasm per message), close codes and reasons passed on, and one watch per socket — the core's
//! [`Gate::watch_socket`], on one timer — that ends it with its credential. One log line per
//! socket at its end ([`SocketRecord`]).

use super::runtime::{executor, now_ms, WorkerIo};
use crate::core::pipeline::{Gate, SocketWatch};
use crate::core::websocket::{relayed_close_code, CloseReason, Ending, Flow, SocketCheck, SocketRecord};
use futures_util::future::{select, Either};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use worker::js_sys::{Array, Float64Array, Function, Reflect};
use worker::wasm_bindgen::prelude::*;
use worker::wasm_bindgen::JsCast;

#[wasm_bindgen(inline_js = r#"
function utf8(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) n += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
  }
  return n;
}
export function edgeward_relay(client, origin, onEnd) {
  const s = { client, origin, ended: false, n: new Float64Array(4) };
  const pipe = (from, to, i) => from.addEventListener('message', (e) => {
    const d = e.data;
    s.n[i] += 1;
    s.n[i + 1] += typeof d === 'string' ? utf8(d) : d.byteLength;
    try { to.send(d); } catch {}
  });
  const end = (kind, code, reason) => {
    if (s.ended) return;
    s.ended = true;
    onEnd(kind, code, reason);
  };
  // Binary frames as ArrayBuffers, whatever the compatibility date's default.
  client.binaryType = 'arraybuffer';
  origin.binaryType = 'arraybuffer';
  pipe(client, origin, 0);
  pipe(origin, client, 2);
  client.addEventListener('close', (e) => end('client_closed', e.code, e.reason));
  origin.addEventListener('close', (e) => end('origin_closed', e.code, e.reason));
  client.addEventListener('error', () => end('client_error', 1006, ''));
  origin.addEventListener('error', () => end('origin_error', 1006, ''));
  try {
    client.accept();
    origin.accept();
  } catch {
    return null;
  }
  return s;
}
export function edgeward_relay_close(s, side, code, reason) {
  s.ended = true;
  const ws = side === 0 ? s.client : s.origin;
  try { if (code === 0) ws.close(); else ws.close(code, reason); } catch {}
}
export function edgeward_relay_counts(s) {
  return s.n;
}
"#)]
extern "C" {
    fn edgeward_relay(client: &JsValue, origin: &JsValue, on_end: &Function) -> JsValue;
    fn edgeward_relay_close(state: &JsValue, side: u32, code: u32, reason: &str);
    fn edgeward_relay_counts(state: &JsValue) -> Float64Array;
}

const CLIENT: u32 = 0;
const ORIGIN: u32 = 1;

/// What the socket's end handler and its watch share.
struct Shared {
    /// How it ended (who, the code sent on, the gate's reason), once it has.
    ended: Option<(Ending, Option<u16>, Option<&'static str>)>,
    waker: Option<Waker>,
}

/// Resolves when the socket has ended.
struct Ended<'s>(&'s RefCell<Shared>);

impl Future for Ended<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.borrow_mut();
        if s.ended.is_some() {
            return Poll::Ready(());
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// What the relay needs of the approved request.
pub(crate) struct Opened {
    pub(crate) gate: Rc<Gate>,
    pub(crate) io: WorkerIo,
    pub(crate) watch: SocketWatch,
    pub(crate) request_id: String,
    pub(crate) path: String,
}

/// Starts relaying between the client's end of a new pair and the origin's socket; returns the
/// client's end for the `101` response, or the JS error.
pub(crate) fn relay(origin: &JsValue, opened: Opened) -> Result<JsValue, JsValue> {
    let ctor: Function = Reflect::get(&worker::js_sys::global(), &JsValue::from_str("WebSocketPair"))?.dyn_into()?;
    let pair = Reflect::construct(&ctor, &Array::new())?;
    let (client_end, server_end) = (Reflect::get(&pair, &JsValue::from(0))?, Reflect::get(&pair, &JsValue::from(1))?);
    let shared = Rc::new(RefCell::new(Shared { ended: None, waker: None }));
    // Filled once the relay exists: the end handler passes the close on through it.
    let state: Rc<RefCell<JsValue>> = Rc::new(RefCell::new(JsValue::UNDEFINED));
    let on_end = {
        let (shared, state) = (shared.clone(), state.clone());
        Closure::<dyn FnMut(String, u16, String)>::new(move |kind: String, code: u16, reason: String| {
            let (ending, closer, other) = match kind.as_str() {
                "client_closed" => (Ending::ClientClosed, CLIENT, ORIGIN),
                "origin_closed" => (Ending::OriginClosed, ORIGIN, CLIENT),
                "client_error" => (Ending::ClientError, CLIENT, ORIGIN),
                _ => (Ending::OriginError, ORIGIN, CLIENT),
            };
            let sent = relayed_close_code(code);
            let code = u32::from(sent.unwrap_or(0));
            // The close goes on to the other side, and is answered on the side that sent it (the
            // runtime does not answer a Close frame itself at this compatibility date).
            edgeward_relay_close(&state.borrow(), other, code, &reason);
            edgeward_relay_close(&state.borrow(), closer, code, &reason);
            let waker = {
                let mut s = shared.borrow_mut();
                s.ended = Some((ending, sent, None));
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        })
    };
    let relay_state = edgeward_relay(&server_end, origin, on_end.as_ref().unchecked_ref());
    if !relay_state.is_object() {
        // The relay could not start (accept threw): the origin's socket is closed, not left open.
        let _ = Reflect::get(origin, &JsValue::from_str("close"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .map(|f| f.call2(origin, &JsValue::from(1011), &JsValue::from_str("relay failed")));
        return Err(JsValue::from_str("the WebSocket relay did not start"));
    }
    *state.borrow_mut() = relay_state.clone();
    executor::spawn(watch(opened, shared, relay_state, on_end));
    Ok(client_end)
}

/// The socket's watch: asks the core when to look again, waits for that or for the socket's end,
/// closes both sides when the core says so, and logs the socket's one line.
async fn watch(o: Opened, shared: Rc<RefCell<Shared>>, relay: JsValue, on_end: Closure<dyn FnMut(String, u16, String)>) {
    let opened_ms = now_ms();
    let closed_by_gate = loop {
        let check = o.gate.watch_socket(&o.io, &o.watch, now_ms()).await;
        if shared.borrow().ended.is_some() {
            break None;
        }
        let recheck_at_ms = match check {
            SocketCheck::Close(r) => break Some(r),
            SocketCheck::Open { recheck_at_ms } => recheck_at_ms,
        };
        match recheck_at_ms {
            Some(at) => {
                // At most what a JS timer takes (the core never asks for more than an hour).
                let wait = std::time::Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0).min(i32::MAX as u64));
                if let Either::Right(_) = select(worker::Delay::from(wait), Ended(&shared)).await {
                    break None;
                }
            }
            None => {
                Ended(&shared).await;
                break None;
            }
        }
    };
    if let Some(r) = closed_by_gate {
        close_both(&relay, r);
        shared.borrow_mut().ended = Some((Ending::Gate, Some(r.code()), Some(r.text())));
    }
    let n = edgeward_relay_counts(&relay).to_vec();
    let count = |i: usize| n.get(i).map_or(0, |v| *v as u64);
    let (ending, code, reason) = shared.borrow().ended.unwrap_or((Ending::Gate, None, None));
    let record = SocketRecord {
        event: "websocket_closed",
        request_id: &o.request_id,
        path: &o.path,
        duration_ms: now_ms() - opened_ms,
        up: Flow { messages: count(0), bytes: count(1) },
        down: Flow { messages: count(2), bytes: count(3) },
        ended: ending,
        code,
        reason,
    };
    if let Ok(line) = serde_json::to_string(&record) {
        worker::console_log!("{line}");
    }
    // The JS side calls the end handler at most once, and it has (or the gate ended the socket,
    // which stops it from calling): dropping it here is safe.
    drop(on_end);
}

fn close_both(relay: &JsValue, r: CloseReason) {
    for side in [CLIENT, ORIGIN] {
        edgeward_relay_close(relay, side, u32::from(r.code()), r.text());
    }
}
