//! The Entra-shaped token service: OIDC discovery, JWKS, instance discovery and the token endpoints.

pub mod authorize;
pub mod discovery;
pub mod token;

use axum::routing::{get, post};
use axum::Router;
use openmi_engine::OAuthVersion;

use crate::AppState;

/// The `{tenant}` segment (the path's first) of a token-service route, percent-decoded with
/// invalid UTF-8 replaced: axum's `Path` would refuse such a segment in plain text, outside
/// Entra's error shape, where this lets the engine answer "Tenant '…' not found" (AADSTS90002).
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Tenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let segment = parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        Ok(Tenant(
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned(),
        ))
    }
}

/// Routes of the token service (paths as Entra's `login.microsoftonline.com`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/common/discovery/instance",
            get(discovery::instance_discovery),
        )
        .route("/common/userrealm/{user}", get(discovery::user_realm))
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(discovery::openid_configuration_v1),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration_v2),
        )
        .route("/{tenant}/discovery/keys", get(discovery::keys_v1))
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::keys_v2))
        .route(
            "/{tenant}/oauth2/authorize",
            get(|state, context, tenant, headers, query| {
                authorize::authorize_get(state, context, tenant, headers, query, OAuthVersion::V1)
            })
            .post(|state, context, tenant, headers, body| {
                authorize::authorize_post(state, context, tenant, headers, body, OAuthVersion::V1)
            }),
        )
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(|state, context, tenant, headers, query| {
                authorize::authorize_get(state, context, tenant, headers, query, OAuthVersion::V2)
            })
            .post(|state, context, tenant, headers, body| {
                authorize::authorize_post(state, context, tenant, headers, body, OAuthVersion::V2)
            }),
        )
        .route(
            "/{tenant}/oauth2/logout",
            get(authorize::logout).post(authorize::logout),
        )
        .route(
            "/{tenant}/oauth2/v2.0/logout",
            get(authorize::logout).post(authorize::logout),
        )
        .route(
            "/{tenant}/oauth2/devicecode",
            post(|state, context, tenant, body| {
                authorize::device_code(state, context, tenant, body, OAuthVersion::V1)
            }),
        )
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(|state, context, tenant, body| {
                authorize::device_code(state, context, tenant, body, OAuthVersion::V2)
            }),
        )
        .route(
            "/devicelogin",
            get(authorize::device_login_page).post(authorize::device_login_submit),
        )
        .route("/oauth2/form-post.js", get(authorize::form_post_script))
        .route("/{tenant}/oauth2/token", post(token::token_v1))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token_v2))
}
