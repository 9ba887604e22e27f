//! Reading a model server's error answer, whatever its shape, and classifying it.
//!
//! OpenAI-compatible servers agree on the happy path and on little else when they fail:
//! OpenAI and Azure send `{"error":{"message","type","param","code":"…"}}`, llama.cpp the
//! same with a numeric `code`, vLLM a flat `{"object":"error","message",…,"code":400}`,
//! Ollama sometimes `{"error":"…"}`, TGI `{"error":"…","error_type":"validation"}`, and a
//! proxy in front of any of them an HTML page. [`ServerError::read`] takes the status and
//! body and finds the message; [`ServerError::classify`] turns it into an [`LlmError`],
//! recognising a context overflow in each server's wording and keeping its token figures.

use std::time::Duration;

use serde_json::Value;

use crate::core::model::{LlmError, Overflow};

/// A model server's error answer, read leniently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub status: u16,
    /// The server's own words (an HTML page reduced to its title or text).
    pub message: String,
    /// `code` as text, whether the server sent a string or a number.
    pub code: Option<String>,
    /// `type` (or TGI's `error_type`).
    pub kind: Option<String>,
    /// From the `Retry-After` header.
    pub retry_after: Option<Duration>,
}

/// How much of a server's message is kept: enough for any real error, not a whole page.
const MESSAGE_LIMIT: usize = 400;

impl ServerError {
    pub fn read(status: u16, body: &[u8], retry_after: Option<Duration>) -> ServerError {
        let text = String::from_utf8_lossy(body);
        let mut error = ServerError {
            status,
            message: String::new(),
            code: None,
            kind: None,
            retry_after,
        };
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(value) => error.read_json(&value),
            Err(_) if looks_like_html(&text) => error.message = html_text(&text),
            Err(_) => error.message = squash(&text),
        }
        if error.message.is_empty() {
            error.message = format!("HTTP {status} with no message");
        }
        error.message = crate::core::text::ellipsis(&error.message, MESSAGE_LIMIT);
        error
    }

    /// An error object inside a stream (`data: {"error": …}`), with no HTTP status of its
    /// own: a numeric `code` is taken as the status, 500 otherwise.
    pub fn from_event(value: &Value) -> ServerError {
        let mut error = ServerError {
            status: 500,
            message: String::new(),
            code: None,
            kind: None,
            retry_after: None,
        };
        error.read_json(&serde_json::json!({ "error": value }));
        if let Some(status) = error.code.as_deref().and_then(|c| c.parse::<u16>().ok())
            && (400..600).contains(&status)
        {
            error.status = status;
        }
        if error.message.is_empty() {
            error.message = crate::core::text::ellipsis(&value.to_string(), MESSAGE_LIMIT);
        }
        error
    }

    fn read_json(&mut self, value: &Value) {
        let inner = match value.get("error") {
            Some(Value::Object(_)) => &value["error"],
            Some(Value::String(message)) => {
                self.message = message.clone();
                self.kind = text_of(value.get("error_type").or(value.get("type")));
                self.code = text_of(value.get("code"));
                return;
            }
            _ => value,
        };
        self.message = ["message", "msg", "detail", "error"]
            .iter()
            .find_map(|key| match inner.get(*key) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            })
            .unwrap_or_default();
        self.code = text_of(inner.get("code"));
        self.kind = text_of(inner.get("type").or(inner.get("error_type")));
    }

    /// The class of failure, which decides what the user is told and what is retried.
    pub fn classify(self) -> LlmError {
        let detail = self.to_string();
        let code = self.code.as_deref().unwrap_or_default();
        let kind = self.kind.as_deref().unwrap_or_default();
        if let Some(overflow) = self.overflow() {
            return LlmError::ContextTooLong(overflow);
        }
        if code == "insufficient_quota" || kind == "insufficient_quota" {
            return LlmError::OutOfCredit(detail);
        }
        match self.status {
            429 => LlmError::RateLimited {
                detail,
                retry_after: self.retry_after,
            },
            401 | 403 => LlmError::Auth(detail),
            404 if mentions_model(&self.message) || code == "model_not_found" => {
                LlmError::Misconfigured(detail)
            }
            404 => LlmError::Misconfigured(format!(
                "{detail} (is openai.base_url right? it usually ends in /v1)"
            )),
            500..=599 => LlmError::Unavailable(detail),
            _ => LlmError::BadRequest(detail),
        }
    }

    /// A context overflow in any major server's words (or a 413), with the figures the
    /// server gave.
    fn overflow(&self) -> Option<Overflow> {
        let text = self.message.to_lowercase();
        let code = self.code.as_deref().unwrap_or_default();
        let kind = self.kind.as_deref().unwrap_or_default();
        let named = ["context_length_exceeded", "exceed_context_size_error"]
            .iter()
            .any(|c| code == *c || kind == *c);
        let worded = OVERFLOW_WORDING.iter().any(|w| text.contains(w));
        let client_error = matches!(self.status, 400 | 413 | 422) || self.status >= 500;
        if !(named || (worded && client_error) || self.status == 413) {
            return None;
        }
        let (requested, limit) = figures(&text);
        Some(Overflow {
            detail: self.to_string(),
            requested,
            limit,
        })
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(kind) = &self.kind {
            write!(f, " {kind}")?;
        }
        if let Some(code) = &self.code {
            write!(f, " (code {code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// How servers say the prompt does not fit (lowercased).
const OVERFLOW_WORDING: &[&str] = &[
    "context length",                             // OpenAI, Azure, vLLM, LM Studio
    "context_length",                             // various codes in the message
    "context size",                               // llama.cpp
    "context window",                             // Anthropic-compatible proxies, LiteLLM
    "maximum context",                            // vLLM, OpenAI
    "max_model_len",                              // vLLM
    "exceeds the context",                        // Ollama
    "input length exceeds",                       // Ollama
    "prompt is too long",                         // various
    "too many tokens",                            // various
    "`inputs` tokens + `max_new_tokens` must be", // TGI
];

/// (tokens requested, the server's limit), from the message's figures.
fn figures(text: &str) -> (Option<u32>, Option<u32>) {
    let limit = [
        "maximum context length is ",
        "available context size (",
        "context size (",
        "context length of only ",
        "context length is ",
        "must be <= ",
        "max_model_len ",
        "context window of ",
    ]
    .iter()
    .find_map(|marker| number_after(text, marker));
    let requested = [
        "request (",
        "resulted in ",
        "you requested ",
        "your request has ",
        "given: ",
        "keep the first ",
        "prompt has ",
        "input length ",
    ]
    .iter()
    .find_map(|marker| number_after(text, marker));
    (requested, limit)
}

/// The number right after `marker` (digits, `,` and `_` separators allowed).
fn number_after(text: &str, marker: &str) -> Option<u32> {
    let start = text.find(marker)? + marker.len();
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '_')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn mentions_model(message: &str) -> bool {
    message.to_lowercase().contains("model")
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn looks_like_html(text: &str) -> bool {
    let head = text.trim_start().get(..15).unwrap_or(text).to_lowercase();
    head.starts_with("<!doctype") || head.starts_with("<html") || text.contains("</")
}

/// An HTML error page as one line: its `<title>`, or its text without tags.
fn html_text(html: &str) -> String {
    let lower = html.to_lowercase();
    if let (Some(a), Some(b)) = (lower.find("<title>"), lower.find("</title>"))
        && a + 7 < b
    {
        return squash(&html[a + 7..b]);
    }
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    squash(&text)
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[path = "errors_tests.rs"]
mod tests;
