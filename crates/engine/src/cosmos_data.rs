//! The Cosmos DB for NoSQL data plane (issue 17, research/protocols.md §5.3): the account
//! document, databases and containers (the same rows as ARM's `sqlDatabases`/`containers`,
//! written through the one write path), items (create, upsert, replace, read, delete, patch,
//! with ETag preconditions, TTL and partition keys), queries (openmi-cosmos-query, answered whole
//! on one partition-key range so the SDKs pass results through), the read feed, the change feed
//! (latest version) and `/pkranges`.
//!
//! Entra callers may only do what their data-plane roles grant and, as on Azure, never create or
//! delete databases or containers (403/5300: that is ARM's job); account keys may do everything,
//! read-only keys only read. Replies carry Cosmos's status, substatus and words.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use openmi_cosmos_query::{CurrentTime, QueryError};
use openmi_model::arm::{resource_key, ArmPath};
use openmi_store::{ItemWrite, StoreError, StoredItem};
use serde_json::{json, Map, Value};

use crate::cosmos::{CONTAINER_TYPE, DATABASE_TYPE};
use crate::cosmos_auth::{CosmosAccount, CosmosCaller, CosmosFailure};
use crate::cosmos_epk::EpkRange;
use crate::{Caller, Engine, EngineError};

/// Most items a page holds when the client asks for none or for "as many as fit" (-1).
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The page a client asks for with `x-ms-max-item-count` (none or -1: the default).
fn page_size(max_items: Option<i64>) -> usize {
    match max_items {
        Some(n) if n > 0 => (n as usize).min(MAX_PAGE),
        _ => DEFAULT_PAGE,
    }
}

/// A data-plane answer: status, body, and the headers Cosmos sends.
#[derive(Debug, Clone, Default)]
pub struct CosmosReply {
    pub status: u16,
    pub body: Option<Value>,
    /// A body already in JSON text (a stored item, sent as stored), instead of `body`.
    pub raw: Option<String>,
    pub etag: Option<String>,
    pub continuation: Option<String>,
    pub item_count: Option<usize>,
    pub request_charge: f64,
    /// The store's sequence number after the request (session tokens, `lsn`).
    pub lsn: Option<i64>,
}

impl CosmosReply {
    fn json(status: u16, body: Value) -> CosmosReply {
        let etag = body
            .get("_etag")
            .and_then(Value::as_str)
            .map(str::to_string);
        CosmosReply {
            status,
            body: Some(body),
            etag,
            request_charge: 1.0,
            ..CosmosReply::default()
        }
    }
}

/// How an item write treats an existing item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemWriteMode {
    Create,
    Upsert,
    Replace,
}

/// Cosmos DB's largest item, in bytes of its JSON.
const MAX_ITEM_BYTES: usize = 2 * 1024 * 1024;

fn bad_request(message: impl Into<String>) -> CosmosFailure {
    CosmosFailure::new(400, 0, "BadRequest", message)
}

fn not_found() -> CosmosFailure {
    CosmosFailure::new(
        404,
        0,
        "NotFound",
        "Entity with the specified id does not exist in the system.",
    )
}

fn internal(error: impl std::fmt::Display) -> CosmosFailure {
    tracing::error!(error = %error, "cosmos data plane failed");
    CosmosFailure::new(500, 0, "InternalServerError", "An internal error occurred.")
}

fn from_engine(error: EngineError) -> CosmosFailure {
    match error.arm() {
        Some(failure) if failure.status == 404 => not_found(),
        Some(failure) if failure.status == 409 => CosmosFailure::new(
            409,
            0,
            "Conflict",
            "Entity with the specified id already exists in the system.",
        ),
        Some(failure) if failure.status < 500 => {
            CosmosFailure::new(failure.status, 0, "BadRequest", failure.message)
        }
        _ => internal(error),
    }
}

fn from_store(error: StoreError) -> CosmosFailure {
    match error {
        StoreError::NotFound => not_found(),
        StoreError::AlreadyExists => CosmosFailure::new(
            409,
            0,
            "Conflict",
            "Entity with the specified id already exists in the system.",
        ),
        StoreError::PreconditionFailed => CosmosFailure::new(
            412,
            0,
            "PreconditionFailed",
            "Operation cannot be performed because one of the specified precondition is not met.",
        ),
        other => internal(other),
    }
}

fn query_failure(error: QueryError) -> CosmosFailure {
    let message = match error.position() {
        Some(position) => format!(
            "{error} (line {}, column {})",
            position.line, position.column
        ),
        None => error.to_string(),
    };
    CosmosFailure::new(
        400,
        0,
        "BadRequest",
        format!(
            "Message: {{\"errors\":[{{\"severity\":\"Error\",\"message\":{}}}]}}",
            json!(message)
        ),
    )
}

/// A new item `_rid` (base64 of random bytes, `-` for `/`).
fn new_rid() -> String {
    base64::engine::general_purpose::STANDARD
        .encode(&uuid::Uuid::new_v4().as_bytes()[..8])
        .replace('/', "-")
}

fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4())
}

/// An item's partition-key values at the container's paths: a missing one is `{}` (Cosmos's
/// "undefined"), as the SDKs send it for a document without the property.
fn partition_values(document: &Value, paths: &[String]) -> Vec<Value> {
    paths
        .iter()
        .map(|path| {
            let mut current = Some(document);
            for segment in path.trim_start_matches('/').split('/') {
                current = current.and_then(|value| value.get(segment));
            }
            current.cloned().unwrap_or_else(|| json!({}))
        })
        .collect()
}

/// The canonical text of a partition-key value list (the store's key).
fn canonical(values: &[Value]) -> String {
    Value::Array(values.to_vec()).to_string()
}

/// A container parsed once per version of its record (see `CosmosCache::containers`).
pub(crate) type ParsedContainer = (Arc<openmi_store::ResourceRecord>, Arc<Container>);

/// A container as the data plane needs it.
#[derive(Debug)]
pub(crate) struct Container {
    key: String,
    resource: Value,
    paths: Vec<String>,
    default_ttl: Option<i64>,
    /// `Hash` or `MultiHash`, and the hash version (1 or 2), for effective partition keys.
    kind: String,
    version: i64,
}

impl Container {
    /// Whether a stored document lies in every one of a request's EPK ranges.
    fn in_epk_range(&self, document: &Value, ranges: &[EpkRange]) -> Result<bool, CosmosFailure> {
        if ranges.is_empty() {
            return Ok(true);
        }
        let values = partition_values(document, &self.paths);
        let components: Vec<Option<&Value>> = values.iter().map(Some).collect();
        let epk = crate::cosmos_epk::effective_partition_key(&components, &self.kind, self.version)
            .map_err(bad_request)?;
        Ok(ranges.iter().all(|range| range.contains(&epk)))
    }

