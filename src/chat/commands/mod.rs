//! Commands: everything a user can ask besides a chat turn, one file per group —
//! [`user`] (start, help, reset, quota, cancel), [`system`] (the system prompt),
//! [`link`] (joined balances) and [`admin`] (operators' commands).

mod admin;
mod budget;
mod buy;
mod choices;
pub(super) mod link;
mod system;
mod tools;
mod usage;
mod user;

use super::notices::{self, say};
use super::{Conversation, Outcome};
use crate::access::Decision;
use crate::core::adapter::{ChatAdapter, ReplyTarget};
use crate::core::command::{COMMANDS, Command};
use crate::core::event::IncomingEvent;
use crate::core::session::SessionError;
use crate::quota::QuotaError;

/// Why a command could not give its answer.
enum Failure {
    /// A service failed: logged with its cause, the user gets the service's notice.
    Store(SessionError),
    Quota(QuotaError),
    /// The request is refused; the text says why.
    Refused(String),
    /// Answered already in another form (an invoice): nothing more to say.
    Silent,
}

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Failure {
        Failure::Store(e)
    }
}

impl From<QuotaError> for Failure {
    fn from(e: QuotaError) -> Failure {
        Failure::Quota(e)
    }
}

/// A command's answer, to be said in the chat.
type Answer = Result<String, Failure>;

impl Conversation {
    pub(super) async fn command(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        command: Command,
        decision: Decision,
        admitted: bool,
    ) -> Outcome {
        let answer = match command {
            Command::Admin(_) | Command::AdminUsage(_) | Command::AdminInvalid(_)
                if decision != Decision::Admin =>
            {
                tracing::warn!(user = %event.quota_user(), ?command, "a non-admin tried an admin command");
                Err(Failure::Refused(notices::ADMINS_ONLY.into()))
            }
            Command::Admin(admin) => self.admin(event, admin).await,
            Command::AdminUsage(usage) => Ok(format!("Usage: {usage}")),
            Command::AdminInvalid(why) => Ok(format!("Could not do that: {why}")),
            Command::Ask(text) if text.trim().is_empty() => {
                Ok("Usage: /ask <your question>".to_string())
            }
            Command::Ask(text) => {
                let tools = self.may_use_tools(event).await;
                return self
                    .answers
                    .chat(event, adapter, target, &text, admitted, tools)
                    .await;
            }
            Command::Retry => {
                let tools = self.may_use_tools(event).await;
                return self
                    .answers
                    .turn(
                        event,
                        adapter,
                        target,
                        super::turn::Question::Again,
                        admitted,
                        tools,
                    )
                    .await;
            }
            Command::Model(None) => {
                return self
                    .offer(adapter, target, self.model_offer(event).await)
                    .await;
            }
            Command::Persona(None) => {
                return self
                    .offer(adapter, target, self.persona_offer(event).await)
                    .await;
            }
            Command::Model(Some(name)) => self.pick_model(event, &name).await,
            Command::Persona(Some(name)) => self.pick_persona(event, &name).await,
            Command::Start => Ok(self.start(event)),
            Command::Help => Ok(self.help(event, decision)),
            Command::Reset => self.reset(event).await,
            Command::Quota => self.quota_report(event).await,
            Command::Tools => Ok(self.tools_report(event).await),
            Command::Buy(None) => {
                return self.offer(adapter, target, self.buy_offer(event)).await;
            }
            Command::Buy(Some(pack)) => self.buy(event, adapter, target, &pack).await,
            Command::Usage => self.usage_report(event).await,
            Command::Budget(op) => self.budget(event, adapter, decision, op).await,
            Command::Cancel => Ok(self.cancel(event).await),
            Command::System(arg) => self.system(event, arg).await,
            Command::Link(code) => self.link(event, adapter, code).await,
            Command::Unlink => self.unlink(event).await,
            Command::Unknown(name) => {
                Ok(format!("Unknown command /{name}. {}", self.command_list()))
            }
        };
        self.answer(adapter, target, answer).await
    }

    /// Shows a listing with its buttons.
    async fn offer(
        &self,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        offer: Result<choices::Offer, Failure>,
    ) -> Outcome {
        match offer {
            Ok(offer) => {
                if let Err(e) = adapter.offer(target, &offer.text, &offer.choices).await {
                    tracing::warn!(error = %crate::core::error::chain(&e), "could not show the choices");
                }
                Outcome::Replied
            }
            Err(failure) => self.answer(adapter, target, Err(failure)).await,
        }
    }

    /// Says a command's answer (or why there is none).
    async fn answer(
        &self,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        answer: Answer,
    ) -> Outcome {
        match answer {
            Ok(text) => {
                say(adapter, target, &text).await;
                Outcome::Replied
            }
            Err(Failure::Refused(text)) => {
                say(adapter, target, &text).await;
                Outcome::Refused(super::Refusal::Command)
            }
            Err(Failure::Silent) => Outcome::Replied,
            Err(Failure::Store(e)) => {
                notices::store_failure(adapter, target, &e).await;
                Outcome::Failed
            }
            Err(Failure::Quota(e)) => {
                notices::quota_failure(adapter, target, &e).await;
                Outcome::Failed
            }
        }
    }
}

impl Conversation {
    /// The commands this bot offers as configured (no /persona without personas), for
    /// /help and the platforms' command menus.
    pub fn commands(&self) -> Vec<(&'static str, &'static str)> {
        COMMANDS
            .iter()
            .filter(|(name, _)| *name != "persona" || !self.answers.settings.personas.is_empty())
            .filter(|(name, _)| *name != "tools" || self.has_tools())
            .filter(|(name, _)| *name != "buy" || self.answers.settings.payments.enabled)
            .copied()
            .collect()
    }

    fn command_list(&self) -> String {
        let names: Vec<String> = self
            .commands()
            .iter()
            .map(|(n, _)| format!("/{n}"))
            .collect();
        format!("Available commands: {}.", names.join(" "))
    }
}
