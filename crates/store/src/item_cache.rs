//! The embedded backend's cache of Cosmos items for point reads.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every statement to it over a
//! channel, so a point read costs two thread switches besides the lookup; on a small machine that
//! is most of a read's time (see BENCHMARKS.md). With SQLite this process is the database's only
//! writer, and every item write goes through the store's writer task, so a cache the writer keeps
//! up to date is exact. (With PostgreSQL other replicas write too: no cache there.)
//!
//! Correctness rule: the writer changes entries only after its transaction has committed, and
//! bumps `epoch` under the same lock; a reader fills the cache from the database only if `epoch`
//! did not move since before its read, so a read that raced a write never leaves the old version.
//! A committed resource change (a container or account deleted with its items) clears the cache.
//! Another process writing items into the same file (a second server on one data directory) is
//! noticed by `watch`, which reads the sequence counter every 100 ms and clears the cache when it
//! moved past what this process's writer handed out: the read cache's guarantee, within 100 ms.
//! Bounded by bytes of bodies; over budget, arbitrary entries go (HashMap order).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::items::StoredItem;

const BUDGET_BYTES: usize = 64 << 20;

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(String, String, String), StoredItem>,
    bytes: usize,
    epoch: u64,
    /// The highest sequence number this process's writer has applied here.
    known_lsn: i64,
}

#[derive(Debug, Default)]
pub(crate) struct ItemCache {
    inner: Mutex<Inner>,
}

fn key_of(item: &StoredItem) -> (String, String, String) {
    (
        item.container_key.clone(),
        item.partition_key.clone(),
        item.id.clone(),
    )
}

fn size_of(item: &StoredItem) -> usize {
    item.body.len() + item.id.len() + item.partition_key.len() + item.container_key.len() + 96
}

impl Inner {
    fn remove(&mut self, key: &(String, String, String)) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= size_of(&old);
        }
    }

    fn insert(&mut self, item: StoredItem) {
        let key = key_of(&item);
        self.remove(&key);
        self.bytes += size_of(&item);
        self.entries.insert(key, item);
        if self.bytes > BUDGET_BYTES {
            let goal = BUDGET_BYTES / 10 * 9;
            let victims: Vec<_> = self
                .entries
                .keys()
                .take(self.entries.len() / 10 + 1)
                .cloned()
                .collect();
            for victim in victims {
                self.remove(&victim);
                if self.bytes <= goal {
                    break;
                }
            }
        }
    }
}

/// What a committed batch did to items.
pub(crate) enum CacheChange {
    Put(StoredItem),
    Remove {
        container_key: String,
        partition_key: String,
        id: String,
        lsn: i64,
    },
    /// Resources changed (containers may have gone with their items).
    Clear,
}

impl ItemCache {
    /// The live item at a key, if cached.
    pub(crate) fn get(
        &self,
        container: &str,
        partition: &str,
        id: &str,
        now: i64,
    ) -> Option<StoredItem> {
        let inner = self.inner.lock().ok()?;
        let item =
            inner
                .entries
                .get(&(container.to_string(), partition.to_string(), id.to_string()))?;
        match item.expires_at {
            Some(at) if at <= now => None,
            _ => Some(item.clone()),
        }
    }

