//! Accounts come into being with the plan's default grant, and are topped up lazily once
//! per refill period (atomically, so replicas refill exactly once).

use anyhow::Context;

use super::period::period;
use super::{QuotaError, QuotaService};
use crate::core::event::UserId;

impl QuotaService {
    /// Creates the account of someone talking to the bot, within the day's limit of new
    /// accounts ([`QuotaError::Limit`] past it).
    pub(super) async fn ensure_account(&self, user: &UserId) -> Result<(), QuotaError> {
        self.create_account(user, self.plan.new_accounts_per_day)
            .await
    }

    /// Creates an account whatever the day's count (an admin's grant).
    pub(super) async fn ensure_account_by_admin(&self, user: &UserId) -> Result<(), QuotaError> {
        self.create_account(user, 0).await
    }

    async fn create_account(&self, user: &UserId, per_day: i64) -> Result<(), QuotaError> {
        if self.known.contains_key(user) {
            return Ok(());
        }
        let now = self.clock.now();
        let limit = if per_day > 0 { per_day } else { i64::MAX };
        // A new account starts with the default grant, counted as this period's refill.
        // The day's count is checked in the same statement.
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .bind(self.plan.default_tokens)
                .bind(period(self.plan.refill, now))
                .bind(now.timestamp())
                .bind(self.day_start())
                .bind(limit)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            "INSERT INTO quota_accounts \
               (platform, user_id, granted, remaining, refilled_period, last_op, created_at, updated_at) \
             SELECT ?1, ?2, ?3, ?3, ?4, 'grant', ?5, ?5 \
             WHERE (SELECT COUNT(*) FROM quota_accounts WHERE created_at >= ?6) < ?7 \
             ON CONFLICT (platform, user_id) DO NOTHING"
        )
        .with_context(|| format!("creating the account of {user}"))?;
        if done == 0 && per_day > 0 && !self.exists(user).await? {
            tracing::info!(%user, per_day, "new account refused: the day's limit is reached");
            return Err(QuotaError::Limit(super::NEW_ACCOUNTS_CLOSED));
        }
        self.known.insert(user.clone(), ());
        Ok(())
    }

    async fn exists(&self, user: &UserId) -> Result<bool, QuotaError> {
        let row: Option<(i64,)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .fetch_optional(pool)
                .await,
            "SELECT 1 FROM quota_accounts WHERE platform = ?1 AND user_id = ?2"
        )
        .with_context(|| format!("looking up the account of {user}"))?;
        Ok(row.is_some())
    }

    /// Tops the balance up to the refill amount once per period (a no-op within it).
    pub(super) async fn refill_if_due(&self, user: &UserId) -> Result<(), QuotaError> {
        let now = self.clock.now();
        let Some(period) = period(self.plan.refill, now) else {
            return Ok(());
        };
        if self.refilled.get(user).as_ref() == Some(&period) {
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
        self.refilled.insert(user.clone(), period);
        Ok(())
    }

    pub(super) async fn prepare(&self, user: &UserId) -> Result<(), QuotaError> {
        self.ensure_account(user).await?;
        self.refill_if_due(user).await
    }
}
