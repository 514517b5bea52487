//! Canonical requests (issue 14): every spelling class, every switch, and the properties the gate
//! relies on (idempotent; never an ambiguous output; equivalent spellings decide alike).

use edgeward::core::access::Requirement;
use edgeward::core::canonical::{
    canonical_method, canonical_path, canonicalize, client_ip, folded_header_name, ip_bucket_text, EscapedSlashes, PathParams, PathRules, RequestPolicy,
};
use edgeward::core::error::{AuthError, PathProblem};
use edgeward::core::route::RouteTable;
use proptest::prelude::*;

fn rules() -> PathRules {
    PathRules::default()
}

fn with(escaped_slashes: EscapedSlashes, path_params: PathParams, refuse_ascii_lookalikes: bool) -> PathRules {
    PathRules {
        escaped_slashes,
        path_params,
        refuse_ascii_lookalikes,
        windows_aliases: edgeward::core::canonical::WindowsAliases::Reject,
        max_path_bytes: 8192,
    }
}

fn canon(p: &str) -> Result<String, AuthError> {
    canonical_path(p, &rules())
}

fn problem(p: &str, r: &PathRules) -> Option<PathProblem> {
    match canonical_path(p, r) {
        Err(AuthError::AmbiguousPath(x)) => Some(x),
        _ => None,
    }
}

#[test]
fn canonical_forms_table() {
    let table = [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        // RFC 3986 §5.2.4 dot segments, and `..` above the root stays at the root.
        ("/a/./b", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/..", "/"),
        ("/../../a", "/a"),
        ("/a/../../b", "/b"),
        // Repeated slashes merged (NGINX's merge_slashes), before dot segments are resolved.
        ("//a///b//", "/a/b/"),
        ("/a//..", "/"),
        // Unreserved escapes decoded, in any hex case.
        ("/%41%62%7e%2D%5f%30", "/Ab~-_0"),
        ("/a%2Ejson", "/a.json"),
        ("/..a/b", "/..a/b"),
        ("/a~b/x~", "/a~b/x~"),
        // Other escapes kept, upper case; raw characters that may not stand in a path encoded.
        ("/a%3ab%40c", "/a%3Ab%40c"),
        ("/a%20b", "/a%20b"),
        ("/a b", "/a%20b"),
        ("/a\"<>`{}|^[]", "/a%22%3C%3E%60%7B%7D%7C%5E%5B%5D"),
        ("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="),
        ("/%25", "/%25"),
        ("/100%25x", "/100%25x"),
        // Non-ASCII kept as UTF-8 escapes, upper case; raw non-ASCII encoded the same way.
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),
        ("/%E6%97%A5%E6%9C%AC", "/%E6%97%A5%E6%9C%AC"),
        // Case is kept.
        ("/Admin/X", "/Admin/X"),
    ];
    for (raw, want) in table {
        assert_eq!(canon(raw).as_deref(), Ok(want), "{raw}");
        assert_eq!(canon(want).as_deref(), Ok(want), "idempotent on {want}");
    }
}

