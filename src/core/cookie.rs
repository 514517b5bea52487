//! Cookie security at the edge, with no I/O: every `Set-Cookie` from the origin is parsed (one
//! header at a time, never joined) and brought to policy, and cookie-authenticated unsafe requests
//! must carry a same-origin signal or a double-submit token.

use super::canonical::is_tchar;
use super::error::AuthError;
use super::request::RequestView;
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

impl CookiePolicy {
    /// Checks the section; the error is (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.max_age_secs <= 0 {
            return Err(("cookies.max_age_secs".into(), "must be positive".into()));
        }
        Ok(())
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

/// Longest attribute value a browser reads (RFC 6265bis §5.6); longer ones are ignored.
const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;

fn has_prefix(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// Trims what browsers trim in `Set-Cookie` (RFC 6265bis §5.6: space and tab only — a no-break
/// space is part of the token, so `Secure\u{a0}` is not the Secure flag).
fn wsp_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// One `Set-Cookie` header, parsed as RFC 6265 §5.2 reads it, and edited in place: fixes remove
/// or append attributes and leave every other byte as the origin sent it, so attributes the
/// edge does not know (`Priority`, `Partitioned`, future ones) survive a fix.
struct SetCookie<'a> {
    name: &'a str,
    /// `name=value` exactly as sent (trimmed).
    pair: &'a str,
    /// Attributes as sent (trimmed), plus the ones a fix appends.
    attrs: Vec<std::borrow::Cow<'a, str>>,
}

impl<'a> SetCookie<'a> {
    fn parse(header: &'a str) -> Option<SetCookie<'a>> {
        let mut parts = header.split(';');
        let pair = wsp_trim(parts.next()?);
        let (name, _) = pair.split_once('=')?;
        let name = wsp_trim(name);
        // RFC 6265bis §5.6: browsers ignore a cookie with an ASCII control character other than
        // tab. Other characters pass: where header bytes are read as Latin-1, a UTF-8 value shows
        // up as U+0080–U+00FF, which must not be taken for a control character.
        if name.is_empty() || name.contains([' ', '\t']) || header.chars().any(|c| c.is_ascii_control() && c != '\t') {
            return None;
        }
        let attrs = parts.map(wsp_trim).filter(|a| !a.is_empty()).map(std::borrow::Cow::Borrowed).collect();
        Some(SetCookie { name, pair, attrs })
    }

    fn key_value(attr: &str) -> (&str, Option<&str>) {
        match attr.split_once('=') {
            Some((k, v)) => (wsp_trim(k), Some(wsp_trim(v))),
            None => (wsp_trim(attr), None),
        }
    }

    /// The values of the attributes named `key` a browser reads, last first (RFC 6265bis §5.6:
    /// the last one wins; an attribute whose value is over 1024 octets is ignored); `""` for a
    /// flag attribute.
    fn values<'s>(&'s self, key: &'static str) -> impl Iterator<Item = &'s str> + 's {
        self.attrs
            .iter()
            .rev()
            .map(|a| Self::key_value(a))
            .filter(move |(k, v)| k.eq_ignore_ascii_case(key) && v.is_none_or(|v| v.len() <= MAX_ATTRIBUTE_VALUE_BYTES))
            .map(|(_, v)| v.unwrap_or(""))
    }

    /// The value of the last attribute named `key` a browser reads ([`Self::values`]).
    fn get(&self, key: &'static str) -> Option<&str> {
        self.values(key).next()
    }

    fn has(&self, key: &'static str) -> bool {
        self.get(key).is_some()
    }

    fn remove(&mut self, key: &str) {
        self.attrs.retain(|a| !Self::key_value(a).0.eq_ignore_ascii_case(key));
    }

    fn push(&mut self, attr: String) {
        self.attrs.push(std::borrow::Cow::Owned(attr));
    }

    /// `SameSite`, if present with a known value.
    fn same_site(&self) -> Option<SameSiteDefault> {
        let v = self.get("samesite")?;
        [("lax", SameSiteDefault::Lax), ("strict", SameSiteDefault::Strict), ("none", SameSiteDefault::None)]
            .into_iter()
            .find(|(n, _)| v.eq_ignore_ascii_case(n))
            .map(|(_, s)| s)
    }

    /// Seconds from `now` the cookie lives: `Max-Age` wins over `Expires` (RFC 6265 §5.3).
    /// A browser ignores a `Max-Age` or `Expires` it cannot parse, so the last *valid* one counts.
    fn lifetime(&self, now: i64) -> Option<i64> {
        if let Some(ma) = self.values("max-age").find_map(parse_max_age) {
            return Some(ma);
        }
        self.values("expires").find_map(cookie_date).map(|t| t - now)
    }

