//! Interactive sign-in: the authorize endpoint's checks, browser sessions, authorization codes
//! with PKCE, and the device-code grant, as Entra's v1 and v2 endpoints behave
//! (learn.microsoft.com "Microsoft identity platform and OAuth 2.0 authorization code flow",
//! "... device authorization grant flow").
//!
//! Matched behaviours: a client id or redirect URI that does not check out is shown on an error
//! page and never redirected to (AADSTS700016, AADSTS50011); every later error goes back to the
//! redirect URI with `error`, `error_description` and `state`. Redirect URIs are compared exactly,
//! except that the port of an `http://localhost` or `http://127.0.0.1` URI is ignored (Entra's
//! "localhost exceptions"). The first-party public clients (Azure CLI, Azure PowerShell) accept
//! any loopback URI and `.../oauth2/nativeclient`; the portal's client accepts
//! `{server}/portal/` on any of the server's own URLs. Codes live ten minutes and are redeemed
//! once; a code made with a `code_challenge` needs its `code_verifier` (S256 or plain). Device
//! codes live fifteen minutes, are polled every five seconds, and answer `authorization_pending`
//! (AADSTS70016) until the user enters the code, `expired_token` (AADSTS70019) after, and
//! `authorization_declined` (AADSTS70000) when the user refused.
//!
//! Every secret (code, session cookie, device code) is stored only as its keyed hash.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openmi_model::directory::Tenant;
use openmi_model::{ObjectId, Principal, PrincipalKind};
use openmi_store::{InteractiveGrant, StoreError};
use serde_json::{json, Value};

use crate::bootstrap::random_secret;
use crate::tokens::{GrantRequest, IssuedTokens, ResourceRequest, UserSignIn};
use crate::{Engine, EngineError, AZURE_CLI_CLIENT_ID, AZURE_POWERSHELL_CLIENT_ID};

/// The portal's own public client id (the Azure portal's application id in Azure).
pub const PORTAL_CLIENT_ID: &str = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c";

/// How long an authorization code may be redeemed (Entra: about ten minutes).
const CODE_LIFETIME: i64 = 600;
/// How long a browser session lasts without signing in again.
const SESSION_LIFETIME: i64 = 12 * 3600;
/// How long a device code may be entered (Entra: 900 s).
const DEVICE_CODE_LIFETIME: i64 = 900;
/// The polling interval a device-code client is told (Entra: 5 s).
const DEVICE_CODE_INTERVAL: i64 = 5;
/// User codes: nine characters without look-alikes, as Entra's (e.g. `GA8Q2WKJF`).
const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Which endpoint version a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthVersion {
    V1,
    V2,
}

/// An OAuth error with Entra's code, for the authorize and token endpoints.
pub fn oauth_error(error: &'static str, code: u32, description: impl Into<String>) -> EngineError {
    EngineError::OAuth {
        error,
        code,
        description: description.into(),
    }
}

/// The parameters of `GET|POST /{tenant}/oauth2[/v2.0]/authorize`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeRequest {
    pub tenant: String,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    /// v2 `scope`.
    pub scope: Option<String>,
    /// v1 `resource`.
    pub resource: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub login_hint: Option<String>,
}

/// Where and how the answer of a checked authorize request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeTarget {
    pub redirect_uri: String,
    /// `query`, `fragment` or `form_post`.
    pub response_mode: String,
    pub state: Option<String>,
    /// The client's display name, for the sign-in page.
    pub client_name: String,
}

/// A signed-in browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: Principal,
    pub auth_time: i64,
}

/// A new session: the cookie value to set, and until when.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub cookie: String,
    pub max_age: i64,
    pub session: Session,
}

/// The answer of the device authorization endpoint.
#[derive(Clone)]
pub struct DeviceCodeIssued {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: i64,
    pub interval: i64,
    pub message: String,
}

impl std::fmt::Debug for DeviceCodeIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCodeIssued")
            .field("user_code", &self.user_code)
            .finish()
    }
}

/// A pending device code as the code-entry page shows it.
#[derive(Debug, Clone)]
pub struct DeviceCodePending {
    pub user_code: String,
    pub client_name: String,
}

fn random_bytes<const N: usize>() -> Result<[u8; N], EngineError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| EngineError::Internal("EN0401 random generator failed".to_string()))?;
    Ok(bytes)
}

