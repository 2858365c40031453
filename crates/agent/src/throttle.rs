//! Per-VM throttling of token requests, as Azure's identity endpoint does it (protocols.md §1.4):
//! a token bucket (20 requests per second by default) and a cap on requests in flight (5).
//!
//! Every token endpoint (IMDS, App Service, the VM extension) draws from the same bucket. A
//! refused request gets 429 with `Retry-After` in whole seconds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The throttle of one VM.
pub struct Throttle {
    bucket: Option<Mutex<TokenBucket>>,
    in_flight: Option<Arc<Semaphore>>,
}

/// Proof of admission; dropping it frees the in-flight slot.
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

/// A refused request: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: u64,
}

impl Throttle {
    /// `rate` requests per second (burst of `rate`) and `concurrent` in flight; 0 means no limit.
    pub fn new(rate: u32, concurrent: u32) -> Throttle {
        Throttle {
            bucket: (rate > 0).then(|| Mutex::new(TokenBucket::new(rate, Instant::now()))),
            in_flight: (concurrent > 0).then(|| Arc::new(Semaphore::new(concurrent as usize))),
        }
    }

    /// Admits one request now, or says when to retry.
    pub fn admit(&self) -> Result<Admission, Throttled> {
        let permit = match &self.in_flight {
            Some(semaphore) => Some(
                semaphore
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| Throttled { retry_after: 1 })?,
            ),
            None => None,
        };
        if let Some(bucket) = &self.bucket {
            bucket
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take(Instant::now())?;
        }
        Ok(Admission { _permit: permit })
    }
}

/// A token bucket holding at most `rate` tokens, refilled at `rate` per second.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last_refill: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last_refill: now,
        }
    }

    /// Takes one token at `now`, or says how many whole seconds until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Throttled> {
        let elapsed = now.saturating_duration_since(self.last_refill);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.rate);
        self.last_refill = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
        Err(Throttled {
            retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_of_rate_then_refills_at_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20, start);
        for _ in 0..20 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        assert_eq!(bucket.take(start), Err(Throttled { retry_after: 1 }));
        // 50 ms at 20/s refills exactly one token.
        assert_eq!(bucket.take(start + Duration::from_millis(50)), Ok(()));
        assert!(bucket.take(start + Duration::from_millis(50)).is_err());
        // A long pause never fills more than the burst.
        let later = start + Duration::from_secs(60);
        for _ in 0..20 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1, start);
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Err(Throttled { retry_after: 1 }));
        assert_eq!(bucket.take(start + Duration::from_millis(1_000)), Ok(()));
        let mut slow = TokenBucket::new(1, start);
        assert_eq!(slow.take(start), Ok(()));
        assert_eq!(
            slow.take(start + Duration::from_millis(999)),
            Err(Throttled { retry_after: 1 })
        );
    }

    #[test]
    fn in_flight_requests_are_capped() {
        let throttle = Throttle::new(0, 2);
        let first = throttle.admit().unwrap();
        let _second = throttle.admit().unwrap();
        assert_eq!(throttle.admit().err(), Some(Throttled { retry_after: 1 }));
        drop(first);
        assert!(throttle.admit().is_ok());
    }

    #[test]
    fn zero_means_no_limit() {
        let throttle = Throttle::new(0, 0);
        let admissions: Vec<_> = (0..1000).map(|_| throttle.admit()).collect();
        assert!(admissions.iter().all(Result::is_ok));
    }
}
