//! Authorization: the RBAC snapshot every request is checked against, and the
//! `Microsoft.Authorization` API (role assignments and role definitions).
//!
//! The snapshot is derived state: built from the store at start, then changed in place by the
//! store's change log (`rbac_changes`): right after a local change (so the very next request sees
//! it) and whenever the store's `rbac` counter moves (a change made through another server
//! sharing the database; the server polls it several times a second), the logged changes since
//! the snapshot's version are applied one by one; only a server further behind than the log
//! reaches rebuilds. Messages copy ARM's (protocols.md §4.5).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use openmi_model::arm::{resource_key, ArmPath};
use openmi_model::directory::{role_guid, RoleAssignment};
use openmi_model::ObjectId;
use openmi_rbac::{builtin, scope_contains, scope_key, Permission, RoleDefinition, Snapshot};
use openmi_store::StoredRoleDefinition;
use serde_json::{json, Value};

use crate::arm::Written;
use crate::{Caller, Engine, EngineError, Page, PageRequest};

/// The RBAC index and the counter value it was built at.
#[derive(Debug, Default)]
pub(crate) struct RbacState {
    snapshot: RwLock<Snapshot>,
    version: AtomicI64,
    /// One refresh at a time, so changes are applied once and in order.
    refresh: tokio::sync::Mutex<()>,
}

const ASSIGNMENT_TYPE: &str = "Microsoft.Authorization/roleAssignments";
const DEFINITION_TYPE: &str = "Microsoft.Authorization/roleDefinitions";

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn permissions_json(permissions: &[Permission]) -> Value {
    Value::Array(
        permissions
            .iter()
            .map(|permission| {
                json!({"actions": permission.actions, "notActions": permission.not_actions, "dataActions": permission.data_actions, "notDataActions": permission.not_data_actions})
            })
            .collect(),
    )
}

/// A custom role from its stored `properties` JSON.
fn custom_definition(stored: &StoredRoleDefinition) -> RoleDefinition {
    let properties: Value = serde_json::from_str(&stored.body).unwrap_or(Value::Null);
    let permissions = properties
        .get("permissions")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .map(|block| Permission {
                    actions: strings(block.get("actions")),
                    not_actions: strings(block.get("notActions")),
                    data_actions: strings(block.get("dataActions")),
                    not_data_actions: strings(block.get("notDataActions")),
                })
                .collect()
        })
        .unwrap_or_default();
    RoleDefinition {
        id: stored.id.clone(),
        role_name: stored.role_name.clone(),
        description: properties
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        role_type: "CustomRole".to_string(),
        permissions,
        assignable_scopes: strings(properties.get("assignableScopes")),
    }
}

/// The id of a role assignment at a scope.
fn assignment_id(scope: &str, name: &str) -> String {
    format!(
        "{}/providers/{ASSIGNMENT_TYPE}/{name}",
        scope.trim_end_matches('/')
    )
}

impl Engine {
    /// The current RBAC snapshot (hold the guard only for a decision).
    pub fn rbac(&self) -> RwLockReadGuard<'_, Snapshot> {
        match self.inner.rbac.snapshot.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    async fn all_definitions(&self) -> Result<Vec<RoleDefinition>, EngineError> {
        let mut definitions = builtin::definitions();
        definitions.extend(
            self.store()
                .role_definitions()
                .await?
                .iter()
                .map(custom_definition),
        );
        Ok(definitions)
    }

