//! Reserve before the model is called, settle with the real usage after, refund on
//! failure: the money path of every answer. Each reservation is also a hold row with a
//! lease (see [`super::holds`]); closing it is guarded by the hold's state, so settle and
//! refund are retried until they succeed without ever charging twice.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;

use super::{QuotaError, QuotaService, lock};
use crate::core::error::chain;
use crate::core::event::UserId;
use crate::db::Tx;

/// Tokens held for one model call. Settle or refund it; if it is dropped unresolved (a
/// task cancelled or panicking mid-call) its lease is no longer renewed and a refund is
/// attempted in the background; should that fail too, the sweep returns it when the
/// lease runs out.
#[must_use = "a reservation must be settled or refunded"]
pub struct Reservation {
    id: i64,
    user: UserId,
    amount: i64,
    /// Unlimited users hold nothing; their usage is counted at settlement.
    unlimited: bool,
    /// The model it is for, written into the ledger entries it makes.
    model: Option<String>,
    ledger: Option<QuotaService>,
}

impl Reservation {
    pub fn amount(&self) -> i64 {
        self.amount
    }

    /// The tokens actually moved to `reserved` (none for an unlimited account).
    fn held(&self) -> i64 {
        if self.unlimited { 0 } else { self.amount }
    }

    /// The hold's id (`gptbot quota holds`).
    pub fn id(&self) -> i64 {
        self.id
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let Some(ledger) = self.ledger.take() else {
            return;
        };
        ledger.forget(self.id);
        let (id, user, model) = (self.id, self.user.clone(), self.model.take());
        let amount = self.held();
        tracing::warn!(%user, amount, hold = id, "reservation dropped unresolved, refunding it");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = ledger.close_refunded(id, &user, amount, model.as_deref()).await {
                    tracing::error!(%user, amount, hold = id, error = %chain(&e), "refund of a dropped reservation failed; the sweep returns it when its lease ends");
                }
            });
        }
    }
}

/// What a settlement charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub charged: i64,
    /// The balance after an over-usage or late settlement (not read back otherwise).
    pub remaining: Option<i64>,
}

/// How a hold was closed by one attempt.
enum Closed {
    /// This attempt closed it.
    Now(Settlement),
    /// An earlier attempt (whose answer was lost) already did: nothing more to do.
    Before(Settlement),
}

impl QuotaService {
    /// Atomically moves `amount` tokens from remaining to reserved and opens a hold with
    /// a lease, or fails with [`QuotaError::Exhausted`] leaving the account untouched.
    /// A linked identity whose own balance is too low is held on the account it is
    /// linked to.
    pub async fn reserve(&self, user: &UserId, amount: i64) -> Result<Reservation, QuotaError> {
        self.reserve_for(user, amount, None).await
    }

    /// [`Self::reserve`] for a call to `model`, which the ledger entries of the
    /// reservation, its settlement or refund name.
    pub async fn reserve_for(
        &self,
        user: &UserId,
        amount: i64,
        model: Option<&str>,
    ) -> Result<Reservation, QuotaError> {
        if amount < 0 {
            return Err(QuotaError::Invalid(format!(
                "cannot reserve {amount} tokens"
            )));
        }
        self.check_budget().await?;
        if let Some(reservation) = self.reserve_from(user, amount, model).await? {
            return Ok(reservation);
        }
        // Too low: a linked identity draws on the account it is linked to.
        if let Some(owner) = self.linked_to(user).await?
            && let Some(reservation) = self.reserve_from(&owner, amount, model).await?
        {
            return Ok(reservation);
        }
        let balance = self.balance(user).await?;
        // Reading the balance opens an account the database had lost: try it once more.
        if balance.remaining >= amount
            && let Some(reservation) = self.reserve_from(user, amount, model).await?
        {
            return Ok(reservation);
        }
        Err(QuotaError::Exhausted {
            remaining: balance.remaining,
            needed: amount,
        })
    }

    /// Reserves from `account`'s own balance; `None` when it is too low.
    async fn reserve_from(
        &self,
        account: &UserId,
        amount: i64,
        model: Option<&str>,
    ) -> Result<Option<Reservation>, QuotaError> {
        self.prepare(account).await?;
        let held = self
            .open_hold(account, amount, model)
            .await
            .with_context(|| format!("reserving {amount} tokens for {account}"))?;
        Ok(held.map(|(id, unlimited)| Reservation {
            id,
            user: account.clone(),
            amount,
            unlimited,
            model: model.map(str::to_string),
            ledger: Some(self.clone()),
        }))
    }

