//! A fake Discord on 127.0.0.1: the REST routes the bot uses (`/api/v10/...`, JSON as in
//! Discord's docs) and a WebSocket gateway speaking the real protocol (HELLO, IDENTIFY,
//! READY with session_id and resume_gateway_url, heartbeats and ACKs, RESUME/RESUMED,
//! dispatches of MESSAGE_CREATE and INTERACTION_CREATE). It records every REST call with
//! its time, can answer a call with a 429, and can drop the gateway connection.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The app booted as `gptbot run` boots it, connected to a fresh fake Discord.
pub struct Bot {
    pub t: super::TestApp,
    pub dc: FakeDiscord,
    pub handle: gptbot::app::Serving,
    _stop: tokio_util::sync::DropGuard,
}

pub async fn spawn_bot(options: super::Options) -> Bot {
    let dc = FakeDiscord::start().await;
    let t = super::spawn_app_with(
        options
            .with("DISCORD_TOKEN", TOKEN)
            .with("GPTBOT__DISCORD__API_URL", dc.api_url()),
    )
    .await;
    let (stop, rx) = super::stopper();
    let handle = t
        .app
        .start(rx)
        .await
        .map(|running| {
            running
                .platform(gptbot::core::event::Platform::Discord)
                .cloned()
                .expect("Discord is configured")
        })
        .expect("the bot connects to the fake Discord");
    Bot {
        t,
        dc,
        handle,
        _stop: stop,
    }
}

pub const BOT_ID: &str = "1000000000000000001";
pub const TOKEN: &str = "MTAwMDAwMDAwMDAwMDAwMDAwMQ.fake.discord-token";
pub const GUILD: &str = "5000000000000000001";

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub at: Instant,
}

#[derive(Debug, Clone)]
enum GatewayCommand {
    Dispatch(String, Value),
    Close(u16),
}

