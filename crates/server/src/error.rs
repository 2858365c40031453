//! The error envelopes of the HTTP edge, each with its mapping table from `EngineError`:
//! `OAuthError` for the token service (Entra's JSON and statuses) and `ArmError` for ARM and the
//! Graph-shaped API (`{"error":{"code","message"}}`). Internal details go to the log, never to
//! the client; messages copy Entra's and ARM's wording.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openmi_engine::EngineError;
use serde_json::json;

use crate::context::RequestContext;

/// An Entra token-service error.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub code: u32,
    pub description: String,
    pub trace_id: String,
    pub correlation_id: String,
}

/// Entra's timestamp format: `2024-05-01 10:11:12Z`.
pub fn entra_timestamp(now: time::OffsetDateTime) -> String {
    let format = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day] [hour]:[minute]:[second]Z",
    )
    .unwrap_or_default();
    now.format(&format).unwrap_or_default()
}

impl OAuthError {
    /// Maps an engine failure to Entra's error, code and status.
    pub fn from_engine(error: EngineError, context: &RequestContext, tenant: &str) -> OAuthError {
        use EngineError as E;
        let code = error.aadsts();
        let (status, kind, description) = match &error {
            E::TenantNotFound(tenant) => (StatusCode::BAD_REQUEST, "invalid_request", format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.")),
            E::ApplicationNotFound { client_id } => (StatusCode::BAD_REQUEST, "unauthorized_client", format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.")),
            E::InvalidClientSecret => (StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.".to_string()),
            E::ClientAuthenticationRequired(_) => (StatusCode::UNAUTHORIZED, "invalid_client", "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".to_string()),
            E::AssertionExpired => (StatusCode::UNAUTHORIZED, "invalid_client", "Client assertion is not within its valid time range.".to_string()),
            E::InvalidAssertion(detail) => (StatusCode::UNAUTHORIZED, "invalid_client", format!("Client assertion failed signature validation. {detail}")),
            E::CertificateNotRegistered { client_id, thumbprint } => (StatusCode::UNAUTHORIZED, "invalid_client", format!("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]")),
            E::InvalidUserCredentials => (StatusCode::BAD_REQUEST, "invalid_grant", "Error validating credentials due to invalid username or password.".to_string()),
            E::MissingParameter(name) => (StatusCode::BAD_REQUEST, "invalid_request", format!("The request body must contain the following parameter: '{name}'.")),
            E::UnsupportedGrantType(grant) => (StatusCode::BAD_REQUEST, "unsupported_grant_type", format!("The app requested an unsupported grant type '{grant}'.")),
            E::InvalidScope(scope) => (StatusCode::BAD_REQUEST, "invalid_scope", format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")),
            E::ResourcePrincipalNotFound { resource, tenant } => (StatusCode::BAD_REQUEST, "invalid_resource", format!("The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.")),
            E::InvalidRefreshToken => (StatusCode::BAD_REQUEST, "invalid_grant", "Invalid request. Request is malformed or invalid.".to_string()),
            E::OAuth { error, description, .. } => (StatusCode::BAD_REQUEST, *error, description.clone()),
            E::BadRequest(detail) => (StatusCode::BAD_REQUEST, "invalid_request", format!("The request is invalid: {detail}")),
            E::Store(openmi_store::StoreError::Unavailable(_) | openmi_store::StoreError::StorageFull(_)) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "A transient error has occurred. Please try again.".to_string()),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "There was an error issuing a token or an issue with our sign-in service.".to_string()),
        };
        if status.is_server_error() {
            tracing::error!(request_id = %context.request_id, error = %error, "token request failed");
        }
        OAuthError {
            status,
            error: kind,
            code,
            description: format!(
                "AADSTS{code}: {description} Trace ID: {} Correlation ID: {}",
                context.request_id,
                context
                    .client_request_id
                    .as_deref()
                    .unwrap_or(&context.correlation_id)
            ),
            trace_id: context.request_id.clone(),
            correlation_id: context
                .client_request_id
                .clone()
                .unwrap_or_else(|| context.correlation_id.clone()),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.error,
            "error_description": self.description,
            "error_codes": [self.code],
            "timestamp": entra_timestamp(time::OffsetDateTime::now_utc()),
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// An ARM (or Graph) error: `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// A refused ARM or Graph request is recorded under its ARM code.
impl openmi_engine::audit::AuditFailure for ArmError {
    fn audit_code(&self, _kind: openmi_store::AuditKind) -> String {
        self.code.clone()
    }
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// 401 for a request without a bearer token.
    pub fn missing_authorization() -> ArmError {
        ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    }

    /// 400 for a request without `api-version`.
    pub fn missing_api_version() -> ArmError {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    }

    /// Maps an engine failure to ARM's code and status (the table is the engine's
    /// `EngineError::arm`, shared with the deployment engine, which records failures in ARM's words).
    pub fn from_engine(error: EngineError, context: &RequestContext) -> ArmError {
        match error.arm() {
            Some(failure) => ArmError {
                status: StatusCode::from_u16(failure.status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code: failure.code,
                message: failure.message,
            },
            None => {
                tracing::error!(request_id = %context.request_id, error = %error, "request failed");
                ArmError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    format!(
                        "An internal error occurred. Request id: {}",
                        context.request_id
                    ),
                )
            }
        }
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = format!("Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"{}\"", self.message.replace('"', "'"));
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            correlation_id: "c".into(),
            client_request_id: None,
            host: None,
        }
    }

    #[test]
    fn oauth_errors_carry_entra_codes_and_statuses() {
        let check = |error: EngineError, status: u16, kind: &str, code: u32| {
            let mapped = OAuthError::from_engine(error, &context(), "t");
            assert_eq!(
                (mapped.status.as_u16(), mapped.error, mapped.code),
                (status, kind, code)
            );
            assert!(
                mapped.description.starts_with(&format!("AADSTS{code}: ")),
                "{}",
                mapped.description
            );
        };
        check(
            EngineError::InvalidClientSecret,
            401,
            "invalid_client",
            7000215,
        );
        check(
            EngineError::ApplicationNotFound {
                client_id: "x".into(),
            },
            400,
            "unauthorized_client",
            700016,
        );
        check(
            EngineError::TenantNotFound("x".into()),
            400,
            "invalid_request",
            90002,
        );
        check(EngineError::AssertionExpired, 401, "invalid_client", 700024);
        check(
            EngineError::InvalidUserCredentials,
            400,
            "invalid_grant",
            50126,
        );
        check(
            EngineError::MissingParameter("client_id"),
            400,
            "invalid_request",
            900144,
        );
        check(
            EngineError::UnsupportedGrantType("x".into()),
            400,
            "unsupported_grant_type",
            70003,
        );
        check(
            EngineError::ResourcePrincipalNotFound {
                resource: "r".into(),
                tenant: "t".into(),
            },
            400,
            "invalid_resource",
            500011,
        );
        check(
            EngineError::Internal("boom".into()),
            500,
            "server_error",
            50000,
        );
    }

    #[test]
    fn arm_expiry_message_uses_arm_time_format() {
        let mapped = ArmError::from_engine(
            EngineError::ExpiredAccessToken {
                exp: 1502981681,
                now: 1502981743,
            },
            &context(),
        );
        assert_eq!(mapped.message, "The access token expiry UTC time '8/17/2017 2:54:41 PM' is earlier than current UTC time '8/17/2017 2:55:43 PM'.");
    }
}
