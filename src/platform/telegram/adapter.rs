//! The [`ChatAdapter`] for Telegram: sends and edits (HTML for final texts, plain text
//! for drafts and as a fallback) and "typing…". Every write waits for its budget in the
//! bot's [`Pacer`] (Telegram's per-chat, per-group and overall limits), so the platform
//! never has to answer 429; when it does, only the chat it names is frozen.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::{
    ChatAction, FileId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId, ParseMode,
    ReplyParameters, ThreadId,
};
use teloxide::{ApiError, RequestError};

use super::drafts::{Drafts, Finals, is_draft};
use super::{MAX_MESSAGE_LEN, html};
use crate::core::adapter::{
    AdapterError, Capabilities, ChatAdapter, Choice, LengthUnit, Notifier, ReplyTarget,
    SentMessage, Stage,
};
use crate::core::error::chain;
use crate::core::event::Attachment;
use crate::platform::capped::Capped;
use crate::platform::pacer::{Pacer, Priority, Write};

/// Sending side for one Telegram chat; every write goes through the bot's [`Pacer`].
#[derive(Clone)]
pub struct TelegramAdapter {
    pub(super) bot: Bot,
    pacer: Arc<Pacer>,
    edit_interval: Duration,
    first_message_delay: Duration,
    /// `telegram.draft_streaming`: drafts stream as `sendMessageDraft`.
    drafts: Option<Arc<Drafts>>,
    /// The drafts of this adapter's answers and the messages their final texts became.
    finals: Arc<Finals>,
}

/// How often one write is tried when Telegram keeps answering 429.
const MAX_ATTEMPTS: u32 = 8;

pub(super) fn chat_id(id: &str) -> Result<ChatId, AdapterError> {
    id.parse::<i64>()
        .map(ChatId)
        .map_err(|_| AdapterError::Failed(anyhow::anyhow!("`{id}` is not a Telegram chat id")))
}

fn message_id(id: &str) -> Result<MessageId, AdapterError> {
    id.parse::<i32>()
        .map(MessageId)
        .map_err(|_| AdapterError::Failed(anyhow::anyhow!("`{id}` is not a Telegram message id")))
}

pub(super) fn adapter_error(e: RequestError) -> AdapterError {
    match e {
        RequestError::RetryAfter(wait) => AdapterError::RetryAfter(wait.duration()),
        RequestError::Api(ApiError::MessageToEditNotFound) => AdapterError::Gone,
        RequestError::Api(
            e @ (ApiError::BotBlocked
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
            | ApiError::UserDeactivated
            | ApiError::ChatNotFound),
        ) => AdapterError::Unreachable(e.to_string()),
        other => AdapterError::Failed(anyhow::Error::new(other)),
    }
}

/// The HTML to send for a final text, or `None` to send it plain (drafts, and the rare
/// rendering that would show more than Telegram's limit, e.g. renumbered long lists).
fn final_html(text: &str, stage: Stage) -> Option<String> {
    if stage != Stage::Final {
        return None;
    }
    let rendered = html::render(text);
    (html::visible_len_utf16(&rendered) <= MAX_MESSAGE_LEN).then_some(rendered)
}

fn is_entity_error(e: &RequestError) -> bool {
    matches!(e, RequestError::Api(ApiError::CantParseEntities(_)))
}

impl TelegramAdapter {
    /// One sendMessage: HTML for a final text, plain if Telegram refuses the formatting.
    async fn send_once(
        &self,
        chat: ChatId,
        place: &Place,
        text: &str,
        stage: Stage,
    ) -> Result<Message, RequestError> {
        let build = |text: String, html: bool| {
            let request = place.apply(self.bot.send_message(chat, text));
            if html {
                request.parse_mode(ParseMode::Html)
            } else {
                request
            }
        };
        if let Some(rendered) = final_html(text, stage) {
            match build(rendered, true).await {
                Err(e) if is_entity_error(&e) => {
                    tracing::warn!(error = %chain(&e), "Telegram rejected the formatting, sending plain text");
                    build(text.to_string(), false).await
                }
                other => other,
            }
        } else {
            build(text.to_string(), false).await
        }
    }

    /// One editMessageText, with the same fallback.
    async fn edit_once(
        &self,
        chat: ChatId,
        id: MessageId,
        text: &str,
        stage: Stage,
    ) -> Result<Message, RequestError> {
        if let Some(rendered) = final_html(text, stage) {
            match self
                .bot
                .edit_message_text(chat, id, rendered)
                .parse_mode(ParseMode::Html)
                .await
            {
                Err(e) if is_entity_error(&e) => {
                    tracing::warn!(error = %chain(&e), "Telegram rejected the formatting, editing as plain text");
                    self.bot.edit_message_text(chat, id, text).await
                }
                other => other,
            }
        } else {
            self.bot.edit_message_text(chat, id, text).await
        }
    }

