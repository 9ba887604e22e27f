//! The words of write budgets — a platform's limits as token buckets, a write's kind and
//! priority — and the port through which replicas share them ([`SharedBudgets`]): with
//! Redis every replica draws from the same buckets, so N replicas together send no faster
//! than the platform allows one bot ([`crate::coord::redis`]); without it each process's
//! [`crate::platform::pacer::Pacer`] keeps them alone.

use std::time::Duration;

use async_trait::async_trait;

use super::coordination::CoordError;

/// A token bucket: `burst` writes at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub const fn new(per_second: f64, burst: f64) -> Rate {
        Rate { per_second, burst }
    }
}

/// The budgets of one platform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Every chat: sends and edits.
    pub per_chat: Rate,
    /// Group chats as well: sends and edits (Telegram: 20 a minute).
    pub per_group: Option<Rate>,
    /// Tokens a draft must leave in a group's bucket.
    pub group_reserve: f64,
    /// The whole bot: new messages (sends).
    pub global_sends: Rate,
}

impl Limits {
    /// Telegram's published limits — about one message a second per chat (short bursts
    /// tolerated), 20 a minute in a group, about 30 a second overall — each refilled 5 %
    /// slower than the limit: a write reaches Telegram a few milliseconds after it was
    /// released, and those delays vary, so two writes released exactly one second apart
    /// can arrive closer together than that.
    pub const TELEGRAM: Limits = Limits {
        per_chat: Rate::new(0.95, 3.0),
        per_group: Some(Rate::new(19.0 / 60.0, 20.0)),
        group_reserve: 4.0,
        global_sends: Rate::new(28.5, 30.0),
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Draft,
    First,
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Send,
    Edit,
}

/// One write asking for budget.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub chat: &'a str,
    pub group: bool,
    pub write: Write,
    pub priority: Priority,
    /// This final text was refused before and is counted among the chat's waiting finals
    /// (which a first message leaves a token for); taking the budget uncounts it.
    pub counted: bool,
}

/// What drawing one write's budget found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drawn {
    /// Taken: write now.
    Now,
    /// Taken, for a turn this long from now (the bot's overall sends are booked in the
    /// order writes ask): write then, without asking again.
    Booked(Duration),
    /// Not taken: ask again after this long (a draft is skipped).
    Refused(Duration),
}

/// Write budgets shared by every replica of one bot, one atomic round trip each.
#[async_trait]
pub trait SharedBudgets: Send + Sync {
    /// Takes one write's budget from `platform`'s buckets under `limits`, with the same
    /// priorities as the process's pacer (a refused final is counted as waiting from then
    /// on).
    async fn draw(
        &self,
        platform: &str,
        limits: &Limits,
        ask: Ask<'_>,
    ) -> Result<Drawn, CoordError>;

    /// The platform answered 429 for `chat` (`None`: for the whole bot): no replica
    /// writes there for `wait`.
    async fn freeze(
        &self,
        platform: &str,
        chat: Option<&str>,
        wait: Duration,
    ) -> Result<(), CoordError>;

    /// Discord's per-route buckets (`X-RateLimit-Bucket`): `route` (`None`: every route)
    /// is not to be used for `wait`, by any replica.
    async fn pause(
        &self,
        platform: &str,
        route: Option<&str>,
        wait: Duration,
    ) -> Result<(), CoordError>;

    /// How long `route` (or every route) is still paused, if it is.
    async fn paused(&self, platform: &str, route: &str) -> Result<Option<Duration>, CoordError>;
}

impl std::fmt::Debug for dyn SharedBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedBudgets")
    }
}
