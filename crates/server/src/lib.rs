//! The openmi server: HTTPS listener, routers for the token service, the Graph-shaped directory
//! API and ARM, and the start-up sequence (data dir, TLS, store, bootstrap, key reload).
//!
//! **Architecture invariant:** handlers are thin: they parse the request, call one engine method
//! and map the result or `EngineError` to Azure's wire shapes. No SQL and no claim-building here.

mod agent;
mod arm;
mod audit_api;
mod auth;
pub mod config;
mod connection;
mod context;
mod cosmos;
mod deployments;
mod entra;
mod error;
mod files;
mod graph;
mod images;
mod limits;
mod metrics;
mod odata;
mod portal;
#[cfg(test)]
mod test_server;
mod throttle;
mod tls;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{any, get};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openmi_engine::{Engine, EngineConfig, EngineError, SystemClock};
use openmi_store::{Store, StoreError};
use serde_json::json;
use tokio::net::TcpListener;

use config::{prepare_data_dir, save_kek, ServerConfig};
pub use config::{RotateArgs, ServerArgs, StoreArgs};
use connection::{Activity, BusyBody, ClientTimeouts, Watched};
use context::RequestContext;

/// Shared state of the request handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Engine,
    // Invariant: not empty; the first entry is the primary URL.
    base_urls: Arc<Vec<String>>,
    /// Turns `true` when the server starts shutting down; long polls answer at once then.
    pub shutting_down: tokio::sync::watch::Receiver<bool>,
    /// `--header-timeout` and `--idle-timeout`; the header timeout also bounds a pause within a
    /// request body (`limits.rs`).
    pub client_timeouts: ClientTimeouts,
    /// What `/metrics` reports.
    pub metrics: Arc<metrics::ServerMetrics>,
    /// Per-client and per-address limits on the token endpoints.
    pub throttle: Arc<throttle::Throttle>,
}

impl AppState {
    /// The `https://host:port` this request came in on, if it is one of the server's own names;
    /// otherwise the primary URL. Token issuers and discovery documents use it.
    pub fn base_url(&self, context: &RequestContext) -> &str {
        if let Some(host) = &context.host {
            let candidate = format!("https://{}", host.to_ascii_lowercase());
            if let Some(found) = self.base_urls.iter().find(|url| **url == candidate) {
                return found;
            }
        }
        self.base_urls
            .first()
            .map(String::as_str)
            .unwrap_or("https://127.0.0.1:8443")
    }
}

/// The whole HTTP application; tests can serve it on any listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route("/livez", get(metrics::livez))
        .route("/readyz", get(metrics::readyz))
        .route("/metrics", get(metrics::metrics_get))
        .route("/v1.0/auditLogs/signIns", get(audit_api::sign_ins))
        .route(
            "/v1.0/auditLogs/directoryAudits",
            get(audit_api::directory_audits),
        )
        .merge(entra::router())
        .merge(graph::router())
        .merge(agent::router())
        .merge(portal::router())
        .route("/metadata/endpoints", get(arm::metadata_endpoints))
        .route("/openmi/vm-image-aliases.json", get(images::alias_document))
        .route("/cosmos/{account}", any(cosmos::data_plane_root))
        .route("/cosmos/{account}/", any(cosmos::data_plane_root))
        .route("/cosmos/{account}/{*rest}", any(cosmos::data_plane))
        .fallback(arm::dispatch)
        // Every body passes `limits::enforce` (size and nesting, in each protocol's error
        // shape), which leaves it whole in memory; axum's own 2 MB default would answer a
        // 3 MB ARM body in plain text, so it is off.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ))
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::track,
        ))
        .with_state(state)
}

