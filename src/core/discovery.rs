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

/// Checks a metadata document served for `issuer`; the metadata, or why it is refused.
pub fn parse_metadata(body: &str, issuer: &str, allow_insecure: bool) -> Result<Metadata, String> {
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
    Ok(Metadata { jwks_uri: jwks_uri.to_string() })
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
        assert_eq!(parse_metadata(&doc(iss, "https://id.example/keys"), iss, false), Ok(Metadata { jwks_uri: "https://id.example/keys".into() }));
        for other in ["https://id.example/", "https://evil.example", "HTTPS://id.example"] {
            assert!(parse_metadata(&doc(other, "https://id.example/keys"), iss, false).unwrap_err().contains("another issuer"), "{other}");
        }
        assert!(parse_metadata(&doc(iss, "http://keys.example/jwks"), iss, false).unwrap_err().contains("jwks_uri"));
        assert!(parse_metadata(&doc(iss, "http://keys.example/jwks"), iss, true).is_ok());
        assert!(parse_metadata(r#"{"issuer":"https://id.example"}"#, iss, false).unwrap_err().contains("no jwks_uri"));
        assert!(parse_metadata("[]", iss, false).is_err());
    }

    #[test]
    fn freshness_staleness_and_cooldown() {
        let cfg = JwksCacheConfig { min_ttl_secs: 60, max_ttl_secs: 600, unknown_kid_cooldown_secs: 10, max_stale_secs: 100, fetch_timeout_ms: 1000 };
        let mut d = Discovered::default();
        assert!(!d.fresh(0) && d.may_fetch(0, &cfg) && d.usable(0, &cfg).is_none());
        d.attempted_at = Some(0);
        assert!(!d.may_fetch(5, &cfg) && d.may_fetch(10, &cfg));
        d = Discovered { metadata: Some(Metadata { jwks_uri: "https://k".into() }), fetched_at: 100, ttl_secs: 60, attempted_at: Some(100) };
        assert!(d.fresh(159) && !d.fresh(160));
        assert!(d.usable(259, &cfg).is_some() && d.usable(260, &cfg).is_none());
    }
}
