//! Who pays for a question. Outside a group with a wallet, the asker (or the account
//! they are linked to), as always. In a group with a wallet, the wallet first: its hold
//! names the member and is opened only if the wallet covers it and the member's use of
//! it today stays within the group's daily share — both checked in the statement that
//! opens the hold. When the wallet cannot pay, the member pays from their own balance,
//! or is refused if the group says so. Settling and refunding are the same as for any
//! hold: the books' invariant is the ledger's.

use std::fmt;

use super::reservations::ForMember;
use super::wallets::Wallet;
use super::{QuotaError, QuotaService, Reservation};
use crate::core::budget::WhenEmpty;
use crate::core::event::UserId;

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
        let member = ForMember {
            id: &payer.member.user,
            name: &payer.name,
            share: wallet.member_limit,
        };
        self.reserve_on(&wallet.account, amount, model, Some(&member))
            .await
    }
}
