//! Request-size and JSON-depth limits, enforced for every route by one layer (`enforce`) before
//! any handler runs, and answered in the error shape of the route's protocol.
//!
//! A body is read as it streams in and never held past its family's limit: a declared
//! `Content-Length` over the limit is refused before a byte of the body is read, a chunked body
//! as soon as the limit is passed. The rest of a refused body is then read and thrown away
//! (`drain`, at most `DRAIN_MOST_BYTES` in `DRAIN_MOST_TIME`) so the client, which is still
//! sending, reads the answer instead of a reset; a client that sent `Expect: 100-continue`
//! gets the answer without sending the body at all.
//!
//! The limits are Azure's where Azure documents one (the sources are at each constant). The
//! nesting of a JSON body is checked in the same pass (`nesting_overflow`), with the position
//! and wording of serde_json's own recursion limit, so every parser behind the layer (serde_json,
//! the template reader, JSONC) sees at most 127 nested arrays and objects.
//!
//! **Architecture invariant:** handlers never read a request body that has not passed here; the
//! layer knows each protocol's error shape but no route's semantics.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use openmi_engine::{CosmosFailure, EngineError};

use crate::connection::Activity;
use crate::context::RequestContext;
use crate::error::{ArmError, OAuthError};
use crate::AppState;

const MB: usize = 1024 * 1024;

/// ARM: "The request content size exceeds the maximum size of 4 MB." (`RequestContentTooLarge`,
/// 413, what ARM answers a deployment over it; "Template limits" in learn.microsoft.com's ARM
/// template best practices: a template and a parameter file are limited to 4 MB).
pub(crate) const ARM_BODY_LIMIT: usize = 4 * MB;
/// Microsoft Graph: "The Microsoft Graph REST API has a 4 MB request limit" (413 "Request Entity
/// Too Large: The request size exceeds the maximum limit.", Graph's error reference).
pub(crate) const GRAPH_BODY_LIMIT: usize = 4 * MB;
/// Cosmos DB for NoSQL: "Maximum size of an item: 2 MB (UTF-8 length of JSON representation)"
/// (service quotas, per-item limits); over it the service answers 413 `RequestEntityTooLarge`,
/// substatus 0, `{"Errors":["Request size is too large"]}`.
pub(crate) const COSMOS_BODY_LIMIT: usize = 2 * MB;
/// Entra's token, authorize and device-code endpoints publish no limit; their form bodies are a
/// few kilobytes (a client assertion with its certificate chain is the largest), so 1 MB
/// refuses nothing a client sends.
pub(crate) const ENTRA_BODY_LIMIT: usize = MB;
/// The agent protocol's bodies (a batch of token requests) are small too.
pub(crate) const AGENT_BODY_LIMIT: usize = MB;

/// The nesting at which a JSON body is refused: the 128th array or object open at once, where
/// serde_json's recursion limit (128) stops, and Cosmos DB's "maximum nesting depth for
/// embedded objects / arrays: 128".
pub(crate) const JSON_DEPTH_LIMIT: usize = 128;

/// How much of a refused body is read and discarded so the client sees the answer.
const DRAIN_MOST_BYTES: u64 = 64 * MB as u64;
/// How long a refused body is drained at most.
const DRAIN_MOST_TIME: Duration = Duration::from_secs(30);

/// Which protocol a path belongs to, for its limit and its error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Arm,
    Graph,
    Entra,
    Cosmos,
    Agent,
}

impl Family {
    /// The family of a (slash-collapsed) path, by the same prefixes the router uses; anything
    /// else is ARM, the router's fallback.
    pub(crate) fn of(path: &str) -> Family {
        let mut segments = path.trim_start_matches('/').split('/');
        let first = segments.next().unwrap_or_default();
        let second = segments.next().unwrap_or_default();
        let is = |segment: &str, name: &str| segment.eq_ignore_ascii_case(name);
        if is(first, "subscriptions") || is(first, "tenants") || is(first, "providers") {
            Family::Arm
        } else if first == "cosmos" {
            Family::Cosmos
        } else if first == "v1.0" || first == "beta" {
            Family::Graph
        } else if first == "openmi" && second == "agent" {
            Family::Agent
        } else if second == "oauth2"
            || first == "oauth2"
            || first == "devicelogin"
            || first == "common"
        {
            Family::Entra
        } else {
            Family::Arm
        }
    }

