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
//!
//! The token part of the configuration is this module's too: the `issuers` entries
//! ([`IssuerConfig`], validated into [`IssuerPolicy`]) and the claim rules `new` and `finish`
//! read ([`TokenRules`], which the validated configuration converts into).

use super::access::Requirement;
use super::alg::{Algorithm, KeyFamily};
use super::claims::{Claim, Facts, Packed};
use super::error::AuthError;
use super::jwk::{Jwk, KeyMaterial, KeySet, KeySource};
use super::token::UnverifiedToken;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One accepted issuer, as written in the configuration (an `issuers` entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` value; `null` = `iss` not checked (only with a single issuer).
    pub issuer: Option<String>,
    /// Accepted audiences; empty = `aud` not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// JWKS URL (fetched and cached).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Inline JWK Set.
    #[serde(default)]
    pub jwks: Option<Value>,
    /// Allowed `alg` values (may be empty for an issuer of opaque tokens only).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Accept an `http://` `jwks_uri` on a host other than loopback (default false: keys fetched
    /// in clear can be replaced by anyone on the path).
    #[serde(default)]
    pub allow_insecure_jwks_uri: bool,
    /// Take `jwks_uri` from the issuer's metadata ([`super::discovery`]) instead of giving it.
    #[serde(default)]
    pub discovery: bool,
    /// Opaque (not JWT) tokens of this issuer are checked by its introspection endpoint
    /// (RFC 7662).
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// With several introspecting issuers: the prefix of this one's opaque tokens.
    #[serde(default)]
    pub token_prefix: Option<String>,
}

/// How the client authenticates to the introspection endpoint.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (form-encoded first, RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// `issuers[].introspection` (RFC 7662).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The endpoint (https, or http on loopback). Absent with `discovery`: the metadata's
    /// `introspection_endpoint`, held to the same rules.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The gate's client id at the authorization server.
    pub client_id: String,
    /// The name of the Worker secret holding the client secret.
    pub client_secret: String,
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub auth: ClientAuth,
    /// How long an active answer is reused (seconds; never past the token's `exp`).
    #[serde(default = "introspection_cache_ttl")]
    pub cache_ttl_secs: u32,
    /// How long an inactive answer is reused (seconds).
    #[serde(default = "introspection_negative_ttl")]
    pub negative_cache_ttl_secs: u32,
    /// The endpoint's answer within this, or `503 introspection_unavailable`.
    #[serde(default = "introspection_timeout")]
    pub timeout_ms: u32,
}

fn introspection_cache_ttl() -> u32 {
    60
}
fn introspection_negative_ttl() -> u32 {
    10
}
fn introspection_timeout() -> u32 {
    3000
}

/// A validated issuer ([`IssuerPolicy::validate_all`]).
#[derive(Debug, Clone)]
pub struct IssuerPolicy {
    /// Exact `iss`, or `None` when not checked.
    pub issuer: Option<String>,
    /// Accepted audiences (empty: not checked).
    pub audiences: Vec<String>,
    /// JWKS URL.
    pub jwks_uri: Option<String>,
    /// Inline keys.
    pub inline_keys: KeySet,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// `jwks_uri` comes from the issuer's metadata ([`super::discovery`]).
    pub discovery: bool,
    /// Plain-http key URLs off loopback accepted (`allow_insecure_jwks_uri`).
    pub allow_insecure: bool,
    /// Opaque tokens checked by introspection.
    pub introspection: Option<IntrospectionConfig>,
    /// The prefix of this issuer's opaque tokens.
    pub token_prefix: Option<String>,
}

