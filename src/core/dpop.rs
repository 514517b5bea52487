//! DPoP (RFC 9449): sender-constrained tokens. A DPoP-bound access token carries `cnf.jkt`, the
//! RFC 7638 thumbprint of a key the client holds; each request carries a fresh proof, a JWT signed
//! by that key, naming the request's method and URL and the token's hash. A stolen token alone is
//! useless.
//!
//! The checks (RFC 9449 §4.3, in order): exactly one `DPoP` header; a compact JWS with strict
//! JSON ([`super::token::UnverifiedToken::parse`]); `typ` `dpop+jwt`; an asymmetric `alg` in
//! `dpop.algorithms`; a `jwk` header that is a public key fitting `alg` (the one key ever taken from
//! a message, and only to check this very proof); the signature, by the signature backend (WebCrypto
//! in the Worker) through [`super::verify::PendingProof`]; `htm` the method; `htu` the request URL
//! without query and fragment, its path canonicalized as the route decision's is; the server nonce,
//! when `dpop.nonce` is on; `iat` within `dpop.iat_window_secs`; `jti` present and unseen
//! ([`ReplayCache`]); `ath` the base64url SHA-256 of the token; the token's `cnf.jkt` the proof
//! key's thumbprint. A `cnf.jkt` token sent as `Bearer` is refused (no downgrade).
//!
//! Server nonces ([`Nonces`]) need no shared state: a nonce is a time slot and an HMAC of it under
//! a Worker secret, so every isolate issues and accepts the same ones (the current slot and the
//! one before).
//!
//! Pure: the pipeline runs the signature check through its I/O and keeps the replay cache in the
//! isolate's state.

use super::alg::Algorithm;
use super::error::{AuthError, DpopFailure};
use super::json::{b64url_decode, b64url_encode, parse_strict_object};
use super::jwk::{parse_public_jwk, thumbprint, Jwk};
use super::token::UnverifiedToken;
use super::verify::PendingProof;
use hmac::{Hmac, Mac};
use lru::LruCache;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;

/// Route field `dpop`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DpopMode {
    /// Only DPoP-bound tokens with a valid proof.
    Required,
    /// Bound tokens need their proof; plain bearer tokens pass as before.
    #[default]
    Allowed,
    /// `Authorization: DPoP` is refused (bound tokens still cannot be sent as bearer tokens).
    Disabled,
}

/// Where a proof's `jti` is remembered.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReplayScope {
    /// In each isolate ([`ReplayCache`]): a proof replayed to another isolate within the window
    /// is not caught.
    #[default]
    Isolate,
    /// In the isolate first, then once more in a sharded Durable Object keyed by the replay key,
    /// for the proof's window: a proof is accepted once, in every isolate and location.
    Exact,
}

/// The `dpop` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// Proof algorithms accepted (asymmetric only).
    pub algorithms: Vec<String>,
    /// How far a proof's `iat` may be from now, each way (seconds).
    pub iat_window_secs: u32,
    /// Where `jti`s are remembered (`isolate`).
    pub replay: ReplayScope,
    /// How many `jti`s each isolate remembers.
    pub replay_capacity: usize,
    /// Require server nonces (`use_dpop_nonce`).
    pub nonce: bool,
    /// The Worker secret nonces are made with (at least 32 characters).
    pub nonce_secret: String,
    /// How long a nonce is issued for (seconds); one is accepted for up to twice this.
    pub nonce_slot_secs: u32,
    /// Longest proof accepted (bytes).
    pub max_proof_bytes: usize,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            algorithms: ["ES256", "ES384", "PS256", "RS256", "EdDSA"].map(String::from).to_vec(),
            iat_window_secs: 60,
            replay: ReplayScope::Isolate,
            replay_capacity: 100_000,
            nonce: false,
            nonce_secret: "EDGEWARD_DPOP_NONCE_SECRET".into(),
            nonce_slot_secs: 300,
            max_proof_bytes: 8192,
        }
    }
}

