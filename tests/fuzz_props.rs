//! Property tests: the parsers and the gate never panic on hostile input, random signatures
//! never verify, a validly signed token is accepted only if every claim check holds, and
//! base64url is canonical. Seeds are fixed (see `common::prop_config`).

mod common;

use common::*;
use edgeward::core::alg::Algorithm::*;
use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::json::{b64url_decode, b64url_encode};
use edgeward::core::jwk::{KeySet, KeySource};
use edgeward::core::request::{extract_credential, plan_forward, RequestView};
use edgeward::core::token::UnverifiedToken;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// Reference policy: ES512 + EdDSA keys inline, leeway 60, max lifetime 3600.
fn policy_ref() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let mut doc = config(vec![issuer_entry(Some(ISS), &["ES512", "EdDSA"], vec![key(ES512).jwk("es", json!({})), key(EdDSA).jwk("ed", json!({}))])]);
        doc["max_lifetime_secs"] = json!(3600);
        doc["cookie_name"] = json!("__Host-token");
        doc["query_param"] = json!("access_token");
        policy(&doc)
    })
}

/// A payload claim as a header value, read straight from the JSON (what a verified token's
/// `claim_text` must agree with).
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) => a.iter().map(Value::as_str).collect::<Option<Vec<_>>>().map(|v| v.join(" ")),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        "[a-zA-Z0-9_=+/. -]{0,24}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ]
}

/// Arbitrary JSON values, with object keys biased towards names the core reads.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,6}|keys|kty|kid|alg|use|key_ops|crv|n|e|x|y|k|d|iss|aud|exp|nbf|iat|sub|scope|scp", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn obj(members: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(members.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect())
}

fn header_strategy() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(json!("ES512")),
            Just(json!("EdDSA")),
            Just(json!("Ed25519")),
            Just(json!("HS256")),
            Just(json!("RS256")),
            Just(json!("none")),
            json_value()
        ],
        proptest::option::of(prop_oneof![Just(json!("es")), Just(json!("ed")), json_value()]),
        proptest::option::of(prop_oneof![Just(json!("JWT")), Just(json!("at+jwt")), json_value()]),
        proptest::option::of(json_value()),
        proptest::option::of(json_value()),
    )
        .prop_map(|(alg, kid, typ, crit, cty)| obj(vec![("alg", Some(alg)), ("kid", kid), ("typ", typ), ("crit", crit), ("cty", cty)]))
}

fn numeric_date() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (NOW - 5000..NOW + 5000).prop_map(|n| json!(n)),
        1 => (-1e3f64..2e9f64).prop_map(|f| json!(f)),
        1 => json_leaf(),
    ]
}

fn claims_strategy() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(prop_oneof![4 => Just(json!(ISS)), 1 => Just(json!("https://other.example")), 1 => json_leaf()]),
        proptest::option::of(prop_oneof![
            3 => Just(json!(AUD)),
            2 => Just(json!([AUD, "x"])),
            1 => Just(json!(["x"])),
            1 => json_value()
        ]),
        proptest::option::of(numeric_date()),
        proptest::option::of(numeric_date()),
        proptest::option::of(numeric_date()),
        proptest::option::of(prop_oneof![3 => Just(json!("user")), 1 => json_leaf()]),
        proptest::option::of(prop_oneof![3 => Just(json!("read write")), 1 => json_value()]),
        proptest::option::of(prop_oneof![Just(json!(["a", "b"])), json_value()]),
    )
        .prop_map(|(iss, aud, exp, nbf, iat, sub, scope, scp)| {
            obj(vec![("iss", iss), ("aud", aud), ("exp", exp), ("nbf", nbf), ("iat", iat), ("sub", sub), ("scope", scope), ("scp", scp)])
        })
}

fn signature_bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 64),
        proptest::collection::vec(any::<u8>(), 132),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

fn is_known_code(code: &str) -> bool {
    ALL_CODES.contains(&code)
}

