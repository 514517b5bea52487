//! Issuer metadata by discovery (`issuers[].discovery: true`): OpenID Connect Discovery
//! (`{issuer}/.well-known/openid-configuration`), else RFC 8414
//! (`/.well-known/oauth-authorization-server` inserted before the issuer's path). The document's
//! `issuer` must equal the configured one exactly (the mix-up defence: metadata served for
//! another issuer is never used), and its `jwks_uri` is held to the rules of a configured one
//! (https, or http on loopback, or `allow_insecure_jwks_uri`).
//!
//! Cached like a JWKS: fresh for the response's `max-age` clamped to `jwks_cache`'s bounds, the
//! last good document kept for `max_stale_secs` past that while refetches fail (at most one per
//! `unknown_kid_cooldown_secs`), and snapshotted to KV so a fresh isolate with a fresh snapshot
//! fetches nothing. Pure: the pipeline fetches and stores.

use super::jwks_cache::JwksCacheConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the gate takes from an issuer's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The issuer's JWKS.
    pub jwks_uri: String,
    /// Its token introspection endpoint (RFC 8414 `introspection_endpoint`), kept only for an
    /// issuer whose `introspection` names no endpoint (absent from snapshots of earlier gates:
    /// such a snapshot is refetched for that issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
}

/// The metadata URLs to try, in order.
pub fn metadata_urls(issuer: &str) -> [String; 2] {
    let issuer = issuer.trim_end_matches('/');
    let oidc = format!("{issuer}/.well-known/openid-configuration");
    // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
    let rest = issuer.split_once("://").map_or("", |(_, r)| r);
    let host_end = issuer.len() - rest.len() + rest.find('/').unwrap_or(rest.len());
    let oauth = format!("{}/.well-known/oauth-authorization-server{}", &issuer[..host_end], &issuer[host_end..]);
    [oidc, oauth]
}

/// Checks a metadata document served for `issuer`; the metadata, or why it is refused. With
/// `want_introspection` (the issuer's `introspection` names no endpoint) its
/// `introspection_endpoint` is required and held to a configured endpoint's rules.
pub fn parse_metadata(body: &str, issuer: &str, allow_insecure: bool, want_introspection: bool) -> Result<Metadata, String> {
    let doc: Value = serde_json::from_str(body).map_err(|_| "the metadata is not JSON".to_string())?;
    let o = doc.as_object().ok_or("the metadata is not a JSON object")?;
    match o.get("issuer").and_then(Value::as_str) {
        Some(i) if i == issuer => {}
        Some(_) => return Err("the metadata names another issuer (mix-up defence: not used)".into()),
        None => return Err("the metadata has no issuer".into()),
    }
    let jwks_uri = o.get("jwks_uri").and_then(Value::as_str).ok_or("the metadata has no jwks_uri")?;
    if let Some(problem) = super::verify::jwks_uri_problem(jwks_uri, allow_insecure) {
        return Err(format!("the metadata's jwks_uri: {problem}"));
    }
    let introspection_endpoint = if want_introspection {
        let e = o.get("introspection_endpoint").and_then(Value::as_str).ok_or("the metadata has no introspection_endpoint")?;
        if let Some(problem) = super::verify::jwks_uri_problem(e, allow_insecure) {
            return Err(format!("the metadata's introspection_endpoint: {problem}"));
        }
        Some(e.to_string())
    } else {
        None
    };
    Ok(Metadata { jwks_uri: jwks_uri.to_string(), introspection_endpoint })
}

/// Whether metadata read back from a snapshot still meets the rules [`parse_metadata`] holds a
/// fetched document to (its URLs https, or http on loopback, or `allow_insecure`).
pub fn still_valid(m: &Metadata, allow_insecure: bool) -> bool {
    let ok = |u: &str| super::verify::jwks_uri_problem(u, allow_insecure).is_none();
    ok(&m.jwks_uri) && m.introspection_endpoint.as_deref().is_none_or(ok)
}

/// One issuer's discovered metadata in an isolate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// The last good metadata.
    pub metadata: Option<Metadata>,
    /// When it was fetched (Unix seconds).
    pub fetched_at: i64,
    /// Its TTL.
    pub ttl_secs: i64,
    /// The last fetch attempt (not kept in snapshots).
    #[serde(skip)]
    pub attempted_at: Option<i64>,
}

impl Discovered {
    /// Fresh: no fetch needed.
    pub fn fresh(&self, now: i64) -> bool {
        self.metadata.is_some() && now < self.fetched_at.saturating_add(self.ttl_secs)
    }

    /// Still usable (fresh, or stale within `max_stale_secs`).
    pub fn usable(&self, now: i64, cfg: &JwksCacheConfig) -> Option<&Metadata> {
        let until = self.fetched_at.saturating_add(self.ttl_secs).saturating_add(i64::from(cfg.max_stale_secs));
        self.metadata.as_ref().filter(|_| now < until)
    }

