//! Who pays for a question. Outside a group with a wallet, the asker (or the account
//! they are linked to), as always. In a group with a wallet, the wallet first: its hold
//! names the member and is opened only if the wallet covers it and the member's use of
//! it today stays within the group's daily share — both checked in the statement that
//! opens the hold. When the wallet cannot pay, the member pays from their own balance,
//! or is refused if the group says so. Settling and refunding are the same as for any
//! hold: the books' invariant is the ledger's.

use std::fmt;

use anyhow::Context;

use super::wallets::Wallet;
use super::{QuotaError, QuotaService, Reservation, lock};
use crate::core::budget::WhenEmpty;
use crate::core::event::UserId;
use crate::db::{Db, pg_sql};

/// The asker of a question and the wallet that pays for it first, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payer {
    pub member: UserId,
    /// Their name as shown in `/budget`.
    pub name: String,
    pub wallet: Option<Wallet>,
}

impl Payer {
    /// `user` pays for themselves.
    pub fn own(user: UserId) -> Payer {
        Payer {
            member: user,
            name: String::new(),
            wallet: None,
        }
    }
}

/// Why a group's wallet does not pay for a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletShort {
    /// The wallet holds less than the question needs.
    Empty { remaining: i64, needed: i64 },
    /// The member's share for today would be exceeded.
    Share { used: i64, limit: i64, needed: i64 },
}

impl fmt::Display for WalletShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalletShort::Empty { remaining, needed } => write!(
                f,
                "the wallet has {remaining} tokens and this needs up to {needed}"
            ),
            WalletShort::Share {
                used,
                limit,
                needed,
            } => write!(
                f,
                "{used} of the member's {limit} tokens for today are used and this needs up to {needed}"
            ),
        }
    }
}

impl QuotaService {
    /// [`Self::reserve_for`] on behalf of `payer`: the group's wallet first.
    pub async fn reserve_paid(
        &self,
        payer: &Payer,
        amount: i64,
        model: Option<&str>,
    ) -> Result<Reservation, QuotaError> {
        let Some(wallet) = &payer.wallet else {
            return self.reserve_for(&payer.member, amount, model).await;
        };
        if amount < 0 {
            return Err(QuotaError::Invalid(format!(
                "cannot reserve {amount} tokens"
            )));
        }
        self.check_budget().await?;
        if let Some(reservation) = self.reserve_on_wallet(wallet, payer, amount, model).await? {
            return Ok(reservation);
        }
        match wallet.when_empty {
            WhenEmpty::Own => self.reserve_for(&payer.member, amount, model).await,
            WhenEmpty::Refuse => Err(QuotaError::Wallet(
                self.short_of(wallet, &payer.member, amount)
                    .await?
                    // Paid for in between: a full wallet is never refused for being empty.
                    .unwrap_or(WalletShort::Empty {
                        remaining: 0,
                        needed: amount,
                    }),
            )),
        }
    }

    /// [`Self::can_afford`] on behalf of `payer`: the wallet, else (if the group lets
    /// members pay) their own balance.
    pub async fn can_afford_paid(&self, payer: &Payer, amount: i64) -> Result<(), QuotaError> {
        let Some(wallet) = &payer.wallet else {
            return self.can_afford(&payer.member, amount).await;
        };
        self.check_budget().await?;
        match self.short_of(wallet, &payer.member, amount).await? {
            None => Ok(()),
            Some(short) => match wallet.when_empty {
                WhenEmpty::Own => self.can_afford(&payer.member, amount).await,
                WhenEmpty::Refuse => Err(QuotaError::Wallet(short)),
            },
        }
    }

    /// Why the wallet cannot hold `amount` for `member` now; `None` if it can.
    async fn short_of(
        &self,
        wallet: &Wallet,
        member: &UserId,
        amount: i64,
    ) -> Result<Option<WalletShort>, QuotaError> {
        let balance = self.balance(&wallet.account).await?;
        if !balance.unlimited && balance.remaining < amount {
            return Ok(Some(WalletShort::Empty {
                remaining: balance.remaining,
                needed: amount,
            }));
        }
        if wallet.member_limit > 0 {
            let used = self.wallet_use_today(&wallet.account, member).await?;
            if used + amount > wallet.member_limit {
                return Ok(Some(WalletShort::Share {
                    used,
                    limit: wallet.member_limit,
                    needed: amount,
                }));
            }
        }
        Ok(None)
    }

    /// Holds `amount` on the wallet for `payer`'s member if the wallet covers it and the
    /// member's share allows it; `None` otherwise (nothing held).
    async fn reserve_on_wallet(
        &self,
        wallet: &Wallet,
        payer: &Payer,
        amount: i64,
        model: Option<&str>,
    ) -> Result<Option<Reservation>, QuotaError> {
        let account = &wallet.account;
        self.prepare(account).await?;
        // The member's use today: what their settled holds charged, what their open
        // ones hold.
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
                    .bind(&payer.member.user)
                    .bind(&payer.name)
                    .bind(wallet.member_limit)
                    .bind(self.day_start() * 1000)
                    .fetch_optional($conn)
                    .await
            };
        }
        let row = match &self.db {
            // One writer at a time: the statement sees every hold before it.
            Db::Sqlite(pool) => run!(pool, concat!(insert!(), " RETURNING id, unlimited")),
            // A statement's snapshot is taken when it starts, so two concurrent inserts
            // would each miss the other's hold in the member's sum (the row lock alone
            // only re-checks the account row). With a share, the wallet's row is locked
            // first, in a statement of its own: the insert that follows starts after
            // the previous holder committed, and sees its hold.
            Db::Postgres(pool) if wallet.member_limit > 0 => {
                let locked = async {
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
                    )?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(row)
                };
                locked.await
            }
            Db::Postgres(pool) => run!(
                pool,
                // Built from this crate's own constant text, never from input.
                sqlx::AssertSqlSafe(pg_sql(concat!(
                    insert!(),
                    " FOR UPDATE RETURNING id, unlimited"
                )))
            ),
        }
        .with_context(|| {
            format!(
                "reserving {amount} tokens on {account} for {}",
                payer.member
            )
        })?;
        let Some((id, unlimited)) = row else {
            return Ok(None);
        };
        lock(&self.live).insert(id);
        Ok(Some(self.reservation(id, account, amount, unlimited != 0)))
    }
}
