//! Fitting a conversation into the model's context window: the system prompt and the
//! newest user message always, then as many of the newest whole exchanges (a question
//! with its answer) as fit. An answer is never sent without its question, so the prompt
//! always alternates user/assistant as strict chat templates (gemma, Mistral) require.
//! After a server said the prompt did not fit, [`refit`] trims harder with its figures.

use crate::core::model::{ChatMessage, MessageRole, Overflow};
use crate::core::session::{Role, Turn};
use crate::llm::tokens::REPLY_PRIMING;

/// What a prompt is made of, with token counts from the model's tokenizer.
#[derive(Debug, Clone, Copy)]
pub struct Fitting<'a> {
    pub system: &'a str,
    pub system_tokens: u32,
    pub history: &'a [Turn],
    pub user: &'a str,
    pub user_tokens: u32,
    /// What the chat format adds around each message.
    pub overhead: u32,
    pub max_tokens: u32,
}

/// The messages to send and what they cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub messages: Vec<ChatMessage>,
    /// Estimated prompt tokens, overheads included.
    pub tokens: u32,
    /// History turns left out to fit.
    pub dropped: usize,
    /// History turns sent.
    pub kept: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message too long: {needed} tokens with the answer, context is {limit}")]
pub struct TooLong {
    pub needed: u32,
    pub limit: u32,
}

impl Fitting<'_> {
    /// The system prompt, the new message and the reply's priming: sent whatever fits.
    fn fixed(&self) -> u32 {
        self.system_tokens + self.user_tokens + 2 * self.overhead + REPLY_PRIMING
    }
}

/// Builds the prompt; `prompt + max_tokens <= context_tokens` holds for the result.
pub fn build_prompt(f: &Fitting<'_>, context_tokens: u32) -> Result<Prompt, TooLong> {
    let fixed = f.fixed();
    let needed = fixed + f.max_tokens;
    if needed > context_tokens {
        return Err(TooLong {
            needed,
            limit: context_tokens,
        });
    }
    let mut budget = context_tokens - needed;
    // Whole exchanges, newest first; a turn without its partner is left out.
    let mut exchanges: Vec<(&Turn, &Turn)> = Vec::new();
    let mut end = f.history.len();
    while end >= 2 {
        let (question, answer) = (&f.history[end - 2], &f.history[end - 1]);
        if question.role != Role::User || answer.role != Role::Assistant {
            end -= 1;
            continue;
        }
        let cost = question.tokens + answer.tokens + 2 * f.overhead;
        if cost > budget {
            break;
        }
        budget -= cost;
        exchanges.push((question, answer));
        end -= 2;
    }
    let mut messages = Vec::with_capacity(2 * exchanges.len() + 2);
    messages.push(ChatMessage::new(MessageRole::System, f.system));
    let mut tokens = fixed;
    for (question, answer) in exchanges.iter().rev() {
        tokens += question.tokens + answer.tokens + 2 * f.overhead;
        messages.push(ChatMessage::new(
            MessageRole::User,
            question.content.clone(),
        ));
        messages.push(ChatMessage::new(
            MessageRole::Assistant,
            match &answer.tools {
                Some(tools) => format!(
                    "[Tools used for this answer: {tools}]\n\n{}",
                    answer.content
                ),
                None => answer.content.clone(),
            },
        ));
    }
    messages.push(ChatMessage::new(MessageRole::User, f.user));
    let kept = 2 * exchanges.len();
    Ok(Prompt {
        messages,
        tokens,
        dropped: f.history.len() - kept,
        kept,
    })
}

/// A shorter prompt after the server refused `sent` as too long, or why none can be sent.
///
/// With the server's figures, our counts are scaled by how much it counted more than we
/// did and fitted to its context size (with 10 % to spare); without them, half the
/// history that was sent goes. Refused (`TooLong`, in the server's terms where known)
/// when the newest message alone does not fit.
pub fn refit(f: &Fitting<'_>, sent: &Prompt, overflow: &Overflow) -> Result<Prompt, TooLong> {
    // How many of the server's tokens one of ours is (never below 1).
    let scale = match overflow.requested {
        Some(requested) if requested > sent.tokens => f64::from(requested) / f64::from(sent.tokens),
        _ => 1.0,
    };
    let in_server_terms = |ours: u32| (f64::from(ours) * scale).ceil() as u32;
    let too_long = || TooLong {
        needed: in_server_terms(f.fixed()) + f.max_tokens,
        limit: overflow.limit.unwrap_or(sent.tokens + f.max_tokens),
    };
    if sent.kept == 0 {
        return Err(too_long());
    }
    let history_sent = sent.tokens - f.fixed();
    let context = match overflow.limit {
        Some(limit) => {
            let for_prompt = f64::from(limit.saturating_sub(f.max_tokens)) * 0.9 / scale;
            (for_prompt as u32).min(sent.tokens.saturating_sub(1)) + f.max_tokens
        }
        None => f.fixed() + history_sent / 2 + f.max_tokens,
    };
    build_prompt(f, context).map_err(|_| too_long())
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
