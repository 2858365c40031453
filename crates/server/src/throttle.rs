//! Per-client and per-address limits on the token endpoints: a token bucket per client id and
//! per remote address, refilled at the configured rate with a burst of twice that. A request over
//! either limit is answered as Entra answers throttling: 429 with `Retry-After` (seconds), and an
//! OAuth error body (`temporarily_unavailable`, AADSTS90055: too many incoming requests).
//!
//! In memory per server, like the lockout counters; the table forgets buckets that have refilled
//! when it grows past `MAX_BUCKETS`, so its size is bounded whatever the callers send.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept at most before full ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

/// The peer address of a request's connection (set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The request's peer address as an extractor: `None` when the request came another way (tests
/// driving the router directly).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<PeerAddr>()
                .map(|PeerAddr(address)| address.ip()),
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Client(u64),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct Throttle {
    /// Requests per second per client id (0: no limit).
    per_client: f64,
    /// Requests per second per remote address (0: no limit).
    per_address: f64,
    buckets: Mutex<HashMap<Key, Bucket>>,
}

fn client_key(client_id: &str) -> u64 {
    // FNV-1a over the lower-cased id: client ids are GUIDs in any casing.
    client_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

impl Throttle {
    pub fn new(per_client: u32, per_address: u32) -> Throttle {
        Throttle {
            per_client: f64::from(per_client),
            per_address: f64::from(per_address),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the bucket of `key`; how long to wait when it is empty.
    fn take(&self, key: Key, rate: f64, now: Instant) -> Result<(), Duration> {
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = rate * 2.0;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let refilled = now.duration_since(bucket.updated).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refilled).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    /// Admits a token request from `address` (when known) for `client_id` (when given), or says
    /// how long to wait.
    pub fn admit(
        &self,
        address: Option<IpAddr>,
        client_id: Option<&str>,
        now: Instant,
    ) -> Result<(), Duration> {
        if let Some(address) = address {
            self.take(Key::Address(address), self.per_address, now)?;
        }
        if let Some(client_id) = client_id {
            self.take(Key::Client(client_key(client_id)), self.per_client, now)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_twice_its_rate_at_once_then_its_rate() {
        let throttle = Throttle::new(10, 0);
        let start = Instant::now();
        for _ in 0..20 {
            assert!(throttle.admit(None, Some("A"), start).is_ok());
        }
        let wait = throttle.admit(None, Some("a"), start).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(throttle.admit(None, Some("b"), start).is_ok(), "per client");
        let later = start + Duration::from_millis(250);
        assert!(throttle.admit(None, Some("a"), later).is_ok());
        assert!(throttle.admit(None, Some("a"), later).is_ok());
        assert!(throttle.admit(None, Some("a"), later).is_err());
    }

    #[test]
    fn an_address_is_limited_whatever_client_it_names_and_zero_is_off() {
        let throttle = Throttle::new(0, 5);
        let address: IpAddr = "127.0.0.9".parse().unwrap();
        let now = Instant::now();
        for n in 0..10 {
            assert!(throttle
                .admit(Some(address), Some(&format!("client-{n}")), now)
                .is_ok());
        }
        assert!(throttle.admit(Some(address), Some("another"), now).is_err());
        assert!(throttle
            .admit(Some("127.0.0.10".parse().unwrap()), None, now)
            .is_ok());
        let off = Throttle::new(0, 0);
        for _ in 0..10_000 {
            assert!(off.admit(Some(address), Some("a"), now).is_ok());
        }
    }
}
