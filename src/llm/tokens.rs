//! Token counting for the context window, the quota reservation, and settlement when a
//! server reports no usage — with the model's own tokenizer where possible.
//!
//! `model.tokenizer` picks the method: `tiktoken:<encoding>` (exact for OpenAI models),
//! `server` (the server's `POST /tokenize`, as llama.cpp and vLLM offer: exact for any
//! model they serve, cached per text), `estimate` (a conservative count from the text's
//! characters), or `auto`: tiktoken when it knows the model name, else the server if it
//! answers a probe, else the estimate. tiktoken on a non-OpenAI model undercounts badly
//! (gemma: ~3× on digits), which let too-long prompts through and came short on holds.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Encoding, Tokenizer};
use serde_json::{Value, json};

use super::bpe::CompactBpe;

/// Tokens OpenAI's chat format adds around each message, and once to prime the reply.
pub const PER_MESSAGE_OVERHEAD: u32 = 3;
pub const REPLY_PRIMING: u32 = 3;
/// What other chat templates add around a message (gemma's `<start_of_turn>user\n…
/// <end_of_turn>\n` is 5, Llama 3's header 5, ChatML 5): rounded up.
pub const TEMPLATE_OVERHEAD: u32 = 8;

/// How long a tokenize call may take before the estimate is used instead.
const TOKENIZE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct TokenCounter {
    method: Arc<Method>,
}

/// Texts longer than this (bytes) are counted on the blocking pool (about 1 ms of CPU).
const BLOCKING_COUNT_BYTES: usize = 16 * 1024;

enum Method {
    Tiktoken {
        bpe: &'static CompactBpe,
        name: &'static str,
        /// Chosen from an OpenAI model name: the count is the server's.
        exact: bool,
    },
    Server(Server),
    Estimate,
}

struct Server {
    http: reqwest::Client,
    url: String,
    /// The body shape the server understood: llama.cpp's `content` or vLLM's `prompt`.
    vllm: bool,
    model: String,
    cache: moka::sync::Cache<u64, u32>,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenCounter({})", self.describe())
    }
}

/// Where the server's tokenize endpoint is: beside `/v1`, at the server's root.
pub fn tokenize_url(base_url: &str) -> String {
    format!("{}/tokenize", server_root(base_url))
}

/// The server's root: the base URL without its `/v1` (llama.cpp's own endpoints sit
/// there).
pub fn server_root(base_url: &str) -> &str {
    let base = base_url.trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base)
}

impl TokenCounter {
    /// The counters that need no server: a tiktoken encoding, `estimate`, and `auto`
    /// for an OpenAI model name. `None` for `server` and for `auto` with another model:
    /// see [`TokenCounter::resolve`].
    pub fn local(model: &str, tokenizer: Tokenizer) -> Option<TokenCounter> {
        let tiktoken = |encoding: Encoding, name, exact| {
            let bpe = match encoding {
                Encoding::O200kBase => CompactBpe::o200k(),
                Encoding::Cl100kBase => CompactBpe::cl100k(),
            };
            Some(TokenCounter {
                method: Arc::new(Method::Tiktoken { bpe, name, exact }),
            })
        };
        match tokenizer {
            Tokenizer::Auto => Encoding::for_model(model)
                .and_then(|e| tiktoken(e, "tiktoken (from the model name)", true)),
            Tokenizer::Tiktoken(Encoding::O200kBase) => {
                tiktoken(Encoding::O200kBase, "tiktoken:o200k_base", false)
            }
            Tokenizer::Tiktoken(Encoding::Cl100kBase) => {
                tiktoken(Encoding::Cl100kBase, "tiktoken:cl100k_base", false)
            }
            Tokenizer::Estimate => Some(TokenCounter::estimate()),
            Tokenizer::Server => None,
        }
    }

