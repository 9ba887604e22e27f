//! Streaming a growing answer to a platform: the first message once the answer has had
//! `first_message_delay` to gather (a short answer goes out whole, as one message),
//! drafts no more often than the edit interval and only when the platform's budget
//! allows (never queued: a skipped draft is simply superseded by the next, so a stale
//! one is never sent), the final text as soon as the platform allows, and overflow
//! rolled into new messages (see [`super::split`]). Flood-control answers
//! (`RetryAfter`) pause every write for exactly their time, and delay, never drop, the
//! final text.

use tokio::time::{Duration, Instant};

use super::split::{split_first, with_carry};
use crate::config::Reasoning;
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
    /// A flood pause (429): no write before this.
    blocked_until: Option<Instant>,
    /// The platform's budget is spent for now: no draft before this.
    drafts_blocked_until: Option<Instant>,
    /// When the answer's first visible text arrived (the first message waits for
    /// `first_message_delay` after it).
    first_text_at: Option<Instant>,
    /// Text arrived that is not on screen yet.
    pending: bool,
    /// Whether any message went out.
    shown: bool,
    /// A reasoning model's thinking so far (never part of [`text`](Self::text)), and
    /// how much of it the user sees while it thinks.
    thinking: String,
    reasoning: Reasoning,
    /// When the thinking began (the final message says for how long).
    thinking_since: Option<Instant>,
    /// Where the answer starts in `text`: collapsed, the thinking is quoted before it.
    answer_from: usize,
    /// What runs while the model waits for its tools, shown until the answer begins.
    status: Option<String>,
    /// Where the current model round's text starts in `text`.
    round_from: usize,
}

/// What a user sees while the model thinks, before any answer.
const THINKING: &str = "💭 Thinking…";

/// Characters of the thinking shown live (`chat.reasoning = "collapsed"`).
const EXCERPT_CHARS: usize = 280;

/// Characters of the thinking quoted above the answer (collapsed): its end, so that a
/// long thought does not push the answer into a second message.
const QUOTE_CHARS: usize = 1200;

/// The end of `text`, at most `max` characters, from a word's start, marked "…" when cut.
fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(max);
    if skip == 0 {
        return text.to_string();
    }
    let end: String = text.chars().skip(skip).collect();
    let end = end.split_once(' ').map_or(end.as_str(), |(_, rest)| rest);
    format!("…{end}")
}

