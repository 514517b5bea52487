//! Strict JSON and base64url: duplicate object members are an error at every depth, and base64url
//! must be canonical (no padding, no stray bits), so two parsers can never read one token differently.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::RequireNone).with_decode_allow_trailing_bits(false),
);

/// Decodes canonical, unpadded base64url (RFC 7515 §2). `None` on any deviation.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    B64URL.decode(s).ok()
}

/// Encodes unpadded base64url.
pub fn b64url_encode(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

/// Parses JSON text into `T` through a [`Value`]. Every typed parse of the crate's own JSON
/// (configuration, stored records, Durable Object messages) goes this one way, so the wasm build
/// links one JSON text parser for them instead of one per type (a size choice: these are not on
/// the per-request hot path).
pub fn from_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::from_slice::<Value>(text.as_bytes())?)
}

/// Why strict JSON parsing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictJsonError {
    /// An object has the same member twice (the name is given).
    Duplicate(String),
    /// Not valid JSON.
    Syntax,
}

const DUP_PREFIX: &str = "duplicate member: ";

/// Parses JSON, rejecting duplicate object members at any depth.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = de.deserialize_any(StrictVisitor).map_err(classify)?;
    de.end().map_err(|_| StrictJsonError::Syntax)?;
    Ok(v)
}

/// Parses a JSON object strictly.
pub fn parse_strict_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    match parse_strict(bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(StrictJsonError::Syntax),
    }
}

/// A JOSE header member that Edgeward reads: its string value, or present but not a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMember<'a> {
    /// A JSON string (borrowed from the input when it has no escapes).
    Str(Cow<'a, str>),
    /// Any other JSON value.
    NotStr,
}

/// The members of a JOSE header that the gate's rules look at, read by [`scan_header`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderScan<'a> {
    /// `alg`.
    pub alg: Option<HeaderMember<'a>>,
    /// `kid`.
    pub kid: Option<HeaderMember<'a>>,
    /// `typ`.
    pub typ: Option<HeaderMember<'a>>,
    /// `cty`.
    pub cty: Option<HeaderMember<'a>>,
    /// `crit` is present.
    pub crit: bool,
    /// `b64` is present.
    pub b64: bool,
    /// `zip` is present.
    pub zip: bool,
}

/// Parses a JOSE header as strictly as [`parse_strict_object`] (an object, duplicate members an
/// error at any depth) but keeps only what the header rules read, without building a map: the
/// header is parsed on every uncached verification.
pub fn scan_header(bytes: &[u8]) -> Result<HeaderScan<'_>, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let scan = de.deserialize_any(HeaderVisitor).map_err(classify)?;
    de.end().map_err(|_| StrictJsonError::Syntax)?;
    Ok(scan)
}