/// The validated section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopPolicy {
    /// Accepted proof algorithms.
    pub algorithms: Vec<Algorithm>,
    /// `iat` window (seconds).
    pub iat_window_secs: i64,
    /// Replay cache capacity per isolate.
    pub replay_capacity: usize,
    /// Also ask the replay Durable Object (`dpop.replay: "exact"`).
    pub replay_exact: bool,
    /// The nonce secret's name, when nonces are required.
    pub nonce_secret: Option<String>,
    /// Nonce slot (seconds).
    pub nonce_slot_secs: i64,
    /// Longest proof.
    pub max_proof_bytes: usize,
}

impl Default for DpopPolicy {
    fn default() -> Self {
        DpopConfig::default().validate().unwrap_or(DpopPolicy {
            algorithms: vec![Algorithm::ES256],
            iat_window_secs: 60,
            replay_capacity: 100_000,
            replay_exact: false,
            nonce_secret: None,
            nonce_slot_secs: 300,
            max_proof_bytes: 8192,
        })
    }
}

impl DpopConfig {
    /// Validates the section. The error is (field, message).
    pub fn validate(self) -> Result<DpopPolicy, (String, String)> {
        let mut algorithms = Vec::new();
        for a in &self.algorithms {
            let alg = Algorithm::from_name(a).ok_or_else(|| ("dpop.algorithms".to_string(), format!("unknown algorithm {a:?}")))?;
            if alg.key_family() == super::alg::KeyFamily::Oct {
                return Err(("dpop.algorithms".into(), format!("{a} is symmetric: a proof is signed by the client's own key pair")));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err(("dpop.algorithms".into(), "at least one algorithm".into()));
        }
        if !(1..=3600).contains(&self.iat_window_secs) {
            return Err(("dpop.iat_window_secs".into(), "between 1 and 3600".into()));
        }
        if !(1..=10_000_000).contains(&self.replay_capacity) {
            return Err(("dpop.replay_capacity".into(), "between 1 and 10,000,000".into()));
        }
        if !(10..=86_400).contains(&self.nonce_slot_secs) {
            return Err(("dpop.nonce_slot_secs".into(), "between 10 and 86400".into()));
        }
        if !(256..=65_536).contains(&self.max_proof_bytes) {
            return Err(("dpop.max_proof_bytes".into(), "between 256 and 65536".into()));
        }
        Ok(DpopPolicy {
            algorithms,
            iat_window_secs: i64::from(self.iat_window_secs),
            replay_capacity: self.replay_capacity,
            replay_exact: self.replay == ReplayScope::Exact,
            nonce_secret: self.nonce.then_some(self.nonce_secret),
            nonce_slot_secs: i64::from(self.nonce_slot_secs),
            max_proof_bytes: self.max_proof_bytes,
        })
    }
}

impl DpopPolicy {
    /// The algorithms for the `algs` parameter of a DPoP challenge.
    pub fn algs(&self) -> String {
        self.algorithms.iter().map(|a| a.name()).collect::<Vec<_>>().join(" ")
    }
}

/// The one proof in the request's `DPoP` headers.
pub fn the_proof(headers: &[(String, String)]) -> Result<&str, AuthError> {
    let mut found = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("dpop")).map(|(_, v)| v.trim());
    match (found.next(), found.next()) {
        (None, _) => Err(AuthError::Dpop(DpopFailure::Missing)),
        (Some(_), Some(_)) => Err(AuthError::Dpop(DpopFailure::Multiple)),
        (Some(p), None) if p.contains(',') => Err(AuthError::Dpop(DpopFailure::Multiple)),
        (Some(""), None) => Err(AuthError::Dpop(DpopFailure::Missing)),
        (Some(p), None) => Ok(p),
    }
}

