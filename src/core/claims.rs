//! What a verified token keeps for the decisions after verification, and in what form.
//!
//! After the signature and claim checks, the request path reads only a few facts of a token: its
//! issuer, key, algorithm, `exp` and scopes, and the claims the policy names ([`claims_read`]).
//! A [`super::verify::VerifiedToken`] holds exactly those, packed into one shared allocation
//! ([`Packed`]), and so does a token-cache entry: a cache hit reads the very bytes a fresh
//! verification decided on, so both decide alike. The whole payload stays with a fresh token
//! only, for display (the CLI's and the JS package's `verify`); no decision reads it.
//!
//! The packed bytes (written only by [`Packed::new`], so every read below is of a well-formed
//! record):
//!
//! ```text
//! alg (u8: index in Algorithm::ALL)  issuer index (varint)
//! exp   0 | 1 i64le                  kid   0 | 1 str
//! scopes  varint n, str × n          claims  (str name, value)* to the end, in name order
//! value   1 str | 2 u64le | 3 i64le | 4 f64le (a number as serde_json holds it)
//!         | 5 (false) | 6 (true) | 7 varint n, str × n (an array of strings)
//! str     varint byte length, UTF-8
//! ```
//! A claim of another shape (null, an object, an array that is not all strings) is not kept:
//! every reader treats it as absent.

use super::alg::Algorithm;
use serde_json::{Map, Number, Value};
use std::sync::Arc;

/// The claims read after verification, whatever the policy: `iss` and `sub` (decision records,
/// revocations, the ledger, `sub`-keyed limits), `jti` and `iat` (revocations, the ledger).
pub const ALWAYS_READ: [&str; 4] = ["iat", "iss", "jti", "sub"];

/// The confirmation members of `cnf` (RFC 7800) a decision reads, kept under these flattened
/// names: the DPoP key thumbprint (RFC 9449) and the client certificate thumbprint (RFC 8705).
/// Only the nested members are read under these names, never a top-level claim so named.
pub const CONFIRMATION: [&str; 2] = ["cnf.jkt", "cnf.x5t#S256"];

/// The names of the claims a decision reads after verification under a policy, sorted, each
/// once: [`ALWAYS_READ`], [`CONFIRMATION`], every `forward_claims` claim, and the claims the rate limits read
/// (`limit_claims`: `azp` and `client_id` for a `client_id`-keyed limit, each `claim:NAME` limit
/// key, each `tier_claim`; see `RateLimitPolicy::claims_read`). `exp`, `kid`, `alg` and the
/// scopes (from `scope` and `scp`) are kept on their own.
///
/// Every reader of a token's claims on the request path is listed here; one that is not would
/// read nothing, on a fresh verification and a cache hit alike.
pub fn claims_read(forward_claims: &[(String, String)], limit_claims: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = ALWAYS_READ.iter().chain(&CONFIRMATION).map(|s| (*s).to_string()).collect();
    names.extend(forward_claims.iter().map(|(_, c)| c.clone()));
    names.extend(limit_claims);
    names.sort();
    names.dedup();
    names
}

/// One kept claim, borrowed from a [`Packed`] token.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim<'a> {
    /// A string.
    Text(&'a str),
    /// A number, as the payload had it (printed the same way).
    Number(Number),
    /// A boolean.
    Bool(bool),
    /// An array of strings (possibly empty).
    List(Vec<&'a str>),
}

impl Claim<'_> {
    /// As a header value: strings as is, numbers and booleans printed, arrays of strings joined
    /// by spaces.
    pub fn text(&self) -> String {
        match self {
            Claim::Text(s) => (*s).to_string(),
            Claim::Number(n) => n.to_string(),
            Claim::Bool(b) => b.to_string(),
            Claim::List(items) => items.join(" "),
        }
    }
}

/// The `alg` byte of a token verified by introspection.
const OPAQUE: u8 = u8::MAX;
const TEXT: u8 = 1;
const UINT: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const FALSE: u8 = 5;
const TRUE: u8 = 6;
const LIST: u8 = 7;

/// A verified token's decision facts, packed (see the module docs). Cloning shares the bytes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Packed(Arc<[u8]>);

/// What [`Packed::new`] packs.
pub(crate) struct Facts<'a> {
    /// `None` for a token verified by introspection (no signature checked here).
    pub(crate) alg: Option<Algorithm>,
    pub(crate) issuer_index: usize,
    pub(crate) expires_at: Option<i64>,
    pub(crate) kid: Option<&'a str>,
    pub(crate) scopes: &'a [String],
    /// The payload; only the claims named in `keep` are packed.
    pub(crate) claims: &'a Map<String, Value>,
    /// Sorted claim names ([`claims_read`]).
    pub(crate) keep: &'a [String],
}

