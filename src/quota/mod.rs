//! The token quota ledger (SQLite, or PostgreSQL for replicas, through sqlx): every user's granted, remaining,
//! reserved and used tokens. Tokens are reserved before a model call, settled with the
//! real usage after it, refunded on failure; `granted = remaining + reserved + used`
//! holds at every instant (the schema enforces it) and `remaining` never goes below 0.
//!
//! Every change is also an entry of `quota_ledger` (grant, reserve, settle, refund,
//! refill, adjust), written by a trigger in the same statement, so the balance can be
//! explained entry by entry. Balances are topped up lazily, once per UTC day, ISO week or
//! month (`quota.refill`), to the plan's or the user's own refill amount; a user can also
//! be unlimited (usage is still counted). A balance of 0 means 0.

mod accounts;
mod holds;
mod links;
mod paying;
pub mod payments;
pub mod period;
mod refills;
mod reports;
mod reservations;
pub mod usage;
mod wallets;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use sqlx::FromRow;

pub use crate::config::Refill;
pub use crate::core::clock::{Clock, SystemClock};
use crate::core::event::UserId;
use crate::db::Db;
pub use holds::Hold;
pub use paying::{Payer, WalletShort};
pub use reports::{AccountsPage, LedgerEntry, Stats};
pub use reservations::{Reservation, Settlement};
pub use wallets::{Funding, MemberUse, Wallet, WalletReport};

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("quota exhausted: {remaining} tokens left, {needed} needed")]
    Exhausted { remaining: i64, needed: i64 },
    /// The operation makes no sense for this account (shown to the user as is).
    #[error("{0}")]
    Invalid(String),
    /// An operator's limit is reached (new accounts per day, the daily token budget);
    /// the sentence is shown to the user as is.
    #[error("{0}")]
    Limit(&'static str),
    /// A group's wallet cannot pay and the group does not let members pay themselves
    /// (`/budget when-empty refuse`).
    #[error("the group's wallet cannot pay: {0}")]
    Wallet(WalletShort),
    /// The database failed; the source says what was being done and the driver's error.
    #[error("quota database error")]
    Database(#[source] anyhow::Error),
}

impl From<anyhow::Error> for QuotaError {
    fn from(e: anyhow::Error) -> QuotaError {
        QuotaError::Database(e)
    }
}

/// A user's account as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub granted: i64,
    pub remaining: i64,
    pub reserved: i64,
    pub used: i64,
    pub requests: i64,
    pub unlimited: bool,
    pub refill_tokens: Option<i64>,
}

/// A balance as read (booleans are stored as 0/1 in both databases).
#[derive(FromRow)]
struct BalanceRow {
    granted: i64,
    remaining: i64,
    reserved: i64,
    used: i64,
    requests: i64,
    unlimited: i64,
    refill_tokens: Option<i64>,
}

impl From<BalanceRow> for Balance {
    fn from(r: BalanceRow) -> Balance {
        Balance {
            granted: r.granted,
            remaining: r.remaining,
            reserved: r.reserved,
            used: r.used,
            requests: r.requests,
            unlimited: r.unlimited != 0,
            refill_tokens: r.refill_tokens,
        }
    }
}

/// How new users start and how balances refill.
#[derive(Debug, Clone, Copy)]
pub struct QuotaPlan {
    pub default_tokens: i64,
    pub refill: Refill,
    pub refill_tokens: i64,
    /// Accounts that may be created per UTC day by people talking to the bot (admins'
    /// grants are not counted against it); 0 for no limit.
    pub new_accounts_per_day: i64,
    /// Tokens all users together may spend per UTC day; 0 for no limit.
    pub daily_token_budget: i64,
}

/// Said to a newcomer when `quota.new_accounts_per_day` is reached.
pub const NEW_ACCOUNTS_CLOSED: &str = "This bot is not taking new users today: its limit of new accounts for the day is reached. Please try again tomorrow.";
/// Said to everyone when `quota.daily_token_budget` is spent.
pub const BUDGET_SPENT: &str =
    "This bot has used up its token budget for today. It will answer again after midnight UTC.";

impl QuotaPlan {
    pub fn fixed(default_tokens: i64) -> QuotaPlan {
        QuotaPlan {
            default_tokens,
            refill: Refill::None,
            refill_tokens: 0,
            new_accounts_per_day: 0,
            daily_token_budget: 0,
        }
    }
}

#[derive(Clone)]
pub struct QuotaService {
    db: Db,
    plan: QuotaPlan,
    clock: Arc<dyn Clock>,
    /// Accounts known to exist, so the hot path skips the insert.
    known: Cache<UserId, ()>,
    /// The refill period each account was last seen refilled in, so the hot path skips
    /// the refill statement within a period.
    refilled: Cache<UserId, String>,
    /// The account an identity draws on when its own balance is too low (if linked), as
    /// last read; trusted for [`LINK_TTL`].
    links: Cache<UserId, Option<UserId>>,
    /// Each group's wallet (by the account asked for), as last read; trusted for
    /// [`wallets::WALLET_TTL`].
    wallets: Cache<UserId, Option<Wallet>>,
    /// Tokens spent today by everyone, as last read (checked against the daily budget).
    spent_today: Cache<(), i64>,
    /// How long a hold stays open without being renewed (`quota.hold_lease`).
    lease: Duration,
    /// This process, as named in the holds it opens.
    owner: Arc<str>,
    /// The holds this process is answering for: their leases are renewed.
    live: Arc<Mutex<HashSet<i64>>>,
}

/// The default of `quota.hold_lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// How long a resolved link is trusted (another replica may link or unlink).
const LINK_TTL: Duration = Duration::from_secs(5);

/// How stale the day's total may be when checked against `quota.daily_token_budget`:
/// the budget may be overshot by what is spent in this time plus the answers in flight.
const BUDGET_TTL: Duration = Duration::from_secs(2);

/// Entries each of the service's caches keeps at most: memory stays bounded however many
/// users appear (a cache miss only costs one more statement).
const CACHE_ENTRIES: u64 = 50_000;

fn bounded<V: Clone + Send + Sync + 'static>(ttl: Duration) -> Cache<UserId, V> {
    Cache::builder()
        .max_capacity(CACHE_ENTRIES)
        .time_to_live(ttl)
        .build()
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl QuotaService {
    /// The ledger on `db` (migrated already: see [`Db::migrate`]).
    pub fn new(db: Db, plan: QuotaPlan) -> QuotaService {
        QuotaService {
            db,
            plan,
            clock: Arc::new(SystemClock),
            known: bounded(Duration::from_secs(3600)),
            refilled: bounded(Duration::from_secs(3600)),
            links: bounded(LINK_TTL),
            wallets: bounded(wallets::WALLET_TTL),
            spent_today: Cache::builder()
                .max_capacity(1)
                .time_to_live(BUDGET_TTL)
                .build(),
            lease: DEFAULT_LEASE,
            owner: process_name().into(),
            live: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Holds stay open `lease` without renewal (`quota.hold_lease`).
    pub fn with_lease(mut self, lease: Duration) -> QuotaService {
        self.lease = lease;
        self
    }

    /// Uses `clock` instead of the system clock (tests crossing period boundaries).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> QuotaService {
        self.clock = clock;
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub(super) fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    pub(super) fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// The start of the current UTC day, as stored in `quota_ledger.at`.
    pub(super) fn day_start(&self) -> i64 {
        self.clock
            .now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .unwrap_or(0)
    }
}

/// `host:pid`, so an operator can tell which replica holds what.
fn process_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}