impl IssuerPolicy {
    /// Validates the `issuers` section: at least one issuer, each with known algorithms, keys
    /// that fit them and a `jwks_uri` fetched over https (or loopback, or by explicit choice), no
    /// issuer twice. Returns the issuers and the warnings to log once at start-up; the error is
    /// (field, message).
    pub fn validate_all(configs: Vec<IssuerConfig>) -> Result<(Vec<IssuerPolicy>, Vec<String>), (String, String)> {
        if configs.is_empty() {
            return Err(field_error("issuers", "at least one issuer is required"));
        }
        let mut issuers = Vec::with_capacity(configs.len());
        let mut insecure = Vec::new();
        let many = configs.len() > 1;
        for (i, ic) in configs.into_iter().enumerate() {
            let f = |name: &str| format!("issuers[{i}].{name}");
            match &ic.issuer {
                None if many => return Err(field_error(f("issuer"), "null (unchecked iss) is only allowed with a single issuer")),
                Some(s) if s.is_empty() => return Err(field_error(f("issuer"), "must not be empty")),
                _ => {}
            }
            if ic.algorithms.is_empty() && ic.introspection.is_none() {
                return Err(field_error(f("algorithms"), "list at least one algorithm"));
            }
            if let Some(intro) = &ic.introspection {
                if ic.issuer.is_none() {
                    return Err(field_error(f("introspection"), "introspection needs the issuer's exact URL in issuer"));
                }
                match &intro.endpoint {
                    Some(endpoint) => {
                        if let Some(problem) = jwks_uri_problem(endpoint, ic.allow_insecure_jwks_uri) {
                            return Err(field_error(f("introspection.endpoint"), problem));
                        }
                    }
                    None if ic.discovery => {}
                    None => return Err(field_error(f("introspection.endpoint"), "required unless discovery takes it from the issuer's metadata")),
                }
                if intro.client_id.is_empty() || intro.client_secret.is_empty() {
                    return Err(field_error(f("introspection"), "client_id and client_secret (the name of a Worker secret) are required"));
                }
                if !(100..=30_000).contains(&intro.timeout_ms) || intro.cache_ttl_secs > 3600 || intro.negative_cache_ttl_secs > 3600 {
                    return Err(field_error(f("introspection"), "timeout_ms 100-30000, cache_ttl_secs and negative_cache_ttl_secs at most 3600"));
                }
            }
            let mut algorithms = Vec::new();
            for (j, name) in ic.algorithms.iter().enumerate() {
                let Some(a) = Algorithm::from_name(name) else {
                    return Err(field_error(format!("issuers[{i}].algorithms[{j}]"), format!("unsupported algorithm {name:?}")));
                };
                if !algorithms.contains(&a) {
                    algorithms.push(a);
                }
            }
            let sym = algorithms.iter().filter(|a| a.is_symmetric()).count();
            if sym > 0 && sym < algorithms.len() {
                return Err(field_error(f("algorithms"), "HMAC (HS*) and asymmetric algorithms cannot be mixed for one issuer"));
            }
            if ic.discovery {
                let Some(iss) = &ic.issuer else { return Err(field_error(f("discovery"), "discovery needs the issuer's exact URL in issuer")) };
                if ic.jwks_uri.is_some() {
                    return Err(field_error(f("discovery"), "discovery takes jwks_uri from the issuer's metadata: give one or the other"));
                }
                if let Some(problem) = jwks_uri_problem(iss, ic.allow_insecure_jwks_uri) {
                    return Err(field_error(f("issuer"), format!("discovery fetches the metadata from the issuer's URL, which {problem}")));
                }
                if sym > 0 {
                    return Err(field_error(f("discovery"), "HMAC secrets are only taken from inline jwks, never fetched"));
                }
            }
            if let Some(uri) = &ic.jwks_uri {
                if let Some(problem) = jwks_uri_problem(uri, ic.allow_insecure_jwks_uri) {
                    return Err(field_error(f("jwks_uri"), problem));
                }
                if uri.starts_with("http://") && !is_loopback_url(uri) {
                    insecure
                        .push(format!("issuers[{i}].jwks_uri is fetched over plain http (allow_insecure_jwks_uri): anyone on the path can replace the keys"));
                }
                if sym > 0 {
                    return Err(field_error(f("jwks_uri"), "HMAC secrets are only taken from inline jwks, never fetched"));
                }
            }
            let inline_keys = match &ic.jwks {
                Some(doc) => KeySet::parse(doc, KeySource::Inline).map_err(|e| field_error(f("jwks"), e.to_string()))?,
                None => KeySet::default(),
            };
            if ic.jwks_uri.is_none() && ic.jwks.is_none() && !ic.discovery && ic.introspection.is_none() {
                return Err(field_error(f("jwks_uri"), "give jwks_uri, jwks, or both"));
            }
            if inline_keys.has_symmetric() && (ic.jwks_uri.is_some() || ic.discovery) {
                return Err(field_error(f("jwks"), "symmetric keys cannot be mixed with a fetched JWKS"));
            }
            for k in &inline_keys.keys {
                let fits_any = algorithms.iter().any(|a| k.material.family() == a.key_family());
                if k.material.family() == KeyFamily::Oct && !fits_any {
                    return Err(field_error(f("jwks"), "an oct key is given but no HS* algorithm is allowed"));
                }
            }
            for (j, a) in ic.audiences.iter().enumerate() {
                if a.is_empty() {
                    return Err(field_error(format!("issuers[{i}].audiences[{j}]"), "must not be empty"));
                }
            }
            issuers.push(IssuerPolicy {
                issuer: ic.issuer,
                audiences: ic.audiences,
                jwks_uri: ic.jwks_uri,
                inline_keys,
                algorithms,
                discovery: ic.discovery,
                allow_insecure: ic.allow_insecure_jwks_uri,
                introspection: ic.introspection,
                token_prefix: ic.token_prefix,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in issuers.iter().enumerate() {
            if let Some(s) = &p.issuer {
                if !seen.insert(s.clone()) {
                    return Err(field_error(format!("issuers[{i}].issuer"), "duplicate issuer"));
                }
            }
        }
        Ok((issuers, insecure))
    }
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> (String, String) {
    (field.into(), message.into())
}

/// True for an `http://` URL whose host is loopback (`localhost`, `127.0.0.0/8`, `[::1]`).
/// Why `uri` may not be fetched for keys, if it may not: not an http(s) URL, or plain http off
/// loopback without `allow_insecure_jwks_uri`.
pub fn jwks_uri_problem(uri: &str, allow_insecure: bool) -> Option<&'static str> {
    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
        return Some("must be an http(s) URL");
    }
    if uri.starts_with("http://") && !is_loopback_url(uri) && !allow_insecure {
        return Some("http:// is refused (anyone on the path could replace the keys): use https://, or set allow_insecure_jwks_uri");
    }
    None
}

fn is_loopback_url(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else { return false };
    // A URL parser of the WHATWG standard (fetch's) reads `\` as `/` and drops tabs and
    // newlines, so `http://off.box\@localhost/` goes to off.box: no such character in a URL
    // taken as loopback.
    if rest.chars().any(|c| c == '\\' || c.is_ascii_whitespace() || c.is_ascii_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') { v6.split(']').next().unwrap_or("") } else { host.split(':').next().unwrap_or("") };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// What verification reads from the configuration: the issuers and the claim rules. The
/// validated configuration converts into it (`PendingToken::new(token, &policy)`).
#[derive(Debug, Clone, Copy)]
pub struct TokenRules<'p> {
    /// The accepted issuers ([`PendingToken::issuer_index`] indexes them).
    pub issuers: &'p [IssuerPolicy],
    /// Clock skew tolerance for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
    /// Longest accepted `exp - (iat or now)`, if any.
    pub max_lifetime_secs: Option<i64>,
    /// Reject tokens without `exp`.
    pub require_exp: bool,
    /// The claims a verified token keeps for the decisions after verification, sorted
    /// ([`super::claims::claims_read`]).
    pub claims: &'p [String],
}

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

/// The job for `token`'s signature under `key` (which must fit its `alg`); `None` when the
/// signature is not of the length the algorithm and key make.
fn signature_job<'a>(token: &'a UnverifiedToken<'_>, key: &'a Jwk, token_id: u64) -> Option<SignatureJob<'a>> {
    let alg = token.header.alg;
    let sig = &token.signature;
    let expected = match (&key.material, alg.key_family()) {
        (KeyMaterial::Rsa { n, .. }, KeyFamily::Rsa) => n.len(),
        (KeyMaterial::Ec { curve, .. }, KeyFamily::Ec(_)) => 2 * curve.coordinate_len(),
        (KeyMaterial::Ed25519 { .. }, KeyFamily::Ed25519) => 64,
        (KeyMaterial::Oct { .. }, KeyFamily::Oct) => alg.hash_len(),
        _ => return None,
    };
    (sig.len() == expected).then(|| SignatureJob { alg, key, signing_input: token.signing_input.as_bytes(), signature: sig, compact: token.raw, token_id })
}