    /// Brings the snapshot up to the store's counter: the logged changes since its version
    /// applied in place, or a rebuild when the log no longer reaches back (or with `force`).
    pub async fn refresh_rbac(&self, force: bool) -> Result<(), EngineError> {
        let _one_at_a_time = self.inner.rbac.refresh.lock().await;
        let version = self.store().rbac_version().await?;
        let mine = self.inner.rbac.version.load(Ordering::SeqCst);
        if !force && version == mine {
            return Ok(());
        }
        if !force && version > mine && version - mine <= openmi_store::RBAC_LOG_RETAINED {
            let changes = self
                .store()
                .rbac_changes_since(mine, version - mine)
                .await?;
            let contiguous = changes.len() as i64 == version - mine
                && changes
                    .iter()
                    .enumerate()
                    .all(|(index, (logged, _))| *logged == mine + 1 + index as i64);
            if contiguous {
                self.apply_rbac_changes(&changes).await?;
                self.inner.rbac.version.store(version, Ordering::SeqCst);
                return Ok(());
            }
        }
        // The counter is read before the data: a change committed in between is applied again
        // from the log on the next refresh, which changes nothing.
        let started = std::time::Instant::now();
        tracing::info!("building the RBAC snapshot");
        let definitions = self.all_definitions().await?;
        let mut builder = openmi_rbac::SnapshotBuilder::new(&definitions);
        let mut unreadable = 0u64;
        self.store()
            .each_role_assignment(|principal, role_definition_id, scope| {
                match principal.parse::<ObjectId>() {
                    Ok(principal) => {
                        builder.add_parts(principal, &role_guid(role_definition_id), scope)
                    }
                    Err(_) => unreadable += 1,
                }
            })
            .await?;
        if unreadable > 0 {
            tracing::warn!(
                rows = unreadable,
                "role assignments with an unreadable principal id grant nothing"
            );
        }
        let snapshot = builder.finish();
        tracing::info!(
            assignments = snapshot.assignment_count(),
            heap_mb = snapshot.heap_bytes() / (1 << 20),
            seconds = started.elapsed().as_secs_f64(),
            "RBAC snapshot built"
        );
        match self.inner.rbac.snapshot.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
        self.inner.rbac.version.store(version, Ordering::SeqCst);
        Ok(())
    }

    /// Applies logged changes in order; role definitions are read first, then everything is
    /// applied under one write lock, so no request sees half of a batch.
    async fn apply_rbac_changes(
        &self,
        changes: &[(i64, openmi_store::RbacChange)],
    ) -> Result<(), EngineError> {
        use openmi_store::RbacChange;
        let mut roles: HashMap<String, Option<RoleDefinition>> = HashMap::new();
        for (_, change) in changes {
            if let RbacChange::Role { role_id } = change {
                if !roles.contains_key(role_id) {
                    let found = self
                        .store()
                        .role_definition(role_id)
                        .await?
                        .as_ref()
                        .map(custom_definition);
                    roles.insert(role_id.clone(), found);
                }
            }
        }
        let assignment = |principal_id: &str, role_id: &str, scope: &str| {
            principal_id
                .parse::<ObjectId>()
                .ok()
                .map(|principal_id| openmi_rbac::Assignment {
                    principal_id,
                    role_id: role_id.to_string(),
                    scope: scope.to_string(),
                })
        };
        let mut snapshot = match self.inner.rbac.snapshot.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (_, change) in changes {
            match change {
                RbacChange::Assigned {
                    principal_id,
                    role_id,
                    scope,
                } => {
                    if let Some(assignment) = assignment(principal_id, role_id, scope) {
                        snapshot.insert(&assignment);
                    }
                }
                RbacChange::Unassigned {
                    principal_id,
                    role_id,
                    scope,
                } => {
                    if let Some(assignment) = assignment(principal_id, role_id, scope) {
                        snapshot.remove(&assignment);
                    }
                }
                // A deleted role has no assignments (deletion is refused while assigned), so its
                // compiled entry grants nothing and may stay.
                RbacChange::Role { role_id } => {
                    if let Some(Some(definition)) = roles.get(role_id) {
                        snapshot.put_role(definition);
                    }
                }
            }
        }
        Ok(())
    }

    /// The subscription this server serves.
    pub fn subscription_id(&self) -> &str {
        &self.inner.subscription_id
    }

    /// Whether the caller may perform `action` at `scope`.
    pub fn can(&self, caller: &Caller, action: &str, scope: &str) -> bool {
        self.rbac().is_allowed(caller.object_id, action, scope)
    }

    /// The client named in ARM's authorization messages: for applications and managed identities
    /// ARM names the object id there too (protocols.md §4.5).
    fn client_name(caller: &Caller) -> String {
        caller.object_id.to_string()
    }

    /// `AuthorizationFailed` unless the caller may perform `action` at `scope`.
    pub fn authorize(&self, caller: &Caller, action: &str, scope: &str) -> Result<(), EngineError> {
        if self.can(caller, action, scope) {
            Ok(())
        } else {
            Err(EngineError::AuthorizationFailed {
                client: Self::client_name(caller),
                object_id: caller.object_id.to_string(),
                action: action.to_string(),
                scope: scope.to_string(),
            })
        }
    }

