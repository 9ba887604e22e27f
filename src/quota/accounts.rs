//! Reading and adjusting balances: what a user has, and the operators' grant, set and
//! refill overrides.

use anyhow::Context;

use super::{Balance, BalanceRow, QuotaError, QuotaService};
use crate::core::event::UserId;

impl QuotaService {
    /// Runs an account `UPDATE` whose parameters are `?1` = `value`, `?2` = now, and
    /// `?3`/`?4` = the user — the shape most ledger operations share.
    pub(super) async fn update_with(
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

    /// The account (created with the default grant if new, refilled if due).
    pub async fn balance(&self, user: &UserId) -> Result<Balance, QuotaError> {
        self.prepare(user).await?;
        if let Some(balance) = self.read_balance(user).await? {
            return Ok(balance);
        }
        // Known to this process but gone from the database (a database restored from a
        // backup, a failover that lost the last commits, a row deleted by hand): the
        // account is opened again rather than failing every message until a restart.
        tracing::warn!(%user, "account missing from the database; opening it again");
        self.known.invalidate(user);
        self.prepare(user).await?;
        self.read_balance(user)
            .await?
            .ok_or_else(|| QuotaError::Invalid(format!("no account for {user}")))
    }

    /// Fails as [`Self::reserve`] would if `user` (or the account it is linked to)
    /// cannot hold `amount` now, without holding anything: checked before work only a
    /// paying question justifies (downloading and reading its files).
    pub async fn can_afford(&self, user: &UserId, amount: i64) -> Result<(), QuotaError> {
        self.check_budget().await?;
        let own = self.balance(user).await?;
        if own.unlimited || own.remaining >= amount {
            return Ok(());
        }
        if let Some(owner) = self.linked_to(user).await? {
            let theirs = self.balance(&owner).await?;
            if theirs.unlimited || theirs.remaining >= amount {
                return Ok(());
            }
        }
        Err(QuotaError::Exhausted {
            remaining: own.remaining,
            needed: amount,
        })
    }

    async fn read_balance(&self, user: &UserId) -> Result<Option<Balance>, QuotaError> {
        let balance = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, BalanceRow>(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .fetch_optional(pool)
                .await,
            "SELECT granted, remaining, reserved, used, requests, unlimited, refill_tokens \
             FROM quota_accounts WHERE platform = ?1 AND user_id = ?2"
        )
        .with_context(|| format!("reading the balance of {user}"))?;
        Ok(balance.map(Into::into))
    }

    /// Adds `tokens` to the balance (negative takes away, but never more than remains).
    pub async fn grant(&self, user: &UserId, tokens: i64) -> Result<Balance, QuotaError> {
        self.ensure_account_by_admin(user).await?;
        self.refill_if_due(user).await?;
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
        self.ensure_account_by_admin(user).await?;
        self.refill_if_due(user).await?;
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
}