    /// The account update and the hold row in one transaction; `None` when the balance
    /// is too low.
    async fn open_hold(
        &self,
        user: &UserId,
        amount: i64,
        model: Option<&str>,
    ) -> Result<Option<(i64, bool)>, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        // Unlimited accounts match without holding anything.
        let row: Option<(i64,)> = crate::on_tx!(
            &mut tx,
            |conn, sql| sqlx::query_as(sql)
                .bind(amount)
                .bind(self.now())
                .bind(user.platform.as_str())
                .bind(&user.user)
                .bind(model)
                .fetch_optional(conn)
                .await,
            "UPDATE quota_accounts SET \
               remaining = remaining - (CASE WHEN unlimited = 1 THEN 0 ELSE ?1 END), \
               reserved = reserved + (CASE WHEN unlimited = 1 THEN 0 ELSE ?1 END), \
               last_op = 'reserve', last_note = ?5, updated_at = ?2 \
             WHERE platform = ?3 AND user_id = ?4 AND (unlimited = 1 OR remaining >= ?1) \
             RETURNING unlimited"
        )?;
        let Some((unlimited,)) = row else {
            return Ok(None);
        };
        let now = self.now_ms();
        let (id,): (i64,) = crate::on_tx!(
            &mut tx,
            |conn, sql| sqlx::query_as(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .bind(if unlimited != 0 { 0 } else { amount })
                .bind(unlimited)
                .bind(&*self.owner)
                .bind(now)
                .bind(now + self.lease_ms())
                .bind(model)
                .fetch_one(conn)
                .await,
            "INSERT INTO quota_holds (platform, user_id, amount, unlimited, owner, created_ms, expires_ms, model) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id"
        )?;
        tx.commit().await?;
        lock(&self.live).insert(id);
        Ok(Some((id, unlimited != 0)))
    }

    /// Charges the real usage and returns the rest of the reservation. Usage above the
    /// reservation (a server counting more than estimated) is taken from `remaining`
    /// as far as it goes, never below 0. A hold the sweep already returned (its lease
    /// ran out) is charged late, from what is left. Retried on database errors until it
    /// succeeds or the lease runs out, when the sweep becomes responsible.
    pub async fn settle(
        &self,
        mut reservation: Reservation,
        used: i64,
    ) -> Result<Settlement, QuotaError> {
        let used = used.max(0);
        let (id, user) = (reservation.id, reservation.user.clone());
        let result = self
            .retrying("settle", || self.close_settled(&reservation, used))
            .await
            .with_context(|| format!("settling {used} tokens for {user} (hold {id})"));
        // Settled, or given up: either way this process no longer answers for the hold.
        reservation.ledger = None;
        self.forget(id);
        match result? {
            Closed::Now(settlement) => Ok(settlement),
            Closed::Before(settlement) => {
                tracing::info!(%user, hold = id, "hold was already settled by an earlier attempt");
                Ok(settlement)
            }
        }
    }

    /// Returns the whole reservation (the call failed). Retried like [`Self::settle`].
    pub async fn refund(&self, mut reservation: Reservation) -> Result<(), QuotaError> {
        let (id, user) = (reservation.id, reservation.user.clone());
        let amount = reservation.held();
        let result = self
            .retrying("refund", || {
                self.close_refunded(id, &user, amount, reservation.model.as_deref())
            })
            .await;
        reservation.ledger = None;
        self.forget(id);
        result
    }

