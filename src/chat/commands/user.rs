//! The everyday commands: /start, /help, /reset, /quota and /cancel.

use super::{Answer, Conversation, Failure};
use crate::access::Decision;
use crate::core::budget::WhenEmpty;
use crate::core::command::ADMIN_COMMANDS;
use crate::core::event::{ChatKind, IncomingEvent};

impl Conversation {
    pub(super) fn start(&self, event: &IncomingEvent) -> String {
        format!(
            "Hi {}! I'm {}, an AI assistant. Just send me a message and I'll answer.\n\n{}",
            event.sender.display_name,
            self.answers.settings.bot_name,
            self.help_text(event)
        )
    }

    pub(super) fn help(&self, event: &IncomingEvent, decision: Decision) -> String {
        let mut text = self.help_text(event);
        if decision == Decision::Admin {
            text.push_str(
                "\n\nAdmin commands (users are platform:id, or an id on this platform):\n",
            );
            for (_, usage) in ADMIN_COMMANDS {
                text.push_str(usage);
                text.push('\n');
            }
        }
        text
    }

    pub(super) async fn reset(&self, event: &IncomingEvent) -> Answer {
        self.answers
            .sessions
            .clear_history(&event.session_key())
            .await?;
        Ok("Conversation history cleared. Let's start over! (Your /system prompt, if you set one, is kept.)".into())
    }

    pub(super) async fn quota_report(&self, event: &IncomingEvent) -> Answer {
        let b = self.answers.quota.balance(&event.quota_user()).await?;
        if b.unlimited {
            return Ok(format!(
                "Tokens: unlimited. {} used so far ({} requests).",
                b.used, b.requests
            ));
        }
        let mut text = format!(
            "Tokens: {} remaining, {} used of {} granted ({} requests).",
            b.remaining, b.used, b.granted, b.requests
        );
        if b.reserved > 0 {
            text.push_str(&format!(
                " {} are held for an answer in progress.",
                b.reserved
            ));
        }
        if let Some(owner) = self.answers.quota.linked_to(&event.quota_user()).await? {
            let theirs = self.answers.quota.balance(&owner).await?;
            text.push_str(&format!(
                "\nLinked to {owner}: when yours run out, its tokens pay ({} left there).",
                theirs.remaining
            ));
        }
        if let Some(line) = self.wallet_line(event).await? {
            text.push('\n');
            text.push_str(&line);
        }
        text.push_str(&format!(
            "\nA message costs its prompt (your text plus the history kept) plus up to {} tokens of answer; unused tokens are returned.",
            self.answers.settings.max_tokens
        ));
        Ok(text)
    }

    /// In a group with a wallet: what it has left and the member's share today.
    async fn wallet_line(&self, event: &IncomingEvent) -> Result<Option<String>, Failure> {
        let Some(wallet) = self.answers.payer(event).await?.wallet else {
            return Ok(None);
        };
        let quota = &self.answers.quota;
        let left = quota.balance(&wallet.account).await?.remaining;
        let mut line = format!("Here the group's wallet pays first: {left} tokens left in it");
        if wallet.member_limit > 0 {
            let used = quota
                .wallet_use_today(&wallet.account, &event.quota_user())
                .await?;
            line.push_str(&format!(
                "; you have used {used} of your {} for today",
                wallet.member_limit
            ));
        }
        line.push_str(match wallet.when_empty {
            WhenEmpty::Own => ". When it cannot pay, your own tokens do.",
            WhenEmpty::Refuse => ". When it cannot pay, questions here are refused.",
        });
        Ok(Some(line))
    }

    pub(super) async fn cancel(&self, event: &IncomingEvent) -> String {
        if self.answers.in_flight.cancel(&event.quota_user()).await {
            "Stopped.".to_string()
        } else {
            "Nothing to stop: no answer is in progress.".to_string()
        }
    }
}

impl Conversation {
    fn help_text(&self, event: &IncomingEvent) -> String {
        let mut text = String::from("Commands:\n");
        for (name, description) in self.commands() {
            text.push_str(&format!("/{name} — {description}\n"));
        }
        text.push_str(
            "/system <text> sets your own system prompt; /system reset restores the default.\n",
        );
        if event.chat_kind == ChatKind::Group {
            text.push_str("\nIn groups, mention me, reply to one of my messages, or use /ask <question>. Your history here is yours alone.");
        } else {
            text.push_str(
                "\nAnything else you send goes to the model, with our conversation so far.",
            );
        }
        text
    }
}
