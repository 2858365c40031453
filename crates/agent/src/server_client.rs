//! The agent's HTTPS client to the openmi server: enrolment, tokens, the instance document and
//! the change watch (docs/design/agent-protocol.md §2-§6).
//!
//! Every call but enrolment carries the agent's assertion. Replies are sorted into what the
//! caller acts on: the server unreachable (serve from the cache), the agent refused (401: the
//! registration is gone), a refusal with an OAuth-shaped body (passed through to the workload).
//! Nothing here logs a token or a join token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::assertion::AssertionSigner;
use crate::metrics::{AgentMetrics, ServerOutcome};
use crate::AgentError;

/// Time allowed to open a connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for an ordinary call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for one long poll (the server answers after about 45 s).
const WATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A client bound to one server. Clones share the connection pool, the key and the batch queue.
#[derive(Clone)]
pub struct ServerClient {
    http: reqwest::Client,
    server: String,
    signer: Option<Arc<AssertionSigner>>,
    batch: Arc<Mutex<BatchQueue>>,
    /// The agent's counters (`/metrics`); this client counts its calls and their outcomes.
    metrics: Arc<AgentMetrics>,
}

/// Token calls waiting to be sent, how many sent ones are not answered yet, and in how many
/// calls to the server.
struct BatchQueue {
    waiting: Vec<PendingToken>,
    in_flight: usize,
    /// Calls to the server (`/token` or `/tokens`) not finished yet.
    calls: usize,
    /// A sender is spawned and has not taken the waiting calls yet.
    sender_spawned: bool,
    /// [`SEND_AT_ONCE_BELOW`], lower in tests.
    send_at_once_below: usize,
}

impl Default for BatchQueue {
    fn default() -> BatchQueue {
        BatchQueue {
            waiting: Vec::new(),
            in_flight: 0,
            calls: 0,
            sender_spawned: false,
            send_at_once_below: SEND_AT_ONCE_BELOW,
        }
    }
}

impl BatchQueue {
    /// Whether to spawn a sender now (and note that one is).
    fn spawn_sender(&mut self) -> bool {
        let spawn = !self.sender_spawned
            && !self.waiting.is_empty()
            && self.in_flight < self.send_at_once_below
            && self.calls < MAX_CALLS;
        self.sender_spawned |= spawn;
        spawn
    }
}

/// One token call waiting in the queue.
struct PendingToken {
    selector: Selector,
    resource: String,
    reply: tokio::sync::oneshot::Sender<Result<MintedToken, ServerCallError>>,
}

/// A token call leaves at once while fewer than this many are in flight (sent, not answered);
/// otherwise it waits, and everything waiting leaves in one batch when answers bring the count
/// below this again. So a lightly used agent never delays a call, and under load batches are
/// large while the server still has this many tokens to sign as the next batch gathers.
/// Measured with `scripts/bench-agent` (64 connections, 25 identities, 2 cores): 8, 16, 24, 32,
/// 40, 48 and 64 gave 4 370-4 410, 4 420, 4 350, 4 450-4 525, 4 525-4 565, 4 490 and
/// 4 130-4 200 mints/s; below 32 the server runs dry between batches, above 40 batches shrink.
const SEND_AT_ONCE_BELOW: usize = 32;
/// At most this many token calls to the server at once (whatever waits meanwhile goes in the next
/// batch), so an agent holds a few connections to the server, not one per token in flight: a
/// burst of misses used to open ~38 pooled TLS connections, 2-3 MB of the agent's memory, and a
/// fleet of agents would hold that many each at the server. Measured with `scripts/bench-agent`
/// (BENCHMARKS.md, agent).
pub(crate) const MAX_CALLS: usize = 4;
/// The most token requests in one batch (the server's limit too).
const MAX_BATCH: usize = 64;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerCallError {
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    #[error("the server refused the agent: ({error}) {description}")]
    Unauthorized { error: String, description: String },
    #[error("the server answered {status}: ({error}) {description}")]
    Refused {
        status: u16,
        error: String,
        description: String,
    },
    #[error("the server answered {status}")]
    ServerFailure { status: u16 },
    #[error("the server sent a malformed reply: {0}")]
    Malformed(String),
    #[error("AG0003: the agent has no key to sign with")]
    NotEnrolled,
    #[error(transparent)]
    Signing(#[from] crate::assertion::SigningError),
}

impl ServerCallError {
    /// The same failure again, for every call of a batch that failed as a whole.
    fn duplicate(&self) -> ServerCallError {
        match self {
            ServerCallError::Unreachable(detail) => ServerCallError::Unreachable(detail.clone()),
            ServerCallError::Unauthorized { error, description } => ServerCallError::Unauthorized {
                error: error.clone(),
                description: description.clone(),
            },
            ServerCallError::Refused {
                status,
                error,
                description,
            } => ServerCallError::Refused {
                status: *status,
                error: error.clone(),
                description: description.clone(),
            },
            ServerCallError::ServerFailure { status } => {
                ServerCallError::ServerFailure { status: *status }
            }
            ServerCallError::Malformed(detail) => ServerCallError::Malformed(detail.clone()),
            ServerCallError::NotEnrolled => ServerCallError::NotEnrolled,
            ServerCallError::Signing(_) => ServerCallError::Signing(crate::assertion::SigningError),
        }
    }
}

/// `200` of `POST /openmi/agent/enroll`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrolmentReply {
    pub agent_id: String,
    pub vm_resource_id: String,
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub subscription_id: String,
}

