//! The audit log in Azure's shapes: ARM's Activity Log
//! (`/subscriptions/{s}/providers/Microsoft.Insights/eventtypes/management/values`, api-version
//! 2015-04-01, what `az monitor activity-log list` and azure-mgmt-monitor read) and Graph's
//! `/v1.0/auditLogs/signIns` and `/v1.0/auditLogs/directoryAudits`. The `$filter`s are parsed
//! by `odata.rs`; the records come from `Engine::audit_events`, which applies the caller's
//! rights. Field names and forms follow research notes taken from the installed azure-cli
//! (its AAZ schema wants every `properties` and `claims` value a string) and Graph's docs.

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openmi_engine::Caller;
use openmi_store::{AuditFilter, AuditKind, AuditRecord};
use serde_json::{json, Map, Value};

use crate::arm::query_param;
use crate::auth::AuthenticatedCaller;
use crate::context::{CallerObjectId, RequestContext};
use crate::error::ArmError;
use crate::odata::{self, Condition, Op};
use crate::AppState;

/// Events per Activity Log page, and the most Graph gives per page.
const ACTIVITY_PAGE: usize = 200;
const GRAPH_PAGE: usize = 1000;

fn bad_filter(message: impl Into<String>) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn position(token: Option<String>) -> Result<Option<(i64, String)>, ArmError> {
    let Some(token) = token else {
        return Ok(None);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| bad_filter("The $skiptoken is not valid."))?;
    let text = String::from_utf8(bytes).map_err(|_| bad_filter("The $skiptoken is not valid."))?;
    let (at, id) = text
        .split_once(':')
        .ok_or_else(|| bad_filter("The $skiptoken is not valid."))?;
    let at = at
        .parse()
        .map_err(|_| bad_filter("The $skiptoken is not valid."))?;
    Ok(Some((at, id.to_string())))
}

fn skip_token(next: &(i64, String)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", next.0, next.1))
}

/// The request's query with `$skiptoken` replaced: a next link repeats every parameter.
fn next_link(base: &str, path: &str, query: Option<&str>, token: &str) -> String {
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default();
    pairs.retain(|(key, _)| !key.eq_ignore_ascii_case("$skiptoken"));
    pairs.push(("$skiptoken".to_string(), token.to_string()));
    // Spaces as %20: the az CLI reads a literal `+` in a next link as a space only sometimes.
    let query = serde_urlencoded::to_string(&pairs)
        .unwrap_or_default()
        .replace('+', "%20")
        .replace("%24", "$");
    format!("{base}{path}?{query}")
}

fn time_value(field: &str, value: &str) -> Result<i64, ArmError> {
    odata::timestamp_micros(value).ok_or_else(|| {
        bad_filter(format!(
            "The value '{value}' of {field} is not a valid time."
        ))
    })
}

/// Narrows `filter` by a time comparison.
fn time_bound(filter: &mut AuditFilter, field: &str, op: Op, value: &str) -> Result<(), ArmError> {
    let micros = time_value(field, value)?;
    match op {
        Op::Ge => filter.from = Some(filter.from.map_or(micros, |from| from.max(micros))),
        Op::Gt => filter.from = Some(micros + 1),
        Op::Le => filter.to = Some(filter.to.map_or(micros, |to| to.min(micros))),
        Op::Lt => filter.to = Some(micros - 1),
        Op::Eq => {
            filter.from = Some(micros);
            filter.to = Some(micros);
        }
        Op::Ne => return Err(bad_filter(format!("{field} takes ge, gt, le, lt or eq."))),
    }
    Ok(())
}

