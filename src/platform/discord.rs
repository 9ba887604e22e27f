//! Discord through serenity: the gateway connection, slash commands (`/chat`, `/reset`,
//! `/quota`, `/system`) deferred at once and answered by editing the original response,
//! DMs and guild mentions answered in the channel, and the [`ChatAdapter`]s for both.
//!
//! Every message the bot sends has `allowed_mentions` empty, so a model cannot ping
//! `@everyone`. serenity runs every event in its own task; the core allows one answer in
//! flight per user, so `/cancel` reaches the answer it stops.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serenity::all::{
    ChannelId, Command, CommandDataOptionValue, CommandInteraction, CommandOptionType, Context,
    CreateAllowedMentions, CreateCommand, CreateCommandOption, CreateInteractionResponseFollowup,
    CreateMessage, EditInteractionResponse, EditMessage, EventHandler, GatewayIntents, GuildId,
    HttpBuilder, Interaction, Message, MessageId, Permissions, Ready, ResumedEvent, UserId,
};
use serenity::http::Http;
use tokio::sync::watch;

use crate::chat::Conversation;
use crate::config::DiscordSettings;
use crate::core::adapter::{
    AdapterError, Capabilities, ChatAdapter, LengthUnit, ReplyTarget, SentMessage, Stage,
};
use crate::core::command::{AdminCommand, Command as BotCommand, SystemArg, admin_usage};
use crate::core::error::chain;
use crate::core::event::{ChatKind, Content, IncomingEvent, Platform, Sender};

/// Discord's limit on a message's content, in characters.
pub const MAX_MESSAGE_LEN: usize = 2000;
/// The id of an interaction's original response, for [`SentMessage::message_id`].
const ORIGINAL: &str = "@original";

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

fn no_mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
}

/// How long to pause after a 429 when serenity's rate limiter is off (custom
/// `discord.api_url`): serenity's error does not carry Discord's `retry_after`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Maps serenity errors, leaving out the request URL: for interactions it carries the
/// interaction token.
fn adapter_error(e: serenity::Error) -> AdapterError {
    match e {
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(response)) => {
            if response.status_code.as_u16() == 429 {
                return AdapterError::RetryAfter(DEFAULT_RETRY_AFTER);
            }
            AdapterError::Failed(anyhow::anyhow!(
                "Discord answered {} to {}: {} (code {})",
                response.status_code,
                response.method,
                response.error.message,
                response.error.code
            ))
        }
        other => AdapterError::Failed(anyhow::Error::new(other).context("Discord request failed")),
    }
}

fn parse_id(id: &str) -> Result<u64, AdapterError> {
    id.parse::<u64>()
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| AdapterError::Failed(anyhow::anyhow!("`{id}` is not a Discord id")))
}

fn caps(edit_interval: Duration) -> Capabilities {
    Capabilities {
        max_message_len: MAX_MESSAGE_LEN,
        length_unit: LengthUnit::Chars,
        min_edit_interval: edit_interval,
    }
}

/// Replies in a channel (DMs and guild mentions).
pub struct ChannelAdapter {
    http: Arc<Http>,
    edit_interval: Duration,
}

#[async_trait]
impl ChatAdapter for ChannelAdapter {
    fn capabilities(&self) -> Capabilities {
        caps(self.edit_interval)
    }

    async fn send(
        &self,
        target: &ReplyTarget,
        text: &str,
        _stage: Stage,
    ) -> Result<SentMessage, AdapterError> {
        let channel = ChannelId::new(parse_id(&target.chat_id)?);
        let mut message = CreateMessage::new()
            .content(text)
            .allowed_mentions(no_mentions());
        if let Some(reply_to) = &target.reply_to {
            message = message.reference_message((channel, MessageId::new(parse_id(reply_to)?)));
        }
        let sent = channel
            .send_message(&self.http, message)
            .await
            .map_err(adapter_error)?;
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: sent.id.get().to_string(),
        })
    }

    async fn edit(
        &self,
        message: &SentMessage,
        text: &str,
        _stage: Stage,
    ) -> Result<(), AdapterError> {
        let channel = ChannelId::new(parse_id(&message.chat_id)?);
        channel
            .edit_message(
                &self.http,
                MessageId::new(parse_id(&message.message_id)?),
                EditMessage::new()
                    .content(text)
                    .allowed_mentions(no_mentions()),
            )
            .await
            .map(|_| ())
            .map_err(adapter_error)
    }

    async fn typing(&self, target: &ReplyTarget) -> Result<(), AdapterError> {
        ChannelId::new(parse_id(&target.chat_id)?)
            .broadcast_typing(&self.http)
            .await
            .map_err(adapter_error)
    }
}