    pub(crate) fn body_limit(self) -> usize {
        match self {
            Family::Arm => ARM_BODY_LIMIT,
            Family::Graph => GRAPH_BODY_LIMIT,
            Family::Entra => ENTRA_BODY_LIMIT,
            Family::Cosmos => COSMOS_BODY_LIMIT,
            Family::Agent => AGENT_BODY_LIMIT,
        }
    }

    /// Entra's endpoints take forms, every other family JSON.
    fn takes_json(self) -> bool {
        self != Family::Entra
    }
}

/// Why a request was refused before its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooLarge,
    /// The JSON body nests too deep; where (line, column as serde_json reports them).
    TooDeep {
        line: usize,
        column: usize,
    },
    /// The client paused longer than the header timeout while sending the body.
    Stalled,
    /// The body could not be read (the connection failed, or its framing was wrong).
    Unreadable,
}

/// The layer: checks the declared length, reads the body up to the family's limit, checks the
/// JSON nesting, and hands the handler a body that is whole in memory.
pub(crate) async fn enforce(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let family = Family::of(request.uri().path());
    let limit = family.body_limit();
    let pause = state.client_timeouts.header;
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let declared = declared_length(&parts.headers);
    if declared.is_some_and(|length| length > limit as u64) {
        drain(&parts, body, declared);
        return refusal_response(family, Refusal::TooLarge, &parts);
    }
    let bytes = match read_limited(body, limit, pause).await {
        Ok(bytes) => bytes,
        Err(Unread::TooLarge(rest)) => {
            drain(&parts, rest, declared);
            return refusal_response(family, Refusal::TooLarge, &parts);
        }
        Err(Unread::Stalled) => return refusal_response(family, Refusal::Stalled, &parts),
        Err(Unread::Failed) => return refusal_response(family, Refusal::Unreadable, &parts),
    };
    if family.takes_json() {
        if let Some((line, column)) = nesting_overflow(&bytes) {
            return refusal_response(family, Refusal::TooDeep { line, column }, &parts);
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

enum Unread {
    /// Over the limit; the body with what was not read yet.
    TooLarge(Body),
    Stalled,
    Failed,
}

/// The whole body, if it stays within `limit` and no pause between its parts exceeds `pause`.
async fn read_limited(mut body: Body, limit: usize, pause: Duration) -> Result<Bytes, Unread> {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout(pause, body.frame()).await {
            Err(_) => return Err(Unread::Stalled),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Unread::Failed),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(Unread::TooLarge(body));
        }
        if !data.is_empty() {
            parts.push(data);
        }
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => {
            let mut joined = Vec::with_capacity(total);
            for part in &parts {
                joined.extend_from_slice(part);
            }
            Bytes::from(joined)
        }
    })
}

/// Reads and discards the rest of a refused body in the background (keeping the connection's
/// request open meanwhile), so the client, still sending, gets to read the answer. Not for a
/// client waiting for `100 Continue` (it reads the answer without sending the body) nor for a
/// declared body too large to be worth it.
fn drain(parts: &axum::http::request::Parts, mut body: Body, declared: Option<u64>) {
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
    if expects_continue || declared.is_some_and(|length| length > DRAIN_MOST_BYTES) {
        return;
    }
    let busy = parts.extensions.get::<Activity>().map(Activity::begin);
    tokio::spawn(async move {
        let _busy = busy;
        let deadline = tokio::time::Instant::now() + DRAIN_MOST_TIME;
        let mut drained = 0u64;
        while drained <= DRAIN_MOST_BYTES {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        drained += data.len() as u64;
                    }
                }
                _ => break,
            }
        }
    });
}

