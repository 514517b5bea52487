//! Every way a request can be refused, and the one table that maps each to its HTTP status,
//! `WWW-Authenticate` challenge (RFC 6750) and stable reason code.

use super::access::Accepts;
use std::fmt;

/// Who caused a refusal (as in pingora-error): decides status class and log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something unacceptable (4xx).
    Client,
    /// The issuer's JWKS or the origin failed (5xx).
    Upstream,
    /// Edgeward's own configuration or a bug (500).
    Internal,
}

/// Why a request was refused. Each variant has a stable [`code`](AuthError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credential in the request.
    #[error("no credential")]
    MissingToken,
    /// The token exceeds `max_token_bytes`.
    #[error("token is {len} bytes, over the {max} byte limit")]
    TokenTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three segments of canonical base64url.
    #[error("token is not three segments of canonical base64url")]
    MalformedToken,
    /// The header is not a strict JSON object of the expected shape.
    #[error("token header is malformed: {0}")]
    MalformedHeader(&'static str),
    /// An object in the header or claims has the same member twice.
    #[error("duplicate member \"{0}\"")]
    DuplicateMember(String),
    /// The header has no `alg`.
    #[error("token header has no alg")]
    AlgMissing,
    /// `alg` is some case of `none`.
    #[error("unsigned tokens (alg none) are never accepted")]
    AlgNone,
    /// `alg` is unknown or not allowed for the issuer.
    #[error("alg {0} is not allowed")]
    AlgNotAllowed(String),
    /// The header uses `crit`, `b64` or `zip`.
    #[error("header parameter \"{0}\" is not supported")]
    UnsupportedHeader(&'static str),
    /// The claims are not a strict JSON object or a registered claim has the wrong type.
    #[error("claims are malformed: {0}")]
    MalformedClaims(&'static str),
    /// `iss` does not name a configured issuer.
    #[error("issuer is not accepted")]
    IssuerMismatch,
    /// The `kid` names no key of the issuer (after any allowed refetch).
    #[error("no key with this kid")]
    UnknownKid,
    /// No `kid` and no single key fits, or the `kid` key does not fit `alg`.
    #[error("no usable key: {0}")]
    NoMatchingKey(&'static str),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` is missing while `require_exp` is on.
    #[error("token has no exp")]
    MissingExp,
    /// Expired: `now >= exp + leeway`.
    #[error("token expired at {exp}")]
    Expired {
        /// Now (Unix seconds).
        now: i64,
        /// The `exp` claim.
        exp: i64,
    },
    /// `nbf` is after `now + leeway`.
    #[error("token not valid before {nbf}")]
    NotYetValid {
        /// Now.
        now: i64,
        /// The `nbf` claim.
        nbf: i64,
    },
    /// `iat` is after `now + leeway`.
    #[error("token issued in the future")]
    IssuedInFuture {
        /// Now.
        now: i64,
        /// The `iat` claim.
        iat: i64,
    },
    /// `exp - (iat or now)` exceeds `max_lifetime_secs`.
    #[error("token lifetime {lifetime}s exceeds {max}s")]
    LifetimeTooLong {
        /// The lifetime.
        lifetime: i64,
        /// The limit.
        max: i64,
    },
    /// `aud` contains none of the configured audiences.
    #[error("audience not accepted")]
    AudienceMismatch,
    /// The token (its `jti`, its subject before a time, or its key) is revoked.
    #[error("token revoked")]
    TokenRevoked,
    /// The route needs scopes the token lacks.
    #[error("missing scope: {missing}")]
    InsufficientScope {
        /// Space-separated required scopes.
        required: String,
        /// The first scope that is missing.
        missing: String,
    },
    /// A cookie-authenticated unsafe request without a same-origin signal or CSRF token.
    #[error("cross-site request refused")]
    CsrfRejected,
    /// The client's address is on the block list ([`super::ipblock`]).
    #[error("client address blocked")]
    IpBlocked,
    /// A CORS preflight from an origin, or for a method or headers, that `cors` does not allow.
    #[error("CORS preflight refused")]
    CorsRejected,
    /// `dpop.replay: "exact"` and the replay Durable Object is unreachable: fail closed.
    #[error("DPoP replay check unavailable")]
    DpopReplayUnavailable,
    /// An opaque token its issuer's introspection endpoint answered `active: false` for.
    #[error("token is not active")]
    TokenInactive,
    /// The introspection endpoint did not answer in time, or not with a usable answer.
    #[error("token introspection unavailable")]
    IntrospectionUnavailable,
    /// The token's `cnf` names a confirmation method the gate does not enforce (only `jkt` and
    /// `x5t#S256`): accepting it as a bearer token would drop its binding.
    #[error("token bound by an unsupported confirmation method")]
    UnsupportedConfirmation,
    /// A certificate-bound token (`cnf["x5t#S256"]`, RFC 8705) without the client certificate
    /// it is bound to (none, not verified by the platform, or another one).
    #[error("token is bound to another client certificate")]
    CertificateMismatch,
    /// The DPoP proof (RFC 9449) is missing or fails a check.
    #[error("DPoP proof refused: {0}")]
    Dpop(DpopFailure),
    /// The route wants DPoP server nonces and the proof has none, or a stale one: the client
    /// retries with this fresh nonce.
    #[error("DPoP nonce required")]
    DpopNonce(String),
    /// A route with `dpop: "required"` and a token that is not sent as a DPoP-bound token.
    #[error("DPoP required")]
    DpopRequired,
    /// A DPoP-bound token (`cnf.jkt`) sent as a bearer token: no downgrade.
    #[error("DPoP-bound token sent as a bearer token")]
    DpopBoundAsBearer,
    /// `Authorization: DPoP` on a route with `dpop: "disabled"`.
    #[error("DPoP is not accepted on this route")]
    DpopNotAccepted,
    /// A WebSocket upgrade on a route without `websocket: true`, or not a `GET`.
    #[error("WebSocket upgrade not allowed on this route")]
    WebSocketNotAllowed,
    /// A token sent as the `edgeward.bearer.` subprotocol with no other subprotocol offered.
    #[error("the token subprotocol needs another subprotocol beside it")]
    WebSocketProtocolRequired,
    /// Over a rate limit.
    #[error("rate limit {rule} exceeded")]
    RateLimited {
        /// Rule name.
        rule: String,
        /// Seconds until a request would pass.
        retry_after_secs: i64,
        /// `RateLimit-Policy` and `RateLimit` header values.
        headers: Vec<(String, String)>,
    },
    /// `exact` rate limiting is configured to fail closed and its Durable Object is unreachable.
    #[error("rate limiter unavailable")]
    RateLimiterUnavailable,
    /// No fresh revocation snapshot could be had for longer than allowed: fail closed.
    #[error("revocation list unavailable")]
    RevocationsUnavailable,
    /// No usable key could be had from the issuer (fetch failed, nothing cached or stale).
    #[error("issuer keys unavailable")]
    JwksUnavailable,
    /// The origin did not answer.
    #[error("origin unreachable")]
    OriginUnreachable,
    /// The origin did not send its response headers within the route's timeout.
    #[error("origin timed out")]
    OriginTimeout,
    /// A gate built without the control plane could not reach it (the `EDGEWARD_CONTROL`
    /// service binding is missing or did not answer) for an admin API request.
    #[error("admin API unavailable")]
    AdminUnavailable,
    /// The configuration is invalid; every request fails closed.
    #[error("configuration invalid")]
    ConfigInvalid,
    /// A bug; never expected.
    #[error("internal error")]
    Internal,
    /// The route takes only API keys and none was sent.
    #[error("no API key")]
    MissingApiKey,
    /// The route takes a JWT or an API key and neither was sent.
    #[error("no credential (a bearer token or an API key)")]
    MissingCredential,
    /// A credential of a kind the route does not take (an API key on a JWT route, or the reverse).
    #[error("this route does not take this kind of credential")]
    CredentialNotAccepted(Accepts),
    /// Not an Edgeward key: prefix, length, characters or checksum wrong (no lookup was made).
    #[error("API key is malformed: {0}")]
    ApiKeyMalformed(FormatError),
    /// The key is unknown, disabled, expired, not yet valid, rotated out or revoked. The client
    /// is never told which (the log is).
    #[error("API key refused: {0}")]
    ApiKeyInvalid(ApiKeyFailure),
    /// A valid key used from a client address outside its allowed ranges.
    #[error("client address not allowed for this API key")]
    IpNotAllowed,
    /// The key store (KV) or the pepper secret is unavailable.
    #[error("API key store unavailable")]
    ApiKeysUnavailable,
    /// The path is spelled in a way origins read differently (see [`crate::core::canonical`]).
    #[error("ambiguous path: {0}")]
    AmbiguousPath(PathProblem),
    /// The path is longer than `request.max_path_bytes`.
    #[error("path is {len} bytes, over the {max} byte limit")]
    PathTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The method is not an HTTP token.
    #[error("malformed method")]
    BadMethod,
    /// `CONNECT`, `TRACE` or `TRACK`: never forwarded.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A method override header or `_method` parameter, with `request.method_override: reject`.
    #[error("method override refused")]
    MethodOverride,
    /// The token query parameter appears under another spelling (case) of its name.
    #[error("the token parameter appears under another spelling of its name")]
    AmbiguousQuery,
    /// A claim to forward as a header has a value no header can carry verbatim (control or
    /// non-ASCII characters, leading or trailing space), with `request.claim_values: reject`.
    #[error("claim for header {header} cannot be forwarded verbatim")]
    ClaimNotForwardable {
        /// The header the claim was to go in.
        header: String,
    },
}

/// Why a well-formed API key was refused (for the log only; the client sees `api_key_invalid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyFailure {
    /// No record under its hash.
    #[error("unknown")]
    Unknown,
    /// Disabled by an operator.
    #[error("disabled")]
    Disabled,
    /// Past its `expires_at`.
    #[error("expired")]
    Expired,
    /// Before its `not_before`.
    #[error("not yet valid")]
    NotYetValid,
    /// An old secret past the end of its rotation overlap.
    #[error("rotated out")]
    RotatedOut,
    /// Its id is on the revocation list.
    #[error("revoked")]
    Revoked,
}

/// Which check of a DPoP proof (RFC 9449 §4.3) failed; each has its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopFailure {
    /// No `DPoP` header with a bound token or `Authorization: DPoP`.
    #[error("no DPoP proof")]
    Missing,
    /// More than one `DPoP` header (or several proofs in one).
    #[error("more than one DPoP proof")]
    Multiple,
    /// Not a compact JWS with a strict JSON header and claims.
    #[error("the proof is not a well-formed JWT")]
    Malformed,
    /// `typ` is not `dpop+jwt`.
    #[error("typ is not dpop+jwt")]
    Typ,
    /// `alg` is symmetric, `none` or not in `dpop.algorithms`.
    #[error("alg is not an allowed asymmetric algorithm")]
    Alg,
    /// No `jwk` header, a private or unsupported key, or one that does not fit `alg`.
    #[error("jwk is missing, not a public key, or does not fit alg")]
    Jwk,
    /// The signature does not verify with the proof's key.
    #[error("signature does not verify")]
    Signature,
    /// `htm` is not the request's method.
    #[error("htm is not the request method")]
    Htm,
    /// `htu` is not the request's URL (without query and fragment), compared canonically.
    #[error("htu is not the request URL")]
    Htu,
    /// `iat` missing or outside `dpop.iat_window_secs` of now.
    #[error("iat is missing or outside the accepted window")]
    Iat,
    /// `jti` missing or not a string.
    #[error("jti is missing")]
    Jti,
    /// This proof's `jti` was seen already.
    #[error("the proof was used already")]
    Replay,
    /// `ath` missing or not the hash of the access token.
    #[error("ath is not the hash of the access token")]
    Ath,
    /// The token's `cnf.jkt` is not the thumbprint of the proof's key.
    #[error("the token is bound to another key")]
    KeyMismatch,
}

impl DpopFailure {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            DpopFailure::Missing => "dpop_proof_missing",
            DpopFailure::Multiple => "dpop_proof_multiple",
            DpopFailure::Malformed => "dpop_proof_malformed",
            DpopFailure::Typ => "dpop_typ",
            DpopFailure::Alg => "dpop_alg",
            DpopFailure::Jwk => "dpop_jwk",
            DpopFailure::Signature => "dpop_signature",
            DpopFailure::Htm => "dpop_htm",
            DpopFailure::Htu => "dpop_htu",
            DpopFailure::Iat => "dpop_iat",
            DpopFailure::Jti => "dpop_jti",
            DpopFailure::Replay => "dpop_replay",
            DpopFailure::Ath => "dpop_ath",
            DpopFailure::KeyMismatch => "dpop_key_mismatch",
        }
    }
}

