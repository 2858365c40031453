//! Cosmos DB items (issue 17): conditional writes (create, replace, upsert, delete, each with an
//! optional ETag precondition) applied through the group-commit writer like resource changes, so
//! an acknowledged write is on disk, and the reads the data plane needs (one item, a container's
//! items in key order from a position, the change feed by sequence number).
//!
//! An expired item (TTL) reads as absent and may be written over; nothing here decides what a
//! document may contain.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{Store, StoreError};

/// One stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    pub container_key: String,
    /// The canonical JSON array of the item's partition-key values (`["a"]`, `[]` for none).
    pub partition_key: String,
    pub id: String,
    /// The document as the data plane returns it, system properties included.
    pub body: String,
    pub etag: String,
    pub ts: i64,
    /// The store's sequence number of the write (assigned by the store).
    pub lsn: i64,
    /// When the item expires (TTL), seconds since the epoch.
    pub expires_at: Option<i64>,
}

/// A conditional write of one item.
#[derive(Debug, Clone)]
pub enum ItemWrite {
    /// Fails with `AlreadyExists` if a live item has the key.
    Create { item: StoredItem, now: i64 },
    /// Fails with `NotFound` if there is none, `PreconditionFailed` if `if_match` differs.
    Replace {
        item: StoredItem,
        if_match: Option<String>,
        now: i64,
    },
    /// Creates or replaces; `if_match`, when given, must match an existing item.
    Upsert {
        item: StoredItem,
        if_match: Option<String>,
        now: i64,
    },
    /// Fails with `NotFound` if there is none, `PreconditionFailed` if `if_match` differs.
    Delete {
        container_key: String,
        partition_key: String,
        id: String,
        if_match: Option<String>,
        now: i64,
    },
}

/// What a write did: the sequence number it got, and whether it created the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemOutcome {
    pub lsn: i64,
    pub created: bool,
}

const COLUMNS: &str = "container_key, partition_key, id, body, etag, ts, lsn, expires_at";

fn item_from_row(row: &AnyRow) -> Result<StoredItem, StoreError> {
    Ok(StoredItem {
        container_key: row.try_get("container_key")?,
        partition_key: row.try_get("partition_key")?,
        id: row.try_get("id")?,
        body: row.try_get("body")?,
        etag: row.try_get("etag")?,
        ts: row.try_get("ts")?,
        lsn: row.try_get("lsn")?,
        expires_at: row.try_get("expires_at")?,
    })
}

type ItemKey = (String, String, String);

fn key_of_write(write: &ItemWrite) -> ItemKey {
    match write {
        ItemWrite::Create { item, .. }
        | ItemWrite::Replace { item, .. }
        | ItemWrite::Upsert { item, .. } => (
            item.container_key.clone(),
            item.partition_key.clone(),
            item.id.clone(),
        ),
        ItemWrite::Delete {
            container_key,
            partition_key,
            id,
            ..
        } => (container_key.clone(), partition_key.clone(), id.clone()),
    }
}

fn now_of_write(write: &ItemWrite) -> i64 {
    match write {
        ItemWrite::Create { now, .. }
        | ItemWrite::Replace { now, .. }
        | ItemWrite::Upsert { now, .. }
        | ItemWrite::Delete { now, .. } => *now,
    }
}

fn check_match(current: &str, if_match: &Option<String>) -> Result<(), StoreError> {
    match if_match {
        Some(wanted) if wanted != current && wanted != "*" => Err(StoreError::PreconditionFailed),
        _ => Ok(()),
    }
}

/// Rows per statement when writing or reading many keys (8 parameters a row stays far below
/// SQLite's and PostgreSQL's parameter limits).
const ROWS_PER_STATEMENT: usize = 64;

