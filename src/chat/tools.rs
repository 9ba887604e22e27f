//! A model's tool calls within one answer. A model that may call tools is offered them;
//! when it asks for some, this round's model usage is settled, each call is held at its
//! price before it runs (a user whose balance does not cover it gets the answer without
//! it: the model is told the call was refused) and settled after — refunded if the tool
//! failed — the calls run in parallel while the answer's message says what runs, their
//! results go back to the model, and the next round is held before it is asked. After
//! `tools.max_rounds` the model is asked once more without tools, so it answers.

use futures::future::join_all;

use super::Outcome;
use super::answers::Answers;
use super::ending::{Asked, Ending};
use super::reply::ReplyStream;
use crate::config::ModelChoice;
use crate::core::adapter::ReplyTarget;
use crate::core::error::chain;
use crate::core::model::{ChatMessage, ModelRequest, ToolCall};
use crate::core::tools::Offered;
use crate::quota::{Payer, QuotaError, Reservation};

/// What the model round trips need besides the conversation's parts.
pub(super) struct Round<'r, 'a> {
    /// Who pays: the asker, or their group's wallet first.
    pub(super) payer: &'r Payer,
    pub(super) request: ModelRequest,
    pub(super) offered: Vec<Offered>,
    pub(super) reply: &'r mut ReplyStream<'a>,
    pub(super) cancel: &'r mut tokio::sync::watch::Receiver<bool>,
    pub(super) target: &'r ReplyTarget,
}

impl Answers {
    /// The tools offered to `model`: none unless it may call tools.
    pub(super) fn offered_to(&self, model: &ModelChoice) -> Vec<Offered> {
        match &self.tools {
            Some(tools)
                if model.tools
                    || self.settings.default_tools && model.name == self.settings.model =>
            {
                tools.offered()
            }
            _ => Vec::new(),
        }
    }

    /// Runs the model ↔ tool round trips that follow `ending`; returns the last round's
    /// ending with the hold that covers it, or the outcome of a round that could not be
    /// held (the user was told).
    pub(super) async fn tool_rounds(
        &self,
        mut round: Round<'_, '_>,
        mut reservation: Reservation,
        asked: &mut Asked<'_>,
        mut ending: Ending,
    ) -> Result<(Reservation, Ending), Outcome> {
        let mut rounds = 0;
        loop {
            let Ending::ToolCalls(calls, usage) = ending else {
                return Ok((reservation, ending));
            };
            if round.request.tools.is_empty() {
                // Asked for tools it was not offered: that is its answer.
                return Ok((reservation, Ending::Complete(usage)));
            }
            let said = round.reply.round_text().to_string();
            let mut asked_for = said.clone();
            for call in &calls {
                asked_for.push_str(&call.name);
                asked_for.push_str(&call.arguments);
            }
            let asked_tokens = self.counter.count(&asked_for).await;
            let used = usage.map_or(
                i64::from(asked.prompt_tokens) + i64::from(asked_tokens),
                |u| i64::from(u.total()),
            );
            if let Err(e) = self
                .quota
                .settle(reservation, asked.model.ledger_tokens(used))
                .await
            {
                tracing::error!(error = %chain(&e), "settling a tool round failed; the hold is returned when its lease runs out");
            }
            let results = self
                .run_calls(round.payer, &calls, &round.offered, round.reply)
                .await;
            let mut added = asked_tokens + self.counter.overhead();
            for result in &results {
                added += self.counter.count(&result.content).await + self.counter.overhead();
            }
            summarise(&mut asked.tools_used, &calls, &results);
            round
                .request
                .messages
                .push(ChatMessage::tool_request(said, calls));
            round.request.messages.extend(results);
            rounds += 1;
            if rounds >= self.settings.max_tool_rounds {
                round.request.tools.clear();
            }
            asked.prompt_tokens += added;
            reservation = match self
                .reserve(round.payer, asked.prompt_tokens, asked.model)
                .await
            {
                Ok(r) => r,
                Err(refused) => {
                    round.reply.end_round();
                    // Nothing is kept as an exchange: /retry asks the question again.
                    if asked.replaces.is_none() {
                        self.remember_unanswered(&asked.key, asked.text).await;
                    }
                    return Err(refused.tell(round.reply.adapter(), round.target).await);
                }
            };
            round.reply.end_round();
            let request = round.request.clone();
            ending = self
                .stream_answer(request, round.reply, round.cancel, round.target)
                .await;
        }
    }