/// Why a key's text is refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not `ew_live_` / `ew_test_`.
    #[error("not an Edgeward key (prefix ew_live_ or ew_test_)")]
    Prefix,
    /// Wrong length or a character outside base62.
    #[error("wrong length or characters")]
    Shape,
    /// The checksum does not match: mistyped or made up.
    #[error("checksum mismatch")]
    Checksum,
    /// A key of another environment (a test key at a live edge).
    #[error("key of another environment")]
    Environment,
}

/// Why a path was refused (the log says which; the client gets `ambiguous_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathProblem {
    /// Not origin form (`/…`): `*`, absolute form, empty.
    #[error("not an origin-form path")]
    NotOriginForm,
    /// `%2F` or `%5C`.
    #[error("encoded slash or backslash")]
    EncodedSlash,
    /// A raw `\`.
    #[error("backslash")]
    Backslash,
    /// A `;` path parameter (raw, or encoded as `%3B`).
    #[error("path parameter (;)")]
    PathParams,
    /// A `.` or `..` segment spelled with `%2E`.
    #[error("encoded dot segment")]
    EncodedDotSegment,
    /// `%25` followed by two hex digits: decoded twice, it is another path.
    #[error("double percent-encoding")]
    DoubleEncoding,
    /// `%` not followed by two hex digits.
    #[error("broken percent-encoding")]
    BadPercentEncoding,
    /// Percent-encoded bytes that are not UTF-8 (overlong forms included).
    #[error("invalid or overlong UTF-8")]
    InvalidUtf8,
    /// A control character, raw or encoded.
    #[error("control character")]
    ControlCharacter,
    /// A code point an origin may fold to ASCII (NFKC).
    #[error("character that normalizes to ASCII")]
    AsciiLookalike,
    /// A segment Windows reads as another name: a trailing `.` or space, `::$` (an NTFS stream),
    /// `~` and a digit (an 8.3 short name).
    #[error("Windows path alias")]
    WindowsAlias,
    /// The route rule the request falls under depends on letter case.
    #[error("the matching route rule depends on letter case")]
    CaseDependent,
}

