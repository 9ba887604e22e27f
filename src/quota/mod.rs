//! The token quota ledger (SQLite through sqlx): every user's granted, remaining,
//! reserved and used tokens. Tokens are reserved before a model call, settled with the
//! real usage after it, refunded on failure; `granted = remaining + reserved + used`
//! holds at every instant (the schema enforces it) and `remaining` never goes below 0.
//!
//! Every change is also an entry of `quota_ledger` (grant, reserve, settle, refund,
//! refill, adjust), written by a trigger in the same statement, so the balance can be
//! explained entry by entry. Balances are topped up lazily, once per UTC day, ISO week or
//! month (`quota.refill`), to the plan's or the user's own refill amount; a user can also
//! be unlimited (usage is still counted). A balance of 0 means 0.

pub mod period;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sqlx::FromRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::db::Db;

pub use period::{Clock, Refill, SystemClock};

use crate::event::UserId;

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("quota exhausted: {remaining} tokens left, {needed} needed")]
    Exhausted { remaining: i64, needed: i64 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
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

/// One change of a balance.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LedgerEntry {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub d_granted: i64,
    pub d_remaining: i64,
    pub d_reserved: i64,
    pub d_used: i64,
    pub remaining: i64,
}

/// Totals over every account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub users: i64,
    pub used: i64,
    pub used_today: i64,
    pub requests: i64,
    pub requests_today: i64,
    pub errors: i64,
    pub errors_today: i64,
}

/// How new users start and how balances refill.
#[derive(Debug, Clone, Copy)]
pub struct QuotaPlan {
    pub default_tokens: i64,
    pub refill: Refill,
    pub refill_tokens: i64,
}

impl QuotaPlan {
    pub fn fixed(default_tokens: i64) -> QuotaPlan {
        QuotaPlan {
            default_tokens,
            refill: Refill::None,
            refill_tokens: 0,
        }
    }
}

/// Tokens held for one model call. Settle or refund it; if it is dropped unresolved (a
/// task cancelled or panicking mid-call) the tokens are refunded in the background.
#[must_use = "a reservation must be settled or refunded"]
pub struct Reservation {
    user: UserId,
    amount: i64,
    /// Unlimited users hold nothing; their usage is counted at settlement.
    unlimited: bool,
    ledger: Option<QuotaService>,
}

impl Reservation {
    pub fn amount(&self) -> i64 {
        self.amount
    }

    pub fn user(&self) -> &UserId {
        &self.user
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(ledger) = self.ledger.take() {
            let user = self.user.clone();
            let amount = if self.unlimited { 0 } else { self.amount };
            tracing::warn!(%user, amount, "reservation dropped unresolved, refunding it");
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = ledger.refund_amount(&user, amount).await {
                        tracing::error!(%user, amount, error = %e, "refund of dropped reservation failed");
                    }
                });
            }
        }
    }
}

/// What a settlement charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub charged: i64,
    /// The balance after an over-usage settlement (not read back in the common case).
    pub remaining: Option<i64>,
}

#[derive(Clone)]
pub struct QuotaService {
    db: Db,
    plan: QuotaPlan,
    clock: Arc<dyn Clock>,
    /// Accounts known to exist, so the hot path skips the insert.
    known: Arc<Mutex<HashSet<UserId>>>,
    /// The refill period each account was last seen refilled in, so the hot path skips
    /// the refill statement within a period.
    refilled: Arc<Mutex<HashMap<UserId, String>>>,
    /// Which account pays for an identity (itself, or the one it was linked to), as last
    /// read; trusted for [`LINK_TTL`].
    links: Arc<Mutex<HashMap<UserId, (tokio::time::Instant, UserId)>>>,
}

/// How long a resolved link is trusted (another replica may link or unlink).
const LINK_TTL: Duration = Duration::from_secs(5);

