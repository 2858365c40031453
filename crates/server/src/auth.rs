//! Bearer-token authentication of ARM and Graph callers: a token from this token service,
//! validated by the engine (signature, time window, tenant, issuer, and an audience of that API).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use openmi_engine::{Api, Caller};

use crate::context::RequestContext;
use crate::error::ArmError;
use crate::AppState;

/// The caller of a Graph-shaped request, as an extractor (ARM authenticates in its dispatcher).
#[derive(Debug, Clone)]
pub struct AuthenticatedCaller(pub Caller);

impl FromRequestParts<AppState> for AuthenticatedCaller {
    type Rejection = ArmError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let context = RequestContext::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        authenticate(state, &parts.headers, &context, Api::Graph).map(AuthenticatedCaller)
    }
}

/// Validates the bearer token of a request to `api`; ARM's 401s when it is missing or bad.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    context: &RequestContext,
    api: Api,
) -> Result<Caller, ArmError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(ArmError::missing_authorization)?;
    let text = value.to_str().map_err(|_| invalid_format())?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or_else(invalid_format)?;
    let engine = &state.engine;
    engine
        .authenticate(token.trim(), &|audience| {
            engine.accepts_audience(api, audience)
        })
        .map_err(|error| ArmError::from_engine(error, context))
}

fn invalid_format() -> ArmError {
    ArmError::new(
        StatusCode::UNAUTHORIZED,
        "AuthenticationFailed",
        "Authentication failed. The 'Authorization' header is provided in an invalid format.",
    )
}