/// Checks everything about a proof that needs no signature check — shape, `typ`, `alg`, `jwk` —
/// and returns it ready for the signature backend.
pub fn parse_proof<'t>(proof: &'t str, policy: &DpopPolicy) -> Result<PendingProof<'t>, AuthError> {
    let bad = |f| AuthError::Dpop(f);
    let token = UnverifiedToken::parse(proof, policy.max_proof_bytes).map_err(|e| match e {
        AuthError::AlgNone | AuthError::AlgNotAllowed(_) | AuthError::AlgMissing => bad(DpopFailure::Alg),
        _ => bad(DpopFailure::Malformed),
    })?;
    // The header again, whole: `typ` and `jwk` (the token parser reads neither).
    let header_b64 = proof.split('.').next().unwrap_or("");
    let header = b64url_decode(header_b64).and_then(|b| parse_strict_object(&b).ok()).ok_or(bad(DpopFailure::Malformed))?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(bad(DpopFailure::Typ));
    }
    let alg = token.header().alg;
    if !policy.algorithms.contains(&alg) {
        return Err(bad(DpopFailure::Alg));
    }
    let key = header.get("jwk").ok_or(bad(DpopFailure::Jwk)).and_then(|j| parse_public_jwk(j).map_err(|_| bad(DpopFailure::Jwk)))?;
    if key.misfit(alg).is_some() {
        return Err(bad(DpopFailure::Jwk));
    }
    PendingProof::new(token, key).map_err(|_| bad(DpopFailure::Jwk))
}

/// What a proof's claims are checked against.
#[derive(Debug, Clone, Copy)]
pub struct ProofContext<'a> {
    /// The request's method (canonical, upper case).
    pub method: &'a str,
    /// The request's origin (`https://edge.example`), as the runtime's URL parser gave it.
    pub origin: &'a str,
    /// The request's canonical path.
    pub path: &'a str,
    /// The access token the proof must be bound to (`ath`).
    pub token: &'a str,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Checks a proof's `nonce` claim (absent: `None`); `Err` with a fresh nonce to hand out.
pub type NonceCheck<'a> = &'a dyn Fn(Option<&str>) -> Result<(), String>;

/// A proof whose every check passed: what the gate remembers and forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// The proof key's thumbprint (RFC 7638).
    pub jkt: String,
    /// The replay key: the first 8 bytes of SHA-256 of (thumbprint, `jti`).
    pub replay_key: u64,
    /// Until when the proof could be accepted (Unix seconds): how long to remember it.
    pub remember_until: i64,
}

/// The proof's claims after its signature verified: `htm`, `htu` (its path canonicalized by
/// `canonical`, as the route decision's), the nonce (`nonce` checks one: `Err` with a fresh
/// nonce for the challenge), `iat`, `jti`, `ath`, and the token's `cnf.jkt` against the key.
pub fn check_claims(
    claims: &Map<String, Value>,
    key: &Jwk,
    ctx: &ProofContext<'_>,
    bound_jkt: Option<&str>,
    policy: &DpopPolicy,
    canonical: impl Fn(&str) -> Option<String>,
    nonce: Option<NonceCheck<'_>>,
) -> Result<CheckedProof, AuthError> {
    let bad = |f| Err(AuthError::Dpop(f));
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("htm") != Some(ctx.method) {
        return bad(DpopFailure::Htm);
    }
    let Some(htu) = text("htu") else { return bad(DpopFailure::Htu) };
    if !htu_matches(htu, ctx, canonical) {
        return bad(DpopFailure::Htu);
    }
    if let Some(check) = nonce {
        check(text("nonce")).map_err(AuthError::DpopNonce)?;
    }
    let Some(iat) = claims.get("iat").and_then(Value::as_f64) else { return bad(DpopFailure::Iat) };
    if (iat - ctx.now as f64).abs() > policy.iat_window_secs as f64 {
        return bad(DpopFailure::Iat);
    }
    let Some(jti) = text("jti").filter(|j| !j.is_empty() && j.len() <= 256) else { return bad(DpopFailure::Jti) };
    let ath = b64url_encode(&Sha256::digest(ctx.token.as_bytes()));
    if text("ath") != Some(ath.as_str()) {
        return bad(DpopFailure::Ath);
    }
    let jkt = thumbprint(key);
    if bound_jkt != Some(jkt.as_str()) {
        return bad(DpopFailure::KeyMismatch);
    }
    let replay_key = super::log::sha256_64(format!("{jkt}\n{jti}").as_bytes());
    Ok(CheckedProof { jkt, replay_key, remember_until: iat as i64 + policy.iat_window_secs + 1 })
}

