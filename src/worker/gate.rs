//! The gate's Worker adapter: reads the request, runs the core pipeline
//! ([`crate::core::pipeline::Gate::decide`]) with the Worker's I/O, and sends the answer: the
//! refusal, the admin call (to the control plane), or the origin's response with the pipeline's
//! edits. No policy lives here.

use super::runtime::{self, now_ms, request_id, WorkerIo};
use crate::core::io::IoError;
use crate::core::log::DecisionLog;
use crate::core::pipeline::{refusal, ErrorResponse, Forward, Incoming, OriginCookies, Outcome, Refusal};
use std::rc::Rc;
use worker::{console_error, console_log, Context, Env, Request, Response};

/// Name of the service binding through which a gate built without the control plane reaches it.
pub const CONTROL_BINDING: &str = "EDGEWARD_CONTROL";

/// Serves one request.
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let start = now_ms();
    let rid = request_id();
    let iso = runtime::isolate(&env);
    // The raw method: workers-rs's `Method` turns extension methods (PROPFIND, ...) into GET.
    let method = req.inner().method();
    let url = req.inner().url();
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let cert = client_certificate(&req);
    let geo = geo(&req);
    let incoming = Incoming {
        method: &method,
        url: &url,
        headers: &headers,
        request_id: &rid,
        now_ms: start,
        client_cert_sha256: cert.as_deref(),
        geo: geo.as_ref().map(|(c, l)| (c.as_str(), l.as_str())),
    };
    let gate = match &iso.gate {
        Ok(g) => g.clone(),
        Err(e) => return Ok(send_refusal(Refusal::unconfigured(&incoming, e.to_string()))),
    };
    #[cfg(feature = "bench")]
    if url.split_once("://").and_then(|(_, r)| r.find('/').map(|i| &r[i..])).is_some_and(|p| p.starts_with(super::bench::PATH_PREFIX)) {
        return super::bench::handle(&gate, &url, &headers, runtime::now_secs()).await;
    }
    let io = WorkerIo::new(env, Some(Rc::new(ctx)), gate.clone());
    match gate.decide(&io, &incoming).await {
        Outcome::Refuse(r) | Outcome::Answer(r) => Ok(send_refusal(r)),
        Outcome::Forward(fwd) => Ok(forward(req, &gate, &io, fwd).await),
        #[cfg(feature = "control")]
        Outcome::Admin(call) => {
            // Guessing the admin credential is throttled like any unauthenticated traffic.
            if let Err(e) = gate.pre_auth_limit(&io, call.client_ip, start).await {
                let mut log = call.log;
                let response = refusal(&e, Some(gate.policy()), &mut log);
                return Ok(send_refusal(Refusal { response, log }));
            }
            super::control::admin::handle(req, &io, &gate, &call.path, &call.query, &headers, &rid, start.div_euclid(1000)).await
        }
        #[cfg(not(feature = "control"))]
        Outcome::Admin(call) => Ok(to_control_plane(req, io.env(), &gate, call.log).await),
    }
}

/// The admin API, in a gate built without it: the request goes as it came to the control Worker
/// (which throttles, authorizes and audits it), and its answer comes back as it is.
#[cfg(not(feature = "control"))]
async fn to_control_plane(req: Request, env: &Env, gate: &crate::core::pipeline::Gate, mut log: DecisionLog<'_>) -> Response {
    let answer = match env.service(CONTROL_BINDING) {
        Err(_) => Err(format!("no {CONTROL_BINDING} service binding to the control Worker (this gate is built without the admin API)")),
        Ok(control) => control.fetch_request(req).await.map_err(|e| format!("the control Worker did not answer: {e}")),
    };
    match answer {
        Ok(resp) => {
            log.decision = "control";
            log.status = resp.status_code();
            emit(&mut log);
            resp
        }
        Err(detail) => {
            log.detail = Some(detail);
            let response = refusal(&crate::core::error::AuthError::AdminUnavailable, Some(gate.policy()), &mut log);
            send_refusal(Refusal { response, log })
        }
    }
}