    pub fn new(
        bot: Bot,
        pacer: Arc<Pacer>,
        edit_interval: Duration,
        first_message_delay: Duration,
    ) -> TelegramAdapter {
        TelegramAdapter {
            bot,
            pacer,
            edit_interval,
            first_message_delay,
            drafts: None,
            finals: Arc::default(),
        }
    }

    /// Streams drafts with `sendMessageDraft` where Telegram allows it.
    pub fn with_drafts(mut self, drafts: Option<Arc<Drafts>>) -> TelegramAdapter {
        self.drafts = drafts;
        self
    }

    /// One new message (sendMessage), paced.
    async fn send_message(
        &self,
        target: &ReplyTarget,
        text: &str,
        stage: Stage,
    ) -> Result<SentMessage, AdapterError> {
        let chat = chat_id(&target.chat_id)?;
        let place = Place::of(target)?;
        // A new message is an answer's first (or, complete, its final) text.
        let priority = match stage {
            Stage::Final => Priority::Final,
            Stage::Draft => Priority::First,
        };
        let sent = self
            .paced(&target.chat_id, Write::Send, priority, || {
                self.send_once(chat, &place, text, stage)
            })
            .await?;
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: sent.id.0.to_string(),
        })
    }

    /// An edit of a draft: shown as the draft while the answer grows; its final text
    /// (or every text, once the server refused drafts) goes out as a real message,
    /// which later edits then change.
    async fn edit_draft(
        &self,
        drafts: &Drafts,
        message: &SentMessage,
        text: &str,
        stage: Stage,
    ) -> Result<(), AdapterError> {
        let id = &message.message_id;
        let (target, real) = self.finals.of(id).ok_or_else(|| {
            AdapterError::Failed(anyhow::anyhow!("draft {id} is not one of this answer's"))
        })?;
        if let Some(real) = real {
            let message = SentMessage {
                chat_id: message.chat_id.clone(),
                message_id: real,
            };
            return self.edit(&message, text, stage).await;
        }
        if stage == Stage::Draft
            && drafts
                .show(
                    &self.bot,
                    &self.pacer,
                    &message.chat_id,
                    id,
                    text,
                    Priority::Draft,
                )
                .await?
        {
            return Ok(());
        }
        let sent = self.send_message(&target, text, stage).await?;
        self.finals.sent(id, &sent.message_id);
        Ok(())
    }

    /// Runs one write to `chat` when its budget allows. A 429 freezes that chat (only
    /// that one) for exactly `retry_after`; a final text or first message then goes out
    /// right after the freeze, a draft is dropped and the caller told when to try again.
    pub(super) async fn paced<T, F, Fut>(
        &self,
        chat: &str,
        write: Write,
        priority: Priority,
        call: F,
    ) -> Result<T, AdapterError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        // Telegram's groups and channels have negative ids.
        let group = chat.starts_with('-');
        let mut attempts = 0;
        loop {
            if let Err(ready_at) = self.pacer.acquire(chat, group, write, priority).await {
                return Err(AdapterError::NotNow(
                    ready_at.saturating_duration_since(tokio::time::Instant::now()),
                ));
            }
            let result = call().await;
            let method = match write {
                Write::Send => "sendMessage",
                Write::Edit => "editMessageText",
            };
            crate::core::metrics::platform_call("telegram", method, status_of(&result));
            match result {
                Err(RequestError::RetryAfter(wait)) => {
                    let wait = wait.duration();
                    tracing::info!(chat, ?wait, "Telegram flood control (429)");
                    self.pacer.freeze(chat, group, wait).await;
                    attempts += 1;
                    if priority == Priority::Draft || attempts >= MAX_ATTEMPTS {
                        return Err(AdapterError::RetryAfter(wait));
                    }
                }
                other => return other.map_err(adapter_error),
            }
        }
    }
}

#[async_trait]
impl Notifier for TelegramAdapter {
    /// A user's private chat with the bot has the user's id.
    async fn notify(&self, user: &str, text: &str) -> Result<(), AdapterError> {
        let target = ReplyTarget {
            chat_id: user.to_string(),
            reply_to: None,
            thread: None,
        };
        self.send(&target, text, Stage::Final).await.map(|_| ())
    }
}

