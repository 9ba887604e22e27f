//! The reply pipeline of one chat turn, each step a small function: take the user's
//! in-flight slot and rate-limit token → build the prompt from the session → reserve
//! tokens → stream the model's answer into the chat → settle (or refund) and record the
//! turn → deliver the final text (the last three in `ending`).

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

use super::answers::Answers;
use super::ending::{Asked, Ending};
use super::notices::{self, say};
use super::prompt::Refused;
use super::reply::ReplyStream;
use super::retry::Again;
use super::{Outcome, Refusal, measure};
use crate::core::adapter::{AdapterError, ChatAdapter, ReplyTarget};
use crate::core::error::chain;
use crate::core::event::IncomingEvent;
use crate::core::model::{Image, LlmError, ModelEvent, ModelRequest};

/// What a turn answers.
#[derive(Clone, Copy)]
pub(super) enum Question<'a> {
    /// The user's message (with the event's files, pictures, recordings and quote).
    New(&'a str),
    /// The conversation's last question, asked anew (/retry): the one left unanswered,
    /// else the last exchange's — left out of the prompt and replaced in the history by
    /// the new one.
    Again,
}

impl Answers {
    pub(super) async fn chat(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        text: &str,
        admitted: bool,
        tools: bool,
    ) -> Outcome {
        self.turn(event, adapter, target, Question::New(text), admitted, tools)
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
        tools: bool,
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
        if let Err(refusal) = self.check_rate(&user).await {
            say(adapter, target, &refusal.0).await;
            return Outcome::Refused(Refusal::RateLimited);
        }
        let key = event.session_key();
        let payer = match self.payer(event).await {
            Ok(payer) => payer,
            Err(e) => return Refused::Quota(e).tell(adapter, target).await,
        };
        // Files (documents, pictures) are fetched and read only for a user who can pay
        // for an answer; a recording is checked against its own cost.
        if matches!(question, Question::New(_))
            && event.attachments.iter().any(|a| a.audio_seconds.is_none())
            && let Err(refused) = self.afford_reading(&payer, &key).await
        {
            return refused.tell(adapter, target).await;
        }
        // Read once the slot is taken: the exchange that just finished is recorded.
        let (asking, again) = match question {
            Question::New(text) => match self.asking(event, adapter, target, text).await {
                Ok(asking) => (asking, None),
                Err(sentence) => {
                    say(adapter, target, &sentence.0).await;
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
                say(adapter, target, &sentence.0).await;
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
        let reservation = match self.reserve(&payer, prompt.tokens, &loaded.model).await {
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
            replaces: again,
            tools_used: String::new(),
        };
        let mut reply =
            ReplyStream::new(adapter, target.clone()).with_reasoning(self.settings.reasoning);
        let offered = if tools {
            self.offered_to(&loaded.model)
        } else {
            Vec::new()
        };
        let mut request = ModelRequest {
            model: Some(loaded.model.name.clone()),
            messages: std::mem::take(&mut prompt.messages),
            max_tokens: self.settings.max_tokens,
            tools: offered.iter().map(|o| o.spec.clone()).collect(),
        };
        let mut ending = self
            .stream_answer(
                sendable(&mut request, !offered.is_empty()),
                &mut reply,
                &mut slot.cancelled,
                target,
            )
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
                    request.messages = std::mem::take(&mut shorter.messages);
                    self.stream_answer(
                        sendable(&mut request, !offered.is_empty()),
                        &mut reply,
                        &mut slot.cancelled,
                        target,
                    )
                    .await
                }
                Err(sentence) => Ending::Refused(sentence.0),
            };
        }
        let (reservation, ending) = if matches!(ending, Ending::ToolCalls(..)) {
            let round = super::tools::Round {
                payer: &payer,
                request,
                offered,
                reply: &mut reply,
                cancel: &mut slot.cancelled,
                target,
            };
            match self
                .tool_rounds(round, reservation, &mut asked, ending)
                .await
            {
                Ok(done) => done,
                Err(outcome) => return outcome,
            }
        } else {
            (reservation, ending)
        };
        // The model is done: from now on a new message from this user waits for this
        // turn to be recorded (the slot is freed when `finish` returns) instead of being
        // told "still answering".
        slot.finishing();
        self.finish(reservation, reply, ending, &asked, target)
            .await
    }

    /// Streams the answer into the chat until it ends, fails or is cancelled.
    pub(super) async fn stream_answer(
        &self,
        request: ModelRequest,
        reply: &mut ReplyStream<'_>,
        cancel: &mut watch::Receiver<bool>,
        target: &ReplyTarget,
    ) -> Ending {
        let _in_flight = measure::InFlight::start();
        let started = tokio::time::Instant::now();
        let mut stream = match self.open_stream(request, cancel, &mut *reply, target).await {
            Ok(Some(stream)) => {
                measure::first_token(started.elapsed());
                stream
            }
            Ok(None) if self.restarting.is_cancelled() => return Ending::Restarting,
            Ok(None) => return Ending::Cancelled,
            Err(e) => return Ending::Failed(e),
        };
        let mut usage = None;
        let mut calls = Vec::new();
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
                    if let Some(ending) = after_write(reply.tick().await) {
                        return ending;
                    }
                    continue;
                }
            };
            match event {
                None => {
                    measure::model_done(started.elapsed());
                    if !calls.is_empty() {
                        return Ending::ToolCalls(calls, usage);
                    }
                    return Ending::Complete(usage);
                }
                Some(Ok(ModelEvent::ToolCalls(asked))) => calls = asked,
                Some(Err(e)) => return Ending::Failed(e),
                Some(Ok(ModelEvent::Usage(u))) => usage = Some(u),
                Some(Ok(ModelEvent::Delta(delta))) => {
                    if let Some(ending) = after_write(reply.push(&delta).await) {
                        return ending;
                    }
                }
                Some(Ok(ModelEvent::Thinking(thought))) => {
                    if let Some(ending) = after_write(reply.think(&thought).await) {
                        return ending;
                    }
                }
            }
        }
    }
}

/// What a failed write of streamed text means for the turn: a chat that cannot be
/// written to ends it; anything else is a missed frame (the final text follows), logged.
fn after_write(written: Result<(), AdapterError>) -> Option<Ending> {
    match written {
        Ok(()) => None,
        Err(AdapterError::Unreachable(why)) => Some(Ending::Unreachable(why)),
        Err(e) => {
            tracing::warn!(error = %chain(&e), "could not show streamed text");
            None
        }
    }
}

/// The request to send: a copy when tool rounds may follow (they extend it), else the
/// request itself, its messages moved out (no copy of the prompt on the common path).
fn sendable(request: &mut ModelRequest, keep: bool) -> ModelRequest {
    if keep {
        return request.clone();
    }
    ModelRequest {
        model: request.model.clone(),
        messages: std::mem::take(&mut request.messages),
        max_tokens: request.max_tokens,
        tools: std::mem::take(&mut request.tools),
    }
}

/// The prompt with the images on its last message (the user's).
fn with_pictures(mut prompt: super::context::Prompt, pictures: &[Image]) -> super::context::Prompt {
    if let Some(last) = prompt.messages.last_mut() {
        last.images = pictures.to_vec();
    }
    prompt
}
