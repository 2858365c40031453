//! The Microsoft.Resources/deployments provider: template deployments at resource-group and
//! subscription scope (research/protocols.md §4.7), planned by the pure `openmi-template`
//! crate and executed through the same providers as direct PUTs, with the caller's own rights
//! checked per resource.
//!
//! A PUT validates everything first (template, parameters, the caller's write permission on
//! every resource, as ARM's preflight does), so a refused deployment writes nothing. It then
//! stores the deployment `Running` and walks the plan's dependency graph (Terraform's `dag`
//! walk, STYLE.md §3): each resource starts once its dependencies succeeded, independent ones
//! concurrently, a failure fails its dependants (they are not attempted) while the rest go on,
//! and what succeeded stays, as in ARM. Each resource body is evaluated just before its write,
//! when the resources it `reference()`s exist. Operations are recorded as the walk goes and the
//! deployment ends `Succeeded` or `Failed` with ARM's `DeploymentFailed` error and details.
//!
//! The record, its operations and its template are rows of the one resource store (children of
//! the deployment), so they are as durable as every other write and go with their group.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use openmi_model::arm::{resource_key, ArmPath, RESOURCE_GROUP_TYPE};
use openmi_store::{Listing, ResourceChange, ResourceRecord};
use openmi_template::{Plan, Resolver, Template, TemplateError};
use serde_json::{json, Map, Value};

use crate::arm_error::ArmFailure;
use crate::{Caller, Engine, EngineError, Page, PageRequest, Written};

pub const DEPLOYMENT_TYPE: &str = "Microsoft.Resources/deployments";
const OPERATION_TYPE: &str = "Microsoft.Resources/deployments/operations";
const TEMPLATE_TYPE: &str = "Microsoft.Resources/deployments/templates";
/// Resources written at once by one deployment (scripts/bench-deploy compares a deployment with
/// the same writes sent directly at this concurrency).
const MAX_IN_FLIGHT: usize = 16;
/// ARM's text for a deployment with a failed resource.
const DEPLOYMENT_FAILED: &str = "At least one resource deployment operation failed. Please list deployment operations for details. Please see https://aka.ms/arm-deployment-operations for usage details.";

/// Where a deployment lives: a resource group, or the subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentScope {
    pub subscription: String,
    pub group: Option<String>,
}

/// The answer to a deployment PUT.
#[derive(Debug, Clone)]
pub enum DeploymentStarted {
    /// The deployment finished while the request waited: the final record.
    Finished { created: bool, document: Value },
    /// Still running (or failed): the record as it is and the id of the async operation whose
    /// status URL the client polls.
    Running {
        created: bool,
        document: Value,
        operation_id: String,
    },
}

/// `Incremental` or `Complete` (case-insensitive, as ARM accepts `incremental` from az).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Incremental,
    Complete,
}

impl Mode {
    fn parse(text: Option<&str>) -> Result<Mode, EngineError> {
        match text {
            None => Ok(Mode::Incremental),
            Some(mode) if mode.eq_ignore_ascii_case("Incremental") => Ok(Mode::Incremental),
            Some(mode) if mode.eq_ignore_ascii_case("Complete") => Ok(Mode::Complete),
            Some(other) => Err(EngineError::InvalidRequestContent(format!(
                "The deployment mode '{other}' is not supported. Supported modes are 'Incremental' and 'Complete'."
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Incremental => "Incremental",
            Mode::Complete => "Complete",
        }
    }
}

fn template_failure(error: TemplateError) -> EngineError {
    EngineError::Template {
        code: error.code,
        message: error.message,
    }
}

/// `PT1.234S`, ARM's ISO-8601 durations.
fn iso_duration(elapsed: Duration) -> String {
    format!("PT{:.3}S", elapsed.as_secs_f64())
}

/// An operation id as ARM writes them: 16 upper-case hex digits.
fn new_operation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_uppercase()
}

/// The id of a deployment's `sequence`-th operation: 16 upper-case hex digits, the first eight
/// counting, so the operations list in the order they finished.
fn sequenced_operation_id(sequence: usize) -> String {
    format!(
        "{:08X}{}",
        sequence,
        &uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase()
    )
}

/// What a deployment request says.
struct Request {
    mode: Mode,
    template: Template,
    parameters: Map<String, Value>,
    location: Option<String>,
    tags: Option<Value>,
}

/// Splits `{scope}/providers/Microsoft.Authorization/{kind}/{name}` into scope and name.
fn authorization_target<'a>(id: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let marker = format!(
        "/providers/microsoft.authorization/{}/",
        kind.to_lowercase()
    );
    let lower = id.to_lowercase();
    let at = lower.rfind(&marker)?;
    Some((&id[..at], &id[at + marker.len()..]))
}

/// The deployed resources a deployment has read or written, for `reference()`: a document, or
/// `None` for a resource known not to exist. Ids are keyed lower-case.
type Known = HashMap<String, Option<Value>>;

/// A `Resolver` over what is known; every id it does not know is recorded so the caller can read
/// it and evaluate again (evaluation is synchronous and pure, reads are not).
struct KnownResolver<'a> {
    known: &'a Known,
    missing: RefCell<Vec<String>>,
}