fn store_error(error: StoreError, url: &str) -> anyhow::Error {
    let shown = redact_url(url);
    match error {
        StoreError::NewerSchema { found, known } => anyhow!(
            "the database at {shown} was written by a newer openmi (schema {found}, this build knows {known}); refusing to touch it"
        ),
        other => anyhow!("cannot open the database at {shown}: {other}"),
    }
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn open_store(url: &str) -> anyhow::Result<Store> {
    match tokio::time::timeout(Duration::from_secs(30), Store::open(url)).await {
        Ok(result) => result.map_err(|error| store_error(error, url)),
        Err(_) => Err(anyhow!(
            "cannot open the database at {}: no answer within 30 s",
            redact_url(url)
        )),
    }
}

fn engine_error(error: EngineError) -> anyhow::Error {
    match error {
        EngineError::KekMismatch => anyhow!(
            "the key-encryption key does not match the one this database was bootstrapped with; start every server of this database with the same --key-encryption-key-file (or OPENMI_KEY_ENCRYPTION_KEY)"
        ),
        other => anyhow!("start-up failed: {other}"),
    }
}

/// `openmi server`: runs until SIGTERM or Ctrl-C.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = ServerConfig::resolve(&args)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AddrInUse => anyhow!(
                "cannot listen on {}: the address is already in use",
                config.listen
            ),
            _ => anyhow!("cannot listen on {}: {error}", config.listen),
        })?;
    let mut extra_listeners = Vec::new();
    for address in &config.also_listen {
        extra_listeners.push(
            TcpListener::bind(address)
                .await
                .map_err(|error| anyhow!("cannot listen on {address} (--also-listen): {error}"))?,
        );
    }
    let tls_config = tls::server_config(&config.tls)?;
    tracing::info!(database = %redact_url(&config.database_url), "opening the store (and migrating its schema)");
    let store = open_store(&config.database_url).await?;
    let engine_config = EngineConfig {
        app_token_lifetime: config.app_token_lifetime,
        user_token_lifetime: config.user_token_lifetime,
        mi_token_lifetime: config.mi_token_lifetime,
        deployment_wait: config.deployment_wait,
        lockout: config.lockout,
        audit: config.audit,
        audit_retention: config.audit_retention,

        own_resources: config.base_urls.clone(),
        ..EngineConfig::default()
    };
    let ServerConfig {
        data_dir,
        kek,
        kek_to_save,
        tls: tls_files,
        base_urls,
        key_reload_interval,
        listen,
        client_timeouts,
        token_rate_limit,
        token_address_rate_limit,
        ..
    } = config;
    let (engine, outcome) = Engine::start(store, kek, Arc::new(SystemClock), engine_config)
        .await
        .map_err(engine_error)?;
    if let Some((path, hex)) = kek_to_save {
        save_kek(&path, &hex)?;
    }
    let url = base_urls.first().cloned().unwrap_or_default();
    let ca_cert_path = tls_files
        .ca_cert_path
        .as_ref()
        .map(|path| path.display().to_string());
    let bootstrap_path = data_dir.join("bootstrap.json");
    if !bootstrap_path.exists() {
        let secrets = outcome.secrets.as_ref();
        let document = json!({
            "url": url,
            "tenantId": outcome.tenant_id.to_string(),
            "subscriptionId": outcome.subscription_id.to_string(),
            "subscriptionName": outcome.subscription_name,
            "adminUsername": secrets.map(|secrets| secrets.admin_username.clone()),
            "adminPassword": secrets.map(|secrets| secrets.admin_password.clone()),
            "clientId": secrets.map(|secrets| secrets.client_id.to_string()),
            "clientSecret": secrets.map(|secrets| secrets.client_secret.clone()),
            "caCertPath": ca_cert_path,
        });
        let text =
            serde_json::to_string_pretty(&document).context("cannot encode bootstrap.json")?;
        files::write_private_file(&bootstrap_path, text.as_bytes())?;
    }
    print_banner(&url, &outcome, ca_cert_path.as_deref(), &bootstrap_path);
    tracing::info!(listen = %listen, url = %url, tenant = %outcome.tenant_id, backend = ?engine.store().backend(), "openmi server ready");

    let reload_engine = engine.clone();
    let reload_task = tokio::spawn(async move {
        let mut interval = tokio::time::interval(key_reload_interval);
        loop {
            interval.tick().await;
            if let Err(error) = reload_engine.reload_keys().await {
                tracing::warn!(error = %error, "signing key reload failed");
            }
        }
    });
    // Authorization and resource changes made through another server reach this one within a poll
    // interval (100 ms).
    let rbac_engine = engine.clone();
    let rbac_task = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        loop {
            interval.tick().await;
            if let Err(error) = rbac_engine.refresh_rbac(false).await {
                tracing::warn!(error = %error, "RBAC refresh failed");
            }
            if let Err(error) = rbac_engine.refresh_read_cache().await {
                tracing::warn!(error = %error, "read cache refresh failed");
            }
        }
    });
    let (shutdown_sender, shutting_down) = tokio::sync::watch::channel(false);
    let state = AppState {
        metrics: Arc::new(metrics::ServerMetrics::new(&engine)),
        engine: engine.clone(),
        base_urls: Arc::new(base_urls),
        shutting_down,
        client_timeouts,
        throttle: Arc::new(throttle::Throttle::new(
            token_rate_limit,
            token_address_rate_limit,
        )),
    };
    // `--also-listen`: the same application on more addresses, stopping with the main one.
    let mut extra_servers = Vec::new();
    for listener in extra_listeners {
        let (sender, _) = tokio::sync::watch::channel(false);
        extra_servers.push(tokio::spawn(serve(
            listener,
            tls_config.clone(),
            router(state.clone()),
            client_timeouts,
            sender,
        )));
    }
    serve(
        listener,
        tls_config,
        router(state),
        client_timeouts,
        shutdown_sender,
    )
    .await;
    for extra in extra_servers {
        let _ = tokio::time::timeout(Duration::from_secs(11), extra).await;
    }
    reload_task.abort();
    rbac_task.abort();
    engine.store().close().await;
    tracing::info!("openmi server stopped");
    Ok(())
}

