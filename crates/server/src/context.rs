//! Per-request context: request id, correlation ids, the caller's object id, and the one log line
//! per request. Every response carries `x-ms-request-id` and echoes `x-ms-correlation-request-id`
//! and `client-request-id` when the client sent them, as ARM and Entra do.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// Identifiers of one request, put into the request's extensions by [`track`].
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// `x-ms-correlation-request-id` if sent, else the request id.
    pub correlation_id: String,
    /// `client-request-id` (MSAL) or `x-ms-client-request-id`, if sent.
    pub client_request_id: Option<String>,
    /// The `Host` header, for building per-host URLs.
    pub host: Option<String>,
}

/// The object id of the authenticated caller, left in the response extensions for the log line.
#[derive(Debug, Clone)]
pub struct CallerObjectId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| context_from_headers(&parts.headers)))
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 200)
        .map(str::to_string)
}

/// Header names are matched without regard to case (`HeaderMap` keeps them lower-cased): Node's
/// clients send `x-ms-client-request-id` and `authorization` in lower case, Python's requests
/// `X-Ms-Client-Request-Id`-style as given, MSAL `client-request-id`; all read alike.
fn context_from_headers(headers: &HeaderMap) -> RequestContext {
    let request_id = uuid::Uuid::new_v4().to_string();
    RequestContext {
        correlation_id: header(headers, "x-ms-correlation-request-id")
            .unwrap_or_else(|| request_id.clone()),
        client_request_id: header(headers, "client-request-id")
            .or_else(|| header(headers, "x-ms-client-request-id")),
        host: header(headers, "host"),
        request_id,
    }
}

/// Middleware: assigns ids, echoes them, writes one structured log line per request and counts it
/// in `/metrics` under its route family.
pub async fn track(
    State(state): State<crate::AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let mut context = context_from_headers(request.headers());
    if context.host.is_none() {
        context.host = request
            .uri()
            .authority()
            .map(|authority| authority.to_string());
    }
    request.extensions_mut().insert(context.clone());
    let method = request.method().clone();
    // The path only: query strings are not logged, so nothing secret can reach the log.
    let path = request.uri().path().to_string();
    let family = crate::metrics::Family::of_route(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let info = openmi_engine::audit::RequestInfo {
        request_id: context.request_id.clone(),
        correlation_id: context.correlation_id.clone(),
        client_request_id: context.client_request_id.clone(),
        client_ip: request
            .extensions()
            .get::<crate::throttle::PeerAddr>()
            .map(|crate::throttle::PeerAddr(address)| address.ip().to_string()),
        method: method.to_string(),
        path: path.clone(),
    };
    let mut response = openmi_engine::audit::in_request(info, next.run(request)).await;
    let latency = started.elapsed();
    state
        .metrics
        .observe_request(family, response.status(), latency);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&context.request_id) {
        headers.insert("x-ms-request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&context.correlation_id) {
        headers.insert("x-ms-correlation-request-id", value);
    }
    if let Some(client_request_id) = &context.client_request_id {
        if let Ok(value) = HeaderValue::from_str(client_request_id) {
            headers.insert("client-request-id", value.clone());
            headers.insert("x-ms-client-request-id", value);
        }
    }
    let caller = response
        .extensions()
        .get::<CallerObjectId>()
        .map(|caller| caller.0.clone())
        .unwrap_or_default();
    tracing::info!(
        target: "openmi::request",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        latency_us = latency.as_micros() as u64,
        caller = %caller,
        request_id = %context.request_id,
        "request"
    );
    response
}
