//! The session stores: [`redis::RedisStore`] (survives restarts, shared by replicas) and
//! [`memory::MemoryStore`] (the embedded default) implement the
//! [`crate::core::session::SessionStore`] port with the same semantics: every read and
//! every write pushes the expiry forward, and appends are atomic.

pub mod connection;
pub mod memory;
pub mod redis;
pub mod timed;

use std::time::Duration;

pub use crate::core::session::{
    Role, SCHEMA_VERSION, Session, SessionError, SessionStore, Setting, Turn,
};

/// Settings shared by both stores.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub ttl: Duration,
    pub max_history: usize,
}

/// Appends with the history limit applied, as both stores do; an exchange recorded
/// answers what was left unanswered.
fn append_bounded(session: &mut Session, turns: &[Turn], max_history: usize) {
    session.unanswered = None;
    session.turns.extend_from_slice(turns);
    let excess = session.turns.len().saturating_sub(max_history);
    session.turns.drain(..excess);
}
