//! Operators' commands: /grant, /setquota, /usage, /stats, /allow and /deny. The caller
//! has checked that the sender is an admin.

use super::{Answer, Conversation, Failure, resolve_user};
use crate::access::group_subject;
use crate::core::command::AdminCommand;
use crate::core::error::chain;
use crate::core::event::{IncomingEvent, UserId};
use crate::quota::QuotaError;

/// What an admin is told when the operation is refused (not when a service failed).
fn could_not(why: impl std::fmt::Display) -> Answer {
    Ok(format!("Could not do that: {why}"))
}

impl Conversation {
    /// Runs an admin command and says what it did.
    pub(super) async fn admin(&self, event: &IncomingEvent, command: AdminCommand) -> Answer {
        let admin = event.quota_user();
        tracing::info!(%admin, ?command, "admin command");
        let user = |arg: &str| resolve_user(event, arg);
        let result = match command {
            AdminCommand::Grant {
                user: arg,
                tokens,
                reason,
            } => {
                let user = match user(&arg) {
                    Ok(u) => u,
                    Err(why) => return could_not(why),
                };
                self.quota.grant(&user, tokens).await.map(|b| {
                    let why = reason.map(|r| format!(" Reason: {r}.")).unwrap_or_default();
                    format!(
                        "Granted {tokens} tokens to {user}: {} remaining of {} granted.{why}",
                        b.remaining, b.granted
                    )
                })
            }
            AdminCommand::SetQuota { user: arg, tokens } => {
                let user = match user(&arg) {
                    Ok(u) => u,
                    Err(why) => return could_not(why),
                };
                self.quota.set_quota(&user, tokens).await.map(|b| {
                    if b.unlimited {
                        format!("{user} is now unlimited (usage is still counted).")
                    } else {
                        format!("{user} now has {} tokens left.", b.remaining)
                    }
                })
            }
            AdminCommand::Usage { user: arg } => {
                let user = match user(&arg) {
                    Ok(u) => u,
                    Err(why) => return could_not(why),
                };
                self.usage_report(&user).await
            }
            AdminCommand::Stats => self.quota.stats().await.map(|s| {
                format!(
                    "Users: {}\nTokens used today: {} (in total: {})\nRequests today: {} (in total: {})\nFailed requests today: {} (in total: {})",
                    s.users, s.used_today, s.used, s.requests_today, s.requests, s.errors_today, s.errors
                )
            }),
            AdminCommand::Allow { subject } => {
                return self.set_rule(event, &admin, &subject, true).await;
            }
            AdminCommand::Deny { subject } => {
                return self.set_rule(event, &admin, &subject, false).await;
            }
        };
        match result {
            Ok(text) => Ok(text),
            Err(QuotaError::Invalid(why)) => could_not(why),
            Err(e) => Err(Failure::Quota(e)),
        }
    }

    async fn usage_report(&self, user: &UserId) -> Result<String, QuotaError> {
        let b = self.quota.balance(user).await?;
        let today = self.quota.used_today(user).await?;
        Ok(format!(
            "{user}: {} remaining, {} used ({today} today), {} granted, {} requests{}.",
            b.remaining,
            b.used,
            b.granted,
            b.requests,
            if b.unlimited { ", unlimited" } else { "" }
        ))
    }

    /// `/allow` or `/deny` of a user, or of the group the command is sent in (`chat`).
    async fn set_rule(
        &self,
        event: &IncomingEvent,
        admin: &UserId,
        subject: &str,
        allowed: bool,
    ) -> Answer {
        let (key, shown) = if subject.eq_ignore_ascii_case("chat") {
            let Some(group) = event.group.as_ref() else {
                return could_not("`chat` means the group this is sent in; send it in a group.");
            };
            (
                group_subject(event.platform, group),
                "this group".to_string(),
            )
        } else {
            let user = match resolve_user(event, subject) {
                Ok(u) => u,
                Err(why) => return could_not(why),
            };
            if !allowed && self.access.is_admin(&user) {
                return could_not(format!("{user} is an admin and cannot be denied"));
            }
            (user.to_string(), user.to_string())
        };
        if let Err(e) = self
            .access
            .set_rule(&key, allowed, &admin.to_string())
            .await
        {
            tracing::error!(error = %chain(&e), "could not save an access rule");
            return Err(Failure::Refused(
                "Could not do that: the access rules cannot be saved right now. Please try again in a moment.".into(),
            ));
        }
        Ok(if allowed {
            format!("Allowed {shown}.")
        } else {
            format!("Denied {shown}: they get a short refusal and are never charged.")
        })
    }
}