#[test]
fn refusals_table() {
    use PathProblem::*;
    let table = [
        ("", NotOriginForm),
        ("*", NotOriginForm),
        ("a/b", NotOriginForm),
        ("http://h/a", NotOriginForm),
        ("/a%2Fb", EncodedSlash),
        ("/a%2fb", EncodedSlash),
        ("/a%5Cb", EncodedSlash),
        ("/public/..%2Fadmin", EncodedSlash),
        ("/a\\b", Backslash),
        ("/a;jsessionid=1/b", PathParams),
        ("/..;/admin", PathParams),
        ("/a%3Bb", PathParams),
        ("/%2e%2e/admin", EncodedDotSegment),
        ("/%2E/x", EncodedDotSegment),
        ("/.%2e/x", EncodedDotSegment),
        ("/a/%2e", EncodedDotSegment),
        ("/%252e%252e/admin", DoubleEncoding),
        ("/a%2541", DoubleEncoding),
        ("/a%25%34%31", DoubleEncoding),
        ("/a%", BadPercentEncoding),
        ("/a%4", BadPercentEncoding),
        ("/a%zz", BadPercentEncoding),
        ("/a%%41", BadPercentEncoding),
        ("/%C0%AE%C0%AE/", InvalidUtf8),
        ("/%C3", InvalidUtf8),
        ("/%FF", InvalidUtf8),
        ("/%ED%A0%80", InvalidUtf8),
        ("/%C3/%A9", InvalidUtf8),
        ("/a%00", ControlCharacter),
        ("/a%0D%0Ab", ControlCharacter),
        ("/a%7F", ControlCharacter),
        ("/a\tb", ControlCharacter),
        ("/%C2%85", ControlCharacter),
        // Characters whose NFKC form is path syntax: refused whatever the case rule.
        ("/%EF%BC%8Fadmin", AsciiLookalike),
        ("/%EF%BC%8E%EF%BC%8E/admin", AsciiLookalike),
        ("/%E2%80%A4%E2%80%A4/admin", AsciiLookalike),
        ("/a%EF%BC%9Bb", AsciiLookalike),
        ("/%EF%BC%BCx", AsciiLookalike),
        // Names Windows reads as another: IIS serves /admin for each of these.
        ("/admin./x", WindowsAlias),
        ("/b..", WindowsAlias),
        ("/.../x", WindowsAlias),
        ("/admin%20/x", WindowsAlias),
        ("/admin%2e/x", WindowsAlias),
        ("/admin::$INDEX_ALLOCATION/x", WindowsAlias),
        ("/ADMINI~1/x", WindowsAlias),
        ("/PROGR~12.TXT", WindowsAlias),
        ("/a~1.htm", WindowsAlias),
    ];
    for (raw, want) in table {
        assert_eq!(problem(raw, &rules()), Some(want), "{raw:?}");
        let e = canonical_path(raw, &rules()).unwrap_err();
        let r = e.rejection("edgeward");
        assert_eq!((r.status, r.code, r.www_authenticate), (400, "ambiguous_path", None), "{raw:?}");
    }
}

#[test]
fn windows_aliases_switch() {
    let keep = PathRules { windows_aliases: edgeward::core::canonical::WindowsAliases::Keep, ..rules() };
    for (raw, want) in [("/admin./x", "/admin./x"), ("/a%20/b", "/a%20/b"), ("/ADMINI~1", "/ADMINI~1"), ("/a::$DATA", "/a::$DATA")] {
        assert_eq!(canonical_path(raw, &keep).as_deref(), Ok(want), "{raw}");
    }
    // Colons alone are ordinary (`/v1/things:batchGet`), and `~` with digits is not always a short
    // name.
    for ok in ["/v1/things:batchGet", "/files/report~2024.pdf", "/repo/compare/HEAD~1...main", "/~1000/home", "/a/b~1.html"] {
        assert_eq!(canon(ok).as_deref(), Ok(ok), "{ok}");
    }
}

#[test]
fn long_paths_are_414() {
    let r = PathRules { max_path_bytes: 16, ..rules() };
    assert_eq!(canonical_path("/0123456789abcde", &r).as_deref(), Ok("/0123456789abcde"));
    let e = canonical_path("/0123456789abcdef", &r).unwrap_err();
    assert_eq!(e, AuthError::PathTooLong { len: 17, max: 16 });
    assert_eq!((e.rejection("r").status, e.code()), (414, "path_too_long"));
}

#[test]
fn escaped_slashes_switch() {
    let keep = with(EscapedSlashes::Keep, PathParams::Reject, false);
    assert_eq!(canonical_path("/a%2fb", &keep).as_deref(), Ok("/a%2Fb"));
    assert_eq!(canonical_path("/a%5cb", &keep).as_deref(), Ok("/a%5Cb"));
    assert_eq!(canonical_path("/a\\b", &keep).as_deref(), Ok("/a%5Cb"), "a raw backslash is forwarded encoded");
    // Kept as data inside a segment: never a separator, never resolved as a dot segment.
    assert_eq!(canonical_path("/files/..%2Fadmin", &keep).as_deref(), Ok("/files/..%2Fadmin"));
    let t = RouteTable::new(serde_json::from_value(serde_json::json!([{"path": "/admin/*", "scopes": ["admin"]}])).unwrap()).unwrap();
    assert_eq!(t.requirement("GET", "/files/..%2Fadmin"), Requirement::Token { scopes: vec![] });
}