    /// What a feed or query request's `x-ms-documentdb-partitionkey` and EPK bounds narrow it
    /// to: one partition (canonical key), or none with EPK ranges to filter by (the request's,
    /// and a hierarchical key's prefix, which is no one partition).
    fn request_scope(
        &self,
        header: Option<&str>,
        epk: Option<&EpkRange>,
    ) -> Result<(Option<String>, Vec<EpkRange>), CosmosFailure> {
        let mut ranges: Vec<EpkRange> = epk.into_iter().cloned().collect();
        let Some(header) = header else {
            return Ok((None, ranges));
        };
        let values = Engine::request_partition(self, Some(header), None)?;
        match self.prefix_range(&values)? {
            Some(range) => {
                ranges.push(range);
                Ok((None, ranges))
            }
            None => Ok((Some(canonical(&values)), ranges)),
        }
    }

    /// The EPK range of a hierarchical key's prefix (fewer values than paths): the prefix's
    /// hashes, to the prefix followed by `FF` (as the SDKs' `_get_epk_range_for_prefix_partition_key`).
    fn prefix_range(&self, values: &[Value]) -> Result<Option<EpkRange>, CosmosFailure> {
        if values.is_empty() || values.len() >= self.paths.len() {
            return Ok(None);
        }
        if !self.kind.eq_ignore_ascii_case("MultiHash") {
            return Err(bad_request("Partition key provided either doesn't correspond to definition in the collection or doesn't match partition key field values specified in the document."));
        }
        let components: Vec<Option<&Value>> = values.iter().map(Some).collect();
        let start =
            crate::cosmos_epk::effective_partition_key(&components, &self.kind, self.version)
                .map_err(bad_request)?;
        let end = format!("{start}FF");
        Ok(Some(EpkRange { start, end }))
    }
}

impl Engine {
    /// The synthetic ARM caller for writes authorised by an account key (it appears as the
    /// creator in `systemData`).
    fn key_caller(&self) -> Caller {
        Caller {
            object_id: openmi_model::ObjectId::from_uuid(uuid::Uuid::nil()),
            tenant_id: self.tenant().id,
            client_id: String::new(),
            is_user: false,
            name: None,
            expires_at: i64::MAX,
        }
    }

    fn database_id(account: &CosmosAccount, db: &str) -> String {
        format!("{}/sqlDatabases/{db}", account.id)
    }

    fn container_id(account: &CosmosAccount, db: &str, container: &str) -> String {
        format!("{}/sqlDatabases/{db}/containers/{container}", account.id)
    }

    /// The data plane refuses management operations for Entra callers, as Cosmos does.
    fn management_allowed(
        account: &CosmosAccount,
        caller: &CosmosCaller,
        verb: &str,
        resource: &str,
    ) -> Result<(), CosmosFailure> {
        match caller {
            CosmosCaller::Key { read_only: false } => Ok(()),
            CosmosCaller::Key { read_only: true } => Err(CosmosFailure::new(403, 0, "Forbidden", "Request is blocked because the read-only key cannot perform write operations.")),
            CosmosCaller::Principal(_) => Err(CosmosFailure::new(
                403,
                5300,
                "Forbidden",
                format!("Request blocked by Auth {} : Operation '{verb}' on resource '{resource}' is not allowed through Azure Cosmos DB endpoint. Please switch on such operations for your account, or perform this operation through Azure Resource Manager, Azure Portal, Azure CLI or Azure Powershell", account.name),
            )),
        }
    }

    /// `GET /`: the account document the SDKs read first; every location lists this account's
    /// own data-plane URL, so the SDKs keep talking to it. Cosmos lets a principal read it with
    /// `readMetadata` at any scope inside the account: a role on one container is enough for an
    /// SDK to start (the container's metadata itself still needs the role at the container).
    pub fn cosmos_read_account(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
    ) -> Result<CosmosReply, CosmosFailure> {
        self.cosmos_authorize_somewhere(account, caller, "readMetadata")?;
        Ok(self.cosmos_account_document(account))
    }

    fn cosmos_account_document(&self, account: &CosmosAccount) -> CosmosReply {
        let endpoint = self.cosmos_endpoint(&account.name);
        let location = json!([{"name": "West US", "databaseAccountEndpoint": endpoint}]);
        CosmosReply::json(
            200,
            json!({
                "_self": "",
                "id": account.name,
                "_rid": format!("{}.documents.azure.com", account.name),
                "media": "//media/",
                "addresses": "//addresses/",
                "_dbs": "//dbs/",
                "writableLocations": location,
                "readableLocations": location,
                "enableMultipleWriteLocations": false,
                "continuousBackupEnabled": false,
                "enableNRegionSynchronousCommit": false,
                "enablePerPartitionFailoverBehavior": false,
                "userReplicationPolicy": {"asyncReplication": false, "minReplicaSetSize": 3, "maxReplicasetSize": 4},
                "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
                "systemReplicationPolicy": {"minReplicaSetSize": 3, "maxReplicasetSize": 4},
                "readPolicy": {"primaryReadCoefficient": 1, "secondaryReadCoefficient": 1},
                "queryEngineConfiguration": "{\"maxSqlQueryInputLength\":262144,\"maxJoinsPerSqlQuery\":5,\"maxLogicalAndPerSqlQuery\":500,\"maxLogicalOrPerSqlQuery\":500,\"maxUdfRefPerSqlQuery\":10,\"maxInExpressionItemsCount\":16000,\"queryMaxInMemorySortDocumentCount\":500,\"maxQueryRequestTimeoutFraction\":0.9,\"sqlAllowNonFiniteNumbers\":false,\"sqlAllowAggregateFunctions\":true,\"sqlAllowSubQuery\":true,\"sqlAllowScalarSubQuery\":true,\"allowNewKeywords\":true,\"sqlAllowLike\":true,\"sqlAllowGroupByClause\":true,\"maxSpatialQueryCells\":12,\"spatialMaxGeometryPointCount\":256,\"sqlDisableOptimizationFlags\":0,\"sqlAllowTop\":true,\"enableSpatialIndexing\":true}",
            }),
        )
    }