impl Packed {
    pub(crate) fn new(f: &Facts<'_>) -> Packed {
        let mut b = Vec::with_capacity(64);
        b.push(f.alg.and_then(|alg| Algorithm::ALL.iter().position(|a| *a == alg)).map_or(OPAQUE, |i| i as u8));
        varint(&mut b, f.issuer_index);
        match f.expires_at {
            None => b.push(0),
            Some(e) => {
                b.push(1);
                b.extend_from_slice(&e.to_le_bytes());
            }
        }
        match f.kid {
            None => b.push(0),
            Some(k) => {
                b.push(1);
                string(&mut b, k);
            }
        }
        varint(&mut b, f.scopes.len());
        for s in f.scopes {
            string(&mut b, s);
        }
        for name in f.keep {
            let found = match name.strip_prefix("cnf.") {
                Some(member) if CONFIRMATION.contains(&name.as_str()) => f.claims.get("cnf").and_then(|c| c.get(member)),
                _ => f.claims.get(name),
            };
            let Some(v) = found else { continue };
            let at = b.len();
            string(&mut b, name);
            match v {
                Value::String(s) => {
                    b.push(TEXT);
                    string(&mut b, s);
                }
                Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                    (Some(u), _, _) => push_word(&mut b, UINT, u.to_le_bytes()),
                    (None, Some(i), _) => push_word(&mut b, INT, i.to_le_bytes()),
                    (None, None, Some(x)) => push_word(&mut b, FLOAT, x.to_le_bytes()),
                    (None, None, None) => b.truncate(at),
                },
                Value::Bool(v) => b.push(if *v { TRUE } else { FALSE }),
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    b.push(LIST);
                    varint(&mut b, items.len());
                    for s in items.iter().filter_map(Value::as_str) {
                        string(&mut b, s);
                    }
                }
                _ => b.truncate(at),
            }
        }
        Packed(b.into())
    }

    /// Heap bytes held: the shared allocation (its two reference counts and the bytes, padded
    /// to the pointer size).
    pub(crate) fn heap_bytes(&self) -> usize {
        let word = std::mem::size_of::<usize>();
        2 * word + self.0.len().div_ceil(word) * word
    }

    pub(crate) fn alg(&self) -> Option<Algorithm> {
        Algorithm::ALL.get(usize::from(self.0[0])).copied()
    }

    pub(crate) fn issuer_index(&self) -> usize {
        self.header().issuer_index
    }

    pub(crate) fn expires_at(&self) -> Option<i64> {
        self.header().expires_at
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        self.header().kid
    }

    /// The scopes (sorted, each once).
    pub(crate) fn scopes(&self) -> impl Iterator<Item = &str> + '_ {
        let mut r = self.header().scopes;
        let n = r.varint();
        (0..n).map(move |_| r.str())
    }

    /// A kept claim, if the payload had it in a kept shape.
    pub(crate) fn claim(&self, name: &str) -> Option<Claim<'_>> {
        let mut r = self.header().claims;
        while !r.done() {
            let found = r.bytes() == name.as_bytes();
            let tag = r.byte();
            if !found {
                r.skip_value(tag);
                continue;
            }
            return match tag {
                TEXT => Some(Claim::Text(r.str())),
                UINT => Some(Claim::Number(Number::from(u64::from_le_bytes(r.word())))),
                INT => Some(Claim::Number(Number::from(i64::from_le_bytes(r.word())))),
                FLOAT => Number::from_f64(f64::from_le_bytes(r.word())).map(Claim::Number),
                FALSE | TRUE => Some(Claim::Bool(tag == TRUE)),
                _ => {
                    let n = r.varint();
                    Some(Claim::List((0..n).map(|_| r.str()).collect()))
                }
            };
        }
        None
    }

    /// The names of the kept claims, in order.
    pub(crate) fn claim_names(&self) -> impl Iterator<Item = &str> + '_ {
        let mut r = self.header().claims;
        std::iter::from_fn(move || {
            if r.done() {
                return None;
            }
            let name = r.str();
            let tag = r.byte();
            r.skip_value(tag);
            Some(name)
        })
    }

    fn header(&self) -> Header<'_> {
        let mut r = Reader { b: &self.0, at: 1 };
        let issuer_index = r.varint();
        let expires_at = (r.byte() == 1).then(|| i64::from_le_bytes(r.word()));
        let kid = (r.byte() == 1).then(|| r.str());
        let scopes = r.clone();
        for _ in 0..r.varint() {
            r.bytes();
        }
        Header { issuer_index, expires_at, kid, scopes, claims: r }
    }
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("alg", &self.alg())
            .field("issuer_index", &self.issuer_index())
            .field("expires_at", &self.expires_at())
            .field("kid", &self.kid())
            .field("scopes", &self.scopes().collect::<Vec<_>>())
            .field("claims", &self.claim_names().map(|n| (n, self.claim(n))).collect::<Vec<_>>())
            .finish()
    }
}

struct Header<'a> {
    issuer_index: usize,
    expires_at: Option<i64>,
    kid: Option<&'a str>,
    scopes: Reader<'a>,
    claims: Reader<'a>,
}

fn varint(b: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        b.push((n as u8) | 0x80);
        n >>= 7;
    }
    b.push(n as u8);
}

fn string(b: &mut Vec<u8>, s: &str) {
    varint(b, s.len());
    b.extend_from_slice(s.as_bytes());
}

fn push_word(b: &mut Vec<u8>, tag: u8, w: [u8; 8]) {
    b.push(tag);
    b.extend_from_slice(&w);
}

