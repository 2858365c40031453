//! OIDC discovery documents (v1 and v2), JWKS, MSAL's instance discovery and user-realm lookup.
//!
//! Field sets follow Entra's documents (protocols.md §3.2). MSAL needs `authorization_endpoint`
//! and `token_endpoint` (https, tenant as first path segment); the rest is there for other
//! relying parties.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::context::RequestContext;
use crate::error::OAuthError;
use crate::AppState;

fn tenant_error(state: &AppState, context: &RequestContext, tenant: &str) -> Option<OAuthError> {
    state
        .engine
        .resolve_tenant(tenant)
        .err()
        .map(|error| OAuthError::from_engine(error, context, tenant))
}

/// The tenant segment used in URLs: `common`/`organizations` stay as they are, others become the id.
fn url_tenant(state: &AppState, tenant: &str) -> String {
    let lower = tenant.to_ascii_lowercase();
    if lower == "common" || lower == "organizations" {
        lower
    } else {
        state.engine.tenant().id.to_string()
    }
}

fn cached_json(value: Value) -> Response {
    let mut response = Json(value).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("max-age=86400, private"),
    );
    response
}

fn configuration(state: &AppState, context: &RequestContext, tenant: &str, v2: bool) -> Value {
    let base = state.base_url(context);
    let tenant_id = state.engine.tenant().id.to_string();
    let segment = url_tenant(state, tenant);
    let (issuer, version_path, jwks_uri) = if v2 {
        (
            format!("{base}/{tenant_id}/v2.0"),
            "/v2.0",
            format!("{base}/{segment}/discovery/v2.0/keys"),
        )
    } else {
        (
            format!("{base}/{tenant_id}/"),
            "",
            format!("{base}/common/discovery/keys"),
        )
    };
    json!({
        "token_endpoint": format!("{base}/{segment}/oauth2{version_path}/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": jwks_uri,
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/{segment}/openid/userinfo"),
        "authorization_endpoint": format!("{base}/{segment}/oauth2{version_path}/authorize"),
        "device_authorization_endpoint": format!("{base}/{segment}/oauth2{version_path}/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{segment}/oauth2{version_path}/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "name", "oid", "tid", "upn", "preferred_username", "ver", "appid", "idtyp", "uti"],
        "kerberos_endpoint": format!("{base}/{segment}/kerberos"),
        "tenant_region_scope": "NA",
        "cloud_instance_name": "openmi",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": base,
    })
}

/// `GET /{tenant}/.well-known/openid-configuration` (v1; issuer `https://host/{tid}/`).
pub async fn openid_configuration_v1(
    State(state): State<AppState>,
    context: RequestContext,
    super::Tenant(tenant): super::Tenant,
) -> Response {
    match tenant_error(&state, &context, &tenant) {
        Some(error) => error.into_response(),
        None => cached_json(configuration(&state, &context, &tenant, false)),
    }
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration` (v2; issuer `https://host/{tid}/v2.0`).
pub async fn openid_configuration_v2(
    State(state): State<AppState>,
    context: RequestContext,
    super::Tenant(tenant): super::Tenant,
) -> Response {
    match tenant_error(&state, &context, &tenant) {
        Some(error) => error.into_response(),
        None => cached_json(configuration(&state, &context, &tenant, true)),
    }
}

/// `GET /{tenant}/discovery/keys` (also `/common/discovery/keys`).
pub async fn keys_v1(
    State(state): State<AppState>,
    context: RequestContext,
    super::Tenant(tenant): super::Tenant,
) -> Response {
    if let Some(error) = tenant_error(&state, &context, &tenant) {
        return error.into_response();
    }
    Json(state.engine.key_ring().jwks(state.engine.now(), None)).into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`: each key also names its issuer.
pub async fn keys_v2(
    State(state): State<AppState>,
    context: RequestContext,
    super::Tenant(tenant): super::Tenant,
) -> Response {
    if let Some(error) = tenant_error(&state, &context, &tenant) {
        return error.into_response();
    }
    let issuer =
        if tenant.eq_ignore_ascii_case("common") || tenant.eq_ignore_ascii_case("organizations") {
            format!("{}/{{tenantid}}/v2.0", state.base_url(&context))
        } else {
            format!(
                "{}/{}/v2.0",
                state.base_url(&context),
                state.engine.tenant().id
            )
        };
    Json(
        state
            .engine
            .key_ring()
            .jwks(state.engine.now(), Some(&issuer)),
    )
    .into_response()
}

/// Query of MSAL's instance discovery.
#[derive(Debug, serde::Deserialize)]
pub struct InstanceQuery {
    authorization_endpoint: Option<String>,
}

/// `GET /common/discovery/instance`: MSAL's instance (authority) discovery. Any authority on this
/// server is valid; the answer points at its v2 discovery document.
pub async fn instance_discovery(
    State(state): State<AppState>,
    context: RequestContext,
    Query(query): Query<InstanceQuery>,
) -> Response {
    let base = state.base_url(&context);
    let tenant = query
        .authorization_endpoint
        .as_deref()
        .and_then(|endpoint| endpoint.split('/').nth(3).map(str::to_string))
        .unwrap_or_else(|| "common".to_string());
    let host = base.trim_start_matches("https://").to_string();
    Json(json!({
        "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }))
    .into_response()
}

/// `GET /common/userrealm/{user}`: every account here is a managed (cloud) account.
pub async fn user_realm(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    let domain = user
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_string())
        .unwrap_or_default();
    Json(json!({
        "ver": "1.0",
        "account_type": "Managed",
        "domain_name": if domain.is_empty() { state.engine.tenant().default_domain.clone() } else { domain },
        "cloud_instance_name": "openmi",
        "cloud_audience_urn": "urn:federation:MicrosoftOnline",
    }))
    .into_response()
}