#[async_trait]
impl ChatAdapter for TelegramAdapter {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: MAX_MESSAGE_LEN,
            length_unit: LengthUnit::Utf16,
            min_edit_interval: self.edit_interval,
            first_message_delay: self.first_message_delay,
        }
    }

    async fn send(
        &self,
        target: &ReplyTarget,
        text: &str,
        stage: Stage,
    ) -> Result<SentMessage, AdapterError> {
        if stage == Stage::Draft
            && let Some(drafts) = &self.drafts
            && drafts.usable_for(target)
        {
            let id = drafts.new_id();
            if drafts
                .show(
                    &self.bot,
                    &self.pacer,
                    &target.chat_id,
                    &id,
                    text,
                    Priority::First,
                )
                .await?
            {
                self.finals.opened(&id, target);
                return Ok(SentMessage {
                    chat_id: target.chat_id.clone(),
                    message_id: id,
                });
            }
        }
        self.send_message(target, text, stage).await
    }

    async fn edit(
        &self,
        message: &SentMessage,
        text: &str,
        stage: Stage,
    ) -> Result<(), AdapterError> {
        if is_draft(&message.message_id)
            && let Some(drafts) = &self.drafts
        {
            return self.edit_draft(drafts, message, text, stage).await;
        }
        let chat = chat_id(&message.chat_id)?;
        let id = message_id(&message.message_id)?;
        let priority = match stage {
            Stage::Final => Priority::Final,
            Stage::Draft => Priority::Draft,
        };
        self.paced(&message.chat_id, Write::Edit, priority, || async move {
            match self.edit_once(chat, id, text, stage).await {
                // The text is already what we wanted: that is success.
                Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
                other => other.map(|_| ()),
            }
        })
        .await
    }

    async fn offer(
        &self,
        target: &ReplyTarget,
        text: &str,
        choices: &[Choice],
    ) -> Result<(), AdapterError> {
        let chat = chat_id(&target.chat_id)?;
        let place = Place::of(target)?;
        // One button per row: labels stay readable on a phone.
        let keyboard = InlineKeyboardMarkup::new(choices.iter().map(|c| {
            [InlineKeyboardButton::callback(
                c.label.clone(),
                c.command.clone(),
            )]
        }));
        self.paced(&target.chat_id, Write::Send, Priority::Final, || {
            place
                .apply(self.bot.send_message(chat, text))
                .reply_markup(keyboard.clone())
                .into_future()
        })
        .await
        .map(drop)
    }

    async fn invoice(
        &self,
        target: &ReplyTarget,
        invoice: &crate::core::adapter::InvoiceOffer,
    ) -> Result<bool, AdapterError> {
        super::payments::send_invoice(self, target, invoice).await
    }

    /// `getFile`, then the file from `<api_url>/file/bot<token>/<file_path>`, counted
    /// as it streams: the size `getFile` states is only a first refusal.
    async fn download(&self, file: &Attachment, max_bytes: u64) -> Result<Vec<u8>, AdapterError> {
        let info = self.bot.get_file(FileId(file.id.clone())).await;
        crate::core::metrics::platform_call("telegram", "getFile", status_of(&info));
        let info = info.map_err(adapter_error)?;
        if u64::from(info.size) > max_bytes {
            return Err(AdapterError::TooLarge { limit: max_bytes });
        }
        let mut bytes = Capped::new(max_bytes, u64::from(info.size));
        let fetched = self.bot.download_file(&info.path, &mut bytes).await;
        if bytes.over() {
            return Err(AdapterError::TooLarge { limit: max_bytes });
        }
        fetched.map_err(|e| {
            AdapterError::Failed(anyhow::Error::new(e).context("downloading a file"))
        })?;
        Ok(bytes.into_bytes())
    }

    async fn is_group_admin(&self, group: &str, user: &str) -> Result<bool, AdapterError> {
        super::members::is_admin(self, group, user).await
    }

    async fn typing(&self, target: &ReplyTarget) -> Result<(), AdapterError> {
        let mut request = self
            .bot
            .send_chat_action(chat_id(&target.chat_id)?, ChatAction::Typing);
        if let Some(thread) = Place::of(target)?.thread {
            request = request.message_thread_id(thread);
        }
        let result = request.await;
        crate::core::metrics::platform_call("telegram", "sendChatAction", status_of(&result));
        result.map(|_| ()).map_err(adapter_error)
    }
}

/// Where in a chat a message goes: as a reply to a message, and in which forum topic.
struct Place {
    reply: Option<ReplyParameters>,
    thread: Option<ThreadId>,
}

impl Place {
    fn of(target: &ReplyTarget) -> Result<Place, AdapterError> {
        Ok(Place {
            reply: match &target.reply_to {
                Some(id) => {
                    Some(ReplyParameters::new(message_id(id)?).allow_sending_without_reply())
                }
                None => None,
            },
            thread: match &target.thread {
                Some(id) => Some(ThreadId(message_id(id)?)),
                None => None,
            },
        })
    }

    /// A new message placed here: as the reply, in the topic.
    fn apply(
        &self,
        mut request: <Bot as Requester>::SendMessage,
    ) -> <Bot as Requester>::SendMessage {
        if let Some(reply) = &self.reply {
            request = request.reply_parameters(reply.clone());
        }
        if let Some(thread) = self.thread {
            request = request.message_thread_id(thread);
        }
        request
    }
}

/// The HTTP status a Bot API call came back with, as far as teloxide tells: the Bot API
/// answers its errors with 400 (or 403, which teloxide does not distinguish).
pub(super) fn status_of<T>(result: &Result<T, RequestError>) -> Option<u16> {
    match result {
        Ok(_) => Some(200),
        Err(RequestError::RetryAfter(_)) => Some(429),
        Err(RequestError::Api(_) | RequestError::MigrateToChatId(_)) => Some(400),
        Err(_) => None,
    }
}