/// Where `body` opens its `JSON_DEPTH_LIMIT`th nested array or object, as serde_json would
/// report it (1-based line, and byte column on that line), if it does. Strings are skipped, and
/// so are `//` and `/* */` comments (ARM's relaxed JSON, `openmi_model::jsonc`).
pub(crate) fn nesting_overflow(body: &[u8]) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut index = 0usize;
    while index < body.len() {
        match body[index] {
            b'"' => {
                index += 1;
                while index < body.len() && body[index] != b'"' {
                    index += if body[index] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if body.get(index + 1) == Some(&b'/') => {
                while index < body.len() && body[index] != b'\n' {
                    index += 1;
                }
                continue;
            }
            b'/' if body.get(index + 1) == Some(&b'*') => {
                index += 2;
                while index < body.len() && !body[index..].starts_with(b"*/") {
                    index += 1;
                }
                index += 1;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth >= JSON_DEPTH_LIMIT {
                    return Some(position(body, index));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        index += 1;
    }
    None
}

/// serde_json's position of the byte at `index`: line from 1, column = bytes since the line's
/// start, this one included.
fn position(body: &[u8], index: usize) -> (usize, usize) {
    let before = &body[..index];
    let line_start = before
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let line = 1 + before.iter().filter(|byte| **byte == b'\n').count();
    (line, index + 1 - line_start)
}

/// The answer to a refused request, in its family's shape.
pub(crate) fn refusal_response(
    family: Family,
    refusal: Refusal,
    parts: &axum::http::request::Parts,
) -> Response {
    let limit_mb = family.body_limit() / MB;
    let recursion = |line: usize, column: usize| {
        format!("recursion limit exceeded at line {line} column {column}")
    };
    match family {
        Family::Arm => match refusal {
            Refusal::TooLarge => ArmError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestContentTooLarge",
                format!("The request content size exceeds the maximum size of {limit_mb} MB."),
            ),
            Refusal::TooDeep { line, column } => ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                format!(
                    "The request content was invalid and could not be deserialized: '{}'.",
                    recursion(line, column)
                ),
            ),
            Refusal::Stalled => ArmError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                "The request content was not received in time.",
            ),
            Refusal::Unreadable => ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: the body could not be read.",
            ),
        }
        .into_response(),
        Family::Graph => match refusal {
            Refusal::TooLarge => ArmError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request_BadRequest",
                "The request size exceeds the maximum limit.",
            ),
            Refusal::TooDeep { line, column } => ArmError::new(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                format!(
                    "The request body is not valid JSON: {}",
                    recursion(line, column)
                ),
            ),
            Refusal::Stalled => ArmError::new(
                StatusCode::REQUEST_TIMEOUT,
                "Request_Timeout",
                "The request body was not received in time.",
            ),
            Refusal::Unreadable => ArmError::new(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "The request body could not be read.",
            ),
        }
        .into_response(),
        Family::Entra => {
            let context = parts.extensions.get::<RequestContext>().cloned();
            let context = context.unwrap_or_else(|| RequestContext {
                request_id: uuid::Uuid::new_v4().to_string(),
                correlation_id: uuid::Uuid::new_v4().to_string(),
                client_request_id: None,
                host: None,
            });
            let tenant = parts
                .uri
                .path()
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default();
            let (status, detail) = match refusal {
                Refusal::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body exceeds the maximum size of {limit_mb} MB."),
                ),
                Refusal::TooDeep { .. } | Refusal::Unreadable => (
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read.".to_string(),
                ),
                Refusal::Stalled => (
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body was not received in time.".to_string(),
                ),
            };
            let mut error =
                OAuthError::from_engine(EngineError::BadRequest(detail), &context, tenant);
            error.status = status;
            error.into_response()
        }
        Family::Cosmos => {
            let failure = match refusal {
                Refusal::TooLarge => CosmosFailure::new(
                    413,
                    0,
                    "RequestEntityTooLarge",
                    r#"Message: {"Errors":["Request size is too large"]}"#,
                ),
                Refusal::TooDeep { line, column } => CosmosFailure::new(
                    400,
                    0,
                    "BadRequest",
                    format!(
                        "The request payload is invalid: {}.",
                        recursion(line, column)
                    ),
                ),
                Refusal::Stalled => CosmosFailure::new(
                    408,
                    0,
                    "RequestTimeout",
                    "The request body was not received in time.",
                ),
                Refusal::Unreadable => CosmosFailure::new(
                    400,
                    0,
                    "BadRequest",
                    "The request payload could not be read.",
                ),
            };
            crate::cosmos::failure_response(failure, &crate::cosmos::activity_id(&parts.headers))
        }
        Family::Agent => match refusal {
            Refusal::TooLarge => crate::agent::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("The request body exceeds the maximum size of {limit_mb} MB."),
            ),
            Refusal::TooDeep { .. } | Refusal::Unreadable => crate::agent::error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The body must be a JSON object.",
            ),
            Refusal::Stalled => crate::agent::error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "The request body was not received in time.",
            ),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_belong_to_their_protocol() {
        let check = |path: &str, family: Family| assert_eq!(Family::of(path), family, "{path}");
        check("/subscriptions/s/resourcegroups/g", Family::Arm);
        check("/SUBSCRIPTIONS/s/resourceGroups/oauth2/x", Family::Arm);
        check("/tenants", Family::Arm);
        check("/providers/Microsoft.Resources/operations", Family::Arm);
        check("/metadata/endpoints", Family::Arm);
        check("/", Family::Arm);
        check("/portal/", Family::Arm);
        check("/cosmos/acct/dbs/d/colls/c/docs", Family::Cosmos);
        check("/cosmos/acct", Family::Cosmos);
        check("/v1.0/applications", Family::Graph);
        check("/openmi/agent/tokens", Family::Agent);
        check("/organizations/oauth2/v2.0/token", Family::Entra);
        check("/t/oauth2/token", Family::Entra);
        check("/t/oauth2/v2.0/devicecode", Family::Entra);
        check("/devicelogin", Family::Entra);
        check("/common/discovery/instance", Family::Entra);
    }

    /// serde_json's error for `text`, if it is its recursion limit.
    fn serde_recursion_error(text: &[u8]) -> Option<String> {
        match serde_json::from_slice::<serde_json::Value>(text) {
            Err(error) if error.to_string().starts_with("recursion limit exceeded") => {
                Some(error.to_string())
            }
            _ => None,
        }
    }

    fn check_nesting(text: &str) {
        let ours = nesting_overflow(text.as_bytes()).map(|(line, column)| {
            format!("recursion limit exceeded at line {line} column {column}")
        });
        assert_eq!(ours, serde_recursion_error(text.as_bytes()), "{text}");
    }

    #[test]
    fn nesting_is_refused_where_serde_json_stops() {
        check_nesting(&"[".repeat(127));
        check_nesting(&format!("{}{}", "[".repeat(127), "]".repeat(127)));
        check_nesting(&"[".repeat(128));
        check_nesting(&"[".repeat(10_000));
        check_nesting(&format!("{{\"a\":\n  {}", "{\"b\": [".repeat(70)));
        check_nesting(&format!("[\"{}\", {}", "[".repeat(500), "[".repeat(126)));
        check_nesting(&format!("[\"\\\"[[\", {}", "[".repeat(127)));
        // Siblings do not add up.
        check_nesting(&"[[]]".repeat(1000));
    }

    #[test]
    fn comments_do_not_count() {
        let text = format!(
            "// {}\n{{ /* {} */ \"a\": 1 }}",
            "[".repeat(200),
            "{".repeat(200)
        );
        assert_eq!(nesting_overflow(text.as_bytes()), None);
        let deep = format!("/* x */ {}", "[".repeat(200));
        assert_eq!(nesting_overflow(deep.as_bytes()), Some((1, 9 + 127)));
    }

    fn body_of(response: Response) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let body = futures_util::FutureExt::now_or_never(response.into_body().collect())
            .and_then(Result::ok)
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    fn parts(path: &str) -> axum::http::request::Parts {
        axum::http::Request::builder()
            .uri(path)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn refusals_speak_each_protocol() {
        let refuse = |path: &str, refusal| {
            body_of(refusal_response(Family::of(path), refusal, &parts(path)))
        };
        let deep = Refusal::TooDeep {
            line: 1,
            column: 128,
        };

        let (status, body) = refuse("/subscriptions/s/resourcegroups/g", Refusal::TooLarge);
        assert_eq!(status, 413);
        assert_eq!(body["error"]["code"], "RequestContentTooLarge");
        assert_eq!(
            body["error"]["message"],
            "The request content size exceeds the maximum size of 4 MB."
        );
        let (status, body) = refuse("/subscriptions/s", deep);
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "InvalidRequestContent");
        assert_eq!(body["error"]["message"], "The request content was invalid and could not be deserialized: 'recursion limit exceeded at line 1 column 128'.");

        let (status, body) = refuse("/v1.0/applications", Refusal::TooLarge);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (413, Some("Request_BadRequest"))
        );
        let (status, body) = refuse("/v1.0/applications", deep);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("Request_BadRequest"))
        );

        let (status, body) = refuse("/t/oauth2/v2.0/token", Refusal::TooLarge);
        assert_eq!(
            (status, body["error"].as_str()),
            (413, Some("invalid_request"))
        );
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90014: "));
        assert_eq!(body["error_codes"], serde_json::json!([90014]));

        let (status, body) = refuse("/cosmos/a/dbs/d/colls/c/docs", Refusal::TooLarge);
        assert_eq!(
            (status, body["code"].as_str()),
            (413, Some("RequestEntityTooLarge"))
        );
        assert!(body["message"]
            .as_str()
            .unwrap()
            .starts_with(r#"Message: {"Errors":["Request size is too large"]}"#));
        let (status, body) = refuse("/cosmos/a/dbs/d/colls/c/docs", deep);
        assert_eq!((status, body["code"].as_str()), (400, Some("BadRequest")));

        let (status, body) = refuse("/openmi/agent/tokens", Refusal::TooLarge);
        assert_eq!(
            (status, body["error"].as_str()),
            (413, Some("invalid_request"))
        );

        for path in [
            "/subscriptions/s",
            "/v1.0/users",
            "/t/oauth2/token",
            "/cosmos/a/dbs",
            "/openmi/agent/token",
        ] {
            assert_eq!(refuse(path, Refusal::Stalled).0, 408, "{path}");
            assert_eq!(refuse(path, Refusal::Unreadable).0, 400, "{path}");
        }
    }
}

