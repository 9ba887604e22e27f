//! The [`ChatAdapter`]s for Discord: replies in a channel (DMs and guild mentions) and
//! replies to a deferred slash command (the original response, then follow-ups). Every
//! write goes through [`Rest`], which honours Discord's rate limits; every message has
//! `allowed_mentions` empty, so a model cannot ping `@everyone`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::MAX_MESSAGE_LEN;
use super::rest::Rest;
use crate::core::adapter::{
    AdapterError, Capabilities, ChatAdapter, LengthUnit, Notifier, ReplyTarget, SentMessage, Stage,
};
use crate::core::event::Attachment;
use crate::platform::pacer::Priority;

/// The id of an interaction's original response, for [`SentMessage::message_id`].
const ORIGINAL: &str = "@original";

fn parse_id(id: &str) -> Result<u64, AdapterError> {
    id.parse::<u64>()
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| AdapterError::Failed(anyhow::anyhow!("`{id}` is not a Discord id")))
}

/// What Discord allows, with the configured pacing.
pub fn caps(edit_interval: Duration, first_message_delay: Duration) -> Capabilities {
    Capabilities {
        max_message_len: MAX_MESSAGE_LEN,
        length_unit: LengthUnit::Chars,
        min_edit_interval: edit_interval,
        first_message_delay,
    }
}

/// A message body: the text, and no mention may ping anyone.
fn content(text: &str) -> Value {
    let text = thought_as_subtext(text);
    json!({"content": text, "allowed_mentions": {"parse": []}})
}

/// A reasoning model's thinking, quoted above its answer (a first quote starting with
/// "💭"), as Discord's small print (`-# `), when it still fits a message.
fn thought_as_subtext(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.starts_with("> 💭") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut lines = text.split_inclusive('\n');
    for line in lines.by_ref() {
        let Some(quoted) = line.strip_prefix('>') else {
            out.push_str(line);
            break;
        };
        let quoted = quoted.strip_prefix(' ').unwrap_or(quoted);
        if !quoted.trim().is_empty() {
            out.push_str("-# ");
            out.push_str(quoted);
        }
    }
    out.extend(lines);
    if out.chars().count() > MAX_MESSAGE_LEN {
        return text.into();
    }
    out.into()
}

/// New messages are an answer's first (or, complete, its final) text; edits are drafts
/// until the final one.
fn priority(stage: Stage, new: bool) -> Priority {
    match (stage, new) {
        (Stage::Final, _) => Priority::Final,
        (Stage::Draft, true) => Priority::First,
        (Stage::Draft, false) => Priority::Draft,
    }
}

fn message_id(body: &Value) -> Result<String, AdapterError> {
    body["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| AdapterError::Failed(anyhow::anyhow!("Discord returned no message id")))
}

/// Replies in a channel (DMs and guild mentions).
pub struct ChannelAdapter {
    pub(super) rest: Arc<Rest>,
    pub(super) caps: Capabilities,
}

/// A private message: Discord needs the DM channel first (created, or the existing one
/// returned).
#[async_trait]
impl Notifier for ChannelAdapter {
    async fn notify(&self, user: &str, text: &str) -> Result<(), AdapterError> {
        let recipient = parse_id(user)?;
        let channel = self
            .rest
            .write(
                Method::POST,
                "/users/@me/channels".to_string(),
                "POST /users/@me/channels".to_string(),
                Some(&json!({"recipient_id": recipient.to_string()})),
                Priority::Final,
            )
            .await?;
        let target = ReplyTarget {
            chat_id: message_id(&channel)?,
            reply_to: None,
            thread: None,
        };
        self.send(&target, text, Stage::Final).await.map(|_| ())
    }
}

#[async_trait]
impl ChatAdapter for ChannelAdapter {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn send(
        &self,
        target: &ReplyTarget,
        text: &str,
        stage: Stage,
    ) -> Result<SentMessage, AdapterError> {
        let channel = parse_id(&target.chat_id)?;
        let mut body = content(text);
        if let Some(reply_to) = &target.reply_to {
            body["message_reference"] = json!({
                "message_id": parse_id(reply_to)?.to_string(),
                "fail_if_not_exists": false,
            });
        }
        let sent = self
            .rest
            .write(
                Method::POST,
                format!("/channels/{channel}/messages"),
                format!("POST /channels/{channel}/messages"),
                Some(&body),
                priority(stage, true),
            )
            .await?;
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: message_id(&sent)?,
        })
    }

    async fn edit(
        &self,
        message: &SentMessage,
        text: &str,
        stage: Stage,
    ) -> Result<(), AdapterError> {
        let channel = parse_id(&message.chat_id)?;
        let id = parse_id(&message.message_id)?;
        self.rest
            .write(
                Method::PATCH,
                format!("/channels/{channel}/messages/{id}"),
                format!("PATCH /channels/{channel}/messages"),
                Some(&content(text)),
                priority(stage, false),
            )
            .await
            .map(|_| ())
    }

    async fn download(&self, file: &Attachment, max_bytes: u64) -> Result<Vec<u8>, AdapterError> {
        self.rest.download(&file.id, max_bytes).await
    }

    async fn typing(&self, target: &ReplyTarget) -> Result<(), AdapterError> {
        let channel = parse_id(&target.chat_id)?;
        self.rest
            // Only a courtesy: it never waits for a bucket.
            .write(
                Method::POST,
                format!("/channels/{channel}/typing"),
                format!("POST /channels/{channel}/typing"),
                None,
                Priority::Draft,
            )
            .await
            .map(|_| ())
    }
}

