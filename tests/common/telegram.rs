//! A fake Telegram Bot API on 127.0.0.1 speaking the real JSON (`{"ok":true,"result":…}`,
//! errors with `error_code`, `description` and `parameters.retry_after`), so the real
//! teloxide bot runs against it unchanged. It records every call with its time, holds
//! `getUpdates` long polls until an update is queued, checks the HTML it is sent the way
//! Telegram does (known tags, balanced, known entities) and can be told to fail calls.
//!
//! With [`FakeTelegram::enforce_flood_limits`] it also applies Telegram's flood rules:
//! per chat a token bucket of 1 write a second with bursts of 3 (sendMessage and
//! editMessageText), 20 a minute in groups, 30 sendMessage a second overall. A write
//! over a limit gets 429 with `retry_after` in whole seconds, and the chat stays frozen
//! until then: a call during the freeze is refused again.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

pub const BOT_ID: i64 = 7_000_001;
pub const BOT_USERNAME: &str = "gptbot_test_bot";
pub const TOKEN: &str = "123456:TEST-token_abc";

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub at: Instant,
}

#[derive(Default)]
pub(super) struct TgState {
    pub(super) updates: VecDeque<Value>,
    pub(super) next_update_id: i64,
    pub(super) next_message_id: i64,
    /// Telegram Stars: invoices sent, pre-checkout answers, charges.
    pub(super) stars: super::stars::Stars,
    /// Groups' owners and administrators, for getChatMember.
    pub(super) members: super::members::Members,
    calls: Vec<Call>,
    failures: HashMap<String, VecDeque<(u16, String, Option<u64>)>>,
    reject_html: usize,
    /// Private chats whose user blocked the bot: every write there answers 403.
    blocked: Vec<i64>,
    /// (chat id, message id) → current text, as a client would see it.
    texts: HashMap<(i64, i64), String>,
    webhook: String,
    /// Bumped by every getUpdates; a long poll still waiting when a newer one arrives is
    /// answered 409, as Telegram does when two processes poll one token.
    poll_generation: u64,
    flood: Option<Flood>,
    /// Message writes Telegram accepted (what the user sees happen), in order.
    delivered: Vec<Call>,
    /// (chat, text) → when a final (HTML) text was first shown.
    finals: HashMap<(i64, String), Instant>,
    /// file_id → (file_path, bytes), served by getFile and /file/bot<token>/<path>.
    files: HashMap<String, (String, Vec<u8>)>,
    /// File downloads served, by path.
    downloads: Vec<String>,
    /// Methods that never answer (a Bot API that hangs), recorded as called.
    stalled: Vec<String>,
    /// file_id → the size getFile states instead of the real one.
    claimed_sizes: HashMap<String, usize>,
}

/// Telegram's flood rules, as token buckets.
#[derive(Default)]
struct Flood {
    chats: HashMap<i64, (Bucket, Option<Instant>)>,
    groups: HashMap<i64, Bucket>,
    global: Option<Bucket>,
    /// Every 429 this fake answered because of these rules.
    refusals: Vec<(i64, String, u64)>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    per_second: f64,
    burst: f64,
}

impl Bucket {
    fn new(per_second: f64, burst: f64) -> Bucket {
        Bucket {
            tokens: burst,
            at: Instant::now(),
            per_second,
            burst,
        }
    }

    /// Takes a token, or says in how many seconds one will be there.
    fn take(&mut self, now: Instant) -> Result<(), f64> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - self.tokens) / self.per_second)
        }
    }
}

