//! The reply pipeline of one chat turn, each step a small function: take the user's
//! in-flight slot and rate-limit token → build the prompt from the session → reserve
//! tokens → stream the model's answer into the chat → settle (or refund) and record the
//! turn → deliver the final text. [`Conversation::finish`] is the one place where every
//! way a turn can end (complete, cancelled, failed) is charged and recorded.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

use super::notices::{self, say};
use super::prompt::Refused;
use super::reply::ReplyStream;
use super::retry::Again;
use super::{Conversation, Outcome, Refusal, measure};
use crate::config::ModelChoice;
use crate::core::adapter::{ChatAdapter, ReplyTarget};
use crate::core::error::chain;
use crate::core::event::{IncomingEvent, SessionKey};
use crate::core::metrics::{QUOTA_DB, timed};
use crate::core::model::{Image, LlmError, ModelEvent, ModelRequest, Usage};
use crate::core::session::{Role, Turn};
use crate::quota::Reservation;

/// How the model call of a turn ended.
enum Ending {
    /// The stream ended normally, with the server's usage figures if it sent them.
    Complete(Option<Usage>),
    /// The user sent /cancel.
    Cancelled,
    /// The process is shutting down and the grace period ran out.
    Restarting,
    Failed(LlmError),
    /// Nothing was sent that the server could take (the message alone is too long).
    Refused(String),
}

/// What a turn answers.
#[derive(Clone, Copy)]
pub(super) enum Question<'a> {
    /// The user's message (with the event's files, pictures, recordings and quote).
    New(&'a str),
    /// The conversation's last question, answered anew (/retry): its exchange is left
    /// out of the prompt and replaced in the history by the new one.
    Again,
}

/// What the turn asked: needed to charge and record it.
struct Asked<'a> {
    key: SessionKey,
    text: &'a str,
    prompt_tokens: u32,
    user_tokens: u32,
    /// Its price turns model tokens into ledger tokens.
    model: &'a ModelChoice,
    /// Ledger tokens charged on top (a transcription).
    extra: i64,
    /// The exchange this one takes the place of in the history (/retry).
    replaces: Option<&'a [Turn]>,
}

impl Conversation {
    pub(super) async fn chat(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        text: &str,
        admitted: bool,
    ) -> Outcome {
        self.turn(event, adapter, target, Question::New(text), admitted)
            .await
    }