/// `(container_key = $1 AND partition_key = $2 AND id = $3) OR ...` for `count` keys.
fn keys_condition(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "(container_key = ${} AND partition_key = ${} AND id = ${})",
                3 * i + 1,
                3 * i + 2,
                3 * i + 3
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Binds the keys of `keys_condition`, in order.
fn bind_keys<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    keys: impl Iterator<Item = &'q ItemKey>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for (container, partition, id) in keys {
        query = query
            .bind(container.clone())
            .bind(partition.clone())
            .bind(id.clone());
    }
    query
}

/// The stored row's ETag and expiry of every key (absent keys are not in the map).
async fn current_rows(
    transaction: &mut Transaction<'_, Any>,
    keys: &[ItemKey],
) -> Result<HashMap<ItemKey, (String, Option<i64>)>, StoreError> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT container_key, partition_key, id, etag, expires_at FROM cosmos_items WHERE {}",
            keys_condition(chunk.len())
        );
        let query = bind_keys(sqlx::query(&sql), chunk.iter());
        for row in query.fetch_all(&mut **transaction).await? {
            found.insert(
                (
                    row.try_get("container_key")?,
                    row.try_get("partition_key")?,
                    row.try_get("id")?,
                ),
                (row.try_get("etag")?, row.try_get("expires_at")?),
            );
        }
    }
    Ok(found)
}

