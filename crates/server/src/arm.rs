//! The ARM surface: one dispatcher for every `/subscriptions/...` path (segments matched
//! case-insensitively, as ARM does), `/tenants`, and the cloud metadata document.
//!
//! Writes finish synchronously: PUT answers 201/200 with `provisioningState: Succeeded` and no
//! async-operation headers, DELETE answers 200/204, so azure-mgmt-core's pollers finish without a
//! single poll (protocols.md §4.6).

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openmi_engine::{Caller, Page, PageRequest, Written, MAX_PAGE_SIZE};
use openmi_model::arm::{ArmPath, VIRTUAL_MACHINE_TYPE};
use serde_json::{json, Value};

use crate::auth::authenticate;
use crate::context::{CallerObjectId, RequestContext};
use crate::error::ArmError;
use crate::AppState;

/// Resource types openmi serves, with the api-versions current SDKs send (providers listing).
/// `(resource type, api-versions)` of one provider namespace.
type ResourceTypes = &'static [(&'static str, &'static [&'static str])];

const PROVIDERS: &[(&str, ResourceTypes)] = &[
    (
        "Microsoft.Resources",
        &[
            (
                "resourceGroups",
                &[
                    "2025-04-01",
                    "2024-11-01",
                    "2024-03-01",
                    "2022-09-01",
                    "2021-04-01",
                ],
            ),
            ("deployments", &["2025-04-01", "2024-11-01", "2022-09-01"]),
        ],
    ),
    (
        "Microsoft.ManagedIdentity",
        &[
            (
                "userAssignedIdentities",
                &[
                    "2025-05-31-preview",
                    "2024-11-30",
                    "2023-01-31",
                    "2018-11-30",
                ],
            ),
            ("identities", &["2024-11-30", "2023-01-31", "2018-11-30"]),
        ],
    ),
    (
        "Microsoft.Compute",
        &[
            (
                "virtualMachines",
                &[
                    "2026-04-01",
                    "2024-11-01",
                    "2024-07-01",
                    "2024-03-01",
                    "2023-09-01",
                ],
            ),
            (
                "virtualMachines/extensions",
                &["2026-04-01", "2024-11-01", "2024-07-01", "2023-09-01"],
            ),
        ],
    ),
    (
        "Microsoft.Authorization",
        &[
            ("roleAssignments", &["2022-04-01", "2020-04-01-preview"]),
            ("roleDefinitions", &["2022-05-01-preview", "2022-04-01"]),
        ],
    ),
    (
        "Microsoft.Network",
        &[
            ("virtualNetworks", &["2024-05-01", "2022-01-01"]),
            ("networkInterfaces", &["2024-05-01", "2022-01-01"]),
            ("publicIPAddresses", &["2024-05-01", "2022-01-01"]),
            ("networkSecurityGroups", &["2024-05-01", "2022-01-01"]),
        ],
    ),
];

/// Regions offered (any location string is stored as given; this is what `locations` lists).
const LOCATIONS: &[(&str, &str)] = &[
    ("eastus", "East US"),
    ("eastus2", "East US 2"),
    ("westus", "West US"),
    ("westus2", "West US 2"),
    ("westus3", "West US 3"),
    ("centralus", "Central US"),
    ("northeurope", "North Europe"),
    ("westeurope", "West Europe"),
    ("uksouth", "UK South"),
    ("germanywestcentral", "Germany West Central"),
    ("japaneast", "Japan East"),
    ("australiaeast", "Australia East"),
];

