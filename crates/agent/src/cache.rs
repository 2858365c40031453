//! The token cache: one token per (identity, resource), served until its refresh point (half its
//! lifetime), and past it only while the server cannot be reached, until it expires.
//! The identity is the principal the request's selector means, so one identity asked for by
//! client id, object id or resource id shares its tokens.
//!
//! Each key has a slot with its own refresh lock, so concurrent misses for one key make one
//! request to the server while other keys go on. The cache also holds the set of identities
//! currently on the VM: a token of an identity that left is dropped at once and never stored
//! again, even when its request was already in flight (the check and the store happen under the
//! same lock as the revocation). Derived state only; nothing here is written to disk.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A token as the agent keeps it. Times are epoch seconds; `expires_on` and `not_before` are the
/// server's, `usable_until` and `refresh_at` are on the agent's clock (from `expires_in`), so a
/// skewed clock never serves an expired token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    pub access_token: String,
    pub client_id: String,
    pub object_id: String,
    pub msi_res_id: String,
    pub expires_on: i64,
    pub not_before: i64,
    pub usable_until: i64,
    pub refresh_at: i64,
    /// `access_token` as a JSON string, when escaping changes it (a JWT never needs escaping), so
    /// a cache hit does not escape it again.
    access_token_json: Option<Box<str>>,
}

/// Whether serde_json would escape anything in `text` (quotes, backslashes, control characters).
pub fn needs_json_escape(text: &str) -> bool {
    // Checked a block at a time without stopping early inside a block, so the compiler checks
    // many bytes per instruction: every minted token passes here (~1.2 KB; a byte-at-a-time scan
    // was 2 % of the agent's time on cache misses, BENCHMARKS.md).
    text.as_bytes().chunks(64).any(|block| {
        block.iter().fold(false, |found, &byte| {
            found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
        })
    })
}

impl CachedToken {
    /// A token received at `received_at` that the server said expires in `expires_in` seconds.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        access_token: String,
        client_id: String,
        object_id: String,
        msi_res_id: String,
        expires_on: i64,
        not_before: i64,
        expires_in: i64,
        received_at: i64,
    ) -> CachedToken {
        let expires_in = expires_in.max(0);
        let access_token_json = needs_json_escape(&access_token)
            .then(|| serde_json::to_string(&access_token).ok())
            .flatten()
            .map(String::into_boxed_str);
        CachedToken {
            access_token_json,
            access_token,
            client_id,
            object_id,
            msi_res_id,
            expires_on,
            not_before,
            usable_until: received_at + expires_in,
            refresh_at: received_at + expires_in / 2,
        }
    }

    /// Appends `access_token` as a JSON string.
    pub fn write_access_token_json(&self, out: &mut Vec<u8>) {
        match &self.access_token_json {
            Some(escaped) => out.extend_from_slice(escaped.as_bytes()),
            None => {
                out.push(b'"');
                out.extend_from_slice(self.access_token.as_bytes());
                out.push(b'"');
            }
        }
    }

    /// Before the refresh point: served without asking the server.
    pub fn is_fresh(&self, now: i64) -> bool {
        now < self.refresh_at
    }

    /// Not expired: still served when the server cannot be reached.
    pub fn is_usable(&self, now: i64) -> bool {
        now < self.usable_until
    }

    /// Seconds left at `now`, as IMDS counts `expires_in` down.
    pub fn expires_in(&self, now: i64) -> i64 {
        (self.usable_until - now).max(0)
    }
}

/// Whose token: an identity's principal (object) id in lower case, or, before the agent knows
/// which identity a selector means, the selector itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentityKey {
    Principal(String),
    Unresolved(String),
}

/// A cache key: identity and resource.
///
/// The resource is kept exactly as asked: it becomes the token's `aud`, and a client asking for
/// `https://management.azure.com/` must get that audience, not the one of an earlier request for
/// `https://management.azure.com` (IMDS answers both, each with its own audience).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub identity: IdentityKey,
    pub resource: String,
}

impl CacheKey {
    pub fn new(identity: IdentityKey, resource: &str) -> CacheKey {
        CacheKey {
            identity,
            resource: resource.to_string(),
        }
    }
}

/// One key's token and the lock that makes misses for it wait for one server request.
#[derive(Default)]
pub struct Slot {
    token: RwLock<Option<Arc<CachedToken>>>,
    pub refresh: tokio::sync::Mutex<()>,
    /// After a failed refresh: until when (epoch seconds) the stale token is served without
    /// asking the server again, so an unreachable server costs one attempt per key and period.
    retry_at: AtomicI64,
}