/// The Activity Log's `$filter` as a store filter: `eventTimestamp ge` is required, as on
/// Azure; `resourceGroupName`, `resourceId` (the az CLI) or `resourceUri` (the REST docs),
/// `resourceProvider`, `correlationId`, `caller` and `status` narrow it; `eventChannels` and
/// `levels` are accepted and ignored.
fn activity_filter(subscription: &str, text: &str) -> Result<AuditFilter, ArmError> {
    let conditions = odata::parse(text)
        .map_err(|error| bad_filter(format!("The $filter '{text}' is not valid: {error}.")))?;
    let mut filter = AuditFilter {
        kinds: vec![AuditKind::Administrative],
        subscription_id: Some(subscription.to_string()),
        ..Default::default()
    };
    for condition in conditions {
        let Condition::Compare {
            field, op, value, ..
        } = condition
        else {
            return Err(bad_filter(format!(
                "The $filter '{text}' is not valid: only comparisons joined by 'and' are supported."
            )));
        };
        let lower = field.to_ascii_lowercase();
        if lower == "eventtimestamp" || lower == "submissiontimestamp" {
            time_bound(&mut filter, &field, op, &value)?;
            continue;
        }
        if op != Op::Eq {
            return Err(bad_filter(format!("{field} takes only eq.")));
        }
        match lower.as_str() {
            "resourcegroupname" => filter.resource_group = Some(value),
            "resourceid" | "resourceuri" => filter.resource_id = Some(value),
            "resourceprovider" => filter.operation_prefix = Some(format!("{value}/")),
            "correlationid" => filter.correlation_id = Some(value),
            "caller" => filter.caller = Some(value),
            "status" => filter.status = Some(value),
            "eventchannels" | "levels" => {}
            _ => {
                return Err(bad_filter(format!(
                    "The $filter property '{field}' is not supported. Use eventTimestamp, resourceGroupName, resourceId, resourceUri, resourceProvider, correlationId, caller or status."
                )))
            }
        }
    }
    if filter.from.is_none() {
        return Err(bad_filter(
            "$filter searching parameters invalid: the filter must contain 'eventTimestamp ge <time>'.",
        ));
    }
    Ok(filter)
}

fn localizable(value: &str) -> Value {
    json!({"value": value, "localizedValue": value})
}

