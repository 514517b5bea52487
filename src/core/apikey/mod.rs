//! API keys, with no I/O: the key format (prefix, random body, checksum), the keyed hash that is
//! the only thing ever stored, the stored record (owner, scopes, tier, client IP ranges, validity,
//! status, the secrets of one key id across rotations), and the check a presented key must pass.
//!
//! Three files, one concern each: `format` (the key text, its checksum, the keyed hash), `record`
//! (the stored record and the edge check, [`KeyRecord::check`]) and `admin` (what the admin API
//! does to records: create, rotate, list, and their storage keys). Every item is re-exported here.
//!
//! # Format
//! `ew_<env>_<body><checksum>`: `env` is `live` or `test`; `body` is 32 base62 characters from
//! the CSPRNG (190 bits); `checksum` is the CRC32 of everything before it, as 6 base62 digits.
//! Secret scanners can match it with [`KEY_PATTERN`]:
//!
//! ```text
//! \bew_(?:live|test)_[0-9A-Za-z]{38}\b
//! ```
//!
//! The checksum lets the edge refuse a mistyped or made-up key with no lookup at all (every
//! single-character change is caught: CRC32 detects every burst error of up to 32 bits).
//!
//! # Storage
//! Only `HMAC-SHA-256(pepper, key)` is stored ([`key_hash`]); the pepper is a Worker secret, so a
//! leaked KV namespace gives nothing to try offline. The plain key is shown once, at creation.

mod admin;
mod format;
mod record;

pub use admin::{hash_storage_key, id_storage_key, is_key_id, InvalidKeyRequest, NewKey, ID_PREFIX, MAX_SECRETS, PEPPER_SECRET};
pub use format::{generate, key_hash, key_id, KeyEnv, KeyHash, PresentedKey, BODY_LEN, CHECKSUM_LEN, KEY_PATTERN, RANDOM_BYTES};
pub use record::{Cidr, KeyRecord, KeySecret, KeyStatus, VerifiedApiKey};
