//! The platform-neutral incoming event: what every adapter (Telegram, Discord, terminal)
//! turns its own update into, so the conversation core never sees platform types.

use super::error::Invalid;
use std::fmt;

use super::command::{Command, Input};

/// Where a message came from; also the namespace of user ids in sessions and quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Telegram,
    Discord,
    Console,
    /// The web front (`web:<username>`).
    Web,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Telegram => "telegram",
            Platform::Discord => "discord",
            Platform::Console => "console",
            Platform::Web => "web",
        }
    }

    pub fn parse(text: &str) -> Option<Platform> {
        match text.to_ascii_lowercase().as_str() {
            "telegram" | "tg" => Some(Platform::Telegram),
            "discord" => Some(Platform::Discord),
            "console" => Some(Platform::Console),
            "web" => Some(Platform::Web),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Direct (one-to-one) chats are always answered; groups only when the bot is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    Direct,
    Group,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub id: String,
    pub display_name: String,
    pub is_bot: bool,
}

/// What the message carried. Non-text content gets a polite answer, never a model call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Text for the model, with the bot's @mention already stripped by the adapter.
    Text(String),
    /// A command, parsed at the edge: typed text (`/reset`) or a platform's structured
    /// command (a Discord slash command's options map straight onto it).
    Command(Command),
    /// A photo, sticker, voice note, edit, … described in a word or two ("a photo").
    Unsupported(String),
}

impl Content {
    /// What a typed text means: a command or text for the model; `None` for a command
    /// addressed to another bot (`/start@otherbot`). `bot_username` is without `@`.
    pub fn from_typed(text: &str, bot_username: Option<&str>) -> Option<Content> {
        match super::command::parse(text, bot_username) {
            Input::Text(text) => Some(Content::Text(text)),
            Input::Command(command) => Some(Content::Command(command)),
            Input::ForAnotherBot => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEvent {
    pub platform: Platform,
    pub chat_id: String,
    pub chat_kind: ChatKind,
    /// The community the chat belongs to, for access rules: the Telegram group's chat id,
    /// the Discord guild id; `None` in direct chats.
    pub group: Option<String>,
    pub sender: Sender,
    pub message_id: String,
    pub content: Content,
    /// The bot was @mentioned (or a command was addressed to it).
    pub mentioned: bool,
    /// The message replies to one of the bot's own messages.
    pub reply_to_bot: bool,
    /// A topic of the chat that is a conversation of its own (a Telegram forum topic):
    /// its own history, and replies go there.
    pub thread: Option<String>,
    /// The message this one replies to (or the part of it the user quoted), given to
    /// the model as context.
    pub quoted: Option<Quoted>,
    /// Files sent with the message (the text is their caption).
    pub attachments: Vec<Attachment>,
    /// The chat is a thread the bot opened for a conversation (a Discord thread): every
    /// message in it is addressed to the bot, and its members share one history.
    pub bot_thread: bool,
    /// The platform itself says the sender administers the group (a Discord member
    /// with the Administrator or Manage Server permission, as the interaction carries
    /// it): they may fund its wallet and set its rules without asking the platform.
    pub sender_manages_group: bool,
}

/// A file that came with a message, fetched through the platform only when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The platform's reference to fetch it by (Telegram's `file_id`).
    pub id: String,
    /// The file name as sent ("report.pdf").
    pub name: String,
    pub mime: Option<String>,
    /// Bytes, when the platform says.
    pub size: Option<u64>,
    /// Width and height of an image (a photo), which the model sees.
    pub image: Option<(u32, u32)>,
    /// Seconds of a voice note or audio file, which is transcribed.
    pub audio_seconds: Option<u32>,
}

/// A message replied to: who wrote it and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    pub author: String,
    pub text: String,
}

/// At most this many characters of a replied-to message go into the prompt.
pub const MAX_QUOTED_CHARS: usize = 2_000;

impl Quoted {
    /// The quoted text, cut to [`MAX_QUOTED_CHARS`]; `None` when there is no text.
    pub fn new(author: impl Into<String>, text: &str) -> Option<Quoted> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let text = super::text::ellipsis(text, MAX_QUOTED_CHARS);
        Some(Quoted {
            author: author.into(),
            text,
        })
    }

