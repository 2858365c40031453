//! What the engine counts for the server's `/metrics`: tokens minted and failed sign-ins, by
//! grant. Plain atomics (one relaxed add per token or failure), read when `/metrics` is scraped;
//! the metric and label names are the server's (`metrics.rs` there), not the engine's.
//!
//! Also the sizes of the engine's derived state (read caches), read under their locks only when
//! asked, never on a request's path.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Engine, EngineError};

/// How a token was asked for (the OAuth grant, or the agent protocol); a failed sign-in is
/// counted under the same kinds, plus the interactive sign-in page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// `client_credentials` with a secret or a certificate assertion.
    ClientCredentials,
    /// `password` (ROPC).
    Password,
    RefreshToken,
    /// `authorization_code` (the interactive flow's redemption).
    AuthorizationCode,
    /// The device-code grant.
    DeviceCode,
    /// A managed-identity token for an agent (`/openmi/agent/token[s]`); failures are refused
    /// agent assertions.
    ManagedIdentity,
    /// The sign-in page's password form (no token of its own: the code it leads to is counted
    /// under `AuthorizationCode` or `DeviceCode`).
    SignInPage,
}

impl GrantKind {
    /// Every kind, in the order the counters keep them.
    pub const ALL: [GrantKind; 7] = [
        GrantKind::ClientCredentials,
        GrantKind::Password,
        GrantKind::RefreshToken,
        GrantKind::AuthorizationCode,
        GrantKind::DeviceCode,
        GrantKind::ManagedIdentity,
        GrantKind::SignInPage,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The kind of a token endpoint `grant_type`, if it is one the engine serves.
    pub(crate) fn of_grant_type(grant_type: &str) -> Option<GrantKind> {
        match grant_type {
            "client_credentials" => Some(GrantKind::ClientCredentials),
            "password" => Some(GrantKind::Password),
            "refresh_token" => Some(GrantKind::RefreshToken),
            "authorization_code" => Some(GrantKind::AuthorizationCode),
            "urn:ietf:params:oauth:grant-type:device_code" | "device_code" => {
                Some(GrantKind::DeviceCode)
            }
            _ => None,
        }
    }
}

/// Why a sign-in failed, in OAuth's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInFailure {
    /// The client (application, or agent) did not prove itself: unknown client id, wrong or
    /// missing secret, bad or unregistered assertion.
    InvalidClient,
    /// Wrong username or password.
    InvalidUserCredentials,
    /// A refresh token, authorization code or device code that is invalid, used or expired.
    InvalidGrant,
    /// A password sign-in refused because smart lockout holds the account (AADSTS50053).
    AccountLocked,
}

impl SignInFailure {
    /// Every reason, in the order the counters keep them.
    pub const ALL: [SignInFailure; 4] = [
        SignInFailure::InvalidClient,
        SignInFailure::InvalidUserCredentials,
        SignInFailure::InvalidGrant,
        SignInFailure::AccountLocked,
    ];

    /// The failed sign-in an error means, if it means one: malformed requests, unknown tenants
    /// or scopes, a device code still pending and internal failures are no failed sign-ins.
    pub(crate) fn of(error: &EngineError) -> Option<SignInFailure> {
        use EngineError as E;
        match error {
            E::ApplicationNotFound { .. }
            | E::InvalidClientSecret
            | E::ClientAuthenticationRequired(_)
            | E::AssertionExpired
            | E::InvalidAssertion(_)
            | E::CertificateNotRegistered { .. }
            | E::InvalidAgent(_) => Some(SignInFailure::InvalidClient),
            E::InvalidUserCredentials => Some(SignInFailure::InvalidUserCredentials),
            E::InvalidRefreshToken => Some(SignInFailure::InvalidGrant),
            E::OAuth { code: 50053, .. } => Some(SignInFailure::AccountLocked),
            E::OAuth { error, .. } if *error == "invalid_grant" => {
                Some(SignInFailure::InvalidGrant)
            }
            _ => None,
        }
    }
}

/// The engine's counters.
#[derive(Debug, Default)]
pub struct EngineStats {
    minted: [AtomicU64; GrantKind::ALL.len()],
    failed: [[AtomicU64; SignInFailure::ALL.len()]; GrantKind::ALL.len()],
}

impl EngineStats {
    /// Tokens minted of `kind` since start (an access token; its id and refresh tokens are not
    /// counted apart).
    pub fn minted(&self, kind: GrantKind) -> u64 {
        self.minted[kind.index()].load(Ordering::Relaxed)
    }

