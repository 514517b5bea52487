//! Verification: issuer and key selection, the signature seam, and the claim checks.
//!
//! The flow is split so that signature checking can be synchronous (native) or asynchronous
//! (WebCrypto in a Worker) while every policy decision stays here:
//!
//! ```text
//! UnverifiedToken::parse ─► PendingToken::new (issuer, alg allow-list)
//!        ─► PendingToken::select_key (kid, key fit) ─► SignatureJob ─► backend ─► SignatureProof
//!        ─► PendingToken::finish (claims) ─► VerifiedToken
//! ```
//! A [`VerifiedToken`] can only be made by `finish`, and `finish` needs the [`SignatureProof`]
//! that only a backend in this crate can make for this very token.

use super::access::Requirement;
use super::alg::{Algorithm, KeyFamily};
use super::config::Policy;
use super::error::AuthError;
use super::jwk::{Jwk, KeyMaterial};
use super::token::UnverifiedToken;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Source of [`PendingToken`] ids: never reused within a process, so a proof made for one token
/// can never match another (not even the same text parsed again).
static NEXT_TOKEN_ID: AtomicU64 = AtomicU64::new(1);

/// A structurally valid token matched to a configured issuer, awaiting its key and signature.
#[derive(Debug)]
pub struct PendingToken<'t> {
    token: UnverifiedToken<'t>,
    issuer_index: usize,
    /// Unique per parsed token; binds [`SignatureProof`]s to it.
    id: u64,
}

/// Everything a backend needs to check one signature.
#[derive(Debug, Clone, Copy)]
pub struct SignatureJob<'a> {
    /// The header's algorithm (already allowed for the issuer and fitting the key).
    pub alg: Algorithm,
    /// The selected key.
    pub key: &'a Jwk,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`.
    pub signing_input: &'a [u8],
    /// The decoded signature (length already checked for the algorithm and key).
    pub signature: &'a [u8],
    /// The whole compact token (some backends verify the compact form directly).
    pub compact: &'a str,
    /// The id of the [`PendingToken`] this job was made from (private: only
    /// [`PendingToken::job`] makes a job).
    token_id: u64,
}

/// Proof that a backend verified the signature of one particular [`SignatureJob`].
/// Only backends inside this crate can construct it, and [`PendingToken::finish`] accepts it only
/// for the very token (by its unique id) the job was made from, and only if the job still named
/// that token's own signature and signing input and the key `finish` is given (a copy of the
/// job with other bytes or another key proves nothing about this token).
#[derive(Debug)]
pub struct SignatureProof {
    token_id: u64,
    /// Where the checked bytes and key live (addresses and lengths, compared, never read).
    signature: (usize, usize),
    signing_input: (usize, usize),
    key: usize,
}

impl SignatureProof {
    pub(crate) fn for_job(job: &SignatureJob<'_>) -> SignatureProof {
        SignatureProof {
            token_id: job.token_id,
            signature: (job.signature.as_ptr() as usize, job.signature.len()),
            signing_input: (job.signing_input.as_ptr() as usize, job.signing_input.len()),
            key: job.key as *const Jwk as usize,
        }
    }
}

/// A token whose signature and claims passed every check. Only [`PendingToken::finish`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    issuer_index: usize,
    alg: Algorithm,
    kid: Option<String>,
    /// Shared, so the token cache hands out a hit without copying the claims.
    claims: Arc<Map<String, Value>>,
    expires_at: Option<i64>,
    scopes: Arc<[String]>,
}

impl VerifiedToken {
    /// Index of the issuer in the policy.
    pub fn issuer_index(&self) -> usize {
        self.issuer_index
    }
    /// The verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
    /// A claim as a header value: strings as is, numbers and booleans printed, arrays of
    /// strings joined by spaces; `None` for anything else.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(a) => a.iter().map(|v| v.as_str()).collect::<Option<Vec<_>>>().map(|v| v.join(" ")),
            _ => None,
        }
    }
    /// `sub`, if present.
    pub fn subject(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }
    /// `iss`, if present.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
    /// `exp` in whole seconds, if present.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }
    /// The algorithm that verified it.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
    /// The key id that verified it.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// Scopes from `scope` (space-separated) and `scp` (array or string).
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Checks a route requirement against the token's scopes.
    pub fn authorize(&self, requirement: &Requirement) -> Result<(), AuthError> {
        super::scope::require_scopes(&self.scopes, requirement)
    }
}

