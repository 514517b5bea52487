//! WebSockets through the gate (`routes[].websocket: true`): recognizing an upgrade, the
//! browser's credential in `Sec-WebSocket-Protocol`, the handshake headers of the origin
//! request, cross-site WebSocket hijacking, and why and how the gate ends a socket.
//!
//! - An upgrade (`Upgrade: websocket`) is checked like any request, on a route that allows it
//!   (else `400 websocket_not_allowed`, never forwarded) and only as a `GET`.
//! - Browsers cannot set headers on a WebSocket, so a token may come as a subprotocol entry
//!   `edgeward.bearer.<JWT>`; the client must offer at least one other subprotocol for the origin
//!   to select (else `400 websocket_protocol_required`). The entry never reaches the origin.
//! - A socket authenticated by the token cookie must come from the gate's own origin or one in
//!   `csrf.allowed_origins` (browsers send cookies on cross-site upgrades and CORS does not apply
//!   to them): else `403 csrf_rejected`.
//! - The gate ends an open socket with `1008` when its credential expires (at `exp` itself:
//!   leeway absorbs clock skew at the check, it does not extend a live socket) or is revoked, and
//!   with `1011` when it can no longer tell (the revocation list unavailable). The check runs on
//!   one timer per socket ([`crate::core::pipeline::Gate::watch_socket`] says when), never per
//!   message.
//!
//! A leaf: the request and pipeline modules call it.

use super::error::AuthError;
use serde::Serialize;

/// The subprotocol prefix that carries a bearer token: `edgeward.bearer.<JWT>`.
pub const BEARER_PROTOCOL_PREFIX: &str = "edgeward.bearer.";

/// Client handshake headers that belong to one hop: the runtime makes its own to the origin.
pub const HANDSHAKE_HEADERS: &[&str] = &["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"];

fn values<'h>(headers: &'h [(String, String)], name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// What a request's `Upgrade` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// No WebSocket (no `Upgrade`, or another protocol such as `h2c`: dropped as hop-by-hop).
    None,
    /// A WebSocket: one `Upgrade` header whose whole value is `websocket` (in any case), as the
    /// runtime itself takes it.
    WebSocket,
    /// `websocket` among other tokens or in several `Upgrade` headers: the runtime would not take
    /// it as a WebSocket, so it is refused rather than half-served.
    Unusable,
}

/// What the request's `Upgrade` headers ask for.
pub fn upgrade(headers: &[(String, String)]) -> Upgrade {
    let all: Vec<&str> = values(headers, "upgrade").collect();
    let mentions = all.iter().flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case("websocket"));
    match all.as_slice() {
        _ if !mentions => Upgrade::None,
        [v] if v.trim().eq_ignore_ascii_case("websocket") => Upgrade::WebSocket,
        _ => Upgrade::Unusable,
    }
}

/// Whether a subprotocol entry is (or hides) the token prefix, in any case: such an entry is
/// never forwarded.
fn names_bearer(entry: &str) -> bool {
    entry.to_ascii_lowercase().contains(BEARER_PROTOCOL_PREFIX)
}

/// The token a browser put in `Sec-WebSocket-Protocol` (`edgeward.bearer.<JWT>`), if any.
/// Refused: the entry with nothing after the prefix or different tokens in several entries
/// (`malformed_token`), and an entry that is the only subprotocol offered
/// (`websocket_protocol_required`: the origin must have one to select).
pub fn protocol_credential(headers: &[(String, String)]) -> Result<Option<&str>, AuthError> {
    let mut token: Option<&str> = None;
    let mut others = 0;
    for entry in values(headers, "sec-websocket-protocol").flat_map(|v| v.split(',')).map(str::trim).filter(|e| !e.is_empty()) {
        if names_bearer(entry) && !entry.starts_with(BEARER_PROTOCOL_PREFIX) {
            // Another case of the prefix, or the prefix inside another entry: never a guess.
            return Err(AuthError::MalformedToken);
        }
        match entry.strip_prefix(BEARER_PROTOCOL_PREFIX) {
            Some("") => return Err(AuthError::MalformedToken),
            Some(t) if token.is_some_and(|seen| seen != t) => return Err(AuthError::MalformedToken),
            Some(t) => token = Some(t),
            None => others += 1,
        }
    }
    match token {
        Some(_) if others == 0 => Err(AuthError::WebSocketProtocolRequired),
        t => Ok(t),
    }
}

