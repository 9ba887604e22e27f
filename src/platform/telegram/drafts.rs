//! Streaming with Telegram's `sendMessageDraft` (Bot API 9.3, `telegram.draft_streaming`):
//! in a private chat the growing answer is shown as an animated draft instead of a
//! message edited again and again, and the complete text is then sent once with
//! `sendMessage`. teloxide 0.17 has no method for it, so it is a raw call to
//! `{api_url}/bot<token>/sendMessageDraft`. A server that refuses it (an older Bot API,
//! a proxy) turns drafts off for the rest of the run: answers stream with edits again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use teloxide::prelude::*;

use crate::core::adapter::{AdapterError, ReplyTarget};
use crate::platform::pacer::{Pacer, Priority, Write};

/// Drafts of this bot: whether the server takes them, and their ids.
pub struct Drafts {
    http: reqwest::Client,
    refused: AtomicBool,
    next_id: AtomicU32,
}

/// A message id standing for a draft (Telegram's message ids are plain numbers).
const PREFIX: &str = "draft-";

/// What a draft turned into once its final text was sent.
#[derive(Default)]
pub struct Finals(Mutex<HashMap<String, (ReplyTarget, Option<String>)>>);

impl Finals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ReplyTarget, Option<String>)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers where draft `id` goes, for its final text.
    pub fn opened(&self, id: &str, target: &ReplyTarget) {
        self.lock().insert(id.to_string(), (target.clone(), None));
    }

    /// Where draft `id` goes and the message its final text became, if sent already.
    pub fn of(&self, id: &str) -> Option<(ReplyTarget, Option<String>)> {
        self.lock().get(id).cloned()
    }

    pub fn sent(&self, id: &str, message: &str) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.1 = Some(message.to_string());
        }
    }
}

/// Whether `message_id` names a draft.
pub fn is_draft(message_id: &str) -> bool {
    message_id.starts_with(PREFIX)
}

impl Drafts {
    pub fn new() -> Result<Drafts, reqwest::Error> {
        Ok(Drafts {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            refused: AtomicBool::new(false),
            next_id: AtomicU32::new(1),
        })
    }

    /// Drafts go to private chats only (positive ids), outside forum topics, while the
    /// server takes them.
    pub fn usable_for(&self, target: &ReplyTarget) -> bool {
        !self.refused.load(Ordering::Relaxed)
            && !target.chat_id.starts_with('-')
            && target.thread.is_none()
    }

    /// A new draft id (never 0), as a message id.
    pub fn new_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed).max(1);
        format!("{PREFIX}{n}")
    }

    /// Shows `text` as draft `id` in `chat`, within the chat's budget. `Ok(false)`: the
    /// server refuses drafts (now off for good); the caller streams with messages.
    pub async fn show(
        &self,
        bot: &Bot,
        pacer: &Pacer,
        chat: &str,
        id: &str,
        text: &str,
        priority: Priority,
    ) -> Result<bool, AdapterError> {
        let draft_id: u32 = id
            .strip_prefix(PREFIX)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| AdapterError::Failed(anyhow::anyhow!("`{id}` is not a draft")))?;
        let chat_id: i64 = chat
            .parse()
            .map_err(|_| AdapterError::Failed(anyhow::anyhow!("`{chat}` is not a chat id")))?;
        if let Err(ready_at) = pacer.acquire(chat, false, Write::Edit, priority).await {
            return Err(AdapterError::NotNow(
                ready_at.saturating_duration_since(tokio::time::Instant::now()),
            ));
        }
        let url = format!(
            "{}/bot{}/sendMessageDraft",
            bot.api_url().as_str().trim_end_matches('/'),
            bot.token()
        );
        let body = json!({"chat_id": chat_id, "draft_id": draft_id, "text": text});
        let response = self.http.post(url).json(&body).send().await;
        let (status, answer) = match response {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }
            Err(e) => {
                crate::core::metrics::platform_call("telegram", "sendMessageDraft", None);
                // The URL holds the bot token: it is dropped from the error.
                return Err(AdapterError::Failed(
                    anyhow::Error::new(e.without_url()).context("sendMessageDraft"),
                ));
            }
        };
        crate::core::metrics::platform_call("telegram", "sendMessageDraft", Some(status));
        if answer["ok"] == true {
            return Ok(true);
        }
        if status == 429 {
            let wait =
                Duration::from_secs(answer["parameters"]["retry_after"].as_u64().unwrap_or(1));
            tracing::info!(chat, ?wait, "Telegram flood control (429) on a draft");
            pacer.freeze(chat, false, wait).await;
            return Err(AdapterError::RetryAfter(wait));
        }
        if status >= 500 {
            return Err(AdapterError::Failed(anyhow::anyhow!(
                "sendMessageDraft: Telegram answered {status}"
            )));
        }
        // 400 / 404: this server (or this chat) does not take drafts.
        if !self.refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                status,
                description = answer["description"].as_str().unwrap_or(""),
                "Telegram refused sendMessageDraft; streaming with message edits instead (telegram.draft_streaming)"
            );
        }
        Ok(false)
    }
}