/// Applies the item writes of a whole group commit with a handful of statements, whatever their
/// number: one read of every key's current ETag, the checks and sequence numbers in memory (each
/// list of writes all or nothing, in order, seeing the lists before it), then one multi-row
/// delete and insert of the final state and one counter update. Statement by statement, each
/// write cost five round trips to the database, all serialised in the one writer (BENCHMARKS.md).
pub(crate) async fn apply_item_lists(
    transaction: &mut Transaction<'_, Any>,
    lists: &[&[ItemWrite]],
) -> Result<Vec<Result<Vec<ItemOutcome>, StoreError>>, StoreError> {
    let mut keys: Vec<ItemKey> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for write in lists.iter().flat_map(|list| list.iter()) {
        let key = key_of_write(write);
        if seen.insert(key.clone()) {
            keys.push(key);
        }
    }
    let stored = current_rows(transaction, &keys).await?;
    // The live ETag of each key as the writes so far leave it (`None`: no live item).
    let mut state: HashMap<ItemKey, Option<String>> = HashMap::new();
    let live =
        |state: &HashMap<ItemKey, Option<String>>, key: &ItemKey, now: i64| -> Option<String> {
            match state.get(key) {
                Some(current) => current.clone(),
                None => stored
                    .get(key)
                    .filter(|(_, expires_at)| !expires_at.is_some_and(|at| at <= now))
                    .map(|(etag, _)| etag.clone()),
            }
        };
    let (base_lsn,): (i64,) =
        sqlx::query_as("SELECT value FROM counters WHERE name = 'cosmos_lsn'")
            .fetch_one(&mut **transaction)
            .await?;
    let mut lsn = base_lsn;
    // The final state of each key written: the item to store, or `None` to delete it.
    let mut finals: HashMap<ItemKey, Option<StoredItem>> = HashMap::new();
    let mut results = Vec::with_capacity(lists.len());
    for list in lists {
        let mut overlay = state.clone();
        let mut list_finals: Vec<(ItemKey, Option<StoredItem>)> = Vec::new();
        let mut outcomes = Vec::with_capacity(list.len());
        let mut list_lsn = lsn;
        let mut failure = None;
        for write in list.iter() {
            let key = key_of_write(write);
            let current = live(&overlay, &key, now_of_write(write));
            let checked = match write {
                ItemWrite::Create { .. } => match current {
                    Some(_) => Err(StoreError::AlreadyExists),
                    None => Ok(true),
                },
                ItemWrite::Replace { if_match, .. } => current
                    .ok_or(StoreError::NotFound)
                    .and_then(|etag| check_match(&etag, if_match))
                    .map(|()| false),
                ItemWrite::Upsert { if_match, .. } => match (&current, if_match) {
                    (Some(etag), _) => check_match(etag, if_match).map(|()| false),
                    (None, Some(_)) => Err(StoreError::PreconditionFailed),
                    (None, None) => Ok(true),
                },
                ItemWrite::Delete { if_match, .. } => current
                    .ok_or(StoreError::NotFound)
                    .and_then(|etag| check_match(&etag, if_match))
                    .map(|()| false),
            };
            let created = match checked {
                Ok(created) => created,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            list_lsn += 1;
            match write {
                ItemWrite::Create { item, .. }
                | ItemWrite::Replace { item, .. }
                | ItemWrite::Upsert { item, .. } => {
                    overlay.insert(key.clone(), Some(item.etag.clone()));
                    list_finals.push((
                        key,
                        Some(StoredItem {
                            lsn: list_lsn,
                            ..item.clone()
                        }),
                    ));
                }
                ItemWrite::Delete { .. } => {
                    overlay.insert(key.clone(), None);
                    list_finals.push((key, None));
                }
            }
            outcomes.push(ItemOutcome {
                lsn: list_lsn,
                created,
            });
        }
        match failure {
            Some(error) => results.push(Err(error)),
            None => {
                state = overlay;
                lsn = list_lsn;
                finals.extend(list_finals);
                results.push(Ok(outcomes));
            }
        }
    }
    let deletes: Vec<&ItemKey> = keys
        .iter()
        .filter(|key| matches!(finals.get(*key), Some(None)))
        .collect();
    for chunk in deletes.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM cosmos_items WHERE {}",
            keys_condition(chunk.len())
        );
        bind_keys(sqlx::query(&sql), chunk.iter().copied())
            .execute(&mut **transaction)
            .await?;
    }
    let puts: Vec<&StoredItem> = keys
        .iter()
        .filter_map(|key| finals.get(key).and_then(Option::as_ref))
        .collect();
    for chunk in puts.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 8 * i;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO cosmos_items ({COLUMNS}) VALUES {} \
             ON CONFLICT (container_key, partition_key, id) DO UPDATE SET body = excluded.body, \
             etag = excluded.etag, ts = excluded.ts, lsn = excluded.lsn, expires_at = excluded.expires_at",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for item in chunk {
            query = query
                .bind(item.container_key.clone())
                .bind(item.partition_key.clone())
                .bind(item.id.clone())
                .bind(item.body.clone())
                .bind(item.etag.clone())
                .bind(item.ts)
                .bind(item.lsn)
                .bind(item.expires_at);
        }
        query.execute(&mut **transaction).await?;
    }
    if lsn != base_lsn {
        sqlx::query("UPDATE counters SET value = $1 WHERE name = 'cosmos_lsn'")
            .bind(lsn)
            .execute(&mut **transaction)
            .await?;
    }
    Ok(results)
}

impl Store {
    /// Applies item writes atomically through the group-commit writer.
    pub async fn apply_items(
        &self,
        writes: Vec<ItemWrite>,
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(crate::resources::PendingChange::Items { writes, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".to_string()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".to_string()))?
    }

    /// The live item at a key.
    pub async fn item(
        &self,
        container_key: &str,
        partition_key: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<StoredItem>, StoreError> {
        let epoch = match &self.item_cache {
            Some(cache) => {
                if let Some(hit) = cache.get(container_key, partition_key, id, now) {
                    return Ok(Some(hit));
                }
                Some(cache.epoch())
            }
            None => None,
        };
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cosmos_items WHERE container_key = $1 AND partition_key = $2 AND id = $3 AND (expires_at IS NULL OR expires_at > $4)"
        ))
        .bind(container_key.to_string())
        .bind(partition_key.to_string())
        .bind(id.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let item = row.as_ref().map(item_from_row).transpose()?;
        if let (Some(cache), Some(epoch), Some(item)) = (&self.item_cache, epoch, &item) {
            cache.fill(epoch, item);
        }
        Ok(item)
    }