    /// A fetch may start now: not fresh, and none attempted within the cooldown.
    pub fn may_fetch(&self, now: i64, cfg: &JwksCacheConfig) -> bool {
        !self.fresh(now) && self.attempted_at.is_none_or(|t| now - t >= i64::from(cfg.unknown_kid_cooldown_secs).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_both_specs() {
        assert_eq!(
            metadata_urls("https://id.example"),
            ["https://id.example/.well-known/openid-configuration".to_string(), "https://id.example/.well-known/oauth-authorization-server".to_string()]
        );
        assert_eq!(
            metadata_urls("https://id.example/tenant/1/"),
            [
                "https://id.example/tenant/1/.well-known/openid-configuration".to_string(),
                "https://id.example/.well-known/oauth-authorization-server/tenant/1".to_string()
            ]
        );
    }

    #[test]
    fn metadata_must_name_the_issuer_exactly() {
        let iss = "https://id.example";
        let doc = |i: &str, j: &str| format!(r#"{{"issuer":"{i}","jwks_uri":"{j}"}}"#);
        let m = |j: &str, e: Option<&str>| Ok(Metadata { jwks_uri: j.into(), introspection_endpoint: e.map(Into::into) });
        assert_eq!(parse_metadata(&doc(iss, "https://id.example/keys"), iss, false, false), m("https://id.example/keys", None));
        for other in ["https://id.example/", "https://evil.example", "HTTPS://id.example"] {
            assert!(parse_metadata(&doc(other, "https://id.example/keys"), iss, false, false).unwrap_err().contains("another issuer"), "{other}");
        }
        assert!(parse_metadata(&doc(iss, "http://keys.example/jwks"), iss, false, false).unwrap_err().contains("jwks_uri"));
        assert!(parse_metadata(&doc(iss, "http://keys.example/jwks"), iss, true, false).is_ok());
        assert!(parse_metadata(r#"{"issuer":"https://id.example"}"#, iss, false, false).unwrap_err().contains("no jwks_uri"));
        assert!(parse_metadata("[]", iss, false, false).is_err());
    }

    #[test]
    fn the_introspection_endpoint_only_when_wanted_and_held_to_the_same_rules() {
        let iss = "https://id.example";
        let doc = |e: &str| format!(r#"{{"issuer":"{iss}","jwks_uri":"https://id.example/keys","introspection_endpoint":"{e}"}}"#);
        let endpoint = |body: &str, want: bool, insecure: bool| parse_metadata(body, iss, insecure, want).map(|m| m.introspection_endpoint);
        assert_eq!(endpoint(&doc("https://id.example/introspect"), true, false), Ok(Some("https://id.example/introspect".into())));
        // Not wanted: neither kept nor checked (an issuer of JWTs only is not refused for it).
        assert_eq!(endpoint(&doc("http://elsewhere.example/i"), false, false), Ok(None));
        assert!(endpoint(&doc("http://elsewhere.example/i"), true, false).unwrap_err().contains("introspection_endpoint"));
        assert!(endpoint(&doc("http://elsewhere.example/i"), true, true).is_ok());
        let bare = format!(r#"{{"issuer":"{iss}","jwks_uri":"https://id.example/keys"}}"#);
        assert!(endpoint(&bare, true, false).unwrap_err().contains("no introspection_endpoint"));
        // Read back from a snapshot: the same rules.
        let m = Metadata { jwks_uri: "https://id.example/keys".into(), introspection_endpoint: Some("http://elsewhere.example/i".into()) };
        assert!(!still_valid(&m, false) && still_valid(&m, true));
        assert!(!still_valid(&Metadata { jwks_uri: "http://keys.example/j".into(), introspection_endpoint: None }, false));
        // A snapshot of an earlier gate (no field) still reads.
        let old: Discovered = serde_json::from_str(r#"{"metadata":{"jwks_uri":"https://k"},"fetched_at":1,"ttl_secs":2}"#).unwrap();
        assert_eq!(old.metadata.and_then(|m| m.introspection_endpoint), None);
    }

    #[test]
    fn freshness_staleness_and_cooldown() {
        let cfg = JwksCacheConfig { min_ttl_secs: 60, max_ttl_secs: 600, unknown_kid_cooldown_secs: 10, max_stale_secs: 100, fetch_timeout_ms: 1000 };
        let mut d = Discovered::default();
        assert!(!d.fresh(0) && d.may_fetch(0, &cfg) && d.usable(0, &cfg).is_none());
        d.attempted_at = Some(0);
        assert!(!d.may_fetch(5, &cfg) && d.may_fetch(10, &cfg));
        d = Discovered {
            metadata: Some(Metadata { jwks_uri: "https://k".into(), introspection_endpoint: None }),
            fetched_at: 100,
            ttl_secs: 60,
            attempted_at: Some(100),
        };
        assert!(d.fresh(159) && !d.fresh(160));
        assert!(d.usable(259, &cfg).is_some() && d.usable(260, &cfg).is_none());
    }
}