#[test]
fn path_params_switch() {
    let strip = with(EscapedSlashes::Reject, PathParams::Strip, false);
    assert_eq!(canonical_path("/a;jsessionid=1/b", &strip).as_deref(), Ok("/a/b"));
    // Tomcat reads `/..;/` as `/../`: so does the gate, and forwards the resolved path.
    assert_eq!(canonical_path("/files/..;/admin/x", &strip).as_deref(), Ok("/admin/x"));
    assert_eq!(canonical_path("/a;x=%zz/b", &strip).as_deref(), Ok("/a/b"), "stripped parameters are not forwarded");
    assert_eq!(canonical_path("/a%3Bb", &strip).as_deref(), Ok("/a%3Bb"), "an encoded ; is data");
    assert_eq!(problem("/%2e%2e;x/admin", &strip), Some(PathProblem::EncodedDotSegment));
    let keep = with(EscapedSlashes::Reject, PathParams::Keep, false);
    assert_eq!(canonical_path("/a;v=1/b", &keep).as_deref(), Ok("/a;v=1/b"));
    assert_eq!(canonical_path("/a%3bb", &keep).as_deref(), Ok("/a%3Bb"));
    assert_eq!(canonical_path("/..;/admin", &keep).as_deref(), Ok("/..;/admin"), "`..;` is an ordinary segment when kept");
}

#[test]
fn ascii_lookalikes_where_case_is_folded() {
    let folding = with(EscapedSlashes::Reject, PathParams::Reject, true);
    // Fullwidth `ａｄｍｉｎ`, the `ﬁ` ligature, a superscript two, a no-break space.
    for p in ["/%EF%BD%81%EF%BD%84%EF%BD%8D%EF%BD%89%EF%BD%8E", "/%EF%AC%81le", "/x%C2%B2", "/a%C2%A0b"] {
        assert_eq!(problem(p, &folding), Some(PathProblem::AsciiLookalike), "{p}");
        assert!(canonical_path(p, &rules()).is_ok(), "{p}: kept where no route folds case");
    }
    // Ordinary non-ASCII letters are not look-alikes.
    for p in ["/caf%C3%A9", "/%E6%97%A5", "/%D0%B0%D0%B1"] {
        assert!(canonical_path(p, &folding).is_ok(), "{p}");
    }
}

#[test]
fn methods() {
    assert_eq!(canonical_method("get").as_deref(), Ok("GET"));
    assert_eq!(canonical_method("PROPFIND").as_deref(), Ok("PROPFIND"));
    assert_eq!(canonical_method("patch").as_deref(), Ok("PATCH"));
    for bad in ["", "GE T", "G\nET", "GET/1", "ÉTÉ", &"X".repeat(33)] {
        let e = canonical_method(bad).unwrap_err();
        assert_eq!((e.code(), e.rejection("r").status), ("bad_method", 400), "{bad:?}");
    }
    for refused in ["CONNECT", "trace", "TRACK"] {
        let e = canonical_method(refused).unwrap_err();
        assert_eq!((e.code(), e.rejection("r").status), ("method_not_allowed", 405), "{refused}");
    }
}

#[test]
fn method_override_switch() {
    let h = |n: &str| vec![(n.to_string(), "DELETE".to_string())];
    let reject = RequestPolicy { method_override: edgeward::core::canonical::MethodOverride::Reject, ..RequestPolicy::default() };
    for hs in [h("X-HTTP-Method-Override"), h("x-http-method"), h("X-Method-Override"), h("x_http_method_override")] {
        assert_eq!(canonicalize("POST", "/a", "", &hs, &reject, &rules()), Err(AuthError::MethodOverride), "{hs:?}");
        assert!(canonicalize("POST", "/a", "", &hs, &RequestPolicy::default(), &rules()).is_ok(), "strip (default) does not refuse");
    }
    // Spellings PHP reads as `_method` too: leading spaces, `.`, ` ` and `[` as `_`, a NUL cut.
    for q in ["_method=DELETE", "a=1&_METHOD=put", "%5Fmethod=DELETE", ".method=DELETE", "+_method=DELETE", "%20_method=x", "_method%00x=y", "[method=x"] {
        assert_eq!(canonicalize("POST", "/a", q, &[], &reject, &rules()), Err(AuthError::MethodOverride), "{q}");
    }
    assert!(canonicalize("POST", "/a", "method=x&_methods=y", &[], &reject, &rules()).is_ok());
    let e = AuthError::MethodOverride.rejection("r");
    assert_eq!((e.status, e.code), (400, "method_override"));
}

#[test]
fn header_names_fold_as_cgi_reads_them() {
    assert_eq!(folded_header_name("X_Edgeward_Sub"), "x-edgeward-sub");
    assert_eq!(folded_header_name("x-request_id"), "x-request-id");
}