fn random_user_code() -> Result<String, EngineError> {
    let bytes = random_bytes::<9>()?;
    Ok(bytes
        .iter()
        .map(|byte| USER_CODE_ALPHABET[*byte as usize % USER_CODE_ALPHABET.len()] as char)
        .collect())
}

/// A user code as typed: case, spaces and dashes do not matter.
pub fn normalize_user_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// `http://localhost:PORT/path` → `http://localhost/path` (and the same for 127.0.0.1); other
/// URIs unchanged. Entra ignores the port of loopback redirect URIs.
fn without_loopback_port(uri: &str) -> String {
    for host in ["http://localhost", "http://127.0.0.1"] {
        if let Some(rest) = uri.strip_prefix(host) {
            if let Some(after_colon) = rest.strip_prefix(':') {
                let digits = after_colon
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after_colon.len());
                return format!("{host}{}", &after_colon[digits..]);
            }
            if rest.is_empty() || rest.starts_with('/') {
                return uri.to_string();
            }
        }
    }
    uri.to_string()
}

/// Whether a requested redirect URI is a registered one (exact, but for a loopback port).
pub(crate) fn redirect_matches(registered: &str, requested: &str) -> bool {
    registered == requested || without_loopback_port(registered) == without_loopback_port(requested)
}

fn is_loopback(uri: &str) -> bool {
    let stripped = without_loopback_port(uri);
    ["http://localhost", "http://127.0.0.1"]
        .iter()
        .any(|host| stripped == *host || stripped.starts_with(&format!("{host}/")))
}

/// Whether `redirect_uri` is one the client registered (see the module comment for the rules).
pub(crate) fn redirect_uri_allowed(
    client_id: &str,
    registered: &[(String, String)],
    redirect_uri: &str,
    server_base: &str,
) -> bool {
    if redirect_uri.contains('#') {
        return false;
    }
    let client = client_id.to_ascii_lowercase();
    if client == AZURE_CLI_CLIENT_ID || client == AZURE_POWERSHELL_CLIENT_ID {
        return is_loopback(redirect_uri) || redirect_uri.ends_with("/oauth2/nativeclient");
    }
    if client == PORTAL_CLIENT_ID {
        return redirect_uri == format!("{server_base}/portal/");
    }
    registered
        .iter()
        .any(|(_, uri)| redirect_matches(uri, redirect_uri))
}

fn pkce_matches(challenge: &str, method: &str, verifier: &str) -> bool {
    match method {
        "S256" => {
            let hashed =
                URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
            aws_lc_rs::constant_time::verify_slices_are_equal(
                hashed.as_bytes(),
                challenge.as_bytes(),
            )
            .is_ok()
        }
        _ => aws_lc_rs::constant_time::verify_slices_are_equal(
            verifier.as_bytes(),
            challenge.as_bytes(),
        )
        .is_ok(),
    }
}

fn text(value: &Value, name: &str) -> Option<String> {
    value.get(name).and_then(Value::as_str).map(str::to_string)
}

impl Engine {
    fn hash_secret(&self, secret: &str) -> String {
        self.inner.kek.hash_client_secret(secret)
    }

    /// The first check of an authorize request: the tenant, the client and its redirect URI.
    /// An error here is shown to the user; nothing is redirected.
    pub async fn authorize_target(
        &self,
        request: &AuthorizeRequest,
        server_base: &str,
    ) -> Result<AuthorizeTarget, EngineError> {
        let tenant = self.resolve_tenant(&request.tenant)?.clone();
        let client_id = request
            .client_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or(EngineError::MissingParameter("client_id"))?;
        let client = self.client_entry(&tenant, &client_id).await?;
        let redirect_uri = request
            .redirect_uri
            .clone()
            .filter(|uri| !uri.is_empty())
            .ok_or(EngineError::MissingParameter("redirect_uri"))?;
        let registered = self
            .store()
            .redirect_uris(client.principal.object_id)
            .await?;
        if !redirect_uri_allowed(&client_id, &registered, &redirect_uri, server_base) {
            return Err(oauth_error(
                "invalid_request",
                50011,
                format!("The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal."),
            ));
        }
        let response_mode = match request.response_mode.as_deref() {
            None | Some("") => {
                if request.response_type.as_deref() == Some("code") {
                    "query"
                } else {
                    "fragment"
                }
            }
            Some(mode @ ("query" | "fragment" | "form_post")) => mode,
            Some(other) => {
                return Err(oauth_error(
                    "invalid_request",
                    900144,
                    format!("The response_mode '{other}' is not supported."),
                ))
            }
        }
        .to_string();
        Ok(AuthorizeTarget {
            redirect_uri,
            response_mode,
            state: request.state.clone(),
            client_name: client.principal.display_name.clone(),
        })
    }