fn details_of(record: &AuditRecord) -> Map<String, Value> {
    match serde_json::from_str(&record.details) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn detail(details: &Map<String, Value>, key: &str) -> Option<String> {
    details.get(key).and_then(Value::as_str).map(str::to_string)
}

/// .NET ticks (100 ns since 0001-01-01) of a time in microseconds, as event ids carry them.
fn ticks(micros: i64) -> i64 {
    (micros + 62_135_596_800_000_000) * 10
}

/// One Activity Log event (`EventData`) of a record; every `properties` and `claims` value is
/// a string, as the az CLI's schema requires.
fn event_data(record: &AuditRecord, tenant_id: &str) -> Value {
    let details = details_of(record);
    let resource_id = record.resource_id.clone().unwrap_or_else(|| {
        format!(
            "/subscriptions/{}",
            record.subscription_id.as_deref().unwrap_or_default()
        )
    });
    let operation = record.operation.as_str();
    // `Microsoft.Compute/virtualMachines/write` → provider `Microsoft.Compute`, type
    // `Microsoft.Compute/virtualMachines`; `.../databaseAccounts/listKeys/action` → type
    // `.../databaseAccounts`.
    let provider = operation.split('/').next().unwrap_or_default().to_string();
    let verb_less = operation.strip_suffix("/action").unwrap_or(operation);
    let resource_type = verb_less
        .rsplit_once('/')
        .map(|(head, _)| head)
        .unwrap_or(verb_less)
        .to_string();
    let failed = record.status.eq_ignore_ascii_case("Failed");
    let mut properties = Map::new();
    for (key, value) in &details {
        if let Some(text) = value.as_str() {
            properties.insert(key.clone(), Value::String(text.to_string()));
        }
    }
    if let Some(code) = &record.status_code {
        properties.insert("statusCode".to_string(), Value::String(code.clone()));
    }
    let mut claims = Map::new();
    if let Some(caller_id) = &record.caller_id {
        claims.insert(
            "http://schemas.microsoft.com/identity/claims/objectidentifier".to_string(),
            Value::String(caller_id.clone()),
        );
    }
    claims.insert(
        "http://schemas.microsoft.com/identity/claims/tenantid".to_string(),
        Value::String(tenant_id.to_string()),
    );
    if let Some(app_id) = detail(&details, "appId").filter(|id| !id.is_empty()) {
        claims.insert("appid".to_string(), Value::String(app_id));
    }
    if let Some(ip) = &record.client_ip {
        claims.insert("ipaddr".to_string(), Value::String(ip.clone()));
    }
    if detail(&details, "principalType").as_deref() == Some("User") {
        if let Some(name) = &record.caller_name {
            claims.insert(
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn".to_string(),
                Value::String(name.clone()),
            );
        }
    }
    let mut http_request = Map::new();
    if let Some(id) = detail(&details, "clientRequestId") {
        http_request.insert("clientRequestId".to_string(), Value::String(id));
    }
    if let Some(ip) = &record.client_ip {
        http_request.insert("clientIpAddress".to_string(), Value::String(ip.clone()));
    }
    if let Some(method) = detail(&details, "httpMethod") {
        http_request.insert("method".to_string(), Value::String(method));
    }
    if let Some(uri) = detail(&details, "uri") {
        http_request.insert("uri".to_string(), Value::String(uri));
    }
    let timestamp = odata::format_micros(record.at);
    json!({
        "authorization": {"action": operation, "scope": resource_id},
        "caller": record.caller_name.clone().or(record.caller_id.clone()).unwrap_or_default(),
        "channels": "Operation",
        "claims": claims,
        "correlationId": record.correlation_id.clone().unwrap_or_default(),
        "description": "",
        "eventDataId": record.id,
        "eventName": {"value": "EndRequest", "localizedValue": "End request"},
        "category": localizable("Administrative"),
        "httpRequest": http_request,
        "id": format!("{resource_id}/events/{}/ticks/{}", record.id, ticks(record.at)),
        "level": if failed { "Error" } else { "Informational" },
        "resourceGroupName": record.resource_group.clone().unwrap_or_default(),
        "resourceProviderName": localizable(&provider),
        "resourceId": resource_id,
        "resourceType": localizable(&resource_type),
        "operationId": record.request_id.clone().unwrap_or_default(),
        "operationName": localizable(operation),
        "properties": properties,
        "status": localizable(&record.status),
        "subStatus": localizable(record.status_code.as_deref().filter(|_| failed).unwrap_or("")),
        "eventTimestamp": timestamp,
        "submissionTimestamp": timestamp,
        "subscriptionId": record.subscription_id.clone().unwrap_or_default(),
        "tenantId": tenant_id,
    })
}

/// Keeps only the `$select`ed properties (`eventName , caller , status`, as az joins them).
fn select(event: Value, selected: &Option<Vec<String>>) -> Value {
    match (event, selected) {
        (Value::Object(map), Some(names)) => Value::Object(
            map.into_iter()
                .filter(|(key, _)| names.iter().any(|name| name.eq_ignore_ascii_case(key)))
                .collect(),
        ),
        (event, _) => event,
    }
}

/// `GET /subscriptions/{s}/providers/Microsoft.Insights/eventtypes/management/values`.
pub(crate) async fn activity_log(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    subscription: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Response, ArmError> {
    state
        .engine
        .check_subscription(subscription)
        .map_err(|error| ArmError::from_engine(error, context))?;
    let text = query_param(query, "$filter").ok_or_else(|| {
        bad_filter("$filter searching parameters invalid: the filter must contain 'eventTimestamp ge <time>'.")
    })?;
    let mut filter = activity_filter(subscription, &text)?;
    filter.before = position(query_param(query, "$skiptoken"))?;
    let selected = query_param(query, "$select").map(|text| {
        text.split(',')
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .collect::<Vec<_>>()
    });
    let page = state
        .engine
        .audit_events(caller, &filter, ACTIVITY_PAGE)
        .await
        .map_err(|error| ArmError::from_engine(error, context))?;
    let tenant_id = state.engine.tenant().id.to_string();
    let values: Vec<Value> = page
        .records
        .iter()
        .map(|record| select(event_data(record, &tenant_id), &selected))
        .collect();
    let mut body = json!({"value": values});
    if let Some(next) = &page.next {
        body["nextLink"] = json!(next_link(
            state.base_url(context),
            path,
            query,
            &skip_token(next)
        ));
    }
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response
        .extensions_mut()
        .insert(CallerObjectId(caller.object_id.to_string()));
    Ok(response)
}

fn graph_bad_request(message: impl Into<String>) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
}

fn graph_failure(error: openmi_engine::EngineError, context: &RequestContext) -> ArmError {
    match error {
        openmi_engine::EngineError::Forbidden => ArmError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ),
        other => ArmError::from_engine(other, context),
    }
}

