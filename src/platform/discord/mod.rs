//! Discord through serenity: the gateway connection, slash commands (`/chat`, `/reset`,
//! `/quota`, `/system`, …) deferred at once and answered by editing the original
//! response, DMs and guild mentions answered in the channel. The rooms: [`adapter`]
//! (sending), [`commands`] (registration), [`events`] (what arrives, as events).
//!
//! serenity runs every event in its own task; the core allows one answer in flight per
//! user, so `/cancel` reaches the answer it stops.

pub mod adapter;
pub mod commands;
pub mod events;
pub mod rest;
pub mod threads;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serenity::all::{
    Command, Context, EditInteractionResponse, EventHandler, GatewayIntents, GuildId, HttpBuilder,
    Interaction, Message, Ready, ResumedEvent, UserId,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use adapter::{ChannelAdapter, InteractionAdapter};
pub use commands::slash_commands;
pub use events::{interaction_event, message_event, strip_bot_mentions};

use crate::chat::Conversation;
use crate::config::DiscordSettings;
use crate::core::adapter::Capabilities;
use crate::core::error::chain;

/// Discord's limit on a message's content, in characters.
pub const MAX_MESSAGE_LEN: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("discord.token is not set")]
    NoToken,
    #[error("Discord rejected the bot token (discord.token): {0}")]
    BadToken(String),
    #[error("cannot reach Discord at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("Discord set-up failed")]
    Unexpected(#[from] anyhow::Error),
}

struct Handler {
    conversation: Arc<Conversation>,
    rest: Arc<rest::Rest>,
    caps: Capabilities,
    guild_ids: Vec<u64>,
    bot: OnceLock<UserId>,
    ready: watch::Sender<Option<String>>,
    warned_empty_content: std::sync::atomic::AtomicBool,
    /// Set when `discord.threads` is on.
    threads: Option<threads::Threads>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let _ = self.bot.set(ready.user.id);
        let settings = self.conversation.settings();
        let commands = slash_commands(
            &settings.models,
            &settings.personas,
            self.conversation.has_tools(),
            &settings.payments,
        );
        let registered = if self.guild_ids.is_empty() {
            Command::set_global_commands(&ctx.http, commands)
                .await
                .map(|c| c.len())
        } else {
            let mut n = 0;
            let mut result = Ok(0);
            for guild in &self.guild_ids {
                match GuildId::new(*guild)
                    .set_commands(&ctx.http, commands.clone())
                    .await
                {
                    Ok(c) => n += c.len(),
                    Err(e) => result = Err(e),
                }
            }
            result.map(|_| n)
        };
        match registered {
            Ok(n) => {
                tracing::info!(commands = n, guilds = ?self.guild_ids, "slash commands registered")
            }
            Err(e) => tracing::error!(error = %chain(&e), "could not register slash commands"),
        }
        tracing::info!(username = %ready.user.name, session = %ready.session_id, "Discord bot connected");
        let _ = self.ready.send(Some(ready.user.name.clone()));
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        tracing::info!("Discord gateway session resumed");
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        let Some(bot) = self.bot.get().copied() else {
            return;
        };
        let Some(mut event) = message_event(&msg, bot) else {
            return;
        };
        if msg.content.is_empty()
            && msg.attachments.is_empty()
            && msg.sticker_items.is_empty()
            && msg.embeds.is_empty()
            && !self
                .warned_empty_content
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            // Without the privileged intent Discord blanks the content of guild messages
            // that do not mention the bot; say so once rather than for every message.
            tracing::warn!(
                channel = %msg.channel_id,
                "a message arrived with empty content: if the bot ignores messages, enable the MESSAGE CONTENT intent (Bot → Privileged Gateway Intents) in the Discord developer portal"
            );
        }
        if event.sender.is_bot {
            return;
        }
        if let (Some(threads), Some(_)) = (&self.threads, msg.guild_id) {
            threads.place_message(&mut event, msg.id.get()).await;
        }
        if !event.addressed_to_bot() {
            return;
        }
        let adapter = ChannelAdapter {
            rest: self.rest.clone(),
            caps: self.caps,
        };
        self.conversation.handle(&event, &adapter).await;
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Interaction::Command(command) = interaction else {
            return;
        };
        // An answer from the model is for the channel; a command's answer for its sender.
        let ephemeral = !matches!(command.data.name.as_str(), "chat" | "retry");
        // Defer first, well inside Discord's 3 s deadline, whatever happens next.
        let deferred = if ephemeral {
            command.defer_ephemeral(&ctx.http).await
        } else {
            command.defer(&ctx.http).await
        };
        if let Err(e) = deferred {
            tracing::error!(error = %chain(&e), command = %command.data.name, "could not defer an interaction");
            return;
        }
        let Some(mut event) = interaction_event(&command) else {
            let _ = command
                .edit_response(
                    &ctx.http,
                    EditInteractionResponse::new().content("Unknown command."),
                )
                .await;
            return;
        };
        let adapter = InteractionAdapter {
            rest: self.rest.clone(),
            application_id: command.application_id.get(),
            token: SecretString::from(command.token.clone()),
            ephemeral,
            caps: self.caps,
            original_used: Mutex::new(false),
        };
        if let (Some(threads), Some(_)) = (&self.threads, command.guild_id)
            && threads
                .place_command(&mut event, &adapter, command.channel_id.get())
                .await
        {
            // The response shows the question; the answer goes into the thread.
            let in_thread = ChannelAdapter {
                rest: self.rest.clone(),
                caps: self.caps,
            };
            self.conversation.handle(&event, &in_thread).await;
            return;
        }
        self.conversation.handle(&event, &adapter).await;
    }
}

