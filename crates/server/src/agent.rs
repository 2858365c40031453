//! The agent API (`docs/design/agent-protocol.md`): enrolment, managed-identity tokens, the
//! instance document and its long-poll watch. Errors use the OAuth shape
//! `{"error","error_description"}` that IMDS also uses, so the agent can pass them through.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::FuturesUnordered;
use openmi_engine::{AgentCaller, EngineError, IdentitySelector, ManagedIdentityToken};
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::{CallerObjectId, RequestContext};
use crate::AppState;

/// Routes under `/openmi/agent`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openmi/agent/enroll", post(enroll))
        .route("/openmi/agent/token", post(token))
        .route("/openmi/agent/tokens", post(tokens))
        .route("/openmi/agent/instance", get(instance))
        .route("/openmi/agent/watch", get(watch))
}

/// How long a watch waits for a change before answering with the same version: each re-armed
/// watch costs a request, so 10 000 idle agents cost 10 000 / 45 requests a second (at 20 s the
/// server spent 10 % of a core on them; BENCHMARKS.md, fleet). Agents allow 60 s per call.
const WATCH_TIMEOUT: Duration = Duration::from_secs(45);

/// An agent API error: the OAuth shape `{"error","error_description"}` with its status.
#[derive(Debug)]
pub struct AgentError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl AgentError {
    fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: self.code,
            error_description: &self.description,
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

pub(crate) fn error(
    status: StatusCode,
    code: &'static str,
    description: impl Into<String>,
) -> AgentError {
    AgentError {
        status,
        code,
        description: description.into(),
    }
}

fn engine_error(failure: EngineError, context: &RequestContext) -> AgentError {
    use EngineError as E;
    match failure {
        E::InvalidJoinToken => error(StatusCode::UNAUTHORIZED, "invalid_grant", "The join token is invalid, expired or already used."),
        E::InvalidAgent(detail) => error(StatusCode::UNAUTHORIZED, "invalid_client", format!("Agent authentication failed: {detail}")),
        E::IdentityNotFound => error(StatusCode::BAD_REQUEST, "invalid_request", "Identity not found"),
        E::AmbiguousIdentity => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request",
        ),
        E::ResourcePrincipalNotFound { resource, tenant } => error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            format!("AADSTS500011: The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."),
        ),
        E::BadRequest(detail) => error(StatusCode::BAD_REQUEST, "invalid_request", detail),
        E::MissingParameter(name) => error(StatusCode::BAD_REQUEST, "invalid_request", format!("Required parameter '{name}' not specified")),
        E::Store(openmi_store::StoreError::Unavailable(_)) => error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "The store is unavailable; retry."),
        other => {
            tracing::error!(request_id = %context.request_id, error = %other, "agent request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("An internal error occurred. Request id: {}", context.request_id))
        }
    }
}

async fn agent(
    state: &AppState,
    headers: &HeaderMap,
    context: &RequestContext,
) -> Result<AgentCaller, AgentError> {
    let assertion = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Agent "))
        .ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The 'Authorization: Agent <assertion>' header is missing.",
            )
        })?;
    state
        .engine
        .authenticate_agent(assertion.trim())
        .await
        .map_err(|failure| engine_error(failure, context))
}

/// The authenticated agent and the JSON body of one of its calls.
async fn agent_request(
    state: &AppState,
    headers: &HeaderMap,
    context: &RequestContext,
    body: &Bytes,
) -> Result<(AgentCaller, Value), AgentError> {
    let agent = agent(state, headers, context).await?;
    Ok((agent, json_body(body)?))
}

fn json_body(body: &Bytes) -> Result<Value, AgentError> {
    serde_json::from_slice(body).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be a JSON object.",
        )
    })
}

fn text(body: &Value, name: &str) -> Option<String> {
    body.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|value| !value.is_empty())
}

/// `POST /openmi/agent/enroll`
pub async fn enroll(
    State(state): State<AppState>,
    context: RequestContext,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(failure) => return failure.into_response(),
    };
    let (Some(join_token), Some(public_key)) = (text(&body, "joinToken"), text(&body, "publicKey"))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "joinToken and publicKey are required.",
        )
        .into_response();
    };
    match state.engine.enroll_agent(&join_token, &public_key).await {
        Ok((agent_id, vm_resource_id)) => Json(json!({
            "agentId": agent_id,
            "vmResourceId": vm_resource_id,
            "tenantId": state.engine.tenant().id.to_string(),
            "subscriptionId": state.engine.subscription_id(),
        }))
        .into_response(),
        Err(failure) => engine_error(failure, &context).into_response(),
    }
}

/// `POST /openmi/agent/token`
pub async fn token(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (agent, body) = match agent_request(&state, &headers, &context, &body).await {
        Ok(request) => request,
        Err(failure) => return failure.into_response(),
    };
    match mint(&state, &agent, &body, &context).await {
        Ok(token) => {
            let mut response = no_store(Json(TokenBody::of(&token)).into_response());
            response
                .extensions_mut()
                .insert(CallerObjectId(token.object_id.clone()));
            response
        }
        Err(failure) => failure.into_response(),
    }
}

/// The most token requests one `POST /openmi/agent/tokens` may carry.
const MAX_BATCH: usize = 64;

