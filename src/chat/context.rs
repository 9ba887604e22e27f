//! Fitting a conversation into the model's context window: the newest turns that fit,
//! oldest dropped first, the system prompt always kept.

use crate::core::model::{ChatMessage, MessageRole};
use crate::core::session::{Role, Turn};
use crate::llm::tokens::{REPLY_PRIMING, TokenCounter};

/// The messages to send and what they cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub messages: Vec<ChatMessage>,
    /// Estimated prompt tokens, overheads included.
    pub tokens: u32,
    /// History turns left out to fit.
    pub dropped: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message too long: {needed} tokens with the answer, context is {limit}")]
pub struct TooLong {
    pub needed: u32,
    pub limit: u32,
}

/// Builds the prompt: system prompt, as much recent history as fits, the new user text;
/// `prompt + max_tokens <= context_tokens` holds for the result.
pub fn build_prompt(
    counter: &TokenCounter,
    system_prompt: &str,
    history: &[Turn],
    user_text: &str,
    max_tokens: u32,
    context_tokens: u32,
) -> Result<Prompt, TooLong> {
    let fixed = counter.message(system_prompt) + counter.message(user_text) + REPLY_PRIMING;
    let needed = fixed + max_tokens;
    if needed > context_tokens {
        return Err(TooLong {
            needed,
            limit: context_tokens,
        });
    }
    let mut budget = context_tokens - needed;
    let mut kept = 0;
    for turn in history.iter().rev() {
        let cost = turn.tokens + crate::llm::tokens::PER_MESSAGE_OVERHEAD;
        if cost > budget {
            break;
        }
        budget -= cost;
        kept += 1;
    }
    let start = history.len() - kept;
    let mut messages = Vec::with_capacity(kept + 2);
    messages.push(ChatMessage::new(MessageRole::System, system_prompt));
    let mut tokens = fixed;
    for turn in &history[start..] {
        tokens += turn.tokens + crate::llm::tokens::PER_MESSAGE_OVERHEAD;
        let role = match turn.role {
            Role::User => MessageRole::User,
            Role::Assistant => MessageRole::Assistant,
        };
        messages.push(ChatMessage::new(role, turn.content.clone()));
    }
    messages.push(ChatMessage::new(MessageRole::User, user_text));
    Ok(Prompt {
        messages,
        tokens,
        dropped: start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(counter: &TokenCounter, role: Role, text: &str) -> Turn {
        Turn {
            role,
            content: text.into(),
            tokens: counter.count(text),
        }
    }

    #[test]
    fn drops_oldest_turns_first_and_keeps_system_prompt() {
        let c = TokenCounter::for_model("gpt-4o", "auto").unwrap();
        let history: Vec<Turn> = (0..20)
            .map(|i| {
                let role = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                turn(
                    &c,
                    role,
                    &format!("message number {i} with a few more words in it"),
                )
            })
            .collect();
        let all = build_prompt(&c, "be brief", &history, "next?", 100, 100_000).unwrap();
        assert_eq!(all.dropped, 0);
        assert_eq!(all.messages.len(), 22);

        let limit = 100 + 200;
        let p = build_prompt(&c, "be brief", &history, "next?", 100, limit).unwrap();
        assert!(p.dropped > 0 && p.dropped < 20);
        assert!(p.tokens + 100 <= limit, "{} + 100 > {limit}", p.tokens);
        assert_eq!(
            p.messages[0],
            ChatMessage::new(MessageRole::System, "be brief")
        );
        assert_eq!(
            p.messages.last().unwrap(),
            &ChatMessage::new(MessageRole::User, "next?")
        );
        // The newest history turn is the one kept last.
        assert_eq!(
            p.messages[p.messages.len() - 2].content,
            history[19].content
        );
        // Adding the next-oldest turn would not have fitted.
        let next = history[p.dropped - 1].tokens + 3;
        assert!(p.tokens + next + 100 > limit);
    }

    #[test]
    fn a_message_that_cannot_fit_is_refused() {
        let c = TokenCounter::for_model("gpt-4o", "auto").unwrap();
        let err = build_prompt(&c, "sys", &[], &"word ".repeat(500), 100, 300).unwrap_err();
        assert_eq!(err.limit, 300);
        assert!(err.needed > 300);
    }
}