    /// The user's message with the quoted one before it, as the model reads it.
    pub fn with_question(&self, question: &str) -> String {
        let quoted: String = self.text.lines().map(|l| format!("> {l}\n")).collect();
        format!(
            "(Replying to this message from {}:)\n{quoted}\n{question}",
            self.author
        )
    }
}

impl IncomingEvent {
    /// True when the bot should consider answering: direct chats always, groups only
    /// when mentioned or replied to.
    pub fn addressed_to_bot(&self) -> bool {
        self.chat_kind == ChatKind::Direct || self.mentioned || self.reply_to_bot || self.bot_thread
    }

    /// The user whose quota pays for this message.
    pub fn quota_user(&self) -> UserId {
        UserId {
            platform: self.platform,
            user: self.sender.id.clone(),
        }
    }

    /// Sessions are per user in direct chats and per (chat, user) in groups, so members
    /// of a group never share or see each other's history. A thread the bot opened is
    /// one conversation its members continue together (they all see it anyway).
    pub fn session_key(&self) -> SessionKey {
        SessionKey {
            platform: self.platform,
            chat: match &self.thread {
                Some(thread) => format!("{}/{thread}", self.chat_id),
                None => self.chat_id.clone(),
            },
            user: if self.bot_thread {
                SHARED_SESSION_USER.to_string()
            } else {
                self.sender.id.clone()
            },
        }
    }
}

/// The session key's user for a conversation shared by a thread's members (no
/// platform user id has this form).
pub const SHARED_SESSION_USER: &str = "*thread";

/// A platform-qualified user id, written `platform:id` (e.g. `telegram:12345`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId {
    pub platform: Platform,
    pub user: String,
}

impl UserId {
    pub fn new(platform: Platform, user: impl Into<String>) -> UserId {
        UserId {
            platform,
            user: user.into(),
        }
    }

    /// Parses `platform:user`, the form used on the command line.
    pub fn parse(text: &str) -> Result<UserId, Invalid> {
        let (platform, user) = text.split_once(':').ok_or_else(|| {
            Invalid(format!(
                "`{text}` is not of the form platform:user (e.g. telegram:12345)"
            ))
        })?;
        let platform = Platform::parse(platform).ok_or_else(|| {
            Invalid(format!(
                "unknown platform `{platform}` (use telegram, discord, web or console)"
            ))
        })?;
        if user.is_empty() || user.chars().any(char::is_whitespace) {
            return Err(Invalid(format!("`{text}` has an empty or blank user id")));
        }
        Ok(UserId::new(platform, user))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.user)
    }
}

/// Identifies one conversation history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub platform: Platform,
    pub chat: String,
    pub user: String,
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.platform, self.chat, self.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_parse_and_print() {
        let id = UserId::parse("telegram:42").unwrap();
        assert_eq!(id, UserId::new(Platform::Telegram, "42"));
        assert_eq!(id.to_string(), "telegram:42");
        assert!(UserId::parse("42").is_err());
        assert!(UserId::parse("icq:42").is_err());
        assert!(UserId::parse("discord:").is_err());
    }

    #[test]
    fn quotes_are_bounded_and_put_before_the_question() {
        assert_eq!(Quoted::new("Ann", "  "), None);
        let long = "é".repeat(MAX_QUOTED_CHARS + 10);
        let q = Quoted::new("Ann", &long).unwrap();
        assert_eq!(q.text.chars().count(), MAX_QUOTED_CHARS + 1);
        let q = Quoted::new("Ann", "line one\nline two").unwrap();
        assert_eq!(
            q.with_question("what?"),
            "(Replying to this message from Ann:)\n> line one\n> line two\n\nwhat?"
        );
    }
}
