//! The agent's plain-HTTP side: the shared state of the handlers, the two endpoints (IMDS with the
//! App Service endpoint, and the VM-extension endpoint), one log line per request, serving with
//! graceful shutdown, and the shutdown signal.
//!
//! Log lines carry method, path, status and latency: never the query string, a header or a body,
//! so no token, selector secret or identity header reaches the log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::IntoResponse as _;
use axum::routing::any;
use axum::Router;
use futures_util::future;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;
use tower::Service as _;

use crate::imds::TokenStart;
use crate::metrics::{AgentMetrics, Route};
use crate::tokens::TokenService;
use crate::{app_service, extension, imds, metrics};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub tokens: Arc<TokenService>,
    /// The App Service protocol's `X-IDENTITY-HEADER` secret.
    pub identity_header: Arc<str>,
    pub tenant_id: Arc<str>,
}

/// IMDS (`/metadata/...`) and the App Service endpoint (`/msi/token`); the token path never gets
/// here (`Endpoint::call` answers it).
fn imds_router(state: AppState) -> Router {
    Router::new()
        .route("/metadata/identity/info", any(imds::identity_info))
        .route("/metadata/instance", any(imds::instance_get))
        .route("/metadata/instance/{*path}", any(imds::instance_get_path))
        .route("/metadata/versions", any(imds::versions_get))
        .route("/msi/token", any(app_service::msi_token))
        .route("/metrics", axum::routing::get(metrics::metrics_get))
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

/// The IMDS token path, answered without the router (see `Endpoint::call`).
pub const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

/// What the agent sends: the token fast path's bytes unboxed, anything else as the router made it.
type ResponseBody = Either<Full<Bytes>, Body>;

/// What one listener serves: a router, and optionally the IMDS token endpoint as a fast path.
#[derive(Clone)]
pub struct Endpoint {
    router: Router,
    token_fast_path: Option<AppState>,
    metrics: Arc<AgentMetrics>,
    /// The VM-extension listener (whose `/oauth2/token` is counted apart from IMDS's paths).
    extension_listener: bool,
}

impl Endpoint {
    /// IMDS and App Service: the router, with `TOKEN_PATH` answered directly.
    pub fn imds(state: AppState) -> Endpoint {
        Endpoint {
            router: imds_router(state.clone()),
            metrics: state.tokens.client().metrics().clone(),
            token_fast_path: Some(state),
            extension_listener: false,
        }
    }

    /// The VM-extension endpoint.
    pub fn extension(state: AppState) -> Endpoint {
        Endpoint {
            metrics: state.tokens.client().metrics().clone(),
            router: extension_router(state),
            token_fast_path: None,
            extension_listener: true,
        }
    }

    /// Answers one request and logs one `openmi::request` line (method, path, status, latency).
    /// A token request that needs no waiting (memoised this second, or refused) is answered at
    /// once in a ready future; everything else runs in a boxed one. hyper stores each request's
    /// future in its connection: a ready answer is a fraction of the async path's size, so the
    /// cached-token path moves less memory per request (BENCHMARKS.md, agent).
    fn call(self: Arc<Self>, request: Request<Incoming>) -> Answering {
        let log = RequestLog::start(&request);
        if let Some(state) = &self.token_fast_path {
            if without_trailing_slash(request.uri().path()) == TOKEN_PATH {
                let (method, headers, query) =
                    (request.method(), request.headers(), request.uri().query());
                match imds::token_start(state, method, headers, query) {
                    TokenStart::Answered(answer) => {
                        let response = token_response(answer);
                        self.metrics.answered(Route::ImdsToken, response.status());
                        log.finish(&response);
                        return future::Either::Left(std::future::ready(Ok(response)));
                    }
                    TokenStart::Mint(mint) => {
                        let state = state.clone();
                        return future::Either::Right(Box::pin(async move {
                            let answer = mint.finish(&state, request.uri().query()).await;
                            let response = token_response(answer);
                            state
                                .tokens
                                .metrics()
                                .answered(Route::ImdsToken, response.status());
                            log.finish(&response);
                            Ok(response)
                        }));
                    }
                }
            }
        }
        let request = strip_trailing_slash(request);
        let route = Route::of_path(request.uri().path(), self.extension_listener);
        future::Either::Right(Box::pin(async move {
            let response = match self.router.clone().call(request.map(Body::new)).await {
                Ok(response) => response.map(Either::Right),
                Err(never) => match never {},
            };
            self.metrics.answered(route, response.status());
            log.finish(&response);
            Ok(response)
        }))
    }
}

/// A path without one trailing `/` (the root stays `/`). msal-node, which `@azure/identity` 4
/// uses for every managed-identity source, canonicalises the endpoint it builds from
/// `AZURE_POD_IDENTITY_AUTHORITY_HOST` or `IDENTITY_ENDPOINT` to end in `/`
/// (msal-common `UrlString.canonicalizeUri`), so it asks for `/metadata/identity/oauth2/token/`
/// and `/msi/token/`; Azure's endpoints answer both spellings, and so do we.
fn without_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    }
}