fn with_caller(mut response: Response, caller: &Caller) -> Response {
    response
        .extensions_mut()
        .insert(CallerObjectId(caller.object_id.to_string()));
    response
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn list(values: Vec<Value>) -> Response {
    json_response(StatusCode::OK, json!({"value": values}))
}

/// The page a list request asks for: `$top` (1..=1000, ARM's limit; default the whole page of
/// 1000) and `$skiptoken` (opaque: base64url of the last key of the previous page).
pub(crate) fn page_request(query: Option<&str>) -> Result<PageRequest, ArmError> {
    let size = match query_param(query, "$top") {
        None => MAX_PAGE_SIZE,
        Some(top) => top
            .parse::<usize>()
            .ok()
            .filter(|top| (1..=MAX_PAGE_SIZE).contains(top))
            .ok_or_else(|| invalid_parameter(format!("The value '{top}' of query parameter '$top' is invalid: it must be an integer from 1 to {MAX_PAGE_SIZE}.")))?,
    };
    Ok(PageRequest {
        size,
        ..page_without_top(query)?
    })
}

/// The page of a list whose API has no `$top` (role definitions: Azure's `RoleDefinitions_List`
/// takes only `$filter`): ARM's page of 1000 from the `$skiptoken`, any `$top` ignored.
pub(crate) fn page_without_top(query: Option<&str>) -> Result<PageRequest, ArmError> {
    let after = match query_param(query, "$skiptoken") {
        None => String::new(),
        Some(token) => URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                invalid_parameter(format!(
                    "The value '{token}' of query parameter '$skiptoken' is invalid."
                ))
            })?,
    };
    Ok(PageRequest {
        after,
        size: MAX_PAGE_SIZE,
    })
}

fn invalid_parameter(message: String) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, "InvalidParameter", message)
}

/// A page as ARM answers it: `nextLink` repeats the request's query with the new `$skiptoken`.
/// The JavaScript pagers (@azure/core-client's `appendQueryParams`, `noOverwrite` for an
/// absolute URL) request the link as given and add `api-version` only when it is missing, and
/// the Python ones (azure-mgmt-core) replace `api-version` in it; so the link carries every
/// parameter of the first request, in its order, and the server reads them in any order.
pub(crate) fn paged(
    state: &AppState,
    context: &RequestContext,
    path: &str,
    query: Option<&str>,
    page: Page,
) -> Response {
    let mut body = json!({"value": page.values});
    if let Some(next) = page.next {
        let mut pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default();
        pairs.retain(|(key, _)| !key.eq_ignore_ascii_case("$skiptoken"));
        pairs.push((
            "$skiptoken".to_string(),
            URL_SAFE_NO_PAD.encode(next.as_bytes()),
        ));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        body["nextLink"] = json!(format!("{}{path}?{query}", state.base_url(context)));
    }
    json_response(StatusCode::OK, body)
}

/// A query parameter by name, matched without regard to case as ARM does: @azure/arm-authorization
/// spells `$skipToken` where azure-mgmt-msi and the links this server writes spell `$skiptoken`,
/// and clients put `api-version` first or last.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default();
    pairs
        .into_iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

pub(crate) fn parse_body(body: &Bytes) -> Result<Value, ArmError> {
    if body.is_empty() {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: the body is empty.",
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{error}'."),
        )
    })
}

fn written(result: Written) -> Response {
    match result {
        Written::Created(body) => json_response(StatusCode::CREATED, body),
        Written::Updated(body) => json_response(StatusCode::OK, body),
    }
}

