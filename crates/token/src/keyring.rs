//! Signing keys and the key ring: which key signs now, which keys are published in the JWKS.
//!
//! Rotation is time-based so that several servers sharing one database agree without talking:
//! a key is published from its creation, signs from its `activate_at`, and stays published until
//! every token it signed has expired (`next key's activate_at + max token lifetime`).

use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey, RsaKeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use crate::TokenError;

/// One RSA-2048 signing key with its self-signed certificate, parsed once.
pub struct SigningKey {
    /// Key id; equal to `x5t`, the base64url SHA-1 thumbprint of the certificate, as Entra does.
    pub kid: String,
    /// When the key was created (published in the JWKS from then on).
    pub created_at: i64,
    /// When the key starts signing.
    pub activate_at: i64,
    key_pair: RsaKeyPair,
    verifier: ParsedPublicKey,
    cert_der: Vec<u8>,
    modulus_b64: String,
    exponent_b64: String,
    /// Pre-encoded JWT headers: v1 carries `x5t`, v2 only `kid`.
    pub(crate) header_v1_b64: String,
    pub(crate) header_v2_b64: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("activate_at", &self.activate_at)
            .finish()
    }
}

/// A new key's material to persist: the private key (to be sealed) and the certificate.
pub struct NewKeyMaterial {
    pub pkcs8_der: Vec<u8>,
    pub cert_der: Vec<u8>,
}

impl SigningKey {
    /// Generates a new key and a self-signed certificate valid from `now` for ten years.
    pub fn generate(
        now: i64,
        activate_at: i64,
    ) -> Result<(SigningKey, NewKeyMaterial), TokenError> {
        let key_pair =
            RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| TokenError::KeyGeneration)?;
        let pkcs8 = key_pair
            .as_der()
            .map_err(|_| TokenError::KeyGeneration)?
            .as_ref()
            .to_vec();
        let cert_der = self_signed_certificate(&pkcs8, now)?;
        let key = SigningKey::from_parts(&pkcs8, cert_der.clone(), now, activate_at)?;
        Ok((
            key,
            NewKeyMaterial {
                pkcs8_der: pkcs8,
                cert_der,
            },
        ))
    }

    /// Rebuilds a key from stored material.
    pub fn from_parts(
        pkcs8_der: &[u8],
        cert_der: Vec<u8>,
        created_at: i64,
        activate_at: i64,
    ) -> Result<SigningKey, TokenError> {
        let key_pair = RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|_| TokenError::KeyRejected)?;
        let public = key_pair.public_key();
        let verifier =
            ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public.as_ref())
                .map_err(|_| TokenError::KeyRejected)?;
        let modulus_b64 =
            URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let exponent_b64 =
            URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let kid =
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der));
        let header_v1 = json!({"typ": "JWT", "alg": "RS256", "x5t": kid, "kid": kid});
        let header_v2 = json!({"typ": "JWT", "alg": "RS256", "kid": kid});
        Ok(SigningKey {
            header_v1_b64: URL_SAFE_NO_PAD.encode(header_v1.to_string()),
            header_v2_b64: URL_SAFE_NO_PAD.encode(header_v2.to_string()),
            kid,
            created_at,
            activate_at,
            key_pair,
            verifier,
            cert_der,
            modulus_b64,
            exponent_b64,
            rng: SystemRandom::new(),
        })
    }

    /// The certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// RS256 signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                message,
                &mut signature,
            )
            .map_err(|_| TokenError::Signing)?;
        Ok(signature)
    }

    /// Checks an RS256 signature made by this key.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify_sig(message, signature).is_ok()
    }

    /// The JWK of this key, as Entra publishes it (`issuer` is added by the caller when wanted).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": self.modulus_b64,
            "e": self.exponent_b64,
            "x5c": [STANDARD.encode(&self.cert_der)],
        })
    }
}

fn self_signed_certificate(pkcs8_der: &[u8], now: i64) -> Result<Vec<u8>, TokenError> {
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8_der.to_vec().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|error| TokenError::Certificate(error.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "openmi token signing");
    let start = time::OffsetDateTime::from_unix_timestamp(now)
        .map_err(|error| TokenError::Certificate(error.to_string()))?;
    params.not_before = start - time::Duration::minutes(5);
    params.not_after = start + time::Duration::days(3650);
    let cert = params
        .self_signed(&key)
        .map_err(|error| TokenError::Certificate(error.to_string()))?;
    Ok(cert.der().to_vec())
}

