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
use crate::db::{Db, pg_sql};

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

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("hold", &self.id)
            .field("account", &self.user)
            .field("amount", &self.amount)
            .finish()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let Some(ledger) = self.ledger.take() else {
            return;
        };
        ledger.forget(self.id);
        let (id, user) = (self.id, self.user.clone());
        let amount = self.held();
        tracing::warn!(%user, amount, hold = id, "reservation dropped unresolved, refunding it");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = ledger.close_refunded(id).await {
                    tracing::error!(%user, amount, hold = id, error = %chain(&e), "refund of a dropped reservation failed; the sweep returns it when its lease ends");
                }
            });
        }
    }
}

/// The member of a group a hold on its wallet is for, and their daily share of it
/// (0: none).
pub(super) struct ForMember<'a> {
    pub(super) id: &'a str,
    pub(super) name: &'a str,
    pub(super) share: i64,
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
        self.reserve_on(account, amount, model, None).await
    }

    /// Reserves from `account` (for `member`, within their share, when it is a group's
    /// wallet); `None` when the balance or the share is too low.
    pub(super) async fn reserve_on(
        &self,
        account: &UserId,
        amount: i64,
        model: Option<&str>,
        member: Option<&ForMember<'_>>,
    ) -> Result<Option<Reservation>, QuotaError> {
        self.prepare(account).await?;
        let held = self
            .open_hold(account, amount, model, member)
            .await
            .with_context(|| match member {
                Some(m) => format!("reserving {amount} tokens on {account} for {}", m.id),
                None => format!("reserving {amount} tokens for {account}"),
            })?;
        Ok(held.map(|(id, unlimited)| Reservation {
            id,
            user: account.clone(),
            amount,
            unlimited,
            ledger: Some(self.clone()),
        }))
    }

    /// Opens the hold in one statement: the hold row is inserted only if the account
    /// can cover it (and, on a group's wallet, only if the member's holds of the day
    /// leave room for it in their share), and its insert trigger (migration
    /// `…09_hold_triggers`) moves the tokens from `remaining` to `reserved` in the same
    /// statement. `None` when the balance or the share is too low. One statement instead
    /// of a transaction of four: on SQLite each is a round trip to sqlx's worker thread
    /// (two context switches), on PostgreSQL one over the network.
    async fn open_hold(
        &self,
        account: &UserId,
        amount: i64,
        model: Option<&str>,
        member: Option<&ForMember<'_>>,
    ) -> Result<Option<(i64, bool)>, sqlx::Error> {
        // Unlimited accounts match without holding anything. The member's use today is
        // what their settled holds charged and what their open ones hold; without a
        // share (?10 = 0) it is not summed.
        macro_rules! insert {
            () => {
                "INSERT INTO quota_holds \
                   (platform, user_id, amount, unlimited, owner, created_ms, expires_ms, model, \
                    member, member_name) \
                 SELECT platform, user_id, CASE WHEN unlimited = 1 THEN 0 ELSE ?1 END, \
                   unlimited, ?2, ?3, ?4, ?5, ?8, ?9 \
                 FROM quota_accounts \
                 WHERE platform = ?6 AND user_id = ?7 AND (unlimited = 1 OR remaining >= ?1) \
                   AND (?10 = 0 OR ?1 + (SELECT COALESCE(SUM(CASE WHEN h.state = 'held' \
                       THEN h.amount ELSE COALESCE(h.charged, 0) END), 0) \
                     FROM quota_holds h WHERE h.platform = ?6 AND h.user_id = ?7 \
                       AND h.member = ?8 AND h.created_ms >= ?11) <= ?10)"
            };
        }
        let now = self.now_ms();
        let share = member.map_or(0, |m| m.share);
        macro_rules! run {
            ($conn:expr, $sql:expr) => {
                sqlx::query_as::<_, (i64, i64)>($sql)
                    .bind(amount)
                    .bind(&*self.owner)
                    .bind(now)
                    .bind(now + self.lease_ms())
                    .bind(model)
                    .bind(account.platform.as_str())
                    .bind(&account.user)
                    .bind(member.map(|m| m.id))
                    .bind(member.map(|m| m.name))
                    .bind(share)
                    .bind(self.day_start() * 1000)
                    .fetch_optional($conn)
                    .await?
            };
        }
        let row = match &self.db {
            // One writer at a time: the statement sees every hold before it.
            Db::Sqlite(pool) => run!(pool, concat!(insert!(), " RETURNING id, unlimited")),
            // A statement's snapshot is taken when it starts, so two concurrent holds of
            // one member would each miss the other in the member's sum (the row lock
            // below only re-checks the account row). With a share, the account's row is
            // locked first, in a statement of its own: the insert that follows starts
            // after the previous holder committed, and sees its hold.
            Db::Postgres(pool) if share > 0 => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "SELECT 1 FROM quota_accounts WHERE platform = $1 AND user_id = $2 \
                     FOR UPDATE",
                )
                .bind(account.platform.as_str())
                .bind(&account.user)
                .execute(&mut *tx)
                .await?;
                let row = run!(
                    &mut *tx,
                    // Built from this crate's own constant text, never from input.
                    sqlx::AssertSqlSafe(pg_sql(concat!(insert!(), " RETURNING id, unlimited")))
                );
                tx.commit().await?;
                row
            }
            // A concurrent reserve of the same account waits for this one's row lock and
            // then sees the balance it left (READ COMMITTED re-checks the WHERE).
            Db::Postgres(pool) => run!(
                pool,
                // Built from this crate's own constant text, never from input.
                sqlx::AssertSqlSafe(pg_sql(concat!(
                    insert!(),
                    " FOR UPDATE RETURNING id, unlimited"
                )))
            ),
        };
        let Some((id, unlimited)) = row else {
            return Ok(None);
        };
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
        let id = reservation.id;
        let result = self.retrying("refund", || self.close_refunded(id)).await;
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

    /// One attempt at settling. Closing the hold is one statement: its settle trigger
    /// (migration `…09_hold_triggers`) books the charge on the account and writes it
    /// back to the hold in the same statement — from the hold (and beyond it from
    /// `remaining`, never below 0), or, for a hold the sweep already returned, late,
    /// from `remaining` alone. The charge is read back only when it can differ from
    /// `used` (usage beyond the hold, or late), which is also when the balance is shown.
    async fn close_settled(&self, r: &Reservation, used: i64) -> Result<Closed, sqlx::Error> {
        let now = self.now_ms();
        let late = if self.settle_hold(r.id, "held", used, now).await? {
            false
        } else if self.settle_hold(r.id, "expired", used, now).await? {
            true
        } else {
            let (charged, _) = self.settled(r.id).await?;
            return Ok(Closed::Before(Settlement {
                charged,
                remaining: None,
            }));
        };
        self.spent_today.invalidate(&());
        let settlement = if r.unlimited || (!late && used <= r.amount) {
            Settlement {
                charged: used,
                remaining: None,
            }
        } else {
            let (charged, remaining) = self.settled(r.id).await?;
            if charged < used && !late {
                // Expected now and then (a tokenizer that counts fewer tokens than the
                // server bills): the excess was charged from what was left, down to 0.
                tracing::debug!(user = %r.user, used, reserved = r.amount, charged, "usage exceeded the hold and the balance; charged what was left");
            }
            Settlement { charged, remaining }
        };
        if late {
            tracing::warn!(user = %r.user, hold = r.id, used, charged = settlement.charged, "settled after the hold's lease ran out");
        }
        Ok(Closed::Now(settlement))
    }

    /// Closes hold `id` as settled with `used` tokens if it is in state `from`; false
    /// when it is not.
    async fn settle_hold(
        &self,
        id: i64,
        from: &str,
        used: i64,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(used)
                .bind(now)
                .bind(id)
                .bind(from)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            "UPDATE quota_holds SET state = 'settled', charged = ?1, closed_ms = ?2 \
             WHERE id = ?3 AND state = ?4"
        )?;
        Ok(done == 1)
    }

    /// What settled hold `id` charged and its account's balance now.
    async fn settled(&self, id: i64) -> Result<(i64, Option<i64>), sqlx::Error> {
        let (charged, remaining): (Option<i64>, Option<i64>) = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).bind(id).fetch_one(pool).await,
            "SELECT h.charged, a.remaining FROM quota_holds h \
             LEFT JOIN quota_accounts a ON a.platform = h.platform AND a.user_id = h.user_id \
             WHERE h.id = ?1"
        )?;
        Ok((charged.unwrap_or(0), remaining))
    }

    /// One attempt at refunding hold `id`: closes it as refunded, and its refund trigger
    /// (migration `…10_refund_trigger`) returns what it holds (nothing for an unlimited
    /// account) in the same statement. A hold already closed (settled, refunded, or
    /// swept) is left as it is.
    pub(super) async fn close_refunded(&self, id: i64) -> Result<(), sqlx::Error> {
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(self.now_ms())
                .bind(id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            "UPDATE quota_holds SET state = 'refunded', charged = 0, closed_ms = ?1 \
             WHERE id = ?2 AND state = 'held'"
        )?;
        Ok(())
    }
}
