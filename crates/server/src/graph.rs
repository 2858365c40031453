//! A Graph-shaped subset for applications and service principals (`/v1.0/...`): what
//! `openmi ad sp create-for-rbac` and `az ad sp create-for-rbac` need. In openmi an application
//! and its service principal are one directory object with two ids (`applications/{id}` and the
//! service principal's object id, which is the `oid` of its tokens).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openmi_engine::audit::AuditOperation;
use openmi_engine::NewApplication;
use openmi_model::directory::{ClientCredential, CredentialKind};
use openmi_model::{ObjectId, Principal, PrincipalKind};
use openmi_token::ExternalKey;
use serde_json::{json, Value};

use crate::auth::AuthenticatedCaller;
use crate::context::{CallerObjectId, RequestContext};
use crate::error::ArmError;
use crate::AppState;

/// Routes under `/v1.0`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1.0/applications",
            post(application_create).get(application_list),
        )
        .route(
            "/v1.0/applications/{id}",
            get(application_get).patch(application_patch),
        )
        .route(
            "/v1.0/applications/{id}/addPassword",
            post(application_add_password),
        )
        .route(
            "/v1.0/servicePrincipals",
            post(service_principal_create).get(service_principal_list),
        )
        .route("/v1.0/servicePrincipals/{id}", get(service_principal_get))
        .route("/v1.0/users", get(user_list).post(user_create))
        .route(
            "/v1.0/directoryObjects/getByIds",
            post(directory_objects_by_ids),
        )
}

fn not_found(id: &str) -> ArmError {
    ArmError::new(StatusCode::NOT_FOUND, "Request_ResourceNotFound", format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."))
}

fn bad_request(message: impl Into<String>) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
}

fn graph_error(error: openmi_engine::EngineError, context: &RequestContext) -> ArmError {
    match error {
        openmi_engine::EngineError::Forbidden => ArmError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ),
        openmi_engine::EngineError::NotFound => not_found(""),
        openmi_engine::EngineError::BadRequest(message) => bad_request(message),
        other => ArmError::from_engine(other, context),
    }
}

fn credential_json(credential: &ClientCredential) -> (Option<Value>, Option<Value>) {
    match &credential.kind {
        CredentialKind::Secret { hint, .. } => (
            Some(
                json!({"customKeyIdentifier": null, "displayName": credential.display_name, "endDateTime": openmi_model::rfc3339(credential.end_at),
                "hint": hint, "keyId": credential.key_id, "secretText": null, "startDateTime": openmi_model::rfc3339(credential.start_at)}),
            ),
            None,
        ),
        CredentialKind::Certificate { thumbprint, .. } => (
            None,
            Some(
                json!({"customKeyIdentifier": thumbprint, "displayName": credential.display_name, "endDateTime": openmi_model::rfc3339(credential.end_at),
                "key": null, "keyId": credential.key_id, "startDateTime": openmi_model::rfc3339(credential.start_at), "type": "AsymmetricX509Cert", "usage": "Verify"}),
            ),
        ),
    }
}

fn application_json(
    principal: &Principal,
    credentials: &[ClientCredential],
    redirects: &[(String, String)],
) -> Value {
    let (passwords, keys): (Vec<_>, Vec<_>) = credentials.iter().map(credential_json).unzip();
    let uris = |platform: &str| {
        redirects
            .iter()
            .filter(|(kind, _)| kind == platform)
            .map(|(_, uri)| uri.clone())
            .collect::<Vec<_>>()
    };
    json!({
        "web": {"redirectUris": uris("web"), "implicitGrantSettings": {"enableAccessTokenIssuance": false, "enableIdTokenIssuance": false}},
        "spa": {"redirectUris": uris("spa")},
        "publicClient": {"redirectUris": uris("publicClient")},
        "id": principal.application_object_id.map(|id| id.to_string()),
        "appId": principal.client_id.map(|id| id.to_string()),
        "displayName": principal.display_name,
        "createdDateTime": openmi_model::rfc3339(principal.created_at),
        "signInAudience": "AzureADMyOrg",
        "passwordCredentials": passwords.into_iter().flatten().collect::<Vec<_>>(),
        "keyCredentials": keys.into_iter().flatten().collect::<Vec<_>>(),
    })
}

