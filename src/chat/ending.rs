//! How a turn ends, however it ended (complete, cancelled, failed, refused): what is
//! charged, what the history keeps (or the question /retry will ask), and what the user
//! sees — in [`Answers::finish`], the one place that decides all three.

use super::answers::Answers;
use super::notices::{self, say};
use super::reply::ReplyStream;
use super::{Outcome, Refusal, measure};
use crate::config::ModelChoice;
use crate::core::adapter::ReplyTarget;
use crate::core::error::chain;
use crate::core::event::SessionKey;
use crate::core::metrics::{QUOTA_DB, timed};
use crate::core::model::{LlmError, Usage};
use crate::core::session::{Role, Turn};
use crate::quota::Reservation;

/// How the model call of a turn ended.
pub(super) enum Ending {
    /// The stream ended normally, with the server's usage figures if it sent them.
    Complete(Option<Usage>),
    /// The model asked for tools (see `tools`); never reaches [`Answers::finish`].
    ToolCalls(Vec<crate::core::model::ToolCall>, Option<Usage>),
    /// The user sent /cancel.
    Cancelled,
    /// The process is shutting down and the grace period ran out.
    Restarting,
    Failed(LlmError),
    /// Nothing was sent that the server could take (the message alone is too long).
    Refused(String),
    /// The chat cannot be written to any more (blocked, removed): the stream was stopped
    /// (dropping it closes the connection, so the server stops generating too).
    Unreachable(String),
}

/// What the turn asked: needed to charge and record it.
pub(super) struct Asked<'a> {
    pub(super) key: SessionKey,
    pub(super) text: &'a str,
    pub(super) prompt_tokens: u32,
    pub(super) user_tokens: u32,
    /// Its price turns model tokens into ledger tokens.
    pub(super) model: &'a ModelChoice,
    /// The exchange this one takes the place of in the history (/retry).
    pub(super) replaces: Option<&'a [Turn]>,
    /// The tools the answer used, summarised for the history (empty: none).
    pub(super) tools_used: String,
}

impl Answers {
    /// Ends a turn, however it ended: charges what was used (the server's usage, or the
    /// prompt plus the text produced — also when the stream was cut or stopped after some
    /// text), or refunds everything when nothing was produced; records
    /// the exchange in the history; and delivers the final text or tells what happened.
    /// The books (ledger and history) and the final write run side by side, so the
    /// final text is not held back by the database, and both are done before the
    /// user's in-flight slot is freed.
    pub(super) async fn finish(
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
        let thought = !reply.thinking().is_empty();
        let reported = matches!(
            ending,
            Ending::Complete(Some(_)) | Ending::ToolCalls(_, Some(_))
        );
        // The answer is tokenized here only when the server did not report its usage
        // (or the answer was stopped), or to keep a reasoning model's thinking out of the
        // history's count: counting is the one part of a turn that grows with the
        // answer's length.
        let answer_tokens = if shown && (!reported || thought) {
            tracing::debug!("counting the answer's tokens");
            self.counter.count(&answer).await
        } else {
            0
        };
        // Thinking is completion the server billed: charged, never recorded.
        let thinking_tokens = if thought && !reported {
            self.counter.count(reply.thinking()).await
        } else {
            0
        };
        let completion = answer_tokens + thinking_tokens;
        let billed_prompt = match &ending {
            Ending::Complete(Some(u)) | Ending::ToolCalls(_, Some(u)) => u.prompt_tokens,
            _ => asked.prompt_tokens,
        };
        if let Ending::Failed(e) = &ending {
            measure::model_error(e);
        }
        // (what the history keeps of the answer, what is charged)
        let local = || {
            (
                answer_tokens,
                i64::from(asked.prompt_tokens) + i64::from(completion),
            )
        };
        let adapter = reply.adapter();
        // What is charged, what is recorded, what the user sees, and the outcome.
        let (used, record, delivery, outcome): (_, _, Delivery<'_>, _) = match ending {
            Ending::Complete(usage) | Ending::ToolCalls(_, usage) if shown => {
                let (tokens, used) = match usage {
                    Some(u) if thought => (answer_tokens, i64::from(u.total())),
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
            Ending::Complete(usage) | Ending::ToolCalls(_, usage) => (
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
            // Stopped while it only thought: the thinking was billed, so it is charged.
            Ending::Cancelled | Ending::Restarting => (
                thought.then(|| local().1),
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
            Ending::Unreachable(why) => {
                tracing::info!(%why, "the chat cannot be written to; the answer was stopped");
                // Charged as the provider billed it: the prompt and the text produced.
                (Some(local().1), None, Delivery::Nothing, Outcome::Failed)
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
        let used = used.map(|tokens| asked.model.ledger_tokens(tokens));
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
                Delivery::Nothing => {}
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
        let (tools, tools_tokens) = if asked.tools_used.is_empty() {
            (None, 0)
        } else {
            let tokens = self.counter.count(&asked.tools_used).await + self.counter.overhead();
            (Some(asked.tools_used.clone()), tokens)
        };
        let turns = [
            Turn {
                role: Role::User,
                content: asked.text.to_string(),
                tokens: asked.user_tokens,
                tools: None,
            },
            Turn {
                role: Role::Assistant,
                content: answer,
                tokens: answer_tokens + tools_tokens,
                tools,
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
    /// Nothing: the chat cannot be written to.
    Nothing,
}
