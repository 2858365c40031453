//! The key-encryption key (KEK): seals private keys at rest and keys the client-secret hash.
//!
//! The KEK never goes into the database. Sealing is AES-256-GCM with a random nonce; the sealed
//! form is `base64(nonce || ciphertext || tag)`. Client secrets are hashed with HMAC-SHA-256 under
//! a key derived from the KEK: a secret of 256 random bits gains nothing from a slow hash, and a
//! slow hash would cap token throughput.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Why a KEK could not be loaded or a blob not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the key-encryption key must be 64 hexadecimal characters (32 bytes)")]
    BadKekFormat,
    #[error("sealed data could not be opened: the key-encryption key does not match")]
    WrongKey,
    #[error("TK0101 random number generator failed")]
    Random,
}

/// A 256-bit key-encryption key.
pub struct Kek {
    aead: LessSafeKey,
    secret_hash_key: hmac::Key,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// Generates a new random KEK and returns it with its hex encoding (for the KEK file).
    pub fn generate() -> Result<(Kek, String), SealError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        let hex = hex_encode(&bytes);
        Ok((Kek::from_bytes(&bytes)?, hex))
    }

    /// Parses the hex form (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Kek, SealError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(SealError::BadKekFormat);
        }
        let mut bytes = [0u8; 32];
        for (index, chunk) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(|_| SealError::BadKekFormat)?;
            bytes[index] = u8::from_str_radix(pair, 16).map_err(|_| SealError::BadKekFormat)?;
        }
        Kek::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8; 32]) -> Result<Kek, SealError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadKekFormat)?;
        // The hash key is derived, so a leaked secret hash says nothing about the sealing key.
        let derive = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let derived = hmac::sign(&derive, b"openmi client secret hash v1");
        Ok(Kek {
            aead: LessSafeKey::new(unbound),
            secret_hash_key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        })
    }

    /// Encrypts `plaintext`, binding it to `context` (for example the key id) as associated data.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce_bytes)
            .map_err(|_| SealError::Random)?;
        let mut buffer = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buffer);
        Ok(STANDARD.encode(out))
    }

    /// Decrypts what [`Kek::seal`] produced with the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| SealError::WrongKey)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::WrongKey);
        }
        let (nonce_bytes, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce_bytes).map_err(|_| SealError::WrongKey)?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .aead
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| SealError::WrongKey)?;
        Ok(plaintext.to_vec())
    }

    /// The keyed hash stored for a client secret (hex).
    pub fn hash_client_secret(&self, secret: &str) -> String {
        hex_encode(hmac::sign(&self.secret_hash_key, secret.as_bytes()).as_ref())
    }

    /// Compares a presented secret with a stored hash in constant time.
    pub fn verify_client_secret(&self, secret: &str, stored_hash_hex: &str) -> bool {
        let computed = self.hash_client_secret(secret);
        aws_lc_rs::constant_time::verify_slices_are_equal(
            computed.as_bytes(),
            stored_hash_hex.as_bytes(),
        )
        .is_ok()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0x0f) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_rejects_other_keys_and_contexts() {
        let (kek, hex) = Kek::generate().unwrap();
        let sealed = kek.seal("kid-1", b"private key").unwrap();
        assert_eq!(kek.open("kid-1", &sealed).unwrap(), b"private key");
        assert!(kek.open("kid-2", &sealed).is_err());
        let same = Kek::from_hex(&hex).unwrap();
        assert_eq!(same.open("kid-1", &sealed).unwrap(), b"private key");
        let (other, _) = Kek::generate().unwrap();
        assert!(matches!(
            other.open("kid-1", &sealed),
            Err(SealError::WrongKey)
        ));
    }

    #[test]
    fn secret_hash_is_keyed_and_verifies() {
        let (kek, _) = Kek::generate().unwrap();
        let (other, _) = Kek::generate().unwrap();
        let hash = kek.hash_client_secret("s3cret");
        assert!(kek.verify_client_secret("s3cret", &hash));
        assert!(!kek.verify_client_secret("s3cret!", &hash));
        assert_ne!(hash, other.hash_client_secret("s3cret"));
    }

    #[test]
    fn bad_hex_is_refused() {
        assert!(matches!(Kek::from_hex("abc"), Err(SealError::BadKekFormat)));
        assert!(matches!(
            Kek::from_hex(&"zz".repeat(32)),
            Err(SealError::BadKekFormat)
        ));
    }
}
