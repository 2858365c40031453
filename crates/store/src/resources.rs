//! ARM resources: rows of the `resources` table, read by key, group, parent or type, and changed
//! only through `ResourceChange`, which applies upserts, cascading deletes and the managed
//! identities' service principals in one transaction.

use openmi_model::{ObjectId, Principal};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::directory::insert_principal;
use crate::{Store, StoreError};

/// One stored resource. `body` is the JSON document as ARM returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRecord {
    /// Lower-cased id.
    pub key: String,
    /// Id in canonical casing.
    pub id: String,
    pub subscription_id: String,
    /// Key of the resource group the resource is in (the group's own key for a group).
    pub group_key: Option<String>,
    /// Key of the parent resource of a child resource.
    pub parent_key: Option<String>,
    /// Lower-cased type (`microsoft.compute/virtualmachines`).
    pub type_key: String,
    pub name: String,
    pub body: String,
    /// Optimistic-concurrency version; 0 means "not stored yet".
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A write of the control plane, applied atomically.
#[derive(Debug, Clone, Default)]
pub struct ResourceChange {
    /// Rows to insert (`version` 0) or update (`version` = the version read). A row whose stored
    /// version differs fails the whole change with `PreconditionFailed`.
    pub upserts: Vec<ResourceRecord>,
    /// Keys to delete together with their children (by `parent_key`) and, for groups, everything
    /// in the group. Service principals managed by any deleted resource go too.
    pub deletes: Vec<String>,
    /// Service principals of managed identities to create.
    pub new_principals: Vec<Principal>,
    /// Service principals to delete (a system identity switched off).
    pub deleted_principals: Vec<ObjectId>,
    /// The audit record of the request that made the change, committed with it or not at all.
    pub audit: Option<Box<crate::AuditRecord>>,
}

const COLUMNS: &str = "key, id, subscription_id, group_key, parent_key, type_key, name, body, version, created_at, updated_at";

fn record_from_row(row: &AnyRow) -> Result<ResourceRecord, StoreError> {
    Ok(ResourceRecord {
        key: row.try_get("key")?,
        id: row.try_get("id")?,
        subscription_id: row.try_get("subscription_id")?,
        group_key: row.try_get("group_key")?,
        parent_key: row.try_get("parent_key")?,
        type_key: row.try_get("type_key")?,
        name: row.try_get("name")?,
        body: row.try_get("body")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn upsert(
    transaction: &mut Transaction<'_, Any>,
    record: &ResourceRecord,
) -> Result<(), StoreError> {
    if record.version == 0 {
        sqlx::query(&format!(
            "INSERT INTO resources ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10)"
        ))
        .bind(record.key.clone())
        .bind(record.id.clone())
        .bind(record.subscription_id.clone())
        .bind(record.group_key.clone())
        .bind(record.parent_key.clone())
        .bind(record.type_key.clone())
        .bind(record.name.clone())
        .bind(record.body.clone())
        .bind(record.created_at)
        .bind(record.updated_at)
        .execute(&mut **transaction)
        .await
        .map_err(|error| match StoreError::from(error) {
            StoreError::AlreadyExists => StoreError::PreconditionFailed,
            other => other,
        })?;
    } else {
        let updated = sqlx::query("UPDATE resources SET body = $1, version = version + 1, updated_at = $2 WHERE key = $3 AND version = $4")
            .bind(record.body.clone())
            .bind(record.updated_at)
            .bind(record.key.clone())
            .bind(record.version)
            .execute(&mut **transaction)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::PreconditionFailed);
        }
    }
    Ok(())
}

/// Deletes `key`, everything below it, and the principals they managed; returns the deleted rows.
async fn delete_tree(
    transaction: &mut Transaction<'_, Any>,
    key: &str,
) -> Result<Vec<ResourceRecord>, StoreError> {
    let mut deleted = Vec::new();
    let mut pending = vec![key.to_string()];
    while let Some(current) = pending.pop() {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM resources WHERE key = $1 OR parent_key = $1 OR group_key = $1"
        ))
        .bind(current.clone())
        .fetch_all(&mut **transaction)
        .await?;
        for row in &rows {
            let record = record_from_row(row)?;
            if record.key != current
                && !deleted
                    .iter()
                    .any(|done: &ResourceRecord| done.key == record.key)
            {
                pending.push(record.key.clone());
            }
            if record.key == current {
                deleted.push(record);
            }
        }
        sqlx::query("DELETE FROM resources WHERE key = $1")
            .bind(current.clone())
            .execute(&mut **transaction)
            .await?;
        sqlx::query("DELETE FROM principals WHERE lower(managed_by) = $1")
            .bind(current.clone())
            .execute(&mut **transaction)
            .await?;
        // A container's items go with it (a no-op for every other key).
        sqlx::query("DELETE FROM cosmos_items WHERE container_key = $1")
            .bind(current.clone())
            .execute(&mut **transaction)
            .await?;
        // A VM's agents and unused join tokens go with it.
        sqlx::query("DELETE FROM agents WHERE vm_key = $1")
            .bind(current.clone())
            .execute(&mut **transaction)
            .await?;
        sqlx::query("DELETE FROM join_tokens WHERE vm_key = $1")
            .bind(current)
            .execute(&mut **transaction)
            .await?;
    }
    Ok(deleted)
}

