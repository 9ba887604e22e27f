//! `/link`: one identity paying from another's balance, across platforms.

use anyhow::Context;

use super::{Balance, LINK_TTL, QuotaError, QuotaService, lock};
use crate::core::event::UserId;
use crate::db::Db;

impl QuotaService {
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
                crate::core::event::Platform::parse(&platform).ok_or_else(|| {
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
}
