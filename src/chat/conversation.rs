//! The conversation flow: one incoming event in, replies out through a [`ChatAdapter`].
//! Commands are answered directly; a chat turn goes session → context window → quota
//! reservation → streaming model call → settlement → history append.
//!
//! Nothing a user sends can lose a history turn or a quota token: a failed call refunds
//! its reservation, and a turn is recorded only once the answer is complete.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::watch;

use futures::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::commands::{self, ADMIN_COMMANDS, AdminCommand, COMMANDS, Command, Input, SystemArg};
use super::reply::ReplyStream;
use super::split::split_message;
use crate::access::{AccessService, Decision, group_subject};
use crate::event::UserId;
use crate::event::{ChatKind, Content, IncomingEvent};
use crate::llm::tokens::TokenCounter;
use crate::llm::{LlmError, ModelClient, ModelEvent, ModelRequest};
use crate::platform::{ChatAdapter, ReplyTarget, Stage};
use crate::quota::{QuotaError, QuotaService};
use crate::session::context::build_prompt;
use crate::session::{Role, SessionStore, Turn};

/// Longest system prompt a user may set, in tokens.
const MAX_SYSTEM_PROMPT_SHARE: u32 = 4;
/// How long a /link code stays valid.
const LINK_CODE_TTL: Duration = Duration::from_secs(600);

/// Telegram shows "typing…" for about 5 s; refresh a little sooner.
const TYPING_REFRESH: Duration = Duration::from_secs(4);

#[derive(Debug, Clone)]
pub struct ConversationSettings {
    pub bot_name: String,
    pub default_system_prompt: String,
    pub max_tokens: u32,
    pub context_tokens: u32,
    /// Model requests per user per minute; 0 for no limit.
    pub per_user_per_minute: u32,
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
    /// Refused before the model was called (quota, too long, bad input).
    Refused,
    /// The model call failed; the reservation was refunded.
    Failed,
    /// Stopped by /cancel; only what was used was charged.
    Cancelled { reserved: i64, charged: i64 },
}

/// Users with an answer in progress, each with the switch that stops it.
type InFlight = Mutex<HashMap<UserId, watch::Sender<bool>>>;

/// Holds a user's in-flight slot; frees it when the answer ends, however it ends.
struct InFlightSlot<'a> {
    map: &'a InFlight,
    user: UserId,
}

impl Drop for InFlightSlot<'_> {
    fn drop(&mut self) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.user);
    }
}

pub struct Conversation {
    access: Arc<AccessService>,
    sessions: Arc<dyn SessionStore>,
    quota: QuotaService,
    model: Arc<dyn ModelClient>,
    counter: TokenCounter,
    settings: ConversationSettings,
    limiter: Option<DefaultKeyedRateLimiter<UserId>>,
    in_flight: InFlight,
}