/// `GET /metadata/endpoints`: this cloud's endpoints, in the shape `az cloud register` reads.
pub async fn metadata_endpoints(
    State(state): State<AppState>,
    context: RequestContext,
) -> Response {
    let base = state.base_url(&context).to_string();
    Json(json!({
        "galleryEndpoint": "",
        "graphEndpoint": format!("{base}/"),
        "graphAudience": format!("{base}/"),
        "microsoftGraphResourceId": format!("{base}/"),
        "portalEndpoint": format!("{base}/"),
        "name": "openmi",
        "resourceManager": format!("{base}/"),
        "sqlManagement": "",
        "vmImageAliasDoc": format!("{base}/openmi/vm-image-aliases.json"),
        "batch": "",
        "media": "",
        "authentication": {
            "loginEndpoint": format!("{base}/"),
            "audiences": [format!("{base}/"), "https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "suffixes": {
            "acrLoginServer": "",
            "keyVaultDns": "",
            "sqlServerHostname": "",
            "storage": "",
            "storageSyncEndpointSuffix": "",
            "azureDataLakeStoreFileSystem": "",
            "azureDataLakeAnalyticsCatalogAndJob": "",
        },
    }))
    .into_response()
}

/// Every ARM request that is not the token service or Graph.
pub async fn dispatch(
    State(state): State<AppState>,
    context: RequestContext,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Clients percent-encode characters such as `(` in names; ids are compared decoded.
    let path = uri
        .path()
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect::<Vec<_>>()
        .join("/");
    let lower = path.to_lowercase();
    // Leading and trailing slashes are dropped, as ARM does: the JavaScript clients of the
    // core-client generation (@azure/arm-resources `getById`, @azure/arm-authorization, @azure/arm-msi
    // `getByScope`) put a `{scope}` or `{resourceId}` that starts with `/` after the host's own
    // `/`, so they send `//subscriptions/...`; `ArmPath::parse` trims the same way.
    let segments: Vec<&str> = lower.trim_matches('/').split('/').collect();
    if segments.first().is_none_or(|first| {
        *first != "subscriptions" && *first != "tenants" && *first != "providers"
    }) {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The requested path is not served by openmi.",
        )
        .into_response();
    }
    let caller = match authenticate(&state, &headers, &context, openmi_engine::Api::Arm) {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let query = uri.query();
    if query_param(query, "api-version").is_none_or(|version| version.is_empty()) {
        return with_caller(ArmError::missing_api_version().into_response(), &caller);
    }
    let routed = async {
        match authorization_part(&path) {
            Some((scope, rest)) => {
                authorization_route(
                    &state, &context, &caller, &method, &path, &scope, &rest, query, &body,
                )
                .await
            }
            None => {
                route(
                    &state, &context, &caller, &method, &path, &segments, query, &body,
                )
                .await
            }
        }
    };
    // Every write, delete and action is recorded in the audit log (the Activity Log's
    // Administrative events); the write itself carries its record into its transaction.
    let routed = match openmi_engine::audit::AuditOperation::for_arm_request(method.as_str(), &path)
    {
        Some(operation) => state.engine.audited(Some(&caller), operation, routed).await,
        None => routed.await,
    };
    let response = match routed {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    with_caller(response, &caller)
}

#[allow(clippy::too_many_arguments)] // The request taken apart once; one call site.
async fn route(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    method: &Method,
    path: &str,
    segments: &[&str],
    query: Option<&str>,
    body: &Bytes,
) -> Result<Response, ArmError> {
    let engine = &state.engine;
    let fail = |error| ArmError::from_engine(error, context);
    let original: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segments.len() > 2 {
        let top = query_param(query, "$top").and_then(|top| top.parse().ok());
        if let Some(response) = crate::images::route(original[1], segments, &original, top) {
            check_subscription(state, context, segments[1])?;
            return Ok(response);
        }
    }
    if let Some(result) = crate::deployments::route(
        state, context, caller, method, segments, &original, query, body,
    )
    .await
    {
        return result;
    }
    let method_not_allowed = || {
        ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The HTTP method '{method}' is not supported at '{path}'."),
        )
    };
    match (segments, method) {
        (["tenants"], &Method::GET) => {
            let tenant = engine.tenant();
            Ok(list(vec![json!({
                "id": format!("/tenants/{}", tenant.id),
                "tenantId": tenant.id.to_string(),
                "tenantCategory": "Home",
                "displayName": tenant.display_name,
                "defaultDomain": tenant.default_domain,
                "domains": [tenant.default_domain],
                "tenantType": "AAD",
            })]))
        }
        (["subscriptions"], &Method::GET) => {
            Ok(list(subscriptions_json(state, context, caller).await?))
        }
        ([_, subscription], &Method::GET) => {
            let found = subscriptions_json(state, context, caller)
                .await?
                .into_iter()
                .find(|item| {
                    item.get("subscriptionId")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.eq_ignore_ascii_case(subscription))
                });
            found
                .map(|body| json_response(StatusCode::OK, body))
                .ok_or_else(|| {
                    fail(openmi_engine::EngineError::SubscriptionNotFound(
                        original[1].to_string(),
                    ))
                })
        }
        ([_, subscription, "locations"], &Method::GET) => {
            check_subscription(state, context, subscription)?;
            let values = LOCATIONS
                .iter()
                .map(|(name, display)| json!({
                    "id": format!("/subscriptions/{}/locations/{name}", original[1]),
                    "name": name, "displayName": display, "regionalDisplayName": display, "type": "Region",
                    "metadata": {"regionType": "Physical", "regionCategory": "Recommended"},
                }))
                .collect();
            Ok(list(values))
        }
        ([_, subscription, "providers"], &Method::GET) => {
            check_subscription(state, context, subscription)?;
            Ok(list(
                PROVIDERS
                    .iter()
                    .map(|(namespace, types)| provider_json(original[1], namespace, types))
                    .collect(),
            ))
        }
        ([_, subscription, "providers", namespace], &Method::GET)
        | ([_, subscription, "providers", namespace, "register"], &Method::POST) => {
            check_subscription(state, context, subscription)?;
            match PROVIDERS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(namespace))
            {
                Some((name, types)) => Ok(json_response(
                    StatusCode::OK,
                    provider_json(original[1], name, types),
                )),
                None => Err(ArmError::new(
                    StatusCode::NOT_FOUND,
                    "InvalidResourceNamespace",
                    format!("The resource namespace '{}' is invalid.", original[3]),
                )),
            }
        }
        (
            [_, subscription, "providers", "microsoft.insights", "eventtypes", "management", "values"],
            &Method::GET,
        ) => {
            crate::audit_api::activity_log(state, context, caller, subscription, path, query).await
        }
        ([_, subscription, "resources"], &Method::GET) => Ok(paged(
            state,
            context,
            path,
            query,
            engine
                .resource_list_all(caller, subscription, None, &page_request(query)?)
                .await
                .map_err(fail)?,
        )),
        ([_, subscription, "resourcegroups"], &Method::GET) => Ok(paged(
            state,
            context,
            path,
            query,
            engine
                .group_list(caller, subscription, &page_request(query)?)
                .await
                .map_err(fail)?,
        )),
        ([_, subscription, "resourcegroups", _, "resources"], &Method::GET) => Ok(paged(
            state,
            context,
            path,
            query,
            engine
                .resource_list_all(
                    caller,
                    subscription,
                    Some(original[3]),
                    &page_request(query)?,
                )
                .await
                .map_err(fail)?,
        )),
        ([_, subscription, "resourcegroups", _], method) => {
            let name = original[3];
            match *method {
                Method::PUT => Ok(written(
                    engine
                        .group_put(caller, subscription, name, &parse_body(body)?)
                        .await
                        .map_err(fail)?,
                )),
                Method::GET => Ok(json_response(
                    StatusCode::OK,
                    engine
                        .group_get(caller, subscription, name)
                        .await
                        .map_err(fail)?,
                )),
                Method::HEAD => match engine.group_get(caller, subscription, name).await {
                    Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
                    Err(openmi_engine::EngineError::ResourceGroupNotFound(_)) => {
                        Ok(StatusCode::NOT_FOUND.into_response())
                    }
                    Err(error) => Err(fail(error)),
                },
                Method::PATCH => Ok(json_response(
                    StatusCode::OK,
                    engine
                        .group_patch(caller, subscription, name, &parse_body(body)?)
                        .await
                        .map_err(fail)?,
                )),
                Method::DELETE => {
                    if engine
                        .group_delete(caller, subscription, name)
                        .await
                        .map_err(fail)?
                    {
                        Ok(StatusCode::OK.into_response())
                    } else {
                        Err(fail(openmi_engine::EngineError::ResourceGroupNotFound(
                            name.to_string(),
                        )))
                    }
                }
                _ => Err(method_not_allowed()),
            }
        }
        _ => {
            let arm_path = ArmPath::parse(path).map_err(|error| {
                ArmError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidResourceId",
                    error.to_string(),
                )
            })?;
            if let Some(extension) = &arm_path.extension {
                let is_default_identity = extension
                    .type_name()
                    .eq_ignore_ascii_case("Microsoft.ManagedIdentity/identities")
                    && extension
                        .segments
                        .last()
                        .and_then(|(_, name)| name.as_deref())
                        .is_some_and(|name| name.eq_ignore_ascii_case("default"));
                return match (*method == Method::GET, is_default_identity) {
                    (true, true) => Ok(json_response(
                        StatusCode::OK,
                        engine
                            .system_identity(caller, &arm_path)
                            .await
                            .map_err(fail)?,
                    )),
                    _ => Err(ArmError::new(
                        StatusCode::NOT_FOUND,
                        "NoRegisteredProviderFound",
                        format!(
                            "No registered resource provider found for '{}'.",
                            extension.type_name()
                        ),
                    )),
                };
            }
            if let Some(response) =
                join_token(state, context, caller, method, &arm_path, body).await?
            {
                return Ok(response);
            }
            if let Some(response) =
                cosmos_account_action(state, context, caller, method, &arm_path, body).await?
            {
                return Ok(response);
            }
            let is_resource = arm_path
                .provider
                .as_ref()
                .is_some_and(|provider| provider.is_resource());
            match (is_resource, method) {
                (false, &Method::GET) => {
                    // Azure's Cosmos DB lists take no `$top` and never page (the engine answers
                    // them whole, bounded by Cosmos DB's limits), so their paging parameters are
                    // not read.
                    let page = if is_documentdb(&arm_path) {
                        PageRequest::default()
                    } else {
                        page_request(query)?
                    };
                    Ok(paged(
                        state,
                        context,
                        path,
                        query,
                        engine
                            .resource_list(caller, &arm_path, &page)
                            .await
                            .map_err(fail)?,
                    ))
                }
                (true, &Method::GET) if wants_instance_view(query) => {
                    let mut document =
                        engine.resource_get(caller, &arm_path).await.map_err(fail)?;
                    add_instance_view(&mut document);
                    Ok(json_response(StatusCode::OK, document))
                }
                (true, &Method::GET) => {
                    // The stored document is already ARM's JSON: send it as it is.
                    let body = engine
                        .resource_get_raw(caller, &arm_path)
                        .await
                        .map_err(fail)?;
                    Ok((
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                        .into_response())
                }
                (true, &Method::HEAD) => match engine.resource_get(caller, &arm_path).await {
                    Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
                    Err(openmi_engine::EngineError::ResourceNotFound { .. }) => {
                        Ok(StatusCode::NOT_FOUND.into_response())
                    }
                    Err(error) => Err(fail(error)),
                },
                (true, &Method::PUT) => {
                    let result = engine
                        .resource_put(caller, &arm_path, &parse_body(body)?)
                        .await
                        .map_err(fail)?;
                    // The Cosmos DB provider answers a creating PUT with 200, the only status
                    // azure-mgmt-cosmosdb 10 accepts (`_create_or_update_initial`).
                    if is_documentdb(&arm_path) {
                        Ok(json_response(StatusCode::OK, result.body().clone()))
                    } else {
                        Ok(written(result))
                    }
                }
                (true, &Method::PATCH) => Ok(json_response(
                    StatusCode::OK,
                    engine
                        .resource_patch(caller, &arm_path, &parse_body(body)?)
                        .await
                        .map_err(fail)?,
                )),
                (true, &Method::DELETE) => {
                    let existed = engine
                        .resource_delete(caller, &arm_path)
                        .await
                        .map_err(fail)?;
                    // The Cosmos DB provider's deletes answer 202 or 204 only (its SDK accepts no 200).
                    Ok(if existed && !is_documentdb(&arm_path) {
                        StatusCode::OK
                    } else {
                        StatusCode::NO_CONTENT
                    }
                    .into_response())
                }
                _ => Err(method_not_allowed()),
            }
        }
    }
}