/// The request with its path passed through `without_trailing_slash`, for the routers.
fn strip_trailing_slash<B>(mut request: Request<B>) -> Request<B> {
    let path = request.uri().path();
    let trimmed = without_trailing_slash(path);
    if trimmed.len() == path.len() {
        return request;
    }
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{trimmed}?{query}"),
        None => trimmed.to_string(),
    };
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = path_and_query.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = hyper::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

type Answer = Result<hyper::Response<ResponseBody>, Infallible>;

/// One request's future: ready at once, or the boxed async path.
type Answering = future::Either<
    std::future::Ready<Answer>,
    std::pin::Pin<Box<dyn Future<Output = Answer> + Send>>,
>;

/// The token endpoint's answer as a response: the body unboxed, errors as IMDS words them.
fn token_response(answer: Result<Bytes, imds::ImdsError>) -> hyper::Response<ResponseBody> {
    match answer {
        Ok(body) => imds::json_ok(body).map(Either::Left),
        Err(error) => error.into_response().map(Either::Right),
    }
}

/// One request's `openmi::request` log line: its fields are read only when the line is enabled
/// (not even the clock otherwise). The path only: the query may name identities, never logged.
struct RequestLog(Option<(Instant, hyper::Method, String)>);

impl RequestLog {
    fn start(request: &Request<Incoming>) -> RequestLog {
        let logged = tracing::enabled!(target: "openmi::request", tracing::Level::INFO);
        RequestLog(logged.then(|| {
            (
                Instant::now(),
                request.method().clone(),
                request.uri().path().to_owned(),
            )
        }))
    }

    fn finish(self, response: &hyper::Response<ResponseBody>) {
        if let Some((started, method, path)) = self.0 {
            tracing::info!(
                target: "openmi::request",
                method = %method,
                path = %path,
                status = response.status().as_u16(),
                latency_us = started.elapsed().as_micros() as u64,
                "request"
            );
        }
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
    serve_with(
        listener,
        move || {
            let endpoint = endpoint.clone();
            service_fn(move |request| endpoint.clone().call(request))
        },
        signal,
    )
    .await;
}

/// `serve` with any service: `service` makes one per connection.
async fn serve_with<S, B>(
    listener: tokio::net::TcpListener,
    service: impl Fn() -> S,
    signal: impl Future<Output = ()>,
) where
    S: hyper::service::HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connections = Arc::new(Connections::default());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.writev(false);
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
                let connection = builder.serve_connection(TokioIo::new(stream), service());
                tokio::spawn(Connections::open(&connections).serve(connection));
            }
            _ = &mut signal => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), connections.close()).await;
}

/// The open connections of one listener, for a graceful shutdown: `close` asks each to finish its
/// request in flight and then close (idle ones close at once), and completes when all have.
///
/// hyper-util's `GracefulShutdown` does the same by polling a `watch` receiver (which takes a
/// lock) every time a connection's task wakes; here a connection registers its task's waker once
/// and checks one atomic flag per wake (the cached-token path, BENCHMARKS.md).
#[derive(Default)]
struct Connections {
    closing: AtomicBool,
    /// The waker of every open connection's task, by connection number.
    wakers: Mutex<HashMap<u64, Waker>>,
    next: AtomicU64,
    /// Signalled when the last connection ends.
    all_closed: Notify,
}

