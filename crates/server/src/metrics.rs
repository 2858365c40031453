//! The operator endpoints: `/metrics` (the Prometheus text format, version 0.0.4), `/livez` and
//! `/readyz`. Every metric name and label of the server is defined in this file.
//!
//! Azure has no such endpoints; they are openmi's own, for the people who run it. `/metrics` is
//! served without authentication on the server's own listeners, which is what a Prometheus scrape
//! expects: it carries counts only (no path, id, name, token or address), its labels are fixed
//! small sets (route families, not paths), and an operator who exposes the server beyond the
//! machines that scrape it filters `/metrics` at the proxy as for any exporter.
//!
//! Cost on the request path: `context::track` adds two relaxed atomic adds to a per-family table
//! (requests by status, latency buckets) and one to a sum; no lock, no map, no allocation. Engine
//! and store counters are atomics too (the store's two histograms are observed once per group
//! commit, by its one writer). Gauges (cache and snapshot sizes) are read only when scraped.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openmi_engine::{Engine, GrantKind, SignInFailure};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::AppState;

/// How long `/readyz` waits for the database before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a readiness check's outcome answers later `/readyz` requests: probes, however many,
/// cost the database at most one round trip per period (they are unauthenticated).
const READY_REUSE: Duration = Duration::from_millis(500);

/// The route families requests are counted under: the matched route's template sorted into a
/// fixed set (ARM's dispatcher, the router's fallback, is one family), so the labels stay
/// bounded whatever paths clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/{tenant}/oauth2[/v2.0]/token`.
    Token,
    /// Authorize, logout, device code, `/devicelogin`, the form-post script.
    Interactive,
    /// OpenID discovery, JWKS, instance discovery, user realm.
    Discovery,
    /// `/v1.0/...`.
    Graph,
    /// The agent protocol but the watch.
    Agent,
    /// `/openmi/agent/watch`: a long poll (up to 45 s), kept apart from the other latencies.
    AgentWatch,
    /// `/cosmos/{account}/...`.
    Cosmos,
    /// `/` and `/portal/...`.
    Portal,
    /// `/metadata/endpoints` and the VM image aliases.
    Metadata,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// ARM (`/subscriptions/...`, `/tenants`, `/providers`) and any path no route matches.
    Arm,
}

impl Family {
    const ALL: [Family; 12] = [
        Family::Token,
        Family::Interactive,
        Family::Discovery,
        Family::Graph,
        Family::Agent,
        Family::AgentWatch,
        Family::Cosmos,
        Family::Portal,
        Family::Metadata,
        Family::Health,
        Family::Metrics,
        Family::Arm,
    ];

    fn label(self) -> &'static str {
        match self {
            Family::Token => "token",
            Family::Interactive => "interactive",
            Family::Discovery => "discovery",
            Family::Graph => "graph",
            Family::Agent => "agent",
            Family::AgentWatch => "agent_watch",
            Family::Cosmos => "cosmos",
            Family::Portal => "portal",
            Family::Metadata => "metadata",
            Family::Health => "health",
            Family::Metrics => "metrics",
            Family::Arm => "arm",
        }
    }

    /// The family of a matched route template (`None`: the fallback, ARM's dispatcher).
    pub fn of_route(template: Option<&str>) -> Family {
        let Some(template) = template else {
            return Family::Arm;
        };
        match template {
            "/healthz" | "/livez" | "/readyz" => return Family::Health,
            "/metrics" => return Family::Metrics,
            "/openmi/agent/watch" => return Family::AgentWatch,
            "/metadata/endpoints" | "/openmi/vm-image-aliases.json" => return Family::Metadata,
            "/" => return Family::Portal,
            _ => {}
        }
        if template.ends_with("/oauth2/token") || template.ends_with("/oauth2/v2.0/token") {
            Family::Token
        } else if template.contains("/oauth2/") || template == "/devicelogin" {
            Family::Interactive
        } else if template.starts_with("/common/")
            || template.contains("/.well-known/")
            || template.contains("/discovery/")
        {
            Family::Discovery
        } else if template.starts_with("/v1.0/") {
            Family::Graph
        } else if template.starts_with("/openmi/agent/") {
            Family::Agent
        } else if template.starts_with("/cosmos/") {
            Family::Cosmos
        } else if template.starts_with("/portal") {
            Family::Portal
        } else {
            Family::Arm
        }
    }
}

/// Status codes 100-599 each have a counter, and one more counts any other code as `other`.
const STATUS_SLOTS: usize = 501;