impl Flood {
    /// Applies the rules to one write; `Err(retry_after)` in whole seconds when refused.
    fn check(&mut self, method: &str, chat: i64, now: Instant) -> Result<(), u64> {
        let frozen = self
            .chats
            .get(&chat)
            .and_then(|(_, until)| *until)
            .filter(|t| *t > now);
        if let Some(until) = frozen {
            return Err(whole_seconds((until - now).as_secs_f64()));
        }
        // Check every bucket first, so a refused write takes no token from any.
        let mut chat_bucket = self.chats.get(&chat).map_or(Bucket::new(1.0, 3.0), |c| c.0);
        let mut group_bucket = (chat < 0).then(|| {
            *self
                .groups
                .entry(chat)
                .or_insert(Bucket::new(20.0 / 60.0, 20.0))
        });
        let mut global = self.global.unwrap_or(Bucket::new(30.0, 30.0));
        let mut wait: f64 = 0.0;
        if let Err(w) = chat_bucket.take(now) {
            wait = wait.max(w);
        }
        if let Some(g) = &mut group_bucket
            && let Err(w) = g.take(now)
        {
            wait = wait.max(w);
        }
        if method == "sendmessage"
            && let Err(w) = global.take(now)
        {
            wait = wait.max(w);
        }
        if wait > 0.0 {
            let secs = whole_seconds(wait);
            let entry = self.chats.entry(chat).or_insert((chat_bucket, None));
            entry.1 = Some(now + Duration::from_secs(secs));
            return Err(secs);
        }
        self.chats.insert(chat, (chat_bucket, None));
        if let Some(g) = group_bucket {
            self.groups.insert(chat, g);
        }
        if method == "sendmessage" {
            self.global = Some(global);
        }
        Ok(())
    }
}

fn whole_seconds(secs: f64) -> u64 {
    (secs.ceil() as u64).max(1)
}

#[derive(Clone)]
pub struct FakeTelegram {
    pub(super) state: Arc<Mutex<TgState>>,
    pub(super) notify: Arc<Notify>,
    pub port: u16,
}

pub fn user_json(id: i64, name: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": name, "username": name.to_lowercase()})
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "GPT Bot", "username": BOT_USERNAME})
}

pub fn private_chat(id: i64) -> Value {
    json!({"id": id, "type": "private", "first_name": format!("User{id}")})
}

pub fn group_chat(id: i64) -> Value {
    json!({"id": id, "type": "supergroup", "title": "Test group"})
}

/// A supergroup with topics (a forum).
pub fn forum_chat(id: i64) -> Value {
    json!({"id": id, "type": "supergroup", "title": "Test forum", "is_forum": true})
}

fn chat_for(id: i64) -> Value {
    if id > 0 {
        private_chat(id)
    } else {
        group_chat(id)
    }
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Entities Telegram would attach: @mentions and a leading /command.
fn entities_for(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if text.starts_with('/') {
        let end = text.find(char::is_whitespace).unwrap_or(text.len());
        out.push(json!({"type": "bot_command", "offset": 0, "length": utf16_len(&text[..end])}));
    }
    for (i, _) in text.match_indices('@') {
        let rest = &text[i + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end >= 3 && !text[..i].ends_with(|c: char| c.is_ascii_alphanumeric()) {
            out.push(json!({
                "type": "mention",
                "offset": utf16_len(&text[..i]),
                "length": utf16_len(&text[i..i + 1 + end]),
            }));
        }
    }
    out
}

pub(super) fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

pub(super) fn error(code: u16, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(secs) = retry_after {
        body["parameters"] = json!({"retry_after": secs});
    }
    (
        axum::http::StatusCode::from_u16(code).unwrap(),
        axum::Json(body),
    )
        .into_response()
}

/// Checks Telegram HTML: only the tags Telegram knows, properly nested, and only the
/// named entities it knows. Returns the visible text, or why Telegram would refuse it.
pub fn check_html(html: &str) -> Result<String, String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    ];
    let mut stack: Vec<String> = Vec::new();
    let mut visible = String::new();
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            let end = rest.find('>').ok_or("Unclosed start tag")?;
            let tag = &rest[1..end];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    _ => {
                        return Err(format!(
                            "Can't find end tag corresponding to start tag \"{name}\""
                        ));
                    }
                }
            } else {
                let name = tag.split_whitespace().next().unwrap_or("");
                if !TAGS.contains(&name) {
                    return Err(format!(
                        "Unsupported start tag \"{name}\" at byte offset {}",
                        html.len() - rest.len()
                    ));
                }
                stack.push(name.to_string());
            }
            rest = &rest[end + 1..];
        } else if c == '&' {
            let end = rest.find(';').ok_or("Unclosed entity")?;
            let visible_char = match &rest[..=end] {
                "&lt;" => '<',
                "&gt;" => '>',
                "&amp;" => '&',
                "&quot;" => '"',
                other => return Err(format!("Unsupported HTML entity {other}")),
            };
            visible.push(visible_char);
            rest = &rest[end + 1..];
        } else {
            visible.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{open}\""
        ));
    }
    Ok(visible)
}

