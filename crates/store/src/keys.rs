//! Signing keys at rest: the certificate in clear, the private key sealed by the caller's KEK.

use sqlx::{Any, Row, Transaction};

use crate::{Store, StoreError};

/// A signing key row. `private_key_sealed` is opaque to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    pub created_at: i64,
    pub activate_at: i64,
    /// base64 DER of the key's certificate.
    pub cert_der_b64: String,
    pub private_key_sealed: String,
}

pub(crate) async fn insert_signing_key(
    transaction: &mut Transaction<'_, Any>,
    key: &StoredSigningKey,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO signing_keys (kid, created_at, activate_at, cert_der, private_key_sealed) VALUES ($1, $2, $3, $4, $5)")
        .bind(key.kid.clone())
        .bind(key.created_at)
        .bind(key.activate_at)
        .bind(key.cert_der_b64.clone())
        .bind(key.private_key_sealed.clone())
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

impl Store {
    /// Every signing key, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let rows = sqlx::query("SELECT kid, created_at, activate_at, cert_der, private_key_sealed FROM signing_keys ORDER BY activate_at, created_at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredSigningKey {
                    kid: row.try_get("kid")?,
                    created_at: row.try_get("created_at")?,
                    activate_at: row.try_get("activate_at")?,
                    cert_der_b64: row.try_get("cert_der")?,
                    private_key_sealed: row.try_get("private_key_sealed")?,
                })
            })
            .collect()
    }

    /// Adds a signing key (rotation).
    pub async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        insert_signing_key(&mut transaction, key).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Removes keys that no longer appear in any JWKS (`kids` chosen by the caller).
    pub async fn delete_signing_keys(&self, kids: &[String]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        for kid in kids {
            sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                .bind(kid.clone())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}