/// The grants recorded under each sign-in event type.
fn grants_of(event_type: &str) -> Option<&'static [&'static str]> {
    Some(match event_type {
        "interactiveUser" => &["authorization_code", "device_code", "sign_in_page"],
        "nonInteractiveUser" => &["password", "refresh_token"],
        "servicePrincipal" => &["client_credentials"],
        "managedIdentity" => &["managed_identity"],
        _ => return None,
    })
}

fn event_type_of(grant: &str) -> &'static str {
    match grant {
        "authorization_code" | "device_code" | "sign_in_page" => "interactiveUser",
        "password" | "refresh_token" => "nonInteractiveUser",
        "managed_identity" => "managedIdentity",
        _ => "servicePrincipal",
    }
}

/// Graph's `$filter` on sign-ins: `createdDateTime` (ge, gt, le, lt, eq), `userId`,
/// `userPrincipalName`, `servicePrincipalId`, `correlationId`, `status/errorCode` (eq), and
/// `signInEventTypes/any(t: t eq '...' or ...)`. Without the last, every kind is listed (Graph's
/// v1.0 lists interactive user sign-ins only; the rest are beta's, served here on one path).
fn sign_in_filter(text: Option<&str>) -> Result<AuditFilter, ArmError> {
    let mut filter = AuditFilter {
        kinds: vec![AuditKind::SignIn],
        ..Default::default()
    };
    let Some(text) = text else {
        return Ok(filter);
    };
    let conditions = odata::parse(text)
        .map_err(|error| graph_bad_request(format!("Invalid filter clause: {error}.")))?;
    for condition in conditions {
        match condition {
            Condition::Compare {
                field, op, value, ..
            } => {
                let lower = field.to_ascii_lowercase();
                if lower == "createddatetime" {
                    time_bound(&mut filter, &field, op, &value)
                        .map_err(|error| graph_bad_request(error.message))?;
                    continue;
                }
                // `status/errorCode ne 0`: the failures, as Graph's examples ask for them.
                if op == Op::Ne && lower == "status/errorcode" && value == "0" {
                    filter.status = Some("Failed".to_string());
                    continue;
                }
                if op != Op::Eq {
                    return Err(graph_bad_request(format!(
                        "Invalid filter clause: {field} supports only eq."
                    )));
                }
                match lower.as_str() {
                    "userid" | "userprincipalname" | "serviceprincipalid" => {
                        filter.caller = Some(value)
                    }
                    "correlationid" => filter.correlation_id = Some(value),
                    "status/errorcode" => {
                        if value == "0" {
                            filter.status = Some("Succeeded".to_string());
                        } else {
                            filter.status_code = Some(format!("AADSTS{value}"));
                        }
                    }
                    _ => {
                        return Err(graph_bad_request(format!(
                            "Invalid filter clause: the property '{field}' is not supported."
                        )))
                    }
                }
            }
            Condition::AnyOf { field, values, .. }
                if field.eq_ignore_ascii_case("signInEventTypes") =>
            {
                let mut operations = Vec::new();
                for value in values {
                    let grants = grants_of(&value).ok_or_else(|| {
                        graph_bad_request(format!(
                            "Invalid filter clause: '{value}' is not a sign-in event type."
                        ))
                    })?;
                    operations.extend(grants.iter().map(|grant| grant.to_string()));
                }
                filter.operations = operations;
            }
            _ => {
                return Err(graph_bad_request(
                    "Invalid filter clause: this form is not supported.",
                ))
            }
        }
    }
    Ok(filter)
}

/// The display name Graph gives a resource a token was issued for.
fn resource_display_name(resource: &str) -> &'static str {
    let lower = resource.trim_end_matches('/').to_ascii_lowercase();
    if lower.contains("graph.microsoft.com") || lower == "00000003-0000-0000-c000-000000000000" {
        "Microsoft Graph"
    } else if lower.contains("management.") || lower == "797f4846-ba00-4fd7-ba43-dac1f8f63013" {
        "Windows Azure Service Management API"
    } else if lower.contains("cosmos") || lower.contains("documents.azure.com") {
        "Azure Cosmos DB"
    } else {
        ""
    }
}