/// A refusal ready for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// Stable reason code (`expired`, `missing_token`, ...).
    pub code: &'static str,
    /// RFC 6750 error code, when there is one.
    pub rfc_error: Option<&'static str>,
    /// Short public description (no internal detail).
    pub message: String,
    /// `WWW-Authenticate` value, for 401 and 403.
    pub www_authenticate: Option<String>,
    /// Who caused it.
    pub side: Side,
}

impl AuthError {
    /// The stable reason code. These strings are a contract: logs, metrics, tests and the JS
    /// package rely on them.
    pub fn code(&self) -> &'static str {
        use AuthError::*;
        match self {
            MissingToken => "missing_token",
            TokenTooLarge { .. } => "token_too_large",
            MalformedToken => "malformed_token",
            MalformedHeader(_) => "malformed_header",
            DuplicateMember(_) => "duplicate_member",
            AlgMissing => "alg_missing",
            AlgNone => "alg_none",
            AlgNotAllowed(_) => "alg_not_allowed",
            UnsupportedHeader(_) => "unsupported_header",
            MalformedClaims(_) => "malformed_claims",
            IssuerMismatch => "issuer_mismatch",
            UnknownKid => "unknown_kid",
            NoMatchingKey(_) => "no_matching_key",
            BadSignature => "bad_signature",
            MissingExp => "missing_exp",
            Expired { .. } => "expired",
            NotYetValid { .. } => "not_yet_valid",
            IssuedInFuture { .. } => "issued_in_future",
            LifetimeTooLong { .. } => "lifetime_too_long",
            AudienceMismatch => "audience_mismatch",
            TokenRevoked => "token_revoked",
            InsufficientScope { .. } => "insufficient_scope",
            CsrfRejected => "csrf_rejected",
            IpBlocked => "ip_blocked",
            CorsRejected => "cors_rejected",
            TokenInactive => "token_inactive",
            DpopReplayUnavailable => "dpop_replay_unavailable",
            IntrospectionUnavailable => "introspection_unavailable",
            UnsupportedConfirmation => "cnf_unsupported",
            CertificateMismatch => "certificate_mismatch",
            Dpop(f) => f.code(),
            DpopNonce(_) => "dpop_nonce_required",
            DpopRequired => "dpop_required",
            DpopBoundAsBearer => "dpop_bound_token_as_bearer",
            DpopNotAccepted => "dpop_not_accepted",
            WebSocketNotAllowed => "websocket_not_allowed",
            WebSocketProtocolRequired => "websocket_protocol_required",
            RateLimited { .. } => "rate_limited",
            RateLimiterUnavailable => "rate_limiter_unavailable",
            RevocationsUnavailable => "revocations_unavailable",
            JwksUnavailable => "jwks_unavailable",
            OriginUnreachable => "origin_unreachable",
            OriginTimeout => "origin_timeout",
            AdminUnavailable => "admin_unavailable",
            ConfigInvalid => "config_invalid",
            Internal => "internal_error",
            MissingApiKey => "missing_api_key",
            MissingCredential => "missing_credential",
            CredentialNotAccepted(_) => "credential_not_accepted",
            ApiKeyMalformed(_) => "api_key_malformed",
            ApiKeyInvalid(_) => "api_key_invalid",
            IpNotAllowed => "ip_not_allowed",
            ApiKeysUnavailable => "api_keys_unavailable",
            AmbiguousPath(_) => "ambiguous_path",
            PathTooLong { .. } => "path_too_long",
            BadMethod => "bad_method",
            MethodNotAllowed => "method_not_allowed",
            MethodOverride => "method_override",
            AmbiguousQuery => "ambiguous_query",
            ClaimNotForwardable { .. } => "claim_not_forwardable",
        }
    }

    /// Who caused it. Total: a new variant does not compile until it is placed here.
    pub fn side(&self) -> Side {
        use AuthError::*;
        match self {
            IntrospectionUnavailable
            | DpopReplayUnavailable
            | JwksUnavailable
            | OriginUnreachable
            | OriginTimeout
            | AdminUnavailable
            | RateLimiterUnavailable
            | RevocationsUnavailable
            | ApiKeysUnavailable => Side::Upstream,
            ConfigInvalid | Internal => Side::Internal,
            MissingToken
            | TokenTooLarge { .. }
            | MalformedToken
            | MalformedHeader(_)
            | DuplicateMember(_)
            | AlgMissing
            | AlgNone
            | AlgNotAllowed(_)
            | UnsupportedHeader(_)
            | MalformedClaims(_)
            | IssuerMismatch
            | UnknownKid
            | NoMatchingKey(_)
            | BadSignature
            | MissingExp
            | Expired { .. }
            | NotYetValid { .. }
            | IssuedInFuture { .. }
            | LifetimeTooLong { .. }
            | AudienceMismatch
            | TokenRevoked
            | InsufficientScope { .. }
            | CsrfRejected
            | IpBlocked
            | CorsRejected
            | WebSocketNotAllowed
            | WebSocketProtocolRequired
            | TokenInactive
            | UnsupportedConfirmation
            | CertificateMismatch
            | Dpop(_)
            | DpopNonce(_)
            | DpopRequired
            | DpopBoundAsBearer
            | DpopNotAccepted
            | RateLimited { .. }
            | MissingApiKey
            | MissingCredential
            | CredentialNotAccepted(_)
            | ApiKeyMalformed(_)
            | ApiKeyInvalid(_)
            | IpNotAllowed
            | AmbiguousPath(_)
            | PathTooLong { .. }
            | BadMethod
            | MethodNotAllowed
            | MethodOverride
            | AmbiguousQuery
            | ClaimNotForwardable { .. } => Side::Client,
        }
    }

    /// The one mapping from error to wire response. `realm` goes into the challenge.
    pub fn rejection(&self, realm: &str) -> Rejection {
        let realm = quote(realm);
        // API-key refusals: their own challenge scheme (`ApiKey`), never RFC 6750's error codes.
        let api_key = |status: u16, err: Option<&str>, message: String, accepts: Accepts| {
            let www_authenticate = (status == 401).then(|| match (accepts, err) {
                (Accepts::Either, _) => format!("Bearer realm={realm}, ApiKey realm={realm}"),
                (Accepts::Jwt, _) => format!("Bearer realm={realm}"),
                (Accepts::ApiKey, None) => format!("ApiKey realm={realm}"),
                (Accepts::ApiKey, Some(e)) => format!("ApiKey realm={realm}, error=\"{e}\", error_description={}", quote(&message)),
            });
            Rejection { status, code: self.code(), rfc_error: None, message, www_authenticate, side: self.side() }
        };
        let (status, rfc_error, message): (u16, Option<&'static str>, String) = match self {
            AuthError::MissingApiKey => return api_key(401, None, "API key required".into(), Accepts::ApiKey),
            AuthError::MissingCredential => return api_key(401, None, "authentication required (a bearer token or an API key)".into(), Accepts::Either),
            AuthError::CredentialNotAccepted(a) => return api_key(401, None, self.to_string(), *a),
            AuthError::ApiKeyMalformed(_) => return api_key(401, Some("invalid_key"), "API key is malformed".into(), Accepts::ApiKey),
            AuthError::ApiKeyInvalid(_) => return api_key(401, Some("invalid_key"), "API key not accepted".into(), Accepts::ApiKey),
            AuthError::IpNotAllowed => return api_key(403, None, self.to_string(), Accepts::ApiKey),
            AuthError::ApiKeysUnavailable => return api_key(503, None, "API key store unavailable; retry later".into(), Accepts::ApiKey),
            AuthError::MissingToken => (401, None, "authentication required".into()),
            AuthError::InsufficientScope { .. } => (403, Some("insufficient_scope"), self.to_string()),
            AuthError::CsrfRejected => (403, None, "cross-site request refused: same-origin signal or CSRF token required".into()),
            AuthError::IpBlocked => (403, None, "requests from this address are blocked for now".into()),
            AuthError::CorsRejected => (403, None, "CORS preflight refused: origin, method or headers not allowed".into()),
            AuthError::RateLimited { .. } => (429, None, "too many requests; retry later".into()),
            AuthError::RevocationsUnavailable => (503, None, "revocation list unavailable; retry later".into()),
            AuthError::RateLimiterUnavailable => (503, None, "rate limiter unavailable; retry later".into()),
            AuthError::JwksUnavailable => (503, None, "issuer keys are unavailable; retry later".into()),
            AuthError::IntrospectionUnavailable => (503, None, "the token could not be checked with its issuer; retry later".into()),
            AuthError::DpopReplayUnavailable => (503, None, "the DPoP proof could not be checked for replay; retry later".into()),
            AuthError::OriginUnreachable => (502, None, "the origin did not answer".into()),
            AuthError::OriginTimeout => (504, None, "the origin did not answer in time".into()),
            AuthError::AdminUnavailable => (503, None, "the admin API is unavailable; retry later".into()),
            AuthError::ConfigInvalid => (500, None, "gateway configuration is invalid".into()),
            AuthError::Internal => (500, None, "internal error".into()),
            // The request itself, before any credential: no challenge.
            AuthError::AmbiguousPath(_) => (400, None, "the path is spelled in a way origins read differently".into()),
            AuthError::PathTooLong { .. } => (414, None, "the path is too long".into()),
            AuthError::BadMethod => (400, None, "malformed method".into()),
            AuthError::MethodNotAllowed => (405, None, "this method is not allowed".into()),
            AuthError::Dpop(f) => {
                let message = format!("DPoP proof refused: {f}");
                let www = format!("DPoP realm={realm}, error=\"invalid_dpop_proof\", error_description={}", quote(&message));
                return Rejection {
                    status: 401,
                    code: self.code(),
                    rfc_error: Some("invalid_dpop_proof"),
                    message,
                    www_authenticate: Some(www),
                    side: self.side(),
                };
            }
            AuthError::DpopNonce(_) => {
                let message = "a DPoP server nonce is required: retry with the one in DPoP-Nonce".to_string();
                let www = format!("DPoP realm={realm}, error=\"use_dpop_nonce\", error_description={}", quote(&message));
                return Rejection {
                    status: 401,
                    code: self.code(),
                    rfc_error: Some("use_dpop_nonce"),
                    message,
                    www_authenticate: Some(www),
                    side: self.side(),
                };
            }
            AuthError::DpopRequired => {
                let message = "this route takes DPoP-bound tokens only".to_string();
                return Rejection {
                    status: 401,
                    code: self.code(),
                    rfc_error: None,
                    message,
                    www_authenticate: Some(format!("DPoP realm={realm}")),
                    side: self.side(),
                };
            }
            AuthError::DpopNotAccepted => (401, None, self.to_string()),
            AuthError::WebSocketNotAllowed => (400, None, "this route does not take WebSocket upgrades".into()),
            AuthError::WebSocketProtocolRequired => {
                (400, None, "a token sent as a WebSocket subprotocol needs another subprotocol for the origin to select".into())
            }
            AuthError::MethodOverride => (400, None, "method override headers and parameters are refused".into()),
            AuthError::AmbiguousQuery => (400, None, "the token parameter appears under another spelling of its name".into()),
            AuthError::ClaimNotForwardable { .. } => (403, None, "a claim of this token cannot be forwarded to the origin".into()),
            // Every other refusal is about the token itself. The description names the check,
            // never the token's contents beyond what the client already holds.
            AuthError::TokenTooLarge { .. }
            | AuthError::MalformedToken
            | AuthError::MalformedHeader(_)
            | AuthError::DuplicateMember(_)
            | AuthError::AlgMissing
            | AuthError::AlgNone
            | AuthError::AlgNotAllowed(_)
            | AuthError::UnsupportedHeader(_)
            | AuthError::MalformedClaims(_)
            | AuthError::IssuerMismatch
            | AuthError::UnknownKid
            | AuthError::NoMatchingKey(_)
            | AuthError::BadSignature
            | AuthError::MissingExp
            | AuthError::Expired { .. }
            | AuthError::NotYetValid { .. }
            | AuthError::IssuedInFuture { .. }
            | AuthError::LifetimeTooLong { .. }
            | AuthError::AudienceMismatch
            | AuthError::TokenInactive
            | AuthError::UnsupportedConfirmation
            | AuthError::CertificateMismatch
            | AuthError::DpopBoundAsBearer
            | AuthError::TokenRevoked => (401, Some("invalid_token"), self.public_description()),
        };
        let www_authenticate = match (status, rfc_error) {
            (401, None) => Some(format!("Bearer realm={realm}")),
            (401 | 403, Some(err)) => Some(format!("Bearer realm={realm}, error=\"{err}\", error_description={}", quote(&message))),
            _ => None,
        }
        .map(|mut h| {
            if let AuthError::InsufficientScope { required, .. } = self {
                h.push_str(&format!(", scope={}", quote(required)));
            }
            h
        });
        Rejection { status, code: self.code(), rfc_error, message, www_authenticate, side: self.side() }
    }

    fn public_description(&self) -> String {
        match self {
            AuthError::Expired { .. } => "token expired".into(),
            AuthError::NotYetValid { .. } => "token not yet valid".into(),
            AuthError::IssuedInFuture { .. } => "token issued in the future".into(),
            other => other.to_string(),
        }
    }
}

