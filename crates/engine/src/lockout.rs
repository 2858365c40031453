//! Smart lockout of password sign-ins, as Microsoft Entra documents it: after `threshold` failed
//! sign-ins (10 by default) an account is locked for `duration` (60 s by default), longer each
//! time it locks again; while locked, every password sign-in is refused with AADSTS50053, the
//! right password too. The same wrong password tried again is not counted a second time (Entra
//! tracks the last three bad password hashes). A good sign-in forgets the failures.
//!
//! Counted per server, in memory, as Entra counts per data center (its docs: "each Microsoft
//! Entra data center tracks lockout independently"); a restart forgets. Wrong passwords are kept
//! only as keyed hashes, never as given.

use std::collections::HashMap;
use std::sync::Mutex;

use openmi_model::ObjectId;

/// Bad password hashes remembered per account.
const REMEMBERED: usize = 3;
/// Accounts tracked at once; beyond this the oldest unlocked ones are dropped.
const MAX_TRACKED: usize = 100_000;
/// A lockout never lasts longer than this (seconds), however often it repeats.
const MAX_DURATION: i64 = 3600;

#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Failed sign-ins that lock the account; 0 turns lockout off.
    pub threshold: u32,
    /// Seconds of the first lockout; each further one doubles it (up to an hour).
    pub duration: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            threshold: 10,
            duration: 60,
        }
    }
}

#[derive(Debug, Default)]
struct Account {
    failures: u32,
    bad: Vec<String>,
    locked_until: i64,
    lockouts: u32,
    last_seen: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Lockout {
    accounts: Mutex<HashMap<ObjectId, Account>>,
}

impl Lockout {
    /// Whether `user` is locked at `now`.
    pub(crate) fn is_locked(&self, user: ObjectId, now: i64) -> bool {
        self.accounts
            .lock()
            .map(|accounts| accounts.get(&user).is_some_and(|a| a.locked_until > now))
            .unwrap_or(false)
    }

    /// Records a wrong password (its keyed hash); the seconds of the lockout when this failure
    /// locks the account.
    pub(crate) fn failed(
        &self,
        policy: &LockoutPolicy,
        user: ObjectId,
        password_hash: String,
        now: i64,
    ) -> Option<i64> {
        if policy.threshold == 0 {
            return None;
        }
        let Ok(mut accounts) = self.accounts.lock() else {
            return None;
        };
        if accounts.len() >= MAX_TRACKED && !accounts.contains_key(&user) {
            accounts.retain(|_, account| account.locked_until > now);
        }
        let account = accounts.entry(user).or_default();
        account.last_seen = now;
        if account.bad.contains(&password_hash) {
            return None;
        }
        if account.bad.len() == REMEMBERED {
            account.bad.remove(0);
        }
        account.bad.push(password_hash);
        account.failures += 1;
        if account.failures < policy.threshold {
            return None;
        }
        let factor = 1i64 << account.lockouts.min(12);
        let seconds = (policy.duration * factor).min(MAX_DURATION);
        account.locked_until = now + seconds;
        account.lockouts += 1;
        account.failures = 0;
        account.bad.clear();
        Some(seconds)
    }

    /// A good sign-in: the failures are forgotten (earlier lockouts still lengthen the next).
    pub(crate) fn succeeded(&self, user: ObjectId) {
        if let Ok(mut accounts) = self.accounts.lock() {
            if let Some(account) = accounts.get_mut(&user) {
                account.failures = 0;
                account.bad.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_threshold_of_distinct_wrong_passwords_for_longer_each_time() {
        let policy = LockoutPolicy {
            threshold: 3,
            duration: 60,
        };
        let lockout = Lockout::default();
        let user = ObjectId::new_random();
        assert!(lockout.failed(&policy, user, "a".into(), 0).is_none());
        assert!(
            lockout.failed(&policy, user, "a".into(), 1).is_none(),
            "the same wrong password again is not counted"
        );
        assert!(lockout.failed(&policy, user, "b".into(), 2).is_none());
        assert!(!lockout.is_locked(user, 2));
        assert_eq!(lockout.failed(&policy, user, "c".into(), 3), Some(60));
        assert!(lockout.is_locked(user, 3) && lockout.is_locked(user, 62));
        assert!(!lockout.is_locked(user, 63), "60 s");
        for (n, password) in ["d", "e", "f"].into_iter().enumerate() {
            lockout.failed(&policy, user, password.into(), 100 + n as i64);
        }
        assert!(lockout.is_locked(user, 102 + 119) && !lockout.is_locked(user, 102 + 120));
        assert!(
            !lockout.is_locked(ObjectId::new_random(), 100),
            "per account"
        );
    }

    #[test]
    fn a_good_sign_in_forgets_the_failures_and_zero_turns_it_off() {
        let policy = LockoutPolicy {
            threshold: 2,
            duration: 60,
        };
        let lockout = Lockout::default();
        let user = ObjectId::new_random();
        lockout.failed(&policy, user, "a".into(), 0);
        lockout.succeeded(user);
        assert!(lockout.failed(&policy, user, "b".into(), 1).is_none());
        let off = LockoutPolicy {
            threshold: 0,
            duration: 60,
        };
        for n in 0..50 {
            assert!(lockout.failed(&off, user, format!("{n}"), 2).is_none());
        }
    }
}
