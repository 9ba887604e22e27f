//! Discord threads (`discord.threads`): opening a thread for a question — from the
//! user's message for a mention, from the bot's response for `/chat` — and telling the
//! threads the bot opened from other channels, so members' messages there need no
//! mention. Which channel is what is asked from Discord (`GET /channels/{id}`: a
//! thread's type and owner) and remembered for a while, so it holds across restarts and
//! replicas without a table of our own.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::adapter::InteractionAdapter;
use super::rest::Rest;
use crate::core::adapter::AdapterError;
use crate::core::command::Command;
use crate::core::error::chain;
use crate::core::event::{Content, IncomingEvent};
use crate::platform::pacer::Priority;

/// What a guild channel is, for answering in threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A thread the bot opened: its members' messages continue its conversation.
    OurThread,
    /// A thread someone else opened: answered in place when addressed.
    OtherThread,
    /// A text (or announcement) channel, where threads can be opened.
    Text,
    /// Anything else (a forum, a voice channel's chat, unknown): answered in place.
    Other,
}

/// Discord's limit on a thread's name, in characters.
const MAX_NAME_CHARS: usize = 100;

/// How long a thread stays active without messages (minutes; Discord's choices are 60,
/// 1440, 4320, 10080): a day, as Discord's own client defaults.
const AUTO_ARCHIVE_MINUTES: u32 = 1440;

/// How long what a channel is stays remembered; a channel's type never changes, and a
/// thread's owner neither.
const REMEMBER: Duration = Duration::from_secs(3600);

pub struct Threads {
    rest: Arc<Rest>,
    bot: u64,
    /// What each channel is; concurrent lookups of one channel share one request.
    channels: moka::future::Cache<u64, Channel>,
    /// Channels Discord would not describe (no access, an outage): not asked again for
    /// a while, so a busy channel the bot cannot see costs one request per few minutes,
    /// not one per message.
    unknown: moka::sync::Cache<u64, ()>,
}

/// How long a failed lookup is not repeated.
const RETRY_LOOKUP: Duration = Duration::from_secs(300);

impl Threads {
    pub fn new(rest: Arc<Rest>, bot: u64) -> Threads {
        Threads {
            rest,
            bot,
            channels: moka::future::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(REMEMBER)
                .build(),
            unknown: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(RETRY_LOOKUP)
                .build(),
        }
    }

    /// What `channel` is; [`Channel::Other`] when Discord cannot say (asked again
    /// after [`RETRY_LOOKUP`]).
    pub async fn channel(&self, channel: u64) -> Channel {
        if self.unknown.contains_key(&channel) {
            return Channel::Other;
        }
        match self
            .channels
            .try_get_with(channel, self.lookup(channel))
            .await
        {
            Ok(kind) => kind,
            Err(_) => {
                self.unknown.insert(channel, ());
                Channel::Other
            }
        }
    }

    async fn lookup(&self, channel: u64) -> Result<Channel, AdapterError> {
        let body = self
            .rest
            .get(format!("/channels/{channel}"))
            .await
            .inspect_err(|e| {
                tracing::warn!(channel, error = %chain(e), "could not look up a Discord channel; answering in place");
            })?;
        Ok(match body["type"].as_u64() {
            Some(10..=12) if body["owner_id"].as_str() == Some(&self.bot.to_string()) => {
                Channel::OurThread
            }
            Some(10..=12) => Channel::OtherThread,
            Some(0 | 5) => Channel::Text,
            _ => Channel::Other,
        })
    }

    /// Opens a thread on `message` of `channel` (the user's question, or the bot's
    /// response showing it), named after `question`; returns the thread's id.
    pub async fn open(
        &self,
        channel: u64,
        message: u64,
        question: &str,
    ) -> Result<u64, AdapterError> {
        let body = json!({"name": name(question), "auto_archive_duration": AUTO_ARCHIVE_MINUTES});
        let thread = self
            .rest
            .write(
                Method::POST,
                format!("/channels/{channel}/messages/{message}/threads"),
                format!("POST /channels/{channel}/threads"),
                Some(&body),
                Priority::Final,
            )
            .await?;
        let id = thread["id"]
            .as_str()
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| {
                AdapterError::Failed(anyhow::anyhow!("Discord returned no thread id"))
            })?;
        self.channels.insert(id, Channel::OurThread).await;
        tracing::info!(channel, thread = id, "opened a Discord thread");
        Ok(id)
    }
}

