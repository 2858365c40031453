//! Loading the key ring from the store and rotating signing keys.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use openmi_store::{Store, StoredSigningKey};
use openmi_token::{Kek, KeyRing, SigningKey};

use crate::EngineError;

/// Generates a key that signs from `activate_at`, sealed for storage.
pub(crate) fn new_stored_key(
    kek: &Kek,
    now: i64,
    activate_at: i64,
) -> Result<StoredSigningKey, EngineError> {
    let (key, material) = SigningKey::generate(now, activate_at)?;
    Ok(StoredSigningKey {
        private_key_sealed: kek
            .seal(&key.kid, &material.pkcs8_der)
            .map_err(|error| EngineError::Internal(error.to_string()))?,
        kid: key.kid,
        created_at: now,
        activate_at,
        cert_der_b64: STANDARD.encode(material.cert_der),
    })
}

/// Reads and unseals every stored key. A key that does not open means the KEK is wrong.
pub(crate) async fn load_key_ring(
    store: &Store,
    kek: &Kek,
    max_token_lifetime: i64,
) -> Result<KeyRing, EngineError> {
    let mut keys = Vec::new();
    for stored in store.signing_keys().await? {
        let pkcs8 = kek
            .open(&stored.kid, &stored.private_key_sealed)
            .map_err(|_| EngineError::KekMismatch)?;
        let cert_der = STANDARD
            .decode(&stored.cert_der_b64)
            .map_err(|_| EngineError::Internal("EN0201 stored certificate".to_string()))?;
        keys.push(Arc::new(SigningKey::from_parts(
            &pkcs8,
            cert_der,
            stored.created_at,
            stored.activate_at,
        )?));
    }
    Ok(KeyRing::new(keys, max_token_lifetime))
}

/// Adds a signing key that is published at once and signs after `publish_delay` seconds, and
/// deletes keys no longer published. Works on the store alone, so `openmi server keys rotate`
/// can run beside live servers, which pick the change up when they reload their ring.
pub async fn rotate_signing_key(
    store: &Store,
    kek: &Kek,
    now: i64,
    publish_delay: i64,
    max_token_lifetime: i64,
) -> Result<String, EngineError> {
    // Opening the existing keys first proves the KEK is the right one before anything is written.
    let ring = load_key_ring(store, kek, max_token_lifetime).await?;
    let stored = new_stored_key(kek, now, now + publish_delay.max(0))?;
    let kid = stored.kid.clone();
    store.add_signing_key(&stored).await?;
    let published: Vec<&str> = ring
        .published(now)
        .iter()
        .map(|key| key.kid.as_str())
        .collect();
    let retired: Vec<String> = ring
        .keys()
        .iter()
        .filter(|key| !published.contains(&key.kid.as_str()))
        .map(|key| key.kid.clone())
        .collect();
    if !retired.is_empty() {
        store.delete_signing_keys(&retired).await?;
    }
    Ok(kid)
}
