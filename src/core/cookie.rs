//! Cookie security at the edge, with no I/O: every `Set-Cookie` from the origin is parsed (one
//! header at a time, never joined) and brought to policy, and cookie-authenticated unsafe requests
//! must carry a same-origin signal or a double-submit token.

use super::error::AuthError;
use super::request::RequestView;
use cookie::{Cookie, SameSite};
use serde::Deserialize;

/// What to do with a cookie that breaks the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CookieMode {
    /// Add or correct the attributes (default).
    #[default]
    Fix,
    /// Remove the cookie from the response.
    Drop,
    /// Log findings, change nothing.
    Report,
}

/// `SameSite` value given to cookies that have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum SameSiteDefault {
    /// `Lax` (default).
    #[default]
    Lax,
    /// `Strict`.
    Strict,
    /// `None` (always with `Secure`).
    None,
}

/// The `cookies` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookiePolicy {
    /// `fix`, `drop` or `report`.
    pub mode: CookieMode,
    /// `SameSite` for cookies without one.
    pub same_site: SameSiteDefault,
    /// Cookie names scripts may read (exempt from `HttpOnly`).
    pub script_readable: Vec<String>,
    /// Longest cookie lifetime (`Max-Age` / `Expires`), default 400 days (RFC 6265bis).
    pub max_age_secs: i64,
}

impl Default for CookiePolicy {
    fn default() -> Self {
        CookiePolicy { mode: CookieMode::Fix, same_site: SameSiteDefault::Lax, script_readable: Vec::new(), max_age_secs: 400 * 86_400 }
    }
}

/// What happens to one `Set-Cookie` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieAction {
    /// Sent unchanged.
    Keep,
    /// Sent as this corrected header instead.
    Fixed(String),
    /// Not sent.
    Drop,
}

/// The findings for one `Set-Cookie` header. Finding codes are stable: `unparseable`,
/// `missing_secure`, `missing_httponly`, `missing_samesite`, `samesite_none_insecure`,
/// `lifetime_too_long`, `host_prefix`, `secure_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieReport {
    /// Cookie name (never its value), if it parsed.
    pub name: Option<String>,
    /// What was wrong.
    pub findings: Vec<&'static str>,
    /// What the edge does.
    pub action: CookieAction,
}

fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Brings one `Set-Cookie` header to policy at `now` (Unix seconds).
pub fn enforce(header: &str, policy: &CookiePolicy, now: i64) -> CookieReport {
    let Ok(mut c) = Cookie::parse(header.to_owned()) else {
        let action = if policy.mode == CookieMode::Report { CookieAction::Keep } else { CookieAction::Drop };
        return CookieReport { name: None, findings: vec!["unparseable"], action };
    };
    let name = c.name().to_owned();
    let mut findings = Vec::new();
    if c.secure() != Some(true) {
        findings.push("missing_secure");
        c.set_secure(true);
    }
    let script_readable = policy.script_readable.iter().any(|n| n == &name);
    if c.http_only() != Some(true) && !script_readable {
        findings.push("missing_httponly");
        c.set_http_only(true);
    }
    match c.same_site() {
        None => {
            findings.push("missing_samesite");
            c.set_same_site(match policy.same_site {
                SameSiteDefault::Lax => SameSite::Lax,
                SameSiteDefault::Strict => SameSite::Strict,
                SameSiteDefault::None => SameSite::None,
            });
        }
        Some(SameSite::None) if findings.contains(&"missing_secure") => findings.push("samesite_none_insecure"),
        _ => {}
    }
    let lifetime = match (c.max_age(), c.expires_datetime()) {
        (Some(ma), _) => Some(ma.whole_seconds()),
        (None, Some(exp)) => Some(exp.unix_timestamp() - now),
        _ => None,
    };
    if lifetime.is_some_and(|l| l > policy.max_age_secs) {
        findings.push("lifetime_too_long");
        c.set_max_age(cookie::time::Duration::seconds(policy.max_age_secs));
        c.unset_expires();
    }
    if has_prefix(&name, "__Host-") {
        if c.path() != Some("/") || c.domain().is_some() {
            findings.push("host_prefix");
            c.set_path("/");
            c.unset_domain();
        }
    } else if has_prefix(&name, "__Secure-") && findings.contains(&"missing_secure") {
        findings.push("secure_prefix");
    }
    let action = if findings.is_empty() || policy.mode == CookieMode::Report {
        CookieAction::Keep
    } else if policy.mode == CookieMode::Drop {
        CookieAction::Drop
    } else {
        CookieAction::Fixed(c.to_string())
    };
    CookieReport { name: Some(name), findings, action }
}