    /// How many items are cached.
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|inner| inner.entries.len())
            .unwrap_or(0)
    }

    /// The epoch to pass to `fill` (read it before reading the database).
    pub(crate) fn epoch(&self) -> u64 {
        self.inner
            .lock()
            .map(|inner| inner.epoch)
            .unwrap_or(u64::MAX)
    }

    /// Caches what a reader found, unless a write committed since `epoch`.
    pub(crate) fn fill(&self, epoch: u64, item: &StoredItem) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.epoch == epoch {
                inner.insert(item.clone());
            }
        }
    }

    /// Clears the cache if the store's sequence counter shows item writes this process did not
    /// make (`watch` calls it with the counter it read).
    pub(crate) fn observe_lsn(&self, lsn: i64) {
        if let Ok(mut inner) = self.inner.lock() {
            if lsn > inner.known_lsn {
                inner.known_lsn = lsn;
                inner.epoch += 1;
                inner.entries.clear();
                inner.bytes = 0;
            }
        }
    }

    /// Applies a committed batch's changes (the writer, after its commit).
    pub(crate) fn apply(&self, changes: Vec<CacheChange>) {
        if changes.is_empty() {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.epoch += 1;
        for change in changes {
            match change {
                CacheChange::Put(item) => {
                    inner.known_lsn = inner.known_lsn.max(item.lsn);
                    inner.insert(item)
                }
                CacheChange::Remove {
                    container_key,
                    partition_key,
                    id,
                    lsn,
                } => {
                    inner.known_lsn = inner.known_lsn.max(lsn);
                    inner.remove(&(container_key, partition_key, id))
                }
                CacheChange::Clear => {
                    inner.entries.clear();
                    inner.bytes = 0;
                }
            }
        }
    }
}

/// Polls the store's item sequence counter every 100 ms for writes of other processes.
pub(crate) async fn watch(pool: sqlx::AnyPool, cache: std::sync::Arc<ItemCache>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        let read: Result<(i64,), _> =
            sqlx::query_as("SELECT value FROM counters WHERE name = 'cosmos_lsn'")
                .fetch_one(&pool)
                .await;
        if let Ok((lsn,)) = read {
            cache.observe_lsn(lsn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, body: &str, lsn: i64) -> StoredItem {
        StoredItem {
            container_key: "c".into(),
            partition_key: "[\"p\"]".into(),
            id: id.into(),
            body: body.into(),
            etag: format!("e{lsn}"),
            ts: 0,
            lsn,
            expires_at: None,
        }
    }

    #[test]
    fn a_read_that_raced_a_write_does_not_fill() {
        let cache = ItemCache::default();
        let before = cache.epoch();
        cache.apply(vec![CacheChange::Put(item("1", "new", 2))]);
        cache.fill(before, &item("1", "old", 1));
        assert_eq!(cache.get("c", "[\"p\"]", "1", 0).unwrap().body, "new");
        cache.apply(vec![CacheChange::Remove {
            container_key: "c".into(),
            partition_key: "[\"p\"]".into(),
            id: "1".into(),
            lsn: 3,
        }]);
        cache.fill(before, &item("1", "old", 1));
        assert!(cache.get("c", "[\"p\"]", "1", 0).is_none());
        let now = cache.epoch();
        cache.fill(now, &item("1", "fresh", 3));
        assert_eq!(cache.get("c", "[\"p\"]", "1", 0).unwrap().body, "fresh");
        cache.apply(vec![CacheChange::Clear]);
        assert!(cache.get("c", "[\"p\"]", "1", 0).is_none());
    }

    #[test]
    fn writes_of_another_process_clear_the_cache() {
        let cache = ItemCache::default();
        cache.apply(vec![CacheChange::Put(item("1", "mine", 5))]);
        cache.observe_lsn(5);
        assert!(cache.get("c", "[\"p\"]", "1", 0).is_some(), "our own write");
        cache.observe_lsn(6);
        assert!(
            cache.get("c", "[\"p\"]", "1", 0).is_none(),
            "someone else wrote"
        );
    }

    #[test]
    fn expired_items_are_not_served_and_the_budget_holds() {
        let cache = ItemCache::default();
        let mut expiring = item("x", "b", 1);
        expiring.expires_at = Some(10);
        cache.apply(vec![CacheChange::Put(expiring)]);
        assert!(cache.get("c", "[\"p\"]", "x", 9).is_some());
        assert!(cache.get("c", "[\"p\"]", "x", 10).is_none());
        let big = "x".repeat(1 << 20);
        for i in 0..100 {
            cache.apply(vec![CacheChange::Put(item(&i.to_string(), &big, i))]);
        }
        assert!(cache.inner.lock().unwrap().bytes <= BUDGET_BYTES);
    }
}
