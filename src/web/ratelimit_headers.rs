//! Rate-limit response headers, for client back-off: the IETF `RateLimit` / `RateLimit-Policy`
//! structured fields (draft-ietf-httpapi-ratelimit-headers), the older `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` fields, and `Retry-After` (RFC 9110 §10.2.3).
//! Pure: header values and `now` in, numbers out. A header that does not parse is ignored, as
//! RFC 9651 asks of structured fields, so a bad header never becomes a wrong number.
//!
//! This reads the limits a server reports; it is not the rate limiter (that is
//! [`crate::core::ratelimit`]).

use serde::Serialize;

/// What the headers say about the client's quota. `None` where a header is absent or invalid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitInfo {
    /// Requests (quota units) left in the current window.
    pub remaining: Option<i64>,
    /// Seconds until the quota resets.
    pub reset_secs: Option<i64>,
    /// The quota per window.
    pub limit: Option<i64>,
    /// The window, in seconds.
    pub window_secs: Option<i64>,
    /// Seconds to wait before retrying (`Retry-After`, a delay or an HTTP date).
    pub retry_after_secs: Option<i64>,
}

/// Reads the rate-limit headers through `header` (case-insensitive name → combined value) at
/// `now` (Unix seconds, used for a `Retry-After` date).
///
/// With several `RateLimit` entries the most restrictive one (fewest remaining) wins; its limit
/// and window come from the `RateLimit-Policy` entry of the same name. The structured fields take
/// precedence over the older separate fields.
pub fn parse_rate_limit(header: impl Fn(&str) -> Option<String>, now: i64) -> RateLimitInfo {
    let mut info = RateLimitInfo::default();
    let policies: Vec<(String, i64, Option<i64>)> = header("ratelimit-policy")
        .and_then(|v| sf::parse_list(&v))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| Some((item.name()?, item.param_uint("q")?, item.param_uint("w"))))
        .collect();
    let current = header("ratelimit")
        .and_then(|v| sf::parse_list(&v))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| Some((item.name()?, item.param_uint("r")?, item.param_uint("t"))))
        // Fewest remaining first; on a tie, the later reset.
        .min_by_key(|(_, r, t)| (*r, std::cmp::Reverse(t.unwrap_or(0))));
    let policy = match &current {
        Some((name, _, _)) => policies.iter().find(|(n, _, _)| n == name),
        None => policies.iter().min_by_key(|(_, q, _)| *q),
    };
    if let Some((_, r, t)) = &current {
        info.remaining = Some(*r);
        info.reset_secs = *t;
    }
    if let Some((_, q, w)) = policy {
        info.limit = Some(*q);
        info.window_secs = *w;
    }
    info.remaining = info.remaining.or_else(|| header("ratelimit-remaining").and_then(|v| legacy_uint(&v)));
    info.reset_secs = info.reset_secs.or_else(|| header("ratelimit-reset").and_then(|v| legacy_uint(&v)));
    info.limit = info.limit.or_else(|| header("ratelimit-limit").and_then(|v| legacy_uint(&v)));
    info.retry_after_secs = header("retry-after").and_then(|v| retry_after(&v, now));
    info
}

/// Largest number accepted (RFC 9651 integers have at most 15 digits).
const MAX_DIGITS: usize = 15;