impl Conversation {
    pub fn new(
        access: Arc<AccessService>,
        sessions: Arc<dyn SessionStore>,
        quota: QuotaService,
        model: Arc<dyn ModelClient>,
        counter: TokenCounter,
        settings: ConversationSettings,
    ) -> Conversation {
        let limiter = NonZeroU32::new(settings.per_user_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Conversation {
            access,
            sessions,
            quota,
            model,
            counter,
            settings,
            limiter,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub fn access(&self) -> &AccessService {
        &self.access
    }

    /// Handles one event. Every failure is answered to the user and logged; nothing is
    /// returned as an error because there is nobody else to tell.
    pub async fn handle(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        bot_username: Option<&str>,
    ) -> Outcome {
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
            let outcome = self.dispatch(event, adapter, bot_username).await;
            let span = tracing::Span::current();
            if let Outcome::Answered { reserved, charged }
            | Outcome::Cancelled { reserved, charged } = &outcome
            {
                span.record("reserved", reserved);
                span.record("used", charged);
            }
            span.record("latency_ms", started.elapsed().as_millis() as u64);
            span.record("outcome", tracing::field::debug(&outcome));
            if outcome != Outcome::Ignored {
                tracing::info!("message handled");
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
        bot_username: Option<&str>,
    ) -> Outcome {
        if event.sender.is_bot || !event.addressed_to_bot() {
            return Outcome::Ignored;
        }
        let target = ReplyTarget {
            chat_id: event.chat_id.clone(),
            reply_to: (event.chat_kind == ChatKind::Group).then(|| event.message_id.clone()),
        };
        let user = event.quota_user();
        let decision = match self.access.decide(&user, event.group.as_deref()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "access check failed");
                self.say(
                    adapter,
                    &target,
                    "Sorry, I can't check who may use me right now. Please try again in a moment.",
                )
                .await;
                return Outcome::Failed;
            }
        };
        if decision == Decision::Denied {
            tracing::info!(%user, "access denied");
            self.say(
                adapter,
                &target,
                "Sorry, this bot is private. Ask one of its admins to let you in.",
            )
            .await;
            return Outcome::Refused;
        }
        let text = match &event.content {
            Content::Text(text) => text,
            Content::Unsupported(what) => {
                let msg = format!(
                    "Sorry, I can only answer text messages for now ({what} isn't supported). Please type your question as a new message."
                );
                return self.say(adapter, &target, &msg).await;
            }
        };
        match commands::parse(text, bot_username) {
            Input::ForAnotherBot => Outcome::Ignored,
            Input::Text(text) => self.chat(event, adapter, &target, &text).await,
            Input::Command(command) => {
                self.command(event, adapter, &target, command, decision)
                    .await
            }
        }
    }

    async fn command(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        command: Command,
        decision: Decision,
    ) -> Outcome {
        let key = event.session_key();
        if matches!(command, Command::Admin(_) | Command::AdminUsage(_))
            && decision != Decision::Admin
        {
            tracing::warn!(user = %event.quota_user(), ?command, "a non-admin tried an admin command");
            self.say(
                adapter,
                target,
                "Not allowed: that command is for the bot's admins.",
            )
            .await;
            return Outcome::Refused;
        }
        let reply = match command {
            Command::Admin(admin) => self.admin(event, admin).await,
            Command::AdminUsage(usage) => format!("Usage: {usage}"),
            Command::Ask(text) if text.trim().is_empty() => {
                "Usage: /ask <your question>".to_string()
            }
            Command::Ask(text) => return self.chat(event, adapter, target, &text).await,
            Command::Start => format!(
                "Hi {}! I'm {}, an AI assistant. Just send me a message and I'll answer.\n\n{}",
                event.sender.display_name,
                self.settings.bot_name,
                self.help_text(event)
            ),
            Command::Link(None) => {
                let code = link_code();
                let user = event.quota_user().to_string();
                match self.sessions.put_code(&format!("link:{code}"), &user, LINK_CODE_TTL).await {
                    Ok(true) => format!(
                        "Your link code is {code} (valid for 10 minutes). Send /link {code} from your account on the other platform, and both will share this account's token balance."
                    ),
                    Ok(false) => "Please try again.".to_string(),
                    Err(e) => return self.store_failure(adapter, target, e).await,
                }
            }
            Command::Link(Some(code)) => {
                let code = code.trim().to_ascii_uppercase();
                let origin = match self.sessions.take_code(&format!("link:{code}")).await {
                    Ok(origin) => origin,
                    Err(e) => return self.store_failure(adapter, target, e).await,
                };
                let me = event.quota_user();
                match origin.as_deref().map(UserId::parse) {
                    None | Some(Err(_)) => {
                        "That code is unknown or has expired. Send /link on your other account to get a new one.".to_string()
                    }
                    Some(Ok(origin)) if origin == me => {
                        "Send that code from your account on the other platform, not from this one.".to_string()
                    }
                    Some(Ok(origin)) => match self.quota.link(&me, &origin).await {
                        Ok(b) => format!(
                            "Linked: {me} now shares the token balance of {origin} ({} tokens left). Your conversations stay separate. /unlink undoes it.",
                            b.remaining
                        ),
                        Err(QuotaError::Invalid(why)) => format!("Could not link: {why}."),
                        Err(e) => return self.quota_failure(adapter, target, e).await,
                    },
                }
            }
            Command::Unlink => match self.quota.unlink(&event.quota_user()).await {
                Ok(0) => "This account is not linked to another one.".to_string(),
                Ok(_) => "Unlinked: each account uses its own token balance again (tokens stay with the account that holds them).".to_string(),
                Err(e) => return self.quota_failure(adapter, target, e).await,
            },
            Command::Cancel => {
                let stopped = self
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&event.quota_user())
                    .map(|switch| switch.send(true).is_ok())
                    .unwrap_or(false);
                if stopped {
                    "Stopped.".to_string()
                } else {
                    "Nothing to stop: no answer is in progress.".to_string()
                }
            }
            Command::Help => {
                let mut text = self.help_text(event);
                if decision == Decision::Admin {
                    text.push_str("\n\nAdmin commands (users are platform:id, or an id on this platform):\n");
                    for (_, usage) in ADMIN_COMMANDS {
                        text.push_str(usage);
                        text.push('\n');
                    }
                }
                text
            }
            Command::Reset => match self.sessions.clear_history(&key).await {
                Ok(()) => "Conversation history cleared. Let's start over! (Your /system prompt, if you set one, is kept.)".into(),
                Err(e) => return self.store_failure(adapter, target, e).await,
            },
            Command::Quota => match self.quota.balance(&event.quota_user()).await {
                Ok(b) if b.unlimited => format!(
                    "Tokens: unlimited. {} used so far ({} requests).",
                    b.used, b.requests
                ),
                Ok(b) => {
                    let mut text = format!(
                        "Tokens: {} remaining, {} used of {} granted ({} requests).",
                        b.remaining, b.used, b.granted, b.requests
                    );
                    if b.reserved > 0 {
                        text.push_str(&format!(" {} are held for an answer in progress.", b.reserved));
                    }
                    text.push_str(&format!(
                        "\nA message costs its prompt (your text plus the history kept) plus up to {} tokens of answer; unused tokens are returned.",
                        self.settings.max_tokens
                    ));
                    text
                }
                Err(e) => return self.quota_failure(adapter, target, e).await,
            },
            Command::System(SystemArg::Show) => match self.sessions.load(&key).await {
                Ok(session) => match session.system_prompt {
                    Some(p) => format!("Your system prompt:\n\n{p}\n\n(/system reset restores the default.)"),
                    None => format!(
                        "The default system prompt is in use:\n\n{}\n\n(Set your own with /system <text>.)",
                        self.settings.default_system_prompt
                    ),
                },
                Err(e) => return self.store_failure(adapter, target, e).await,
            },
            Command::System(SystemArg::Reset) => match self.sessions.set_system_prompt(&key, None).await {
                Ok(()) => "System prompt reset to the default.".into(),
                Err(e) => return self.store_failure(adapter, target, e).await,
            },
            Command::System(SystemArg::Set(prompt)) => {
                let limit = self.settings.context_tokens / MAX_SYSTEM_PROMPT_SHARE;
                let tokens = self.counter.count(&prompt);
                if tokens > limit {
                    let msg = format!(
                        "That system prompt is too long ({tokens} tokens; at most {limit}). Please shorten it."
                    );
                    self.say(adapter, target, &msg).await;
                    return Outcome::Refused;
                }
                match self.sessions.set_system_prompt(&key, Some(&prompt)).await {
                    Ok(()) => "System prompt set. It applies from your next message; /system reset restores the default.".into(),
                    Err(e) => return self.store_failure(adapter, target, e).await,
                }
            }
            Command::Unknown(name) => format!(
                "Unknown command /{name}. {}",
                command_list()
            ),
        };
        self.say(adapter, target, &reply).await
    }

    /// Runs an admin command and says what it did.
    async fn admin(&self, event: &IncomingEvent, command: AdminCommand) -> String {
        let admin = event.quota_user();
        let target = |arg: &str| resolve_user(event, arg);
        tracing::info!(%admin, ?command, "admin command");
        let result: Result<String, String> = async {
            match command {
                AdminCommand::Grant { user, tokens } => {
                    let user = target(&user)?;
                    let b = self.quota.grant(&user, tokens).await.map_err(|e| e.to_string())?;
                    Ok(format!(
                        "Granted {tokens} tokens to {user}: {} remaining of {} granted.",
                        b.remaining, b.granted
                    ))
                }
                AdminCommand::SetQuota { user, tokens } => {
                    let user = target(&user)?;
                    let b = self.quota.set_quota(&user, tokens).await.map_err(|e| e.to_string())?;
                    Ok(if b.unlimited {
                        format!("{user} is now unlimited (usage is still counted).")
                    } else {
                        format!("{user} now has {} tokens left.", b.remaining)
                    })
                }
                AdminCommand::Usage { user } => {
                    let user = target(&user)?;
                    let b = self.quota.balance(&user).await.map_err(|e| e.to_string())?;
                    let today = self.quota.used_today(&user).await.map_err(|e| e.to_string())?;
                    Ok(format!(
                        "{user}: {} remaining, {} used ({today} today), {} granted, {} requests{}.",
                        b.remaining,
                        b.used,
                        b.granted,
                        b.requests,
                        if b.unlimited { ", unlimited" } else { "" }
                    ))
                }
                AdminCommand::Stats => {
                    let s = self.quota.stats().await.map_err(|e| e.to_string())?;
                    Ok(format!(
                        "Users: {}\nTokens used today: {} (in total: {})\nRequests today: {} (in total: {})\nFailed requests today: {} (in total: {})",
                        s.users, s.used_today, s.used, s.requests_today, s.requests, s.errors_today, s.errors
                    ))
                }
                AdminCommand::Allow { subject } => self.set_rule(event, &admin, &subject, true).await,
                AdminCommand::Deny { subject } => self.set_rule(event, &admin, &subject, false).await,
            }
        }
        .await;
        result.unwrap_or_else(|e| format!("Could not do that: {e}"))
    }

    /// `/allow` or `/deny` of a user, or of the group the command is sent in (`chat`).
    async fn set_rule(
        &self,
        event: &IncomingEvent,
        admin: &UserId,
        subject: &str,
        allowed: bool,
    ) -> Result<String, String> {
        let (key, shown) = if subject.eq_ignore_ascii_case("chat") {
            let group = event
                .group
                .as_ref()
                .ok_or("`chat` means the group this is sent in; send it in a group.")?;
            (
                group_subject(event.platform, group),
                "this group".to_string(),
            )
        } else {
            let user = resolve_user(event, subject)?;
            if !allowed && self.access.is_admin(&user) {
                return Err(format!("{user} is an admin and cannot be denied"));
            }
            (user.to_string(), user.to_string())
        };
        self.access
            .set_rule(&key, allowed, &admin.to_string())
            .await
            .map_err(|e| e.to_string())?;
        Ok(if allowed {
            format!("Allowed {shown}.")
        } else {
            format!("Denied {shown}: they get a short refusal and are never charged.")
        })
    }

    fn help_text(&self, event: &IncomingEvent) -> String {
        let mut text = String::from("Commands:\n");
        for (name, description) in COMMANDS {
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

    async fn chat(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        text: &str,
    ) -> Outcome {
        if text.trim().is_empty() {
            return self
                .say(
                    adapter,
                    target,
                    "Send me a question or some text and I'll answer.",
                )
                .await;
        }
        let key = event.session_key();
        let user = event.quota_user();
        let (cancel_tx, mut cancel) = watch::channel(false);
        let registered = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match in_flight.entry(user.clone()) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(cancel_tx);
                    true
                }
            }
        };
        if !registered {
            self.say(
                adapter,
                target,
                "Still answering your previous message — send /cancel to stop it.",
            )
            .await;
            return Outcome::Refused;
        }
        let _slot = InFlightSlot {
            map: &self.in_flight,
            user: user.clone(),
        };
        if let Some(limiter) = &self.limiter {
            if let Err(not_until) = limiter.check_key(&user) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let msg = format!(
                    "You're sending messages faster than this bot allows ({} per minute). Please wait {} s.",
                    self.settings.per_user_per_minute,
                    wait.as_secs().max(1)
                );
                self.say(adapter, target, &msg).await;
                return Outcome::Refused;
            }
            if limiter.len() > 10_000 {
                limiter.retain_recent();
            }
        }
        let session = match self.sessions.load(&key).await {
            Ok(s) => s,
            Err(e) => return self.store_failure(adapter, target, e).await,
        };
        let system_prompt = session
            .system_prompt
            .as_deref()
            .unwrap_or(&self.settings.default_system_prompt);
        let prompt = match build_prompt(
            &self.counter,
            system_prompt,
            &session.turns,
            text,
            self.settings.max_tokens,
            self.settings.context_tokens,
        ) {
            Ok(p) => p,
            Err(too_long) => {
                let msg = format!(
                    "Your message is too long for the model: it needs about {} tokens with room for the answer, and the model's window is {}. Please shorten it.",
                    too_long.needed, too_long.limit
                );
                self.say(adapter, target, &msg).await;
                return Outcome::Refused;
            }
        };
        if prompt.dropped > 0 {
            tracing::debug!(
                dropped = prompt.dropped,
                "older turns left out to fit the context window"
            );
        }
        let needed = i64::from(prompt.tokens) + i64::from(self.settings.max_tokens);
        let reservation = match self.quota.reserve(&user, needed).await {
            Ok(r) => r,
            Err(QuotaError::Exhausted { remaining, needed }) => {
                let msg = format!(
                    "Quota exhausted: {remaining} tokens left, and this message needs up to {needed} (prompt plus the longest answer). Ask the bot's operator for more tokens, or /reset to send less history."
                );
                self.say(adapter, target, &msg).await;
                return Outcome::Refused;
            }
            Err(e) => return self.quota_failure(adapter, target, e).await,
        };