/// `200` of `POST /openmi/agent/token`.
#[derive(Debug, Deserialize)]
pub struct MintedToken {
    pub access_token: String,
    #[serde(deserialize_with = "integer_or_string")]
    pub expires_in: i64,
    #[serde(deserialize_with = "integer_or_string")]
    pub expires_on: i64,
    #[serde(default, deserialize_with = "integer_or_string")]
    pub not_before: i64,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub object_id: String,
    #[serde(default)]
    pub msi_res_id: String,
}

/// The instance document of agent protocol §5.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDocument {
    pub version: i64,
    pub vm: Value,
    #[serde(default)]
    pub extensions: Vec<Value>,
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub subscription_id: String,
    #[serde(default)]
    pub resource_group_name: String,
}

/// The identity a token request names (agent protocol §4: at most one selector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// No selector: the system-assigned identity, else the only user-assigned one.
    Default,
    ClientId(String),
    ObjectId(String),
    /// An identity's ARM id (`msi_res_id`, `mi_res_id`).
    ResourceId(String),
}

impl Selector {
    /// A key naming the selector, case-insensitive as the ids it holds.
    pub fn key(&self) -> String {
        match self {
            Selector::Default => "default".to_string(),
            Selector::ClientId(id) => format!("client_id={}", id.to_ascii_lowercase()),
            Selector::ObjectId(id) => format!("object_id={}", id.to_ascii_lowercase()),
            Selector::ResourceId(id) => format!("msi_res_id={}", id.to_ascii_lowercase()),
        }
    }
}

fn integer_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Number(number) => number
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("not an integer")),
        Value::String(text) => text.parse().map_err(serde::de::Error::custom),
        _ => Err(serde::de::Error::custom("expected an integer")),
    }
}

/// The error text of `error` with its sources, as reqwest hides the useful part in them.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

