//! The agent's plain-HTTP side: the shared state of the handlers, the two endpoints (IMDS with the
//! App Service endpoint, and the VM-extension endpoint), one log line per request, serving with
//! graceful shutdown, and the shutdown signal.
//!
//! Log lines carry method, path, status and latency: never the query string, a header or a body,
//! so no token, selector secret or identity header reaches the log.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tower::Service as _;

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
fn imds_router(state: AppState) -> Router {
    Router::new()
        .route("/metadata/identity/oauth2/token", any(imds::token_get))
        .route("/metadata/identity/info", any(imds::identity_info))
        .route("/metadata/instance", any(imds::instance_get))
        .route("/metadata/instance/{*path}", any(imds::instance_get_path))
        .route("/metadata/versions", any(imds::versions_get))
        .route("/msi/token", any(app_service::msi_token))
        .fallback(imds::not_found)
        .with_state(state)
}

/// The VM-extension endpoint (`/oauth2/token`).
fn extension_router(state: AppState) -> Router {
    Router::new()
        .route("/oauth2/token", any(extension::oauth2_token))
        .fallback(extension::unknown_source)
        .with_state(state)
}

/// The IMDS token path, answered without the router (see `serve`).
pub const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

/// What one listener serves: a router, and optionally the IMDS token endpoint as a fast path.
#[derive(Clone)]
pub struct Endpoint {
    router: Router,
    token_fast_path: Option<AppState>,
}

impl Endpoint {
    /// IMDS and App Service: the router, with `TOKEN_PATH` answered directly.
    pub fn imds(state: AppState) -> Endpoint {
        Endpoint {
            router: imds_router(state.clone()),
            token_fast_path: Some(state),
        }
    }

    /// The VM-extension endpoint.
    pub fn extension(state: AppState) -> Endpoint {
        Endpoint {
            router: extension_router(state),
            token_fast_path: None,
        }
    }

    /// Answers one request and logs one `openmi::request` line (method, path, status, latency).
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Result<Response, Infallible> {
        // The log line's fields are read only when it is enabled (not even the clock otherwise).
        let logged = tracing::enabled!(target: "openmi::request", tracing::Level::INFO);
        let started = logged.then(Instant::now);
        let method = logged.then(|| request.method().clone());
        let (path, response) = match &self.token_fast_path {
            Some(state) if request.uri().path() == TOKEN_PATH => {
                let response = imds::token(
                    state,
                    request.method(),
                    request.headers(),
                    request.uri().query(),
                )
                .await;
                (Cow::Borrowed(TOKEN_PATH), response)
            }
            _ => {
                // The path only: the query may name identities and is never logged.
                let path = Cow::Owned(request.uri().path().to_owned());
                let response = match self.router.clone().call(request.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                (path, response)
            }
        };
        if let (Some(started), Some(method)) = (started, method) {
            tracing::info!(
                target: "openmi::request",
                method = %method,
                path = %path,
                status = response.status().as_u16(),
                latency_us = started.elapsed().as_micros() as u64,
                "request"
            );
        }
        Ok(response)
    }
}

/// Serves `endpoint` over HTTP/1.1 on `listener` until `signal` completes, then lets open requests
/// finish (10 s at most). hyper directly, not `axum::serve`: no protocol sniffing, no per-request
/// middleware boxing (BENCHMARKS.md, agent).
pub async fn serve(
    listener: tokio::net::TcpListener,
    endpoint: Endpoint,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let endpoint = Arc::new(endpoint);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper::server::conn::http1::Builder::new();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Small responses on keep-alive connections: do not let Nagle hold them back.
                let _ = stream.set_nodelay(true);
                let endpoint = endpoint.clone();
                let service = service_fn(move |request| endpoint.clone().handle(request));
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = &mut signal => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
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
