//! The Microsoft.DocumentDB provider's control plane (issue 17, research/protocols.md §5.1):
//! database accounts with their keys and data-plane endpoint, SQL databases and containers, and
//! the data-plane RBAC resources (`sqlRoleDefinitions`, `sqlRoleAssignments`), all rows of the
//! one resource store written through the one write path.
//!
//! An account's four keys are made with it, sealed with the key-encryption key in a child row
//! that is never returned (`listKeys` opens it). Its two built-in data roles (Azure's GUIDs
//! `…0001` Data Reader, `…0002` Data Contributor) are child rows too, made with it, read-only.
//! Databases and containers created through ARM are the data plane's: both read the same rows.

use base64::Engine as _;
use openmi_model::arm::{resource_key, ArmPath};
use openmi_store::{ResourceChange, ResourceRecord};
use serde_json::{json, Map, Value};

use crate::{Caller, Engine, EngineError};

pub const ACCOUNT_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts";
pub const DATABASE_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases";
pub const CONTAINER_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers";
pub const ROLE_DEFINITION_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions";
pub const ROLE_ASSIGNMENT_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments";
/// The child row holding an account's sealed keys; never served.
pub const KEYS_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts/openmiKeys";

/// Azure Cosmos DB's limits, enforced when a resource is created (concepts-limits.md "Resource
/// limits"; how-to-setup-rbac.md "Limits"). They are also what bounds the Cosmos DB lists: Azure
/// answers `databaseAccounts`, `sqlDatabases`, `containers`, `sqlRoleDefinitions` and
/// `sqlRoleAssignments` lists whole, without `nextLink` (the spec gives them no next link, so
/// @azure/arm-cosmosdb reads a single page), so openmi answers them whole too, and these limits
/// keep such an answer small. Accounts: 250 by default on Azure, raised on request up to 1000,
/// the most a subscription can be given (a self-hosted openmi has no one to ask, so 1000).
pub const MAX_ACCOUNTS_PER_SUBSCRIPTION: usize = 1000;
/// Databases and containers together (a limit that cannot be raised on Azure).
pub const MAX_DATABASES_AND_CONTAINERS_PER_ACCOUNT: i64 = 500;
/// Custom data-plane role definitions (the two built-in ones besides).
pub const MAX_ROLE_DEFINITIONS_PER_ACCOUNT: i64 = 100;
pub const MAX_ROLE_ASSIGNMENTS_PER_ACCOUNT: i64 = 2000;

pub const DATA_READER: &str = "00000000-0000-0000-0000-000000000001";
pub const DATA_CONTRIBUTOR: &str = "00000000-0000-0000-0000-000000000002";
const DATA_ACTION_PREFIX: &str = "Microsoft.DocumentDB/databaseAccounts/";

/// The kinds of Cosmos resources with behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CosmosType {
    Account,
    Database,
    Container,
    RoleDefinition,
    RoleAssignment,
    Keys,
}

impl CosmosType {
    pub(crate) fn of(type_name: &str) -> Option<CosmosType> {
        [
            (ACCOUNT_TYPE, CosmosType::Account),
            (DATABASE_TYPE, CosmosType::Database),
            (CONTAINER_TYPE, CosmosType::Container),
            (ROLE_DEFINITION_TYPE, CosmosType::RoleDefinition),
            (ROLE_ASSIGNMENT_TYPE, CosmosType::RoleAssignment),
            (KEYS_TYPE, CosmosType::Keys),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(type_name))
        .map(|(_, kind)| kind)
    }
}

fn bad(message: impl Into<String>) -> EngineError {
    EngineError::InvalidRequestContent(message.into())
}

/// A limit of Azure Cosmos DB reached: 400 `BadRequest`, the code the Cosmos DB provider gives
/// its other refusals (the data plane answers it as 400 too).
fn limit_reached(message: String) -> EngineError {
    EngineError::Arm(Box::new(crate::arm_error::ArmFailure::new(
        400,
        "BadRequest",
        message,
    )))
}

/// A Cosmos `_rid`-like id: base64 of random bytes, as the service's look.
fn new_rid(length: usize) -> String {
    let bytes: Vec<u8> = uuid::Uuid::new_v4().as_bytes()[..length].to_vec();
    // Cosmos's resource ids are base64 with `-` in place of `/`, so they fit in a path.
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .replace('/', "-")
}

