//! The token service's grants: client credentials (secret or certificate assertion), password
//! (ROPC) and refresh token. Claims follow Entra's v1 access tokens (protocols.md §3.1), since
//! every resource openmi serves (ARM, its own API) accepts v1 tokens, as ARM does in Azure.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openmi_model::audience::{normalize_resource, resource_from_scopes};
use openmi_model::directory::{CredentialKind, RefreshGrant, Tenant};
use openmi_model::{Principal, PrincipalKind};
use openmi_token::jwt::{self, TokenFormat};
use openmi_token::{AccessTokenClaims, TokenError};
use serde_json::json;

use crate::bootstrap::random_secret;
use crate::clients::ClientEntry;
use crate::stats::GrantKind;
use crate::{Engine, EngineError};

/// The JWT-bearer client assertion type (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client proved itself.
#[derive(Clone, Default)]
pub enum ClientAuth {
    /// No client credential (public clients).
    #[default]
    None,
    Secret(String),
    /// `client_assertion` with its `client_assertion_type`.
    Assertion {
        assertion: String,
        assertion_type: String,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "None",
            ClientAuth::Secret(_) => "Secret(<redacted>)",
            ClientAuth::Assertion { .. } => "Assertion(<redacted>)",
        })
    }
}

/// What the client asked a token for: a v1 `resource` or a v2 `scope`.
#[derive(Debug, Clone)]
pub enum ResourceRequest {
    V1Resource(Option<String>),
    V2Scope(Option<String>),
}

/// One token request, already taken apart by the HTTP layer.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    /// The tenant path segment as sent (GUID, domain, `common` or `organizations`).
    pub tenant: String,
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_auth: ClientAuth,
    pub resource: ResourceRequest,
    pub username: Option<String>,
    pub password: Option<String>,
    pub refresh_token: Option<String>,
    /// `code` of the authorization-code grant (v1's device-code grant sends it too).
    pub code: Option<String>,
    /// `redirect_uri` of the authorization-code grant.
    pub redirect_uri: Option<String>,
    /// PKCE `code_verifier`.
    pub code_verifier: Option<String>,
    /// `device_code` of the device-code grant.
    pub device_code: Option<String>,
    /// Whether `client_info=1` was sent (MSAL): the response then carries `client_info`.
    pub client_info: bool,
    /// `https://host[:port]` the request came in on; the issuer of the tokens.
    pub issuer_base: String,
}

/// The tokens of a successful grant.
#[derive(Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: i64,
    pub expires_on: i64,
    pub not_before: i64,
    /// The resource as requested (v1 `resource` in the response).
    pub resource: String,
    /// The granted scopes (v2 user flows).
    pub scope: Option<String>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub client_info: Option<String>,
    /// Object id of the principal the token is for (for the request log).
    pub object_id: String,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("resource", &self.resource)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// How the user signed in, for the id token: the authorize request's `nonce` and the time of the
/// interactive sign-in.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserSignIn {
    pub nonce: Option<String>,
    pub auth_time: Option<i64>,
    /// How the client authenticated (`appidacr`); `None` for a public client.
    pub appidacr: Option<&'static str>,
}

/// ARM's resource identifiers and ARM's app id, as Entra knows them.
const ARM_RESOURCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
    "797f4846-ba00-4fd7-ba43-dac1f8f63013",
];

/// Microsoft Graph's identifiers.
const GRAPH_RESOURCES: &[&str] = &[
    "https://graph.microsoft.com",
    "00000003-0000-0000-c000-000000000000",
];

/// Which API a bearer token is presented to; decides the audiences accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// ARM: ARM's identifiers or the server's own URL.
    Arm,
    /// The Graph-shaped directory API: Graph's identifiers or the server's own URL.
    Graph,
}