/// A proof JWT signed by a key it carries itself — a DPoP proof (RFC 9449), whose `jwk` header is
/// the one key ever taken from a message, and only to check that very proof — awaiting its
/// signature check. Only [`PendingProof::finish`] with the [`SignatureProof`] of its own job
/// yields its claims.
#[derive(Debug)]
pub struct PendingProof<'t> {
    token: UnverifiedToken<'t>,
    /// Boxed: its address, which a [`SignatureProof`] names, must not change when the proof moves.
    key: Box<Jwk>,
    id: u64,
}

impl<'t> PendingProof<'t> {
    /// A parsed proof and the public key from its header (which must fit its `alg`).
    pub fn new(token: UnverifiedToken<'t>, key: Jwk) -> Result<PendingProof<'t>, AuthError> {
        if key.misfit(token.header.alg).is_some() || key.material.family() == KeyFamily::Oct {
            return Err(AuthError::Internal);
        }
        Ok(PendingProof { token, key: Box::new(key), id: NEXT_TOKEN_ID.fetch_add(1, Ordering::Relaxed) })
    }

    /// The proof's key.
    pub fn key(&self) -> &Jwk {
        &self.key
    }

    /// The signature check to run; `None` when the signature has the wrong length.
    pub fn job(&self) -> Option<SignatureJob<'_>> {
        signature_job(&self.token, &self.key, self.id)
    }

