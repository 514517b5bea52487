//! The admin audit trail: its entries, their hash chain, and what each admin call records. Pure:
//! the control Worker's `AuditTrail` Durable Object appends and serves the entries (it reads the
//! clock and stores them), the CLI (`edgeward audit --verify`) checks them; both use this module,
//! so the chain is computed one way.
//!
//! # An entry
//!
//! Every admin write (revocation add, batch and remove; API key create, rotate, disable and
//! delete; the test-only hook), whatever its outcome, and every refused admin call is one
//! [`AuditEntry`]: `seq` (1, 2, 3, … without gaps), `time`, `actor` (the presented credential's
//! [`crate::core::log::fingerprint`], never the credential), `principal` (who it verified as),
//! `action`, `target`, `outcome` and `status`, `reason`, `request_id`, a flat `detail` object,
//! `prev` (the previous entry's `hash`) and `hash`. No member holds a token, key or secret:
//! [`AuditRecord::of_answer`] copies named members of an answer, never the answer.
//!
//! # The hash
//!
//! `hash` is the lowercase hex SHA-256 of the entry's canonical bytes ([`canonical_bytes`]): the
//! entry as JSON without its `hash` member, in the JSON Canonicalization Scheme (RFC 8785) — no
//! whitespace, object members sorted by their names' UTF-16 code units, integers in decimal,
//! strings with only `"`, `\` and the control characters escaped (`\b`, `\t`, `\n`, `\f`, `\r`,
//! else `\u00xx`). For the value types an entry holds (strings, integers below 2^53, booleans,
//! null, one flat object) that is what `JSON.stringify` gives for the members in sorted order, so
//! any JCS library checks it. The first entry's `prev` is [`GENESIS`] (64 zeros). Changing any
//! member of an entry changes its hash, and so no longer matches the stored `hash`; recomputing
//! that too breaks the next entry's `prev`; removing an entry leaves a gap in `seq`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The entry format's version (the `v` member).
pub const SCHEMA_VERSION: u32 = 1;
/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Longest text kept in a `target`, `reason` or `detail` string (in bytes; cut at a character
/// boundary). An admin path or reason is client input.
pub const MAX_TEXT_BYTES: usize = 256;

/// A `detail` value: detail is one flat object of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Detail {
    /// `true` / `false`.
    Bool(bool),
    /// An integer (counts, Unix times).
    Int(i64),
    /// Text (at most [`MAX_TEXT_BYTES`]).
    Text(String),
}

/// How an audited call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done (2xx).
    Ok,
    /// The caller is not an admin (no credential, or not an admin one): 401.
    Denied,
    /// An admin's call refused for its input or the state (other 4xx: bad input, not found,
    /// conflict).
    Refused,
    /// The control plane failed (5xx): nothing or not everything was done.
    Failed,
}

impl Outcome {
    /// The outcome of an authorized call answered `status`.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Ok,
            400..=499 => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }
}

/// One entry of the trail, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// [`SCHEMA_VERSION`].
    pub v: u32,
    /// Position in the trail: 1 for the first entry, then one more each time.
    pub seq: u64,
    /// Unix seconds when it was appended (never less than the previous entry's).
    pub time: i64,
    /// Fingerprint of the credential presented (`sha256:` and 16 hex digits); `None` when none was.
    pub actor: Option<String>,
    /// Who the credential verified as (`admin_token`, `jwt:<iss> <sub>`); `None` when refused.
    pub principal: Option<String>,
    /// What was asked ([`AdminAction::name`]).
    pub action: String,
    /// What it was asked of: a revocation id, an API key id (`None` when there is none, as for
    /// a batch); for an unknown route, the path below the admin prefix.
    pub target: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The HTTP status answered.
    pub status: u16,
    /// Why it was denied, refused or failed (the answer's code, or the authorization's
    /// explanation); `None` when done.
    pub reason: Option<String>,
    /// The request id (the `request_id` of the answer and of the log lines).
    pub request_id: String,
    /// What else the action's answer says (flat: see [`AuditRecord::of_answer`]).
    pub detail: BTreeMap<String, Detail>,
    /// The previous entry's `hash` ([`GENESIS`] for the first).
    pub prev: String,
    /// Lowercase hex SHA-256 of [`canonical_bytes`] of this entry.
    pub hash: String,
}

/// What an admin call records, before the trail gives it a place (`seq`, `time`, `prev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// See [`AuditEntry::actor`].
    pub actor: Option<String>,
    /// See [`AuditEntry::principal`].
    pub principal: Option<String>,
    /// See [`AuditEntry::action`].
    pub action: String,
    /// See [`AuditEntry::target`].
    pub target: Option<String>,
    /// See [`AuditEntry::outcome`].
    pub outcome: Outcome,
    /// See [`AuditEntry::status`].
    pub status: u16,
    /// See [`AuditEntry::reason`].
    pub reason: Option<String>,
    /// See [`AuditEntry::request_id`].
    pub request_id: String,
    /// See [`AuditEntry::detail`].
    #[serde(default)]
    pub detail: BTreeMap<String, Detail>,
}

/// The last entry of a trail (or the genesis of an empty one): where the next entry links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Its `seq` (0 for an empty trail).
    pub seq: u64,
    /// Its `hash` ([`GENESIS`] for an empty trail).
    pub hash: String,
    /// Its `time` (the next entry's is not less).
    #[serde(default)]
    pub time: i64,
}

impl ChainHead {
    /// The head of an empty trail.
    pub fn genesis() -> ChainHead {
        ChainHead { seq: 0, hash: GENESIS.into(), time: 0 }
    }
}

