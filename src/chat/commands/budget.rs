//! `/budget`: a group's token wallet — shown to anyone in the group; funded and its rules
//! set by the group's admins (the platform's own: a Telegram group's owner and
//! administrators) or the bot's admins. A group admin's tokens move from their own
//! balance; a bot admin's are granted.

use super::{Answer, Conversation, Failure};
use crate::access::Decision;
use crate::core::adapter::ChatAdapter;
use crate::core::budget::{BUDGET_USAGE, BudgetOp, WhenEmpty};
use crate::core::error::chain;
use crate::core::event::{ChatKind, IncomingEvent, UserId};
use crate::quota::{Funding, QuotaError, QuotaService, WalletReport};

/// Members listed by `/budget` (the rest are counted).
const LISTED: usize = 15;

impl Conversation {
    pub(super) async fn budget(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        decision: Decision,
        op: BudgetOp,
    ) -> Answer {
        let (ChatKind::Group, Some(group)) = (event.chat_kind, &event.group) else {
            return Ok("A token wallet belongs to a group: use /budget in the group whose members it should pay for.".into());
        };
        let topic = event.thread.as_deref();
        // Where it is typed: a forum topic's own wallet, or the group's.
        let here = QuotaService::wallet_account(event.platform, group, topic);
        let quota = &self.answers.quota;
        match op {
            BudgetOp::Invalid => return Ok(format!("Usage: {BUDGET_USAGE}")),
            BudgetOp::Show => {
                let paying = quota
                    .wallet_for(event.platform, group, topic)
                    .await?
                    .map_or(here, |w| w.account);
                return Ok(match quota.wallet_report(&paying).await? {
                    Some(report) => describe(&report),
                    None => "This group has no token wallet: members pay for their questions from their own balance. A group admin can open one with /budget add <tokens>.".into(),
                });
            }
            _ => {}
        }
        let bot_admin = decision == Decision::Admin;
        if !bot_admin
            && !event.sender_manages_group
            && !self.group_admin(adapter, group, &event.sender.id).await?
        {
            return Err(Failure::Refused(
                "Only this group's admins can add to its wallet or change its rules.".into(),
            ));
        }
        let me = event.quota_user();
        match op {
            BudgetOp::Add(tokens) => {
                let from = if bot_admin {
                    Funding::Grant(&me)
                } else {
                    Funding::Balance(&me)
                };
                match quota.fund_wallet(&here, from, tokens).await {
                    Ok(balance) => {
                        tracing::info!(wallet = %here, by = %me, tokens, granted = bot_admin, "tokens added to a group's wallet");
                        let whence = if bot_admin { "" } else { " from your balance" };
                        Ok(format!(
                            "Added {tokens} tokens{whence} to {} wallet. It holds {} tokens.",
                            whose(&here),
                            balance.remaining
                        ))
                    }
                    Err(QuotaError::Exhausted { remaining, .. }) => Err(Failure::Refused(format!(
                        "You have {remaining} tokens, so you cannot add {tokens}. Nothing was moved."
                    ))),
                    Err(e) => Err(e.into()),
                }
            }
            BudgetOp::MemberLimit(limit) => {
                quota.set_member_limit(&here, limit).await?;
                Ok(if limit == 0 {
                    format!(
                        "Members may now spend any amount from {} wallet.",
                        whose(&here)
                    )
                } else {
                    format!(
                        "Each member may now spend up to {limit} tokens a day from {} wallet.",
                        whose(&here)
                    )
                })
            }
            BudgetOp::WhenEmpty(when) => {
                quota.set_when_empty(&here, when).await?;
                Ok(format!(
                    "When {} wallet cannot pay, {}.",
                    whose(&here),
                    when_empty_text(when)
                ))
            }
            BudgetOp::Show | BudgetOp::Invalid => unreachable!("answered above"),
        }
    }

    /// Asks the platform whether `user` administers `group`.
    async fn group_admin(
        &self,
        adapter: &dyn ChatAdapter,
        group: &str,
        user: &str,
    ) -> Result<bool, Failure> {
        adapter.is_group_admin(group, user).await.map_err(|e| {
            tracing::warn!(group, user, error = %chain(&e), "could not check a group admin");
            Failure::Refused(
                "Could not check whether you administer this group; please try again.".into(),
            )
        })
    }
}

/// A forum topic's own wallet (`group:<chat>/<topic>`), not a whole group's.
fn of_topic(account: &UserId) -> bool {
    account.user.contains('/')
}

/// "this group's" or "this topic's" wallet.
fn whose(account: &UserId) -> &'static str {
    if of_topic(account) {
        "this topic's"
    } else {
        "this group's"
    }
}

fn when_empty_text(when: WhenEmpty) -> &'static str {
    match when {
        WhenEmpty::Own => "members pay from their own balance",
        WhenEmpty::Refuse => "members are refused until it is topped up",
    }
}

/// The `/budget` answer.
fn describe(report: &WalletReport) -> String {
    let b = &report.balance;
    let whose = if of_topic(&report.wallet.account) {
        "This topic's"
    } else {
        "This group's"
    };
    let mut text = format!(
        "{whose} wallet: {} tokens left ({} used of {} added).\n",
        b.remaining, b.used, b.granted
    );
    if b.reserved > 0 {
        text.push_str(&format!(
            "{} tokens are held for answers in progress.\n",
            b.reserved
        ));
    }
    let w = &report.wallet;
    if w.member_limit > 0 {
        text.push_str(&format!(
            "Each member may spend up to {} tokens a day from it.\n",
            w.member_limit
        ));
    } else {
        text.push_str("Members may spend any amount from it.\n");
    }
    text.push_str(&format!(
        "When it cannot pay, {}.\n",
        when_empty_text(w.when_empty)
    ));
    if report.members.is_empty() {
        text.push_str("No one has used it today.");
        return text;
    }
    text.push_str("Used today (UTC):");
    for m in report.members.iter().take(LISTED) {
        let name = m
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&m.member);
        let share = if w.member_limit > 0 {
            format!(" of {}", w.member_limit)
        } else {
            String::new()
        };
        text.push_str(&format!("\n• {name}: {}{share}", m.used));
    }
    if report.members.len() > LISTED {
        text.push_str(&format!("\n… and {} more", report.members.len() - LISTED));
    }
    text
}
