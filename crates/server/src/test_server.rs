//! A whole server for tests that drive the router: a bootstrapped engine on a temporary SQLite
//! store and `router(state)` with every layer, requests sent with `tower::ServiceExt::oneshot`
//! (no listener, no TLS). Its own runtime, so synchronous tests (proptest's runner) can use it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use openmi_engine::{
    BootstrapSecrets, ClientAuth, Engine, EngineConfig, GrantRequest, ResourceRequest, SystemClock,
};
use serde_json::{json, Value};

use crate::connection::ClientTimeouts;
use crate::AppState;

pub(crate) const BASE_URL: &str = "https://127.0.0.1:8443";

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{} answered a body that is not JSON ({error}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

// Fields drop in order: the application and the engine (the store's pool) while the runtime
// still runs, then the runtime, then the directory.
pub(crate) struct TestServer {
    app: axum::Router,
    pub engine: Engine,
    pub secrets: BootstrapSecrets,
    pub subscription_id: String,
    _shutdown: tokio::sync::watch::Sender<bool>,
    runtime: tokio::runtime::Runtime,
    _directory: tempfile::TempDir,
}

impl TestServer {
    pub(crate) fn start() -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let directory = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            directory.path().join("openmi.db").display()
        );
        let (engine, outcome) = runtime.block_on(async {
            let store = openmi_store::Store::open(&url).await.unwrap();
            let (kek, _) = openmi_token::Kek::generate().unwrap();
            let config = EngineConfig {
                own_resources: vec![BASE_URL.to_string()],
                ..EngineConfig::default()
            };
            Engine::start(store, kek, Arc::new(SystemClock), config)
                .await
                .unwrap()
        });
        let (shutdown, shutting_down) = tokio::sync::watch::channel(false);
        let state = AppState {
            metrics: Arc::new(crate::metrics::ServerMetrics::new(&engine)),
            engine: engine.clone(),
            base_urls: Arc::new(vec![BASE_URL.to_string()]),
            shutting_down,
            client_timeouts: ClientTimeouts {
                header: Duration::from_secs(10),
                idle: Duration::from_secs(60),
            },
            // No limit: a property test sends hundreds of token requests.
            throttle: Arc::new(crate::throttle::Throttle::new(0, 0)),
        };
        let app = {
            let _entered = runtime.enter();
            crate::router(state)
        };
        TestServer {
            app,
            engine,
            secrets: outcome.secrets.unwrap(),
            subscription_id: outcome.subscription_id.to_string(),
            _shutdown: shutdown,
            runtime,
            _directory: directory,
        }
    }

    pub(crate) fn tenant_id(&self) -> String {
        self.engine.tenant().id.to_string()
    }

    /// Sends a request through the whole application and reads the answer.
    pub(crate) fn send(&self, request: Request<Body>) -> Answer {
        self.runtime.block_on(async {
            let response = tower::ServiceExt::oneshot(self.app.clone(), request)
                .await
                .unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
    }

    /// An ARM token of the bootstrap service principal.
    pub(crate) fn arm_token(&self) -> String {
        self.token("https://management.azure.com/.default").unwrap()
    }

    /// A token of the bootstrap service principal for `scope` (client credentials).
    pub(crate) fn token(&self, scope: &str) -> Result<String, openmi_engine::EngineError> {
        let request = GrantRequest {
            tenant: self.tenant_id(),
            grant_type: Some("client_credentials".to_string()),
            client_id: Some(self.secrets.client_id.to_string()),
            client_auth: ClientAuth::Secret(self.secrets.client_secret.clone()),
            resource: ResourceRequest::V2Scope(Some(scope.to_string())),
            username: None,
            password: None,
            refresh_token: None,
            code: None,
            redirect_uri: None,
            code_verifier: None,
            device_code: None,
            client_info: false,
            issuer_base: BASE_URL.to_string(),
        };
        self.runtime
            .block_on(self.engine.grant(request))
            .map(|issued| issued.access_token)
    }

    /// An ARM request as the bootstrap service principal; panics unless it succeeds.
    pub(crate) fn arm(&self, token: &str, method: Method, path: &str, body: Value) -> Value {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(match body {
                Value::Null => Body::empty(),
                body => Body::from(body.to_string()),
            })
            .unwrap();
        let answer = self.send(request);
        assert!(
            answer.status.is_success(),
            "{path}: {} {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        if answer.body.is_empty() {
            Value::Null
        } else {
            answer.json()
        }
    }

    /// A Cosmos DB account `account` in group `g` with database `db` and container `c`
    /// (partition key `/pk`); answers its `listKeys`.
    pub(crate) fn cosmos_account(&self, account: &str) -> Value {
        let token = self.arm_token();
        let group = format!("/subscriptions/{}/resourceGroups/g", self.subscription_id);
        self.arm(
            &token,
            Method::PUT,
            &format!("{group}?api-version=2021-04-01"),
            json!({"location": "westus"}),
        );
        let account_id =
            format!("{group}/providers/Microsoft.DocumentDB/databaseAccounts/{account}");
        let version = "api-version=2024-11-15";
        self.arm(
            &token,
            Method::PUT,
            &format!("{account_id}?{version}"),
            json!({
                "location": "westus",
                "kind": "GlobalDocumentDB",
                "properties": {
                    "databaseAccountOfferType": "Standard",
                    "locations": [{"locationName": "westus", "failoverPriority": 0}],
                },
            }),
        );
        self.arm(
            &token,
            Method::PUT,
            &format!("{account_id}/sqlDatabases/db?{version}"),
            json!({"properties": {"resource": {"id": "db"}, "options": {}}}),
        );
        self.arm(
            &token,
            Method::PUT,
            &format!("{account_id}/sqlDatabases/db/containers/c?{version}"),
            json!({"properties": {"resource": {
                "id": "c",
                "partitionKey": {"paths": ["/pk"], "kind": "Hash", "version": 2},
            }, "options": {}}}),
        );
        self.arm(
            &token,
            Method::POST,
            &format!("{account_id}/listKeys?{version}"),
            Value::Null,
        )
    }
}

/// Bytes a header value may hold (no controls but tab): visible ASCII and obs-text.
pub(crate) fn header_bytes(most: usize) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    prop::collection::vec(
        prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff],
        0..most,
    )
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.runtime.block_on(self.engine.store().close());
    }
}