impl ServerClient {
    /// A client for `server` (https), trusting only `ca_cert_pem` when given, else the system roots.
    pub fn new(server: &str, ca_cert_pem: Option<&str>) -> Result<ServerClient, AgentError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("openmi-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            // The token calls' connections, the watch's and one for the rest.
            .pool_max_idle_per_host(MAX_CALLS + 2)
            // HTTP/1.1, a pooled connection per call in flight: every batch's answer lines then
            // travel on their own connection, which the server serves as a task of its own,
            // instead of all sharing one HTTP/2 connection task that waits whenever the core
            // it is on is signing. Measured with `scripts/bench-agent`: 4 740 against 4 330
            // mints/s (25 identities, 2 cores).
            .http1_only();
        if let Some(pem) = ca_cert_pem {
            let certificate = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|error| AgentError::HttpClient(format!("the CA certificate: {error}")))?;
            builder = builder.tls_certs_only([certificate]);
        }
        Ok(ServerClient {
            http: builder
                .build()
                .map_err(|error| AgentError::HttpClient(describe(&error)))?,
            server: server.trim_end_matches('/').to_string(),
            signer: None,
            batch: Arc::default(),
            metrics: Arc::default(),
        })
    }

    /// Calls wait for a batch from `count` in flight on, instead of [`SEND_AT_ONCE_BELOW`].
    #[cfg(test)]
    pub fn with_send_at_once_below(self, count: usize) -> ServerClient {
        self.batch_queue().send_at_once_below = count;
        self
    }

    /// The agent's counters.
    pub fn metrics(&self) -> &Arc<AgentMetrics> {
        &self.metrics
    }

    /// The same client, authenticating its calls with `signer`.
    pub fn with_signer(mut self, signer: AssertionSigner) -> ServerClient {
        self.signer = Some(Arc::new(signer));
        self
    }

    /// `POST /openmi/agent/enroll` (no authentication: the join token is the proof).
    pub async fn enroll(
        &self,
        join_token: &str,
        public_key_der: &[u8],
    ) -> Result<EnrolmentReply, ServerCallError> {
        let body = json!({"joinToken": join_token, "publicKey": STANDARD.encode(public_key_der)});
        let request = self
            .http
            .post(format!("{}/openmi/agent/enroll", self.server))
            .timeout(CALL_TIMEOUT)
            .json(&body);
        self.send(request).await
    }

    /// A token for `resource` as the identity `selector` names. Calls made while others are in
    /// flight wait and go together in one `POST /openmi/agent/tokens` (agent protocol §4.3);
    /// each still gets exactly the answer its own `/openmi/agent/token` call would.
    pub async fn token(
        &self,
        selector: &Selector,
        resource: &str,
    ) -> Result<MintedToken, ServerCallError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let send_now = {
            let mut queue = self.batch_queue();
            queue.waiting.push(PendingToken {
                selector: selector.clone(),
                resource: resource.to_string(),
                reply,
            });
            queue.spawn_sender()
        };
        if send_now {
            tokio::spawn(batch_sender(self.clone()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ServerCallError::Unreachable(
                "the token call was abandoned".to_string(),
            ))
        })
    }

    fn batch_queue(&self) -> std::sync::MutexGuard<'_, BatchQueue> {
        self.batch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends what waits (up to a batch): one call as `/openmi/agent/token`, several as
    /// `/openmi/agent/tokens`, whose answers arrive one line per token as each is signed.
    async fn send_waiting(&self) {
        let calls: Vec<PendingToken> = {
            let mut queue = self.batch_queue();
            queue.sender_spawned = false;
            let take = queue.waiting.len().min(MAX_BATCH);
            queue.in_flight += take;
            queue.calls += 1;
            queue.waiting.drain(..take).collect()
        };
        let mut calls = InFlight {
            client: self,
            calls: calls.into_iter().map(Some).collect(),
        };
        match calls.calls.as_slice() {
            [] => {}
            [Some(call)] => {
                let result = self.token_call(&call.selector, &call.resource).await;
                calls.answer(0, result);
            }
            _ => {
                // Whatever the reply left unanswered fails with its error.
                let failure = match self.send_batch(&mut calls).await {
                    Ok(()) => ServerCallError::Malformed(
                        "the batch reply does not answer every request".to_string(),
                    ),
                    Err(failure) => failure,
                };
                for index in 0..calls.calls.len() {
                    calls.answer(index, Err(failure.duplicate()));
                }
            }
        }
    }

    /// `POST /openmi/agent/tokens` for `calls`, answering each as its line arrives.
    async fn send_batch(&self, calls: &mut InFlight<'_>) -> Result<(), ServerCallError> {
        let requests: Vec<Value> = calls
            .calls
            .iter()
            .flatten()
            .map(|call| token_request_body(&call.selector, &call.resource))
            .collect();
        let request = self
            .http
            .post(format!("{}/openmi/agent/tokens", self.server))
            .timeout(CALL_TIMEOUT)
            .json(&json!({ "requests": requests }));
        let mut response = self.respond_signed(request).await?;
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| ServerCallError::Unreachable(describe(&error)))?
        {
            pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = memchr::memchr(b'\n', &pending[start..]) {
                let line: BatchLine = parse_reply(&pending[start..start + end])?;
                calls.answer(line.index, batch_item(line.status, line.body.get()));
                start += end + 1;
            }
            pending.drain(..start);
        }
        Ok(())
    }

    /// `count` token calls in flight were answered (or dropped), and with `call_ended` the call to
    /// the server that carried them is over; what waits leaves when few remain.
    fn answered(&self, count: usize, call_ended: bool) {
        let send = {
            let mut queue = self.batch_queue();
            queue.in_flight = queue.in_flight.saturating_sub(count);
            if call_ended {
                queue.calls = queue.calls.saturating_sub(1);
            }
            queue.spawn_sender()
        };
        if send {
            tokio::spawn(batch_sender(self.clone()));
        }
    }

    /// `POST /openmi/agent/token`: one call.
    async fn token_call(
        &self,
        selector: &Selector,
        resource: &str,
    ) -> Result<MintedToken, ServerCallError> {
        let request = self
            .http
            .post(format!("{}/openmi/agent/token", self.server))
            .timeout(CALL_TIMEOUT)
            .json(&token_request_body(selector, resource));
        self.send_signed(request).await
    }

    /// `GET /openmi/agent/instance`.
    pub async fn instance(&self) -> Result<InstanceDocument, ServerCallError> {
        let request = self
            .http
            .get(format!("{}/openmi/agent/instance", self.server))
            .timeout(CALL_TIMEOUT);
        let reply = self.send_signed(request).await?;
        serde_json::from_value(reply).map_err(|error| ServerCallError::Malformed(error.to_string()))
    }

    /// `GET /openmi/agent/watch?version=N`: returns when the document differs from `version`, or
    /// after the server's poll period with the same version.
    pub async fn watch(&self, version: i64) -> Result<InstanceDocument, ServerCallError> {
        let request = self
            .http
            .get(format!(
                "{}/openmi/agent/watch?version={version}",
                self.server
            ))
            .timeout(WATCH_TIMEOUT);
        let reply = self.send_signed(request).await?;
        serde_json::from_value(reply).map_err(|error| ServerCallError::Malformed(error.to_string()))
    }

    async fn send_signed<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ServerCallError> {
        parse_reply(&self.send_signed_bytes(request).await?)
    }

    /// The body of a 2xx answer to `request` sent with the agent's assertion.
    async fn send_signed_bytes(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<axum::body::Bytes, ServerCallError> {
        body_bytes(self.respond_signed(request).await?).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ServerCallError> {
        parse_reply(&body_bytes(respond(&self.metrics, request).await?).await?)
    }

    /// `respond` with the agent's assertion.
    async fn respond_signed(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ServerCallError> {
        let signer = self.signer.as_ref().ok_or(ServerCallError::NotEnrolled)?;
        let authorization = signer.authorization(now())?;
        let result = respond(
            &self.metrics,
            request.header(reqwest::header::AUTHORIZATION, authorization),
        )
        .await;
        if let Err(ServerCallError::Unauthorized { .. }) = &result {
            // A refused assertion is never sent again (clock skew, a rotated registration).
            signer.forget();
        }
        result
    }
}

/// A 2xx answer to `request` (its body still to read); any other answer sorted into its failure.
/// Counted in `metrics` by how it ended.
async fn respond(
    metrics: &AgentMetrics,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ServerCallError> {
    let response = request.send().await.map_err(|error| {
        metrics.server_call(ServerOutcome::Unreachable);
        ServerCallError::Unreachable(describe(&error))
    })?;
    let status = response.status();
    metrics.server_call(if status.is_success() {
        ServerOutcome::Ok
    } else if status.is_server_error() {
        ServerOutcome::ServerError
    } else {
        ServerOutcome::Refused
    });
    if status.is_success() {
        return Ok(response);
    }
    let bytes = body_bytes(response).await?;
    Err(classify_failure(status.as_u16(), &bytes))
}

/// The whole body of `response`.
async fn body_bytes(response: reqwest::Response) -> Result<axum::body::Bytes, ServerCallError> {
    response
        .bytes()
        .await
        .map_err(|error| ServerCallError::Unreachable(describe(&error)))
}

/// A task sending what waits in `client`'s queue (boxed: a sender may start another).
fn batch_sender(
    client: ServerClient,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move { client.send_waiting().await })
}

/// A 2xx body as `T`; a body that is not one is a malformed reply.
fn parse_reply<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ServerCallError> {
    serde_json::from_slice(bytes).map_err(|error| ServerCallError::Malformed(error.to_string()))
}

/// The body of one token request.
fn token_request_body(selector: &Selector, resource: &str) -> Value {
    let mut body = json!({ "resource": resource });
    match selector {
        Selector::Default => {}
        Selector::ClientId(id) => body["clientId"] = json!(id),
        Selector::ObjectId(id) => body["objectId"] = json!(id),
        Selector::ResourceId(id) => body["msiResId"] = json!(id),
    }
    body
}

/// `200` of `POST /openmi/agent/tokens`: one answer per request, each body left unparsed until
/// its status says what it is.
#[derive(Deserialize)]
struct BatchLine<'a> {
    index: usize,
    status: u16,
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
}

/// The token calls one call to the server carries: each is answered once, and leaves the in-flight
/// count (which may send what waits) whether answered or dropped unanswered; dropping the guard
/// ends the call.
struct InFlight<'a> {
    client: &'a ServerClient,
    calls: Vec<Option<PendingToken>>,
}