fn print_banner(
    url: &str,
    outcome: &openmi_engine::BootstrapOutcome,
    ca_cert_path: Option<&str>,
    bootstrap_path: &std::path::Path,
) {
    println!("openmi server listening on {url}");
    println!("  tenant:        {}", outcome.tenant_id);
    println!(
        "  subscription:  {} ({})",
        outcome.subscription_id, outcome.subscription_name
    );
    match &outcome.secrets {
        Some(secrets) => {
            // Secrets go to an interactive terminal only; redirected output (a log file) never
            // holds them. bootstrap.json (0600) always does.
            let interactive = std::io::IsTerminal::is_terminal(&std::io::stdout());
            println!("  admin user:    {}", secrets.admin_username);
            if interactive {
                println!("  admin password: {}", secrets.admin_password);
                println!(
                    "  bootstrap service principal: {} (secret: {})",
                    secrets.client_id, secrets.client_secret
                );
                println!("  (shown once; also in {})", bootstrap_path.display());
            } else {
                println!("  bootstrap service principal: {}", secrets.client_id);
                println!(
                    "  admin password and client secret: in {}",
                    bootstrap_path.display()
                );
            }
        }
        None => println!("  credentials:   see {}", bootstrap_path.display()),
    }
    if let Some(path) = ca_cert_path {
        println!("  CA certificate: {path}  (export REQUESTS_CA_BUNDLE={path})");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// The request with runs of `/` in its path made one, before routing, as ARM treats them: az
/// 2.91 registers a cloud from `{arm}/` and asks `//metadata/endpoints`, and its `resource
/// delete` sends `.../providers/Microsoft.Compute//virtualMachines/...` (research/az-cli.md §1, §3).
fn collapse_slashes<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let path = request.uri().path();
    if !path.contains("//") {
        return request;
    }
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    if let Some(query) = request.uri().query() {
        collapsed.push('?');
        collapsed.push_str(query);
    }
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = collapsed.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Accepts TLS connections until a shutdown signal, then lets open requests finish (10 s at most).
/// A connection whose client is too slow to send a request's headers, or that waits for its
/// next request longer than the idle timeout, is closed (`connection.rs`).
async fn serve(
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    app: Router,
    timeouts: ClientTimeouts,
    shutdown_sender: tokio::sync::watch::Sender<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::warn!(error = %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let activity = Activity::new();
                let service = hyper_util::service::TowerToHyperService::new(
                    connection_service(app.clone(), activity.clone(), peer),
                );
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        _ => return,
                    };
                    let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    let io = TokioIo::new(Watched::new(tls, activity.clone(), !http2));
                    let connection = builder.serve_connection_with_upgrades(io, service).into_owned();
                    // Dropping the connection closes it; `expired` resolves only while no
                    // request is open on it.
                    tokio::select! {
                        _ = watcher.watch(connection) => {}
                        _ = activity.expired(timeouts) => {}
                    }
                });
            }
            _ = &mut shutdown => {
                let _ = shutdown_sender.send(true);
                break;
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for open requests");
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// The application as one connection serves it: paths slash-collapsed, and each request open in
/// the connection's `Activity` until its response body has been sent.
fn connection_service(
    app: Router,
    activity: Activity,
    peer: std::net::SocketAddr,
) -> impl tower::Service<
    axum::http::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |request: axum::http::Request<hyper::body::Incoming>| {
        let busy = activity.begin();
        let mut request = collapse_slashes(request);
        request.extensions_mut().insert(activity.clone());
        request.extensions_mut().insert(throttle::PeerAddr(peer));
        let app = app.clone();
        async move {
            let response = tower::ServiceExt::oneshot(app, request).await?;
            Ok(response.map(|body| BusyBody::wrap(body, busy)))
        }
    })
}

/// `openmi server keys rotate`: adds a signing key through the store; running servers pick it up.
pub async fn rotate_keys(args: RotateArgs) -> anyhow::Result<()> {
    let data_dir = prepare_data_dir(&args.store.data_dir)?;
    let url = args.store.database_url(&data_dir);
    let (kek, generated) = args.store.load_kek(&data_dir)?;
    if generated.is_some() {
        return Err(anyhow!("no key-encryption key found: pass --key-encryption-key-file or run from the server's data directory"));
    }
    let store = open_store(&url).await?;
    if store
        .meta("bootstrap")
        .await
        .map_err(|error| store_error(error, &url))?
        .is_none()
    {
        return Err(anyhow!(
            "the database at {} has not been bootstrapped; start `openmi server` first",
            redact_url(&url)
        ));
    }
    let now = openmi_engine::Clock::now(&SystemClock);
    let kid = openmi_engine::rotate_signing_key(
        &store,
        &kek,
        now,
        args.publish_delay,
        EngineConfig::default().max_token_lifetime,
    )
    .await
    .map_err(engine_error)?;
    store.close().await;
    println!(
        "{}",
        json!({"kid": kid, "activatesAt": now + args.publish_delay})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_of_slashes_become_one() {
        let request = axum::http::Request::builder()
            .uri("//subscriptions/s/providers/Microsoft.Compute//virtualMachines/vm?api-version=1")
            .body(())
            .unwrap();
        let request = super::collapse_slashes(request);
        assert_eq!(
            request.uri().path(),
            "/subscriptions/s/providers/Microsoft.Compute/virtualMachines/vm"
        );
        assert_eq!(request.uri().query(), Some("api-version=1"));
    }

    use super::redact_url;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///x?mode=rwc"), "sqlite:///x?mode=rwc");
    }
}
