//! `POST /{tenant}/oauth2/token` (v1, `resource`) and `POST /{tenant}/oauth2/v2.0/token` (v2, `scope`).
//!
//! Response shapes per version (protocols.md §3.3): v1 sends every number as a string and echoes
//! `resource`; v2 sends integers. Client authentication: `client_secret` in the body
//! (client_secret_post), HTTP Basic (client_secret_basic, RFC 6749 §2.3.1) or a JWT-bearer
//! `client_assertion` (private_key_jwt).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use openmi_engine::{ClientAuth, EngineError, GrantRequest, IssuedTokens, ResourceRequest};
use serde_json::{json, Map, Value};
use std::time::Instant;

use crate::context::{CallerObjectId, RequestContext};
use crate::error::OAuthError;
use crate::throttle::Peer;
use crate::AppState;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// v1 token endpoint.
pub async fn token_v1(
    state: State<AppState>,
    context: RequestContext,
    tenant: Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(state, context, tenant, peer, headers, body, Version::V1).await
}

/// v2 token endpoint.
pub async fn token_v2(
    state: State<AppState>,
    context: RequestContext,
    tenant: Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(state, context, tenant, peer, headers, body, Version::V2).await
}

/// Decodes `client_secret_basic`: base64 of `urlencode(client_id):urlencode(secret)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    let unescape = |text: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={text}"))
            .ok()?
            .pop()
            .map(|(_, value)| value)
    };
    Some((unescape(user)?, unescape(password)?))
}

async fn token(
    State(state): State<AppState>,
    context: RequestContext,
    Path(tenant): Path<String>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Bytes,
    version: Version,
) -> Response {
    let tenant_id = state.engine.tenant().id.to_string();
    let fail =
        |error: EngineError| OAuthError::from_engine(error, &context, &tenant_id).into_response();
    let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(_) => {
            return fail(EngineError::BadRequest(
                "the body must be application/x-www-form-urlencoded".to_string(),
            ))
        }
    };
    // The first occurrence of a parameter wins.
    let param = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    };
    let basic = basic_credentials(&headers);
    let client_auth = if let Some(secret) = param("client_secret") {
        ClientAuth::Secret(secret)
    } else if let Some((_, secret)) = &basic {
        ClientAuth::Secret(secret.clone())
    } else if let Some(assertion) = param("client_assertion") {
        ClientAuth::Assertion {
            assertion,
            assertion_type: param("client_assertion_type").unwrap_or_default(),
        }
    } else {
        ClientAuth::None
    };
    let request = GrantRequest {
        tenant: tenant.clone(),
        grant_type: param("grant_type"),
        client_id: param("client_id")
            .or_else(|| basic.as_ref().map(|(client_id, _)| client_id.clone())),
        client_auth,
        resource: match version {
            Version::V1 => ResourceRequest::V1Resource(param("resource")),
            Version::V2 => ResourceRequest::V2Scope(param("scope")),
        },
        username: param("username"),
        password: param("password"),
        refresh_token: param("refresh_token"),
        code: param("code"),
        redirect_uri: param("redirect_uri"),
        code_verifier: param("code_verifier"),
        device_code: param("device_code"),
        client_info: param("client_info").as_deref() == Some("1"),
        issuer_base: state.base_url(&context).to_string(),
    };
    if let Err(wait) = state
        .throttle
        .admit(address, request.client_id.as_deref(), Instant::now())
    {
        return throttled(wait, &context, &tenant_id);
    }
    match state.engine.grant(request).await {
        Ok(tokens) => token_response(tokens, version),
        Err(error) => fail(error),
    }
}

fn token_response(tokens: IssuedTokens, version: Version) -> Response {
    let mut body = Map::new();
    body.insert("token_type".into(), json!("Bearer"));
    match version {
        Version::V1 => {
            if tokens.refresh_token.is_some() {
                body.insert("scope".into(), json!("user_impersonation"));
            }
            body.insert("expires_in".into(), json!(tokens.expires_in.to_string()));
            body.insert(
                "ext_expires_in".into(),
                json!(tokens.expires_in.to_string()),
            );
            body.insert("expires_on".into(), json!(tokens.expires_on.to_string()));
            body.insert("not_before".into(), json!(tokens.not_before.to_string()));
            body.insert("resource".into(), json!(tokens.resource));
        }
        Version::V2 => {
            if let Some(scope) = &tokens.scope {
                body.insert("scope".into(), json!(scope));
            }
            body.insert("expires_in".into(), json!(tokens.expires_in));
            body.insert("ext_expires_in".into(), json!(tokens.expires_in));
        }
    }
    body.insert("access_token".into(), json!(tokens.access_token));
    if let Some(refresh_token) = &tokens.refresh_token {
        body.insert("refresh_token".into(), json!(refresh_token));
    }
    if let Some(id_token) = &tokens.id_token {
        body.insert("id_token".into(), json!(id_token));
    }
    if let Some(client_info) = &tokens.client_info {
        body.insert("client_info".into(), json!(client_info));
    }
    let mut response = Json(Value::Object(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
        .extensions_mut()
        .insert(CallerObjectId(tokens.object_id));
    response
}

/// Entra's answer to a throttled token request: 429, `Retry-After` in whole seconds, and an
/// OAuth error body.
fn throttled(wait: std::time::Duration, context: &RequestContext, tenant_id: &str) -> Response {
    let mut error = OAuthError::from_engine(
        EngineError::OAuth {
            error: "temporarily_unavailable",
            code: 90055,
            description: "There are too many incoming requests. Please try again later."
                .to_string(),
        },
        context,
        tenant_id,
    );
    error.status = axum::http::StatusCode::TOO_MANY_REQUESTS;
    let mut response = error.into_response();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
