//! Login lockout, the pure part: failed logins are counted per key (an
//! account's email, or a client address) in a window; reaching the limit
//! locks the key for a while. Callers pass `now`; the store keeps the state
//! (`store::login_throttle`) so that every atelierd shares it.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// When a key locks and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures within `window` that lock the key (0: never locks).
    pub failures: u32,
    pub window: Duration,
    pub duration: Duration,
}

/// A key's state: failures since `window_started_at`, and the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub failures: u32,
    pub window_started_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
}

/// The key of an account: its email as typed, trimmed and lower-cased, known
/// or not (an unknown email locks exactly like a known one).
pub fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}

/// The key of a client address.
pub fn client_key(addr: &str) -> String {
    format!("client:{addr}")
}

/// How long the key stays locked from `now` (whole seconds, at least 1),
/// or `None` when it is not locked.
pub fn locked_for(t: &Throttle, now: DateTime<Utc>) -> Option<u64> {
    let until = t.locked_until?;
    if until <= now {
        return None;
    }
    let ms = (until - now).num_milliseconds().max(0) as u64;
    Some(ms.div_ceil(1000).max(1))
}

fn after(start: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    start + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The state after one more failure at `now`: a window older than
/// `limits.window` (or a lock that has ended) starts again at this failure;
/// reaching `limits.failures` locks the key until `now + limits.duration`.
pub fn after_failure(previous: Option<&Throttle>, limits: &Limits, now: DateTime<Utc>) -> Throttle {
    let fresh = Throttle { failures: 0, window_started_at: now, locked_until: None };
    let mut t = match previous {
        Some(p) if p.locked_until.is_some_and(|u| u <= now) => fresh,
        Some(p) if p.locked_until.is_none() && after(p.window_started_at, limits.window) <= now => fresh,
        Some(p) => *p,
        None => fresh,
    };
    t.failures = t.failures.saturating_add(1);
    if limits.failures > 0 && t.failures >= limits.failures && t.locked_until.is_none() {
        t.locked_until = Some(after(now, limits.duration));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { failures: 3, window: Duration::from_secs(60), duration: Duration::from_secs(300) }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn the_limit_th_failure_in_the_window_locks_for_the_duration() {
        let l = limits();
        let t1 = after_failure(None, &l, at(0));
        let t2 = after_failure(Some(&t1), &l, at(10));
        assert_eq!((t2.failures, t2.locked_until), (2, None));
        let t3 = after_failure(Some(&t2), &l, at(20));
        assert_eq!(t3.locked_until, Some(at(320)));
        assert_eq!(locked_for(&t3, at(20)), Some(300));
        assert_eq!(locked_for(&t3, at(319)), Some(1));
        assert_eq!(locked_for(&t3, at(320)), None);
    }

    #[test]
    fn failures_outside_the_window_start_it_again() {
        let l = limits();
        let t = after_failure(Some(&after_failure(None, &l, at(0))), &l, at(5));
        let t = after_failure(Some(&t), &l, at(61));
        assert_eq!((t.failures, t.window_started_at, t.locked_until), (1, at(61), None));
    }

    #[test]
    fn a_failure_during_a_lock_does_not_extend_it_and_one_after_starts_afresh() {
        let l = limits();
        let mut t = None;
        for s in 0..3 {
            t = Some(after_failure(t.as_ref(), &l, at(s)));
        }
        let locked = t.unwrap();
        let during = after_failure(Some(&locked), &l, at(100));
        assert_eq!(during.locked_until, locked.locked_until);
        let later = after_failure(Some(&locked), &l, at(400));
        assert_eq!((later.failures, later.locked_until), (1, None));
    }

    #[test]
    fn zero_failures_never_locks_and_keys_are_normalized() {
        let l = Limits { failures: 0, ..limits() };
        let mut t = after_failure(None, &l, at(0));
        for s in 1..100 {
            t = after_failure(Some(&t), &l, at(s));
        }
        assert_eq!(t.locked_until, None);
        assert_eq!(account_key("  Ann@Example.COM "), "account:ann@example.com");
        assert_eq!(client_key("127.0.0.1"), "client:127.0.0.1");
    }
}