/// A cursor over bytes [`Packed::new`] wrote (so always well-formed).
#[derive(Clone)]
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.b.len()
    }
    fn byte(&mut self) -> u8 {
        self.at += 1;
        self.b[self.at - 1]
    }
    fn varint(&mut self) -> usize {
        let (mut n, mut shift) = (0usize, 0);
        loop {
            let byte = self.byte();
            n |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return n;
            }
            shift += 7;
        }
    }
    fn word(&mut self) -> [u8; 8] {
        let mut w = [0; 8];
        w.copy_from_slice(&self.b[self.at..self.at + 8]);
        self.at += 8;
        w
    }
    fn bytes(&mut self) -> &'a [u8] {
        let n = self.varint();
        self.at += n;
        &self.b[self.at - n..self.at]
    }
    fn skip_value(&mut self, tag: u8) {
        match tag {
            TEXT => {
                self.bytes();
            }
            UINT | INT | FLOAT => {
                self.word();
            }
            LIST => {
                for _ in 0..self.varint() {
                    self.bytes();
                }
            }
            _ => {}
        }
    }
    fn str(&mut self) -> &'a str {
        // Written from a `&str`: always valid UTF-8.
        std::str::from_utf8(self.bytes()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pack(payload: Value, keep: &[&str]) -> Packed {
        let keep: Vec<String> = keep.iter().map(|s| (*s).to_string()).collect();
        let claims = payload.as_object().unwrap().clone();
        let scopes = vec!["a b".to_string(), "read".to_string()];
        Packed::new(&Facts {
            alg: Some(Algorithm::ES256),
            issuer_index: 300,
            expires_at: Some(-5),
            kid: Some("kï"),
            scopes: &scopes,
            claims: &claims,
            keep: &keep,
        })
    }

    #[test]
    fn every_kept_shape_reads_back_as_the_payload_had_it() {
        let payload = json!({
            "s": "text ✓", "e": "", "u": 18_446_744_073_709_551_615u64, "i": -3, "f": 1.5e300, "z": 0,
            "t": true, "no": false, "l": ["x", "", "y z"], "el": [],
            "null": null, "obj": {"a": 1}, "mixed": ["a", 1], "unkept": "x",
        });
        let keep = ["e", "el", "f", "i", "l", "mixed", "missing", "no", "null", "obj", "s", "t", "u", "z"];
        let p = pack(payload.clone(), &keep);
        assert_eq!((p.alg(), p.issuer_index(), p.expires_at(), p.kid()), (Some(Algorithm::ES256), 300, Some(-5), Some("kï")));
        assert_eq!(p.scopes().collect::<Vec<_>>(), ["a b", "read"]);
        assert_eq!(p.claim_names().collect::<Vec<_>>(), ["e", "el", "f", "i", "l", "no", "s", "t", "u", "z"], "other shapes and unkept claims are left out");
        for name in keep {
            let want = match &payload[name] {
                Value::String(s) => Some(Claim::Text(s)),
                Value::Number(n) => Some(Claim::Number(n.clone())),
                Value::Bool(b) => Some(Claim::Bool(*b)),
                Value::Array(a) if a.iter().all(Value::is_string) => Some(Claim::List(a.iter().filter_map(Value::as_str).collect())),
                _ => None,
            };
            assert_eq!(p.claim(name), want, "{name}");
        }
        assert_eq!(p.claim("u").unwrap().text(), payload["u"].to_string());
        assert_eq!(p.claim("f").unwrap().text(), payload["f"].to_string());
        assert_eq!(p.claim("l").unwrap().text(), "x  y z");
        assert_eq!(p.claim("unkept"), None);
    }

    #[test]
    fn long_strings_and_no_optional_facts() {
        let long = "x".repeat(70_000);
        let claims = json!({"sub": long}).as_object().unwrap().clone();
        let keep = vec!["sub".to_string()];
        let p = Packed::new(&Facts { alg: Some(Algorithm::HS512), issuer_index: 0, expires_at: None, kid: None, scopes: &[], claims: &claims, keep: &keep });
        assert_eq!((p.alg(), p.issuer_index(), p.expires_at(), p.kid(), p.scopes().count()), (Some(Algorithm::HS512), 0, None, None, 0));
        assert_eq!(p.claim("sub"), Some(Claim::Text(&long)));
        assert!(p.heap_bytes() >= 70_000 && p.heap_bytes() % std::mem::size_of::<usize>() == 0);
    }

    #[test]
    fn claims_read_lists_every_reader() {
        let forward = vec![("x-a".to_string(), "email".to_string()), ("x-b".to_string(), "sub".to_string())];
        let limits = ["plan", "azp", "tier", "client_id", "plan"].map(str::to_string);
        assert_eq!(claims_read(&forward, limits), ["azp", "client_id", "cnf.jkt", "cnf.x5t#S256", "email", "iat", "iss", "jti", "plan", "sub", "tier"]);
        let mut base: Vec<&str> = ALWAYS_READ.iter().chain(&CONFIRMATION).copied().collect();
        base.sort_unstable();
        assert_eq!(claims_read(&[], []), base);
    }
}