/// Reads a request body: JSON, or multipart/form-data (teloxide sends methods that can
/// carry files, like setWebhook, that way) as an object of string fields.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(fields) = super::multipart::fields(content_type, body) {
        return Value::Object(fields);
    }
    if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).unwrap_or(json!({}))
    }
}

async fn api(
    State(fake): State<FakeTelegram>,
    Path((bot_token, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot_token != format!("bot{TOKEN}") {
        return error(401, "Unauthorized", None);
    }
    let body = parse_body(&headers, &body);
    let method = method.to_ascii_lowercase();
    let failure = {
        let mut s = fake.state.lock().unwrap();
        s.calls.push(Call {
            method: method.clone(),
            body: body.clone(),
            at: Instant::now(),
        });
        s.failures.get_mut(&method).and_then(|q| q.pop_front())
    };
    if let Some((code, description, retry_after)) = failure {
        return error(code, &description, retry_after);
    }
    if fake.state.lock().unwrap().stalled.contains(&method) {
        std::future::pending::<()>().await;
    }
    let chat = body["chat_id"].as_i64();
    if chat.is_some_and(|c| fake.state.lock().unwrap().blocked.contains(&c))
        && matches!(
            method.as_str(),
            "sendmessage" | "editmessagetext" | "sendchataction" | "sendmessagedraft"
        )
    {
        return error(403, "Forbidden: bot was blocked by the user", None);
    }
    match method.as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "GPT Bot", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        })),
        "getupdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let timeout = body["timeout"].as_u64().unwrap_or(0).min(10);
            let deadline = Instant::now() + Duration::from_secs(timeout);
            let generation = {
                let mut s = fake.state.lock().unwrap();
                s.poll_generation += 1;
                s.poll_generation
            };
            fake.notify.notify_waiters();
            loop {
                let notified = fake.notify.notified();
                {
                    let mut s = fake.state.lock().unwrap();
                    if s.poll_generation != generation {
                        return error(
                            409,
                            "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                            None,
                        );
                    }
                    s.updates
                        .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    if !s.updates.is_empty() {
                        return ok(Value::Array(s.updates.iter().cloned().collect()));
                    }
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return ok(json!([]));
                }
            }
        }
        "sendmessage" | "editmessagetext" => fake.message_call(&method, &body),
        // Bot API 9.3: a draft streamed to a private chat; nothing is kept in the chat.
        "sendmessagedraft" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let text = body["text"].as_str().unwrap_or("");
            if chat <= 0 {
                error(
                    400,
                    "Bad Request: drafts can be sent only to private chats",
                    None,
                )
            } else if body["draft_id"].as_u64().unwrap_or(0) == 0 {
                error(400, "Bad Request: draft_id must be non-zero", None)
            } else if text.is_empty() || text.encode_utf16().count() > 4096 {
                error(400, "Bad Request: text must be 1-4096 characters", None)
            } else {
                ok(json!(true))
            }
        }
        "setwebhook" => {
            fake.state.lock().unwrap().webhook = body["url"].as_str().unwrap_or("").to_string();
            ok(json!(true))
        }
        "deletewebhook" => {
            fake.state.lock().unwrap().webhook.clear();
            ok(json!(true))
        }
        "getwebhookinfo" => {
            let url = fake.state.lock().unwrap().webhook.clone();
            ok(json!({"url": url, "has_custom_certificate": false, "pending_update_count": 0}))
        }
        "sendchataction" | "setmycommands" | "answercallbackquery" => ok(json!(true)),
        "sendinvoice" | "createinvoicelink" | "answerprecheckoutquery" | "refundstarpayment" => {
            super::stars::call(&fake, &method, &body)
        }
        "getchatmember" => super::members::call(&fake, &body),
        "getfile" => {
            let id = body["file_id"].as_str().unwrap_or("").to_string();
            let s = fake.state.lock().unwrap();
            let claimed = s.claimed_sizes.get(&id).copied();
            match s.files.get(&id) {
                Some((path, bytes)) => ok(json!({
                    "file_id": id, "file_unique_id": format!("u-{id}"),
                    "file_size": claimed.unwrap_or(bytes.len()), "file_path": path
                })),
                None => error(400, "Bad Request: invalid file_id", None),
            }
        }
        other => error(404, &format!("Not Found: method {other} not faked"), None),
    }
}