/// What a validly signed token must satisfy to be accepted under `policy_ref` at `NOW`.
fn accepted_claims_hold(c: &Map<String, Value>) -> Result<(), String> {
    let num = |name: &str| -> Result<Option<f64>, String> {
        match c.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let f = n.as_f64().ok_or(format!("{name} not f64"))?;
                if f.is_finite() && (0.0..1e15).contains(&f) {
                    Ok(Some(f))
                } else {
                    Err(format!("{name} out of range: {f}"))
                }
            }
            Some(v) => Err(format!("{name} is not a number: {v}")),
        }
    };
    let now = NOW as f64;
    if c.get("iss") != Some(&json!(ISS)) {
        return Err(format!("iss {:?}", c.get("iss")));
    }
    match c.get("aud") {
        Some(Value::String(a)) if a == AUD => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) && items.contains(&json!(AUD)) => {}
        other => return Err(format!("aud {other:?}")),
    }
    let exp = num("exp")?.ok_or("exp missing")?;
    if now >= exp + 60.0 {
        return Err(format!("expired: {exp}"));
    }
    if let Some(nbf) = num("nbf")? {
        if nbf > now + 60.0 {
            return Err(format!("nbf {nbf}"));
        }
    }
    let iat = num("iat")?;
    if let Some(i) = iat {
        if i > now + 60.0 {
            return Err(format!("iat {i}"));
        }
    }
    if exp - iat.unwrap_or(now) > 3600.0 {
        return Err("lifetime".into());
    }
    if c.get("sub").is_some_and(|v| !v.is_string()) {
        return Err("sub".into());
    }
    if c.get("scope").is_some_and(|v| !v.is_string()) {
        return Err("scope".into());
    }
    match c.get("scp") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(other) => return Err(format!("scp {other}")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(prop_config(512))]

    #[test]
    fn parse_and_verify_never_panic_on_arbitrary_strings(s in any::<String>()) {
        let _ = UnverifiedToken::parse(&s, 16_384);
        let r = verify(policy_ref(), &s);
        prop_assert!(r.is_err());
        let code = r.unwrap_err().code();
        prop_assert!(is_known_code(code) && code != "internal_error", "{}", code);
    }

    #[test]
    fn parse_and_verify_never_panic_on_token_like_strings(s in "[A-Za-z0-9_=+/ -]{0,40}(\\.[A-Za-z0-9_=+/-]{0,60}){0,4}") {
        let _ = UnverifiedToken::parse(&s, 16_384);
        let r = verify(policy_ref(), &s);
        prop_assert!(r.is_err());
        prop_assert_ne!(r.unwrap_err().code(), "internal_error");
    }

    #[test]
    fn three_segments_of_arbitrary_bytes(
        h in proptest::collection::vec(any::<u8>(), 0..200),
        p in proptest::collection::vec(any::<u8>(), 0..200),
        s in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let t = format!("{}.{}.{}", b64url_encode(&h), b64url_encode(&p), b64url_encode(&s));
        let _ = UnverifiedToken::parse(&t, 16_384);
        let r = verify(policy_ref(), &t);
        prop_assert!(r.is_err());
        prop_assert_ne!(r.unwrap_err().code(), "internal_error");
    }

    /// Structurally plausible tokens with random signatures: never accepted, never a panic or an
    /// internal error, and the verdict is deterministic.
    #[test]
    fn random_signatures_never_verify(header in header_strategy(), claims in claims_strategy(), sig in signature_bytes_strategy()) {
        let t = format!("{}.{}.{}", b64j(&header), b64j(&claims), b64url_encode(&sig));
        let r1 = verify(policy_ref(), &t);
        let r2 = verify(policy_ref(), &t);
        prop_assert_eq!(&r1, &r2);
        let e = match r1 { Ok(_) => return Err(TestCaseError::fail("random signature verified")), Err(e) => e };
        prop_assert!(is_known_code(e.code()) && e.code() != "internal_error", "{:?}", e);
        prop_assert_eq!(e.rejection("edgeward").status, 401);
    }

    #[test]
    fn keyset_parse_never_panics_on_arbitrary_json(v in json_value()) {
        for src in [KeySource::Inline, KeySource::Fetched] {
            if let Ok(set) = KeySet::parse(&v, src) {
                // Fetched sets never yield symmetric keys.
                prop_assert!(src == KeySource::Inline || !set.has_symmetric());
            }
        }
        let doc = json!({"keys": [v]});
        for src in [KeySource::Inline, KeySource::Fetched] {
            let _ = KeySet::parse(&doc, src);
        }
    }

    #[test]
    fn b64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let s = b64url_encode(&bytes);
        prop_assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        prop_assert_eq!(s.len(), (bytes.len() * 4).div_ceil(3));
        prop_assert_eq!(b64url_decode(&s), Some(bytes));
    }

    /// Decoding is canonical: whatever decodes re-encodes to the very same text.
    #[test]
    fn b64url_decoding_is_canonical(s in "[A-Za-z0-9_-]{0,64}") {
        match b64url_decode(&s) {
            Some(bytes) => prop_assert_eq!(b64url_encode(&bytes), s),
            None => {
                // Only two reasons to refuse alphabet-only text: an impossible length, or
                // non-zero unused bits in the last character.
                const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let last = s.chars().last().and_then(|c| ALPHABET.find(c));
                let stray_bits = match (s.len() % 4, last) {
                    (2, Some(i)) => i & 0x0f != 0,
                    (3, Some(i)) => i & 0x03 != 0,
                    _ => false,
                };
                prop_assert!(s.len() % 4 == 1 || stray_bits, "{:?} refused", s);
            }
        }
    }

    #[test]
    fn b64url_rejects_padding_and_other_alphabets(s in "[A-Za-z0-9_-]{0,16}", bad in "[=+/ .\n]") {
        let pos = s.len() / 2;
        let mut t = s.clone();
        t.insert_str(pos, &bad);
        prop_assert_eq!(b64url_decode(&t), None);
    }

    /// Whatever the client sends, the planned origin request never carries its credential,
    /// hop-by-hop headers or client-supplied identity headers, and has exactly one request id.
    #[test]
    fn forward_plan_never_leaks(
        headers in proptest::collection::vec((
            prop_oneof![
                Just("Authorization".to_string()), Just("authorization".to_string()), Just("Cookie".to_string()),
                Just("Connection".to_string()), Just("Upgrade".to_string()), Just("X-Edgeward-Sub".to_string()),
                Just("x-edgeward-scope".to_string()), Just("X-Request-Id".to_string()), Just("Host".to_string()),
                "[A-Za-z-]{1,12}",
            ],
            "[ -~]{0,40}",
        ), 0..12),
        query in "[a-z_=&]{0,40}",
    ) {
        let p = policy_ref();
        let req = RequestView { method: "GET", path: "/x", query: &query, headers: &headers, client_ip: None, origin: "https://edge.example" };
        let _ = extract_credential(&req, p);
        let plan = plan_forward(&req, None, None, p, "rid").unwrap();
        let connection_listed: Vec<String> = headers.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_ascii_lowercase()).collect::<Vec<_>>())
            .collect();
        for (n, v) in &plan.headers {
            prop_assert_eq!(n, &n.to_ascii_lowercase());
            prop_assert!(!["authorization", "connection", "upgrade", "host", "keep-alive", "te", "trailer",
                           "transfer-encoding", "proxy-authorization"].contains(&n.as_str()), "{}", n);
            prop_assert!(!n.starts_with("x-edgeward-"), "{}", n);
            prop_assert!(!connection_listed.contains(n), "{}", n);
            if n == "cookie" {
                prop_assert!(v.split(';').all(|c| c.split_once('=').map_or(c.trim(), |(k, _)| k.trim()) != "__Host-token"), "{}", v);
            }
        }
        prop_assert_eq!(plan.headers.iter().filter(|(n, _)| n == "x-request-id").count(), 1);
        prop_assert!(!plan.url.split_once('?').map_or("", |(_, q)| q).split('&').any(|kv| kv.split_once('=').map_or(kv, |(k, _)| k) == "access_token"));
    }
}

