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