/// `text` cut to at most [`MAX_TEXT_BYTES`] bytes, at a character boundary.
pub fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The entry that follows `head` for `record`, appended at `now` (Unix seconds; a clock that
/// went back gives the previous entry's time), with its hash.
pub fn append(head: &ChainHead, record: AuditRecord, now: i64) -> AuditEntry {
    let AuditRecord { actor, principal, action, target, outcome, status, reason, request_id, detail } = record;
    let mut e = AuditEntry {
        v: SCHEMA_VERSION,
        seq: head.seq + 1,
        time: now.max(head.time),
        actor,
        principal,
        action,
        target,
        outcome,
        status,
        reason,
        request_id,
        detail,
        prev: head.hash.clone(),
        hash: String::new(),
    };
    e.hash = entry_hash(&e);
    e
}

/// Lowercase hex SHA-256 of [`canonical_bytes`] of `e` (its own `hash` member is not read).
pub fn entry_hash(e: &AuditEntry) -> String {
    hex::encode(Sha256::digest(canonical_bytes(e)))
}

/// The bytes an entry's hash covers: the entry without `hash`, canonical JSON (RFC 8785).
pub fn canonical_bytes(e: &AuditEntry) -> Vec<u8> {
    fn opt(s: &Option<String>) -> Canon<'_> {
        s.as_deref().map_or(Canon::Null, Canon::Str)
    }
    let detail = e
        .detail
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Detail::Bool(b) => Canon::Bool(*b),
                Detail::Int(i) => Canon::Int(*i),
                Detail::Text(t) => Canon::Str(t),
            };
            (k.as_str(), v)
        })
        .collect();
    let outcome = match e.outcome {
        Outcome::Ok => "ok",
        Outcome::Denied => "denied",
        Outcome::Refused => "refused",
        Outcome::Failed => "failed",
    };
    let entry = Canon::Obj(vec![
        ("v", Canon::Int(i64::from(e.v))),
        ("seq", Canon::Int(e.seq as i64)),
        ("time", Canon::Int(e.time)),
        ("actor", opt(&e.actor)),
        ("principal", opt(&e.principal)),
        ("action", Canon::Str(&e.action)),
        ("target", opt(&e.target)),
        ("outcome", Canon::Str(outcome)),
        ("status", Canon::Int(i64::from(e.status))),
        ("reason", opt(&e.reason)),
        ("request_id", Canon::Str(&e.request_id)),
        ("detail", Canon::Obj(detail)),
        ("prev", Canon::Str(&e.prev)),
    ]);
    let mut out = Vec::with_capacity(512);
    entry.write(&mut out);
    out
}

/// A JSON value as RFC 8785 writes it (only the kinds an entry holds).
enum Canon<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(&'a str),
    Obj(Vec<(&'a str, Canon<'a>)>),
}