proptest! {
    #![proptest_config(prop_config(256))]

    /// Validly signed tokens (ES512) with adversarial claims: the gate accepts exactly when every
    /// claim check holds, and otherwise names a claim problem (never a signature or key problem).
    #[test]
    fn signed_tokens_are_accepted_iff_claims_hold(claims in claims_strategy(), with_kid in any::<bool>()) {
        let t = key(ES512).sign(with_kid.then_some("es"), &claims);
        let oracle = accepted_claims_hold(claims.as_object().unwrap());
        match verify(policy_ref(), &t) {
            Ok(vt) => {
                prop_assert!(oracle.is_ok(), "accepted but {:?}", oracle);
                prop_assert_eq!(vt.claims(), Some(claims.as_object().unwrap()));
                // What decisions read: every claim the policy names, as the payload has it.
                for name in &policy_ref().token_claims {
                    prop_assert_eq!(vt.claim_text(name), claim_text(&claims[name.as_str()]), "{}", name);
                }
            }
            Err(e) => {
                prop_assert!(oracle.is_err(), "rejected ({:?}) but every check holds", e);
                let claim_codes = ["malformed_claims", "issuer_mismatch", "missing_exp", "expired", "not_yet_valid",
                                   "issued_in_future", "lifetime_too_long", "audience_mismatch"];
                prop_assert!(claim_codes.contains(&e.code()), "{:?}", e);
            }
        }
    }
}