/// The set of signing keys at one moment, shared read-only across request handlers.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    // Invariant: sorted by `activate_at`, then `created_at`, ascending.
    keys: Vec<Arc<SigningKey>>,
    max_token_lifetime: i64,
}

impl KeyRing {
    /// Builds a ring; `max_token_lifetime` (seconds) decides how long a superseded key stays published.
    pub fn new(mut keys: Vec<Arc<SigningKey>>, max_token_lifetime: i64) -> KeyRing {
        keys.sort_by_key(|key| (key.activate_at, key.created_at));
        KeyRing {
            keys,
            max_token_lifetime,
        }
    }

    /// The key that signs at `now`: the most recently activated one.
    pub fn active(&self, now: i64) -> Result<&Arc<SigningKey>, TokenError> {
        self.keys
            .iter()
            .rev()
            .find(|key| key.activate_at <= now)
            .ok_or(TokenError::NoActiveKey)
    }

    /// Keys published at `now`: every key not yet active, the active one, and older keys until
    /// the tokens they signed have all expired.
    pub fn published(&self, now: i64) -> Vec<&Arc<SigningKey>> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(index, _)| match self.keys.get(index + 1) {
                // A later key took over at its activation; tokens signed before then live at most
                // `max_token_lifetime` longer.
                Some(next) if next.activate_at <= now => {
                    next.activate_at + self.max_token_lifetime > now
                }
                _ => true,
            })
            .map(|(_, key)| key)
            .collect()
    }

    /// Looks a key up by id among all keys in the ring (published or not).
    pub fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// All keys, oldest activation first.
    pub fn keys(&self) -> &[Arc<SigningKey>] {
        &self.keys
    }

    /// The JWKS document published at `now`. `issuer`, when given, is added to every key (v2 form).
    pub fn jwks(&self, now: i64, issuer: Option<&str>) -> Value {
        let keys: Vec<Value> = self
            .published(now)
            .into_iter()
            .map(|key| {
                let mut jwk = key.jwk();
                if let (Some(issuer), Some(object)) = (issuer, jwk.as_object_mut()) {
                    object.insert("issuer".to_string(), Value::String(issuer.to_string()));
                }
                jwk
            })
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_switches_signing_only_after_activation_and_keeps_old_key_published() {
        let (first, _) = SigningKey::generate(1_000, 1_000).unwrap();
        let (second, _) = SigningKey::generate(2_000, 2_500).unwrap();
        let (first_kid, second_kid) = (first.kid.clone(), second.kid.clone());
        let ring = KeyRing::new(vec![Arc::new(second), Arc::new(first)], 3_600);
        let kids = |now| {
            ring.published(now)
                .iter()
                .map(|key| key.kid.clone())
                .collect::<Vec<_>>()
        };

        assert_eq!(
            ring.active(2_000).unwrap().kid,
            first_kid,
            "new key must not sign before activation"
        );
        assert_eq!(
            kids(2_000),
            vec![first_kid.clone(), second_kid.clone()],
            "new key is published early"
        );
        assert_eq!(ring.active(2_500).unwrap().kid, second_kid);
        assert_eq!(
            kids(2_500 + 3_599),
            vec![first_kid.clone(), second_kid.clone()]
        );
        assert_eq!(
            kids(2_500 + 3_600),
            vec![second_kid.clone()],
            "old key retires after its last token expires"
        );
        assert!(ring.active(999).is_err());
    }

    #[test]
    fn stored_material_rebuilds_the_same_key() {
        let (key, material) = SigningKey::generate(1_000, 1_000).unwrap();
        let rebuilt =
            SigningKey::from_parts(&material.pkcs8_der, material.cert_der, 1_000, 1_000).unwrap();
        assert_eq!(key.kid, rebuilt.kid);
        assert_eq!(key.jwk(), rebuilt.jwk());
        let signature = key.sign(b"message").unwrap();
        assert!(rebuilt.verify(b"message", &signature));
        assert!(!rebuilt.verify(b"other", &signature));
    }
}