impl Canon<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Canon::Null => out.extend_from_slice(b"null"),
            Canon::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Canon::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            Canon::Str(s) => write_string(s, out),
            Canon::Obj(members) => {
                // Sorted by the names' UTF-16 code units (RFC 8785 §3.2.3).
                let mut sorted: Vec<&(&str, Canon<'_>)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                out.push(b'{');
                for (i, (name, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(name, out);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// A JSON string as RFC 8785 (and `JSON.stringify`) writes it.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

// ---- what an admin call records ----

/// An admin API call, named by its method and the path below the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminAction {
    /// `POST /revocations`.
    RevocationAdd,
    /// `POST /revocations/batch`.
    RevocationAddBatch,
    /// `DELETE /revocations/ID`.
    RevocationRemove,
    /// `GET /revocations`.
    RevocationList,
    /// `GET /revocations/ID`.
    RevocationGet,
    /// `POST /keys`.
    KeyCreate,
    /// `GET /keys`.
    KeyList,
    /// `GET /keys/ID`.
    KeyGet,
    /// `POST /keys/ID/rotate`.
    KeyRotate,
    /// `POST /keys/ID/disable`.
    KeyDisable,
    /// `DELETE /keys/ID`.
    KeyDelete,
    /// `GET /audit`.
    AuditList,
    /// `POST /blocks`.
    BlockAdd,
    /// `GET /blocks`.
    BlockList,
    /// `DELETE /blocks/ID`.
    BlockRemove,
    /// `POST /audit/test-hook` (test deployments only).
    AuditTestHook,
    /// `GET /usage`.
    UsageQuery,
    /// Anything else (answered 404, or 401 when refused).
    Unknown,
}

impl AdminAction {
    /// The call `method` `rest` (`rest`: the path below `admin.path_prefix`) and the target its
    /// path names (a revocation or key id; for an unknown route, the path itself, bounded).
    pub fn classify(method: &str, rest: &str) -> (AdminAction, Option<String>) {
        use AdminAction::*;
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').skip(1).collect();
        let m = method.to_ascii_uppercase();
        let (action, target) = match (m.as_str(), parts.as_slice()) {
            ("POST", ["revocations"]) => (RevocationAdd, None),
            ("POST", ["revocations", "batch"]) => (RevocationAddBatch, None),
            ("GET", ["revocations"]) => (RevocationList, None),
            ("GET", ["revocations", id]) => (RevocationGet, Some(*id)),
            ("DELETE", ["revocations", id]) => (RevocationRemove, Some(*id)),
            ("POST", ["keys"]) => (KeyCreate, None),
            ("GET", ["keys"]) => (KeyList, None),
            ("GET", ["keys", id]) => (KeyGet, Some(*id)),
            ("POST", ["keys", id, "rotate"]) => (KeyRotate, Some(*id)),
            ("POST", ["keys", id, "disable"]) => (KeyDisable, Some(*id)),
            ("DELETE", ["keys", id]) => (KeyDelete, Some(*id)),
            ("GET", ["audit"]) => (AuditList, None),
            ("POST", ["blocks"]) => (BlockAdd, None),
            ("GET", ["blocks"]) => (BlockList, None),
            ("DELETE", ["blocks", id]) => (BlockRemove, Some(*id)),
            ("POST", ["audit", "test-hook"]) => (AuditTestHook, None),
            ("GET", ["usage"]) => (UsageQuery, None),
            _ => (Unknown, Some(rest)),
        };
        (action, target.map(bounded))
    }

    /// The `action` member of its entries.
    pub fn name(self) -> &'static str {
        match self {
            AdminAction::RevocationAdd => "revocation_add",
            AdminAction::RevocationAddBatch => "revocation_add_batch",
            AdminAction::RevocationRemove => "revocation_remove",
            AdminAction::RevocationList => "revocation_list",
            AdminAction::RevocationGet => "revocation_get",
            AdminAction::KeyCreate => "key_create",
            AdminAction::KeyList => "key_list",
            AdminAction::KeyGet => "key_get",
            AdminAction::KeyRotate => "key_rotate",
            AdminAction::KeyDisable => "key_disable",
            AdminAction::KeyDelete => "key_delete",
            AdminAction::AuditList => "audit_list",
            AdminAction::BlockAdd => "block_add",
            AdminAction::BlockList => "block_list",
            AdminAction::BlockRemove => "block_remove",
            AdminAction::AuditTestHook => "audit_test_hook",
            AdminAction::UsageQuery => "usage_query",
            AdminAction::Unknown => "unknown",
        }
    }

    /// Whether an authorized call with `method` is recorded: every one that can change state
    /// (any method but `GET` and `HEAD`, whatever its route). Refused calls are always recorded.
    pub fn records(method: &str) -> bool {
        !method.eq_ignore_ascii_case("GET") && !method.eq_ignore_ascii_case("HEAD")
    }
}

impl AuditRecord {
    /// A call refused because its caller is not an admin: `why` is the authorization's
    /// explanation (it names no credential).
    pub fn denied(actor: Option<String>, action: AdminAction, target: Option<String>, why: &str, request_id: &str) -> AuditRecord {
        AuditRecord {
            actor,
            principal: None,
            action: action.name().into(),
            target,
            outcome: Outcome::Denied,
            status: 401,
            reason: Some(bounded(why)),
            request_id: request_id.into(),
            detail: BTreeMap::new(),
        }
    }

    /// An admin's call `action` answered `status` with `body`. The target is the path's, else
    /// the answer's `id`; `reason` is the answer's `code` unless it is a 2xx; `detail` takes only
    /// named members of the answer (never `key`, the plain API key a create or rotate shows once):
    ///
    /// - `revocation_add`, `revocation_remove`: the revocation's target (`kind`, `iss`, `jti`,
    ///   `sub`, `before`, `kid`, `key_id`), `expires_at` and `reason`; for an add `created`; the
    ///   ledger's `version` after the call (it orders revocation writes as the ledger applied
    ///   them, when two entries reached the trail in the other order).
    /// - `revocation_add_batch`: `created`, `updated`, `unchanged`, `version`.
    /// - `key_create`: `owner`, `scopes` (space-separated), `secret_fp` (the new secret's
    ///   fingerprint, as listed); `key_rotate`: `secret_fp`; `key_disable`: `changed`,
    ///   `revoked`; `key_delete`: `revoked`.
    /// - `block_add`, `block_remove`: the block's `target`, `expires_at`, `reason`; for an add
    ///   `created`; the list's `version` after the call.
    /// - when refused or failed: `field` and `index` (which input was refused), if given.
    pub fn of_answer(
        actor: Option<String>,
        principal: &str,
        action: AdminAction,
        path_target: Option<String>,
        status: u16,
        body: &serde_json::Value,
        request_id: &str,
    ) -> AuditRecord {
        let outcome = Outcome::of_status(status);
        let mut detail = BTreeMap::new();
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(Detail::Text(bounded(s))),
            serde_json::Value::Number(n) => n.as_i64().map(Detail::Int),
            serde_json::Value::Bool(b) => Some(Detail::Bool(*b)),
            _ => None,
        };
        let copy = |into: &mut BTreeMap<String, Detail>, from: &serde_json::Value, names: &[&str]| {
            for name in names {
                if let Some(d) = from.get(name).and_then(text) {
                    into.insert((*name).to_string(), d);
                }
            }
        };
        if outcome == Outcome::Ok {
            match action {
                AdminAction::RevocationAdd | AdminAction::RevocationRemove => {
                    let rev = &body["revocation"];
                    copy(&mut detail, &rev["target"], &["kind", "iss", "jti", "sub", "before", "kid", "key_id"]);
                    copy(&mut detail, rev, &["expires_at", "reason"]);
                    copy(&mut detail, body, &["created", "version"]);
                }
                AdminAction::RevocationAddBatch => copy(&mut detail, body, &["created", "updated", "unchanged", "version"]),
                AdminAction::KeyCreate | AdminAction::KeyRotate => {
                    if action == AdminAction::KeyCreate {
                        copy(&mut detail, body, &["owner"]);
                        if let Some(scopes) = body["scopes"].as_array() {
                            let joined: Vec<&str> = scopes.iter().filter_map(|s| s.as_str()).collect();
                            detail.insert("scopes".into(), Detail::Text(bounded(&joined.join(" "))));
                        }
                    }
                    if let Some(newest) = body["secrets"].as_array().and_then(|s| s.last()) {
                        if let Some(fp) = newest["fingerprint"].as_str() {
                            detail.insert("secret_fp".into(), Detail::Text(bounded(fp)));
                        }
                    }
                }
                AdminAction::KeyDisable => copy(&mut detail, body, &["changed", "revoked"]),
                AdminAction::KeyDelete => copy(&mut detail, body, &["revoked"]),
                AdminAction::BlockAdd | AdminAction::BlockRemove => {
                    copy(&mut detail, &body["block"], &["target", "expires_at", "reason"]);
                    copy(&mut detail, body, &["created", "version"]);
                }
                _ => {}
            }
        } else {
            copy(&mut detail, body, &["field", "index"]);
        }
        let answer_id = body["id"].as_str().map(bounded);
        AuditRecord {
            actor,
            principal: Some(bounded(principal)),
            action: action.name().into(),
            target: path_target.or(answer_id),
            outcome,
            status,
            reason: if outcome == Outcome::Ok { None } else { Some(body["code"].as_str().map_or_else(|| format!("status {status}"), bounded)) },
            request_id: request_id.into(),
            detail,
        }
    }
}

// ---- verification ----

/// Where a verification starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// At the first entry ever: `seq` 1, `prev` [`GENESIS`].
    Genesis,
    /// After an entry no longer stored (the trail keeps entries for a retention period): the
    /// first entry is `seq + 1` and links to `hash`.
    After {
        /// The last removed entry's `seq`.
        seq: u64,
        /// Its `hash`.
        hash: String,
    },
    /// Wherever the first entry given is (a listing from a time on): its own `seq` and `prev`
    /// are taken as they are; every later one is checked.
    Trusted,
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// An entry is missing: `expected` was due, `found` came.
    #[error("entry {expected} is missing (the next one is {found})")]
    Gap {
        /// The `seq` due.
        expected: u64,
        /// The `seq` that came instead.
        found: u64,
    },
    /// Entries out of order or repeated.
    #[error("entry {found} came where {expected} was due")]
    OutOfOrder {
        /// The `seq` due.
        expected: u64,
        /// The `seq` that came instead.
        found: u64,
    },
    /// The entry's content does not hash to its `hash`: it was changed after it was written.
    #[error("entry {seq} was altered: its content does not match its hash")]
    Altered {
        /// The entry.
        seq: u64,
    },
    /// The entry's `prev` is not the previous entry's `hash`: the previous entry, or this one,
    /// was changed (and rehashed), or replaced.
    #[error("entry {seq} does not link to the entry before it (prev is not that entry's hash)")]
    Unlinked {
        /// The entry.
        seq: u64,
    },
    /// An entry's time is before the previous entry's.
    #[error("entry {seq} is dated before the entry before it")]
    TimeReversed {
        /// The entry.
        seq: u64,
    },
    /// Not an entry of this format.
    #[error("entry {} is malformed: {message}", seq.map_or_else(|| "?".to_string(), |s| s.to_string()))]
    Malformed {
        /// Its `seq`, if it has one.
        seq: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// The entries end before the trail's head: the last ones are missing.
    #[error("the trail's head is entry {head_seq}, but the entries end at {last_seq}")]
    Truncated {
        /// The head's `seq`, as the trail reports it.
        head_seq: u64,
        /// The last entry's `seq`.
        last_seq: u64,
    },
    /// The last entry is not the head the trail reports.
    #[error("entry {seq} is not the head the trail reports (hash {hash})")]
    HeadMismatch {
        /// The head's `seq`.
        seq: u64,
        /// The head's `hash`, as reported.
        hash: String,
    },
    /// An entry recorded earlier (an anchor: a head kept elsewhere) is not in the chain as it
    /// was: the chain was rewritten from there on, or cut before it.
    #[error("entry {seq} is not the one recorded earlier (hash {hash}): {found}")]
    AnchorMismatch {
        /// The anchor's `seq`.
        seq: u64,
        /// The anchor's `hash`.
        hash: String,
        /// What the chain holds there.
        found: String,
    },
}

impl ChainError {
    /// A stable short code: `gap`, `out_of_order`, `altered`, `unlinked`, `time_reversed`,
    /// `malformed`, `truncated`, `head_mismatch`, `anchor_mismatch`.
    pub fn code(&self) -> &'static str {
        match self {
            ChainError::Gap { .. } => "gap",
            ChainError::OutOfOrder { .. } => "out_of_order",
            ChainError::Altered { .. } => "altered",
            ChainError::Unlinked { .. } => "unlinked",
            ChainError::TimeReversed { .. } => "time_reversed",
            ChainError::Malformed { .. } => "malformed",
            ChainError::Truncated { .. } => "truncated",
            ChainError::HeadMismatch { .. } => "head_mismatch",
            ChainError::AnchorMismatch { .. } => "anchor_mismatch",
        }
    }

    /// The entry concerned.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ChainError::Gap { expected: s, .. } | ChainError::OutOfOrder { expected: s, .. } => Some(*s),
            ChainError::Altered { seq }
            | ChainError::Unlinked { seq }
            | ChainError::TimeReversed { seq }
            | ChainError::HeadMismatch { seq, .. }
            | ChainError::AnchorMismatch { seq, .. } => Some(*seq),
            ChainError::Malformed { seq, .. } => *seq,
            ChainError::Truncated { last_seq, .. } => Some(last_seq + 1),
        }
    }
}

