//! Cosmos DB items (issue 17): conditional writes (create, replace, upsert, delete, each with an
//! optional ETag precondition) applied through the group-commit writer like resource changes, so
//! an acknowledged write is on disk, and the reads the data plane needs (one item, a container's
//! items in key order from a position, the change feed by sequence number).
//!
//! An expired item (TTL) reads as absent and may be written over; nothing here decides what a
//! document may contain.

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

/// The live item's ETag at a key, if any.
async fn current_etag(
    transaction: &mut Transaction<'_, Any>,
    container_key: &str,
    partition_key: &str,
    id: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT etag, expires_at FROM cosmos_items WHERE container_key = $1 AND partition_key = $2 AND id = $3",
    )
    .bind(container_key.to_string())
    .bind(partition_key.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut **transaction)
    .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let expires_at: Option<i64> = row.try_get("expires_at")?;
            if expires_at.is_some_and(|at| at <= now) {
                Ok(None)
            } else {
                Ok(Some(row.try_get("etag")?))
            }
        }
    }
}

async fn next_lsn(transaction: &mut Transaction<'_, Any>) -> Result<i64, StoreError> {
    // One statement (SQLite >= 3.35 and PostgreSQL both have RETURNING): each statement is a
    // round trip to sqlx's SQLite worker thread, which is most of a write's cost.
    let (value,): (i64,) = sqlx::query_as(
        "UPDATE counters SET value = value + 1 WHERE name = 'cosmos_lsn' RETURNING value",
    )
    .fetch_one(&mut **transaction)
    .await?;
    Ok(value)
}

/// Writes the item at its key, over an existing (or expired) one.
async fn put(
    transaction: &mut Transaction<'_, Any>,
    item: &StoredItem,
    lsn: i64,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO cosmos_items ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (container_key, partition_key, id) DO UPDATE SET body = excluded.body, \
         etag = excluded.etag, ts = excluded.ts, lsn = excluded.lsn, expires_at = excluded.expires_at"
    ))
    .bind(item.container_key.clone())
    .bind(item.partition_key.clone())
    .bind(item.id.clone())
    .bind(item.body.clone())
    .bind(item.etag.clone())
    .bind(item.ts)
    .bind(lsn)
    .bind(item.expires_at)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

fn check_match(current: &str, if_match: &Option<String>) -> Result<(), StoreError> {
    match if_match {
        Some(wanted) if wanted != current && wanted != "*" => Err(StoreError::PreconditionFailed),
        _ => Ok(()),
    }
}

/// Applies writes in a transaction (the writer's savepoint): all or none.
pub(crate) async fn apply_items(
    transaction: &mut Transaction<'_, Any>,
    writes: &[ItemWrite],
) -> Result<Vec<ItemOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(writes.len());
    for write in writes {
        let outcome = match write {
            ItemWrite::Create { item, now } => {
                if current_etag(
                    transaction,
                    &item.container_key,
                    &item.partition_key,
                    &item.id,
                    *now,
                )
                .await?
                .is_some()
                {
                    return Err(StoreError::AlreadyExists);
                }
                let lsn = next_lsn(transaction).await?;
                put(transaction, item, lsn).await?;
                ItemOutcome { lsn, created: true }
            }
            ItemWrite::Replace {
                item,
                if_match,
                now,
            } => {
                let current = current_etag(
                    transaction,
                    &item.container_key,
                    &item.partition_key,
                    &item.id,
                    *now,
                )
                .await?
                .ok_or(StoreError::NotFound)?;
                check_match(&current, if_match)?;
                let lsn = next_lsn(transaction).await?;
                put(transaction, item, lsn).await?;
                ItemOutcome {
                    lsn,
                    created: false,
                }
            }
            ItemWrite::Upsert {
                item,
                if_match,
                now,
            } => {
                let current = current_etag(
                    transaction,
                    &item.container_key,
                    &item.partition_key,
                    &item.id,
                    *now,
                )
                .await?;
                match (&current, if_match) {
                    (Some(current), _) => check_match(current, if_match)?,
                    (None, Some(_)) => return Err(StoreError::PreconditionFailed),
                    (None, None) => {}
                }
                let lsn = next_lsn(transaction).await?;
                put(transaction, item, lsn).await?;
                ItemOutcome {
                    lsn,
                    created: current.is_none(),
                }
            }
            ItemWrite::Delete {
                container_key,
                partition_key,
                id,
                if_match,
                now,
            } => {
                let current = current_etag(transaction, container_key, partition_key, id, *now)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                check_match(&current, if_match)?;
                sqlx::query(
                    "DELETE FROM cosmos_items WHERE container_key = $1 AND partition_key = $2 AND id = $3",
                )
                .bind(container_key.clone())
                .bind(partition_key.clone())
                .bind(id.clone())
                .execute(&mut **transaction)
                .await?;
                let lsn = next_lsn(transaction).await?;
                ItemOutcome {
                    lsn,
                    created: false,
                }
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
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
