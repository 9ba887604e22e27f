//! Streaming a growing answer to a platform: a first message as soon as there is text,
//! edits no more often than the adapter's minimum interval, a final edit with the full
//! text, and overflow rolled into new messages (see [`super::split`]). Flood-control
//! answers (`RetryAfter`) pause drafts — later edits coalesce — and delay, never drop,
//! the final text.

use tokio::time::{Duration, Instant};

use super::split::{split_first, with_carry};
use crate::core::adapter::{
    AdapterError, Capabilities, ChatAdapter, ReplyTarget, SentMessage, Stage,
};
use crate::core::error::chain;

/// How often a message that must arrive (a sealed part, the final text, a notice) is
/// tried when the platform answers with flood control.
pub(super) const MAX_FORCED_ATTEMPTS: u32 = 8;

struct Live {
    message: SentMessage,
    shown: String,
    stage: Stage,
}

pub struct ReplyStream<'a> {
    adapter: &'a dyn ChatAdapter,
    target: ReplyTarget,
    caps: Capabilities,
    text: String,
    sealed: usize,
    carry: Option<String>,
    live: Option<Live>,
    last_write: Option<Instant>,
    blocked_until: Option<Instant>,
    /// Whether any message went out.
    shown: bool,
}

impl<'a> ReplyStream<'a> {
    pub fn new(adapter: &'a dyn ChatAdapter, target: ReplyTarget) -> ReplyStream<'a> {
        ReplyStream {
            caps: adapter.capabilities(),
            adapter,
            target,
            text: String::new(),
            sealed: 0,
            carry: None,
            live: None,
            last_write: None,
            blocked_until: None,
            shown: false,
        }
    }

    /// The platform this reply goes to.
    pub fn adapter(&self) -> &'a dyn ChatAdapter {
        self.adapter
    }

    /// The whole answer so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn has_shown_anything(&self) -> bool {
        self.shown
    }

    /// Adds streamed text and shows it if the edit interval allows.
    pub async fn push(&mut self, delta: &str) -> Result<(), AdapterError> {
        self.text.push_str(delta);
        self.flush(false).await
    }

    /// Delivers the complete text.
    pub async fn finish(mut self) -> Result<(), AdapterError> {
        self.flush(true).await
    }

    async fn flush(&mut self, final_: bool) -> Result<(), AdapterError> {
        // Seal every complete message the text has outgrown.
        while let Some(piece) = split_first(
            &self.text[self.sealed..],
            self.carry.as_deref(),
            self.caps.max_message_len,
            self.caps.length_unit,
        ) {
            self.show(piece.text, Stage::Final, true).await?;
            self.live = None;
            self.sealed += piece.consumed;
            self.carry = piece.carry;
        }
        let display = with_carry(self.carry.as_deref(), &self.text[self.sealed..]);
        if display.trim().is_empty() {
            return Ok(());
        }
        if final_ {
            self.show(display, Stage::Final, true).await
        } else {
            match self.show(display, Stage::Draft, false).await {
                // A failed draft is only a missed frame: the final edit carries the text.
                Err(e @ AdapterError::Failed(_)) => {
                    tracing::warn!(error = %chain(&e), "streaming edit failed");
                    Ok(())
                }
                other => other,
            }
        }
    }

    /// Shows `text` in the live message (sending one if there is none). Unforced
    /// writes are skipped while the interval or a flood pause runs; forced writes wait.
    async fn show(&mut self, text: String, stage: Stage, force: bool) -> Result<(), AdapterError> {
        if let Some(live) = &self.live
            && live.shown == text
            && live.stage == stage
        {
            return Ok(());
        }
        let mut attempts = 0;
        loop {
            let now = Instant::now();
            let mut ready_at = self.blocked_until.unwrap_or(now);
            if let (Some(_), Some(last)) = (&self.live, self.last_write) {
                ready_at = ready_at.max(last + self.caps.min_edit_interval);
            }
            if ready_at > now {
                if !force {
                    return Ok(());
                }
                tokio::time::sleep_until(ready_at).await;
            }
            let result = match &self.live {
                Some(live) => self
                    .adapter
                    .edit(&live.message, &text, stage)
                    .await
                    .map(|()| None),
                _ => self
                    .adapter
                    .send(&self.target, &text, stage)
                    .await
                    .map(Some),
            };
            match result {
                Ok(sent) => {
                    self.last_write = Some(Instant::now());
                    self.blocked_until = None;
                    match sent {
                        Some(message) => {
                            self.shown = true;
                            self.live = Some(Live {
                                message,
                                shown: text,
                                stage,
                            });
                        }
                        None => {
                            if let Some(live) = &mut self.live {
                                live.shown = text;
                                live.stage = stage;
                            }
                        }
                    }
                    return Ok(());
                }
                Err(AdapterError::RetryAfter(wait)) => {
                    tracing::info!(?wait, "platform asked to slow down");
                    self.blocked_until = Some(Instant::now() + wait.max(Duration::from_millis(1)));
                    attempts += 1;
                    if !force {
                        return Ok(());
                    }
                    if attempts >= MAX_FORCED_ATTEMPTS {
                        return Err(AdapterError::RetryAfter(wait));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
