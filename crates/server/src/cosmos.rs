//! The Cosmos DB data plane over HTTPS: `https://{server}/cosmos/{account}/...`, the account's
//! `documentEndpoint`. One host and port serve every account, the account named by the first
//! path segment: both SDKs keep an endpoint's path when they build request URLs (azure-cosmos
//! replaces only scheme and host, @azure/cosmos appends the resource path to the endpoint), and
//! the account document lists this same URL as its only location, so they never leave it. A host
//! per account would need DNS that loopback machines lack; a port per account, listeners that
//! follow ARM writes on every replica.
//!
//! The handler reads Cosmos's headers (`x-ms-documentdb-partitionkey`, `x-ms-documentdb-is-upsert`,
//! `x-ms-documentdb-isquery`, `x-ms-cosmos-is-query-plan-request`, `x-ms-max-item-count`,
//! `x-ms-continuation`, `If-Match`, `If-None-Match`, `A-IM`), authenticates the request (the
//! signed resource type and link come from the path), makes one engine call and writes Cosmos's
//! headers (`x-ms-request-charge`, `x-ms-activity-id`, `etag`, `x-ms-session-token`,
//! `x-ms-item-count`, `x-ms-continuation`, `x-ms-substatus` on errors).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use openmi_engine::{
    CosmosAccount, CosmosCaller, CosmosFailure, CosmosReply, EpkRange, ItemWriteMode,
};
use serde_json::{json, Value};

use crate::AppState;

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn flag(headers: &HeaderMap, name: &str) -> bool {
    header(headers, name).is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

pub(crate) fn activity_id(headers: &HeaderMap) -> String {
    header(headers, "x-ms-activity-id")
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Cosmos's error body and headers.
pub(crate) fn failure_response(failure: CosmosFailure, activity: &str) -> Response {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "code": failure.code,
        "message": format!("{}\r\nActivityId: {activity}, Microsoft.Azure.Documents.Common/2.14.0", failure.message),
    });
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&failure.substatus.to_string()) {
        headers.insert("x-ms-substatus", value);
    }
    if let Ok(value) = HeaderValue::from_str(activity) {
        headers.insert("x-ms-activity-id", value);
    }
    headers.insert("x-ms-request-charge", HeaderValue::from_static("1"));
    response
}

fn reply_response(reply: CosmosReply, activity: &str) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut response = match (reply.body, reply.raw) {
        (Some(body), _) => (status, axum::Json(body)).into_response(),
        (None, Some(raw)) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            raw,
        )
            .into_response(),
        (None, None) => status.into_response(),
    };
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-ms-activity-id", activity.to_string());
    set(
        "x-ms-request-charge",
        format!("{:.2}", reply.request_charge),
    );
    set("x-ms-serviceversion", "version=2.14.0.0".to_string());
    if let Some(etag) = reply.etag {
        set("etag", etag);
    }
    if let Some(continuation) = reply.continuation {
        set("x-ms-continuation", continuation);
    }
    if let Some(count) = reply.item_count {
        set("x-ms-item-count", count.to_string());
    }
    if let Some(lsn) = reply.lsn {
        set("lsn", lsn.to_string());
        set("x-ms-session-token", format!("0:-1#{lsn}"));
    }
    response
}

/// What a request's path names: resource type and link (as the key signature covers them) and
/// the decoded segments after the account.
fn resource_of(segments: &[String]) -> (String, String) {
    if segments.is_empty() {
        return (String::new(), String::new());
    }
    if segments.len() % 2 == 1 {
        (
            segments[segments.len() - 1].clone(),
            segments[..segments.len() - 1].join("/"),
        )
    } else {
        (segments[segments.len() - 2].clone(), segments.join("/"))
    }
}

fn parse_json(body: &Bytes) -> Result<Value, CosmosFailure> {
    serde_json::from_slice(body).map_err(|error| {
        CosmosFailure::new(
            400,
            0,
            "BadRequest",
            format!("The request payload is invalid: {error}."),
        )
    })
}

pub(crate) async fn data_plane_root(
    State(state): State<AppState>,
    Path(account): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, account, String::new(), method, headers, body).await
}