/// A `Set-Cookie` that deletes the cookie `name` (for a dead token in a cookie).
pub fn clearing_cookie(name: &str) -> String {
    format!("{name}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax")
}

/// The `csrf` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsrfPolicy {
    /// Check cookie-authenticated unsafe requests (default true).
    pub enabled: bool,
    /// Other origins allowed to send them (`https://app.example`).
    pub allowed_origins: Vec<String>,
    /// Double-submit header (default `x-csrf-token`).
    pub header: String,
    /// Double-submit cookie the edge mints (default `__Host-edgeward-csrf`).
    pub cookie: String,
}

impl Default for CsrfPolicy {
    fn default() -> Self {
        CsrfPolicy { enabled: true, allowed_origins: Vec::new(), header: "x-csrf-token".into(), cookie: "__Host-edgeward-csrf".into() }
    }
}

/// The edge's double-submit cookie carrying `token` (readable by scripts, which echo it in the header).
pub fn csrf_cookie(policy: &CsrfPolicy, token: &str) -> String {
    format!("{}={token}; Path=/; Secure; SameSite=Strict", policy.cookie)
}

/// True for methods that change state.
pub fn is_unsafe_method(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// The value of cookie `name` in the request, if present.
pub fn request_cookie<'a>(req: &RequestView<'a>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim())
}

