//! # Edgeward
//!
//! A gate for the CDN edge: it finds the credential in a request, verifies the JWT against the
//! issuer's JWKS (fetched and cached, or inline) or the API key against its peppered hash,
//! checks issuer, audience, lifetime, revocations, route scopes and rate limits, and forwards
//! approved requests to the origin with verified identity headers and without the client's
//! credential (optionally with the origin's own credential injected). Everything else gets a
//! precise, standard error (RFC 6750 for bearer tokens).
//!
//! ## What it is
//! - [`core`]: a **sans-I/O core** that owns the whole decision. Parsing, key selection, claim
//!   policy, the JWKS cache policy, the verified-token cache, GCRA rate limiting, cookie and CSRF
//!   rules, CORS, the WebSocket upgrade and when a socket must end, DPoP proofs and
//!   certificate-bound tokens, the revocation set, the block list of client addresses, API keys (format, checksum, records, checks), credential
//!   extraction, the forwarding plan and the error mapping are pure functions of (input, state,
//!   `now`); [`core::pipeline::Gate`] strings them into the one request path, from a request as
//!   received to a decision (refuse, admin call, or forward with a plan, the response edits and
//!   the decision record); its JWT step ([`core::jwt`]: the verified-token cache, parse, issuer,
//!   keys fetched, cached or discovered, signature, claims) stands on its own, so the JS package
//!   runs it without the rest of the pipeline. The I/O it needs (JWKS fetch, KV, the ledger and limiter Durable
//!   Objects, the rate-limiting binding, the signature backend, secrets, the clock after an
//!   await, background work) is injected through [`core::io::GateIo`]; the isolate's state lives
//!   in one owner, [`core::state::IsolateState`], built with the policy and dropped with it. It
//!   reads no clock, does no network, KV or JS, and names no runtime, so the whole policy, the
//!   request path included, is tested with plain `cargo test` against a fake I/O.
//!
//!   Why an injected async trait rather than a state machine that yields I/O requests (as
//!   quinn-proto does): the request path has eight kinds of I/O interleaved with decisions that
//!   depend on their answers (a refetch only after an unknown `kid`, the ledger only on
//!   `sensitive` routes, the limiter's fallback), and the trait keeps that path one readable
//!   function while every implementation stays small. It is Envoy `jwt_authn`'s shape: the
//!   filter's fetcher and time source are injected. Implementations: the Worker's (`worker`),
//!   [`core::io::InlineIo`] (inline keys and a synchronous backend: the CLI, benchmarks), the JS
//!   package's (WebCrypto and the page's `fetch`) and the host tests' fake.
//! - `worker` (feature `worker`, wasm32): the Cloudflare Worker adapters. `worker::runtime` is
//!   what both Workers share: the run-on-wake executor (an awaited promise resumes the request
//!   in its own callback), the JS APIs of KV, Durable Object storage and the rate-limiting
//!   binding, WebCrypto, the per-isolate state, and the pipeline's I/O (`WorkerIo`). The gate's
//!   adapter reads `EDGEWARD_CONFIG` and the request, runs the pipeline, and sends its answer;
//!   admin API requests go, unchanged, through the `EDGEWARD_CONTROL` service binding to the
//!   control Worker.
//! - `worker::control` (feature `control`): the control plane, the admin API and the Durable
//!   Objects (`RateLimiter`; `RevocationLedger`, one SQLite row per revocation, publishing the
//!   sharded snapshot the gate reads, and the block list of client addresses ([`core::ipblock`]);
//!   `KeyWriter`, the single writer of each API key's record;
//!   `AuditTrail`, the hash-chained record of admin writes and refused admin calls, whose
//!   entries and chain are [`core::audit`]'s; `UsageStore`, the usage counters the gate flushes
//!   ([`core::usage`]) and the alert rules run on them ([`core::alerts`]), with the webhook
//!   deliveries and automatic actions they queue).
//!   Built with it, the Worker is the control Worker (and also a complete single Worker: gate and
//!   control plane).
//! - `web` (feature `web`): the JS package (wasm-bindgen); `createVerifier`, `verify` and
//!   `explain` run the pipeline's JWT step ([`core::jwt::JwtVerifier`], from the token checks'
//!   part of a configuration: [`core::config::EdgewardConfig::tokens_only`]) with the page's I/O
//!   (signatures on WebCrypto, a `jwksUri` through the core's JWKS cache), so the package links
//!   no signature crate. Feature `web-verifier` builds those three alone: the package's
//!   `edgeward/verify` module.
//! - `edgeward` (feature `cli`, native): the operator CLI (`verify`, `path`, `revoke`,
//!   `revocations`, `keys`, `audit`, whose `--verify` checks the trail's chain with
//!   [`core::audit`], `usage`), on the same pipeline with the pure-Rust backend (jwt-simple, plus `p521`
//!   for ES512).