pub(crate) async fn data_plane(
    State(state): State<AppState>,
    Path((account, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, account, rest, method, headers, body).await
}

async fn handle(
    state: AppState,
    account: String,
    rest: String,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let activity = activity_id(&headers);
    match dispatch(&state, &account, &rest, &method, &headers, &body).await {
        Ok(reply) => reply_response(reply, &activity),
        Err(failure) => failure_response(failure, &activity),
    }
}

async fn dispatch(
    state: &AppState,
    account_name: &str,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<CosmosReply, CosmosFailure> {
    let engine = &state.engine;
    let account = engine.cosmos_account(account_name).await?;
    let segments: Vec<String> = rest
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let (resource_type, resource_link) = resource_of(&segments);
    let date = header(headers, "x-ms-date")
        .or_else(|| header(headers, "date"))
        .unwrap_or_default();
    let authorization = header(headers, "authorization").unwrap_or_default();
    let caller = engine.cosmos_authenticate(
        &account,
        authorization,
        method.as_str(),
        &resource_type,
        &resource_link,
        date,
    )?;
    route(state, &account, &caller, method, &segments, headers, body).await
}

async fn route(
    state: &AppState,
    account: &CosmosAccount,
    caller: &CosmosCaller,
    method: &Method,
    segments: &[String],
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<CosmosReply, CosmosFailure> {
    let engine = &state.engine;
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let partition = header(headers, "x-ms-documentdb-partitionkey");
    let if_match = header(headers, "if-match");
    let if_none_match = header(headers, "if-none-match");
    let max_items =
        header(headers, "x-ms-max-item-count").and_then(|text| text.parse::<i64>().ok());
    let continuation = header(headers, "x-ms-continuation");
    // A feed range narrower than the one partition key range openmi serves (a partition key's
    // point range, a hierarchical key's prefix, a split): the SDKs send it as EPK bounds.
    let epk = EpkRange::from_headers(
        header(headers, "x-ms-start-epk"),
        header(headers, "x-ms-end-epk"),
    );
    let not_allowed = || {
        CosmosFailure::new(
            405,
            0,
            "MethodNotAllowed",
            format!("The method '{method}' is not allowed on this resource."),
        )
    };
    match (parts.as_slice(), method) {
        ([], &Method::GET) => engine.cosmos_read_account(account, caller),
        (["dbs"], &Method::POST) => engine.cosmos_database_create(account, caller, &parse_json(body)?).await,
        (["dbs"], &Method::GET) => engine.cosmos_database_list(account, caller).await,
        (["dbs", db], &Method::GET) => engine.cosmos_database_read(account, caller, db).await,
        (["dbs", db], &Method::DELETE) => engine.cosmos_database_delete(account, caller, db).await,
        (["dbs", db, "colls"], &Method::POST) => engine.cosmos_container_write(account, caller, db, &parse_json(body)?, None).await,
        (["dbs", db, "colls"], &Method::GET) => engine.cosmos_container_list(account, caller, db).await,
        (["dbs", db, "colls", container], &Method::GET) => engine.cosmos_container_read(account, caller, db, container).await,
        (["dbs", db, "colls", container], &Method::PUT) => engine.cosmos_container_write(account, caller, db, &parse_json(body)?, Some(container)).await,
        (["dbs", db, "colls", container], &Method::DELETE) => engine.cosmos_container_delete(account, caller, db, container).await,
        (["dbs", db, "colls", container, "pkranges"], &Method::GET) => {
            let reply = engine.cosmos_partition_key_ranges(account, caller, db, container).await?;
            // The SDKs read the ranges as a change feed too: nothing changes after the first read.
            if if_none_match.is_some() && if_none_match == reply.etag.as_deref() {
                return Ok(CosmosReply { status: 304, etag: reply.etag, request_charge: 1.0, ..CosmosReply::default() });
            }
            Ok(reply)
        }
        (["dbs", db, "colls", container, "docs"], &Method::POST) => {
            let is_query = flag(headers, "x-ms-documentdb-isquery")
                || header(headers, "content-type").is_some_and(|kind| kind.starts_with("application/query+json"));
            if is_query {
                let plan_only = flag(headers, "x-ms-cosmos-is-query-plan-request");
                return engine.cosmos_query(account, caller, db, container, &parse_json(body)?, partition, epk.as_ref(), max_items, continuation, plan_only).await;
            }
            let mode = if flag(headers, "x-ms-documentdb-is-upsert") { ItemWriteMode::Upsert } else { ItemWriteMode::Create };
            engine.cosmos_item_write(account, caller, db, container, mode, None, partition, if_match, &parse_json(body)?).await
        }
        (["dbs", db, "colls", container, "docs"], &Method::GET) => {
            let change_feed = header(headers, "a-im").is_some_and(|value| value.eq_ignore_ascii_case("Incremental feed"));
            let start_from_now = header(headers, "x-ms-cosmos-changefeed-start-from-now").is_some();
            engine.cosmos_read_feed(account, caller, db, container, partition, epk.as_ref(), max_items, continuation, change_feed, if_none_match, start_from_now).await
        }
        (["dbs", db, "colls", container, "docs", id], &Method::GET) => engine.cosmos_item_read(account, caller, db, container, id, partition, if_none_match).await,
        (["dbs", db, "colls", container, "docs", id], &Method::PUT) => engine.cosmos_item_write(account, caller, db, container, ItemWriteMode::Replace, Some(id), partition, if_match, &parse_json(body)?).await,
        (["dbs", db, "colls", container, "docs", id], &Method::DELETE) => engine.cosmos_item_delete(account, caller, db, container, id, partition, if_match).await,
        (["dbs", db, "colls", container, "docs", id], &Method::PATCH) => engine.cosmos_item_patch(account, caller, db, container, id, partition, if_match, &parse_json(body)?).await,
        (["dbs", ..], _) => Err(not_allowed()),
        (["offers", ..], _) => Err(CosmosFailure::new(400, 0, "BadRequest", "Throughput (offers) is not provisioned in openmi: containers have no throughput to read or change.")),
        _ => Err(CosmosFailure::new(404, 0, "NotFound", "The requested resource is not served by openmi's Cosmos DB data plane.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_resource_of_a_path() {
        let s = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(resource_of(&[]), (String::new(), String::new()));
        assert_eq!(resource_of(&s(&["dbs"])), ("dbs".into(), String::new()));
        assert_eq!(
            resource_of(&s(&["dbs", "db"])),
            ("dbs".into(), "dbs/db".into())
        );
        assert_eq!(
            resource_of(&s(&["dbs", "db", "colls", "c", "docs"])),
            ("docs".into(), "dbs/db/colls/c".into())
        );
        assert_eq!(
            resource_of(&s(&["dbs", "db", "colls", "c", "docs", "1"])),
            ("docs".into(), "dbs/db/colls/c/docs/1".into())
        );
        assert_eq!(
            resource_of(&s(&["dbs", "db", "colls", "c", "pkranges"])),
            ("pkranges".into(), "dbs/db/colls/c".into())
        );
    }
}

/// Arbitrary values of the headers the data plane reads, on each route, through the whole
/// application: a request is served or refused in Cosmos's shape (`{"code","message"}` with
/// `x-ms-activity-id` and `x-ms-substatus`, a 4xx status, 401 when the `authorization` header
/// does not check out), never a panic, never a 5xx.
#[cfg(test)]
mod proptests {
    use aws_lc_rs::hmac;
    use axum::body::Body;
    use axum::http::Request;
    use base64::Engine as _;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;
    use crate::test_server::{header_bytes, Answer, TestServer};

    /// The routes `route` serves (and some it refuses), as `(method, path after the account)`.
    const ROUTES: &[(&str, &str)] = &[
        ("GET", ""),
        ("GET", "dbs"),
        ("POST", "dbs"),
        ("GET", "dbs/db"),
        ("GET", "dbs/db/colls"),
        ("GET", "dbs/db/colls/c"),
        ("GET", "dbs/db/colls/c/pkranges"),
        ("POST", "dbs/db/colls/c/docs"),
        ("GET", "dbs/db/colls/c/docs"),
        ("GET", "dbs/db/colls/c/docs/1"),
        ("PUT", "dbs/db/colls/c/docs/1"),
        ("PATCH", "dbs/db/colls/c/docs/1"),
        ("DELETE", "dbs/db/colls/c/docs/2"),
        ("POST", "dbs/db/colls/nosuch/docs"),
        ("HEAD", "dbs/db"),
        ("GET", "offers"),
        ("GET", "nosuch/x"),
    ];

    /// How a request authenticates.
    #[derive(Debug, Clone)]
    enum Auth {
        /// The master-key signature of this request with key `key` (0: primary, 1: read-only),
        /// URL-encoded as the SDKs send it or not.
        Master { key: usize, encoded: bool },
        /// A bootstrap principal's AAD token (no data-plane role: refused with 403).
        Aad,
        /// Anything else.
        Other(Vec<u8>),
    }

    fn auths() -> impl Strategy<Value = Auth> {
        let near_misses = prop::sample::select(vec![
            "type=master&ver=1.0&sig=",
            "type=master&ver=1.0&sig=AAAA",
            "type%3Dmaster%26ver%3D1.0%26sig%3D%zz",
            "type=aad&ver=1.0&sig=",
            "type=aad&ver=1.0&sig=a.b.c",
            "type=aad&ver=1.0&sig=eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln",
            "type=resource&ver=1.0&sig=x",
            "type=&sig=",
            "sig=x&type=master&type=aad",
            "%",
            "%e",
            "%%%",
            "Bearer x",
        ]);
        prop_oneof![
            5 => (prop::sample::select(vec![0, 0, 0, 1]), any::<bool>())
                .prop_map(|(key, encoded)| Auth::Master { key, encoded }),
            1 => Just(Auth::Aad),
            1 => near_misses.prop_map(|text| Auth::Other(text.as_bytes().to_vec())),
            1 => header_bytes(120).prop_map(Auth::Other),
        ]
    }

    /// JSON and its near misses, from pieces.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop::sample::select(vec![
            "[",
            "]",
            "{",
            "}",
            "\"",
            "\\",
            ",",
            ":",
            " ",
            "a",
            "1",
            "-0",
            "1e999",
            "-2.5e3",
            "18446744073709551616",
            "true",
            "null",
            "\"pk\"",
            "\"id\"",
            "\"offset\"",
            "\"\\ud800\"",
            "é",
        ]);
        prop::collection::vec(pieces, 0..40).prop_map(|pieces| pieces.concat().into_bytes())
    }

    /// A value for a header: usually one of `plausible`, else pieces of JSON or any bytes.
    fn value(plausible: &[&str]) -> BoxedStrategy<Vec<u8>> {
        let plausible: Vec<Vec<u8>> = plausible
            .iter()
            .map(|text| text.as_bytes().to_vec())
            .collect();
        prop_oneof![
            3 => prop::sample::select(plausible),
            1 => jsonish(),
            1 => header_bytes(100),
        ]
        .boxed()
    }

    /// The headers `route` and the engine read, each present or not.
    fn headers() -> impl Strategy<Value = Vec<(&'static str, Option<Vec<u8>>)>> {
        let table: Vec<(&'static str, &[&str])> = vec![
            (
                "x-ms-date",
                &[
                    "Mon, 05 May 2025 10:00:00 GMT",
                    "mon, 05 may 2025 10:00:00 gmt",
                    "",
                ],
            ),
            ("date", &["Mon, 05 May 2025 10:00:00 GMT"]),
            (
                "x-ms-documentdb-partitionkey",
                &[
                    "[\"a\"]",
                    "[\"b\"]",
                    "[1]",
                    "[1.5e300]",
                    "[-0]",
                    "[null]",
                    "[true]",
                    "[{}]",
                    "[[]]",
                    "[]",
                    "[\"a\",\"b\"]",
                    "\"a\"",
                    "a",
                    "[",
                    "[\"\\ud800\"]",
                    "[18446744073709551616]",
                    "[1e999]",
                    "[\"é\"]",
                ],
            ),
            (
                "x-ms-max-item-count",
                &[
                    "-1",
                    "0",
                    "1",
                    "2",
                    "1000",
                    "1001",
                    "9223372036854775807",
                    "-9223372036854775808",
                    "99999999999999999999",
                    "x",
                    "",
                ],
            ),
            (
                "x-ms-continuation",
                &[
                    "{\"pk\":\"[\\\"a\\\"]\",\"id\":\"1\"}",
                    "{\"offset\":18446744073709551615}",
                    "{\"offset\":-1}",
                    "{\"offset\":1}",
                    "{\"pk\":1,\"id\":[]}",
                    "null",
                    "[]",
                    "\"x\"",
                    "{",
                ],
            ),
            (
                "if-match",
                &["\"x\"", "*", "\"00000000-0000-0000-0000-000000000000\"", ""],
            ),
            (
                "if-none-match",
                &[
                    "*",
                    "\"1\"",
                    "\"18446744073709551615\"",
                    "\"-1\"",
                    "\"x\"",
                    "0",
                    "",
                ],
            ),
            ("x-ms-documentdb-isquery", &["true", "True", "false", "x"]),
            ("x-ms-documentdb-is-upsert", &["true", "TRUE", "false"]),
            ("x-ms-cosmos-is-query-plan-request", &["true", "false"]),
            (
                "content-type",
                &[
                    "application/query+json",
                    "application/json",
                    "application/json-patch+json",
                ],
            ),
            (
                "x-ms-consistency-level",
                &["Session", "Eventual", "Strong", "x"],
            ),
            (
                "x-ms-start-epk",
                &["", "00", "05C1D0", "7FFFFFFFFFFFFFFF", "zz", "ff"],
            ),
            ("x-ms-end-epk", &["", "FF", "ff", "05C1D0", "00", "zz"]),
            ("a-im", &["Incremental feed", "incremental FEED", "x"]),
            ("x-ms-cosmos-changefeed-start-from-now", &["true", ""]),
            ("x-ms-session-token", &["0:-1#1", "x"]),
            (
                "x-ms-activity-id",
                &["00000000-0000-0000-0000-000000000000", "x"],
            ),
            ("x-ms-version", &["2018-12-31", "2020-07-15", "x"]),
        ];
        table
            .into_iter()
            .map(|(name, plausible)| {
                // Most routes under a container need the partition key.
                let present = if name == "x-ms-documentdb-partitionkey" {
                    0.8
                } else {
                    0.35
                };
                prop::option::weighted(present, value(plausible))
                    .prop_map(move |value| (name, value))
            })
            .collect::<Vec<_>>()
    }

    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        let documents = prop::sample::select(vec![
            "{\"id\":\"1\",\"pk\":\"a\"}",
            "{\"id\":\"2\",\"pk\":\"a\",\"n\":1}",
            "{\"id\":\"3\",\"pk\":1}",
            "{\"id\":\"1\"}",
            "{\"pk\":\"a\"}",
            "{\"id\":1,\"pk\":\"a\"}",
            "{\"id\":\"a/b\",\"pk\":\"a\"}",
            "{\"query\":\"SELECT * FROM c\"}",
            "{\"query\":\"SELECT * FROM c WHERE c.pk = @p\",\"parameters\":[{\"name\":\"@p\",\"value\":\"a\"}]}",
            "{\"query\":\"SELECT VALUE COUNT(1) FROM c\"}",
            "{\"query\":\"SELECT * FROM c ORDER BY c.n OFFSET 1 LIMIT 2\"}",
            "{\"query\":1}",
            "{\"operations\":[{\"op\":\"set\",\"path\":\"/n\",\"value\":1}]}",
            "{\"operations\":[{\"op\":\"incr\",\"path\":\"/n\",\"value\":1e308}]}",
            "{\"operations\":[{\"op\":\"remove\",\"path\":\"/id\"}]}",
            "{\"id\":\"db2\"}",
            "{}",
            "[]",
            "null",
            "",
        ]);
        prop_oneof![
            6 => documents.prop_map(|text| text.as_bytes().to_vec()),
            1 => jsonish(),
            1 => prop::collection::vec(any::<u8>(), 0..100),
        ]
    }

    /// The master-key `authorization` of a request as the SDKs compute it.
    fn master_signature(key: &[u8], method: &str, rest: &str, date: &str, encoded: bool) -> String {
        let segments: Vec<String> = rest
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_string)
            .collect();
        let (resource_type, resource_link) = resource_of(&segments);
        let payload = format!(
            "{}\n{}\n{}\n{}\n\n",
            method.to_lowercase(),
            resource_type.to_lowercase(),
            resource_link,
            date.to_lowercase()
        );
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), payload.as_bytes());
        let text = format!(
            "type=master&ver=1.0&sig={}",
            base64::engine::general_purpose::STANDARD.encode(mac.as_ref())
        );
        if encoded {
            percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        } else {
            text
        }
    }

    fn assert_cosmos_error(answer: &Answer) {
        let status = answer.status.as_u16();
        assert!((400..500).contains(&status), "{answer:?}");
        let json = answer.json();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), 2, "{json}");
        assert!(json["code"].is_string(), "{json}");
        assert!(
            json["message"].as_str().unwrap().contains("ActivityId: "),
            "{json}"
        );
        assert!(
            answer.headers.contains_key("x-ms-activity-id"),
            "{answer:?}"
        );
        assert!(answer.headers.contains_key("x-ms-substatus"), "{answer:?}");
    }

    // One server for all cases (an account set up through ARM), so the runner is driven by
    // hand rather than by `proptest!`, which would set one up per case.
    #[test]
    fn data_plane_headers_are_served_or_refused_as_cosmos() {
        let server = TestServer::start();
        let keys = server.cosmos_account("acct");
        let decode = |field: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(keys[field].as_str().unwrap())
                .unwrap()
        };
        let master_keys = [
            decode("primaryMasterKey"),
            decode("primaryReadonlyMasterKey"),
        ];
        let aad = server.token("https://cosmos.azure.com/.default").unwrap();
        let strategy = (
            prop::sample::select(vec![
                "acct", "acct", "acct", "acct", "acct", "acct", "acct", "nosuch",
            ]),
            prop::sample::select(ROUTES.to_vec()),
            auths(),
            headers(),
            bodies(),
        );
        let mut runner = TestRunner::new(Config {
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(
            &strategy,
            |(account, (method, rest), auth, values, body)| {
                let mut headers = HeaderMap::new();
                for (name, value) in values {
                    if let Some(value) = value {
                        headers.insert(name, HeaderValue::from_bytes(&value).unwrap());
                    }
                }
                let date = header(&headers, "x-ms-date")
                    .or_else(|| header(&headers, "date"))
                    .unwrap_or_default()
                    .to_string();
                let authorization = match &auth {
                    Auth::Master { key, encoded } => {
                        master_signature(&master_keys[*key], method, rest, &date, *encoded)
                            .into_bytes()
                    }
                    Auth::Aad => format!("type=aad&ver=1.0&sig={aad}").into_bytes(),
                    Auth::Other(bytes) => bytes.clone(),
                };
                headers.insert(
                    "authorization",
                    HeaderValue::from_bytes(&authorization).unwrap(),
                );
                let mut request = Request::builder()
                    .method(method)
                    .uri(format!("/cosmos/{account}/{rest}"))
                    .body(Body::from(body))
                    .unwrap();
                *request.headers_mut() = headers;
                let answer = server.send(request);
                let status = answer.status.as_u16();
                if status >= 400 {
                    if method != "HEAD" {
                        assert_cosmos_error(&answer);
                    }
                    if account == "acct" && matches!(auth, Auth::Other(_)) {
                        assert_eq!(status, 401, "{answer:?}");
                    }
                } else {
                    assert!(answer.status.is_success() || status == 304, "{answer:?}");
                    assert!(
                        account == "acct" && !matches!(auth, Auth::Other(_)),
                        "{answer:?}"
                    );
                }
                Ok(())
            },
        );
        if let Err(error) = result {
            panic!("{error}");
        }
    }
}
