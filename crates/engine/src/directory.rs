//! Callers authenticated by bearer token, and the directory operations behind the Graph-shaped
//! API: creating applications (service principals) and adding secrets and certificates to them.

use openmi_model::audience::normalize_resource;
use openmi_model::directory::{ClientCredential, CredentialKind, OWNER_ROLE_ID};
use openmi_model::{ClientId, ObjectId, Principal, PrincipalKind, TenantId};
use openmi_store::NewServicePrincipal;
use openmi_token::{jwt, ExternalKey, TokenError};

use crate::bootstrap::{random_secret, secret_credential};
use crate::{Engine, EngineError};

/// Who is calling, from a validated bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub object_id: ObjectId,
    pub tenant_id: TenantId,
    /// `appid` of the token.
    pub client_id: String,
    /// `true` for user tokens (`idtyp` user).
    pub is_user: bool,
    /// `exp` of the token.
    pub expires_at: i64,
    /// The user's sign-in name (`upn`, else `unique_name`), for the audit log.
    pub name: Option<String>,
}

/// A new application (with its service principal).
#[derive(Debug, Clone)]
pub struct NewApplication {
    pub display_name: String,
    /// A certificate (DER) to register as a key credential.
    pub certificate_der: Option<Vec<u8>>,
    /// Whether to generate a client secret.
    pub with_secret: bool,
}

/// A user to create (Graph `POST /v1.0/users`).
#[derive(Clone)]
pub struct NewUser {
    pub display_name: String,
    pub user_principal_name: String,
    pub password: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("user_principal_name", &self.user_principal_name)
            .finish()
    }
}

/// The redirect URI platforms of Graph's application object.
pub const REDIRECT_PLATFORMS: &[&str] = &["web", "spa", "publicClient"];

/// The created application and, when asked for, its one-time secret.
#[derive(Clone)]
pub struct NewApplicationResult {
    pub principal: Principal,
    pub secret: Option<(ClientCredential, String)>,
    pub credentials: Vec<ClientCredential>,
}

impl std::fmt::Debug for NewApplicationResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApplicationResult")
            .field("principal", &self.principal)
            .finish()
    }
}

/// Secrets made by `addPassword` and `create-for-rbac` last two years, as az's default.
const SECRET_LIFETIME: i64 = 2 * 365 * 86400;

impl Engine {
    /// Validates a bearer token issued by this server: signature, time window, tenant, issuer and an
    /// audience that is one of `accepted` (compared without trailing slashes, case-insensitively).
    ///
    /// A token that verified once is remembered until it expires, so the RSA verification runs
    /// once per token, not once per request.
    pub fn authenticate(
        &self,
        bearer: &str,
        accepted: &dyn Fn(&str) -> bool,
    ) -> Result<Caller, EngineError> {
        let now = self.now();
        let (caller, audience) = match self.inner.bearers.get(bearer) {
            Some(hit) => hit,
            None => {
                let verified = self.verify_bearer(bearer, now)?;
                self.inner.bearers.put(bearer, verified.clone());
                verified
            }
        };
        // Entra and ARM allow five minutes of clock skew.
        if now > caller.expires_at + 300 {
            return Err(EngineError::ExpiredAccessToken {
                exp: caller.expires_at,
                now,
            });
        }
        if !accepted(&audience) {
            return Err(EngineError::InvalidAccessToken(format!(
                "the token's audience '{audience}' is not accepted here"
            )));
        }
        Ok(caller)
    }