/// A `Sec-WebSocket-Protocol` value without its credential entries (the prefix in any case,
/// anywhere in an entry); `None` when nothing is left.
pub fn protocols_without_credential(value: &str) -> Option<String> {
    let kept: Vec<&str> = value.split(',').map(str::trim).filter(|e| !e.is_empty() && !names_bearer(e)).collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// Turns a planned origin request into the upgrade the runtime sends: the client's one-hop
/// handshake headers go (the runtime makes its own), `Upgrade: websocket` is set.
pub fn origin_handshake(headers: &mut Vec<(String, String)>) {
    headers.retain(|(n, _)| !HANDSHAKE_HEADERS.iter().any(|h| n.eq_ignore_ascii_case(h)) && !n.eq_ignore_ascii_case("upgrade"));
    headers.push(("upgrade".into(), "websocket".into()));
}

/// Cross-site WebSocket hijacking: a socket authenticated by the token cookie must come from
/// `own_origin` or an origin in `allowed`. Browsers always send `Origin` on an upgrade; an
/// upgrade without it is refused too.
pub fn check_cookie_origin(headers: &[(String, String)], own_origin: &str, allowed: &[String]) -> Result<(), AuthError> {
    match values(headers, "origin").next().map(str::trim) {
        Some(o) if o == own_origin || allowed.iter().any(|a| a == o) => Ok(()),
        _ => Err(AuthError::CsrfRejected),
    }
}

/// Why the gate ends a socket. The reason text is the close frame's and the log's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The token reached its `exp`.
    TokenExpired,
    /// The token was revoked.
    TokenRevoked,
    /// The API key reached its expiry (its own, or its secret's end of rotation overlap).
    ApiKeyExpired,
    /// The API key was revoked.
    ApiKeyRevoked,
    /// The revocation list could not be had: the gate cannot tell, so it fails closed.
    RevocationsUnavailable,
}

impl CloseReason {
    /// The close code: `1008` (policy violation) for the credential, `1011` when the gate cannot
    /// check.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::TokenExpired | CloseReason::TokenRevoked | CloseReason::ApiKeyExpired | CloseReason::ApiKeyRevoked => 1008,
            CloseReason::RevocationsUnavailable => 1011,
        }
    }

    /// The close reason (a stable code, also in the log).
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::TokenExpired => "token_expired",
            CloseReason::TokenRevoked => "token_revoked",
            CloseReason::ApiKeyExpired => "api_key_expired",
            CloseReason::ApiKeyRevoked => "api_key_revoked",
            CloseReason::RevocationsUnavailable => "revocations_unavailable",
        }
    }
}

/// What [`crate::core::pipeline::Gate::watch_socket`] decides for an open socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketCheck {
    /// Keep it open; check again at this time (ms since the epoch), or never (`None`: a
    /// credential without expiry and no revocation list to follow).
    Open {
        /// The next check.
        recheck_at_ms: Option<i64>,
    },
    /// End it.
    Close(CloseReason),
}

/// How a socket ended, for its one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The client closed it.
    ClientClosed,
    /// The origin closed it.
    OriginClosed,
    /// The client's connection failed.
    ClientError,
    /// The origin's connection failed.
    OriginError,
    /// The gate closed it ([`CloseReason`]).
    Gate,
}

/// Traffic one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// Messages.
    pub messages: u64,
    /// Payload bytes (text counted as UTF-8).
    pub bytes: u64,
}

/// The one line logged per socket, at its end (`event: websocket_closed`).
#[derive(Debug, Clone, Serialize)]
pub struct SocketRecord<'a> {
    /// Always `websocket_closed`.
    pub event: &'static str,
    /// The upgrade request's id.
    pub request_id: &'a str,
    /// The canonical path.
    pub path: &'a str,
    /// How long it was open.
    pub duration_ms: i64,
    /// Client to origin.
    pub up: Flow,
    /// Origin to client.
    pub down: Flow,
    /// Who ended it.
    pub ended: Ending,
    /// The close code sent on (none when a side failed without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The gate's reason ([`CloseReason::text`]), when the gate ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The close code to send on to the other side for one received: the same, except the codes