/// Replies to a slash command that was already deferred: the first message fills the
/// original response, overflow goes into follow-ups.
pub struct InteractionAdapter {
    http: Arc<Http>,
    interaction: CommandInteraction,
    ephemeral: bool,
    edit_interval: Duration,
    original_used: Mutex<bool>,
}

#[async_trait]
impl ChatAdapter for InteractionAdapter {
    fn capabilities(&self) -> Capabilities {
        caps(self.edit_interval)
    }

    async fn send(
        &self,
        target: &ReplyTarget,
        text: &str,
        _stage: Stage,
    ) -> Result<SentMessage, AdapterError> {
        let first = {
            let mut used = self.original_used.lock().unwrap_or_else(|p| p.into_inner());
            !std::mem::replace(&mut *used, true)
        };
        if first {
            self.interaction
                .edit_response(
                    &self.http,
                    EditInteractionResponse::new()
                        .content(text)
                        .allowed_mentions(no_mentions()),
                )
                .await
                .map_err(adapter_error)?;
            return Ok(SentMessage {
                chat_id: target.chat_id.clone(),
                message_id: ORIGINAL.to_string(),
            });
        }
        let sent = self
            .interaction
            .create_followup(
                &self.http,
                CreateInteractionResponseFollowup::new()
                    .content(text)
                    .ephemeral(self.ephemeral)
                    .allowed_mentions(no_mentions()),
            )
            .await
            .map_err(adapter_error)?;
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: sent.id.get().to_string(),
        })
    }

    async fn edit(
        &self,
        message: &SentMessage,
        text: &str,
        _stage: Stage,
    ) -> Result<(), AdapterError> {
        if message.message_id == ORIGINAL {
            self.interaction
                .edit_response(
                    &self.http,
                    EditInteractionResponse::new()
                        .content(text)
                        .allowed_mentions(no_mentions()),
                )
                .await
                .map(|_| ())
                .map_err(adapter_error)
        } else {
            self.interaction
                .edit_followup(
                    &self.http,
                    MessageId::new(parse_id(&message.message_id)?),
                    CreateInteractionResponseFollowup::new()
                        .content(text)
                        .allowed_mentions(no_mentions()),
                )
                .await
                .map(|_| ())
                .map_err(adapter_error)
        }
    }

    async fn typing(&self, _target: &ReplyTarget) -> Result<(), AdapterError> {
        // A deferred interaction already shows "… is thinking".
        Ok(())
    }
}

/// The slash commands, as registered.
pub fn slash_commands() -> Vec<CreateCommand> {
    vec![
        CreateCommand::new("chat")
            .description("Ask the model something")
            .add_option(
                CreateCommandOption::new(CommandOptionType::String, "prompt", "What to ask")
                    .required(true),
            ),
        CreateCommand::new("reset").description("Forget this conversation's history"),
        CreateCommand::new("cancel").description("Stop the answer in progress"),
        CreateCommand::new("link")
            .description("Share one token balance with your account on another platform")
            .add_option(CreateCommandOption::new(
                CommandOptionType::String,
                "code",
                "The code /link gave you on the other platform (leave empty to get one)",
            )),
        CreateCommand::new("unlink").description("Stop sharing your token balance"),
        CreateCommand::new("quota").description("Show your remaining and used tokens"),
        CreateCommand::new("system")
            .description("Show or set this conversation's system prompt")
            .add_option(CreateCommandOption::new(
                CommandOptionType::String,
                "prompt",
                "The new system prompt, or `reset` for the default",
            )),
        admin_command(
            "grant",
            "Add tokens to a user's balance (negative takes away)",
        )
        .add_option(user_option())
        .add_option(
            CreateCommandOption::new(CommandOptionType::Integer, "tokens", "How many tokens")
                .required(true),
        ),
        admin_command("setquota", "Set what a user has left")
            .add_option(user_option())
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::String,
                    "tokens",
                    "A number of tokens, or `unlimited`",
                )
                .required(true),
            ),
        admin_command("usage", "A user's balance and today's usage").add_option(user_option()),
        admin_command(
            "stats",
            "Users, tokens today and in total, requests, errors",
        ),
        admin_command("allow", "Let a user (or `chat`: this server) use the bot")
            .add_option(user_option()),
        admin_command(
            "deny",
            "Stop a user (or `chat`: this server) from using the bot",
        )
        .add_option(user_option()),
    ]
}

