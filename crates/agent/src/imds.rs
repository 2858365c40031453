//! IMDS as Azure serves it on 169.254.169.254 (protocols.md §1): the managed-identity token
//! endpoint, `/metadata/identity/info`, `/metadata/instance[/...]` and `/metadata/versions`,
//! with IMDS's checks (GET only, `Metadata: true`, no `X-Forwarded-For`, a listed api-version)
//! and its error bodies (`ImdsError`).
//!
//! "Identity not found" is always 400, never a retryable status: SDKs turn 400 into
//! `CredentialUnavailableError` and move on, while 404/410/429/5xx cost them minutes of retries
//! (protocols.md §6). The token itself is never logged.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::io::Write as _;

use serde_json::{json, Value};

use crate::cache::CachedToken;
use crate::http::AppState;
use crate::instance;
use crate::server_client::Selector;
use crate::throttle::Admission;
use crate::tokens::TokenFailure;

/// Every api-version IMDS accepts (protocols.md §1.1), oldest first.
pub const API_VERSIONS: [&str; 35] = [
    "2017-03-01",
    "2017-04-02",
    "2017-08-01",
    "2017-10-01",
    "2017-12-01",
    "2018-02-01",
    "2018-04-02",
    "2018-10-01",
    "2019-02-01",
    "2019-03-11",
    "2019-04-30",
    "2019-06-01",
    "2019-06-04",
    "2019-08-01",
    "2019-08-15",
    "2019-11-01",
    "2020-06-01",
    "2020-07-15",
    "2020-09-01",
    "2020-10-01",
    "2020-12-01",
    "2021-01-01",
    "2021-02-01",
    "2021-03-01",
    "2021-05-01",
    "2021-08-01",
    "2021-10-01",
    "2021-11-01",
    "2021-11-15",
    "2021-12-13",
    "2023-07-01",
    "2023-11-15",
    "2024-03-15",
    "2024-07-17",
    "2025-04-07",
];
/// The identity category exists from this api-version on.
pub const IDENTITY_MINIMUM_VERSION: &str = "2018-02-01";
/// What IMDS lists as the newest versions in its api-version error.
const NEWEST_VERSIONS: [&str; 3] = ["2025-04-07", "2024-07-17", "2024-03-15"];
const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// An IMDS error: status and body as IMDS words them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImdsError {
    MetadataHeader,
    Forwarded,
    /// api-version missing, unknown, or too old for the category.
    ApiVersion,
    MalformedQuery,
    DuplicateParameter(String),
    ResourceMissing,
    SeveralSelectors,
    MethodNotAllowed,
    NotFound,
    IdentityNotFound,
    /// The server's 4xx, passed on as 400 with its words.
    Refused {
        error: String,
        description: String,
    },
    Unavailable,
    Throttled {
        retry_after: u64,
    },
    InstanceUnavailable,
    LeafNeedsText,
    InvalidFormat,
}

