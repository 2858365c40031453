//! A read cache of resource records for ARM GETs, and the resource change feed.
//!
//! Writes never read through it (they need the stored version). A local write drops the records
//! it wrote (and, for a delete, everything under the deleted key, which the store deletes with
//! it); other servers' writes bump the store's `resources` counter, which the server polls (every
//! 100 ms), and the change log names their keys, which are dropped with everything under them.
//! Only a change beyond the log's reach clears the whole cache. A generation number, bumped by
//! every change, stops a read that raced with a write from putting the old record back.
//!
//! The same poll reads the store's change log (`resource_changes`: the keys of each committed
//! batch) and broadcasts them as a `ResourceNote`, and local writes broadcast theirs at once:
//! one query per server and poll feeds every agent watch, which wakes only for a note that
//! concerns its VM.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openmi_store::{ResourceChange, ResourceRecord};

use crate::{Engine, EngineError};

/// Beyond this many records the cache starts over.
const CAPACITY: usize = 100_000;

/// What changed in the resource store: the keys one batch wrote or deleted, or, when the change
/// log no longer reaches back to what this server saw, possibly anything.
#[derive(Debug, Clone)]
pub enum ResourceNote {
    Keys(Arc<Vec<String>>),
    Anything,
}

impl ResourceNote {
    /// Whether the note may concern the resource `key`: the key itself, an ancestor (its group
    /// deleted) or a child (a VM's extension).
    pub fn concerns(&self, key: &str) -> bool {
        let under = |inner: &str, outer: &str| {
            inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/')
        };
        match self {
            ResourceNote::Anything => true,
            ResourceNote::Keys(keys) => keys
                .iter()
                .any(|changed| changed == key || under(key, changed) || under(changed, key)),
        }
    }
}

/// Subscribers lagging more than this many notes behind are told `Anything`.
const NOTE_BACKLOG: usize = 4096;

#[derive(Debug)]
pub(crate) struct ResourceFeed {
    sender: tokio::sync::broadcast::Sender<ResourceNote>,
}

impl Default for ResourceFeed {
    fn default() -> Self {
        ResourceFeed {
            sender: tokio::sync::broadcast::channel(NOTE_BACKLOG).0,
        }
    }
}

/// Most log rows read per poll; a server further behind broadcasts `Anything`.
const FEED_READ_LIMIT: i64 = 100_000;

#[derive(Debug, Default)]
pub(crate) struct ReadCache {
    feed: ResourceFeed,
    generation: AtomicU64,
    seen_version: AtomicI64,
    entries: Mutex<HashMap<String, Arc<ResourceRecord>>>,
    // Cosmos accounts' data-plane state (keys, assignments), dropped with the records.
    cosmos: crate::cosmos_auth::CosmosCache,
}

/// Whether `key` is `changed` or lies under it.
fn at_or_under(key: &str, changed: &str) -> bool {
    key.starts_with(changed)
        && (key.len() == changed.len() || key.as_bytes().get(changed.len()) == Some(&b'/'))
}

impl ReadCache {
    /// Drops the records `written` names exactly and everything at or under `removed`.
    fn forget(&self, written: &[String], removed: &[String]) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.lock() {
            for key in written {
                entries.remove(key);
            }
            if !removed.is_empty() {
                entries.retain(|key, _| !removed.iter().any(|gone| at_or_under(key, gone)));
            }
        }
        self.cosmos.clear();
    }

    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
        self.cosmos.clear();
    }

    pub(crate) fn clear_cosmos(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cosmos.clear();
    }

    pub(crate) fn cosmos(&self) -> &crate::cosmos_auth::CosmosCache {
        &self.cosmos
    }

    /// Records cached (for `/metrics`).
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .map(|entries| entries.len())
            .unwrap_or(0)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

impl Engine {
    /// A resource by key, from the cache or the store.
    pub(crate) async fn cached_resource(
        &self,
        key: &str,
    ) -> Result<Option<Arc<ResourceRecord>>, EngineError> {
        let cache = &self.inner.read_cache;
        if let Some(found) = cache
            .entries
            .lock()
            .ok()
            .and_then(|entries| entries.get(key).cloned())
        {
            return Ok(Some(found));
        }
        let generation = cache.generation.load(Ordering::SeqCst);
        let Some(record) = self.store().resource(key).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        if let Ok(mut entries) = cache.entries.lock() {
            // Only if no write happened since the read began.
            if cache.generation.load(Ordering::SeqCst) == generation {
                if entries.len() >= CAPACITY {
                    entries.clear();
                }
                entries.insert(key.to_string(), record.clone());
            }
        }
        Ok(Some(record))
    }