/// Upper bounds (seconds) of the request latency buckets: 0.5 ms to a minute (the watch).
const LATENCY_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The bounds in whole microseconds, compared on the request path without floating point.
const LATENCY_BOUNDS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// One family's counters: requests by status, latency buckets (not cumulative; the last slot is
/// past the highest bound), and the latency sum in microseconds.
struct FamilyCounters {
    statuses: Box<[AtomicU64]>,
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Default for FamilyCounters {
    fn default() -> Self {
        FamilyCounters {
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            latency_sum_us: AtomicU64::new(0),
        }
    }
}

/// What the request path counts.
#[derive(Default)]
struct RequestCounters {
    families: [FamilyCounters; Family::ALL.len()],
    /// Agent watches being answered now: each running agent holds one open.
    open_watches: AtomicI64,
}

impl std::fmt::Debug for RequestCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCounters").finish_non_exhaustive()
    }
}

/// The server's metrics: the request counters and a registry that reads everything else (engine,
/// store) when scraped.
#[derive(Debug)]
pub struct ServerMetrics {
    requests: Arc<RequestCounters>,
    registry: Registry,
    /// The last readiness check: when it ended and why it failed, if it did. One check at a
    /// time: concurrent probes wait for it and share its outcome.
    readiness: tokio::sync::Mutex<Option<(Instant, Option<&'static str>)>>,
}

/// Held while an agent watch is open; counts it out when dropped (answered or abandoned).
pub struct OpenWatch(Arc<RequestCounters>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestCounters {
    /// The request path's whole cost: a status slot, a latency bucket found by comparing whole
    /// microseconds, three relaxed adds (scripts/bench-metrics measures it).
    fn observe(&self, family: Family, status: StatusCode, latency: Duration) {
        let counters = &self.families[family as usize];
        let slot = usize::from(status.as_u16())
            .checked_sub(100)
            .filter(|slot| *slot < STATUS_SLOTS - 1)
            .unwrap_or(STATUS_SLOTS - 1);
        counters.statuses[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        counters.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        counters.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }
}

impl ServerMetrics {
    pub fn new(engine: &Engine) -> ServerMetrics {
        let requests = Arc::new(RequestCounters::default());
        let mut registry = Registry::default();
        let writer = engine.store().writer_metrics();
        registry.register(
            "openmi_store_write_batch_size",
            "Changes committed together in one transaction by the store's writer (group commit)",
            writer.batch_size.clone(),
        );
        registry.register(
            "openmi_store_commit_seconds",
            "Time from the start of a group commit's transaction to its commit",
            writer.commit_seconds.clone(),
        );
        registry.register(
            "openmi_store_failed_batches",
            "Group commits whose transaction failed as a whole",
            writer.failed_batches.clone(),
        );
        registry.register_collector(Box::new(ScrapedMetrics {
            requests: requests.clone(),
            engine: engine.clone(),
        }));
        ServerMetrics {
            requests,
            registry,
            readiness: tokio::sync::Mutex::new(None),
        }
    }

    /// Counts one answered request (`context::track`).
    pub fn observe_request(&self, family: Family, status: StatusCode, latency: Duration) {
        self.requests.observe(family, status, latency);
    }

    /// Counts an agent watch in until the guard is dropped.
    pub fn open_watch(&self) -> OpenWatch {
        self.requests.open_watches.fetch_add(1, Ordering::Relaxed);
        OpenWatch(self.requests.clone())
    }

    /// Everything, in the Prometheus text format.
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The metrics read when scraped: request counters, the engine's counters, and sizes.
#[derive(Debug)]
struct ScrapedMetrics {
    requests: Arc<RequestCounters>,
    engine: Engine,
}

fn grant_label(kind: GrantKind) -> &'static str {
    match kind {
        GrantKind::ClientCredentials => "client_credentials",
        GrantKind::Password => "password",
        GrantKind::RefreshToken => "refresh_token",
        GrantKind::AuthorizationCode => "authorization_code",
        GrantKind::DeviceCode => "device_code",
        GrantKind::ManagedIdentity => "managed_identity",
        GrantKind::SignInPage => "sign_in_page",
    }
}

fn failure_label(reason: SignInFailure) -> &'static str {
    match reason {
        SignInFailure::InvalidClient => "invalid_client",
        SignInFailure::InvalidUserCredentials => "invalid_user_credentials",
        SignInFailure::InvalidGrant => "invalid_grant",
        SignInFailure::AccountLocked => "account_locked",
    }
}

/// Whether a grant can fail for a reason, so that its counter is shown from the start (others
/// are shown once they count something).
fn can_fail(kind: GrantKind, reason: SignInFailure) -> bool {
    match reason {
        SignInFailure::InvalidClient => kind != GrantKind::SignInPage,
        SignInFailure::InvalidUserCredentials | SignInFailure::AccountLocked => {
            matches!(kind, GrantKind::Password | GrantKind::SignInPage)
        }
        SignInFailure::InvalidGrant => matches!(
            kind,
            GrantKind::RefreshToken | GrantKind::AuthorizationCode | GrantKind::DeviceCode
        ),
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn as_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for ScrapedMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families = &self.requests.families;
        {
            let mut metric = encoder.encode_descriptor(
                "openmi_http_requests",
                "HTTP requests answered, by route family and status code.",
                None,
                MetricType::Counter,
            )?;
            for (family, counters) in Family::ALL.iter().zip(families.iter()) {
                for (slot, count) in counters.statuses.iter().enumerate() {
                    let count = count.load(Ordering::Relaxed);
                    if count == 0 {
                        continue;
                    }
                    let status = if slot == STATUS_SLOTS - 1 {
                        "other".to_string()
                    } else {
                        (slot + 100).to_string()
                    };
                    let labels = ([("family", family.label())], [("status", status)]);
                    metric
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "openmi_http_request_duration_seconds",
                "Time from a request's arrival to its response's head, by route family.",
                None,
                MetricType::Histogram,
            )?;
            for (family, counters) in Family::ALL.iter().zip(families.iter()) {
                let counts: Vec<u64> = counters
                    .buckets
                    .iter()
                    .map(|count| count.load(Ordering::Relaxed))
                    .collect();
                let total: u64 = counts.iter().sum();
                if total == 0 {
                    continue;
                }
                let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(counts)
                    .collect();
                let sum = counters.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
                metric
                    .encode_family(&[("family", family.label())])?
                    .encode_histogram::<NoLabelSet>(sum, total, &buckets, None)?;
            }
        }
        let stats = self.engine.stats();
        {
            let mut metric = encoder.encode_descriptor(
                "openmi_tokens_minted",
                "Access tokens issued, by grant (managed_identity: for agents).",
                None,
                MetricType::Counter,
            )?;
            for kind in GrantKind::ALL {
                if kind == GrantKind::SignInPage {
                    continue;
                }
                metric
                    .encode_family(&[("kind", grant_label(kind))])?
                    .encode_counter::<NoLabelSet, _, u64>(&stats.minted(kind), None)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "openmi_sign_in_failures",
                "Failed sign-ins (client, user or grant refused), by grant and reason.",
                None,
                MetricType::Counter,
            )?;
            for kind in GrantKind::ALL {
                for reason in SignInFailure::ALL {
                    let failed = stats.failed(kind, reason);
                    if failed == 0 && !can_fail(kind, reason) {
                        continue;
                    }
                    let labels = (
                        [("kind", grant_label(kind))],
                        [("reason", failure_label(reason))],
                    );
                    metric
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&failed, None)?;
                }
            }
        }
        let (assignments, snapshot_bytes) = {
            let snapshot = self.engine.rbac();
            (snapshot.assignment_count(), snapshot.heap_bytes())
        };
        gauge(
            &mut encoder,
            "openmi_rbac_assignments",
            "Role assignments in this server's RBAC snapshot.",
            as_i64(assignments),
        )?;
        gauge(
            &mut encoder,
            "openmi_rbac_snapshot_bytes",
            "Heap bytes of this server's RBAC snapshot.",
            as_i64(snapshot_bytes),
        )?;
        {
            let sizes = self.engine.cache_sizes();
            let mut entries = vec![
                ("resources", sizes.resources),
                ("clients", sizes.clients),
                ("bearer_tokens", sizes.bearer_tokens),
                ("agent_assertions", sizes.agent_assertions),
                ("vm_identities", sizes.vm_identities),
                ("cosmos_accounts", sizes.cosmos_accounts),
                ("cosmos_containers", sizes.cosmos_containers),
            ];
            if let Some(items) = self.engine.store().item_cache_entries() {
                entries.push(("cosmos_items", items));
            }
            let mut metric = encoder.encode_descriptor(
                "openmi_cache_entries",
                "Entries in each of this server's read caches.",
                None,
                MetricType::Gauge,
            )?;
            for (cache, size) in entries {
                ConstGauge::new(as_i64(size)).encode(metric.encode_family(&[("cache", cache)])?)?;
            }
        }
        {
            // Records without a write of their own (sign-ins, refusals): appended, or dropped
            // because the database was away longer than the appender's queue holds.
            let (dropped, appended) = self.engine.audit_counts();
            let mut metric = encoder.encode_descriptor(
                "openmi_audit_records",
                "Audit records appended by this server's batch appender, by outcome (a write's own record commits with it and is not counted here).",
                None,
                MetricType::Counter,
            )?;
            for (outcome, count) in [("appended", appended), ("dropped", dropped)] {
                metric
                    .encode_family(&[("outcome", outcome)])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        gauge(
            &mut encoder,
            "openmi_agents_connected",
            "Agent watches open on this server (each running agent holds one).",
            self.requests.open_watches.load(Ordering::Relaxed).max(0),
        )?;
        Ok(())
    }
}

/// `GET /metrics`.
pub async fn metrics_get(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                ),
            );
            response
        }
        Err(_) => {
            tracing::error!("SV0001 encoding the metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics",
            )
                .into_response()
        }
    }
}

