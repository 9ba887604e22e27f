//! The [`ChatAdapter`]s for Discord: replies in a channel (DMs and guild mentions) and
//! replies to a deferred slash command (the original response, then follow-ups). Every
//! message has `allowed_mentions` empty, so a model cannot ping `@everyone`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serenity::all::{
    ChannelId, CommandInteraction, CreateAllowedMentions, CreateInteractionResponseFollowup,
    CreateMessage, EditInteractionResponse, EditMessage, MessageId,
};
use serenity::http::Http;

use super::MAX_MESSAGE_LEN;
use crate::core::adapter::{
    AdapterError, Capabilities, ChatAdapter, LengthUnit, ReplyTarget, SentMessage, Stage,
};

/// The id of an interaction's original response, for [`SentMessage::message_id`].
const ORIGINAL: &str = "@original";

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

/// What Discord allows, with the configured pacing.
pub fn caps(edit_interval: Duration, first_message_delay: Duration) -> Capabilities {
    Capabilities {
        max_message_len: MAX_MESSAGE_LEN,
        length_unit: LengthUnit::Chars,
        min_edit_interval: edit_interval,
        first_message_delay,
    }
}

/// Replies in a channel (DMs and guild mentions).
pub struct ChannelAdapter {
    pub(super) http: Arc<Http>,
    pub(super) caps: Capabilities,
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
    pub(super) http: Arc<Http>,
    pub(super) interaction: CommandInteraction,
    pub(super) ephemeral: bool,
    pub(super) caps: Capabilities,
    pub(super) original_used: Mutex<bool>,
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