impl Slot {
    /// The token past its refresh point, while a failed refresh says not to retry yet.
    pub fn stale_while_failing(&self, now: i64) -> Option<Arc<CachedToken>> {
        if now >= self.retry_at.load(Ordering::Relaxed) {
            return None;
        }
        self.token().filter(|token| token.is_usable(now))
    }

    /// Remembers until when not to retry a failed refresh (0: retry at once).
    pub fn set_retry_at(&self, retry_at: i64) {
        self.retry_at.store(retry_at, Ordering::Relaxed);
    }

    pub fn token(&self) -> Option<Arc<CachedToken>> {
        self.token
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, token: Option<Arc<CachedToken>>) {
        *self
            .token
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = token;
    }
}

#[derive(Default)]
struct CacheState {
    /// Identity, then resource: looked up with a borrowed resource, no key built per request.
    slots: HashMap<IdentityKey, HashMap<String, Arc<Slot>>>,
    /// The principals on the VM; `None` until the first instance document.
    allowed: Option<HashSet<String>>,
}

impl CacheState {
    fn get(&self, identity: &IdentityKey, resource: &str) -> Option<&Arc<Slot>> {
        self.slots.get(identity)?.get(resource)
    }

    /// The slot of `key`, created when missing.
    fn entry(&mut self, key: &CacheKey) -> &Arc<Slot> {
        self.slots
            .entry(key.identity.clone())
            .or_default()
            .entry(key.resource.clone())
            .or_default()
    }

    fn slot_count(&self) -> usize {
        self.slots.values().map(HashMap::len).sum()
    }
}

/// The cache of one agent.
#[derive(Default)]
pub struct TokenCache {
    state: RwLock<CacheState>,
    /// Moves on every change that can change an answer (a token stored, removed or dropped, the
    /// VM's identities, what a selector means): a memoised response is valid only in its epoch.
    epoch: AtomicU64,
}

impl TokenCache {
    /// The fresh token under `key`, if any: the hot path, two read locks and no allocation.
    pub fn fresh(&self, key: &CacheKey, now: i64) -> Option<Arc<CachedToken>> {
        self.fresh_for(&key.identity, &key.resource, now)
    }

    /// [`TokenCache::fresh`] with the key's parts borrowed.
    pub fn fresh_for(
        &self,
        identity: &IdentityKey,
        resource: &str,
        now: i64,
    ) -> Option<Arc<CachedToken>> {
        let state = self.read();
        let token = state.get(identity, resource)?.token()?;
        token.is_fresh(now).then_some(token)
    }

    /// The slot of `key`, created when missing.
    pub fn slot(&self, key: &CacheKey) -> Arc<Slot> {
        if let Some(slot) = self.read().get(&key.identity, &key.resource) {
            return slot.clone();
        }
        self.write().entry(key).clone()
    }

    /// Stores `token` under `key` unless the identity is no longer on the VM; says whether it did.
    pub fn store(&self, key: &CacheKey, token: Arc<CachedToken>) -> bool {
        let mut state = self.write();
        if let (IdentityKey::Principal(principal), Some(allowed)) = (&key.identity, &state.allowed)
        {
            if !allowed.contains(principal) {
                return false;
            }
        }
        state.entry(key).set(Some(token));
        true
    }

    /// Forgets the token under `key` (the server refused the identity or the resource).
    pub fn remove_token(&self, key: &CacheKey) {
        if let Some(slot) = self.read().get(&key.identity, &key.resource) {
            slot.set(None);
        }
        self.bump_epoch();
    }

    /// The current epoch (see the field).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Starts a new epoch: something an answer depends on changed.
    pub fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops the slot of `key` if it holds no token and nobody else holds it, so requests for
    /// unknown identities or resources leave nothing behind.
    pub fn discard_if_empty(&self, key: &CacheKey) {
        let mut state = self.write();
        let Some(resources) = state.slots.get_mut(&key.identity) else {
            return;
        };
        let unused = resources
            .get(key.resource.as_str())
            .is_some_and(|slot| slot.token().is_none() && Arc::strong_count(slot) == 1);
        if unused {
            resources.remove(key.resource.as_str());
            if resources.is_empty() {
                state.slots.remove(&key.identity);
            }
        }
    }

    /// The VM's identities changed: keeps only the tokens of `principals` (and forgets every
    /// token stored under a selector).
    pub fn retain_principals(&self, principals: HashSet<String>) -> usize {
        let mut state = self.write();
        let before = state.slot_count();
        state.slots.retain(|identity, resources| {
            let keep = match identity {
                IdentityKey::Principal(principal) => principals.contains(principal),
                IdentityKey::Unresolved(_) => false,
            };
            if !keep {
                // A request waiting on one of these slots must not hand out its token either.
                for slot in resources.values() {
                    slot.set(None);
                }
            }
            keep
        });
        let dropped = before - state.slot_count();
        state.allowed = Some(principals);
        dropped
    }