fn service_principal_json(principal: &Principal) -> Value {
    json!({
        "id": principal.object_id.to_string(),
        "appId": principal.client_id.map(|id| id.to_string()),
        "displayName": principal.display_name,
        "appDisplayName": principal.display_name,
        "servicePrincipalType": if principal.managed_by.is_some() { "ManagedIdentity" } else { "Application" },
        "accountEnabled": true,
        "appOwnerOrganizationId": principal.tenant_id.to_string(),
        "servicePrincipalNames": [principal.client_id.map(|id| id.to_string())],
    })
}

/// The redirect URIs a Graph application body sets: `web`, `spa`, `publicClient` each with
/// `redirectUris`. Platforms the body does not name are left as they are.
fn redirects_from(body: &Value) -> Result<Vec<(&'static str, Vec<String>)>, ArmError> {
    let mut found = Vec::new();
    for platform in openmi_engine::REDIRECT_PLATFORMS {
        let Some(uris) = body
            .get(*platform)
            .and_then(|section| section.get("redirectUris"))
        else {
            continue;
        };
        let list = uris
            .as_array()
            .ok_or_else(|| bad_request(format!("{platform}.redirectUris must be an array")))?
            .iter()
            .map(|uri| {
                uri.as_str().map(str::to_string).ok_or_else(|| {
                    bad_request(format!("{platform}.redirectUris must hold strings"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        found.push((*platform, list));
    }
    Ok(found)
}

async fn apply_redirects(
    state: &AppState,
    context: &RequestContext,
    caller: &AuthenticatedCaller,
    principal: &Principal,
    body: &Value,
) -> Result<Vec<(String, String)>, ArmError> {
    for (platform, uris) in redirects_from(body)? {
        state
            .engine
            .set_redirect_uris(&caller.0, principal, platform, &uris)
            .await
            .map_err(|error| graph_error(error, context))?;
    }
    state
        .engine
        .redirect_uris_of(principal)
        .await
        .map_err(|error| graph_error(error, context))
}

/// Certificates given as Graph `keyCredentials` (`key` is base64 DER, or PEM).
fn certificates_from(body: &Value) -> Result<Vec<Vec<u8>>, ArmError> {
    let Some(list) = body.get("keyCredentials") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| bad_request("keyCredentials must be an array"))?;
    list.iter()
        .map(|item| {
            let key = item
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad_request("keyCredentials[].key is required"))?;
            ExternalKey::certificate_der_from_text(key)
                .map_err(|_| bad_request("keyCredentials[].key is not a base64 certificate"))
        })
        .collect()
}

/// Graph `$filter` of the form `<field> eq '<value>'`.
#[derive(Debug, serde::Deserialize)]
pub struct FilterQuery {
    #[serde(rename = "$filter")]
    filter: Option<String>,
}

fn filter_value<'a>(filter: &'a str, field: &str) -> Option<&'a str> {
    let rest = filter
        .trim()
        .strip_prefix(field)?
        .trim_start()
        .strip_prefix("eq")?
        .trim();
    rest.strip_prefix('\'')?.strip_suffix('\'')
}

/// The value of `servicePrincipalNames/any(c:c eq 'x')`.
fn any_name_value(filter: &str) -> Option<&str> {
    let inner = filter
        .trim()
        .strip_prefix("servicePrincipalNames/any(")?
        .strip_suffix(')')?;
    let (variable, condition) = inner.split_once(':')?;
    filter_value(condition.trim(), variable.trim())
}

fn user_json(user: &Principal) -> Value {
    json!({
        "id": user.object_id.to_string(),
        "userPrincipalName": user.user_principal_name,
        "displayName": user.display_name,
        "mail": null,
        "accountEnabled": true,
    })
}

fn respond(status: StatusCode, caller: &AuthenticatedCaller, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .extensions_mut()
        .insert(CallerObjectId(caller.0.object_id.to_string()));
    response
}

fn json_body(body: &axum::body::Bytes) -> Result<Value, ArmError> {
    serde_json::from_slice(body)
        .map_err(|error| bad_request(format!("The request body is not valid JSON: {error}")))
}

/// `POST /v1.0/applications`
pub async fn application_create(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let operation = AuditOperation::directory("Add application", "applications");
    let who = caller.0.clone();
    state
        .engine
        .clone()
        .audited(
            Some(&who),
            operation,
            application_create_unaudited(State(state.clone()), context, caller, body),
        )
        .await
}

async fn application_create_unaudited(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let body = json_body(&body)?;
    let display_name = body
        .get("displayName")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("displayName is required"))?
        .to_string();
    let mut certificates = certificates_from(&body)?;
    redirects_from(&body)?;
    let new = NewApplication {
        display_name,
        certificate_der: certificates.pop(),
        with_secret: false,
    };
    let created = state
        .engine
        .create_application(&caller.0, new)
        .await
        .map_err(|error| graph_error(error, &context))?;
    let redirects = apply_redirects(&state, &context, &caller, &created.principal, &body).await?;
    Ok(respond(
        StatusCode::CREATED,
        &caller,
        application_json(&created.principal, &created.credentials, &redirects),
    ))
}

/// `GET /v1.0/applications?$filter=displayName eq '...'`
pub async fn application_list(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Query(query): Query<FilterQuery>,
) -> Result<Response, ArmError> {
    let name = query
        .filter
        .as_deref()
        .and_then(|filter| filter_value(filter, "displayName"))
        .ok_or_else(|| bad_request("only $filter=displayName eq '<name>' is supported"))?;
    let mut value = Vec::new();
    for principal in state
        .engine
        .applications_named(name)
        .await
        .map_err(|error| graph_error(error, &context))?
    {
        let credentials = state
            .engine
            .credentials_of(principal.object_id)
            .await
            .map_err(|error| graph_error(error, &context))?;
        let redirects = state
            .engine
            .redirect_uris_of(&principal)
            .await
            .map_err(|error| graph_error(error, &context))?;
        value.push(application_json(&principal, &credentials, &redirects));
    }
    Ok(respond(StatusCode::OK, &caller, json!({"value": value})))
}

async fn find_application(
    state: &AppState,
    context: &RequestContext,
    id: &str,
) -> Result<Principal, ArmError> {
    let object_id: ObjectId = id.parse().map_err(|_| not_found(id))?;
    state
        .engine
        .application(object_id)
        .await
        .map_err(|error| match error {
            openmi_engine::EngineError::NotFound => not_found(id),
            other => graph_error(other, context),
        })
}

/// `GET /v1.0/applications/{id}`
pub async fn application_get(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Path(id): Path<String>,
) -> Result<Response, ArmError> {
    let principal = find_application(&state, &context, &id).await?;
    let credentials = state
        .engine
        .credentials_of(principal.object_id)
        .await
        .map_err(|error| graph_error(error, &context))?;
    let redirects = state
        .engine
        .redirect_uris_of(&principal)
        .await
        .map_err(|error| graph_error(error, &context))?;
    Ok(respond(
        StatusCode::OK,
        &caller,
        application_json(&principal, &credentials, &redirects),
    ))
}

/// `PATCH /v1.0/applications/{id}` with `keyCredentials` (registers the certificates not yet
/// present) and the platforms' `redirectUris` (replaced).
pub async fn application_patch(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let operation = AuditOperation::directory("Update application", format!("applications/{id}"));
    let who = caller.0.clone();
    state
        .engine
        .clone()
        .audited(
            Some(&who),
            operation,
            application_patch_unaudited(
                State(state.clone()),
                context,
                caller,
                Path(id.clone()),
                body,
            ),
        )
        .await
}

async fn application_patch_unaudited(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let body = json_body(&body)?;
    let principal = find_application(&state, &context, &id).await?;
    let existing = state
        .engine
        .credentials_of(principal.object_id)
        .await
        .map_err(|error| graph_error(error, &context))?;
    apply_redirects(&state, &context, &caller, &principal, &body).await?;
    for cert_der in certificates_from(&body)? {
        let present = existing.iter().any(|credential| matches!(&credential.kind, CredentialKind::Certificate { cert_der: stored, .. } if *stored == cert_der));
        if !present {
            let application_id = principal
                .application_object_id
                .ok_or_else(|| not_found(&id))?;
            state
                .engine
                .add_certificate(&caller.0, application_id, &cert_der)
                .await
                .map_err(|error| graph_error(error, &context))?;
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .extensions_mut()
        .insert(CallerObjectId(caller.0.object_id.to_string()));
    Ok(response)
}

/// `POST /v1.0/applications/{id}/addPassword`: the secret is in this response only.
pub async fn application_add_password(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let operation = AuditOperation::directory(
        "Update application – Certificates and secrets management",
        format!("applications/{id}"),
    );
    let who = caller.0.clone();
    state
        .engine
        .clone()
        .audited(
            Some(&who),
            operation,
            application_add_password_unaudited(
                State(state.clone()),
                context,
                caller,
                Path(id.clone()),
                body,
            ),
        )
        .await
}

async fn application_add_password_unaudited(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let body = if body.is_empty() {
        json!({})
    } else {
        json_body(&body)?
    };
    let display_name = body
        .pointer("/passwordCredential/displayName")
        .and_then(Value::as_str)
        .unwrap_or("secret")
        .to_string();
    let principal = find_application(&state, &context, &id).await?;
    let application_id = principal
        .application_object_id
        .ok_or_else(|| not_found(&id))?;
    let (credential, secret) = state
        .engine
        .add_password(&caller.0, application_id, &display_name)
        .await
        .map_err(|error| graph_error(error, &context))?;
    let (password, _) = credential_json(&credential);
    let mut password = password.unwrap_or_default();
    if let Some(object) = password.as_object_mut() {
        object.insert("secretText".into(), json!(secret));
    }
    Ok(respond(StatusCode::OK, &caller, password))
}

/// `POST /v1.0/servicePrincipals` `{"appId"}`: the application's service principal.
pub async fn service_principal_create(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let operation = AuditOperation::directory("Add service principal", "servicePrincipals");
    let who = caller.0.clone();
    state
        .engine
        .clone()
        .audited(
            Some(&who),
            operation,
            service_principal_create_unaudited(State(state.clone()), context, caller, body),
        )
        .await
}

async fn service_principal_create_unaudited(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let body = json_body(&body)?;
    let app_id = body
        .get("appId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("appId is required"))?;
    let principal = state
        .engine
        .service_principal_by_app_id(app_id)
        .await
        .map_err(|error| match error {
            openmi_engine::EngineError::NotFound => not_found(app_id),
            other => graph_error(other, &context),
        })?;
    openmi_engine::audit::retarget(principal.object_id.to_string());
    Ok(respond(
        StatusCode::CREATED,
        &caller,
        service_principal_json(&principal),
    ))
}

/// `GET /v1.0/servicePrincipals/{id}` by object id; a user's id is not a service principal's.
pub async fn service_principal_get(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Path(id): Path<String>,
) -> Result<Response, ArmError> {
    let principal = service_principal_by_object_id(&state, &context, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(respond(
        StatusCode::OK,
        &caller,
        service_principal_json(&principal),
    ))
}

async fn service_principal_by_object_id(
    state: &AppState,
    context: &RequestContext,
    id: &str,
) -> Result<Option<Principal>, ArmError> {
    Ok(state
        .engine
        .directory_objects(&[id.to_string()])
        .await
        .map_err(|error| graph_error(error, context))?
        .into_iter()
        .find(|principal| principal.kind != PrincipalKind::User))
}

/// `GET /v1.0/servicePrincipals?$filter=appId eq '...'` (or `id eq '...'`)
pub async fn service_principal_list(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Query(query): Query<ListQuery>,
) -> Result<Response, ArmError> {
    if query.filter.is_none() {
        let body = principal_page(&state, &context, &query, false).await?;
        return Ok(respond(StatusCode::OK, &caller, body));
    }
    if let Some(id) = query
        .filter
        .as_deref()
        .and_then(|filter| filter_value(filter, "id"))
    {
        let value: Vec<Value> = service_principal_by_object_id(&state, &context, id)
            .await?
            .iter()
            .map(service_principal_json)
            .collect();
        return Ok(respond(StatusCode::OK, &caller, json!({"value": value})));
    }
    // az resolves `--assignee <appId>` with `servicePrincipalNames/any(c:c eq '<x>')`
    // (research/az-cli.md §3); a service principal's names are its app id.
    let app_id = query
        .filter
        .as_deref()
        .and_then(|filter| filter_value(filter, "appId").or_else(|| any_name_value(filter)))
        .ok_or_else(|| {
            bad_request("only $filter=appId eq '<id>', id eq '<id>' and servicePrincipalNames/any(c:c eq '<name>') are supported")
        })?;
    let value = match state.engine.service_principal_by_app_id(app_id).await {
        Ok(principal) => vec![service_principal_json(&principal)],
        Err(openmi_engine::EngineError::NotFound) => Vec::new(),
        Err(other) => return Err(graph_error(other, &context)),
    };
    Ok(respond(StatusCode::OK, &caller, json!({"value": value})))
}

/// Graph's list query: `$filter`, `$top` (page size, 1..=999, default 100) and `$skiptoken`.
#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    #[serde(rename = "$filter")]
    filter: Option<String>,
    #[serde(rename = "$top")]
    top: Option<String>,
    #[serde(rename = "$skiptoken")]
    skiptoken: Option<String>,
}

/// One page of users or service principals with Graph's `@odata.nextLink`.
async fn principal_page(
    state: &AppState,
    context: &RequestContext,
    query: &ListQuery,
    users: bool,
) -> Result<Value, ArmError> {
    let top = match &query.top {
        None => 100,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|top| (1..=999).contains(top))
            .ok_or_else(|| {
                bad_request("Invalid page size specified: '$top' must be between 1 and 999.")
            })?,
    };
    let after = match &query.skiptoken {
        None => None,
        Some(token) => Some(
            token
                .parse::<ObjectId>()
                .map_err(|_| bad_request("The '$skiptoken' is not valid."))?,
        ),
    };
    let page = state
        .engine
        .principals_page(users, after, top + 1)
        .await
        .map_err(|error| graph_error(error, context))?;
    let more = page.len() as i64 > top;
    let items: Vec<Value> = page
        .iter()
        .take(top as usize)
        .map(|principal| {
            if users {
                user_json(principal)
            } else {
                service_principal_json(principal)
            }
        })
        .collect();
    let mut body = json!({"value": items});
    if more {
        if let Some(last) = page.get(top as usize - 1) {
            let path = if users { "users" } else { "servicePrincipals" };
            body["@odata.nextLink"] = json!(format!(
                "{}/v1.0/{path}?$top={top}&$skiptoken={}",
                state.base_url(context),
                last.object_id
            ));
        }
    }
    Ok(body)
}

/// `GET /v1.0/users` (paged) or `?$filter=userPrincipalName eq '...'`.
pub async fn user_list(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Query(query): Query<ListQuery>,
) -> Result<Response, ArmError> {
    let Some(filter) = query.filter.as_deref() else {
        let body = principal_page(&state, &context, &query, true).await?;
        return Ok(respond(StatusCode::OK, &caller, body));
    };
    let name = filter_value(filter, "userPrincipalName")
        .ok_or_else(|| bad_request("only $filter=userPrincipalName eq '<name>' is supported"))?;
    let value: Vec<Value> = state
        .engine
        .user_named(name)
        .await
        .map_err(|error| graph_error(error, &context))?
        .into_iter()
        .map(|user| user_json(&user))
        .collect();
    Ok(respond(StatusCode::OK, &caller, json!({"value": value})))
}

/// `POST /v1.0/users`: `displayName`, `userPrincipalName`, `passwordProfile.password` (as Graph;
/// `accountEnabled` and `mailNickname` are accepted and not needed).
pub async fn user_create(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let operation = AuditOperation::directory("Add user", "users");
    let who = caller.0.clone();
    state
        .engine
        .clone()
        .audited(
            Some(&who),
            operation,
            user_create_unaudited(State(state.clone()), context, caller, body),
        )
        .await
}

async fn user_create_unaudited(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let body = json_body(&body)?;
    let field = |pointer: &str, name: &str| {
        body.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad_request(format!("Property '{name}' is required.")))
    };
    let new = openmi_engine::NewUser {
        display_name: field("/displayName", "displayName")?,
        user_principal_name: field("/userPrincipalName", "userPrincipalName")?,
        password: field("/passwordProfile/password", "passwordProfile.password")?,
    };
    let user = state
        .engine
        .create_user(&caller.0, new)
        .await
        .map_err(|error| graph_error(error, &context))?;
    Ok(respond(StatusCode::CREATED, &caller, user_json(&user)))
}

/// `POST /v1.0/directoryObjects/getByIds` `{"ids":[...],"types":[...]}`: what az calls to tell
/// whether an object id is a user or a service principal (research/az-cli.md §3).
pub async fn directory_objects_by_ids(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    body: axum::body::Bytes,
) -> Result<Response, ArmError> {
    let body = json_body(&body)?;
    let ids: Vec<String> = body
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("ids is required"))?
        .iter()
        .filter_map(|id| id.as_str().map(str::to_string))
        .collect();
    let types: Vec<String> = body
        .get("types")
        .and_then(Value::as_array)
        .map(|types| {
            types
                .iter()
                .filter_map(|t| t.as_str().map(str::to_lowercase))
                .collect()
        })
        .unwrap_or_default();
    let wanted = |kind: &str| types.is_empty() || types.iter().any(|t| t == kind);
    let value: Vec<Value> = state
        .engine
        .directory_objects(&ids)
        .await
        .map_err(|error| graph_error(error, &context))?
        .iter()
        .filter_map(|principal| {
            if principal.kind == PrincipalKind::User {
                wanted("user").then(|| {
                    let mut object = user_json(principal);
                    object["@odata.type"] = json!("#microsoft.graph.user");
                    object
                })
            } else {
                wanted("serviceprincipal").then(|| {
                    let mut object = service_principal_json(principal);
                    object["@odata.type"] = json!("#microsoft.graph.servicePrincipal");
                    object
                })
            }
        })
        .collect();
    Ok(respond(StatusCode::OK, &caller, json!({"value": value})))
}

#[cfg(test)]
mod tests {
    use super::{any_name_value, filter_value};

    #[test]
    fn parses_any_filters() {
        assert_eq!(
            any_name_value("servicePrincipalNames/any(c:c eq 'abc')"),
            Some("abc")
        );
        assert_eq!(
            any_name_value("servicePrincipalNames/any(x: x eq 'abc')"),
            Some("abc")
        );
        assert_eq!(any_name_value("appId eq 'abc'"), None);
    }

    #[test]
    fn parses_eq_filters() {
        assert_eq!(
            filter_value("displayName eq 'my app'", "displayName"),
            Some("my app")
        );
        assert_eq!(filter_value("appId eq 'x'", "displayName"), None);
        assert_eq!(filter_value("displayName eq my", "displayName"), None);
    }
}
