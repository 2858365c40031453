//! Compact JWS (JWT) encoding and verification for RS256 (and PS256 for client assertions).

use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::keyring::{KeyRing, SigningKey};
use crate::TokenError;

/// Which header a token gets: Entra puts `x5t` beside `kid` in v1 tokens only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    V1,
    V2,
}

/// Serialises `claims` and signs them with `key`.
pub fn encode<C: Serialize>(
    key: &SigningKey,
    format: TokenFormat,
    claims: &C,
) -> Result<String, TokenError> {
    let header = match format {
        TokenFormat::V1 => &key.header_v1_b64,
        TokenFormat::V2 => &key.header_v2_b64,
    };
    let claims_json = serde_json::to_vec(claims).map_err(|_| TokenError::Signing)?;
    let mut token = String::with_capacity(header.len() + claims_json.len() * 4 / 3 + 350);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims_json, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// A JWT split into its parts, not yet verified.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// A JWT whose signature and time window were checked.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

/// Splits and decodes a compact JWT without checking anything but its form.
pub fn decode_unverified(token: &str) -> Result<UnverifiedJwt<'_>, TokenError> {
    let mut parts = token.splitn(3, '.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let signing_input = &token[..header_b64.len() + 1 + claims_b64.len()];
    let decode_object = |part: &str| -> Result<Map<String, Value>, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| TokenError::Malformed)?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(TokenError::Malformed),
        }
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    Ok(UnverifiedJwt {
        header: decode_object(header_b64)?,
        claims: decode_object(claims_b64)?,
        signing_input,
        signature,
    })
}

impl UnverifiedJwt<'_> {
    /// A string header field.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    fn check_time(&self, now: i64, leeway: i64) -> Result<(), TokenError> {
        let exp = self.numeric_date("exp").ok_or(TokenError::Malformed)?;
        if now > exp + leeway {
            return Err(TokenError::Expired { exp });
        }
        if let Some(nbf) = self.numeric_date("nbf") {
            if now + leeway < nbf {
                return Err(TokenError::NotYetValid { nbf });
            }
        }
        Ok(())
    }

    /// A NumericDate claim (RFC 7519 §2): seconds, possibly with a fraction (MSAL sends floats).
    fn numeric_date(&self, name: &str) -> Option<i64> {
        let value = self.claims.get(name)?;
        value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|seconds| seconds.is_finite())
                .map(|seconds| seconds.floor() as i64)
        })
    }

    fn into_verified(self) -> VerifiedJwt {
        VerifiedJwt {
            header: self.header,
            claims: self.claims,
        }
    }

    /// Verifies a token this server signed: RS256, a key of `ring`, and the time window.
    pub fn verify_with_ring(
        self,
        ring: &KeyRing,
        now: i64,
        leeway: i64,
    ) -> Result<VerifiedJwt, TokenError> {
        let algorithm = self.header_str("alg").unwrap_or_default();
        if algorithm != "RS256" {
            return Err(TokenError::UnsupportedAlgorithm(algorithm.to_string()));
        }
        let kid = self
            .header_str("kid")
            .or_else(|| self.header_str("x5t"))
            .ok_or(TokenError::Malformed)?;
        let key = ring
            .find(kid)
            .ok_or_else(|| TokenError::UnknownKey(kid.to_string()))?;
        if !key.verify(self.signing_input.as_bytes(), &self.signature) {
            return Err(TokenError::BadSignature);
        }
        self.check_time(now, leeway)?;
        Ok(self.into_verified())
    }

    /// Verifies a token signed by an external key (a client's certificate): RS256 or PS256,
    /// then the time window.
    pub fn verify_with_key(
        self,
        key: &ExternalKey,
        now: i64,
        leeway: i64,
    ) -> Result<VerifiedJwt, TokenError> {
        let algorithm = self.header_str("alg").unwrap_or_default();
        let verifier = match algorithm {
            "RS256" => &key.rs256,
            "PS256" => &key.ps256,
            other => return Err(TokenError::UnsupportedAlgorithm(other.to_string())),
        };
        verifier
            .verify_sig(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| TokenError::BadSignature)?;
        self.check_time(now, leeway)?;
        Ok(self.into_verified())
    }
}

impl UnverifiedJwt<'_> {
    /// Verifies an ES256 token (an agent's assertion) against its enrolled EC P-256 key, then the
    /// time window.
    pub fn verify_es256(
        self,
        key: &ParsedPublicKey,
        now: i64,
        leeway: i64,
    ) -> Result<VerifiedJwt, TokenError> {
        let algorithm = self.header_str("alg").unwrap_or_default();
        if algorithm != "ES256" {
            return Err(TokenError::UnsupportedAlgorithm(algorithm.to_string()));
        }
        key.verify_sig(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| TokenError::BadSignature)?;
        self.check_time(now, leeway)?;
        Ok(self.into_verified())
    }
}

/// Parses an EC P-256 public key (DER SubjectPublicKeyInfo) for ES256 verification.
pub fn es256_public_key(spki_der: &[u8]) -> Result<ParsedPublicKey, TokenError> {
    ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, spki_der)
        .map_err(|_| TokenError::BadCertificate)
}

/// The public key of a client certificate, with its thumbprints.
pub struct ExternalKey {
    /// base64url SHA-1 of the certificate DER (`x5t`).
    pub x5t: String,
    /// base64url SHA-256 of the certificate DER (`x5t#S256`).
    pub x5t_s256: String,
    /// Expiry of the certificate (seconds since the epoch).
    pub not_after: i64,
    rs256: ParsedPublicKey,
    ps256: ParsedPublicKey,
}