/// The thinking as a Markdown quote whose first line starts with "💭": Telegram shows it
/// as an expandable quote, Discord as small print, the web page as a closed `<details>`.
fn thought_quote(thinking: &str, took: Duration) -> String {
    let secs = took.as_secs();
    let mut quote = if secs >= 1 {
        format!("> 💭 Thought for {secs} s\n")
    } else {
        "> 💭 Thought\n".to_string()
    };
    for line in tail(thinking, QUOTE_CHARS).lines() {
        let line = line.trim_end();
        quote.push_str(if line.is_empty() { ">" } else { "> " });
        quote.push_str(line);
        quote.push('\n');
    }
    quote.push('\n');
    quote
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
            drafts_blocked_until: None,
            first_text_at: None,
            pending: false,
            shown: false,
            thinking: String::new(),
            reasoning: Reasoning::Hidden,
            thinking_since: None,
            answer_from: 0,
            status: None,
            round_from: 0,
        }
    }

    /// Shows thinking as `chat.reasoning` says (hidden unless set).
    pub fn with_reasoning(mut self, reasoning: Reasoning) -> Self {
        self.reasoning = reasoning;
        self
    }

    /// The model's thinking so far.
    pub fn thinking(&self) -> &str {
        &self.thinking
    }

    /// The text the current model round wrote (before it asked for tools).
    pub fn round_text(&self) -> &str {
        &self.text[self.round_from.max(self.answer_from)..]
    }

    /// The round is over; the next one's text starts here.
    pub fn end_round(&mut self) {
        self.round_from = self.text.len();
    }

    /// Shows what runs (tool calls) until the answer begins, paced like a draft.
    pub async fn status(&mut self, line: String) -> Result<(), AdapterError> {
        self.status = Some(line);
        if !self.text().trim().is_empty() {
            return Ok(());
        }
        self.before_the_answer().await
    }

    /// Adds streamed thinking; until the answer begins, the user sees that the model
    /// thinks (and, collapsed, the end of what it thinks), paced like any draft.
    pub async fn think(&mut self, piece: &str) -> Result<(), AdapterError> {
        self.thinking.push_str(piece);
        self.thinking_since.get_or_insert_with(Instant::now);
        if !self.text.is_empty() || piece.trim().is_empty() && self.first_text_at.is_some() {
            return Ok(());
        }
        self.before_the_answer().await
    }

    /// Something to show before the answer begins (thinking, tools running): shown like
    /// the answer's first text would be, once the first message's delay is over.
    async fn before_the_answer(&mut self) -> Result<(), AdapterError> {
        self.pending = true;
        self.first_text_at.get_or_insert_with(Instant::now);
        if self.due().is_some_and(|at| at > Instant::now()) {
            return Ok(());
        }
        self.flush(false).await
    }

    /// The draft shown while the model thinks.
    fn thinking_draft(&self) -> String {
        match self.reasoning {
            Reasoning::Hidden => THINKING.to_string(),
            Reasoning::Collapsed => {
                format!("{THINKING}\n\n{}", tail(&self.thinking, EXCERPT_CHARS))
            }
        }
    }

    /// The platform this reply goes to.
    pub fn adapter(&self) -> &'a dyn ChatAdapter {
        self.adapter
    }

    /// The whole answer so far (without the quoted thinking).
    pub fn text(&self) -> &str {
        &self.text[self.answer_from..]
    }

    /// Adds streamed text and shows it if the pacing allows.
    pub async fn push(&mut self, delta: &str) -> Result<(), AdapterError> {
        if self.reasoning == Reasoning::Collapsed
            && self.answer_from == 0
            && self.sealed == 0
            && !self.thinking.trim().is_empty()
            && self.text.trim().is_empty()
            && !delta.trim().is_empty()
        {
            // The answer begins: the thinking goes above it, quoted.
            let took = self.thinking_since.map_or(Duration::ZERO, |t| t.elapsed());
            self.text = thought_quote(&self.thinking, took);
            self.answer_from = self.text.len();
            self.text.push_str(delta.trim_start());
        } else {
            self.text.push_str(delta);
        }
        if !delta.is_empty() {
            self.pending = true;
        }
        if self.first_text_at.is_none() && !self.text.trim().is_empty() {
            self.first_text_at = Some(Instant::now());
        }
        // Most deltas arrive while no write could go out (the first message is still
        // gathering, the edit interval or a pause runs): skip the splitting and copying
        // until one could. `due` says when; overflow is sealed then.
        if self.due().is_some_and(|at| at > Instant::now()) {
            return Ok(());
        }
        self.flush(false).await
    }

    /// When text that is not on screen yet should be shown even if no more arrives: the
    /// first message once its delay is over, a draft once the interval or a pause ends.
    /// `None` when nothing waits.
    pub fn due(&self) -> Option<Instant> {
        if !self.pending || (!self.shown && self.first_text_at.is_none()) {
            return None;
        }
        Some(self.draft_ready_at(Instant::now()))
    }

    /// When a draft may go out: once the first message has gathered for its delay, the
    /// edit interval since the last write has passed, and no pause runs.
    fn draft_ready_at(&self, now: Instant) -> Instant {
        let base = match (&self.live, self.last_write) {
            (None, _) if !self.shown => self
                .first_text_at
                .map_or(now, |t| t + self.caps.first_message_delay),
            (Some(_), Some(last)) => last + self.caps.min_edit_interval,
            _ => now,
        };
        [self.blocked_until, self.drafts_blocked_until]
            .into_iter()
            .flatten()
            .fold(base, Instant::max)
    }

    /// Shows what is pending if it is [`due`](Self::due).
    pub async fn tick(&mut self) -> Result<(), AdapterError> {
        self.flush(false).await
    }

    /// Delivers the complete text, as soon as the platform allows: a final text never
    /// waits for the edit interval.
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
        let mut display = with_carry(self.carry.as_deref(), &self.text[self.sealed..]);
        if display.trim().is_empty() && self.sealed == 0 && !final_ {
            if let Some(status) = &self.status {
                display = status.clone();
            } else if !self.thinking.is_empty() {
                display = self.thinking_draft();
            }
        }
        if display.trim().is_empty() {
            // Nothing to show (yet): nothing is due either.
            self.pending = false;
            return Ok(());
        }
        if final_ {
            return self.show(display, Stage::Final, true).await;
        }
        match self.show(display, Stage::Draft, false).await {
            // A failed draft is only a missed frame: the final edit carries the text.
            Err(e @ AdapterError::Failed(_)) => {
                tracing::warn!(error = %chain(&e), "streaming edit failed");
                Ok(())
            }
            other => other,
        }
    }

    /// Shows `text` in the live message (sending one if there is none). A draft is
    /// skipped while the edit interval, a flood pause or a spent budget runs; a final
    /// text waits only for a flood pause.
    async fn show(&mut self, text: String, stage: Stage, force: bool) -> Result<(), AdapterError> {
        if let Some(live) = &self.live
            && live.shown == text
            && live.stage == stage
        {
            self.pending = false;
            return Ok(());
        }
        let mut attempts = 0;
        loop {
            let now = Instant::now();
            // A draft also waits for the first message's gathering and the edit
            // interval (a short answer is gathered so that one complete message may do).
            let ready_at = if force {
                self.blocked_until.unwrap_or(now)
            } else {
                self.draft_ready_at(now)
            };
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
                    self.drafts_blocked_until = None;
                    self.pending = false;
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
                // Deleted in the chat while the answer streams: the text goes on in a
                // new message (a draft at the next write, a final text now).
                Err(AdapterError::Gone) if self.live.is_some() => {
                    tracing::info!("the answer's message was deleted; going on in a new one");
                    self.live = None;
                    if !force {
                        return Ok(());
                    }
                }
                Err(AdapterError::NotNow(wait)) if !force => {
                    self.drafts_blocked_until = Some(Instant::now() + wait);
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
