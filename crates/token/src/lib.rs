//! Access tokens: RS256 signing and verification, the key ring with rotation, JWKS, and claims.
//!
//! Signing goes straight to aws-lc-rs with each RSA key parsed once (see
//! `shared/research/crypto-bench.md`: JWT libraries re-parse the key per signature and reach 0.4x
//! of the CPU's signing rate). This crate never reads the system clock, the store or HTTP: callers
//! pass `now` and persist the key material it produces.

pub mod claims;
pub mod jwt;
pub mod keyring;
pub mod seal;

pub use claims::AccessTokenClaims;
pub use jwt::{decode_unverified, ExternalKey, TokenFormat, VerifiedJwt};
pub use keyring::{KeyRing, SigningKey};
pub use seal::{Kek, SealError};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("TK0001 key generation failed")]
    KeyGeneration,
    #[error("TK0002 stored signing key could not be parsed")]
    KeyRejected,
    #[error("TK0003 certificate generation failed: {0}")]
    Certificate(String),
    #[error("TK0004 signing failed")]
    Signing,
    #[error("TK0005 no signing key is active")]
    NoActiveKey,
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm '{0}'")]
    UnsupportedAlgorithm(String),
    #[error("token signing key '{0}' is unknown")]
    UnknownKey(String),
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired { exp: i64 },
    #[error("token is not valid yet")]
    NotYetValid { nbf: i64 },
    #[error("certificate could not be parsed")]
    BadCertificate,
}
