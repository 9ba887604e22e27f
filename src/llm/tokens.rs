//! Local token counting with a real BPE tokenizer (tiktoken), for the context window, the
//! quota reservation estimate, and settlement when a server reports no usage.

use tiktoken_rs::CoreBPE;

/// Tokens OpenAI's chat format adds around each message, and once to prime the reply.
pub const PER_MESSAGE_OVERHEAD: u32 = 3;
pub const REPLY_PRIMING: u32 = 3;

#[derive(Clone, Copy)]
pub struct TokenCounter {
    bpe: &'static CoreBPE,
    name: &'static str,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenCounter({})", self.name)
    }
}

impl TokenCounter {
    /// `tokenizer` is "auto" (chosen from the model name; o200k_base for models tiktoken
    /// does not know, such as local Llama or Qwen models), "o200k_base" or "cl100k_base".
    pub fn for_model(model: &str, tokenizer: &str) -> Result<TokenCounter, String> {
        match tokenizer {
            "auto" => Ok(match tiktoken_rs::bpe_for_model(model) {
                Ok(bpe) => TokenCounter { bpe, name: "auto" },
                Err(_) => TokenCounter {
                    bpe: tiktoken_rs::o200k_base_singleton(),
                    name: "o200k_base",
                },
            }),
            "o200k_base" => Ok(TokenCounter {
                bpe: tiktoken_rs::o200k_base_singleton(),
                name: "o200k_base",
            }),
            "cl100k_base" => Ok(TokenCounter {
                bpe: tiktoken_rs::cl100k_base_singleton(),
                name: "cl100k_base",
            }),
            other => Err(format!(
                "unknown tokenizer `{other}` (use auto, o200k_base or cl100k_base)"
            )),
        }
    }

    /// Tokens of a bare text.
    pub fn count(&self, text: &str) -> u32 {
        self.bpe.encode_ordinary(text).len() as u32
    }

    /// Tokens one chat message costs in a prompt.
    pub fn message(&self, text: &str) -> u32 {
        self.count(text) + PER_MESSAGE_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_real_tokens_not_characters() {
        let c = TokenCounter::for_model("gpt-4o-mini", "auto").unwrap();
        assert_eq!(c.count("hello world"), 2);
        // Characters/4 would say 11 here.
        assert!(c.count(&"tokenization ".repeat(4)) <= 10);
        let local = TokenCounter::for_model("llama3.1:8b", "auto").unwrap();
        assert_eq!(local.count("hello world"), 2);
        assert!(TokenCounter::for_model("x", "sentencepiece").is_err());
    }
}
