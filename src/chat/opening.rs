//! Opening the model's stream with "typing…" shown from the moment the request starts,
//! refreshed until the model answers, the user cancels or the bot stops.

use tokio::sync::watch;

use super::admission::TYPING_REFRESH;
use super::answers::Answers;
use super::reply::ReplyStream;
use crate::core::adapter::{AdapterError, ReplyTarget};
use crate::core::error::chain;
use crate::core::model::{LlmError, ModelRequest, ModelStream};

impl Answers {
    /// Opens the model's stream, showing "typing…" meanwhile; `None` if cancelled.
    pub(super) async fn open_stream(
        &self,
        request: ModelRequest,
        cancel: &mut watch::Receiver<bool>,
        reply: &mut ReplyStream<'_>,
        target: &ReplyTarget,
    ) -> Result<Option<ModelStream>, LlmError> {
        let opening = self.model.stream(request);
        tokio::pin!(opening);
        // "typing…" goes out with the request, side by side (an interval's first tick
        // waits for the timer, and a fast model could answer before it); then again
        // every TYPING_REFRESH while the model has not answered.
        let adapter = reply.adapter();
        let first = adapter.typing(target);
        tokio::pin!(first);
        let mut typed = false;
        let mut typing =
            tokio::time::interval_at(tokio::time::Instant::now() + TYPING_REFRESH, TYPING_REFRESH);
        loop {
            // What waits to be shown (the tools a previous round runs) goes out on time.
            let due = reply.due();
            tokio::select! {
                biased;
                opened = &mut opening => {
                    // The indicator already asked for is let through (a round trip,
                    // well within the first message's delay).
                    if !typed {
                        note_typing((&mut first).await);
                    }
                    return opened.map(Some);
                }
                _ = cancel.changed() => return Ok(None),
                () = self.restarting.cancelled() => return Ok(None),
                result = &mut first, if !typed => {
                    typed = true;
                    note_typing(result);
                }
                _ = typing.tick() => note_typing(adapter.typing(target).await),
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    if let Err(e) = reply.tick().await {
                        tracing::debug!(error = %chain(&e), "could not show what runs");
                    }
                }
            }
        }
    }
}

/// A failed typing indicator is only worth a debug line.
pub(super) fn note_typing(result: Result<(), AdapterError>) {
    if let Err(e) = result {
        tracing::debug!(error = %chain(&e), "typing indicator failed");
    }
}
