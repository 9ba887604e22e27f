//! Reserve before the model is called, settle with the real usage after, refund on
//! failure: the money path of every answer.

use anyhow::Context;

use super::{QuotaError, QuotaService, expect_one};
use crate::core::event::UserId;

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
                        tracing::error!(%user, amount, error = %crate::core::error::chain(&e), "refund of dropped reservation failed");
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

impl QuotaService {
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

    pub(super) async fn refund_amount(&self, user: &UserId, amount: i64) -> Result<(), QuotaError> {
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
}