    /// The remaining checks (answered to the redirect URI when they fail): response type,
    /// scope or resource, PKCE method.
    pub fn authorize_parameters(
        &self,
        request: &AuthorizeRequest,
        version: OAuthVersion,
    ) -> Result<(), EngineError> {
        match request.response_type.as_deref() {
            Some("code") => {}
            Some(other) => {
                return Err(oauth_error(
                    "unsupported_response_type",
                    70018,
                    format!("The response type '{other}' is not supported; use 'code'."),
                ))
            }
            None => return Err(EngineError::MissingParameter("response_type")),
        }
        self.resolve_user_resource(&Self::resource_request(request, version))?;
        match request.code_challenge_method.as_deref() {
            None | Some("S256") | Some("plain") => {}
            Some(other) => {
                return Err(oauth_error(
                    "invalid_request",
                    501491,
                    format!("Invalid code_challenge_method '{other}'; use 'S256' or 'plain'."),
                ))
            }
        }
        if request.code_challenge.is_none() && request.code_challenge_method.is_some() {
            return Err(EngineError::MissingParameter("code_challenge"));
        }
        if request
            .client_id
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
            == Some(PORTAL_CLIENT_ID)
            && request.code_challenge.is_none()
        {
            // A single-page app must use PKCE (AADSTS9002325).
            return Err(oauth_error(
                "invalid_request",
                9002325,
                "Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
            ));
        }
        Ok(())
    }

    fn resource_request(request: &AuthorizeRequest, version: OAuthVersion) -> ResourceRequest {
        match version {
            OAuthVersion::V1 => ResourceRequest::V1Resource(
                request
                    .resource
                    .clone()
                    .or_else(|| Some("https://graph.microsoft.com".to_string())),
            ),
            OAuthVersion::V2 => ResourceRequest::V2Scope(request.scope.clone()),
        }
    }

    /// The session a cookie names, if it is live and its user still exists.
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>, EngineError> {
        let Some(grant) = self
            .store()
            .interactive_grant("session", &self.hash_secret(cookie), self.now())
            .await?
        else {
            return Ok(None);
        };
        let Some(object_id) = grant.object_id else {
            return Ok(None);
        };
        let Some(user) = self.store().principal(object_id).await? else {
            return Ok(None);
        };
        let data: Value = serde_json::from_str(&grant.data).unwrap_or(Value::Null);
        Ok(Some(Session {
            user,
            auth_time: data
                .get("auth_time")
                .and_then(Value::as_i64)
                .unwrap_or(grant.expires_at - SESSION_LIFETIME),
        }))
    }

    /// Checks a user's password and opens a browser session.
    pub async fn sign_in(
        &self,
        tenant: &str,
        username: &str,
        password: &str,
    ) -> Result<NewSession, EngineError> {
        let tenant = self.resolve_tenant(tenant)?.clone();
        let user = self
            .verify_user_password(&tenant, username, password)
            .await
            .inspect_err(|error| {
                self.stats()
                    .count_failure(crate::GrantKind::SignInPage, error);
                self.audit_sign_in(
                    crate::audit::SignInEvent {
                        grant: "sign_in_page",
                        event_type: "interactiveUser",
                        principal_name: Some(username.to_string()),
                        ..Default::default()
                    },
                    Some(error),
                );
            })?;
        let cookie = random_secret()?;
        let now = self.now();
        self.store()
            .insert_interactive_grant(
                &InteractiveGrant {
                    key_hash: self.hash_secret(&cookie),
                    kind: "session".to_string(),
                    status: "active".to_string(),
                    object_id: Some(user.object_id),
                    user_code: None,
                    data: json!({"auth_time": now}).to_string(),
                    expires_at: now + SESSION_LIFETIME,
                },
                now,
            )
            .await?;
        Ok(NewSession {
            cookie,
            max_age: SESSION_LIFETIME,
            session: Session {
                user,
                auth_time: now,
            },
        })
    }

    /// Ends a browser session (sign-out). Unknown cookies are fine.
    pub async fn sign_out(&self, cookie: &str) -> Result<(), EngineError> {
        self.store()
            .take_interactive_grant("session", &self.hash_secret(cookie))
            .await?;
        Ok(())
    }

