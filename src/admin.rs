//! Operators' operations, applied once: the chat's `/grant …`, the web admin page and
//! the command line each parse their input into one [`AdminCommand`] and render the
//! typed [`Done`] this service returns; none of them touches the ledger or the access
//! rules itself, so an operation (and its checks: an admin cannot be denied, a hold is
//! released once) is written once.

use std::sync::Arc;

use crate::access::{AccessError, AccessService, group_subject};
use crate::core::admin::{Account, AdminCommand, Subject};
use crate::core::event::{Platform, UserId};
use crate::core::payments::{Refunded, StarPayments};
use crate::quota::payments::Payment;
use crate::quota::{Balance, Hold, LedgerEntry, QuotaError, QuotaService, Stats};

/// Who runs an operation, and where: the audit name (`cli`, `web:ann`, `telegram:1`),
/// the platform a bare user id is on, and the group a chat command was sent in.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub platform: Option<Platform>,
    /// The group (`platform`, id) `chat` stands for in `/allow chat`.
    pub group: Option<(Platform, String)>,
}

impl Operator {
    /// The command line: every user is `platform:id`.
    pub fn cli() -> Operator {
        Operator {
            name: "cli".into(),
            platform: None,
            group: None,
        }
    }
}

/// What an operation did, for each front end to render.
#[derive(Debug, Clone)]
pub enum Done {
    /// A balance after a change (or as it is, for `Usage`, with today's use).
    Balance {
        user: UserId,
        balance: Balance,
        change: Change,
    },
    History {
        user: UserId,
        entries: Vec<LedgerEntry>,
    },
    Stats(Stats),
    Holds(Vec<Hold>),
    Released(i64),
    /// A rule saved for `subject` (`telegram:5`, `group:discord:9`).
    Rule {
        subject: String,
        allowed: bool,
    },
    /// Stored rules: subject, allowed, by whom.
    Rules(Vec<(String, bool, String)>),
    /// A payment refunded: the Stars given back, `refunded_tokens` taken.
    Refunded(Payment),
    Payments(Vec<Payment>),
}