    /// Live items of a container in key order (`partition_key`, `id`), after `after` if given,
    /// in the given partitions only if `partitions` is given; at most `limit`.
    pub async fn items(
        &self,
        container_key: &str,
        partitions: Option<&[String]>,
        after: Option<(&str, &str)>,
        limit: i64,
        now: i64,
    ) -> Result<Vec<StoredItem>, StoreError> {
        let (after_pk, after_id) = after.unwrap_or(("", ""));
        let has_after = after.is_some();
        let mut rows = Vec::new();
        let partitions: Vec<Option<&String>> = match partitions {
            Some(list) => list.iter().map(Some).collect(),
            None => vec![None],
        };
        // One statement per shape, with no `(flag OR condition)` terms: those keep the planners
        // (SQLite's, and PostgreSQL's generic plans) from using the primary key's range, and a
        // partition's query would scan the whole container.
        for partition in partitions {
            let mut sql = format!("SELECT {COLUMNS} FROM cosmos_items WHERE container_key = $1");
            let mut texts = vec![container_key.to_string()];
            match partition {
                Some(partition) => {
                    texts.push(partition.clone());
                    sql.push_str(" AND partition_key = $2");
                    if has_after {
                        if after_pk > partition.as_str() {
                            continue;
                        }
                        if after_pk == partition.as_str() {
                            texts.push(after_id.to_string());
                            sql.push_str(" AND id > $3");
                        }
                    }
                }
                None if has_after => {
                    texts.push(after_pk.to_string());
                    texts.push(after_id.to_string());
                    sql.push_str(" AND partition_key >= $2 AND (partition_key > $2 OR id > $3)");
                }
                None => {}
            }
            let next = texts.len();
            sql.push_str(&format!(
                " AND (expires_at IS NULL OR expires_at > ${}) ORDER BY partition_key, id LIMIT ${}",
                next + 1,
                next + 2
            ));
            let mut query = sqlx::query(&sql);
            for text in texts {
                query = query.bind(text);
            }
            let fetched = query.bind(now).bind(limit).fetch_all(&self.pool).await?;
            rows.extend(fetched);
        }
        let mut items = rows
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by(|a, b| (&a.partition_key, &a.id).cmp(&(&b.partition_key, &b.id)));
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(items)
    }

    /// Live items written after sequence number `after_lsn`, in write order (the change feed's
    /// latest version: each item once, as it is now), optionally of one partition; at most `limit`.
    pub async fn items_changed_since(
        &self,
        container_key: &str,
        partition: Option<&str>,
        after_lsn: i64,
        limit: i64,
        now: i64,
    ) -> Result<Vec<StoredItem>, StoreError> {
        let rows = match partition {
            Some(partition) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM cosmos_items WHERE container_key = $1 AND lsn > $2 \
                     AND partition_key = $3 AND (expires_at IS NULL OR expires_at > $4) \
                     ORDER BY lsn LIMIT $5"
                ))
                .bind(container_key.to_string())
                .bind(after_lsn)
                .bind(partition.to_string())
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM cosmos_items WHERE container_key = $1 AND lsn > $2 \
                     AND (expires_at IS NULL OR expires_at > $3) ORDER BY lsn LIMIT $4"
                ))
                .bind(container_key.to_string())
                .bind(after_lsn)
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(item_from_row).collect()
    }

    /// The latest sequence number handed out (the change feed's "now").
    pub async fn items_lsn(&self) -> Result<i64, StoreError> {
        let (value,): (i64,) =
            sqlx::query_as("SELECT value FROM counters WHERE name = 'cosmos_lsn'")
                .fetch_one(&self.pool)
                .await?;
        Ok(value)
    }

    /// Deletes a container's expired items; returns how many went.
    pub async fn purge_expired_items(&self, now: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM cosmos_items WHERE expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