async fn page_query(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    mut filter: AuditFilter,
    query: Option<&str>,
) -> Result<openmi_engine::audit::AuditPage, ArmError> {
    filter.before = position(query_param(query, "$skiptoken"))?;
    let top = match query_param(query, "$top") {
        Some(top) => top
            .parse::<usize>()
            .ok()
            .filter(|top| (1..=GRAPH_PAGE).contains(top))
            .ok_or_else(|| {
                graph_bad_request("Invalid page size specified: $top must be 1 to 1000.")
            })?,
        None => GRAPH_PAGE,
    };
    state
        .engine
        .audit_events(caller, &filter, top)
        .await
        .map_err(|error| graph_failure(error, context))
}

fn graph_page(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    entity: &str,
    uri: &axum::http::Uri,
    values: Vec<Value>,
    next: Option<(i64, String)>,
) -> Response {
    let base = state.base_url(context);
    let mut body = json!({
        "@odata.context": format!("{base}/v1.0/$metadata#auditLogs/{entity}"),
        "value": values,
    });
    if let Some(next) = &next {
        body["@odata.nextLink"] =
            json!(next_link(base, uri.path(), uri.query(), &skip_token(next)));
    }
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response
        .extensions_mut()
        .insert(CallerObjectId(caller.object_id.to_string()));
    response
}

