//! The token service behind every endpoint: throttle, cache, coalescing and the call to the
//! server, plus the current view of the VM (the last instance document) used for cache keys and
//! revocation.
//!
//! A request is keyed by the identity its selector means on the VM (the principal id, found in
//! the instance document, or learned from the server's answer for a selector the document cannot
//! resolve, such as the system identity's client id) and by the normalised resource, so the same
//! identity asked for by client id, object id or resource id shares one token. The endpoints only
//! shape the result into their protocol's body.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::cache::{CacheKey, CachedToken, IdentityKey, TokenCache};
use crate::instance::Snapshot;
use crate::memo::ResponseMemo;
use crate::metrics::{AgentMetrics, Hit};
use crate::server_client::{
    now, InstanceDocument, MintedToken, Selector, ServerCallError, ServerClient,
};
use crate::throttle::{Admission, Throttle, Throttled};

/// Why no token can be given; each endpoint words it in its own protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFailure {
    /// The VM has no such identity (or the agent's registration is gone).
    IdentityNotFound,
    /// The server refused with an OAuth-shaped 4xx, passed on as it was worded.
    Refused {
        status: u16,
        error: String,
        description: String,
    },
    /// The server cannot be reached and nothing usable is cached.
    Unavailable,
    Throttled(Throttled),
}

/// While the server cannot be reached, a key's stale token is served this long before the next
/// attempt.
const STALE_RETRY_SECONDS: i64 = 5;

/// Where the token service reads the time: seconds since the epoch.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The agent's token service.
pub struct TokenService {
    client: ServerClient,
    throttle: Throttle,
    cache: TokenCache,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Selector keys the instance document cannot resolve, mapped to the principal the server
    /// answered with (e.g. the system identity's client id).
    learned: RwLock<HashMap<String, String>>,
    /// The server answered 401: the VM or the agent's registration is gone.
    unregistered: AtomicBool,
    /// Where tests read the time, so they can move it; `None` reads the system clock directly
    /// (no dynamic call on the cached-token path).
    clock: Option<Clock>,
    /// IMDS token responses by query, valid within one cache epoch and second.
    memo: ResponseMemo,
}

impl TokenService {
    pub fn new(client: ServerClient, throttle: Throttle) -> TokenService {
        TokenService {
            client,
            throttle,
            cache: TokenCache::default(),
            snapshot: RwLock::new(None),
            learned: RwLock::new(HashMap::new()),
            unregistered: AtomicBool::new(false),
            clock: None,
            memo: ResponseMemo::default(),
        }
    }

    /// The same service reading time from `clock`.
    #[cfg(test)]
    fn with_clock(mut self, clock: Clock) -> TokenService {
        self.clock = Some(clock);
        self
    }

    pub fn client(&self) -> &ServerClient {
        &self.client
    }

    /// The agent's counters (kept by the server client, which counts its calls there too).
    pub fn metrics(&self) -> &AgentMetrics {
        self.client.metrics()
    }

    /// Tokens cached now.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// The last instance document, digested.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The memo of IMDS token responses.
    pub fn memo(&self) -> &ResponseMemo {
        &self.memo
    }

    /// The cache's epoch: read it before computing an answer to memoise.
    pub fn epoch(&self) -> u64 {
        self.cache.epoch()
    }

    /// The current second, as this service counts it.
    pub fn now(&self) -> i64 {
        match &self.clock {
            None => now(),
            Some(clock) => clock(),
        }
    }

    /// Lets one token request in, or answers that the VM is over its limit.
    pub fn admit(&self) -> Result<Admission, TokenFailure> {
        self.throttle.admit().map_err(|throttled| {
            self.metrics().throttled();
            TokenFailure::Throttled(throttled)
        })
    }

    pub fn is_unregistered(&self) -> bool {
        self.unregistered.load(Ordering::Relaxed)
    }

