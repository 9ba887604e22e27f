//! The coordination ports: what replicas of one bot must decide together so that users
//! see one bot — whose answer is in flight for a user and the /cancel that stops it
//! ([`SharedSlots`]), the per-user rate limits ([`SharedRates`]) and the platforms' write
//! budgets ([`super::pacing::SharedBudgets`]). With Redis (`REDIS_URL`) they are shared
//! ([`crate::coord::redis`]); with one process or no Redis each process decides alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::event::UserId;

/// What taking a user's in-flight slot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The slot is ours until freed or its lease runs out.
    Yes,
    /// Another answer of the user's is being written (on any replica).
    Busy,
    /// Another answer is only being delivered: the slot is free in a moment.
    Finishing,
}

/// What renewing a held slot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Still ours; carry on.
    Generating,
    /// Still ours, and the user sent /cancel to another replica meanwhile.
    Cancelled,
    /// Still ours, marked finishing.
    Finishing,
    /// No longer ours: the lease ran out (the process stalled past it).
    Lost,
}

#[derive(Debug, thiserror::Error)]
#[error("coordination store unavailable")]
pub struct CoordError(#[source] pub anyhow::Error);

/// One slot per user across every replica, held with a lease under a token only its
/// holder knows: a replica that dies frees its users when the lease runs out.
#[async_trait]
pub trait SharedSlots: Send + Sync {
    async fn take(&self, user: &UserId, token: &str, lease: Duration) -> Result<Taken, CoordError>;

    async fn renew(&self, user: &UserId, token: &str, lease: Duration) -> Result<Held, CoordError>;

    /// The answer is being delivered: a new message waits for the slot, /cancel no longer
    /// applies.
    async fn finishing(&self, user: &UserId, token: &str) -> Result<(), CoordError>;

    async fn free(&self, user: &UserId, token: &str) -> Result<(), CoordError>;

    /// Asks whichever replica holds the user's generating answer to stop it; false when
    /// no answer is being written.
    async fn cancel(&self, user: &UserId) -> Result<bool, CoordError>;

    /// The users (as `platform:user`) whose answer /cancel asked to stop, heard from any
    /// replica: the holder stops its answer if it is here.
    fn cancels(&self) -> tokio::sync::broadcast::Receiver<String>;
}

/// Rate limits counted across every replica: one atomic check per event.
#[async_trait]
pub trait SharedRates: Send + Sync {
    /// Counts one event for `key` against `count` per `period` (a burst of `count`, then
    /// one per `period / count`): `None` if allowed, else how long until one would be.
    async fn hit(
        &self,
        key: &str,
        count: u32,
        period: Duration,
    ) -> Result<Option<Duration>, CoordError>;

    /// What [`SharedRates::hit`] would answer, without counting anything: whether `key`
    /// has reached its limit (failed logins lock an account; trying does not count).
    async fn peek(
        &self,
        key: &str,
        count: u32,
        period: Duration,
    ) -> Result<Option<Duration>, CoordError>;
}

/// Model calls in flight for the whole bot (`limits.max_concurrent_answers`), counted
/// across replicas: each permit is leased under a token only its holder knows, so a dead
/// replica's permits come back when their leases run out.
#[async_trait]
pub trait SharedPermits: Send + Sync {
    /// Takes one of `limit` permits: false when all are held.
    async fn take_permit(
        &self,
        token: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<bool, CoordError>;

    /// Extends a held permit's lease: false when it had run out (and may be reused).
    async fn renew_permit(&self, token: &str, lease: Duration) -> Result<bool, CoordError>;

    /// Gives the permit back; waiters on every replica hear of it.
    async fn free_permit(&self, token: &str) -> Result<(), CoordError>;

    /// Rings whenever a permit is given back anywhere: a waiter tries again.
    fn permit_freed(&self) -> std::sync::Arc<tokio::sync::Notify>;
}

/// Whether the shared board answered, for any of its uses: `gptbot_coordination_degraded`
/// follows, and each change is logged once — while it is unreachable every replica
/// decides alone (answers in flight, /cancel, rate limits, send budgets), never stops.
pub fn reachable(result: Result<(), CoordError>) {
    static DEGRADED: AtomicBool = AtomicBool::new(false);
    let now = result.is_err();
    if DEGRADED.swap(now, Ordering::Relaxed) != now {
        match &result {
            Err(e) => tracing::warn!(
                error = %super::error::chain(e),
                "coordination store unreachable: answers in flight, /cancel, rate limits and send budgets are decided by each replica alone until it is back"
            ),
            Ok(()) => tracing::info!(
                "coordination store reachable again: answers in flight, /cancel, rate limits and send budgets are shared"
            ),
        }
    }
    ::metrics::gauge!(super::metrics::COORDINATION_DEGRADED).set(if now { 1.0 } else { 0.0 });
}

/// After the board failed, one use of it (a process's pacer, its Discord routes) decides
/// alone for [`Breaker::REST`] before asking again: a message's writes must not each wait
/// out a reconnection while Redis is down.
#[derive(Debug, Default)]
pub struct Breaker {
    until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Breaker {
    pub const REST: Duration = Duration::from_secs(1);

    /// Whether to ask the board now.
    pub fn closed(&self) -> bool {
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_none_or(|t| std::time::Instant::now() >= t)
    }

    /// What the board answered, recorded; `None` when it could not answer (decide
    /// alone instead).
    pub fn answered<T>(&self, result: Result<T, CoordError>) -> Option<T> {
        match result {
            Ok(t) => {
                self.record(Ok(()));
                Some(t)
            }
            Err(e) => {
                self.record(Err(e));
                None
            }
        }
    }

    /// What the board answered ([`reachable`] is told too).
    pub fn record(&self, result: Result<(), CoordError>) {
        let failed = result.is_err();
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        *until = failed.then(|| std::time::Instant::now() + Self::REST);
        drop(until);
        reachable(result);
    }
}
