//! [`ModelClient`] for OpenAI-compatible servers (OpenAI, Ollama, vLLM, llama.cpp, …):
//! streaming with `stream_options.include_usage` (the events read by [`super::sse`] in
//! the task that consumes the answer), a timeout on connecting, on the first token and
//! between chunks, and retries only before the first token.
//!
//! Retries: [`Transport`] retries HTTP 429 (a short `Retry-After`), 5xx and connection
//! errors before the response starts; on top of that this client retries a stream that
//! timed out or broke before any text arrived. Both up to `openai.max_retries`. Nothing
//! is retried once text has been produced. Every error answer is read leniently and
//! classified by [`super::errors`].

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::chunk::{Chunk, Stream};
use super::sse;
use super::transport::{SendError, Transport};
use crate::config::Settings;
use crate::core::model::{LlmError, ModelClient, ModelEvent, ModelRequest, ModelStream};

pub struct OpenAiClient {
    http: reqwest::Client,
    transport: Transport,
    /// `<base_url>/chat/completions`.
    url: String,
    api_key: Option<SecretString>,
    model: String,
    temperature: f64,
    max_tokens_field: &'static str,
    timeout: Duration,
    max_retries: u32,
}

/// The largest server-sent event read (a chunk is a few hundred bytes; a tool call's
/// arguments are kept up to 64 KiB in all).
const MAX_EVENT: usize = 1024 * 1024;

/// The HTTP client for the model server, with the configured timeouts.
pub fn http_client(settings: &Settings) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(settings.openai.timeout)
        .read_timeout(settings.openai.timeout)
        .user_agent(concat!("gptbot/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LlmError::Unexpected(anyhow::Error::new(e).context("building HTTP client")))
}

impl OpenAiClient {
    pub fn new(settings: &Settings, http: reqwest::Client) -> Result<OpenAiClient, LlmError> {
        let openai = &settings.openai;
        Ok(OpenAiClient {
            transport: Transport::new(http.clone(), openai.max_retries),
            http,
            url: format!(
                "{}/chat/completions",
                openai.base_url.as_str().trim_end_matches('/')
            ),
            api_key: openai.api_key.clone(),
            model: settings.model.name.clone(),
            temperature: settings.model.temperature,
            max_tokens_field: openai.max_tokens_field.as_str(),
            timeout: openai.timeout,
            max_retries: openai.max_retries,
        })
    }

    fn body<'a>(&'a self, request: &'a ModelRequest) -> Body<'a> {
        Body {
            model: request.model.as_deref().unwrap_or(&self.model),
            messages: &request.messages,
            temperature: self.temperature,
            max_tokens_field: self.max_tokens_field,
            max_tokens: request.max_tokens,
            tools: &request.tools,
        }
    }

    /// The request as sent: its body serialized once, straight from the prompt.
    fn request(&self, body: &Body<'_>) -> Result<reqwest::Request, LlmError> {
        let json = serde_json::to_vec(body).map_err(|e| {
            LlmError::Unexpected(anyhow::Error::new(e).context("writing the request"))
        })?;
        let mut request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(json);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        request.build().map_err(|e| {
            LlmError::Unexpected(anyhow::Error::new(e).context("building the request"))
        })
    }

    /// One attempt: opens the stream and waits for the first text (or the end), so the
    /// caller can retry anything that failed before a token was shown.
    async fn open(&self, body: &Body<'_>) -> Result<ModelStream, LlmError> {
        let response = tokio::time::timeout(self.timeout, self.transport.send(self.request(body)?))
            .await
            .map_err(|_| LlmError::Timeout(self.timeout))?
            .map_err(|e| map_send_error(e, self.timeout))?;

        let reader = Reader {
            response,
            sse: sse::Decoder::new(MAX_EVENT),
            pending: VecDeque::new(),
            stream: Stream::default(),
            idle: self.timeout,
            done: false,
        };
        let mut events = Box::pin(
            futures::stream::unfold(reader, |mut reader| async move {
                reader.next().await.map(|events| (events, reader))
            })
            .flat_map(futures::stream::iter)
            // Read to its end while waiting for the first text, then chained: fused.
            .fuse(),
        );

        let mut head = Vec::new();
        loop {
            match events.next().await {
                None => break,
                Some(Err(e)) => return Err(e),
                Some(Ok(event)) => {
                    // Thinking is the model answering too: from here on the user
                    // sees it, so nothing is retried.
                    let is_text = matches!(event, ModelEvent::Delta(_) | ModelEvent::Thinking(_));
                    head.push(Ok(event));
                    if is_text {
                        break;
                    }
                }
            }
        }
        Ok(Box::pin(futures::stream::iter(head).chain(events)))
    }
}

#[async_trait]
impl ModelClient for OpenAiClient {
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, LlmError> {
        let body = self.body(&request);
        let mut attempt = 0;
        loop {
            match self.open(&body).await {
                Ok(stream) => return Ok(stream),
                Err(e) if attempt < self.max_retries && retry_here(&e) => {
                    let delay = super::transport::backoff(attempt);
                    tracing::warn!(error = %crate::core::error::chain(&e), attempt = attempt + 1, ?delay, "model request failed before the first token, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The chat request as sent, written straight from the prompt: the history is serialized
/// once per attempt, with no JSON tree built and copied in between (a long history made
/// that a few per cent of a message's work).
struct Body<'a> {
    model: &'a str,
    messages: &'a [crate::core::model::ChatMessage],
    temperature: f64,
    /// `max_tokens`, or `max_completion_tokens` for servers that want it.
    max_tokens_field: &'a str,
    max_tokens: u32,
    tools: &'a [crate::core::model::ToolSpec],
}

impl Serialize for Body<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct StreamOptions {
            include_usage: bool,
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", self.model)?;
        map.serialize_entry("messages", self.messages)?;
        map.serialize_entry("stream", &true)?;
        map.serialize_entry(
            "stream_options",
            &StreamOptions {
                include_usage: true,
            },
        )?;
        map.serialize_entry("temperature", &self.temperature)?;
        map.serialize_entry(self.max_tokens_field, &self.max_tokens)?;
        if !self.tools.is_empty() {
            let tools: Vec<_> = self
                .tools
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        },
                    })
                })
                .collect();
            map.serialize_entry("tools", &tools)?;
        }
        map.end()
    }
}

