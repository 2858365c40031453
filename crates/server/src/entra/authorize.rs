//! The interactive endpoints: `/{tenant}/oauth2[/v2.0]/authorize` with its sign-in page,
//! `/{tenant}/oauth2[/v2.0]/logout`, `/{tenant}/oauth2[/v2.0]/devicecode` and the code-entry
//! page `/devicelogin`. The checks and the state live in the engine (`interactive.rs`); here
//! are the pages (askama templates in `crates/server/templates/`), the session cookie, and the
//! three ways an answer goes back to the client (`query`, `fragment`, `form_post`).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use openmi_engine::{
    AuthorizeRequest, AuthorizeTarget, EngineError, OAuthVersion, ResourceRequest, Session,
};
use serde_json::json;

use super::Tenant;
use crate::context::{CallerObjectId, RequestContext};
use crate::error::OAuthError;
use crate::AppState;

/// The browser session cookie (HttpOnly, Secure, SameSite=Lax).
const SESSION_COOKIE: &str = "openmi_session";

/// Pages get their own policy: no script but the form-post helper, nothing framed.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action *; frame-ancestors 'none'; base-uri 'none'";

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    client_name: &'a str,
    action: &'a str,
    hidden: Vec<(String, String)>,
    username: &'a str,
    error: Option<String>,
    session_name: Option<String>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    detail: Option<String>,
    is_error: bool,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage<'a> {
    code: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPostPage<'a> {
    action: &'a str,
    fields: Vec<(String, String)>,
}

fn page(status: StatusCode, rendered: Result<String, askama::Error>) -> Response {
    let mut response = match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn error_page(error: EngineError, context: &RequestContext, tenant: &str) -> Response {
    let oauth = OAuthError::from_engine(error, context, tenant);
    page(
        oauth.status,
        MessagePage {
            title: "Sign in",
            message: "Sorry, but we're having trouble signing you in.",
            detail: Some(oauth.description),
            is_error: true,
        }
        .render(),
    )
}

/// `GET /oauth2/form-post.js`: submits the form of a `response_mode=form_post` answer.
pub async fn form_post_script() -> Response {
    let mut response = "document.forms[0].submit();".into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    response
}

fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(bytes).unwrap_or_default()
}

fn first(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .filter(|value| !value.is_empty())
}

/// The authorize parameters a page carries from step to step (hidden fields).
const AUTHORIZE_PARAMETERS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "resource",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "login_hint",
];

fn authorize_request(tenant: &str, pairs: &[(String, String)]) -> AuthorizeRequest {
    AuthorizeRequest {
        tenant: tenant.to_string(),
        client_id: first(pairs, "client_id"),
        redirect_uri: first(pairs, "redirect_uri"),
        response_type: first(pairs, "response_type"),
        response_mode: first(pairs, "response_mode"),
        scope: first(pairs, "scope"),
        resource: first(pairs, "resource"),
        state: first(pairs, "state"),
        nonce: first(pairs, "nonce"),
        code_challenge: first(pairs, "code_challenge"),
        code_challenge_method: first(pairs, "code_challenge_method"),
        prompt: first(pairs, "prompt"),
        login_hint: first(pairs, "login_hint"),
    }
}

