//! The conversation: one incoming event in, replies out through a
//! [`ChatAdapter`](crate::core::adapter::ChatAdapter). Each use case has its room:
//! [`gate`] (who may talk, what the event is), [`commands`] (one file per group),
//! [`turn`] (the reply pipeline: reserve → prompt → stream → settle → record →
//! deliver), [`inflight`] (one answer per user, `/cancel`), [`notices`] (what the bot
//! says when something fails), and the delivery helpers [`reply`] and [`split`].
//!
//! Nothing a user sends can lose a history turn or a quota token: a failed call refunds
//! its reservation, and a turn is recorded only once the answer is complete.

mod admission;
mod answers;
pub mod commands;
pub mod context;
mod ending;
pub mod files;
mod gate;
pub mod images;
mod incoming;
mod inflight;
mod lifecycle;
mod measure;
mod notices;
mod notifiers;
mod opening;
pub mod pdf;
mod permits;
mod prompt;
mod rate;
pub mod reply;
mod retry;
pub mod split;
mod tools;
mod turn;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::access::AccessService;
use crate::config::{ModelChoice, Persona};
use crate::core::adapter::Notifier;
use crate::core::event::{Platform, UserId};
use crate::core::limiter::Keyed;
use crate::core::model::ModelClient;
use crate::core::session::SessionStore;
use crate::llm::tokens::TokenCounter;
use crate::quota::QuotaService;

#[derive(Debug, Clone)]
pub struct ConversationSettings {
    pub bot_name: String,
    pub default_system_prompt: String,
    pub max_tokens: u32,
    pub context_tokens: u32,
    /// Share of the prompt's count held on top of it, for a tokenizer that may count
    /// fewer tokens than the server bills.
    pub reserve_margin: f64,
    /// Model requests per user per minute; 0 for no limit.
    pub per_user_per_minute: u32,
    /// Commands per user per minute; 0 for no limit.
    pub commands_per_minute: u32,
    /// Model calls in flight at once; further answers queue.
    pub max_concurrent_answers: u32,
    /// `model.name`: the model of a conversation that picked none.
    pub model: String,
    /// `model.available`: what /model offers.
    pub models: Vec<ModelChoice>,
    /// `[personas.*]`: what /persona offers.
    pub personas: BTreeMap<String, Persona>,
    /// `files.max_chars`, `files.max_bytes`.
    pub file_max_chars: usize,
    pub file_max_bytes: u64,
    /// Reads PDFs in a child process under `files.parse_memory` and `files.parse_timeout`.
    pub pdfs: pdf::PdfReader,
    /// `model.image_detail`: low, high or auto.
    pub image_detail: crate::config::ImageDetail,
    /// Speech to text for voice messages (`model.transcription`); `None`: off.
    pub transcriber: Option<crate::llm::audio::Transcriber>,
    /// `chat.reasoning`: what a user sees of a reasoning model's thinking.
    pub reasoning: crate::config::Reasoning,
    /// `tools.max_rounds`: model ↔ tool round trips per answer.
    pub max_tool_rounds: u32,
    /// `model.tools`: the default model may call tools.
    pub default_tools: bool,
    /// `[payments]`: the packs /buy sells.
    pub payments: crate::config::PaymentSettings,
}

impl ConversationSettings {
    /// The model a conversation uses: its pick while that is still offered, else the
    /// default (priced as listed, or at 1).
    pub fn model_for(&self, picked: Option<&str>) -> ModelChoice {
        let name = picked
            .filter(|p| self.models.iter().any(|m| m.name == *p))
            .unwrap_or(&self.model);
        self.models
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .unwrap_or_else(|| ModelChoice::plain(name))
    }

    /// The persona a conversation uses, while it is still configured.
    pub fn persona_for(&self, picked: Option<&str>) -> Option<(&str, &Persona)> {
        let name = picked?;
        self.personas
            .get_key_value(name)
            .map(|(k, p)| (k.as_str(), p))
    }
}

/// What became of an event (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not for us: another bot, a group message not addressed to us.
    Ignored,
    /// A command or notice was answered.
    Replied,
    /// The model answered; tokens as settled.
    Answered { reserved: i64, charged: i64 },
    /// Refused before the model was called, and why.
    Refused(Refusal),
    /// The model call failed; the reservation was refunded.
    Failed,
    /// Stopped by /cancel; only what was used was charged.
    Cancelled { reserved: i64, charged: i64 },
}

/// Why a message was refused before the model was called (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Quota exhausted, or an open-mode limit (new accounts, daily budget).
    Quota,
    /// Not allowed to use the bot (or the command).
    Access,
    /// Over `limits.per_user_per_minute` or `limits.commands_per_minute`.
    RateLimited,
    /// An answer for this user is still being generated.
    Busy,
    /// The message does not fit the model's context.
    TooLong,
    /// A command refused for what it asked (a bad argument, a code that does not work).
    Command,
    /// The process is shutting down.
    Restarting,
    /// A file that cannot be read (its type, its size, its content).
    File,
}

impl Outcome {
    /// The `outcome` label of `gptbot_messages_total`; `None` for events not for us.
    pub fn label(&self) -> Option<&'static str> {
        Some(match self {
            Outcome::Ignored => return None,
            Outcome::Replied => "command",
            Outcome::Answered { .. } => "answered",
            Outcome::Cancelled { .. } => "cancelled",
            Outcome::Failed => "failed",
            Outcome::Refused(Refusal::Quota) => "refused_quota",
            Outcome::Refused(Refusal::Access) => "refused_access",
            Outcome::Refused(Refusal::RateLimited) => "rate_limited",
            Outcome::Refused(Refusal::Busy) => "busy",
            Outcome::Refused(Refusal::TooLong) => "refused_too_long",
            Outcome::Refused(Refusal::Command) => "refused_command",
            Outcome::Refused(Refusal::Restarting) => "refused_restarting",
            Outcome::Refused(Refusal::File) => "refused_file",
        })
    }
}

