//! `/metrics` on the agent's IMDS listeners (the Prometheus text format, version 0.0.4): every
//! metric name of the agent is defined here.
//!
//! IMDS has no such path; it is openmi's, for the machine's operator, and like IMDS itself it is
//! answered to anyone who can reach the listener (no `Metadata` header, no throttle): it carries
//! counts only, never a token, identity, query or address. Counting is relaxed atomic adds on a
//! single-threaded runtime (two on a memoised token answer, which costs ~6 µs of CPU in all);
//! the text is built only when scraped.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::http::AppState;
use crate::tokens::TokenService;

/// What a request asked for, as counted: the endpoint, never the path as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/metadata/identity/oauth2/token`.
    ImdsToken,
    /// `/metadata/identity/info`.
    IdentityInfo,
    /// `/metadata/instance[/...]`.
    Instance,
    /// `/metadata/versions`.
    Versions,
    /// `/msi/token` (App Service).
    AppServiceToken,
    /// `/oauth2/token` on the VM-extension listener.
    ExtensionToken,
    /// `/metrics`.
    Metrics,
    /// Anything else (answered 404 or the endpoint's own error).
    Other,
}

impl Route {
    const ALL: [Route; 8] = [
        Route::ImdsToken,
        Route::IdentityInfo,
        Route::Instance,
        Route::Versions,
        Route::AppServiceToken,
        Route::ExtensionToken,
        Route::Metrics,
        Route::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::ImdsToken => "imds_token",
            Route::IdentityInfo => "imds_identity_info",
            Route::Instance => "imds_instance",
            Route::Versions => "imds_versions",
            Route::AppServiceToken => "app_service_token",
            Route::ExtensionToken => "extension_token",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }

    /// The route of a path (one trailing `/` already dropped) on the IMDS or extension listener.
    pub fn of_path(path: &str, extension_listener: bool) -> Route {
        if extension_listener {
            return match path {
                "/oauth2/token" => Route::ExtensionToken,
                _ => Route::Other,
            };
        }
        match path {
            crate::http::TOKEN_PATH => Route::ImdsToken,
            "/metadata/identity/info" => Route::IdentityInfo,
            "/metadata/instance" => Route::Instance,
            "/metadata/versions" => Route::Versions,
            "/msi/token" => Route::AppServiceToken,
            "/metrics" => Route::Metrics,
            _ if path.starts_with("/metadata/instance/") => Route::Instance,
            _ => Route::Other,
        }
    }
}

/// Where a token answer came from without asking the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// The same query answered this second with nothing changed since: the same bytes.
    Memo,
    /// A cached token before its refresh point.
    Cache,
    /// A token another request was fetching for the same key, waited for.
    Coalesced,
}

impl Hit {
    const ALL: [Hit; 3] = [Hit::Memo, Hit::Cache, Hit::Coalesced];

    fn label(self) -> &'static str {
        match self {
            Hit::Memo => "memo",
            Hit::Cache => "cache",
            Hit::Coalesced => "coalesced",
        }
    }
}

/// How a call to the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOutcome {
    /// A 2xx answer.
    Ok,
    /// A 4xx answer (a refused token request, or the agent refused).
    Refused,
    /// A 5xx answer.
    ServerError,
    /// No answer: connection refused or reset, TLS failure, timeout.
    Unreachable,
}

impl ServerOutcome {
    const ALL: [ServerOutcome; 4] = [
        ServerOutcome::Ok,
        ServerOutcome::Refused,
        ServerOutcome::ServerError,
        ServerOutcome::Unreachable,
    ];

    fn label(self) -> &'static str {
        match self {
            ServerOutcome::Ok => "ok",
            ServerOutcome::Refused => "refused",
            ServerOutcome::ServerError => "server_error",
            ServerOutcome::Unreachable => "unreachable",
        }
    }
}

/// Status codes 100-599 each have a counter, and one more counts any other code as `other`.
const STATUS_SLOTS: usize = 501;

/// The agent's counters.
pub struct AgentMetrics {
    /// Requests answered, by route and status slot (`route * STATUS_SLOTS + slot`).
    requests: Box<[AtomicU64]>,
    hits: [AtomicU64; Hit::ALL.len()],
    misses: AtomicU64,
    refreshes: AtomicU64,
    stale_served: AtomicU64,
    throttled: AtomicU64,
    server_calls: [AtomicU64; ServerOutcome::ALL.len()],
    /// 1 when the last call to the server got an answer, 0 when it got none, -1 before any.
    server_reachable: AtomicI64,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            requests: (0..Route::ALL.len() * STATUS_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            hits: Default::default(),
            misses: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            server_calls: Default::default(),
            server_reachable: AtomicI64::new(-1),
        }
    }
}

