//! What a chat turn reports to the metrics (names in [`crate::core::metrics`]): model
//! timings, answers in flight, the reply's overhead after the model, tokens charged and
//! model errors.

use std::time::Duration;

use crate::core::metrics::{
    ANSWERS_IN_FLIGHT, MODEL_DURATION, MODEL_ERRORS, MODEL_FIRST_TOKEN, REPLY_OVERHEAD,
    TOKENS_CHARGED,
};
use crate::core::model::LlmError;

/// Counts a model call in `gptbot_answers_in_flight` until dropped.
pub(super) struct InFlight;

impl InFlight {
    pub(super) fn start() -> InFlight {
        metrics::gauge!(ANSWERS_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(ANSWERS_IN_FLIGHT).decrement(1.0);
    }
}

pub(super) fn first_token(elapsed: Duration) {
    metrics::histogram!(MODEL_FIRST_TOKEN).record(elapsed.as_secs_f64());
}

pub(super) fn model_done(elapsed: Duration) {
    metrics::histogram!(MODEL_DURATION).record(elapsed.as_secs_f64());
}

pub(super) fn reply_overhead(elapsed: Duration) {
    metrics::histogram!(REPLY_OVERHEAD).record(elapsed.as_secs_f64());
}

pub(super) fn model_error(e: &LlmError) {
    metrics::counter!(MODEL_ERRORS, "kind" => e.kind()).increment(1);
}

/// Splits what the ledger charged into prompt and completion tokens as billed (the prompt
/// first), so the two counters always add up to the ledger's charges.
pub(super) fn charged(billed_prompt: u32, charged: i64) {
    let charged = charged.max(0) as u64;
    let prompt = charged.min(u64::from(billed_prompt));
    metrics::counter!(TOKENS_CHARGED, "kind" => "prompt").increment(prompt);
    metrics::counter!(TOKENS_CHARGED, "kind" => "completion").increment(charged - prompt);
}
