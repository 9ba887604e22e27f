//! One streamed chunk of a chat completion, read leniently (compatible servers omit
//! fields OpenAI always sends), and what a stream keeps between chunks: the inline
//! `<think>` splitter and the tool calls being assembled — OpenAI streams a call's id
//! and name once, then its JSON arguments in pieces, keyed by the call's index.

use serde::Deserialize;

use super::errors::ServerError;
use super::think::{InlineThink, Piece};
use crate::core::model::{LlmError, ModelEvent, ToolCall, Usage};

/// What one stream carries from chunk to chunk.
#[derive(Debug, Default)]
pub(super) struct Stream {
    inline: InlineThink,
    calls: Vec<ToolCall>,
}

impl Stream {
    /// The stream ended: text held back as a possible tag, then the tool calls asked
    /// for (calls without a name are dropped: nothing could run them).
    pub(super) fn finish(&mut self) -> Vec<ModelEvent> {
        let mut events: Vec<ModelEvent> = self.inline.finish().map(event_of).into_iter().collect();
        let calls: Vec<ToolCall> = std::mem::take(&mut self.calls)
            .into_iter()
            .filter(|c| !c.name.is_empty())
            .collect();
        if !calls.is_empty() {
            events.push(ModelEvent::ToolCalls(calls));
        }
        events
    }

    fn tool_call(&mut self, piece: ToolCallWire) {
        let index = piece.index.unwrap_or(self.calls.len().saturating_sub(1));
        // A bounded number of calls per answer: an index past it is a broken stream.
        if index >= MAX_CALLS {
            return;
        }
        while self.calls.len() <= index {
            let n = self.calls.len();
            self.calls.push(ToolCall {
                id: format!("call_{n}"),
                name: String::new(),
                arguments: String::new(),
            });
        }
        let call = &mut self.calls[index];
        if let Some(id) = piece.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = piece.function {
            if let Some(name) = function.name {
                call.name.push_str(&name);
            }
            if let Some(arguments) = function.arguments
                && call.arguments.len() + arguments.len() <= MAX_ARGUMENTS
            {
                call.arguments.push_str(&arguments);
            }
        }
    }
}

/// Tool calls one answer may ask for at once.
const MAX_CALLS: usize = 16;

/// Bytes of one call's arguments kept (a model writing megabytes of JSON is cut off).
const MAX_ARGUMENTS: usize = 64 * 1024;

/// One SSE chunk, read leniently: compatible servers omit fields OpenAI always sends.
#[derive(Debug, Deserialize)]
pub(super) struct Chunk {
    #[serde(default)]
    choices: Vec<ChoiceDelta>,
    #[serde(default)]
    usage: Option<UsageWire>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ChoiceDelta {
    #[serde(default)]
    delta: Option<DeltaWire>,
}

#[derive(Debug, Deserialize)]
struct DeltaWire {
    #[serde(default)]
    content: Option<String>,
    /// DeepSeek, vLLM, llama.cpp with a reasoning parser.
    #[serde(default)]
    reasoning_content: Option<String>,
    /// OpenRouter, newer vLLM.
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallWire>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallWire {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionWire>,
}

#[derive(Debug, Deserialize)]
struct FunctionWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

pub(super) fn event_of(piece: Piece) -> ModelEvent {
    match piece {
        Piece::Thinking(t) => ModelEvent::Thinking(t),
        Piece::Answer(a) => ModelEvent::Delta(a),
    }
}

#[derive(Debug, Deserialize)]
struct UsageWire {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl Chunk {
    pub(super) fn into_events(self, stream: &mut Stream) -> Vec<Result<ModelEvent, LlmError>> {
        if let Some(error) = self.error {
            // An error event: before any text it is classified like an HTTP error (a
            // context overflow is recovered from); after text, the stream was cut.
            return vec![Err(match ServerError::from_event(&error).classify() {
                LlmError::Unavailable(detail) => {
                    LlmError::Interrupted(format!("error event in stream: {detail}"))
                }
                classified => classified,
            })];
        }
        let mut events = Vec::new();
        for delta in self.choices.into_iter().take(1).filter_map(|c| c.delta) {
            if let Some(thinking) = delta.reasoning_content.or(delta.reasoning)
                && !thinking.is_empty()
            {
                events.push(Ok(ModelEvent::Thinking(thinking)));
            }
            if let Some(text) = delta.content
                && !text.is_empty()
            {
                // Nearly every chunk, once the answer has begun: no splitting, no copy.
                if stream.inline.answering() {
                    events.push(Ok(ModelEvent::Delta(text)));
                } else {
                    events.extend(stream.inline.push(&text).into_iter().map(event_of).map(Ok));
                }
            }
            for piece in delta.tool_calls.into_iter().flatten() {
                stream.tool_call(piece);
            }
        }
        if let Some(u) = self.usage {
            events.push(Ok(ModelEvent::Usage(Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
            })));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[serde_json::Value]) -> Vec<ModelEvent> {
        let mut stream = Stream::default();
        let mut out: Vec<ModelEvent> = chunks
            .iter()
            .flat_map(|c| {
                let chunk: Chunk = serde_json::from_value(c.clone()).unwrap();
                chunk.into_events(&mut stream)
            })
            .map(Result::unwrap)
            .collect();
        out.extend(stream.finish());
        out
    }

