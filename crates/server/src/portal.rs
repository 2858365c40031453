//! The portal's static files (`/portal/...`), compiled into the binary: nothing is fetched at run
//! time. The pages are a single-page app that signs the user in through the token service's
//! authorize endpoint (its own public client, [`openmi_engine::PORTAL_CLIENT_ID`]) and then calls
//! ARM and Graph with that user's token, so RBAC is the one every client meets.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::context::RequestContext;
use crate::AppState;

/// Every file under `crates/server/portal/`: (path below `/portal/`, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../portal/index.html"),
    ),
    (
        "portal.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../portal/portal.js"),
    ),
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_bytes!("../portal/portal.css"),
    ),
];

/// Same-origin scripts, styles and calls only; no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/portal/") }))
        .route("/portal", get(|| async { Redirect::to("/portal/") }))
        .route("/portal/", get(|| async { asset("index.html") }))
        .route("/portal/config.json", get(config))
        .route(
            "/portal/{*file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

fn asset(file: &str) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// What the app needs to sign in: the tenant, its client id, and the URLs on this origin.
async fn config(State(state): State<AppState>, context: RequestContext) -> Response {
    let base = state.base_url(&context);
    let tenant = state.engine.tenant().id.to_string();
    let mut response = Json(json!({
        "tenantId": tenant,
        "clientId": openmi_engine::PORTAL_CLIENT_ID,
        "authority": format!("{base}/{tenant}"),
        "resource": base,
        "redirectUri": format!("{base}/portal/"),
        "scopes": format!("{base}/.default openid profile offline_access"),
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