    /// tiktoken for an OpenAI model name (o200k_base for another); tests and tools that
    /// know their model use it.
    pub fn for_model(model: &str) -> TokenCounter {
        TokenCounter::local(model, Tokenizer::Auto).unwrap_or_else(|| {
            TokenCounter::local(model, Tokenizer::Tiktoken(Encoding::O200kBase))
                .expect("a tiktoken encoding is local")
        })
    }

    pub fn estimate() -> TokenCounter {
        TokenCounter {
            method: Arc::new(Method::Estimate),
        }
    }

    /// The counter `model.tokenizer` asks for. `server` is used even when the probe
    /// fails (the server may come up later; each failed call falls back to the
    /// estimate); `auto` uses the server only if it answers the probe now.
    pub async fn resolve(
        model: &str,
        tokenizer: Tokenizer,
        base_url: &str,
        http: reqwest::Client,
    ) -> TokenCounter {
        if let Some(counter) = TokenCounter::local(model, tokenizer) {
            return counter;
        }
        let url = tokenize_url(base_url);
        let probe = probe(&http, &url, model).await;
        let vllm = match (probe, tokenizer) {
            (Ok(vllm), _) => vllm,
            (Err(e), Tokenizer::Server) => {
                tracing::warn!(error = %e, "the model server's tokenize endpoint did not answer; estimating until it does");
                false
            }
            (Err(e), _) => {
                tracing::info!(reason = %e, "no tokenize endpoint on the model server; token counts are a conservative estimate");
                return TokenCounter::estimate();
            }
        };
        TokenCounter {
            method: Arc::new(Method::Server(Server {
                http,
                url,
                vllm,
                model: model.to_string(),
                cache: moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_idle(Duration::from_secs(3600))
                    .build(),
            })),
        }
    }

    /// Which method counts, for logs and `config check`.
    pub fn describe(&self) -> String {
        match &*self.method {
            Method::Tiktoken { name, .. } => (*name).to_string(),
            Method::Server(s) => format!("the model server ({})", s.url),
            Method::Estimate => "estimate".into(),
        }
    }

