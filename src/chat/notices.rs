//! Sending complete texts (commands' answers, refusals, failures) and the sentences the
//! bot says when something it depends on fails.

/// A refusal as the one sentence the user is told; nothing was charged for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Sentence(pub String);

impl From<String> for Sentence {
    fn from(text: String) -> Sentence {
        Sentence(text)
    }
}

impl From<&str> for Sentence {
    fn from(text: &str) -> Sentence {
        Sentence(text.to_string())
    }
}

use crate::core::adapter::{AdapterError, ChatAdapter, ReplyTarget, Stage};
use crate::core::error::chain;
use crate::core::session::SessionError;
use crate::quota::QuotaError;

use super::reply::MAX_FORCED_ATTEMPTS;
use super::split::split_message;

pub const STORE_DOWN: &str =
    "Sorry, I can't reach my conversation memory right now. Please try again in a moment.";
pub const LEDGER_DOWN: &str =
    "Sorry, I can't check your token balance right now. Please try again in a moment.";
pub const ACCESS_DOWN: &str =
    "Sorry, I can't check who may use me right now. Please try again in a moment.";
pub const PRIVATE_BOT: &str = "Sorry, this bot is private. Ask one of its admins to let you in.";
pub const ADMINS_ONLY: &str = "Not allowed: that command is for the bot's admins.";
pub const STILL_ANSWERING: &str =
    "Still answering your previous message — send /cancel to stop it.";
pub const EMPTY_PROMPT: &str = "Send me a question or some text and I'll answer.";
pub const EMPTY_ANSWER: &str = "(The model returned an empty answer.)";
pub const STOPPED_EARLY: &str = "Stopped before the model said anything; nothing was charged.";
pub const QUEUED: &str = "Many people are asking right now: your question is in line and will be answered in turn. (/cancel to withdraw it.)";
pub const RESTARTING: &str = "The bot is restarting and could not answer this; nothing was charged. Please send it again in a moment.";
/// After the partial text of an answer stopped by a shutdown.
pub const STOPPED_RESTARTING: &str = "(stopped: the bot is restarting)";

/// Sends a complete text, split to the platform's limit. Flood-control answers are
/// waited out with the same policy as streamed replies; other failures are logged.
pub async fn say(adapter: &dyn ChatAdapter, target: &ReplyTarget, text: &str) {
    let caps = adapter.capabilities();
    for part in split_message(text, caps.max_message_len, caps.length_unit) {
        let mut attempts = 0;
        loop {
            match adapter.send(target, &part, Stage::Final).await {
                Ok(_) => break,
                Err(AdapterError::RetryAfter(wait)) if attempts + 1 < MAX_FORCED_ATTEMPTS => {
                    attempts += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "could not send a reply");
                    return;
                }
            }
        }
    }
}

/// Logs a session store failure with its cause and tells the user.
pub async fn store_failure(adapter: &dyn ChatAdapter, target: &ReplyTarget, e: &SessionError) {
    tracing::error!(error = %chain(e), "session store failed");
    say(adapter, target, STORE_DOWN).await;
}

/// Logs a quota ledger failure with its cause and tells the user.
pub async fn quota_failure(adapter: &dyn ChatAdapter, target: &ReplyTarget, e: &QuotaError) {
    if let QuotaError::Limit(sentence) = e {
        say(adapter, target, sentence).await;
        return;
    }
    tracing::error!(error = %chain(e), "quota ledger failed");
    say(adapter, target, LEDGER_DOWN).await;
}