    /// `LinkedAuthorizationFailed` unless the caller may also perform `linked_action` on `linked_scope`.
    pub(crate) fn authorize_linked(
        &self,
        caller: &Caller,
        action: &str,
        scope: &str,
        linked_action: &str,
        linked_scope: &str,
    ) -> Result<(), EngineError> {
        if self.can(caller, linked_action, linked_scope) {
            Ok(())
        } else {
            Err(EngineError::LinkedAuthorizationFailed(Box::new(
                crate::LinkedAuthorization {
                    client: Self::client_name(caller),
                    object_id: caller.object_id.to_string(),
                    action: action.to_string(),
                    scope: scope.to_string(),
                    linked_action: linked_action.to_string(),
                    linked_scope: linked_scope.to_string(),
                },
            )))
        }
    }

    /// Whether the caller holds any assignment at, above or below the subscription (what makes a
    /// subscription show up in `GET /subscriptions`, as ARM does).
    pub fn can_see_subscription(&self, caller: &Caller, subscription_id: &str) -> bool {
        self.rbac().has_assignment_near(
            caller.object_id,
            &format!("/subscriptions/{subscription_id}"),
        )
    }

    /// Checks that a scope names something that exists: the subscription, a group or a resource.
    async fn check_scope(&self, scope: &str) -> Result<(), EngineError> {
        if scope == "/" {
            return Ok(());
        }
        let path = ArmPath::parse(scope).map_err(|_| {
            EngineError::InvalidRequestContent(format!("The scope '{scope}' is not valid."))
        })?;
        self.check_subscription(&path.subscription)?;
        if let Some(group_id) = path.group_id() {
            if self
                .store()
                .resource(&resource_key(&group_id))
                .await?
                .is_none()
            {
                return Err(EngineError::ResourceGroupNotFound(
                    path.resource_group.clone().unwrap_or_default(),
                ));
            }
        }
        if path.provider.is_some()
            && self
                .store()
                .resource(&resource_key(&path.to_id()))
                .await?
                .is_none()
        {
            return Err(EngineError::ResourceNotFound {
                type_name: path
                    .provider
                    .as_ref()
                    .map(|part| part.type_name())
                    .unwrap_or_default(),
                name: path.to_id(),
                group: path.resource_group.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn definition_id(&self, guid: &str) -> String {
        format!(
            "/subscriptions/{}/providers/{DEFINITION_TYPE}/{guid}",
            self.inner.subscription_id
        )
    }

    fn assignment_json(&self, assignment: &RoleAssignment) -> Value {
        json!({
            "id": format!("{}/providers/{ASSIGNMENT_TYPE}/{}", assignment.scope.trim_end_matches('/'), assignment.name),
            "name": assignment.name,
            "type": ASSIGNMENT_TYPE,
            "properties": {
                "roleDefinitionId": self.definition_id(&role_guid(&assignment.role_definition_id)),
                "principalId": assignment.principal_id.to_string(),
                "principalType": assignment.principal_type,
                "scope": assignment.scope,
                "condition": null,
                "conditionVersion": null,
                "description": assignment.description,
                "createdOn": openmi_model::rfc3339(assignment.created_at),
                "updatedOn": openmi_model::rfc3339(assignment.updated_at),
                "createdBy": assignment.created_by.map(|id| id.to_string()),
                "updatedBy": assignment.updated_by.map(|id| id.to_string()),
                "delegatedManagedIdentityResourceId": null,
            },
        })
    }

    fn definition_json(
        &self,
        definition: &RoleDefinition,
        stored: Option<&StoredRoleDefinition>,
    ) -> Value {
        json!({
            "id": self.definition_id(&definition.id),
            "name": definition.id,
            "type": DEFINITION_TYPE,
            "properties": {
                "roleName": definition.role_name,
                "type": definition.role_type,
                "description": definition.description,
                "assignableScopes": definition.assignable_scopes,
                "permissions": permissions_json(&definition.permissions),
                "createdOn": stored.map(|stored| openmi_model::rfc3339(stored.created_at)),
                "updatedOn": stored.map(|stored| openmi_model::rfc3339(stored.updated_at)),
                "createdBy": null,
                "updatedBy": null,
            },
        })
    }

    // ---- role assignments ------------------------------------------------------------------

    /// `PUT {scope}/providers/Microsoft.Authorization/roleAssignments/{name}`
    pub async fn role_assignment_put(
        &self,
        caller: &Caller,
        scope: &str,
        name: &str,
        body: &Value,
    ) -> Result<Written, EngineError> {
        let name = name.to_lowercase();
        if openmi_model::ids::parse_guid(&name).is_err() {
            return Err(EngineError::InvalidRoleAssignmentId(name));
        }
        self.authorize(
            caller,
            "Microsoft.Authorization/roleAssignments/write",
            &assignment_id(scope, &name),
        )?;
        self.check_scope(scope).await?;
        let properties = body.get("properties").ok_or_else(|| {
            EngineError::InvalidRequestContent("The 'properties' property is required.".to_string())
        })?;
        let role_definition_id = properties
            .get("roleDefinitionId")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                EngineError::InvalidRequestContent(
                    "'properties.roleDefinitionId' is required.".to_string(),
                )
            })?;
        let role = role_guid(role_definition_id);
        let definitions = self.all_definitions().await?;
        let definition = definitions
            .iter()
            .find(|definition| definition.id == role)
            .ok_or_else(|| EngineError::RoleDefinitionDoesNotExist(role.clone()))?;
        if !definition
            .assignable_scopes
            .iter()
            .any(|assignable| scope_contains(&scope_key(assignable), &scope_key(scope)))
        {
            return Err(EngineError::InvalidRequestContent(format!(
                "The role '{}' is not assignable at scope '{scope}'.",
                definition.role_name
            )));
        }
        let principal_text = properties
            .get("principalId")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                EngineError::InvalidRequestContent(
                    "'properties.principalId' is required.".to_string(),
                )
            })?;
        let principal_id: ObjectId =
            principal_text
                .parse()
                .map_err(|_| EngineError::PrincipalNotFound {
                    principal: principal_text.to_string(),
                    tenant: self.tenant().id.to_string(),
                })?;
        let principal = self.store().principal(principal_id).await?.ok_or_else(|| {
            EngineError::PrincipalNotFound {
                principal: principal_text.to_string(),
                tenant: self.tenant().id.to_string(),
            }
        })?;
        // ARM refuses a principalType that is not the principal's (a known trap: the SDK model
        // defaults it to User).
        let actual_type = match principal.kind {
            openmi_model::PrincipalKind::User => "User",
            _ => "ServicePrincipal",
        };
        let principal_type = match properties.get("principalType").and_then(Value::as_str) {
            Some(given) if !given.eq_ignore_ascii_case(actual_type) => {
                return Err(EngineError::UnmatchedPrincipalType {
                    principal: principal_text.to_string(),
                    actual: actual_type.to_string(),
                    given: given.to_string(),
                });
            }
            _ => actual_type.to_string(),
        };
        let scope_normalized = scope_key(scope);
        let existing = self.store().role_assignments_of(principal_id).await?;
        if let Some(same) = existing.iter().find(|assignment| {
            role_guid(&assignment.role_definition_id) == role
                && scope_key(&assignment.scope) == scope_normalized
        }) {
            if same.name == name {
                return Ok(Written::Updated(self.assignment_json(same)));
            }
            return Err(EngineError::RoleAssignmentExists(
                same.name.replace('-', ""),
            ));
        }
        if self.store().role_assignment(&name).await?.is_some() {
            return Err(EngineError::Conflict("A role assignment with this name already exists with other properties; role assignments cannot be updated.".to_string()));
        }
        let now = self.now();
        let assignment = RoleAssignment {
            name: name.clone(),
            scope: if scope == "/" {
                "/".to_string()
            } else {
                scope.trim_end_matches('/').to_string()
            },
            role_definition_id: self.definition_id(&role),
            principal_id,
            principal_type,
            description: properties
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            created_at: now,
            created_by: Some(caller.object_id),
            updated_at: now,
            updated_by: Some(caller.object_id),
        };
        let record = crate::audit::for_write();
        self.store()
            .create_role_assignment(&assignment, record.as_ref())
            .await?;
        crate::audit::written_if(&record, true);
        self.refresh_rbac(false).await?;
        Ok(Written::Created(self.assignment_json(&assignment)))
    }

