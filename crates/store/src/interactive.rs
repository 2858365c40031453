//! Interactive sign-in state: applications' redirect URIs and short-lived grants (authorization
//! codes, browser sessions, device codes). A grant is found by the keyed hash of its secret, so
//! the store never holds a usable code, cookie or device code.

use openmi_model::ObjectId;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::directory::parse_optional;
use crate::{Store, StoreError};

/// One grant as stored. `data` is the engine's JSON; the store does not read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractiveGrant {
    pub key_hash: String,
    /// `code`, `session` or `device`.
    pub kind: String,
    /// `pending`, `approved`, `denied` (device codes) or `active`.
    pub status: String,
    /// The signed-in user, once known.
    pub object_id: Option<ObjectId>,
    /// A device code's user code (unique while it lives).
    pub user_code: Option<String>,
    pub data: String,
    pub expires_at: i64,
}

const COLUMNS: &str = "key_hash, kind, status, object_id, user_code, data, expires_at";

fn grant_from_row(row: &AnyRow) -> Result<InteractiveGrant, StoreError> {
    Ok(InteractiveGrant {
        key_hash: row.try_get("key_hash")?,
        kind: row.try_get("kind")?,
        status: row.try_get("status")?,
        object_id: parse_optional(row.try_get("object_id")?, "object id")?,
        user_code: row.try_get("user_code")?,
        data: row.try_get("data")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// The redirect URIs of an application's service principal: `(platform, uri)` pairs.
    pub async fn redirect_uris(
        &self,
        object_id: ObjectId,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT platform, uri FROM redirect_uris WHERE object_id = $1 ORDER BY platform, uri",
        )
        .bind(object_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("platform")?, row.try_get("uri")?)))
            .collect()
    }

    /// Replaces one platform's redirect URIs of an application.
    pub async fn set_redirect_uris(
        &self,
        object_id: ObjectId,
        platform: &str,
        uris: &[String],
        audit: Option<&crate::AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("DELETE FROM redirect_uris WHERE object_id = $1 AND platform = $2")
            .bind(object_id.to_string())
            .bind(platform.to_string())
            .execute(&mut *transaction)
            .await?;
        for uri in uris {
            sqlx::query("INSERT INTO redirect_uris (object_id, platform, uri) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(object_id.to_string())
                .bind(platform.to_string())
                .bind(uri.clone())
                .execute(&mut *transaction)
                .await?;
        }
        crate::audit::insert_one(&mut transaction, audit).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Stores a new grant; drops expired ones on the way. A user code already in use is
    /// `StoreError::Conflict`, so the caller draws another.
    pub async fn insert_interactive_grant(
        &self,
        grant: &InteractiveGrant,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM interactive_grants WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO interactive_grants (key_hash, kind, status, object_id, user_code, data, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(grant.key_hash.clone())
            .bind(grant.kind.clone())
            .bind(grant.status.clone())
            .bind(grant.object_id.map(|id| id.to_string()))
            .bind(grant.user_code.clone())
            .bind(grant.data.clone())
            .bind(grant.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A live grant of `kind` by its key hash.
    pub async fn interactive_grant(
        &self,
        kind: &str,
        key_hash: &str,
        now: i64,
    ) -> Result<Option<InteractiveGrant>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM interactive_grants WHERE key_hash = $1 AND kind = $2 AND expires_at >= $3"
        ))
        .bind(key_hash.to_string())
        .bind(kind.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// A live device code by its user code.
    pub async fn device_grant_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<Option<InteractiveGrant>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM interactive_grants WHERE user_code = $1 AND kind = 'device' AND expires_at >= $2"
        ))
        .bind(user_code.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// Removes a grant and returns it, live or not: an authorization code is redeemed once,
    /// even when two requests race (only one of them gets the row).
    pub async fn take_interactive_grant(
        &self,
        kind: &str,
        key_hash: &str,
    ) -> Result<Option<InteractiveGrant>, StoreError> {
        let row = sqlx::query(&format!(
            "DELETE FROM interactive_grants WHERE key_hash = $1 AND kind = $2 RETURNING {COLUMNS}"
        ))
        .bind(key_hash.to_string())
        .bind(kind.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// Moves a pending device code to `status` for `object_id` (`approved` or `denied`); false
    /// when it is no longer pending.
    pub async fn settle_device_grant(
        &self,
        key_hash: &str,
        status: &str,
        object_id: ObjectId,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE interactive_grants SET status = $1, object_id = $2 WHERE key_hash = $3 AND kind = 'device' AND status = 'pending'")
            .bind(status.to_string())
            .bind(object_id.to_string())
            .bind(key_hash.to_string())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }
}