    fn to_header(&self) -> String {
        let mut out = String::from(self.pair);
        for a in &self.attrs {
            out.push_str("; ");
            out.push_str(a);
        }
        out
    }
}

/// `Max-Age` as RFC 6265 §5.2.2 reads it: an optional `-` and digits, else ignored.
fn parse_max_age(v: &str) -> Option<i64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Huge values saturate: they only ever mean "longer than the cap".
    Some(v.parse::<i64>().unwrap_or(if v.starts_with('-') { i64::MIN } else { i64::MAX }))
}

/// The cookie-date algorithm of RFC 6265 §5.1.1 (what browsers accept in `Expires`), as Unix
/// seconds. `None` if it does not yield a valid date.
pub fn cookie_date(s: &str) -> Option<i64> {
    let is_delim = |c: char| matches!(c, '\t' | ' '..='/' | ';'..='@' | '['..='`' | '{'..='~');
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    let leading_digits = |t: &str, min: usize, max: usize| -> Option<u32> {
        let n = t.bytes().take_while(u8::is_ascii_digit).count();
        (min..=max).contains(&n).then(|| t[..n].parse().ok()).flatten()
    };
    for token in s.split(is_delim).filter(|t| !t.is_empty()) {
        if time.is_none() {
            let mut f = token.splitn(3, ':');
            if let (Some(h), Some(m), Some(sec)) = (f.next(), f.next(), f.next()) {
                if let (Some(h), Some(m), Some(sec)) = (leading_digits(h, 1, 2), leading_digits(m, 1, 2), leading_digits(sec, 1, 2)) {
                    time = Some((h, m, sec));
                    continue;
                }
            }
        }
        if day.is_none() {
            if let Some(d) = leading_digits(token, 1, 2) {
                day = Some(d);
                continue;
            }
        }
        if month.is_none() {
            const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
            if let Some(i) = token.get(..3).and_then(|t| MONTHS.iter().position(|m| t.eq_ignore_ascii_case(m))) {
                month = Some(i as u32 + 1);
                continue;
            }
        }
        if year.is_none() {
            if let Some(y) = leading_digits(token, 2, 4) {
                year = Some(y);
                continue;
            }
        }
    }
    let ((h, mi, sec), d, mo, mut y) = (time?, day?, month?, year?);
    if (70..=99).contains(&y) {
        y += 1900;
    } else if y <= 69 {
        y += 2000;
    }
    if !(1..=31).contains(&d) || y < 1601 || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days_in_month = match mo {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if d > days_in_month {
        return None;
    }
    Some(days_from_civil(i64::from(y), i64::from(mo), i64::from(d)) * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Brings one `Set-Cookie` header to policy at `now` (Unix seconds).
pub fn enforce(header: &str, policy: &CookiePolicy, now: i64) -> CookieReport {
    let Some(mut c) = SetCookie::parse(header) else {
        let action = if policy.mode == CookieMode::Report { CookieAction::Keep } else { CookieAction::Drop };
        return CookieReport { name: None, findings: vec!["unparseable"], action };
    };
    let name = c.name.to_owned();
    let mut findings = Vec::new();
    let missing_secure = !c.has("secure");
    if missing_secure {
        findings.push("missing_secure");
    }
    let script_readable = policy.script_readable.iter().any(|n| n == &name);
    if !c.has("httponly") && !script_readable {
        findings.push("missing_httponly");
        c.push("HttpOnly".into());
    }
    match c.same_site() {
        None => {
            findings.push("missing_samesite");
            c.remove("samesite");
            c.push(
                match policy.same_site {
                    SameSiteDefault::Lax => "SameSite=Lax",
                    SameSiteDefault::Strict => "SameSite=Strict",
                    SameSiteDefault::None => "SameSite=None",
                }
                .into(),
            );
        }
        Some(SameSiteDefault::None) if missing_secure => findings.push("samesite_none_insecure"),
        _ => {}
    }
    if missing_secure {
        c.push("Secure".into());
    }
    if c.lifetime(now).is_some_and(|l| l > policy.max_age_secs) {
        findings.push("lifetime_too_long");
        c.remove("expires");
        c.remove("max-age");
        c.push(format!("Max-Age={}", policy.max_age_secs));
    }
    if has_prefix(&name, "__Host-") {
        if c.get("path") != Some("/") || c.has("domain") {
            findings.push("host_prefix");
            c.remove("domain");
            c.remove("path");
            c.push("Path=/".into());
        }
    } else if has_prefix(&name, "__Secure-") && missing_secure {
        findings.push("secure_prefix");
    }
    let action = if findings.is_empty() || policy.mode == CookieMode::Report {
        CookieAction::Keep
    } else if policy.mode == CookieMode::Drop {
        CookieAction::Drop
    } else {
        CookieAction::Fixed(c.to_header())
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

impl CsrfPolicy {
    /// Checks the section; the error is (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, o) in self.allowed_origins.iter().enumerate() {
            if !(o.starts_with("https://") || o.starts_with("http://")) || o.ends_with('/') {
                return Err((format!("csrf.allowed_origins[{i}]"), "must be an origin like https://app.example".into()));
            }
        }
        if !self.header.bytes().all(is_tchar) || self.header.is_empty() {
            return Err(("csrf.header".into(), "not a valid header name".into()));
        }
        if !self.cookie.bytes().all(is_tchar) || self.cookie.is_empty() {
            return Err(("csrf.cookie".into(), "not a valid cookie name".into()));
        }
        Ok(())
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
/// or `none`, an `Origin` equal to the request's own (`req.origin`) or in the allow-list, or a
/// double-submit header equal to the CSRF cookie (compared in constant time). Safe methods always
/// pass.
pub fn check_csrf(req: &RequestView<'_>, policy: &CsrfPolicy) -> Result<(), AuthError> {
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
        if origin == req.origin || policy.allowed_origins.iter().any(|o| o == origin) {
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
            ("a=1; SameSite=None", &["missing_secure", "missing_httponly", "samesite_none_insecure"], "a=1; SameSite=None; HttpOnly; Secure"),
            (
                "pref=dark; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Secure; HttpOnly; SameSite=Lax",
                &["lifetime_too_long"],
                "pref=dark; Secure; HttpOnly; SameSite=Lax; Max-Age=34560000",
            ),
            ("q=\"quoted value\"; Secure; HttpOnly; SameSite=Lax", &[], "q=\"quoted value\"; Secure; HttpOnly; SameSite=Lax"),
            (
                "__Host-s=1; Secure; HttpOnly; SameSite=Lax; Domain=example.com; Path=/app",
                &["host_prefix"],
                "__Host-s=1; Secure; HttpOnly; SameSite=Lax; Path=/",
            ),
            ("__Secure-t=1; HttpOnly; SameSite=Lax", &["missing_secure", "secure_prefix"], "__Secure-t=1; HttpOnly; SameSite=Lax; Secure"),
            ("long=1; Max-Age=99999999; Secure; HttpOnly; SameSite=Lax", &["lifetime_too_long"], "long=1; Secure; HttpOnly; SameSite=Lax; Max-Age=34560000"),
            // Attributes the edge does not know survive a fix, byte for byte.
            (
                "id=7; Path=/; Priority=High; Partitioned; Secure; SameSite=None",
                &["missing_httponly"],
                "id=7; Path=/; Priority=High; Partitioned; Secure; SameSite=None; HttpOnly",
            ),
            // An unknown SameSite value counts as none (RFC 6265bis) and is replaced.
            ("s=1; Secure; HttpOnly; SameSite=Sometimes", &["missing_samesite"], "s=1; Secure; HttpOnly; SameSite=Lax"),
            // Max-Age wins over Expires; the last Max-Age wins over earlier ones.
            (
                "m=1; Secure; HttpOnly; SameSite=Lax; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Max-Age=60",
                &[],
                "m=1; Secure; HttpOnly; SameSite=Lax; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Max-Age=60",
            ),
            (
                "m=1; Secure; HttpOnly; SameSite=Lax; Max-Age=60; Max-Age=99999999",
                &["lifetime_too_long"],
                "m=1; Secure; HttpOnly; SameSite=Lax; Max-Age=34560000",
            ),
            // A deletion (Max-Age=0 or a past Expires) is never "too long".
            ("gone=; Max-Age=0; Secure; HttpOnly; SameSite=Lax", &[], "gone=; Max-Age=0; Secure; HttpOnly; SameSite=Lax"),
            (
                "gone=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; HttpOnly; SameSite=Lax",
                &[],
                "gone=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; HttpOnly; SameSite=Lax",
            ),
            // Only space and tab are trimmed, as browsers do: `Secure\u{a0}` is no Secure flag.
            (
                "sid=x; Secure\u{a0}; HttpOnly\u{a0}; SameSite=Lax\u{a0}",
                &["missing_secure", "missing_httponly", "missing_samesite"],
                "sid=x; Secure\u{a0}; HttpOnly\u{a0}; HttpOnly; SameSite=Lax; Secure",
            ),
            // Flags in any case, with stray spaces and empty attributes.
            ("x = 1 ;secure;  httponly ;; SameSite = strict", &[], "x = 1 ;secure;  httponly ;; SameSite = strict"),
            // An invalid last Max-Age (or Expires) is ignored by browsers: the earlier valid one
            // counts (found by the set_cookie fuzz target).
            (
                "m=1; Secure; HttpOnly; SameSite=Lax; Max-Age=99999999; Max-Age=x",
                &["lifetime_too_long"],
                "m=1; Secure; HttpOnly; SameSite=Lax; Max-Age=34560000",
            ),
            (
                "e=1; Secure; HttpOnly; SameSite=Lax; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Expires=not a date",
                &["lifetime_too_long"],
                "e=1; Secure; HttpOnly; SameSite=Lax; Max-Age=34560000",
            ),
        ];
        // An attribute value over 1024 octets is ignored by browsers (RFC 6265bis §5.6): it is no
        // flag, and a long last Max-Age does not hide an earlier long-lived one.
        let long = "x".repeat(1025);
        let (f, o) = fixed(&format!("s=1; Secure={long}; HttpOnly={long}; SameSite=Lax"));
        assert_eq!(f, ["missing_secure", "missing_httponly"]);
        assert!(o.ends_with("; HttpOnly; Secure"), "{o}");
        let (f, _) = fixed(&format!("m=1; Secure; HttpOnly; SameSite=Lax; Max-Age=99999999; Max-Age=1{}", "0".repeat(1024)));
        assert_eq!(f, ["lifetime_too_long"]);
        let at_limit = "1".repeat(1024);
        let (f, _) = fixed(&format!("s=1; Secure={at_limit}; HttpOnly; SameSite=Lax"));
        assert!(f.is_empty(), "a 1024-octet value is still read: {f:?}");
        for (input, findings, out) in table {
            let (f, o) = fixed(input);
            assert_eq!(&f, findings, "{input}");
            assert_eq!(&o, out, "{input}");
        }
    }

    #[test]
    fn cookie_dates_as_browsers_read_them() {
        let t = |s: &str| cookie_date(s);
        assert_eq!(t("Wed, 21 Oct 2015 07:28:00 GMT"), Some(1_445_412_480));
        assert_eq!(t("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777), "RFC 850, two-digit year");
        assert_eq!(t("Sun Nov  6 08:49:37 1994"), Some(784_111_777), "asctime");
        assert_eq!(t("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(t("Tue, 29 Feb 2000 12:00:00 GMT"), Some(951_825_600), "leap day");
        assert_eq!(t("Fri, 01 Jan 2038 00:00:00 GMT"), Some(2_145_916_800));
        assert_eq!(t("01 jan 30 00:00:00"), Some(1_893_456_000), "years 0-69 are 20xx");
        for bad in [
            "",
            "garbage",
            "Wed, 30 Feb 2001 00:00:00 GMT",
            "Wed, 21 Oct 2015 25:00:00 GMT",
            "Wed, 21 Oct 1500 07:28:00 GMT",
            "21 Oct 2015",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "é, 21 Öct 2015 07:28:00",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn odd_headers_never_panic() {
        for h in [
            "__Hosté=1",
            "__Secur\u{e9}=1",
            "__Host\u{2014}x=1",
            "a=é; Expires=é; Max-Age=é",
            "a=1; Max-Age=-5",
            "a=1; Max-Age=99999999999999999999999",
            "a=1; =; ==; ;",
            "a=1; Expires=\u{0}",
            "ü=1",
            "a=1\u{7f}",
        ] {
            let r = enforce(h, &CookiePolicy::default(), NOW);
            assert!(!r.findings.is_empty() || r.action == CookieAction::Keep, "{h:?}");
        }
        assert_eq!(
            enforce("a=1; Max-Age=99999999999999999999999; Secure; HttpOnly; SameSite=Lax", &CookiePolicy::default(), NOW).findings,
            vec!["lifetime_too_long"]
        );
        assert_eq!(enforce("a=1\u{7f}", &CookiePolicy::default(), NOW).findings, vec!["unparseable"], "control characters");
        // "€" as UTF-8 bytes read as Latin-1: kept, not dropped.
        let latin1 = "pref=\u{e2}\u{82}\u{ac}; Secure; HttpOnly; SameSite=Lax";
        assert_eq!(enforce(latin1, &CookiePolicy::default(), NOW).action, CookieAction::Keep);
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
        RequestView { method, path: "/", query: "", headers, client_ip: None, origin: "https://edge.example" }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn csrf_signals() {
        let p = CsrfPolicy { allowed_origins: vec!["https://app.example".into()], ..Default::default() };
        let ok = |hs: &[(&str, &str)], m: &str| check_csrf(&view(m, &h(hs)), &p).is_ok();
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
        assert_eq!(check_csrf(&view("POST", &[]), &p), Err(AuthError::CsrfRejected));
    }
}