    /// Drops everything: the VM or the agent's registration is gone.
    pub fn clear(&self) {
        let mut state = self.write();
        for slot in state.slots.values().flat_map(HashMap::values) {
            slot.set(None);
        }
        state.slots.clear();
        state.allowed = Some(HashSet::new());
    }

    /// How many keys hold a token.
    pub fn len(&self) -> usize {
        self.read()
            .slots
            .values()
            .flat_map(HashMap::values)
            .filter(|slot| slot.token().is_some())
            .count()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheState> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state for a change; the epoch moves (before the change is made, and the lock keeps
    /// readers out until it is done).
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheState> {
        let state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.bump_epoch();
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_check_finds_every_byte_serde_json_escapes_wherever_it_is() {
        let plain = "eyJ0eXAiOiJKV1QifQ.e30-_".repeat(20);
        assert!(!needs_json_escape(&plain));
        assert!(!needs_json_escape(""));
        for position in [0, 1, 63, 64, 65, 127, 128, plain.len() - 1] {
            for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
                let mut text = plain.clone();
                text.replace_range(position..position + 1, &special.to_string());
                assert!(needs_json_escape(&text), "{special:?} at {position}");
                let escaped = serde_json::to_string(&text).unwrap();
                assert_ne!(escaped, format!("\"{text}\""), "serde_json escapes it too");
            }
        }
        // What serde_json leaves alone: DEL and non-ASCII.
        assert!(!needs_json_escape("\u{7f}é✓"));
    }

    fn token(expires_in: i64, received_at: i64) -> Arc<CachedToken> {
        Arc::new(CachedToken::new(
            "t".into(),
            "c".into(),
            "o".into(),
            "m".into(),
            received_at + expires_in,
            received_at,
            expires_in,
            received_at,
        ))
    }

    fn key(principal: &str, resource: &str) -> CacheKey {
        CacheKey::new(IdentityKey::Principal(principal.into()), resource)
    }

    #[test]
    fn token_is_fresh_until_half_life_and_usable_until_expiry() {
        let token = token(86_400, 1_000);
        assert!(token.is_fresh(1_000 + 43_199));
        assert!(!token.is_fresh(1_000 + 43_200));
        assert!(token.is_usable(1_000 + 86_399));
        assert!(!token.is_usable(1_000 + 86_400));
        assert_eq!(token.expires_in(1_000 + 100), 86_300);
        assert_eq!(token.expires_in(1_000 + 90_000), 0);
    }

    #[test]
    fn resources_are_keyed_as_asked_because_they_become_the_audience() {
        assert_ne!(
            key("p", "https://management.azure.com/"),
            key("p", "https://management.azure.com")
        );
    }

    #[test]
    fn fresh_tokens_are_served_and_stale_ones_are_not() {
        let cache = TokenCache::default();
        let key = key("p", "r");
        assert!(cache.fresh(&key, 1_000).is_none());
        assert!(cache.store(&key, token(100, 1_000)));
        assert!(cache.fresh(&key, 1_049).is_some());
        assert!(cache.fresh(&key, 1_050).is_none());
        assert_eq!(
            cache.slot(&key).token().map(|t| t.is_usable(1_099)),
            Some(true)
        );
    }

    #[test]
    fn identities_that_leave_lose_their_tokens_and_cannot_store_new_ones() {
        let cache = TokenCache::default();
        cache.store(&key("a", "r"), token(100, 0));
        cache.store(&key("b", "r"), token(100, 0));
        let held = cache.slot(&key("b", "r"));
        assert_eq!(cache.retain_principals(HashSet::from(["a".to_string()])), 1);
        assert!(cache.fresh(&key("a", "r"), 1).is_some());
        assert!(cache.fresh(&key("b", "r"), 1).is_none());
        // A request that was in flight for "b" cannot put its token back.
        assert!(!cache.store(&key("b", "r"), token(100, 0)));
        assert!(cache.fresh(&key("b", "r"), 1).is_none());
        drop(held);
        cache.clear();
        assert_eq!(cache.len(), 0);
        assert!(!cache.store(&key("a", "r"), token(100, 0)));
    }

    #[test]
    fn empty_slots_are_discarded_only_when_unused() {
        let cache = TokenCache::default();
        let key = key("p", "r");
        let slot = cache.slot(&key);
        cache.discard_if_empty(&key);
        assert!(Arc::ptr_eq(&slot, &cache.slot(&key)), "still held: kept");
        drop(slot);
        cache.discard_if_empty(&key);
        assert_eq!(cache.read().slot_count(), 0);
        assert_eq!(cache.read().slots.len(), 0);
    }
}