/// Arbitrary bodies through the layer's checks and ARM's body parsers: nothing panics, and every
/// refusal is ARM's `{"error":{"code","message"}}` with a 4xx status.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// Pieces that make JSON, ARM's relaxed JSON and its near misses likely.
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
            "\n",
            "//",
            "/*",
            "*/",
            "a",
            "1",
            "-2.5e3",
            "true",
            "null",
            "\"k\"",
            "\"[[\"",
            "é",
            "\u{0}",
            "\"template\"",
            "\"properties\"",
        ]);
        (0usize..200, prop::collection::vec(pieces, 0..300)).prop_map(|(depth, pieces)| {
            let mut text = "[".repeat(depth);
            for piece in pieces {
                text.push_str(piece);
            }
            text.into_bytes()
        })
    }

    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![prop::collection::vec(any::<u8>(), 0..600), jsonish()]
    }

    /// What ARM answers a body: the layer's refusal, or the parser's error, or nothing.
    fn arm_answer(body: &[u8], parse: fn(&Bytes) -> Option<ArmError>) -> Option<Response> {
        if let Some((line, column)) = nesting_overflow(body) {
            let parts = axum::http::Request::builder()
                .uri("/subscriptions/s/resourcegroups/g")
                .body(())
                .unwrap()
                .into_parts()
                .0;
            return Some(refusal_response(
                Family::Arm,
                Refusal::TooDeep { line, column },
                &parts,
            ));
        }
        parse(&Bytes::copy_from_slice(body)).map(IntoResponse::into_response)
    }

    fn assert_arm_shaped(response: Response) {
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "{status}");
        let body = futures_util::FutureExt::now_or_never(response.into_body().collect())
            .and_then(Result::ok)
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let error = json["error"].as_object().unwrap();
        assert_eq!(error.len(), 2, "{json}");
        assert_eq!(error["code"], "InvalidRequestContent");
        assert!(error["message"]
            .as_str()
            .unwrap()
            .starts_with("The request content was invalid and could not be deserialized"));
    }

    proptest! {
        #[test]
        fn arm_bodies_never_panic_and_refusals_are_arm_shaped(body in bodies()) {
            let parsers: [fn(&Bytes) -> Option<ArmError>; 2] = [
                |body| crate::arm::parse_body(body).err(),
                |body| crate::deployments::deployment_body(body).err(),
            ];
            for parse in parsers {
                if let Some(response) = arm_answer(&body, parse) {
                    assert_arm_shaped(response);
                }
            }
        }

        #[test]
        fn the_layer_refuses_whatever_serde_json_finds_too_deep(body in jsonish()) {
            if let Err(error) = serde_json::from_slice::<serde_json::Value>(&body) {
                if error.to_string().starts_with("recursion limit exceeded") {
                    let (line, column) = nesting_overflow(&body).unwrap();
                    prop_assert_eq!(
                        format!("recursion limit exceeded at line {line} column {column}"),
                        error.to_string()
                    );
                }
            }
        }
    }
}