/// Admin commands are hidden from server members without the Administrator permission;
/// the bot checks `access.admins` as well.
fn admin_command(name: &str, description: &str) -> CreateCommand {
    CreateCommand::new(name)
        .description(description)
        .default_member_permissions(Permissions::ADMINISTRATOR)
}

fn user_option() -> CreateCommandOption {
    CreateCommandOption::new(
        CommandOptionType::String,
        "user",
        "A Discord user id, a platform:id (telegram:123), or `chat`",
    )
    .required(true)
}

/// Strips `<@id>` / `<@!id>` mentions of the bot; says whether there was one.
pub fn strip_bot_mentions(content: &str, bot: u64) -> (String, bool) {
    let mut text = content.to_string();
    let mut found = false;
    for pattern in [format!("<@{bot}>"), format!("<@!{bot}>")] {
        if text.contains(&pattern) {
            found = true;
            text = text.replace(&pattern, " ");
        }
    }
    (super::tidy_after_mention(&text), found)
}

/// A gateway message as an event, or `None` for the bot's own messages.
pub fn message_event(msg: &Message, bot: UserId) -> Option<IncomingEvent> {
    if msg.author.id == bot {
        return None;
    }
    let (text, mentioned_in_text) = strip_bot_mentions(&msg.content, bot.get());
    let mentioned = mentioned_in_text || msg.mentions.iter().any(|u| u.id == bot);
    let reply_to_bot = msg
        .referenced_message
        .as_ref()
        .is_some_and(|r| r.author.id == bot);
    let content = if text.is_empty() && !msg.attachments.is_empty() {
        Content::Unsupported("an attachment".into())
    } else if msg.sticker_items.is_empty() || !text.is_empty() {
        Content::from_typed(&text, None)?
    } else {
        Content::Unsupported("a sticker".into())
    };
    Some(event(
        msg.channel_id,
        msg.guild_id,
        &msg.author,
        msg.id.get(),
        content,
        mentioned,
        reply_to_bot,
    ))
}

/// A slash command as an event: its options map straight onto the typed [`BotCommand`]
/// (no text round trip, so option values may hold spaces).
pub fn interaction_event(command: &CommandInteraction) -> Option<IncomingEvent> {
    let option = |name: &str| {
        command
            .data
            .options
            .iter()
            .find_map(|o| match (&o.value, o.name == name) {
                (CommandDataOptionValue::String(s), true) => Some(s.clone()),
                _ => None,
            })
    };
    let integer = |name: &str| {
        command
            .data
            .options
            .iter()
            .find_map(|o| match (&o.value, o.name == name) {
                (CommandDataOptionValue::Integer(n), true) => Some(*n),
                _ => None,
            })
    };
    let user = || option("user").unwrap_or_default();
    let parsed = match command.data.name.as_str() {
        "grant" => BotCommand::Admin(AdminCommand::Grant {
            user: user(),
            tokens: integer("tokens").unwrap_or_default(),
        }),
        "setquota" => {
            let tokens = option("tokens").unwrap_or_default();
            let tokens = tokens.trim();
            if tokens.eq_ignore_ascii_case("unlimited") {
                BotCommand::Admin(AdminCommand::SetQuota {
                    user: user(),
                    tokens: None,
                })
            } else {
                match tokens.parse::<i64>() {
                    Ok(n) if n >= 0 => BotCommand::Admin(AdminCommand::SetQuota {
                        user: user(),
                        tokens: Some(n),
                    }),
                    _ => BotCommand::AdminUsage(admin_usage("setquota")),
                }
            }
        }
        "usage" => BotCommand::Admin(AdminCommand::Usage { user: user() }),
        "stats" => BotCommand::Admin(AdminCommand::Stats),
        "allow" => BotCommand::Admin(AdminCommand::Allow { subject: user() }),
        "deny" => BotCommand::Admin(AdminCommand::Deny { subject: user() }),
        "chat" => BotCommand::Ask(option("prompt").unwrap_or_default()),
        "reset" => BotCommand::Reset,
        "cancel" => BotCommand::Cancel,
        "link" => BotCommand::Link(option("code").filter(|c| !c.trim().is_empty())),
        "unlink" => BotCommand::Unlink,
        "quota" => BotCommand::Quota,
        "system" => BotCommand::System(match option("prompt") {
            None => SystemArg::Show,
            Some(p) if p.trim().is_empty() => SystemArg::Show,
            Some(p) if p.trim().eq_ignore_ascii_case("reset") => SystemArg::Reset,
            Some(p) => SystemArg::Set(p),
        }),
        _ => return None,
    };
    // A slash command is always addressed to the bot.
    Some(event(
        command.channel_id,
        command.guild_id,
        &command.user,
        command.id.get(),
        Content::Command(parsed),
        true,
        false,
    ))
}