    /// `POST /dbs`
    pub async fn cosmos_database_create(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        body: &Value,
    ) -> Result<CosmosReply, CosmosFailure> {
        Self::management_allowed(account, caller, "POST", "dbs")?;
        let id = body
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| bad_request("The database needs an id."))?;
        let arm_id = Self::database_id(account, id);
        if self
            .store()
            .resource(&resource_key(&arm_id))
            .await
            .map_err(from_store)?
            .is_some()
        {
            return Err(from_store(StoreError::AlreadyExists));
        }
        let path = ArmPath::parse(&arm_id).map_err(|error| bad_request(error.to_string()))?;
        let written = self
            .resource_write(
                &self.key_caller(),
                &path,
                &json!({"properties": {"resource": {"id": id}}}),
                false,
                false,
            )
            .await
            .map_err(from_engine)?;
        let resource = written
            .body()
            .pointer("/properties/resource")
            .cloned()
            .unwrap_or(Value::Null);
        Ok(CosmosReply::json(201, resource))
    }

    async fn cosmos_database(
        &self,
        account: &CosmosAccount,
        db: &str,
    ) -> Result<Value, CosmosFailure> {
        let record = self
            .cached_resource(&resource_key(&Self::database_id(account, db)))
            .await
            .map_err(from_engine)?
            .ok_or_else(not_found)?;
        let document: Value = serde_json::from_str(&record.body).map_err(internal)?;
        Ok(document
            .pointer("/properties/resource")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// `GET /dbs/{db}`
    pub async fn cosmos_database_read(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
    ) -> Result<CosmosReply, CosmosFailure> {
        self.cosmos_authorize(
            account,
            caller,
            "readMetadata",
            &format!("/dbs/{db}"),
            false,
        )?;
        Ok(CosmosReply::json(
            200,
            self.cosmos_database(account, db).await?,
        ))
    }

    /// `GET /dbs`
    pub async fn cosmos_database_list(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
    ) -> Result<CosmosReply, CosmosFailure> {
        self.cosmos_authorize(account, caller, "readMetadata", "/", false)?;
        let databases: Vec<Value> = self
            .store()
            .resource_children(&account.key)
            .await
            .map_err(from_store)?
            .iter()
            .filter(|record| record.type_key == DATABASE_TYPE.to_lowercase())
            .filter_map(|record| serde_json::from_str::<Value>(&record.body).ok())
            .filter_map(|document| document.pointer("/properties/resource").cloned())
            .collect();
        let count = databases.len();
        let mut reply = CosmosReply::json(
            200,
            json!({"_rid": "", "Databases": databases, "_count": count}),
        );
        reply.item_count = Some(count);
        Ok(reply)
    }

    /// `DELETE /dbs/{db}`: the database, its containers and their items.
    pub async fn cosmos_database_delete(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
    ) -> Result<CosmosReply, CosmosFailure> {
        Self::management_allowed(account, caller, "DELETE", &format!("dbs/{db}"))?;
        self.delete_cosmos_child(&Self::database_id(account, db))
            .await
    }

    async fn delete_cosmos_child(&self, arm_id: &str) -> Result<CosmosReply, CosmosFailure> {
        let key = resource_key(arm_id);
        if self
            .store()
            .resource(&key)
            .await
            .map_err(from_store)?
            .is_none()
        {
            return Err(not_found());
        }
        self.apply_change(&openmi_store::ResourceChange {
            deletes: vec![key],
            ..Default::default()
        })
        .await
        .map_err(from_store)?;
        Ok(CosmosReply {
            status: 204,
            request_charge: 1.0,
            ..CosmosReply::default()
        })
    }

    /// `POST /dbs/{db}/colls` (`PUT /dbs/{db}/colls/{c}` replaces with `replace`).
    pub async fn cosmos_container_write(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        body: &Value,
        replace: Option<&str>,
    ) -> Result<CosmosReply, CosmosFailure> {
        let verb = if replace.is_some() { "PUT" } else { "POST" };
        Self::management_allowed(account, caller, verb, &format!("dbs/{db}/colls"))?;
        self.cosmos_database(account, db).await?;
        let id = body
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| bad_request("The container needs an id."))?;
        if replace.is_some_and(|name| name != id) {
            return Err(bad_request(
                "The id in the body does not match the container in the URL.",
            ));
        }
        let arm_id = Self::container_id(account, db, id);
        let exists = self
            .store()
            .resource(&resource_key(&arm_id))
            .await
            .map_err(from_store)?
            .is_some();
        match (exists, replace.is_some()) {
            (true, false) => return Err(from_store(StoreError::AlreadyExists)),
            (false, true) => return Err(not_found()),
            _ => {}
        }
        let mut resource = body
            .as_object()
            .cloned()
            .ok_or_else(|| bad_request("The body must be a JSON object."))?;
        for key in [
            "_rid",
            "_self",
            "_etag",
            "_ts",
            "_docs",
            "_sprocs",
            "_triggers",
            "_udfs",
            "_conflicts",
        ] {
            resource.remove(key);
        }
        let path = ArmPath::parse(&arm_id).map_err(|error| bad_request(error.to_string()))?;
        let written = self
            .resource_write(
                &self.key_caller(),
                &path,
                &json!({"properties": {"resource": resource}}),
                false,
                false,
            )
            .await
            .map_err(from_engine)?;
        let resource = written
            .body()
            .pointer("/properties/resource")
            .cloned()
            .unwrap_or(Value::Null);
        Ok(CosmosReply::json(
            if replace.is_some() { 200 } else { 201 },
            resource,
        ))
    }

    async fn cosmos_container(
        &self,
        account: &CosmosAccount,
        db: &str,
        name: &str,
    ) -> Result<Arc<Container>, CosmosFailure> {
        let arm_id = Self::container_id(account, db, name);
        let key = resource_key(&arm_id);
        let record = self
            .cached_resource(&key)
            .await
            .map_err(from_engine)?
            .ok_or_else(not_found)?;
        let cache = &self.inner.read_cache.cosmos().containers;
        if let Some((_, parsed)) = cache
            .lock()
            .ok()
            .and_then(|containers| containers.get(&key).cloned())
            .filter(|(source, _)| Arc::ptr_eq(source, &record))
        {
            return Ok(parsed);
        }
        let document: Value = serde_json::from_str(&record.body).map_err(internal)?;
        let resource = document
            .pointer("/properties/resource")
            .cloned()
            .unwrap_or(Value::Null);
        let paths = resource
            .pointer("/partitionKey/paths")
            .and_then(Value::as_array)
            .map(|paths| {
                paths
                    .iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let default_ttl = resource.get("defaultTtl").and_then(Value::as_i64);
        let kind = resource
            .pointer("/partitionKey/kind")
            .and_then(Value::as_str)
            .unwrap_or("Hash")
            .to_string();
        // A definition without a version is version 1 on Azure; the SDKs create version 2.
        let version = resource
            .pointer("/partitionKey/version")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let parsed = Arc::new(Container {
            key: key.clone(),
            resource,
            paths,
            default_ttl,
            kind,
            version,
        });
        if let Ok(mut containers) = cache.lock() {
            if containers.len() >= 4096 {
                containers.clear();
            }
            containers.insert(key, (record, parsed.clone()));
        }
        Ok(parsed)
    }

    /// `GET /dbs/{db}/colls/{c}`
    pub async fn cosmos_container_read(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        name: &str,
    ) -> Result<CosmosReply, CosmosFailure> {
        self.cosmos_authorize(
            account,
            caller,
            "readMetadata",
            &format!("/dbs/{db}/colls/{name}"),
            false,
        )?;
        Ok(CosmosReply::json(
            200,
            self.cosmos_container(account, db, name)
                .await?
                .resource
                .clone(),
        ))
    }

    /// `GET /dbs/{db}/colls`
    pub async fn cosmos_container_list(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
    ) -> Result<CosmosReply, CosmosFailure> {
        self.cosmos_authorize(
            account,
            caller,
            "readMetadata",
            &format!("/dbs/{db}"),
            false,
        )?;
        let database = self.cosmos_database(account, db).await?;
        let db_key = resource_key(&Self::database_id(account, db));
        let containers: Vec<Value> = self
            .store()
            .resource_children(&db_key)
            .await
            .map_err(from_store)?
            .iter()
            .filter(|record| record.type_key == CONTAINER_TYPE.to_lowercase())
            .filter_map(|record| serde_json::from_str::<Value>(&record.body).ok())
            .filter_map(|document| document.pointer("/properties/resource").cloned())
            .collect();
        let count = containers.len();
        let mut reply = CosmosReply::json(
            200,
            json!({"_rid": database.get("_rid"), "DocumentCollections": containers, "_count": count}),
        );
        reply.item_count = Some(count);
        Ok(reply)
    }

    /// `DELETE /dbs/{db}/colls/{c}`
    pub async fn cosmos_container_delete(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        name: &str,
    ) -> Result<CosmosReply, CosmosFailure> {
        Self::management_allowed(account, caller, "DELETE", &format!("dbs/{db}/colls/{name}"))?;
        self.delete_cosmos_child(&Self::container_id(account, db, name))
            .await
    }

    /// `GET /dbs/{db}/colls/{c}/pkranges`: one range covering every partition key, so the SDKs
    /// send each query once and pass its results through.
    pub async fn cosmos_partition_key_ranges(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        name: &str,
    ) -> Result<CosmosReply, CosmosFailure> {
        self.cosmos_authorize(
            account,
            caller,
            "readMetadata",
            &format!("/dbs/{db}/colls/{name}"),
            false,
        )?;
        let container = self.cosmos_container(account, db, name).await?;
        let rid = container
            .resource
            .get("_rid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let range = json!({
            "_rid": format!("{rid}AgAAAAAAAAA="), "id": "0", "_etag": "\"00000000-0000-0000-0000-000000000000\"",
            "minInclusive": "", "maxExclusive": "FF", "ridPrefix": 0, "_self": format!("{}pkranges/{rid}AgAAAAAAAAA=/", container.resource.get("_self").and_then(Value::as_str).unwrap_or_default()),
            "throughputFraction": 1, "status": "online", "parents": [], "_ts": container.resource.get("_ts"), "_lsn": 1,
        });
        let mut reply = CosmosReply::json(
            200,
            json!({"_rid": rid, "PartitionKeyRanges": [range], "_count": 1}),
        );
        reply.etag = Some("\"1\"".to_string());
        reply.item_count = Some(1);
        Ok(reply)
    }

    /// The partition-key values of a request: from the `x-ms-documentdb-partitionkey` header
    /// (a JSON array, `[{}]` for "none"), else from the document.
    fn request_partition(
        container: &Container,
        header: Option<&str>,
        document: Option<&Value>,
    ) -> Result<Vec<Value>, CosmosFailure> {
        match header {
            Some(text) => {
                let values: Vec<Value> = serde_json::from_str(text).map_err(|_| {
                    bad_request(format!("The partition key '{text}' is not a JSON array."))
                })?;
                if values.len() > container.paths.len().max(1) {
                    return Err(bad_request("Partition key provided either doesn't correspond to definition in the collection or doesn't match partition key field values specified in the document."));
                }
                Ok(values)
            }
            None => match document {
                Some(document) => Ok(partition_values(document, &container.paths)),
                None => Err(bad_request(
                    "PartitionKey value must be supplied for this operation.",
                )),
            },
        }
    }

    fn expiry(
        container: &Container,
        document: &Value,
        now: i64,
    ) -> Result<Option<i64>, CosmosFailure> {
        let Some(default_ttl) = container.default_ttl else {
            return Ok(None);
        };
        let ttl = match document.get("ttl") {
            None | Some(Value::Null) => default_ttl,
            Some(value) => value
                .as_i64()
                .filter(|ttl| *ttl == -1 || *ttl > 0)
                .ok_or_else(|| {
                    bad_request("The 'ttl' of an item must be -1 or a positive number of seconds.")
                })?,
        };
        Ok((ttl > 0).then_some(now + ttl))
    }

    /// The stored form of a document: the client's properties plus the system ones.
    fn stored_document(
        container: &Container,
        mut document: Map<String, Value>,
        now: i64,
        etag: &str,
        rid: &str,
    ) -> Value {
        let container_self = container
            .resource
            .get("_self")
            .and_then(Value::as_str)
            .unwrap_or_default();
        document.insert("_rid".into(), json!(rid));
        document.insert(
            "_self".into(),
            json!(format!("{container_self}docs/{rid}/")),
        );
        document.insert("_etag".into(), json!(etag));
        document.insert("_attachments".into(), json!("attachments/"));
        document.insert("_ts".into(), json!(now));
        Value::Object(document)
    }

    /// `POST .../docs` (create, or upsert with `x-ms-documentdb-is-upsert`) and `PUT .../docs/{id}`.
    #[allow(clippy::too_many_arguments)] // The request taken apart once.
    pub async fn cosmos_item_write(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        name: &str,
        mode: ItemWriteMode,
        id_in_url: Option<&str>,
        partition_header: Option<&str>,
        if_match: Option<&str>,
        body: &Value,
    ) -> Result<CosmosReply, CosmosFailure> {
        let action = match mode {
            ItemWriteMode::Create => "items/create",
            ItemWriteMode::Upsert => "items/upsert",
            ItemWriteMode::Replace => "items/replace",
        };
        self.cosmos_authorize(
            account,
            caller,
            &format!("sqlDatabases/containers/{action}"),
            &format!("/dbs/{db}/colls/{name}"),
            true,
        )?;
        let container = self.cosmos_container(account, db, name).await?;
        let mut document = body
            .as_object()
            .cloned()
            .ok_or_else(|| bad_request("The document must be a JSON object."))?;
        let id = document.get("id").and_then(Value::as_str).ok_or_else(|| bad_request("The input content is invalid because the required properties - 'id; ' - are missing"))?.to_string();
        if id.is_empty() || id.len() > 1023 || id.contains(['/', '\\', '?', '#']) {
            return Err(bad_request("The input name is invalid. Ensure to provide a unique non-empty string less than '1024' characters without '/', '\\', '?' or '#'."));
        }
        if id_in_url.is_some_and(|url_id| url_id != id) {
            return Err(bad_request(
                "The id in the URL does not match the id of the document.",
            ));
        }
        for key in ["_rid", "_self", "_etag", "_attachments", "_ts", "_lsn"] {
            document.remove(key);
        }
        let values = Self::request_partition(
            &container,
            partition_header,
            Some(&Value::Object(document.clone())),
        )?;
        let from_document = partition_values(&Value::Object(document.clone()), &container.paths);
        if values != from_document[..values.len().min(from_document.len())]
            && !(values == [json!({})] && from_document.iter().all(|v| v == &json!({})))
        {
            return Err(bad_request("PartitionKey extracted from document doesn't match the one specified in the header. Learn more: https://aka.ms/CosmosDB/sql/errors/wrong-pk-value"));
        }
        let now = self.now();
        let etag = new_etag();
        let partition = canonical(&from_document);
        let existing = self
            .store()
            .item(&container.key, &partition, &id, now)
            .await
            .map_err(from_store)?;
        let rid = existing
            .as_ref()
            .and_then(|item| serde_json::from_str::<Value>(&item.body).ok())
            .and_then(|body| body.get("_rid").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(new_rid);
        let stored = Self::stored_document(&container, document, now, &etag, &rid);
        let item = StoredItem {
            container_key: container.key.clone(),
            partition_key: partition,
            id,
            body: stored.to_string(),
            etag,
            ts: now,
            lsn: 0,
            expires_at: Self::expiry(&container, &stored, now)?,
        };
        let if_match = if_match.map(str::to_string);
        let write = match mode {
            ItemWriteMode::Create => ItemWrite::Create { item, now },
            ItemWriteMode::Upsert => ItemWrite::Upsert {
                item,
                if_match,
                now,
            },
            ItemWriteMode::Replace => ItemWrite::Replace {
                item,
                if_match,
                now,
            },
        };
        let outcome = self
            .store()
            .apply_items(vec![write])
            .await
            .map_err(from_store)?;
        let created = outcome.first().is_some_and(|o| o.created);
        let mut reply = CosmosReply::json(if created { 201 } else { 200 }, stored);
        reply.lsn = outcome.first().map(|o| o.lsn);
        reply.request_charge = 6.0;
        Ok(reply)
    }

    /// `GET .../docs/{id}` (304 when `If-None-Match` names its ETag).
    #[allow(clippy::too_many_arguments)]
    pub async fn cosmos_item_read(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        name: &str,
        id: &str,
        partition_header: Option<&str>,
        if_none_match: Option<&str>,
    ) -> Result<CosmosReply, CosmosFailure> {
        self.cosmos_authorize(
            account,
            caller,
            "sqlDatabases/containers/items/read",
            &format!("/dbs/{db}/colls/{name}"),
            false,
        )?;
        let container = self.cosmos_container(account, db, name).await?;
        let values = Self::request_partition(&container, partition_header, None)?;
        let item = self
            .store()
            .item(&container.key, &canonical(&values), id, self.now())
            .await
            .map_err(from_store)?
            .ok_or_else(not_found)?;
        if if_none_match == Some(item.etag.as_str()) {
            return Ok(CosmosReply {
                status: 304,
                etag: Some(item.etag),
                request_charge: 1.0,
                ..CosmosReply::default()
            });
        }
        Ok(CosmosReply {
            status: 200,
            etag: Some(item.etag),
            lsn: Some(item.lsn),
            raw: Some(item.body),
            request_charge: 1.0,
            ..CosmosReply::default()
        })
    }

    /// `DELETE .../docs/{id}`
    #[allow(clippy::too_many_arguments)]
    pub async fn cosmos_item_delete(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        name: &str,
        id: &str,
        partition_header: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<CosmosReply, CosmosFailure> {
        self.cosmos_authorize(
            account,
            caller,
            "sqlDatabases/containers/items/delete",
            &format!("/dbs/{db}/colls/{name}"),
            true,
        )?;
        let container = self.cosmos_container(account, db, name).await?;
        let values = Self::request_partition(&container, partition_header, None)?;
        let outcome = self
            .store()
            .apply_items(vec![ItemWrite::Delete {
                container_key: container.key.clone(),
                partition_key: canonical(&values),
                id: id.to_string(),
                if_match: if_match.map(str::to_string),
                now: self.now(),
            }])
            .await
            .map_err(from_store)?;
        Ok(CosmosReply {
            status: 204,
            request_charge: 6.0,
            lsn: outcome.first().map(|o| o.lsn),
            ..CosmosReply::default()
        })
    }

    /// `PATCH .../docs/{id}`: `{"operations":[{op, path, value|from}], "condition"?}` applied
    /// in order, all or nothing (Cosmos "partial document update").
    #[allow(clippy::too_many_arguments)]
    pub async fn cosmos_item_patch(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        name: &str,
        id: &str,
        partition_header: Option<&str>,
        if_match: Option<&str>,
        body: &Value,
    ) -> Result<CosmosReply, CosmosFailure> {
        self.cosmos_authorize(
            account,
            caller,
            "sqlDatabases/containers/items/replace",
            &format!("/dbs/{db}/colls/{name}"),
            true,
        )?;
        let container = self.cosmos_container(account, db, name).await?;
        let values = Self::request_partition(&container, partition_header, None)?;
        let partition = canonical(&values);
        let now = self.now();
        let item = self
            .store()
            .item(&container.key, &partition, id, now)
            .await
            .map_err(from_store)?
            .ok_or_else(not_found)?;
        if if_match.is_some_and(|etag| etag != item.etag) {
            return Err(from_store(StoreError::PreconditionFailed));
        }
        let mut document: Value = serde_json::from_str(&item.body).map_err(internal)?;
        if let Some(condition) = body.get("condition").and_then(Value::as_str) {
            let query = openmi_cosmos_query::parse(&format!("SELECT * {condition}"))
                .and_then(|q| q.bind(&[]))
                .map_err(query_failure)?;
            if !query.matches(&document, CurrentTime::from_unix_millis(now * 1000)) {
                return Err(CosmosFailure::new(
                    412,
                    1110,
                    "PreconditionFailed",
                    "One of the specified pre-condition is not met.",
                ));
            }
        }
        // `{"operations": [...], "condition": ...}` or the bare list (@azure/cosmos sends a
        // `PatchOperation[]` as given: Item.patch's PatchRequestBody).
        let operations = body
            .as_array()
            .or_else(|| body.get("operations").and_then(Value::as_array))
            .ok_or_else(|| bad_request("The patch needs 'operations'."))?;
        if operations.is_empty() || operations.len() > 10 {
            return Err(bad_request("A patch holds 1 to 10 operations."));
        }
        for operation in operations {
            apply_patch(&mut document, operation)?;
        }
        let patched = document
            .as_object()
            .cloned()
            .ok_or_else(|| bad_request("The document must stay a JSON object."))?;
        if patched.get("id").and_then(Value::as_str) != Some(id) {
            return Err(bad_request("A patch cannot change the id of an item."));
        }
        if canonical(&partition_values(&document, &container.paths)) != partition {
            return Err(bad_request(
                "A patch cannot change the partition key of an item.",
            ));
        }
        let mut clean = patched;
        for key in ["_rid", "_self", "_etag", "_attachments", "_ts", "_lsn"] {
            clean.remove(key);
        }
        // "Maximum size of an item: 2 MB (UTF-8 length of JSON representation)" (Cosmos DB's
        // per-item limits): a body over it is refused before it gets here (the server's
        // limits layer), a patch that grows an item past it here, both as the service does.
        if serde_json::to_vec(&clean).map_or(0, |text| text.len()) > MAX_ITEM_BYTES {
            return Err(CosmosFailure::new(
                413,
                0,
                "RequestEntityTooLarge",
                r#"Message: {"Errors":["Request size is too large"]}"#,
            ));
        }
        let etag = new_etag();
        let rid = document
            .get("_rid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let stored = Self::stored_document(&container, clean, now, &etag, &rid);
        let write = ItemWrite::Replace {
            item: StoredItem {
                container_key: container.key.clone(),
                partition_key: partition,
                id: id.to_string(),
                body: stored.to_string(),
                etag,
                ts: now,
                lsn: 0,
                expires_at: Self::expiry(&container, &stored, now)?,
            },
            if_match: Some(item.etag),
            now,
        };
        let outcome = self
            .store()
            .apply_items(vec![write])
            .await
            .map_err(from_store)?;
        let mut reply = CosmosReply::json(200, stored);
        reply.lsn = outcome.first().map(|o| o.lsn);
        reply.request_charge = 10.0;
        Ok(reply)
    }

    /// `POST .../docs` with a query: the whole answer, paged by `x-ms-max-item-count` and
    /// continuation tokens; or, for `x-ms-cosmos-is-query-plan-request`, the query plan, which
    /// names one range and nothing for the SDKs to do (results come back final).
    #[allow(clippy::too_many_arguments)]
    pub async fn cosmos_query(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        name: &str,
        body: &Value,
        partition_header: Option<&str>,
        epk: Option<&EpkRange>,
        max_items: Option<i64>,
        continuation: Option<&str>,
        plan_only: bool,
    ) -> Result<CosmosReply, CosmosFailure> {
        let resource = format!("/dbs/{db}/colls/{name}");
        self.cosmos_authorize(
            account,
            caller,
            "sqlDatabases/containers/executeQuery",
            &resource,
            false,
        )?;
        let container = self.cosmos_container(account, db, name).await?;
        let text = body
            .get("query")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("The query body needs 'query'."))?;
        let parameters: Vec<(String, Value)> = body
            .get("parameters")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|p| {
                        Some((
                            p.get("name")?.as_str()?.to_string(),
                            p.get("value").cloned().unwrap_or(Value::Null),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let query = openmi_cosmos_query::parse(text)
            .and_then(|q| q.bind(&parameters))
            .map_err(query_failure)?;
        if plan_only {
            return Ok(CosmosReply::json(
                200,
                json!({
                    "partitionedQueryExecutionInfoVersion": 2,
                    "queryInfo": query.passthrough_query_info(),
                    "queryRanges": [{"min": "", "max": "FF", "isMinInclusive": true, "isMaxInclusive": false}],
                }),
            ));
        }
        let now = self.now();
        let current = CurrentTime::from_unix_millis(now * 1000);
        let page = page_size(max_items);
        // Which partitions: the request's, else those the WHERE clause pins (whole keys only: a
        // hierarchical key's prefix is left to the WHERE clause itself), else all.
        let (partition, ranges) = container.request_scope(partition_header, epk)?;
        let partitions: Option<Vec<String>> = match partition {
            Some(partition) => Some(vec![partition]),
            None if partition_header.is_some() => None,
            None => query
                .partition_filter(&container.paths)
                .and_then(|filters| {
                    filters
                        .iter()
                        .all(|values| values.len() == container.paths.len())
                        .then(|| filters.iter().map(|values| canonical(values)).collect())
                }),
        };
        let epk = ranges.as_slice();
        let token = Continuation::parse(continuation)?;
        let (skip, take) = query.skip_and_take();
        let mut items_read = 0usize;
        // The session token names the newest write the answer reflects.
        let mut max_lsn = 0i64;
        let (rows, next) = if query.is_streaming() && skip == 0 && take.is_none() {
            // Rows follow item order: read items after the token's position until the page fills.
            let mut rows = Vec::new();
            let mut after = token.after.clone();
            let mut next = None;
            'outer: loop {
                let batch = self
                    .store()
                    .items(
                        &container.key,
                        partitions.as_deref(),
                        after.as_ref().map(|(p, i)| (p.as_str(), i.as_str())),
                        500,
                        now,
                    )
                    .await
                    .map_err(from_store)?;
                if batch.is_empty() {
                    break;
                }
                for item in &batch {
                    items_read += 1;
                    max_lsn = max_lsn.max(item.lsn);
                    let document: Value = serde_json::from_str(&item.body).map_err(internal)?;
                    after = Some((item.partition_key.clone(), item.id.clone()));
                    if container.in_epk_range(&document, epk)? {
                        rows.extend(query.rows_of_item(&document, current));
                    }
                    if rows.len() >= page {
                        next = after.clone();
                        break 'outer;
                    }
                }
                if batch.len() < 500 {
                    break;
                }
            }
            let next = next.map(|after| Continuation {
                after: Some(after),
                offset: 0,
            });
            (rows, next)
        } else {
            // The whole answer, then the page at the token's offset.
            let mut documents = Vec::new();
            let mut after: Option<(String, String)> = None;
            loop {
                let batch = self
                    .store()
                    .items(
                        &container.key,
                        partitions.as_deref(),
                        after.as_ref().map(|(p, i)| (p.as_str(), i.as_str())),
                        5000,
                        now,
                    )
                    .await
                    .map_err(from_store)?;
                let full = batch.len() == 5000;
                for item in &batch {
                    items_read += 1;
                    max_lsn = max_lsn.max(item.lsn);
                    after = Some((item.partition_key.clone(), item.id.clone()));
                    let document = serde_json::from_str::<Value>(&item.body).map_err(internal)?;
                    if container.in_epk_range(&document, epk)? {
                        documents.push(document);
                    }
                }
                if !full {
                    break;
                }
            }
            let all = query.execute(&documents, current).map_err(query_failure)?;
            let start = token.offset.min(all.len());
            let end = (start + page).min(all.len());
            let next = (end < all.len()).then_some(Continuation {
                after: None,
                offset: end,
            });
            (all[start..end].to_vec(), next)
        };
        let count = rows.len();
        let mut reply = CosmosReply::json(
            200,
            json!({"_rid": container.resource.get("_rid"), "Documents": rows, "_count": count}),
        );
        reply.etag = None;
        reply.item_count = Some(count);
        reply.continuation = next.map(|next| Value::from(next).to_string());
        reply.request_charge = 2.0 + items_read as f64 * 0.05;
        reply.lsn = Some(max_lsn.max(1));
        Ok(reply)
    }

    /// `GET .../docs`: the read feed (with `A-IM: Incremental feed`, the change feed, latest
    /// version: each changed item once, as it is now, in change order; its ETag is the
    /// continuation, and 304 means nothing changed since).
    #[allow(clippy::too_many_arguments)]
    pub async fn cosmos_read_feed(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        db: &str,
        name: &str,
        partition_header: Option<&str>,
        epk: Option<&EpkRange>,
        max_items: Option<i64>,
        continuation: Option<&str>,
        change_feed: bool,
        if_none_match: Option<&str>,
        start_from_now: bool,
    ) -> Result<CosmosReply, CosmosFailure> {
        let resource = format!("/dbs/{db}/colls/{name}");
        self.cosmos_authorize(
            account,
            caller,
            "sqlDatabases/containers/readChangeFeed",
            &resource,
            false,
        )?;
        let container = self.cosmos_container(account, db, name).await?;
        let now = self.now();
        let page = page_size(max_items) as i64;
        let (partition, ranges) = container.request_scope(partition_header, epk)?;
        let epk = ranges.as_slice();
        if change_feed {
            let after_lsn = match if_none_match.map(|tag| tag.trim_matches('"')) {
                Some("*") => self.store().items_lsn().await.map_err(from_store)?,
                Some(tag) => tag.parse::<i64>().map_err(|_| {
                    bad_request("The change feed continuation (If-None-Match) is not valid.")
                })?,
                None if start_from_now => self.store().items_lsn().await.map_err(from_store)?,
                None => 0,
            };
            // Changes after the token, in change order, until a page of those in the range.
            let mut documents: Vec<Value> = Vec::new();
            let mut last = after_lsn;
            loop {
                let items = self
                    .store()
                    .items_changed_since(&container.key, partition.as_deref(), last, page, now)
                    .await
                    .map_err(from_store)?;
                let exhausted = (items.len() as i64) < page;
                for item in &items {
                    last = item.lsn;
                    let Ok(document) = serde_json::from_str::<Value>(&item.body) else {
                        continue;
                    };
                    if container.in_epk_range(&document, epk)? {
                        documents.push(document);
                        if documents.len() as i64 >= page {
                            break;
                        }
                    }
                }
                if exhausted || documents.len() as i64 >= page || epk.is_empty() {
                    break;
                }
            }
            if documents.is_empty() {
                return Ok(CosmosReply {
                    status: 304,
                    etag: Some(format!("\"{last}\"")),
                    request_charge: 1.0,
                    item_count: Some(0),
                    ..CosmosReply::default()
                });
            }
            let count = documents.len();
            let mut reply = CosmosReply::json(
                200,
                json!({"_rid": container.resource.get("_rid"), "Documents": documents, "_count": count}),
            );
            reply.etag = Some(format!("\"{last}\""));
            reply.item_count = Some(count);
            reply.lsn = Some(last);
            return Ok(reply);
        }
        let token = Continuation::parse(continuation)?;
        let partitions = partition.map(|p| vec![p]);
        // Items after the token in key order, until a page (and one more, to know there is
        // more) of those in the request's EPK range.
        let mut items = Vec::new();
        let mut after = token.after.clone();
        loop {
            let batch = self
                .store()
                .items(
                    &container.key,
                    partitions.as_deref(),
                    after.as_ref().map(|(p, i)| (p.as_str(), i.as_str())),
                    page + 1,
                    now,
                )
                .await
                .map_err(from_store)?;
            let exhausted = (batch.len() as i64) <= page;
            for item in batch {
                after = Some((item.partition_key.clone(), item.id.clone()));
                let Ok(document) = serde_json::from_str::<Value>(&item.body) else {
                    continue;
                };
                if container.in_epk_range(&document, epk)? {
                    items.push((item, document));
                    if items.len() as i64 > page {
                        break;
                    }
                }
            }
            if exhausted || items.len() as i64 > page {
                break;
            }
        }
        let more = items.len() as i64 > page;
        items.truncate(page as usize);
        let documents: Vec<Value> = items.iter().map(|(_, document)| document.clone()).collect();
        let items: Vec<_> = items.into_iter().map(|(item, _)| item).collect();
        let count = documents.len();
        let mut reply = CosmosReply::json(
            200,
            json!({"_rid": container.resource.get("_rid"), "Documents": documents, "_count": count}),
        );
        reply.etag = None;
        reply.item_count = Some(count);
        reply.lsn = Some(items.iter().map(|i| i.lsn).max().unwrap_or(0).max(1));
        reply.continuation = more.then(|| {
            Value::from(Continuation {
                after: items
                    .last()
                    .map(|i| (i.partition_key.clone(), i.id.clone())),
                offset: 0,
            })
            .to_string()
        });
        Ok(reply)
    }
}

/// A query or read-feed continuation: the last item's key (streaming) or the next row's offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Continuation {
    after: Option<(String, String)>,
    offset: usize,
}

impl From<Continuation> for Value {
    fn from(token: Continuation) -> Value {
        let mut object = BTreeMap::new();
        if let Some((partition, id)) = token.after {
            object.insert("pk", json!(partition));
            object.insert("id", json!(id));
        }
        if token.offset > 0 {
            object.insert("offset", json!(token.offset));
        }
        json!(object)
    }
}

impl Continuation {
    fn parse(text: Option<&str>) -> Result<Continuation, CosmosFailure> {
        let Some(text) = text else {
            return Ok(Continuation::default());
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|_| bad_request("The continuation token is not valid."))?;
        let after = match (
            value.get("pk").and_then(Value::as_str),
            value.get("id").and_then(Value::as_str),
        ) {
            (Some(partition), Some(id)) => Some((partition.to_string(), id.to_string())),
            _ => None,
        };
        let offset = value.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
        Ok(Continuation { after, offset })
    }
}

/// One patch operation on a document (Cosmos "partial document update": add, set, replace,
/// remove, incr, move; paths are `/a/b/0`, `-` appends to an array).
fn apply_patch(document: &mut Value, operation: &Value) -> Result<(), CosmosFailure> {
    let op = operation
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("A patch operation needs 'op'."))?
        .to_lowercase();
    let path = operation
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("A patch operation needs 'path'."))?;
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    if path == "/" || segments.is_empty() || segments.iter().any(String::is_empty) {
        return Err(bad_request(format!(
            "The patch path '{path}' is not valid."
        )));
    }
    let value = operation.get("value").cloned();
    let (parent_segments, last) = segments.split_at(segments.len() - 1);
    let last = &last[0];
    let missing = || {
        bad_request(format!(
            "The patch path '{path}' does not exist in the document."
        ))
    };
    match op.as_str() {
        "move" => {
            let from = operation
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| bad_request("A move needs 'from'."))?;
            let moved = take(document, from).ok_or_else(|| {
                bad_request(format!(
                    "The patch path '{from}' does not exist in the document."
                ))
            })?;
            return apply_patch(
                document,
                &json!({"op": "set", "path": path, "value": moved}),
            );
        }
        "remove" => {
            take(document, path).ok_or_else(missing)?;
            return Ok(());
        }
        _ => {}
    }
    let value =
        value.ok_or_else(|| bad_request(format!("The patch operation '{op}' needs a value.")))?;
    let mut parent = &mut *document;
    for segment in parent_segments {
        parent = child_mut(parent, segment).ok_or_else(missing)?;
    }
    match (op.as_str(), parent) {
        ("incr", parent) => {
            let current = child_mut(parent, last).ok_or_else(missing)?;
            let sum = match (current.as_i64(), value.as_i64()) {
                (Some(a), Some(b)) => json!(a + b),
                _ => json!(current.as_f64().ok_or_else(|| bad_request("incr needs a number at the path."))? + value.as_f64().ok_or_else(|| bad_request("incr needs a number."))?),
            };
            *current = sum;
        }
        ("replace", parent) => {
            *child_mut(parent, last).ok_or_else(missing)? = value;
        }
        ("add" | "set", Value::Array(items)) => {
            if last == "-" {
                items.push(value);
            } else {
                let index: usize = last.parse().map_err(|_| missing())?;
                if index > items.len() {
                    return Err(missing());
                }
                if op == "add" {
                    items.insert(index, value);
                } else if index == items.len() {
                    items.push(value);
                } else {
                    items[index] = value;
                }
            }
        }
        ("add" | "set", Value::Object(map)) => {
            map.insert(last.clone(), value);
        }
        ("add" | "set", _) => return Err(missing()),
        (other, _) => return Err(bad_request(format!("The patch operation '{other}' is not supported; use add, set, replace, remove, incr or move."))),
    }
    Ok(())
}

fn child_mut<'v>(value: &'v mut Value, segment: &str) -> Option<&'v mut Value> {
    match value {
        Value::Object(map) => map.get_mut(segment),
        Value::Array(items) => segment
            .parse::<usize>()
            .ok()
            .and_then(move |index| items.get_mut(index)),
        _ => None,
    }
}