impl ImdsError {
    pub fn status(&self) -> StatusCode {
        match self {
            ImdsError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ImdsError::NotFound => StatusCode::NOT_FOUND,
            ImdsError::Unavailable | ImdsError::InstanceUnavailable => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ImdsError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn body(&self) -> Value {
        let (error, description) = match self {
            ImdsError::ApiVersion => {
                return json!({
                    "error": "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds",
                    "newest-versions": NEWEST_VERSIONS,
                })
            }
            ImdsError::MetadataHeader => {
                ("invalid_request", "Required metadata header not specified".to_string())
            }
            ImdsError::Forwarded => (
                "invalid_request",
                "Requests with an X-Forwarded-For header are not accepted; IMDS cannot be reached through a proxy".to_string(),
            ),
            ImdsError::MalformedQuery => {
                ("invalid_request", "The query string is malformed".to_string())
            }
            ImdsError::DuplicateParameter(name) => (
                "invalid_request",
                format!("Duplicate query parameter: {name}"),
            ),
            ImdsError::ResourceMissing => (
                "invalid_request",
                "Required audience parameter not specified".to_string(),
            ),
            ImdsError::SeveralSelectors => (
                "invalid_request",
                "Only one of client_id, object_id and msi_res_id may be specified".to_string(),
            ),
            ImdsError::MethodNotAllowed => (
                "method_not_allowed",
                "The request method is not allowed; use GET".to_string(),
            ),
            ImdsError::NotFound => (
                "not_found",
                "The requested path was not found".to_string(),
            ),
            ImdsError::IdentityNotFound => ("invalid_request", "Identity not found".to_string()),
            ImdsError::Refused { error, description } => {
                return json!({"error": error, "error_description": description})
            }
            ImdsError::Unavailable => (
                "unknown",
                "Failed to retrieve token from the Active directory".to_string(),
            ),
            ImdsError::Throttled { retry_after } => (
                "too_many_requests",
                format!("Too many requests; retry after {retry_after} seconds"),
            ),
            ImdsError::InstanceUnavailable => (
                "unknown",
                "The instance metadata is not available yet".to_string(),
            ),
            ImdsError::LeafNeedsText => (
                "bad_request",
                "Leaf nodes need format=text".to_string(),
            ),
            ImdsError::InvalidFormat => (
                "bad_request",
                "The format parameter must be json or text".to_string(),
            ),
        };
        json!({"error": error, "error_description": description})
    }
}

impl From<TokenFailure> for ImdsError {
    fn from(failure: TokenFailure) -> ImdsError {
        match failure {
            TokenFailure::IdentityNotFound => ImdsError::IdentityNotFound,
            TokenFailure::Refused {
                error, description, ..
            } => ImdsError::Refused { error, description },
            TokenFailure::Unavailable => ImdsError::Unavailable,
            TokenFailure::Throttled(throttled) => ImdsError::Throttled {
                retry_after: throttled.retry_after,
            },
        }
    }
}

impl IntoResponse for ImdsError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status(), self.body().to_string().into_bytes());
        if let ImdsError::Throttled { retry_after } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

/// A response with `body` as `application/json; charset=utf-8`.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    typed_response(status, JSON, body)
}

/// `200` with a JSON body already in `Bytes`, in any body type made from them (the fast path
/// sends `Full<Bytes>`, not a boxed body).
pub fn json_ok<B: From<Bytes>>(body: Bytes) -> axum::http::Response<B> {
    with_content_type(axum::http::Response::new(B::from(body)), JSON)
}

fn typed_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut response = Response::new(Body::from(body.into()));
    *response.status_mut() = status;
    with_content_type(response, content_type)
}

fn with_content_type<B>(
    mut response: axum::http::Response<B>,
    content_type: &'static str,
) -> axum::http::Response<B> {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// IMDS's header rules: `Metadata: true`, and no `X-Forwarded-For` (SSRF mitigation).
pub fn check_headers(headers: &HeaderMap) -> Result<(), ImdsError> {
    // Named once, not parsed from a string on every request.
    static METADATA: HeaderName = HeaderName::from_static("metadata");
    static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    // One pass over the few headers a request carries, not two hashed lookups of non-standard
    // names (the cached-token path, BENCHMARKS.md). The first `Metadata` value counts, as `get`.
    let mut metadata = None;
    let mut forwarded = false;
    for (name, value) in headers {
        if *name == METADATA {
            metadata.get_or_insert(value);
        } else if *name == X_FORWARDED_FOR {
            forwarded = true;
        }
    }
    let metadata = metadata
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
    if !metadata {
        return Err(ImdsError::MetadataHeader);
    }
    if forwarded {
        return Err(ImdsError::Forwarded);
    }
    Ok(())
}

/// A query's name/value pairs, decoded; borrowed from the query where no decoding was needed.
pub type Parameters<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// One name or value of `application/x-www-form-urlencoded` text decoded as `form_urlencoded`
/// (and so `serde_urlencoded`) decodes it: `+` is a space, `%XX` a byte, a `%` not followed by
/// two hex digits stays, invalid UTF-8 becomes U+FFFD; borrowed when nothing needed decoding.
fn form_decode(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|byte| byte == b'%' || byte == b'+') {
        return Cow::Borrowed(text);
    }
    let hex = |byte: u8| (byte as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'+' => decoded.push(b' '),
            b'%' => match (
                bytes.get(index + 1).copied().and_then(hex),
                bytes.get(index + 2).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    decoded.push((high * 16 + low) as u8);
                    index += 2;
                }
                _ => decoded.push(b'%'),
            },
            other => decoded.push(other),
        }
        index += 1;
    }
    match String::from_utf8(decoded) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

