//! The control plane: resource groups, user-assigned identities, virtual machines with their
//! identity block, child and generic resources, over the one resource store.
//!
//! Every write reads what it changes, computes the new documents and the service principals to
//! create or delete, and hands one `ResourceChange` to the store, which applies it atomically with
//! an optimistic version check (retried on a lost race), so nothing is half-written. Documents are
//! kept in the shape ARM returns them (protocols.md §4); secrets such as
//! `osProfile.adminPassword` are dropped before storing.

use openmi_model::arm::{
    check_identity_name, check_resource_group_name, check_resource_name, resource_key, ArmPath,
    RESOURCE_GROUP_TYPE, USER_ASSIGNED_IDENTITY_TYPE, VIRTUAL_MACHINE_TYPE,
};
use openmi_model::{ClientId, ObjectId, Principal, PrincipalKind};
use openmi_store::{Listing, ResourceChange, ResourceRecord, StoreError};
use serde_json::{json, Map, Value};

use crate::cosmos::CosmosType;
use crate::network::NetworkType;
use crate::{Caller, Engine, EngineError};

/// The result of a PUT: ARM answers 201 for a new resource and 200 for an update.
#[derive(Debug, Clone)]
pub enum Written {
    Created(Value),
    Updated(Value),
}

impl Written {
    pub fn body(&self) -> &Value {
        match self {
            Written::Created(body) | Written::Updated(body) => body,
        }
    }
}

const MAX_ATTEMPTS: usize = 5;

fn group_scope(subscription: &str, name: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{name}")
}

/// The control-plane action of `verb` on the resource type a path names
/// (`Microsoft.Compute/virtualMachines/extensions/write`).
fn action(path: &ArmPath, verb: &str) -> String {
    let type_name = path
        .extension
        .as_ref()
        .or(path.provider.as_ref())
        .map(|part| part.type_name())
        .unwrap_or_default();
    format!("{type_name}/{verb}")
}

fn invalid_content(message: impl Into<String>) -> EngineError {
    EngineError::InvalidRequestContent(message.into())
}

fn object(body: &Value) -> Result<&Map<String, Value>, EngineError> {
    body.as_object()
        .ok_or_else(|| invalid_content("The request content must be a JSON object."))
}

fn system_data(
    caller: &Caller,
    created_at: i64,
    updated_at: i64,
    created_by: Option<&Value>,
) -> Value {
    let kind = if caller.is_user {
        "User"
    } else {
        "Application"
    };
    let who = Value::String(caller.object_id.to_string());
    json!({
        "createdBy": created_by.cloned().unwrap_or(who.clone()),
        "createdByType": kind,
        "createdAt": openmi_model::rfc3339(created_at),
        "lastModifiedBy": who,
        "lastModifiedByType": kind,
        "lastModifiedAt": openmi_model::rfc3339(updated_at),
    })
}

/// `tags` of a request: an object of strings, or absent.
fn tags_of(body: &Map<String, Value>) -> Result<Option<Value>, EngineError> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(tags)) if tags.values().all(Value::is_string) => {
            Ok(Some(Value::Object(tags.clone())))
        }
        Some(_) => Err(invalid_content(
            "The 'tags' property must be an object of string values.",
        )),
    }
}

fn location_of(body: &Map<String, Value>) -> Option<String> {
    body.get("location")
        .and_then(Value::as_str)
        .map(|location| location.to_string())
        .filter(|location| !location.is_empty())
}

/// Normalises `westus`, `West US`, `WESTUS` to ARM's form (`westus`).
fn normalize_location(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

/// The parsed `identity.type` of a VM: (system-assigned, user-assigned).
fn parse_identity_type(text: &str) -> Result<(bool, bool), EngineError> {
    let mut system = false;
    let mut user = false;
    for part in text.split(',').map(str::trim) {
        if part.eq_ignore_ascii_case("SystemAssigned") {
            system = true;
        } else if part.eq_ignore_ascii_case("UserAssigned") {
            user = true;
        } else if !part.eq_ignore_ascii_case("None") {
            return Err(invalid_content(format!("The identity type '{text}' is not valid. Valid values are None, SystemAssigned, UserAssigned and 'SystemAssigned, UserAssigned'.")));
        }
    }
    Ok((system, user))
}

fn identity_type_name(system: bool, user: bool) -> &'static str {
    match (system, user) {
        (true, true) => "SystemAssigned, UserAssigned",
        (true, false) => "SystemAssigned",
        (false, true) => "UserAssigned",
        (false, false) => "None",
    }
}

/// A VM's identities as stored: the system principal and the user-assigned identities by key.
#[derive(Debug, Clone, Default)]
struct VmIdentity {
    system_principal: Option<String>,
    /// `(key, canonical id, principalId, clientId)`.
    user_assigned: Vec<(String, String, String, String)>,
}