        let request = ModelRequest {
            messages: prompt.messages,
            max_tokens: self.settings.max_tokens,
        };
        let mut reply = ReplyStream::new(adapter, target.clone());
        let mut usage = None;
        let mut cancelled = false;
        let result: Result<(), LlmError> = async {
            let mut stream = {
                let opening = self.model.stream(request);
                tokio::pin!(opening);
                let mut typing = tokio::time::interval(TYPING_REFRESH);
                loop {
                    tokio::select! {
                        opened = &mut opening => break opened?,
                        _ = cancel.changed() => {
                            cancelled = true;
                            return Ok(());
                        }
                        _ = typing.tick() => {
                            if let Err(e) = adapter.typing(target).await {
                                tracing::debug!(error = %e, "typing indicator failed");
                            }
                        }
                    }
                }
            };
            loop {
                let event = tokio::select! {
                    event = stream.next() => event,
                    // Dropping the stream closes the connection: the server stops too.
                    _ = cancel.changed() => {
                        cancelled = true;
                        return Ok(());
                    }
                };
                let Some(event) = event else { break };
                match event? {
                    ModelEvent::Delta(delta) => {
                        if let Err(e) = reply.push(&delta).await {
                            tracing::warn!(error = %e, "could not show streamed text");
                        }
                    }
                    ModelEvent::Usage(u) => usage = Some(u),
                }
            }
            Ok(())
        }
        .await;