/// `GET /livez`: the process is up and serving HTTP (as `/healthz`).
pub async fn livez() -> Response {
    (StatusCode::OK, "ok").into_response()
}

/// `GET /readyz`: 200 when the database answers a `SELECT 1` within `READY_TIMEOUT`, 503 (with
/// `Retry-After`) while it does not or the server is shutting down. A check's outcome is reused
/// for `READY_REUSE`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if *state.shutting_down.borrow() {
        return not_ready("shutting down");
    }
    let mut last = state.metrics.readiness.lock().await;
    let failure = match *last {
        Some((checked, failure)) if checked.elapsed() < READY_REUSE => failure,
        _ => {
            let failure = check_database(&state).await;
            *last = Some((Instant::now(), failure));
            failure
        }
    };
    drop(last);
    match failure {
        None => (StatusCode::OK, "ok").into_response(),
        Some(reason) => not_ready(reason),
    }
}

/// One readiness check of the database: why it failed, or `None`.
async fn check_database(state: &AppState) -> Option<&'static str> {
    match tokio::time::timeout(READY_TIMEOUT, state.engine.store().ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness check: the database is unreachable");
            Some("the database is unreachable")
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = READY_TIMEOUT.as_millis() as u64,
                "readiness check: no answer from the database in time"
            );
            Some("the database did not answer in time")
        }
    }
}