fn uint(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > MAX_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The older fields: a non-negative integer, possibly the first member of a list with parameters
/// (`RateLimit-Limit: 100, 100;w=60`).
fn legacy_uint(v: &str) -> Option<i64> {
    let first = v.split(',').next()?;
    uint(first.split(';').next()?.trim())
}

/// `Retry-After`: delay-seconds or an IMF-fixdate, as seconds from `now` (never negative).
fn retry_after(v: &str, now: i64) -> Option<i64> {
    let v = v.trim();
    if let Some(secs) = uint(v) {
        return Some(secs);
    }
    imf_fixdate(v).map(|at| (at - now).max(0))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) to Unix seconds.
/// The obsolete RFC 850 and asctime forms are not accepted. (Not the `httpdate` crate: it accepts
/// them, and refuses dates before 1970 and a weekday that does not match the date.)
fn imf_fixdate(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // ASCII only: every slice below is then on a character boundary.
    if !s.is_ascii() || b.len() != 29 || &s[3..5] != ", " || &s[25..] != " GMT" || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' {
        return None;
    }
    if !["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&s[..3]) {
        return None;
    }
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == &s[8..11])? as i64 + 1;
    let day = uint(&s[5..7])?;
    let year = uint(&s[12..16])?;
    let (hh, mm, ss) = (uint(&s[17..19])?, uint(&s[20..22])?, uint(&s[23..25])?);
    if b[19] != b':' || b[22] != b':' || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The part of RFC 9651 (Structured Field Values) the rate-limit fields use: a List of Items