/// Which change a [`Done::Balance`] shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Granted {
        tokens: i64,
        reason: Option<String>,
    },
    Set,
    Refill,
    /// Nothing changed: the balance and the tokens used today.
    Shown {
        today: i64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The operation makes no sense as asked; the sentence says why.
    #[error("{0}")]
    Refused(String),
    #[error("quota ledger")]
    Quota(#[source] QuotaError),
    #[error("access rules")]
    Access(#[source] AccessError),
}

impl From<QuotaError> for AdminError {
    fn from(e: QuotaError) -> AdminError {
        match e {
            QuotaError::Invalid(why) => AdminError::Refused(why),
            e => AdminError::Quota(e),
        }
    }
}

impl From<AccessError> for AdminError {
    fn from(e: AccessError) -> AdminError {
        AdminError::Access(e)
    }
}

/// Applies [`AdminCommand`]s to the ledger and the access rules.
#[derive(Clone)]
pub struct AdminService {
    quota: QuotaService,
    access: Arc<AccessService>,
    /// Where a refund gives the money back (Telegram, with `telegram.token`).
    refunds: Option<Arc<dyn StarPayments>>,
}

impl AdminService {
    pub fn new(quota: QuotaService, access: Arc<AccessService>) -> AdminService {
        AdminService {
            quota,
            access,
            refunds: None,
        }
    }

    pub fn with_refunds(mut self, refunds: Option<Arc<dyn StarPayments>>) -> AdminService {
        self.refunds = refunds;
        self
    }

    /// Takes the payment's tokens back (what remains), then has the platform give the
    /// money back; if it refuses, the tokens are returned.
    async fn refund(&self, charge: &str) -> Result<Done, AdminError> {
        let Some(refunds) = &self.refunds else {
            return Err(AdminError::Refused(
                "refunds go through Telegram: set telegram.token".into(),
            ));
        };
        let payment = self.quota.refund_payment(charge).await?;
        match refunds.refund(&payment.buyer, charge).await {
            Refunded::Done | Refunded::AlreadyRefunded => Ok(Done::Refunded(payment)),
            Refunded::Refused(why) => {
                self.quota.unrefund_payment(charge).await?;
                Err(AdminError::Refused(format!(
                    "Telegram refused the refund ({why}); the tokens were left with the user"
                )))
            }
        }
    }

    pub async fn apply(&self, by: &Operator, command: AdminCommand) -> Result<Done, AdminError> {
        tracing::info!(admin = %by.name, ?command, "admin operation");
        let account = |a: &Account| a.on(by.platform).map_err(|e| AdminError::Refused(e.0));
        let balance = |user: UserId, balance: Balance, change: Change| Done::Balance {
            user,
            balance,
            change,
        };
        Ok(match command {
            AdminCommand::Grant {
                user,
                tokens,
                reason,
            } => {
                let user = account(&user)?;
                let b = self.quota.grant(&user, tokens).await?;
                balance(user, b, Change::Granted { tokens, reason })
            }
            AdminCommand::SetQuota { user, tokens } => {
                let user = account(&user)?;
                let b = self.quota.set_quota(&user, tokens).await?;
                balance(user, b, Change::Set)
            }
            AdminCommand::Refill { user, tokens } => {
                let user = account(&user)?;
                let b = self.quota.set_refill(&user, tokens).await?;
                balance(user, b, Change::Refill)
            }
            AdminCommand::Usage { user } => {
                let user = account(&user)?;
                let b = self.quota.balance(&user).await?;
                let today = self.quota.used_today(&user).await?;
                balance(user, b, Change::Shown { today })
            }
            AdminCommand::History { user, limit } => {
                let user = account(&user)?;
                let entries = self.quota.history(&user, limit.max(1)).await?;
                Done::History { user, entries }
            }
            AdminCommand::Stats => Done::Stats(self.quota.stats().await?),
            AdminCommand::Holds => Done::Holds(self.quota.holds().await?),
            AdminCommand::Release { hold } => {
                if !self.quota.release(hold).await? {
                    return Err(AdminError::Refused(format!(
                        "no open hold with id {hold} (see the open holds)"
                    )));
                }
                Done::Released(hold)
            }
            AdminCommand::Rule { subject, allowed } => {
                let subject = self.subject(by, &subject, allowed)?;
                self.access.set_rule(&subject, allowed, &by.name).await?;
                Done::Rule { subject, allowed }
            }
            AdminCommand::Rules => Done::Rules(self.access.list_rules().await?),
            AdminCommand::Refund { charge } => self.refund(&charge).await?,
            AdminCommand::Payments { user } => {
                let user = user.as_ref().map(account).transpose()?;
                Done::Payments(self.quota.payments(user.as_ref()).await?)
            }
        })
    }

    /// The rule key of `subject`; an admin is never denied.
    fn subject(
        &self,
        by: &Operator,
        subject: &Subject,
        allowed: bool,
    ) -> Result<String, AdminError> {
        match subject {
            Subject::ThisChat => match &by.group {
                Some((platform, group)) => Ok(group_subject(*platform, group)),
                None => Err(AdminError::Refused(
                    "`chat` means the group this is sent in; send it in a group.".into(),
                )),
            },
            Subject::Group(group) => Ok(format!("group:{group}")),
            // Tools may be taken from anyone, an admin too.
            Subject::Tools(inner) => Ok(format!("tools:{}", self.subject(by, inner, true)?)),
            Subject::Account(account) => {
                let user = account
                    .on(by.platform)
                    .map_err(|e| AdminError::Refused(e.0))?;
                if !allowed && self.access.is_admin(&user) {
                    return Err(AdminError::Refused(format!(
                        "{user} is an admin and cannot be denied"
                    )));
                }
                Ok(user.to_string())
            }
        }
    }
}
