//! Group budgets: a group (or a forum topic) can have a wallet — an account of its own,
//! `platform:group:<group>` (or `…/<topic>`), starting at 0 and never refilled — that
//! pays for its members' questions before their own balances, each member at most the
//! group's daily share. Tokens come in from a group admin's balance (moved, in one
//! transaction) or from a bot admin (granted). How a question is held on it is in
//! [`super::paying`]; everything else about the books is unchanged.

use std::time::Duration;

use anyhow::Context;
use sqlx::FromRow;

use super::{Balance, QuotaError, QuotaService};
use crate::core::budget::WhenEmpty;
use crate::core::event::{Platform, UserId};

/// A group's wallet and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    /// The wallet's own account in the ledger.
    pub account: UserId,
    /// Tokens a member may spend from it per UTC day; 0: no limit.
    pub member_limit: i64,
    pub when_empty: WhenEmpty,
}

/// Where tokens moved into a wallet come from.
#[derive(Debug, Clone, Copy)]
pub enum Funding<'a> {
    /// A group admin's own balance (taken from it, never below 0).
    Balance(&'a UserId),
    /// A bot admin's grant: new tokens, taken from no one.
    Grant(&'a UserId),
}

/// A member's use of a wallet today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberUse {
    pub member: String,
    /// The name the member was last charged under.
    pub name: Option<String>,
    pub used: i64,
}

/// `/budget`: the wallet's balance, its rules and who used it today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletReport {
    pub wallet: Wallet,
    pub balance: Balance,
    /// Members by use today, most first.
    pub members: Vec<MemberUse>,
}

/// How long a wallet's rules, as read, are trusted (another replica may change them).
pub(super) const WALLET_TTL: Duration = Duration::from_secs(5);

#[derive(FromRow)]
struct WalletRow {
    wallet: String,
    member_limit: i64,
    when_empty: String,
}

impl QuotaService {
    /// The wallet account of `group` (a forum topic's own with `topic`).
    pub fn wallet_account(platform: Platform, group: &str, topic: Option<&str>) -> UserId {
        UserId::new(
            platform,
            match topic {
                Some(topic) => format!("group:{group}/{topic}"),
                None => format!("group:{group}"),
            },
        )
    }