/// Replies to a slash command that was already deferred: the first message fills the
/// original response, overflow goes into follow-ups.
pub struct InteractionAdapter {
    pub(super) rest: Arc<Rest>,
    pub(super) application_id: u64,
    /// The interaction's token: it is in every URL, so it never reaches a log.
    pub(super) token: SecretString,
    pub(super) ephemeral: bool,
    pub(super) caps: Capabilities,
    pub(super) original_used: Mutex<bool>,
}

impl InteractionAdapter {
    /// Fills the original response with `text` and returns its message's id (a thread
    /// can be opened on it); later sends go into follow-ups.
    pub async fn fill_original(&self, text: &str) -> Result<u64, AdapterError> {
        *self.original_used.lock().unwrap_or_else(|p| p.into_inner()) = true;
        let body = self
            .rest
            .write(
                Method::PATCH,
                format!("{}/messages/@original", self.webhook()),
                self.route("PATCH original"),
                Some(&content(text)),
                Priority::Final,
            )
            .await?;
        parse_id(&message_id(&body)?)
    }

    fn webhook(&self) -> String {
        format!(
            "/webhooks/{}/{}",
            self.application_id,
            self.token.expose_secret()
        )
    }

    /// One bucket per interaction (Discord's major parameter is the webhook).
    fn route(&self, what: &str) -> String {
        format!("{what} interaction {}", self.application_id)
    }
}

#[async_trait]
impl ChatAdapter for InteractionAdapter {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn send(
        &self,
        target: &ReplyTarget,
        text: &str,
        stage: Stage,
    ) -> Result<SentMessage, AdapterError> {
        let first = {
            let mut used = self.original_used.lock().unwrap_or_else(|p| p.into_inner());
            !std::mem::replace(&mut *used, true)
        };
        if first {
            self.rest
                .write(
                    Method::PATCH,
                    format!("{}/messages/@original", self.webhook()),
                    self.route("PATCH original"),
                    Some(&content(text)),
                    priority(stage, true),
                )
                .await?;
            return Ok(SentMessage {
                chat_id: target.chat_id.clone(),
                message_id: ORIGINAL.to_string(),
            });
        }
        let mut body = content(text);
        if self.ephemeral {
            body["flags"] = json!(64);
        }
        let sent = self
            .rest
            .write(
                Method::POST,
                self.webhook(),
                self.route("POST followup"),
                Some(&body),
                priority(stage, true),
            )
            .await?;
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: message_id(&sent)?,
        })
    }

    async fn edit(
        &self,
        message: &SentMessage,
        text: &str,
        stage: Stage,
    ) -> Result<(), AdapterError> {
        let (path, route) = if message.message_id == ORIGINAL {
            (
                format!("{}/messages/@original", self.webhook()),
                self.route("PATCH original"),
            )
        } else {
            let id = parse_id(&message.message_id)?;
            (
                format!("{}/messages/{id}", self.webhook()),
                self.route("PATCH followup"),
            )
        };
        self.rest
            .write(
                Method::PATCH,
                path,
                route,
                Some(&content(text)),
                priority(stage, false),
            )
            .await
            .map(|_| ())
    }

    async fn download(&self, file: &Attachment, max_bytes: u64) -> Result<Vec<u8>, AdapterError> {
        self.rest.download(&file.id, max_bytes).await
    }

    async fn typing(&self, _target: &ReplyTarget) -> Result<(), AdapterError> {
        // A deferred interaction already shows "… is thinking".
        Ok(())
    }

    fn replies_are_private(&self) -> bool {
        self.ephemeral
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_thought_quote_becomes_small_print() {
        assert_eq!(
            thought_as_subtext("> 💭 Thought for 3 s\n> step one\n>\n> two\n\nFour."),
            "-# 💭 Thought for 3 s\n-# step one\n-# two\n\nFour."
        );
        assert_eq!(thought_as_subtext("> a quote\n\nx"), "> a quote\n\nx");
        let long = format!("> 💭 Thought\n{}", "> x\n".repeat(700));
        assert_eq!(
            thought_as_subtext(&long),
            long,
            "kept as a quote when small print would not fit"
        );
    }
}