/// A key as Azure's: 64 random bytes, base64 (88 characters).
fn new_key() -> String {
    let mut bytes = Vec::with_capacity(64);
    for _ in 0..4 {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// "West US" for "westus", as Cosmos writes location names.
fn location_display_name(location: &str) -> String {
    let known = [
        ("westus", "West US"),
        ("westus2", "West US 2"),
        ("westus3", "West US 3"),
        ("eastus", "East US"),
        ("eastus2", "East US 2"),
        ("centralus", "Central US"),
        ("northeurope", "North Europe"),
        ("westeurope", "West Europe"),
        ("uksouth", "UK South"),
        ("southeastasia", "Southeast Asia"),
        ("japaneast", "Japan East"),
        ("australiaeast", "Australia East"),
    ];
    let key = location.to_lowercase().replace(' ', "");
    known
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, display)| display.to_string())
        .unwrap_or_else(|| location.to_string())
}

/// The built-in data roles (reference-data-plane-roles.md).
fn builtin_role(account_id: &str, guid: &str) -> Value {
    let (name, actions) = if guid == DATA_READER {
        (
            "Cosmos DB Built-in Data Reader",
            vec![
                "Microsoft.DocumentDB/databaseAccounts/readMetadata",
                "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery",
                "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/readChangeFeed",
                "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read",
            ],
        )
    } else {
        (
            "Cosmos DB Built-in Data Contributor",
            vec![
                "Microsoft.DocumentDB/databaseAccounts/readMetadata",
                "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/*",
                "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/*",
            ],
        )
    };
    json!({
        "id": format!("{account_id}/sqlRoleDefinitions/{guid}"),
        "name": guid,
        "type": ROLE_DEFINITION_TYPE,
        "properties": {
            "roleName": name,
            "type": "BuiltInRole",
            "assignableScopes": [account_id],
            "permissions": [{"dataActions": actions, "notDataActions": []}],
        },
    })
}

/// The account id that a Cosmos child id starts with.
pub(crate) fn account_id_of(id: &str) -> Option<String> {
    let lower = id.to_lowercase();
    let marker = "/providers/microsoft.documentdb/databaseaccounts/";
    let at = lower.find(marker)? + marker.len();
    let end = lower[at..]
        .find('/')
        .map(|end| at + end)
        .unwrap_or(lower.len());
    Some(id[..end].to_string())
}

/// A data-plane scope (`/`, `/dbs/db`, `/dbs/db/colls/c`, or the full id form) as the full
/// resource id Azure stores (`{account}`, `{account}/dbs/db`, …).
pub(crate) fn full_scope(account_id: &str, scope: &str) -> Result<String, EngineError> {
    let trimmed = scope.trim();
    if trimmed.is_empty() {
        return Err(bad("The role assignment needs a scope."));
    }
    if trimmed.to_lowercase().starts_with("/subscriptions/") {
        let lower_account = account_id.to_lowercase();
        if !trimmed.to_lowercase().starts_with(&lower_account) {
            return Err(bad(format!(
                "The scope '{trimmed}' is not within the account '{account_id}'."
            )));
        }
        return Ok(trimmed.trim_end_matches('/').to_string());
    }
    let relative = trimmed.trim_end_matches('/');
    let segments: Vec<&str> = relative
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let valid = matches!(
        segments.as_slice(),
        [] | ["dbs", _] | ["dbs", _, "colls", _]
    );
    if !valid {
        return Err(bad(format!(
            "The scope '{trimmed}' is not valid: use '/', '/dbs/{{database}}' or '/dbs/{{database}}/colls/{{container}}'."
        )));
    }
    Ok(if segments.is_empty() {
        account_id.to_string()
    } else {
        format!("{account_id}/{}", segments.join("/"))
    })
}

impl Engine {
    /// The data-plane endpoint of an account (the URL its SDK clients are given).
    pub fn cosmos_endpoint(&self, account_name: &str) -> String {
        let base = self
            .inner
            .config
            .own_resources
            .first()
            .cloned()
            .unwrap_or_else(|| "https://127.0.0.1:8443".to_string());
        format!("{base}/cosmos/{}/", account_name.to_lowercase())
    }