/// A string key or value, borrowed when the input allows it.
struct CowStr<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Walks the keys of an object, refusing a key seen before (an ordered set: a header of thousands
/// of distinct members costs n·log n comparisons, as the map-based parser does, not n²).
fn next_unique_key<'de, A: MapAccess<'de>>(map: &mut A, seen: &mut BTreeSet<Cow<'de, str>>) -> Result<Option<Cow<'de, str>>, A::Error> {
    let Some(CowStr(key)) = map.next_key::<CowStr<'de>>()? else { return Ok(None) };
    if !seen.insert(key.clone()) {
        return Err(de::Error::custom(format_args!("{DUP_PREFIX}{key}")));
    }
    Ok(Some(key))
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = HeaderScan<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderScan<'de>, A::Error> {
        let mut scan = HeaderScan::default();
        let mut seen = BTreeSet::new();
        while let Some(key) = next_unique_key(&mut map, &mut seen)? {
            let slot = match key.as_ref() {
                "alg" => &mut scan.alg,
                "kid" => &mut scan.kid,
                "typ" => &mut scan.typ,
                "cty" => &mut scan.cty,
                other => {
                    match other {
                        "crit" => scan.crit = true,
                        "b64" => scan.b64 = true,
                        "zip" => scan.zip = true,
                        _ => {}
                    }
                    map.next_value::<StrictIgnored>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<MemberValue<'de>>()?.0);
        }
        Ok(scan)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<HeaderScan<'de>, A::Error> {
        // Validated first, as `parse_strict_object` does: a duplicate inside still says so.
        StrictIgnored::seq(seq)?;
        Err(de::Error::custom("not a JSON object"))
    }
}

/// A header member's value: kept if a string, otherwise validated and dropped.
struct MemberValue<'de>(HeaderMember<'de>);

impl<'de> de::Deserialize<'de> for MemberValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MemberValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<MemberValue<'de>, E> {
                Ok(MemberValue(HeaderMember::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<MemberValue<'de>, E> {
                Ok(MemberValue(HeaderMember::Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<MemberValue<'de>, E> {
                Ok(MemberValue(HeaderMember::Str(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MemberValue<'de>, E> {
                Ok(MemberValue(HeaderMember::NotStr))
            }
            fn visit_i64<E>(self, _: i64) -> Result<MemberValue<'de>, E> {
                Ok(MemberValue(HeaderMember::NotStr))
            }
            fn visit_u64<E>(self, _: u64) -> Result<MemberValue<'de>, E> {
                Ok(MemberValue(HeaderMember::NotStr))
            }
            fn visit_f64<E>(self, _: f64) -> Result<MemberValue<'de>, E> {
                Ok(MemberValue(HeaderMember::NotStr))
            }
            fn visit_unit<E>(self) -> Result<MemberValue<'de>, E> {
                Ok(MemberValue(HeaderMember::NotStr))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MemberValue<'de>, A::Error> {
                StrictIgnored::seq(seq).map(|_| MemberValue(HeaderMember::NotStr))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MemberValue<'de>, A::Error> {
                StrictIgnored::map(map).map(|_| MemberValue(HeaderMember::NotStr))
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, validated (duplicate members refused at any depth) and dropped.
struct StrictIgnored;

impl StrictIgnored {
    fn seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<StrictIgnored, A::Error> {
        while seq.next_element::<StrictIgnored>()?.is_some() {}
        Ok(StrictIgnored)
    }
    fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<StrictIgnored, A::Error> {
        let mut seen = BTreeSet::new();
        while next_unique_key(&mut map, &mut seen)?.is_some() {
            map.next_value::<StrictIgnored>()?;
        }
        Ok(StrictIgnored)
    }
}

impl<'de> de::Deserialize<'de> for StrictIgnored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictIgnored;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<StrictIgnored, E> {
                Ok(StrictIgnored)
            }
            fn visit_i64<E>(self, _: i64) -> Result<StrictIgnored, E> {
                Ok(StrictIgnored)
            }
            fn visit_u64<E>(self, _: u64) -> Result<StrictIgnored, E> {
                Ok(StrictIgnored)
            }
            fn visit_f64<E>(self, _: f64) -> Result<StrictIgnored, E> {
                Ok(StrictIgnored)
            }
            fn visit_str<E>(self, _: &str) -> Result<StrictIgnored, E> {
                Ok(StrictIgnored)
            }
            fn visit_unit<E>(self) -> Result<StrictIgnored, E> {
                Ok(StrictIgnored)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<StrictIgnored, A::Error> {
                StrictIgnored::seq(seq)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrictIgnored, A::Error> {
                StrictIgnored::map(map)
            }
        }
        d.deserialize_any(V)
    }
}

fn classify(e: serde_json::Error) -> StrictJsonError {
    let msg = e.to_string();
    match msg.strip_prefix(DUP_PREFIX) {
        Some(rest) => {
            // serde_json appends " at line L column C".
            let name = rest.rsplit_once(" at line ").map(|(n, _)| n).unwrap_or(rest);
            StrictJsonError::Duplicate(name.to_string())
        }
        None => StrictJsonError::Syntax,
    }
}

struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One lookup per member: the vacant slot is filled once its value is parsed.
            match out.entry(key) {
                serde_json::map::Entry::Occupied(o) => return Err(de::Error::custom(format_args!("{DUP_PREFIX}{}", o.key()))),
                serde_json::map::Entry::Vacant(slot) => {
                    let StrictValue(v) = map.next_value()?;
                    slot.insert(v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_rejected_at_any_depth() {
        assert_eq!(parse_strict(br#"{"alg":"RS256","alg":"none"}"#), Err(StrictJsonError::Duplicate("alg".into())));
        assert_eq!(parse_strict(br#"{"a":{"b":1,"b":2}}"#), Err(StrictJsonError::Duplicate("b".into())));
        assert_eq!(parse_strict(br#"[{"x":1},{"x":2,"x":3}]"#), Err(StrictJsonError::Duplicate("x".into())));
        assert!(parse_strict(br#"{"a":1,"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn header_scan_agrees_with_the_strict_parser() {
        let cases = [
            r#"{"alg":"RS256","kid":"a"}"#,
            r#"{"alg":"RS256","alg":"none"}"#,
            r#"{"alg":1,"kid":["x"],"typ":null,"cty":true}"#,
            r#"{"x":{"a":1,"a":2}}"#,
            r#"{"x":[{"a":1},{"b":2,"b":3}]}"#,
            r#"[{"a":1,"a":2}]"#,
            "[1]",
            "1",
            "{",
            r#"{"alg":"RS256"} x"#,
            r#"{"kid":"\u0061b","typ":"at+jwt"}"#,
            r#"{"crit":["exp"],"typ":"JWT"}"#,
            r#"{"cty":{"b":[1,{"c":null}]},"zip":"DEF","b64":false,"jwk":{"kty":"oct"}}"#,
            r#"{"a":1,"b":{"a":2}}"#,
        ];
        for c in cases {
            let strict = parse_strict_object(c.as_bytes());
            let scan = scan_header(c.as_bytes());
            match (&strict, &scan) {
                (Ok(m), Ok(s)) => {
                    let member = |k: &str| {
                        m.get(k).map(|v| match v {
                            Value::String(x) => HeaderMember::Str(Cow::Owned(x.clone())),
                            _ => HeaderMember::NotStr,
                        })
                    };
                    assert_eq!((&s.alg, &s.kid, &s.typ, &s.cty), (&member("alg"), &member("kid"), &member("typ"), &member("cty")), "{c}");
                    assert_eq!((s.crit, s.b64, s.zip), (m.contains_key("crit"), m.contains_key("b64"), m.contains_key("zip")), "{c}");
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{c}"),
                _ => panic!("{c}: {strict:?} vs {scan:?}"),
            }
        }
    }

    #[test]
    fn header_scan_with_thousands_of_members() {
        let members: Vec<String> = (0..3000).map(|i| format!("\"m{i}\":{i}")).collect();
        let wide = format!("{{\"alg\":\"RS256\",{}}}", members.join(","));
        assert_eq!(scan_header(wide.as_bytes()).unwrap().alg, Some(HeaderMember::Str(Cow::Borrowed("RS256"))));
        let dup = format!("{{{},\"m1500\":0}}", members.join(","));
        assert_eq!(scan_header(dup.as_bytes()), Err(StrictJsonError::Duplicate("m1500".into())));
    }

    #[test]
    fn syntax_errors_and_trailing_data() {
        assert_eq!(parse_strict(b"{"), Err(StrictJsonError::Syntax));
        assert_eq!(parse_strict(b"{} {}"), Err(StrictJsonError::Syntax));
        assert_eq!(parse_strict_object(b"[1]"), Err(StrictJsonError::Syntax));
        assert!(parse_strict_object(b" {\"a\": [1, 2.5, null, true]} ").is_ok());
    }

    #[test]
    fn base64url_is_canonical() {
        assert_eq!(b64url_decode("YQ"), Some(b"a".to_vec()));
        assert_eq!(b64url_decode("YQ=="), None, "padding");
        assert_eq!(b64url_decode("YR"), None, "non-zero trailing bits");
        assert_eq!(b64url_decode("Y+"), None, "standard alphabet");
        assert_eq!(b64url_decode("Y Q"), None, "whitespace");
        assert_eq!(b64url_decode("_-8"), Some(vec![0xff, 0xef]));
        assert_eq!(b64url_encode(&[0xff, 0xef]), "_-8");
    }
}