    #[test]
    fn reasoning_fields_and_inline_think_tags_become_thinking() {
        let delta = |d: serde_json::Value| serde_json::json!({"choices": [{"delta": d}]});
        assert_eq!(
            events(&[
                delta(serde_json::json!({"role": "assistant", "content": ""})),
                delta(serde_json::json!({"reasoning_content": "Hm."})),
                delta(serde_json::json!({"reasoning": " Yes.", "content": null})),
                delta(serde_json::json!({"content": "Four."})),
            ]),
            [
                ModelEvent::Thinking("Hm.".into()),
                ModelEvent::Thinking(" Yes.".into()),
                ModelEvent::Delta("Four.".into()),
            ]
        );
        assert_eq!(
            events(&[
                delta(serde_json::json!({"content": "<think>a"})),
                delta(serde_json::json!({"content": "b</think>\n4"})),
            ]),
            [
                ModelEvent::Thinking("a".into()),
                ModelEvent::Thinking("b".into()),
                ModelEvent::Delta("4".into()),
            ]
        );
    }

    #[test]
    fn tool_calls_streamed_in_pieces_are_assembled_by_index() {
        let call =
            |d: serde_json::Value| serde_json::json!({"choices": [{"delta": {"tool_calls": [d]}}]});
        assert_eq!(
            events(&[
                call(
                    serde_json::json!({"index": 0, "id": "call_a", "type": "function", "function": {"name": "time__now", "arguments": ""}})
                ),
                call(
                    serde_json::json!({"index": 1, "id": "call_b", "function": {"name": "web_search", "arguments": "{\"q\":"}})
                ),
                call(
                    serde_json::json!({"index": 0, "function": {"arguments": "{\"tz\": \"UTC\"}"}})
                ),
                call(serde_json::json!({"index": 1, "function": {"arguments": "\"rust\"}"}})),
                serde_json::json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            ]),
            [ModelEvent::ToolCalls(vec![
                ToolCall {
                    id: "call_a".into(),
                    name: "time__now".into(),
                    arguments: "{\"tz\": \"UTC\"}".into()
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "web_search".into(),
                    arguments: "{\"q\":\"rust\"}".into()
                },
            ])]
        );
        // An index far out of range is ignored, not allocated.
        assert!(
            events(&[call(
                serde_json::json!({"index": 1_000_000_000, "function": {"name": "x"}})
            )])
            .is_empty()
        );
    }
}
