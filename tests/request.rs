//! Host tests of the request side: finding the credential (`extract_credential`) and planning
//! the origin request (`plan_forward`).

#![allow(clippy::type_complexity)] // test tables are tuples

mod common;

use common::*;
use edgeward::core::alg::Algorithm::*;
use edgeward::core::config::Policy;
use edgeward::core::error::AuthError;
use edgeward::core::identity::Identity;
use edgeward::core::log::CredentialSource;
use edgeward::core::request::{extract_credential, plan_forward, ForwardPlan, RequestView};
use edgeward::core::verify::VerifiedToken;
use serde_json::{json, Value};

const COOKIE: &str = "__Host-token";
const QUERY: &str = "access_token";

fn base_doc() -> Value {
    config(vec![issuer_entry(Some(ISS), &["EdDSA"], vec![key(EdDSA).jwk("k", json!({}))])])
}

/// Cookie and query parameter configured, extra forwarded claims.
fn full_policy() -> Policy {
    policy(&full_doc())
}

fn full_doc() -> Value {
    let mut doc = base_doc();
    doc["cookie_name"] = json!(COOKIE);
    doc["query_param"] = json!(QUERY);
    doc["forward_claims"] = json!({
        "x-edgeward-sub": "sub",
        "x-edgeward-iss": "iss",
        "x-edgeward-scope": "scope",
        "X-User-Email": "email",
        "x-edgeward-roles": "roles",
        "x-edgeward-uid": "uid",
        "x-edgeward-admin": "admin"
    });
    doc
}

/// Only `Authorization: Bearer`; default forwarded claims.
fn header_only_policy() -> Policy {
    policy(&base_doc())
}

fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

fn view<'a>(path: &'a str, query: &'a str, headers: &'a [(String, String)]) -> RequestView<'a> {
    RequestView { method: "GET", path, query, headers, client_ip: None, origin: "https://edge.example" }
}

fn verified(p: &Policy, extra: Value) -> VerifiedToken {
    let t = key(EdDSA).sign(Some("k"), &with(claims(), extra));
    verify(p, &t).expect("test token verifies")
}

// ---------------------------------------------------------------------------------------------
// extract_credential
// ---------------------------------------------------------------------------------------------