    /// The proof's claims, once `proof` (from this proof's own job) says its signature verifies.
    pub fn finish(self, proof: SignatureProof) -> Result<(Map<String, Value>, Jwk), AuthError> {
        let signature = (self.token.signature.as_ptr() as usize, self.token.signature.len());
        let signing_input = (self.token.signing_input.as_ptr() as usize, self.token.signing_input.len());
        if proof.token_id != self.id || proof.signature != signature || proof.signing_input != signing_input || proof.key != &*self.key as *const Jwk as usize {
            return Err(AuthError::Internal);
        }
        Ok((self.token.claims, *self.key))
    }
}

/// A token whose signature and claims passed every check. Only [`PendingToken::finish`] makes one
/// (and [`CachedToken::token`], from one `finish` made).
///
/// It keeps what the decisions after verification read, packed in one shared allocation (see
/// [`super::claims`]): issuer, key id, algorithm, `exp`, scopes, and the claims the policy names
/// ([`TokenRules::claims`]); every accessor below reads only those, so a token-cache hit decides
/// exactly as the verification that filled it. A fresh token also carries the whole payload for
/// display ([`VerifiedToken::claims`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    packed: Packed,
    /// The whole payload: from a fresh verification only (shared, not copied, by clones).
    payload: Option<Arc<Map<String, Value>>>,
}

/// A verified token as the token cache keeps it: the packed facts only, no payload. Made only
/// from a [`VerifiedToken`] ([`VerifiedToken::cached`]); turned back into one by
/// [`CachedToken::token`], so a cache holds nothing verification did not make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken(Packed);

impl CachedToken {
    /// The verified token again (without its payload).
    pub fn token(&self) -> VerifiedToken {
        VerifiedToken { packed: self.0.clone(), payload: None }
    }
    /// Heap bytes it holds (its one allocation).
    pub fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
    /// `exp` in whole seconds, if present.
    pub fn expires_at(&self) -> Option<i64> {
        self.0.expires_at()
    }
    /// Index of the issuer in the policy.
    pub fn issuer_index(&self) -> usize {
        self.0.issuer_index()
    }
}