fn wants_instance_view(query: Option<&str>) -> bool {
    query_param(query, "$expand").is_some_and(|expand| expand.eq_ignore_ascii_case("instanceView"))
}

/// `POST {vm id}/generateJoinToken`: a one-time token that enrols an agent for the VM
/// (`docs/design/agent-protocol.md` §1). `None` when the request is something else.
/// `POST .../databaseAccounts/{a}/listKeys|listReadOnlyKeys|listConnectionStrings|regenerateKey`
/// (and the `readonlykeys` GET/POST form): one engine call.
async fn cosmos_account_action(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    method: &Method,
    path: &ArmPath,
    body: &Bytes,
) -> Result<Option<Response>, ArmError> {
    let Some(provider) = path.provider.as_ref() else {
        return Ok(None);
    };
    let is_account_action = provider
        .namespace
        .eq_ignore_ascii_case("Microsoft.DocumentDB")
        && provider.segments.len() == 2
        && provider.segments[0]
            .0
            .eq_ignore_ascii_case("databaseAccounts")
        && provider.segments[1].1.is_none();
    if !is_account_action || path.extension.is_some() {
        return Ok(None);
    }
    let action = provider.segments[1].0.clone();
    let known = [
        "listKeys",
        "listReadOnlyKeys",
        "readonlykeys",
        "listConnectionStrings",
        "regenerateKey",
    ];
    if !known.iter().any(|k| k.eq_ignore_ascii_case(&action))
        || (*method != Method::POST && !action.eq_ignore_ascii_case("readonlykeys"))
    {
        return Ok(None);
    }
    let action = if action.eq_ignore_ascii_case("readonlykeys") {
        "listReadOnlyKeys".to_string()
    } else {
        action
    };
    let mut account = path.clone();
    if let Some(part) = account.provider.as_mut() {
        part.segments.pop();
    }
    let request = if body.is_empty() {
        None
    } else {
        Some(parse_body(body)?)
    };
    let answer = state
        .engine
        .cosmos_account_action(caller, &account, &action, request.as_ref())
        .await
        .map_err(|error| ArmError::from_engine(error, context))?;
    Ok(Some(if answer.is_null() {
        StatusCode::OK.into_response()
    } else {
        json_response(StatusCode::OK, answer)
    }))
}

