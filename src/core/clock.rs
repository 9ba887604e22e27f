//! The time port: where "now" comes from, so tests can cross refill periods and day
//! boundaries without waiting.

use chrono::{DateTime, Utc};

/// Where "now" comes from; tests use a settable clock to cross period boundaries.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
