//! Strict JSON and base64url: duplicate object members are an error at every depth, and base64url
//! must be canonical (no padding, no stray bits), so two parsers can never read one token differently.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
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
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
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
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("{DUP_PREFIX}{key}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_rejected_at_any_depth() {
        assert_eq!(
            parse_strict(br#"{"alg":"RS256","alg":"none"}"#),
            Err(StrictJsonError::Duplicate("alg".into()))
        );
        assert_eq!(
            parse_strict(br#"{"a":{"b":1,"b":2}}"#),
            Err(StrictJsonError::Duplicate("b".into()))
        );
        assert_eq!(
            parse_strict(br#"[{"x":1},{"x":2,"x":3}]"#),
            Err(StrictJsonError::Duplicate("x".into()))
        );
        assert!(parse_strict(br#"{"a":1,"b":{"a":2}}"#).is_ok());
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