async fn join_token(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    method: &Method,
    path: &ArmPath,
    body: &Bytes,
) -> Result<Option<Response>, ArmError> {
    let Some(provider) = path.provider.as_ref() else {
        return Ok(None);
    };
    let is_join = matches!(provider.segments.last(), Some((kind, None)) if kind.eq_ignore_ascii_case("generateJoinToken"));
    if !is_join || *method != Method::POST || path.extension.is_some() {
        return Ok(None);
    }
    let mut vm = path.clone();
    if let Some(part) = vm.provider.as_mut() {
        part.segments.pop();
    }
    let expires_in = if body.is_empty() {
        3600
    } else {
        parse_body(body)?
            .get("expiresIn")
            .and_then(Value::as_i64)
            .unwrap_or(3600)
    };
    let token = state
        .engine
        .generate_join_token(caller, &vm, expires_in)
        .await
        .map_err(|error| ArmError::from_engine(error, context))?;
    let expires_on = openmi_model::rfc3339(token.expires_at);
    Ok(Some(json_response(
        StatusCode::OK,
        json!({"joinToken": token.token, "expiresOn": expires_on, "vmResourceId": token.vm_resource_id}),
    )))
}

/// `$expand=instanceView` on a VM: the az CLI reads the power state from it.
fn add_instance_view(document: &mut Value) {
    let is_vm = document
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.eq_ignore_ascii_case(VIRTUAL_MACHINE_TYPE));
    if let (true, Some(properties)) = (
        is_vm,
        document
            .get_mut("properties")
            .and_then(Value::as_object_mut),
    ) {
        properties.insert(
            "instanceView".into(),
            json!({"statuses": [
                {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"},
                {"code": "PowerState/running", "level": "Info", "displayStatus": "VM running"},
            ]}),
        );
    }
}