impl AgentMetrics {
    /// Counts one answered request.
    pub fn answered(&self, route: Route, status: StatusCode) {
        let slot = usize::from(status.as_u16())
            .checked_sub(100)
            .filter(|slot| *slot < STATUS_SLOTS - 1)
            .unwrap_or(STATUS_SLOTS - 1);
        if let Some(counter) = self.requests.get(route as usize * STATUS_SLOTS + slot) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn hit(&self, hit: Hit) {
        self.hits[hit as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A token request that asks the server; `replacing` when the cache still held a token for
    /// the key (a refresh at half-life, or `bypass_cache`).
    pub fn miss(&self, replacing: bool) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        if replacing {
            self.refreshes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A cached token past its refresh point served because the server could not be reached.
    pub fn stale_served(&self) {
        self.stale_served.fetch_add(1, Ordering::Relaxed);
    }

    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call to the server and what it says of the server's reachability.
    pub fn server_call(&self, outcome: ServerOutcome) {
        self.server_calls[outcome as usize].fetch_add(1, Ordering::Relaxed);
        let reachable = i64::from(outcome != ServerOutcome::Unreachable);
        self.server_reachable.store(reachable, Ordering::Relaxed);
    }
}

/// One scrape: the token service's counters and its cache's size.
struct Scrape {
    tokens: Arc<TokenService>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
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

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metrics = self.tokens.metrics();
        {
            let mut metric = encoder.encode_descriptor(
                "openmi_agent_requests",
                "Requests answered, by route and status code.",
                None,
                MetricType::Counter,
            )?;
            for (index, count) in metrics.requests.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let (route, slot) = (index / STATUS_SLOTS, index % STATUS_SLOTS);
                let Some(route) = Route::ALL.get(route) else {
                    continue;
                };
                let status = if slot == STATUS_SLOTS - 1 {
                    "other".to_string()
                } else {
                    (slot + 100).to_string()
                };
                let labels = ([("route", route.label())], [("status", status)]);
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "openmi_agent_token_cache_hits",
                "Token requests answered without asking the server, by where the answer came from.",
                None,
                MetricType::Counter,
            )?;
            for hit in Hit::ALL {
                let count = metrics.hits[hit as usize].load(Ordering::Relaxed);
                metric
                    .encode_family(&[("source", hit.label())])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        counter(
            &mut encoder,
            "openmi_agent_token_cache_misses",
            "Token requests that asked the server.",
            metrics.misses.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "openmi_agent_token_refreshes",
            "Token requests that asked the server while a token for the key was still cached (refresh at half-life, or bypass_cache).",
            metrics.refreshes.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "openmi_agent_stale_tokens_served",
            "Cached tokens past their refresh point served because the server could not be reached.",
            metrics.stale_served.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "openmi_agent_throttled_requests",
            "Token requests refused with 429 (rate or concurrency limit).",
            metrics.throttled.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "openmi_agent_cached_tokens",
            "Tokens in the cache now.",
            i64::try_from(self.tokens.cached_tokens()).unwrap_or(i64::MAX),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "openmi_agent_server_calls",
                "Calls to the openmi server, by outcome.",
                None,
                MetricType::Counter,
            )?;
            for outcome in ServerOutcome::ALL {
                let count = metrics.server_calls[outcome as usize].load(Ordering::Relaxed);
                metric
                    .encode_family(&[("outcome", outcome.label())])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        gauge(
            &mut encoder,
            "openmi_agent_server_reachable",
            "1 when the last call to the server got an answer, 0 when it got none, -1 before any call.",
            metrics.server_reachable.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "openmi_agent_registered",
            "0 once the server has refused the agent (its VM or registration is gone), else 1.",
            i64::from(!self.tokens.is_unregistered()),
        )?;
        Ok(())
    }
}

/// `GET /metrics`.
pub async fn metrics_get(State(state): State<AppState>) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        tokens: state.tokens.clone(),
    }));
    let mut text = String::with_capacity(4096);
    match prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        Ok(()) => {
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
            tracing::error!("AG0004: encoding the metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a timed test: `scripts/bench-metrics` runs it (release, `--ignored`) and prints what
    /// a memoised token answer's counting costs (`answered` and a memo `hit`).
    #[test]
    #[ignore]
    fn counting_cost() {
        const CALLS: u32 = 20_000_000;
        let metrics = AgentMetrics::default();
        let started = std::time::Instant::now();
        for _ in 0..CALLS {
            metrics.answered(std::hint::black_box(Route::ImdsToken), StatusCode::OK);
            metrics.hit(std::hint::black_box(Hit::Memo));
        }
        let each = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
        println!("agent: {each:.1} ns per memoised token answer counted");
    }

    #[test]
    fn paths_fall_into_routes() {
        assert_eq!(
            Route::of_path("/metadata/identity/oauth2/token", false),
            Route::ImdsToken
        );
        assert_eq!(
            Route::of_path("/metadata/instance/compute/vmId", false),
            Route::Instance
        );
        assert_eq!(Route::of_path("/msi/token", false), Route::AppServiceToken);
        assert_eq!(Route::of_path("/oauth2/token", false), Route::Other);
        assert_eq!(Route::of_path("/oauth2/token", true), Route::ExtensionToken);
        assert_eq!(Route::of_path("/metrics", false), Route::Metrics);
        assert_eq!(Route::of_path("/metadata/instancex", false), Route::Other);
    }

    #[test]
    fn statuses_are_counted_per_route_with_a_slot_for_odd_codes() {
        let metrics = AgentMetrics::default();
        metrics.answered(Route::ImdsToken, StatusCode::OK);
        metrics.answered(Route::ImdsToken, StatusCode::OK);
        metrics.answered(Route::Other, StatusCode::NOT_FOUND);
        metrics.answered(Route::Other, StatusCode::from_u16(799).unwrap());
        let count = |route: Route, slot: usize| {
            metrics.requests[route as usize * STATUS_SLOTS + slot].load(Ordering::Relaxed)
        };
        assert_eq!(count(Route::ImdsToken, 100), 2);
        assert_eq!(count(Route::Other, 304), 1);
        assert_eq!(count(Route::Other, STATUS_SLOTS - 1), 1);
        assert_eq!(
            metrics
                .requests
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>(),
            4
        );
    }
}