/// A running Discord bot.
pub struct DiscordHandle {
    pub username: String,
    pub task: tokio::task::JoinHandle<()>,
    /// Readiness: every shard is connected to the gateway.
    pub probe: Arc<dyn crate::core::health::Probe>,
}

/// Discord is connected when every shard's gateway connection is up.
struct DiscordProbe(Arc<serenity::all::ShardManager>);

#[async_trait::async_trait]
impl crate::core::health::Probe for DiscordProbe {
    fn name(&self) -> &'static str {
        "discord"
    }

    async fn check(&self) -> Result<(), crate::core::health::Unready> {
        let runners = self.0.runners.lock().await;
        if runners.is_empty() {
            return Err("no shard is running".into());
        }
        let down: Vec<String> = runners
            .iter()
            .filter(|(_, info)| info.stage != serenity::gateway::ConnectionStage::Connected)
            .map(|(id, info)| format!("shard {id} {}", info.stage))
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(down.join(", ").into())
        }
    }
}

/// Checks the token, connects to the gateway, registers the slash commands and serves
/// events until `shutdown` is cancelled. Cancelled while the gateway connects, it stops
/// the shards it started and returns the handle of a client that is ending.
pub async fn start(
    conversation: Arc<Conversation>,
    settings: &DiscordSettings,
    budgets: Option<Arc<dyn crate::core::pacing::SharedBudgets>>,
    shutdown: CancellationToken,
) -> Result<DiscordHandle, DiscordError> {
    let token = settings.token.as_ref().ok_or(DiscordError::NoToken)?;
    let api_url = settings.api_url.as_str().trim_end_matches('/').to_string();
    // serenity's rate limiter ignores the proxy setting, so a custom base URL (a REST
    // proxy, or the tests' fake) runs without it; against Discord itself it stays on and
    // honours 429s transparently.
    let http = if api_url == "https://discord.com" {
        HttpBuilder::new(token.expose_secret()).build()
    } else {
        HttpBuilder::new(token.expose_secret())
            .proxy(api_url.clone())
            .ratelimiter_disabled(true)
            .build()
    };
    let me = http.get_current_user().await.map_err(|e| match e {
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(ref r))
            if r.status_code.as_u16() == 401 =>
        {
            DiscordError::BadToken(e.to_string())
        }
        other => DiscordError::Unreachable {
            url: api_url.clone(),
            message: other.to_string(),
        },
    })?;
    let intents = GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT;
    let (ready_tx, mut ready_rx) = watch::channel(None);
    let rest = rest::Rest::new(&api_url, token.clone(), budgets)
        .map_err(|e| anyhow::Error::new(e).context("building the Discord REST client"))?;
    let rest = Arc::new(rest);
    let caps = adapter::caps(settings.edit_interval, settings.first_message_delay);
    conversation.register_notifier(
        crate::core::event::Platform::Discord,
        Arc::new(ChannelAdapter {
            rest: rest.clone(),
            caps,
        }),
    );
    let threads = settings
        .threads
        .then(|| threads::Threads::new(rest.clone(), me.id.get()));
    let handler = Handler {
        conversation,
        rest,
        caps,
        guild_ids: settings.guild_ids.clone(),
        bot: OnceLock::new(),
        ready: ready_tx,
        warned_empty_content: std::sync::atomic::AtomicBool::new(false),
        threads,
    };
    let mut client = serenity::all::ClientBuilder::new_with_http(http, intents)
        .event_handler(handler)
        .await
        .map_err(|e| anyhow::Error::new(e).context("building the Discord client"))?;
    let shards = settings.shards;
    let shard_manager = client.shard_manager.clone();
    let probe_manager = client.shard_manager.clone();
    let task = tokio::spawn(async move {
        let result = match shards {
            // serenity reads the range's end as the last shard, inclusive.
            Some(r) => {
                tracing::info!(
                    first = r.first,
                    last = r.last,
                    total = r.total,
                    "starting Discord shards"
                );
                client.start_shard_range(r.first..r.last, r.total).await
            }
            None => client.start().await,
        };
        if let Err(e) = result {
            tracing::error!(error = %chain(&e), "Discord client stopped");
        }
    });
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            shard_manager.shutdown_all().await;
        });
    }
    // Wait for READY so a broken gateway shows up here rather than as silence.
    let ready = tokio::select! {
        ready = tokio::time::timeout(Duration::from_secs(30), ready_rx.wait_for(Option::is_some)) => Some(ready),
        () = shutdown.cancelled() => None,
    };
    match ready {
        None | Some(Ok(Ok(_))) => {}
        Some(_) => {
            return Err(DiscordError::Unreachable {
                url: api_url,
                message: "the gateway did not become ready within 30 s".into(),
            });
        }
    }
    Ok(DiscordHandle {
        username: me.name.clone(),
        task,
        probe: Arc::new(DiscordProbe(probe_manager)),
    })
}