//! ## What it is not
//! - It does not issue tokens, run an OAuth flow, or refresh tokens.
//! - It never takes keys from a token (`jwk`, `jku`, `x5u`, `x5c` are ignored) and never fetches
//!   anything but the configured `jwks_uri`s. Symmetric keys come only from inline configuration.
//! - It does not decrypt JWEs or accept unsigned or nested JWTs.
//! - No `unsafe`, and no panics on the request path: every failure becomes a response.
//!
//! ## The request path ([`core::pipeline::Gate::decide`])
//! ```text
//!  request ──► canonicalize (core::canonical: method token, path RFC 3986-normalized;
//!                 │           ambiguous forms ──► 400, too long ──► 414; overrides stripped)
//!                 │  every step below sees, and the origin receives, this canonical request
//!                 ▼
//!          admin.path_prefix? ──► admin call (the control plane: its own auth and audit)
//!                 ▼
//!          CORS preflight on a cors route ──► 204 │ 403 (after the per-IP limit; no credential)
//!          WebSocket upgrade, not a GET on a websocket rule ──► 400
//!                 ▼
//!              route rule (HEAD as GET) ──public───────────────────────────────┐
//!                 │ token needed                                            │
//!                 ▼                                                         │
//!          per-IP limit (before any parsing)                      ──► 429   │
//!                 ▼                                                         │
//!          extract credential (Bearer │ DPoP │ cookie │ query │ API key │ on an upgrade, the
//!                 │                edgeward.bearer. subprotocol)  ──none──► 401
//!                 │ (kind the route does not take (auth: jwt│api_key│either) ──► 401)
//!                 ├─ API key: format + CRC32 checksum (no lookup)  ──► 401  │
//!                 │    └► HMAC(pepper) ─► isolate cache │ one KV read ─► KeyRecord::check
//!                 │       (status, validity, rotation overlap ──► 401; IP ranges ──► 403)
//!                 │       ─► VerifiedApiKey ─► revocations ─► authorize ─► limits ─┐
//!                 │ (cookie + unsafe method: same-origin or CSRF token ──► 403;
//!                 │  cookie + upgrade: Origin the gate's or csrf.allowed_origins ──► 403)
//!                 ▼                                                         │
//!          verified-token cache (SHA-256 of token) ──hit──► revocations ┐│
//!                 │ opaque token (not a JWS) of an introspecting issuer: RFC 7662 call
//!                 │   (active ─► the same claim checks; inactive ──► 401; down ──► 503) ─┘
//!                 ▼                                                         │
//!          UnverifiedToken::parse  (size, 3×base64url, strict JSON,         │
//!                 │                 alg ≠ none, no crit/b64/zip)  ──► 401   │
//!                 ▼                                                         │
//!          PendingToken::new  (iss → issuer, alg allow-list)      ──► 401   │
//!                 ▼                                                         │
//!          issuer keys: inline + JWKS cache ◄── fetch / KV snapshot         │
//!                 │   (jwks_uri configured, or from discovered metadata whose
//!                 │    issuer must be the configured one)                   │
//!                 │   (no usable key ──► 503)                               │
//!                 ▼                                                         │
//!          select_key (kid, kty/crv/alg/use/key_ops fit)           ──► 401  │
//!                 ▼                                                         │
//!          SignatureJob ──► backend (WebCrypto │ jwt-simple) ──► SignatureProof
//!                 ▼                                                         │
//!          PendingToken::finish (exp, nbf, iat, lifetime, iss, aud) ──► 401 │
//!                 ▼                                                         │
//!          sender constraint: cnf["x5t#S256"] = the verified client certificate;
//!                 │  cnf.jkt: Authorization: DPoP + one proof (core::dpop: typ, alg, jwk header
//!                 │  → PendingProof → backend, htm, htu, nonce, iat, jti replay, ath, jkt) ──► 401
//!                 ▼                                                         │
//!          VerifiedToken ──► revocation snapshot (jti │ sub before │ kid)  ──► 401
//!                 ▼            (+ the ledger itself on sensitive routes)         │
//!          authorize(route scopes)                                 ──► 403  │
//!                 ▼                                                         │
//!          rate limits (sub │ client │ IP │ claim │ key id; local │ DO │ binding) ◄┘ ──► 429
//!                 ▼                                                         ▼
//!          plan_forward(Identity): strip credential + headers that fold (`_` as `-`) to a
//!                        protected name + hop-by-hop + client X-Forwarded-*/Forwarded, add the
//!                        gate's, verified claims (unforwardable ──► 403), the route's origin
//!                        credential, request id ──► origin + canonical path (502 if down)
//!                 ▼
//!          response (Gate::respond): every Set-Cookie brought to policy, RateLimit headers,
//!                        request id, a CSRF cookie when due, the CORS headers
//!                 ▼
//!          a WebSocket: the origin's 101 relayed, frames both ways; Gate::watch_socket on one
//!                        timer per socket: exp │ revoked ──► close 1008 (list unavailable: 1011)
//! ```
//! Only [`core::verify::PendingToken::finish`] makes a [`core::verify::VerifiedToken`], and it
//! needs the [`core::verify::SignatureProof`] that only a signature backend in this crate makes,
//! for that very parsed token (proofs carry the token's unique id).
//! Only [`core::apikey::KeyRecord::check`] makes a [`core::apikey::VerifiedApiKey`]. Forwarding
//! as authenticated takes a [`core::identity::Identity`], which borrows one of the two.
//! Every refusal is an [`core::error::AuthError`]; [`core::error::AuthError::rejection`] is the one
//! mapping to status, `WWW-Authenticate` and the stable reason code.
//!
//! Every finished decision (refusal, or the origin's answer to an approved request) is then
//! counted by [`core::pipeline::Gate::count`] in the isolate's [`core::usage::UsageAggregator`],
//! which a deferred task ([`core::io::Deferred::FlushUsage`]) sends to the control Worker at most
//! every `observability.flush_secs`: counting decides nothing and does no I/O on the request path.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod core;

#[cfg(feature = "web-verifier")]
pub mod web;
#[cfg(feature = "worker")]
pub mod worker;