    /// Tokens of a bare text.
    pub async fn count(&self, text: &str) -> u32 {
        match &*self.method {
            // Counting a long text (a file's contents) takes milliseconds: off the
            // scheduler thread, which serves every chat.
            Method::Tiktoken { bpe, .. } if text.len() > BLOCKING_COUNT_BYTES => {
                let (bpe, owned): (&'static CompactBpe, String) = (bpe, text.to_owned());
                match tokio::task::spawn_blocking(move || bpe.count(&owned)).await {
                    Ok(n) => n as u32,
                    Err(_) => estimate(text),
                }
            }
            Method::Tiktoken { bpe, .. } => bpe.count(text) as u32,
            Method::Estimate => estimate(text),
            Method::Server(server) => server.count(text).await,
        }
    }

    /// The reservation margin when `model.reserve_margin` is unset: none for a count
    /// that is the server's own, 10 % otherwise.
    pub fn default_margin(&self) -> f64 {
        match &*self.method {
            Method::Tiktoken { exact: true, .. } | Method::Server(_) => 0.0,
            _ => 0.1,
        }
    }

    /// What the chat format adds around each message.
    pub fn overhead(&self) -> u32 {
        match &*self.method {
            Method::Tiktoken { .. } => PER_MESSAGE_OVERHEAD,
            _ => TEMPLATE_OVERHEAD,
        }
    }

    /// Tokens one chat message costs in a prompt.
    pub async fn message(&self, text: &str) -> u32 {
        self.count(text).await + self.overhead()
    }
}

impl Server {
    async fn count(&self, text: &str) -> u32 {
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        let key = hasher.finish();
        if let Some(n) = self.cache.get(&key) {
            return n;
        }
        match tokenize(&self.http, &self.url, &self.model, text, self.vllm).await {
            Ok(n) => {
                self.cache.insert(key, n);
                n
            }
            Err(e) => {
                tracing::debug!(error = %e, "tokenize failed; estimating this text");
                estimate(text)
            }
        }
    }
}

/// Why the server's tokenize endpoint gave no count.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
struct TokenizeError(String);

/// Tries llama.cpp's body shape, then vLLM's; `Ok(true)` when vLLM's worked.
async fn probe(http: &reqwest::Client, url: &str, model: &str) -> Result<bool, TokenizeError> {
    match tokenize(http, url, model, "probe", false).await {
        Ok(_) => Ok(false),
        Err(first) => tokenize(http, url, model, "probe", true)
            .await
            .map(|_| true)
            .map_err(|second| TokenizeError(format!("{first}; {second}"))),
    }
}

async fn tokenize(
    http: &reqwest::Client,
    url: &str,
    model: &str,
    text: &str,
    vllm: bool,
) -> Result<u32, TokenizeError> {
    let body = if vllm {
        json!({ "model": model, "prompt": text, "add_special_tokens": false })
    } else {
        json!({ "content": text, "add_special": false })
    };
    let response = http
        .post(url)
        .json(&body)
        .timeout(TOKENIZE_TIMEOUT)
        .send()
        .await
        .map_err(|e| TokenizeError(format!("POST {url}: {}", crate::core::error::chain(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(TokenizeError(format!(
            "POST {url}: HTTP {}",
            status.as_u16()
        )));
    }
    let value: Value = response
        .json()
        .await
        .map_err(|e| TokenizeError(format!("POST {url}: unreadable answer ({e})")))?;
    value["count"]
        .as_u64()
        .or_else(|| value["tokens"].as_array().map(|t| t.len() as u64))
        .map(|n| n as u32)
        .ok_or_else(|| TokenizeError(format!("POST {url}: no `tokens` in the answer")))
}

/// A count that real tokenizers rarely exceed: a token per digit, symbol and non-Latin
/// character (SentencePiece models split digits one by one), and one per three letters.
pub fn estimate(text: &str) -> u32 {
    let (mut singles, mut letters) = (0u32, 0u32);
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            letters += 1;
        } else if c.is_ascii_whitespace() {
            continue;
        } else if c.is_ascii() || !c.is_alphabetic() {
            singles += 1;
        } else {
            // Accented Latin letters merge with their word; other scripts often do not.
            singles += if (c as u32) < 0x250 { 0 } else { 1 };
            letters += u32::from((c as u32) < 0x250);
        }
    }
    singles + letters.div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_real_tokens_not_characters() {
        let c = TokenCounter::for_model("gpt-4o-mini");
        assert_eq!(c.count("hello world").await, 2);
        assert!(c.count(&"tokenization ".repeat(4)).await <= 10);
        assert!(TokenCounter::local("llama3.1:8b", Tokenizer::Auto).is_none());
        let gpt4 = TokenCounter::local("gpt-4-turbo", Tokenizer::Auto).unwrap();
        assert_eq!(gpt4.describe(), "tiktoken (from the model name)");
        assert_eq!(gpt4.count("hello world").await, 2);
        assert_eq!(
            TokenCounter::local("x", Tokenizer::Tiktoken(Encoding::Cl100kBase))
                .unwrap()
                .overhead(),
            PER_MESSAGE_OVERHEAD
        );
    }

    #[test]
    fn the_estimate_is_conservative_for_digits_and_words() {
        // gemma-3 tokenizes 600 digits as 600+ tokens; tiktoken says ~200.
        assert!(estimate(&"1234567890".repeat(60)) >= 600);
        // 90 short English words are about 100 tokens; the estimate is above that.
        let words = "the quick brown fox jumps over the lazy dog ".repeat(10);
        assert!(estimate(&words) >= 110, "{}", estimate(&words));
        assert!(estimate("日本語のテキスト") >= 8);
    }

    #[test]
    fn tokenize_sits_beside_v1() {
        assert_eq!(
            tokenize_url("http://127.0.0.1:8080/v1/"),
            "http://127.0.0.1:8080/tokenize"
        );
        assert_eq!(tokenize_url("http://h/api"), "http://h/api/tokenize");
    }
}