#[derive(Default)]
struct DcState {
    calls: Vec<Call>,
    /// (method, path prefix) → queued 429s (retry_after seconds).
    limits: Vec<(String, String, f64, bool)>,
    next_id: u64,
    /// Gateway frames received from the bot (IDENTIFY, RESUME, heartbeats).
    gateway_in: Vec<Value>,
    connections: usize,
    /// IDENTIFY is not answered with READY (a gateway that hangs mid-connect).
    hold_ready: bool,
    /// Message id → content, for every message and interaction response the bot wrote.
    texts: HashMap<String, String>,
    order: VecDeque<String>,
    /// Discord's rate limits, when switched on (see [`FakeDiscord::enforce_rate_limits`]).
    buckets: Option<Buckets>,
    /// Threads, by id: (parent channel, name, owner).
    threads: HashMap<String, Thread>,
    /// Thread creation answers 403 Missing Permissions.
    refuse_threads: bool,
    /// Members with the Manage Server permission (their interactions say so).
    managers: Vec<String>,
    /// Channels whose lookup answers 403 Missing Access.
    hidden: Vec<String>,
    /// Interaction token → (channel, id of its original response message).
    originals: HashMap<String, (String, String)>,
    /// Messages deleted in the chat: editing one is refused (404, Unknown Message).
    deleted: Vec<String>,
    /// Channels closed to the bot (a DM whose user blocked it): writes answer 403.
    closed: Vec<String>,
    /// Attachment path → bytes, served by GET; and the paths fetched.
    files: HashMap<String, Vec<u8>>,
    downloads: Vec<String>,
    /// Attachment path → where its GET redirects to.
    redirects: HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Thread {
    pub id: String,
    pub parent: String,
    pub name: String,
    pub owner: String,
}

/// Discord's per-route buckets: 5 writes per 5 s for each route and major parameter
/// (channel, or interaction webhook), announced in `X-RateLimit-*` headers, and 429 with
/// a fractional `retry_after` beyond that; and the global limit of 50 requests a second
/// (429 with `"global": true`).
#[derive(Default)]
struct Buckets {
    windows: HashMap<String, (Instant, u32)>,
    global: Option<(Instant, u32)>,
    refusals: Vec<(String, f64)>,
}

const GLOBAL_LIMIT: u32 = 50;

const BUCKET_LIMIT: u32 = 5;
const BUCKET_WINDOW: Duration = Duration::from_secs(5);

impl Buckets {
    /// Counts one request on `key`: `Ok(remaining, reset_after)` or `Err(retry_after)`.
    fn take(&mut self, key: &str, now: Instant) -> Result<(u32, f64), (f64, bool)> {
        let global = self.global.get_or_insert((now, 0));
        if now >= global.0 + Duration::from_secs(1) {
            *global = (now, 0);
        }
        if global.1 >= GLOBAL_LIMIT {
            let retry_after = (global.0 + Duration::from_secs(1) - now).as_secs_f64();
            self.refusals.push(("global".to_string(), retry_after));
            return Err((retry_after, true));
        }
        global.1 += 1;
        let window = self.windows.entry(key.to_string()).or_insert((now, 0));
        if now >= window.0 + BUCKET_WINDOW {
            *window = (now, 0);
        }
        let reset_after = (window.0 + BUCKET_WINDOW - now).as_secs_f64();
        if window.1 >= BUCKET_LIMIT {
            self.refusals.push((key.to_string(), reset_after));
            return Err((reset_after, false));
        }
        window.1 += 1;
        Ok((BUCKET_LIMIT - window.1, reset_after))
    }
}

/// The bucket of a write: the method, the route and its major parameter.
fn bucket_key(method: &str, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
    match parts.as_slice() {
        ["channels", channel, "messages", ..] => Some(format!("{method} channels/{channel}")),
        ["webhooks", app, token, ..] => Some(format!("{method} webhooks/{app}/{token}")),
        _ => None,
    }
}

#[derive(Clone)]
pub struct FakeDiscord {
    state: Arc<Mutex<DcState>>,
    gateway: broadcast::Sender<GatewayCommand>,
    seq: Arc<AtomicU64>,
    pub port: u16,
    pub gateway_port: u16,
}

pub fn user(id: &str, name: &str) -> Value {
    json!({"id": id, "username": name, "global_name": name, "discriminator": "0", "avatar": null, "bot": false})
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "username": "gptbot", "global_name": null, "discriminator": "0", "avatar": null, "bot": true})
}

fn timestamp() -> String {
    "2026-11-27T10:00:00.000000+00:00".to_string()
}

