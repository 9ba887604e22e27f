//! Discord gateway messages and slash commands → [`IncomingEvent`]s. Slash options map
//! straight onto the typed [`BotCommand`]; message text is parsed at this edge. Pure: no
//! I/O.

use serenity::all::{
    ChannelId, CommandDataOptionValue, CommandInteraction, GuildId, Message, UserId,
};

use crate::core::admin::{Account, Subject, parse_amount};
use crate::core::command::{AdminCommand, Command as BotCommand, SystemArg, admin_usage};
use crate::core::error::Invalid;
use crate::core::event::{Attachment, ChatKind, Content, IncomingEvent, Platform, Quoted, Sender};

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
    (crate::platform::tidy_after_mention(&text), found)
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
    let attachments: Vec<Attachment> = msg.attachments.iter().map(attachment).collect();
    let content = if !attachments.is_empty() {
        // The text is the attachments' caption, never a command.
        Content::Text(text)
    } else if msg.sticker_items.is_empty() || !text.is_empty() {
        Content::from_typed(&text, None)?
    } else {
        Content::Unsupported("a sticker".into())
    };
    let mut event = event(
        msg.channel_id,
        msg.guild_id,
        &msg.author,
        msg.id.get(),
        content,
        mentioned,
        reply_to_bot,
    );
    event.quoted = msg.referenced_message.as_ref().and_then(|r| {
        let author = if r.author.id == bot {
            "you (the assistant)".to_string()
        } else {
            r.author
                .global_name
                .clone()
                .unwrap_or_else(|| r.author.name.clone())
        };
        Quoted::new(author, &r.content)
    });
    event.attachments = attachments;
    Some(event)
}

/// Bytes per second assumed for an audio file whose length Discord does not say (a
/// voice message says it): 128 kbit/s, the common bitrate of shared audio.
const AUDIO_BYTES_PER_SECOND: u32 = 16_000;

/// A file attached to a message: fetched by its CDN URL when needed. Images are shown
/// to the model, voice messages and audio transcribed, other files read.
fn attachment(a: &serenity::all::Attachment) -> Attachment {
    let mime = a
        .content_type
        .as_deref()
        .map(|m| m.split(';').next().unwrap_or(m).trim().to_ascii_lowercase());
    let kind = mime.as_deref().unwrap_or("");
    let audio = kind.starts_with("audio/") || a.duration_secs.is_some();
    Attachment {
        id: a.url.clone(),
        name: a.filename.clone(),
        size: Some(u64::from(a.size)),
        image: kind
            .starts_with("image/")
            .then(|| a.dimensions().unwrap_or((0, 0))),
        audio_seconds: audio.then(|| match a.duration_secs {
            Some(seconds) => seconds.max(0.0).ceil() as u32,
            None => a.size.div_ceil(AUDIO_BYTES_PER_SECOND).max(1),
        }),
        mime,
    }
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
                (CommandDataOptionValue::String(s), true) => Some(s.trim().to_string()),
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
    // An admin command whose user is not an id says why.
    let admin = |command: Result<AdminCommand, Invalid>| match command {
        Ok(command) => BotCommand::Admin(command),
        Err(why) => BotCommand::AdminInvalid(why.0),
    };
    let account = || Account::parse(&user());
    let parsed = match command.data.name.as_str() {
        "grant" => admin(account().map(|user| AdminCommand::Grant {
            user,
            tokens: integer("tokens").unwrap_or_default(),
            reason: option("reason").filter(|r| !r.is_empty()),
        })),
        "setquota" => match parse_amount(&option("tokens").unwrap_or_default(), "unlimited") {
            Ok(tokens) => admin(account().map(|user| AdminCommand::SetQuota { user, tokens })),
            Err(_) => BotCommand::AdminUsage(admin_usage("setquota")),
        },
        "usage" => match option("user").filter(|u| !u.is_empty()) {
            None => BotCommand::Usage,
            Some(_) => admin(account().map(|user| AdminCommand::Usage { user })),
        },
        "buy" => BotCommand::Buy(option("pack").filter(|p| !p.is_empty())),
        "budget" => BotCommand::Budget(crate::core::budget::parse_budget(&format!(
            "{} {}",
            option("action").unwrap_or_default(),
            option("value").unwrap_or_default()
        ))),
        "stats" => BotCommand::Admin(AdminCommand::Stats),
        name @ ("allow" | "deny") => {
            admin(Subject::parse(&user()).map(|subject| AdminCommand::Rule {
                subject,
                allowed: name == "allow",
            }))
        }
        "chat" => BotCommand::Ask(option("prompt").unwrap_or_default()),
        "reset" => BotCommand::Reset,
        "cancel" => BotCommand::Cancel,
        "retry" => BotCommand::Retry,
        "link" => BotCommand::Link(option("code").filter(|c| !c.trim().is_empty())),
        "unlink" => BotCommand::Unlink,
        "quota" => BotCommand::Quota,
        "tools" => BotCommand::Tools,
        "model" => BotCommand::Model(option("name").filter(|n| !n.is_empty())),
        "persona" => BotCommand::Persona(option("name").filter(|n| !n.is_empty())),
        "system" => BotCommand::System(match option("prompt") {
            None => SystemArg::Show,
            Some(p) if p.trim().is_empty() => SystemArg::Show,
            Some(p) if p.trim().eq_ignore_ascii_case("reset") => SystemArg::Reset,
            Some(p) => SystemArg::Set(p),
        }),
        _ => return None,
    };
    // A slash command is always addressed to the bot.
    let mut event = event(
        command.channel_id,
        command.guild_id,
        &command.user,
        command.id.get(),
        Content::Command(parsed),
        true,
        false,
    );
    // Discord computes the member's permissions into the interaction: a server's
    // administrators and managers run it.
    event.sender_manages_group = command
        .member
        .as_ref()
        .and_then(|m| m.permissions)
        .is_some_and(|p| p.administrator() || p.manage_guild());
    Some(event)
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
        thread: None,
        quoted: None,
        attachments: Vec::new(),
        bot_thread: false,
        sender_manages_group: false,
    }
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
}
