//! A fake OpenAI-compatible model server on 127.0.0.1, speaking the real wire format:
//! streamed chat completions with usage, scripted failures in the error shapes of OpenAI,
//! Azure, llama.cpp, vLLM, Ollama and a proxy's HTML page, a `GET /v1/models` list, and
//! (optionally) a context window enforced with a tokenizer of its own, plus llama.cpp's
//! `POST /tokenize` answering with that tokenizer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

/// What the fake answers to the next request.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// Stream these text pieces, `delay` apart, then usage (if any) and `[DONE]`.
    Stream {
        pieces: Vec<String>,
        delay: Duration,
        usage: Option<(u32, u32)>,
    },
    /// An error status with OpenAI's error body (and `Retry-After` if given).
    Error {
        status: u16,
        kind: String,
        code: Option<String>,
        retry_after: Option<u64>,
    },
    /// Accept the request and never answer.
    Hang,
    /// Stream these pieces, then break the connection without `[DONE]`.
    Cut { pieces: Vec<String> },
    /// Ask for tools, as OpenAI streams it: each call's id and name first, its JSON
    /// arguments in two pieces, then `finish_reason: "tool_calls"` and the usage.
    ToolCalls {
        /// (tool name, JSON arguments)
        calls: Vec<(String, String)>,
        usage: Option<(u32, u32)>,
    },
    /// Any answer: a status, a content type and a body as some server sends them.
    Raw {
        status: u16,
        content_type: &'static str,
        body: String,
        retry_after: Option<u64>,
    },
}

impl Behavior {
    pub fn text(pieces: &[&str], usage: (u32, u32)) -> Behavior {
        Behavior::Stream {
            pieces: pieces.iter().map(|s| s.to_string()).collect(),
            delay: Duration::ZERO,
            usage: Some(usage),
        }
    }

    pub fn status(status: u16) -> Behavior {
        let kind = match status {
            429 => "rate_limit_error",
            400 => "invalid_request_error",
            _ => "server_error",
        };
        Behavior::Error {
            status,
            kind: kind.into(),
            code: None,
            retry_after: None,
        }
    }
}