impl VmIdentity {
    fn from_document(document: &Value) -> VmIdentity {
        let identity = document.get("identity");
        let system_principal = identity
            .and_then(|identity| identity.get("principalId"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let user_assigned = identity
            .and_then(|identity| identity.get("userAssignedIdentities"))
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .map(|(id, value)| {
                        let field = |name: &str| {
                            value
                                .get(name)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string()
                        };
                        (
                            resource_key(id),
                            id.clone(),
                            field("principalId"),
                            field("clientId"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        VmIdentity {
            system_principal,
            user_assigned,
        }
    }

    fn to_document(&self, tenant_id: &str) -> Option<Value> {
        let system = self.system_principal.is_some();
        let user = !self.user_assigned.is_empty();
        if !system && !user {
            return None;
        }
        let mut identity = Map::new();
        identity.insert("type".into(), json!(identity_type_name(system, user)));
        if let Some(principal) = &self.system_principal {
            identity.insert("principalId".into(), json!(principal));
            identity.insert("tenantId".into(), json!(tenant_id));
        }
        if user {
            let map: Map<String, Value> = self
                .user_assigned
                .iter()
                .map(|(_, id, principal_id, client_id)| {
                    (
                        id.clone(),
                        json!({"principalId": principal_id, "clientId": client_id}),
                    )
                })
                .collect();
            identity.insert("userAssignedIdentities".into(), Value::Object(map));
        }
        Some(Value::Object(identity))
    }
}

/// Removes write-only secrets from a VM's properties.
fn strip_secrets(properties: &mut Value) {
    if let Some(os_profile) = properties
        .get_mut("osProfile")
        .and_then(Value::as_object_mut)
    {
        os_profile.remove("adminPassword");
        os_profile.remove("customData");
    }
}

/// Merges a JSON merge-patch (RFC 7396) into `target`.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target_map), Some(patch_map)) => {
            for (key, value) in patch_map {
                if value.is_null() {
                    target_map.remove(key);
                } else {
                    merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// The largest page a list returns (ARM's `$top` limit for resource lists).
pub const MAX_PAGE_SIZE: usize = 1000;

/// Where a page starts and how long it is.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// The last key of the previous page (decoded `$skiptoken`), `""` for the first.
    pub after: String,
    pub size: usize,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            after: String::new(),
            size: MAX_PAGE_SIZE,
        }
    }
}

/// One page of a list and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page {
    pub values: Vec<Value>,
    pub next: Option<String>,
}

impl Engine {
    /// Whether `subscription` is the one this server serves.
    pub fn check_subscription(&self, subscription: &str) -> Result<(), EngineError> {
        if subscription.eq_ignore_ascii_case(&self.inner.subscription_id) {
            Ok(())
        } else {
            Err(EngineError::SubscriptionNotFound(subscription.to_string()))
        }
    }

    fn canonical_subscription(&self) -> &str {
        &self.inner.subscription_id
    }

    async fn group_record(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<ResourceRecord, EngineError> {
        self.check_subscription(subscription)?;
        let key = resource_key(&format!(
            "/subscriptions/{subscription}/resourceGroups/{name}"
        ));
        self.store()
            .resource(&key)
            .await?
            .ok_or_else(|| EngineError::ResourceGroupNotFound(name.to_string()))
    }

    /// A stored resource document, parsed.
    pub(crate) fn parse_document(record: &ResourceRecord) -> Result<Value, EngineError> {
        serde_json::from_str(&record.body).map_err(|_| {
            EngineError::Internal(format!(
                "EN0401 stored document of {} is damaged",
                record.id
            ))
        })
    }

    /// Applies a change computed by `build` from fresh reads, retrying when another writer won.
    async fn write_with_retry<F, Fut, T>(&self, mut build: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(ResourceChange, T), EngineError>>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let (change, result) = build().await?;
            match self.apply_change(&change).await {
                Ok(_) => return Ok(result),
                Err(StoreError::PreconditionFailed) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(EngineError::Conflict(
            "The resource was changed by another request; retry the operation.".to_string(),
        ))
    }

    // ---- resource groups -------------------------------------------------------------------

    /// `PUT /subscriptions/{s}/resourcegroups/{name}`
    pub async fn group_put(
        &self,
        caller: &Caller,
        subscription: &str,
        name: &str,
        body: &Value,
    ) -> Result<Written, EngineError> {
        self.authorize(
            caller,
            "Microsoft.Resources/subscriptions/resourceGroups/write",
            &group_scope(subscription, name),
        )?;
        self.check_subscription(subscription)?;
        check_resource_group_name(name).map_err(|error| EngineError::InvalidName {
            code: error.code,
            message: error.message,
        })?;
        let request = object(body)?.clone();
        let location = location_of(&request).ok_or_else(|| {
            invalid_content("The 'location' property is required for a resource group.")
        })?;
        let tags = tags_of(&request)?;
        let id = format!(
            "/subscriptions/{}/resourceGroups/{name}",
            self.canonical_subscription()
        );
        let key = resource_key(&id);
        self.write_with_retry(|| {
            let (id, key, location, tags, request) = (
                id.clone(),
                key.clone(),
                location.clone(),
                tags.clone(),
                request.clone(),
            );
            async move {
                let now = self.now();
                let existing = self.store().resource(&key).await?;
                let (document, created, version, created_at) = match &existing {
                    Some(record) => {
                        let mut document = Self::parse_document(record)?;
                        let stored_location = document
                            .get("location")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        if normalize_location(&stored_location) != normalize_location(&location) {
                            return Err(EngineError::InvalidResourceGroupLocation {
                                name: record.name.clone(),
                                existing: stored_location,
                                requested: location,
                            });
                        }
                        document["tags"] = tags.unwrap_or_else(|| json!({}));
                        if let Some(managed_by) = request.get("managedBy") {
                            document["managedBy"] = managed_by.clone();
                        }
                        (document, false, record.version, record.created_at)
                    }
                    None => {
                        let mut document = json!({
                            "id": id,
                            "name": id.rsplit('/').next().unwrap_or_default(),
                            "type": RESOURCE_GROUP_TYPE,
                            "location": normalize_location(&location),
                            "tags": tags.unwrap_or_else(|| json!({})),
                            "properties": {"provisioningState": "Succeeded"},
                        });
                        if let Some(managed_by) = request.get("managedBy") {
                            document["managedBy"] = managed_by.clone();
                        }
                        (document, true, 0, now)
                    }
                };
                let record = ResourceRecord {
                    key: key.clone(),
                    id: id.clone(),
                    subscription_id: self.canonical_subscription().to_lowercase(),
                    group_key: Some(key.clone()),
                    parent_key: None,
                    type_key: RESOURCE_GROUP_TYPE.to_lowercase(),
                    name: id.rsplit('/').next().unwrap_or_default().to_string(),
                    body: document.to_string(),
                    version,
                    created_at,
                    updated_at: now,
                };
                let written = if created {
                    Written::Created(document)
                } else {
                    Written::Updated(document)
                };
                Ok((
                    ResourceChange {
                        upserts: vec![record],
                        ..ResourceChange::default()
                    },
                    written,
                ))
            }
        })
        .await
    }

    /// `GET /subscriptions/{s}/resourcegroups/{name}`
    pub async fn group_get(
        &self,
        caller: &Caller,
        subscription: &str,
        name: &str,
    ) -> Result<Value, EngineError> {
        self.authorize(
            caller,
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            &group_scope(subscription, name),
        )?;
        self.check_subscription(subscription)?;
        let key = resource_key(&group_scope(subscription, name));
        let record = self
            .cached_resource(&key)
            .await?
            .ok_or_else(|| EngineError::ResourceGroupNotFound(name.to_string()))?;
        Self::parse_document(&record)
    }

    /// `PATCH /subscriptions/{s}/resourcegroups/{name}` (tags, managedBy).
    pub async fn group_patch(
        &self,
        caller: &Caller,
        subscription: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, EngineError> {
        self.authorize(
            caller,
            "Microsoft.Resources/subscriptions/resourceGroups/write",
            &group_scope(subscription, name),
        )?;
        let request = object(body)?.clone();
        let tags = tags_of(&request)?;
        self.write_with_retry(|| {
            let (tags, request) = (tags.clone(), request.clone());
            async move {
                let mut record = self.group_record(subscription, name).await?;
                let mut document = Self::parse_document(&record)?;
                if let Some(tags) = tags {
                    document["tags"] = tags;
                }
                if let Some(managed_by) = request.get("managedBy") {
                    document["managedBy"] = managed_by.clone();
                }
                record.body = document.to_string();
                record.updated_at = self.now();
                Ok((
                    ResourceChange {
                        upserts: vec![record],
                        ..ResourceChange::default()
                    },
                    document,
                ))
            }
        })
        .await
    }

    /// `DELETE /subscriptions/{s}/resourcegroups/{name}`: the group and everything in it, with the
    /// service principals of every managed identity inside. Returns whether the group existed.
    pub async fn group_delete(
        &self,
        caller: &Caller,
        subscription: &str,
        name: &str,
    ) -> Result<bool, EngineError> {
        self.authorize(
            caller,
            "Microsoft.Resources/subscriptions/resourceGroups/delete",
            &group_scope(subscription, name),
        )?;
        match self.group_record(subscription, name).await {
            Ok(record) => {
                self.apply_change(&ResourceChange {
                    deletes: vec![record.key],
                    ..ResourceChange::default()
                })
                .await?;
                Ok(true)
            }
            Err(EngineError::ResourceGroupNotFound(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// `GET /subscriptions/{s}/resourcegroups`, one page.
    pub async fn group_list(
        &self,
        caller: &Caller,
        subscription: &str,
        page: &PageRequest,
    ) -> Result<Page, EngineError> {
        self.check_subscription(subscription)?;
        let listing = Listing::OfType {
            subscription_id: self.canonical_subscription().to_string(),
            type_key: RESOURCE_GROUP_TYPE.to_lowercase(),
        };
        self.page_of(&listing, page, |record| {
            self.can(
                caller,
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                &record.id,
            )
        })
        .await
    }

    /// One page of `listing` in key order, keeping the records `keep` accepts. Rows are read in
    /// batches of the page size, so memory follows the page, not the tenant; the continuation is
    /// the last key examined, so records the caller may not read are skipped only once.
    pub(crate) async fn page_of(
        &self,
        listing: &Listing,
        page: &PageRequest,
        keep: impl Fn(&ResourceRecord) -> bool,
    ) -> Result<Page, EngineError> {
        let size = page.size.clamp(1, MAX_PAGE_SIZE);
        let mut values = Vec::new();
        let mut after = page.after.clone();
        loop {
            let batch = self
                .store()
                .resources_page(listing, &after, size as i64 + 1)
                .await?;
            let complete = batch.len() <= size;
            for record in &batch {
                if values.len() == size {
                    return Ok(Page {
                        values,
                        next: Some(after),
                    });
                }
                after = record.key.clone();
                if keep(record) {
                    values.push(Self::parse_document(record)?);
                }
            }
            if complete {
                return Ok(Page { values, next: None });
            }
        }
    }

    // ---- resources ---------------------------------------------------------------------------

    async fn existing_resource(&self, path: &ArmPath) -> Result<ResourceRecord, EngineError> {
        self.check_subscription(&path.subscription)?;
        let group = path.resource_group.clone().unwrap_or_default();
        let id = path.to_id();
        let hidden = path.provider.as_ref().is_some_and(|part| {
            part.type_name()
                .eq_ignore_ascii_case(crate::cosmos::KEYS_TYPE)
        });
        if !hidden {
            if let Some(record) = self.cached_resource(&resource_key(&id)).await? {
                return Ok((*record).clone());
            }
        }
        // Only a miss needs the group, to tell ARM's two not-found errors apart.
        if let Some(group_id) = path.group_id() {
            if self
                .store()
                .resource(&resource_key(&group_id))
                .await?
                .is_none()
            {
                return Err(EngineError::ResourceGroupNotFound(group));
            }
        }
        let provider = path.extension.as_ref().or(path.provider.as_ref());
        let type_name = provider.map(|part| part.type_name()).unwrap_or_default();
        let names: Vec<String> = provider
            .map(|part| {
                part.segments
                    .iter()
                    .filter_map(|(_, name)| name.clone())
                    .collect()
            })
            .unwrap_or_default();
        Err(EngineError::ResourceNotFound {
            type_name,
            name: names.join("/"),
            group,
        })
    }

    /// `GET /{resource id}`
    pub async fn resource_get(
        &self,
        caller: &Caller,
        path: &ArmPath,
    ) -> Result<Value, EngineError> {
        self.authorize(caller, &action(path, "read"), &path.to_id())?;
        Self::parse_document(&self.existing_resource(path).await?)
    }

    /// `GET /{resource id}` as the stored JSON text, for handlers that return it unchanged.
    pub async fn resource_get_raw(
        &self,
        caller: &Caller,
        path: &ArmPath,
    ) -> Result<String, EngineError> {
        self.authorize(caller, &action(path, "read"), &path.to_id())?;
        Ok(self.existing_resource(path).await?.body)
    }

    /// `DELETE /{resource id}`: the resource, its children and the identities it owns.
    pub async fn resource_delete(
        &self,
        caller: &Caller,
        path: &ArmPath,
    ) -> Result<bool, EngineError> {
        self.authorize(caller, &action(path, "delete"), &path.to_id())?;
        match self.existing_resource(path).await {
            Ok(record) if crate::cosmos::is_builtin_role(&record) => {
                Err(EngineError::BuiltInRoleReadOnly(record.name))
            }
            Ok(record) => {
                self.apply_change(&ResourceChange {
                    deletes: vec![record.key],
                    ..ResourceChange::default()
                })
                .await?;
                Ok(true)
            }
            Err(EngineError::ResourceNotFound { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// `GET` of a collection: `.../providers/{ns}/{type}` in a group or subscription, or the children
    /// of a resource (`.../virtualMachines/{vm}/extensions`), one page.
    pub async fn resource_list(
        &self,
        caller: &Caller,
        path: &ArmPath,
        page: &PageRequest,
    ) -> Result<Page, EngineError> {
        self.check_subscription(&path.subscription)?;
        let provider = path
            .provider
            .as_ref()
            .ok_or_else(|| EngineError::BadRequest("a provider type is required".to_string()))?;
        let type_key = provider.type_name().to_lowercase();
        let listing = if provider.segments.len() > 1 {
            let mut parent = path.clone();
            if let Some(part) = parent.provider.as_mut() {
                part.segments.pop();
            }
            let parent_record = self.existing_resource(&parent).await?;
            Listing::Children {
                parent_key: parent_record.key,
                type_key: Some(type_key),
            }
        } else if let Some(group_id) = path.group_id() {
            let group_key = resource_key(&group_id);
            if self.store().resource(&group_key).await?.is_none() {
                return Err(EngineError::ResourceGroupNotFound(
                    path.resource_group.clone().unwrap_or_default(),
                ));
            }
            Listing::InGroup {
                group_key,
                type_key: Some(type_key),
            }
        } else {
            Listing::OfType {
                subscription_id: self.canonical_subscription().to_string(),
                type_key,
            }
        };
        let hidden = crate::cosmos::KEYS_TYPE.to_lowercase();
        let keep = |record: &ResourceRecord| {
            record.type_key != hidden
                && self.can(caller, &format!("{}/read", record.type_key), &record.id)
        };
        if CosmosType::of(&provider.type_name()).is_some() {
            return self.whole_list(&listing, keep).await;
        }
        self.page_of(&listing, page, keep).await
    }

    /// Every record of `listing` that `keep` accepts, in one answer without `nextLink`: for the
    /// Cosmos DB lists, which Azure does not page (`crate::cosmos::MAX_ACCOUNTS_PER_SUBSCRIPTION`
    /// and the per-account limits beside it bound them). Read a page at a time all the same.
    async fn whole_list(
        &self,
        listing: &Listing,
        keep: impl Fn(&ResourceRecord) -> bool,
    ) -> Result<Page, EngineError> {
        let mut values = Vec::new();
        let mut request = PageRequest::default();
        loop {
            let page = self.page_of(listing, &request, &keep).await?;
            values.extend(page.values);
            match page.next {
                Some(after) => request.after = after,
                None => return Ok(Page { values, next: None }),
            }
        }
    }

    /// Every resource of a group (`/resourceGroups/{g}/resources`) or subscription (`/resources`),
    /// one page.
    pub async fn resource_list_all(
        &self,
        caller: &Caller,
        subscription: &str,
        group: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page, EngineError> {
        self.check_subscription(subscription)?;
        // Deployments are records of the group, not resources in it (ARM lists them apart).
        let deployments = crate::deployments::DEPLOYMENT_TYPE.to_lowercase();
        let listing = match group {
            Some(group) => Listing::InGroup {
                group_key: self.group_record(subscription, group).await?.key,
                type_key: None,
            },
            None => Listing::TopLevel {
                subscription_id: self.canonical_subscription().to_string(),
                excluded_type_keys: vec![deployments.clone()],
            },
        };
        self.page_of(&listing, page, |record| {
            record.parent_key.is_none()
                && record.type_key != deployments
                && self.can(caller, &format!("{}/read", record.type_key), &record.id)
        })
        .await
    }

    /// `GET {scope}/providers/Microsoft.ManagedIdentity/identities/default`: the resource's system identity.
    pub async fn system_identity(
        &self,
        caller: &Caller,
        path: &ArmPath,
    ) -> Result<Value, EngineError> {
        self.authorize(
            caller,
            "Microsoft.ManagedIdentity/identities/read",
            &ArmPath {
                extension: None,
                ..path.clone()
            }
            .to_id(),
        )?;
        let scope = ArmPath {
            extension: None,
            ..path.clone()
        };
        let document = self.resource_get(caller, &scope).await?;
        let not_found = || EngineError::ResourceNotFound {
            type_name: "Microsoft.ManagedIdentity/identities".to_string(),
            name: "default".to_string(),
            group: path.resource_group.clone().unwrap_or_default(),
        };
        let principal_id = document
            .pointer("/identity/principalId")
            .and_then(Value::as_str)
            .ok_or_else(not_found)?;
        let object_id: ObjectId = principal_id.parse().map_err(|_| not_found())?;
        let principal = self
            .store()
            .principal(object_id)
            .await?
            .ok_or_else(not_found)?;
        Ok(json!({
            "id": format!("{}/providers/Microsoft.ManagedIdentity/identities/default", scope.to_id()),
            "name": "default",
            "type": "Microsoft.ManagedIdentity/identities",
            "location": document.get("location").cloned().unwrap_or(Value::Null),
            "tags": document.get("tags").cloned().unwrap_or_else(|| json!({})),
            "properties": {
                "tenantId": self.tenant().id.to_string(),
                "principalId": principal_id,
                "clientId": principal.client_id.map(|id| id.to_string()),
            },
        }))
    }

    /// `PUT /{resource id}`: creates or replaces a resource, with the behaviour of its type.
    pub async fn resource_put(
        &self,
        caller: &Caller,
        path: &ArmPath,
        body: &Value,
    ) -> Result<Written, EngineError> {
        self.authorize(caller, &action(path, "write"), &path.to_id())?;
        self.resource_write(caller, path, body, false, false).await
    }

    /// The document a PUT of `body` would store, nothing written (what-if).
    pub(crate) async fn resource_preview(
        &self,
        caller: &Caller,
        path: &ArmPath,
        body: &Value,
    ) -> Result<Value, EngineError> {
        self.resource_write(caller, path, body, false, true)
            .await
            .map(|written| written.body().clone())
    }

    /// `PATCH /{resource id}`: merges into an existing resource (identity blocks per ARM's rules).
    pub async fn resource_patch(
        &self,
        caller: &Caller,
        path: &ArmPath,
        body: &Value,
    ) -> Result<Value, EngineError> {
        self.authorize(caller, &action(path, "write"), &path.to_id())?;
        self.resource_write(caller, path, body, true, false)
            .await
            .map(|written| written.body().clone())
    }

    pub(crate) async fn resource_write(
        &self,
        caller: &Caller,
        path: &ArmPath,
        body: &Value,
        patch: bool,
        dry_run: bool,
    ) -> Result<Written, EngineError> {
        self.check_subscription(&path.subscription)?;
        if path.extension.is_some() {
            return Err(EngineError::BadRequest(
                "extension resources cannot be written here".to_string(),
            ));
        }
        let provider = path
            .provider
            .as_ref()
            .filter(|part| part.is_resource())
            .ok_or_else(|| EngineError::BadRequest("the path names no resource".to_string()))?;
        let group = path.resource_group.clone().ok_or_else(|| {
            EngineError::BadRequest("resources are created inside a resource group".to_string())
        })?;
        let request = object(body)?.clone();
        let type_name = provider.type_name();
        let name = provider
            .segments
            .last()
            .and_then(|(_, name)| name.clone())
            .unwrap_or_default();
        if type_name.eq_ignore_ascii_case(USER_ASSIGNED_IDENTITY_TYPE) {
            check_identity_name(&name)
        } else {
            check_resource_name(&name)
        }
        .map_err(|error| EngineError::InvalidName {
            code: error.code,
            message: error.message,
        })?;
        let id = path.to_id();
        let key = resource_key(&id);
        let build = || {
            let (id, key, request, type_name, group, name) = (
                id.clone(),
                key.clone(),
                request.clone(),
                type_name.clone(),
                group.clone(),
                name.clone(),
            );
            async move {
                let group_id = path.group_id().unwrap_or_default();
                let group_record = self
                    .store()
                    .resource(&resource_key(&group_id))
                    .await?
                    .ok_or(EngineError::ResourceGroupNotFound(group.clone()))?;
                let parent_key = match path.parent_id() {
                    Some(parent_id) => {
                        let parent_key = resource_key(&parent_id);
                        if self.store().resource(&parent_key).await?.is_none() {
                            return Err(EngineError::ParentResourceNotFound(parent_id));
                        }
                        Some(parent_key)
                    }
                    None => None,
                };
                let existing = self.store().resource(&key).await?;
                if patch && existing.is_none() {
                    return Err(EngineError::ResourceNotFound {
                        type_name: type_name.clone(),
                        name: name.clone(),
                        group: group.clone(),
                    });
                }
                let group_document = Self::parse_document(&group_record)?;
                let mut change = ResourceChange::default();
                let now = self.now();
                let previous = existing.as_ref().map(Self::parse_document).transpose()?;
                let canonical_id = existing
                    .as_ref()
                    .map(|record| record.id.clone())
                    .unwrap_or(id.clone());
                let mut document = self
                    .build_document(
                        caller,
                        &canonical_id,
                        &type_name,
                        &request,
                        previous.as_ref(),
                        &group_document,
                        patch,
                        now,
                        &mut change,
                    )
                    .await?;
                if let Some(object) = document.as_object_mut() {
                    object.insert(
                        "systemData".into(),
                        system_data(
                            caller,
                            existing
                                .as_ref()
                                .map(|record| record.created_at)
                                .unwrap_or(now),
                            now,
                            previous
                                .as_ref()
                                .and_then(|previous| previous.pointer("/systemData/createdBy")),
                        ),
                    );
                }
                change.upserts.push(ResourceRecord {
                    key: key.clone(),
                    id: canonical_id.clone(),
                    subscription_id: self.canonical_subscription().to_lowercase(),
                    group_key: Some(group_record.key.clone()),
                    parent_key,
                    type_key: type_name.to_lowercase(),
                    name: canonical_id
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    body: document.to_string(),
                    version: existing.as_ref().map(|record| record.version).unwrap_or(0),
                    created_at: existing
                        .as_ref()
                        .map(|record| record.created_at)
                        .unwrap_or(now),
                    updated_at: now,
                });
                let written = if existing.is_some() {
                    Written::Updated(document)
                } else {
                    Written::Created(document)
                };
                Ok((change, written))
            }
        };
        if dry_run {
            // What-if: the document this write would store, computed by the same provider code.
            return build().await.map(|(_, written)| written);
        }
        self.write_with_retry(build).await
    }

    /// Builds the stored document of a resource from the request and the previous document.
    #[allow(clippy::too_many_arguments)] // One call site; the arguments are the write's whole context.
    async fn build_document(
        &self,
        caller: &Caller,
        id: &str,
        type_name: &str,
        request: &Map<String, Value>,
        previous: Option<&Value>,
        group: &Value,
        patch: bool,
        now: i64,
        change: &mut ResourceChange,
    ) -> Result<Value, EngineError> {
        let name = id.rsplit('/').next().unwrap_or_default().to_string();
        // PATCH merges the request into the previous document; PUT starts from the request.
        let mut document = match (patch, previous) {
            (true, Some(previous)) => {
                let mut merged = previous.clone();
                let mut request_without_identity = Value::Object(request.clone());
                if let Some(object) = request_without_identity.as_object_mut() {
                    object.remove("identity");
                    object.remove("id");
                    object.remove("name");
                    object.remove("type");
                    object.remove("location");
                }
                merge_patch(&mut merged, &request_without_identity);
                // ARM's PATCH replaces the whole tag set (merging tags is the Tags API's job).
                if let (Some(tags), Some(object)) = (
                    request.get("tags").filter(|tags| tags.is_object()),
                    merged.as_object_mut(),
                ) {
                    object.insert("tags".into(), tags.clone());
                }
                merged
            }
            _ => {
                let mut fresh = Value::Object(request.clone());
                if let Some(object) = fresh.as_object_mut() {
                    object.remove("identity");
                    object.remove("systemData");
                }
                fresh
            }
        };
        let location = match (
            previous
                .and_then(|previous| previous.get("location"))
                .and_then(Value::as_str),
            location_of(request),
        ) {
            (Some(stored), _) => Some(stored.to_string()),
            (None, Some(requested)) => Some(normalize_location(&requested)),
            (None, None) if type_name.contains('/') && type_name.matches('/').count() >= 2 => None,
            (None, None) => group
                .get("location")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        let object = document
            .as_object_mut()
            .ok_or_else(|| invalid_content("The request content must be a JSON object."))?;
        object.insert("id".into(), json!(id));
        object.insert("name".into(), json!(name));
        object.insert("type".into(), json!(type_name));
        if let Some(location) = location {
            object.insert("location".into(), json!(location));
        }
        if !object.contains_key("tags") || object.get("tags").is_some_and(Value::is_null) {
            object.insert("tags".into(), json!({}));
        }
        tags_of(object)?;
        if let Some(kind) = CosmosType::of(type_name) {
            self.cosmos_document(kind, id, &name, object, previous, now, change)
                .await?;
            return Ok(document);
        }
        let location_text = object
            .get("location")
            .and_then(Value::as_str)
            .map(str::to_string);
        let properties = object.entry("properties").or_insert_with(|| json!({}));
        if !properties.is_object() {
            return Err(invalid_content(
                "The 'properties' property must be an object.",
            ));
        }
        if type_name.eq_ignore_ascii_case(USER_ASSIGNED_IDENTITY_TYPE) {
            self.identity_properties(id, &name, properties, previous, now, change)?;
        } else if type_name.eq_ignore_ascii_case(VIRTUAL_MACHINE_TYPE) {
            strip_secrets(properties);
            let vm_id = previous
                .and_then(|previous| previous.pointer("/properties/vmId"))
                .cloned()
                .unwrap_or_else(|| json!(uuid::Uuid::new_v4().to_string()));
            properties["vmId"] = vm_id;
            let time_created = previous
                .and_then(|previous| previous.pointer("/properties/timeCreated"))
                .cloned()
                .unwrap_or_else(|| json!(openmi_model::rfc3339(now)));
            properties["timeCreated"] = time_created;
            properties["provisioningState"] = json!("Succeeded");
            let identity = self
                .vm_identity(
                    caller,
                    id,
                    &name,
                    request.get("identity"),
                    previous,
                    patch,
                    now,
                    change,
                )
                .await?;
            match identity {
                Some(identity) => {
                    object.insert("identity".into(), identity);
                }
                None => {
                    object.remove("identity");
                }
            }
        } else if let Some(kind) = NetworkType::of(type_name) {
            if let Some(properties) = properties.as_object_mut() {
                self.network_properties(kind, id, location_text.as_deref(), properties, previous)
                    .await?;
            }
        } else {
            properties["provisioningState"] = json!("Succeeded");
        }
        Ok(document)
    }

    /// Properties of a user-assigned identity: its service principal is created with the resource
    /// and keeps its ids for life.
    fn identity_properties(
        &self,
        id: &str,
        name: &str,
        properties: &mut Value,
        previous: Option<&Value>,
        now: i64,
        change: &mut ResourceChange,
    ) -> Result<(), EngineError> {
        let tenant_id = self.tenant().id.to_string();
        let (principal_id, client_id) =
            match previous.and_then(|previous| previous.get("properties")) {
                Some(old) => (
                    old.get("principalId").cloned().unwrap_or(Value::Null),
                    old.get("clientId").cloned().unwrap_or(Value::Null),
                ),
                None => {
                    let principal = self.managed_identity_principal(id, name, now);
                    let ids = (
                        json!(principal.object_id.to_string()),
                        json!(principal.client_id.map(|id| id.to_string())),
                    );
                    change.new_principals.push(principal);
                    ids
                }
            };
        let isolation = properties
            .get("isolationScope")
            .cloned()
            .unwrap_or_else(|| json!("None"));
        *properties = json!({"tenantId": tenant_id, "principalId": principal_id, "clientId": client_id, "isolationScope": isolation});
        Ok(())
    }

    fn managed_identity_principal(&self, managed_by: &str, name: &str, now: i64) -> Principal {
        Principal {
            object_id: ObjectId::new_random(),
            tenant_id: self.tenant().id,
            kind: PrincipalKind::ManagedIdentity,
            client_id: Some(ClientId::new_random()),
            display_name: name.to_string(),
            user_principal_name: None,
            application_object_id: None,
            managed_by: Some(managed_by.to_string()),
            created_at: now,
        }
    }

    /// The identity block of a VM after a PUT (replaces) or PATCH (merges), per ARM's rules.
    #[allow(clippy::too_many_arguments)] // One call site; the arguments are the write's whole context.
    async fn vm_identity(
        &self,
        caller: &Caller,
        vm_id: &str,
        vm_name: &str,
        requested: Option<&Value>,
        previous: Option<&Value>,
        patch: bool,
        now: i64,
        change: &mut ResourceChange,
    ) -> Result<Option<Value>, EngineError> {
        let current = previous.map(VmIdentity::from_document).unwrap_or_default();
        // A write without an identity block keeps the identities the VM has: only an explicit
        // `"type": "None"` removes them, so no client drops an identity by leaving the block out.
        let requested = match requested {
            None | Some(Value::Null) => {
                return Ok(current.to_document(&self.tenant().id.to_string()))
            }
            Some(value) => value,
        };
        let requested_type = requested.get("type").and_then(Value::as_str);
        let (want_system, type_user) = match requested_type {
            Some(text) => parse_identity_type(text)?,
            None if patch => (current.system_principal.is_some(), true),
            None => return Err(invalid_content("The 'identity.type' property is required.")),
        };
        let map = match requested.get("userAssignedIdentities") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(invalid_content("'identity.userAssignedIdentities' must be an object keyed by identity resource id.")),
        };
        if !type_user && map.values().any(|value| !value.is_null()) {
            return Err(invalid_content("'identity.userAssignedIdentities' may only be given when the identity type includes UserAssigned."));
        }
        // The user-assigned set: PATCH starts from the current set, PUT from nothing.
        let mut user_assigned = if patch && type_user {
            current.user_assigned.clone()
        } else {
            Vec::new()
        };
        for (id, value) in &map {
            let key = resource_key(id);
            if value.is_null() {
                user_assigned.retain(|(existing, ..)| *existing != key);
                continue;
            }
            if user_assigned.iter().any(|(existing, ..)| *existing == key) {
                continue;
            }
            let record = match self.store().resource(&key).await? {
                Some(record) if record.type_key == USER_ASSIGNED_IDENTITY_TYPE.to_lowercase() => {
                    // Attaching an identity also needs its assign/action (Managed Identity Operator).
                    self.authorize_linked(
                        caller,
                        &format!("{VIRTUAL_MACHINE_TYPE}/write"),
                        vm_id,
                        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
                        &record.id,
                    )?;
                    record
                }
                _ => return Err(EngineError::UserAssignedIdentityNotFound(id.clone())),
            };
            let document = Self::parse_document(&record)?;
            let field = |name: &str| {
                document
                    .pointer(&format!("/properties/{name}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            user_assigned.push((
                key,
                record.id.clone(),
                field("principalId"),
                field("clientId"),
            ));
        }
        if type_user && user_assigned.is_empty() && !patch {
            return Err(invalid_content("The identity type includes UserAssigned but 'identity.userAssignedIdentities' names no identity."));
        }
        // The system identity: enabling creates a service principal, disabling deletes it.
        let system_principal = match (&current.system_principal, want_system) {
            (Some(existing), true) => Some(existing.clone()),
            (None, true) => {
                let principal = self.managed_identity_principal(vm_id, vm_name, now);
                let object_id = principal.object_id.to_string();
                change.new_principals.push(principal);
                Some(object_id)
            }
            (Some(existing), false) => {
                if let Ok(object_id) = existing.parse() {
                    change.deleted_principals.push(object_id);
                }
                None
            }
            (None, false) => None,
        };
        Ok(VmIdentity {
            system_principal,
            user_assigned,
        }
        .to_document(&self.tenant().id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn identity_types_parse_in_every_spelling() {
        assert_eq!(
            parse_identity_type("SystemAssigned, UserAssigned").unwrap(),
            (true, true)
        );
        assert_eq!(
            parse_identity_type("systemassigned,userassigned").unwrap(),
            (true, true)
        );
        assert_eq!(parse_identity_type("None").unwrap(), (false, false));
        assert!(parse_identity_type("Both").is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut target, &json!({"a": null, "b": {"c": 4}, "e": 5}));
        assert_eq!(target, json!({"b": {"c": 4, "d": 3}, "e": 5}));
    }

    #[test]
    fn secrets_are_stripped() {
        let mut properties = json!({"osProfile": {"adminUsername": "u", "adminPassword": "p"}});
        strip_secrets(&mut properties);
        assert_eq!(properties, json!({"osProfile": {"adminUsername": "u"}}));
    }
}
