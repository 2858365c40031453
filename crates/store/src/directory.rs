//! Tenants, subscriptions, principals, their credentials, refresh tokens and role assignments.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openmi_model::directory::{
    ClientCredential, CredentialKind, RefreshGrant, RoleAssignment, Subscription, Tenant,
};
use openmi_model::{ClientId, ObjectId, Principal, PrincipalKind, SubscriptionId, TenantId};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::authorization::insert_role_assignment;
use crate::keys::{insert_signing_key, StoredSigningKey};
use crate::{Store, StoreError};

/// Everything the first start of a server writes, in one transaction.
#[derive(Debug, Clone)]
pub struct BootstrapRecord {
    pub tenant: Tenant,
    pub subscription: Subscription,
    /// The admin user with its argon2id hash, then the bootstrap service principal and the
    /// first-party public clients.
    pub principals: Vec<(Principal, Option<String>)>,
    pub credentials: Vec<ClientCredential>,
    pub signing_key: StoredSigningKey,
    pub role_assignments: Vec<RoleAssignment>,
    /// Any extra `meta` entries (for example the data-dir format version).
    pub meta: Vec<(String, String)>,
}

/// A service principal to create with its credentials.
#[derive(Debug, Clone)]
pub struct NewServicePrincipal {
    pub principal: Principal,
    pub credentials: Vec<ClientCredential>,
}

const PRINCIPAL_COLUMNS: &str = "object_id, tenant_id, kind, client_id, display_name, user_principal_name, application_object_id, managed_by, created_at";

pub(crate) fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} '{text}' is not valid")))
}

pub(crate) fn parse_optional<T: std::str::FromStr>(
    text: Option<String>,
    what: &str,
) -> Result<Option<T>, StoreError> {
    text.map(|text| parse(&text, what)).transpose()
}

fn principal_from_row(row: &AnyRow) -> Result<Principal, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Principal {
        object_id: parse(&row.try_get::<String, _>("object_id")?, "object id")?,
        tenant_id: parse(&row.try_get::<String, _>("tenant_id")?, "tenant id")?,
        kind: PrincipalKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("principal kind '{kind}'")))?,
        client_id: parse_optional(row.try_get("client_id")?, "client id")?,
        display_name: row.try_get("display_name")?,
        user_principal_name: row.try_get("user_principal_name")?,
        application_object_id: parse_optional(
            row.try_get("application_object_id")?,
            "application object id",
        )?,
        managed_by: row.try_get("managed_by")?,
        created_at: row.try_get("created_at")?,
    })
}

fn credential_from_row(row: &AnyRow) -> Result<ClientCredential, StoreError> {
    let kind: String = row.try_get("kind")?;
    let kind = match kind.as_str() {
        "secret" => CredentialKind::Secret {
            hash: row
                .try_get::<Option<String>, _>("secret_hash")?
                .unwrap_or_default(),
            hint: row
                .try_get::<Option<String>, _>("hint")?
                .unwrap_or_default(),
        },
        "certificate" => CredentialKind::Certificate {
            cert_der: STANDARD
                .decode(
                    row.try_get::<Option<String>, _>("cert_der")?
                        .unwrap_or_default(),
                )
                .map_err(|_| StoreError::Corrupt("certificate encoding".to_string()))?,
            thumbprint: row
                .try_get::<Option<String>, _>("thumbprint")?
                .unwrap_or_default(),
        },
        other => return Err(StoreError::Corrupt(format!("credential kind '{other}'"))),
    };
    Ok(ClientCredential {
        key_id: row.try_get("key_id")?,
        object_id: parse(&row.try_get::<String, _>("object_id")?, "object id")?,
        display_name: row.try_get("display_name")?,
        kind,
        start_at: row.try_get("start_at")?,
        end_at: row.try_get("end_at")?,
    })
}