/// A Message object as Discord sends it.
pub fn message(
    id: &str,
    channel: &str,
    author: Value,
    content: &str,
    guild: Option<&str>,
) -> Value {
    let mut m = json!({
        "id": id, "channel_id": channel, "author": author, "content": content,
        "timestamp": timestamp(), "edited_timestamp": null, "tts": false,
        "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": false, "type": 0, "flags": 0
    });
    if let Some(g) = guild {
        m["guild_id"] = json!(g);
        m["member"] = json!({"roles": [], "joined_at": timestamp(), "deaf": false, "mute": false, "flags": 0});
    }
    m
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let rest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (gateway, _) = broadcast::channel(64);
        let fake = FakeDiscord {
            state: Arc::new(Mutex::new(DcState {
                next_id: 9_000_000_000_000_000_000,
                ..DcState::default()
            })),
            gateway,
            seq: Arc::new(AtomicU64::new(0)),
            port: rest.local_addr().unwrap().port(),
            gateway_port: ws.local_addr().unwrap().port(),
        };
        let app = axum::Router::new()
            .fallback(rest_api)
            .with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(rest, app).await.unwrap();
        });
        let gw = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                tokio::spawn(gw.clone().serve_gateway(stream));
            }
        });
        fake
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn new_id(&self) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        s.next_id.to_string()
    }

    async fn serve_gateway(self, stream: tokio::net::TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        self.state.lock().unwrap().connections += 1;
        let (mut tx, mut rx) = ws.split();
        let mut commands = self.gateway.subscribe();
        let hello = json!({"op": 10, "d": {"heartbeat_interval": 41250}, "s": null, "t": null});
        if tx.send(Ws::Text(hello.to_string())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                frame = rx.next() => {
                    let Some(Ok(frame)) = frame else { return };
                    let Ws::Text(text) = frame else { continue };
                    let Ok(payload) = serde_json::from_str::<Value>(&text) else { continue };
                    self.state.lock().unwrap().gateway_in.push(payload.clone());
                    let reply = match payload["op"].as_u64() {
                        Some(1) => Some(json!({"op": 11, "d": null, "s": null, "t": null})),
                        Some(2) if self.state.lock().unwrap().hold_ready => None,
                        Some(2) => Some(self.dispatch_frame("READY", json!({
                            "v": 10, "user": bot_user(), "guilds": [],
                            "session_id": "fake-session-1",
                            "resume_gateway_url": format!("ws://127.0.0.1:{}", self.gateway_port),
                            "shard": payload["d"]["shard"].clone(),
                            "application": {"id": BOT_ID, "flags": 0}
                        }))),
                        Some(6) => Some(self.dispatch_frame("RESUMED", json!({}))),
                        _ => None,
                    };
                    if let Some(reply) = reply
                        && tx.send(Ws::Text(reply.to_string())).await.is_err()
                    {
                        return;
                    }
                }
                command = commands.recv() => match command {
                    Ok(GatewayCommand::Dispatch(t, d)) => {
                        let frame = self.dispatch_frame(&t, d);
                        if tx.send(Ws::Text(frame.to_string())).await.is_err() {
                            return;
                        }
                    }
                    Ok(GatewayCommand::Close(code)) => {
                        let _ = tx.send(Ws::Close(Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: "fake gateway closing".into(),
                        }))).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    }

    fn dispatch_frame(&self, t: &str, d: Value) -> Value {
        let s = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        json!({"op": 0, "s": s, "t": t, "d": d})
    }

    /// Waits until the gateway has a connected session (READY sent).
    pub async fn wait_ready(&self) {
        self.wait_gateway(10, "IDENTIFY", |frames| frames.iter().any(|f| f["op"] == 2))
            .await;
    }

    pub async fn wait_gateway(&self, secs: u64, what: &str, done: impl Fn(&[Value]) -> bool) {
        let what = format!("gateway {what}");
        super::eventually(
            secs,
            &what,
            || done(&self.state.lock().unwrap().gateway_in),
            String::new,
        )
        .await;
    }

    pub fn gateway_frames(&self) -> Vec<Value> {
        self.state.lock().unwrap().gateway_in.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Sends a dispatch event to the connected bot.
    pub fn dispatch(&self, t: &str, d: Value) {
        let _ = self
            .gateway
            .send(GatewayCommand::Dispatch(t.to_string(), d));
    }

    /// Closes the gateway connection with `code`, as Discord does before a resume.
    pub fn drop_gateway(&self, code: u16) {
        let _ = self.gateway.send(GatewayCommand::Close(code));
    }

    /// A user's message; returns its id.
    pub fn send_message(
        &self,
        channel: &str,
        author: Value,
        content: &str,
        guild: Option<&str>,
    ) -> String {
        let id = self.new_id();
        let mut m = message(&id, channel, author, content, guild);
        if content.contains(&format!("<@{BOT_ID}>")) {
            m["mentions"] = json!([bot_user()]);
        }
        self.dispatch("MESSAGE_CREATE", m);
        id
    }

    /// A user's reply to one of the bot's messages.
    pub fn send_reply(
        &self,
        channel: &str,
        author: Value,
        content: &str,
        guild: Option<&str>,
        to: &str,
    ) -> String {
        let id = self.new_id();
        let mut m = message(&id, channel, author, content, guild);
        m["type"] = json!(19);
        m["message_reference"] = json!({"message_id": to, "channel_id": channel});
        m["referenced_message"] = message(to, channel, bot_user(), "an earlier answer", guild);
        self.dispatch("MESSAGE_CREATE", m);
        id
    }

    /// A slash command invocation; returns the interaction token.
    pub fn slash(
        &self,
        name: &str,
        options: Value,
        channel: &str,
        who: Value,
        guild: Option<&str>,
    ) -> String {
        let id = self.new_id();
        let token = format!("itoken-{id}");
        let mut i = json!({
            "id": id, "application_id": BOT_ID, "type": 2,
            "data": {"id": "7000000000000000001", "name": name, "type": 1, "options": options},
            "channel_id": channel, "token": token, "version": 1, "locale": "en-US",
            "app_permissions": "2147483648", "entitlements": [], "attachment_size_limit": 8388608,
            "authorizing_integration_owners": {}, "context": if guild.is_some() { 0 } else { 1 }
        });
        match guild {
            Some(g) => {
                i["guild_id"] = json!(g);
                // Use Application Commands, and Manage Server for a manager.
                let manages = who["id"]
                    .as_str()
                    .is_some_and(|id| self.state.lock().unwrap().managers.iter().any(|m| m == id));
                let permissions = if manages { "2147483680" } else { "2147483648" };
                i["member"] = json!({"user": who, "roles": [], "joined_at": timestamp(), "deaf": false, "mute": false, "flags": 0, "permissions": permissions});
            }
            None => i["user"] = who,
        }
        let original = self.new_id();
        self.state
            .lock()
            .unwrap()
            .originals
            .insert(token.clone(), (channel.to_string(), original));
        self.dispatch("INTERACTION_CREATE", i);
        token
    }

    /// The threads opened so far (by the bot or with [`FakeDiscord::user_thread`]).
    pub fn threads(&self) -> Vec<Thread> {
        let mut threads: Vec<Thread> = self
            .state
            .lock()
            .unwrap()
            .threads
            .values()
            .cloned()
            .collect();
        threads.sort_by(|a, b| a.id.cmp(&b.id));
        threads
    }

    /// A thread a member opened in `parent`; returns its id.
    pub fn user_thread(&self, parent: &str, owner: &str) -> String {
        let id = self.new_id();
        self.state.lock().unwrap().threads.insert(
            id.clone(),
            Thread {
                id: id.clone(),
                parent: parent.to_string(),
                name: "members' thread".into(),
                owner: owner.to_string(),
            },
        );
        id
    }

    /// `GET /channels/{id}` is refused with 403 Missing Access for this channel.
    pub fn hide_channel(&self, id: &str) {
        self.state.lock().unwrap().hidden.push(id.to_string());
    }

    /// Thread creation is refused with 403 (the bot lacks Create Public Threads).
    /// From now on IDENTIFY gets no READY: the bot stays connecting.
    pub fn hold_ready(&self) {
        self.state.lock().unwrap().hold_ready = true;
    }

    /// `user` may manage the server: the permissions their interactions carry include
    /// Manage Server.
    pub fn make_manager(&self, user: &str) {
        self.state.lock().unwrap().managers.push(user.to_string());
    }

    pub fn refuse_threads(&self) {
        self.state.lock().unwrap().refuse_threads = true;
    }

    /// An attachment object as Discord sends it in a message, its bytes served by this
    /// fake at the attachment's `url` (as Discord's CDN serves them).
    pub fn attachment(&self, filename: &str, content_type: &str, bytes: &[u8]) -> Value {
        let id = self.new_id();
        let path = format!("/attachments/{id}/{filename}");
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.clone(), bytes.to_vec());
        let url = format!("http://127.0.0.1:{}{path}?ex=1&is=2&hm=3", self.port);
        json!({"id": id, "filename": filename, "size": bytes.len(), "url": url,
               "proxy_url": url, "content_type": content_type})
    }

    /// An attachment whose URL (on the CDN's host) answers with a redirect to `to`.
    pub fn attachment_redirecting(&self, filename: &str, content_type: &str, to: &str) -> Value {
        let attachment = self.attachment(filename, content_type, b"");
        let path = format!(
            "/attachments/{}/{filename}",
            attachment["id"].as_str().unwrap()
        );
        self.state
            .lock()
            .unwrap()
            .redirects
            .insert(path, to.to_string());
        attachment
    }

    /// The attachment paths the bot fetched.
    pub fn downloads(&self) -> Vec<String> {
        self.state.lock().unwrap().downloads.clone()
    }

    /// A user's message with attachments; returns its id.
    pub fn send_with_attachments(
        &self,
        channel: &str,
        author: Value,
        content: &str,
        guild: Option<&str>,
        attachments: Vec<Value>,
        flags: u64,
    ) -> String {
        let id = self.new_id();
        let mut m = message(&id, channel, author, content, guild);
        m["attachments"] = Value::Array(attachments);
        m["flags"] = json!(flags);
        self.dispatch("MESSAGE_CREATE", m);
        id
    }

    /// From now on, apply Discord's per-route buckets (5 writes per 5 s per channel or
    /// interaction), announced in `X-RateLimit-*` headers, and the global 50 a second.
    pub fn enforce_rate_limits(&self) {
        self.state.lock().unwrap().buckets = Some(Buckets::default());
    }

    /// The 429s answered under the buckets: (bucket, retry_after).
    pub fn rate_limit_refusals(&self) -> Vec<(String, f64)> {
        self.state
            .lock()
            .unwrap()
            .buckets
            .as_ref()
            .map(|b| b.refusals.clone())
            .unwrap_or_default()
    }

    pub fn rate_limit_next(&self, method: &str, path_prefix: &str, retry_after: f64) {
        self.state.lock().unwrap().limits.push((
            method.to_string(),
            path_prefix.to_string(),
            retry_after,
            false,
        ));
    }

    /// The next matching call gets a *global* 429: the whole bot must pause.
    pub fn rate_limit_next_global(&self, method: &str, path_prefix: &str, retry_after: f64) {
        self.state.lock().unwrap().limits.push((
            method.to_string(),
            path_prefix.to_string(),
            retry_after,
            true,
        ));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn calls_matching(&self, method: &str, path_part: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.contains(path_part))
            .collect()
    }

    /// The current content of every message the bot wrote (incl. interaction responses),
    /// in creation order; interaction originals are keyed `@original:<token>`.
    pub fn texts(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.order.iter().map(|id| s.texts[id].clone()).collect()
    }

    pub async fn wait_until(&self, secs: u64, what: &str, done: impl Fn(&[Call]) -> bool) {
        super::eventually(
            secs,
            what,
            || done(&self.calls()),
            || {
                let calls: Vec<_> = self
                    .calls()
                    .iter()
                    .map(|c| format!("{} {} {}", c.method, c.path, c.body))
                    .collect();
                format!("calls: {calls:#?}")
            },
        )
        .await;
    }

    /// Waits until some message the bot wrote satisfies `matches`.
    pub async fn wait_text(&self, secs: u64, what: &str, matches: impl Fn(&str) -> bool) {
        super::eventually(
            secs,
            what,
            || self.texts().iter().any(|t| matches(t)),
            || format!("texts: {:#?}", self.texts()),
        )
        .await;
    }

    /// The user of DM channel `channel` blocks the bot: every message and edit there is
    /// refused (403, code 50007), as Discord does.
    pub fn close_channel(&self, channel: &str) {
        self.state.lock().unwrap().closed.push(channel.to_string());
    }

    /// Someone deletes the bot's message `id` (a moderator in a guild, the user in a DM).
    pub fn delete_message(&self, id: &str) {
        let mut s = self.state.lock().unwrap();
        s.texts.remove(id);
        s.order.retain(|m| m != id);
        s.deleted.push(id.to_string());
    }

    fn write(&self, key: String, content: &str) {
        let mut s = self.state.lock().unwrap();
        if !s.texts.contains_key(&key) {
            s.order.push_back(key.clone());
        }
        s.texts.insert(key, content.to_string());
    }
}