impl Connections {
    /// Counts a new connection in, before its task first runs (so `close` waits for it).
    fn open(connections: &Arc<Connections>) -> Registration {
        let number = connections.next.fetch_add(1, Ordering::Relaxed);
        let registration = Registration {
            connections: connections.clone(),
            number,
        };
        registration.register(Waker::noop());
        registration
    }

    /// Asks every open connection to shut down gracefully; completes when none is left.
    async fn close(&self) {
        self.closing.store(true, Ordering::Release);
        for waker in lock(&self.wakers).values() {
            waker.wake_by_ref();
        }
        loop {
            let closed = self.all_closed.notified();
            if lock(&self.wakers).is_empty() {
                return;
            }
            closed.await;
        }
    }
}

/// One connection's place in `Connections`, given up when the connection ends.
struct Registration {
    connections: Arc<Connections>,
    number: u64,
}

impl Registration {
    /// Drives `connection` to its end, shutting it down gracefully once `close` is called.
    async fn serve<S, B>(
        self,
        connection: hyper::server::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, S>,
    ) where
        S: hyper::service::HttpService<Incoming, ResBody = B>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: hyper::body::Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut connection = std::pin::pin!(connection);
        let mut registered: Option<Waker> = None;
        let mut shutting_down = false;
        let _ = std::future::poll_fn(|context| {
            if !shutting_down {
                if !registered
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(context.waker()))
                {
                    self.register(context.waker());
                    registered = Some(context.waker().clone());
                }
                // Read after registering: `close` sets the flag before it wakes the registered.
                if self.connections.closing.load(Ordering::Acquire) {
                    connection.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
            connection.as_mut().poll(context)
        })
        .await;
    }

    fn register(&self, waker: &Waker) {
        lock(&self.connections.wakers).insert(self.number, waker.clone());
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut wakers = lock(&self.connections.wakers);
        wakers.remove(&self.number);
        if wakers.is_empty() {
            self.connections.all_closed.notify_waiters();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    #[test]
    fn one_trailing_slash_is_dropped_from_paths() {
        assert_eq!(
            without_trailing_slash("/metadata/identity/oauth2/token/"),
            TOKEN_PATH
        );
        assert_eq!(without_trailing_slash(TOKEN_PATH), TOKEN_PATH);
        assert_eq!(without_trailing_slash("/"), "/");
        let request = Request::builder()
            .uri("/msi/token/?resource=x&api-version=2019-08-01")
            .body(())
            .unwrap();
        let request = strip_trailing_slash(request);
        assert_eq!(request.uri().path(), "/msi/token");
        assert_eq!(
            request.uri().query(),
            Some("resource=x&api-version=2019-08-01")
        );
    }

    /// Reads one response whose body is `done` (or whatever came before the connection closed).
    async fn response(stream: &mut TcpStream) -> String {
        let mut received = Vec::new();
        let mut buffer = [0u8; 1024];
        while !received.ends_with(b"done") {
            let read = stream.read(&mut buffer).await.unwrap();
            if read == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8(received).unwrap()
    }

    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buffer = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn closing_finishes_requests_in_flight_and_closes_idle_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = || {
            service_fn(|request: Request<Incoming>| async move {
                if request.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"done"))))
            })
        };
        let server = tokio::spawn(serve_with(listener, service, async {
            let _ = stopped.await;
        }));

        // A keep-alive connection left idle after one answered request.
        let mut idle = TcpStream::connect(address).await.unwrap();
        idle.write_all(b"GET /fast HTTP/1.1\r\nHost: agent\r\n\r\n")
            .await
            .unwrap();
        assert!(response(&mut idle).await.starts_with("HTTP/1.1 200"));
        // A request still being answered when the shutdown starts.
        let mut busy = TcpStream::connect(address).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: agent\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !server.is_finished(),
            "serve waits for the request in flight"
        );

        let answer = response(&mut busy).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        assert!(closed(&mut busy).await, "closed after its answer");
        assert!(closed(&mut idle).await, "the idle connection is closed");
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("serve returns once every connection is closed")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        // Nothing listens any more.
        assert!(TcpStream::connect(address).await.is_err());
    }
}