    /// Takes a new instance document: drops the tokens of identities no longer on the VM.
    /// Returns the VM-extension endpoint's port, if the VM has that extension.
    pub fn apply_instance(&self, document: &InstanceDocument) -> Option<u16> {
        let snapshot = Arc::new(Snapshot::from_document(document));
        let principals = snapshot.principals();
        *self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(snapshot.clone());
        self.learned
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|_, principal| principals.contains(principal));
        let dropped = self.cache.retain_principals(principals);
        self.unregistered.store(false, Ordering::Relaxed);
        tracing::info!(
            version = snapshot.version,
            identities =
                snapshot.user_assigned.len() + usize::from(snapshot.system_principal.is_some()),
            dropped_tokens = dropped,
            cached_tokens = self.cache.len(),
            "instance document"
        );
        snapshot.extension_port
    }

    /// The server answered 401: drops every token and the VM view; token requests answer
    /// "Identity not found" until the server knows the agent again.
    pub fn revoke_all(&self) {
        self.unregistered.store(true, Ordering::Relaxed);
        self.cache.clear();
        *self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.learned
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// The identity `selector` means now.
    fn identity_key(&self, selector: &Selector) -> IdentityKey {
        if let Some(snapshot) = self.snapshot() {
            if let Some(principal) = snapshot.resolve(selector) {
                return IdentityKey::Principal(principal);
            }
        }
        if let Selector::ObjectId(object_id) = selector {
            // An object id names the principal itself. Tokens are stored only for principals on
            // the VM, so the key can find nothing the VM should not have.
            return IdentityKey::Principal(object_id.to_ascii_lowercase());
        }
        let selector_key = selector.key();
        let learned = self
            .learned
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&selector_key)
            .cloned();
        match learned {
            Some(principal) => IdentityKey::Principal(principal),
            None => IdentityKey::Unresolved(selector_key),
        }
    }

    /// A token for `resource` as the identity `selector` names: from the cache while fresh, else
    /// from the server (one request per key however many ask at once; with `bypass_cache` one
    /// request per caller, none waiting for another's), else a cached token that has not expired
    /// when the server cannot be reached.
    pub async fn token(
        &self,
        selector: &Selector,
        resource: &str,
        bypass_cache: bool,
    ) -> Result<Arc<CachedToken>, TokenFailure> {
        let _admission = self.admit()?;
        self.token_admitted(selector, resource, bypass_cache).await
    }

    /// [`TokenService::token`] for a request already admitted by the throttle.
    pub async fn token_admitted(
        &self,
        selector: &Selector,
        resource: &str,
        bypass_cache: bool,
    ) -> Result<Arc<CachedToken>, TokenFailure> {
        if self.is_unregistered() {
            return Err(TokenFailure::IdentityNotFound);
        }
        loop {
            let identity = self.identity_key(selector);
            if !bypass_cache {
                if let Some(token) = self.cache.fresh_for(&identity, resource, self.now()) {
                    self.metrics().hit(Hit::Cache);
                    return Ok(token);
                }
            }
            let key = CacheKey::new(identity, resource);
            let slot = self.cache.slot(&key);
            if !bypass_cache {
                if let Some(token) = slot.stale_while_failing(self.now()) {
                    self.metrics().stale_served();
                    return Ok(token);
                }
            }
            // A bypass_cache request wants a token minted for it, so it has nothing to gain from
            // waiting for another request's call: only the others coalesce.
            let refreshing = if bypass_cache {
                None
            } else {
                Some(slot.refresh.lock().await)
            };
            if self.identity_key(selector) != key.identity {
                // The server's answer to a request we waited for taught us which identity this
                // selector means: look there.
                continue;
            }
            if !bypass_cache {
                if let Some(token) = self.cache.fresh(&key, self.now()) {
                    self.metrics().hit(Hit::Coalesced);
                    return Ok(token);
                }
                if let Some(token) = slot.stale_while_failing(self.now()) {
                    self.metrics().stale_served();
                    return Ok(token);
                }
            }
            self.metrics().miss(slot.token().is_some());
            let result = self.fetch(selector, resource, &key).await;
            let now = self.now();
            let result = match result {
                // Read after the attempt: a revocation meanwhile has emptied the slot.
                Err(TokenFailure::Unavailable) => match slot.token() {
                    Some(token) if token.is_usable(now) => {
                        tracing::warn!(
                            retry_in_s = STALE_RETRY_SECONDS,
                            "server unreachable; serving the cached token"
                        );
                        slot.set_retry_at(now + STALE_RETRY_SECONDS);
                        self.metrics().stale_served();
                        Ok(token)
                    }
                    _ => Err(TokenFailure::Unavailable),
                },
                other => {
                    slot.set_retry_at(0);
                    other
                }
            };
            drop(refreshing);
            drop(slot);
            self.cache.discard_if_empty(&key);
            return result;
        }
    }

    /// Asks the server, then stores the token under the identity it was minted for.
    async fn fetch(
        &self,
        selector: &Selector,
        resource: &str,
        key: &CacheKey,
    ) -> Result<Arc<CachedToken>, TokenFailure> {
        let received = self.client.token(selector, resource).await;
        let received_at = self.now();
        match received {
            Ok(minted) => Ok(self.keep(selector, resource, key, minted, received_at)),
            Err(ServerCallError::Refused {
                status,
                error,
                description,
            }) => {
                self.cache.remove_token(key);
                Err(TokenFailure::Refused {
                    status,
                    error,
                    description,
                })
            }
            Err(ServerCallError::Unauthorized { description, .. }) => {
                tracing::warn!(%description, "the server refused the agent; dropping every token");
                self.revoke_all();
                Err(TokenFailure::IdentityNotFound)
            }
            Err(error) => {
                tracing::warn!(%error, "token request to the server failed");
                Err(TokenFailure::Unavailable)
            }
        }
    }

    fn keep(
        &self,
        selector: &Selector,
        resource: &str,
        key: &CacheKey,
        minted: MintedToken,
        received_at: i64,
    ) -> Arc<CachedToken> {
        let principal = minted.object_id.to_ascii_lowercase();
        let token = Arc::new(CachedToken::new(
            minted.access_token,
            minted.client_id,
            minted.object_id,
            minted.msi_res_id,
            minted.expires_on,
            minted.not_before,
            minted.expires_in,
            received_at,
        ));
        let store_key = if principal.is_empty() {
            key.clone()
        } else {
            CacheKey::new(IdentityKey::Principal(principal.clone()), resource)
        };
        if !matches!(store_key.identity, IdentityKey::Principal(_)) {
            return token;
        }
        let stored = self.cache.store(&store_key, token.clone());
        if stored && matches!(key.identity, IdentityKey::Unresolved(_)) && !principal.is_empty() {
            self.learned
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(selector.key(), principal);
            // What this selector means changed.
            self.cache.bump_epoch();
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicU32};

    use futures_util::StreamExt;

    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::Json;
    use serde_json::{json, Value};

    use crate::assertion::AssertionSigner;

    /// What the fake server answers to `POST /openmi/agent/token`.
    #[derive(Clone, Copy, PartialEq)]
    enum Answer {
        Token,
        IdentityNotFound,
        Down,
        Unauthorized,
    }

    #[derive(Clone)]
    struct Fake {
        requests: Arc<AtomicU32>,
        /// HTTP calls to the batch endpoint.
        batches: Arc<AtomicU32>,
        answer: Arc<RwLock<Answer>>,
        expires_in: i64,
        /// Token requests (alone or in a batch) being answered now, and the most at once.
        active: Arc<AtomicU32>,
        most_active: Arc<AtomicU32>,
        /// HTTP calls (to either endpoint) being answered now, and the most at once.
        calls: Arc<AtomicU32>,
        most_calls: Arc<AtomicU32>,
    }

    impl Fake {
        /// Counts `count` token requests in one HTTP call in, for as long as they are worked on.
        async fn work_on(&self, count: u32) {
            let calls = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_calls.fetch_max(calls, Ordering::SeqCst);
            let active = self.active.fetch_add(count, Ordering::SeqCst) + count;
            self.most_active.fetch_max(active, Ordering::SeqCst);
            // Long enough for concurrent requests to pile up behind the first.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            self.active.fetch_sub(count, Ordering::SeqCst);
            self.calls.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The batch endpoint: each request answered as `fake_token` would, one line each, the last
    /// request first and the lines `LINE_GAP` apart (so a caller whose line came early is
    /// answered while the batch is still open).
    async fn fake_tokens(
        State(fake): State<Fake>,
        Json(body): Json<Value>,
    ) -> axum::response::Response {
        fake.batches.fetch_add(1, Ordering::SeqCst);
        let requests = body["requests"].as_array().cloned().unwrap_or_default();
        fake.work_on(requests.len() as u32).await;
        let mut lines = Vec::new();
        for (index, request) in requests.iter().enumerate().rev() {
            let response = fake_answer(&fake, request, "batch-token");
            let status = response.status().as_u16();
            if status == 503 {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let line = json!({"index": index, "status": status, "body": body}).to_string() + "\n";
            lines.push(line);
        }
        let lines = futures_util::stream::iter(lines).then(|line| async move {
            tokio::time::sleep(LINE_GAP).await;
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(line))
        });
        axum::body::Body::from_stream(lines).into_response()
    }

    /// The time between two lines of a fake batch answer.
    const LINE_GAP: std::time::Duration = std::time::Duration::from_millis(60);

    async fn fake_token(
        State(fake): State<Fake>,
        Json(body): Json<Value>,
    ) -> axum::response::Response {
        fake.work_on(1).await;
        fake_answer(&fake, &body, "token")
    }

    /// The answer to one token request, as `fake.answer` says; tokens are named `{name}-{count}`.
    fn fake_answer(fake: &Fake, body: &Value, name: &str) -> axum::response::Response {
        let count = fake.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = *fake.answer.read().unwrap();
        match answer {
            Answer::Token => Json(json!({
                "access_token": format!("{name}-{count}"), "token_type": "Bearer",
                "resource": body["resource"], "expires_in": fake.expires_in,
                "expires_on": 1_000_000 + fake.expires_in, "not_before": 1_000_000,
                "client_id": "c1", "object_id": "P1", "msi_res_id": "/vm",
            }))
            .into_response(),
            Answer::IdentityNotFound => (
                StatusCode::BAD_REQUEST,
                Json(
                    json!({"error": "invalid_request", "error_description": "Identity not found"}),
                ),
            )
                .into_response(),
            Answer::Down => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            Answer::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_client", "error_description": "gone"})),
            )
                .into_response(),
        }
    }

    /// A token service talking to a fake server (plain HTTP), with a clock the test moves;
    /// misses batch from two token calls in flight on, so a few concurrent misses make one.
    async fn service(expires_in: i64) -> (Arc<TokenService>, Fake, Arc<AtomicI64>) {
        service_batching_from(expires_in, 2).await
    }

    /// `service`, misses batching from `in_flight` token calls on.
    async fn service_batching_from(
        expires_in: i64,
        in_flight: usize,
    ) -> (Arc<TokenService>, Fake, Arc<AtomicI64>) {
        let fake = Fake {
            requests: Arc::new(AtomicU32::new(0)),
            batches: Arc::new(AtomicU32::new(0)),
            answer: Arc::new(RwLock::new(Answer::Token)),
            expires_in,
            active: Arc::new(AtomicU32::new(0)),
            most_active: Arc::new(AtomicU32::new(0)),
            calls: Arc::new(AtomicU32::new(0)),
            most_calls: Arc::new(AtomicU32::new(0)),
        };
        let router = axum::Router::new()
            .route("/openmi/agent/token", axum::routing::post(fake_token))
            .route("/openmi/agent/tokens", axum::routing::post(fake_tokens))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let key_pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let client = ServerClient::new(&format!("http://{address}"), None)
            .unwrap()
            .with_send_at_once_below(in_flight)
            .with_signer(AssertionSigner::new("agent".into(), key_pair));
        let time = Arc::new(AtomicI64::new(1_000_000));
        let clock_time = time.clone();
        let tokens = TokenService::new(client, Throttle::new(0, 0))
            .with_clock(Arc::new(move || clock_time.load(Ordering::SeqCst)));
        (Arc::new(tokens), fake, time)
    }

    fn instance(principals: &[(&str, &str)]) -> InstanceDocument {
        let identities: serde_json::Map<String, Value> = principals
            .iter()
            .map(|(principal, client)| {
                (
                    format!("/identities/{client}"),
                    json!({"principalId": principal, "clientId": client}),
                )
            })
            .collect();
        InstanceDocument {
            version: 1,
            vm: json!({"id": "/vm", "identity": {"type": "UserAssigned", "userAssignedIdentities": identities}}),
            extensions: vec![],
            tenant_id: "t".into(),
            subscription_id: "s".into(),
            resource_group_name: "g".into(),
        }
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_server_request() {
        let (tokens, fake, _) = service(86_400).await;
        let requests: Vec<_> = (0..10)
            .map(|_| {
                let tokens = tokens.clone();
                tokio::spawn(async move { tokens.token(&Selector::Default, "r", false).await })
            })
            .collect();
        for request in requests {
            let token = request.await.unwrap().unwrap();
            assert_eq!(token.access_token, "token-1");
        }
        assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
        // The identity learned from the answer: the same principal by object id shares the token.
        let by_object = tokens
            .token(&Selector::ObjectId("p1".into()), "r", false)
            .await
            .unwrap();
        assert_eq!(by_object.access_token, "token-1");
        // Another resource is another token.
        tokens.token(&Selector::Default, "r/", false).await.unwrap();
        assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bypass_cache_requests_for_one_key_each_mint_without_waiting_for_the_others() {
        let (tokens, fake, _) = service(86_400).await;
        let first = tokens.token(&Selector::Default, "r", false).await.unwrap();
        let requests: Vec<_> = (0..2)
            .map(|_| {
                let tokens = tokens.clone();
                tokio::spawn(async move { tokens.token(&Selector::Default, "r", true).await })
            })
            .collect();
        let mut seen = std::collections::HashSet::from([first.access_token.clone()]);
        for request in requests {
            let token = request.await.unwrap().unwrap();
            assert!(
                seen.insert(token.access_token.clone()),
                "a fresh token each"
            );
        }
        assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
        // Both were at the server at once (alone or together): neither waited for the other.
        assert_eq!(fake.most_active.load(Ordering::SeqCst), 2);
        // Requests without bypass_cache get the cached token, the newest one stored.
        let cached = tokens.token(&Selector::Default, "r", false).await.unwrap();
        assert!(seen.contains(&cached.access_token) && cached.access_token != first.access_token);
    }

    #[tokio::test]
    async fn at_most_max_calls_reach_the_server_at_once() {
        // The token count never holds a miss back here: only the cap on calls does.
        let (tokens, fake, _) = service_batching_from(86_400, 1_000).await;
        let mut requests = Vec::new();
        for index in 0..12 {
            let tokens = tokens.clone();
            requests.push(tokio::spawn(async move {
                tokens
                    .token(&Selector::Default, &format!("r{index}"), false)
                    .await
            }));
            // Each miss arrives on its own, so each could leave in a call of its own.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        for request in requests {
            assert!(request.await.unwrap().is_ok());
        }
        assert_eq!(fake.requests.load(Ordering::SeqCst), 12, "one mint each");
        assert_eq!(
            fake.most_calls.load(Ordering::SeqCst),
            crate::server_client::MAX_CALLS as u32,
            "the first misses left alone up to the cap, the rest waited for a call to end"
        );
        assert!(
            fake.batches.load(Ordering::SeqCst) >= 1,
            "the rest went together"
        );
    }

    #[tokio::test]
    async fn misses_of_different_keys_at_once_share_batches() {
        let (tokens, fake, _) = service(86_400).await;
        let requests: Vec<_> = (0..12)
            .map(|index| {
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    let token = tokens
                        .token(&Selector::Default, &format!("r{index}"), false)
                        .await;
                    (token, std::time::Instant::now())
                })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut batch_answered = Vec::new();
        for request in requests {
            let (token, answered) = request.await.unwrap();
            let token = token.unwrap();
            assert!(seen.insert(token.access_token.clone()), "one token per key");
            if token.access_token.starts_with("batch-token") {
                batch_answered.push(answered);
            }
        }
        // Every key minted once, (nearly) all in one batch: the misses came together.
        assert_eq!(fake.requests.load(Ordering::SeqCst), 12);
        assert_eq!(fake.batches.load(Ordering::SeqCst), 1);
        assert!(
            batch_answered.len() >= 10,
            "{} in the batch",
            batch_answered.len()
        );
        // Each caller got its line as it came, not when the batch ended (lines 60 ms apart).
        let first = batch_answered.iter().min().unwrap();
        let last = batch_answered.iter().max().unwrap();
        assert!(
            *last - *first >= LINE_GAP * 4,
            "batch answers spread over {:?} only",
            *last - *first
        );
        // A refusal inside a batch reaches only its own caller, worded as the server worded it.
        *fake.answer.write().unwrap() = Answer::IdentityNotFound;
        let refused: Vec<_> = (0..4)
            .map(|index| {
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    tokens
                        .token(&Selector::Default, &format!("other{index}"), false)
                        .await
                })
            })
            .collect();
        for request in refused {
            assert_eq!(
                request.await.unwrap().unwrap_err(),
                TokenFailure::Refused {
                    status: 400,
                    error: "invalid_request".into(),
                    description: "Identity not found".into(),
                }
            );
        }
    }

    #[tokio::test]
    async fn refresh_at_half_life_and_serve_stale_while_the_server_is_down() {
        let (tokens, fake, time) = service(100).await;
        let first = tokens.token(&Selector::Default, "r", false).await.unwrap();
        time.store(1_000_049, Ordering::SeqCst);
        assert_eq!(
            tokens.token(&Selector::Default, "r", false).await.unwrap(),
            first
        );
        assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
        // Past the refresh point, the server down: the cached token, until it expires.
        time.store(1_000_050, Ordering::SeqCst);
        *fake.answer.write().unwrap() = Answer::Down;
        assert_eq!(
            tokens.token(&Selector::Default, "r", false).await.unwrap(),
            first
        );
        assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
        // For a while the stale token is served without asking again, then the server is tried.
        time.store(1_000_054, Ordering::SeqCst);
        assert_eq!(
            tokens.token(&Selector::Default, "r", false).await.unwrap(),
            first
        );
        assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
        time.store(1_000_055, Ordering::SeqCst);
        assert_eq!(
            tokens.token(&Selector::Default, "r", false).await.unwrap(),
            first
        );
        assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
        time.store(1_000_100, Ordering::SeqCst);
        assert_eq!(
            tokens.token(&Selector::Default, "r", false).await,
            Err(TokenFailure::Unavailable)
        );
        // The server back: a new token.
        *fake.answer.write().unwrap() = Answer::Token;
        let renewed = tokens.token(&Selector::Default, "r", false).await.unwrap();
        assert_ne!(renewed.access_token, first.access_token);
        assert_eq!(renewed.expires_in(1_000_100), 100);
    }

    #[tokio::test]
    async fn identities_leaving_the_vm_lose_their_tokens_at_once() {
        let (tokens, fake, _) = service(86_400).await;
        tokens.apply_instance(&instance(&[("p1", "c1"), ("p2", "c2")]));
        tokens
            .token(&Selector::ClientId("C1".into()), "r", false)
            .await
            .unwrap();
        tokens
            .token(&Selector::ClientId("c1".into()), "r", false)
            .await
            .unwrap();
        assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
        tokens.apply_instance(&instance(&[("p2", "c2")]));
        *fake.answer.write().unwrap() = Answer::IdentityNotFound;
        assert_eq!(
            tokens
                .token(&Selector::ClientId("c1".into()), "r", false)
                .await,
            Err(TokenFailure::Refused {
                status: 400,
                error: "invalid_request".into(),
                description: "Identity not found".into(),
            })
        );
        assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_agent_serves_nothing_more() {
        let (tokens, fake, _) = service(86_400).await;
        tokens.token(&Selector::Default, "r", false).await.unwrap();
        *fake.answer.write().unwrap() = Answer::Unauthorized;
        assert_eq!(
            tokens.token(&Selector::Default, "other", false).await,
            Err(TokenFailure::IdentityNotFound)
        );
        assert!(tokens.is_unregistered());
        assert_eq!(
            tokens.token(&Selector::Default, "r", false).await,
            Err(TokenFailure::IdentityNotFound)
        );
        assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    }
}
