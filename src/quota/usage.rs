//! What a user spent, day by day (UTC), from the ledger: tokens used per model, and the
//! tokens that came in (purchases, and refunds of them, apart from grants and refills) or
//! went to groups' wallets — for `/usage` and the
//! web pages' chart. One query, grouped in the database.

use std::collections::BTreeMap;

use anyhow::Context;

use super::{QuotaError, QuotaService};
use crate::core::event::UserId;

/// One UTC day of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayUsage {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Tokens used, by model (or tool); `""` for entries that name none.
    pub by_model: BTreeMap<String, i64>,
    /// Tokens bought (Telegram Stars).
    pub bought: i64,
    /// Tokens of purchases taken back by refunds (net of refunds Telegram refused).
    pub refunded: i64,
    /// Tokens granted otherwise (an admin's grant, a refill, tokens moved into a group's
    /// wallet).
    pub granted: i64,
    /// Tokens this account moved into groups' wallets (`/budget add`).
    pub to_wallets: i64,
}

impl DayUsage {
    pub fn used(&self) -> i64 {
        self.by_model.values().sum()
    }

    /// `MM-DD`.
    pub fn label(&self) -> String {
        chrono::DateTime::from_timestamp(self.day * 86_400, 0)
            .map(|d| d.format("%m-%d").to_string())
            .unwrap_or_default()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    d: i64,
    kind: String,
    note: String,
    used: i64,
    added: i64,
}

impl QuotaService {
    /// The last `days` UTC days of `user`, oldest first, every day present (zero when
    /// nothing happened).
    pub async fn usage_by_day(
        &self,
        user: &UserId,
        days: i64,
    ) -> Result<Vec<DayUsage>, QuotaError> {
        let days = days.clamp(1, 366);
        let today = self.now().div_euclid(86_400);
        let first = today - days + 1;
        let rows = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, Row>(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .bind(first * 86_400)
                .fetch_all(pool)
                .await,
            "SELECT at / 86400 AS d, kind, COALESCE(note, '') AS note, \
               CAST(SUM(d_used) AS BIGINT) AS used, CAST(SUM(d_granted) AS BIGINT) AS added \
             FROM quota_ledger WHERE platform = ?1 AND user_id = ?2 AND at >= ?3 \
             GROUP BY at / 86400, kind, COALESCE(note, '')"
        )
        .with_context(|| format!("reading the usage of {user}"))?;
        let mut out: Vec<DayUsage> = (first..=today)
            .map(|day| DayUsage {
                day,
                ..DayUsage::default()
            })
            .collect();
        for row in rows {
            let Some(day) = out.get_mut((row.d - first) as usize) else {
                continue;
            };
            if row.used != 0 {
                *day.by_model.entry(row.note.clone()).or_default() += row.used;
            }
            match row.kind.as_str() {
                "purchase" => day.bought += row.added,
                "purchase_refund" | "purchase_refund_undone" => day.refunded -= row.added,
                "budget_out" => day.to_wallets -= row.added,
                "grant" | "adjust" | "refill" | "budget_in" if row.added > 0 => {
                    day.granted += row.added
                }
                _ => {}
            }
        }
        for day in &mut out {
            day.by_model.retain(|_, used| *used != 0);
        }
        Ok(out)
    }
}