/// The services one conversation needs, shared by every platform of the process. Each
/// use case holds what it needs: [`answers::Answers`] the chat turn's parts,
/// [`gate::CommandLimit`] the commands' rate, [`lifecycle::Lifecycle`] shutdown.
pub struct Conversation {
    access: Arc<AccessService>,
    answers: answers::Answers,
    lifecycle: lifecycle::Lifecycle,
    commands: gate::CommandLimit,
    /// How to reach a user privately on each running platform.
    notifiers: notifiers::Notifiers,
    /// /link redemption attempts per user.
    link_attempts: Keyed<UserId>,
    /// Telegram Stars outside a Telegram chat: refunds, invoice links.
    payments: Option<Arc<dyn crate::core::payments::StarPayments>>,
}

/// An event taken in before shutdown began (see [`Conversation::admit`]); shutdown
/// waits while it is held.
pub struct Admission(tokio_util::task::task_tracker::TaskTrackerToken);

/// Users a rate limiter keeps track of at once (each takes tens of bytes); past it,
/// requests of users it does not know are refused until it is pruned.
const LIMITER_KEYS: usize = 200_000;

impl Conversation {
    pub fn new(
        access: Arc<AccessService>,
        sessions: Arc<dyn SessionStore>,
        quota: QuotaService,
        model: Arc<dyn ModelClient>,
        counter: TokenCounter,
        settings: ConversationSettings,
    ) -> Conversation {
        let lifecycle = lifecycle::Lifecycle::default();
        let commands = gate::CommandLimit::new(settings.commands_per_minute);
        let answers = answers::Answers::new(
            sessions,
            quota,
            model,
            counter,
            settings,
            lifecycle.restarting.clone(),
        );
        Conversation {
            access,
            answers,
            lifecycle,
            commands,
            notifiers: notifiers::Notifiers::default(),
            link_attempts: Keyed::new(commands::link::attempts(), LIMITER_KEYS),
            payments: None,
        }
    }

    /// Offers `tools` to the models that may call them.
    pub fn with_tools(mut self, tools: Arc<dyn crate::core::tools::ToolBox>) -> Conversation {
        self.answers.tools = Some(tools);
        self
    }

    /// Decides answers in flight and /cancel together with the other replicas on `board`,
    /// and counts the per-user rate limits with them on `rates`. A slot outlives a dead
    /// replica by `hold_lease` (`quota.hold_lease`) or 15 s, the shorter.
    pub fn with_coordination<B>(
        mut self,
        board: Arc<B>,
        hold_lease: std::time::Duration,
    ) -> Conversation
    where
        B: crate::core::coordination::SharedSlots
            + crate::core::coordination::SharedRates
            + crate::core::coordination::SharedPermits
            + 'static,
    {
        let lease = hold_lease.min(inflight::MAX_LEASE);
        self.answers.in_flight = inflight::InFlight::shared(board.clone(), lease);
        self.answers.rate.share(board.clone());
        self.commands.rate.share(board.clone());
        self.answers.permits.share(board, lease);
        self
    }

    /// Tools are configured (`[tools]`): /tools is offered.
    pub fn has_tools(&self) -> bool {
        self.answers.tools.is_some()
    }

    /// The tools on offer now (an MCP server's once it is connected), with their prices.
    pub fn offered_tools(&self) -> Vec<crate::core::tools::Offered> {
        self.answers
            .tools
            .as_ref()
            .map(|tools| tools.offered())
            .unwrap_or_default()
    }

    /// Lets the conversation reach users of `platform` privately (a platform calls this
    /// when it starts).
    pub fn register_notifier(&self, platform: Platform, notifier: Arc<dyn Notifier>) {
        self.notifiers.register(platform, notifier);
    }

    /// Graceful shutdown, once the platforms stopped taking updates: answers in progress
    /// may finish for up to `grace`; then the rest are stopped with "(stopped: the bot is
    /// restarting)" on their message and settled. Returns how many had to be stopped.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.lifecycle.drain(grace).await
    }

    /// Takes in an event whose handling a platform must delay (an album's first part,
    /// while the rest arrive): shutdown waits for it like for an answer, and it is
    /// answered even if shutdown begins meanwhile, since it arrived before. `None` once
    /// shutdown has begun.
    pub fn admit(&self) -> Option<Admission> {
        (!self.lifecycle.closing()).then(|| Admission(self.lifecycle.track()))
    }

    /// Resolves when shutdown begins: a platform stops waiting for the rest of an event.
    pub async fn closed(&self) {
        self.lifecycle.closed().await
    }

    pub fn access(&self) -> &AccessService {
        &self.access
    }

    /// The operators' service on this conversation's ledger and access rules.
    pub fn admin_service(&self) -> crate::admin::AdminService {
        crate::admin::AdminService::new(self.answers.quota.clone(), self.access.clone())
            .with_refunds(self.payments.clone())
    }

    /// Telegram Stars for refunds and for invoice links to other platforms' users
    /// (when Telegram is configured).
    pub fn with_payments(
        mut self,
        payments: Option<Arc<dyn crate::core::payments::StarPayments>>,
    ) -> Conversation {
        self.payments = payments;
        self
    }

    pub fn settings(&self) -> &ConversationSettings {
        &self.answers.settings
    }
}