    /// Issues an authorization code for a checked request and a signed-in user.
    pub async fn issue_code(
        &self,
        request: &AuthorizeRequest,
        version: OAuthVersion,
        target: &AuthorizeTarget,
        session: &Session,
    ) -> Result<String, EngineError> {
        let resource = self.resolve_user_resource(&Self::resource_request(request, version))?;
        let code = random_secret()?;
        let now = self.now();
        let data = json!({
            "client_id": request.client_id.as_deref().unwrap_or_default().to_ascii_lowercase(),
            "redirect_uri": target.redirect_uri,
            "resource": resource,
            "code_challenge": request.code_challenge,
            "code_challenge_method": request.code_challenge_method.clone().unwrap_or_else(|| "plain".to_string()),
            "nonce": request.nonce,
            "auth_time": session.auth_time,
        });
        self.store()
            .insert_interactive_grant(
                &InteractiveGrant {
                    key_hash: self.hash_secret(&code),
                    kind: "code".to_string(),
                    status: "active".to_string(),
                    object_id: Some(session.user.object_id),
                    user_code: None,
                    data: data.to_string(),
                    expires_at: now + CODE_LIFETIME,
                },
                now,
            )
            .await?;
        Ok(code)
    }

    /// `grant_type=authorization_code`.
    pub(crate) async fn grant_authorization_code(
        &self,
        tenant: &Tenant,
        request: &GrantRequest,
    ) -> Result<IssuedTokens, EngineError> {
        let code = request
            .code
            .clone()
            .filter(|code| !code.is_empty())
            .ok_or(EngineError::MissingParameter("code"))?;
        let (client_id, appidacr) = self.user_flow_client(tenant, request).await?;
        let expired = || {
            oauth_error(
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            )
        };
        let grant = self
            .store()
            .take_interactive_grant("code", &self.hash_secret(&code))
            .await?
            .ok_or_else(expired)?;
        if grant.expires_at < self.now() {
            return Err(expired());
        }
        let data: Value = serde_json::from_str(&grant.data)
            .map_err(|_| EngineError::Internal("EN0402 code data".to_string()))?;
        if text(&data, "client_id").as_deref() != Some(client_id.as_str()) {
            return Err(oauth_error(
                "invalid_grant",
                70002,
                "The authorization code was issued to another client.",
            ));
        }
        if request.redirect_uri.as_deref() != text(&data, "redirect_uri").as_deref() {
            return Err(oauth_error(
                "invalid_grant",
                50148,
                "The redirect_uri does not match the one used in the authorization request.",
            ));
        }
        if let Some(challenge) = text(&data, "code_challenge") {
            let method = text(&data, "code_challenge_method").unwrap_or_default();
            let verifier = request
                .code_verifier
                .clone()
                .ok_or(EngineError::MissingParameter("code_verifier"))?;
            if !pkce_matches(&challenge, &method, &verifier) {
                return Err(oauth_error(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                ));
            }
        }
        let resource = match &request.resource {
            ResourceRequest::V1Resource(Some(_)) | ResourceRequest::V2Scope(Some(_)) => {
                self.resolve_user_resource(&request.resource)?
            }
            _ => text(&data, "resource").unwrap_or_default(),
        };
        let user = self
            .store()
            .principal(grant.object_id.ok_or_else(expired)?)
            .await?
            .ok_or_else(expired)?;
        let sign_in = UserSignIn {
            nonce: text(&data, "nonce"),
            auth_time: data.get("auth_time").and_then(Value::as_i64),
            appidacr: Some(appidacr),
        };
        self.user_tokens(tenant, &user, &client_id, &resource, request, &sign_in)
            .await
    }