impl Behavior {
    pub fn json(status: u16, body: Value) -> Behavior {
        Behavior::Raw {
            status,
            content_type: "application/json",
            body: body.to_string(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(self, secs: u64) -> Behavior {
        match self {
            Behavior::Raw {
                status,
                content_type,
                body,
                ..
            } => Behavior::Raw {
                status,
                content_type,
                body,
                retry_after: Some(secs),
            },
            other => other,
        }
    }
}

/// Error answers exactly as each server family sends them.
pub mod shapes {
    use super::*;

    pub fn llama_cpp_overflow(requested: u32, limit: u32) -> Behavior {
        Behavior::json(
            400,
            json!({"error": {"code": 400, "message": format!("request ({requested} tokens) exceeds the available context size ({limit} tokens), try increasing it"), "type": "exceed_context_size_error", "n_prompt_tokens": requested, "n_ctx": limit}}),
        )
    }

    pub fn openai_overflow(requested: u32, limit: u32) -> Behavior {
        Behavior::json(
            400,
            json!({"error": {"message": format!("This model's maximum context length is {limit} tokens. However, your messages resulted in {requested} tokens. Please reduce the length of the messages."), "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
        )
    }

    pub fn azure_overflow(requested: u32, limit: u32) -> Behavior {
        Behavior::json(
            400,
            json!({"error": {"message": format!("This model's maximum context length is {limit} tokens. However, you requested {requested} tokens (100 in the messages, 50 in the completion). Please reduce the length of the messages or completion."), "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded", "status": 400}}),
        )
    }

    pub fn vllm_overflow(requested: u32, limit: u32) -> Behavior {
        Behavior::json(
            400,
            json!({"object": "error", "message": format!("This model's maximum context length is {limit} tokens. However, you requested {requested} tokens (100 in the messages, 50 in the completion). Please reduce the length of the messages or completion."), "type": "BadRequestError", "param": null, "code": 400}),
        )
    }

    pub fn ollama_overflow() -> Behavior {
        Behavior::json(
            400,
            json!({"error": {"message": "the input length exceeds the context length", "type": "api_error", "param": null, "code": null}}),
        )
    }

    pub fn openai_401() -> Behavior {
        Behavior::json(
            401,
            json!({"error": {"message": "Incorrect API key provided: sk-tes*****cret. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        )
    }

    pub fn azure_401() -> Behavior {
        Behavior::json(
            401,
            json!({"statusCode": 401, "message": "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired."}),
        )
    }

    pub fn llama_cpp_401() -> Behavior {
        Behavior::json(
            401,
            json!({"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}),
        )
    }

    pub fn openai_429(retry_after: u64) -> Behavior {
        Behavior::json(
            429,
            json!({"error": {"message": "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
        )
        .with_retry_after(retry_after)
    }

    pub fn vllm_500() -> Behavior {
        Behavior::json(
            500,
            json!({"object": "error", "message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}),
        )
    }

    pub fn ollama_404_model() -> Behavior {
        Behavior::json(
            404,
            json!({"error": {"message": "model \"llama9\" not found, try pulling it first", "type": "api_error", "param": null, "code": null}}),
        )
    }

    pub fn html_502() -> Behavior {
        Behavior::Raw {
            status: 502,
            content_type: "text/html",
            body: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n".into(),
            retry_after: None,
        }
    }
}

/// The tokenizer of the fake "local model" (see [`FakeOpenAi::enforce_context`]): unlike
/// tiktoken it splits every digit, as SentencePiece models do.
pub fn local_model_tokens(text: &str) -> u32 {
    let words = text.split_whitespace().count() as u32;
    let digits = text.chars().filter(char::is_ascii_digit).count() as u32;
    words + digits
}

/// Per message, as a chat template adds (`<start_of_turn>user\n…<end_of_turn>\n`).
pub const LOCAL_MODEL_OVERHEAD: u32 = 5;

/// How the fake counts tokens: like OpenAI (tiktoken) or like its local model.
fn count_tokens(local: bool, model: &str, text: &str) -> u32 {
    if local {
        return local_model_tokens(text);
    }
    let bpe = tiktoken_rs::bpe_for_model(model).unwrap_or(tiktoken_rs::o200k_base_singleton());
    bpe.encode_ordinary(text).len() as u32
}

/// A message's text: its content string, or the text parts of a content list (a
/// message with images).
pub fn text_of(content: &Value) -> String {
    match content {
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.as_str().unwrap_or("").to_string(),
    }
}

fn prompt_tokens(local: bool, model: &str, messages: &[Value]) -> u32 {
    let overhead = if local { LOCAL_MODEL_OVERHEAD } else { 3 };
    messages
        .iter()
        .map(|m| count_tokens(local, model, &text_of(&m["content"])) + overhead)
        .sum::<u32>()
        + 3
}

#[derive(Default)]
struct FakeOpenAiState {
    /// Streamed chunks written so far (of every answer), so a test can wait until an
    /// answer is under way.
    chunks_sent: Arc<std::sync::atomic::AtomicUsize>,
    /// With a context size, prompts are counted with [`local_model_tokens`] and refused
    /// past it as llama.cpp does.
    context: Option<u32>,
    /// What `GET /v1/models` lists.
    models: Vec<String>,
    /// llama.cpp's `GET /props` `total_slots`; `None`: 404, as OpenAI answers.
    total_slots: Option<u32>,
    /// Texts asked to `POST /tokenize`.
    tokenized: Vec<String>,
    script: VecDeque<Behavior>,
    /// Delay between pieces of the default echo answer.
    echo_delay: Duration,
    requests: Vec<Value>,
    /// When each request arrived.
    arrivals: Vec<Instant>,
    headers: Vec<HashMap<String, String>>,
    /// Answers as a model under load would (see [`FakeOpenAi::set_load_model`]).
    load: Option<LoadModel>,
    /// When the last token of the answer to each user text was sent.
    last_token_at: HashMap<String, Instant>,
    /// Load model with tools: when each question's tool call went out, and how long the
    /// bot took from there to ask again with the result.
    tool_asked_at: HashMap<String, Instant>,
    tool_gaps: Vec<Duration>,
    /// `POST /v1/audio/transcriptions` calls: their form fields (the file as its name,
    /// `file_bytes` as its length) and headers.
    transcriptions: Vec<Value>,
    /// What the transcription endpoint answers.
    transcript: String,
}

/// A model that answers `tokens` tokens: the first after `first`, then one per `per_token`.
#[derive(Debug, Clone, Copy)]
pub struct LoadModel {
    pub first: Duration,
    pub tokens: usize,
    pub per_token: Duration,
    /// Each question first asks for `web_search` of its text (after `first`), and is
    /// answered once the result comes back.
    pub tool_first: bool,
}

/// An OpenAI-compatible server on 127.0.0.1. With nothing scripted it streams
/// `Echo: <last user message>` word by word, with usage counted by tiktoken.
#[derive(Clone)]
pub struct FakeOpenAi {
    state: Arc<Mutex<FakeOpenAiState>>,
    pub port: u16,
}

impl FakeOpenAi {
    pub async fn start() -> FakeOpenAi {
        let state = Arc::new(Mutex::new(FakeOpenAiState::default()));
        state.lock().unwrap().models = vec!["gpt-4o-mini".into(), "fake-model".into()];
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(completions))
            .route("/v1/models", axum::routing::get(models))
            .route(
                "/v1/audio/transcriptions",
                axum::routing::post(transcriptions),
            )
            .route("/tokenize", axum::routing::post(tokenize))
            .route("/props", axum::routing::get(props))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeOpenAi { state, port }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        self.state.lock().unwrap().script.extend(behaviors);
    }

    /// Answers `GET /props` as llama.cpp does, with `total_slots` (requests it serves at
    /// once).
    pub fn set_total_slots(&self, slots: u32) {
        self.state.lock().unwrap().total_slots = Some(slots);
    }

    /// Slows the default echo answer down (the delay is between its pieces).
    pub fn set_echo_delay(&self, delay: Duration) {
        self.state.lock().unwrap().echo_delay = delay;
    }

    /// From now on, unscripted requests are answered by `model`: the answer is the user's
    /// text followed by `tokens - 1` filler tokens, and the time of its last token is
    /// kept (see [`FakeOpenAi::last_token_at`]).
    pub fn set_load_model(&self, model: LoadModel) {
        self.state.lock().unwrap().load = Some(model);
    }

    /// When the last token of the answer to `user_text` left the fake.
    /// The content of the last message of request `i` (a tool's result, after a call).
    pub fn last_message_of(&self, i: usize) -> String {
        self.requests()[i]["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Load model with tools: from each tool call sent to the bot asking again with the
    /// result (the bot's part of a tool round trip, the tool's own time included).
    pub fn tool_gaps(&self) -> Vec<Duration> {
        self.state.lock().unwrap().tool_gaps.clone()
    }

    pub fn last_token_at(&self, user_text: &str) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .last_token_at
            .get(user_text)
            .copied()
    }

    /// The answer the load model gives to `user_text`.
    pub fn load_answer(user_text: &str, tokens: usize) -> String {
        let mut answer = user_text.to_string();
        for _ in 1..tokens {
            answer.push_str(" tok");
        }
        answer
    }

    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn request_headers(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().headers.clone()
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.state.lock().unwrap().arrivals.clone()
    }

    /// When the first request whose last message is `text` arrived.
    pub fn arrived_at(&self, text: &str) -> Option<Instant> {
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .position(|r| {
                r["messages"]
                    .as_array()
                    .and_then(|m| m.last())
                    .is_some_and(|m| m["content"] == text)
            })
            .and_then(|i| state.arrivals.get(i).copied())
    }

    /// From now on the fake serves a "local model" with a context of `limit` tokens:
    /// prompts are counted with [`local_model_tokens`] (usage too), and one that does not
    /// fit is refused with llama.cpp's error and figures.
    pub fn enforce_context(&self, limit: u32) {
        self.state.lock().unwrap().context = Some(limit);
    }

    /// What the transcription endpoint answers from now on.
    pub fn set_transcript(&self, text: &str) {
        self.state.lock().unwrap().transcript = text.to_string();
    }

    /// The transcription requests, as form fields.
    pub fn transcriptions(&self) -> Vec<Value> {
        self.state.lock().unwrap().transcriptions.clone()
    }

    pub fn set_models(&self, models: &[&str]) {
        self.state.lock().unwrap().models = models.iter().map(|m| m.to_string()).collect();
    }

    /// Texts the bot asked `POST /tokenize` to count.
    pub fn tokenized(&self) -> Vec<String> {
        self.state.lock().unwrap().tokenized.clone()
    }

    /// Streamed chunks written so far, over every answer.
    pub fn chunks_sent(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .chunks_sent
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }
}

fn sse(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-fake123",
        "object": "chat.completion.chunk",
        "created": 1_764_000_000u32,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "usage": null
    })
}

async fn completions(
    State(state): State<Arc<Mutex<FakeOpenAiState>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (behavior, echo_delay, load) = {
        let mut s = state.lock().unwrap();
        s.requests.push(body.clone());
        s.arrivals.push(Instant::now());
        s.headers.push(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
        );
        (s.script.pop_front(), s.echo_delay, s.load)
    };
    let context = state.lock().unwrap().context;
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    if let (None, Some(load)) = (&behavior, load) {
        return load_answer(state, &body, &model, load);
    }
    if let (None, Some(limit)) = (&behavior, context) {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let requested = prompt_tokens(true, &model, &messages);
        if requested > limit {
            let Behavior::Raw { status, body, .. } = shapes::llama_cpp_overflow(requested, limit)
            else {
                unreachable!()
            };
            return raw_response(status, "application/json", body, None);
        }
    }
    let behavior = behavior.unwrap_or_else(|| {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages
            .last()
            .map(|m| text_of(&m["content"]))
            .unwrap_or_default();
        let mut pieces = vec!["Echo:".to_string()];
        pieces.extend(last.split(' ').map(|w| format!(" {w}")));
        // Usage as a real server reports it: the prompt and the answer tokenized.
        let local = context.is_some();
        let prompt = prompt_tokens(local, &model, &messages);
        let completion = count_tokens(local, &model, &pieces.concat());
        Behavior::Stream {
            pieces,
            delay: echo_delay,
            usage: Some((prompt, completion)),
        }
    });
    let streaming = body["stream"].as_bool().unwrap_or(false);
    match behavior {
        Behavior::Error {
            status,
            kind,
            code,
            retry_after,
        } => {
            let body = json!({"error": {
                "message": format!("fake {status}"),
                "type": kind,
                "param": null,
                "code": code,
            }});
            raw_response(status, "application/json", body.to_string(), retry_after)
        }
        Behavior::Raw {
            status,
            content_type,
            body,
            retry_after,
        } => raw_response(status, content_type, body, retry_after),
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Behavior::Stream { pieces, usage, .. } if !streaming => {
            let (p, c) = usage.unwrap_or((0, 0));
            Json(json!({
                "id": "chatcmpl-fake123",
                "object": "chat.completion",
                "created": 1_764_000_000u32,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": pieces.concat()},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
            }))
            .into_response()
        }
        Behavior::Stream {
            pieces,
            delay,
            usage,
        } => {
            let include_usage = body["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false);
            let mut events = opening_events(&model, &pieces, delay);
            events.push((
                Duration::ZERO,
                Ok(sse(&chunk(&model, json!({}), Some("stop")))),
            ));
            if let (true, Some((p, c))) = (include_usage, usage) {
                events.push((
                    Duration::ZERO,
                    Ok(sse(&json!({
                        "id": "chatcmpl-fake123",
                        "object": "chat.completion.chunk",
                        "created": 1_764_000_000u32,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
                    }))),
                ));
            }
            events.push((Duration::ZERO, Ok("data: [DONE]\n\n".to_string())));
            sse_response(events, state.lock().unwrap().chunks_sent.clone())
        }
        Behavior::ToolCalls { calls, usage } => {
            let mut events = opening_events(&model, &[], Duration::ZERO);
            for (i, (name, arguments)) in calls.iter().enumerate() {
                let id = format!("call_fake{i}");
                let head = json!({"tool_calls": [{"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]});
                events.push((
                    Duration::from_millis(5),
                    Ok(sse(&chunk(&model, head, None))),
                ));
                let half = arguments
                    .char_indices()
                    .nth(arguments.chars().count() / 2)
                    .map_or(0, |(at, _)| at);
                for piece in [&arguments[..half], &arguments[half..]] {
                    let more =
                        json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]});
                    events.push((
                        Duration::from_millis(5),
                        Ok(sse(&chunk(&model, more, None))),
                    ));
                }
            }
            events.push((
                Duration::ZERO,
                Ok(sse(&chunk(&model, json!({}), Some("tool_calls")))),
            ));
            if let Some((p, c)) = usage {
                events.push((
                    Duration::ZERO,
                    Ok(sse(&json!({
                        "id": "chatcmpl-fake123", "object": "chat.completion.chunk",
                        "created": 1_764_000_000u32, "model": model, "choices": [],
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
                    }))),
                ));
            }
            events.push((Duration::ZERO, Ok("data: [DONE]\n\n".to_string())));
            sse_response(events, state.lock().unwrap().chunks_sent.clone())
        }
        Behavior::Cut { pieces } => {
            let mut events = opening_events(&model, &pieces, Duration::from_millis(5));
            events.push((
                Duration::from_millis(5),
                Err(std::io::Error::other("connection cut by the fake")),
            ));
            sse_response(events, state.lock().unwrap().chunks_sent.clone())
        }
    }
}

fn raw_response(
    status: u16,
    content_type: &'static str,
    body: String,
    retry_after: Option<u64>,
) -> Response {
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", content_type)],
        body,
    )
        .into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

/// OpenAI's `POST /v1/audio/transcriptions`: a multipart form with `model` and `file`,
/// answered `{"text": …}`; anything but a multipart form with both is a 400.
async fn transcriptions(
    State(state): State<Arc<Mutex<FakeOpenAiState>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Some(mut fields) = super::multipart::fields(&content_type, &body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": "expected multipart/form-data", "type": "invalid_request_error"}}))).into_response();
    };
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    fields.insert("authorization".into(), json!(authorization));
    let mut s = state.lock().unwrap();
    s.transcriptions.push(Value::Object(fields.clone()));
    if !fields.contains_key("model") || !fields.contains_key("file") {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": "model and file are required", "type": "invalid_request_error"}}))).into_response();
    }
    Json(json!({"text": s.transcript.clone()})).into_response()
}

async fn models(State(state): State<Arc<Mutex<FakeOpenAiState>>>) -> Json<Value> {
    let models = state.lock().unwrap().models.clone();
    let data: Vec<Value> = models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_764_000_000u32, "owned_by": "fake"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// llama.cpp's `POST /tokenize` (`{"content": …}` → `{"tokens": […]}`), with the local
/// model's tokenizer; 404 while no local model is served (as OpenAI has no such endpoint).
/// llama.cpp's `GET /props` (a part of it), or 404 like any other server.
async fn props(State(state): State<Arc<Mutex<FakeOpenAiState>>>) -> Response {
    match state.lock().unwrap().total_slots {
        Some(slots) => Json(json!({
            "total_slots": slots,
            "model_path": "models/fake.gguf",
            "default_generation_settings": {"n_ctx": 4096},
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn tokenize(
    State(state): State<Arc<Mutex<FakeOpenAiState>>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    if s.context.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let text = body["content"].as_str().unwrap_or("").to_string();
    let n = local_model_tokens(&text);
    s.tokenized.push(text);
    Json(json!({"tokens": (0..n).collect::<Vec<u32>>()})).into_response()
}

/// The load model's streamed answer; the time of its last token is kept.
fn load_answer(
    state: Arc<Mutex<FakeOpenAiState>>,
    body: &Value,
    model: &str,
    load: LoadModel,
) -> Response {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let answered_tool = messages.last().is_some_and(|m| m["role"] == "tool");
    if answered_tool {
        let mut s = state.lock().unwrap();
        if let Some(at) = s.tool_asked_at.remove(&last) {
            s.tool_gaps.push(at.elapsed());
        }
    }
    if load.tool_first && !answered_tool {
        state
            .lock()
            .unwrap()
            .tool_asked_at
            .insert(last.clone(), Instant::now() + load.first);
        let call = json!({"tool_calls": [{"index": 0, "id": "call_load", "type": "function",
            "function": {"name": "web_search", "arguments": json!({"query": last}).to_string()}}]});
        let events = vec![
            (load.first, Ok(sse(&chunk(model, call, None)))),
            (
                Duration::ZERO,
                Ok(sse(&chunk(model, json!({}), Some("tool_calls")))),
            ),
            (
                Duration::ZERO,
                Ok(sse(&json!({
                    "id": "chatcmpl-fake123", "object": "chat.completion.chunk",
                    "created": 1_764_000_000u32, "model": model, "choices": [],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
                }))),
            ),
            (Duration::ZERO, Ok("data: [DONE]\n\n".to_string())),
        ];
        return sse_response(events, state.lock().unwrap().chunks_sent.clone());
    }
    let answer = FakeOpenAi::load_answer(&last, load.tokens);
    let pieces: Vec<String> = answer.split_inclusive(' ').map(str::to_string).collect();
    let count = pieces.len();
    let model = model.to_string();
    let head = futures::stream::iter([Ok::<_, std::io::Error>(sse(&chunk(
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    )))]);
    let chunk_model = model.clone();
    let body = futures::stream::iter(pieces.into_iter().enumerate()).then(move |(i, piece)| {
        let state = state.clone();
        let last = last.clone();
        let model = chunk_model.clone();
        async move {
            let pause = if i == 0 { load.first } else { load.per_token };
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if i + 1 == count {
                state
                    .lock()
                    .unwrap()
                    .last_token_at
                    .insert(last, Instant::now());
            }
            Ok(sse(&chunk(&model, json!({"content": piece}), None)))
        }
    });
    let tail = futures::stream::iter([
        Ok(sse(&chunk(&model, json!({}), Some("stop")))),
        Ok(sse(&json!({
            "id": "chatcmpl-fake123", "object": "chat.completion.chunk",
            "created": 1_764_000_000u32, "model": model, "choices": [],
            "usage": {"prompt_tokens": 50, "completion_tokens": count, "total_tokens": 50 + count}
        }))),
        Ok("data: [DONE]\n\n".to_string()),
    ]);
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(head.chain(body).chain(tail)))
        .unwrap()
}

type Event = (Duration, Result<String, std::io::Error>);

/// The role chunk, then one chunk per piece, `delay` apart.
fn opening_events(model: &str, pieces: &[String], delay: Duration) -> Vec<Event> {
    let mut events: Vec<Event> = vec![(
        Duration::ZERO,
        Ok(sse(&chunk(
            model,
            json!({"role": "assistant", "content": ""}),
            None,
        ))),
    )];
    for piece in pieces {
        let delta = match piece.strip_prefix(REASONING) {
            Some(thought) => json!({"reasoning_content": thought}),
            None => json!({"content": piece}),
        };
        events.push((delay, Ok(sse(&chunk(model, delta, None)))));
    }
    events
}

/// A streamed piece that starts with this is sent as `reasoning_content` (as DeepSeek,
/// vLLM and llama.cpp with a reasoning parser send a model's thinking), not `content`.
pub const REASONING: &str = "\u{1}reasoning:";

fn sse_response(events: Vec<Event>, sent: Arc<std::sync::atomic::AtomicUsize>) -> Response {
    let stream = futures::stream::iter(events).then(move |(delay, item)| {
        let sent = sent.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            item
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}
