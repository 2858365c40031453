//! The engine: every operation of the platform as `(caller, request) -> result`, over the store.
//!
//! It owns the derived state (the signing key ring), the key-encryption key and the clock, and it
//! decides who may do what. **Architecture invariant:** the engine knows no HTTP and no wire JSON;
//! the server crate turns requests into engine calls and engine errors into Azure's envelopes.

mod agent;
mod arm;
mod arm_error;
pub mod audit;
mod authorization;
mod bootstrap;
mod clients;
mod cosmos;
mod cosmos_auth;
mod cosmos_data;
mod cosmos_epk;
mod deployments;
mod directory;
mod interactive;
mod keys;
mod lockout;
mod network;
mod read_cache;
mod stats;
mod tokens;

#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

use openmi_store::{Store, StoreError};
use openmi_token::{Kek, KeyRing, TokenError};

pub use agent::{AgentCaller, IdentitySelector, JoinToken, ManagedIdentityToken, AGENT_AUDIENCE};
pub use arm::{Page, PageRequest, Written, MAX_PAGE_SIZE};
pub use arm_error::ArmFailure;
pub use bootstrap::{BootstrapOutcome, BootstrapSecrets};
pub use cosmos_auth::{CosmosAccount, CosmosCaller, CosmosFailure};
pub use cosmos_data::{CosmosReply, ItemWriteMode};
pub use cosmos_epk::EpkRange;
pub use deployments::{DeploymentScope, DeploymentStarted, DEPLOYMENT_TYPE};
pub use directory::{Caller, NewApplication, NewApplicationResult, NewUser, REDIRECT_PLATFORMS};
pub use interactive::{
    normalize_user_code, AuthorizeRequest, AuthorizeTarget, DeviceCodeIssued, DeviceCodePending,
    NewSession, OAuthVersion, Session, PORTAL_CLIENT_ID,
};
pub use keys::rotate_signing_key;
pub use lockout::LockoutPolicy;
pub use read_cache::ResourceNote;
pub use stats::{CacheSizes, EngineStats, GrantKind, SignInFailure};
pub use tokens::{Api, ClientAuth, GrantRequest, IssuedTokens, ResourceRequest};

/// The Azure CLI's first-party public client id; users sign in through it (ROPC, refresh).
pub const AZURE_CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
/// Azure PowerShell's first-party public client id.
pub const AZURE_POWERSHELL_CLIENT_ID: &str = "1950a258-227b-4e31-a9cf-717495945fc2";

/// Where time comes from; tests pass a fake.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// Settings the engine needs; each default is written once, in the server's argument definitions.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Lifetime of access tokens for applications (seconds).
    pub app_token_lifetime: i64,
    /// Lifetime of access tokens for users (seconds).
    pub user_token_lifetime: i64,
    /// Lifetime of refresh tokens (seconds).
    pub refresh_token_lifetime: i64,
    /// Lifetime of managed-identity tokens (seconds); Azure's are about 24 h.
    pub mi_token_lifetime: i64,
    /// Longest lifetime of any token the platform issues; decides when an old key leaves the JWKS.
    pub max_token_lifetime: i64,
    /// The server's own URLs (`https://127.0.0.1:8443`, ...): tokens for them are accepted as ARM's.
    pub own_resources: Vec<String>,
    /// How long a deployment PUT waits for its deployment before answering `Running` with a
    /// status URL (ARM answers at once; waiting spares clients a poll).
    pub deployment_wait: std::time::Duration,
    /// Smart lockout of password sign-ins.
    pub lockout: LockoutPolicy,
    /// Whether requests, writes and sign-ins are recorded in the audit log.
    pub audit: bool,
    /// How long audit records are kept (the Activity Log keeps 90 days).
    pub audit_retention: std::time::Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            app_token_lifetime: 3600,
            user_token_lifetime: 3600,
            refresh_token_lifetime: 90 * 86400,
            mi_token_lifetime: 86400,
            max_token_lifetime: 86700,
            own_resources: Vec::new(),
            deployment_wait: std::time::Duration::from_secs(20),
            lockout: LockoutPolicy::default(),
            audit: true,
            audit_retention: std::time::Duration::from_secs(90 * 86400),
        }
    }
}