    /// Signature, time window, tenant and issuer; returns the caller and the normalised audience.
    fn verify_bearer(&self, bearer: &str, now: i64) -> Result<(Caller, String), EngineError> {
        let ring = self.key_ring();
        let verified = jwt::decode_unverified(bearer)
            .and_then(|unverified| unverified.verify_with_ring(&ring, now, 300))
            .map_err(|error| match error {
                TokenError::Expired { exp } => EngineError::ExpiredAccessToken { exp, now },
                other => EngineError::InvalidAccessToken(other.to_string()),
            })?;
        let claim = |name: &str| {
            verified
                .claims
                .get(name)
                .and_then(|value| value.as_str())
                .unwrap_or_default()
        };
        let tenant = self.tenant();
        if claim("tid") != tenant.id.to_string() {
            return Err(EngineError::InvalidAccessToken(
                "the token was issued for another tenant".to_string(),
            ));
        }
        let issuer = claim("iss");
        if !issuer.ends_with(&format!("/{}/", tenant.id))
            && !issuer.ends_with(&format!("/{}/v2.0", tenant.id))
        {
            return Err(EngineError::InvalidAccessToken(
                "the token's issuer is not this tenant".to_string(),
            ));
        }
        let object_id = claim("oid").parse().map_err(|_| {
            EngineError::InvalidAccessToken("the token has no valid oid".to_string())
        })?;
        let caller = Caller {
            object_id,
            tenant_id: tenant.id,
            client_id: claim("appid").to_string(),
            is_user: claim("idtyp") == "user",
            expires_at: verified
                .claims
                .get("exp")
                .and_then(|value| value.as_i64())
                .unwrap_or(now),
            name: Some(claim("upn"))
                .filter(|name| !name.is_empty())
                .or_else(|| Some(claim("unique_name")).filter(|name| !name.is_empty()))
                .map(str::to_string),
        };
        Ok((caller, normalize_resource(claim("aud"))))
    }

    /// Directory writes need Owner on the subscription until RBAC enforcement arrives (issue 5).
    pub(crate) async fn require_directory_writer(
        &self,
        caller: &Caller,
    ) -> Result<(), EngineError> {
        let assignments = self.store().role_assignments_of(caller.object_id).await?;
        if assignments.iter().any(|assignment| {
            assignment
                .role_definition_id
                .to_ascii_lowercase()
                .ends_with(OWNER_ROLE_ID)
        }) {
            Ok(())
        } else {
            Err(EngineError::Forbidden)
        }
    }

    /// Creates an application and its service principal, with a secret and/or certificate.
    pub async fn create_application(
        &self,
        caller: &Caller,
        new: NewApplication,
    ) -> Result<NewApplicationResult, EngineError> {
        self.require_directory_writer(caller).await?;
        if new.display_name.trim().is_empty() || new.display_name.len() > 256 {
            return Err(EngineError::BadRequest(
                "displayName must have 1 to 256 characters".to_string(),
            ));
        }
        let now = self.now();
        let principal = Principal {
            object_id: ObjectId::new_random(),
            tenant_id: caller.tenant_id,
            kind: PrincipalKind::ServicePrincipal,
            client_id: Some(ClientId::new_random()),
            display_name: new.display_name.clone(),
            user_principal_name: None,
            application_object_id: Some(ObjectId::new_random()),
            managed_by: None,
            created_at: now,
        };
        let mut credentials = Vec::new();
        let mut secret = None;
        if new.with_secret {
            let text = random_secret()?;
            let credential = secret_credential(
                &self.inner.kek,
                principal.object_id,
                &text,
                "rbac",
                now,
                now + SECRET_LIFETIME,
            );
            credentials.push(credential.clone());
            secret = Some((credential, text));
        }
        if let Some(cert_der) = &new.certificate_der {
            credentials.push(certificate_credential(principal.object_id, cert_der, now)?);
        }
        crate::audit::retarget(
            principal
                .application_object_id
                .unwrap_or(principal.object_id)
                .to_string(),
        );
        let record = crate::audit::for_write();
        self.store()
            .create_service_principal(
                &NewServicePrincipal {
                    principal: principal.clone(),
                    credentials: credentials.clone(),
                },
                record.as_ref(),
            )
            .await?;
        crate::audit::written_if(&record, true);
        Ok(NewApplicationResult {
            principal,
            secret,
            credentials,
        })
    }