fn hidden_fields(pairs: &[(String, String)]) -> Vec<(String, String)> {
    AUTHORIZE_PARAMETERS
        .iter()
        .filter_map(|name| first(pairs, name).map(|value| (name.to_string(), value)))
        .collect()
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

async fn current_session(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let cookie = cookie_value(headers)?;
    state.engine.session(&cookie).await.ok().flatten()
}

fn set_cookie(response: &mut Response, value: &str, max_age: i64) {
    let cookie = format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The answer to the client, by `response_mode`.
fn answer(target: &AuthorizeTarget, mut fields: Vec<(String, String)>) -> Response {
    if let Some(state) = &target.state {
        fields.push(("state".to_string(), state.clone()));
    }
    match target.response_mode.as_str() {
        "form_post" => page(
            StatusCode::OK,
            FormPostPage {
                action: &target.redirect_uri,
                fields,
            }
            .render(),
        ),
        mode => {
            let encoded = serde_urlencoded::to_string(&fields).unwrap_or_default();
            let separator = if mode == "fragment" {
                "#"
            } else if target.redirect_uri.contains('?') {
                "&"
            } else {
                "?"
            };
            let location = format!("{}{separator}{encoded}", target.redirect_uri);
            let mut response = StatusCode::FOUND.into_response();
            match HeaderValue::from_str(&location) {
                Ok(value) => {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
            }
            response
        }
    }
}

fn redirect_error(
    target: &AuthorizeTarget,
    error: EngineError,
    context: &RequestContext,
    tenant: &str,
) -> Response {
    let oauth = OAuthError::from_engine(error, context, tenant);
    answer(
        target,
        vec![
            ("error".to_string(), oauth.error.to_string()),
            ("error_description".to_string(), oauth.description),
        ],
    )
}

async fn code_answer(
    state: &AppState,
    context: &RequestContext,
    tenant: &str,
    request: &AuthorizeRequest,
    version: OAuthVersion,
    target: &AuthorizeTarget,
    session: &Session,
) -> Response {
    match state
        .engine
        .issue_code(request, version, target, session)
        .await
    {
        Ok(code) => {
            let mut response = answer(target, vec![("code".to_string(), code)]);
            response
                .extensions_mut()
                .insert(CallerObjectId(session.user.object_id.to_string()));
            response
        }
        Err(error) => redirect_error(target, error, context, tenant),
    }
}

fn sign_in_page(
    status: StatusCode,
    target: &AuthorizeTarget,
    action: &str,
    hidden: Vec<(String, String)>,
    username: &str,
    error: Option<String>,
    session: Option<&Session>,
) -> Response {
    page(
        status,
        SignInPage {
            client_name: &target.client_name,
            action,
            hidden,
            username,
            error,
            session_name: session.map(|session| {
                session
                    .user
                    .user_principal_name
                    .clone()
                    .unwrap_or_else(|| session.user.display_name.clone())
            }),
        }
        .render(),
    )
}

async fn authorize(
    state: AppState,
    context: RequestContext,
    tenant: String,
    headers: HeaderMap,
    pairs: Vec<(String, String)>,
    version: OAuthVersion,
) -> Response {
    let action = action_path(&tenant, version);
    let request = authorize_request(&tenant, &pairs);
    let base = state.base_url(&context).to_string();
    let target = match state.engine.authorize_target(&request, &base).await {
        Ok(target) => target,
        Err(error) => return error_page(error, &context, &tenant),
    };
    if let Err(error) = state.engine.authorize_parameters(&request, version) {
        return redirect_error(&target, error, &context, &tenant);
    }
    let session = current_session(&state, &headers).await;
    let prompt = request.prompt.as_deref().unwrap_or_default();
    let hint = request.login_hint.clone().unwrap_or_default();

    // A submitted sign-in form.
    if first(&pairs, "continue").is_some() {
        if let Some(session) = &session {
            return code_answer(
                &state, &context, &tenant, &request, version, &target, session,
            )
            .await;
        }
    }
    if let (Some(username), Some(password)) = (first(&pairs, "username"), first(&pairs, "password"))
    {
        return match state.engine.sign_in(&tenant, &username, &password).await {
            Ok(new) => {
                let mut response = code_answer(
                    &state,
                    &context,
                    &tenant,
                    &request,
                    version,
                    &target,
                    &new.session,
                )
                .await;
                set_cookie(&mut response, &new.cookie, new.max_age);
                response
            }
            Err(error) => match sign_in_failure_text(&error, &context) {
                Some(text) => {
                    tracing::info!(request_id = %context.request_id, %error, "interactive sign-in failed");
                    sign_in_page(
                        StatusCode::OK,
                        &target,
                        &action,
                        hidden_fields(&pairs),
                        &username,
                        Some(text),
                        session.as_ref(),
                    )
                }
                None => redirect_error(&target, error, &context, &tenant),
            },
        };
    }

    match (prompt, &session) {
        ("none", None) => redirect_error(
            &target,
            openmi_engine::EngineError::OAuth {
                error: "login_required",
                code: 50058,
                description: "A silent sign-in request was sent but no user is signed in."
                    .to_string(),
            },
            &context,
            &tenant,
        ),
        ("login", _) | (_, None) => sign_in_page(
            StatusCode::OK,
            &target,
            &action,
            hidden_fields(&pairs),
            &hint,
            None,
            None,
        ),
        ("select_account", Some(session)) => sign_in_page(
            StatusCode::OK,
            &target,
            &action,
            hidden_fields(&pairs),
            &hint,
            None,
            Some(session),
        ),
        (_, Some(session)) => {
            code_answer(
                &state, &context, &tenant, &request, version, &target, session,
            )
            .await
        }
    }
}

fn action_path(tenant: &str, version: OAuthVersion) -> String {
    match version {
        OAuthVersion::V1 => format!("/{tenant}/oauth2/authorize"),
        OAuthVersion::V2 => format!("/{tenant}/oauth2/v2.0/authorize"),
    }
}

/// `GET /{tenant}/oauth2[/v2.0]/authorize`: the parameters in the query.
pub async fn authorize_get(
    State(state): State<AppState>,
    context: RequestContext,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    version: OAuthVersion,
) -> Response {
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    authorize(state, context, tenant, headers, pairs, version).await
}

/// `POST /{tenant}/oauth2[/v2.0]/authorize`: the parameters (and a submitted sign-in) in the form.
pub async fn authorize_post(
    State(state): State<AppState>,
    context: RequestContext,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    body: Bytes,
    version: OAuthVersion,
) -> Response {
    authorize(state, context, tenant, headers, form_pairs(&body), version).await
}

/// `GET|POST /{tenant}/oauth2[/v2.0]/logout`: ends the session; goes on to
/// `post_logout_redirect_uri` when it is on this server or a loopback address (a sign-out
/// must not be an open redirect), else shows that the user is signed out.
pub async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(cookie) = cookie_value(&headers) {
        if let Err(error) = state.engine.sign_out(&cookie).await {
            tracing::error!(request_id = %context.request_id, error = %error, "sign-out failed");
            return error_page(error, &context, "common");
        }
    }
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let base = state.base_url(&context);
    let target = first(&pairs, "post_logout_redirect_uri").filter(|uri| {
        uri.starts_with(&format!("{base}/"))
            || uri.starts_with("http://localhost")
            || uri.starts_with("http://127.0.0.1")
    });
    let mut response = match target.and_then(|uri| HeaderValue::from_str(&uri).ok()) {
        Some(location) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        None => page(
            StatusCode::OK,
            MessagePage {
                title: "You signed out of your account",
                message: "It's a good idea to close all browser windows.",
                detail: None,
                is_error: false,
            }
            .render(),
        ),
    };
    set_cookie(&mut response, "", 0);
    response
}

/// `POST /{tenant}/oauth2[/v2.0]/devicecode`: the device authorization endpoint.
pub async fn device_code(
    State(state): State<AppState>,
    context: RequestContext,
    Tenant(tenant): Tenant,
    body: Bytes,
    version: OAuthVersion,
) -> Response {
    let pairs = form_pairs(&body);
    let resource = match version {
        OAuthVersion::V1 => ResourceRequest::V1Resource(first(&pairs, "resource")),
        OAuthVersion::V2 => ResourceRequest::V2Scope(first(&pairs, "scope")),
    };
    let base = state.base_url(&context).to_string();
    match state
        .engine
        .start_device_code(&tenant, first(&pairs, "client_id"), resource, &base)
        .await
    {
        Ok(issued) => {
            // v1 names the page `verification_url` and sends numbers as strings.
            let body = match version {
                OAuthVersion::V2 => json!({
                    "user_code": issued.user_code,
                    "device_code": issued.device_code,
                    "verification_uri": issued.verification_uri,
                    "expires_in": issued.expires_in,
                    "interval": issued.interval,
                    "message": issued.message,
                }),
                OAuthVersion::V1 => json!({
                    "user_code": issued.user_code,
                    "device_code": issued.device_code,
                    "verification_url": issued.verification_uri,
                    "expires_in": issued.expires_in.to_string(),
                    "interval": issued.interval.to_string(),
                    "message": issued.message,
                }),
            };
            let mut response = Json(body).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            let tenant_id = state.engine.tenant().id.to_string();
            OAuthError::from_engine(error, &context, &tenant_id).into_response()
        }
    }
}

/// `GET /devicelogin`: the code-entry page.
pub async fn device_login_page(RawQuery(query): RawQuery) -> Response {
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let code = first(&pairs, "otc").unwrap_or_default();
    page(
        StatusCode::OK,
        DevicePage {
            code: &code,
            error: None,
        }
        .render(),
    )
}

/// `POST /devicelogin`: the code, then the sign-in (or "continue as"), then the approval.
pub async fn device_login_submit(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = form_pairs(&body);
    let code = first(&pairs, "otc").unwrap_or_default();
    let pending = match state.engine.device_code_pending(&code).await {
        Ok(pending) => pending,
        Err(error) => {
            let tenant_id = state.engine.tenant().id.to_string();
            let oauth = OAuthError::from_engine(error, &context, &tenant_id);
            return page(
                StatusCode::OK,
                DevicePage {
                    code: &code,
                    error: Some(format!(
                        "That code didn't work. Check the code and try again. {}",
                        oauth.description
                    )),
                }
                .render(),
            );
        }
    };
    let session = current_session(&state, &headers).await;
    let target = AuthorizeTarget {
        redirect_uri: String::new(),
        response_mode: String::new(),
        state: None,
        client_name: pending.client_name.clone(),
    };
    let hidden = vec![("otc".to_string(), pending.user_code.clone())];
    let mut new_cookie = None;
    let user = if let (Some(username), Some(password)) =
        (first(&pairs, "username"), first(&pairs, "password"))
    {
        match state.engine.sign_in("common", &username, &password).await {
            Ok(new) => {
                new_cookie = Some((new.cookie.clone(), new.max_age));
                new.session.user
            }
            Err(error) => {
                return match sign_in_failure_text(&error, &context) {
                    Some(text) => sign_in_page(
                        StatusCode::OK,
                        &target,
                        "/devicelogin",
                        hidden,
                        &username,
                        Some(text),
                        session.as_ref(),
                    ),
                    None => error_page(error, &context, "common"),
                };
            }
        }
    } else if let (Some(_), Some(session)) = (first(&pairs, "continue"), &session) {
        session.user.clone()
    } else {
        return sign_in_page(
            StatusCode::OK,
            &target,
            "/devicelogin",
            hidden,
            "",
            None,
            session.as_ref(),
        );
    };
    let mut response = match state
        .engine
        .settle_device_code(&pending.user_code, &user, true)
        .await
    {
        Ok(settled) => page(
            StatusCode::OK,
            MessagePage {
                title: &settled.client_name,
                message: &format!(
                    "You have signed in to the {} application on your device. You may now close this window.",
                    settled.client_name
                ),
                detail: None,
                is_error: false,
            }
            .render(),
        ),
        Err(error) => error_page(error, &context, "common"),
    };
    if let Some((cookie, max_age)) = new_cookie {
        set_cookie(&mut response, &cookie, max_age);
    }
    response
        .extensions_mut()
        .insert(CallerObjectId(user.object_id.to_string()));
    response
}

/// What the sign-in page says for a refused password (shown on the page, as Entra does, rather
/// than sent back to the client): a wrong one, or an account locked by smart lockout.
fn sign_in_failure_text(error: &EngineError, context: &RequestContext) -> Option<String> {
    match error {
        EngineError::InvalidUserCredentials => Some(format!("Your account or password is incorrect. AADSTS50126: Error validating credentials due to invalid username or password. Trace ID: {}", context.request_id)),
        EngineError::OAuth { code: 50053, description, .. } => Some(format!("Your account is locked. AADSTS50053: {description} Trace ID: {}", context.request_id)),
        _ => None,
    }
}
