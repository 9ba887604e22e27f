//! [`ModelClient`] for OpenAI-compatible servers (OpenAI, Ollama, vLLM, llama.cpp, …)
//! through async-openai: streaming with `stream_options.include_usage`, a timeout on
//! connecting, on the first token and between chunks, and retries only before the first
//! token.
//!
//! Retries: [`Transport`] retries HTTP 429 (a short `Retry-After`), 5xx and connection
//! errors before the response starts; on top of that this client retries a stream that
//! timed out or broke before any text arrived. Both up to `openai.max_retries`. Nothing
//! is retried once text has been produced. Every error answer is read leniently and
//! classified by [`super::errors`].

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_trait::async_trait;
use futures::StreamExt;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::chunk::{Chunk, Stream};
use super::transport::{Transport, read_api_error};
use crate::config::Settings;
use crate::core::model::{LlmError, ModelClient, ModelEvent, ModelRequest, ModelStream};

pub struct OpenAiClient {
    client: Client<OpenAIConfig>,
    model: String,
    temperature: f64,
    max_tokens_field: &'static str,
    timeout: Duration,
    max_retries: u32,
}

/// The HTTP client for the model server, with the configured timeouts (async-openai has
/// none by default).
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
        // Both values are always set explicitly: OpenAIConfig would otherwise read
        // OPENAI_* variables behind the configuration's back.
        let config = OpenAIConfig::new()
            .with_api_base(openai.base_url.as_str().trim_end_matches('/'))
            .with_api_key(
                openai
                    .api_key
                    .as_ref()
                    .map(|k| k.expose_secret().to_string())
                    .unwrap_or_default(),
            );
        Ok(OpenAiClient {
            client: Client::with_config(config)
                .with_http_client(http.clone())
                .with_http_service(Transport::new(http, openai.max_retries)),
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

    /// One attempt: opens the stream and waits for the first text (or the end), so the
    /// caller can retry anything that failed before a token was shown.
    async fn open(&self, body: &Body<'_>) -> Result<ModelStream, LlmError> {
        let raw = tokio::time::timeout(
            self.timeout,
            self.client.chat().create_stream_byot::<_, Chunk>(body),
        )
        .await
        .map_err(|_| LlmError::Timeout(self.timeout))?
        .map_err(|e| map_error(e, self.timeout))?;

        let idle = self.timeout;
        let mut events = Box::pin(
            futures::stream::unfold(Some((raw, Stream::default())), move |state| async move {
                let (mut raw, mut stream) = state?;
                match tokio::time::timeout(idle, raw.next()).await {
                    Err(_) => Some((vec![Err(LlmError::Timeout(idle))], None)),
                    // The end: text held back as a possible tag is what it seemed.
                    Ok(None) => {
                        let rest: Vec<_> = stream.finish().into_iter().map(Ok).collect();
                        (!rest.is_empty()).then_some((rest, None))
                    }
                    Ok(Some(Err(e))) => Some((vec![Err(map_stream_error(e, idle))], None)),
                    Ok(Some(Ok(chunk))) => {
                        let events = chunk.into_events(&mut stream);
                        let failed = events.iter().any(Result::is_err);
                        Some((events, if failed { None } else { Some((raw, stream)) }))
                    }
                }
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

/// Failures async-openai's layer does not already retry.
fn retry_here(e: &LlmError) -> bool {
    matches!(e, LlmError::Timeout(_) | LlmError::Interrupted(_))
}

fn map_error(e: OpenAIError, timeout: Duration) -> LlmError {
    match e {
        OpenAIError::ApiError(api) => read_api_error(api).classify(),
        OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout(timeout),
        OpenAIError::Reqwest(e) => LlmError::Unavailable(crate::core::error::chain(&e).to_string()),
        OpenAIError::StreamError(e) => LlmError::Interrupted(e.to_string()),
        OpenAIError::JSONDeserialize(e, body) => LlmError::Unavailable(format!(
            "unreadable response ({e}): {}",
            body.chars().take(200).collect::<String>()
        )),
        other => LlmError::Unexpected(anyhow::Error::new(other)),
    }
}

fn map_stream_error(e: OpenAIError, timeout: Duration) -> LlmError {
    match e {
        OpenAIError::JSONDeserialize(e, body) => LlmError::Interrupted(format!(
            "unreadable chunk ({e}): {}",
            body.chars().take(200).collect::<String>()
        )),
        OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout(timeout),
        OpenAIError::Reqwest(e) => LlmError::Interrupted(e.to_string()),
        other => match map_error(other, timeout) {
            LlmError::Unavailable(s) => LlmError::Interrupted(s),
            mapped => mapped,
        },
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