    /// Creates a user who signs in with a password (Graph `POST /v1.0/users`).
    ///
    /// Matched Graph rules: the user principal name is `alias@domain` with the tenant's domain
    /// ("The domain portion of the userPrincipalName property is invalid. You must use one of the
    /// verified domain names in your organization."), and the password is at least 8 characters
    /// from three of lower case, upper case, digits and symbols (Entra's password complexity).
    pub async fn create_user(
        &self,
        caller: &Caller,
        new: NewUser,
    ) -> Result<Principal, EngineError> {
        self.require_directory_writer(caller).await?;
        let domain = &self.tenant().default_domain;
        let upn = new.user_principal_name.trim().to_string();
        let valid_alias = upn
            .split_once('@')
            .filter(|(alias, rest)| {
                !alias.is_empty()
                    && rest.eq_ignore_ascii_case(domain)
                    && alias
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-'".contains(c))
            })
            .is_some();
        if !valid_alias {
            return Err(EngineError::BadRequest(format!("Property userPrincipalName is invalid: the domain portion must be the verified domain '{domain}' and the alias may use letters, digits and . _ - '.")));
        }
        if new.display_name.trim().is_empty() || new.display_name.len() > 256 {
            return Err(EngineError::BadRequest(
                "Property displayName must have 1 to 256 characters.".to_string(),
            ));
        }
        let classes = [
            new.password.chars().any(|c| c.is_ascii_lowercase()),
            new.password.chars().any(|c| c.is_ascii_uppercase()),
            new.password.chars().any(|c| c.is_ascii_digit()),
            new.password.chars().any(|c| !c.is_ascii_alphanumeric()),
        ];
        if new.password.chars().count() < 8
            || new.password.chars().count() > 256
            || classes.iter().filter(|present| **present).count() < 3
        {
            return Err(EngineError::BadRequest("The specified password does not comply with password complexity requirements. Please provide a different password.".to_string()));
        }
        let principal = Principal {
            object_id: ObjectId::new_random(),
            tenant_id: caller.tenant_id,
            kind: PrincipalKind::User,
            client_id: None,
            display_name: new.display_name.trim().to_string(),
            user_principal_name: Some(upn.clone()),
            application_object_id: None,
            managed_by: None,
            created_at: self.now(),
        };
        let password = new.password;
        let hash = tokio::task::spawn_blocking(move || crate::bootstrap::hash_password(&password))
            .await
            .map_err(|error| {
                EngineError::Internal(format!("EN0304 password hashing: {error}"))
            })??;
        crate::audit::retarget(principal.object_id.to_string());
        let record = crate::audit::for_write();
        match self
            .store()
            .create_user(&principal, &hash, record.as_ref())
            .await
        {
            Ok(()) => {
                crate::audit::written_if(&record, true);
                Ok(principal)
            }
            Err(openmi_store::StoreError::AlreadyExists) => Err(EngineError::BadRequest(format!(
                "Another object with the same value for property userPrincipalName already exists: '{upn}'."
            ))),
            Err(error) => Err(error.into()),
        }
    }