/// A quoted-string (RFC 9110 §5.6.4) holding only printable ASCII; others become `?`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_gets_a_bare_challenge() {
        let r = AuthError::MissingToken.rejection("edgeward");
        assert_eq!(r.status, 401);
        assert_eq!(r.www_authenticate.as_deref(), Some("Bearer realm=\"edgeward\""));
        assert_eq!(r.code, "missing_token");
        assert_eq!(r.rfc_error, None);
    }

    #[test]
    fn bad_token_gets_invalid_token() {
        let r = AuthError::Expired { now: 10, exp: 5 }.rejection("a \"b\"");
        assert_eq!(r.status, 401);
        assert_eq!(r.www_authenticate.as_deref(), Some("Bearer realm=\"a \\\"b\\\"\", error=\"invalid_token\", error_description=\"token expired\""));
        assert_eq!(r.code, "expired");
    }

    #[test]
    fn scope_gets_403_with_scope() {
        let r = AuthError::InsufficientScope { required: "admin write".into(), missing: "admin".into() }.rejection("r");
        assert_eq!(r.status, 403);
        assert!(r.www_authenticate.as_deref().unwrap().starts_with("Bearer realm=\"r\", error=\"insufficient_scope\""));
        assert!(r.www_authenticate.as_deref().unwrap().ends_with("scope=\"admin write\""));
    }

    #[test]
    fn upstream_and_internal_have_no_challenge() {
        for (e, s) in
            [(AuthError::JwksUnavailable, 503), (AuthError::OriginUnreachable, 502), (AuthError::AdminUnavailable, 503), (AuthError::ConfigInvalid, 500)]
        {
            let r = e.rejection("r");
            assert_eq!(r.status, s);
            assert_eq!(r.www_authenticate, None);
            assert_ne!(r.side, Side::Client);
        }
    }
}
