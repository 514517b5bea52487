//! The error every operation of the JS package gives, which [`super`] turns into a JS `Error`
//! named `EdgewardError`.

use crate::core::error::AuthError;

/// A typed error for JS: a stable `code` (the Worker's reason codes for token problems), a message,
/// and, where it helps, the HTTP status the Worker would answer and the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebError {
    /// Stable code: an [`AuthError::code`], or `config_invalid`, `invalid_argument`,
    /// `random_unavailable`.
    pub code: &'static str,
    /// Human-readable; never holds a key or secret.
    pub message: String,
    /// Status the Worker would answer with, for token errors.
    pub status: Option<u16>,
    /// The policy or JWKS field at fault, for `config_invalid`.
    pub field: Option<String>,
}

impl WebError {
    /// A bad argument (wrong type or range).
    pub fn invalid_argument(message: impl Into<String>) -> WebError {
        WebError { code: "invalid_argument", message: message.into(), status: None, field: None }
    }
    /// A policy field that the configuration schema refuses: `config_invalid`, naming the JS field.
    pub(super) fn config(field: impl Into<String>, message: impl Into<String>) -> WebError {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        WebError { code: "config_invalid", message, status: None, field: Some(field) }
    }
}

impl From<AuthError> for WebError {
    fn from(e: AuthError) -> WebError {
        let status = e.rejection("edgeward").status;
        WebError { code: e.code(), message: e.to_string(), status: Some(status), field: None }
    }
}