// Regression (fixed): src/core/jwk.rs parse_jwk panics ("attempt to subtract with overflow", jwk.rs:243) on an RSA
// key whose modulus is empty after stripping leading zeros (`"n": ""` or `"n": "AA"`). This
// property feeds JWK-shaped documents built from a small vocabulary and finds it; it passes once
// the bit-length computation handles an empty modulus.
fn jwk_field() -> impl Strategy<Value = Value> {
    let (n, _) = rsa_components();
    prop_oneof![
        Just(json!("")),
        Just(json!("AA")),
        Just(json!("AQAB")),
        Just(json!("Aw")),
        Just(json!(b64(&[0x11; 32]))),
        Just(json!(b64(&[0x11; 48]))),
        Just(json!(b64(&[0x01; 66]))),
        Just(json!(b64(&n))),
        Just(json!("!!")),
        Just(json!(5)),
        Just(Value::Null),
    ]
}

fn jwk_like() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("RSA")), Just(json!("EC")), Just(json!("OKP")), Just(json!("oct")), Just(json!("x")), Just(json!(5))],
        proptest::option::of(prop_oneof![
            Just(json!("P-256")),
            Just(json!("P-384")),
            Just(json!("P-521")),
            Just(json!("Ed25519")),
            Just(json!("X25519")),
            Just(json!(1))
        ]),
        proptest::option::of(jwk_field()),
        proptest::option::of(jwk_field()),
        proptest::option::of(jwk_field()),
        proptest::option::of(jwk_field()),
        proptest::option::of(jwk_field()),
        proptest::option::of(prop_oneof![Just(json!("RS256")), Just(json!("EdDSA")), Just(json!("RSA-OAEP")), Just(json!(1))]),
        proptest::option::of(prop_oneof![Just(json!("sig")), Just(json!("enc")), Just(json!(["verify"])), Just(json!([1]))]),
        proptest::option::of(jwk_field()),
    )
        .prop_map(|(kty, crv, n, e, x, y, k, alg, use_or_ops, d)| {
            let (use_, ops) = match use_or_ops {
                Some(v) if v.is_array() => (None, Some(v)),
                other => (other, None),
            };
            obj(vec![
                ("kty", Some(kty)),
                ("crv", crv),
                ("n", n),
                ("e", e),
                ("x", x),
                ("y", y),
                ("k", k),
                ("alg", alg),
                ("use", use_),
                ("key_ops", ops),
                ("d", d),
            ])
        })
}