    /// The device authorization endpoint (`/devicecode`).
    pub async fn start_device_code(
        &self,
        tenant: &str,
        client_id: Option<String>,
        resource: ResourceRequest,
        server_base: &str,
    ) -> Result<DeviceCodeIssued, EngineError> {
        let tenant = self.resolve_tenant(tenant)?.clone();
        let client_id = client_id
            .filter(|id| !id.is_empty())
            .ok_or(EngineError::MissingParameter("client_id"))?;
        let client = self.client_entry(&tenant, &client_id).await?;
        let resolved = self.resolve_user_resource(&resource)?;
        let device_code = random_secret()?;
        let now = self.now();
        let data = json!({
            "client_id": client_id.to_ascii_lowercase(),
            "client_name": client.principal.display_name,
            "resource": resolved,
        })
        .to_string();
        // A collision of user codes (32^9 values) is retried with a new one.
        let mut attempts = 0;
        let user_code = loop {
            let user_code = random_user_code()?;
            let inserted = self
                .store()
                .insert_interactive_grant(
                    &InteractiveGrant {
                        key_hash: self.hash_secret(&device_code),
                        kind: "device".to_string(),
                        status: "pending".to_string(),
                        object_id: None,
                        user_code: Some(user_code.clone()),
                        data: data.clone(),
                        expires_at: now + DEVICE_CODE_LIFETIME,
                    },
                    now,
                )
                .await;
            match inserted {
                Ok(()) => break user_code,
                Err(StoreError::AlreadyExists) if attempts < 3 => attempts += 1,
                Err(error) => return Err(error.into()),
            }
        };
        let verification_uri = format!("{server_base}/devicelogin");
        Ok(DeviceCodeIssued {
            message: format!("To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate."),
            device_code,
            user_code,
            verification_uri,
            expires_in: DEVICE_CODE_LIFETIME,
            interval: DEVICE_CODE_INTERVAL,
        })
    }

    /// The pending device code a user typed, for the confirmation page.
    pub async fn device_code_pending(&self, typed: &str) -> Result<DeviceCodePending, EngineError> {
        let user_code = normalize_user_code(typed);
        let grant = self
            .store()
            .device_grant_by_user_code(&user_code, self.now())
            .await?
            .filter(|grant| grant.status == "pending")
            .ok_or_else(|| {
                oauth_error(
                    "invalid_request",
                    70000,
                    "The code you entered has expired or is not valid. Get a new code from the device and try again.",
                )
            })?;
        let data: Value = serde_json::from_str(&grant.data).unwrap_or(Value::Null);
        Ok(DeviceCodePending {
            user_code,
            client_name: text(&data, "client_name").unwrap_or_default(),
        })
    }

    /// The signed-in user approves (or declines) a device code.
    pub async fn settle_device_code(
        &self,
        typed: &str,
        user: &Principal,
        approve: bool,
    ) -> Result<DeviceCodePending, EngineError> {
        let pending = self.device_code_pending(typed).await?;
        let grant = self
            .store()
            .device_grant_by_user_code(&pending.user_code, self.now())
            .await?
            .ok_or(EngineError::NotFound)?;
        let status = if approve { "approved" } else { "denied" };
        if !self
            .store()
            .settle_device_grant(&grant.key_hash, status, user.object_id)
            .await?
        {
            return Err(oauth_error(
                "invalid_request",
                70000,
                "The code was already used.",
            ));
        }
        Ok(pending)
    }

    /// `grant_type=urn:ietf:params:oauth:grant-type:device_code` (v1: `device_code` with `code`).
    pub(crate) async fn grant_device_code(
        &self,
        tenant: &Tenant,
        request: &GrantRequest,
    ) -> Result<IssuedTokens, EngineError> {
        let device_code = request
            .device_code
            .clone()
            .or_else(|| request.code.clone())
            .filter(|code| !code.is_empty())
            .ok_or(EngineError::MissingParameter("device_code"))?;
        let (client_id, appidacr) = self.user_flow_client(tenant, request).await?;
        let hash = self.hash_secret(&device_code);
        let now = self.now();
        let expired = || oauth_error("expired_token", 70019, "Verification code expired.");
        let grant = self
            .store()
            .interactive_grant("device", &hash, i64::MIN)
            .await?
            .ok_or_else(|| {
                oauth_error(
                    "invalid_grant",
                    70000,
                    "The provided value for the input parameter 'device_code' is not valid.",
                )
            })?;
        let data: Value = serde_json::from_str(&grant.data).unwrap_or(Value::Null);
        if text(&data, "client_id").as_deref() != Some(client_id.as_str()) {
            return Err(oauth_error(
                "invalid_grant",
                70000,
                "The device code was issued to another client.",
            ));
        }
        match grant.status.as_str() {
            "pending" if grant.expires_at >= now => Err(oauth_error(
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            )),
            "pending" => Err(expired()),
            "denied" => {
                self.store().take_interactive_grant("device", &hash).await?;
                Err(oauth_error(
                    "authorization_declined",
                    70000,
                    "The user declined the sign-in request.",
                ))
            }
            _ => {
                // Redeemed once: the poll that takes the row gets the tokens.
                let taken = self
                    .store()
                    .take_interactive_grant("device", &hash)
                    .await?
                    .ok_or_else(expired)?;
                let user = self
                    .store()
                    .principal(taken.object_id.ok_or_else(expired)?)
                    .await?
                    .filter(|user| user.kind == PrincipalKind::User)
                    .ok_or_else(expired)?;
                let resource = text(&data, "resource").unwrap_or_default();
                self.user_tokens(
                    tenant,
                    &user,
                    &client_id,
                    &resource,
                    request,
                    &UserSignIn {
                        appidacr: Some(appidacr),
                        ..UserSignIn::default()
                    },
                )
                .await
            }
        }
    }