/// What a verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Entries checked.
    pub entries: u64,
    /// The first one's `seq` (none when there were none).
    pub first_seq: Option<u64>,
    /// The last one (the trail's head when all were read).
    pub head: Option<ChainHead>,
}

/// Checks a trail's entries in order, one at a time (a listing's pages as they come).
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    start: Start,
    last: Option<ChainHead>,
    first_seq: Option<u64>,
    entries: u64,
    /// Entries recorded earlier that the chain must hold unchanged, and whether each was seen.
    anchors: Vec<(u64, String, bool)>,
}

impl ChainVerifier {
    /// A verifier starting at `start`.
    pub fn new(start: Start) -> ChainVerifier {
        ChainVerifier { start, last: None, first_seq: None, entries: 0, anchors: Vec::new() }
    }

    /// Also requires entry `seq` to have `hash` (a head printed by an earlier verification and
    /// kept elsewhere): a chain rewritten consistently from that entry on passes every other
    /// check, not this one. An anchor the entries never reach (cut, pruned, or before `since`)
    /// fails too.
    pub fn expect(&mut self, seq: u64, hash: &str) {
        self.anchors.push((seq, hash.to_ascii_lowercase(), false));
    }

    /// Checks the next entry as served (JSON): its format, its hash, its place and its link.
    pub fn push(&mut self, entry: &serde_json::Value) -> Result<(), ChainError> {
        let seq = entry.get("seq").and_then(serde_json::Value::as_u64);
        let e: AuditEntry = serde_json::from_value(entry.clone()).map_err(|err| ChainError::Malformed { seq, message: err.to_string() })?;
        if e.v != SCHEMA_VERSION {
            return Err(ChainError::Malformed { seq, message: format!("unknown version {}", e.v) });
        }
        self.push_entry(&e)
    }