impl InFlight<'_> {
    /// Answers call `index` if it is still unanswered.
    fn answer(&mut self, index: usize, result: Result<MintedToken, ServerCallError>) {
        if let Some(call) = self.calls.get_mut(index).and_then(Option::take) {
            let _ = call.reply.send(result);
            self.client.answered(1, false);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let unanswered = self.calls.iter().flatten().count();
        self.client.answered(unanswered, true);
    }
}

/// One answer of a batch reply, as its own call would have ended.
fn batch_item(status: u16, body: &str) -> Result<MintedToken, ServerCallError> {
    if (200..300).contains(&status) {
        return parse_reply(body.as_bytes());
    }
    Err(classify_failure(status, body.as_bytes()))
}

/// Sorts a non-2xx reply: 401 is the agent refused, another 4xx with an OAuth-shaped body is a
/// refusal to pass on, anything else a server failure.
fn classify_failure(status: u16, body: &[u8]) -> ServerCallError {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let description = body
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match status {
        401 => ServerCallError::Unauthorized { error, description },
        400..=499 if !error.is_empty() && status != 404 && status != 429 => {
            ServerCallError::Refused {
                status,
                error,
                description,
            }
        }
        _ => ServerCallError::ServerFailure { status },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_by_what_the_agent_does_next() {
        let oauth = br#"{"error":"invalid_request","error_description":"Identity not found"}"#;
        assert!(matches!(
            classify_failure(400, oauth),
            ServerCallError::Refused { status: 400, ref error, ref description }
                if error == "invalid_request" && description == "Identity not found"
        ));
        assert!(matches!(
            classify_failure(401, br#"{"error":"invalid_client","error_description":"gone"}"#),
            ServerCallError::Unauthorized { ref description, .. } if description == "gone"
        ));
        assert!(matches!(
            classify_failure(404, b"not found"),
            ServerCallError::ServerFailure { status: 404 }
        ));
        assert!(matches!(
            classify_failure(400, b"<html>"),
            ServerCallError::ServerFailure { status: 400 }
        ));
        assert!(matches!(
            classify_failure(503, oauth),
            ServerCallError::ServerFailure { status: 503 }
        ));
    }

    #[test]
    fn minted_tokens_accept_numbers_or_strings() {
        let token: MintedToken = serde_json::from_value(json!({
            "access_token": "a.b.c", "token_type": "Bearer", "resource": "r",
            "expires_in": 86400, "expires_on": "1700086400", "not_before": 1700000000,
            "client_id": "c", "object_id": "o", "msi_res_id": "m"
        }))
        .unwrap();
        assert_eq!(
            (token.expires_in, token.expires_on, token.not_before),
            (86400, 1_700_086_400, 1_700_000_000)
        );
    }

    #[test]
    fn selector_keys_ignore_case() {
        assert_eq!(
            Selector::ClientId("ABC".into()).key(),
            Selector::ClientId("abc".into()).key()
        );
        assert_ne!(
            Selector::ClientId("abc".into()).key(),
            Selector::ObjectId("abc".into()).key()
        );
    }
}