fn not_ready(reason: &'static str) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::Family;

    /// Not a timed test: `scripts/bench-metrics` runs it (release, `--ignored`) and prints what
    /// counting one request costs, on one thread and on two counting into one family.
    #[test]
    #[ignore]
    fn counting_cost() {
        use std::time::{Duration, Instant};
        const CALLS: u32 = 20_000_000;
        let counters = std::sync::Arc::new(super::RequestCounters::default());
        let run = |counters: &super::RequestCounters| {
            for n in 0..CALLS {
                let status = if n % 16 == 0 {
                    axum::http::StatusCode::NOT_FOUND
                } else {
                    axum::http::StatusCode::OK
                };
                counters.observe(
                    Family::Token,
                    std::hint::black_box(status),
                    Duration::from_micros(u64::from(n % 4000)),
                );
            }
        };
        let started = Instant::now();
        run(&counters);
        let one = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let counters = counters.clone();
                scope.spawn(move || run(&counters));
            }
        });
        let two = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
        println!("server: {one:.1} ns per counted request on one thread, {two:.1} ns with two threads counting into one family");
    }

    #[test]
    fn route_templates_fall_into_families() {
        let check = |template: Option<&str>, expected: Family| {
            assert_eq!(Family::of_route(template), expected, "{template:?}");
        };
        check(Some("/{tenant}/oauth2/token"), Family::Token);
        check(Some("/{tenant}/oauth2/v2.0/token"), Family::Token);
        check(Some("/{tenant}/oauth2/v2.0/authorize"), Family::Interactive);
        check(Some("/{tenant}/oauth2/devicecode"), Family::Interactive);
        check(Some("/devicelogin"), Family::Interactive);
        check(Some("/oauth2/form-post.js"), Family::Interactive);
        check(
            Some("/{tenant}/v2.0/.well-known/openid-configuration"),
            Family::Discovery,
        );
        check(Some("/{tenant}/discovery/v2.0/keys"), Family::Discovery);
        check(Some("/common/userrealm/{user}"), Family::Discovery);
        check(Some("/v1.0/applications/{id}"), Family::Graph);
        check(Some("/openmi/agent/token"), Family::Agent);
        check(Some("/openmi/agent/watch"), Family::AgentWatch);
        check(Some("/cosmos/{account}/{*rest}"), Family::Cosmos);
        check(Some("/portal/{*file}"), Family::Portal);
        check(Some("/"), Family::Portal);
        check(Some("/metadata/endpoints"), Family::Metadata);
        check(Some("/readyz"), Family::Health);
        check(Some("/metrics"), Family::Metrics);
        check(None, Family::Arm);
    }
}