    /// Fills in what Azure computes for a Cosmos resource; `document` is the resource as built
    /// by the write path (id, name, type, location, tags, properties).
    #[allow(clippy::too_many_arguments)] // The write's whole context; one call site.
    pub(crate) async fn cosmos_document(
        &self,
        kind: CosmosType,
        id: &str,
        name: &str,
        document: &mut Map<String, Value>,
        previous: Option<&Value>,
        now: i64,
        change: &mut ResourceChange,
    ) -> Result<(), EngineError> {
        if previous.is_none() {
            self.check_cosmos_limit(kind, id).await?;
        }
        match kind {
            CosmosType::Account => {
                self.account_document(id, name, document, previous, now, change)
                    .await
            }
            CosmosType::Database => {
                self.cosmos_child_document(id, name, document, previous, now, false)
                    .await
            }
            CosmosType::Container => {
                self.cosmos_child_document(id, name, document, previous, now, true)
                    .await
            }
            CosmosType::RoleDefinition => {
                self.role_definition_document(id, name, document, previous)
                    .await
            }
            CosmosType::RoleAssignment => self.role_assignment_document(id, name, document).await,
            CosmosType::Keys => Err(bad("The keys of an account are not a resource to write.")),
        }
    }

    /// Refuses a new database, container or data-plane role definition or assignment past the
    /// account's limit (accounts are counted where their names are checked).
    async fn check_cosmos_limit(&self, kind: CosmosType, id: &str) -> Result<(), EngineError> {
        let Some(account_id) = account_id_of(id) else {
            return Ok(());
        };
        let under = format!("{}/", resource_key(&account_id));
        let count = |type_name: &str| {
            let type_key = type_name.to_lowercase();
            let under = under.clone();
            async move {
                self.store()
                    .resources_count_under(&self.inner.subscription_id, &type_key, &under)
                    .await
            }
        };
        let (used, limit, what) = match kind {
            CosmosType::Database | CosmosType::Container => (
                count(DATABASE_TYPE).await? + count(CONTAINER_TYPE).await?,
                MAX_DATABASES_AND_CONTAINERS_PER_ACCOUNT,
                "databases and containers",
            ),
            // The two built-in roles are the account's own and do not count.
            CosmosType::RoleDefinition => (
                count(ROLE_DEFINITION_TYPE).await?.saturating_sub(2),
                MAX_ROLE_DEFINITIONS_PER_ACCOUNT,
                "SQL role definitions",
            ),
            CosmosType::RoleAssignment => (
                count(ROLE_ASSIGNMENT_TYPE).await?,
                MAX_ROLE_ASSIGNMENTS_PER_ACCOUNT,
                "SQL role assignments",
            ),
            CosmosType::Account | CosmosType::Keys => return Ok(()),
        };
        if used >= limit {
            return Err(limit_reached(format!(
                "The database account '{}' has reached its limit of {limit} {what}; delete one to create another.",
                account_id.rsplit('/').next().unwrap_or_default()
            )));
        }
        Ok(())
    }

