//! The configuration parser: `EdgewardConfig::from_json` (with the field-locating error path)
//! and `validate`, i.e. `Policy::from_json`, on arbitrary text (the `EDGEWARD_CONFIG` var).
//!
//! Checks: no panic; an error names a field; parsing is deterministic; a validated policy keeps
//! its promises — at least one issuer, each with allowed algorithms that are all HMAC or all
//! asymmetric, HMAC secrets only inline and never beside a `jwks_uri`, every route pattern
//! canonical, `max_path_bytes` within 16–65536, JWKS TTL bounds ordered, cookie lifetime
//! positive, header names lower case, the origin without a trailing slash — and the validated
//! pieces run without panicking: `canonical_request`, the path canonicalizer and the route table on a few fixed
//! paths,
//! the JWKS cache's TTL clamp, the revocation and rate-limit settings (two GCRA steps for the pre-auth
//! quota at a fixed time, and the pre-auth IP bucket for an IPv4 and an IPv6 client).
#![no_main]

mod common;

use common::{text, NOW};
use edgeward::core::alg::KeyFamily;
use edgeward::core::canonical::canonical_path;
use edgeward::core::config::{EdgewardConfig, Policy};
use edgeward::core::jwks_cache::IssuerKeyCache;
use edgeward::core::ratelimit::gcra;
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 8] = ["/", "/admin/x", "/a/./b/../c", "/%2e%2e/x", "/a;x/b", "/caf%C3%A9", "/A%2Fb", "//public//x/"];

fn check_policy(p: &Policy, input: &str) {
    assert!(!p.issuers.is_empty());
    for i in &p.issuers {
        assert!(!i.algorithms.is_empty());
        let sym = i.algorithms.iter().filter(|a| a.is_symmetric()).count();
        assert!(sym == 0 || sym == i.algorithms.len(), "mixed HMAC and asymmetric algorithms: {input:?}");
        let has_oct = i.inline_keys.keys.iter().any(|k| k.material.family() == KeyFamily::Oct);
        if sym > 0 || has_oct {
            assert!(i.jwks_uri.is_none(), "HMAC issuer with a jwks_uri: {input:?}");
        }
        if let Some(iss) = &i.issuer {
            assert!(!iss.is_empty());
        }
        if let Some(u) = &i.jwks_uri {
            assert!(u.starts_with("https://") || u.starts_with("http://"), "jwks_uri {u:?}");
        }
    }
    if p.issuers.len() > 1 {
        assert!(p.issuers.iter().all(|i| i.issuer.is_some()), "unchecked iss with several issuers: {input:?}");
    }
    assert!((64..=1 << 20).contains(&p.max_token_bytes));
    assert!(!p.origin.ends_with('/') && (p.origin.starts_with("https://") || p.origin.starts_with("http://")), "origin {:?}", p.origin);
    assert!((16..=65_536).contains(&p.path_rules.max_path_bytes));
    assert_eq!(p.path_rules.max_path_bytes, p.request.max_path_bytes);
    assert!(p.jwks_cache.min_ttl_secs <= p.jwks_cache.max_ttl_secs);
    assert!(p.cookies.max_age_secs > 0);
    assert_eq!(p.request_id_header, p.request_id_header.to_ascii_lowercase());
    assert_eq!(p.api_keys.header, p.api_keys.header.to_ascii_lowercase());
    for (h, _) in &p.forward_claims {
        assert_eq!(h, &h.to_ascii_lowercase());
    }
    assert!(p.revocations.refresh_secs > 0 && p.revocations.refresh_secs <= p.revocations.max_age_secs);
    // Route patterns are canonical under the most lenient rules.
    let lenient = edgeward::core::canonical::PathRules {
        escaped_slashes: edgeward::core::canonical::EscapedSlashes::Keep,
        path_params: edgeward::core::canonical::PathParams::Keep,
        refuse_ascii_lookalikes: false,
        windows_aliases: edgeward::core::canonical::WindowsAliases::Keep,
        max_path_bytes: 65_536,
    };
    for r in p.routes.rules() {
        if r.path != "*" {
            let lit = r.path.strip_suffix("/*").map_or(r.path.as_str(), |x| if x.is_empty() { "/" } else { x });
            assert_eq!(canonical_path(lit, &lenient).as_deref(), Ok(lit), "route pattern not canonical: {:?}", r.path);
        }
        if r.public {
            assert!(r.scopes.is_empty() && !r.sensitive && r.upstream_credential.is_none());
        }
        if let Some(u) = &r.upstream_credential {
            assert!(p.upstream_credentials.contains_key(u));
        }
    }
    assert_eq!(p.path_rules.refuse_ascii_lookalikes, p.routes.any_case_insensitive());
    // The validated pieces, used.
    assert_eq!(p.path_rules.windows_aliases, p.request.windows_aliases);
    for path in PATHS {
        let c = canonical_path(path, &p.path_rules);
        for m in ["GET", "HEAD", "POST", "PROPFIND"] {
            let cr = p.canonical_request(m, path, "a=1&_method=PUT", &[("X-HTTP-Method-Override".into(), "DELETE".into())]);
            if let Ok(cr) = &cr {
                assert_eq!(Ok(&cr.path), c.as_ref(), "canonical_request and canonical_path differ on {path:?}");
            }
            if let Ok(c) = &c {
                let _ = p.routes.requirement(m, c);
                let _ = p.routes.accepts(m, c);
                let _ = p.routes.check_case(m, c);
            }
        }
    }
    let cache = IssuerKeyCache::new("https://id.example/jwks", p.jwks_cache.clone());
    for cc in [None, Some("max-age=0"), Some("max-age=99999999999999999999"), Some("no-cache")] {
        let ttl = cache.ttl_from(cc);
        assert!((i64::from(p.jwks_cache.min_ttl_secs)..=i64::from(p.jwks_cache.max_ttl_secs)).contains(&ttl));
    }
    let now_ms = NOW * 1000;
    // (Rule quotas are private to the core; the pre-auth quota is public.)
    if let Some(q) = p.rate_limits.ip_pre_auth {
        let d1 = gcra(None, now_ms, &q);
        assert!(d1.allowed, "a fresh bucket refuses the first request: {q:?}");
        let d2 = gcra(Some(d1.tat_ms), now_ms, &q);
        let _ = edgeward::core::ratelimit::headers("r", &q, &d2);
        let _ = edgeward::core::ratelimit::retry_after_secs(&d2);
    }
    for ip in ["203.0.113.9", "2001:db8::1"] {
        let _ = p.rate_limits.pre_auth_bucket(ip.parse().ok());
    }
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    let r = Policy::from_json(&input);
    match &r {
        Ok(p) => check_policy(p, &input),
        // (A member literally named "" is reported as the unknown field "".)
        Err(e) => assert!(!e.message.is_empty() && (!e.field.is_empty() || e.message == "unknown field"), "error without a field or message: {e:?}"),
    }
    // The two-step path gives the same verdict, and parsing is deterministic.
    let two = EdgewardConfig::from_json(&input).and_then(EdgewardConfig::validate);
    match (&r, &two) {
        (Ok(a), Ok(b)) => assert_eq!(a.warnings, b.warnings),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("Policy::from_json and from_json + validate disagree on {input:?}"),
    }
});