/// Failures of engine operations. Variants with an Entra or ARM counterpart are named after it;
/// the server maps each to its wire code in one table.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("tenant '{0}' not found")]
    TenantNotFound(String),
    #[error("application with identifier '{client_id}' was not found in the directory")]
    ApplicationNotFound { client_id: String },
    #[error("invalid client secret provided")]
    InvalidClientSecret,
    #[error("client assertion is not within its valid time range")]
    AssertionExpired,
    #[error("client assertion is invalid: {0}")]
    InvalidAssertion(String),
    #[error("no credential of the application matches the client assertion's certificate")]
    CertificateNotRegistered {
        client_id: String,
        thumbprint: String,
    },
    #[error("invalid username or password")]
    InvalidUserCredentials,
    #[error("the request is missing parameter '{0}'")]
    MissingParameter(&'static str),
    #[error("unsupported grant type '{0}'")]
    UnsupportedGrantType(String),
    #[error("invalid scope '{0}'")]
    InvalidScope(String),
    #[error("resource '{resource}' not found in tenant '{tenant}'")]
    ResourcePrincipalNotFound { resource: String, tenant: String },
    #[error("the refresh token is invalid or expired")]
    InvalidRefreshToken,
    #[error("the application '{0}' is a confidential client and must authenticate")]
    ClientAuthenticationRequired(String),
    #[error("the access token is missing or invalid: {0}")]
    InvalidAccessToken(String),
    #[error("the access token has expired")]
    ExpiredAccessToken { exp: i64, now: i64 },
    #[error("the caller is not allowed to perform this operation")]
    Forbidden,
    #[error("the request is invalid: {0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("the key-encryption key does not match the one this database was bootstrapped with")]
    KekMismatch,
    #[error("subscription '{0}' could not be found")]
    SubscriptionNotFound(String),
    #[error("resource group '{0}' could not be found")]
    ResourceGroupNotFound(String),
    #[error("resource '{type_name}/{name}' under resource group '{group}' was not found")]
    ResourceNotFound {
        type_name: String,
        name: String,
        group: String,
    },
    #[error("parent resource '{0}' not found")]
    ParentResourceNotFound(String),
    #[error("{message}")]
    InvalidName { code: &'static str, message: String },
    #[error("invalid request content: {0}")]
    InvalidRequestContent(String),
    #[error("resource group '{name}' already exists in location '{existing}', not '{requested}'")]
    InvalidResourceGroupLocation {
        name: String,
        existing: String,
        requested: String,
    },
    #[error("user-assigned identity '{0}' was not found")]
    UserAssignedIdentityNotFound(String),
    #[error("the client '{client}' with object id '{object_id}' may not perform '{action}' over '{scope}'")]
    AuthorizationFailed {
        client: String,
        object_id: String,
        action: String,
        scope: String,
    },
    #[error("the client '{}' may not perform '{}' on the linked scope '{}'", .0.client, .0.linked_action, .0.linked_scope)]
    LinkedAuthorizationFailed(Box<LinkedAuthorization>),
    #[error("principal '{principal}' does not exist in the directory '{tenant}'")]
    PrincipalNotFound { principal: String, tenant: String },
    #[error("principal '{principal}' has type '{actual}', not '{given}'")]
    UnmatchedPrincipalType {
        principal: String,
        actual: String,
        given: String,
    },
    #[error("role definition '{0}' is still assigned")]
    RoleDefinitionHasAssignments(String),
    #[error("role definition '{0}' does not exist")]
    RoleDefinitionDoesNotExist(String),
    #[error("role definition '{0}' not found")]
    RoleDefinitionNotFound(String),
    #[error("built-in role '{0}' cannot be changed or deleted")]
    BuiltInRoleReadOnly(String),
    #[error("role assignment id '{0}' is not a GUID")]
    InvalidRoleAssignmentId(String),
    #[error("role assignment '{0}' not found")]
    RoleAssignmentNotFound(String),
    #[error("the role assignment already exists as '{0}'")]
    RoleAssignmentExists(String),
    #[error("a role definition named '{0}' already exists")]
    RoleDefinitionWithSameNameExists(String),
    #[error("the join token is invalid, expired or already used")]
    InvalidJoinToken,
    #[error("agent authentication failed: {0}")]
    InvalidAgent(String),
    #[error("identity not found")]
    IdentityNotFound,
    #[error("several user-assigned identities and no selector")]
    AmbiguousIdentity,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid resource reference: {0}")]
    InvalidResourceReference(String),
    /// A template the deployment engine refused (`InvalidTemplate` and friends), in ARM's words.
    #[error("{code}: {message}")]
    Template { code: String, message: String },
    #[error("deployment '{0}' not found")]
    DeploymentNotFound(String),
    #[error("deployment '{0}' is still running")]
    DeploymentActive(String),
    /// An error already in ARM's shape (a failed deployment's `DeploymentFailed` with details).
    #[error("{}: {}", .0.code, .0.message)]
    Arm(Box<ArmFailure>),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("token: {0}")]
    Token(TokenError),
    /// An OAuth error of the interactive endpoints, with Entra's `AADSTS` number.
    #[error("{error}: {description}")]
    OAuth {
        error: &'static str,
        code: u32,
        description: String,
    },
    #[error("EN0001 internal error: {0}")]
    Internal(String),
}

impl From<TokenError> for EngineError {
    fn from(error: TokenError) -> Self {
        EngineError::Token(error)
    }
}

/// The details of a `LinkedAuthorizationFailed` (boxed: they are large and rare).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedAuthorization {
    pub client: String,
    pub object_id: String,
    pub action: String,
    pub scope: String,
    pub linked_action: String,
    pub linked_scope: String,
}

/// The engine; cheap to clone (all state behind `Arc`).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    kek: Kek,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    // Derived state: rebuilt from the store at start and after rotation; swapped whole.
    key_ring: RwLock<Arc<KeyRing>>,
    // The tenant served; fixed after bootstrap.
    tenant: openmi_model::directory::Tenant,
    clients: clients::ClientCache,
    bearers: clients::BearerCache,
    rbac: authorization::RbacState,
    read_cache: read_cache::ReadCache,
    agents: clients::AgentCache,
    // Tokens minted and failed sign-ins, for `/metrics`.
    stats: stats::EngineStats,
    // Failed password sign-ins per account (smart lockout).
    lockout: lockout::Lockout,
    // The appender of audit records that carry no write of their own.
    audit: audit::AuditSink,
    // The subscription served; fixed after bootstrap.
    subscription_id: String,
}

impl Engine {
    /// The store (for operations outside the engine such as shutdown).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The current time according to the engine's clock.
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// A snapshot of the key ring.
    pub fn key_ring(&self) -> Arc<KeyRing> {
        match self.inner.key_ring.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_key_ring(&self, ring: KeyRing) {
        let ring = Arc::new(ring);
        match self.inner.key_ring.write() {
            Ok(mut guard) => *guard = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
    }

    /// The tenant this server serves (the bootstrapped one).
    pub fn tenant(&self) -> &openmi_model::directory::Tenant {
        &self.inner.tenant
    }
}
