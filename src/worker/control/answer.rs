//! What the admin operations (`keys`, `ledger`, `audit`) hand back to `admin`, which audits and
//! sends it, and the query, SQLite-value and JSON-answer helpers they share.

use worker::{Response, SqlStorageValue as V};

/// What an admin operation answers.
pub struct AdminAnswer {
    /// HTTP status.
    pub status: u16,
    /// Operation name for the audit log.
    pub op: &'static str,
    /// The id acted on, if any.
    pub id: Option<String>,
    /// JSON body.
    pub body: serde_json::Value,
}

/// The value of query parameter `name` (the last one if repeated), as sent.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').rev().filter_map(|p| p.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// A JSON answer with `status`.
pub fn json_response(status: u16, v: &serde_json::Value) -> worker::Result<Response> {
    Ok(Response::ok(v.to_string())?.with_status(status))
}

/// A SQLite column as an integer (a float truncated; anything else 0).
pub fn int(v: Option<&V>) -> i64 {
    match v {
        Some(V::Integer(i)) => *i,
        Some(V::Float(f)) => *f as i64,
        _ => 0,
    }
}

/// A SQLite column as text (anything else empty).
pub fn text(v: Option<&V>) -> &str {
    match v {
        Some(V::String(s)) => s,
        _ => "",
    }
}
