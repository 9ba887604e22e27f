//! The adapter seam: how the conversation core sends and edits replies on a platform,
//! and what each platform declares it can do. Telegram and Discord adapters implement
//! [`ChatAdapter`]; so do the terminal adapter and the tests' recording fake.

pub mod console;
pub mod discord;
pub mod telegram;

use std::time::Duration;

use async_trait::async_trait;

/// Tidies a text a mention was cut out of: runs of spaces become one, lines are kept.
pub(crate) fn tidy_after_mention(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

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
    pub can_edit: bool,
    /// Edits of one message are never sent closer together than this.
    pub min_edit_interval: Duration,
}

/// Where a reply goes: the chat, and the message it answers (platforms that thread
/// replies use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    pub chat_id: String,
    pub reply_to: Option<String>,
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

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The platform asked us to slow down; nothing was delivered.
    #[error("rate limited, retry after {0:?}")]
    RetryAfter(Duration),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
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

    /// Shows "typing…" (or the platform's equivalent) while the model thinks.
    async fn typing(&self, target: &ReplyTarget) -> Result<(), AdapterError>;
}