    /// Runs `op` again with backoff while the database fails, for at most one lease:
    /// after that the hold may have been swept and the sweep answers for it.
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, QuotaError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let give_up = tokio::time::Instant::now() + self.lease;
        let mut pause = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(done) => return Ok(done),
                Err(e) if tokio::time::Instant::now() + pause < give_up => {
                    tracing::warn!(error = %chain(&e), retry_in = ?pause, "{what} failed, retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("{what} gave up"))
                        .into());
                }
            }
        }
    }

    /// One attempt at settling: closes the hold and charges the account in one
    /// transaction.
    async fn close_settled(&self, r: &Reservation, used: i64) -> Result<Closed, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let now = self.now_ms();
        // A hold still held is settled normally; one the sweep returned is charged late.
        for (from, late) in [("held", false), ("expired", true)] {
            if self.mark(&mut tx, r.id, from, "settled", used, now).await? {
                let settlement = self.charge(&mut tx, r, used, late).await?;
                if settlement.charged != used {
                    self.mark_charged(&mut tx, r.id, settlement.charged).await?;
                }
                tx.commit().await?;
                self.spent_today.invalidate(&());
                if late {
                    tracing::warn!(user = %r.user, hold = r.id, used, charged = settlement.charged, "settled after the hold's lease ran out");
                }
                return Ok(Closed::Now(settlement));
            }
        }
        let (charged,): (Option<i64>,) = crate::on_tx!(
            &mut tx,
            |conn, sql| sqlx::query_as(sql).bind(r.id).fetch_one(conn).await,
            "SELECT charged FROM quota_holds WHERE id = ?1"
        )?;
        Ok(Closed::Before(Settlement {
            charged: charged.unwrap_or(0),
            remaining: None,
        }))
    }

    /// One attempt at refunding `amount` (what the hold holds: 0 for an unlimited
    /// account): closes the hold and returns its tokens together. A hold already closed
    /// (settled, refunded, or swept) is left as it is.
    pub(super) async fn close_refunded(
        &self,
        id: i64,
        user: &UserId,
        amount: i64,
        model: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        if self
            .mark(&mut tx, id, "held", "refunded", 0, self.now_ms())
            .await?
            && amount > 0
        {
            crate::on_tx!(
                &mut tx,
                |conn, sql| sqlx::query(sql)
                    .bind(amount)
                    .bind(self.now())
                    .bind(user.platform.as_str())
                    .bind(&user.user)
                    .bind(model)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()),
                "UPDATE quota_accounts SET remaining = remaining + ?1, reserved = reserved - ?1, \
                 last_op = 'refund', last_note = ?5, updated_at = ?2 WHERE platform = ?3 AND user_id = ?4"
            )?;
        }
        tx.commit().await
    }

    /// Moves hold `id` from state `from` to `to`; false when it was not in `from`.
    async fn mark(
        &self,
        tx: &mut Tx,
        id: i64,
        from: &str,
        to: &str,
        charged: i64,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = crate::on_tx!(
            tx,
            |conn, sql| sqlx::query(sql)
                .bind(to)
                .bind(charged)
                .bind(now)
                .bind(id)
                .bind(from)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()),
            "UPDATE quota_holds SET state = ?1, charged = ?2, closed_ms = ?3 \
             WHERE id = ?4 AND state = ?5"
        )?;
        Ok(done == 1)
    }

    async fn mark_charged(&self, tx: &mut Tx, id: i64, charged: i64) -> Result<(), sqlx::Error> {
        crate::on_tx!(
            tx,
            |conn, sql| sqlx::query(sql)
                .bind(charged)
                .bind(id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()),
            "UPDATE quota_holds SET charged = ?1 WHERE id = ?2"
        )?;
        Ok(())
    }

    /// Books `used` tokens against the account: from the hold (and beyond it from
    /// `remaining`, never below 0), or, `late`, from `remaining` alone.
    async fn charge(
        &self,
        tx: &mut Tx,
        r: &Reservation,
        used: i64,
        late: bool,
    ) -> Result<Settlement, sqlx::Error> {
        let user = &r.user;
        let held = if late || r.unlimited { 0 } else { r.amount };
        let statement = if r.unlimited {
            // Nothing was held: count the usage and grant it in the same breath.
            "UPDATE quota_accounts SET used = used + ?1, granted = granted + ?1, \
             last_charge = ?1, requests = requests + 1, last_op = 'settle', last_note = ?6, updated_at = ?3 \
             WHERE platform = ?4 AND user_id = ?5 AND ?2 = 0 RETURNING last_charge, remaining"
        } else if late {
            "UPDATE quota_accounts SET \
               used = used + MIN(?1, remaining), \
               remaining = remaining - MIN(?1, remaining), \
               last_charge = MIN(?1, remaining), \
               requests = requests + 1, \
               last_op = 'late_settle', last_note = ?6, updated_at = ?3 \
             WHERE platform = ?4 AND user_id = ?5 AND ?2 = 0 \
             RETURNING last_charge, remaining"
        } else {
            // Every right-hand side sees the old row, so MIN(...) is the same charge in
            // all three places; it is also kept in last_charge to be returned.
            "UPDATE quota_accounts SET \
               used = used + MIN(?1, ?2 + remaining), \
               remaining = remaining + ?2 - MIN(?1, ?2 + remaining), \
               last_charge = MIN(?1, ?2 + remaining), \
               reserved = reserved - ?2, \
               requests = requests + 1, \
               last_op = 'settle', last_note = ?6, updated_at = ?3 \
             WHERE platform = ?4 AND user_id = ?5 \
             RETURNING last_charge, remaining"
        };
        let row: Option<(i64, i64)> = crate::on_tx!(
            tx,
            |conn, sql| sqlx::query_as(sql)
                .bind(used)
                .bind(held)
                .bind(self.now())
                .bind(user.platform.as_str())
                .bind(&user.user)
                .bind(r.model.as_deref())
                .fetch_optional(conn)
                .await,
            statement
        )?;
        let (charged, remaining) = row.ok_or_else(|| sqlx::Error::RowNotFound)?;
        if charged < used && !late {
            // Expected now and then (a tokenizer that counts fewer tokens than the server
            // bills): the excess was charged from what was left, down to 0.
            tracing::debug!(%user, used, reserved = r.amount, charged, "usage exceeded the hold and the balance; charged what was left");
        }
        Ok(Settlement {
            charged,
            remaining: (!r.unlimited && (used > r.amount || late)).then_some(remaining),
        })
    }
}