impl Resolver for KnownResolver<'_> {
    fn reference(
        &self,
        resource_id: &str,
        _api_version: Option<&str>,
        full: bool,
    ) -> Result<Value, String> {
        match self.known.get(&resource_key(resource_id)) {
            Some(Some(document)) if full => Ok(document.clone()),
            Some(Some(document)) => Ok(document
                .get("properties")
                .cloned()
                .unwrap_or_else(|| json!({}))),
            Some(None) => Err(format!(
                "The Resource '{resource_id}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            )),
            None => {
                self.missing.borrow_mut().push(resource_id.to_string());
                Err(format!("The resource '{resource_id}' is not available yet."))
            }
        }
    }

    fn list(
        &self,
        function: &str,
        resource_id: &str,
        _api_version: &str,
        _body: Option<&Value>,
    ) -> Result<Value, String> {
        let key = list_key(function, resource_id);
        match self.known.get(&key) {
            Some(Some(answer)) => Ok(answer.clone()),
            Some(None) => Err(format!(
                "The resource '{resource_id}' does not support the action '{function}'."
            )),
            None => {
                self.missing.borrow_mut().push(key);
                Err(format!(
                    "The resource '{resource_id}' is not available yet."
                ))
            }
        }
    }
}

/// A resource type of a provider and the locations the deployment puts it in.
type TypeLocations = (String, Vec<String>);

fn poisoned() -> TemplateError {
    TemplateError {
        code: "InternalServerError".to_string(),
        message: "EN0502 the deployment's reference map is unusable".to_string(),
        line: 0,
        column: 0,
    }
}

/// The `known` key of a `list*()` call's answer (never a resource key: it has no leading `/`).
fn list_key(function: &str, resource_id: &str) -> String {
    format!(
        "list:{}:{}",
        function.to_lowercase(),
        resource_key(resource_id)
    )
}

/// The outcome of one resource of a walk.
#[derive(Debug, Clone)]
enum Outcome {
    Succeeded(Value),
    Failed(ArmFailure),
}

impl Engine {
    fn deployment_id(scope: &DeploymentScope, name: &str) -> String {
        match &scope.group {
            Some(group) => format!(
                "/subscriptions/{}/resourceGroups/{group}/providers/{DEPLOYMENT_TYPE}/{name}",
                scope.subscription
            ),
            None => format!(
                "/subscriptions/{}/providers/{DEPLOYMENT_TYPE}/{name}",
                scope.subscription
            ),
        }
    }

    /// The scope's group record (resource-group deployments), checked to exist.
    async fn deployment_group(
        &self,
        scope: &DeploymentScope,
    ) -> Result<Option<ResourceRecord>, EngineError> {
        self.check_subscription(&scope.subscription)?;
        match &scope.group {
            Some(group) => {
                let key = resource_key(&format!(
                    "/subscriptions/{}/resourceGroups/{group}",
                    scope.subscription
                ));
                let record = self
                    .store()
                    .resource(&key)
                    .await?
                    .ok_or_else(|| EngineError::ResourceGroupNotFound(group.clone()))?;
                Ok(Some(record))
            }
            None => Ok(None),
        }
    }

    fn check_deployment_name(name: &str) -> Result<(), EngineError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
        if valid {
            Ok(())
        } else {
            Err(EngineError::InvalidName {
                code: "InvalidDeploymentName",
                message: format!("The deployment name '{name}' is invalid. It can contain alphanumeric, underscore, parentheses, hyphen and period characters, and must be at most 64 characters long."),
            })
        }
    }

    /// Reads the request body: mode, the template (from its own text, so errors name the
    /// template's lines and columns), parameters.
    fn deployment_request(
        body: &Value,
        template_source: Option<&str>,
        subscription_scope: bool,
    ) -> Result<Request, EngineError> {
        let properties = body
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                EngineError::InvalidRequestContent(
                    "The request content must have a 'properties' object.".to_string(),
                )
            })?;
        let mode = Mode::parse(properties.get("mode").and_then(Value::as_str))?;
        if properties.contains_key("templateLink") {
            return Err(EngineError::InvalidRequestContent(
                "Linked templates ('templateLink') are not supported by openmi: send the template inline in 'properties.template'.".to_string(),
            ));
        }
        if properties.contains_key("parametersLink") {
            return Err(EngineError::InvalidRequestContent(
                "Linked parameter files ('parametersLink') are not supported by openmi: send the parameters inline in 'properties.parameters'.".to_string(),
            ));
        }
        let template_value = properties
            .get("template")
            .filter(|template| template.is_object())
            .ok_or_else(|| {
                EngineError::InvalidRequestContent(
                    "The request content must have a 'properties.template' object.".to_string(),
                )
            })?;
        let text = match template_source {
            Some(text) => text.to_string(),
            None => template_value.to_string(),
        };
        let template = Template::parse(&text).map_err(template_failure)?;
        let parameters = match properties.get("parameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(parameters)) => parameters.clone(),
            Some(_) => {
                return Err(EngineError::InvalidRequestContent(
                    "The 'properties.parameters' property must be an object.".to_string(),
                ))
            }
        };
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .map(|location| location.to_lowercase().replace(' ', ""));
        if subscription_scope && location.is_none() {
            return Err(EngineError::InvalidRequestContent(
                "The location property is required for this definition.".to_string(),
            ));
        }
        if mode == Mode::Complete && subscription_scope {
            return Err(EngineError::InvalidRequestContent(
                "The deployment mode 'Complete' is not supported for deployments at subscription scope.".to_string(),
            ));
        }
        Ok(Request {
            mode,
            template,
            parameters,
            location,
            tags: body.get("tags").cloned().filter(Value::is_object),
        })
    }

    /// Plans a request: the template crate's scope from the store, then `plan`.
    async fn deployment_plan(
        &self,
        name: &str,
        request: &Request,
        group: Option<&ResourceRecord>,
    ) -> Result<Plan, EngineError> {
        let resource_group = match group {
            Some(record) => {
                let document = Self::parse_document(record)?;
                Some(openmi_template::ResourceGroupInfo {
                    name: document
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    location: document
                        .get("location")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    tags: document.get("tags").cloned().unwrap_or_else(|| json!({})),
                })
            }
            None => None,
        };
        let template_scope = openmi_template::Scope {
            tenant_id: self.tenant().id.to_string(),
            subscription_id: self.inner.subscription_id.clone(),
            subscription_display_name: self.subscription_display_name().await?,
            resource_group,
            deployment_name: name.to_string(),
            deployment_location: request.location.clone(),
            environment: self.environment_document(),
        };
        let mut new_guid = || uuid::Uuid::new_v4().to_string();
        openmi_template::plan(
            &request.template,
            &template_scope,
            openmi_template::Inputs {
                parameters: request.parameters.clone(),
                utc_now_unix: self.now(),
                new_guid: &mut new_guid,
            },
        )
        .map_err(template_failure)
    }

    async fn subscription_display_name(&self) -> Result<String, EngineError> {
        Ok(self
            .store()
            .subscriptions()
            .await?
            .into_iter()
            .find(|subscription| {
                subscription
                    .id
                    .to_string()
                    .eq_ignore_ascii_case(&self.inner.subscription_id)
            })
            .map(|subscription| subscription.display_name)
            .unwrap_or_default())
    }

    /// What `environment()` returns in templates: the cloud's endpoints, openmi's own URL.
    fn environment_document(&self) -> Value {
        let url = self
            .inner
            .config
            .own_resources
            .first()
            .cloned()
            .unwrap_or_else(|| "https://management.azure.com".to_string());
        json!({
            "name": "openmi",
            "gallery": "",
            "graph": format!("{url}/"),
            "portal": url,
            "graphAudience": "https://graph.windows.net/",
            "activeDirectoryDataLake": "",
            "batch": "",
            "media": "",
            "sqlManagement": "",
            "vmImageAliasDoc": "",
            "resourceManager": format!("{url}/"),
            "authentication": {
                "loginEndpoint": format!("{url}/"),
                "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "suffixes": {"storage": "core.windows.net", "keyvaultDns": ".vault.azure.net", "sqlServerHostname": ".database.windows.net"},
        })
    }

    /// ARM's preflight: the caller needs write permission on every resource the deployment would
    /// write, or nothing starts (`InvalidTemplateDeployment`, 400 as ARM answers it).
    fn deployment_preflight(&self, caller: &Caller, plan: &Plan) -> Result<(), EngineError> {
        for resource in plan.resources().iter().filter(|r| r.condition) {
            let action = format!("{}/write", write_type(&resource.resource_type));
            let target = target_id(resource);
            if let Err(EngineError::AuthorizationFailed {
                client, object_id, ..
            }) = self.authorize(caller, &action, &target)
            {
                return Err(EngineError::Arm(Box::new(ArmFailure::new(
                    400,
                    "InvalidTemplateDeployment",
                    format!("The template deployment failed with error: 'Authorization failed for template resource '{}' of type '{}'. The client '{client}' with object id '{object_id}' does not have permission to perform action '{action}' at scope '{target}'.'.", resource.name, resource.resource_type),
                ))));
            }
        }
        Ok(())
    }

    /// The deployment record's `properties` shared by PUT, validate and the finished walk.
    fn deployment_properties(
        &self,
        plan: &Plan,
        mode: Mode,
        correlation_id: &str,
        state: &str,
    ) -> Map<String, Value> {
        let mut providers: Vec<(String, Vec<TypeLocations>)> = Vec::new();
        for resource in plan.resources().iter().filter(|r| r.condition) {
            let (namespace, kind) = resource
                .resource_type
                .split_once('/')
                .unwrap_or((&resource.resource_type, ""));
            let entry = match providers
                .iter_mut()
                .position(|(existing, _)| existing.eq_ignore_ascii_case(namespace))
            {
                Some(index) => &mut providers[index].1,
                None => {
                    providers.push((namespace.to_string(), Vec::new()));
                    let last = providers.len() - 1;
                    &mut providers[last].1
                }
            };
            let locations: Vec<String> = resource.location.iter().cloned().collect();
            match entry.iter_mut().find(|(existing, _)| existing == kind) {
                Some((_, known)) => {
                    for location in locations {
                        if !known.contains(&location) {
                            known.push(location);
                        }
                    }
                }
                None => entry.push((kind.to_string(), locations)),
            }
        }
        let providers: Vec<Value> = providers
            .into_iter()
            .map(|(namespace, types)| {
                json!({
                    "namespace": namespace,
                    "resourceTypes": types.into_iter().map(|(kind, locations)| json!({"resourceType": kind, "locations": locations})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let resources = plan.resources();
        let dependencies: Vec<Value> = resources
            .iter()
            .filter(|resource| resource.condition && !resource.depends_on.is_empty())
            .map(|resource| {
                json!({
                    "id": resource.id,
                    "resourceType": resource.resource_type,
                    "resourceName": resource.name,
                    "dependsOn": resource.depends_on.iter().filter_map(|index| resources.get(*index)).map(|dependency| json!({
                        "id": dependency.id, "resourceType": dependency.resource_type, "resourceName": dependency.name,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut properties = Map::new();
        properties.insert("templateHash".into(), json!(plan.template_hash()));
        properties.insert("parameters".into(), Value::Object(plan.parameters()));
        properties.insert("mode".into(), json!(mode.name()));
        properties.insert("provisioningState".into(), json!(state));
        properties.insert("timestamp".into(), json!(openmi_model::rfc3339(self.now())));
        properties.insert("duration".into(), json!("PT0S"));
        properties.insert("correlationId".into(), json!(correlation_id));
        properties.insert("providers".into(), Value::Array(providers));
        properties.insert("dependencies".into(), Value::Array(dependencies));
        properties
    }

    /// `PUT .../deployments/{name}`: validates, stores the deployment, starts the walk and waits
    /// for it a while.
    pub async fn deployment_put(
        &self,
        caller: &Caller,
        scope: &DeploymentScope,
        name: &str,
        body: &Value,
        template_source: Option<&str>,
    ) -> Result<DeploymentStarted, EngineError> {
        Self::check_deployment_name(name)?;
        let received = Instant::now();
        let id = Self::deployment_id(scope, name);
        self.authorize(caller, &format!("{DEPLOYMENT_TYPE}/write"), &id)?;
        let group = self.deployment_group(scope).await?;
        let request = Self::deployment_request(body, template_source, scope.group.is_none())?;
        let plan = self.deployment_plan(name, &request, group.as_ref()).await?;
        self.deployment_preflight(caller, &plan)?;
        let planned = received.elapsed();

        let key = resource_key(&id);
        let existing = self.store().resource(&key).await?;
        if let Some(existing) = &existing {
            let document = Self::parse_document(existing)?;
            let state = document
                .pointer("/properties/provisioningState")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if matches!(state, "Running" | "Accepted") {
                return Err(EngineError::DeploymentActive(name.to_string()));
            }
        }
        let created = existing.is_none();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let operation_id = new_operation_id();
        let mut properties =
            self.deployment_properties(&plan, request.mode, &correlation_id, "Running");
        properties.insert("operationId".into(), json!(operation_id));
        let mut document = json!({
            "id": id,
            "name": name,
            "type": DEPLOYMENT_TYPE,
            "properties": properties,
        });
        if let Some(location) = &request.location {
            document["location"] = json!(location);
        }
        if let Some(tags) = &request.tags {
            document["tags"] = tags.clone();
        }
        let now = self.now();
        let group_key = group.as_ref().map(|record| record.key.clone());
        // A new run replaces the old run's operations and template.
        let mut change = ResourceChange::default();
        if let Some(existing) = &existing {
            for child in self.store().resource_children(&existing.key).await? {
                change.deletes.push(child.key);
            }
        }
        change.upserts.push(ResourceRecord {
            key: key.clone(),
            id: id.clone(),
            subscription_id: self.inner.subscription_id.to_lowercase(),
            group_key: group_key.clone(),
            parent_key: None,
            type_key: DEPLOYMENT_TYPE.to_lowercase(),
            name: name.to_string(),
            body: document.to_string(),
            version: existing.as_ref().map(|record| record.version).unwrap_or(0),
            created_at: existing
                .as_ref()
                .map(|record| record.created_at)
                .unwrap_or(now),
            updated_at: now,
        });
        let template_id = format!("{id}/templates/default");
        change.upserts.push(ResourceRecord {
            key: resource_key(&template_id),
            id: template_id,
            subscription_id: self.inner.subscription_id.to_lowercase(),
            group_key: group_key.clone(),
            parent_key: Some(key.clone()),
            type_key: TEMPLATE_TYPE.to_lowercase(),
            name: "default".to_string(),
            body: request.template.to_value().to_string(),
            version: 0,
            created_at: now,
            updated_at: now,
        });
        self.apply_change(&change)
            .await
            .map_err(|error| match error {
                openmi_store::StoreError::PreconditionFailed => {
                    EngineError::DeploymentActive(name.to_string())
                }
                other => other.into(),
            })?;

        let recorded = received.elapsed();
        let plan_resource_count = plan.resources().len();
        let walk = Walk {
            engine: self.clone(),
            caller: caller.clone(),
            plan: Arc::new(plan),
            mode: request.mode,
            deployment_id: id.clone(),
            deployment_key: key.clone(),
            group_key,
            started: Instant::now(),
            operations_made: std::sync::atomic::AtomicUsize::new(0),
        };
        let resource_count = plan_resource_count;
        // The walk's writes are recorded under the PUT's request (its correlation id), as ARM's
        // Activity Log relates a deployment's resource writes to the deployment.
        let request = crate::audit::current_request().unwrap_or_default();
        let handle = tokio::spawn(async move {
            let outcome = crate::audit::in_request(request, walk.run()).await;
            tracing::info!(
                target: "openmi::deployment",
                resources = resource_count,
                plan_ms = planned.as_millis() as u64,
                recorded_ms = recorded.as_millis() as u64,
                total_ms = received.elapsed().as_millis() as u64,
                ok = outcome.is_ok(),
                "deployment walked"
            );
            outcome
        });
        match tokio::time::timeout(self.config().deployment_wait, handle).await {
            Ok(Ok(Ok(final_document))) => {
                let succeeded = final_document
                    .pointer("/properties/provisioningState")
                    .and_then(Value::as_str)
                    == Some("Succeeded");
                if succeeded {
                    Ok(DeploymentStarted::Finished {
                        created,
                        document: final_document,
                    })
                } else {
                    // A failed deployment answers as ARM does: accepted, and the status URL
                    // reports the failure, which is how clients surface `DeploymentFailed`.
                    Ok(DeploymentStarted::Running {
                        created,
                        document: final_document,
                        operation_id,
                    })
                }
            }
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(join_error)) => Err(EngineError::Internal(format!(
                "EN0501 the deployment walk stopped: {join_error}"
            ))),
            Err(_) => Ok(DeploymentStarted::Running {
                created,
                document,
                operation_id,
            }),
        }
    }

    async fn deployment_record(
        &self,
        scope: &DeploymentScope,
        name: &str,
    ) -> Result<ResourceRecord, EngineError> {
        self.deployment_group(scope).await?;
        let id = Self::deployment_id(scope, name);
        self.store()
            .resource(&resource_key(&id))
            .await?
            .filter(|record| record.type_key == DEPLOYMENT_TYPE.to_lowercase())
            .ok_or_else(|| EngineError::DeploymentNotFound(name.to_string()))
    }

    /// `GET .../deployments/{name}`
    pub async fn deployment_get(
        &self,
        caller: &Caller,
        scope: &DeploymentScope,
        name: &str,
    ) -> Result<Value, EngineError> {
        let id = Self::deployment_id(scope, name);
        self.authorize(caller, &format!("{DEPLOYMENT_TYPE}/read"), &id)?;
        let record = self.deployment_record(scope, name).await?;
        let mut document = Self::parse_document(&record)?;
        if let Some(properties) = document
            .get_mut("properties")
            .and_then(Value::as_object_mut)
        {
            properties.remove("operationId");
        }
        Ok(document)
    }

    /// `GET .../deployments`: one page of the scope's deployments the caller may read, in name
    /// order (ARM's `$top` and `nextLink`, as every paged list).
    pub async fn deployment_list(
        &self,
        caller: &Caller,
        scope: &DeploymentScope,
        page: &PageRequest,
    ) -> Result<Page, EngineError> {
        let group = self.deployment_group(scope).await?;
        let type_key = DEPLOYMENT_TYPE.to_lowercase();
        let listing = match group {
            Some(group) => Listing::InGroup {
                group_key: group.key,
                type_key: Some(type_key),
            },
            None => Listing::AtSubscription {
                subscription_id: self.inner.subscription_id.clone(),
                type_key,
            },
        };
        let mut found = self
            .page_of(&listing, page, |record| {
                record.parent_key.is_none()
                    && self.can(caller, &format!("{DEPLOYMENT_TYPE}/read"), &record.id)
            })
            .await?;
        for document in &mut found.values {
            if let Some(properties) = document
                .get_mut("properties")
                .and_then(Value::as_object_mut)
            {
                properties.remove("operationId");
            }
        }
        Ok(found)
    }

    /// `DELETE .../deployments/{name}`: the record and its operations (never the resources it
    /// deployed, as in ARM). A running deployment cannot be deleted.
    pub async fn deployment_delete(
        &self,
        caller: &Caller,
        scope: &DeploymentScope,
        name: &str,
    ) -> Result<bool, EngineError> {
        let id = Self::deployment_id(scope, name);
        self.authorize(caller, &format!("{DEPLOYMENT_TYPE}/delete"), &id)?;
        let record = match self.deployment_record(scope, name).await {
            Ok(record) => record,
            Err(EngineError::DeploymentNotFound(_)) => return Ok(false),
            Err(other) => return Err(other),
        };
        let document = Self::parse_document(&record)?;
        if document
            .pointer("/properties/provisioningState")
            .and_then(Value::as_str)
            == Some("Running")
        {
            return Err(EngineError::DeploymentActive(name.to_string()));
        }
        self.apply_change(&ResourceChange {
            deletes: vec![record.key],
            ..ResourceChange::default()
        })
        .await?;
        Ok(true)
    }

    /// `POST .../deployments/{name}/validate`: everything a PUT checks before it writes, and
    /// nothing written (ARM's `DeploymentValidateResult`).
    pub async fn deployment_validate(
        &self,
        caller: &Caller,
        scope: &DeploymentScope,
        name: &str,
        body: &Value,
        template_source: Option<&str>,
    ) -> Result<Value, EngineError> {
        Self::check_deployment_name(name)?;
        let id = Self::deployment_id(scope, name);
        self.authorize(caller, &format!("{DEPLOYMENT_TYPE}/validate/action"), &id)?;
        let group = self.deployment_group(scope).await?;
        let request = Self::deployment_request(body, template_source, scope.group.is_none())?;
        let plan = self.deployment_plan(name, &request, group.as_ref()).await?;
        self.deployment_preflight(caller, &plan)?;
        let mut properties = self.deployment_properties(
            &plan,
            request.mode,
            &uuid::Uuid::new_v4().to_string(),
            "Succeeded",
        );
        properties.insert(
            "validatedResources".into(),
            plan.resources()
                .iter()
                .filter(|resource| resource.condition)
                .map(|resource| json!({"id": target_id(resource)}))
                .collect(),
        );
        Ok(json!({
            "id": id,
            "name": name,
            "type": DEPLOYMENT_TYPE,
            "properties": properties,
        }))
    }

    /// `POST .../deployments/{name}/whatIf`: what the deployment would create, modify (with
    /// the changed properties) and, in Complete mode, delete; nothing is written.
    pub async fn deployment_what_if(
        &self,
        caller: &Caller,
        scope: &DeploymentScope,
        name: &str,
        body: &Value,
        template_source: Option<&str>,
    ) -> Result<Value, EngineError> {
        Self::check_deployment_name(name)?;
        let id = Self::deployment_id(scope, name);
        self.authorize(caller, &format!("{DEPLOYMENT_TYPE}/whatIf/action"), &id)?;
        let group = self.deployment_group(scope).await?;
        let request = Self::deployment_request(body, template_source, scope.group.is_none())?;
        let plan = self.deployment_plan(name, &request, group.as_ref()).await?;
        self.deployment_preflight(caller, &plan)?;
        let known = Mutex::new(Known::new());
        let mut changes = Vec::new();
        let mut planned_keys = Vec::new();
        for index in plan.order() {
            let Some(resource) = plan.resources().get(index) else {
                continue;
            };
            let target = target_id(resource);
            planned_keys.push(resource_key(&target));
            let before = self.read_for_reference(caller, &target).await?;
            let after = self
                .evaluate_with_reads(caller, &plan, index, &known, true)
                .await
                .map_err(template_failure)?;
            let after_document = match ArmPath::parse(&target) {
                // A resource of a provider: the document its provider would store.
                Ok(path)
                    if path.provider.as_ref().is_some_and(|p| p.is_resource())
                        && path.extension.is_none() =>
                {
                    match self.resource_preview(caller, &path, &after).await {
                        Ok(document) => document,
                        Err(_) => merged_for_what_if(resource, &target, &after, before.as_ref()),
                    }
                }
                _ => merged_for_what_if(resource, &target, &after, before.as_ref()),
            };
            let change = match &before {
                None => {
                    json!({"resourceId": target, "changeType": "Create", "after": after_document})
                }
                Some(before) => {
                    let delta: Vec<Value> = openmi_template::whatif::property_changes(
                        &comparable(before),
                        &comparable(&after_document),
                    )
                    .iter()
                    .map(openmi_template::whatif::PropertyChange::to_value)
                    .collect();
                    let kind = if delta.is_empty() {
                        "NoChange"
                    } else {
                        "Modify"
                    };
                    json!({"resourceId": target, "changeType": kind, "before": before, "after": after_document, "delta": delta})
                }
            };
            changes.push(change);
            // Later resources may reference this one as the deployment would leave it.
            if let Ok(mut known) = known.lock() {
                known.insert(resource_key(&target), Some(after_document));
            }
        }
        if request.mode == Mode::Complete {
            if let Some(group) = &group {
                for record in self.deletable_in_group(&group.key).await? {
                    if !planned_keys.contains(&record.key) {
                        changes.push(json!({
                            "resourceId": record.id,
                            "changeType": "Delete",
                            "before": Self::parse_document(&record)?,
                        }));
                    }
                }
            }
        }
        // WhatIfOperationResult: the changes sit in `properties` (Microsoft.Resources deployments.json).
        Ok(json!({"status": "Succeeded", "properties": {"changes": changes}}))
    }

    /// `GET .../deployments/{name}/operations`
    pub async fn deployment_operations(
        &self,
        caller: &Caller,
        scope: &DeploymentScope,
        name: &str,
    ) -> Result<Vec<Value>, EngineError> {
        let id = Self::deployment_id(scope, name);
        self.authorize(caller, &format!("{DEPLOYMENT_TYPE}/operations/read"), &id)?;
        let record = self.deployment_record(scope, name).await?;
        let mut operations: Vec<ResourceRecord> = self
            .store()
            .resource_children(&record.key)
            .await?
            .into_iter()
            .filter(|child| child.type_key == OPERATION_TYPE.to_lowercase())
            .collect();
        operations.sort_by(|a, b| a.name.cmp(&b.name));
        operations.iter().map(Self::parse_document).collect()
    }

    /// `GET .../deployments/{name}/operationStatuses/{id}`: the async operation's status, which
    /// azure-mgmt-core and the az CLI poll (`Azure-AsyncOperation`).
    pub async fn deployment_operation_status(
        &self,
        caller: &Caller,
        scope: &DeploymentScope,
        name: &str,
        operation_id: &str,
    ) -> Result<Value, EngineError> {
        let id = Self::deployment_id(scope, name);
        self.authorize(caller, &format!("{DEPLOYMENT_TYPE}/read"), &id)?;
        let record = self.deployment_record(scope, name).await?;
        let document = Self::parse_document(&record)?;
        let matches = document
            .pointer("/properties/operationId")
            .and_then(Value::as_str)
            .is_some_and(|known| known.eq_ignore_ascii_case(operation_id));
        if !matches {
            return Err(EngineError::NotFound);
        }
        let state = document
            .pointer("/properties/provisioningState")
            .and_then(Value::as_str)
            .unwrap_or("Running");
        let mut status = json!({"status": state});
        if let Some(error) = document.pointer("/properties/error") {
            status["error"] = error.clone();
        }
        Ok(status)
    }

    /// `POST .../deployments/{name}/exportTemplate`: `{"template": ...}` as it was deployed.
    pub async fn deployment_export_template(
        &self,
        caller: &Caller,
        scope: &DeploymentScope,
        name: &str,
    ) -> Result<Value, EngineError> {
        let id = Self::deployment_id(scope, name);
        self.authorize(
            caller,
            &format!("{DEPLOYMENT_TYPE}/exportTemplate/action"),
            &id,
        )?;
        let record = self.deployment_record(scope, name).await?;
        let template = self
            .store()
            .resource(&resource_key(&format!("{id}/templates/default")))
            .await?
            .ok_or_else(|| EngineError::DeploymentNotFound(name.to_string()))?;
        Ok(json!({"template": Self::parse_document(&template)?, "deployment": record.id}))
    }

    /// Resources a Complete deployment may delete: the group's top-level resources, without
    /// deployments.
    async fn deletable_in_group(
        &self,
        group_key: &str,
    ) -> Result<Vec<ResourceRecord>, EngineError> {
        Ok(self
            .store()
            .resources_in_group(group_key, None)
            .await?
            .into_iter()
            .filter(|record| {
                record.parent_key.is_none()
                    && record.key != group_key
                    && record.type_key != DEPLOYMENT_TYPE.to_lowercase()
                    && record.type_key != RESOURCE_GROUP_TYPE.to_lowercase()
            })
            .collect())
    }

    /// A resource as `reference()` sees it, read with the caller's rights; `None` if absent.
    async fn read_for_reference(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Option<Value>, EngineError> {
        let result = match ArmPath::parse(id) {
            Ok(path) if path.provider.is_some() && path.extension.is_none() => {
                self.resource_get(caller, &path).await
            }
            Ok(path) if path.provider.is_none() && path.resource_group.is_some() => {
                self.group_get(
                    caller,
                    &path.subscription,
                    path.resource_group.as_deref().unwrap_or_default(),
                )
                .await
            }
            _ => {
                // Role assignments and other extension resources: the store's document, if any.
                return Ok(match self.store().resource(&resource_key(id)).await? {
                    Some(record) => Some(Self::parse_document(&record)?),
                    None => None,
                });
            }
        };
        match result {
            Ok(document) => Ok(Some(document)),
            Err(EngineError::ResourceNotFound { .. })
            | Err(EngineError::ResourceGroupNotFound(_))
            | Err(EngineError::ParentResourceNotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Evaluates resource `index`'s body, reading what it references until nothing is missing.
    /// `lenient` (what-if) leaves references to resources that do not exist yet as their
    /// expression text instead of failing. The map is locked only while pure evaluation runs,
    /// never across a read.
    async fn evaluate_with_reads(
        &self,
        caller: &Caller,
        plan: &Plan,
        index: usize,
        known: &Mutex<Known>,
        lenient: bool,
    ) -> Result<Value, TemplateError> {
        for _ in 0..16 {
            let (result, missing) = {
                let guard = known.lock().map_err(|_| poisoned())?;
                let resolver = KnownResolver {
                    known: &guard,
                    missing: RefCell::new(Vec::new()),
                };
                let result = if lenient {
                    plan.resource_body_preview(index, &resolver)
                } else {
                    plan.resource_body(index, &resolver)
                };
                (result, resolver.missing.into_inner())
            };
            if result.is_ok() || missing.is_empty() {
                return result;
            }
            for id in missing {
                if let Some(rest) = id.strip_prefix("list:") {
                    let (function, resource) = rest.split_once(':').unwrap_or((rest, ""));
                    let answer = self.list_for_template(caller, function, resource).await;
                    known
                        .lock()
                        .map_err(|_| poisoned())?
                        .insert(id.clone(), answer);
                    continue;
                }
                let document = self
                    .read_for_reference(caller, &id)
                    .await
                    .map_err(|error| {
                        let failure = error.arm();
                        TemplateError {
                            code: failure
                                .as_ref()
                                .map(|failure| failure.code.clone())
                                .unwrap_or_else(|| "InternalServerError".to_string()),
                            message: failure
                                .map(|failure| failure.message)
                                .unwrap_or_else(|| error.to_string()),
                            line: 0,
                            column: 0,
                        }
                    })?;
                known
                    .lock()
                    .map_err(|_| poisoned())?
                    .insert(resource_key(&id), document);
            }
        }
        let guard = known.lock().map_err(|_| poisoned())?;
        plan.resource_body(
            index,
            &KnownResolver {
                known: &guard,
                missing: RefCell::new(Vec::new()),
            },
        )
    }

    /// The answer of a template's `list*()` call (`listKeys`, `listConnectionStrings`, …) on a
    /// resource whose provider has it, with the caller's rights; `None` when it has none.
    async fn list_for_template(
        &self,
        caller: &Caller,
        function: &str,
        resource: &str,
    ) -> Option<Value> {
        let path = ArmPath::parse(resource).ok()?;
        let is_account = path.provider.as_ref().is_some_and(|part| {
            part.type_name()
                .eq_ignore_ascii_case(crate::cosmos::ACCOUNT_TYPE)
        });
        if !is_account {
            return None;
        }
        self.cosmos_account_action(caller, &path, function, None)
            .await
            .ok()
    }

    /// Writes one planned resource through its provider: the call a direct PUT of it makes.
    pub(crate) async fn put_by_id(
        &self,
        caller: &Caller,
        resource_type: &str,
        id: &str,
        body: &Value,
    ) -> Result<Written, EngineError> {
        if resource_type.eq_ignore_ascii_case(RESOURCE_GROUP_TYPE) {
            let path =
                ArmPath::parse(id).map_err(|error| EngineError::BadRequest(error.to_string()))?;
            return self
                .group_put(
                    caller,
                    &path.subscription,
                    path.resource_group.as_deref().unwrap_or_default(),
                    body,
                )
                .await;
        }
        if let Some((scope, name)) = authorization_target(id, "roleAssignments") {
            return self.role_assignment_put(caller, scope, name, body).await;
        }
        if let Some((scope, name)) = authorization_target(id, "roleDefinitions") {
            return self.role_definition_put(caller, scope, name, body).await;
        }
        let path =
            ArmPath::parse(id).map_err(|error| EngineError::BadRequest(error.to_string()))?;
        self.resource_put(caller, &path, body).await
    }
}

/// The type whose `write` action a resource needs (`{ns}/{type}/providers/roleAssignments`, the
/// old extension form, is a role assignment).
fn write_type(resource_type: &str) -> String {
    if resource_type
        .to_lowercase()
        .ends_with("/providers/roleassignments")
    {
        "Microsoft.Authorization/roleAssignments".to_string()
    } else {
        resource_type.to_string()
    }
}

/// Where a planned resource is written. A role assignment whose `properties.scope` names another
/// scope (the az CLI's `vm create --role --scope` template does this) is written there; the
/// plan's id is at the deployment's scope.
fn target_id(resource: &openmi_template::PlannedResource) -> String {
    resource.id.clone()
}

/// A role assignment whose body names another scope than the deployment's (`properties.scope`,
/// as az's `vm create --assign-identity --role R --scope S` template writes it, with
/// api-version 2015-07-01) is created at that scope, which is what az means by it; `None` when
/// the body names no other scope.
fn role_assignment_scope_target(
    resource: &openmi_template::PlannedResource,
    body: &Value,
) -> Option<String> {
    if !resource
        .resource_type
        .eq_ignore_ascii_case("Microsoft.Authorization/roleAssignments")
    {
        return None;
    }
    let scope = body
        .pointer("/properties/scope")?
        .as_str()?
        .trim_end_matches('/');
    if !scope.to_lowercase().starts_with("/subscriptions/") {
        return None;
    }
    let name = resource.name.rsplit('/').next()?;
    let target = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
    (resource_key(&target) != resource_key(&resource.id)).then_some(target)
}

/// The document what-if shows as "after": the body with the id, name and type ARM adds.
fn merged_for_what_if(
    resource: &openmi_template::PlannedResource,
    target: &str,
    body: &Value,
    before: Option<&Value>,
) -> Value {
    let mut after = body.clone();
    if let Some(object) = after.as_object_mut() {
        object.insert("id".into(), json!(target));
        object.insert(
            "name".into(),
            json!(resource.name.rsplit('/').next().unwrap_or(&resource.name)),
        );
        object.insert("type".into(), json!(resource.resource_type));
        object.insert("apiVersion".into(), json!(resource.api_version));
        if let (Some(before), false) = (before, object.contains_key("tags")) {
            if let Some(tags) = before.get("tags") {
                object.insert("tags".into(), tags.clone());
            }
        }
    }
    after
}

/// A document without what ARM computes (`systemData`, provisioning state, etags, ids of the
/// server's making), so what-if compares what the template controls.
fn comparable(document: &Value) -> Value {
    let mut copy = document.clone();
    if let Some(object) = copy.as_object_mut() {
        for key in ["systemData", "etag", "apiVersion", "id", "name", "type"] {
            object.remove(key);
        }
        if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
            for key in [
                "provisioningState",
                "vmId",
                "timeCreated",
                "principalId",
                "clientId",
                "tenantId",
                "resourceGuid",
                "ipAddress",
                "macAddress",
            ] {
                properties.remove(key);
            }
        }
    }
    copy
}

/// One deployment's walk through its plan, owned by the task that runs it.
struct Walk {
    engine: Engine,
    caller: Caller,
    plan: Arc<Plan>,
    mode: Mode,
    deployment_id: String,
    deployment_key: String,
    group_key: Option<String>,
    started: Instant,
    /// Operations recorded so far (their ids count up).
    operations_made: std::sync::atomic::AtomicUsize,
}

impl Walk {
    /// Runs every resource in dependency order, then outputs and Complete-mode deletes, and
    /// stores the final record; returns it.
    async fn run(self) -> Result<Value, EngineError> {
        let walk = Arc::new(self);
        let plan = walk.plan.clone();
        let resources = plan.resources();
        let count = resources.len();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; count];
        let mut started = vec![false; count];
        let known = Arc::new(Mutex::new(Known::new()));
        // Each resource is a task of its own, so independent writes use every core, as
        // concurrent direct PUTs would.
        let mut in_flight = FuturesUnordered::new();
        let mut operations = Vec::new();
        loop {
            // Start every resource whose dependencies all succeeded; skip those that cannot run.
            for index in 0..count {
                if started[index] || in_flight.len() >= MAX_IN_FLIGHT {
                    continue;
                }
                let resource = &resources[index];
                if !resource.condition {
                    started[index] = true;
                    continue;
                }
                let dependencies: Vec<&Option<Outcome>> = resource
                    .depends_on
                    .iter()
                    .filter_map(|dependency| outcomes.get(*dependency))
                    .collect();
                if dependencies
                    .iter()
                    .any(|outcome| matches!(outcome, Some(Outcome::Failed(_))))
                {
                    started[index] = true;
                    continue;
                }
                let ready = resource.depends_on.iter().all(|dependency| {
                    matches!(outcomes.get(*dependency), Some(Some(Outcome::Succeeded(_))))
                        || resources.get(*dependency).is_some_and(|r| !r.condition)
                });
                if ready {
                    started[index] = true;
                    let (task_walk, task_known) = (walk.clone(), known.clone());
                    let request = crate::audit::current_request().unwrap_or_default();
                    in_flight.push(tokio::spawn(crate::audit::in_request(
                        request,
                        async move { task_walk.deploy_one(index, &task_known).await },
                    )));
                }
            }
            let Some(joined) = in_flight.next().await else {
                break;
            };
            let (index, outcome, operation) = joined.map_err(|error| {
                EngineError::Internal(format!("EN0503 a deployment task stopped: {error}"))
            })?;
            if let Outcome::Succeeded(document) = &outcome {
                if let Ok(mut known) = known.lock() {
                    known.insert(
                        resource_key(&target_id(&resources[index])),
                        Some(document.clone()),
                    );
                    if let Some(id) = document.get("id").and_then(Value::as_str) {
                        known.insert(resource_key(id), Some(document.clone()));
                    }
                }
            }
            outcomes[index] = Some(outcome);
            operations.push(operation);
        }
        drop(in_flight);
        let known = Arc::try_unwrap(known)
            .ok()
            .and_then(|known| known.into_inner().ok())
            .unwrap_or_default();
        let this = &*walk;

        let mut failures: Vec<ArmFailure> = outcomes
            .iter()
            .flatten()
            .filter_map(|outcome| match outcome {
                Outcome::Failed(failure) => Some(failure.clone()),
                Outcome::Succeeded(_) => None,
            })
            .collect();
        let mut outputs = Value::Object(Map::new());
        if failures.is_empty() {
            if this.mode == Mode::Complete {
                match this.complete_mode_deletes(&mut operations).await {
                    Ok(()) => {}
                    Err(failure) => failures.push(failure),
                }
            }
            let mut known = known;
            match this.outputs(&mut known).await {
                Ok(values) => outputs = Value::Object(values),
                Err(error) => failures.push(ArmFailure::new(400, &error.code, error.message)),
            }
        }
        let output_resources: Vec<Value> = resources
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Some(Outcome::Succeeded(_))))
            .map(|(resource, _)| json!({"id": target_id(resource)}))
            .collect();
        this.finish(failures, outputs, output_resources, operations)
            .await
    }

    /// Deploys resource `index`: its body evaluated now, then the provider's write.
    async fn deploy_one(
        &self,
        index: usize,
        known: &Mutex<Known>,
    ) -> (usize, Outcome, ResourceRecord) {
        let operation_started = Instant::now();
        let resource = &self.plan.resources()[index];
        let mut target = target_id(resource);
        let outcome = match self
            .engine
            .evaluate_with_reads(&self.caller, &self.plan, index, known, false)
            .await
        {
            Err(error) => Outcome::Failed(ArmFailure::new(400, &error.code, error.message)),
            Ok(body) => {
                target = role_assignment_scope_target(resource, &body).unwrap_or(target);
                let operation = crate::audit::AuditOperation::arm(
                    format!("{}/write", resource.resource_type),
                    &target,
                );
                match self
                    .engine
                    .audited(
                        Some(&self.caller),
                        operation,
                        self.engine
                            .put_by_id(&self.caller, &resource.resource_type, &target, &body),
                    )
                    .await
                {
                    Ok(written) => Outcome::Succeeded(written.body().clone()),
                    Err(error) => Outcome::Failed(error.arm().unwrap_or_else(|| {
                        tracing::error!(resource = %target, error = %error, "deployment resource failed");
                        ArmFailure::new(500, "InternalServerError", "An internal error occurred while deploying the resource.")
                    })),
                }
            }
        };
        let operation = self.operation_record(
            "Create",
            &target,
            &resource.resource_type,
            &resource.name,
            Some(&resource.api_version),
            &outcome,
            operation_started.elapsed(),
        );
        (index, outcome, operation)
    }

    async fn outputs(&self, known: &mut Known) -> Result<Map<String, Value>, TemplateError> {
        for _ in 0..16 {
            let resolver = KnownResolver {
                known,
                missing: RefCell::new(Vec::new()),
            };
            let result = self.plan.outputs(&resolver);
            let missing = resolver.missing.into_inner();
            if result.is_ok() || missing.is_empty() {
                return result;
            }
            for id in missing {
                if let Some(rest) = id.strip_prefix("list:") {
                    let (function, resource) = rest.split_once(':').unwrap_or((rest, ""));
                    let answer = self
                        .engine
                        .list_for_template(&self.caller, function, resource)
                        .await;
                    known.insert(id.clone(), answer);
                    continue;
                }
                let document = self
                    .engine
                    .read_for_reference(&self.caller, &id)
                    .await
                    .ok()
                    .flatten();
                known.insert(resource_key(&id), document);
            }
        }
        self.plan.outputs(&KnownResolver {
            known,
            missing: RefCell::new(Vec::new()),
        })
    }

    /// Complete mode: the group's resources the template does not name are deleted (with the
    /// caller's delete rights), as ARM does.
    async fn complete_mode_deletes(
        &self,
        operations: &mut Vec<ResourceRecord>,
    ) -> Result<(), ArmFailure> {
        let Some(group_key) = &self.group_key else {
            return Ok(());
        };
        let planned: Vec<String> = self
            .plan
            .resources()
            .iter()
            .filter(|resource| resource.condition)
            .map(|resource| resource_key(&target_id(resource)))
            .collect();
        let candidates = self
            .engine
            .deletable_in_group(group_key)
            .await
            .map_err(|error| {
                error.arm().unwrap_or_else(|| {
                    ArmFailure::new(500, "InternalServerError", error.to_string())
                })
            })?;
        let mut first_failure = None;
        for record in candidates
            .into_iter()
            .filter(|record| !planned.contains(&record.key))
        {
            let started = Instant::now();
            let outcome = match ArmPath::parse(&record.id) {
                Ok(path) => match self.engine.resource_delete(&self.caller, &path).await {
                    Ok(_) => Outcome::Succeeded(Value::Null),
                    Err(error) => Outcome::Failed(error.arm().unwrap_or_else(|| {
                        ArmFailure::new(500, "InternalServerError", error.to_string())
                    })),
                },
                Err(error) => {
                    Outcome::Failed(ArmFailure::new(400, "InvalidResourceId", error.to_string()))
                }
            };
            let kind = openmi_store_type_name(&record);
            operations.push(self.operation_record(
                "Delete",
                &record.id,
                &kind,
                &record.name,
                None,
                &outcome,
                started.elapsed(),
            ));
            if let (Outcome::Failed(failure), None) = (&outcome, &first_failure) {
                first_failure = Some(failure.clone());
            }
        }
        match first_failure {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)] // An operation's whole description; two call sites.
    fn operation_record(
        &self,
        provisioning_operation: &str,
        target: &str,
        resource_type: &str,
        resource_name: &str,
        api_version: Option<&str>,
        outcome: &Outcome,
        elapsed: Duration,
    ) -> ResourceRecord {
        let sequence = self
            .operations_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let operation_id = sequenced_operation_id(sequence);
        let id = format!("{}/operations/{operation_id}", self.deployment_id);
        let now = self.engine.now();
        let (state, status_code, status_message) = match outcome {
            Outcome::Succeeded(_) => (
                "Succeeded",
                if provisioning_operation == "Delete" {
                    "OK"
                } else {
                    "Created"
                }
                .to_string(),
                json!({"status": "Succeeded"}),
            ),
            Outcome::Failed(failure) => (
                "Failed",
                status_text(failure.status),
                json!({"status": "Failed", "error": failure.to_json()}),
            ),
        };
        let mut target_resource =
            json!({"id": target, "resourceType": resource_type, "resourceName": resource_name});
        if let Some(api_version) = api_version {
            target_resource["apiVersion"] = json!(api_version);
        }
        let document = json!({
            "id": id,
            "operationId": operation_id,
            "properties": {
                "provisioningOperation": provisioning_operation,
                "provisioningState": state,
                "timestamp": openmi_model::rfc3339(now),
                "duration": iso_duration(elapsed),
                "trackingId": uuid::Uuid::new_v4().to_string(),
                "serviceRequestId": uuid::Uuid::new_v4().to_string(),
                "statusCode": status_code,
                "statusMessage": status_message,
                "targetResource": target_resource,
            },
        });
        ResourceRecord {
            key: resource_key(&id),
            id,
            subscription_id: self.engine.inner.subscription_id.to_lowercase(),
            group_key: self.group_key.clone(),
            parent_key: Some(self.deployment_key.clone()),
            type_key: OPERATION_TYPE.to_lowercase(),
            name: operation_id,
            body: document.to_string(),
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// Stores the final record with the operations, in one change.
    async fn finish(
        &self,
        failures: Vec<ArmFailure>,
        outputs: Value,
        output_resources: Vec<Value>,
        operations: Vec<ResourceRecord>,
    ) -> Result<Value, EngineError> {
        for _ in 0..5 {
            let record = self
                .engine
                .store()
                .resource(&self.deployment_key)
                .await?
                .ok_or_else(|| EngineError::DeploymentNotFound(self.deployment_id.clone()))?;
            let mut document = Engine::parse_document(&record)?;
            if let Some(properties) = document
                .get_mut("properties")
                .and_then(Value::as_object_mut)
            {
                properties.insert(
                    "timestamp".into(),
                    json!(openmi_model::rfc3339(self.engine.now())),
                );
                properties.insert(
                    "duration".into(),
                    json!(iso_duration(self.started.elapsed())),
                );
                properties.insert(
                    "outputResources".into(),
                    Value::Array(output_resources.clone()),
                );
                if failures.is_empty() {
                    properties.insert("provisioningState".into(), json!("Succeeded"));
                    properties.insert("outputs".into(), outputs.clone());
                } else {
                    properties.insert("provisioningState".into(), json!("Failed"));
                    let mut error = ArmFailure::new(400, "DeploymentFailed", DEPLOYMENT_FAILED);
                    error.details = failures.clone();
                    let mut error_json = error.to_json();
                    error_json["target"] = json!(self.deployment_id);
                    properties.insert("error".into(), error_json);
                }
            }
            let mut change = ResourceChange::default();
            change.upserts.push(ResourceRecord {
                body: document.to_string(),
                updated_at: self.engine.now(),
                ..record
            });
            change.upserts.extend(operations.iter().cloned());
            match self.engine.apply_change(&change).await {
                Ok(_) => return Ok(document),
                Err(openmi_store::StoreError::PreconditionFailed) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(EngineError::Conflict(
            "The deployment record was changed by another request.".to_string(),
        ))
    }
}

/// The canonical type of a stored record, for operations on it (the stored document says it).
fn openmi_store_type_name(record: &ResourceRecord) -> String {
    serde_json::from_str::<Value>(&record.body)
        .ok()
        .and_then(|document| {
            document
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| record.type_key.clone())
}

/// ARM's `statusCode` text of an operation's HTTP status.
fn status_text(status: u16) -> String {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        _ => "InternalServerError",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_targets_split_at_the_last_provider() {
        assert_eq!(
            authorization_target(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Authorization/roleAssignments/abc",
                "roleAssignments"
            ),
            Some(("/subscriptions/s/resourceGroups/g", "abc"))
        );
        assert_eq!(
            authorization_target(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm/providers/Microsoft.Authorization/roleAssignments/x",
                "roleAssignments"
            ),
            Some((
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm",
                "x"
            ))
        );
        assert_eq!(
            authorization_target("/subscriptions/s/resourceGroups/g", "roleAssignments"),
            None
        );
    }

    #[test]
    fn modes_parse_case_insensitively() {
        assert_eq!(Mode::parse(Some("incremental")).unwrap(), Mode::Incremental);
        assert_eq!(Mode::parse(Some("Complete")).unwrap(), Mode::Complete);
        assert_eq!(Mode::parse(None).unwrap(), Mode::Incremental);
        assert!(Mode::parse(Some("Replace")).is_err());
    }

    #[test]
    fn durations_and_operation_ids_look_like_arms() {
        assert_eq!(iso_duration(Duration::from_millis(1234)), "PT1.234S");
        let id = new_operation_id();
        assert_eq!(id.len(), 16);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }
}