    /// A chat turn, for a new message or (/retry) the conversation's last question.
    pub(super) async fn turn(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        question: Question<'_>,
        admitted: bool,
    ) -> Outcome {
        if let Question::New(text) = question
            && text.trim().is_empty()
            && event.attachments.is_empty()
        {
            say(adapter, target, notices::EMPTY_PROMPT).await;
            return Outcome::Replied;
        }
        if !admitted {
            say(adapter, target, notices::RESTARTING).await;
            return Outcome::Refused(Refusal::Restarting);
        }
        let user = event.quota_user();
        let Some(mut slot) = self.in_flight.begin(&user).await else {
            say(adapter, target, notices::STILL_ANSWERING).await;
            return Outcome::Refused(Refusal::Busy);
        };
        if let Err(refusal) = self.check_rate(&user) {
            say(adapter, target, &refusal).await;
            return Outcome::Refused(Refusal::RateLimited);
        }
        let key = event.session_key();
        // Read once the slot is taken: the exchange that just finished is recorded.
        let (asking, again) = match question {
            Question::New(text) => match self.asking(event, adapter, target, text).await {
                Ok(asking) => (asking, None),
                Err(sentence) => {
                    say(adapter, target, &sentence).await;
                    return Outcome::Refused(Refusal::File);
                }
            },
            Question::Again => match self.again(&key).await {
                Ok(again) => (
                    super::retry::asking_again(&again),
                    match again {
                        Again::Exchange(last) => Some(last),
                        Again::Unanswered(_) => None,
                    },
                ),
                Err(refused) => return refused.tell(adapter, target).await,
            },
        };
        let again = again.as_deref();
        let text = asking.text.as_str();
        let mut loaded = match self.load(&key, text).await {
            Ok(loaded) => loaded,
            Err(refused) => return refused.tell(adapter, target).await,
        };
        if let Some(last) = again {
            loaded.leave_out(last);
        }
        let pictures = match self.pictures(adapter, &loaded.model, &asking.images).await {
            Ok((pictures, tokens)) => {
                loaded.image_tokens = tokens;
                pictures
            }
            Err(sentence) => {
                say(adapter, target, &sentence).await;
                return Outcome::Refused(Refusal::File);
            }
        };
        let mut prompt = match self.prompt_for(&loaded, text) {
            Ok(prompt) => with_pictures(prompt, &pictures),
            Err(refused) => return refused.tell(adapter, target).await,
        };
        // A turn in line for a model call (`limits.max_concurrent_answers`) holds no tokens.
        let _permit = match self.wait_turn(adapter, target, &mut slot.cancelled).await {
            Some(permit) => permit,
            None if self.restarting.is_cancelled() => {
                say(adapter, target, notices::RESTARTING).await;
                return Outcome::Refused(Refusal::Restarting);
            }
            None => {
                say(adapter, target, notices::STOPPED_EARLY).await;
                return Outcome::Cancelled {
                    reserved: 0,
                    charged: 0,
                };
            }
        };
        let reservation = match self
            .reserve(&user, &prompt, &loaded.model, asking.extra)
            .await
        {
            Ok(r) => r,
            Err(refused) => {
                // Once tokens are granted, /retry asks it.
                if matches!(refused, Refused::Say(Refusal::Quota, _)) && again.is_none() {
                    self.remember_unanswered(&key, &asking.recorded).await;
                }
                return refused.tell(adapter, target).await;
            }
        };
        let mut asked = Asked {
            key,
            text: &asking.recorded,
            prompt_tokens: prompt.tokens,
            user_tokens: loaded.user_tokens,
            model: &loaded.model,
            extra: asking.extra,
            replaces: again,
        };
        let mut reply = ReplyStream::new(adapter, target.clone());
        let request = ModelRequest {
            model: Some(loaded.model.name.clone()),
            messages: std::mem::take(&mut prompt.messages),
            max_tokens: self.settings.max_tokens,
        };
        let mut ending = self
            .stream_answer(request, &mut reply, &mut slot.cancelled, target)
            .await;
        // A server whose context the prompt did not fit (its tokenizer counts more than
        // ours, or its context is smaller than configured): one invisible retry with a
        // shorter history, the same hold covering it.
        if let Ending::Failed(LlmError::ContextTooLong(overflow)) = &ending
            && reply.text().is_empty()
        {
            ending = match self.shorter_prompt(&loaded, text, &prompt, overflow) {
                Ok(shorter) => {
                    let mut shorter = with_pictures(shorter, &pictures);
                    asked.prompt_tokens = shorter.tokens;
                    let request = ModelRequest {
                        model: Some(loaded.model.name.clone()),
                        messages: std::mem::take(&mut shorter.messages),
                        max_tokens: self.settings.max_tokens,
                    };
                    self.stream_answer(request, &mut reply, &mut slot.cancelled, target)
                        .await
                }
                Err(sentence) => Ending::Refused(sentence),
            };
        }
        // The model is done: from now on a new message from this user waits for this
        // turn to be recorded (the slot is freed when `finish` returns) instead of being
        // told "still answering".
        slot.finishing();
        self.finish(reservation, reply, ending, &asked, target)
            .await
    }