#[test]
fn client_ips_one_form() {
    let ip = |s: &str| client_ip(Some(s));
    assert_eq!(ip("::ffff:203.0.113.5"), ip("203.0.113.5"));
    assert_eq!(ip("::FFFF:cb00:7105"), ip("203.0.113.5"));
    assert_eq!(ip("2001:DB8:0:0::1"), ip("2001:db8::1"));
    assert_eq!(ip("2001:db8::1").unwrap().to_string(), "2001:db8::1");
    assert_eq!(ip(" 203.0.113.5 ").unwrap().to_string(), "203.0.113.5");
    for bad in ["", "x", "203.0.113.5:80", "[2001:db8::1]", "203.0.113.5, 1.2.3.4", "0203.0.113.5"] {
        assert_eq!(ip(bad), None, "{bad:?}");
    }
    // IPv6 clients share a bucket per /64 (configurable); IPv4 per address.
    let a = ip("2001:db8:1:2:aaaa::1").unwrap();
    let b = ip("2001:db8:1:2:ffff:ffff:ffff:ffff").unwrap();
    let c = ip("2001:db8:1:3::1").unwrap();
    assert_eq!(ip_bucket_text(a, 64), ip_bucket_text(b, 64));
    assert_eq!(ip_bucket_text(a, 64), "2001:db8:1:2::/64");
    assert_ne!(ip_bucket_text(a, 64), ip_bucket_text(c, 64));
    assert_ne!(ip_bucket_text(a, 128), ip_bucket_text(b, 128));
    assert_eq!(ip_bucket_text(ip("::ffff:203.0.113.5").unwrap(), 64), "203.0.113.5");
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// True if `c` is in canonical form under the default rules: what the origin receives never
/// holds a form origins read differently.
fn is_unambiguous(c: &str) -> bool {
    let b = c.as_bytes();
    if !c.starts_with('/') || c.contains("//") || !c.is_ascii() {
        return false;
    }
    if c.split('/').skip(1).any(|s| s == "." || s == "..") {
        return false;
    }
    if c.contains(';') || c.contains('\\') {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else { return false };
            let hex = |x: u8| x.is_ascii_digit() || (b'A'..=b'F').contains(&x);
            if !hex(h) || !hex(l) {
                return false;
            }
            let v = u8::from_str_radix(&c[i + 1..i + 3], 16).unwrap_or(0);
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) || v == b'/' || v == b'\\' || v == b';' || v < 0x20 || v == 0x7f {
                return false;
            }
            if v == b'%' && b.get(i + 3).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 4).is_some_and(u8::is_ascii_hexdigit) {
                return false;
            }
            i += 3;
        } else {
            if b[i] < 0x20 || b[i] == 0x7f {
                return false;
            }
            i += 1;
        }
    }
    true
}

fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9._~-]{1,6}",
        Just(".".to_string()),
        Just("..".to_string()),
        Just("".to_string()),
        "%[0-9a-fA-F]{2}",
        Just("%2e".to_string()),
        Just("%2F".to_string()),
        Just(";p=1".to_string()),
        Just("%25".to_string()),
        Just("\\".to_string()),
        Just("é".to_string()),
        Just("%C3%A9".to_string()),
        "[ -~]{1,3}",
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|v| format!("/{}", v.join("/")))
}

/// An equivalent spelling of a canonical path: unreserved characters encoded at random (either
/// hex case), `./` and `x/../` inserted, slashes doubled.
fn respell(c: &str, seed: &[u8]) -> String {
    let mut out = String::new();
    let mut k = 0usize;
    let mut next = || {
        k += 1;
        seed.get(k % seed.len().max(1)).copied().unwrap_or(0).wrapping_add(k as u8)
    };
    for (i, seg) in c.split('/').enumerate() {
        if i > 0 {
            out.push('/');
            match next() % 5 {
                0 => out.push_str("./"),
                1 => out.push_str("zz/../"),
                2 => out.push('/'),
                _ => {}
            }
        }
        let b = seg.as_bytes();
        let mut j = 0;
        while j < b.len() {
            if b[j] == b'%' {
                let esc = &seg[j..j + 3];
                out.push_str(&if next() % 2 == 0 { esc.to_string() } else { esc.to_ascii_lowercase() });
                j += 3;
                continue;
            }
            let ch = b[j];
            let unreserved = ch.is_ascii_alphanumeric() || b"-._~".contains(&ch);
            // A lone `.` or `..` segment must stay literal (an encoded dot segment is refused).
            if unreserved && ch != b'.' && next() % 3 == 0 {
                out.push_str(&if next() % 2 == 0 { format!("%{ch:02X}") } else { format!("%{ch:02x}") });
            } else {
                out.push(char::from(ch));
            }
            j += 1;
        }
    }
    out
}

