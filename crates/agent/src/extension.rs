//! The deprecated VM-extension endpoint (protocols.md §1.5, seed 004): while the VM has a
//! `ManagedIdentityExtensionForWindows`/`ForLinux` extension, `GET|POST /oauth2/token` on
//! 127.0.0.1 at the port of the extension's settings (50342 by default), answering with IMDS's
//! token body.
//!
//! The listener follows the instance document: started when the extension appears, moved when
//! its port changes, stopped when it goes. A port that cannot be bound is logged and skipped; it
//! never stops the agent.

use std::net::Ipv4Addr;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use crate::http::{self, AppState};
use crate::imds::{self, ImdsError};
use crate::server_client::now;

/// The extension endpoint's listener, owned by the watch task.
pub struct ExtensionListener {
    endpoint: http::Endpoint,
    shutdown: watch::Receiver<bool>,
    running: Option<RunningListener>,
}

struct RunningListener {
    port: u16,
    stop: watch::Sender<bool>,
}

impl ExtensionListener {
    /// A listener serving `router` once started; it also stops when `shutdown` turns true.
    pub fn new(endpoint: http::Endpoint, shutdown: watch::Receiver<bool>) -> ExtensionListener {
        ExtensionListener {
            endpoint,
            shutdown,
            running: None,
        }
    }

    /// Serves on `port` (on 127.0.0.1), or on nothing for `None`.
    pub async fn update(&mut self, port: Option<u16>) {
        if self.running.as_ref().map(|running| running.port) == port {
            return;
        }
        if let Some(running) = self.running.take() {
            // The listening socket closes at once; open requests finish in the background, so
            // the watch (and with it revocation) never waits for them.
            let _ = running.stop.send(true);
            tracing::info!(port = running.port, "VM-extension endpoint stopped");
        }
        let Some(port) = port else {
            return;
        };
        match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            Ok(listener) => {
                let (stop, stopped) = watch::channel(false);
                let mut global = self.shutdown.clone();
                let mut local = stopped;
                let signal = async move {
                    tokio::select! {
                        _ = global.wait_for(|stop| *stop) => {}
                        _ = local.wait_for(|stop| *stop) => {}
                    }
                };
                tokio::spawn(http::serve(listener, self.endpoint.clone(), signal));
                tracing::info!(port, "VM-extension endpoint listening on 127.0.0.1");
                self.running = Some(RunningListener { port, stop });
            }
            Err(error) => {
                tracing::warn!(port, %error, "cannot serve the VM-extension endpoint; going on without it");
            }
        }
    }
}

/// `GET|POST /oauth2/token`: `resource` (and optionally one identity selector) in the query or,
/// for POST, the form body; `Metadata: true` required.
pub async fn oauth2_token(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let result = async {
        if method != Method::GET && method != Method::POST {
            return Err(ImdsError::MethodNotAllowed);
        }
        imds::check_headers(&headers)?;
        let mut parameters = imds::parse_query(query.as_deref())?;
        if method == Method::POST && !body.is_empty() {
            let form = std::str::from_utf8(&body).map_err(|_| ImdsError::MalformedQuery)?;
            parameters.extend(imds::parse_query(Some(form))?);
            // A name given in both the query and the body is as ambiguous as a repeated one.
            imds::reject_duplicates(&parameters)?;
        }
        let request = imds::parse_token_parameters(&parameters)?;
        let token = state
            .tokens
            .token(&request.selector, &request.resource, request.bypass_cache)
            .await?;
        Ok(imds::token_response(&token, &request, now()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Any other path: the extension's answer to a wrong URI.
pub async fn unknown_source() -> Response {
    imds::json_response(
        StatusCode::UNAUTHORIZED,
        json!({"error": "unknown_source", "error_description": "Unknown Source"})
            .to_string()
            .into_bytes(),
    )
}