    /// Applies a change through the store, then drops cached reads and tells the watchers.
    pub(crate) async fn apply_change(
        &self,
        change: &ResourceChange,
    ) -> Result<Vec<ResourceRecord>, openmi_store::StoreError> {
        let audited;
        let change = match crate::audit::for_write() {
            Some(record) => {
                audited = ResourceChange {
                    audit: Some(Box::new(record)),
                    ..change.clone()
                };
                &audited
            }
            None => change,
        };
        let result = self.store().apply(change).await;
        if result.is_ok() && change.audit.is_some() {
            crate::audit::written();
        }
        let written: Vec<String> = change
            .upserts
            .iter()
            .map(|record| record.key.clone())
            .collect();
        // After a failed change the cache is as right as before; dropping its keys is harmless.
        self.inner.read_cache.forget(&written, &change.deletes);
        if result.is_ok() {
            let keys: Vec<String> = change
                .deletes
                .iter()
                .cloned()
                .chain(change.upserts.iter().map(|record| record.key.clone()))
                .collect();
            // No subscriber is not an error.
            let _ = self
                .inner
                .read_cache
                .feed
                .sender
                .send(ResourceNote::Keys(Arc::new(keys)));
        }
        result
    }

    /// The resource change notes from now on (local writes at once, other servers' within a
    /// poll).
    pub fn resource_notes(&self) -> tokio::sync::broadcast::Receiver<ResourceNote> {
        self.inner.read_cache.feed.sender.subscribe()
    }

    /// Follows the store's change counter: when it moved, drops cached reads and broadcasts the
    /// keys the change log names since the last poll (or `Anything` beyond the log's reach).
    pub async fn refresh_read_cache(&self) -> Result<(), EngineError> {
        let version = self.store().resources_version().await?;
        let cache = &self.inner.read_cache;
        let seen = cache.seen_version.load(Ordering::SeqCst);
        if seen == version {
            return Ok(());
        }
        // The log does not say which keys were deleted: each is dropped with what is under it.
        let note = if seen > 0
            && version > seen
            && version - seen <= openmi_store::RESOURCE_LOG_RETAINED
        {
            let rows = self
                .store()
                .resource_changes_since(seen, FEED_READ_LIMIT)
                .await?;
            let first = rows.first().map(|(logged, _)| *logged);
            let last = rows.last().map(|(logged, _)| *logged);
            if first == Some(seen + 1)
                && last == Some(version)
                && (rows.len() as i64) < FEED_READ_LIMIT
            {
                ResourceNote::Keys(Arc::new(rows.into_iter().map(|(_, key)| key).collect()))
            } else {
                ResourceNote::Anything
            }
        } else {
            ResourceNote::Anything
        };
        cache.seen_version.store(version, Ordering::SeqCst);
        match &note {
            ResourceNote::Keys(keys) => cache.forget(&[], keys),
            ResourceNote::Anything => cache.clear(),
        }
        let _ = cache.feed.sender.send(note);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str) -> Arc<ResourceRecord> {
        Arc::new(ResourceRecord {
            key: key.to_string(),
            id: key.to_string(),
            subscription_id: "s".to_string(),
            group_key: None,
            parent_key: None,
            type_key: String::new(),
            name: String::new(),
            body: String::new(),
            version: 1,
            created_at: 0,
            updated_at: 0,
        })
    }

    #[test]
    fn forgetting_drops_written_keys_and_everything_under_removed_ones() {
        let cache = ReadCache::default();
        let group = "/subscriptions/s/resourcegroups/g";
        let keys = [
            group.to_string(),
            format!("{group}/providers/p/a"),
            format!("{group}/providers/p/a/extensions/e"),
            format!("{group}/providers/p/b"),
            format!("{group}2"),
        ];
        let fill = || {
            let mut entries = cache.entries.lock().unwrap();
            for key in &keys {
                entries.insert(key.clone(), record(key));
            }
        };
        let cached = || {
            let mut found: Vec<String> = cache.entries.lock().unwrap().keys().cloned().collect();
            found.sort();
            found
        };
        fill();
        let before = cache.generation();
        cache.forget(&[keys[3].clone()], &[]);
        assert!(
            cache.generation() > before,
            "a racing read may not put it back"
        );
        assert_eq!(
            cached(),
            [&keys[0], &keys[1], &keys[2], &keys[4]].map(String::clone)
        );
        cache.forget(&[], &[keys[1].clone()]);
        assert_eq!(
            cached(),
            [&keys[0], &keys[4]].map(String::clone),
            "the extension went with its VM"
        );
        fill();
        cache.forget(&[], &[group.to_string()]);
        assert_eq!(
            cached(),
            [keys[4].clone()],
            "a group takes what is in it, not a name it prefixes"
        );
    }

    #[test]
    fn notes_concern_the_key_its_ancestors_and_children() {
        let vm =
            "/subscriptions/s/resourcegroups/g/providers/microsoft.compute/virtualmachines/vm1";
        let note = |keys: &[&str]| {
            ResourceNote::Keys(Arc::new(keys.iter().map(|key| key.to_string()).collect()))
        };
        assert!(note(&[vm]).concerns(vm));
        assert!(note(&["/subscriptions/s/resourcegroups/g"]).concerns(vm));
        assert!(note(&[&format!("{vm}/extensions/e")]).concerns(vm));
        assert!(!note(&[&format!("{vm}2")]).concerns(vm));
        assert!(!note(&["/subscriptions/s/resourcegroups/g2"]).concerns(vm));
        assert!(!note(&[]).concerns(vm));
        assert!(ResourceNote::Anything.concerns(vm));
    }
}
