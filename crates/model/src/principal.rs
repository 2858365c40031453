//! Principals of a tenant: users, service principals and (later) managed identities.

use crate::ids::{ClientId, ObjectId, TenantId};

/// What kind of principal an object id names; decides the token's `idtyp` and claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A human user signing in with a password.
    User,
    /// An application's service principal (secret or certificate credential).
    ServicePrincipal,
    /// A managed identity's service principal; its tokens are issued only through an enrolled agent.
    ManagedIdentity,
}

impl PrincipalKind {
    /// The stable name stored in the database and shown as `principalType` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "User",
            PrincipalKind::ServicePrincipal => "ServicePrincipal",
            PrincipalKind::ManagedIdentity => "ManagedIdentity",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "User" => Some(PrincipalKind::User),
            "ServicePrincipal" => Some(PrincipalKind::ServicePrincipal),
            "ManagedIdentity" => Some(PrincipalKind::ManagedIdentity),
            _ => None,
        }
    }
}

/// A user or service principal as the token service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub object_id: ObjectId,
    pub tenant_id: TenantId,
    pub kind: PrincipalKind,
    /// The application id; `None` for users.
    pub client_id: Option<ClientId>,
    pub display_name: String,
    /// The sign-in name (`upn`) of a user; `None` for service principals.
    pub user_principal_name: Option<String>,
    /// For a service principal: the object id of its application object (Graph `applications/{id}`).
    pub application_object_id: Option<ObjectId>,
    /// For a managed identity: the ARM resource id it belongs to (`xms_mirid`).
    pub managed_by: Option<String>,
    pub created_at: crate::UnixTime,
}
