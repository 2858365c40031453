//! `Microsoft.Resources/deployments` at resource-group and subscription scope: the routes of
//! research/protocols.md §4.7, each one engine call. A PUT that finished while it waited answers
//! 201/200 with the final record and no polling headers (az and azure-mgmt-core accept that); a
//! deployment still running, or failed, answers with `Azure-AsyncOperation` (+ `Retry-After`),
//! whose status URL reports `Running`, `Succeeded` or `Failed` with ARM's `DeploymentFailed`
//! error, which is how the SDKs' pollers surface a failure.

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openmi_engine::{Caller, DeploymentScope, DeploymentStarted, EngineError};
use serde_json::{json, value::RawValue, Value};

use crate::context::RequestContext;
use crate::error::ArmError;
use crate::AppState;

/// A deployment request's body and the raw text of its `properties.template` (so template errors
/// name the template's own lines and columns). The relaxed JSON ARM reads is allowed: az splices
/// a template file's text, comments included, after an unquoted `template:` key
/// (`openmi_model::jsonc`).
pub(crate) fn deployment_body(body: &Bytes) -> Result<(Value, Option<String>), ArmError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: it is not UTF-8.",
        )
    })?;
    let blanked = Bytes::from(openmi_model::jsonc::to_strict(text));
    let request = crate::arm::parse_body(&blanked)?;
    Ok((request, template_source(&blanked)))
}

/// The raw text of `properties.template`.
fn template_source(body: &Bytes) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Outer<'a> {
        #[serde(borrow)]
        properties: Option<Properties<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Properties<'a> {
        #[serde(borrow)]
        template: Option<&'a RawValue>,
    }
    let outer: Outer = serde_json::from_slice(body).ok()?;
    outer.properties?.template.map(|raw| raw.get().to_string())
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// Routes `.../providers/Microsoft.Resources/deployments[/{name}[/...]]`; `None` when the path
/// is not a deployment's. `segments` are lower-cased, `original` as sent; `prefix` is where the
/// `providers` segment is (after the subscription or the group).
#[allow(clippy::too_many_arguments)] // The request taken apart once; one call site.
pub(crate) async fn route(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    method: &Method,
    segments: &[&str],
    original: &[&str],
    query: Option<&str>,
    body: &Bytes,
) -> Option<Result<Response, ArmError>> {
    let (scope, rest, rest_original) = match segments {
        [_, _, "providers", "microsoft.resources", "deployments", rest @ ..] => (
            DeploymentScope {
                subscription: original[1].to_string(),
                group: None,
            },
            rest,
            &original[5..],
        ),
        [_, _, "resourcegroups", _, "providers", "microsoft.resources", "deployments", rest @ ..] => {
            (
                DeploymentScope {
                    subscription: original[1].to_string(),
                    group: Some(original[3].to_string()),
                },
                rest,
                &original[7..],
            )
        }
        // The operations lists keep ARM's old path without the provider (azure-mgmt-resource-
        // deployments `deployment_operations.list`, @azure/arm-resources 6 `deploymentOperations`).
        [_, _, "resourcegroups", _, "deployments", rest @ ..]
            if rest.get(1) == Some(&"operations") =>
        {
            (
                DeploymentScope {
                    subscription: original[1].to_string(),
                    group: Some(original[3].to_string()),
                },
                rest,
                &original[5..],
            )
        }
        _ => return None,
    };
    let path = format!("/{}", original.join("/"));
    Some(
        dispatch(
            state,
            context,
            caller,
            method,
            &path,
            &scope,
            rest,
            rest_original,
            query,
            body,
        )
        .await,
    )
}