    /// The wallet that pays in `group` (in forum topic `topic`: the topic's own, else
    /// the group's), if there is one. Cached for [`WALLET_TTL`]: this is read for every
    /// question asked in a group.
    pub async fn wallet_for(
        &self,
        platform: Platform,
        group: &str,
        topic: Option<&str>,
    ) -> Result<Option<Wallet>, QuotaError> {
        let key = Self::wallet_account(platform, group, topic);
        if let Some(known) = self.wallets.get(&key) {
            return Ok(known);
        }
        let whole = Self::wallet_account(platform, group, None);
        let rows: Vec<WalletRow> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(platform.as_str())
                .bind(&key.user)
                .bind(&whole.user)
                .fetch_all(pool)
                .await,
            "SELECT wallet, member_limit, when_empty FROM group_wallets \
             WHERE platform = ?1 AND wallet IN (?2, ?3)"
        )
        .with_context(|| format!("reading the wallet of {key}"))?;
        let pick = rows
            .iter()
            .find(|r| r.wallet == key.user)
            .or_else(|| rows.first());
        let wallet = pick.map(|r| Wallet {
            account: UserId::new(platform, r.wallet.clone()),
            member_limit: r.member_limit,
            when_empty: WhenEmpty::parse(&r.when_empty).unwrap_or_default(),
        });
        self.wallets.insert(key, wallet.clone());
        Ok(wallet)
    }

    /// Creates `account`'s wallet (and its empty account) if it has none.
    async fn open_wallet(&self, account: &UserId) -> Result<(), QuotaError> {
        let now = self.now();
        let mut tx = self.db.begin().await.context("starting a transaction")?;
        crate::on_tx!(
            &mut tx,
            |conn, sql| sqlx::query(sql)
                .bind(account.platform.as_str())
                .bind(&account.user)
                .bind(now)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()),
            "INSERT INTO group_wallets (platform, wallet, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?3) ON CONFLICT (platform, wallet) DO NOTHING"
        )
        .with_context(|| format!("opening the wallet {account}"))?;
        // Its own refill amount is 0: a refill never tops a wallet up.
        crate::on_tx!(
            &mut tx,
            |conn, sql| sqlx::query(sql)
                .bind(account.platform.as_str())
                .bind(&account.user)
                .bind(now)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()),
            "INSERT INTO quota_accounts \
               (platform, user_id, granted, remaining, refill_tokens, last_op, created_at, updated_at) \
             VALUES (?1, ?2, 0, 0, 0, 'grant', ?3, ?3) \
             ON CONFLICT (platform, user_id) DO NOTHING"
        )
        .with_context(|| format!("opening the account of {account}"))?;
        tx.commit()
            .await
            .with_context(|| format!("opening the wallet {account}"))?;
        self.wallets.invalidate_all();
        Ok(())
    }

    /// Moves `tokens` into the wallet `account` (opened if new): from a group admin's
    /// balance, refused whole if it has less, or granted by a bot admin. Returns the
    /// wallet's balance.
    pub async fn fund_wallet(
        &self,
        account: &UserId,
        from: Funding<'_>,
        tokens: i64,
    ) -> Result<Balance, QuotaError> {
        if tokens <= 0 {
            return Err(QuotaError::Invalid(format!(
                "cannot move {tokens} tokens into a wallet"
            )));
        }
        self.open_wallet(account).await?;
        let (giver, note) = match from {
            Funding::Balance(giver) => {
                self.prepare(giver).await?;
                (Some(giver), format!("from {giver}"))
            }
            Funding::Grant(admin) => (None, format!("granted by {admin}")),
        };
        let now = self.now();
        let mut tx = self.db.begin().await.context("starting a transaction")?;
        if let Some(giver) = giver {
            let to = format!("to {account}");
            let taken = crate::on_tx!(
                &mut tx,
                |conn, sql| sqlx::query(sql)
                    .bind(tokens)
                    .bind(now)
                    .bind(giver.platform.as_str())
                    .bind(&giver.user)
                    .bind(&to)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()),
                "UPDATE quota_accounts SET granted = granted - ?1, remaining = remaining - ?1, \
                 last_op = 'budget_out', last_note = ?5, updated_at = ?2 \
                 WHERE platform = ?3 AND user_id = ?4 AND remaining >= ?1"
            )
            .with_context(|| format!("taking {tokens} tokens from {giver}"))?;
            if taken == 0 {
                drop(tx);
                let balance = self.balance(giver).await?;
                return Err(QuotaError::Exhausted {
                    remaining: balance.remaining,
                    needed: tokens,
                });
            }
        }
        crate::on_tx!(
            &mut tx,
            |conn, sql| sqlx::query(sql)
                .bind(tokens)
                .bind(now)
                .bind(account.platform.as_str())
                .bind(&account.user)
                .bind(&note)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()),
            "UPDATE quota_accounts SET granted = granted + ?1, remaining = remaining + ?1, \
             last_op = 'budget_in', last_note = ?5, updated_at = ?2 \
             WHERE platform = ?3 AND user_id = ?4"
        )
        .with_context(|| format!("adding {tokens} tokens to {account}"))?;
        tx.commit()
            .await
            .with_context(|| format!("moving {tokens} tokens into {account}"))?;
        self.balance(account).await
    }

    /// Sets the wallet's per-member daily limit (0: none), opening it if new.
    pub async fn set_member_limit(&self, account: &UserId, limit: i64) -> Result<(), QuotaError> {
        if limit < 0 {
            return Err(QuotaError::Invalid(format!(
                "a member's limit cannot be {limit}"
            )));
        }
        self.set_rule(
            account,
            "UPDATE group_wallets SET member_limit = ?1, updated_at = ?2 \
             WHERE platform = ?3 AND wallet = ?4",
            limit,
        )
        .await
    }

    /// Sets what members do when the wallet cannot pay, opening it if new.
    pub async fn set_when_empty(
        &self,
        account: &UserId,
        when: WhenEmpty,
    ) -> Result<(), QuotaError> {
        self.set_rule(
            account,
            "UPDATE group_wallets SET \
             when_empty = CASE WHEN ?1 = 1 THEN 'refuse' ELSE 'own' END, updated_at = ?2 \
             WHERE platform = ?3 AND wallet = ?4",
            i64::from(when == WhenEmpty::Refuse),
        )
        .await
    }

    /// Runs `statement` (`?1` = `value`, `?2` = now, `?3`/`?4` = the wallet) on the
    /// wallet's row, opening the wallet first if new.
    async fn set_rule(
        &self,
        account: &UserId,
        statement: &'static str,
        value: i64,
    ) -> Result<(), QuotaError> {
        self.open_wallet(account).await?;
        self.update_with(statement, value, account)
            .await
            .with_context(|| format!("setting the rules of {account}"))?;
        self.wallets.invalidate_all();
        Ok(())
    }

    /// The wallet `account` with its balance and the members' use today; `None` if the
    /// group has none.
    pub async fn wallet_report(
        &self,
        account: &UserId,
    ) -> Result<Option<WalletReport>, QuotaError> {
        let row: Option<WalletRow> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(account.platform.as_str())
                .bind(&account.user)
                .fetch_optional(pool)
                .await,
            "SELECT wallet, member_limit, when_empty FROM group_wallets \
             WHERE platform = ?1 AND wallet = ?2"
        )
        .with_context(|| format!("reading the wallet {account}"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let wallet = Wallet {
            account: account.clone(),
            member_limit: row.member_limit,
            when_empty: WhenEmpty::parse(&row.when_empty).unwrap_or_default(),
        };
        let balance = self.balance(account).await?;
        let members = self.members_today(account, None).await?;
        Ok(Some(WalletReport {
            wallet,
            balance,
            members,
        }))
    }

    /// What `member` spent from wallet `account` today (charged, or held).
    pub async fn wallet_use_today(
        &self,
        account: &UserId,
        member: &UserId,
    ) -> Result<i64, QuotaError> {
        Ok(self
            .members_today(account, Some(&member.user))
            .await?
            .first()
            .map_or(0, |m| m.used))
    }

    /// What members (or `only` one) spent from wallet `account` today — charged, or held
    /// while an answer runs — most first.
    pub(super) async fn members_today(
        &self,
        account: &UserId,
        only: Option<&str>,
    ) -> Result<Vec<MemberUse>, QuotaError> {
        let rows: Vec<(String, Option<String>, i64)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(account.platform.as_str())
                .bind(&account.user)
                .bind(self.day_start() * 1000)
                .bind(only)
                .fetch_all(pool)
                .await,
            "SELECT member, member_name, CAST(SUM(CASE WHEN state = 'held' THEN amount \
               ELSE COALESCE(charged, 0) END) AS BIGINT) \
             FROM quota_holds \
             WHERE platform = ?1 AND user_id = ?2 AND member IS NOT NULL AND created_ms >= ?3 \
               AND (?4 IS NULL OR member = ?4) \
             GROUP BY member, member_name"
        )
        .with_context(|| format!("reading the members' use of {account}"))?;
        // One line per member, whatever names they were charged under.
        let mut members: Vec<MemberUse> = Vec::new();
        for (member, name, used) in rows {
            match members.iter_mut().find(|m| m.member == member) {
                Some(known) => {
                    known.used += used;
                    if known.name.is_none() {
                        known.name = name;
                    }
                }
                None => members.push(MemberUse { member, name, used }),
            }
        }
        members.sort_by(|a, b| b.used.cmp(&a.used).then(a.member.cmp(&b.member)));
        Ok(members)
    }
}