fn is_documentdb(path: &ArmPath) -> bool {
    path.provider
        .as_ref()
        .is_some_and(|part| part.namespace.eq_ignore_ascii_case("Microsoft.DocumentDB"))
}

fn check_subscription(
    state: &AppState,
    context: &RequestContext,
    subscription: &str,
) -> Result<(), ArmError> {
    state
        .engine
        .check_subscription(subscription)
        .map_err(|error| ArmError::from_engine(error, context))
}

fn provider_json(subscription: &str, namespace: &str, types: &[(&str, &[&str])]) -> Value {
    let locations: Vec<&str> = LOCATIONS.iter().map(|(_, display)| *display).collect();
    json!({
        "id": format!("/subscriptions/{subscription}/providers/{namespace}"),
        "namespace": namespace,
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": types.iter().map(|(kind, versions)| json!({
            "resourceType": kind, "locations": locations, "apiVersions": versions, "capabilities": "None",
        })).collect::<Vec<_>>(),
    })
}

/// Splits `{scope}/providers/Microsoft.Authorization/{rest}` (the last such provider part) into the
/// scope (`/` at the root) and the rest's segments.
fn authorization_part(path: &str) -> Option<(String, Vec<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let at = (0..segments.len().saturating_sub(1)).rev().find(|&index| {
        segments[index].eq_ignore_ascii_case("providers")
            && segments[index + 1].eq_ignore_ascii_case("Microsoft.Authorization")
    })?;
    let scope = if at == 0 {
        "/".to_string()
    } else {
        format!("/{}", segments[..at].join("/"))
    };
    Some((
        scope,
        segments[at + 2..]
            .iter()
            .map(|segment| segment.to_string())
            .collect(),
    ))
}