/// A statement that must change exactly one account row.
fn expect_one(done: crate::db::Done, user: &UserId) -> Result<(), QuotaError> {
    if done.rows_affected() != 1 {
        return Err(anyhow::anyhow!("account of {user} vanished").into());
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl QuotaService {
    /// Opens the database: a `postgres://` URL for several replicas, otherwise a SQLite
    /// file (created if missing) in WAL mode with a busy timeout. Migrations are not run
    /// here; see [`QuotaService::migrate`].
    pub async fn connect(
        url: &str,
        max_connections: u32,
        plan: QuotaPlan,
    ) -> Result<QuotaService, QuotaError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .with_context(|| {
                    format!(
                        "connecting to the quota database `{}`",
                        crate::config::redact_url_str(url)
                    )
                })?;
            return Ok(QuotaService::with_db(Db::Postgres(pool), plan));
        }
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid database.url `{url}`"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            // A ping before every checkout would double the round trips to SQLite's thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .with_context(|| format!("opening the quota database `{url}`"))?;
        Ok(QuotaService::with_db(Db::Sqlite(pool), plan))
    }

    fn with_db(db: Db, plan: QuotaPlan) -> QuotaService {
        QuotaService {
            db,
            plan,
            clock: Arc::new(SystemClock),
            known: Arc::new(Mutex::new(HashSet::new())),
            refilled: Arc::new(Mutex::new(HashMap::new())),
            links: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Uses `clock` instead of the system clock (tests crossing period boundaries).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> QuotaService {
        self.clock = clock;
        self
    }

    pub async fn migrate(&self) -> Result<(), QuotaError> {
        match &self.db {
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
        .context("running database migrations")?;
        Ok(())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    /// The start of the current UTC day, as stored in `quota_ledger.at`.
    fn day_start(&self) -> i64 {
        self.clock
            .now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .unwrap_or(0)
    }

    /// Returns reservations a crashed process left behind to `remaining`. Only safe when
    /// no other process uses the database, which holds for SQLite.
    pub async fn recover_stale_reservations(&self) -> Result<u64, QuotaError> {
        if self.db.is_postgres() {
            // Replicas share PostgreSQL: another one's holds are not stale.
            return Ok(0);
        }
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(self.now())
                .execute(pool)
                .await
                .map(|r| crate::db::Done(r.rows_affected())),
            "UPDATE quota_accounts SET remaining = remaining + reserved, reserved = 0, \
             last_op = 'refund', updated_at = ?1 WHERE reserved > 0"
        )
        .context("recovering stale reservations")?;
        Ok(done.rows_affected())
    }

    async fn ensure_account(&self, user: &UserId) -> Result<(), QuotaError> {
        if lock(&self.known).contains(user) {
            return Ok(());
        }
        let now = self.clock.now();
        // A new account starts with the default grant, counted as this period's refill.
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
        .bind(user.platform.as_str())
        .bind(&user.user)
        .bind(self.plan.default_tokens)
        .bind(self.plan.refill.period(now))
        .bind(now.timestamp())
        .execute(pool).await.map(|r| crate::db::Done(r.rows_affected())),
            "INSERT INTO quota_accounts \
               (platform, user_id, granted, remaining, refilled_period, last_op, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?3, ?4, 'grant', ?5, ?5) ON CONFLICT (platform, user_id) DO NOTHING"
        )
        .with_context(|| format!("creating the account of {user}"))?;
        lock(&self.known).insert(user.clone());
        Ok(())
    }

    /// Tops the balance up to the refill amount once per period (a no-op within it).
    async fn refill_if_due(&self, user: &UserId) -> Result<(), QuotaError> {
        let now = self.clock.now();
        let Some(period) = self.plan.refill.period(now) else {
            return Ok(());
        };
        if lock(&self.refilled).get(user) == Some(&period) {
            return Ok(());
        }
        // Atomic and idempotent: the period check and the top-up are one statement, so
        // concurrent requests (or replicas) refill exactly once.
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(self.plan.refill_tokens)
                .bind(&period)
                .bind(now.timestamp())
                .bind(user.platform.as_str())
                .bind(&user.user)
                .execute(pool)
                .await
                .map(|r| crate::db::Done(r.rows_affected())),
            "UPDATE quota_accounts SET \
               granted = granted + MAX(0, COALESCE(refill_tokens, ?1) - remaining), \
               remaining = MAX(remaining, COALESCE(refill_tokens, ?1)), \
               refilled_period = ?2, last_op = 'refill', updated_at = ?3 \
             WHERE platform = ?4 AND user_id = ?5 AND unlimited = 0 \
               AND (refilled_period IS NULL OR refilled_period <> ?2)"
        )
        .with_context(|| format!("refilling the balance of {user}"))?;
        lock(&self.refilled).insert(user.clone(), period);
        Ok(())
    }

    async fn prepare(&self, user: &UserId) -> Result<(), QuotaError> {
        self.ensure_account(user).await?;
        self.refill_if_due(user).await
    }

    /// The account that pays for `user`: its own, or the one it was linked to.
    pub async fn resolve(&self, user: &UserId) -> Result<UserId, QuotaError> {
        if let Some((at, to)) = lock(&self.links).get(user)
            && at.elapsed() < LINK_TTL
        {
            return Ok(to.clone());
        }
        let row: Option<(String, String)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .fetch_optional(pool)
                .await,
            "SELECT to_platform, to_user_id FROM quota_links WHERE platform = ?1 AND user_id = ?2"
        )
        .with_context(|| format!("reading the link of {user}"))?;
        let to = match row {
            Some((platform, id)) => UserId::new(
                crate::event::Platform::parse(&platform).ok_or_else(|| {
                    anyhow::anyhow!("unknown platform `{platform}` in quota_links")
                })?,
                id,
            ),
            None => user.clone(),
        };
        lock(&self.links).insert(user.clone(), (tokio::time::Instant::now(), to.clone()));
        Ok(to)
    }

    /// Joins `from` to `to`'s balance: what `from` has left moves to `to`, and from now
    /// on `from`'s requests are paid from `to`. Both moves are ledger entries (`link`).
    pub async fn link(&self, from: &UserId, to: &UserId) -> Result<Balance, QuotaError> {
        let to = self.resolve(to).await?;
        if self.resolve(from).await? != *from {
            return Err(QuotaError::Invalid(format!(
                "{from} is already linked; send /unlink there first"
            )));
        }
        if to == *from {
            return Err(QuotaError::Invalid(
                "an account cannot be linked to itself".into(),
            ));
        }
        self.ensure_account(from).await?;
        self.ensure_account(&to).await?;
        let now = self.now();
        // One transaction that locks what it reads first: BEGIN IMMEDIATE on SQLite,
        // SELECT … FOR UPDATE on PostgreSQL.
        macro_rules! link_in {
            ($tx:ident, $t:expr, $lock:expr) => {{
                let (others,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe($t(
                    "SELECT COUNT(*) FROM quota_links WHERE to_platform = ?1 AND to_user_id = ?2",
                )))
                .bind(from.platform.as_str())
                .bind(&from.user)
                .fetch_one(&mut *$tx)
                .await
                .context("checking links")?;
                if others > 0 {
                    return Err(QuotaError::Invalid(format!(
                        "other accounts are linked to {from}; send /link from {to} instead"
                    )));
                }
                let (remaining, reserved): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe($t(&format!(
                    "SELECT remaining, reserved FROM quota_accounts \
                     WHERE platform = ?1 AND user_id = ?2{}",
                    $lock
                ))))
                .bind(from.platform.as_str())
                .bind(&from.user)
                .fetch_one(&mut *$tx)
                .await
                .context("reading the balance to move")?;
                if reserved > 0 {
                    return Err(QuotaError::Invalid(
                        "an answer is in progress on this account; try again when it is done"
                            .into(),
                    ));
                }
                for (user, delta) in [(from, -remaining), (&to, remaining)] {
                    sqlx::query(sqlx::AssertSqlSafe($t(
                        "UPDATE quota_accounts SET granted = granted + ?1, \
                         remaining = remaining + ?1, last_op = 'link', updated_at = ?2 \
                         WHERE platform = ?3 AND user_id = ?4",
                    )))
                    .bind(delta)
                    .bind(now)
                    .bind(user.platform.as_str())
                    .bind(&user.user)
                    .execute(&mut *$tx)
                    .await
                    .context("moving the balance")?;
                }
                sqlx::query(sqlx::AssertSqlSafe($t(
                    "INSERT INTO quota_links (platform, user_id, to_platform, to_user_id, linked_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )))
                .bind(from.platform.as_str())
                .bind(&from.user)
                .bind(to.platform.as_str())
                .bind(&to.user)
                .bind(now)
                .execute(&mut *$tx)
                .await
                .context("recording the link")?;
                $tx.commit().await.context("committing the link")?;
            }};
        }
        match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .context("starting the link")?;
                link_in!(tx, |sql: &str| sql.to_string(), "");
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await.context("starting the link")?;
                link_in!(tx, crate::db::pg_sql, " FOR UPDATE");
            }
        }
        lock(&self.links).remove(from);
        self.balance(&to).await
    }

    /// Ends every link `user` is part of. Tokens stay with the account that holds them;
    /// an unlinked identity goes back to its own account.
    pub async fn unlink(&self, user: &UserId) -> Result<u64, QuotaError> {
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
        .bind(user.platform.as_str())
        .bind(&user.user)
        .execute(pool).await.map(|r| crate::db::Done(r.rows_affected())),
            "DELETE FROM quota_links WHERE (platform = ?1 AND user_id = ?2)              OR (to_platform = ?1 AND to_user_id = ?2)"
        )
        .with_context(|| format!("unlinking {user}"))?;
        lock(&self.links).clear();
        Ok(done.rows_affected())
    }

    /// Atomically moves `amount` tokens from remaining to reserved, or fails with
    /// [`QuotaError::Exhausted`] leaving the account untouched.
    pub async fn reserve(&self, user: &UserId, amount: i64) -> Result<Reservation, QuotaError> {
        if amount < 0 {
            return Err(QuotaError::Invalid(format!(
                "cannot reserve {amount} tokens"
            )));
        }
        let user = &self.resolve(user).await?;
        self.prepare(user).await?;
        // Unlimited accounts match without holding anything.
        let row: Option<(i64,)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(amount)
                .bind(self.now())
                .bind(user.platform.as_str())
                .bind(&user.user)
                .fetch_optional(pool)
                .await,
            "UPDATE quota_accounts SET \
               remaining = remaining - (CASE WHEN unlimited = 1 THEN 0 ELSE ?1 END), \
               reserved = reserved + (CASE WHEN unlimited = 1 THEN 0 ELSE ?1 END), \
               last_op = 'reserve', updated_at = ?2 \
             WHERE platform = ?3 AND user_id = ?4 AND (unlimited = 1 OR remaining >= ?1) \
             RETURNING unlimited"
        )
        .with_context(|| format!("reserving {amount} tokens for {user}"))?;
        match row {
            Some((unlimited,)) => Ok(Reservation {
                user: user.clone(),
                amount,
                unlimited: unlimited != 0,
                ledger: Some(self.clone()),
            }),
            None => {
                let balance = self.balance(user).await?;
                Err(QuotaError::Exhausted {
                    remaining: balance.remaining,
                    needed: amount,
                })
            }
        }
    }

    /// Charges the real usage and returns the rest of the reservation. Usage above the
    /// reservation (a server counting more than estimated) is taken from `remaining`
    /// as far as it goes, never below 0.
    pub async fn settle(
        &self,
        mut reservation: Reservation,
        used: i64,
    ) -> Result<Settlement, QuotaError> {
        reservation.ledger = None;
        let used = used.max(0);
        let user = reservation.user.clone();
        if reservation.unlimited {
            // Nothing was held: count the usage and grant it in the same breath.
            let done = self
                .update_with(
                    "UPDATE quota_accounts SET used = used + ?1, granted = granted + ?1, \
                     last_charge = ?1, requests = requests + 1, last_op = 'settle', \
                     updated_at = ?2 WHERE platform = ?3 AND user_id = ?4",
                    used,
                    &user,
                )
                .await
                .with_context(|| format!("settling {used} tokens for {user}"))?;
            expect_one(done, &user)?;
            return Ok(Settlement {
                charged: used,
                remaining: None,
            });
        }
        if used <= reservation.amount {
            // The common case: the charge is exactly `used`, no row needs to come back.
            let done = crate::on_db!(
                &self.db,
                |pool, sql| sqlx::query(sql)
                    .bind(used)
                    .bind(reservation.amount)
                    .bind(self.now())
                    .bind(user.platform.as_str())
                    .bind(&user.user)
                    .execute(pool)
                    .await
                    .map(|r| crate::db::Done(r.rows_affected())),
                "UPDATE quota_accounts SET used = used + ?1, remaining = remaining + ?2 - ?1, \
                     last_charge = ?1, reserved = reserved - ?2, requests = requests + 1, \
                     last_op = 'settle', updated_at = ?3 WHERE platform = ?4 AND user_id = ?5"
            )
            .with_context(|| format!("settling {used} tokens for {user}"))?;
            expect_one(done, &user)?;
            return Ok(Settlement {
                charged: used,
                remaining: None,
            });
        }
        // Every right-hand side sees the old row, so MIN(...) is the same charge in all
        // three places; it is also kept in last_charge to be returned.
        let row: Option<(i64, i64)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(used)
                .bind(reservation.amount)
                .bind(self.now())
                .bind(user.platform.as_str())
                .bind(&user.user)
                .fetch_optional(pool)
                .await,
            "UPDATE quota_accounts SET \
               used = used + MIN(?1, ?2 + remaining), \
               remaining = remaining + ?2 - MIN(?1, ?2 + remaining), \
               last_charge = MIN(?1, ?2 + remaining), \
               reserved = reserved - ?2, \
               requests = requests + 1, \
               last_op = 'settle', updated_at = ?3 \
             WHERE platform = ?4 AND user_id = ?5 \
             RETURNING last_charge, remaining"
        )
        .with_context(|| format!("settling {used} tokens for {user}"))?;
        let (charged, remaining) =
            row.ok_or_else(|| anyhow::anyhow!("account of {user} vanished"))?;
        tracing::warn!(%user, used, reserved = reservation.amount, charged, "usage exceeded the reservation");
        Ok(Settlement {
            charged,
            remaining: Some(remaining),
        })
    }

    /// Runs an account `UPDATE` whose parameters are `?1` = `value`, `?2` = now, and
    /// `?3`/`?4` = the user — the shape most ledger operations share.
    async fn update_with(
        &self,
        statement: &'static str,
        value: impl Into<Option<i64>>,
        user: &UserId,
    ) -> Result<crate::db::Done, sqlx::Error> {
        let value: Option<i64> = value.into();
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(value)
                .bind(self.now())
                .bind(user.platform.as_str())
                .bind(&user.user)
                .execute(pool)
                .await
                .map(|r| crate::db::Done(r.rows_affected())),
            statement
        )
    }

    /// Returns the whole reservation (the call failed).
    pub async fn refund(&self, mut reservation: Reservation) -> Result<(), QuotaError> {
        reservation.ledger = None;
        let amount = if reservation.unlimited {
            0
        } else {
            reservation.amount
        };
        self.refund_amount(&reservation.user, amount).await
    }

    async fn refund_amount(&self, user: &UserId, amount: i64) -> Result<(), QuotaError> {
        if amount == 0 {
            return Ok(());
        }
        self.update_with(
            "UPDATE quota_accounts SET remaining = remaining + ?1, reserved = reserved - ?1, \
             last_op = 'refund', updated_at = ?2 WHERE platform = ?3 AND user_id = ?4",
            amount,
            user,
        )
        .await
        .with_context(|| format!("refunding {amount} tokens to {user}"))?;
        Ok(())
    }

    /// The account (created with the default grant if new, refilled if due).
    pub async fn balance(&self, user: &UserId) -> Result<Balance, QuotaError> {
        let user = &self.resolve(user).await?;
        self.prepare(user).await?;
        let balance = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, BalanceRow>(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .fetch_one(pool)
                .await,
            "SELECT granted, remaining, reserved, used, requests, unlimited, refill_tokens \
             FROM quota_accounts WHERE platform = ?1 AND user_id = ?2"
        )
        .with_context(|| format!("reading the balance of {user}"))?;
        Ok(balance.into())
    }

    /// Adds `tokens` to the balance (negative takes away, but never more than remains).
    pub async fn grant(&self, user: &UserId, tokens: i64) -> Result<Balance, QuotaError> {
        let user = &self.resolve(user).await?;
        self.prepare(user).await?;
        let done = self
            .update_with(
                "UPDATE quota_accounts SET granted = granted + ?1, remaining = remaining + ?1, \
                 last_op = 'adjust', updated_at = ?2 \
                 WHERE platform = ?3 AND user_id = ?4 AND remaining + ?1 >= 0",
                tokens,
                user,
            )
            .await
            .with_context(|| format!("granting {tokens} tokens to {user}"))?;
        if done.rows_affected() == 0 {
            let balance = self.balance(user).await?;
            return Err(QuotaError::Invalid(format!(
                "cannot take {} tokens from {user}: only {} remain",
                -tokens, balance.remaining
            )));
        }
        self.balance(user).await
    }

    /// Sets what remains to exactly `tokens` (and ends unlimited), or makes the user
    /// unlimited with `None`.
    pub async fn set_quota(
        &self,
        user: &UserId,
        tokens: Option<i64>,
    ) -> Result<Balance, QuotaError> {
        let user = &self.resolve(user).await?;
        self.prepare(user).await?;
        let (statement, value) = match tokens {
            Some(n) if n < 0 => return Err(QuotaError::Invalid(format!("a quota cannot be {n}"))),
            Some(n) => (
                "UPDATE quota_accounts SET granted = granted + (?1 - remaining), remaining = ?1, \
                 unlimited = 0, last_op = 'adjust', updated_at = ?2 \
                 WHERE platform = ?3 AND user_id = ?4",
                n,
            ),
            None => (
                "UPDATE quota_accounts SET unlimited = ?1, last_op = 'adjust', updated_at = ?2 \
                 WHERE platform = ?3 AND user_id = ?4",
                1,
            ),
        };
        self.update_with(statement, value, user)
            .await
            .with_context(|| format!("setting the quota of {user}"))?;
        self.balance(user).await
    }

    /// Sets the user's own refill amount (`None`: the plan's).
    pub async fn set_refill(
        &self,
        user: &UserId,
        tokens: Option<i64>,
    ) -> Result<Balance, QuotaError> {
        if tokens.is_some_and(|n| n < 0) {
            return Err(QuotaError::Invalid(
                "a refill amount cannot be negative".into(),
            ));
        }
        let user = &self.resolve(user).await?;
        self.ensure_account(user).await?;
        self.update_with(
            "UPDATE quota_accounts SET refill_tokens = ?1, updated_at = ?2 \
             WHERE platform = ?3 AND user_id = ?4",
            tokens,
            user,
        )
        .await
        .with_context(|| format!("setting the refill of {user}"))?;
        self.balance(user).await
    }

    /// Totals for `/stats`: accounts, tokens used today (UTC) and overall, requests and
    /// failed calls (refunds).
    pub async fn stats(&self) -> Result<Stats, QuotaError> {
        let day_start = self.day_start();
        let (users, used, requests): (i64, i64, i64) = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).fetch_one(pool).await,
            "SELECT COUNT(*), CAST(COALESCE(SUM(used), 0) AS BIGINT), \
             CAST(COALESCE(SUM(requests), 0) AS BIGINT) FROM quota_accounts"
        )
        .context("reading totals")?;
        let (used_today, requests_today, errors_today): (i64, i64, i64) = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).bind(day_start).fetch_one(pool).await,
            "SELECT CAST(COALESCE(SUM(d_used), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN kind = 'settle' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN kind = 'refund' THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM quota_ledger WHERE at >= ?1"
        )
        .context("reading today's totals")?;
        let (errors,): (i64,) = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).fetch_one(pool).await,
            "SELECT COUNT(*) FROM quota_ledger WHERE kind = 'refund'"
        )
        .context("reading error totals")?;
        Ok(Stats {
            users,
            used,
            used_today,
            requests,
            requests_today,
            errors,
            errors_today,
        })
    }

    /// Tokens a user used since the start of the UTC day.
    pub async fn used_today(&self, user: &UserId) -> Result<i64, QuotaError> {
        let user = &self.resolve(user).await?;
        let day_start = self.day_start();
        let (used,): (i64,) = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
        .bind(user.platform.as_str())
        .bind(&user.user)
        .bind(day_start)
        .fetch_one(pool).await,
            "SELECT CAST(COALESCE(SUM(d_used), 0) AS BIGINT) FROM quota_ledger              WHERE platform = ?1 AND user_id = ?2 AND at >= ?3"
        )
        .with_context(|| format!("reading today's usage of {user}"))?;
        Ok(used)
    }

    /// The newest `limit` ledger entries of a user, oldest first.
    pub async fn history(&self, user: &UserId, limit: i64) -> Result<Vec<LedgerEntry>, QuotaError> {
        let user = &self.resolve(user).await?;
        let mut entries = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, LedgerEntry>(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .bind(limit)
                .fetch_all(pool)
                .await,
            "SELECT id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining \
             FROM quota_ledger WHERE platform = ?1 AND user_id = ?2 ORDER BY id DESC LIMIT ?3"
        )
        .with_context(|| format!("reading the ledger of {user}"))?;
        entries.reverse();
        Ok(entries)
    }
}