/// with Parameters. Inner lists are parsed (so they do not fail the field) and skipped.
mod sf {
    /// A bare item. Only what the rate-limit fields read is kept.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Bare {
        Int(i64),
        Str(String),
        Token(String),
        Other,
    }

    /// One list member that is an Item.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Item {
        pub bare: Bare,
        pub params: Vec<(String, Bare)>,
    }

    impl Item {
        /// The policy name: a String (as the draft defines) or, leniently, a Token.
        pub fn name(&self) -> Option<String> {
            match &self.bare {
                Bare::Str(s) | Bare::Token(s) => Some(s.clone()),
                _ => None,
            }
        }
        /// A parameter that is a non-negative Integer. The last occurrence of a key wins.
        pub fn param_uint(&self, key: &str) -> Option<i64> {
            match self.params.iter().rev().find(|(k, _)| k == key)? {
                (_, Bare::Int(n)) if *n >= 0 => Some(*n),
                _ => None,
            }
        }
    }

    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn eat(&mut self, c: u8) -> bool {
            if self.peek() == Some(c) {
                self.i += 1;
                true
            } else {
                false
            }
        }
        fn skip_sp(&mut self) {
            while self.peek() == Some(b' ') {
                self.i += 1;
            }
        }
        fn skip_ows(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t')) {
                self.i += 1;
            }
        }
    }

    /// Parses a List. `None` if any part of the field is invalid.
    pub fn parse_list(input: &str) -> Option<Vec<Item>> {
        let mut p = P { s: input.as_bytes(), i: 0 };
        p.skip_sp();
        let mut out = Vec::new();
        if p.peek().is_none() {
            return Some(out);
        }
        loop {
            if p.peek() == Some(b'(') {
                inner_list(&mut p)?;
            } else {
                out.push(item(&mut p)?);
            }
            p.skip_ows();
            match p.peek() {
                None => return Some(out),
                Some(b',') => {
                    p.i += 1;
                    p.skip_ows();
                    p.peek()?; // a trailing comma is invalid
                }
                Some(_) => return None,
            }
        }
    }

    fn inner_list(p: &mut P<'_>) -> Option<()> {
        p.eat(b'(');
        loop {
            p.skip_sp();
            if p.eat(b')') {
                params(p)?;
                return Some(());
            }
            item(p)?;
            if !matches!(p.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    fn item(p: &mut P<'_>) -> Option<Item> {
        let bare = bare(p)?;
        let params = params(p)?;
        Some(Item { bare, params })
    }

    fn params(p: &mut P<'_>) -> Option<Vec<(String, Bare)>> {
        let mut out = Vec::new();
        while p.eat(b';') {
            p.skip_sp();
            let key = key(p)?;
            let value = if p.eat(b'=') { bare(p)? } else { Bare::Other };
            out.push((key, value));
        }
        Some(out)
    }

    fn key(p: &mut P<'_>) -> Option<String> {
        let start = p.i;
        match p.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => p.i += 1,
            _ => return None,
        }
        while matches!(p.peek(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c)) {
            p.i += 1;
        }
        Some(String::from_utf8_lossy(&p.s[start..p.i]).into_owned())
    }

    fn bare(p: &mut P<'_>) -> Option<Bare> {
        match p.peek()? {
            b'-' | b'0'..=b'9' => number(p),
            b'"' => string(p).map(Bare::Str),
            b':' => {
                p.i += 1;
                while matches!(p.peek(), Some(c) if c.is_ascii_alphanumeric() || b"+/=".contains(&c)) {
                    p.i += 1;
                }
                p.eat(b':').then_some(Bare::Other)
            }
            b'?' => {
                p.i += 1;
                (p.eat(b'0') || p.eat(b'1')).then_some(Bare::Other)
            }
            b'@' => {
                p.i += 1;
                number(p).and_then(|n| matches!(n, Bare::Int(_)).then_some(Bare::Other))
            }
            c if c.is_ascii_alphabetic() || c == b'*' => {
                let start = p.i;
                p.i += 1;
                while matches!(p.peek(), Some(c) if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)) {
                    p.i += 1;
                }
                Some(Bare::Token(String::from_utf8_lossy(&p.s[start..p.i]).into_owned()))
            }
            _ => None,
        }
    }

    fn number(p: &mut P<'_>) -> Option<Bare> {
        let negative = p.eat(b'-');
        let start = p.i;
        while matches!(p.peek(), Some(b'0'..=b'9')) {
            p.i += 1;
        }
        let int_digits = p.i - start;
        if int_digits == 0 {
            return None;
        }
        if p.eat(b'.') {
            let frac_start = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            let frac = p.i - frac_start;
            return (int_digits <= 12 && (1..=3).contains(&frac)).then_some(Bare::Other);
        }
        if int_digits > 15 {
            return None;
        }
        let n: i64 = std::str::from_utf8(&p.s[start..p.i]).ok()?.parse().ok()?;
        Some(Bare::Int(if negative { -n } else { n }))
    }

    fn string(p: &mut P<'_>) -> Option<String> {
        p.eat(b'"');
        let mut out = String::new();
        loop {
            match p.peek()? {
                b'\\' => {
                    p.i += 1;
                    match p.peek()? {
                        c @ (b'"' | b'\\') => out.push(c as char),
                        _ => return None,
                    }
                }
                b'"' => {
                    p.i += 1;
                    return Some(out);
                }
                c @ 0x20..=0x7e => out.push(c as char),
                _ => return None,
            }
            p.i += 1;
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lists_of_items_with_parameters() {
            let l = parse_list(r#""default";r=50;t=30, "burst";r=2"#).unwrap();
            assert_eq!(l.len(), 2);
            assert_eq!(l[0].name().as_deref(), Some("default"));
            assert_eq!(l[0].param_uint("r"), Some(50));
            assert_eq!(l[0].param_uint("t"), Some(30));
            assert_eq!(l[1].param_uint("t"), None);
            assert_eq!(parse_list("").unwrap(), vec![]);
            assert_eq!(parse_list("  ").unwrap(), vec![]);
            // Other bare item types parse (and are kept opaque).
            let l = parse_list(r#"tok;a=?1;b=1.5;c=:AQID:;d=@1700000000;e="x\"y", (1 2);q=1, "n";pk=:cGs=:"#).unwrap();
            assert_eq!(l.len(), 2, "the inner list is skipped");
            assert_eq!(l[0].name().as_deref(), Some("tok"));
            assert_eq!(l[0].params[4].1, Bare::Str("x\"y".into()));
        }

        #[test]
        fn invalid_fields_fail_whole() {
            for bad in [
                r#""a";r=1,"#,               // trailing comma
                r#""a";r=1 "b""#,            // missing comma
                r#""a";R=1"#,                // upper-case key
                r#""a";r=1234567890123456"#, // 16 digits
                r#""a";r=1.2345"#,           // 4 fractional digits
                r#""unterminated"#,
                r#""bad\escape""#,
                "\"tab\tinside\"",
                r#""a";r="#,
                "(1 2",
                "?2",
            ] {
                assert_eq!(parse_list(bad), None, "{bad:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(headers: &[(&str, &str)], now: i64) -> RateLimitInfo {
        let map: HashMap<String, String> = headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
        parse_rate_limit(|name| map.get(name).cloned(), now)
    }

    #[test]
    fn ietf_fields() {
        let i = parse(&[("RateLimit", r#""default";r=50;t=30"#), ("RateLimit-Policy", r#""default";q=100;w=60"#)], 0);
        assert_eq!(i, RateLimitInfo { remaining: Some(50), reset_secs: Some(30), limit: Some(100), window_secs: Some(60), retry_after_secs: None });
    }

    #[test]
    fn most_restrictive_entry_wins_and_takes_its_own_policy() {
        let i = parse(&[("RateLimit", r#""hour";r=900;t=1200, "burst";r=3;t=5"#), ("RateLimit-Policy", r#""hour";q=1000;w=3600, "burst";q=10;w=10"#)], 0);
        assert_eq!((i.remaining, i.reset_secs, i.limit, i.window_secs), (Some(3), Some(5), Some(10), Some(10)));
    }

    #[test]
    fn policy_alone_and_unmatched_names() {
        let i = parse(&[("RateLimit-Policy", r#""a";q=100;w=60, "b";q=5"#)], 0);
        assert_eq!((i.remaining, i.limit, i.window_secs), (None, Some(5), None));
        let i = parse(&[("RateLimit", r#""x";r=1"#), ("RateLimit-Policy", r#""y";q=100;w=60"#)], 0);
        assert_eq!((i.remaining, i.limit), (Some(1), None), "a policy of another name is not this entry's");
    }

    #[test]
    fn invalid_structured_field_is_ignored_not_guessed() {
        let i = parse(&[("RateLimit", r#""default";r=50;t=30,"#), ("RateLimit-Remaining", "7")], 0);
        assert_eq!(i.remaining, Some(7), "the broken field is ignored; the legacy one is used");
        assert_eq!(i.reset_secs, None);
        let i = parse(&[("RateLimit", r#""default";r=-1"#)], 0);
        assert_eq!(i.remaining, None, "negative remaining is not a number of requests");
        let i = parse(&[("RateLimit", r#""default";t=30"#)], 0);
        assert_eq!((i.remaining, i.reset_secs), (None, None), "an entry without r is skipped");
    }

    #[test]
    fn legacy_fields() {
        let i = parse(&[("RateLimit-Limit", "100, 100;w=60"), ("RateLimit-Remaining", " 42 "), ("RateLimit-Reset", "17")], 0);
        assert_eq!((i.limit, i.remaining, i.reset_secs), (Some(100), Some(42), Some(17)));
        let i = parse(&[("RateLimit-Remaining", "-3"), ("RateLimit-Reset", "soon"), ("RateLimit-Limit", "1e3")], 0);
        assert_eq!(i, RateLimitInfo::default());
        // The structured field wins over the legacy one.
        let i = parse(&[("RateLimit", r#""d";r=5;t=9"#), ("RateLimit-Remaining", "42")], 0);
        assert_eq!(i.remaining, Some(5));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse(&[("Retry-After", "120")], 0).retry_after_secs, Some(120));
        // 1994-11-06T08:49:37Z = 784111777
        let now = 784_111_777 - 90;
        assert_eq!(parse(&[("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")], now).retry_after_secs, Some(90));
        assert_eq!(parse(&[("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")], now + 1000).retry_after_secs, Some(0), "a past date means now");
        assert_eq!(imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(imf_fixdate("Tue, 29 Feb 2028 23:59:59 GMT"), Some(1_835_481_599));
        for bad in [
            "-5",
            "1.5",
            "",
            "Sun, 06 Nov 1994 08:49:3é GM",
            "Sun, 06 Nov 1994 08:49:é GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nox 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
        ] {
            assert_eq!(parse(&[("Retry-After", bad)], 0).retry_after_secs, None, "{bad:?}");
        }
    }

    #[test]
    fn nothing_at_all() {
        assert_eq!(parse(&[], 0), RateLimitInfo::default());
    }
}