/// `Microsoft.Authorization`: role assignments and role definitions at any scope.
#[allow(clippy::too_many_arguments)] // The request taken apart once; one call site.
async fn authorization_route(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    method: &Method,
    path: &str,
    scope: &str,
    rest: &[String],
    query: Option<&str>,
    body: &Bytes,
) -> Result<Response, ArmError> {
    let engine = &state.engine;
    let fail = |error| ArmError::from_engine(error, context);
    let filter = query_param(query, "$filter");
    let kind = rest
        .first()
        .map(|kind| kind.to_lowercase())
        .unwrap_or_default();
    let not_found = || {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for 'Microsoft.Authorization/{}'.",
                rest.join("/")
            ),
        )
    };
    let deleted = |found: Option<Value>| match found {
        Some(body) => json_response(StatusCode::OK, body),
        None => StatusCode::NO_CONTENT.into_response(),
    };
    match (kind.as_str(), rest.get(1), rest.len(), method) {
        ("roleassignments", None, 1, &Method::GET) => Ok(paged(
            state,
            context,
            path,
            query,
            engine
                .role_assignment_list(caller, scope, filter.as_deref(), &page_request(query)?)
                .await
                .map_err(fail)?,
        )),
        ("roleassignments", Some(name), 2, &Method::PUT) => Ok(written(
            engine
                .role_assignment_put(caller, scope, name, &parse_body(body)?)
                .await
                .map_err(fail)?,
        )),
        ("roleassignments", Some(name), 2, &Method::GET) => Ok(json_response(
            StatusCode::OK,
            engine
                .role_assignment_get(caller, scope, name)
                .await
                .map_err(fail)?,
        )),
        ("roleassignments", Some(name), 2, &Method::DELETE) => Ok(deleted(
            engine
                .role_assignment_delete(caller, scope, name)
                .await
                .map_err(fail)?,
        )),
        ("roledefinitions", None, 1, &Method::GET) => Ok(paged(
            state,
            context,
            path,
            query,
            engine
                .role_definition_list(caller, scope, filter.as_deref(), &page_without_top(query)?)
                .await
                .map_err(fail)?,
        )),
        ("roledefinitions", Some(id), 2, &Method::GET) => Ok(json_response(
            StatusCode::OK,
            engine
                .role_definition_get(caller, scope, id)
                .await
                .map_err(fail)?,
        )),
        ("roledefinitions", Some(id), 2, &Method::PUT) => Ok(written(
            engine
                .role_definition_put(caller, scope, id, &parse_body(body)?)
                .await
                .map_err(fail)?,
        )),
        ("roledefinitions", Some(id), 2, &Method::DELETE) => Ok(deleted(
            engine
                .role_definition_delete(caller, scope, id)
                .await
                .map_err(fail)?,
        )),
        _ => Err(not_found()),
    }
}

async fn subscriptions_json(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
) -> Result<Vec<Value>, ArmError> {
    let subscriptions = state
        .engine
        .store()
        .subscriptions()
        .await
        .map_err(|error| ArmError::from_engine(error.into(), context))?;
    Ok(subscriptions
        .iter()
        .filter(|subscription| state.engine.can_see_subscription(caller, &subscription.id.to_string()))
        .map(|subscription| {
            json!({
                "id": format!("/subscriptions/{}", subscription.id),
                "authorizationSource": "RoleBased",
                "managedByTenants": [],
                "subscriptionId": subscription.id.to_string(),
                "tenantId": subscription.tenant_id.to_string(),
                "displayName": subscription.display_name,
                "state": subscription.state,
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
            })
        })
        .collect())
}
