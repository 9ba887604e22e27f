//! Reading the ledger: totals for `/stats`, today's usage, and a user's history.

use anyhow::Context;
use sqlx::FromRow;

use super::{QuotaError, QuotaService};
use crate::core::event::UserId;

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
    /// The model a reserve, settle, refund or expiry was for.
    pub note: Option<String>,
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

impl QuotaService {
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

    /// Refuses every reservation once `quota.daily_token_budget` is spent (read at most
    /// a couple of seconds ago).
    pub(super) async fn check_budget(&self) -> Result<(), QuotaError> {
        let budget = self.plan.daily_token_budget;
        if budget <= 0 {
            return Ok(());
        }
        let spent = match self.spent_today.get(&()) {
            Some(spent) => spent,
            None => {
                let (spent,): (i64,) = crate::on_db!(
                    &self.db,
                    |pool, sql| sqlx::query_as(sql).bind(self.day_start()).fetch_one(pool).await,
                    "SELECT CAST(COALESCE(SUM(d_used), 0) AS BIGINT) FROM quota_ledger WHERE at >= ?1"
                )
                .context("reading today's spending")?;
                self.spent_today.insert((), spent);
                spent
            }
        };
        if spent >= budget {
            tracing::info!(spent, budget, "refused: the daily token budget is spent");
            return Err(QuotaError::Limit(super::BUDGET_SPENT));
        }
        Ok(())
    }

    /// Tokens a user used since the start of the UTC day.
    pub async fn used_today(&self, user: &UserId) -> Result<i64, QuotaError> {
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
        let mut entries = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, LedgerEntry>(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .bind(limit)
                .fetch_all(pool)
                .await,
            "SELECT id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining, note \
             FROM quota_ledger WHERE platform = ?1 AND user_id = ?2 ORDER BY id DESC LIMIT ?3"
        )
        .with_context(|| format!("reading the ledger of {user}"))?;
        entries.reverse();
        Ok(entries)
    }

    /// One page of accounts with their balances, most used first (the admin page), and
    /// how many accounts match in all. `find` keeps those whose `platform:user` contains
    /// it, ignoring case.
    pub async fn accounts(
        &self,
        find: &str,
        offset: i64,
        limit: i64,
    ) -> Result<AccountsPage, QuotaError> {
        #[derive(FromRow)]
        struct Row {
            platform: String,
            user_id: String,
            #[sqlx(flatten)]
            balance: super::BalanceRow,
        }
        // LIKE with its wildcards escaped, so `_` and `%` in a user id match themselves.
        let pattern = format!(
            "%{}%",
            find.trim()
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, Row>(sql)
                .bind(&pattern)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await,
            "SELECT platform, user_id, granted, remaining, reserved, used, requests, unlimited, \
             refill_tokens FROM quota_accounts \
             WHERE LOWER(platform || ':' || user_id) LIKE ?1 ESCAPE '\\' \
             ORDER BY used DESC, platform, user_id LIMIT ?2 OFFSET ?3"
        )
        .context("listing accounts")?;
        let (total,): (i64,) = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).bind(&pattern).fetch_one(pool).await,
            "SELECT COUNT(*) FROM quota_accounts \
             WHERE LOWER(platform || ':' || user_id) LIKE ?1 ESCAPE '\\'"
        )
        .context("counting accounts")?;
        let accounts = rows
            .into_iter()
            .filter_map(|row| {
                let platform = crate::core::event::Platform::parse(&row.platform)?;
                Some((UserId::new(platform, row.user_id), row.balance.into()))
            })
            .collect();
        Ok(AccountsPage { accounts, total })
    }
}

/// A page of [`QuotaService::accounts`].
#[derive(Debug)]
pub struct AccountsPage {
    pub accounts: Vec<(UserId, super::Balance)>,
    /// Accounts matching the search, on every page.
    pub total: i64,
}
