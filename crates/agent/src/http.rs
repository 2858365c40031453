//! The agent's plain-HTTP side: the shared state of the handlers, the two routers (IMDS with the
//! App Service endpoint, and the VM-extension endpoint), one log line per request, serving with
//! graceful shutdown, and the shutdown signal.
//!
//! Log lines carry method, path, status and latency: never the query string, a header or a body,
//! so no token, selector secret or identity header reaches the log.

use std::future::Future;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::any;
use axum::Router;

use crate::tokens::TokenService;
use crate::{app_service, extension, imds};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub tokens: Arc<TokenService>,
    /// The App Service protocol's `X-IDENTITY-HEADER` secret.
    pub identity_header: Arc<str>,
    pub tenant_id: Arc<str>,
}

/// IMDS (`/metadata/...`) and the App Service endpoint (`/msi/token`).
pub fn imds_router(state: AppState) -> Router {
    Router::new()
        .route("/metadata/identity/oauth2/token", any(imds::token_get))
        .route("/metadata/identity/info", any(imds::identity_info))
        .route("/metadata/instance", any(imds::instance_get))
        .route("/metadata/instance/{*path}", any(imds::instance_get_path))
        .route("/metadata/versions", any(imds::versions_get))
        .route("/msi/token", any(app_service::msi_token))
        .fallback(imds::not_found)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// The VM-extension endpoint (`/oauth2/token`).
pub fn extension_router(state: AppState) -> Router {
    Router::new()
        .route("/oauth2/token", any(extension::oauth2_token))
        .fallback(extension::unknown_source)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// One `openmi::request` line per request.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The path only: the query may name identities and is never logged.
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::info!(
        target: "openmi::request",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Serves `router` on `listener` until `signal` completes, then lets open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|stream| {
        // Small responses on keep-alive connections: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
    });
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .await
    {
        tracing::warn!(%error, "listener stopped");
    }
}

/// Completes when `shutdown` turns true (or its sender is gone).
pub async fn stopped(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Completes on Ctrl-C, SIGTERM, or (with `stdin`) the end of standard input.
pub async fn shutdown_signal(stdin: bool) {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    let stdin_closed = async {
        if !stdin {
            return std::future::pending::<()>().await;
        }
        let (closed, on_closed) = tokio::sync::oneshot::channel();
        // A plain thread: blocking reads of stdin have no place on the runtime's workers.
        std::thread::spawn(move || {
            let mut buffer = [0u8; 64];
            loop {
                match std::io::stdin().read(&mut buffer) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = closed.send(());
        });
        let _ = on_closed.await;
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
        _ = stdin_closed => {}
    }
}
