//! Operators' commands in a chat (/grant, /setquota, /refill, /usage, /stats, /holds,
//! /release, /allow, /deny): applied by the one admin service, told here as sentences.
//! The caller has checked that the sender is an admin.

use super::{Answer, Conversation, Failure};
use crate::admin::{AdminError, Change, Done, Operator};
use crate::core::admin::{AdminCommand, Subject};
use crate::core::error::chain;
use crate::core::event::IncomingEvent;

impl Conversation {
    /// Runs an admin command and says what it did.
    pub(super) async fn admin(&self, event: &IncomingEvent, command: AdminCommand) -> Answer {
        let by = Operator {
            name: event.quota_user().to_string(),
            platform: Some(event.platform),
            group: event.group.clone().map(|g| (event.platform, g)),
        };
        let this_chat = matches!(
            command,
            AdminCommand::Rule {
                subject: Subject::ThisChat,
                ..
            }
        );
        let service = self.admin_service();
        match service.apply(&by, command).await {
            Ok(done) => Ok(sentence(done, this_chat)),
            Err(AdminError::Refused(why)) => Ok(format!("Could not do that: {why}")),
            Err(AdminError::Quota(e)) => Err(Failure::Quota(e)),
            Err(AdminError::Access(e)) => {
                tracing::error!(error = %chain(&e), "could not save an access rule");
                Err(Failure::Refused(
                    "Could not do that: the access rules cannot be saved right now. Please try again in a moment.".into(),
                ))
            }
        }
    }
}

/// What an admin is told an operation did.
fn sentence(done: Done, this_chat: bool) -> String {
    match done {
        Done::Balance {
            user,
            balance: b,
            change,
        } => match change {
            Change::Granted { tokens, reason } => {
                let why = reason.map(|r| format!(" Reason: {r}.")).unwrap_or_default();
                format!(
                    "Granted {tokens} tokens to {user}: {} remaining of {} granted.{why}",
                    b.remaining, b.granted
                )
            }
            Change::Set if b.unlimited => {
                format!("{user} is now unlimited (usage is still counted).")
            }
            Change::Set => format!("{user} now has {} tokens left.", b.remaining),
            Change::Refill => match b.refill_tokens {
                Some(n) => format!("{user} now refills to {n} tokens."),
                None => format!("{user} now refills as the plan says."),
            },
            Change::Shown { today } => format!(
                "{user}: {} remaining, {} used ({today} today), {} granted, {} requests{}.",
                b.remaining,
                b.used,
                b.granted,
                b.requests,
                if b.unlimited { ", unlimited" } else { "" }
            ),
        },
        Done::Stats(s) => format!(
            "Users: {}\nTokens used today: {} (in total: {})\nRequests today: {} (in total: {})\nFailed requests today: {} (in total: {})",
            s.users, s.used_today, s.used, s.requests_today, s.requests, s.errors_today, s.errors
        ),
        Done::Holds(holds) if holds.is_empty() => "No tokens are held right now.".into(),
        Done::Holds(holds) => holds
            .iter()
            .map(|h| {
                format!(
                    "#{} {}:{} holds {} tokens",
                    h.id, h.platform, h.user_id, h.amount
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Done::Released(id) => format!("Hold {id} released: its tokens are back in the balance."),
        Done::Rule { subject, allowed } => {
            let shown = if this_chat {
                "this group".to_string()
            } else {
                subject
            };
            if allowed {
                format!("Allowed {shown}.")
            } else {
                format!("Denied {shown}: they get a short refusal and are never charged.")
            }
        }
        Done::History { user, entries } => format!(
            "{user}: {} ledger entries; the newest: {}",
            entries.len(),
            entries
                .last()
                .map(|e| format!("{} ({:+} used)", e.kind, e.d_used))
                .unwrap_or_else(|| "none".into())
        ),
        Done::Rules(rules) => rules
            .iter()
            .map(|(s, allowed, by)| {
                format!(
                    "{s} {} (by {by})",
                    if *allowed { "allowed" } else { "denied" }
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Done::Refunded(payment) => payment.refund_report(),
        Done::Payments(payments) if payments.is_empty() => "No payments.".into(),
        Done::Payments(payments) => payments
            .iter()
            .map(|p| p.describe())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}
