//! Memoised IMDS token responses: the same query in the same second, with nothing changed in
//! between, gets the same bytes, so a cached-token request skips parsing, identity resolution,
//! the cache lookup and writing the body (BENCHMARKS.md, agent).
//!
//! An entry is served only while (a) the token cache's epoch is the one it was made in (any
//! token stored, removed or revoked, any change of the VM's identities or of what a selector
//! means starts a new epoch), and (b) the clock shows the same second (the body's `expires_in`
//! counts seconds, and a token's freshness changes only on a second). The method, the headers
//! and the throttle are checked on every request before the memo is asked.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

/// foldhash, not std's SipHash: the query is hashed on every cached-token request (a few dozen
/// nanoseconds less each; the key is what a local workload asks, the memo is bounded).
type Map = HashMap<Box<str>, Entry, foldhash::fast::RandomState>;

/// At most this many distinct queries are remembered; more clear the memo (a workload asks for a
/// handful; many distinct queries are not worth remembering).
const MAX_ENTRIES: usize = 256;

struct Entry {
    epoch: u64,
    second: i64,
    body: Bytes,
}

#[derive(Default)]
pub struct ResponseMemo {
    entries: Mutex<Map>,
}

impl ResponseMemo {
    /// The body remembered for `query`, if it was made in `epoch` during second `now`.
    pub fn get(&self, query: &str, epoch: u64, now: i64) -> Option<Bytes> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = entries.get(query)?;
        (entry.epoch == epoch && entry.second == now).then(|| entry.body.clone())
    }

    /// Remembers `body` as the answer to `query` in `epoch` during second `now`.
    pub fn put(&self, query: &str, epoch: u64, now: i64, body: Bytes) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = Entry {
            epoch,
            second: now,
            body,
        };
        if let Some(existing) = entries.get_mut(query) {
            *existing = entry;
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(query.into(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_only_in_the_same_epoch_and_second() {
        let memo = ResponseMemo::default();
        assert_eq!(memo.get("q", 1, 100), None);
        memo.put("q", 1, 100, Bytes::from_static(b"body"));
        assert_eq!(memo.get("q", 1, 100), Some(Bytes::from_static(b"body")));
        assert_eq!(memo.get("q", 2, 100), None, "a change since");
        assert_eq!(memo.get("q", 1, 101), None, "a second later");
        assert_eq!(memo.get("q2", 1, 100), None, "another query");
        memo.put("q", 2, 101, Bytes::from_static(b"new"));
        assert_eq!(memo.get("q", 2, 101), Some(Bytes::from_static(b"new")));
    }

    #[test]
    fn bounded() {
        let memo = ResponseMemo::default();
        for index in 0..MAX_ENTRIES + 10 {
            memo.put(&format!("q{index}"), 1, 100, Bytes::from_static(b"b"));
        }
        let entries = memo.entries.lock().unwrap().len();
        assert!(entries <= MAX_ENTRIES, "{entries}");
    }
}