/// The event for something `author` sent in `channel` (of `guild`, if any).
fn event(
    channel: ChannelId,
    guild: Option<GuildId>,
    author: &serenity::all::User,
    id: u64,
    content: Content,
    mentioned: bool,
    reply_to_bot: bool,
) -> IncomingEvent {
    IncomingEvent {
        platform: Platform::Discord,
        chat_id: channel.get().to_string(),
        chat_kind: if guild.is_some() {
            ChatKind::Group
        } else {
            ChatKind::Direct
        },
        group: guild.map(|g| g.get().to_string()),
        sender: Sender {
            id: author.id.get().to_string(),
            display_name: author
                .global_name
                .clone()
                .unwrap_or_else(|| author.name.clone()),
            is_bot: author.bot,
        },
        message_id: id.to_string(),
        content,
        mentioned,
        reply_to_bot,
    }
}

struct Handler {
    conversation: Arc<Conversation>,
    edit_interval: Duration,
    guild_ids: Vec<u64>,
    bot: OnceLock<UserId>,
    ready: watch::Sender<Option<String>>,
    warned_empty_content: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let _ = self.bot.set(ready.user.id);
        let commands = slash_commands();
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

    async fn message(&self, ctx: Context, msg: Message) {
        let Some(bot) = self.bot.get().copied() else {
            return;
        };
        let Some(event) = message_event(&msg, bot) else {
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
        if !event.addressed_to_bot() || event.sender.is_bot {
            return;
        }
        let adapter = ChannelAdapter {
            http: ctx.http.clone(),
            edit_interval: self.edit_interval,
        };
        self.conversation.handle(&event, &adapter).await;
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Interaction::Command(command) = interaction else {
            return;
        };
        let ephemeral = command.data.name != "chat";
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
        let Some(event) = interaction_event(&command) else {
            let _ = command
                .edit_response(
                    &ctx.http,
                    EditInteractionResponse::new().content("Unknown command."),
                )
                .await;
            return;
        };
        let adapter = InteractionAdapter {
            http: ctx.http.clone(),
            interaction: command,
            ephemeral,
            edit_interval: self.edit_interval,
            original_used: Mutex::new(false),
        };
        self.conversation.handle(&event, &adapter).await;
    }
}

/// A running Discord bot.
pub struct DiscordHandle {
    pub username: String,
    pub task: tokio::task::JoinHandle<()>,
}

/// Checks the token, connects to the gateway, registers the slash commands and serves
/// events until `shutdown` turns true.
pub async fn start(
    conversation: Arc<Conversation>,
    settings: &DiscordSettings,
    mut shutdown: watch::Receiver<bool>,
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
    let handler = Handler {
        conversation,
        edit_interval: settings.edit_interval,
        guild_ids: settings.guild_ids.clone(),
        bot: OnceLock::new(),
        ready: ready_tx,
        warned_empty_content: std::sync::atomic::AtomicBool::new(false),
    };
    let mut client = serenity::all::ClientBuilder::new_with_http(http, intents)
        .event_handler(handler)
        .await
        .map_err(|e| anyhow::Error::new(e).context("building the Discord client"))?;
    let shards = settings.shards;
    let shard_manager = client.shard_manager.clone();
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
    tokio::spawn(async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        shard_manager.shutdown_all().await;
    });
    // Wait for READY so a broken gateway shows up here rather than as silence.
    let ready =
        tokio::time::timeout(Duration::from_secs(30), ready_rx.wait_for(Option::is_some)).await;
    match ready {
        Ok(Ok(_)) => {}
        _ => {
            return Err(DiscordError::Unreachable {
                url: api_url,
                message: "the gateway did not become ready within 30 s".into(),
            });
        }
    }
    Ok(DiscordHandle {
        username: me.name.clone(),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_mentions_are_stripped_in_both_forms() {
        assert_eq!(
            strip_bot_mentions("<@42> hello   <@!42>\nthere", 42),
            ("hello\nthere".to_string(), true)
        );
        assert_eq!(
            strip_bot_mentions("<@43> not me", 42),
            ("<@43> not me".to_string(), false)
        );
    }

    #[test]
    fn slash_commands_match_the_core_commands() {
        let names: Vec<String> = slash_commands()
            .into_iter()
            .map(|c| {
                serde_json::to_value(c).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "chat", "reset", "cancel", "link", "unlink", "quota", "system", "grant",
                "setquota", "usage", "stats", "allow", "deny"
            ]
        );
    }
}
