//! What the admin operations (`keys`, `ledger`) hand back to `admin`, which audits and sends it,
//! and the query reading they share.

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
