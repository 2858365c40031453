//! The start of the ARM surface: tenants and subscriptions (what `az login` and `openmi account
//! show` read). Resource groups, identities and VMs arrive with the control-plane issue (#4).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::AuthenticatedCaller;
use crate::context::{CallerObjectId, RequestContext};
use crate::error::ArmError;
use crate::AppState;

/// ARM routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants", get(tenant_list))
        .route("/subscriptions", get(subscription_list))
        .route("/subscriptions/{subscription}", get(subscription_get))
}

/// The query every ARM request carries.
#[derive(Debug, serde::Deserialize)]
pub struct ArmQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

impl ArmQuery {
    fn require(&self) -> Result<(), ArmError> {
        match self.api_version.as_deref() {
            Some(version) if !version.is_empty() => Ok(()),
            _ => Err(ArmError::missing_api_version()),
        }
    }
}

fn respond(caller: &AuthenticatedCaller, body: Value) -> Response {
    let mut response = Json(body).into_response();
    response
        .extensions_mut()
        .insert(CallerObjectId(caller.0.object_id.to_string()));
    response
}

async fn subscriptions_json(
    state: &AppState,
    context: &RequestContext,
) -> Result<Vec<Value>, ArmError> {
    let subscriptions = state
        .engine
        .store()
        .subscriptions()
        .await
        .map_err(|error| ArmError::from_engine(error.into(), context))?;
    Ok(subscriptions
        .iter()
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

/// `GET /tenants`
pub async fn tenant_list(
    State(state): State<AppState>,
    caller: AuthenticatedCaller,
    Query(query): Query<ArmQuery>,
) -> Result<Response, ArmError> {
    query.require()?;
    let tenant = state.engine.tenant();
    let body = json!({"value": [{
        "id": format!("/tenants/{}", tenant.id),
        "tenantId": tenant.id.to_string(),
        "tenantCategory": "Home",
        "displayName": tenant.display_name,
        "defaultDomain": tenant.default_domain,
        "domains": [tenant.default_domain],
        "tenantType": "AAD",
    }]});
    Ok(respond(&caller, body))
}

/// `GET /subscriptions`
pub async fn subscription_list(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Query(query): Query<ArmQuery>,
) -> Result<Response, ArmError> {
    query.require()?;
    Ok(respond(
        &caller,
        json!({"value": subscriptions_json(&state, &context).await?}),
    ))
}

/// `GET /subscriptions/{subscription}`
pub async fn subscription_get(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthenticatedCaller,
    Path(subscription): Path<String>,
    Query(query): Query<ArmQuery>,
) -> Result<Response, ArmError> {
    query.require()?;
    let found = subscriptions_json(&state, &context)
        .await?
        .into_iter()
        .find(|item| {
            item.get("subscriptionId")
                .and_then(Value::as_str)
                .is_some_and(|id| id.eq_ignore_ascii_case(&subscription))
        });
    match found {
        Some(body) => Ok(respond(&caller, body)),
        None => Err(ArmError::new(
            axum::http::StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{subscription}' could not be found."),
        )),
    }
}