/// RFC 6455 reserves for reporting that never go on the wire — `1005` (none given: the close is
/// sent without a code), `1006` (connection lost) and `1015` (TLS failure), sent as `1011`.
pub fn relayed_close_code(received: u16) -> Option<u16> {
    match received {
        1005 => None,
        1000..=1003 | 1007..=1014 | 3000..=4999 => Some(received),
        _ => Some(1011),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn upgrade_is_taken_as_the_runtime_takes_it() {
        assert_eq!(upgrade(&h(&[("Upgrade", "websocket")])), Upgrade::WebSocket);
        assert_eq!(upgrade(&h(&[("upgrade", " WebSocket ")])), Upgrade::WebSocket);
        for bad in [
            vec![("upgrade", "foo, WebSocket")],
            vec![("upgrade", "websocket, h2c")],
            vec![("upgrade", "websocket"), ("Upgrade", "websocket")],
            vec![("upgrade", "h2c"), ("Upgrade", "websocket")],
        ] {
            assert_eq!(upgrade(&h(&bad)), Upgrade::Unusable, "{bad:?}");
        }
        assert_eq!(upgrade(&h(&[("upgrade", "h2c")])), Upgrade::None);
        assert_eq!(upgrade(&h(&[("connection", "upgrade")])), Upgrade::None);
    }

    #[test]
    fn protocol_credential_needs_another_protocol() {
        assert_eq!(protocol_credential(&h(&[("sec-websocket-protocol", "chat, edgeward.bearer.a.b.c")])), Ok(Some("a.b.c")));
        assert_eq!(protocol_credential(&h(&[("sec-websocket-protocol", "chat")])), Ok(None));
        assert_eq!(protocol_credential(&h(&[])), Ok(None));
        assert_eq!(protocol_credential(&h(&[("sec-websocket-protocol", "edgeward.bearer.a.b.c")])), Err(AuthError::WebSocketProtocolRequired));
        assert_eq!(protocol_credential(&h(&[("sec-websocket-protocol", "chat, edgeward.bearer.")])), Err(AuthError::MalformedToken));
        // The same token twice (two headers) is one credential; two tokens are ambiguous.
        let two = h(&[("sec-websocket-protocol", "chat, edgeward.bearer.x"), ("Sec-WebSocket-Protocol", "edgeward.bearer.x")]);
        assert_eq!(protocol_credential(&two), Ok(Some("x")));
        let diff = h(&[("sec-websocket-protocol", "chat, edgeward.bearer.x, edgeward.bearer.y")]);
        assert_eq!(protocol_credential(&diff), Err(AuthError::MalformedToken));
        for odd in ["chat, Edgeward.Bearer.x", "chat, EDGEWARD.BEARER.x", "chat, v1 edgeward.bearer.x"] {
            assert_eq!(protocol_credential(&h(&[("sec-websocket-protocol", odd)])), Err(AuthError::MalformedToken), "{odd}");
        }
    }

    #[test]
    fn credential_entries_are_removed() {
        assert_eq!(protocols_without_credential("chat, edgeward.bearer.a.b.c,v2").as_deref(), Some("chat, v2"));
        assert_eq!(protocols_without_credential("edgeward.bearer.a.b.c"), None);
        assert_eq!(protocols_without_credential("chat, Edgeward.Bearer.x, v1 EDGEWARD.BEARER.y").as_deref(), Some("chat"));
    }

    #[test]
    fn cookie_sockets_need_an_allowed_origin() {
        let allowed = vec!["https://app.example".to_string()];
        let own = "https://edge.example";
        assert_eq!(check_cookie_origin(&h(&[("origin", own)]), own, &allowed), Ok(()));
        assert_eq!(check_cookie_origin(&h(&[("Origin", "https://app.example")]), own, &allowed), Ok(()));
        assert_eq!(check_cookie_origin(&h(&[("origin", "https://evil.example")]), own, &allowed), Err(AuthError::CsrfRejected));
        assert_eq!(check_cookie_origin(&h(&[]), own, &allowed), Err(AuthError::CsrfRejected));
    }

    #[test]
    fn close_codes_relayed_are_sendable() {
        assert_eq!(relayed_close_code(1000), Some(1000));
        assert_eq!(relayed_close_code(4321), Some(4321));
        assert_eq!(relayed_close_code(1005), None);
        assert_eq!(relayed_close_code(1006), Some(1011));
        assert_eq!(relayed_close_code(1001), Some(1001));
        assert_eq!(relayed_close_code(1015), Some(1011));
        assert_eq!(CloseReason::TokenRevoked.code(), 1008);
        assert_eq!(CloseReason::RevocationsUnavailable.code(), 1011);
    }
}