pub(crate) async fn insert_principal(
    transaction: &mut Transaction<'_, Any>,
    principal: &Principal,
    password_hash: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO principals (object_id, tenant_id, kind, client_id, display_name, user_principal_name, sign_in_name, password_hash, application_object_id, managed_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(principal.object_id.to_string())
    .bind(principal.tenant_id.to_string())
    .bind(principal.kind.as_str())
    .bind(principal.client_id.map(|id| id.to_string()))
    .bind(principal.display_name.clone())
    .bind(principal.user_principal_name.clone())
    .bind(principal.user_principal_name.as_ref().map(|name| name.to_lowercase()))
    .bind(password_hash.map(str::to_string))
    .bind(principal.application_object_id.map(|id| id.to_string()))
    .bind(principal.managed_by.clone())
    .bind(principal.created_at)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

async fn insert_credential(
    transaction: &mut Transaction<'_, Any>,
    credential: &ClientCredential,
) -> Result<(), StoreError> {
    let (kind, secret_hash, hint, cert_der, thumbprint) = match &credential.kind {
        CredentialKind::Secret { hash, hint } => {
            ("secret", Some(hash.clone()), Some(hint.clone()), None, None)
        }
        CredentialKind::Certificate {
            cert_der,
            thumbprint,
        } => (
            "certificate",
            None,
            None,
            Some(STANDARD.encode(cert_der)),
            Some(thumbprint.clone()),
        ),
    };
    sqlx::query(
        "INSERT INTO client_credentials (key_id, object_id, kind, display_name, secret_hash, hint, cert_der, thumbprint, start_at, end_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(credential.key_id.clone())
    .bind(credential.object_id.to_string())
    .bind(kind)
    .bind(credential.display_name.clone())
    .bind(secret_hash)
    .bind(hint)
    .bind(cert_der)
    .bind(thumbprint)
    .bind(credential.start_at)
    .bind(credential.end_at)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

impl Store {
    /// Writes the first start's records unless the database is already bootstrapped.
    ///
    /// Returns `true` when this call bootstrapped, `false` when another server had done it first
    /// (the caller then joins). Two servers racing on one PostgreSQL database are serialised by
    /// the primary key of the `bootstrap` meta row.
    pub async fn bootstrap(&self, record: &BootstrapRecord) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('bootstrap', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(record.tenant.id.to_string())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        if claimed == 0 {
            transaction.rollback().await?;
            return Ok(false);
        }
        let tenant = &record.tenant;
        sqlx::query("INSERT INTO tenants (id, display_name, default_domain, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant.id.to_string())
            .bind(tenant.display_name.clone())
            .bind(tenant.default_domain.clone())
            .bind(tenant.created_at)
            .execute(&mut *transaction)
            .await?;
        let subscription = &record.subscription;
        sqlx::query("INSERT INTO subscriptions (id, tenant_id, display_name, state, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(subscription.id.to_string())
            .bind(subscription.tenant_id.to_string())
            .bind(subscription.display_name.clone())
            .bind(subscription.state.clone())
            .bind(subscription.created_at)
            .execute(&mut *transaction)
            .await?;
        for (principal, password_hash) in &record.principals {
            insert_principal(&mut transaction, principal, password_hash.as_deref()).await?;
        }
        for credential in &record.credentials {
            insert_credential(&mut transaction, credential).await?;
        }
        insert_signing_key(&mut transaction, &record.signing_key).await?;
        for assignment in &record.role_assignments {
            insert_role_assignment(&mut transaction, assignment).await?;
        }
        for (key, value) in &record.meta {
            sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
                .bind(key.clone())
                .bind(value.clone())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(true)
    }

    /// Every tenant.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, display_name, default_domain, created_at FROM tenants ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Tenant {
                    id: parse(&row.try_get::<String, _>("id")?, "tenant id")?,
                    display_name: row.try_get("display_name")?,
                    default_domain: row.try_get("default_domain")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Every subscription.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let rows = sqlx::query("SELECT id, tenant_id, display_name, state, created_at FROM subscriptions ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Subscription {
                    id: parse::<SubscriptionId>(
                        &row.try_get::<String, _>("id")?,
                        "subscription id",
                    )?,
                    tenant_id: parse(&row.try_get::<String, _>("tenant_id")?, "tenant id")?,
                    display_name: row.try_get("display_name")?,
                    state: row.try_get("state")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The principal with this object id.
    pub async fn principal(&self, object_id: ObjectId) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE object_id = $1"
        ))
        .bind(object_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(principal_from_row).transpose()
    }

    /// The service principal (or public client) of an application id in a tenant.
    pub async fn principal_by_client_id(
        &self,
        tenant_id: TenantId,
        client_id: ClientId,
    ) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE client_id = $1 AND tenant_id = $2"
        ))
        .bind(client_id.to_string())
        .bind(tenant_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(principal_from_row).transpose()
    }

    /// The service principal whose application object has this id.
    pub async fn principal_by_application_object_id(
        &self,
        application_object_id: ObjectId,
    ) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE application_object_id = $1"
        ))
        .bind(application_object_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(principal_from_row).transpose()
    }

    /// A user by sign-in name (case-insensitive), with the stored argon2id password hash.
    pub async fn user_by_sign_in_name(
        &self,
        tenant_id: TenantId,
        name: &str,
    ) -> Result<Option<(Principal, String)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS}, password_hash FROM principals WHERE sign_in_name = $1 AND tenant_id = $2 AND kind = 'User'"
        ))
        .bind(name.to_lowercase())
        .bind(tenant_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let hash: Option<String> = row.try_get("password_hash")?;
                Ok(Some((principal_from_row(&row)?, hash.unwrap_or_default())))
            }
        }
    }

    /// Service principals whose display name equals `name` (Graph `$filter=displayName eq '...'`).
    pub async fn service_principals_by_display_name(
        &self,
        tenant_id: TenantId,
        name: &str,
    ) -> Result<Vec<Principal>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE display_name = $1 AND tenant_id = $2 AND kind = 'ServicePrincipal' AND application_object_id IS NOT NULL ORDER BY created_at"
        ))
        .bind(name.to_string())
        .bind(tenant_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(principal_from_row).collect()
    }

    /// A page of a tenant's principals of some kinds, by object id after `after`.
    pub async fn principals_page(
        &self,
        tenant_id: TenantId,
        kinds: &[PrincipalKind],
        after: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<Principal>, StoreError> {
        let kinds = kinds
            .iter()
            .map(|kind| format!("'{}'", kind.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE tenant_id = $1 AND kind IN ({kinds}) AND object_id > $2 ORDER BY object_id LIMIT $3"
        ))
        .bind(tenant_id.to_string())
        .bind(after.map(|id| id.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(principal_from_row).collect()
    }

    /// The credentials registered on a principal.
    pub async fn credentials(
        &self,
        object_id: ObjectId,
    ) -> Result<Vec<ClientCredential>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, object_id, kind, display_name, secret_hash, hint, cert_der, thumbprint, start_at, end_at
             FROM client_credentials WHERE object_id = $1 ORDER BY start_at",
        )
        .bind(object_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(credential_from_row).collect()
    }

    /// Creates a service principal and its credentials atomically.
    pub async fn create_service_principal(
        &self,
        new: &NewServicePrincipal,
        audit: Option<&crate::AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        insert_principal(&mut transaction, &new.principal, None).await?;
        for credential in &new.credentials {
            insert_credential(&mut transaction, credential).await?;
        }
        crate::audit::insert_one(&mut transaction, audit).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Creates a user with its argon2id password hash. A sign-in name in use is `AlreadyExists`.
    pub async fn create_user(
        &self,
        principal: &Principal,
        password_hash: &str,
        audit: Option<&crate::AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        insert_principal(&mut transaction, principal, Some(password_hash)).await?;
        crate::audit::insert_one(&mut transaction, audit).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Adds a credential to an existing principal.
    pub async fn add_credential(
        &self,
        credential: &ClientCredential,
        audit: Option<&crate::AuditRecord>,
    ) -> Result<(), StoreError> {
        // The write first: a SQLite transaction that reads first and writes after another
        // connection committed fails at once with SQLITE_BUSY (WAL cannot upgrade a stale read
        // lock), which the audit log's appends make likely.
        let mut transaction = self.pool.begin().await?;
        if let Err(error) = insert_credential(&mut transaction, credential).await {
            // The foreign key refuses a credential of no principal: say which.
            drop(transaction);
            let exists: Option<(String,)> =
                sqlx::query_as("SELECT object_id FROM principals WHERE object_id = $1")
                    .bind(credential.object_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
            return Err(if exists.is_none() {
                StoreError::NotFound
            } else {
                error
            });
        }
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT object_id FROM principals WHERE object_id = $1")
                .bind(credential.object_id.to_string())
                .fetch_optional(&mut *transaction)
                .await?;
        if exists.is_none() {
            // Dropping the transaction rolls the insert back.
            return Err(StoreError::NotFound);
        }
        crate::audit::insert_one(&mut transaction, audit).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Stores a refresh token's hash.
    pub async fn insert_refresh_grant(&self, grant: &RefreshGrant) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO refresh_tokens (token_hash, object_id, client_id, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(grant.token_hash.clone())
            .bind(grant.object_id.to_string())
            .bind(grant.client_id.clone())
            .bind(grant.issued_at)
            .bind(grant.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Looks a refresh token up by hash (still valid at `now`), and drops expired ones on the way.
    pub async fn refresh_grant(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<RefreshGrant>, StoreError> {
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT token_hash, object_id, client_id, issued_at, expires_at FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(RefreshGrant {
                token_hash: row.try_get("token_hash")?,
                object_id: parse(&row.try_get::<String, _>("object_id")?, "object id")?,
                client_id: row.try_get("client_id")?,
                issued_at: row.try_get("issued_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }
}