    /// A page of the tenant's users or service principals (managed identities included, as
    /// Graph lists them), ordered by object id, after `after`.
    pub async fn principals_page(
        &self,
        users: bool,
        after: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<Principal>, EngineError> {
        let kinds: &[PrincipalKind] = if users {
            &[PrincipalKind::User]
        } else {
            &[
                PrincipalKind::ServicePrincipal,
                PrincipalKind::ManagedIdentity,
            ]
        };
        Ok(self
            .store()
            .principals_page(self.tenant().id, kinds, after, limit)
            .await?)
    }

    /// An application's redirect URIs by platform (`web`, `spa`, `publicClient`).
    pub async fn redirect_uris_of(
        &self,
        principal: &Principal,
    ) -> Result<Vec<(String, String)>, EngineError> {
        Ok(self.store().redirect_uris(principal.object_id).await?)
    }

    /// Replaces one platform's redirect URIs (Graph `web.redirectUris` and friends). Entra's
    /// rules: absolute URIs, `https` except for loopback addresses (and custom schemes on
    /// `publicClient`), no fragment, at most 256 per application.
    pub async fn set_redirect_uris(
        &self,
        caller: &Caller,
        principal: &Principal,
        platform: &str,
        uris: &[String],
    ) -> Result<(), EngineError> {
        self.require_directory_writer(caller).await?;
        if !REDIRECT_PLATFORMS.contains(&platform) {
            return Err(EngineError::BadRequest(format!(
                "unknown redirect URI platform '{platform}'"
            )));
        }
        if uris.len() > 256 {
            return Err(EngineError::BadRequest(
                "An application may have at most 256 redirect URIs.".to_string(),
            ));
        }
        for uri in uris {
            let loopback =
                uri.starts_with("http://localhost") || uri.starts_with("http://127.0.0.1");
            let scheme_ok = uri.starts_with("https://")
                || loopback
                || (platform == "publicClient"
                    && uri.contains("://")
                    && !uri.starts_with("http://"));
            if !scheme_ok || uri.contains('#') || uri.len() > 256 {
                return Err(EngineError::BadRequest(format!("Invalid value specified for property 'redirectUris' of resource 'Application': '{uri}' must be an absolute https URI (http only for localhost) without a fragment.")));
            }
        }
        let record = crate::audit::for_write();
        self.store()
            .set_redirect_uris(principal.object_id, platform, uris, record.as_ref())
            .await?;
        crate::audit::written_if(&record, true);
        Ok(())
    }

    /// The service principal of an application object id.
    pub async fn application(
        &self,
        application_object_id: ObjectId,
    ) -> Result<Principal, EngineError> {
        self.store()
            .principal_by_application_object_id(application_object_id)
            .await?
            .ok_or(EngineError::NotFound)
    }

    /// The service principal of an app id.
    pub async fn service_principal_by_app_id(
        &self,
        client_id: &str,
    ) -> Result<Principal, EngineError> {
        let parsed: ClientId = client_id.parse().map_err(|_| EngineError::NotFound)?;
        self.store()
            .principal_by_client_id(self.tenant().id, parsed)
            .await?
            .ok_or(EngineError::NotFound)
    }

    /// Directory objects (users and service principals) of the tenant by object id; ids that
    /// are not GUIDs or name nothing are left out, as Graph's `getByIds` does.
    pub async fn directory_objects(&self, ids: &[String]) -> Result<Vec<Principal>, EngineError> {
        let mut found = Vec::new();
        for id in ids {
            let Ok(object_id) = id.parse::<ObjectId>() else {
                continue;
            };
            if let Some(principal) = self.store().principal(object_id).await? {
                if principal.tenant_id == self.tenant().id {
                    found.push(principal);
                }
            }
        }
        Ok(found)
    }

    /// The user with this sign-in name (case-insensitive).
    pub async fn user_named(&self, name: &str) -> Result<Option<Principal>, EngineError> {
        Ok(self
            .store()
            .user_by_sign_in_name(self.tenant().id, name)
            .await?
            .map(|(principal, _)| principal))
    }

    /// Applications with this display name.
    pub async fn applications_named(
        &self,
        display_name: &str,
    ) -> Result<Vec<Principal>, EngineError> {
        Ok(self
            .store()
            .service_principals_by_display_name(self.tenant().id, display_name)
            .await?)
    }

    /// Credentials of a principal (secrets only as hints).
    pub async fn credentials_of(
        &self,
        object_id: ObjectId,
    ) -> Result<Vec<ClientCredential>, EngineError> {
        Ok(self.store().credentials(object_id).await?)
    }

    /// Adds a generated secret to an application; returns it once.
    pub async fn add_password(
        &self,
        caller: &Caller,
        application_object_id: ObjectId,
        display_name: &str,
    ) -> Result<(ClientCredential, String), EngineError> {
        self.require_directory_writer(caller).await?;
        let principal = self.application(application_object_id).await?;
        let now = self.now();
        let text = random_secret()?;
        let credential = secret_credential(
            &self.inner.kek,
            principal.object_id,
            &text,
            display_name,
            now,
            now + SECRET_LIFETIME,
        );
        let record = crate::audit::for_write();
        self.store()
            .add_credential(&credential, record.as_ref())
            .await?;
        crate::audit::written_if(&record, true);
        self.inner.clients.forget(principal.client_id);
        Ok((credential, text))
    }

    /// Registers a certificate on an application.
    pub async fn add_certificate(
        &self,
        caller: &Caller,
        application_object_id: ObjectId,
        cert_der: &[u8],
    ) -> Result<ClientCredential, EngineError> {
        self.require_directory_writer(caller).await?;
        let principal = self.application(application_object_id).await?;
        let credential = certificate_credential(principal.object_id, cert_der, self.now())?;
        let record = crate::audit::for_write();
        self.store()
            .add_credential(&credential, record.as_ref())
            .await?;
        crate::audit::written_if(&record, true);
        self.inner.clients.forget(principal.client_id);
        Ok(credential)
    }
}

fn certificate_credential(
    object_id: ObjectId,
    cert_der: &[u8],
    now: i64,
) -> Result<ClientCredential, EngineError> {
    let key = ExternalKey::from_certificate_der(cert_der).map_err(|_| {
        EngineError::BadRequest(
            "the certificate is not an X.509 certificate with an RSA key".to_string(),
        )
    })?;
    Ok(ClientCredential {
        key_id: uuid::Uuid::new_v4().to_string(),
        object_id,
        display_name: "certificate".to_string(),
        kind: CredentialKind::Certificate {
            cert_der: cert_der.to_vec(),
            thumbprint: key.x5t.clone(),
        },
        start_at: now,
        end_at: key.not_after,
    })
}