    async fn assignment_at(&self, scope: &str, name: &str) -> Result<RoleAssignment, EngineError> {
        let not_found = || EngineError::RoleAssignmentNotFound(name.to_string());
        let assignment = self
            .store()
            .role_assignment(name)
            .await?
            .ok_or_else(not_found)?;
        if scope_key(&assignment.scope) != scope_key(scope) {
            return Err(not_found());
        }
        Ok(assignment)
    }

    /// `GET {scope}/providers/Microsoft.Authorization/roleAssignments/{name}`
    pub async fn role_assignment_get(
        &self,
        caller: &Caller,
        scope: &str,
        name: &str,
    ) -> Result<Value, EngineError> {
        self.authorize(
            caller,
            "Microsoft.Authorization/roleAssignments/read",
            &assignment_id(scope, name),
        )?;
        Ok(self.assignment_json(&self.assignment_at(scope, name).await?))
    }

    /// `DELETE {scope}/providers/Microsoft.Authorization/roleAssignments/{name}`: the deleted
    /// assignment, or `None` when there was none.
    pub async fn role_assignment_delete(
        &self,
        caller: &Caller,
        scope: &str,
        name: &str,
    ) -> Result<Option<Value>, EngineError> {
        self.authorize(
            caller,
            "Microsoft.Authorization/roleAssignments/delete",
            &assignment_id(scope, name),
        )?;
        match self.assignment_at(scope, name).await {
            Ok(assignment) => {
                let record = crate::audit::for_write();
                let deleted = self
                    .store()
                    .delete_role_assignment(&assignment.name, record.as_ref())
                    .await?;
                crate::audit::written_if(&record, deleted);
                self.refresh_rbac(false).await?;
                Ok(Some(self.assignment_json(&assignment)))
            }
            Err(EngineError::RoleAssignmentNotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// `GET {scope}/providers/Microsoft.Authorization/roleAssignments?$filter=...`: without a
    /// filter, assignments at, above and below the scope; `atScope()` at and above;
    /// `principalId eq '{id}'` / `assignedTo('{id}')` that principal's (combinable with `and`).
    pub async fn role_assignment_list(
        &self,
        caller: &Caller,
        scope: &str,
        filter: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page, EngineError> {
        self.authorize(
            caller,
            "Microsoft.Authorization/roleAssignments/read",
            scope,
        )?;
        let filter = filter.unwrap_or_default();
        let mut at_scope = false;
        let mut principal: Option<String> = None;
        for clause in filter
            .split(" and ")
            .map(str::trim)
            .filter(|clause| !clause.is_empty())
        {
            let lower = clause.to_lowercase();
            if lower == "atscope()" {
                at_scope = true;
            } else if let Some(value) = lower.strip_prefix("principalid eq ").or_else(|| {
                lower
                    .strip_prefix("assignedto(")
                    .map(|rest| rest.trim_end_matches(')'))
            }) {
                principal = Some(value.trim().trim_matches('\'').to_string());
            } else {
                return Err(EngineError::InvalidRequestContent(format!(
                    "The filter '{filter}' is not supported."
                )));
            }
        }
        let target = scope_key(scope);
        // The target's own scope and every ancestor ("above"), and with no `atScope()` every
        // scope under it ("below").
        // The root scope is stored as "" (its key without the trailing slash).
        let mut at = vec![String::new(), "/".to_string()];
        let mut end = 0;
        while let Some(next) = target[end + 1..].find('/') {
            end += next + 1;
            at.push(target[..end].to_string());
        }
        at.push(target.clone());
        at.dedup();
        let below = (!at_scope).then(|| {
            if target == "/" {
                "/".to_string()
            } else {
                format!("{target}/")
            }
        });
        let principal = match &principal {
            Some(id) => match id.parse::<ObjectId>() {
                Ok(object_id) => Some(object_id),
                Err(_) => {
                    return Ok(Page {
                        values: Vec::new(),
                        next: None,
                    })
                }
            },
            None => None,
        };
        let size = page.size.clamp(1, crate::MAX_PAGE_SIZE);
        let mut found = self
            .store()
            .role_assignments_page(
                &at,
                below.as_deref(),
                principal,
                &page.after,
                size as i64 + 1,
            )
            .await?;
        let next = (found.len() > size).then(|| {
            found.truncate(size);
            found
                .last()
                .map(|last| last.name.clone())
                .unwrap_or_default()
        });
        Ok(Page {
            values: found
                .iter()
                .map(|assignment| self.assignment_json(assignment))
                .collect(),
            next,
        })
    }

    // ---- role definitions ------------------------------------------------------------------

    /// `GET {scope}/providers/Microsoft.Authorization/roleDefinitions/{id}`
    pub async fn role_definition_get(
        &self,
        caller: &Caller,
        scope: &str,
        id: &str,
    ) -> Result<Value, EngineError> {
        let _ = (caller, scope);
        let id = id.to_lowercase();
        if let Some(definition) = builtin::definitions()
            .into_iter()
            .find(|definition| definition.id == id)
        {
            return Ok(self.definition_json(&definition, None));
        }
        let found = self
            .store()
            .role_definition(&id)
            .await?
            .ok_or(EngineError::RoleDefinitionNotFound(id))?;
        Ok(self.definition_json(&custom_definition(&found), Some(&found)))
    }

    /// `GET {scope}/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName eq '...'|type eq '...'`,
    /// one page: the built-in roles (a small fixed set, in memory) and the custom ones (read from
    /// the store a page at a time) merged in the order of their ids (lower-case GUIDs, whose order
    /// Rust and both databases agree on, whatever the collation), the continuation being the last
    /// id examined, as for every other list. A name filter is one store lookup (names are unique).
    pub async fn role_definition_list(
        &self,
        caller: &Caller,
        scope: &str,
        filter: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page, EngineError> {
        let _ = caller;
        let filter = filter.unwrap_or_default().trim();
        let value_of = |prefix: &str| {
            filter
                .get(..prefix.len())
                .filter(|head| head.eq_ignore_ascii_case(prefix))
                .map(|_| filter[prefix.len()..].trim().trim_matches('\'').to_string())
        };
        let by_name = value_of("roleName eq ");
        let by_type = value_of("type eq ");
        if !filter.is_empty() && by_name.is_none() && by_type.is_none() {
            return Err(EngineError::InvalidRequestContent(format!(
                "The filter '{filter}' is not supported."
            )));
        }
        let target = scope_key(scope);
        let keep = |definition: &RoleDefinition| {
            by_type
                .as_ref()
                .is_none_or(|kind| definition.role_type.eq_ignore_ascii_case(kind))
                && definition.assignable_scopes.iter().any(|assignable| {
                    let assignable = scope_key(assignable);
                    scope_contains(&assignable, &target) || scope_contains(&target, &assignable)
                })
        };
        if let Some(name) = &by_name {
            let mut values = Vec::new();
            if let Some(definition) = builtin::definitions()
                .into_iter()
                .find(|definition| definition.role_name.eq_ignore_ascii_case(name))
            {
                if keep(&definition) {
                    values.push(self.definition_json(&definition, None));
                }
            } else if let Some(stored) = self.store().role_definition_named(name, "").await? {
                let definition = custom_definition(&stored);
                if keep(&definition) {
                    values.push(self.definition_json(&definition, Some(&stored)));
                }
            }
            return Ok(Page { values, next: None });
        }
        let size = page.size.clamp(1, crate::MAX_PAGE_SIZE);
        let mut builtins: Vec<RoleDefinition> = builtin::definitions()
            .into_iter()
            .filter(|definition| definition.id.as_str() > page.after.as_str())
            .collect();
        builtins.sort_by(|a, b| a.id.cmp(&b.id));
        let mut builtins = builtins.into_iter().peekable();
        let mut values = Vec::new();
        let mut after = page.after.clone();
        loop {
            let batch = self
                .store()
                .role_definitions_page(&after, size as i64 + 1)
                .await?;
            // A short batch is the store's last; after a full one, no built-in role beyond its
            // last id is taken before the next batch is read.
            let complete = batch.len() <= size;
            let mut customs = batch.iter().peekable();
            loop {
                let builtin_first = match (builtins.peek(), customs.peek()) {
                    (Some(builtin), Some(custom)) => builtin.id < custom.id,
                    (Some(_), None) if complete => true,
                    (None, Some(_)) => false,
                    _ => break,
                };
                if values.len() == size {
                    return Ok(Page {
                        values,
                        next: Some(after),
                    });
                }
                if builtin_first {
                    if let Some(definition) = builtins.next() {
                        after = definition.id.clone();
                        if keep(&definition) {
                            values.push(self.definition_json(&definition, None));
                        }
                    }
                } else if let Some(stored) = customs.next() {
                    after = stored.id.clone();
                    let definition = custom_definition(stored);
                    if keep(&definition) {
                        values.push(self.definition_json(&definition, Some(stored)));
                    }
                }
            }
            if complete {
                return Ok(Page { values, next: None });
            }
        }
    }

    /// `PUT {scope}/providers/Microsoft.Authorization/roleDefinitions/{id}`: a custom role.
    pub async fn role_definition_put(
        &self,
        caller: &Caller,
        _scope: &str,
        id: &str,
        body: &Value,
    ) -> Result<Written, EngineError> {
        let id = id.to_lowercase();
        if openmi_model::ids::parse_guid(&id).is_err() {
            return Err(EngineError::InvalidRequestContent(format!(
                "The role definition ID '{id}' is not valid. It must be a GUID."
            )));
        }
        if builtin::definitions()
            .iter()
            .any(|definition| definition.id == id)
        {
            return Err(EngineError::BuiltInRoleReadOnly(id));
        }
        let properties = body.get("properties").cloned().ok_or_else(|| {
            EngineError::InvalidRequestContent("The 'properties' property is required.".to_string())
        })?;
        let role_name = properties
            .get("roleName")
            .and_then(Value::as_str)
            .filter(|name| !name.trim().is_empty())
            .ok_or_else(|| {
                EngineError::InvalidRequestContent("'properties.roleName' is required.".to_string())
            })?
            .to_string();
        let assignable_scopes = strings(properties.get("assignableScopes"));
        if assignable_scopes.is_empty() {
            return Err(EngineError::InvalidRequestContent(
                "'properties.assignableScopes' must name at least one scope.".to_string(),
            ));
        }
        for assignable in &assignable_scopes {
            self.authorize(
                caller,
                "Microsoft.Authorization/roleDefinitions/write",
                assignable,
            )?;
            self.check_scope(assignable).await?;
        }
        self.authorize(
            caller,
            "Microsoft.Authorization/roleDefinitions/write",
            &self.definition_id(&id),
        )?;
        let taken = builtin::definitions()
            .iter()
            .any(|definition| definition.role_name.eq_ignore_ascii_case(&role_name))
            || self
                .store()
                .role_definition_named(&role_name, &id)
                .await?
                .is_some();
        if taken {
            return Err(EngineError::RoleDefinitionWithSameNameExists(role_name));
        }
        let now = self.now();
        let previous = self.store().role_definition(&id).await?;
        let previous = previous.as_ref();
        let definition = StoredRoleDefinition {
            id: id.clone(),
            role_name: role_name.clone(),
            body: json!({
                "roleName": role_name,
                "description": properties.get("description").cloned().unwrap_or(Value::Null),
                "type": "CustomRole",
                "permissions": properties.get("permissions").cloned().unwrap_or_else(|| json!([])),
                "assignableScopes": assignable_scopes,
            })
            .to_string(),
            created_at: previous.map(|row| row.created_at).unwrap_or(now),
            updated_at: now,
        };
        let record = crate::audit::for_write();
        self.store()
            .put_role_definition(&definition, record.as_ref())
            .await?;
        crate::audit::written_if(&record, true);
        self.refresh_rbac(false).await?;
        let document = self.definition_json(&custom_definition(&definition), Some(&definition));
        let _ = previous;
        // The authorization SDK accepts only 201 here, for a new role and for an update alike.
        Ok(Written::Created(document))
    }

    /// `DELETE {scope}/providers/Microsoft.Authorization/roleDefinitions/{id}`: refused while assigned.
    pub async fn role_definition_delete(
        &self,
        caller: &Caller,
        _scope: &str,
        id: &str,
    ) -> Result<Option<Value>, EngineError> {
        self.authorize(
            caller,
            "Microsoft.Authorization/roleDefinitions/delete",
            &self.definition_id(&id.to_lowercase()),
        )?;
        let id = id.to_lowercase();
        if builtin::definitions()
            .iter()
            .any(|definition| definition.id == id)
        {
            return Err(EngineError::BuiltInRoleReadOnly(id));
        }
        let Some(found) = self.store().role_definition(&id).await? else {
            return Ok(None);
        };
        if self.store().role_in_use(&id).await? {
            return Err(EngineError::RoleDefinitionHasAssignments(id.clone()));
        }
        let document = self.definition_json(&custom_definition(&found), Some(&found));
        let record = crate::audit::for_write();
        let deleted = self
            .store()
            .delete_role_definition(&id, record.as_ref())
            .await?;
        crate::audit::written_if(&record, deleted);
        self.refresh_rbac(false).await?;
        Ok(Some(document))
    }
}