impl VerifiedToken {
    /// Index of the issuer in the policy.
    pub fn issuer_index(&self) -> usize {
        self.packed.issuer_index()
    }
    /// The whole verified payload, for display (the CLI's and the JS package's `verify`): only
    /// from a fresh verification, `None` on a token-cache hit. Decisions read [`Self::claim`].
    pub fn claims(&self) -> Option<&Map<String, Value>> {
        self.payload.as_deref()
    }
    /// A claim the policy reads ([`TokenRules::claims`]), if the payload had it as a string, a
    /// number, a boolean or an array of strings; `None` for any other claim or shape.
    pub fn claim(&self, name: &str) -> Option<Claim<'_>> {
        self.packed.claim(name)
    }
    /// The names of the claims it keeps ([`Self::claim`]), in order.
    pub fn claim_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.packed.claim_names()
    }
    /// A claim as a header value: strings as is, numbers and booleans printed, arrays of
    /// strings joined by spaces; `None` for anything else.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        self.claim(name).map(|c| c.text())
    }
    /// The DPoP key thumbprint the token is bound to (`cnf.jkt`, RFC 9449), if any.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.text_claim("cnf.jkt")
    }
    /// The client certificate thumbprint the token is bound to (`cnf["x5t#S256"]`, RFC 8705), if
    /// any.
    pub fn cert_thumbprint(&self) -> Option<&str> {
        self.text_claim("cnf.x5t#S256")
    }
    /// `sub`, if present.
    pub fn subject(&self) -> Option<&str> {
        self.text_claim("sub")
    }
    /// `iss`, if present.
    pub fn issuer(&self) -> Option<&str> {
        self.text_claim("iss")
    }
    /// `jti`, if present.
    pub fn jti(&self) -> Option<&str> {
        self.text_claim("jti")
    }
    /// `iat` (a number, already checked), if present.
    pub fn issued_at(&self) -> Option<f64> {
        match self.claim("iat")? {
            Claim::Number(n) => n.as_f64(),
            _ => None,
        }
    }
    fn text_claim(&self, name: &str) -> Option<&str> {
        match self.claim(name)? {
            Claim::Text(s) => Some(s),
            _ => None,
        }
    }
    /// `exp` in whole seconds, if present.
    pub fn expires_at(&self) -> Option<i64> {
        self.packed.expires_at()
    }
    /// The algorithm that verified it (`None`: verified by introspection).
    pub fn alg(&self) -> Option<Algorithm> {
        self.packed.alg()
    }
    /// The key id that verified it.
    pub fn kid(&self) -> Option<&str> {
        self.packed.kid()
    }
    /// Scopes from `scope` (space-separated) and `scp` (array or string), sorted, each once.
    pub fn scopes(&self) -> impl Iterator<Item = &str> + '_ {
        self.packed.scopes()
    }
    /// The form the token cache keeps.
    pub fn cached(&self) -> CachedToken {
        CachedToken(self.packed.clone())
    }

    /// Checks a route requirement against the token's scopes.
    pub fn authorize(&self, requirement: &Requirement) -> Result<(), AuthError> {
        super::scope::require_scopes(|s| self.scopes().any(|h| h == s), requirement)
    }
}

impl<'t> PendingToken<'t> {
    /// Matches the token to a configured issuer (by `iss`) and checks `alg` against that issuer's
    /// allow-list.
    pub fn new<'p>(token: UnverifiedToken<'t>, rules: impl Into<TokenRules<'p>>) -> Result<PendingToken<'t>, AuthError> {
        let issuers = rules.into().issuers;
        let iss = match token.claims.get("iss") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(AuthError::MalformedClaims("iss is not a string")),
        };
        let issuer_index = if issuers.len() == 1 && issuers[0].issuer.is_none() {
            0
        } else {
            let iss = iss.ok_or(AuthError::IssuerMismatch)?;
            issuers.iter().position(|i| i.issuer.as_deref() == Some(iss)).ok_or(AuthError::IssuerMismatch)?
        };
        let alg = token.header.alg;
        if !issuers[issuer_index].algorithms.contains(&alg) {
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
        if key.misfit(self.token.header.alg).is_some() {
            return Err(AuthError::Internal);
        }
        signature_job(&self.token, key, self.id).ok_or(AuthError::BadSignature)
    }