    /// Runs `calls` in parallel, each held at its price first; one result message per
    /// call, in order.
    async fn run_calls(
        &self,
        payer: &Payer,
        calls: &[ToolCall],
        offered: &[Offered],
        reply: &mut ReplyStream<'_>,
    ) -> Vec<ChatMessage> {
        let lines: Vec<String> = calls.iter().map(|c| progress(c, offered)).collect();
        if let Err(e) = reply.status(lines.join("\n")).await {
            tracing::debug!(error = %chain(&e), "could not show the tools running");
        }
        let running = join_all(calls.iter().map(|call| async move {
            ChatMessage::tool_result(&call.id, self.run_call(payer, call, offered).await)
        }));
        tokio::pin!(running);
        // What runs is shown once due (the first message gathers for its delay first).
        loop {
            let due = reply.due();
            tokio::select! {
                results = &mut running => return results,
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    if let Err(e) = reply.tick().await {
                        tracing::debug!(error = %chain(&e), "could not show the tools running");
                    }
                }
            }
        }
    }

    async fn run_call(&self, payer: &Payer, call: &ToolCall, offered: &[Offered]) -> String {
        let (Some(tools), Some(offer)) = (
            &self.tools,
            offered.iter().find(|o| o.spec.name == call.name),
        ) else {
            return format!("Error: there is no tool named {:?}.", call.name);
        };
        let named = format!("tool:{}", call.name);
        let hold = match self
            .quota
            .reserve_paid(payer, offer.price, Some(&named))
            .await
        {
            Ok(hold) => hold,
            Err(QuotaError::Exhausted { remaining, .. }) => {
                tracing::info!(user = %payer.member, tool = %call.name, remaining, "tool call refused: balance too low");
                return format!(
                    "Error: this call was refused: the user's balance ({remaining} tokens) does not cover its price ({} tokens). Answer without it.",
                    offer.price
                );
            }
            Err(QuotaError::Limit(sentence)) => {
                return format!("Error: this call was refused: {sentence} Answer without it.");
            }
            Err(QuotaError::Wallet(short)) => {
                return format!(
                    "Error: this call was refused: the group's wallet cannot pay for it ({short}). Answer without it."
                );
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), "holding a tool call's price failed");
                return "Error: the tool could not be run right now. Answer without it.".into();
            }
        };
        match tools.call(&call.name, &call.arguments).await {
            Ok(result) => {
                if let Err(e) = self.quota.settle(hold, offer.price).await {
                    tracing::error!(error = %chain(&e), "settling a tool call failed; the hold is returned when its lease runs out");
                }
                metrics::counter!(crate::core::metrics::TOOL_CALLS, "tool" => call.name.clone(), "outcome" => "ok").increment(1);
                result
            }
            Err(e) => {
                tracing::warn!(tool = %call.name, error = %chain(&e), "tool call failed");
                if let Err(e) = self.quota.refund(hold).await {
                    tracing::error!(error = %chain(&e), "refunding a failed tool call failed");
                }
                metrics::counter!(crate::core::metrics::TOOL_CALLS, "tool" => call.name.clone(), "outcome" => "failed").increment(1);
                format!("Error: {e}")
            }
        }
    }
}

/// Characters of a call's arguments, of its result, and of a whole answer's summary
/// kept in the history: enough to refer back to, never a whole web page.
const SUMMARY_ARGUMENTS: usize = 200;
const SUMMARY_RESULT: usize = 400;
const SUMMARY_MAX: usize = 2000;

/// Adds `calls` and their results to the summary the history keeps with the answer.
fn summarise(summary: &mut String, calls: &[ToolCall], results: &[ChatMessage]) {
    let cut = |text: &str, max: usize| -> String {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match text.char_indices().nth(max) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text,
        }
    };
    for (call, result) in calls.iter().zip(results) {
        if summary.chars().count() >= SUMMARY_MAX {
            summary.push_str(" …");
            return;
        }
        if !summary.is_empty() {
            summary.push_str("; ");
        }
        summary.push_str(&format!(
            "{}({}) → {}",
            call.name,
            cut(&call.arguments, SUMMARY_ARGUMENTS),
            cut(&result.content, SUMMARY_RESULT)
        ));
    }
}

/// What the user sees while a call runs: its label, and what it was asked when that is a
/// short query.
fn progress(call: &ToolCall, offered: &[Offered]) -> String {
    let label = offered
        .iter()
        .find(|o| o.spec.name == call.name)
        .map_or_else(|| format!("🔧 {}", call.name), |o| o.label.clone());
    let query = serde_json::from_str::<serde_json::Value>(&call.arguments)
        .ok()
        .and_then(|args| {
            args.get("query")
                .and_then(|q| q.as_str())
                .map(str::to_string)
        });
    match query {
        Some(q) if !q.trim().is_empty() => {
            let q: String = q.chars().take(80).collect();
            format!("{label}: {q}")
        }
        _ => label,
    }
}