    async fn account_document(
        &self,
        id: &str,
        name: &str,
        document: &mut Map<String, Value>,
        previous: Option<&Value>,
        now: i64,
        change: &mut ResourceChange,
    ) -> Result<(), EngineError> {
        // Account names are global DNS labels on Azure: 3-44 lower-case letters, digits, hyphens.
        let valid_name = (3..=44).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid_name {
            return Err(EngineError::InvalidName {
                code: "InvalidResourceName",
                message: format!("Database account name '{name}' is invalid: it must be 3 to 44 characters of lower-case letters, digits and hyphens, and cannot start or end with a hyphen."),
            });
        }
        // The name is a host name on Azure, so unique beyond the group; Azure answers a taken
        // name with 400 BadRequest "Dns record for {name} under zone Document is already taken".
        if previous.is_none() {
            // At most MAX_ACCOUNTS_PER_SUBSCRIPTION records, which `check_cosmos_limit` keeps.
            let accounts = self
                .store()
                .resources_of_type(&self.inner.subscription_id, &ACCOUNT_TYPE.to_lowercase())
                .await?;
            if accounts.len() >= MAX_ACCOUNTS_PER_SUBSCRIPTION {
                return Err(limit_reached(format!(
                    "The subscription '{}' has reached its limit of {MAX_ACCOUNTS_PER_SUBSCRIPTION} Azure Cosmos DB database accounts; delete an account to create another.",
                    self.inner.subscription_id
                )));
            }
            let taken = accounts.into_iter().any(|record| {
                record.name.eq_ignore_ascii_case(name) && !record.id.eq_ignore_ascii_case(id)
            });
            if taken {
                return Err(EngineError::InvalidName {
                    code: "BadRequest",
                    message: format!("Dns record for {name} under zone Document is already taken. Please use a different name for the account."),
                });
            }
        }
        document
            .entry("kind")
            .or_insert_with(|| json!("GlobalDocumentDB"));
        let location = document
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or("westus")
            .to_string();
        let endpoint = self.cosmos_endpoint(name);
        let properties = document
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| bad("The 'properties' property must be an object."))?;
        let requested_locations = properties
            .get("locations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| vec![json!({"locationName": location, "failoverPriority": 0})]);
        if requested_locations.is_empty() {
            return Err(bad("The database account needs at least one location."));
        }
        let mut locations = Vec::new();
        for (index, entry) in requested_locations.iter().enumerate() {
            let location_name = entry
                .get("locationName")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("Each location needs a locationName."))?;
            let display = location_display_name(location_name);
            let key = location_name.to_lowercase().replace(' ', "");
            locations.push(json!({
                "id": format!("{name}-{key}"),
                "locationName": display,
                "documentEndpoint": endpoint,
                "provisioningState": "Succeeded",
                "failoverPriority": entry.get("failoverPriority").cloned().unwrap_or_else(|| json!(index)),
                "isZoneRedundant": entry.get("isZoneRedundant").cloned().unwrap_or(json!(false)),
            }));
        }
        properties.insert("provisioningState".into(), json!("Succeeded"));
        properties.insert("documentEndpoint".into(), json!(endpoint));
        properties.insert("locations".into(), json!(locations));
        properties.insert("writeLocations".into(), json!([locations[0].clone()]));
        properties.insert("readLocations".into(), json!(locations));
        properties.insert(
            "failoverPolicies".into(),
            json!(locations.iter().map(|l| json!({"id": l["id"], "locationName": l["locationName"], "failoverPriority": l["failoverPriority"]})).collect::<Vec<_>>()),
        );
        properties
            .entry("databaseAccountOfferType")
            .or_insert_with(|| json!("Standard"));
        properties
            .entry("disableLocalAuth")
            .or_insert_with(|| json!(false));
        if !properties
            .get("disableLocalAuth")
            .is_some_and(Value::is_boolean)
        {
            return Err(bad("'disableLocalAuth' must be true or false."));
        }
        properties
            .entry("consistencyPolicy")
            .or_insert_with(|| json!({"defaultConsistencyLevel": "Session", "maxIntervalInSeconds": 5, "maxStalenessPrefix": 100}));
        for (key, default) in [
            ("enableAutomaticFailover", json!(false)),
            ("enableMultipleWriteLocations", json!(false)),
            ("publicNetworkAccess", json!("Enabled")),
            ("capabilities", json!([])),
            ("ipRules", json!([])),
            ("createMode", json!("Default")),
        ] {
            properties.entry(key).or_insert(default);
        }
        properties.insert(
            "instanceId".into(),
            previous
                .and_then(|previous| previous.pointer("/properties/instanceId"))
                .cloned()
                .unwrap_or_else(|| json!(uuid::Uuid::new_v4().to_string())),
        );
        if previous.is_none() {
            // The keys and the built-in data roles are made with the account.
            let path =
                ArmPath::parse(id).map_err(|error| EngineError::BadRequest(error.to_string()))?;
            let group_key = path.group_id().map(|group| resource_key(&group));
            let keys = json!({
                "primaryMasterKey": new_key(),
                "secondaryMasterKey": new_key(),
                "primaryReadonlyMasterKey": new_key(),
                "secondaryReadonlyMasterKey": new_key(),
            });
            let sealed = self
                .inner
                .kek
                .seal(
                    &format!("cosmos-keys:{}", resource_key(id)),
                    keys.to_string().as_bytes(),
                )
                .map_err(|error| {
                    EngineError::Internal(format!("EN0601 cannot seal account keys: {error}"))
                })?;
            let keys_id = format!("{id}/openmiKeys/default");
            let mut children = vec![(keys_id, KEYS_TYPE, json!({"sealed": sealed}))];
            for guid in [DATA_READER, DATA_CONTRIBUTOR] {
                children.push((
                    format!("{id}/sqlRoleDefinitions/{guid}"),
                    ROLE_DEFINITION_TYPE,
                    builtin_role(id, guid),
                ));
            }
            for (child_id, kind, body) in children {
                change.upserts.push(ResourceRecord {
                    key: resource_key(&child_id),
                    name: child_id.rsplit('/').next().unwrap_or_default().to_string(),
                    id: child_id,
                    subscription_id: self.inner.subscription_id.to_lowercase(),
                    group_key: group_key.clone(),
                    parent_key: Some(resource_key(id)),
                    type_key: kind.to_lowercase(),
                    body: body.to_string(),
                    version: 0,
                    created_at: now,
                    updated_at: now,
                });
            }
        }
        Ok(())
    }

    /// A SQL database or container: `properties.resource` as the data plane shows it.
    async fn cosmos_child_document(
        &self,
        id: &str,
        name: &str,
        document: &mut Map<String, Value>,
        previous: Option<&Value>,
        now: i64,
        container: bool,
    ) -> Result<(), EngineError> {
        document.remove("location");
        let properties = document
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| bad("The 'properties' property must be an object."))?;
        let mut resource = properties
            .get("resource")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| bad("The 'properties.resource' object is required."))?;
        let resource_id = resource.get("id").and_then(Value::as_str).unwrap_or(name);
        if resource_id != name {
            return Err(bad(format!(
                "The resource id '{resource_id}' does not match the name '{name}' in the request URL."
            )));
        }
        resource.insert("id".into(), json!(name));
        if container {
            let paths = resource
                .get("partitionKey")
                .and_then(|key| key.get("paths"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if paths.is_empty()
                || paths.len() > 3
                || !paths.iter().all(|p| {
                    p.as_str()
                        .is_some_and(|p| p.starts_with('/') && p.len() > 1)
                })
            {
                return Err(bad(
                    "A container needs 'partitionKey.paths': one to three paths such as '/pk'.",
                ));
            }
            if let Some(previous_paths) =
                previous.and_then(|p| p.pointer("/properties/resource/partitionKey/paths"))
            {
                if previous_paths != &Value::Array(paths.clone()) {
                    return Err(bad("The partition key of a container cannot be changed."));
                }
            }
            let kind = if paths.len() > 1 { "MultiHash" } else { "Hash" };
            let partition_key = resource.entry("partitionKey").or_insert_with(|| json!({}));
            partition_key["kind"] = json!(partition_key
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or(kind));
            partition_key["version"] = json!(partition_key
                .get("version")
                .and_then(Value::as_i64)
                .unwrap_or(2));
            if let Some(ttl) = resource.get("defaultTtl") {
                if !(ttl.as_i64().is_some_and(|ttl| ttl == -1 || ttl > 0)) {
                    return Err(bad(
                        "'defaultTtl' must be -1 (no default) or a positive number of seconds.",
                    ));
                }
            }
            resource.entry("indexingPolicy").or_insert_with(|| {
                json!({
                    "indexingMode": "consistent", "automatic": true,
                    "includedPaths": [{"path": "/*"}], "excludedPaths": [{"path": "/\"_etag\"/?"}],
                })
            });
            resource.entry("conflictResolutionPolicy").or_insert_with(|| json!({"mode": "LastWriterWins", "conflictResolutionPath": "/_ts", "conflictResolutionProcedure": ""}));
            resource
                .entry("geospatialConfig")
                .or_insert_with(|| json!({"type": "Geography"}));
        }
        let kept = |key: &str| {
            previous
                .and_then(|p| p.pointer(&format!("/properties/resource/{key}")))
                .cloned()
        };
        let rid = kept("_rid").unwrap_or_else(|| json!(new_rid(if container { 8 } else { 4 })));
        resource.insert("_rid".into(), rid.clone());
        resource.insert("_ts".into(), json!(now));
        resource.insert(
            "_etag".into(),
            json!(format!("\"{}\"", uuid::Uuid::new_v4())),
        );
        let self_link = if container {
            let database_rid = self
                .store()
                .resource(&resource_key(
                    id.rsplit_once("/containers/")
                        .map(|(db, _)| db)
                        .unwrap_or_default(),
                ))
                .await?
                .and_then(|record| serde_json::from_str::<Value>(&record.body).ok())
                .and_then(|db| {
                    db.pointer("/properties/resource/_rid")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            format!(
                "dbs/{database_rid}/colls/{}/",
                rid.as_str().unwrap_or_default()
            )
        } else {
            format!("dbs/{}/", rid.as_str().unwrap_or_default())
        };
        resource.insert("_self".into(), json!(self_link));
        if container {
            for (key, value) in [
                ("_docs", "docs/"),
                ("_sprocs", "sprocs/"),
                ("_triggers", "triggers/"),
                ("_udfs", "udfs/"),
                ("_conflicts", "conflicts/"),
            ] {
                resource.insert(key.into(), json!(value));
            }
        } else {
            resource.insert("_colls".into(), json!("colls/"));
            resource.insert("_users".into(), json!("users/"));
        }
        properties.insert("resource".into(), Value::Object(resource));
        properties.remove("options");
        properties.remove("provisioningState");
        Ok(())
    }

    async fn role_definition_document(
        &self,
        id: &str,
        name: &str,
        document: &mut Map<String, Value>,
        previous: Option<&Value>,
    ) -> Result<(), EngineError> {
        if openmi_model::ids::parse_guid(name).is_err() {
            return Err(bad(format!(
                "The role definition name '{name}' must be a GUID."
            )));
        }
        if previous
            .and_then(|p| p.pointer("/properties/type"))
            .and_then(Value::as_str)
            == Some("BuiltInRole")
        {
            return Err(EngineError::BuiltInRoleReadOnly(name.to_string()));
        }
        let account_id = account_id_of(id).ok_or_else(|| bad("no account in the id"))?;
        document.remove("location");
        document.remove("tags");
        let properties = document
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| bad("The 'properties' property must be an object."))?;
        let role_name = properties
            .get("roleName")
            .and_then(Value::as_str)
            .filter(|role| !role.is_empty())
            .ok_or_else(|| bad("The role definition needs a roleName."))?
            .to_string();
        let permissions = properties
            .get("permissions")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| bad("The role definition needs permissions."))?;
        for permission in &permissions {
            if permission
                .get("notDataActions")
                .and_then(Value::as_array)
                .is_some_and(|n| !n.is_empty())
            {
                return Err(bad(
                    "'notDataActions' is not supported by Cosmos DB data-plane roles.",
                ));
            }
            for action in permission
                .get("dataActions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let action = action.as_str().unwrap_or_default();
                if !action
                    .to_lowercase()
                    .starts_with(&DATA_ACTION_PREFIX.to_lowercase())
                {
                    return Err(bad(format!("The data action '{action}' is not a Cosmos DB data action ({DATA_ACTION_PREFIX}...).")));
                }
            }
        }
        let scopes: Vec<String> = properties
            .get("assignableScopes")
            .and_then(Value::as_array)
            .map(|scopes| {
                scopes
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_else(|| vec![account_id.clone()]);
        let scopes = scopes
            .iter()
            .map(|scope| full_scope(&account_id, scope))
            .collect::<Result<Vec<_>, _>>()?;
        properties.insert("roleName".into(), json!(role_name));
        properties.insert("type".into(), json!("CustomRole"));
        properties.insert("assignableScopes".into(), json!(scopes));
        properties.insert(
            "permissions".into(),
            json!(permissions.iter().map(|p| json!({"dataActions": p.get("dataActions").cloned().unwrap_or(json!([])), "notDataActions": []})).collect::<Vec<_>>()),
        );
        Ok(())
    }

    async fn role_assignment_document(
        &self,
        id: &str,
        name: &str,
        document: &mut Map<String, Value>,
    ) -> Result<(), EngineError> {
        if openmi_model::ids::parse_guid(name).is_err() {
            return Err(bad(format!(
                "The role assignment name '{name}' must be a GUID."
            )));
        }
        let account_id = account_id_of(id).ok_or_else(|| bad("no account in the id"))?;
        document.remove("location");
        document.remove("tags");
        let properties = document
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| bad("The 'properties' property must be an object."))?;
        let role_id = properties
            .get("roleDefinitionId")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("The role assignment needs a roleDefinitionId."))?
            .to_string();
        // A bare GUID names a role of this account, as az accepts it.
        let role_id = if role_id.starts_with('/') {
            role_id
        } else {
            format!("{account_id}/sqlRoleDefinitions/{role_id}")
        };
        let role = self
            .store()
            .resource(&resource_key(&role_id))
            .await?
            .filter(|record| record.type_key == ROLE_DEFINITION_TYPE.to_lowercase())
            .ok_or_else(|| {
                bad(format!(
                    "The role definition '{role_id}' does not exist in the account."
                ))
            })?;
        let scope = properties
            .get("scope")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("The role assignment needs a scope."))?;
        let scope = full_scope(&account_id, scope)?;
        let role_document: Value = serde_json::from_str(&role.body).unwrap_or_default();
        let assignable = role_document
            .pointer("/properties/assignableScopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|assignable| is_within(&scope, assignable));
        if !assignable {
            return Err(bad(format!(
                "The scope '{scope}' is not within the role definition's assignable scopes."
            )));
        }
        let principal = properties
            .get("principalId")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("The role assignment needs a principalId."))?
            .to_string();
        let principal_id = principal
            .parse()
            .map_err(|_| bad(format!("The principalId '{principal}' is not a GUID.")))?;
        if self.store().principal(principal_id).await?.is_none() {
            return Err(EngineError::PrincipalNotFound {
                principal,
                tenant: self.tenant().id.to_string(),
            });
        }
        properties.insert("roleDefinitionId".into(), json!(role.id));
        properties.insert("scope".into(), json!(scope));
        properties.insert("principalId".into(), json!(principal));
        properties.insert("provisioningState".into(), json!("Succeeded"));
        Ok(())
    }

    /// `POST .../databaseAccounts/{a}/listKeys|listReadOnlyKeys|listConnectionStrings|regenerateKey`.
    pub async fn cosmos_account_action(
        &self,
        caller: &Caller,
        path: &ArmPath,
        action: &str,
        body: Option<&Value>,
    ) -> Result<Value, EngineError> {
        let account_id = path.to_id();
        let lower = action.to_lowercase();
        let action_name = match lower.as_str() {
            "listkeys" => "listKeys",
            "listreadonlykeys" => "readonlykeys",
            "listconnectionstrings" => "listConnectionStrings",
            "regeneratekey" => "regenerateKey",
            _ => return Err(EngineError::NotFound),
        };
        self.authorize(
            caller,
            &format!("{ACCOUNT_TYPE}/{action_name}/action"),
            &account_id,
        )?;
        let account = self.resource_get(caller, path).await?;
        let mut keys = self.cosmos_keys(&account_id).await?;
        let read_only = json!({
            "primaryReadonlyMasterKey": keys["primaryReadonlyMasterKey"],
            "secondaryReadonlyMasterKey": keys["secondaryReadonlyMasterKey"],
        });
        match lower.as_str() {
            "listkeys" => Ok(keys),
            "listreadonlykeys" => Ok(read_only),
            "listconnectionstrings" => {
                let endpoint = account
                    .pointer("/properties/documentEndpoint")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let entry = |key: &str, description: &str, kind: &str| {
                    json!({
                        "connectionString": format!("AccountEndpoint={endpoint};AccountKey={};", keys[key].as_str().unwrap_or_default()),
                        "description": description, "keyKind": kind, "type": "Sql",
                    })
                };
                Ok(json!({"connectionStrings": [
                    entry("primaryMasterKey", "Primary SQL Connection String", "Primary"),
                    entry("secondaryMasterKey", "Secondary SQL Connection String", "Secondary"),
                    entry("primaryReadonlyMasterKey", "Primary Read-Only SQL Connection String", "PrimaryReadonly"),
                    entry("secondaryReadonlyMasterKey", "Secondary Read-Only SQL Connection String", "SecondaryReadonly"),
                ]}))
            }
            _ => {
                let kind = body
                    .and_then(|b| b.get("keyKind"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_lowercase();
                let field = match kind.as_str() {
                    "primary" => "primaryMasterKey",
                    "secondary" => "secondaryMasterKey",
                    "primaryreadonly" => "primaryReadonlyMasterKey",
                    "secondaryreadonly" => "secondaryReadonlyMasterKey",
                    _ => return Err(bad("'keyKind' must be primary, secondary, primaryReadonly or secondaryReadonly.")),
                };
                keys[field] = json!(new_key());
                self.store_cosmos_keys(&account_id, &keys).await?;
                Ok(Value::Null)
            }
        }
    }

    /// The account's four keys, opened.
    pub(crate) async fn cosmos_keys(&self, account_id: &str) -> Result<Value, EngineError> {
        let record = self
            .store()
            .resource(&resource_key(&format!("{account_id}/openmiKeys/default")))
            .await?
            .ok_or(EngineError::NotFound)?;
        let sealed: Value = serde_json::from_str(&record.body)
            .map_err(|_| EngineError::Internal("EN0602 damaged key row".into()))?;
        let opened = self
            .inner
            .kek
            .open(
                &format!("cosmos-keys:{}", resource_key(account_id)),
                sealed["sealed"].as_str().unwrap_or_default(),
            )
            .map_err(|_| EngineError::Internal("EN0603 cannot open the account keys".into()))?;
        serde_json::from_slice(&opened)
            .map_err(|_| EngineError::Internal("EN0604 damaged keys".into()))
    }

    async fn store_cosmos_keys(&self, account_id: &str, keys: &Value) -> Result<(), EngineError> {
        let key = resource_key(&format!("{account_id}/openmiKeys/default"));
        let record = self
            .store()
            .resource(&key)
            .await?
            .ok_or(EngineError::NotFound)?;
        let sealed = self
            .inner
            .kek
            .seal(
                &format!("cosmos-keys:{}", resource_key(account_id)),
                keys.to_string().as_bytes(),
            )
            .map_err(|error| {
                EngineError::Internal(format!("EN0601 cannot seal account keys: {error}"))
            })?;
        let now = self.now();
        self.apply_change(&ResourceChange {
            upserts: vec![ResourceRecord {
                body: json!({"sealed": sealed}).to_string(),
                updated_at: now,
                ..record
            }],
            ..ResourceChange::default()
        })
        .await?;
        self.forget_cosmos_account(account_id);
        Ok(())
    }
}

/// Whether a stored record is one of an account's built-in data roles (read-only).
pub(crate) fn is_builtin_role(record: &ResourceRecord) -> bool {
    record.type_key == ROLE_DEFINITION_TYPE.to_lowercase()
        && serde_json::from_str::<Value>(&record.body)
            .ok()
            .and_then(|body| {
                body.pointer("/properties/type")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .as_deref()
            == Some("BuiltInRole")
}

/// Whether data-plane scope `scope` is `outer` or inside it (segment-wise, case-insensitive).
pub(crate) fn is_within(scope: &str, outer: &str) -> bool {
    let scope = scope.to_lowercase();
    let outer = outer.to_lowercase().trim_end_matches('/').to_string();
    scope == outer || scope.starts_with(&format!("{outer}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str =
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acct";

    #[test]
    fn scopes_in_every_form() {
        assert_eq!(full_scope(ACCOUNT, "/").unwrap(), ACCOUNT);
        assert_eq!(
            full_scope(ACCOUNT, "/dbs/db").unwrap(),
            format!("{ACCOUNT}/dbs/db")
        );
        assert_eq!(
            full_scope(ACCOUNT, "/dbs/db/colls/c/").unwrap(),
            format!("{ACCOUNT}/dbs/db/colls/c")
        );
        assert_eq!(
            full_scope(ACCOUNT, &format!("{ACCOUNT}/dbs/db")).unwrap(),
            format!("{ACCOUNT}/dbs/db")
        );
        assert!(full_scope(ACCOUNT, "/dbs").is_err());
        assert!(full_scope(ACCOUNT, "/subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/other").is_err());
        assert!(is_within(
            &format!("{ACCOUNT}/dbs/db/colls/c"),
            &format!("{ACCOUNT}/dbs/db")
        ));
        assert!(!is_within(
            &format!("{ACCOUNT}/dbs/db2"),
            &format!("{ACCOUNT}/dbs/db")
        ));
        assert_eq!(
            account_id_of(&format!("{ACCOUNT}/sqlRoleAssignments/x")).as_deref(),
            Some(ACCOUNT)
        );
    }

    #[test]
    fn keys_look_like_azures() {
        assert_eq!(new_key().len(), 88);
    }
}