    /// [`ChainVerifier::push`] for a parsed entry.
    pub fn push_entry(&mut self, e: &AuditEntry) -> Result<(), ChainError> {
        // Its place first: a missing entry is named as such, not as the link it breaks.
        let due = match (&self.last, &self.start) {
            (Some(last), _) => Some((last.seq + 1, Some(last))),
            (None, Start::Genesis) => Some((1, None)),
            (None, Start::After { seq, .. }) => Some((seq + 1, None)),
            (None, Start::Trusted) => None,
        };
        if let Some((expected, _)) = due {
            if e.seq > expected {
                return Err(ChainError::Gap { expected, found: e.seq });
            }
            if e.seq < expected {
                return Err(ChainError::OutOfOrder { expected, found: e.seq });
            }
        }
        if entry_hash(e) != e.hash {
            return Err(ChainError::Altered { seq: e.seq });
        }
        let prev_due = match (&self.last, &self.start) {
            (Some(last), _) => Some(last.hash.as_str()),
            (None, Start::Genesis) => Some(GENESIS),
            (None, Start::After { hash, .. }) => Some(hash.as_str()),
            (None, Start::Trusted) => None,
        };
        if prev_due.is_some_and(|p| p != e.prev) {
            return Err(ChainError::Unlinked { seq: e.seq });
        }
        if self.last.as_ref().is_some_and(|l| e.time < l.time) {
            return Err(ChainError::TimeReversed { seq: e.seq });
        }
        for (seq, hash, seen) in &mut self.anchors {
            if *seq == e.seq {
                if *hash != e.hash {
                    return Err(ChainError::AnchorMismatch { seq: *seq, hash: hash.clone(), found: format!("hash {}", e.hash) });
                }
                *seen = true;
            }
        }
        self.first_seq.get_or_insert(e.seq);
        self.entries += 1;
        self.last = Some(ChainHead { seq: e.seq, hash: e.hash.clone(), time: e.time });
        Ok(())
    }

