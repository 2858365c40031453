//! The App Service managed-identity protocol (protocols.md §2.4, api-version 2019-08-01):
//! `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=R[&client_id|mi_res_id|object_id|principal_id]`
//! with `X-IDENTITY-HEADER: {IDENTITY_HEADER}`, which `openmi vm run --protocol app-service`
//! points SDKs at.
//!
//! The header is compared in constant time; errors use App Service's `{"statusCode","message"}`
//! envelope, which MSAL and azure-identity read.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::http::AppState;
use crate::imds::{json_response, parameter, parse_query, ImdsError};
use crate::server_client::Selector;
use crate::tokens::TokenFailure;

/// The only api-version served (the one azure-identity and MSAL send).
const API_VERSION: &str = "2019-08-01";

/// An App Service error: status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppServiceError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl AppServiceError {
    fn new(status: StatusCode, message: impl Into<String>) -> AppServiceError {
        AppServiceError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> AppServiceError {
        AppServiceError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<TokenFailure> for AppServiceError {
    fn from(failure: TokenFailure) -> AppServiceError {
        match failure {
            TokenFailure::IdentityNotFound => AppServiceError::bad_request(
                "No managed identity found for the specified ClientId/ResourceId/PrincipalId.",
            ),
            TokenFailure::Refused { description, .. } => AppServiceError::bad_request(description),
            TokenFailure::Unavailable => AppServiceError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to retrieve token from the Active directory",
            ),
            TokenFailure::Throttled(throttled) => AppServiceError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "Too many requests; retry after {} seconds",
                    throttled.retry_after
                ),
                retry_after: Some(throttled.retry_after),
            },
        }
    }
}

impl From<ImdsError> for AppServiceError {
    fn from(error: ImdsError) -> AppServiceError {
        let description = error.body()["error_description"]
            .as_str()
            .unwrap_or("Bad request")
            .to_string();
        AppServiceError::new(error.status(), description)
    }
}

impl IntoResponse for AppServiceError {
    fn into_response(self) -> Response {
        let body = json!({
            "statusCode": self.status.as_u16(),
            "message": self.message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
        });
        let mut response = json_response(self.status, body.to_string().into_bytes());
        if let Some(retry_after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// Checks `X-IDENTITY-HEADER`: missing is 400, wrong is 401.
pub fn check_identity_header(headers: &HeaderMap, expected: &str) -> Result<(), AppServiceError> {
    let given = headers
        .get("x-identity-header")
        .ok_or_else(|| AppServiceError::bad_request("The X-IDENTITY-HEADER header is missing."))?;
    if same_secret(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AppServiceError::new(
            StatusCode::UNAUTHORIZED,
            "The X-IDENTITY-HEADER header is not valid.",
        ))
    }
}

/// `resource` and at most one of `client_id`, `mi_res_id`, `object_id`/`principal_id`.
pub fn parse_parameters(
    parameters: &[(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)],
) -> Result<(String, Selector), AppServiceError> {
    if parameter(parameters, "api-version") != Some(API_VERSION) {
        return Err(AppServiceError::bad_request(format!(
            "The api-version is missing or not supported; use {API_VERSION}."
        )));
    }
    let resource = parameter(parameters, "resource")
        .ok_or_else(|| AppServiceError::bad_request("The resource parameter is required."))?;
    let mut selectors = Vec::new();
    if let Some(id) = parameter(parameters, "client_id") {
        selectors.push(Selector::ClientId(id.to_string()));
    }
    if let Some(id) = parameter(parameters, "mi_res_id") {
        selectors.push(Selector::ResourceId(id.to_string()));
    }
    for name in ["object_id", "principal_id"] {
        if let Some(id) = parameter(parameters, name) {
            selectors.push(Selector::ObjectId(id.to_string()));
        }
    }
    if selectors.len() > 1 {
        return Err(AppServiceError::bad_request(
            "Only one of client_id, mi_res_id, object_id and principal_id may be specified.",
        ));
    }
    Ok((
        resource.to_string(),
        selectors.pop().unwrap_or(Selector::Default),
    ))
}

/// App Service's success body: `expires_on` a string of epoch seconds (MSAL requires it).
#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    expires_on: String,
    not_before: String,
    resource: &'a str,
    token_type: &'a str,
    client_id: &'a str,
}

/// `GET /msi/token`.
pub async fn msi_token(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        if method != Method::GET {
            return Err(AppServiceError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "The request method is not allowed; use GET.",
            ));
        }
        check_identity_header(&headers, &state.identity_header)?;
        let parameters = parse_query(query.as_deref())?;
        let (resource, selector) = parse_parameters(&parameters)?;
        let token = state.tokens.token(&selector, &resource, false).await?;
        let body = TokenBody {
            access_token: &token.access_token,
            expires_on: token.expires_on.to_string(),
            not_before: token.not_before.to_string(),
            resource: &resource,
            token_type: "Bearer",
            client_id: &token.client_id,
        };
        serde_json::to_vec(&body)
            .map(|bytes| json_response(StatusCode::OK, bytes))
            .map_err(|_| AppServiceError::from(TokenFailure::Unavailable))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> crate::imds::Parameters<'_> {
        parse_query(Some(query)).unwrap()
    }

    #[test]
    fn identity_header_is_required_and_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            check_identity_header(&headers, "secret").map_err(|error| error.status),
            Err(StatusCode::BAD_REQUEST)
        );
        headers.insert("x-identity-header", HeaderValue::from_static("wrong!"));
        assert_eq!(
            check_identity_header(&headers, "secret").map_err(|error| error.status),
            Err(StatusCode::UNAUTHORIZED)
        );
        headers.insert("X-IDENTITY-HEADER", HeaderValue::from_static("secret"));
        assert_eq!(check_identity_header(&headers, "secret"), Ok(()));
    }

    #[test]
    fn parameters_follow_app_service() {
        assert_eq!(
            parse_parameters(&pairs("api-version=2019-08-01&resource=r")),
            Ok(("r".to_string(), Selector::Default))
        );
        assert_eq!(
            parse_parameters(&pairs("api-version=2019-08-01&resource=r&principal_id=P"))
                .map(|(_, selector)| selector),
            Ok(Selector::ObjectId("P".into()))
        );
        assert_eq!(
            parse_parameters(&pairs("api-version=2019-08-01&resource=r&mi_res_id=M"))
                .map(|(_, selector)| selector),
            Ok(Selector::ResourceId("M".into()))
        );
        assert!(parse_parameters(&pairs("api-version=2017-09-01&resource=r")).is_err());
        assert!(parse_parameters(&pairs("api-version=2019-08-01")).is_err());
        assert!(parse_parameters(&pairs(
            "api-version=2019-08-01&resource=r&client_id=C&object_id=O"
        ))
        .is_err());
    }

    #[test]
    fn failures_use_the_app_service_envelope() {
        let error = AppServiceError::from(TokenFailure::IdentityNotFound);
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let throttled =
            AppServiceError::from(TokenFailure::Throttled(crate::throttle::Throttled {
                retry_after: 1,
            }))
            .into_response();
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(throttled.headers()[header::RETRY_AFTER], "1");
    }
}