/// `POST /openmi/agent/tokens`: several token requests of one agent in one call (agent protocol
/// §4.3), each decided exactly as `/openmi/agent/token` decides it. `{"requests":[...]}` is
/// answered `200` with one JSON line per request, in the order the tokens are ready:
/// `{"index":i,"status":200,"body":{token}}` or `{"index":i,"status":4xx/5xx,"body":{"error",...}}`.
/// The agent sends one when several misses wait at once, so the TLS, HTTP and authentication work
/// is shared by the batch; each request is minted as a task of its own, so one batch keeps every
/// core signing, and each answer leaves as soon as its token is signed.
pub async fn tokens(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (agent, body) = match agent_request(&state, &headers, &context, &body).await {
        Ok((agent, body)) => (Arc::new(agent), body),
        Err(failure) => return failure.into_response(),
    };
    let requests = match body {
        Value::Object(mut body) => match body.remove("requests") {
            Some(Value::Array(requests)) if requests.len() <= MAX_BATCH => requests,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if requests.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("'requests' must be an array of 1 to {MAX_BATCH} token requests."),
        )
        .into_response();
    }
    let context = Arc::new(context);
    let answers: FuturesUnordered<_> = requests
        .into_iter()
        .enumerate()
        .map(|(index, request)| {
            let (state, agent, context) = (state.clone(), agent.clone(), context.clone());
            let minting = tokio::spawn({
                let context = context.clone();
                async move { mint(&state, &agent, &request, &context).await }
            });
            async move {
                let result = minting.await.unwrap_or_else(|join_failure| {
                    tracing::error!(request_id = %context.request_id, error = %join_failure, "a batch mint failed");
                    Err(error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        format!("An internal error occurred. Request id: {}", context.request_id),
                    ))
                });
                Ok::<_, Infallible>(Bytes::from(answer_line(index, &result)))
            }
        })
        .collect();
    no_store(
        (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(answers),
        )
            .into_response(),
    )
}

/// One line of a `POST /openmi/agent/tokens` answer.
fn answer_line(index: usize, result: &Result<ManagedIdentityToken, AgentError>) -> Vec<u8> {
    let item = match result {
        Ok(token) => BatchItem {
            index,
            status: 200,
            body: ItemBody::Token(TokenBody::of(token)),
        },
        Err(failure) => BatchItem {
            index,
            status: failure.status.as_u16(),
            body: ItemBody::Error(failure.body()),
        },
    };
    let mut line = serde_json::to_vec(&item).unwrap_or_else(|_| {
        format!(r#"{{"index":{index},"status":500,"body":{{"error":"server_error","error_description":"An internal error occurred."}}}}"#).into_bytes()
    });
    line.push(b'\n');
    line
}

#[derive(Serialize)]
struct BatchItem<'a> {
    index: usize,
    status: u16,
    body: ItemBody<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ItemBody<'a> {
    Token(TokenBody<'a>),
    Error(ErrorBody<'a>),
}

/// `{"error","error_description"}`, the OAuth error shape.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// The body of a minted token, as `/openmi/agent/token` answers it (agent protocol §4.2).
#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'static str,
    resource: &'a str,
    expires_in: i64,
    expires_on: i64,
    not_before: i64,
    client_id: &'a str,
    object_id: &'a str,
    msi_res_id: &'a str,
}

impl<'a> TokenBody<'a> {
    fn of(token: &'a ManagedIdentityToken) -> TokenBody<'a> {
        TokenBody {
            access_token: &token.access_token,
            token_type: "Bearer",
            resource: &token.resource,
            expires_in: token.expires_in,
            expires_on: token.expires_on,
            not_before: token.not_before,
            client_id: &token.client_id,
            object_id: &token.object_id,
            msi_res_id: &token.msi_res_id,
        }
    }
}

/// One token request (`{"resource", "clientId"|"objectId"|"msiResId"}`) of `agent`.
async fn mint(
    state: &AppState,
    agent: &AgentCaller,
    request: &Value,
    context: &RequestContext,
) -> Result<ManagedIdentityToken, AgentError> {
    let selector = IdentitySelector {
        client_id: text(request, "clientId"),
        object_id: text(request, "objectId"),
        msi_res_id: text(request, "msiResId"),
    };
    let resource = text(request, "resource").unwrap_or_default();
    state
        .engine
        .agent_token(agent, &resource, &selector, state.base_url(context))
        .await
        .map_err(|failure| engine_error(failure, context))
}

/// Tokens are never to be cached by intermediaries.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /openmi/agent/instance`
pub async fn instance(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
) -> Response {
    let agent = match agent(&state, &headers, &context).await {
        Ok(agent) => agent,
        Err(failure) => return failure.into_response(),
    };
    match state.engine.agent_instance(&agent).await {
        Ok(document) => Json(document).into_response(),
        Err(failure) => engine_error(failure, &context).into_response(),
    }
}

/// Query of the watch.
#[derive(Debug, serde::Deserialize)]
pub struct WatchQuery {
    version: Option<i64>,
}

/// `GET /openmi/agent/watch?version=N`: answers when the instance version differs from `N`.
pub async fn watch(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    Query(query): Query<WatchQuery>,
) -> Response {
    let agent = match agent(&state, &headers, &context).await {
        Ok(agent) => agent,
        Err(failure) => return failure.into_response(),
    };
    // Counted as a connected agent until answered (or abandoned by the agent).
    let _open = state.metrics.open_watch();
    let deadline = tokio::time::Instant::now() + WATCH_TIMEOUT;
    // Subscribed before the first read, so no change between the read and the wait is missed.
    let mut notes = state.engine.resource_notes();
    let mut shutting_down = state.shutting_down.clone();
    loop {
        let document = match state.engine.agent_instance(&agent).await {
            Ok(document) => document,
            Err(failure) => return engine_error(failure, &context).into_response(),
        };
        let changed = document.get("version").and_then(Value::as_i64) != query.version;
        if changed || tokio::time::Instant::now() >= deadline || *shutting_down.borrow() {
            return Json(document).into_response();
        }
        // Wait for a note about this VM (its record, its group, its extensions); a lagging
        // receiver may have missed one, so it reads again.
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Ok(note) if !note.concerns(&agent.vm_key) => continue,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutting_down.changed() => break,
            }
        }
    }
}