type Want = Result<Option<(&'static str, CredentialSource)>, &'static str>;

#[test]
fn credential_extraction_table() {
    use CredentialSource::*;
    let full = full_policy();
    let bare = header_only_policy();
    let cookie = |v: &'static str| ("Cookie", v);
    let auth = |v: &'static str| ("Authorization", v);
    let table: Vec<(&str, &Policy, Vec<(&str, &str)>, &str, Want)> = vec![
        ("nothing", &full, vec![], "", Ok(None)),
        ("unrelated headers", &full, vec![("Accept", "*/*")], "a=1", Ok(None)),
        ("Bearer", &full, vec![auth("Bearer abc.def.ghi")], "", Ok(Some(("abc.def.ghi", Header)))),
        ("bearer lower case", &full, vec![auth("bearer abc")], "", Ok(Some(("abc", Header)))),
        ("BEARER upper case", &full, vec![auth("BEARER abc")], "", Ok(Some(("abc", Header)))),
        ("BeArEr, extra spaces", &full, vec![auth("  BeArEr    abc  ")], "", Ok(Some(("abc", Header)))),
        ("header name in any case", &full, vec![("AUTHORIZATION", "Bearer abc")], "", Ok(Some(("abc", Header)))),
        ("Basic auth ignored", &full, vec![auth("Basic dXNlcjpwYXNz")], "", Ok(None)),
        ("Digest auth ignored", &full, vec![auth("Digest username=\"x\"")], "", Ok(None)),
        ("scheme glued to token", &full, vec![auth("Bearerabc")], "", Ok(None)),
        ("Bearer without token", &full, vec![auth("Bearer")], "", Err("malformed_token")),
        ("Bearer with only spaces", &full, vec![auth("Bearer    ")], "", Err("malformed_token")),
        ("Basic plus Bearer", &full, vec![auth("Basic dXNlcjpwYXNz"), auth("Bearer abc")], "", Ok(Some(("abc", Header)))),
        ("two different Bearer headers", &full, vec![auth("Bearer abc"), auth("Bearer xyz")], "", Err("malformed_token")),
        ("cookie", &full, vec![cookie("theme=dark; __Host-token=abc; lang=en")], "", Ok(Some(("abc", Cookie)))),
        ("cookie only", &full, vec![cookie("__Host-token=abc")], "", Ok(Some(("abc", Cookie)))),
        ("quoted cookie value", &full, vec![cookie("__Host-token=\"abc\"")], "", Ok(Some(("abc", Cookie)))),
        ("cookie name is exact", &full, vec![cookie("__host-token=abc; token=abc; x__Host-token=abc")], "", Ok(None)),
        ("empty cookie value", &full, vec![cookie("__Host-token=")], "", Ok(None)),
        ("cookie not configured", &bare, vec![cookie("__Host-token=abc")], "", Ok(None)),
        ("query parameter", &full, vec![], "a=1&access_token=abc&b=2", Ok(Some(("abc", Query)))),
        ("query parameter name is exact", &full, vec![], "access_token_hint=abc&access_tokens=abc", Ok(None)),
        // Another case of the name is refused, never forwarded (an origin may fold case).
        ("query parameter under another case", &full, vec![], "access_token_hint=abc&Access_token=abc", Err("ambiguous_query")),
        // The name is found by its decoded form, and stripped from what is forwarded.
        ("query parameter name percent-encoded", &full, vec![], "access%5Ftoken=abc", Ok(Some(("abc", Query)))),
        ("query parameter value percent-encoded", &full, vec![], "access_token=a%2Eb", Ok(Some(("a.b", Query)))),
        ("empty query value", &full, vec![], "access_token=", Ok(None)),
        ("query not configured", &bare, vec![], "access_token=abc", Ok(None)),
        ("header and cookie differ", &full, vec![auth("Bearer abc"), cookie("__Host-token=xyz")], "", Err("malformed_token")),
        ("header and cookie agree", &full, vec![auth("Bearer abc"), cookie("__Host-token=abc")], "", Ok(Some(("abc", Header)))),
        ("header and query differ", &full, vec![auth("Bearer abc")], "access_token=xyz", Err("malformed_token")),
        ("cookie and query differ", &full, vec![cookie("__Host-token=abc")], "access_token=xyz", Err("malformed_token")),
        ("all three agree", &full, vec![auth("Bearer abc"), cookie("__Host-token=abc")], "access_token=abc", Ok(Some(("abc", Header)))),
        ("cookie twice, differing", &full, vec![cookie("__Host-token=abc"), cookie("__Host-token=xyz")], "", Err("malformed_token")),
        ("query twice, differing", &full, vec![], "access_token=abc&access_token=xyz", Err("malformed_token")),
    ];
    let mut failures = Vec::new();
    for (name, p, headers, query, want) in table {
        let hs = hdrs(&headers);
        let got = extract_credential(&view("/", query, &hs), p);
        let got_simple = match &got {
            Ok(None) => Ok(None),
            Ok(Some(c)) => Ok(Some((c.token.clone(), c.source))),
            Err(e) => Err(e.code()),
        };
        let want_simple = want.map(|o| o.map(|(t, s)| (t.to_string(), s)));
        if got_simple != want_simple {
            failures.push(format!("{name}: want {want_simple:?}, got {got_simple:?}"));
        }
        if let Err(e) = &got {
            let r = e.rejection("edgeward");
            if r.status != if e.code() == "ambiguous_query" { 400 } else { 401 } {
                failures.push(format!("{name}: status {}", r.status));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn credential_debug_never_shows_the_token() {
    let hs = hdrs(&[("Authorization", "Bearer super-secret-token-value")]);
    let c = extract_credential(&view("/", "", &hs), &full_policy()).unwrap().unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("super-secret"), "{dbg}");
    assert!(dbg.contains("sha256:"), "{dbg}");
}

#[test]
fn extracted_credential_verifies() {
    let p = full_policy();
    let t = key(EdDSA).sign(Some("k"), &claims());
    let cookie = format!("a=b; {COOKIE}={t}");
    let hs = hdrs(&[("cookie", cookie.as_str())]);
    let c = extract_credential(&view("/", "", &hs), &p).unwrap().unwrap();
    assert_eq!((c.token.as_str(), c.source), (t.as_str(), CredentialSource::Cookie));
    assert_eq!(verify(&p, &c.token).unwrap().subject(), Some("user-1"));
}

// ---------------------------------------------------------------------------------------------
// plan_forward
// ---------------------------------------------------------------------------------------------

fn get<'a>(plan: &'a ForwardPlan, name: &str) -> Vec<&'a str> {
    plan.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

#[test]
fn forward_plan_strips_credentials_and_spoofed_identity() {
    let p = full_policy();
    let vt = verified(&p, json!({"email": "a@example.com", "roles": ["admin", "ops"], "uid": 42, "admin": true}));
    let hs = hdrs(&[
        ("Host", "gate.example"),
        ("Authorization", "Bearer tok"),
        ("Cookie", "theme=dark; __Host-token=tok; lang=en"),
        ("Connection", "keep-alive, X-Hop-Secret"),
        ("Keep-Alive", "timeout=5"),
        ("X-Hop-Secret", "1"),
        ("TE", "trailers"),
        ("Trailer", "x-checksum"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic eDp5"),
        ("Proxy-Connection", "close"),
        ("Transfer-Encoding", "chunked"),
        ("X-Edgeward-Sub", "admin"),
        ("x-edgeward-admin", "true"),
        ("X-EDGEWARD-Anything", "spoof"),
        ("X-Request-Id", "client-chosen"),
        ("X-USER-EMAIL", "spoof@evil.example"),
        ("Accept", "application/json"),
        ("User-Agent", "test/1"),
        ("X-Custom", "v"),
        ("Content-Type", "application/json"),
    ]);
    let req = view("/api/items", "a=1&access_token=tok&b=2", &hs);
    let plan = plan_forward(&req, Some(Identity::Token(&vt)), None, &p, "req-123").unwrap();

    assert_eq!(plan.url, format!("{ORIGIN}/api/items?a=1&b=2"));
    let mut got: Vec<(String, String)> = plan.headers.clone();
    got.sort();
    let mut want = hdrs(&[
        ("cookie", "theme=dark; lang=en"),
        ("accept", "application/json"),
        ("user-agent", "test/1"),
        ("x-custom", "v"),
        ("content-type", "application/json"),
        ("x-edgeward-sub", "user-1"),
        ("x-edgeward-iss", ISS),
        ("x-edgeward-scope", "read write"),
        ("x-user-email", "a@example.com"),
        // An array is an RFC 8941 list of strings: ["a b"] and ["a", "b"] differ at the origin.
        ("x-edgeward-roles", "\"admin\", \"ops\""),
        ("x-edgeward-uid", "42"),
        ("x-edgeward-admin", "true"),
        ("x-edgeward-auth", "jwt"),
        ("x-request-id", "req-123"),
        // The connection headers, from what the gate knows (the request URL), not the client.
        ("x-forwarded-host", "edge.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "proto=https;host=\"edge.example\""),
    ]);
    want.sort();
    assert_eq!(got, want);
    // Names are lower case; the token appears nowhere.
    assert!(plan.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
    assert!(plan.headers.iter().all(|(_, v)| !v.contains("tok;") && v != "tok" && !v.contains("Bearer")));
    assert!(!plan.url.contains("access_token"));
}

#[test]
fn forward_plan_without_a_token() {
    // Public routes: no claim headers, but client copies are still stripped and the id is set.
    let p = full_policy();
    let hs = hdrs(&[("X-Edgeward-Sub", "admin"), ("x-request-id", "client"), ("x-user-email", "spoof"), ("Accept", "*/*")]);
    let plan = plan_forward(&view("/public", "", &hs), None, None, &p, "rid-1").unwrap();
    assert_eq!(plan.url, format!("{ORIGIN}/public"));
    assert_eq!(
        plan.headers,
        hdrs(&[
            ("accept", "*/*"),
            ("x-forwarded-host", "edge.example"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "proto=https;host=\"edge.example\""),
            ("x-request-id", "rid-1")
        ])
    );
}

#[test]
fn claim_values_that_are_not_header_safe_are_refused_or_encoded() {
    let p = full_policy();
    let mut doc = full_doc();
    doc["request"] = json!({"claim_values": "percent"});
    let percent = Policy::from_json(&doc.to_string()).unwrap();
    // (name, claims, verbatim forwarding allowed, the percent-encoded form)
    let table: Vec<(&str, Value, bool, &str)> = vec![
        ("CRLF injection", json!({"sub": "a\r\nx-admin: 1"}), false, "a%0D%0Ax-admin:%201"),
        ("bare LF", json!({"sub": "a\nb"}), false, "a%0Ab"),
        ("non-ASCII", json!({"sub": "José"}), false, "Jos%C3%A9"),
        ("NUL", json!({"sub": "a\u{0}b"}), false, "a%00b"),
        ("tab", json!({"sub": "a\tb"}), false, "a%09b"),
        ("leading space", json!({"sub": " admin"}), false, "%20admin"),
        ("trailing space", json!({"sub": "admin "}), false, "admin%20"),
        ("printable", json!({"sub": "user:42 (x)"}), true, "user:42%20(x)"),
        ("a percent sign", json!({"sub": "100%"}), true, "100%25"),
    ];
    for (name, extra, verbatim, encoded) in table {
        let vt = verified(&p, extra.clone());
        match plan_forward(&view("/", "", &[]), Some(Identity::Token(&vt)), None, &p, "r") {
            Ok(plan) => {
                assert!(verbatim, "{name}: forwarded {:?}", get(&plan, "x-edgeward-sub"));
                assert_eq!(get(&plan, "x-edgeward-sub"), vec![extra["sub"].as_str().unwrap()], "{name}");
            }
            Err(e) => {
                assert!(!verbatim, "{name}: refused");
                assert_eq!(e, AuthError::ClaimNotForwardable { header: "x-edgeward-sub".into() }, "{name}");
                assert_eq!((e.code(), e.rejection("r").status), ("claim_not_forwardable", 403), "{name}");
            }
        }
        let vt = verified(&percent, extra);
        let plan = plan_forward(&view("/", "", &[]), Some(Identity::Token(&vt)), None, &percent, "r").unwrap();
        assert_eq!(get(&plan, "x-edgeward-sub"), vec![encoded], "{name} (percent)");
        assert!(plan.headers.iter().all(|(_, v)| v.bytes().all(|b| (0x20..0x7f).contains(&b))), "{name}");
    }
    // Lists: each element checked; quotes and backslashes escaped inside the RFC 8941 strings.
    let vt = verified(&p, json!({"roles": ["a b", "c\"d\\"]}));
    let plan = plan_forward(&view("/", "", &[]), Some(Identity::Token(&vt)), None, &p, "r").unwrap();
    assert_eq!(get(&plan, "x-edgeward-roles"), vec!["\"a b\", \"c\\\"d\\\\\""]);
    let vt = verified(&p, json!({"roles": ["a", "b\nc"]}));
    assert!(plan_forward(&view("/", "", &[]), Some(Identity::Token(&vt)), None, &p, "r").is_err());
    // Claims that are objects, mixed arrays or absent are not forwarded.
    let vt = verified(&p, json!({"email": {"a": 1}, "roles": ["a", 1], "uid": null}));
    let plan = plan_forward(&view("/", "", &[]), Some(Identity::Token(&vt)), None, &p, "r").unwrap();
    for h in ["x-user-email", "x-edgeward-roles", "x-edgeward-uid", "x-edgeward-admin"] {
        assert!(get(&plan, h).is_empty(), "{h}");
    }
}

#[test]
fn forward_plan_url_and_cookie_table() {
    let full = full_policy();
    let bare = header_only_policy();
    let mut prefixed_doc = base_doc();
    prefixed_doc["origin"] = json!("https://origin.example/base/");
    prefixed_doc["query_param"] = json!(QUERY);
    let prefixed = policy(&prefixed_doc);

    // (name, policy, path, query, cookie header, want url, want cookie header)
    let table: Vec<(&str, &Policy, &str, &str, Option<&str>, String, Option<&str>)> = vec![
        ("path and query kept", &full, "/a/b", "x=1&y=2", None, format!("{ORIGIN}/a/b?x=1&y=2"), None),
        ("empty path", &full, "", "", None, format!("{ORIGIN}/"), None),
        ("percent-encoding kept verbatim", &full, "/a%2Fb/c%20d", "q=%26", None, format!("{ORIGIN}/a%2Fb/c%20d?q=%26"), None),
        ("only the token in the query", &full, "/x", "access_token=tok", None, format!("{ORIGIN}/x"), None),
        ("token param without value", &full, "/x", "access_token&k=v", None, format!("{ORIGIN}/x?k=v"), None),
        ("similar param names kept", &full, "/x", "access_token_hint=1&access_token=t", None, format!("{ORIGIN}/x?access_token_hint=1"), None),
        ("empty query pieces dropped", &full, "/x", "&&a=1&&", None, format!("{ORIGIN}/x?a=1"), None),
        ("query param not configured", &bare, "/x", "access_token=tok&x=1", None, format!("{ORIGIN}/x?access_token=tok&x=1"), None),
        ("origin with path prefix", &prefixed, "/api/x", "access_token=t&z=9", None, "https://origin.example/base/api/x?z=9".into(), None),
        ("cookie: only the token", &full, "/", "", Some("__Host-token=tok"), format!("{ORIGIN}/"), None),
        ("cookie: token removed, others kept", &full, "/", "", Some("a=1;__Host-token=tok;  b=2"), format!("{ORIGIN}/"), Some("a=1; b=2")),
        ("cookie: similar names kept", &full, "/", "", Some("__Host-token2=x; token=y"), format!("{ORIGIN}/"), Some("__Host-token2=x; token=y")),
        ("cookie not configured: verbatim", &bare, "/", "", Some("__Host-token=tok; a=1"), format!("{ORIGIN}/"), Some("__Host-token=tok; a=1")),
    ];
    for (name, p, path, query, cookie, want_url, want_cookie) in table {
        let mut pairs = vec![("accept", "*/*")];
        if let Some(c) = cookie {
            pairs.push(("cookie", c));
        }
        let hs = hdrs(&pairs);
        let plan = plan_forward(&view(path, query, &hs), None, None, p, "r").unwrap();
        assert_eq!(plan.url, want_url, "{name}");
        assert_eq!(get(&plan, "cookie"), want_cookie.into_iter().collect::<Vec<_>>(), "{name}");
        assert_eq!(get(&plan, "accept"), ["*/*"], "{name}");
    }
}

#[test]
fn split_cookie_headers_are_each_cleaned() {
    let p = full_policy();
    let hs = hdrs(&[("Cookie", "a=1; __Host-token=tok"), ("cookie", "__Host-token=tok; b=2")]);
    // The same token twice is one credential...
    let c = extract_credential(&view("/", "", &hs), &p).unwrap().unwrap();
    assert_eq!(c.token, "tok");
    // ...and neither copy reaches the origin.
    let plan = plan_forward(&view("/", "", &hs), None, None, &p, "r").unwrap();
    assert_eq!(get(&plan, "cookie"), ["a=1", "b=2"]);
}

#[test]
fn custom_request_id_header() {
    let mut doc = base_doc();
    doc["request_id_header"] = json!("X-Trace-Id");
    let p = policy(&doc);
    assert_eq!(p.request_id_header, "x-trace-id");
    let hs = hdrs(&[("X-Trace-Id", "client"), ("x-trace-id", "client2"), ("X-Request-Id", "kept")]);
    let plan = plan_forward(&view("/", "", &hs), None, None, &p, "gw-1").unwrap();
    assert_eq!(get(&plan, "x-trace-id"), ["gw-1"]);
    assert_eq!(get(&plan, "x-request-id"), ["kept"], "not the configured id header: an ordinary header");
}

#[test]
fn forward_claims_config_is_validated() {
    for (h, field) in [
        ("Authorization", "forward_claims.Authorization"),
        ("cookie", "forward_claims.cookie"),
        ("bad header", "forward_claims.bad header"),
        ("Host", "forward_claims.Host"),
    ] {
        let mut doc = base_doc();
        doc["forward_claims"] = json!({ h: "sub" });
        assert_eq!(Policy::from_json(&doc.to_string()).unwrap_err().field, field, "{h}");
    }
    let mut doc = base_doc();
    doc["cookie_name"] = json!("bad;name");
    assert_eq!(Policy::from_json(&doc.to_string()).unwrap_err().field, "cookie_name");
    let mut doc = base_doc();
    doc["query_param"] = json!("");
    assert_eq!(Policy::from_json(&doc.to_string()).unwrap_err().field, "query_param");
    // Warnings for risky but valid choices.
    let mut doc = base_doc();
    doc["cookie_name"] = json!("session");
    doc["query_param"] = json!("t");
    let p = policy(&doc);
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(full_policy().warnings.iter().all(|w| !w.contains("__Host-")), "__Host- cookie: no cookie warning");
}

fn view_from<'a>(path: &'a str, query: &'a str, headers: &'a [(String, String)], ip: Option<&str>) -> RequestView<'a> {
    RequestView { client_ip: edgeward::core::canonical::client_ip(ip), ..view(path, query, headers) }
}

#[test]
fn headers_that_fold_to_protected_names_never_reach_the_origin() {
    let p = full_policy();
    let vt = verified(&p, json!({"email": "a@example.com"}));
    let hs = hdrs(&[
        ("x_edgeward_sub", "admin"),
        ("X_Edgeward_Auth", "api_key"),
        ("x-user_email", "spoof@evil.example"),
        ("X_Request_Id", "client"),
        ("x_api_key", "ew_live_forged"),
        ("my_custom", "dropped too"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("x-forwarded-host", "evil.example"),
        ("X-Forwarded-Proto", "http"),
        ("Forwarded", "for=1.2.3.4"),
        ("X-Real-IP", "1.2.3.4"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Original-URL", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("X-Forwarded-Prefix", "/admin"),
        ("True-Client-IP", "1.2.3.4"),
        ("X-Forwarded-Port", "80"),
        ("Connection", "x-secret_hop, X-Other"),
        ("X-Other", "hop"),
        ("Accept", "*/*"),
    ]);
    let plan = plan_forward(
        &view_from("/a", "x=1&_method=DELETE&%5Fmethod=PUT&_METHOD=x", &hs, Some("::ffff:203.0.113.9")),
        Some(Identity::Token(&vt)),
        None,
        &p,
        "rid",
    )
    .unwrap();
    let mut names: Vec<&str> = plan.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "accept",
            "forwarded",
            "x-edgeward-auth",
            "x-edgeward-iss",
            "x-edgeward-scope",
            "x-edgeward-sub",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-real-ip",
            "x-request-id",
            "x-user-email"
        ],
        "{:?}",
        plan.headers
    );
    assert_eq!(get(&plan, "x-edgeward-sub"), vec!["user-1"]);
    assert_eq!(get(&plan, "x-user-email"), vec!["a@example.com"]);
    assert_eq!(get(&plan, "x-edgeward-auth"), vec!["jwt"]);
    assert_eq!(get(&plan, "x-request-id"), vec!["rid"]);
    // The gate's own connection headers: the client address in one form, the URL's scheme and host.
    assert_eq!(get(&plan, "x-forwarded-for"), vec!["203.0.113.9"]);
    assert_eq!(get(&plan, "x-real-ip"), vec!["203.0.113.9"]);
    assert_eq!(get(&plan, "x-forwarded-host"), vec!["edge.example"]);
    assert_eq!(get(&plan, "x-forwarded-proto"), vec!["https"]);
    assert_eq!(get(&plan, "forwarded"), vec!["for=203.0.113.9;proto=https;host=\"edge.example\""]);
    assert_eq!(plan.url, format!("{ORIGIN}/a?x=1"), "every spelling of _method and of the token parameter stripped");

    // IPv6: quoted and bracketed in Forwarded.
    let plan = plan_forward(&view_from("/a", "", &[], Some("2001:DB8::1")), None, None, &p, "rid").unwrap();
    assert_eq!(get(&plan, "forwarded"), vec!["for=\"[2001:db8::1]\";proto=https;host=\"edge.example\""]);

    // underscore_headers: keep keeps the harmless ones, never those that fold to a protected name;
    // forwarded_headers: strip sets none; method_override: pass forwards them.
    let mut doc = full_doc();
    doc["request"] = json!({"underscore_headers": "keep", "forwarded_headers": "strip", "method_override": "pass"});
    let lax = Policy::from_json(&doc.to_string()).unwrap();
    let plan = plan_forward(&view_from("/a", "_method=DELETE", &hs, Some("203.0.113.9")), None, None, &lax, "rid").unwrap();
    let names: Vec<&str> = plan.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"my_custom") && names.contains(&"x-http-method-override"), "{names:?}");
    for gone in ["x-edgeward-sub", "x-edgeward-auth", "x-user-email", "x-request-id", "x-api-key", "x-forwarded-for", "forwarded", "x-real-ip", "x-other"] {
        assert!(get(&plan, gone).iter().all(|v| *v == "rid"), "{gone}: {:?}", plan.headers);
    }
    assert_eq!(plan.url, format!("{ORIGIN}/a?_method=DELETE"));
}