impl Threads {
    /// Where a guild message is answered: in a thread the bot opened, every message is
    /// for the bot and continues its conversation; a question addressed to the bot in a
    /// text channel opens a thread on it. Commands are answered in place, and so is
    /// everything when the thread cannot be opened (missing permission).
    pub async fn place_message(&self, event: &mut IncomingEvent, message: u64) {
        let Ok(channel) = event.chat_id.parse::<u64>() else {
            return;
        };
        match self.channel(channel).await {
            Channel::OurThread => event.bot_thread = true,
            Channel::Text if event.addressed_to_bot() => {
                let Content::Text(question) = &event.content else {
                    return;
                };
                match self.open(channel, message, question).await {
                    Ok(thread) => {
                        event.chat_id = thread.to_string();
                        event.bot_thread = true;
                    }
                    Err(e) => {
                        tracing::warn!(channel, error = %chain(&e), "could not open a thread (does the bot have the Create Public Threads permission?); answering in the channel")
                    }
                }
            }
            _ => {}
        }
    }
}

/// Most characters of a `/chat` question shown in the response the thread hangs on.
const SHOWN_QUESTION_CHARS: usize = 1_800;

impl Threads {
    /// Where `/chat` is answered: in a text channel the response shows the question,
    /// a thread is opened on it and `true` says the answer goes there (the event now
    /// names the thread). In a thread the bot opened, `/chat` continues it in place, and
    /// the commands that act on a conversation (`/retry`, `/reset`, `/system`, `/model`,
    /// `/persona`) act on the thread's, as its messages do. Otherwise, or when the thread
    /// cannot be opened, the response answers.
    pub async fn place_command(
        &self,
        event: &mut IncomingEvent,
        response: &InteractionAdapter,
        channel: u64,
    ) -> bool {
        let question = match &event.content {
            Content::Command(Command::Ask(question)) if !question.trim().is_empty() => {
                Some(question.clone())
            }
            Content::Command(
                Command::Retry
                | Command::Reset
                | Command::System(_)
                | Command::Model(_)
                | Command::Persona(_),
            ) => None,
            _ => return false,
        };
        match self.channel(channel).await {
            Channel::OurThread => {
                event.bot_thread = true;
                false
            }
            Channel::Text => {
                let Some(question) = question else {
                    return false;
                };
                let shown = format!(
                    "**{}** asked: {}",
                    event.sender.display_name,
                    crate::core::text::ellipsis(&question, SHOWN_QUESTION_CHARS)
                );
                let opened = match response.fill_original(&shown).await {
                    Ok(message) => self.open(channel, message, &question).await,
                    Err(e) => Err(e),
                };
                match opened {
                    Ok(thread) => {
                        event.chat_id = thread.to_string();
                        event.bot_thread = true;
                        true
                    }
                    Err(e) => {
                        tracing::warn!(channel, error = %chain(&e), "could not open a thread for /chat (does the bot have the Create Public Threads permission?); answering in the response");
                        false
                    }
                }
            }
            _ => false,
        }
    }
}

/// A thread's name: the question's first line, at most 100 characters.
pub fn name(question: &str) -> String {
    let line = question
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.is_empty() {
        return "Chat".to_string();
    }
    match line.char_indices().nth(MAX_NAME_CHARS - 1) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_first_line_within_discords_limit() {
        assert_eq!(name("\n  What is Rust?\nmore"), "What is Rust?");
        assert_eq!(name("   "), "Chat");
        let long = "é".repeat(150);
        let cut = name(&long);
        assert_eq!(cut.chars().count(), MAX_NAME_CHARS);
        assert!(cut.ends_with('…'));
    }
}