fn random_uti() -> Result<String, EngineError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| EngineError::Internal("EN0301 random generator failed".to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn required(value: &Option<String>, name: &'static str) -> Result<String, EngineError> {
    match value {
        Some(value) if !value.is_empty() => Ok(value.clone()),
        _ => Err(EngineError::MissingParameter(name)),
    }
}

/// The resource a request names, checked against what the tenant knows.
struct ResolvedResource {
    requested: String,
    /// Whether the request was for `/.default` (client credentials need it).
    scope_form: bool,
}

impl Engine {
    /// Resolves the tenant path segment of a token or discovery request.
    pub fn resolve_tenant(&self, segment: &str) -> Result<&Tenant, EngineError> {
        let tenant = self.tenant();
        let lower = segment.to_ascii_lowercase();
        if lower == "common"
            || lower == "organizations"
            || lower == tenant.default_domain
            || lower == tenant.id.to_string()
        {
            Ok(tenant)
        } else {
            Err(EngineError::TenantNotFound(segment.to_string()))
        }
    }

    /// Whether `resource` names a resource this token service issues tokens for.
    pub fn is_known_resource(&self, resource: &str) -> bool {
        self.accepts_audience(Api::Arm, resource)
            || self.accepts_audience(Api::Graph, resource)
            || self.accepts_cosmos_audience(resource)
    }

    /// Whether a token for `resource` may call `api`.
    pub fn accepts_audience(&self, api: Api, resource: &str) -> bool {
        let normalized = normalize_resource(resource);
        let identifiers = match api {
            Api::Arm => ARM_RESOURCES,
            Api::Graph => GRAPH_RESOURCES,
        };
        identifiers.contains(&normalized.as_str())
            || self
                .config()
                .own_resources
                .iter()
                .any(|own| normalize_resource(own) == normalized)
    }

    fn resolve_resource(
        &self,
        request: &ResourceRequest,
        for_user: bool,
    ) -> Result<ResolvedResource, EngineError> {
        let tenant = self.tenant().id.to_string();
        let resolved = match request {
            ResourceRequest::V1Resource(resource) => ResolvedResource {
                requested: required(resource, "resource")?,
                scope_form: true,
            },
            ResourceRequest::V2Scope(scope) => {
                let scope = required(scope, "scope")?;
                let parsed = resource_from_scopes(&scope);
                if for_user && parsed.resources.is_empty() && parsed.non_default.is_empty() {
                    // Only OIDC scopes: Entra issues a token for Microsoft Graph (User.Read).
                    return Ok(ResolvedResource {
                        requested: "https://graph.microsoft.com".to_string(),
                        scope_form: true,
                    });
                }
                if let Some(resource) = parsed.resources.first() {
                    if parsed.resources.len() > 1 || (!for_user && !parsed.non_default.is_empty()) {
                        return Err(EngineError::InvalidScope(scope));
                    }
                    ResolvedResource {
                        requested: resource.clone(),
                        scope_form: true,
                    }
                } else if let Some(first) = parsed.non_default.first() {
                    // `https://management.azure.com/user_impersonation` names the resource before
                    // its last path segment.
                    match first.rsplit_once('/') {
                        Some((resource, _)) if for_user && resource.contains("://") => {
                            ResolvedResource {
                                requested: resource.to_string(),
                                scope_form: false,
                            }
                        }
                        _ => return Err(EngineError::InvalidScope(scope)),
                    }
                } else {
                    return Err(EngineError::InvalidScope(scope));
                }
            }
        };
        if !resolved.scope_form && !for_user {
            return Err(EngineError::InvalidScope(resolved.requested));
        }
        if !self.is_known_resource(&resolved.requested) {
            return Err(EngineError::ResourcePrincipalNotFound {
                resource: resolved.requested,
                tenant,
            });
        }
        Ok(resolved)
    }

    /// The resource a user flow asks for (v1 `resource` or v2 `scope`), checked.
    pub(crate) fn resolve_user_resource(
        &self,
        request: &ResourceRequest,
    ) -> Result<String, EngineError> {
        Ok(self.resolve_resource(request, true)?.requested)
    }

    /// Runs one grant of the token endpoint; counts the token minted or the failed sign-in.
    pub async fn grant(&self, request: GrantRequest) -> Result<IssuedTokens, EngineError> {
        let tenant = self.resolve_tenant(&request.tenant)?.clone();
        let grant_type = required(&request.grant_type, "grant_type")?;
        let Some(kind) = GrantKind::of_grant_type(&grant_type) else {
            return Err(EngineError::UnsupportedGrantType(grant_type));
        };
        let result = match kind {
            GrantKind::ClientCredentials => self.grant_client_credentials(&tenant, &request).await,
            GrantKind::Password => self.grant_password(&tenant, &request).await,
            GrantKind::RefreshToken => self.grant_refresh_token(&tenant, &request).await,
            GrantKind::AuthorizationCode => self.grant_authorization_code(&tenant, &request).await,
            GrantKind::DeviceCode => self.grant_device_code(&tenant, &request).await,
            GrantKind::ManagedIdentity | GrantKind::SignInPage => {
                Err(EngineError::UnsupportedGrantType(grant_type))
            }
        };
        self.stats().count(kind, &result);
        let (grant, event_type) = match kind {
            GrantKind::ClientCredentials => ("client_credentials", "servicePrincipal"),
            GrantKind::Password => ("password", "nonInteractiveUser"),
            GrantKind::RefreshToken => ("refresh_token", "nonInteractiveUser"),
            GrantKind::AuthorizationCode => ("authorization_code", "interactiveUser"),
            GrantKind::DeviceCode => ("device_code", "interactiveUser"),
            GrantKind::ManagedIdentity => ("managed_identity", "managedIdentity"),
            GrantKind::SignInPage => ("sign_in_page", "interactiveUser"),
        };
        let requested = match &request.resource {
            ResourceRequest::V1Resource(resource) | ResourceRequest::V2Scope(resource) => {
                resource.clone()
            }
        };
        let event = crate::audit::SignInEvent {
            grant,
            event_type,
            principal_id: result.as_ref().ok().map(|issued| issued.object_id.clone()),
            // A user's sign-in name as typed; an application's id (failures have no object id).
            principal_name: match kind {
                GrantKind::ClientCredentials => request.client_id.clone(),
                _ => request.username.clone(),
            },
            app_id: request.client_id.clone(),
            resource: result
                .as_ref()
                .ok()
                .map(|issued| issued.resource.clone())
                .or(requested),
            ..Default::default()
        };
        self.audit_sign_in(event, result.as_ref().err());
        result
    }

    /// Checks the client's credential; returns the `appidacr` value ("1" secret, "2" certificate).
    async fn authenticate_client(
        &self,
        client: &ClientEntry,
        auth: &ClientAuth,
        client_id: &str,
    ) -> Result<&'static str, EngineError> {
        let now = self.now();
        match auth {
            ClientAuth::None => Err(EngineError::ClientAuthenticationRequired(
                client_id.to_string(),
            )),
            ClientAuth::Secret(secret) => {
                let matches = client
                    .credentials
                    .iter()
                    .any(|credential| match &credential.kind {
                        CredentialKind::Secret { hash, .. } => {
                            credential.start_at <= now + 300
                                && now < credential.end_at
                                && self.inner.kek.verify_client_secret(secret, hash)
                        }
                        CredentialKind::Certificate { .. } => false,
                    });
                if matches {
                    Ok("1")
                } else {
                    Err(EngineError::InvalidClientSecret)
                }
            }
            ClientAuth::Assertion {
                assertion,
                assertion_type,
            } => {
                if assertion_type != JWT_BEARER {
                    return Err(EngineError::BadRequest(format!(
                        "client_assertion_type must be '{JWT_BEARER}'"
                    )));
                }
                self.check_client_assertion(client, assertion, client_id, now)?;
                Ok("2")
            }
        }
    }

    fn check_client_assertion(
        &self,
        client: &ClientEntry,
        assertion: &str,
        client_id: &str,
        now: i64,
    ) -> Result<(), EngineError> {
        let unverified = jwt::decode_unverified(assertion)
            .map_err(|_| EngineError::InvalidAssertion("the assertion is not a JWT".to_string()))?;
        // MSAL sends thumbprints base64url-encoded with `=` padding; the padding carries nothing.
        let thumbprint_of = |name: &str| {
            unverified
                .header_str(name)
                .map(|value| value.trim_end_matches('=').to_string())
        };
        let x5t = thumbprint_of("x5t");
        let x5t_s256 = thumbprint_of("x5t#S256");
        let thumbprint = x5t.clone().or(x5t_s256.clone()).unwrap_or_default();
        let key = client
            .certificates
            .iter()
            .find(|key| Some(&key.x5t) == x5t.as_ref() || Some(&key.x5t_s256) == x5t_s256.as_ref())
            .ok_or_else(|| EngineError::CertificateNotRegistered {
                client_id: client_id.to_string(),
                thumbprint,
            })?;
        // Entra allows five minutes of clock skew on assertions.
        let verified = unverified
            .verify_with_key(key, now, 300)
            .map_err(|error| match error {
                TokenError::Expired { .. } | TokenError::NotYetValid { .. } => {
                    EngineError::AssertionExpired
                }
                other => EngineError::InvalidAssertion(other.to_string()),
            })?;
        let claim = |name: &str| {
            verified
                .claims
                .get(name)
                .and_then(|value| value.as_str())
                .unwrap_or_default()
                .to_string()
        };
        if !claim("iss").eq_ignore_ascii_case(client_id)
            || !claim("sub").eq_ignore_ascii_case(client_id)
        {
            return Err(EngineError::InvalidAssertion(
                "the assertion's iss and sub must be the client id".to_string(),
            ));
        }
        let audience = claim("aud");
        if !audience.contains("/oauth2/") {
            return Err(EngineError::InvalidAssertion(format!(
                "the assertion's audience '{audience}' is not this token endpoint"
            )));
        }
        Ok(())
    }

    async fn grant_client_credentials(
        &self,
        tenant: &Tenant,
        request: &GrantRequest,
    ) -> Result<IssuedTokens, EngineError> {
        let client_id = required(&request.client_id, "client_id")?;
        let resource = self.resolve_resource(&request.resource, false)?;
        let entry = self.client_entry(tenant, &client_id).await?;
        let appidacr = self
            .authenticate_client(&entry, &request.client_auth, &client_id)
            .await?;
        let client = &entry.principal;
        let now = self.now();
        let lifetime = self.config().app_token_lifetime;
        let issuer = format!("{}/{}/", request.issuer_base, tenant.id);
        let claims = AccessTokenClaims {
            aud: resource.requested.clone(),
            iss: issuer.clone(),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            acr: None,
            amr: None,
            appid: Some(client_id.to_ascii_lowercase()),
            appidacr: Some(appidacr.to_string()),
            azp: None,
            azpacr: None,
            idp: Some(issuer),
            idtyp: "app".to_string(),
            name: None,
            oid: client.object_id.to_string(),
            preferred_username: None,
            scp: None,
            sub: client.object_id.to_string(),
            tid: tenant.id.to_string(),
            unique_name: None,
            upn: None,
            uti: random_uti()?,
            ver: "1.0".to_string(),
            xms_mirid: client.managed_by.clone(),
        };
        let access_token = jwt::encode(self.key_ring().active(now)?, TokenFormat::V1, &claims)?;
        Ok(IssuedTokens {
            access_token,
            expires_in: lifetime,
            expires_on: now + lifetime,
            not_before: now,
            resource: resource.requested,
            scope: None,
            refresh_token: None,
            id_token: None,
            client_info: None,
            object_id: client.object_id.to_string(),
        })
    }

    /// The client of a user flow: a public client, or a confidential one that authenticates.
    pub(crate) async fn user_flow_client(
        &self,
        tenant: &Tenant,
        request: &GrantRequest,
    ) -> Result<(String, &'static str), EngineError> {
        let client_id = required(&request.client_id, "client_id")?;
        let client = self.client_entry(tenant, &client_id).await?;
        let mut is_public = client.principal.application_object_id.is_none();
        if !is_public && matches!(request.client_auth, ClientAuth::None) {
            // A registered application redeems a code without a secret only for a redirect URI
            // of its public platforms (spa, publicClient), as Entra does.
            if let Some(redirect_uri) = &request.redirect_uri {
                is_public = self
                    .store()
                    .redirect_uris(client.principal.object_id)
                    .await?
                    .iter()
                    .any(|(platform, uri)| {
                        platform != "web" && crate::interactive::redirect_matches(uri, redirect_uri)
                    });
            }
        }
        // `appidacr`: 0 for a public client, 1 for a secret, 2 for a certificate.
        let appidacr = if !is_public || !matches!(request.client_auth, ClientAuth::None) {
            self.authenticate_client(&client, &request.client_auth, &client_id)
                .await?
        } else {
            "0"
        };
        Ok((client_id.to_ascii_lowercase(), appidacr))
    }

    async fn grant_password(
        &self,
        tenant: &Tenant,
        request: &GrantRequest,
    ) -> Result<IssuedTokens, EngineError> {
        let username = required(&request.username, "username")?;
        let password = required(&request.password, "password")?;
        let (client_id, appidacr) = self.user_flow_client(tenant, request).await?;
        let resource = self.resolve_resource(&request.resource, true)?;
        let user = self
            .verify_user_password(tenant, &username, &password)
            .await?;
        self.user_tokens(
            tenant,
            &user,
            &client_id,
            &resource.requested,
            request,
            &UserSignIn {
                appidacr: Some(appidacr),
                ..UserSignIn::default()
            },
        )
        .await
    }

    /// Checks a user's password (ROPC and the sign-in page).
    pub(crate) async fn verify_user_password(
        &self,
        tenant: &Tenant,
        username: &str,
        password: &str,
    ) -> Result<Principal, EngineError> {
        let (user, hash) = match self
            .store()
            .user_by_sign_in_name(tenant.id, username)
            .await?
        {
            Some(found) => found,
            None => return Err(EngineError::InvalidUserCredentials),
        };
        let now = self.now();
        if self.inner.lockout.is_locked(user.object_id, now) {
            return Err(account_locked());
        }
        let wrong_hash = self.inner.kek.hash_client_secret(password);
        let password = password.to_string();
        // argon2 takes tens of milliseconds of CPU; keep it off the async workers.
        let verified = tokio::task::spawn_blocking(move || {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            PasswordHash::new(&hash)
                .map(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(|error| EngineError::Internal(format!("EN0302 password check: {error}")))?;
        if user.kind != PrincipalKind::User {
            return Err(EngineError::InvalidUserCredentials);
        }
        if !verified {
            let policy = self.config().lockout;
            if let Some(seconds) =
                self.inner
                    .lockout
                    .failed(&policy, user.object_id, wrong_hash, now)
            {
                tracing::warn!(user = %user.object_id, seconds, "account locked after repeated failed sign-ins");
            }
            return Err(EngineError::InvalidUserCredentials);
        }
        self.inner.lockout.succeeded(user.object_id);
        Ok(user)
    }

    async fn grant_refresh_token(
        &self,
        tenant: &Tenant,
        request: &GrantRequest,
    ) -> Result<IssuedTokens, EngineError> {
        let refresh_token = required(&request.refresh_token, "refresh_token")?;
        let (client_id, appidacr) = self.user_flow_client(tenant, request).await?;
        let resource = self.resolve_resource(&request.resource, true)?;
        let now = self.now();
        let hash = self.inner.kek.hash_client_secret(&refresh_token);
        let grant = self
            .store()
            .refresh_grant(&hash, now)
            .await?
            .ok_or(EngineError::InvalidRefreshToken)?;
        if !grant.client_id.eq_ignore_ascii_case(&client_id) {
            return Err(EngineError::InvalidRefreshToken);
        }
        let user = self
            .store()
            .principal(grant.object_id)
            .await?
            .ok_or(EngineError::InvalidRefreshToken)?;
        self.user_tokens(
            tenant,
            &user,
            &client_id,
            &resource.requested,
            request,
            &UserSignIn {
                appidacr: Some(appidacr),
                ..UserSignIn::default()
            },
        )
        .await
    }

    pub(crate) async fn user_tokens(
        &self,
        tenant: &Tenant,
        user: &Principal,
        client_id: &str,
        resource: &str,
        request: &GrantRequest,
        sign_in: &UserSignIn,
    ) -> Result<IssuedTokens, EngineError> {
        if user.kind != PrincipalKind::User {
            return Err(EngineError::InvalidUserCredentials);
        }
        let now = self.now();
        let lifetime = self.config().user_token_lifetime;
        let issuer = format!("{}/{}/", request.issuer_base, tenant.id);
        let upn = user.user_principal_name.clone().unwrap_or_default();
        let pairwise_sub = URL_SAFE_NO_PAD.encode(digest::digest(
            &digest::SHA256,
            format!("{}|{}", user.object_id, client_id).as_bytes(),
        ));
        let claims = AccessTokenClaims {
            aud: resource.to_string(),
            iss: issuer.clone(),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            acr: Some("1".to_string()),
            amr: Some(vec!["pwd".to_string()]),
            appid: Some(client_id.to_string()),
            appidacr: Some(sign_in.appidacr.unwrap_or("0").to_string()),
            azp: None,
            azpacr: None,
            idp: None,
            idtyp: "user".to_string(),
            name: Some(user.display_name.clone()),
            oid: user.object_id.to_string(),
            preferred_username: None,
            scp: Some("user_impersonation".to_string()),
            sub: pairwise_sub.clone(),
            tid: tenant.id.to_string(),
            unique_name: Some(upn.clone()),
            upn: Some(upn.clone()),
            uti: random_uti()?,
            ver: "1.0".to_string(),
            xms_mirid: None,
        };
        let ring = self.key_ring();
        let key = ring.active(now)?;
        let access_token = jwt::encode(key, TokenFormat::V1, &claims)?;
        let mut id_claims = json!({
            "aud": client_id,
            "iss": format!("{}/{}/v2.0", request.issuer_base, tenant.id),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "name": user.display_name,
            "oid": user.object_id.to_string(),
            "preferred_username": upn,
            "sub": pairwise_sub,
            "tid": tenant.id.to_string(),
            "uti": random_uti()?,
            "ver": "2.0",
        });
        if let Some(nonce) = &sign_in.nonce {
            id_claims["nonce"] = json!(nonce);
        }
        if let Some(auth_time) = sign_in.auth_time {
            id_claims["auth_time"] = json!(auth_time);
        }
        let id_token = jwt::encode(key, TokenFormat::V2, &id_claims)?;
        let refresh_token = random_secret()?;
        self.store()
            .insert_refresh_grant(&RefreshGrant {
                token_hash: self.inner.kek.hash_client_secret(&refresh_token),
                object_id: user.object_id,
                client_id: client_id.to_string(),
                issued_at: now,
                expires_at: now + self.config().refresh_token_lifetime,
            })
            .await?;
        let client_info = request.client_info.then(|| {
            URL_SAFE_NO_PAD.encode(
                json!({"uid": user.object_id.to_string(), "utid": tenant.id.to_string()})
                    .to_string(),
            )
        });
        let base = resource.trim_end_matches('/');
        Ok(IssuedTokens {
            access_token,
            expires_in: lifetime,
            expires_on: now + lifetime,
            not_before: now,
            resource: resource.to_string(),
            scope: Some(format!("{base}/user_impersonation {base}/.default")),
            refresh_token: Some(refresh_token),
            id_token: Some(id_token),
            client_info,
            object_id: user.object_id.to_string(),
        })
    }
}

/// Entra's answer to a password sign-in while the account is locked (smart lockout).
pub(crate) fn account_locked() -> EngineError {
    EngineError::OAuth {
        error: "invalid_grant",
        code: 50053,
        description: "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.".to_string(),
    }
}
