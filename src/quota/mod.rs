//! The token quota ledger (SQLite through sqlx): every user's granted, remaining,
//! reserved and used tokens. Tokens are reserved before a model call, settled with the
//! real usage after it, refunded on failure; `granted = remaining + reserved + used`
//! holds at every instant (the schema enforces it) and `remaining` never goes below 0.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct Balance {
    pub granted: i64,
    pub remaining: i64,
    pub reserved: i64,
    pub used: i64,
    pub requests: i64,
}

/// Tokens held for one model call. Settle or refund it; if it is dropped unresolved (a
/// task cancelled or panicking mid-call) the tokens are refunded in the background.
#[must_use = "a reservation must be settled or refunded"]
pub struct Reservation {
    user: UserId,
    amount: i64,
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
            let amount = self.amount;
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
    pool: SqlitePool,
    default_tokens: i64,
    /// Accounts known to exist, so the hot path skips the insert.
    known: Arc<Mutex<HashSet<UserId>>>,
}

impl QuotaService {
    /// Opens (creating if missing) the SQLite database in WAL mode with a busy timeout.
    /// Migrations are not run here; see [`QuotaService::migrate`].
    pub async fn connect(
        url: &str,
        max_connections: u32,
        default_tokens: i64,
    ) -> Result<QuotaService, QuotaError> {
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
        Ok(QuotaService {
            pool,
            default_tokens,
            known: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    pub async fn migrate(&self) -> Result<(), QuotaError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await
            .context("running database migrations")?;
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Returns reservations a crashed process left behind to `remaining`. Only safe when
    /// no other process uses the database, which holds for SQLite.
    pub async fn recover_stale_reservations(&self) -> Result<u64, QuotaError> {
        let done = sqlx::query(
            "UPDATE quota_accounts SET remaining = remaining + reserved, reserved = 0, updated_at = ?1 \
             WHERE reserved > 0",
        )
        .bind(now())
        .execute(&self.pool)
        .await
        .context("recovering stale reservations")?;
        Ok(done.rows_affected())
    }

    async fn ensure_account(&self, user: &UserId) -> Result<(), QuotaError> {
        if self.lock_known().contains(user) {
            return Ok(());
        }
        let t = now();
        sqlx::query(
            "INSERT INTO quota_accounts (platform, user_id, granted, remaining, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?3, ?4, ?4) ON CONFLICT (platform, user_id) DO NOTHING",
        )
        .bind(user.platform.as_str())
        .bind(&user.user)
        .bind(self.default_tokens)
        .bind(t)
        .execute(&self.pool)
        .await
        .with_context(|| format!("creating the account of {user}"))?;
        self.lock_known().insert(user.clone());
        Ok(())
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, HashSet<UserId>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Atomically moves `amount` tokens from remaining to reserved, or fails with
    /// [`QuotaError::Exhausted`] leaving the account untouched.
    pub async fn reserve(&self, user: &UserId, amount: i64) -> Result<Reservation, QuotaError> {
        if amount < 0 {
            return Err(QuotaError::Invalid(format!(
                "cannot reserve {amount} tokens"
            )));
        }
        self.ensure_account(user).await?;
        // `execute` rather than RETURNING: a returned row costs one more hop to
        // SQLite's worker thread, and rows_affected already says whether it fit.
        let done = sqlx::query(
            "UPDATE quota_accounts SET remaining = remaining - ?1, reserved = reserved + ?1, updated_at = ?2 \
             WHERE platform = ?3 AND user_id = ?4 AND remaining >= ?1",
        )
        .bind(amount)
        .bind(now())
        .bind(user.platform.as_str())
        .bind(&user.user)
        .execute(&self.pool)
        .await
        .with_context(|| format!("reserving {amount} tokens for {user}"))?;
        match done.rows_affected() {
            1 => Ok(Reservation {
                user: user.clone(),
                amount,
                ledger: Some(self.clone()),
            }),
            _ => {
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
        if used <= reservation.amount {
            // The common case: the charge is exactly `used`, no row needs to come back.
            let done = sqlx::query(
                "UPDATE quota_accounts SET used = used + ?1, remaining = remaining + ?2 - ?1, \
                 last_charge = ?1, reserved = reserved - ?2, requests = requests + 1, updated_at = ?3 \
                 WHERE platform = ?4 AND user_id = ?5",
            )
            .bind(used)
            .bind(reservation.amount)
            .bind(now())
            .bind(reservation.user.platform.as_str())
            .bind(&reservation.user.user)
            .execute(&self.pool)
            .await
            .with_context(|| format!("settling {used} tokens for {}", reservation.user))?;
            if done.rows_affected() != 1 {
                return Err(anyhow::anyhow!("account of {} vanished", reservation.user).into());
            }
            return Ok(Settlement {
                charged: used,
                remaining: None,
            });
        }
        // Every right-hand side sees the old row, so MIN(...) is the same charge in all
        // three places; it is also kept in last_charge to be returned.
        let row: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE quota_accounts SET \
               used = used + MIN(?1, ?2 + remaining), \
               remaining = remaining + ?2 - MIN(?1, ?2 + remaining), \
               last_charge = MIN(?1, ?2 + remaining), \
               reserved = reserved - ?2, \
               requests = requests + 1, \
               updated_at = ?3 \
             WHERE platform = ?4 AND user_id = ?5 \
             RETURNING last_charge, remaining",
        )
        .bind(used)
        .bind(reservation.amount)
        .bind(now())
        .bind(reservation.user.platform.as_str())
        .bind(&reservation.user.user)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("settling {used} tokens for {}", reservation.user))?;
        let (charged, remaining) =
            row.ok_or_else(|| anyhow::anyhow!("account of {} vanished", reservation.user))?;
        if used > reservation.amount {
            tracing::warn!(user = %reservation.user, used, reserved = reservation.amount, "usage exceeded the reservation");
        }
        Ok(Settlement {
            charged,
            remaining: Some(remaining),
        })
    }

    /// Returns the whole reservation (the call failed).
    pub async fn refund(&self, mut reservation: Reservation) -> Result<(), QuotaError> {
        reservation.ledger = None;
        self.refund_amount(&reservation.user, reservation.amount)
            .await
    }

    async fn refund_amount(&self, user: &UserId, amount: i64) -> Result<(), QuotaError> {
        sqlx::query(
            "UPDATE quota_accounts SET remaining = remaining + ?1, reserved = reserved - ?1, updated_at = ?2 \
             WHERE platform = ?3 AND user_id = ?4",
        )
        .bind(amount)
        .bind(now())
        .bind(user.platform.as_str())
        .bind(&user.user)
        .execute(&self.pool)
        .await
        .with_context(|| format!("refunding {amount} tokens to {user}"))?;
        Ok(())
    }

    /// The account (created with the default grant if new).
    pub async fn balance(&self, user: &UserId) -> Result<Balance, QuotaError> {
        self.ensure_account(user).await?;
        let balance = sqlx::query_as::<_, Balance>(
            "SELECT granted, remaining, reserved, used, requests FROM quota_accounts \
             WHERE platform = ?1 AND user_id = ?2",
        )
        .bind(user.platform.as_str())
        .bind(&user.user)
        .fetch_one(&self.pool)
        .await
        .with_context(|| format!("reading the balance of {user}"))?;
        Ok(balance)
    }

    /// Adds `tokens` to the grant (negative takes away, but never more than remains).
    pub async fn grant(&self, user: &UserId, tokens: i64) -> Result<Balance, QuotaError> {
        self.ensure_account(user).await?;
        let done = sqlx::query(
            "UPDATE quota_accounts SET granted = granted + ?1, remaining = remaining + ?1, updated_at = ?2 \
             WHERE platform = ?3 AND user_id = ?4 AND remaining + ?1 >= 0",
        )
        .bind(tokens)
        .bind(now())
        .bind(user.platform.as_str())
        .bind(&user.user)
        .execute(&self.pool)
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
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
