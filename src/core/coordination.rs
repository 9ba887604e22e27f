//! The coordination ports: what replicas of one bot must decide together so that users
//! see one bot — whose answer is in flight for a user and the /cancel that stops it
//! ([`SharedSlots`]), and the per-user rate limits ([`SharedRates`]). With Redis (`REDIS_URL`) it is shared ([`crate::coord::redis`]); with one process
//! or no Redis there is no shared board and each process decides alone.

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
    /// Counts one event for `key` against `per_minute` (a burst of `per_minute`, then one
    /// per `60 s / per_minute`): `None` if allowed, else how long until one would be.
    async fn hit(&self, key: &str, per_minute: u32) -> Result<Option<Duration>, CoordError>;
}