impl std::fmt::Debug for ExternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalKey")
            .field("x5t", &self.x5t)
            .finish()
    }
}

impl ExternalKey {
    /// Parses an X.509 certificate (DER) holding an RSA key.
    pub fn from_certificate_der(cert_der: &[u8]) -> Result<ExternalKey, TokenError> {
        use aws_lc_rs::digest;
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|_| TokenError::BadCertificate)?;
        let spki = cert.public_key().raw;
        let rs256 = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, spki)
            .map_err(|_| TokenError::BadCertificate)?;
        let ps256 = ParsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, spki)
            .map_err(|_| TokenError::BadCertificate)?;
        Ok(ExternalKey {
            x5t: URL_SAFE_NO_PAD
                .encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, cert_der)),
            not_after: cert.validity().not_after.timestamp(),
            rs256,
            ps256,
        })
    }

    /// Parses a certificate given as PEM or as base64 DER (Graph's `keyCredentials[].key`).
    pub fn certificate_der_from_text(text: &str) -> Result<Vec<u8>, TokenError> {
        let body: String = if text.contains("-----BEGIN CERTIFICATE-----") {
            let start = text.find("-----BEGIN CERTIFICATE-----").unwrap_or(0)
                + "-----BEGIN CERTIFICATE-----".len();
            let end = text[start..]
                .find("-----END CERTIFICATE-----")
                .map(|end| start + end)
                .ok_or(TokenError::BadCertificate)?;
            text[start..end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect()
        } else {
            text.chars().filter(|c| !c.is_whitespace()).collect()
        };
        STANDARD
            .decode(body)
            .map_err(|_| TokenError::BadCertificate)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn ring_with_key(now: i64) -> KeyRing {
        let (key, _) = SigningKey::generate(now, now).unwrap();
        KeyRing::new(vec![Arc::new(key)], 3600)
    }

    #[test]
    fn encodes_and_verifies_with_expected_headers() {
        let ring = ring_with_key(1_000);
        let key = ring.active(1_000).unwrap();
        let claims = json!({"aud": "a", "exp": 2_000, "nbf": 1_000});
        let v1 = encode(key, TokenFormat::V1, &claims).unwrap();
        let verified = decode_unverified(&v1)
            .unwrap()
            .verify_with_ring(&ring, 1_500, 0)
            .unwrap();
        assert_eq!(verified.claims.get("aud"), Some(&json!("a")));
        assert_eq!(verified.header.get("x5t"), verified.header.get("kid"));
        let v2 = encode(key, TokenFormat::V2, &claims).unwrap();
        let verified = decode_unverified(&v2)
            .unwrap()
            .verify_with_ring(&ring, 1_500, 0)
            .unwrap();
        assert!(verified.header.get("x5t").is_none());
    }

    #[test]
    fn rejects_tampering_expiry_and_foreign_keys() {
        let ring = ring_with_key(1_000);
        let key = ring.active(1_000).unwrap();
        let token = encode(
            key,
            TokenFormat::V1,
            &json!({"aud": "a", "exp": 2_000, "nbf": 1_000}),
        )
        .unwrap();
        let check = |token: &str, now| {
            decode_unverified(token).and_then(|jwt| jwt.verify_with_ring(&ring, now, 0))
        };
        assert!(matches!(
            check(&token, 2_001),
            Err(TokenError::Expired { exp: 2_000 })
        ));
        assert!(matches!(
            check(&token, 999),
            Err(TokenError::NotYetValid { .. })
        ));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"aud":"b","exp":2000}"#);
        parts[1] = &forged;
        assert!(matches!(
            check(&parts.join("."), 1_500),
            Err(TokenError::BadSignature)
        ));
        let other = ring_with_key(1_000);
        let foreign = encode(
            other.active(1_000).unwrap(),
            TokenFormat::V1,
            &json!({"exp": 2_000}),
        )
        .unwrap();
        assert!(matches!(
            check(&foreign, 1_500),
            Err(TokenError::UnknownKey(_))
        ));
        assert!(matches!(check("a.b", 1_500), Err(TokenError::Malformed)));
        let fractional = encode(
            key,
            TokenFormat::V1,
            &json!({"exp": 2_000.5, "nbf": 1_000.25}),
        )
        .unwrap();
        assert!(
            check(&fractional, 1_500).is_ok(),
            "fractional NumericDates are valid"
        );
        assert!(matches!(
            check(&fractional, 2_001),
            Err(TokenError::Expired { exp: 2_000 })
        ));
    }
}

#[cfg(test)]
mod es256_tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    use super::*;

    #[test]
    fn es256_assertions_verify_with_the_enrolled_key_only() {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let spki = key.public_key().as_der().unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT","kid":"a"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"iss":"a","exp":2000}"#);
        let input = format!("{header}.{claims}");
        let signature = key.sign(&rng, input.as_bytes()).unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        let parsed = es256_public_key(spki.as_ref()).unwrap();
        assert!(decode_unverified(&token)
            .unwrap()
            .verify_es256(&parsed, 1500, 0)
            .is_ok());
        assert!(matches!(
            decode_unverified(&token)
                .unwrap()
                .verify_es256(&parsed, 2001, 0),
            Err(TokenError::Expired { .. })
        ));
        let other = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let other_key = es256_public_key(other.public_key().as_der().unwrap().as_ref()).unwrap();
        assert!(matches!(
            decode_unverified(&token)
                .unwrap()
                .verify_es256(&other_key, 1500, 0),
            Err(TokenError::BadSignature)
        ));
    }
}