        if cancelled {
            return self
                .finish_cancelled(
                    reply,
                    reservation,
                    &key,
                    text,
                    prompt.tokens,
                    target,
                    adapter,
                )
                .await;
        }

        if let Err(e) = result {
            tracing::warn!(error = %e, "model call failed");
            if let Err(refund) = self.quota.refund(reservation).await {
                tracing::error!(error = %refund, "refund failed");
            }
            let notice = e.user_message();
            if reply.has_shown_anything() {
                let _ = reply.push(&format!("\n\n⚠️ {notice}")).await;
                if let Err(e) = reply.finish().await {
                    tracing::warn!(error = %e, "could not deliver the interrupted answer");
                }
            } else {
                drop(reply);
                self.say(adapter, target, notice).await;
            }
            return Outcome::Failed;
        }

        let answer = reply.text().to_string();
        let completion_tokens = self.counter.count(&answer);
        let charged_tokens = match usage {
            Some(u) => i64::from(u.total()),
            None => {
                tracing::debug!("server sent no usage, counting locally");
                i64::from(prompt.tokens) + i64::from(completion_tokens)
            }
        };
        let reserved = reservation.amount();
        let charged = match self.quota.settle(reservation, charged_tokens).await {
            Ok(s) => s.charged,
            Err(e) => {
                tracing::error!(error = %e, "settlement failed; the reservation stays held until restart");
                charged_tokens
            }
        };
        if answer.trim().is_empty() {
            drop(reply);
            self.say(adapter, target, "(The model returned an empty answer.)")
                .await;
            return Outcome::Answered { reserved, charged };
        }
        let turns = [
            Turn {
                role: Role::User,
                content: text.to_string(),
                tokens: self.counter.count(text),
            },
            Turn {
                role: Role::Assistant,
                content: answer,
                tokens: usage.map_or(completion_tokens, |u| u.completion_tokens),
            },
        ];
        if let Err(e) = self.sessions.append(&key, &turns).await {
            tracing::error!(error = %e, "could not record the turn in the history");
        }
        if let Err(e) = reply.finish().await {
            tracing::warn!(error = %e, "could not deliver the final answer");
        }
        Outcome::Answered { reserved, charged }
    }

    /// After /cancel: charge what was used (the prompt, if the model had started
    /// answering, and the text produced), keep what was shown, record the partial turn.
    #[allow(clippy::too_many_arguments)]
    async fn finish_cancelled(
        &self,
        mut reply: ReplyStream<'_>,
        reservation: crate::quota::Reservation,
        key: &crate::event::SessionKey,
        text: &str,
        prompt_tokens: u32,
        target: &ReplyTarget,
        adapter: &dyn ChatAdapter,
    ) -> Outcome {
        let partial = reply.text().to_string();
        let reserved = reservation.amount();
        if partial.trim().is_empty() {
            if let Err(e) = self.quota.refund(reservation).await {
                tracing::error!(error = %e, "refund failed");
            }
            drop(reply);
            self.say(
                adapter,
                target,
                "Stopped before the model said anything; nothing was charged.",
            )
            .await;
            return Outcome::Cancelled {
                reserved,
                charged: 0,
            };
        }
        let completion = self.counter.count(&partial);
        let used = i64::from(prompt_tokens) + i64::from(completion);
        let charged = match self.quota.settle(reservation, used).await {
            Ok(s) => s.charged,
            Err(e) => {
                tracing::error!(error = %e, "settlement failed");
                used
            }
        };
        let turns = [
            Turn {
                role: Role::User,
                content: text.to_string(),
                tokens: self.counter.count(text),
            },
            Turn {
                role: Role::Assistant,
                content: partial,
                tokens: completion,
            },
        ];
        if let Err(e) = self.sessions.append(key, &turns).await {
            tracing::error!(error = %e, "could not record the partial turn");
        }
        let _ = reply.push("\n\n(stopped)").await;
        if let Err(e) = reply.finish().await {
            tracing::warn!(error = %e, "could not deliver the stopped answer");
        }
        Outcome::Cancelled { reserved, charged }
    }

    /// Sends a complete text, split to the platform's limit.
    async fn say(&self, adapter: &dyn ChatAdapter, target: &ReplyTarget, text: &str) -> Outcome {
        let caps = adapter.capabilities();
        for part in split_message(text, caps.max_message_len, caps.length_unit) {
            let mut attempts = 0;
            loop {
                match adapter.send(target, &part, Stage::Final).await {
                    Ok(_) => break,
                    Err(crate::platform::AdapterError::RetryAfter(wait)) if attempts < 5 => {
                        attempts += 1;
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not send a reply");
                        return Outcome::Replied;
                    }
                }
            }
        }
        Outcome::Replied
    }

    async fn store_failure(
        &self,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        e: crate::session::SessionError,
    ) -> Outcome {
        tracing::error!(error = %e, "session store failed");
        self.say(
            adapter,
            target,
            "Sorry, I can't reach my conversation memory right now. Please try again in a moment.",
        )
        .await;
        Outcome::Failed
    }

    async fn quota_failure(
        &self,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        e: QuotaError,
    ) -> Outcome {
        tracing::error!(error = %e, "quota ledger failed");
        self.say(
            adapter,
            target,
            "Sorry, I can't check your token balance right now. Please try again in a moment.",
        )
        .await;
        Outcome::Failed
    }
}

fn command_list() -> String {
    let names: Vec<String> = COMMANDS.iter().map(|(n, _)| format!("/{n}")).collect();
    format!("Available commands: {}.", names.join(" "))
}

/// A user named in an admin command: `platform:id`, or a bare id on the admin's platform.
fn resolve_user(event: &IncomingEvent, arg: &str) -> Result<UserId, String> {
    if arg.contains(':') {
        UserId::parse(arg)
    } else if arg.is_empty() || arg.chars().any(char::is_whitespace) {
        Err(format!("`{arg}` is not a user id"))
    } else {
        Ok(UserId::new(event.platform, arg))
    }
}

/// An 8-character one-time code, without look-alike characters (0/O, 1/I).
fn link_code() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // RandomState is seeded from the OS per instance: unpredictable enough for a code
    // that lives ten minutes and is used once.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut bits = hasher.finish();
    (0..8)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char;
            bits /= ALPHABET.len() as u64;
            c
        })
        .collect()
}