    /// Checks the claims and returns the verified token: the facts decisions read packed, the
    /// payload moved in (uncopied) for display.
    /// `proof` must come from this token's job.
    pub fn finish<'p>(self, proof: SignatureProof, key: &Jwk, rules: impl Into<TokenRules<'p>>, now: i64) -> Result<VerifiedToken, AuthError> {
        let rules = rules.into();
        let signature = (self.token.signature.as_ptr() as usize, self.token.signature.len());
        let signing_input = (self.token.signing_input.as_ptr() as usize, self.token.signing_input.len());
        if proof.token_id != self.id || proof.signature != signature || proof.signing_input != signing_input || proof.key != key as *const Jwk as usize {
            return Err(AuthError::Internal);
        }
        let c = &self.token.claims;
        let (exp, scopes) = check_claims(c, self.issuer_index, &rules, now)?;
        let packed = Packed::new(&Facts {
            alg: Some(self.token.header.alg),
            issuer_index: self.issuer_index,
            expires_at: exp.map(|e| e as i64),
            kid: key.kid.as_deref(),
            scopes: &scopes,
            claims: c,
            keep: rules.claims,
        });
        Ok(VerifiedToken { packed, payload: Some(Arc::new(self.token.claims)) })
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

/// The claim checks every verified token passes, from a signed JWT or an introspection answer:
/// types, `exp` (required unless `require_exp` is off), `nbf`, `iat`, lifetime, `iss`, `aud`,
/// `cnf`. Returns `exp` and the scopes.
fn check_claims(c: &Map<String, Value>, issuer_index: usize, rules: &TokenRules<'_>, now: i64) -> Result<(Option<f64>, Vec<String>), AuthError> {
    let exp = numeric(c, "exp")?;
    let nbf = numeric(c, "nbf")?;
    let iat = numeric(c, "iat")?;
    for name in ["sub", "jti"] {
        if c.get(name).is_some_and(|v| !v.is_string()) {
            return Err(AuthError::MalformedClaims(if name == "sub" { "sub is not a string" } else { "jti is not a string" }));
        }
    }
    let scopes = scopes(c)?;
    confirmation(c)?;
    let leeway = rules.leeway_secs as f64;
    let nowf = now as f64;
    match exp {
        None if rules.require_exp => return Err(AuthError::MissingExp),
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
    if let (Some(max), Some(exp)) = (rules.max_lifetime_secs, exp) {
        let lifetime = exp - iat.unwrap_or(nowf);
        if lifetime > max as f64 {
            return Err(AuthError::LifetimeTooLong { lifetime: lifetime as i64, max });
        }
    }
    let issuer = &rules.issuers[issuer_index];
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
    Ok((exp, scopes))
}

impl VerifiedToken {
    /// An opaque token the issuer's introspection endpoint answered `active` for (RFC 7662):
    /// its answer's claims go through the same checks as a signed token's ([`check_claims`]); a
    /// missing `iss` is the issuer's own. Only the pipeline, after its call to the endpoint,
    /// makes one.
    pub(crate) fn from_introspection<'p>(
        mut answer: Map<String, Value>,
        issuer_index: usize,
        rules: impl Into<TokenRules<'p>>,
        now: i64,
    ) -> Result<VerifiedToken, AuthError> {
        let rules = rules.into();
        if let (None, Some(iss)) = (answer.get("iss"), rules.issuers.get(issuer_index).and_then(|i| i.issuer.clone())) {
            answer.insert("iss".into(), Value::String(iss));
        }
        let (exp, scopes) = check_claims(&answer, issuer_index, &rules, now)?;
        let packed =
            Packed::new(&Facts { alg: None, issuer_index, expires_at: exp.map(|e| e as i64), kid: None, scopes: &scopes, claims: &answer, keep: rules.claims });
        Ok(VerifiedToken { packed, payload: Some(Arc::new(answer)) })
    }
}

/// Checks `cnf` (RFC 7800): absent, or an object whose members are confirmation methods the gate
/// enforces — `jkt` (DPoP) and `x5t#S256` (a client certificate), non-empty strings. A token
/// bound by any other method is refused: accepting it as a bearer token would drop its binding.
fn confirmation(c: &Map<String, Value>) -> Result<(), AuthError> {
    let Some(cnf) = c.get("cnf") else { return Ok(()) };
    let o = cnf.as_object().ok_or(AuthError::MalformedClaims("cnf is not an object"))?;
    for (k, v) in o {
        match k.as_str() {
            "jkt" | "x5t#S256" if v.as_str().is_some_and(|s| !s.is_empty()) => {}
            "jkt" | "x5t#S256" => return Err(AuthError::MalformedClaims("a cnf member is not a non-empty string")),
            _ => return Err(AuthError::UnsupportedConfirmation),
        }
    }
    Ok(())
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