/// A file as the Bot API serves it to bots: `GET /file/bot<token>/<file_path>`.
async fn download(
    State(fake): State<FakeTelegram>,
    Path((bot_token, path)): Path<(String, String)>,
) -> Response {
    if bot_token != format!("bot{TOKEN}") {
        return error(401, "Unauthorized", None);
    }
    let mut s = fake.state.lock().unwrap();
    s.downloads.push(path.clone());
    match s.files.values().find(|(p, _)| *p == path) {
        Some((_, bytes)) => Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .body(axum::body::Body::from(bytes.clone()))
            .unwrap(),
        None => error(404, "Not Found", None),
    }
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeTelegram {
            state: Arc::new(Mutex::new(TgState {
                next_update_id: 1000,
                next_message_id: 5000,
                ..TgState::default()
            })),
            notify: Arc::new(Notify::new()),
            port: listener.local_addr().unwrap().port(),
        };
        let app = axum::Router::new()
            .route("/{token}/{method}", axum::routing::post(api))
            .route("/file/{token}/{*path}", axum::routing::get(download))
            .with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        fake
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn message_call(&self, method: &str, body: &Value) -> Response {
        let mut s = self.state.lock().unwrap();
        let chat_id = body["chat_id"].as_i64().unwrap_or(0);
        if let Some(flood) = &mut s.flood
            && let Err(secs) = flood.check(method, chat_id, Instant::now())
        {
            flood.refusals.push((chat_id, method.to_string(), secs));
            return error(
                429,
                &format!("Too Many Requests: retry after {secs}"),
                Some(secs),
            );
        }
        let text = body["text"].as_str().unwrap_or("").to_string();
        let html = body["parse_mode"].as_str() == Some("HTML");
        let visible = if html {
            if s.reject_html > 0 {
                s.reject_html -= 1;
                return error(
                    400,
                    "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\"",
                    None,
                );
            }
            match check_html(&text) {
                Ok(v) => v,
                Err(why) => {
                    return error(
                        400,
                        &format!("Bad Request: can't parse entities: {why}"),
                        None,
                    );
                }
            }
        } else {
            text.clone()
        };
        if visible.trim().is_empty() {
            return error(400, "Bad Request: message text is empty", None);
        }
        if utf16_len(&visible) > 4096 {
            let description = if method == "sendmessage" {
                "Bad Request: message is too long"
            } else {
                "Bad Request: MESSAGE_TOO_LONG"
            };
            return error(400, description, None);
        }
        let message_id = if method == "sendmessage" {
            s.next_message_id += 1;
            s.next_message_id
        } else {
            let id = body["message_id"].as_i64().unwrap_or(0);
            match s.texts.get(&(chat_id, id)) {
                None => return error(400, "Bad Request: message to edit not found", None),
                Some(current) if *current == text => {
                    return error(
                        400,
                        "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                        None,
                    );
                }
                Some(_) => id,
            }
        };
        s.texts.insert((chat_id, message_id), text);
        let at = Instant::now();
        if html {
            s.finals
                .entry((chat_id, body["text"].as_str().unwrap_or("").to_string()))
                .or_insert(at);
        }
        s.delivered.push(Call {
            method: method.to_string(),
            body: body.clone(),
            at,
        });
        let mut message = json!({
            "message_id": message_id,
            "date": now(),
            "chat": chat_for(chat_id),
            "from": bot_user(),
            "text": visible,
        });
        if method == "editmessagetext" {
            message["edit_date"] = json!(now());
        }
        if let Some(thread) = body["message_thread_id"].as_i64() {
            message["message_thread_id"] = json!(thread);
            message["is_topic_message"] = json!(true);
        }
        if body["reply_markup"].is_object() {
            message["reply_markup"] = body["reply_markup"].clone();
        }
        ok(message)
    }

    /// Queues an update; returns its message id.
    pub fn push_message(&self, chat: Value, from: Value, text: &str, reply_to: Option<i64>) -> i64 {
        let mut message = json!({
            "date": now(),
            "chat": chat,
            "from": from,
            "text": text,
        });
        let entities = entities_for(text);
        if !entities.is_empty() {
            message["entities"] = Value::Array(entities);
        }
        if let Some(id) = reply_to {
            message["reply_to_message"] = json!({
                "message_id": id, "date": now(), "chat": message["chat"].clone(),
                "from": bot_user(), "text": "an earlier answer"
            });
        }
        self.push_raw_message(message)
    }

    /// Queues an update carrying `message` (without `message_id`, which is assigned).
    pub fn push_raw_message(&self, mut message: Value) -> i64 {
        let mut s = self.state.lock().unwrap();
        s.next_message_id += 1;
        s.next_update_id += 1;
        message["message_id"] = json!(s.next_message_id);
        let update = json!({"update_id": s.next_update_id, "message": message});
        s.updates.push_back(update);
        drop(s);
        self.notify.notify_waiters();
        self.state.lock().unwrap().next_message_id
    }

    /// Makes `bytes` available as file `file_id` (getFile and the file download).
    pub fn serve_file(&self, file_id: &str, bytes: &[u8]) {
        self.state.lock().unwrap().files.insert(
            file_id.to_string(),
            (format!("documents/{file_id}.bin"), bytes.to_vec()),
        );
    }

    /// As [`Self::serve_file`], with getFile stating `claimed` bytes instead.
    pub fn serve_file_claiming(&self, file_id: &str, bytes: &[u8], claimed: usize) {
        self.serve_file(file_id, bytes);
        self.state
            .lock()
            .unwrap()
            .claimed_sizes
            .insert(file_id.to_string(), claimed);
    }

    /// The file paths the bot downloaded.
    pub fn downloads(&self) -> Vec<String> {
        self.state.lock().unwrap().downloads.clone()
    }

    /// Queues a press of an inline button carrying `data`, under the bot's message
    /// `message_id` in `chat`.
    pub fn push_callback(&self, chat: Value, from: Value, message_id: i64, data: &str) {
        let mut s = self.state.lock().unwrap();
        s.next_update_id += 1;
        let update = json!({"update_id": s.next_update_id, "callback_query": {
            "id": format!("cb{}", s.next_update_id), "from": from, "chat_instance": "ci-1",
            "data": data,
            "message": {"message_id": message_id, "date": now(), "chat": chat,
                        "from": bot_user(), "text": "(the choices)"}
        }});
        s.updates.push_back(update);
        drop(s);
        self.notify.notify_waiters();
    }

    /// Queues an `edited_message` update for a message the user changed.
    pub fn push_edit(&self, chat: Value, from: Value, message_id: i64, text: &str) {
        let mut s = self.state.lock().unwrap();
        s.next_update_id += 1;
        let update = json!({"update_id": s.next_update_id, "edited_message": {
            "message_id": message_id, "date": now() - 5, "edit_date": now(),
            "chat": chat, "from": from, "text": text
        }});
        s.updates.push_back(update);
        drop(s);
        self.notify.notify_waiters();
    }

    /// An update as Telegram would POST it to a webhook.
    /// The settings of a bot in webhook mode against this fake, its webhook listener on
    /// `listen` and checking `secret` — as each replica of the tests' fleets is set up.
    pub fn webhook_settings(&self, listen: &str, secret: &str) -> Vec<(String, String)> {
        [
            ("TELEGRAM_BOT_TOKEN", TOKEN.to_string()),
            ("GPTBOT__TELEGRAM__API_URL", self.api_url()),
            ("GPTBOT__TELEGRAM__MODE", "webhook".into()),
            ("GPTBOT__TELEGRAM__LISTEN", listen.to_string()),
            (
                "GPTBOT__TELEGRAM__WEBHOOK_URL",
                "https://bot.example.test/hook".into(),
            ),
            ("GPTBOT__TELEGRAM__WEBHOOK_SECRET", secret.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn webhook_update(&self, chat: Value, from: Value, text: &str) -> Value {
        let mut s = self.state.lock().unwrap();
        s.next_message_id += 1;
        s.next_update_id += 1;
        json!({"update_id": s.next_update_id, "message": {
            "message_id": s.next_message_id, "date": now(), "chat": chat, "from": from, "text": text
        }})
    }

    /// From now on `method` is recorded but never answered.
    pub fn stall(&self, method: &str) {
        self.state
            .lock()
            .unwrap()
            .stalled
            .push(method.to_ascii_lowercase());
    }

    pub fn fail_next(&self, method: &str, code: u16, description: &str, retry_after: Option<u64>) {
        self.state
            .lock()
            .unwrap()
            .failures
            .entry(method.to_ascii_lowercase())
            .or_default()
            .push_back((code, description.to_string(), retry_after));
    }

    /// Writes to `chat` that Telegram accepted, in order.
    pub fn delivered_to(&self, chat: i64) -> Vec<Call> {
        self.state
            .lock()
            .unwrap()
            .delivered
            .iter()
            .filter(|c| c.body["chat_id"].as_i64() == Some(chat))
            .cloned()
            .collect()
    }

    /// When `chat` was shown `text` as a final (HTML) text, if it was.
    pub fn final_seen(&self, chat: i64, text: &str) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .finals
            .get(&(chat, text.to_string()))
            .copied()
    }

    /// Waits until `chat` shows `text` as a final text; returns when it arrived.
    pub async fn wait_final(&self, chat: i64, text: &str) -> Instant {
        super::eventually(
            30,
            &format!("final text {text:?} in chat {chat}"),
            || self.final_seen(chat, text).is_some(),
            || {
                format!(
                    "delivered: {:#?}",
                    self.delivered_to(chat)
                        .iter()
                        .map(|c| c.body["text"].clone())
                        .collect::<Vec<_>>()
                )
            },
        )
        .await;
        self.final_seen(chat, text).unwrap()
    }

    /// From now on, apply Telegram's flood rules (see the module documentation).
    pub fn enforce_flood_limits(&self) {
        self.state.lock().unwrap().flood = Some(Flood::default());
    }

    /// The 429s answered under the flood rules: (chat, method, retry_after).
    pub fn flood_refusals(&self) -> Vec<(i64, String, u64)> {
        self.state
            .lock()
            .unwrap()
            .flood
            .as_ref()
            .map(|f| f.refusals.clone())
            .unwrap_or_default()
    }

    /// As if an earlier deployment had registered a webhook.
    pub fn set_webhook_state(&self, url: &str) {
        self.state.lock().unwrap().webhook = url.to_string();
    }

    pub fn reject_html_next(&self, n: usize) {
        self.state.lock().unwrap().reject_html = n;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        let method = method.to_ascii_lowercase();
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Message writes (sends and edits) to one chat, in order.
    pub fn writes_to(&self, chat: i64) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| {
                (c.method == "sendmessage" || c.method == "editmessagetext")
                    && c.body["chat_id"].as_i64() == Some(chat)
            })
            .collect()
    }

    /// The user of private chat `chat` blocks the bot: from now on every message, edit
    /// and chat action there is refused with 403, as Telegram does.
    pub fn block_bot(&self, chat: i64) {
        self.state.lock().unwrap().blocked.push(chat);
    }

    /// Someone deletes message `id` in `chat` (a user their own chat's, an admin a
    /// group's): it is gone, and editing it is refused as Telegram refuses it.
    pub fn delete_message(&self, chat: i64, id: i64) {
        self.state.lock().unwrap().texts.remove(&(chat, id));
    }

    /// The current text of every message the bot has in `chat`, oldest first.
    pub fn texts_in(&self, chat: i64) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut ids: Vec<i64> = s
            .texts
            .keys()
            .filter(|(c, _)| *c == chat)
            .map(|(_, m)| *m)
            .collect();
        ids.sort();
        ids.iter().map(|m| s.texts[&(chat, *m)].clone()).collect()
    }

    /// Waits until `done` holds for the recorded calls (panics after `secs`).
    pub async fn wait_until(&self, secs: u64, what: &str, done: impl Fn(&[Call]) -> bool) {
        super::eventually(
            secs,
            what,
            || done(&self.calls()),
            || {
                let calls: Vec<_> = self
                    .calls()
                    .into_iter()
                    .map(|c| (c.method, c.body))
                    .collect();
                format!("calls: {calls:#?}")
            },
        )
        .await;
    }
}

/// Delivers `update` to the bot's webhook at `url` as Telegram does, with the secret
/// header; the bot's answer status.
pub async fn post_update(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    update: &Value,
) -> reqwest::StatusCode {
    http.post(url)
        .header("X-Telegram-Bot-Api-Secret-Token", secret)
        .json(update)
        .send()
        .await
        .unwrap()
        .status()
}