fn json_response(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn rest_api(
    State(fake): State<FakeDiscord>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if method == Method::GET && path.starts_with("/attachments/") {
        let mut s = fake.state.lock().unwrap();
        let file = s.files.get(&path).cloned();
        if let Some(to) = s.redirects.get(&path).cloned() {
            s.downloads.push(path);
            return (StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response();
        }
        s.downloads.push(path);
        return match file {
            Some(bytes) => (StatusCode::OK, bytes).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let limited = {
        let mut s = fake.state.lock().unwrap();
        s.calls.push(Call {
            method: method.to_string(),
            path: path.clone(),
            body: body.clone(),
            at: Instant::now(),
        });
        let hit = s
            .limits
            .iter()
            .position(|(m, p, _, _)| *m == method.as_str() && path.starts_with(p.as_str()));
        hit.map(|i| {
            let (_, _, retry_after, global) = s.limits.remove(i);
            (retry_after, global)
        })
    };
    if let Some((retry_after, global)) = limited {
        let mut response = json_response(
            429,
            json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": global, "code": 0}),
        );
        let headers = response.headers_mut();
        headers.insert("retry-after", format!("{retry_after}").parse().unwrap());
        headers.insert("x-ratelimit-scope", "user".parse().unwrap());
        return response;
    }
    let announced = {
        let mut s = fake.state.lock().unwrap();
        match (&mut s.buckets, bucket_key(method.as_str(), &path)) {
            (Some(buckets), Some(key)) => match buckets.take(&key, Instant::now()) {
                Ok(limits) => Some(limits),
                Err((retry_after, global)) => {
                    let mut response = json_response(
                        429,
                        json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": global, "code": 0}),
                    );
                    let headers = response.headers_mut();
                    headers.insert(
                        "retry-after",
                        format!("{}", retry_after.ceil()).parse().unwrap(),
                    );
                    headers.insert("x-ratelimit-scope", "user".parse().unwrap());
                    return response;
                }
            },
            _ => None,
        }
    };
    let mut response = answer(&fake, &method, &path, &body);
    if let Some((remaining, reset_after)) = announced {
        let headers = response.headers_mut();
        headers.insert(
            "x-ratelimit-limit",
            BUCKET_LIMIT.to_string().parse().unwrap(),
        );
        headers.insert(
            "x-ratelimit-remaining",
            remaining.to_string().parse().unwrap(),
        );
        headers.insert(
            "x-ratelimit-reset-after",
            format!("{reset_after:.3}").parse().unwrap(),
        );
    }
    response
}

/// The answer to one REST call.
fn answer(fake: &FakeDiscord, method: &Method, path: &str, body: &Value) -> Response {
    let content = body["content"].as_str().unwrap_or("").to_string();
    if content.chars().count() > 2000 {
        return json_response(
            400,
            json!({"code": 50035, "message": "Invalid Form Body", "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}}),
        );
    }
    let parts: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["gateway"]) | ("GET", ["gateway", "bot"]) => json_response(
            200,
            json!({"url": format!("ws://127.0.0.1:{}", fake.gateway_port), "shards": 1,
                   "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}),
        ),
        ("GET", ["users", "@me"]) => json_response(200, bot_user()),
        ("PUT", ["applications", app, "commands"])
        | ("PUT", ["applications", app, "guilds", _, "commands"]) => {
            let commands: Vec<Value> = body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"id": format!("70000000000000000{:02}", i + 10), "application_id": app, "version": "1",
                           "type": 1, "name": c["name"], "description": c["description"],
                           "options": c.get("options").cloned().unwrap_or(json!([]))})
                })
                .collect();
            json_response(200, Value::Array(commands))
        }
        ("POST", ["interactions", _, _, "callback"]) => StatusCode::NO_CONTENT.into_response(),
        // Opening a DM: the channel's id is the recipient's with a 9 in front.
        ("POST", ["users", "@me", "channels"]) => {
            let recipient = body["recipient_id"].as_str().unwrap_or("0");
            json_response(
                200,
                json!({"id": format!("9{recipient}"), "type": 1, "recipients": [{"id": recipient}]}),
            )
        }
        ("POST", ["channels", _, "typing"]) => StatusCode::NO_CONTENT.into_response(),
        ("POST" | "PATCH", ["channels", channel, "messages", ..])
            if fake
                .state
                .lock()
                .unwrap()
                .closed
                .iter()
                .any(|c| c == channel) =>
        {
            json_response(
                403,
                json!({"code": 50007, "message": "Cannot send messages to this user"}),
            )
        }
        ("POST", ["channels", channel, "messages"]) => {
            let id = fake.new_id();
            fake.write(id.clone(), &content);
            json_response(200, message(&id, channel, bot_user(), &content, None))
        }
        ("PATCH", ["channels", channel, "messages", id]) => {
            if fake.state.lock().unwrap().deleted.iter().any(|d| d == id) {
                return json_response(404, json!({"code": 10008, "message": "Unknown Message"}));
            }
            fake.write(id.to_string(), &content);
            json_response(200, message(id, channel, bot_user(), &content, None))
        }
        ("PATCH", ["webhooks", _, token, "messages", "@original"]) => {
            fake.write(format!("@original:{token}"), &content);
            let (channel, id) = fake
                .state
                .lock()
                .unwrap()
                .originals
                .get(*token)
                .cloned()
                .unwrap_or_else(|| ("3000000000000000001".into(), fake.new_id()));
            json_response(200, message(&id, &channel, bot_user(), &content, None))
        }
        ("POST", ["channels", channel, "messages", message_id, "threads"]) => {
            let mut s = fake.state.lock().unwrap();
            if s.refuse_threads {
                return json_response(
                    403,
                    json!({"code": 50013, "message": "Missing Permissions"}),
                );
            }
            let thread = Thread {
                id: message_id.to_string(),
                parent: channel.to_string(),
                name: body["name"].as_str().unwrap_or("").to_string(),
                owner: BOT_ID.to_string(),
            };
            if thread.name.is_empty() || thread.name.chars().count() > 100 {
                return json_response(400, json!({"code": 50035, "message": "Invalid Form Body"}));
            }
            s.threads.insert(thread.id.clone(), thread.clone());
            json_response(201, thread_json(&thread))
        }
        ("GET", ["channels", id]) => {
            if fake.state.lock().unwrap().hidden.iter().any(|h| h == id) {
                return json_response(403, json!({"code": 50001, "message": "Missing Access"}));
            }
            let thread = fake.state.lock().unwrap().threads.get(*id).cloned();
            match thread {
                Some(thread) => json_response(200, thread_json(&thread)),
                None => json_response(
                    200,
                    json!({"id": id, "type": 0, "guild_id": GUILD, "name": "general",
                           "position": 0, "permission_overwrites": [], "nsfw": false,
                           "parent_id": null, "rate_limit_per_user": 0, "topic": null}),
                ),
            }
        }
        ("POST", ["webhooks", _, _token]) => {
            let id = fake.new_id();
            fake.write(id.clone(), &content);
            json_response(
                200,
                message(&id, "3000000000000000001", bot_user(), &content, None),
            )
        }
        ("PATCH", ["webhooks", _, _token, "messages", id]) => {
            fake.write(id.to_string(), &content);
            json_response(
                200,
                message(id, "3000000000000000001", bot_user(), &content, None),
            )
        }
        _ => json_response(404, json!({"code": 0, "message": "404: Not Found"})),
    }
}

/// A thread as a Channel object (type 11, public thread).
fn thread_json(thread: &Thread) -> Value {
    json!({"id": thread.id, "type": 11, "guild_id": GUILD, "parent_id": thread.parent,
           "owner_id": thread.owner, "name": thread.name, "rate_limit_per_user": 0,
           "message_count": 0, "member_count": 1, "flags": 0, "total_message_sent": 0,
           "thread_metadata": {"archived": false, "auto_archive_duration": 1440,
                               "archive_timestamp": timestamp(), "locked": false}})
}
