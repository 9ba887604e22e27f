//! Rate limits a flood of new keys cannot grow without end. [`Keyed`] is governor's
//! keyed GCRA limiter with pruning at most once a second and a hard cap on the keys it
//! keeps; [`Window`] counts attempts per key in a fixed window on a size-bounded cache,
//! for counters that must only move on some outcomes (failed logins).

use std::hash::Hash;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Why [`Keyed::check`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// This key is over its rate; it may try again after this long.
    Wait(Duration),
    /// The limiter holds as many keys as it may (a flood of new keys): refused until
    /// pruning frees room.
    Full,
}

/// A keyed GCRA limiter of at most `cap` keys.
pub struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    cap: usize,
    /// Pruning walks every key: at most once a second.
    pruned: Mutex<Option<Instant>>,
}

/// Keys are pruned (those back at full allowance dropped) once there are this many.
const PRUNE_ABOVE: usize = 10_000;

impl<K: Hash + Eq + Clone> Keyed<K> {
    pub fn new(quota: Quota, cap: usize) -> Keyed<K> {
        Keyed {
            limiter: RateLimiter::keyed(quota),
            cap: cap.max(1),
            pruned: Mutex::new(None),
        }
    }

    /// Counts one request of `key`.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        if self.limiter.len() >= PRUNE_ABOVE.min(self.cap) {
            self.prune();
            // Checked before `key` is looked up, which would add it.
            if self.limiter.len() >= self.cap {
                return Err(Limited::Full);
            }
        }
        self.limiter.check_key(key).map_err(|not_until| {
            Limited::Wait(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    fn prune(&self) {
        let mut last = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// Counts per key over a fixed window (from a key's first count), on a cache bounded to
/// `capacity` keys. Under a flood the least-used keys are evicted first, so a key being
/// hammered stays counted.
pub struct Window<K: Hash + Eq + Send + Sync + Clone + 'static> {
    counts: moka::sync::Cache<K, Arc<AtomicU32>>,
    limit: u32,
}

impl<K: Hash + Eq + Send + Sync + Clone + 'static> Window<K> {
    pub fn new(limit: u32, window: Duration, capacity: u64) -> Window<K> {
        Window {
            counts: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(window)
                .build(),
            limit,
        }
    }

    /// Whether `key` has reached the limit in its window (counting nothing).
    pub fn reached(&self, key: &K) -> bool {
        self.counts
            .get(key)
            .is_some_and(|n| n.load(Ordering::Relaxed) >= self.limit)
    }

    /// Counts one for `key`; true while it is within the limit.
    pub fn count(&self, key: &K) -> bool {
        let n = self
            .counts
            .get_with(key.clone(), || Arc::new(AtomicU32::new(0)));
        n.fetch_add(1, Ordering::Relaxed) < self.limit
    }

    /// Keys held now (after pending evictions run).
    pub fn len(&self) -> u64 {
        self.counts.run_pending_tasks();
        self.counts.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn a_flood_of_new_keys_stops_at_the_cap() {
        let keyed = Keyed::new(Quota::per_minute(NonZeroU32::new(2).unwrap()), 50);
        for k in 0..49u32 {
            assert_eq!(keyed.check(&k), Ok(()));
        }
        assert_eq!(keyed.check(&49), Ok(()));
        // Full of keys still counting down: the next new one is refused, not stored.
        assert_eq!(keyed.check(&1000), Err(Limited::Full));
        assert_eq!(keyed.len(), 50);
        let again = Keyed::new(Quota::per_minute(NonZeroU32::new(1).unwrap()), 10);
        assert_eq!(again.check(&"a"), Ok(()));
        assert!(matches!(again.check(&"a"), Err(Limited::Wait(_))));
    }

    #[test]
    fn a_window_counts_up_to_its_limit_and_stays_bounded() {
        let window = Window::new(3, Duration::from_secs(60), 1000);
        assert!(!window.reached(&"bob"));
        assert!(window.count(&"bob"));
        assert!(window.count(&"bob"));
        assert!(window.count(&"bob"));
        assert!(window.reached(&"bob"));
        assert!(!window.count(&"bob"));
        let flood: Window<u32> = Window::new(1, Duration::from_secs(60), 1000);
        for k in 0..20_000u32 {
            flood.count(&k);
        }
        assert!(flood.len() <= 1000, "{} keys held", flood.len());
    }
}
