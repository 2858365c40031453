//! The agent's proof of its key (agent protocol §3): a compact ES256 JWT signed with the enrolled
//! P-256 key, sent as `Authorization: Agent <JWS>`.
//!
//! One assertion is reused until shortly before it expires, so a busy agent signs about once every
//! few minutes, not per request.

use std::sync::Mutex;

use aws_lc_rs::signature::EcdsaKeyPair;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

/// Lifetime of one assertion, in seconds (the server accepts at most 600).
const ASSERTION_LIFETIME: i64 = 300;
/// An assertion is replaced this many seconds before it expires.
const RENEW_BEFORE: i64 = 60;
/// The audience the server expects.
const AUDIENCE: &str = "openmi-agent";

/// Signs and caches the agent's assertions.
pub struct AssertionSigner {
    agent_id: String,
    key_pair: EcdsaKeyPair,
    current: Mutex<Option<CurrentAssertion>>,
}

struct CurrentAssertion {
    authorization: String,
    expires_at: i64,
}

/// The key refused to sign (it never does for a key that loaded).
#[derive(Debug, thiserror::Error)]
#[error("AG0002: cannot sign the agent assertion")]
pub struct SigningError;

impl AssertionSigner {
    pub fn new(agent_id: String, key_pair: EcdsaKeyPair) -> AssertionSigner {
        AssertionSigner {
            agent_id,
            key_pair,
            current: Mutex::new(None),
        }
    }

    /// The `Authorization` header value to send at `now`: the cached assertion while it has more
    /// than a minute left, else a new one.
    pub fn authorization(&self, now: i64) -> Result<String, SigningError> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(assertion) = current.as_ref() {
            if now < assertion.expires_at - RENEW_BEFORE {
                return Ok(assertion.authorization.clone());
            }
        }
        let jws = sign_assertion(
            &self.agent_id,
            &self.key_pair,
            now,
            &uuid::Uuid::new_v4().to_string(),
        )?;
        let authorization = format!("Agent {jws}");
        *current = Some(CurrentAssertion {
            authorization: authorization.clone(),
            expires_at: now + ASSERTION_LIFETIME,
        });
        Ok(authorization)
    }

    /// Drops the cached assertion (after the server refused it, so the next call signs afresh).
    pub fn forget(&self) {
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// The compact JWS of agent protocol §3.
pub fn sign_assertion(
    agent_id: &str,
    key_pair: &EcdsaKeyPair,
    now: i64,
    jti: &str,
) -> Result<String, SigningError> {
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": agent_id});
    let claims = json!({
        "iss": agent_id,
        "sub": agent_id,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
        "jti": jti,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signature = key_pair
        .sign(&rng, signing_input.as_bytes())
        .map_err(|_| SigningError)?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{
        KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
    };

    fn key_pair() -> EcdsaKeyPair {
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()
    }

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn assertion_is_an_es256_jwt_the_public_key_verifies() {
        let key_pair = key_pair();
        let jws = sign_assertion("agent-1", &key_pair, 1_000, "jti-1").unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode(parts[0]),
            json!({"alg": "ES256", "typ": "JWT", "kid": "agent-1"})
        );
        assert_eq!(
            decode(parts[1]),
            json!({"iss": "agent-1", "sub": "agent-1", "aud": "openmi-agent", "iat": 1_000, "exp": 1_300, "jti": "jti-1"})
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 64, "fixed-length r||s");
        let public_key =
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key_pair.public_key().as_ref());
        public_key
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn assertion_is_reused_until_a_minute_before_it_expires() {
        let signer = AssertionSigner::new("agent-1".into(), key_pair());
        let first = signer.authorization(1_000).unwrap();
        assert!(first.starts_with("Agent "));
        assert_eq!(signer.authorization(1_239).unwrap(), first);
        let renewed = signer.authorization(1_240).unwrap();
        assert_ne!(renewed, first);
        signer.forget();
        assert_ne!(signer.authorization(1_241).unwrap(), renewed);
    }
}