/// Checks a cookie-authenticated request for a same-origin signal: `Sec-Fetch-Site: same-origin`
/// or `none`, an `Origin` equal to `request_origin` or in the allow-list, or a double-submit
/// header equal to the CSRF cookie (compared in constant time). Safe methods always pass.
pub fn check_csrf(req: &RequestView<'_>, request_origin: &str, policy: &CsrfPolicy) -> Result<(), AuthError> {
    if !policy.enabled || !is_unsafe_method(req.method) {
        return Ok(());
    }
    let header = |name: &str| req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim());
    if let Some(site) = header("sec-fetch-site") {
        if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") {
            return Ok(());
        }
    }
    if let Some(origin) = header("origin") {
        if origin == request_origin || policy.allowed_origins.iter().any(|o| o == origin) {
            return Ok(());
        }
    }
    if let (Some(sent), Some(cookie)) = (header(&policy.header), request_cookie(req, &policy.cookie)) {
        use subtle::ConstantTimeEq;
        if !cookie.is_empty() && sent.len() == cookie.len() && bool::from(sent.as_bytes().ct_eq(cookie.as_bytes())) {
            return Ok(());
        }
    }
    Err(AuthError::CsrfRejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn fixed(h: &str) -> (Vec<&'static str>, String) {
        let r = enforce(h, &CookiePolicy::default(), NOW);
        let out = match r.action {
            CookieAction::Fixed(s) => s,
            CookieAction::Keep => h.to_string(),
            CookieAction::Drop => String::new(),
        };
        (r.findings, out)
    }

    #[test]
    fn real_world_set_cookie_table() {
        let table: &[(&str, &[&str], &str)] = &[
            ("sid=abc", &["missing_secure", "missing_httponly", "missing_samesite"], "sid=abc; HttpOnly; SameSite=Lax; Secure"),
            ("sid=abc; Secure; HttpOnly; SameSite=Strict; Path=/", &[], "sid=abc; Secure; HttpOnly; SameSite=Strict; Path=/"),
            ("SID=x; secure; HTTPONLY; samesite=lax", &[], "SID=x; secure; HTTPONLY; samesite=lax"),
            ("a=1; SameSite=None", &["missing_secure", "missing_httponly", "samesite_none_insecure"], "a=1; HttpOnly; SameSite=None; Secure"),
            (
                "pref=dark; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Secure; HttpOnly; SameSite=Lax",
                &["lifetime_too_long"],
                "pref=dark; HttpOnly; SameSite=Lax; Secure; Max-Age=34560000",
            ),
            ("q=\"quoted value\"; Secure; HttpOnly; SameSite=Lax", &[], "q=\"quoted value\"; Secure; HttpOnly; SameSite=Lax"),
            (
                "__Host-s=1; Secure; HttpOnly; SameSite=Lax; Domain=example.com; Path=/app",
                &["host_prefix"],
                "__Host-s=1; HttpOnly; SameSite=Lax; Secure; Path=/",
            ),
            ("__Secure-t=1; HttpOnly; SameSite=Lax", &["missing_secure", "secure_prefix"], "__Secure-t=1; HttpOnly; SameSite=Lax; Secure"),
            ("long=1; Max-Age=99999999; Secure; HttpOnly; SameSite=Lax", &["lifetime_too_long"], "long=1; HttpOnly; SameSite=Lax; Secure; Max-Age=34560000"),
        ];
        for (input, findings, out) in table {
            let (f, o) = fixed(input);
            assert_eq!(&f, findings, "{input}");
            assert_eq!(&o, out, "{input}");
        }
    }

    #[test]
    fn invalid_cookies_are_dropped_and_reported() {
        for bad in ["", "=novalue", "no-equals-sign"] {
            let r = enforce(bad, &CookiePolicy::default(), NOW);
            assert_eq!(r.findings, vec!["unparseable"], "{bad:?}");
            assert_eq!(r.action, CookieAction::Drop);
        }
    }

    #[test]
    fn modes_and_script_readable_names() {
        let p = CookiePolicy { mode: CookieMode::Drop, ..Default::default() };
        assert_eq!(enforce("a=1", &p, NOW).action, CookieAction::Drop);
        let p = CookiePolicy { mode: CookieMode::Report, ..Default::default() };
        assert_eq!(enforce("a=1", &p, NOW).action, CookieAction::Keep);
        let p = CookiePolicy { script_readable: vec!["theme".into()], ..Default::default() };
        let r = enforce("theme=dark; Secure; SameSite=Lax", &p, NOW);
        assert_eq!((r.findings.len(), r.action), (0, CookieAction::Keep));
    }

    fn view<'a>(method: &'a str, headers: &'a [(String, String)]) -> RequestView<'a> {
        RequestView { method, path: "/", query: "", headers }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn csrf_signals() {
        let p = CsrfPolicy { allowed_origins: vec!["https://app.example".into()], ..Default::default() };
        let me = "https://edge.example";
        let ok = |hs: &[(&str, &str)], m: &str| check_csrf(&view(m, &h(hs)), me, &p).is_ok();
        assert!(ok(&[], "GET"), "safe methods pass");
        assert!(!ok(&[], "POST"));
        assert!(ok(&[("Sec-Fetch-Site", "same-origin")], "POST"));
        assert!(ok(&[("sec-fetch-site", "none")], "DELETE"));
        assert!(!ok(&[("sec-fetch-site", "cross-site")], "PUT"));
        assert!(!ok(&[("sec-fetch-site", "same-site")], "PUT"));
        assert!(ok(&[("origin", "https://edge.example")], "PATCH"));
        assert!(ok(&[("origin", "https://app.example")], "POST"));
        assert!(!ok(&[("origin", "https://evil.example")], "POST"));
        assert!(!ok(&[("origin", "null")], "POST"));
        assert!(ok(&[("cookie", "a=1; __Host-edgeward-csrf=tok123"), ("x-csrf-token", "tok123")], "POST"));
        assert!(!ok(&[("cookie", "__Host-edgeward-csrf=tok123"), ("x-csrf-token", "tok124")], "POST"));
        assert!(!ok(&[("cookie", "__Host-edgeward-csrf="), ("x-csrf-token", "")], "POST"));
        assert_eq!(check_csrf(&view("POST", &[]), me, &p), Err(AuthError::CsrfRejected));
    }
}