    /// Makes sure the first-party clients exist (a database bootstrapped by an older build
    /// lacks the portal's). Two replicas racing here both succeed.
    pub(crate) async fn ensure_first_party_clients(&self) -> Result<(), EngineError> {
        let tenant = self.tenant().clone();
        let client_id = PORTAL_CLIENT_ID
            .parse()
            .map_err(|_| EngineError::Internal("EN0403 bad portal client id".to_string()))?;
        if self
            .store()
            .principal_by_client_id(tenant.id, client_id)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let principal = Principal {
            object_id: ObjectId::new_random(),
            tenant_id: tenant.id,
            kind: PrincipalKind::ServicePrincipal,
            client_id: Some(client_id),
            display_name: "openmi portal".to_string(),
            user_principal_name: None,
            application_object_id: None,
            managed_by: None,
            created_at: self.now(),
        };
        match self
            .store()
            .create_service_principal(
                &openmi_store::NewServicePrincipal {
                    principal,
                    credentials: Vec::new(),
                },
                None,
            )
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ports_are_ignored() {
        assert_eq!(
            without_loopback_port("http://localhost:8400/cb"),
            "http://localhost/cb"
        );
        assert_eq!(
            without_loopback_port("http://127.0.0.1:1234"),
            "http://127.0.0.1"
        );
        assert_eq!(
            without_loopback_port("http://localhost.evil.com/"),
            "http://localhost.evil.com/"
        );
        assert!(is_loopback("http://localhost:5000"));
        assert!(!is_loopback("http://localhost.evil.com:5000"));
        assert!(!is_loopback("https://localhost:5000"));
    }

    #[test]
    fn redirect_rules() {
        let registered = vec![
            ("web".to_string(), "https://app.example/cb".to_string()),
            ("publicClient".to_string(), "http://localhost".to_string()),
        ];
        let app = "11111111-1111-1111-1111-111111111111";
        let base = "https://127.0.0.1:8443";
        assert!(redirect_uri_allowed(
            app,
            &registered,
            "https://app.example/cb",
            base
        ));
        assert!(redirect_uri_allowed(
            app,
            &registered,
            "http://localhost:5123",
            base
        ));
        assert!(!redirect_uri_allowed(
            app,
            &registered,
            "https://app.example/cb2",
            base
        ));
        assert!(!redirect_uri_allowed(
            app,
            &registered,
            "https://app.example/cb#x",
            base
        ));
        assert!(!redirect_uri_allowed(app, &[], "http://localhost:1", base));
        assert!(redirect_uri_allowed(
            AZURE_CLI_CLIENT_ID,
            &[],
            "http://localhost:41237",
            base
        ));
        assert!(!redirect_uri_allowed(
            AZURE_CLI_CLIENT_ID,
            &[],
            "https://evil.example/",
            base
        ));
        assert!(redirect_uri_allowed(
            PORTAL_CLIENT_ID,
            &[],
            "https://127.0.0.1:8443/portal/",
            base
        ));
        assert!(!redirect_uri_allowed(
            PORTAL_CLIENT_ID,
            &[],
            "https://evil.example/portal/",
            base
        ));
    }

    #[test]
    fn pkce_s256_and_plain() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(challenge, "S256", verifier));
        assert!(!pkce_matches(challenge, "S256", "other"));
        assert!(pkce_matches("abc", "plain", "abc"));
        assert!(!pkce_matches("abc", "plain", "abd"));
    }

    #[test]
    fn user_codes_normalize() {
        assert_eq!(normalize_user_code("ga8q-2wk jf"), "GA8Q2WKJF");
        let code = random_user_code().unwrap();
        assert_eq!(code.len(), 9);
        assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
    }
}
