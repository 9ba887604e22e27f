//! The entrance: every event is logged in one span, events not for us are ignored,
//! access is decided, and the rest goes to a command or to a chat turn.

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::notices::{self, say};
use super::{Conversation, Outcome, Refusal};
use crate::access::Decision;
use crate::core::adapter::{ChatAdapter, ReplyTarget};
use crate::core::command::Command;
use crate::core::error::chain;
use crate::core::event::{ChatKind, Content, IncomingEvent, UserId};

/// `limits.commands_per_minute`, and who was told so this minute (told once, then
/// ignored, so a flood of commands is not answered by a flood of notices).
pub(super) struct CommandLimit {
    pub(super) rate: super::rate::UserRate,
    told: moka::sync::Cache<UserId, ()>,
}

impl CommandLimit {
    pub(super) fn new(per_minute: u32) -> CommandLimit {
        CommandLimit {
            rate: super::rate::UserRate::new("commands", per_minute),
            told: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// `None`: the command may run; `Some(tell)`: refused, and whether to say so (the
    /// first refusal of the minute).
    async fn refuse(&self, user: &UserId) -> Option<bool> {
        if self.rate.check(user).await.is_ok() {
            return None;
        }
        if self.told.contains_key(user) {
            return Some(false);
        }
        self.told.insert(user.clone(), ());
        Some(true)
    }
}

impl Conversation {
    /// Whether this event's answer may call tools (`[tools]` configured, and the access
    /// rules allow them); a rule that cannot be read means no tools this time.
    pub(super) async fn may_use_tools(&self, event: &IncomingEvent) -> bool {
        if !self.has_tools() {
            return false;
        }
        match self
            .access
            .may_use_tools(&event.quota_user(), event.group.as_deref())
            .await
        {
            Ok(may) => may,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "tool access rules unreadable; answering without tools");
                false
            }
        }
    }

    /// Handles one event. Every failure is answered to the user and logged; nothing is
    /// returned as an error because there is nobody else to tell.
    pub async fn handle(&self, event: &IncomingEvent, adapter: &dyn ChatAdapter) -> Outcome {
        self.handle_admitted(event, adapter, self.admit()).await
    }

    /// [`Conversation::handle`] for an event taken in earlier with
    /// [`Conversation::admit`] (`None`: it came after shutdown began, and a chat turn is
    /// refused with "restarting").
    pub async fn handle_admitted(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        admission: Option<super::Admission>,
    ) -> Outcome {
        let admitted = admission.is_some();
        // Counted until handled, so a graceful shutdown waits for it.
        let _tracked = admission.map_or_else(|| self.lifecycle.track(), |a| a.0);
        let span = tracing::info_span!(
            "message",
            platform = %event.platform,
            chat = %event.chat_id,
            user = %event.sender.id,
            reserved = tracing::field::Empty,
            used = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        async {
            let outcome = self.dispatch(event, adapter, admitted).await;
            let span = tracing::Span::current();
            if let Outcome::Answered { reserved, charged }
            | Outcome::Cancelled { reserved, charged } = &outcome
            {
                span.record("reserved", reserved);
                span.record("used", charged);
            }
            span.record("latency_ms", started.elapsed().as_millis() as u64);
            span.record("outcome", tracing::field::debug(&outcome));
            if let Some(label) = outcome.label() {
                tracing::info!("message handled");
                metrics::counter!(crate::core::metrics::MESSAGES, "platform" => event.platform.as_str(), "outcome" => label)
                    .increment(1);
            }
            outcome
        }
        .instrument(span)
        .await
    }

    async fn dispatch(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        admitted: bool,
    ) -> Outcome {
        if event.sender.is_bot || !event.addressed_to_bot() {
            return Outcome::Ignored;
        }
        let target = ReplyTarget {
            chat_id: event.chat_id.clone(),
            // In a thread the bot opened, answers simply follow (its opening question
            // is in the parent channel, where a reply cannot point).
            reply_to: (event.chat_kind == ChatKind::Group && !event.bot_thread)
                .then(|| event.message_id.clone()),
            thread: event.thread.clone(),
        };
        let user = event.quota_user();
        let decision = match self.access.decide(&user, event.group.as_deref()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %chain(&e), "access check failed");
                say(adapter, &target, notices::ACCESS_DOWN).await;
                return Outcome::Failed;
            }
        };
        if decision == Decision::Denied {
            tracing::info!(%user, "access denied");
            say(adapter, &target, notices::PRIVATE_BOT).await;
            return Outcome::Refused(Refusal::Access);
        }
        match &event.content {
            Content::Text(text) => {
                let tools = self.may_use_tools(event).await;
                self.answers
                    .chat(event, adapter, &target, text, admitted, tools)
                    .await
            }
            Content::Command(command) => {
                if *command != Command::Cancel
                    && let Some(tell) = self.commands.refuse(&user).await
                {
                    if tell {
                        let text = format!(
                            "You're sending commands faster than this bot allows ({} per minute). I'll ignore commands from you for a minute.",
                            self.answers.settings.commands_per_minute
                        );
                        say(adapter, &target, &text).await;
                    }
                    return Outcome::Refused(Refusal::RateLimited);
                }
                self.command(event, adapter, &target, command.clone(), decision, admitted)
                    .await
            }
            Content::Unsupported(what) => {
                let msg = format!(
                    "Sorry, I can only answer text messages for now ({what} isn't supported). Please type your question as a new message."
                );
                say(adapter, &target, &msg).await;
                Outcome::Replied
            }
        }
    }
}
