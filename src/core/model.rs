//! The model port: a streaming chat completion as a stream of [`ModelEvent`]s, and the
//! errors a model server can cause, each with a short message fit for a user.
//! The OpenAI-compatible client in `llm::openai` implements it.

use std::borrow::Cow;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    System,
    User,
    Assistant,
    /// A tool's result, answering one of the assistant's tool calls.
    Tool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: MessageRole,
    pub content: String,
    /// Images sent with the text (a user message to a vision model).
    pub images: Vec<Image>,
    /// The tools an assistant message asked for (its content may be empty).
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
}

/// A model's request to run a tool, in OpenAI's form: `arguments` is JSON text as the
/// model wrote it (it may not parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool offered to the model: its name, what it does, and its arguments' JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// An image part of a message, as a `data:` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub data_url: String,
    /// OpenAI's `detail`: "low", "high" or "auto".
    pub detail: &'static str,
}

impl ChatMessage {
    pub fn new(role: MessageRole, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
            images: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// The assistant's turn that asked for `calls` (sent back with their results).
    pub fn tool_request(content: impl Into<String>, calls: Vec<ToolCall>) -> ChatMessage {
        ChatMessage {
            tool_calls: calls,
            ..ChatMessage::new(MessageRole::Assistant, content)
        }
    }

    /// A tool's result for the call `id`.
    pub fn tool_result(id: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            tool_call_id: Some(id.into()),
            ..ChatMessage::new(MessageRole::Tool, content)
        }
    }
}

/// Text alone is a string; with images the content is a list of parts, text first.
impl Serialize for ChatMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", &self.role)?;
        if let Some(id) = &self.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        if !self.tool_calls.is_empty() {
            let calls: Vec<_> = self
                .tool_calls
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    })
                })
                .collect();
            map.serialize_entry("tool_calls", &calls)?;
        }
        if self.images.is_empty() {
            map.serialize_entry("content", &self.content)?;
        } else {
            let mut parts = vec![serde_json::json!({"type": "text", "text": self.content})];
            parts.extend(self.images.iter().map(|image| {
                serde_json::json!({
                    "type": "image_url",
                    "image_url": {"url": image.data_url, "detail": image.detail},
                })
            }));
            map.serialize_entry("content", &parts)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    /// The model to ask; `None`: the client's configured one.
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    /// Tools the model may call (none: a plain answer).
    pub tools: Vec<ToolSpec>,
}

/// Token usage as the server reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelEvent {
    /// A piece of the answer's text.
    Delta(String),
    /// A piece of a reasoning model's thinking: shown while it thinks, never part of
    /// the answer or the history (its tokens are completion tokens, charged).
    Thinking(String),
    /// The model asks for these tools (assembled from the streamed pieces, once the
    /// stream ended); it answers once given their results.
    ToolCalls(Vec<ToolCall>),
    /// The server's usage figures (the final chunk with `include_usage`).
    Usage(Usage),
}

pub type ModelStream = Pin<Box<dyn Stream<Item = Result<ModelEvent, LlmError>> + Send>>;

#[async_trait]
pub trait ModelClient: Send + Sync {
    /// Starts a streaming completion. Transient failures before the first token are
    /// retried inside; once a stream is returned, an error ends it.
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, LlmError>;
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("rate limited by the model server: {detail}")]
    RateLimited {
        detail: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    #[error("the model server's quota is exhausted: {0}")]
    OutOfCredit(String),
    #[error("context length exceeded: {}", .0.detail)]
    ContextTooLong(Overflow),
    #[error("the model server rejected the credentials (check openai.api_key): {0}")]
    Auth(String),
    #[error(
        "the model server does not serve what the bot asks for (check model.name and openai.base_url): {0}"
    )]
    Misconfigured(String),
    #[error("the model server rejected the request: {0}")]
    BadRequest(String),
    #[error("model server unavailable: {0}")]
    Unavailable(String),
    #[error("no answer from the model server within {0:?}")]
    Timeout(Duration),
    #[error("the answer stream broke off: {0}")]
    Interrupted(String),
    #[error("unexpected model client failure")]
    Unexpected(#[from] anyhow::Error),
}

/// A prompt the server could not fit, with the figures it gave (its own token count of
/// the request, and its context size) when it gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overflow {
    pub detail: String,
    pub requested: Option<u32>,
    pub limit: Option<u32>,
}

impl LlmError {
    /// What the user is told; the details stay in the log.
    pub fn user_message(&self) -> Cow<'static, str> {
        match self {
            LlmError::RateLimited {
                retry_after: Some(wait),
                ..
            } if *wait >= Duration::from_secs(2) => Cow::Owned(format!(
                "The model is busy right now. Please try again in about {} s (/retry).",
                wait.as_secs()
            )),
            LlmError::RateLimited { .. } => {
                "The model is busy right now. Please try again in a moment (/retry).".into()
            }
            LlmError::OutOfCredit(_) => {
                "The bot cannot reach its model (an operator needs to check its API account). Please try again later.".into()
            }
            LlmError::Auth(_) | LlmError::Misconfigured(_) => {
                "The bot is misconfigured and cannot reach its model; an operator has to fix it. Please try again later.".into()
            }
            LlmError::ContextTooLong(_) => {
                "That is too long for the model. Send a shorter message, or /reset to start a fresh conversation.".into()
            }
            LlmError::BadRequest(_) => {
                "The model server refused this request. Try rephrasing it, or /reset to start over.".into()
            }
            LlmError::Unavailable(_) | LlmError::Unexpected(_) => {
                "The model server is unavailable right now. Please try again later (/retry).".into()
            }
            LlmError::Timeout(_) => "The model took too long to answer. Please try again (/retry).".into(),
            LlmError::Interrupted(_) => {
                "The answer was cut off by the model server. Please try again (/retry).".into()
            }
        }
    }

    /// The `kind` label of `gptbot_model_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::OutOfCredit(_) => "out_of_credit",
            LlmError::ContextTooLong(_) => "context_overflow",
            LlmError::Auth(_) => "auth",
            LlmError::Misconfigured(_) => "misconfigured",
            LlmError::BadRequest(_) => "bad_request",
            LlmError::Unavailable(_) => "unavailable",
            LlmError::Timeout(_) => "timeout",
            LlmError::Interrupted(_) => "interrupted",
            LlmError::Unexpected(_) => "unexpected",
        }
    }

    /// A failure only the operator can fix (credentials, model name, base URL, account):
    /// logged as an error, not a warning.
    pub fn is_operator_error(&self) -> bool {
        matches!(
            self,
            LlmError::Auth(_) | LlmError::Misconfigured(_) | LlmError::OutOfCredit(_)
        )
    }
}
