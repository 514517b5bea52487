//! Structured decision records. Tokens, keys and secrets never appear: only a short SHA-256
//! fingerprint of a token, and where the credential was found. A leaf: the modules that find
//! and check credentials log through it, so it imports none of them.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// `sha256:` and the first 16 hex digits of the SHA-256 of `bytes`.
pub fn fingerprint(bytes: &[u8]) -> String {
    fingerprint_of_digest(&Sha256::digest(bytes).into())
}

/// [`fingerprint`] of bytes whose SHA-256 is already known (the token cache's key is that hash,
/// so a token is hashed once per request, not twice).
pub fn fingerprint_of_digest(sha256: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(&sha256[..8]))
}

/// A URL as logs and `explain` show it: credentials in its userinfo and its query (where a key
/// URL may carry an API key) replaced by `…`, the fragment dropped. What stays names the host
/// and path an operator needs to find the fetch.
pub fn url_for_display(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = authority.rsplit_once('@').map_or(authority.to_string(), |(_, host)| format!("…@{host}"));
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let query = if tail[path_end..].starts_with('?') { "?…" } else { "" };
    let sep = if scheme.is_empty() { "" } else { "://" };
    format!("{scheme}{sep}{authority}{}{query}", &tail[..path_end])
}

/// The number 16 lowercase hex digits spell (a [`fingerprint`]'s digits, or a bucket key's), if
/// `hex` is exactly that.
pub(crate) fn hex64(hex: &str) -> Option<u64> {
    let lower_hex = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    lower_hex.then(|| u64::from_str_radix(hex, 16).ok()).flatten()
}

/// The first 8 bytes of SHA-256 of `bytes`, big-endian: the 64-bit tag of any other text.
pub(crate) fn sha256_64(bytes: &[u8]) -> u64 {
    let d = Sha256::digest(bytes);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Where the credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// `Authorization: Bearer`.
    Header,
    /// `Authorization: DPoP` (a DPoP-bound token with its proof).
    Dpop,
    /// The configured cookie.
    Cookie,
    /// The configured query parameter.
    Query,
    /// A WebSocket upgrade's `Sec-WebSocket-Protocol` entry `edgeward.bearer.<JWT>`.
    Subprotocol,
    /// An API key: the configured header (default `X-API-Key`) or `Authorization: ApiKey`.
    ApiKey,
}

impl CredentialSource {
    /// True for API keys, false for JWTs.
    pub fn is_api_key(self) -> bool {
        self == CredentialSource::ApiKey
    }
}

/// One line per request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DecisionLog<'a> {
    /// Always "decision".
    pub event: &'static str,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Request id.
    pub request_id: &'a str,
    /// "accept", "public", "reject", or "control" (an admin call the gate passed to the control
    /// Worker, which audits it).
    pub decision: &'static str,
    /// HTTP status sent (for accepted requests, the origin's).
    pub status: u16,
    /// Reason code for rejections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Internal detail for the operator (never sent to the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Method (canonical once the request is; until then a bounded prefix of what came).
    pub method: String,
    /// Path (canonical once the request is; until then a bounded prefix of what came).
    pub path: String,
    /// The route rule that matched (its `path`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The client address, per `logging.client_ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// The `User-Agent` (at most 256 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's country, as the platform saw it (`request.cf.country`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The data center that served it (`request.cf.colo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colo: Option<String>,
    /// From arrival to the record (set by the adapter when it writes the record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// An accepted request left out by `logging.accepted`'s sample (refusals are always written).
    #[serde(skip)]
    pub sampled_out: bool,
    /// The refusal was of a revoked token or API key (for the usage counters; not written).
    #[serde(skip)]
    pub revoked: bool,
    /// Where the credential was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialSource>,
    /// Token fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_fp: Option<String>,
    /// Verified issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Verified subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The verified token's client (`azp`, else `client_id`; at most 256 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Key id used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<&'static str>,
    /// JWKS fetches this request waited for.
    pub jwks_fetches: u32,
    /// Verified-token cache outcome ("hit" or "miss"), when a token was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_cache: Option<&'static str>,
    /// API key id (never the key), once its record was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// API key lookup cache outcome ("hit" or "miss").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_cache: Option<&'static str>,
    /// KV reads this request waited for (API key lookups).
    #[serde(skip_serializing_if = "is_zero")]
    pub kv_reads: u32,
    /// The verification steps taken, when the I/O asks for them ([`super::io::GateIo::tracing`]:
    /// the JS package's `explain`); never logged.
    #[serde(skip)]
    pub trace: Option<Vec<Step>>,
}

/// One step of the verification the pipeline took ([`DecisionLog::trace`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `cache`, `parse`, `issuer`, `key`, `signature` or `claims`.
    pub name: &'static str,
    /// What passed, or the refusal.
    pub outcome: Result<String, super::error::AuthError>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl DecisionLog<'_> {
    /// Records a pipeline step when `tracing` ([`DecisionLog::trace`]) and passes `r` on.
    pub(crate) fn step<T>(
        &mut self,
        tracing: bool,
        name: &'static str,
        r: Result<T, super::error::AuthError>,
        detail: impl FnOnce(&T) -> String,
    ) -> Result<T, super::error::AuthError> {
        if tracing {
            let outcome = match &r {
                Ok(v) => Ok(detail(v)),
                Err(e) => Err(e.clone()),
            };
            self.trace.get_or_insert_with(Vec::new).push(Step { name, outcome });
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::url_for_display;

    #[test]
    fn url_for_display_hides_userinfo_and_query() {
        for (url, shown) in [
            ("https://id.example/.well-known/jwks.json", "https://id.example/.well-known/jwks.json"),
            ("https://user:hunter2@id.example:8443/k?api_key=SEKRIT#f", "https://…@id.example:8443/k?…"),
            ("http://127.0.0.1:9/jwks?x=1", "http://127.0.0.1:9/jwks?…"),
            ("https://id.example?k=v", "https://id.example?…"),
            ("https://a@b@id.example/", "https://…@id.example/"),
            ("https://id.example/p#frag", "https://id.example/p"),
            ("no scheme?q", "no scheme?…"),
        ] {
            assert_eq!(url_for_display(url), shown, "{url}");
        }
    }
}