fn table() -> RouteTable {
    RouteTable::new(
        serde_json::from_value(serde_json::json!([
            {"path": "/public/*", "public": true},
            {"path": "/admin/*", "scopes": ["admin"]},
            {"path": "/a/b", "methods": ["GET"], "scopes": ["read"]},
            {"path": "/caf%C3%A9/*", "scopes": ["cafe"]}
        ]))
        .unwrap(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn idempotent_and_never_ambiguous(p in path_strategy()) {
        for r in [rules(), with(EscapedSlashes::Keep, PathParams::Strip, true), with(EscapedSlashes::Keep, PathParams::Keep, false)] {
            if let Ok(c) = canonical_path(&p, &r) {
                prop_assert_eq!(canonical_path(&c, &r), Ok(c.clone()), "not idempotent: {} -> {}", p, c);
                if r == rules() {
                    prop_assert!(is_unambiguous(&c), "ambiguous output {} from {}", c, p);
                }
            }
        }
    }

    #[test]
    fn fast_path_agrees_with_the_full_canonicalizer(p in prop_oneof![path_strategy(), "/[a-z0-9._~!$&'()*+,=:@/-]{0,40}"]) {
        prop_assert_eq!(canonical_path(&p, &rules()), edgeward::core::canonical::canonical_path_full(&p, &rules()), "{}", p);
    }

    #[test]
    fn equivalent_spellings_decide_alike(p in path_strategy(), seed in proptest::collection::vec(any::<u8>(), 1..32)) {
        if let Ok(c) = canon(&p) {
            let variant = respell(&c, &seed);
            let cv = canon(&variant);
            prop_assert_eq!(cv.as_deref(), Ok(c.as_str()), "{} respelled {}", c, variant);
            let t = table();
            prop_assert_eq!(t.requirement("GET", &c), t.requirement("GET", &cv.unwrap_or_default()));
        }
    }

    #[test]
    fn never_panics_on_any_bytes(raw in "\\PC{0,64}", r in 0u8..4) {
        let rules = [rules(), with(EscapedSlashes::Keep, PathParams::Strip, true), with(EscapedSlashes::Keep, PathParams::Keep, false), with(EscapedSlashes::Reject, PathParams::Keep, true)];
        let _ = canonical_path(&format!("/{raw}"), &rules[usize::from(r)]);
        let _ = canonical_path(&raw, &rules[usize::from(r)]);
    }
}

/// The reported attack, as a regression test: a `read` token and every spelling of `/admin`.
#[test]
fn read_token_never_reaches_admin_by_spelling() {
    let t = RouteTable::new(
        serde_json::from_value(serde_json::json!([
            {"path": "/admin/*", "scopes": ["admin"], "case_insensitive": true},
            {"path": "/files/*", "scopes": ["read"]}
        ]))
        .unwrap(),
    )
    .unwrap();
    let folding = with(EscapedSlashes::Reject, PathParams::Reject, t.any_case_insensitive());
    let spellings = [
        "/files/..%2Fadmin/secret",
        "/files/%2e%2e/admin/secret",
        "/files/..;/admin/secret",
        "/files/%2E%2E%2Fadmin",
        "/files/..%5Cadmin",
        "/files/%252e%252e/admin",
        "/files/%C0%AE%C0%AE/admin",
        "/files/%EF%BC%8E%EF%BC%8E/admin",
        "/%EF%BD%81dmin/secret",
        "/files/./../admin/secret",
        "//admin/secret",
        "/ADMIN/secret",
        "/Admin;x/secret",
        "/%61dmin/secret",
    ];
    for s in spellings {
        match canonical_path(s, &folding) {
            Err(e) => assert_eq!(e.rejection("r").status, 400, "{s}"),
            Ok(c) => assert_eq!(t.requirement("GET", &c), Requirement::Token { scopes: vec!["admin".into()] }, "{s} decided as {c}"),
        }
    }
}