/// The query's name/value pairs; a name given twice is refused, as IMDS does.
pub fn parse_query(query: Option<&str>) -> Result<Parameters<'_>, ImdsError> {
    let pairs: Parameters = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
        .collect();
    reject_duplicates(&pairs)?;
    Ok(pairs)
}

/// Refuses a parameter name given twice.
pub fn reject_duplicates(pairs: &[(Cow<'_, str>, Cow<'_, str>)]) -> Result<(), ImdsError> {
    for (index, (name, _)) in pairs.iter().enumerate() {
        if pairs[..index].iter().any(|(earlier, _)| earlier == name) {
            return Err(ImdsError::DuplicateParameter(name.to_string()));
        }
    }
    Ok(())
}

/// The value of `name`, if given and not empty.
pub fn parameter<'a>(
    parameters: &'a [(Cow<'_, str>, Cow<'_, str>)],
    name: &str,
) -> Option<&'a str> {
    parameters
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_ref())
        .filter(|value| !value.is_empty())
}

/// Checks `api-version`: listed by IMDS and not older than `minimum`.
pub fn check_api_version(
    parameters: &[(Cow<'_, str>, Cow<'_, str>)],
    minimum: &str,
) -> Result<(), ImdsError> {
    match parameter(parameters, "api-version") {
        Some(version) if API_VERSIONS.contains(&version) && version >= minimum => Ok(()),
        _ => Err(ImdsError::ApiVersion),
    }
}

/// A validated token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub resource: String,
    pub selector: Selector,
    pub bypass_cache: bool,
}

/// The token parameters shared by IMDS and the VM-extension endpoint: `resource`, at most one of
/// `client_id`, `object_id`, `msi_res_id` (or `mi_res_id`), and `bypass_cache=true`.
pub fn parse_token_parameters(
    parameters: &[(Cow<'_, str>, Cow<'_, str>)],
) -> Result<TokenRequest, ImdsError> {
    let resource = parameter(parameters, "resource").ok_or(ImdsError::ResourceMissing)?;
    let mut selectors = Vec::new();
    if let Some(id) = parameter(parameters, "client_id") {
        selectors.push(Selector::ClientId(id.to_string()));
    }
    if let Some(id) = parameter(parameters, "object_id") {
        selectors.push(Selector::ObjectId(id.to_string()));
    }
    for name in ["msi_res_id", "mi_res_id"] {
        if let Some(id) = parameter(parameters, name) {
            selectors.push(Selector::ResourceId(id.to_string()));
        }
    }
    if selectors.len() > 1 {
        return Err(ImdsError::SeveralSelectors);
    }
    Ok(TokenRequest {
        resource: resource.to_string(),
        selector: selectors.pop().unwrap_or(Selector::Default),
        bypass_cache: parameter(parameters, "bypass_cache")
            .is_some_and(|value| value.eq_ignore_ascii_case("true")),
    })
}

/// IMDS's success body (protocols.md §1.2): every value a string, `expires_in` counted down from
/// now, `resource` as requested, the selector echoed. Written by hand in the order and with the
/// escaping serde_json would use; the token's own strings are escaped once, when it is cached.
pub fn token_body(token: &CachedToken, request: &TokenRequest, now: i64) -> Vec<u8> {
    let (object_id, msi_res_id) = match &request.selector {
        Selector::ObjectId(id) => (Some(id.as_str()), None),
        Selector::ResourceId(id) => (None, Some(id.as_str())),
        _ => (None, None),
    };
    let mut body = Vec::with_capacity(
        token.access_token.len() + request.resource.len() + token.client_id.len() + 320,
    );
    let expires_in = token.expires_in(now);
    body.extend_from_slice(b"{\"access_token\":");
    token.write_access_token_json(&mut body);
    // Writing to a Vec cannot fail.
    let _ = write!(
        body,
        ",\"refresh_token\":\"\",\"expires_in\":\"{expires_in}\",\"expires_on\":\"{}\",\"ext_expires_in\":\"{expires_in}\",\"not_before\":\"{}\",\"resource\":",
        token.expires_on, token.not_before
    );
    write_json_str(&mut body, &request.resource);
    body.extend_from_slice(b",\"token_type\":\"Bearer\",\"client_id\":");
    write_json_str(&mut body, &token.client_id);
    if let Some(id) = object_id {
        body.extend_from_slice(b",\"object_id\":");
        write_json_str(&mut body, id);
    }
    if let Some(id) = msi_res_id {
        body.extend_from_slice(b",\"msi_res_id\":");
        write_json_str(&mut body, id);
    }
    body.push(b'}');
    body
}

