//! The outgoing port: how the conversation sends and edits replies on a platform, and
//! what each platform declares it can do. Telegram, Discord, the terminal and the tests'
//! recording fake implement [`ChatAdapter`].

use std::time::Duration;

use async_trait::async_trait;

/// How a platform measures message length (Telegram counts UTF-16 code units after
/// entity parsing, Discord counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnit {
    Chars,
    Utf16,
}

impl LengthUnit {
    pub fn len(self, text: &str) -> usize {
        match self {
            LengthUnit::Chars => text.chars().count(),
            LengthUnit::Utf16 => text.encode_utf16().count(),
        }
    }

    pub fn char_len(self, c: char) -> usize {
        match self {
            LengthUnit::Chars => 1,
            LengthUnit::Utf16 => c.len_utf16(),
        }
    }
}

/// What a platform allows; the streaming reply logic adapts to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub max_message_len: usize,
    pub length_unit: LengthUnit,
    /// Intermediate edits (drafts) of one message are never closer together than this.
    /// Final texts do not wait for it.
    pub min_edit_interval: Duration,
    /// How long an answer is gathered before its first message goes out, so a short
    /// answer arrives as one message with no edits.
    pub first_message_delay: Duration,
}

/// Where a reply goes: the chat, and the message it answers (platforms that thread
/// replies use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    pub chat_id: String,
    pub reply_to: Option<String>,
    /// The topic of the chat to post in (a Telegram forum topic).
    pub thread: Option<String>,
}

/// A message the bot sent, so it can be edited later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub chat_id: String,
    pub message_id: String,
}

/// Whether the text is a streaming draft (may be shown plain) or the final text of the
/// message (adapters render Markdown for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Draft,
    Final,
}

/// Why a platform write failed. The cause chain (HTTP or API error) is kept as the
/// source, so logs show all of it.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The platform asked us to slow down (a 429); nothing was delivered.
    #[error("rate limited, retry after {0:?}")]
    RetryAfter(Duration),
    /// A draft was not sent: the platform's budget is kept for final texts. Nothing was
    /// asked of the platform; a draft may be tried again after this long.
    #[error("draft skipped, budget available in {0:?}")]
    NotNow(Duration),
    /// The chat cannot be written to any more (the user blocked the bot, the bot was
    /// removed, the chat is gone): nothing sent there will be seen.
    #[error("the chat cannot be written to: {0}")]
    Unreachable(String),
    /// The message to edit is gone (deleted in the chat); nothing was changed. What is
    /// left to show goes out as a new message.
    #[error("the message to edit no longer exists")]
    Gone,
    /// A file to fetch is larger than the caller allows; nothing was downloaded past
    /// the limit.
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the platform refused or failed the request")]
    Failed(#[source] anyhow::Error),
}

impl From<anyhow::Error> for AdapterError {
    fn from(e: anyhow::Error) -> AdapterError {
        AdapterError::Failed(e)
    }
}

/// A button offered under a message: pressing it sends `command` as if the user had
/// typed it (Telegram's inline keyboards). Platforms without buttons show the text only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub label: String,
    pub command: String,
}

/// An invoice for one pack of tokens: `stars` Telegram Stars (currency `XTR`), paid
/// under `payload`, the bot's own key for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceOffer {
    pub title: String,
    pub description: String,
    pub payload: String,
    pub stars: i64,
}

/// Sending side of a chat platform. Implementations treat "message not modified" as
/// success and report the platform's flood-control answers as [`AdapterError::RetryAfter`].
#[async_trait]
pub trait ChatAdapter: Send + Sync {
    fn capabilities(&self) -> Capabilities;

    async fn send(
        &self,
        target: &ReplyTarget,
        text: &str,
        stage: Stage,
    ) -> Result<SentMessage, AdapterError>;

    async fn edit(
        &self,
        message: &SentMessage,
        text: &str,
        stage: Stage,
    ) -> Result<(), AdapterError>;

    /// Sends `text` with buttons for `choices`; by default the text alone (it lists
    /// the commands that do the same).
    async fn offer(
        &self,
        target: &ReplyTarget,
        text: &str,
        choices: &[Choice],
    ) -> Result<(), AdapterError> {
        let _ = choices;
        self.send(target, text, Stage::Final).await.map(drop)
    }

    /// Sends an invoice to pay in the platform's own currency (Telegram Stars); `false`
    /// where the platform has none, so the caller says how to buy instead.
    async fn invoice(
        &self,
        target: &ReplyTarget,
        invoice: &InvoiceOffer,
    ) -> Result<bool, AdapterError> {
        let _ = (target, invoice);
        Ok(false)
    }

    /// Fetches a file sent to the bot, refusing one larger than `max_bytes` with
    /// [`AdapterError::TooLarge`].
    async fn download(
        &self,
        file: &crate::core::event::Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, AdapterError> {
        let _ = max_bytes;
        Err(AdapterError::Failed(anyhow::anyhow!(
            "this platform cannot fetch {}",
            file.name
        )))
    }

    /// True when `user` administers `group` on the platform (a Telegram group's owner or
    /// administrators): they may fund the group's wallet and set its rules. By default
    /// no one does, and only the bot's admins may.
    async fn is_group_admin(&self, group: &str, user: &str) -> Result<bool, AdapterError> {
        let _ = (group, user);
        Ok(false)
    }

    /// Shows "typing…" (or the platform's equivalent) while the model thinks.
    async fn typing(&self, target: &ReplyTarget) -> Result<(), AdapterError>;

    /// True when replies reach only the sender (a Discord ephemeral interaction reply)
    /// even in a group, so a secret such as a /link code may be shown there.
    fn replies_are_private(&self) -> bool {
        false
    }
}

/// Reaches a user directly (a private message), outside the chat being answered: the
/// owner of a /link code is told when it is used, wherever that happened.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends `text` to `user` (the platform's user id) in a private chat.
    async fn notify(&self, user: &str, text: &str) -> Result<(), AdapterError>;
}
