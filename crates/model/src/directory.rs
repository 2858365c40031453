//! Directory objects other than principals: tenants, subscriptions, client credentials,
//! refresh tokens and role assignments as the store keeps them.

use crate::ids::{ObjectId, SubscriptionId, TenantId};
use crate::UnixTime;

/// A directory (Entra tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub display_name: String,
    /// The verified domain users sign in with (`admin@<default_domain>`).
    pub default_domain: String,
    pub created_at: UnixTime,
}

/// A subscription of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub tenant_id: TenantId,
    pub display_name: String,
    /// `Enabled` (the only state openmi sets today).
    pub state: String,
    pub created_at: UnixTime,
}

/// What a client presents to prove who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKind {
    /// A generated secret, kept only as a keyed hash (hex).
    Secret { hash: String, hint: String },
    /// An X.509 certificate (DER), referenced by its SHA-1 thumbprint `x5t` (base64url).
    Certificate {
        cert_der: Vec<u8>,
        thumbprint: String,
    },
}

/// A client credential registered on a service principal (Graph `passwordCredentials`/`keyCredentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredential {
    /// The credential's `keyId` (GUID).
    pub key_id: String,
    pub object_id: ObjectId,
    pub display_name: String,
    pub kind: CredentialKind,
    pub start_at: UnixTime,
    pub end_at: UnixTime,
}

/// A refresh token as stored: only its keyed hash, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshGrant {
    pub token_hash: String,
    pub object_id: ObjectId,
    /// The public client the token was issued to.
    pub client_id: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

/// The role's GUID at the end of a role definition id (or the GUID itself), lower case.
pub fn role_guid(role_definition_id: &str) -> String {
    role_definition_id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

/// A role assignment (`Microsoft.Authorization/roleAssignments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The assignment's name (a GUID).
    pub name: String,
    /// The scope, e.g. `/subscriptions/{id}`.
    pub scope: String,
    /// Full role definition id (`/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}`).
    pub role_definition_id: String,
    pub principal_id: ObjectId,
    pub principal_type: String,
    pub description: Option<String>,
    pub created_at: UnixTime,
    pub created_by: Option<ObjectId>,
    pub updated_at: UnixTime,
    pub updated_by: Option<ObjectId>,
}

/// The GUID of Azure's built-in Owner role.
pub const OWNER_ROLE_ID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