/// `htu` against the request: same scheme and host (without case, default ports dropped), and
/// the same canonical path; query and fragment ignored.
fn htu_matches(htu: &str, ctx: &ProofContext<'_>, canonical: impl Fn(&str) -> Option<String>) -> bool {
    let htu = htu.split('#').next().unwrap_or("");
    // Scheme and host without case: lower-cased up to the path.
    let authority_end = htu.find("://").map_or(0, |i| htu[i + 3..].find(['/', '?']).map_or(htu.len(), |j| i + 3 + j));
    let htu = format!("{}{}", htu[..authority_end].to_ascii_lowercase(), &htu[authority_end..]);
    let Some((origin, path, _)) = super::request::split_url(&htu) else { return false };
    let norm = |o: &str| {
        let o = o.to_ascii_lowercase();
        o.strip_suffix(":443")
            .filter(|_| o.starts_with("https://"))
            .or_else(|| o.strip_suffix(":80").filter(|_| o.starts_with("http://")))
            .map_or(o.clone(), str::to_owned)
    };
    norm(origin) == norm(ctx.origin) && canonical(path).is_some_and(|p| p == ctx.path)
}

/// The `jti`s of the proofs an isolate accepted, until each could no longer be accepted anyway.
/// Bounded: at capacity the least recently used is dropped (a proof so dropped could be replayed
/// within its window; the count is kept for the log).
#[derive(Debug)]
pub struct ReplayCache {
    seen: LruCache<u64, i64>,
    evicted_live: u64,
}

impl ReplayCache {
    /// Empty, for `capacity` entries.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache { seen: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)), evicted_live: 0 }
    }

    /// Records `p`; `false` if its `jti` was seen already (a replay).
    pub fn first_use(&mut self, p: &CheckedProof, now: i64) -> bool {
        if self.seen.get(&p.replay_key).is_some_and(|until| *until >= now) {
            return false;
        }
        if let Some((_, until)) = self.seen.push(p.replay_key, p.remember_until) {
            if until >= now {
                self.evicted_live += 1;
            }
        }
        true
    }

    /// Entries dropped while they could still have been replayed.
    pub fn evicted_live(&self) -> u64 {
        self.evicted_live
    }
}

/// Server nonces: `base64url(slot ‖ HMAC-SHA-256(secret, "edgeward-dpop-nonce" ‖ slot)[..16])`,
/// where slot = now / `dpop.nonce_slot_secs`.
pub struct Nonces<'s> {
    secret: &'s [u8],
    slot_secs: i64,
}

impl<'s> Nonces<'s> {
    /// Nonces under `secret`.
    pub fn new(secret: &'s [u8], slot_secs: i64) -> Nonces<'s> {
        Nonces { secret, slot_secs: slot_secs.max(1) }
    }

    fn tag(&self, slot: u64) -> Option<[u8; 16]> {
        // HMAC takes a key of any length: this never fails, and if it did no nonce would pass.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret).ok()?;
        mac.update(b"edgeward-dpop-nonce");
        mac.update(&slot.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut t = [0u8; 16];
        t.copy_from_slice(&full[..16]);
        Some(t)
    }

    /// The nonce to hand out now.
    pub fn current(&self, now: i64) -> String {
        let slot = now.div_euclid(self.slot_secs).max(0) as u64;
        let mut b = slot.to_be_bytes().to_vec();
        b.extend_from_slice(&self.tag(slot).unwrap_or_default());
        b64url_encode(&b)
    }

    /// Whether `nonce` is this slot's or the previous one's.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        use subtle::ConstantTimeEq;
        let Some(b) = b64url_decode(nonce).filter(|b| b.len() == 24) else { return false };
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        let slot = u64::from_be_bytes(s);
        let current = now.div_euclid(self.slot_secs).max(0) as u64;
        (slot == current || slot + 1 == current) && self.tag(slot).is_some_and(|t| bool::from(t.ct_eq(&b[8..])))
    }
}