    /// Ends the check: with the trail's `head` as it reported it when the last entry was read,
    /// the entries must end exactly there (none missing at the end, the last one unchanged).
    pub fn finish(self, head: Option<&ChainHead>) -> Result<Verified, ChainError> {
        // Where the entries ended (with none: where they were to start).
        let reached = match (&self.last, &self.start) {
            (Some(last), _) => Some((last.seq, last.hash.as_str())),
            (None, Start::Genesis) => Some((0, GENESIS)),
            (None, Start::After { seq, hash }) => Some((*seq, hash.as_str())),
            (None, Start::Trusted) => None,
        };
        if let Some((seq, hash, _)) = self.anchors.iter().find(|a| !a.2) {
            let found = if self.first_seq.is_some_and(|f| *seq < f) { "the entries listed start after it" } else { "the entries end before it" };
            return Err(ChainError::AnchorMismatch { seq: *seq, hash: hash.clone(), found: found.into() });
        }
        if let (Some(h), Some((seq, hash))) = (head, reached) {
            if seq < h.seq {
                return Err(ChainError::Truncated { head_seq: h.seq, last_seq: seq });
            }
            if seq != h.seq || hash != h.hash {
                return Err(ChainError::HeadMismatch { seq: h.seq, hash: h.hash.clone() });
            }
        }
        Ok(Verified { entries: self.entries, first_seq: self.first_seq, head: self.last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str, n: i64) -> AuditRecord {
        let mut detail = BTreeMap::new();
        detail.insert("n".to_string(), Detail::Int(n));
        AuditRecord {
            actor: Some("sha256:0123456789abcdef".into()),
            principal: Some("admin_token".into()),
            action: action.into(),
            target: Some(format!("t{n}")),
            outcome: Outcome::Ok,
            status: 200,
            reason: None,
            request_id: format!("rid-{n}"),
            detail,
        }
    }

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut head = ChainHead::genesis();
        (0..n)
            .map(|i| {
                let e = append(&head, record("revocation_add", i as i64), 1_700_000_000 + i as i64);
                head = ChainHead { seq: e.seq, hash: e.hash.clone(), time: e.time };
                e
            })
            .collect()
    }

    fn verify(entries: &[AuditEntry], start: Start, head: Option<&ChainHead>) -> Result<Verified, ChainError> {
        let mut v = ChainVerifier::new(start);
        for e in entries {
            v.push(&serde_json::to_value(e).unwrap())?;
        }
        v.finish(head)
    }

    fn head_of(e: &AuditEntry) -> ChainHead {
        ChainHead { seq: e.seq, hash: e.hash.clone(), time: e.time }
    }

    #[test]
    fn canonical_bytes_are_jcs_with_sorted_members_and_no_hash() {
        let mut detail = BTreeMap::new();
        detail.insert("zeta".to_string(), Detail::Bool(true));
        detail.insert("alpha".to_string(), Detail::Text("a\"b\\c\n\u{1}é€".into()));
        detail.insert("count".to_string(), Detail::Int(-3));
        let r = AuditRecord { detail, reason: Some("x".into()), target: None, ..record("key_create", 0) };
        let e = append(&ChainHead::genesis(), r, 1_700_000_000);
        let text = String::from_utf8(canonical_bytes(&e)).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"action":"key_create","actor":"sha256:0123456789abcdef","#,
                r#""detail":{"alpha":"a\"b\\c\n\u0001é€","count":-3,"zeta":true},"#,
                r#""outcome":"ok","prev":"0000000000000000000000000000000000000000000000000000000000000000","#,
                r#""principal":"admin_token","reason":"x","request_id":"rid-0","seq":1,"status":200,"target":null,"time":1700000000,"v":1}"#
            )
        );
        // The canonical text is the served entry without `hash`, re-serialized: any JSON reader
        // that sorts members gets the same bytes (the e2e test does it with JSON.stringify).
        let mut served = serde_json::to_value(&e).unwrap();
        served.as_object_mut().unwrap().remove("hash");
        let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reparsed, served);
        assert_eq!(e.hash, hex::encode(Sha256::digest(text.as_bytes())));
    }

    #[test]
    fn a_known_entry_has_a_known_hash() {
        // Pinned: a change of the encoding is a change of the format (bump SCHEMA_VERSION).
        let e = append(&ChainHead::genesis(), record("revocation_add", 7), 1_700_000_000);
        assert_eq!(e.seq, 1);
        assert_eq!(e.prev, GENESIS);
        let text = String::from_utf8(canonical_bytes(&e)).unwrap();
        assert_eq!(
            text,
            r#"{"action":"revocation_add","actor":"sha256:0123456789abcdef","detail":{"n":7},"outcome":"ok","prev":"0000000000000000000000000000000000000000000000000000000000000000","principal":"admin_token","reason":null,"request_id":"rid-7","seq":1,"status":200,"target":"t7","time":1700000000,"v":1}"#
        );
        assert_eq!(e.hash, hex::encode(Sha256::digest(text.as_bytes())));
    }

    #[test]
    fn the_readme_example_hashes_as_documented() {
        // README.md, "Audit trail": entry 7's canonical text and hash.
        let served = serde_json::json!({"v": 1, "seq": 7, "time": 1764892800, "actor": "sha256:9f86d081884c7d65", "principal": "admin_token",
            "action": "revocation_add", "target": "5d3cc1b9fa4b2e07", "outcome": "ok", "status": 201, "reason": null,
            "request_id": "4f1c2a9e0b7d4e55a1c3f0e2d9b8a761",
            "detail": {"kind": "jti", "iss": "https://id.example", "jti": "abc", "expires_at": 1764979260, "reason": "laptop stolen", "created": true, "version": 12},
            "prev": "3b0f5a3c9a1e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a6978",
            "hash": "50a9ce9625ecdb857ecc0b07ef715edebcbdae2f4eec6dafb36c6a854c17ed7e"});
        let e: AuditEntry = serde_json::from_value(served).unwrap();
        let readme = include_str!("../../README.md");
        let text = String::from_utf8(canonical_bytes(&e)).unwrap();
        assert!(readme.contains(&format!("\n{text}\n")), "README shows the canonical text");
        assert!(readme.contains(&e.hash), "README shows the hash");
        assert_eq!(entry_hash(&e), e.hash);
    }

    #[test]
    fn every_entry_links_to_the_one_before() {
        let c = chain(5);
        for w in c.windows(2) {
            assert_eq!(w[1].prev, w[0].hash);
            assert_eq!(w[1].seq, w[0].seq + 1);
        }
        let v = verify(&c, Start::Genesis, Some(&head_of(&c[4]))).unwrap();
        assert_eq!((v.entries, v.first_seq, v.head.map(|h| h.seq)), (5, Some(1), Some(5)));
    }

    #[test]
    fn time_never_goes_back_even_if_the_clock_does() {
        let a = append(&ChainHead::genesis(), record("x", 0), 1_700_000_100);
        let b = append(&head_of(&a), record("x", 1), 1_700_000_000);
        assert_eq!(b.time, 1_700_000_100);
    }

    #[test]
    fn an_altered_member_is_caught_at_its_entry() {
        let base = chain(4);
        type Alter = fn(&mut AuditEntry);
        let alterations: [(&str, Alter); 11] = [
            ("outcome", |e| e.outcome = Outcome::Refused),
            ("actor", |e| e.actor = Some("sha256:ffffffffffffffff".into())),
            ("principal", |e| e.principal = None),
            ("action", |e| e.action = "key_delete".into()),
            ("target", |e| e.target = None),
            ("status", |e| e.status = 201),
            ("reason", |e| e.reason = Some("".into())),
            ("request_id", |e| e.request_id.push('x')),
            ("time", |e| e.time += 1),
            ("detail", |e| drop(e.detail.insert("n".into(), Detail::Text("2".into())))),
            ("detail added", |e| drop(e.detail.insert("extra".into(), Detail::Bool(false)))),
        ];
        for (what, alter) in alterations {
            let mut c = base.clone();
            alter(&mut c[2]);
            assert_eq!(verify(&c, Start::Genesis, None), Err(ChainError::Altered { seq: 3 }), "{what}");
        }
    }

    #[test]
    fn a_rehashed_alteration_breaks_the_next_link() {
        let mut c = chain(4);
        c[1].status = 500;
        c[1].hash = entry_hash(&c[1]);
        assert_eq!(verify(&c, Start::Genesis, None), Err(ChainError::Unlinked { seq: 3 }));
        // Rehashing everything after it too leaves only the head to tell: the trail's own head
        // (or one an operator kept) no longer matches.
        let original_head = head_of(&c[3]);
        for i in 2..4 {
            c[i].prev = c[i - 1].hash.clone();
            c[i].hash = entry_hash(&c[i]);
        }
        assert!(verify(&c, Start::Genesis, None).is_ok());
        assert_eq!(verify(&c, Start::Genesis, Some(&original_head)).unwrap_err().code(), "head_mismatch");
    }

    #[test]
    fn an_anchor_catches_a_chain_rewritten_from_it_on() {
        let c = chain(5);
        let with = |anchors: &[(u64, &str)], entries: &[AuditEntry]| {
            let mut v = ChainVerifier::new(Start::Genesis);
            for (seq, hash) in anchors {
                v.expect(*seq, hash);
            }
            for e in entries {
                v.push_entry(e)?;
            }
            v.finish(None)
        };
        assert!(with(&[(3, &c[2].hash), (5, &c[4].hash.to_uppercase())], &c).is_ok());
        let mut rewritten = c.clone();
        rewritten[1].reason = Some("rewritten".into());
        for i in 1..5 {
            if i > 1 {
                rewritten[i].prev = rewritten[i - 1].hash.clone();
            }
            rewritten[i].hash = entry_hash(&rewritten[i]);
        }
        assert!(with(&[], &rewritten).is_ok(), "consistent on its own");
        assert_eq!(with(&[(3, &c[2].hash)], &rewritten).unwrap_err().code(), "anchor_mismatch");
        assert_eq!(with(&[(1, &c[0].hash)], &rewritten).map(|v| v.entries), Ok(5), "before the rewrite: unchanged");
        let cut = with(&[(5, &c[4].hash)], &c[..3]).unwrap_err();
        assert_eq!((cut.code(), cut.seq()), ("anchor_mismatch", Some(5)));
        assert!(cut.to_string().contains("end before it"), "{cut}");
    }

    #[test]
    fn missing_entries_are_gaps_wherever_they_are() {
        let c = chain(5);
        let head = head_of(&c[4]);
        let mut middle = c.clone();
        middle.remove(2);
        assert_eq!(verify(&middle, Start::Genesis, Some(&head)), Err(ChainError::Gap { expected: 3, found: 4 }));
        let first = c[1..].to_vec();
        assert_eq!(verify(&first, Start::Genesis, Some(&head)), Err(ChainError::Gap { expected: 1, found: 2 }));
        let last = c[..4].to_vec();
        assert_eq!(verify(&last, Start::Genesis, Some(&head)), Err(ChainError::Truncated { head_seq: 5, last_seq: 4 }));
        assert_eq!(verify(&[], Start::Genesis, Some(&head)), Err(ChainError::Truncated { head_seq: 5, last_seq: 0 }));
        let mut repeated = c.clone();
        repeated.insert(3, c[2].clone());
        assert_eq!(verify(&repeated, Start::Genesis, Some(&head)), Err(ChainError::OutOfOrder { expected: 4, found: 3 }));
    }

    #[test]
    fn a_pruned_start_links_to_the_last_removed_entry() {
        let c = chain(6);
        let kept = &c[3..];
        let head = head_of(&c[5]);
        let after = Start::After { seq: 3, hash: c[2].hash.clone() };
        assert_eq!(verify(kept, after.clone(), Some(&head)).unwrap().first_seq, Some(4));
        // Pruning that is not recorded as such (the anchor says 2) is a gap.
        assert_eq!(verify(kept, Start::After { seq: 2, hash: c[1].hash.clone() }, Some(&head)), Err(ChainError::Gap { expected: 3, found: 4 }));
        assert_eq!(verify(kept, Start::After { seq: 3, hash: c[1].hash.clone() }, Some(&head)), Err(ChainError::Unlinked { seq: 4 }));
        // From a time on: the first entry is taken as it is, the rest checked.
        assert!(verify(kept, Start::Trusted, Some(&head)).is_ok());
        let mut altered = kept.to_vec();
        altered[1].reason = Some("x".into());
        assert_eq!(verify(&altered, Start::Trusted, Some(&head)), Err(ChainError::Altered { seq: 5 }));
    }

    #[test]
    fn malformed_entries_are_named() {
        let c = chain(2);
        let mut v = ChainVerifier::new(Start::Genesis);
        let mut extra = serde_json::to_value(&c[0]).unwrap();
        extra["token"] = "eyJ...".into();
        assert!(matches!(v.push(&extra), Err(ChainError::Malformed { seq: Some(1), .. })));
        let mut bad_outcome = serde_json::to_value(&c[0]).unwrap();
        bad_outcome["outcome"] = "great".into();
        assert_eq!(v.push(&bad_outcome).unwrap_err().code(), "malformed");
        let mut float = serde_json::to_value(&c[0]).unwrap();
        float["detail"]["n"] = serde_json::json!(1.5);
        assert_eq!(v.push(&float).unwrap_err().code(), "malformed");
        let mut version = serde_json::to_value(&c[0]).unwrap();
        version["v"] = 2.into();
        assert_eq!(v.push(&version).unwrap_err().code(), "malformed");
        assert_eq!(v.push(&serde_json::json!("nope")).unwrap_err().seq(), None);
    }

    #[test]
    fn reversed_time_is_caught_even_when_rehashed() {
        let mut c = chain(3);
        c[2].time = c[1].time - 10;
        c[2].hash = entry_hash(&c[2]);
        assert_eq!(verify(&c, Start::Genesis, None), Err(ChainError::TimeReversed { seq: 3 }));
    }

    #[test]
    fn calls_are_classified_with_their_path_targets() {
        let cases = [
            ("POST", "/revocations", "revocation_add", None),
            ("post", "/revocations/", "revocation_add", None),
            ("POST", "/revocations/batch", "revocation_add_batch", None),
            ("DELETE", "/revocations/00ff00ff00ff00ff", "revocation_remove", Some("00ff00ff00ff00ff")),
            ("GET", "/revocations/00ff00ff00ff00ff", "revocation_get", Some("00ff00ff00ff00ff")),
            ("POST", "/keys", "key_create", None),
            ("POST", "/keys/key_0123/rotate", "key_rotate", Some("key_0123")),
            ("POST", "/keys/key_0123/disable", "key_disable", Some("key_0123")),
            ("DELETE", "/keys/key_0123", "key_delete", Some("key_0123")),
            ("GET", "/audit", "audit_list", None),
            ("POST", "/audit/test-hook", "audit_test_hook", None),
            ("POST", "/blocks", "block_add", None),
            ("GET", "/blocks", "block_list", None),
            ("DELETE", "/blocks/203.0.113.0_24", "block_remove", Some("203.0.113.0_24")),
            ("PUT", "/revocations", "unknown", Some("/revocations")),
            ("GET", "", "unknown", Some("")),
        ];
        for (method, rest, name, target) in cases {
            let (action, t) = AdminAction::classify(method, rest);
            assert_eq!((action.name(), t.as_deref()), (name, target), "{method} {rest}");
        }
        let (_, long) = AdminAction::classify("GET", &format!("/{}", "é".repeat(400)));
        assert!(long.unwrap().len() <= MAX_TEXT_BYTES);
        assert!(AdminAction::records("POST") && AdminAction::records("DELETE") && AdminAction::records("PATCH"));
        assert!(!AdminAction::records("GET") && !AdminAction::records("head"));
    }

    #[test]
    fn a_record_takes_named_members_never_the_key() {
        let created = serde_json::json!({
            "id": "key_0123456789abcdef01234567", "owner": "billing", "scopes": ["a:read", "b:write"],
            "key": "ew_live_SECRETSECRETSECRETSECRETSECRET123456",
            "secrets": [{"fingerprint": "sha256:1111111111111111"}, {"fingerprint": "sha256:2222222222222222"}],
        });
        let r = AuditRecord::of_answer(Some("sha256:aaaaaaaaaaaaaaaa".into()), "admin_token", AdminAction::KeyCreate, None, 201, &created, "rid");
        assert_eq!(r.target.as_deref(), Some("key_0123456789abcdef01234567"));
        assert_eq!(r.outcome, Outcome::Ok);
        assert_eq!(r.reason, None);
        assert_eq!(r.detail.get("owner"), Some(&Detail::Text("billing".into())));
        assert_eq!(r.detail.get("scopes"), Some(&Detail::Text("a:read b:write".into())));
        assert_eq!(r.detail.get("secret_fp"), Some(&Detail::Text("sha256:2222222222222222".into())));
        let text = serde_json::to_string(&append(&ChainHead::genesis(), r, 0)).unwrap();
        assert!(!text.contains("ew_live_"), "{text}");

        let added = serde_json::json!({"id": "00ff00ff00ff00ff", "created": true, "version": 3,
            "revocation": {"target": {"kind": "jti", "iss": "https://id.example", "jti": "j-1"}, "reason": "stolen", "created_at": 1, "expires_at": 99}});
        let r = AuditRecord::of_answer(None, "jwt:https://id.example ops", AdminAction::RevocationAdd, None, 201, &added, "rid");
        assert_eq!(r.target.as_deref(), Some("00ff00ff00ff00ff"));
        let names: Vec<&str> = r.detail.keys().map(String::as_str).collect();
        assert_eq!(names, ["created", "expires_at", "iss", "jti", "kind", "reason", "version"]);

        let refused = serde_json::json!({"code": "bad_request", "field": "expires_at", "index": 1, "message": "required"});
        let r = AuditRecord::of_answer(None, "admin_token", AdminAction::RevocationAddBatch, None, 400, &refused, "rid");
        assert_eq!((r.outcome, r.reason.as_deref(), r.target), (Outcome::Refused, Some("bad_request"), None));
        assert_eq!(r.detail.get("index"), Some(&Detail::Int(1)));
        let failed = AuditRecord::of_answer(None, "admin_token", AdminAction::KeyDelete, Some("key_x".into()), 503, &serde_json::json!({}), "rid");
        assert_eq!((failed.outcome, failed.reason.as_deref()), (Outcome::Failed, Some("status 503")));

        let denied = AuditRecord::denied(Some("sha256:bbbbbbbbbbbbbbbb".into()), AdminAction::KeyDelete, Some("key_x".into()), "not the admin token", "rid");
        assert_eq!((denied.outcome, denied.status, denied.principal), (Outcome::Denied, 401, None));
    }

    #[test]
    fn bounded_cuts_at_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let cut = bounded(&"€".repeat(200));
        assert!(cut.len() <= MAX_TEXT_BYTES && cut.chars().all(|c| c == '€'));
    }
}
