//! Holds with leases: every reservation is a row of `quota_holds` whose lease the
//! answering process renews while the answer is alive. When a lease runs out (the
//! process was killed, or gave up settling while the database was away) any process
//! sweeps the hold and returns its tokens (ledger kind `expire`); a settle that arrives
//! later still charges what was used, from what is left. Start-up recovery is the same
//! sweep, so it never touches a live hold of another replica. Operators list open holds
//! with `gptbot quota holds` and return one by hand with `gptbot quota release`.

use std::time::Duration;

use anyhow::Context;
use sqlx::FromRow;
use tokio_util::sync::CancellationToken;

use super::{QuotaError, QuotaService, lock};
use crate::core::error::chain;

/// Closed holds are kept this long (a late settle finds its hold), then deleted.
const KEEP_CLOSED_MS: i64 = 7 * 24 * 3600 * 1000;

/// An open hold, as `gptbot quota holds` lists it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Hold {
    pub id: i64,
    pub platform: String,
    pub user_id: String,
    pub amount: i64,
    pub owner: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl QuotaService {
    /// Renews this process's live holds and sweeps expired ones every quarter lease
    /// until `shutdown` turns true. The first sweep runs at once (start-up recovery).
    pub fn spawn_keeper(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let quota = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval((quota.lease / 4).max(Duration::from_millis(50)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                if let Err(e) = quota.renew().await {
                    tracing::warn!(error = %chain(&e), "could not renew the leases of open holds");
                }
                match quota.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        holds = n,
                        "returned holds whose lease ran out (a process stopped mid-answer)"
                    ),
                    Err(e) => tracing::warn!(error = %chain(&e), "could not sweep expired holds"),
                }
                quota.gauge_holds().await;
            }
        })
    }

    /// The open holds of every process, as gauges: count, tokens, oldest age.
    async fn gauge_holds(&self) {
        use crate::core::metrics::{HOLDS_OLDEST, HOLDS_OPEN, HOLDS_TOKENS};
        let Ok(holds) = self.holds().await else {
            return;
        };
        let now = self.now_ms();
        let oldest = holds.iter().map(|h| now - h.created_ms).max().unwrap_or(0);
        metrics::gauge!(HOLDS_OPEN).set(holds.len() as f64);
        metrics::gauge!(HOLDS_TOKENS).set(holds.iter().map(|h| h.amount).sum::<i64>() as f64);
        metrics::gauge!(HOLDS_OLDEST).set(oldest.max(0) as f64 / 1000.0);
    }

    /// Pushes the lease of every hold this process is still answering for.
    pub async fn renew(&self) -> Result<(), QuotaError> {
        let ids: Vec<i64> = lock(&self.live).iter().copied().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        // The list holds integers this process got from the database, nothing else.
        let text = format!(
            "UPDATE quota_holds SET expires_ms = ?1 WHERE state = 'held' AND id IN ({list})"
        );
        let expires = self.now_ms() + self.lease_ms();
        match &self.db {
            crate::db::Db::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(text))
                .bind(expires)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            crate::db::Db::Postgres(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(crate::db::pg_sql(&text)))
                    .bind(expires)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
            }
        }
        .with_context(|| format!("renewing {} holds", ids.len()))?;
        Ok(())
    }

    /// Returns every hold whose lease has run out; how many were returned.
    pub async fn sweep(&self) -> Result<u64, QuotaError> {
        let now = self.now_ms();
        let expired: Vec<(i64,)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).bind(now).fetch_all(pool).await,
            "SELECT id FROM quota_holds WHERE state = 'held' AND expires_ms <= ?1 \
             ORDER BY id LIMIT 1000"
        )
        .context("finding expired holds")?;
        let mut returned = 0;
        for (id,) in expired {
            if self.expire(id, Some(now), "expire").await? {
                returned += 1;
            }
        }
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(now - KEEP_CLOSED_MS)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            "DELETE FROM quota_holds WHERE state <> 'held' AND closed_ms < ?1"
        )
        .context("deleting old closed holds")?;
        Ok(returned)
    }

    /// Returns hold `id` by hand, whatever its lease says (`gptbot quota release`).
    /// False when no open hold has that id. A settle that arrives later is charged late.
    pub async fn release(&self, id: i64) -> Result<bool, QuotaError> {
        self.expire(id, None, "release").await
    }

    /// Closes hold `id` as expired (only if its lease ended before `before`, when given)
    /// and returns its tokens, in one transaction.
    async fn expire(&self, id: i64, before: Option<i64>, kind: &str) -> Result<bool, QuotaError> {
        let now = self.now_ms();
        let mut tx = self.db.begin().await.context("starting a transaction")?;
        let row: Option<(String, String, i64, Option<String>)> = crate::on_tx!(
            &mut tx,
            |conn, sql| sqlx::query_as(sql)
                .bind(now)
                .bind(id)
                .bind(before.unwrap_or(i64::MAX))
                .fetch_optional(conn)
                .await,
            "UPDATE quota_holds SET state = 'expired', closed_ms = ?1 \
             WHERE id = ?2 AND state = 'held' AND expires_ms <= ?3 \
             RETURNING platform, user_id, amount, model"
        )
        .with_context(|| format!("closing hold {id}"))?;
        let Some((platform, user_id, amount, model)) = row else {
            return Ok(false);
        };
        if amount > 0 {
            crate::on_tx!(
                &mut tx,
                |conn, sql| sqlx::query(sql)
                    .bind(amount)
                    .bind(self.now())
                    .bind(&platform)
                    .bind(&user_id)
                    .bind(kind)
                    .bind(&model)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()),
                "UPDATE quota_accounts SET remaining = remaining + ?1, reserved = reserved - ?1, \
                 last_op = ?5, last_note = ?6, updated_at = ?2 WHERE platform = ?3 AND user_id = ?4"
            )
            .with_context(|| {
                format!("returning {amount} tokens of hold {id} to {platform}:{user_id}")
            })?;
        }
        tx.commit()
            .await
            .with_context(|| format!("closing hold {id}"))?;
        Ok(true)
    }

    /// Every open hold, oldest first.
    pub async fn holds(&self) -> Result<Vec<Hold>, QuotaError> {
        let holds = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, Hold>(sql).fetch_all(pool).await,
            "SELECT id, platform, user_id, amount, owner, created_ms, expires_ms \
             FROM quota_holds WHERE state = 'held' ORDER BY id"
        )
        .context("listing open holds")?;
        Ok(holds)
    }

    /// This process no longer answers for hold `id`: its lease is not renewed any more.
    pub(super) fn forget(&self, id: i64) {
        lock(&self.live).remove(&id);
    }
}
