//! A read cache of resource records for ARM GETs.
//!
//! Writes never read through it (they need the stored version). Every local write clears it;
//! other servers' writes bump the store's `resources` counter, which the server polls (every
//! 100 ms), clearing it too. A generation number stops a read that raced with a write from
//! putting the old record back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openmi_store::{ResourceChange, ResourceRecord};

use crate::{Engine, EngineError};

/// Beyond this many records the cache starts over.
const CAPACITY: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct ReadCache {
    generation: AtomicU64,
    seen_version: AtomicI64,
    entries: Mutex<HashMap<String, Arc<ResourceRecord>>>,
    // Cosmos accounts' data-plane state (keys, assignments), dropped with the records.
    cosmos: crate::cosmos_auth::CosmosCache,
}

impl ReadCache {
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

    /// Applies a change through the store, then drops cached reads.
    pub(crate) async fn apply_change(
        &self,
        change: &ResourceChange,
    ) -> Result<Vec<ResourceRecord>, openmi_store::StoreError> {
        let result = self.store().apply(change).await;
        self.inner.read_cache.clear();
        result
    }

    /// Drops cached reads when another server changed resources (the store's counter moved).
    pub async fn refresh_read_cache(&self) -> Result<(), EngineError> {
        let version = self.store().resources_version().await?;
        let cache = &self.inner.read_cache;
        if cache.seen_version.swap(version, Ordering::SeqCst) != version {
            cache.clear();
        }
        Ok(())
    }
}