/// Sends the planned request to the origin (its URL, or the service binding a `service:NAME`
/// origin names) and relays its response with the pipeline's edits. No response headers within
/// the route's timeout: the origin request is aborted and the client gets `504 origin_timeout`.
async fn forward(req: Request, gate: &Rc<crate::core::pipeline::Gate>, io: &WorkerIo, mut fwd: Box<Forward<'_>>) -> Response {
    use futures_util::future::{select, Either};
    use worker::web_sys;
    let abort = web_sys::AbortController::new().ok();
    let built = (|| {
        let headers = web_sys::Headers::new().map_err(|_| IoError::Failed("headers".into()))?;
        for (k, v) in &fwd.plan.headers {
            // A header value the runtime refuses is dropped rather than failing the request.
            let _ = headers.append(k, v);
        }
        let init = web_sys::RequestInit::new();
        init.set_method(&fwd.method);
        init.set_headers(&headers);
        init.set_redirect(web_sys::RequestRedirect::Manual);
        if let Some(a) = &abort {
            init.set_signal(Some(&a.signal()));
        }
        if !matches!(fwd.method.as_str(), "GET" | "HEAD") && fwd.socket.is_none() {
            if let Some(body) = req.inner().body() {
                init.set_body(&body);
            }
        }
        web_sys::Request::new_with_str_and_init(&fwd.plan.url, &init).map_err(|e| IoError::Failed(format!("bad origin request: {e:?}")))
    })();
    let out = match built {
        Ok(r) => r,
        Err(e) => return send_refusal(gate.origin_failed(*fwd, e.to_string())),
    };
    let service = fwd.plan.service.clone();
    let sent = async move {
        let resp = match &service {
            Some(name) => {
                let binding = io.env().service(name).map_err(|_| IoError::NotBound("service"))?;
                binding.fetch_request(Request::from(out)).await.map_err(|e| IoError::Failed(format!("service {name} failed: {e}")))?
            }
            None => worker::Fetch::Request(Request::from(out)).send().await.map_err(|e| IoError::Failed(format!("origin fetch failed: {e}")))?,
        };
        Ok::<web_sys::Response, IoError>(resp.into())
    };
    let started = now_ms();
    let timer = worker::Delay::from(std::time::Duration::from_millis(u64::from(fwd.timeout_ms)));
    let raced = select(Box::pin(sent), timer).await;
    let inner = match raced {
        Either::Left((Ok(r), _)) => r,
        Either::Left((Err(e), _)) => return send_refusal(gate.origin_failed(*fwd, e.to_string())),
        Either::Right(_) => {
            if let Some(a) = &abort {
                a.abort();
            }
            return send_refusal(gate.origin_timed_out(*fwd, now_ms() - started));
        }
    };
    let from = inner.headers();
    let csrf_random = fwd.mint_csrf.then(|| {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).is_ok().then_some(b)
    });
    // An accepted upgrade: the origin's socket, relayed through a pair of the gate's own.
    let origin_socket = fwd.socket.as_ref().and_then(|_| {
        use worker::js_sys::Reflect;
        Reflect::get(&inner, &worker::wasm_bindgen::JsValue::from_str("webSocket")).ok().filter(|w| w.is_object())
    });
    let status = if origin_socket.is_some() { 101 } else { inner.status() };
    let edits = gate.respond(io, &mut fwd, status, set_cookies(&from), csrf_random.flatten(), runtime::now_secs());
    let relayed = (|| {
        let h = web_sys::Headers::new_with_headers(&from).map_err(|_| "headers".to_string())?;
        if origin_socket.is_some() {
            // The runtime makes the client's handshake; the origin's was another hop's.
            for k in ["upgrade", "connection", "sec-websocket-accept", "sec-websocket-extensions"] {
                let _ = h.delete(k);
            }
        }
        if edits.replace_cors {
            // The gate's CORS headers are the only ones: the origin's go first.
            let names: Vec<String> =
                h.keys().into_iter().filter_map(|k| k.ok()?.as_string()).filter(|k| k.len() > 15 && k[..15].eq_ignore_ascii_case("access-control-")).collect();
            for k in names {
                let _ = h.delete(&k);
            }
        }
        for (k, v) in &edits.set {
            let _ = h.set(k, v);
        }
        for (k, v) in &edits.append {
            let _ = h.append(k, v);
        }
        if let Some(list) = &edits.set_cookies {
            let _ = h.delete("set-cookie");
            for c in list {
                let _ = h.append("set-cookie", c);
            }
        }
        let rinit = web_sys::ResponseInit::new();
        rinit.set_status(status);
        rinit.set_headers(&h);
        if let (Some(origin), Some(watch)) = (&origin_socket, fwd.socket.take()) {
            let opened = super::socket::Opened {
                gate: gate.clone(),
                io: WorkerIo::new(io.env().clone(), None, gate.clone()),
                watch,
                request_id: fwd.log.request_id.to_string(),
                path: fwd.log.path.clone(),
            };
            let client = super::socket::relay(origin, opened).map_err(|e| format!("WebSocket relay failed: {e:?}"))?;
            let _ = worker::js_sys::Reflect::set(&rinit, &worker::wasm_bindgen::JsValue::from_str("webSocket"), &client);
            return web_sys::Response::new_with_opt_str_and_init(None, &rinit).map_err(|e| format!("relay failed: {e:?}"));
        }
        rinit.set_status_text(&inner.status_text());
        let body = inner.body().map(|b| {
            // Piped so that an origin failing mid-body is seen: the client's response is
            // aborted, never ended short and clean, and it is logged.
            let watched = edgeward_watch_body(&b, &req.inner().signal(), fwd.log.request_id, &fwd.log.path, status);
            io.wait_until(watched.done());
            watched.readable()
        });
        web_sys::Response::new_with_opt_readable_stream_and_init(body.as_ref(), &rinit).map_err(|e| format!("relay failed: {e:?}"))
    })();
    match relayed {
        Ok(r) => {
            emit(&mut fwd.log);
            Response::from(r)
        }
        Err(detail) => send_refusal(gate.origin_failed(*fwd, detail)),
    }
}