/// Removes and returns the value at `path`.
fn take(document: &mut Value, path: &str) -> Option<Value> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (parents, last) = segments.split_at(segments.len().checked_sub(1)?);
    let mut parent = document;
    for segment in parents {
        parent = child_mut(parent, segment)?;
    }
    match parent {
        Value::Object(map) => map.remove(last[0]),
        Value::Array(items) => {
            let index: usize = last[0].parse().ok()?;
            (index < items.len()).then(|| items.remove(index))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(document: Value, operations: Value) -> Result<Value, CosmosFailure> {
        let mut document = document;
        for operation in operations.as_array().unwrap() {
            apply_patch(&mut document, operation)?;
        }
        Ok(document)
    }

    #[test]
    fn patch_operations_follow_cosmos() {
        let document = json!({"id": "1", "a": {"b": 1}, "tags": ["x"], "n": 2});
        assert_eq!(
            patched(
                document.clone(),
                json!([
                    {"op": "set", "path": "/a/c", "value": 3},
                    {"op": "add", "path": "/tags/-", "value": "y"},
                    {"op": "add", "path": "/tags/0", "value": "w"},
                    {"op": "incr", "path": "/n", "value": 5},
                    {"op": "replace", "path": "/a/b", "value": "one"},
                    {"op": "move", "from": "/a/c", "path": "/c"},
                    {"op": "remove", "path": "/tags/1"},
                ])
            )
            .unwrap(),
            json!({"id": "1", "a": {"b": "one"}, "tags": ["w", "y"], "n": 7, "c": 3})
        );
        assert!(patched(
            document.clone(),
            json!([{"op": "replace", "path": "/missing", "value": 1}])
        )
        .is_err());
        assert!(patched(
            document.clone(),
            json!([{"op": "remove", "path": "/missing"}])
        )
        .is_err());
        assert!(patched(
            document,
            json!([{"op": "increment", "path": "/n", "value": 1}])
        )
        .is_err());
    }

    #[test]
    fn partition_values_and_continuations() {
        let document = json!({"tenant": "t", "user": {"id": "u"}});
        assert_eq!(
            partition_values(&document, &["/tenant".into(), "/user/id".into()]),
            vec![json!("t"), json!("u")]
        );
        assert_eq!(
            partition_values(&document, &["/missing".into()]),
            vec![json!({})]
        );
        assert_eq!(canonical(&[json!("a")]), "[\"a\"]");
        let token = Continuation {
            after: Some(("[\"a\"]".into(), "7".into())),
            offset: 0,
        };
        let text = Value::from(token.clone()).to_string();
        assert_eq!(Continuation::parse(Some(&text)).unwrap(), token);
    }
}