    /// Streams the answer into the chat until it ends, fails or is cancelled.
    async fn stream_answer(
        &self,
        request: ModelRequest,
        reply: &mut ReplyStream<'_>,
        cancel: &mut watch::Receiver<bool>,
        target: &ReplyTarget,
    ) -> Ending {
        let _in_flight = measure::InFlight::start();
        let started = tokio::time::Instant::now();
        let mut stream = match self.open_stream(request, cancel, reply, target).await {
            Ok(Some(stream)) => {
                measure::first_token(started.elapsed());
                stream
            }
            Ok(None) if self.restarting.is_cancelled() => return Ending::Restarting,
            Ok(None) => return Ending::Cancelled,
            Err(e) => return Ending::Failed(e),
        };
        let mut usage = None;
        // Text waiting to be shown (the first message after its delay, a draft after
        // the interval) goes out on time even while the model pauses. One timer, moved
        // only when the deadline changes: not a new one for each of the answer's chunks.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<tokio::time::Instant> = None;
        // Made once, not for each chunk: each registers a waiter where it is made.
        let cancelled = cancel.changed();
        tokio::pin!(cancelled);
        let restarting = self.restarting.cancelled();
        tokio::pin!(restarting);
        loop {
            let due = reply.due();
            if let Some(at) = due
                && armed != Some(at)
            {
                timer.as_mut().reset(at);
            }
            armed = due;
            let event = tokio::select! {
                event = stream.next() => event,
                // Dropping the stream closes the connection: the server stops too.
                _ = &mut cancelled => return Ending::Cancelled,
                () = &mut restarting => return Ending::Restarting,
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    if let Err(e) = reply.tick().await {
                        tracing::warn!(error = %chain(&e), "could not show streamed text");
                    }
                    continue;
                }
            };
            match event {
                None => {
                    measure::model_done(started.elapsed());
                    return Ending::Complete(usage);
                }
                Some(Err(e)) => return Ending::Failed(e),
                Some(Ok(ModelEvent::Usage(u))) => usage = Some(u),
                Some(Ok(ModelEvent::Delta(delta))) => {
                    if let Err(e) = reply.push(&delta).await {
                        tracing::warn!(error = %chain(&e), "could not show streamed text");
                    }
                }
            }
        }
    }

    /// Ends a turn, however it ended: charges what was used (the server's usage, or the
    /// prompt plus the text produced — also when the stream was cut or stopped after some
    /// text), or refunds everything when nothing was produced; records
    /// the exchange in the history; and delivers the final text or tells what happened.
    /// The books (ledger and history) and the final write run side by side, so the
    /// final text is not held back by the database, and both are done before the
    /// user's in-flight slot is freed.
    async fn finish(
        &self,
        reservation: Reservation,
        reply: ReplyStream<'_>,
        ending: Ending,
        asked: &Asked<'_>,
        target: &ReplyTarget,
    ) -> Outcome {
        let model_done = tokio::time::Instant::now();
        let reserved = reservation.amount();
        let answer = reply.text().to_string();
        let shown = !answer.trim().is_empty();
        // The answer is tokenized here only when the server did not report its usage
        // (or the answer was stopped): counting it is the one part of a turn that grows
        // with the answer's length.
        let completion = if shown && !matches!(ending, Ending::Complete(Some(_))) {
            tracing::debug!("no usage from the server for this answer, counting it");
            self.counter.count(&answer).await
        } else {
            0
        };
        let billed_prompt = match &ending {
            Ending::Complete(Some(u)) => u.prompt_tokens,
            _ => asked.prompt_tokens,
        };
        if let Ending::Failed(e) = &ending {
            measure::model_error(e);
        }
        let local = || {
            (
                completion,
                i64::from(asked.prompt_tokens) + i64::from(completion),
            )
        };
        let adapter = reply.adapter();
        // What is charged, what is recorded, what the user sees, and the outcome.
        let (used, record, delivery, outcome): (_, _, Delivery<'_>, _) = match ending {
            Ending::Complete(usage) if shown => {
                let (tokens, used) = match usage {
                    Some(u) => (u.completion_tokens, i64::from(u.total())),
                    None => local(),
                };
                (
                    Some(used),
                    Some(tokens),
                    Delivery::Final(Box::new(reply), None),
                    Outcome::Answered {
                        reserved,
                        charged: 0,
                    },
                )
            }
            Ending::Complete(usage) => (
                Some(usage.map_or_else(|| local().1, |u| i64::from(u.total()))),
                None,
                Delivery::Say(notices::EMPTY_ANSWER.into()),
                Outcome::Answered {
                    reserved,
                    charged: 0,
                },
            ),
            Ending::Cancelled | Ending::Restarting if shown => {
                let (completion, counted) = local();
                let note = match ending {
                    Ending::Restarting => notices::STOPPED_RESTARTING,
                    _ => "(stopped)",
                };
                (
                    Some(counted),
                    Some(completion),
                    Delivery::Final(Box::new(reply), Some(note.into())),
                    Outcome::Cancelled {
                        reserved,
                        charged: 0,
                    },
                )
            }
            Ending::Cancelled | Ending::Restarting => (
                None,
                None,
                Delivery::Say(
                    match ending {
                        Ending::Restarting => notices::RESTARTING,
                        _ => notices::STOPPED_EARLY,
                    }
                    .into(),
                ),
                Outcome::Cancelled {
                    reserved,
                    charged: 0,
                },
            ),
            Ending::Failed(e) if shown => {
                // Cut mid-answer: the text produced was billed by the provider and is
                // shown, so it is charged (like /cancel) and kept in the history.
                tracing::warn!(error = %chain(&e), "model stream cut mid-answer; charging the part produced");
                let (completion, counted) = local();
                (
                    Some(counted),
                    Some(completion),
                    Delivery::Final(
                        Box::new(reply),
                        Some(format!("⚠️ (cut off) {}", e.user_message())),
                    ),
                    Outcome::Failed,
                )
            }
            Ending::Refused(sentence) => (
                None,
                None,
                Delivery::Say(sentence),
                Outcome::Refused(Refusal::TooLong),
            ),
            Ending::Failed(e) => {
                if e.is_operator_error() {
                    tracing::error!(error = %chain(&e), "the model server refuses the bot's configuration; an operator has to fix it");
                } else {
                    tracing::warn!(error = %chain(&e), "model call failed");
                }
                (
                    None,
                    None,
                    Delivery::Say(e.user_message().into_owned()),
                    Outcome::Failed,
                )
            }
        };
        let used = used.map(|tokens| asked.model.ledger_tokens(tokens) + asked.extra);
        let books = async {
            let charged = self.settle_or_refund(reservation, used).await;
            if let Some(tokens) = record {
                self.record(asked, answer, tokens).await;
            } else if asked.replaces.is_none() {
                // Nothing to keep in the history: /retry asks the question again. (A
                // failed /retry of an exchange leaves that exchange to retry.)
                self.remember_unanswered(&asked.key, asked.text).await;
            }
            charged
        };
        let show = async {
            match delivery {
                Delivery::Final(reply, note) => {
                    deliver(*reply, note.as_deref()).await;
                    measure::reply_overhead(model_done.elapsed());
                }
                Delivery::Say(text) => say(adapter, target, &text).await,
            }
        };
        let (charged, ()) = tokio::join!(books, show);
        measure::charged(billed_prompt, charged);
        match outcome {
            Outcome::Answered { reserved, .. } => Outcome::Answered { reserved, charged },
            Outcome::Cancelled { reserved, .. } => Outcome::Cancelled { reserved, charged },
            other => other,
        }
    }

    /// Settles the reservation at `used` tokens, or refunds it all with `None`. Returns
    /// what was charged.
    async fn settle_or_refund(&self, reservation: Reservation, used: Option<i64>) -> i64 {
        let Some(used) = used else {
            if let Err(e) = timed(QUOTA_DB, "refund", self.quota.refund(reservation)).await {
                tracing::error!(error = %chain(&e), "refund failed");
            }
            return 0;
        };
        match timed(QUOTA_DB, "settle", self.quota.settle(reservation, used)).await {
            Ok(settlement) => settlement.charged,
            Err(e) => {
                tracing::error!(error = %chain(&e), used, "settlement failed; the hold is returned when its lease runs out");
                used
            }
        }
    }

    /// Appends the user's text and the answer (complete or partial) to the history (in
    /// place of the exchange a /retry answered anew).
    async fn record(&self, asked: &Asked<'_>, answer: String, answer_tokens: u32) {
        let turns = [
            Turn {
                role: Role::User,
                content: asked.text.to_string(),
                tokens: asked.user_tokens,
            },
            Turn {
                role: Role::Assistant,
                content: answer,
                tokens: answer_tokens,
            },
        ];
        let recorded = match asked.replaces {
            Some(last) => self.sessions.replace_last(&asked.key, last, &turns).await,
            None => self.sessions.append(&asked.key, &turns).await,
        };
        if let Err(e) = recorded {
            tracing::error!(error = %chain(&e), "could not record the turn in the history");
        }
    }
}

/// The prompt with the images on its last message (the user's).
fn with_pictures(mut prompt: super::context::Prompt, pictures: &[Image]) -> super::context::Prompt {
    if let Some(last) = prompt.messages.last_mut() {
        last.images = pictures.to_vec();
    }
    prompt
}

/// Delivers the final text of a reply, with a note after it (stopped, failed).
async fn deliver(mut reply: ReplyStream<'_>, note: Option<&str>) {
    if let Some(note) = note {
        let _ = reply.push(&format!("\n\n{note}")).await;
    }
    if let Err(e) = reply.finish().await {
        tracing::warn!(error = %chain(&e), "could not deliver the final answer");
    }
}

/// What the user sees when a turn ends.
enum Delivery<'a> {
    /// The reply's final text, with a note after it (stopped, failed).
    Final(Box<ReplyStream<'a>>, Option<String>),
    /// A notice instead (nothing was shown).
    Say(String),
}