#[worker::wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function edgeward_watch_body(body, signal, request_id, path, status) {
  const Pipe = globalThis.IdentityTransformStream ?? TransformStream;
  const { readable, writable } = new Pipe();
  // A native pipe (no JS per chunk). When it fails, either the origin failed mid-body (the
  // client's response is aborted, never ended short and clean: logged) or the client went away
  // (request.signal, with the enable_request_signal flag; the pipe has cancelled the origin's
  // body, and so its fetch). The pipe's error alone cannot tell: both look the same.
  const done = body.pipeTo(writable).catch((e) => {
    if (signal && signal.aborted) return;
    const error = String((e && e.message) || e).slice(0, 200);
    console.error(JSON.stringify({ event: 'origin_aborted', request_id, path, status, error }));
  });
  return { readable, done };
}
"#)]
extern "C" {
    type WatchedBody;
    fn edgeward_watch_body(
        body: &worker::web_sys::ReadableStream,
        signal: &worker::web_sys::AbortSignal,
        request_id: &str,
        path: &str,
        status: u16,
    ) -> WatchedBody;
    #[wasm_bindgen(method, getter)]
    fn readable(this: &WatchedBody) -> worker::web_sys::ReadableStream;
    #[wasm_bindgen(method, getter)]
    fn done(this: &WatchedBody) -> worker::js_sys::Promise;
}

/// The SHA-256 fingerprint (hex) of the client certificate Cloudflare verified for this
/// connection (`request.cf.tlsClientAuth`: `certVerified` is `SUCCESS`), if any.
fn client_certificate(req: &Request) -> Option<String> {
    use worker::js_sys::Reflect;
    use worker::wasm_bindgen::JsValue;
    let get = |o: &JsValue, k: &str| Reflect::get(o, &JsValue::from_str(k)).ok().filter(|v| !v.is_undefined() && !v.is_null());
    let auth = get(req.inner().as_ref(), "cf").and_then(|cf| get(&cf, "tlsClientAuth"))?;
    if get(&auth, "certVerified")?.as_string()? != "SUCCESS" {
        return None;
    }
    get(&auth, "certFingerprintSHA256")?.as_string().filter(|f| f.len() == 64)
}

/// The client's country and the serving data center (`request.cf.country`, `.colo`), for the
/// record.
fn geo(req: &Request) -> Option<(String, String)> {
    use worker::js_sys::Reflect;
    use worker::wasm_bindgen::JsValue;
    let cf = Reflect::get(req.inner().as_ref(), &JsValue::from_str("cf")).ok().filter(|v| v.is_object())?;
    let text = |k: &str| Reflect::get(&cf, &JsValue::from_str(k)).ok().and_then(|v| v.as_string()).unwrap_or_default();
    Some((text("country"), text("colo")))
}

/// The origin's `Set-Cookie` headers one by one (`Headers.getSetCookie`).
fn set_cookies(from: &worker::web_sys::Headers) -> OriginCookies {
    use worker::js_sys::{Array, Function, Reflect};
    use worker::wasm_bindgen::{JsCast, JsValue};
    Reflect::get(from, &JsValue::from_str("getSetCookie"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .and_then(|f| f.call0(from).ok())
        .and_then(|a| a.dyn_into::<Array>().ok())
        .map(|a| OriginCookies::Each(a.iter().filter_map(|v| v.as_string()).collect()))
        .unwrap_or_else(|| OriginCookies::Unreadable { present: from.has("set-cookie").unwrap_or(true) })
}

/// Emits the record and turns a refusal into the HTTP response.
pub(crate) fn send_refusal(mut r: Refusal<'_>) -> Response {
    emit(&mut r.log);
    error_response(&r.response)
}

fn error_response(e: &ErrorResponse) -> Response {
    use worker::web_sys;
    let built = (|| {
        let h = web_sys::Headers::new()?;
        for (k, v) in &e.headers {
            let _ = h.append(k, v);
        }
        let init = web_sys::ResponseInit::new();
        init.set_status(e.status);
        init.set_headers(&h);
        web_sys::Response::new_with_opt_str_and_init(Some(&e.body), &init)
    })();
    // `new Response()` cannot fail in a Worker; this keeps the request path free of panics anyway.
    Response::from(built.unwrap_or_else(|_| web_sys::Response::error()))
}

/// One decision line (5xx on the error stream), with the time since arrival; an accepted request
/// sampled out by `logging.accepted` writes none.
pub(crate) fn emit(log: &mut DecisionLog<'_>) {
    if log.sampled_out && matches!(log.decision, "accept" | "public") {
        return;
    }
    log.duration_ms = Some(now_ms() - log.ts_ms);
    match serde_json::to_string(log) {
        Ok(s) if log.status >= 500 => console_error!("{s}"),
        Ok(s) => console_log!("{s}"),
        Err(_) => console_error!("{{\"event\":\"log_error\"}}"),
    }
}