proptest! {
    #![proptest_config(prop_config(1024))]

    #[test]
    fn regression_keyset_parse_never_panics_on_jwk_like_documents(keys in proptest::collection::vec(jwk_like(), 0..4)) {
        let doc = json!({ "keys": keys });
        for src in [KeySource::Inline, KeySource::Fetched] {
            let _ = KeySet::parse(&doc, src);
        }
        // Through configuration too: never a panic, only Ok or a ConfigError.
        let cfg = config(vec![json!({"issuer": ISS, "algorithms": ["RS256"], "jwks": doc})]);
        let _ = Policy::from_json(&cfg.to_string());
    }
}

#[test]
fn gate_verify_with_fetched_slice_never_panics_on_garbage() {
    // A deterministic sweep over malformed shapes, with fetched keys present and absent.
    let p = policy_ref();
    let fetched = [Some(KeySet::parse(&json!({"keys": [key(ES512).jwk("es", json!({}))]}), KeySource::Fetched).unwrap())];
    let none: [Option<KeySet>; 0] = [];
    let inputs = ["", ".", "..", "...", "a.b.c", "e30.e30.", "e30.e30.AA", "eyJhbGciOiJFUzUxMiJ9.e30.AA", "\u{0}.\u{0}.\u{0}"];
    for s in inputs {
        for keys in [&fetched[..], &none[..]] {
            let r = verify_with(p, s, keys, NativeBackend, NOW);
            assert!(r.is_err(), "{s:?}");
            assert_ne!(r.unwrap_err().code(), "internal_error", "{s:?}");
        }
    }
}

proptest! {
    #![proptest_config(prop_config(512))]

    /// Any `Set-Cookie` text: `enforce` never panics, and what it sends on after a fix is itself
    /// compliant (a second pass finds nothing), with the origin's name=value part untouched.
    #[test]
    fn set_cookie_fix_is_idempotent(
        name in "[A-Za-z0-9_-]{1,12}",
        value in "[ -:<-~]{0,16}",
        attrs in proptest::collection::vec(
            prop_oneof![
                Just("Secure".to_string()), Just("HttpOnly".to_string()), Just("Path=/".to_string()), Just("Path=/app".to_string()),
                Just("Domain=example.com".to_string()), Just("SameSite=None".to_string()), Just("SameSite=Lax".to_string()),
                Just("samesite=bogus".to_string()), Just("Partitioned".to_string()), Just("Priority=High".to_string()),
                (0i64..100_000_000).prop_map(|s| format!("Max-Age={s}")),
                Just("Expires=Wed, 21 Oct 2099 07:28:00 GMT".to_string()), Just("Expires=nonsense".to_string()),
                "[ -:<-~]{0,12}",
            ],
            0..6,
        ),
        host_prefix in any::<bool>(),
    ) {
        use edgeward::core::cookie::{enforce, CookieAction, CookiePolicy};
        let name = if host_prefix { format!("__Host-{name}") } else { name };
        let header = std::iter::once(format!("{name}={value}")).chain(attrs).collect::<Vec<_>>().join("; ");
        let policy = CookiePolicy::default();
        let first = enforce(&header, &policy, 1_800_000_000);
        if let CookieAction::Fixed(fixed) = &first.action {
            let pair = format!("{name}={value}");
            prop_assert!(fixed.starts_with(pair.trim()), "{fixed}");
            let second = enforce(fixed, &policy, 1_800_000_000);
            prop_assert_eq!(second.findings, Vec::<&str>::new(), "{} → {}", header, fixed);
            prop_assert_eq!(second.action, CookieAction::Keep);
        }
    }
}
