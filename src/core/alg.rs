//! JWS algorithms Edgeward accepts, and what each demands of a key.

use std::fmt;

/// A JWS `alg` value Edgeward can verify. Names are case-sensitive, as in RFC 7518.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// ECDSA P-521 with SHA-512.
    ES512,
    /// EdDSA (Ed25519 keys only).
    EdDSA,
    /// The fully-specified name for Ed25519 (RFC 9864).
    Ed25519,
    /// HMAC with SHA-256 (inline `oct` keys only).
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

/// The kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC` on the given curve.
    Ec(Curve),
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
    /// `kty: oct` (shared secret).
    Oct,
}

/// An elliptic curve for ECDSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
}

impl Curve {
    /// The JWK `crv` name.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }
    /// Length in bytes of one coordinate (and of R or S in a signature).
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
    pub(crate) fn from_name(s: &str) -> Option<Curve> {
        match s {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            "P-521" => Some(Curve::P521),
            _ => None,
        }
    }
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 14] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
        Algorithm::Ed25519,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// Parses an exact (case-sensitive) `alg` name.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The registered `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::Ed25519 => "Ed25519",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// The key family this algorithm verifies with.
    pub fn key_family(self) -> KeyFamily {
        use Algorithm::*;
        match self {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => KeyFamily::Rsa,
            ES256 => KeyFamily::Ec(Curve::P256),
            ES384 => KeyFamily::Ec(Curve::P384),
            ES512 => KeyFamily::Ec(Curve::P521),
            EdDSA | Ed25519 => KeyFamily::Ed25519,
            HS256 | HS384 | HS512 => KeyFamily::Oct,
        }
    }

    /// True for the HMAC algorithms (shared secrets).
    pub fn is_symmetric(self) -> bool {
        self.key_family() == KeyFamily::Oct
    }

    /// Output size of the hash in bytes (the minimum HMAC key size, RFC 7518 §3.2).
    pub fn hash_len(self) -> usize {
        use Algorithm::*;
        match self {
            RS256 | PS256 | ES256 | HS256 => 32,
            RS384 | PS384 | ES384 | HS384 => 48,
            RS512 | PS512 | ES512 | HS512 | EdDSA | Ed25519 => 64,
        }
    }

    /// Whether a key that declares `alg: other` may be used with this header `alg`.
    /// `EdDSA` and `Ed25519` name the same computation for Ed25519 keys.
    pub fn matches_declared(self, declared: &str) -> bool {
        match self {
            Algorithm::EdDSA | Algorithm::Ed25519 => declared == "EdDSA" || declared == "Ed25519",
            _ => declared == self.name(),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
            assert_eq!(Algorithm::from_name(&a.name().to_lowercase()).filter(|_| a.name() != a.name().to_lowercase()), None);
        }
        assert_eq!(Algorithm::from_name("none"), None);
        assert_eq!(Algorithm::from_name("rs256"), None);
    }

    #[test]
    fn eddsa_names_are_interchangeable_only_with_each_other() {
        assert!(Algorithm::EdDSA.matches_declared("Ed25519"));
        assert!(Algorithm::Ed25519.matches_declared("EdDSA"));
        assert!(!Algorithm::RS256.matches_declared("PS256"));
    }
}