/// Failures the transport does not already retry.
fn retry_here(e: &LlmError) -> bool {
    matches!(e, LlmError::Timeout(_) | LlmError::Interrupted(_))
}

fn map_send_error(e: SendError, timeout: Duration) -> LlmError {
    match e {
        SendError::Server(error) => error.classify(),
        SendError::Http(e) if e.is_timeout() => LlmError::Timeout(timeout),
        SendError::Http(e) => LlmError::Unavailable(crate::core::error::chain(&e).to_string()),
    }
}

/// An open completion stream: the body as it arrives, its events, and what the stream
/// keeps between chunks. Read in the task that consumes it (no forwarding task, no
/// channel between the socket and the answer).
struct Reader {
    response: reqwest::Response,
    sse: sse::Decoder,
    /// Events decoded and not yet read.
    pending: VecDeque<sse::Event>,
    stream: Stream,
    idle: Duration,
    done: bool,
}

impl Reader {
    /// The model events of the next chunk; `None` once the stream is over.
    async fn next(&mut self) -> Option<Vec<Result<ModelEvent, LlmError>>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                if event.data == "[DONE]" {
                    return self.end();
                }
                if event.kind == "keepalive" {
                    continue;
                }
                let events = match serde_json::from_str::<Chunk>(&event.data) {
                    Ok(chunk) => chunk.into_events(&mut self.stream),
                    Err(e) => vec![Err(LlmError::Interrupted(format!(
                        "unreadable chunk ({e}): {}",
                        event.data.chars().take(200).collect::<String>()
                    )))],
                };
                self.done = events.iter().any(Result::is_err);
                return Some(events);
            }
            let bytes = match tokio::time::timeout(self.idle, self.response.chunk()).await {
                Err(_) => return self.fail(LlmError::Timeout(self.idle)),
                Ok(Err(e)) if e.is_timeout() => return self.fail(LlmError::Timeout(self.idle)),
                Ok(Err(e)) => {
                    let error = LlmError::Interrupted(crate::core::error::chain(&e).to_string());
                    return self.fail(error);
                }
                Ok(Ok(None)) => return self.end(),
                Ok(Ok(Some(bytes))) => bytes,
            };
            if let Err(e) = self.sse.feed(&bytes, &mut self.pending) {
                return self.fail(LlmError::Interrupted(e.to_string()));
            }
        }
    }

    /// The end: text held back as a possible tag is what it seemed, and the tool calls
    /// asked for are complete.
    fn end(&mut self) -> Option<Vec<Result<ModelEvent, LlmError>>> {
        self.done = true;
        let rest: Vec<_> = self.stream.finish().into_iter().map(Ok).collect();
        (!rest.is_empty()).then_some(rest)
    }

    fn fail(&mut self, error: LlmError) -> Option<Vec<Result<ModelEvent, LlmError>>> {
        self.done = true;
        Some(vec![Err(error)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{ChatMessage, MessageRole};

    #[test]
    fn the_body_names_the_token_limit_as_configured_and_asks_for_usage() {
        let messages = vec![ChatMessage::new(MessageRole::User, "hi \"there\"")];
        let body = Body {
            model: "o4-mini",
            messages: &messages,
            temperature: 0.5,
            max_tokens_field: "max_completion_tokens",
            max_tokens: 64,
            tools: &[],
        };
        let sent: serde_json::Value = serde_json::to_value(&body).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({
                "model": "o4-mini",
                "messages": [{"role": "user", "content": "hi \"there\""}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.5,
                "max_completion_tokens": 64,
            })
        );
    }
}