/// Appends `text` as a JSON string, escaped as serde_json escapes it.
pub fn write_json_str(out: &mut Vec<u8>, text: &str) {
    if crate::cache::needs_json_escape(text) {
        let _ = serde_json::to_writer(&mut *out, text);
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// The IMDS success response for `token`.
pub fn token_response(token: &CachedToken, request: &TokenRequest, now: i64) -> Response {
    json_response(StatusCode::OK, token_body(token, request, now))
}

/// What the token endpoint can tell without waiting.
pub enum TokenStart {
    /// Refused, or a body memoised in this second (`memo.rs`): no await needed, so the agent's
    /// hot path (`http::Endpoint::call`) answers without building the endpoint's large future.
    Answered(Result<Bytes, ImdsError>),
    /// Admitted, and the answer needs the token cache (and perhaps the server).
    Mint(Mint),
}

/// An admitted token request still to be answered.
pub struct Mint {
    _admission: Admission,
    epoch: u64,
}

/// `GET /metadata/identity/oauth2/token` (protocols.md §1.1-§1.3) up to what it can answer at
/// once: the method, the headers, the throttle, then a query answered in this second with nothing
/// changed since gets the same bytes. `Mint::finish` does the rest.
pub fn token_start(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
) -> TokenStart {
    let admission = match admit_token_request(state, method, headers) {
        Ok(admission) => admission,
        Err(error) => return TokenStart::Answered(Err(error)),
    };
    let tokens = &state.tokens;
    let epoch = tokens.epoch();
    match query.and_then(|query| tokens.memo().get(query, epoch, tokens.now())) {
        Some(body) => {
            tokens.metrics().hit(crate::metrics::Hit::Memo);
            TokenStart::Answered(Ok(body))
        }
        None => TokenStart::Mint(Mint {
            _admission: admission,
            epoch,
        }),
    }
}

fn admit_token_request(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Admission, ImdsError> {
    if method != Method::GET {
        return Err(ImdsError::MethodNotAllowed);
    }
    check_headers(headers)?;
    Ok(state.tokens.admit()?)
}

impl Mint {
    /// The rest of the token endpoint: parse the query, get the token, write (and memoise) the
    /// body. The admission is held until the answer is made.
    pub async fn finish(self, state: &AppState, query: Option<&str>) -> Result<Bytes, ImdsError> {
        let parameters = parse_query(query)?;
        check_api_version(&parameters, IDENTITY_MINIMUM_VERSION)?;
        let request = parse_token_parameters(&parameters)?;
        let tokens = &state.tokens;
        let token = tokens
            .token_admitted(&request.selector, &request.resource, request.bypass_cache)
            .await?;
        let now = tokens.now();
        let body = Bytes::from(token_body(&token, &request, now));
        if let Some(query) = query.filter(|_| !request.bypass_cache && token.is_fresh(now)) {
            tokens.memo().put(query, self.epoch, now, body.clone());
        }
        Ok(body)
    }
}

/// `GET /metadata/identity/info` → `{"tenantId"}` (spec `imds.json`).
pub async fn identity_info(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = (|| {
        if method != Method::GET {
            return Err(ImdsError::MethodNotAllowed);
        }
        check_headers(&headers)?;
        let parameters = parse_query(query.as_deref())?;
        check_api_version(&parameters, IDENTITY_MINIMUM_VERSION)?;
        let tenant_id = state
            .tokens
            .snapshot()
            .map(|snapshot| snapshot.tenant_id.clone())
            .filter(|tenant_id| !tenant_id.is_empty())
            .unwrap_or_else(|| state.tenant_id.to_string());
        Ok(json_response(
            StatusCode::OK,
            json!({"tenantId": tenant_id}).to_string().into_bytes(),
        ))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /metadata/instance`.
pub async fn instance_get(
    state: State<AppState>,
    method: Method,
    headers: HeaderMap,
    query: RawQuery,
) -> Response {
    instance_at(state, method, headers, query, "")
}

/// `GET /metadata/instance/{path}`: route filtering.
pub async fn instance_get_path(
    state: State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(path): Path<String>,
    query: RawQuery,
) -> Response {
    instance_at(state, method, headers, query, &path)
}

/// The instance metadata at `path` (protocols.md §1.5): JSON by default, `format=text` for
/// leaves (and child names for inner nodes).
fn instance_at(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    path: &str,
) -> Response {
    let result = (|| {
        if method != Method::GET {
            return Err(ImdsError::MethodNotAllowed);
        }
        check_headers(&headers)?;
        let parameters = parse_query(query.as_deref())?;
        check_api_version(&parameters, API_VERSIONS[0])?;
        let text = match parameter(&parameters, "format") {
            None | Some("json") => false,
            Some("text") => true,
            Some(_) => return Err(ImdsError::InvalidFormat),
        };
        let snapshot = state
            .tokens
            .snapshot()
            .ok_or(ImdsError::InstanceUnavailable)?;
        let node = instance::select(&snapshot.metadata, path).ok_or(ImdsError::NotFound)?;
        if text {
            return Ok(typed_response(
                StatusCode::OK,
                TEXT,
                instance::render_text(node).into_bytes(),
            ));
        }
        if instance::is_leaf(node) {
            return Err(ImdsError::LeafNeedsText);
        }
        Ok(json_response(StatusCode::OK, node.to_string().into_bytes()))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /metadata/versions` → `{"apiVersions": [...]}` (no api-version needed).
pub async fn versions_get(method: Method, headers: HeaderMap) -> Response {
    let result = (|| {
        if method != Method::GET {
            return Err(ImdsError::MethodNotAllowed);
        }
        check_headers(&headers)?;
        Ok(json_response(
            StatusCode::OK,
            json!({"apiVersions": &API_VERSIONS[..]})
                .to_string()
                .into_bytes(),
        ))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Any other path.
pub async fn not_found() -> Response {
    ImdsError::NotFound.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> crate::imds::Parameters<'_> {
        parse_query(Some(query)).unwrap()
    }

    fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in list {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn error_statuses_and_bodies_are_imds_ones() {
        let check = |error: ImdsError, status: u16, body: Value| {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.body(), body, "{error:?}");
        };
        check(
            ImdsError::MetadataHeader,
            400,
            json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
        );
        check(
            ImdsError::IdentityNotFound,
            400,
            json!({"error": "invalid_request", "error_description": "Identity not found"}),
        );
        check(
            ImdsError::ApiVersion,
            400,
            json!({
                "error": "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds",
                "newest-versions": ["2025-04-07", "2024-07-17", "2024-03-15"],
            }),
        );
        check(
            ImdsError::ResourceMissing,
            400,
            json!({"error": "invalid_request", "error_description": "Required audience parameter not specified"}),
        );
        check(
            ImdsError::Refused {
                error: "invalid_resource".into(),
                description: "AADSTS500011: x".into(),
            },
            400,
            json!({"error": "invalid_resource", "error_description": "AADSTS500011: x"}),
        );
        check(
            ImdsError::Unavailable,
            500,
            json!({"error": "unknown", "error_description": "Failed to retrieve token from the Active directory"}),
        );
        check(
            ImdsError::Throttled { retry_after: 2 },
            429,
            json!({"error": "too_many_requests", "error_description": "Too many requests; retry after 2 seconds"}),
        );
        assert_eq!(ImdsError::Forwarded.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ImdsError::Forwarded.body()["error"], "invalid_request");
        assert_eq!(ImdsError::MethodNotAllowed.status().as_u16(), 405);
        assert_eq!(ImdsError::NotFound.status().as_u16(), 404);
    }

    #[test]
    fn throttled_answers_carry_retry_after() {
        let response = ImdsError::Throttled { retry_after: 3 }.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON);
    }

    #[test]
    fn headers_need_metadata_true_and_no_forwarding() {
        assert_eq!(check_headers(&headers(&[])), Err(ImdsError::MetadataHeader));
        assert_eq!(
            check_headers(&headers(&[("metadata", "false")])),
            Err(ImdsError::MetadataHeader)
        );
        assert_eq!(check_headers(&headers(&[("metadata", "true")])), Ok(()));
        assert_eq!(check_headers(&headers(&[("Metadata", "True")])), Ok(()));
        assert_eq!(
            check_headers(&headers(&[
                ("metadata", "true"),
                ("x-forwarded-for", "10.0.0.1")
            ])),
            Err(ImdsError::Forwarded)
        );
        assert_eq!(
            check_headers(&headers(&[
                ("x-forwarded-for", "10.0.0.1"),
                ("host", "169.254.169.254"),
                ("metadata", "true")
            ])),
            Err(ImdsError::Forwarded),
            "wherever the header is"
        );
        assert_eq!(
            check_headers(&headers(&[("x-forwarded-for", "10.0.0.1")])),
            Err(ImdsError::MetadataHeader),
            "the Metadata header is checked first"
        );
        let mut repeated = headers(&[("metadata", "false")]);
        repeated.append("metadata", HeaderValue::from_static("true"));
        assert_eq!(
            check_headers(&repeated),
            Err(ImdsError::MetadataHeader),
            "the first value counts"
        );
    }

    #[test]
    fn api_version_must_be_listed_and_recent_enough() {
        let check = |query: &str, minimum: &str| check_api_version(&pairs(query), minimum);
        assert_eq!(
            check("api-version=2018-02-01", IDENTITY_MINIMUM_VERSION),
            Ok(())
        );
        assert_eq!(
            check("api-version=2025-04-07", IDENTITY_MINIMUM_VERSION),
            Ok(())
        );
        assert_eq!(
            check("api-version=2017-12-01", IDENTITY_MINIMUM_VERSION),
            Err(ImdsError::ApiVersion)
        );
        assert_eq!(check("api-version=2017-12-01", API_VERSIONS[0]), Ok(()));
        assert_eq!(
            check("api-version=2018-02-02", IDENTITY_MINIMUM_VERSION),
            Err(ImdsError::ApiVersion)
        );
        assert_eq!(
            check("resource=x", IDENTITY_MINIMUM_VERSION),
            Err(ImdsError::ApiVersion)
        );
    }

    #[test]
    fn token_parameters_take_one_selector() {
        let check = |query: &str| parse_token_parameters(&pairs(query));
        assert_eq!(
            check("resource=https%3A%2F%2Fmanagement.azure.com%2F"),
            Ok(TokenRequest {
                resource: "https://management.azure.com/".into(),
                selector: Selector::Default,
                bypass_cache: false,
            })
        );
        assert_eq!(
            check("resource=r&client_id=C").map(|request| request.selector),
            Ok(Selector::ClientId("C".into()))
        );
        assert_eq!(
            check("resource=r&object_id=O").map(|request| request.selector),
            Ok(Selector::ObjectId("O".into()))
        );
        assert_eq!(
            check("resource=r&msi_res_id=%2Fsubscriptions%2Fx").map(|request| request.selector),
            Ok(Selector::ResourceId("/subscriptions/x".into()))
        );
        assert_eq!(
            check("resource=r&mi_res_id=M").map(|request| request.selector),
            Ok(Selector::ResourceId("M".into()))
        );
        assert_eq!(
            check("resource=r&bypass_cache=true").map(|request| request.bypass_cache),
            Ok(true)
        );
        assert_eq!(check("client_id=C"), Err(ImdsError::ResourceMissing));
        assert_eq!(check("resource="), Err(ImdsError::ResourceMissing));
        assert_eq!(
            check("resource=r&client_id=C&object_id=O"),
            Err(ImdsError::SeveralSelectors)
        );
        assert_eq!(
            parse_query(Some("resource=a&resource=b")),
            Err(ImdsError::DuplicateParameter("resource".into()))
        );
    }

    #[tokio::test]
    async fn success_body_has_only_strings_and_counts_down() {
        let token = CachedToken::new(
            "a.b.c".into(),
            "client".into(),
            "object".into(),
            "/res".into(),
            1_086_400,
            1_000_000,
            86_400,
            1_000_000,
        );
        let request = TokenRequest {
            resource: "https://management.azure.com".into(),
            selector: Selector::ObjectId("OBJECT".into()),
            bypass_cache: false,
        };
        let response = token_response(&token, &request, 1_000_100);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap(),
            json!({
                "access_token": "a.b.c", "refresh_token": "", "expires_in": "86300",
                "expires_on": "1086400", "ext_expires_in": "86300", "not_before": "1000000",
                "resource": "https://management.azure.com", "token_type": "Bearer",
                "client_id": "client", "object_id": "OBJECT",
            })
        );
    }

    #[test]
    fn hand_written_body_is_what_serde_json_writes() {
        #[derive(serde::Serialize)]
        struct TokenBody<'a> {
            access_token: &'a str,
            refresh_token: &'a str,
            expires_in: String,
            expires_on: String,
            ext_expires_in: String,
            not_before: String,
            resource: &'a str,
            token_type: &'a str,
            client_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            object_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            msi_res_id: Option<&'a str>,
        }
        let selectors = [
            Selector::Default,
            Selector::ClientId("C\"1".into()),
            Selector::ObjectId("o\\b\u{1}é".into()),
            Selector::ResourceId("/subscriptions/x/\n".into()),
        ];
        for access_token in ["a.b.c", "q\"uo\\te\t\u{7f}ü"] {
            for client_id in ["client", "c\"l"] {
                for selector in &selectors {
                    for resource in ["https://management.azure.com/", "r\"\u{0}"] {
                        let token = CachedToken::new(
                            access_token.into(),
                            client_id.into(),
                            "object".into(),
                            "/res".into(),
                            1_086_400,
                            -5,
                            86_400,
                            1_000_000,
                        );
                        let request = TokenRequest {
                            resource: resource.into(),
                            selector: selector.clone(),
                            bypass_cache: false,
                        };
                        for now in [1_000_100, 2_000_000] {
                            let expires_in = token.expires_in(now).to_string();
                            let expected = serde_json::to_vec(&TokenBody {
                                access_token,
                                refresh_token: "",
                                ext_expires_in: expires_in.clone(),
                                expires_in,
                                expires_on: token.expires_on.to_string(),
                                not_before: token.not_before.to_string(),
                                resource,
                                token_type: "Bearer",
                                client_id,
                                object_id: match selector {
                                    Selector::ObjectId(id) => Some(id),
                                    _ => None,
                                },
                                msi_res_id: match selector {
                                    Selector::ResourceId(id) => Some(id),
                                    _ => None,
                                },
                            })
                            .unwrap();
                            assert_eq!(
                                String::from_utf8(token_body(&token, &request, now)).unwrap(),
                                String::from_utf8(expected).unwrap()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn queries_decode_as_before_and_borrow_when_they_can() {
        for query in [
            "a=1&b=x+y&c=%2F%zz%&&d&=e&f==g&h=%C3%A9%FF",
            "resource=https://management.azure.com/&client_id=X",
            "p=%4&q=%%41&r=+%2B&a%20b=c%3Dd&s=%e9&t=%E2%82",
            "",
        ] {
            let expected: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
            let got: Vec<(String, String)> = parse_query(Some(query))
                .unwrap()
                .into_iter()
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect();
            assert_eq!(got, expected);
        }
        let parameters = parse_query(Some("resource=https://a/&client_id=X")).unwrap();
        assert!(parameters
            .iter()
            .all(|(name, value)| matches!((name, value), (Cow::Borrowed(_), Cow::Borrowed(_)))));
        assert_eq!(
            parse_query(Some("a=1&%61=2")),
            Err(ImdsError::DuplicateParameter("a".into()))
        );
    }

    #[test]
    fn token_failures_map_to_imds_errors() {
        assert_eq!(
            ImdsError::from(TokenFailure::IdentityNotFound),
            ImdsError::IdentityNotFound
        );
        assert_eq!(
            ImdsError::from(TokenFailure::Unavailable).status().as_u16(),
            500
        );
        assert_eq!(
            ImdsError::from(TokenFailure::Refused {
                status: 403,
                error: "e".into(),
                description: "d".into()
            })
            .status()
            .as_u16(),
            400
        );
    }
}

/// Outside input never panics the IMDS query reader (issue 20): any query is read into pairs or
/// refused with an IMDS error, and a pair it reads back decodes as given.
#[cfg(test)]
mod query_properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_query_is_read_or_refused(query in "[a-z%=&+_.0-9A-F\u{80}-\u{10FFFF}-]{0,80}") {
            let _ = parse_query(Some(&query));
        }

        #[test]
        fn a_plain_pair_reads_back(name in "[a-z_]{1,12}", value in "[a-zA-Z0-9._-]{0,20}") {
            let query = format!("{name}={value}");
            let pairs = parse_query(Some(&query)).expect("one plain pair");
            prop_assert_eq!(pairs.len(), 1);
        }
    }
}