impl<'t> PendingToken<'t> {
    /// Matches the token to a configured issuer (by `iss`) and checks `alg` against that issuer's
    /// allow-list.
    pub fn new(token: UnverifiedToken<'t>, policy: &Policy) -> Result<PendingToken<'t>, AuthError> {
        let iss = match token.claims.get("iss") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(AuthError::MalformedClaims("iss is not a string")),
        };
        let issuer_index = if policy.issuers.len() == 1 && policy.issuers[0].issuer.is_none() {
            0
        } else {
            let iss = iss.ok_or(AuthError::IssuerMismatch)?;
            policy.issuers.iter().position(|i| i.issuer.as_deref() == Some(iss)).ok_or(AuthError::IssuerMismatch)?
        };
        let alg = token.header.alg;
        if !policy.issuers[issuer_index].algorithms.contains(&alg) {
            return Err(AuthError::AlgNotAllowed(alg.name().to_string()));
        }
        Ok(PendingToken { token, issuer_index, id: NEXT_TOKEN_ID.fetch_add(1, Ordering::Relaxed) })
    }

    /// Index of the matched issuer.
    pub fn issuer_index(&self) -> usize {
        self.issuer_index
    }

    /// The header's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.token.header.kid.as_deref()
    }

    /// The header's `alg`.
    pub fn alg(&self) -> Algorithm {
        self.token.header.alg
    }

    /// Selects the one key that may verify this token from `keys` (the issuer's inline and
    /// fetched keys). With a `kid`, exactly one key with that `kid` must fit `alg`; without a
    /// `kid`, exactly one key of the set must fit. [`AuthError::UnknownKid`] tells the caller a
    /// JWKS refetch may help.
    pub fn select_key<'k, I>(&self, keys: I) -> Result<&'k Jwk, AuthError>
    where
        I: IntoIterator<Item = &'k Jwk>,
    {
        let alg = self.token.header.alg;
        match &self.token.header.kid {
            Some(kid) => {
                let mut with_kid = 0usize;
                let mut first_misfit = None;
                let mut fitting = None;
                for k in keys.into_iter().filter(|k| k.kid.as_deref() == Some(kid.as_str())) {
                    with_kid += 1;
                    match k.misfit(alg) {
                        None if fitting.is_some() => return Err(AuthError::NoMatchingKey("kid names more than one key")),
                        None => fitting = Some(k),
                        Some(why) => first_misfit = first_misfit.or(Some(why)),
                    }
                }
                match (with_kid, fitting, first_misfit) {
                    (0, _, _) => Err(AuthError::UnknownKid),
                    (_, Some(k), _) => Ok(k),
                    (_, None, Some(why)) => Err(AuthError::NoMatchingKey(why)),
                    (_, None, None) => Err(AuthError::Internal),
                }
            }
            None => {
                let mut fitting = keys.into_iter().filter(|k| k.misfit(alg).is_none());
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Ok(k),
                    (None, _) => Err(AuthError::NoMatchingKey("no key fits alg")),
                    (Some(_), Some(_)) => Err(AuthError::NoMatchingKey("several keys fit; a kid is required")),
                }
            }
        }
    }

    /// The signature job for `key`, after checking the signature has the exact length the
    /// algorithm and key demand (ECDSA: raw R‖S, never DER).
    pub fn job<'a>(&'a self, key: &'a Jwk) -> Result<SignatureJob<'a>, AuthError> {
        let alg = self.token.header.alg;
        if key.misfit(alg).is_some() {
            return Err(AuthError::Internal);
        }
        let sig = &self.token.signature;
        let expected = match (&key.material, alg.key_family()) {
            (KeyMaterial::Rsa { n, .. }, KeyFamily::Rsa) => n.len(),
            (KeyMaterial::Ec { curve, .. }, KeyFamily::Ec(_)) => 2 * curve.coordinate_len(),
            (KeyMaterial::Ed25519 { .. }, KeyFamily::Ed25519) => 64,
            (KeyMaterial::Oct { .. }, KeyFamily::Oct) => alg.hash_len(),
            _ => return Err(AuthError::Internal),
        };
        if sig.len() != expected {
            return Err(AuthError::BadSignature);
        }
        Ok(SignatureJob { alg, key, signing_input: self.token.signing_input.as_bytes(), signature: sig, compact: self.token.raw, token_id: self.id })
    }

    /// Checks the claims and returns the verified token (the claims move into it, uncopied).
    /// `proof` must come from this token's job.
    pub fn finish(self, proof: SignatureProof, key: &Jwk, policy: &Policy, now: i64) -> Result<VerifiedToken, AuthError> {
        let signature = (self.token.signature.as_ptr() as usize, self.token.signature.len());
        let signing_input = (self.token.signing_input.as_ptr() as usize, self.token.signing_input.len());
        if proof.token_id != self.id || proof.signature != signature || proof.signing_input != signing_input || proof.key != key as *const Jwk as usize {
            return Err(AuthError::Internal);
        }
        let c = &self.token.claims;
        let exp = numeric(c, "exp")?;
        let nbf = numeric(c, "nbf")?;
        let iat = numeric(c, "iat")?;
        for name in ["sub", "jti"] {
            if c.get(name).is_some_and(|v| !v.is_string()) {
                return Err(AuthError::MalformedClaims(if name == "sub" { "sub is not a string" } else { "jti is not a string" }));
            }
        }
        let scopes = scopes(c)?;
        let leeway = policy.leeway_secs as f64;
        let nowf = now as f64;
        match exp {
            None if policy.require_exp => return Err(AuthError::MissingExp),
            Some(exp) if nowf >= exp + leeway => return Err(AuthError::Expired { now, exp: exp as i64 }),
            _ => {}
        }
        if let Some(nbf) = nbf {
            if nbf > nowf + leeway {
                return Err(AuthError::NotYetValid { now, nbf: nbf as i64 });
            }
        }
        if let Some(iat) = iat {
            if iat > nowf + leeway {
                return Err(AuthError::IssuedInFuture { now, iat: iat as i64 });
            }
        }
        if let (Some(max), Some(exp)) = (policy.max_lifetime_secs, exp) {
            let lifetime = exp - iat.unwrap_or(nowf);
            if lifetime > max as f64 {
                return Err(AuthError::LifetimeTooLong { lifetime: lifetime as i64, max });
            }
        }
        let issuer = &policy.issuers[self.issuer_index];
        if let Some(expected) = &issuer.issuer {
            if c.get("iss").and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(AuthError::IssuerMismatch);
            }
        }
        if !issuer.audiences.is_empty() {
            let ok = match c.get("aud") {
                Some(Value::String(a)) => issuer.audiences.iter().any(|x| x == a),
                Some(Value::Array(items)) => {
                    let mut any = false;
                    for v in items {
                        let a = v.as_str().ok_or(AuthError::MalformedClaims("aud is not a string or array of strings"))?;
                        any |= issuer.audiences.iter().any(|x| x == a);
                    }
                    any
                }
                None => false,
                Some(_) => return Err(AuthError::MalformedClaims("aud is not a string or array of strings")),
            };
            if !ok {
                return Err(AuthError::AudienceMismatch);
            }
        } else if let Some(v) = c.get("aud") {
            let shape_ok = v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            if !shape_ok {
                return Err(AuthError::MalformedClaims("aud is not a string or array of strings"));
            }
        }
        Ok(VerifiedToken {
            issuer_index: self.issuer_index,
            alg: self.token.header.alg,
            kid: key.kid.clone(),
            expires_at: exp.map(|e| e as i64),
            scopes: scopes.into(),
            claims: Arc::new(self.token.claims),
        })
    }
}