/// `GET /v1.0/auditLogs/signIns`: tokens issued and failed sign-ins, newest first. Managed
/// identities' and service principals' sign-ins carry beta's `signInEventTypes`,
/// `servicePrincipalId` and `managedServiceIdentity` too.
pub async fn sign_ins(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ArmError> {
    let query = uri.query();
    let filter = sign_in_filter(query_param(query, "$filter").as_deref())?;
    let page = page_query(&state, &context, &caller.0, filter, query).await?;
    // Names by object id, read once per principal of the page.
    let mut ids: Vec<String> = page
        .records
        .iter()
        .filter_map(|record| record.caller_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    let principals = state
        .engine
        .directory_objects(&ids)
        .await
        .map_err(|error| graph_failure(error, &context))?;
    let named = |id: &Option<String>| {
        id.as_ref().and_then(|id| {
            principals
                .iter()
                .find(|principal| principal.object_id.to_string() == *id)
        })
    };
    let values = page
        .records
        .iter()
        .map(|record| {
            let details = details_of(record);
            let event_type = event_type_of(&record.operation);
            let principal = named(&record.caller_id);
            let is_user = matches!(event_type, "interactiveUser" | "nonInteractiveUser");
            let display_name = principal
                .map(|principal| principal.display_name.clone())
                .unwrap_or_default();
            let user_name = if is_user {
                principal
                    .and_then(|principal| principal.user_principal_name.clone())
                    .or(record.caller_name.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            let app_id = detail(&details, "appId").unwrap_or_default();
            let resource = record.resource_id.clone().unwrap_or_default();
            let failed = record.status.eq_ignore_ascii_case("Failed");
            let error_code: i64 = record
                .status_code
                .as_deref()
                .and_then(|code| code.strip_prefix("AADSTS"))
                .and_then(|code| code.parse().ok())
                .filter(|_| failed)
                .unwrap_or(0);
            let mut value = json!({
                "id": record.id,
                "createdDateTime": odata::format_micros(record.at),
                "userDisplayName": if is_user { display_name.clone() } else { String::new() },
                "userPrincipalName": user_name,
                "userId": if is_user { record.caller_id.clone().unwrap_or_default() } else { String::new() },
                "appId": app_id,
                "appDisplayName": if is_user { "" } else { display_name.as_str() },
                "ipAddress": record.client_ip.clone().unwrap_or_default(),
                "clientAppUsed": if event_type == "interactiveUser" { "Browser" } else { "Mobile Apps and Desktop clients" },
                "correlationId": record.correlation_id.clone().unwrap_or_default(),
                "conditionalAccessStatus": "notApplied",
                "isInteractive": event_type == "interactiveUser",
                "resourceDisplayName": resource_display_name(&resource),
                "resourceId": resource,
                "riskDetail": "none",
                "riskLevelAggregated": "none",
                "riskLevelDuringSignIn": "none",
                "riskState": "none",
                "riskEventTypes": [],
                "riskEventTypes_v2": [],
                "status": {
                    "errorCode": error_code,
                    "failureReason": if failed { detail(&details, "failureReason") } else { None },
                    "additionalDetails": Value::Null,
                },
                "deviceDetail": {"deviceId": "", "displayName": null, "operatingSystem": null, "browser": null, "isCompliant": null, "isManaged": null, "trustType": null},
                "location": {"city": null, "state": null, "countryOrRegion": null, "geoCoordinates": null},
                "appliedConditionalAccessPolicies": [],
                "signInEventTypes": [event_type],
                "servicePrincipalId": if is_user { String::new() } else { record.caller_id.clone().unwrap_or_default() },
                "servicePrincipalName": if is_user { String::new() } else { display_name.clone() },
            });
            if event_type == "managedIdentity" {
                let mirid = detail(&details, "identityResourceId").unwrap_or_default();
                let system = if mirid
                    .to_ascii_lowercase()
                    .contains("/providers/microsoft.managedidentity/")
                {
                    "userAssigned"
                } else {
                    "systemAssigned"
                };
                value["clientCredentialType"] = json!("managedIdentity");
                value["managedServiceIdentity"] = json!({
                    "msiType": if mirid.is_empty() { "none" } else { system },
                    "associatedResourceId": mirid,
                });
                if let Some(vm) = detail(&details, "vmId") {
                    value["azureResourceId"] = json!(vm);
                }
            }
            value
        })
        .collect();
    Ok(graph_page(
        &state, &context, &caller.0, "signIns", &uri, values, page.next,
    ))
}

/// `GET /v1.0/auditLogs/directoryAudits`: directory changes, newest first; `$filter` on
/// `activityDateTime`, `activityDisplayName`, `correlationId` and `initiatedBy/user/id` or
/// `initiatedBy/app/appId`... as far as `caller` (the initiator's object id) goes.
pub async fn directory_audits(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ArmError> {
    let query = uri.query();
    let mut filter = AuditFilter {
        kinds: vec![AuditKind::Directory],
        ..Default::default()
    };
    if let Some(text) = query_param(query, "$filter") {
        let conditions = odata::parse(&text)
            .map_err(|error| graph_bad_request(format!("Invalid filter clause: {error}.")))?;
        for condition in conditions {
            match condition {
                Condition::Compare {
                    field, op, value, ..
                } if field.eq_ignore_ascii_case("activityDateTime") => {
                    time_bound(&mut filter, &field, op, &value)
                        .map_err(|error| graph_bad_request(error.message))?;
                }
                Condition::Compare {
                    field,
                    op: Op::Eq,
                    value,
                    ..
                } => match field.to_ascii_lowercase().as_str() {
                    "activitydisplayname" => filter.operations = vec![value],
                    "correlationid" => filter.correlation_id = Some(value),
                    "initiatedby/user/id"
                    | "initiatedby/user/userprincipalname"
                    | "initiatedby/app/serviceprincipalid" => filter.caller = Some(value),
                    _ => {
                        return Err(graph_bad_request(format!(
                            "Invalid filter clause: the property '{field}' is not supported."
                        )))
                    }
                },
                Condition::StartsWith { field, value, .. }
                    if field.eq_ignore_ascii_case("activityDisplayName") =>
                {
                    filter.operation_prefix = Some(value)
                }
                _ => {
                    return Err(graph_bad_request(
                        "Invalid filter clause: this form is not supported.",
                    ))
                }
            }
        }
    }
    let page = page_query(&state, &context, &caller.0, filter, query).await?;
    let values = page
        .records
        .iter()
        .map(|record| {
            let details = details_of(record);
            let failed = record.status.eq_ignore_ascii_case("Failed");
            let is_user = detail(&details, "principalType").as_deref() == Some("User");
            let initiator_id = record.caller_id.clone().unwrap_or_default();
            let user = is_user.then(|| {
                json!({
                    "id": initiator_id,
                    "displayName": null,
                    "userPrincipalName": record.caller_name,
                    "ipAddress": record.client_ip.clone().unwrap_or_default(),
                    "userType": null, "homeTenantId": null, "homeTenantName": null,
                })
            });
            let app = (!is_user).then(|| {
                json!({
                    "appId": detail(&details, "appId"),
                    "displayName": null,
                    "servicePrincipalId": initiator_id,
                    "servicePrincipalName": null,
                })
            });
            let category = if record.operation.ends_with(" user") {
                "UserManagement"
            } else {
                "ApplicationManagement"
            };
            let operation_type = if record.operation.starts_with("Add") {
                "Add"
            } else {
                "Update"
            };
            json!({
                "id": format!("Directory_{}", record.id),
                "category": category,
                "correlationId": record.correlation_id.clone().unwrap_or_default(),
                "result": if failed { "failure" } else { "success" },
                "resultReason": record.status_code.clone().filter(|_| failed).unwrap_or_default(),
                "activityDisplayName": record.operation,
                "activityDateTime": odata::format_micros(record.at),
                "loggedByService": "Core Directory",
                "operationType": operation_type,
                "initiatedBy": {"user": user, "app": app},
                "targetResources": [{
                    "id": record.resource_id.clone().unwrap_or_default(),
                    "displayName": null,
                    "type": if category == "UserManagement" { "User" } else { "Application" },
                    "userPrincipalName": null,
                    "groupType": null,
                    "modifiedProperties": [],
                }],
                "additionalDetails": [],
            })
        })
        .collect();
    Ok(graph_page(
        &state,
        &context,
        &caller.0,
        "directoryAudits",
        &uri,
        values,
        page.next,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_az_cli_filter_becomes_a_store_filter() {
        let filter = activity_filter(
            "s",
            "eventTimestamp ge 2026-12-03T06:49:30.530879 and eventTimestamp le 2026-12-03T12:49:30.530879 and resourceGroupName eq 'g' and caller eq 'a@b.com' and status eq 'Failed'",
        )
        .unwrap();
        assert_eq!(filter.resource_group.as_deref(), Some("g"));
        assert_eq!(filter.caller.as_deref(), Some("a@b.com"));
        assert_eq!(filter.status.as_deref(), Some("Failed"));
        assert!(filter.from.unwrap() < filter.to.unwrap());
        assert_eq!(filter.kinds, vec![AuditKind::Administrative]);
        let missing = activity_filter("s", "resourceGroupName eq 'g'").unwrap_err();
        assert_eq!(missing.code, "BadRequest");
        let unknown =
            activity_filter("s", "eventTimestamp ge 2026-01-01 and colour eq 'red'").unwrap_err();
        assert!(unknown.message.contains("colour"));
    }

    #[test]
    fn event_names_provider_and_type_from_the_operation() {
        let record = AuditRecord {
            id: "e".into(),
            at: 1_796_280_570_530_879,
            kind: AuditKind::Administrative,
            operation: "Microsoft.DocumentDB/databaseAccounts/listKeys/action".into(),
            status: "Succeeded".into(),
            status_code: None,
            caller_id: Some("o".into()),
            caller_name: Some("o".into()),
            subscription_id: Some("s".into()),
            resource_group: Some("g".into()),
            resource_id: Some("/subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/a".into()),
            correlation_id: Some("c".into()),
            request_id: Some("r".into()),
            client_ip: Some("127.0.0.1".into()),
            details: r#"{"httpMethod":"POST","appId":"x"}"#.into(),
        };
        let event = event_data(&record, "t");
        assert_eq!(
            event["resourceProviderName"]["value"],
            "Microsoft.DocumentDB"
        );
        assert_eq!(
            event["resourceType"]["value"],
            "Microsoft.DocumentDB/databaseAccounts"
        );
        assert_eq!(event["httpRequest"]["method"], "POST");
        assert!(event["id"]
            .as_str()
            .unwrap()
            .ends_with("/events/e/ticks/639318773705308790"));
        for (_, value) in event["properties"].as_object().unwrap() {
            assert!(value.is_string());
        }
        let write = AuditRecord {
            operation: "Microsoft.ManagedIdentity/userAssignedIdentities/write".into(),
            ..record
        };
        assert_eq!(
            event_data(&write, "t")["resourceType"]["value"],
            "Microsoft.ManagedIdentity/userAssignedIdentities"
        );
    }

    #[test]
    fn sign_in_event_types_become_grants() {
        let filter = sign_in_filter(Some(
            "signInEventTypes/any(t: t eq 'managedIdentity') and status/errorCode eq 50126",
        ))
        .unwrap();
        assert_eq!(filter.operations, vec!["managed_identity".to_string()]);
        assert_eq!(filter.status_code.as_deref(), Some("AADSTS50126"));
        assert!(sign_in_filter(Some("signInEventTypes/any(t: t eq 'robot')")).is_err());
    }
}