#[allow(clippy::too_many_arguments)] // As `route`.
async fn dispatch(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    method: &Method,
    path: &str,
    scope: &DeploymentScope,
    rest: &[&str],
    original: &[&str],
    query: Option<&str>,
    body: &Bytes,
) -> Result<Response, ArmError> {
    let engine = &state.engine;
    let fail = |error: EngineError| ArmError::from_engine(error, context);
    let not_allowed = || {
        ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The HTTP method '{method}' is not supported here."),
        )
    };
    let name = original.first().copied().unwrap_or_default();
    match (rest, method) {
        ([], &Method::GET) => Ok(crate::arm::paged(
            state,
            context,
            path,
            query,
            engine
                .deployment_list(caller, scope, &crate::arm::page_request(query)?)
                .await
                .map_err(fail)?,
        )),
        ([_], &Method::PUT) => {
            let (request, source) = deployment_body(body)?;
            let started = engine
                .deployment_put(caller, scope, name, &request, source.as_deref())
                .await
                .map_err(fail)?;
            Ok(put_response(state, context, scope, name, query, started))
        }
        ([_], &Method::GET) => Ok(json_response(
            StatusCode::OK,
            engine
                .deployment_get(caller, scope, name)
                .await
                .map_err(fail)?,
        )),
        ([_], &Method::HEAD) => match engine.deployment_get(caller, scope, name).await {
            Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
            Err(EngineError::DeploymentNotFound(_)) => Ok(StatusCode::NOT_FOUND.into_response()),
            Err(error) => Err(fail(error)),
        },
        // ARM answers 202 then 204; done at once, 204 (the SDKs accept 202 and 204 only).
        ([_], &Method::DELETE) => {
            engine
                .deployment_delete(caller, scope, name)
                .await
                .map_err(fail)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ([_, "validate"], &Method::POST) => {
            let (request, source) = deployment_body(body)?;
            Ok(json_response(
                StatusCode::OK,
                engine
                    .deployment_validate(caller, scope, name, &request, source.as_deref())
                    .await
                    .map_err(fail)?,
            ))
        }
        ([_, "whatif"], &Method::POST) => {
            let (request, source) = deployment_body(body)?;
            Ok(json_response(
                StatusCode::OK,
                engine
                    .deployment_what_if(caller, scope, name, &request, source.as_deref())
                    .await
                    .map_err(fail)?,
            ))
        }
        ([_, "exporttemplate"], &Method::POST) => Ok(json_response(
            StatusCode::OK,
            engine
                .deployment_export_template(caller, scope, name)
                .await
                .map_err(fail)?,
        )),
        ([_, "operations"], &Method::GET) => Ok(json_response(
            StatusCode::OK,
            json!({"value": engine.deployment_operations(caller, scope, name).await.map_err(fail)?}),
        )),
        ([_, "operations", _], &Method::GET) => {
            let wanted = original[2];
            engine
                .deployment_operations(caller, scope, name)
                .await
                .map_err(fail)?
                .into_iter()
                .find(|operation| {
                    operation
                        .get("operationId")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.eq_ignore_ascii_case(wanted))
                })
                .map(|operation| json_response(StatusCode::OK, operation))
                .ok_or_else(|| {
                    ArmError::new(
                        StatusCode::NOT_FOUND,
                        "DeploymentOperationNotFound",
                        format!("The deployment operation '{wanted}' could not be found."),
                    )
                })
        }
        ([_, "operationstatuses", _], &Method::GET) => {
            let status = engine
                .deployment_operation_status(caller, scope, name, original[2])
                .await
                .map_err(|error| match error {
                    EngineError::NotFound => ArmError::new(
                        StatusCode::NOT_FOUND,
                        "OperationNotFound",
                        format!("The operation '{}' could not be found.", original[2]),
                    ),
                    other => fail(other),
                })?;
            let running = matches!(
                status.get("status").and_then(Value::as_str),
                Some("Running" | "Accepted")
            );
            let mut response = json_response(StatusCode::OK, status);
            if running {
                // Pollers wait what `Retry-After` says (azure-mgmt-core's default is 30 s).
                response
                    .headers_mut()
                    .insert("Retry-After", HeaderValue::from_static("1"));
            }
            Ok(response)
        }
        ([_, "cancel"], &Method::POST) => Err(ArmError::new(
            StatusCode::CONFLICT,
            "DeploymentCannotBeCancelled",
            format!(
                "The deployment '{name}' cannot be cancelled: openmi runs deployments to the end."
            ),
        )),
        _ => Err(not_allowed()),
    }
}

/// 201 (new) or 200, with the status URL while the deployment has not succeeded.
fn put_response(
    state: &AppState,
    context: &RequestContext,
    scope: &DeploymentScope,
    name: &str,
    query: Option<&str>,
    started: DeploymentStarted,
) -> Response {
    let status = |created: bool| {
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        }
    };
    match started {
        DeploymentStarted::Finished { created, document } => {
            json_response(status(created), document)
        }
        DeploymentStarted::Running {
            created,
            mut document,
            operation_id,
        } => {
            if let Some(properties) = document
                .get_mut("properties")
                .and_then(Value::as_object_mut)
            {
                properties.remove("operationId");
                // The PUT's answer says the deployment was taken: its outcome is the status URL's.
                properties.insert("provisioningState".into(), json!("Accepted"));
                properties.remove("error");
            }
            let api_version = crate::arm::query_param(query, "api-version").unwrap_or_default();
            let deployment_path = match &scope.group {
                Some(group) => format!(
                    "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.Resources/deployments/{name}",
                    scope.subscription
                ),
                None => format!(
                    "/subscriptions/{}/providers/Microsoft.Resources/deployments/{name}",
                    scope.subscription
                ),
            };
            let url = format!(
                "{}{deployment_path}/operationStatuses/{operation_id}?api-version={api_version}",
                state.base_url(context)
            );
            let mut response = json_response(status(created), document);
            if let Ok(value) = HeaderValue::from_str(&url) {
                response.headers_mut().insert("Azure-AsyncOperation", value);
            }
            response
                .headers_mut()
                .insert("Retry-After", HeaderValue::from_static("1"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_allowed_in_a_deployment_body() {
        let body =
            Bytes::from_static(b"{\"properties\": {\"template\": {\n // c\n \"resources\": []}}}");
        let (request, source) = deployment_body(&body).unwrap();
        assert_eq!(request["properties"]["template"]["resources"], json!([]));
        assert!(source.unwrap().contains("\"resources\": []"));
    }

    #[test]
    fn the_template_is_taken_as_sent() {
        let body = Bytes::from_static(
            br#"{"properties": {"mode": "Incremental", "template": {
  "resources": []
}}}"#,
        );
        assert_eq!(
            template_source(&body).as_deref(),
            Some("{\n  \"resources\": []\n}")
        );
        assert_eq!(template_source(&Bytes::from_static(b"{}")), None);
        assert_eq!(template_source(&Bytes::from_static(b"not json")), None);
    }
}