/// Which resources a paged list walks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// A group's resources (the group itself excluded), optionally of one type.
    InGroup {
        group_key: String,
        type_key: Option<String>,
    },
    /// A subscription's resources of one type (groups, identities, VMs...).
    OfType {
        subscription_id: String,
        type_key: String,
    },
    /// A resource's children, optionally of one type.
    Children {
        parent_key: String,
        type_key: Option<String>,
    },
    /// A subscription's own top-level records of one type, outside every group (deployments at
    /// subscription scope).
    AtSubscription {
        subscription_id: String,
        type_key: String,
    },
    /// Every top-level resource inside the subscription's groups, but for some types.
    TopLevel {
        subscription_id: String,
        excluded_type_keys: Vec<String>,
    },
}

impl Store {
    /// The resource with this key.
    pub async fn resource(&self, key: &str) -> Result<Option<ResourceRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM resources WHERE key = $1"))
            .bind(key.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Resources in a group (the group itself excluded), optionally of one type.
    pub async fn resources_in_group(
        &self,
        group_key: &str,
        type_key: Option<&str>,
    ) -> Result<Vec<ResourceRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM resources WHERE group_key = $1 AND key <> $1 AND ($2 = '' OR type_key = $2) ORDER BY created_at, key"
        ))
        .bind(group_key.to_string())
        .bind(type_key.unwrap_or_default().to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Resources of one type in a subscription.
    pub async fn resources_of_type(
        &self,
        subscription_id: &str,
        type_key: &str,
    ) -> Result<Vec<ResourceRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM resources WHERE subscription_id = $1 AND type_key = $2 ORDER BY created_at, key"))
            .bind(subscription_id.to_lowercase())
            .bind(type_key.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// One page of a listing in key order, after `after` (exclusive; `""` for the first page):
    /// a list's memory is bounded by the page, not by the tenant.
    pub async fn resources_page(
        &self,
        listing: &Listing,
        after: &str,
        limit: i64,
    ) -> Result<Vec<ResourceRecord>, StoreError> {
        let (condition, first, second) = match listing {
            Listing::InGroup {
                group_key,
                type_key,
            } => (
                "group_key = $1 AND key <> $1 AND ($2 = '' OR type_key = $2)",
                group_key.clone(),
                type_key.clone().unwrap_or_default(),
            ),
            Listing::OfType {
                subscription_id,
                type_key,
            } => (
                "subscription_id = $1 AND type_key = $2",
                subscription_id.to_lowercase(),
                type_key.clone(),
            ),
            Listing::AtSubscription {
                subscription_id,
                type_key,
            } => (
                "subscription_id = $1 AND type_key = $2 AND group_key IS NULL AND parent_key IS NULL",
                subscription_id.to_lowercase(),
                type_key.clone(),
            ),
            Listing::Children {
                parent_key,
                type_key,
            } => (
                "parent_key = $1 AND ($2 = '' OR type_key = $2)",
                parent_key.clone(),
                type_key.clone().unwrap_or_default(),
            ),
            Listing::TopLevel {
                subscription_id,
                excluded_type_keys,
            } => (
                // `$2` is a `|`-joined list of excluded types, compared as text.
                "subscription_id = $1 AND parent_key IS NULL AND group_key IS NOT NULL AND key <> group_key AND position('|' || type_key || '|' in $2) = 0",
                subscription_id.to_lowercase(),
                format!("|{}|", excluded_type_keys.join("|")),
            ),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM resources WHERE {condition} AND key > $3 ORDER BY key LIMIT $4"
        );
        let sql = match self.backend {
            // SQLite spells `position(a in b)` as `instr(b, a)`.
            crate::Backend::Sqlite => sql.replace(
                "position('|' || type_key || '|' in $2)",
                "instr($2, '|' || type_key || '|')",
            ),
            crate::Backend::Postgres => sql,
        };
        let rows = sqlx::query(&sql)
            .bind(first)
            .bind(second)
            .bind(after.to_string())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// How many resources of the subscription of type `type_key` have a key under `key_prefix`
    /// (`{key}/`: a resource's descendants), counted without reading them: the type's index
    /// narrows the scan, and the prefix is compared as text, so any collation agrees.
    pub async fn resources_count_under(
        &self,
        subscription_id: &str,
        type_key: &str,
        key_prefix: &str,
    ) -> Result<i64, StoreError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM resources WHERE subscription_id = $1 AND type_key = $2 AND substr(key, 1, length($3)) = $3",
        )
        .bind(subscription_id.to_lowercase())
        .bind(type_key.to_string())
        .bind(key_prefix.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// Child resources of a resource.
    pub async fn resource_children(
        &self,
        parent_key: &str,
    ) -> Result<Vec<ResourceRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM resources WHERE parent_key = $1 ORDER BY created_at, key"
        ))
        .bind(parent_key.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// The keys written or deleted by the batches after `version`, with each batch's version,
    /// oldest first, at most `limit` rows. A key `""` stands for a batch that changed nothing
    /// by key.
    pub async fn resource_changes_since(
        &self,
        version: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT version, key FROM resource_changes WHERE version > $1 ORDER BY version, key LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The resource change counter (bumped by every committed batch).
    pub async fn resources_version(&self) -> Result<i64, StoreError> {
        let (value,): (i64,) =
            sqlx::query_as("SELECT value FROM counters WHERE name = 'resources'")
                .fetch_one(&self.pool)
                .await?;
        Ok(value)
    }

    /// Applies a change atomically; returns the rows deleted (cascades included).
    ///
    /// Changes go through the group-commit writer: concurrent changes share one transaction and
    /// one fsync, each inside its own savepoint, so one change failing leaves the others intact.
    pub async fn apply(&self, change: &ResourceChange) -> Result<Vec<ResourceRecord>, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(PendingChange::Resources {
                change: change.clone(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".to_string()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".to_string()))?
    }
}

/// Work waiting for the writer, with where to send its outcome: a resource change, or a batch of
/// Cosmos item writes (which neither bump the resources counter nor touch resources).
pub(crate) enum PendingChange {
    Resources {
        change: ResourceChange,
        reply: tokio::sync::oneshot::Sender<Result<Vec<ResourceRecord>, StoreError>>,
    },
    Items {
        writes: Vec<crate::items::ItemWrite>,
        reply: tokio::sync::oneshot::Sender<Result<Vec<crate::items::ItemOutcome>, StoreError>>,
    },
    /// Audit events recording no write of their own (sign-ins, refused requests).
    Audit {
        records: Vec<crate::AuditRecord>,
        reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
}

/// How many batches the resource change feed keeps; a server further behind learns only that
/// something changed.
pub const RESOURCE_LOG_RETAINED: i64 = 10_000;

/// Most changes committed together.
const MAX_BATCH: usize = 64;

async fn apply_one(
    transaction: &mut Transaction<'_, Any>,
    change: &ResourceChange,
) -> Result<Vec<ResourceRecord>, StoreError> {
    let mut deleted = Vec::new();
    for key in &change.deletes {
        deleted.extend(delete_tree(transaction, key).await?);
    }
    for object_id in &change.deleted_principals {
        sqlx::query("DELETE FROM principals WHERE object_id = $1")
            .bind(object_id.to_string())
            .execute(&mut **transaction)
            .await?;
    }
    for principal in &change.new_principals {
        insert_principal(transaction, principal, None).await?;
    }
    for record in &change.upserts {
        upsert(transaction, record).await?;
    }
    Ok(deleted)
}

async fn commit_batch(
    pool: &sqlx::AnyPool,
    batch: &[PendingChange],
) -> Result<Vec<Outcome>, StoreError> {
    let mut transaction = pool.begin().await?;
    // Item writes first, all of the batch's together (`items::apply_item_lists`); then each
    // resource change in its own savepoint. (A container deleted in the same batch thus also
    // takes items written beside it.)
    let lists: Vec<&[crate::items::ItemWrite]> = batch
        .iter()
        .filter_map(|pending| match pending {
            PendingChange::Items { writes, .. } => Some(writes.as_slice()),
            PendingChange::Resources { .. } | PendingChange::Audit { .. } => None,
        })
        .collect();
    let mut item_results = if lists.is_empty() {
        Vec::new()
    } else {
        crate::items::apply_item_lists(&mut transaction, &lists).await?
    }
    .into_iter();
    // Audit records go in together at the end, in the same transaction: the appended ones and
    // those of the changes that applied (a change rolled back to its savepoint takes its record
    // with it by never adding it here). One statement per eight rows instead of one per change.
    let mut records: Vec<&crate::AuditRecord> = batch
        .iter()
        .filter_map(|pending| match pending {
            PendingChange::Audit { records, .. } => Some(records.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut resources_changed = false;
    let mut changed_keys: Vec<&str> = Vec::new();
    for pending in batch {
        if let PendingChange::Audit { .. } = pending {
            outcomes.push(Ok(Outcome::Appended));
            continue;
        }
        if let PendingChange::Items { .. } = pending {
            outcomes.push(Ok(match item_results.next() {
                Some(Ok(done)) => Outcome::Items(done),
                Some(Err(error)) => Outcome::Failed(error),
                None => Outcome::Failed(StoreError::Database(
                    "ST0004 missing item outcome".to_string(),
                )),
            }));
            continue;
        }
        sqlx::query("SAVEPOINT change")
            .execute(&mut *transaction)
            .await?;
        let outcome = match pending {
            PendingChange::Resources { change, .. } => {
                resources_changed = true;
                apply_one(&mut transaction, change)
                    .await
                    .map(Outcome::Resources)
            }
            PendingChange::Items { .. } | PendingChange::Audit { .. } => continue,
        };
        match outcome {
            Ok(outcome) => {
                sqlx::query("RELEASE SAVEPOINT change")
                    .execute(&mut *transaction)
                    .await?;
                if let PendingChange::Resources { change, .. } = pending {
                    changed_keys.extend(change.deletes.iter().map(String::as_str));
                    changed_keys.extend(change.upserts.iter().map(|record| record.key.as_str()));
                    records.extend(change.audit.as_deref());
                }
                outcomes.push(Ok(outcome));
            }
            Err(error) => {
                sqlx::query("ROLLBACK TO SAVEPOINT change")
                    .execute(&mut *transaction)
                    .await?;
                sqlx::query("RELEASE SAVEPOINT change")
                    .execute(&mut *transaction)
                    .await?;
                outcomes.push(Err(error));
            }
        }
    }
    if resources_changed {
        let (version,): (i64,) = sqlx::query_as(
            "UPDATE counters SET value = value + 1 WHERE name = 'resources' RETURNING value",
        )
        .fetch_one(&mut *transaction)
        .await?;
        changed_keys.sort_unstable();
        changed_keys.dedup();
        // Every batch logs at least one row, so the feed's versions have no holes.
        if changed_keys.is_empty() {
            changed_keys.push("");
        }
        for chunk in changed_keys.chunks(200) {
            let values: Vec<String> = (0..chunk.len())
                .map(|index| format!("($1, ${})", index + 2))
                .collect();
            let sql = format!(
                "INSERT INTO resource_changes (version, key) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(version);
            for key in chunk {
                query = query.bind(key.to_string());
            }
            query.execute(&mut *transaction).await?;
        }
        sqlx::query("DELETE FROM resource_changes WHERE version <= $1")
            .bind(version - RESOURCE_LOG_RETAINED)
            .execute(&mut *transaction)
            .await?;
    }
    if !records.is_empty() {
        crate::audit::insert(&mut transaction, &records).await?;
    }
    transaction.commit().await?;
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(Outcome::Failed))
        .collect())
}

/// What one piece of work came to.
enum Outcome {
    Resources(Vec<ResourceRecord>),
    Items(Vec<crate::items::ItemOutcome>),
    Appended,
    Failed(StoreError),
}

impl PendingChange {
    fn answer(self, outcome: Result<Outcome, StoreError>) {
        match self {
            PendingChange::Resources { reply, .. } => {
                let _ = reply.send(match outcome {
                    Ok(Outcome::Resources(deleted)) => Ok(deleted),
                    Ok(Outcome::Failed(error)) => Err(error),
                    Ok(_) => Err(StoreError::Database(
                        "ST0003 mismatched writer outcome".to_string(),
                    )),
                    Err(error) => Err(error),
                });
            }
            PendingChange::Items { reply, .. } => {
                let _ = reply.send(match outcome {
                    Ok(Outcome::Items(outcomes)) => Ok(outcomes),
                    Ok(Outcome::Failed(error)) => Err(error),
                    Ok(_) => Err(StoreError::Database(
                        "ST0003 mismatched writer outcome".to_string(),
                    )),
                    Err(error) => Err(error),
                });
            }
            PendingChange::Audit { reply, .. } => {
                let _ = reply.send(match outcome {
                    Ok(Outcome::Appended) => Ok(()),
                    Ok(Outcome::Failed(error)) => Err(error),
                    Ok(_) => Err(StoreError::Database(
                        "ST0003 mismatched writer outcome".to_string(),
                    )),
                    Err(error) => Err(error),
                });
            }
        }
    }
}

/// What the writer measures of its batches, for the server's `/metrics` (which names them).
/// One writer observes, once per commit, so the histograms' locks are never contended.
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    /// Changes (callers' resource changes or item-write lists) committed per transaction.
    pub batch_size: Histogram,
    /// Seconds from the transaction's start to its commit (or failure).
    pub commit_seconds: Histogram,
    /// Batches whose transaction failed as a whole.
    pub failed_batches: Counter,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        WriterMetrics {
            // Powers of two up to MAX_BATCH.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            // 0.5 ms (SQLite's fsync on a fast disk) to 2.5 s.
            commit_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            failed_batches: Counter::default(),
        }
    }
}

/// The writer task: takes every change waiting, commits them as one transaction, answers each.
pub(crate) async fn run_writer(
    pool: sqlx::AnyPool,
    mut receiver: tokio::sync::mpsc::Receiver<PendingChange>,
    item_cache: Option<std::sync::Arc<crate::item_cache::ItemCache>>,
    metrics: WriterMetrics,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let committed = commit_batch(&pool, &batch).await;
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.batch_size.observe(batch.len() as f64);
        match committed {
            Ok(outcomes) => {
                // Committed: the item cache learns what changed before anyone hears of it.
                if let Some(cache) = &item_cache {
                    cache.apply(cache_changes(&batch, &outcomes));
                }
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    pending.answer(Ok(outcome));
                }
            }
            Err(error) => {
                metrics.failed_batches.inc();
                // Each change hears the batch's failure as what it is: an unreachable database
                // stays `Unavailable` (503 and Retry-After), the rest are database errors.
                for pending in batch {
                    pending.answer(Err(match &error {
                        StoreError::Unavailable(message) => {
                            StoreError::Unavailable(message.clone())
                        }
                        StoreError::StorageFull(message) => {
                            StoreError::StorageFull(message.clone())
                        }
                        other => StoreError::Database(other.to_string()),
                    }));
                }
            }
        }
    }
}

/// What a committed batch did to the items a cache may hold.
fn cache_changes(
    batch: &[PendingChange],
    outcomes: &[Outcome],
) -> Vec<crate::item_cache::CacheChange> {
    use crate::item_cache::CacheChange;
    use crate::items::ItemWrite;
    let mut changes = Vec::new();
    for (pending, outcome) in batch.iter().zip(outcomes) {
        match (pending, outcome) {
            (PendingChange::Resources { .. }, Outcome::Resources(_)) => {
                changes.push(CacheChange::Clear)
            }
            (PendingChange::Items { writes, .. }, Outcome::Items(done)) => {
                for (write, done) in writes.iter().zip(done) {
                    changes.push(match write {
                        ItemWrite::Create { item, .. }
                        | ItemWrite::Replace { item, .. }
                        | ItemWrite::Upsert { item, .. } => {
                            CacheChange::Put(crate::items::StoredItem {
                                lsn: done.lsn,
                                ..item.clone()
                            })
                        }
                        ItemWrite::Delete {
                            container_key,
                            partition_key,
                            id,
                            ..
                        } => CacheChange::Remove {
                            container_key: container_key.clone(),
                            partition_key: partition_key.clone(),
                            id: id.clone(),
                            lsn: done.lsn,
                        },
                    });
                }
            }
            _ => {}
        }
    }
    changes
}