/// A NumericDate claim: a finite, non-negative JSON number.
fn numeric(c: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, AuthError> {
    let msg = match name {
        "exp" => "exp is not a non-negative number",
        "nbf" => "nbf is not a non-negative number",
        _ => "iat is not a non-negative number",
    };
    match c.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() && (0.0..1e15).contains(&f) => Ok(Some(f)),
            _ => Err(AuthError::MalformedClaims(msg)),
        },
        Some(_) => Err(AuthError::MalformedClaims(msg)),
    }
}

fn scopes(c: &Map<String, Value>) -> Result<Vec<String>, AuthError> {
    let mut out: Vec<String> = Vec::new();
    match c.get("scope") {
        None => {}
        Some(Value::String(s)) => out.extend(s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned)),
        Some(_) => return Err(AuthError::MalformedClaims("scope is not a string")),
    }
    match c.get("scp") {
        None => {}
        Some(Value::String(s)) => out.extend(s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned)),
        Some(Value::Array(a)) => {
            for v in a {
                out.push(v.as_str().ok_or(AuthError::MalformedClaims("scp is not a string array"))?.to_owned());
            }
        }
        Some(_) => return Err(AuthError::MalformedClaims("scp is not a string array")),
    }
    out.sort();
    out.dedup();
    Ok(out)
}