    /// Failed sign-ins of `kind` for `reason` since start.
    pub fn failed(&self, kind: GrantKind, reason: SignInFailure) -> u64 {
        self.failed[kind.index()][reason as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn count_minted(&self, kind: GrantKind) {
        self.minted[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `error` as a failed sign-in of `kind` if it is one.
    pub(crate) fn count_failure(&self, kind: GrantKind, error: &EngineError) {
        if let Some(reason) = SignInFailure::of(error) {
            self.failed[kind.index()][reason as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the outcome of one token request of `kind`.
    pub(crate) fn count<T>(&self, kind: GrantKind, result: &Result<T, EngineError>) {
        match result {
            Ok(_) => self.count_minted(kind),
            Err(error) => self.count_failure(kind, error),
        }
    }
}

/// Entries of the engine's read caches now.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheSizes {
    /// Resource records cached for GETs.
    pub resources: usize,
    /// Token clients (principal and credentials), kept one second.
    pub clients: usize,
    /// Verified bearer tokens.
    pub bearer_tokens: usize,
    /// Verified agent assertions.
    pub agent_assertions: usize,
    /// VMs' parsed identities.
    pub vm_identities: usize,
    /// Cosmos DB accounts' data-plane state.
    pub cosmos_accounts: usize,
    /// Parsed Cosmos DB containers.
    pub cosmos_containers: usize,
}

impl Engine {
    /// The engine's counters.
    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    /// How many entries each read cache holds now (takes each cache's lock briefly).
    pub fn cache_sizes(&self) -> CacheSizes {
        let (cosmos_accounts, cosmos_containers) = self.inner.read_cache.cosmos().sizes();
        let (agent_assertions, vm_identities) = self.inner.agents.sizes();
        CacheSizes {
            resources: self.inner.read_cache.len(),
            clients: self.inner.clients.len(),
            bearer_tokens: self.inner.bearers.len(),
            agent_assertions,
            vm_identities,
            cosmos_accounts,
            cosmos_containers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_authentication_failures_are_failed_sign_ins() {
        let check = |error: EngineError, expected: Option<SignInFailure>| {
            assert_eq!(SignInFailure::of(&error), expected, "{error:?}");
        };
        check(
            EngineError::InvalidClientSecret,
            Some(SignInFailure::InvalidClient),
        );
        check(
            EngineError::InvalidUserCredentials,
            Some(SignInFailure::InvalidUserCredentials),
        );
        check(
            EngineError::InvalidRefreshToken,
            Some(SignInFailure::InvalidGrant),
        );
        check(
            crate::interactive::oauth_error("invalid_grant", 70008, "expired"),
            Some(SignInFailure::InvalidGrant),
        );
        check(
            crate::interactive::oauth_error("authorization_pending", 70016, "pending"),
            None,
        );
        check(
            crate::interactive::oauth_error("invalid_grant", 50053, "locked"),
            Some(SignInFailure::AccountLocked),
        );
        check(EngineError::MissingParameter("scope"), None);
        check(EngineError::TenantNotFound("t".into()), None);
        check(EngineError::InvalidScope("s".into()), None);
    }

    #[test]
    fn counts_are_kept_per_kind_and_reason() {
        let stats = EngineStats::default();
        stats.count::<()>(GrantKind::Password, &Ok(()));
        stats.count::<()>(
            GrantKind::Password,
            &Err(EngineError::InvalidUserCredentials),
        );
        stats.count::<()>(
            GrantKind::Password,
            &Err(EngineError::MissingParameter("x")),
        );
        stats.count_failure(
            GrantKind::ManagedIdentity,
            &EngineError::InvalidAgent("x".into()),
        );
        assert_eq!(stats.minted(GrantKind::Password), 1);
        assert_eq!(stats.minted(GrantKind::ClientCredentials), 0);
        assert_eq!(
            stats.failed(GrantKind::Password, SignInFailure::InvalidUserCredentials),
            1
        );
        assert_eq!(
            stats.failed(GrantKind::ManagedIdentity, SignInFailure::InvalidClient),
            1
        );
        let total: u64 = GrantKind::ALL
            .iter()
            .flat_map(|kind| {
                SignInFailure::ALL
                    .iter()
                    .map(|reason| stats.failed(*kind, *reason))
            })
            .sum();
        assert_eq!(total, 2);
    }
}
