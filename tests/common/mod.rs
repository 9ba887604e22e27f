//! Test harness: a real `redis-server` per test on a free port, a temp SQLite file, a
//! fake OpenAI-compatible server speaking the real wire format on 127.0.0.1, a
//! recording chat adapter, and `spawn_app()` booting the real `App` against them.
#![allow(dead_code)]

pub mod chats;
pub mod cluster;
pub mod discord;
pub mod fleet;
pub mod ledger;
pub mod members;
pub mod multipart;
pub mod openai;
pub mod ops;
pub mod pdf;
pub mod postgres;
pub mod searxng;
pub mod stars;
pub mod telegram;
pub mod web;
pub mod webdriver;

pub use openai::*;

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use gptbot::app::App;
use gptbot::config::Settings;
use gptbot::core::adapter::{
    AdapterError, Capabilities, ChatAdapter, LengthUnit, ReplyTarget, SentMessage, Stage,
};
use gptbot::core::event::{ChatKind, Content, IncomingEvent, Platform, Sender};
use tokio::time::Instant;

// ---------------------------------------------------------------- redis-server

/// A `redis-server` owned by one test, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                child: spawn_redis(port),
                port,
            };
            if server.wait_ready() {
                return server;
            }
            let _ = server.child.kill();
        }
        panic!("redis-server did not start on any free port");
    }

    /// Kills the server (SIGKILL): what it held is gone, as after a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_redis(self.port);
        assert!(self.wait_ready(), "redis-server did not come back");
    }

    fn wait_ready(&mut self) -> bool {
        use std::io::{Read, Write};
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                if s.write_all(b"PING\r\n").is_ok() {
                    let mut buf = [0u8; 7];
                    if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until `key` is gone (expired or deleted), panicking with `what` after
    /// `within`.
    pub async fn wait_gone(&self, key: &str, within: Duration, what: &str) {
        let mut conn = self.client().await;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            if left == -2 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_redis(port: u16) -> Child {
    let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
    Command::new(&binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{binary}` ({e}). The tests need a real Redis: install it \
                 (`apt-get install -y redis-server`, which scripts/test.sh does) or set \
                 REDIS_SERVER_BIN to its path."
            )
        })
}

/// Polls `done` every 20 ms until it holds; after `secs` fails with `what` and `detail()`.
pub async fn eventually(
    secs: u64,
    what: &str,
    done: impl Fn() -> bool,
    detail: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; {}", detail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `holds` stays true for all of `period` (polled every 20 ms): for what
/// must *not* happen — a second answer, a second charge — where no event marks its
/// absence.
pub async fn stays(period: Duration, what: &str, holds: impl Fn() -> bool) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        assert!(holds(), "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(holds(), "{what} stopped holding");
}

/// What a one-shot run of the `gptbot` binary printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `gptbot` binary with exactly `env`, `stdin` as its input, to its end.
pub async fn gptbot(args: &[&str], env: &HashMap<String, String>, stdin: &str) -> Run {
    let mut env = env.clone();
    env.insert("USER".into(), "tester".into());
    gptbot_with_exactly(args, &env, stdin).await
}

/// [`gptbot`] with exactly `env` (not even `$USER`).
pub async fn gptbot_with_exactly(args: &[&str], env: &HashMap<String, String>, stdin: &str) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gptbot"))
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A process that fails at start-up may exit before reading its input.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut input, stdin.as_bytes()).await;
    drop(input);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("gptbot did not finish")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `gptbot run` as a process with exactly `env`, its log (stderr) written to `log`.
pub fn spawn_gptbot_run(
    env: &HashMap<String, String>,
    log: &std::path::Path,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_gptbot"))
        .arg("run")
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Sends `signal` (e.g. "TERM", "KILL") to the process.
pub fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("the process already exited").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

/// Waits for the process to exit (panics after `secs`).
pub async fn exit_status(child: &mut tokio::process::Child, secs: u64) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(secs), child.wait())
        .await
        .unwrap_or_else(|_| panic!("gptbot did not exit within {secs} s"))
        .unwrap()
}

/// What stops a started app: cancelling the token, or dropping the guard (at the end
/// of a test).
pub fn stopper() -> (
    tokio_util::sync::DropGuard,
    tokio_util::sync::CancellationToken,
) {
    let token = tokio_util::sync::CancellationToken::new();
    (token.clone().drop_guard(), token)
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------- recording adapter

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send {
        id: String,
        text: String,
        stage: Stage,
    },
    Edit {
        id: String,
        text: String,
        stage: Stage,
    },
    Typing,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub action: Action,
    pub at: Instant,
}

/// A chat adapter that records every call (with its time) and can answer the n-th edit
/// with a flood-control `RetryAfter`.
pub struct RecordingAdapter {
    caps: Capabilities,
    log: Mutex<Vec<Recorded>>,
    next_id: Mutex<u64>,
    /// (edit number, 1-based, → wait) answered with RetryAfter instead of being applied.
    flood: Mutex<HashMap<usize, Duration>>,
    edits_seen: Mutex<usize>,
    /// How long the platform takes to acknowledge a final text the user already sees.
    final_ack: Mutex<Duration>,
}

impl RecordingAdapter {
    pub fn new(max_len: usize, min_edit_interval: Duration) -> RecordingAdapter {
        RecordingAdapter::with_caps(Capabilities {
            max_message_len: max_len,
            length_unit: LengthUnit::Chars,
            min_edit_interval,
            first_message_delay: Duration::ZERO,
        })
    }

    pub fn with_caps(caps: Capabilities) -> RecordingAdapter {
        RecordingAdapter {
            caps,
            log: Mutex::new(Vec::new()),
            next_id: Mutex::new(0),
            flood: Mutex::new(HashMap::new()),
            edits_seen: Mutex::new(0),
            final_ack: Mutex::new(Duration::ZERO),
        }
    }

    /// Final texts are shown at once but acknowledged only after `delay`.
    pub fn slow_final_ack(&self, delay: Duration) {
        *self.final_ack.lock().unwrap() = delay;
    }

    async fn ack(&self, stage: Stage) {
        let delay = *self.final_ack.lock().unwrap();
        if stage == Stage::Final && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    pub fn flood_on_edit(&self, n: usize, wait: Duration) {
        self.flood.lock().unwrap().insert(n, wait);
    }

    pub fn log(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    pub fn actions(&self) -> Vec<Action> {
        self.log().into_iter().map(|r| r.action).collect()
    }

    /// The final text of every message, in the order the messages were sent.
    pub fn messages(&self) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        let mut text: HashMap<String, String> = HashMap::new();
        for r in self.log() {
            match r.action {
                Action::Send { id, text: t, .. } => {
                    order.push(id.clone());
                    text.insert(id, t);
                }
                Action::Edit { id, text: t, .. } => {
                    text.insert(id, t);
                }
                Action::Typing => {}
            }
        }
        order.into_iter().map(|id| text[&id].clone()).collect()
    }

    pub fn last_message(&self) -> String {
        self.messages().pop().unwrap_or_default()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

#[async_trait]
impl ChatAdapter for RecordingAdapter {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn send(
        &self,
        target: &ReplyTarget,
        text: &str,
        stage: Stage,
    ) -> Result<SentMessage, AdapterError> {
        assert!(
            self.caps.length_unit.len(text) <= self.caps.max_message_len,
            "sent a message over the limit"
        );
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            n.to_string()
        };
        self.log.lock().unwrap().push(Recorded {
            action: Action::Send {
                id: id.clone(),
                text: text.to_string(),
                stage,
            },
            at: Instant::now(),
        });
        self.ack(stage).await;
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: id,
        })
    }

    async fn edit(
        &self,
        message: &SentMessage,
        text: &str,
        stage: Stage,
    ) -> Result<(), AdapterError> {
        assert!(
            self.caps.length_unit.len(text) <= self.caps.max_message_len,
            "edited a message over the limit"
        );
        let n = {
            let mut seen = self.edits_seen.lock().unwrap();
            *seen += 1;
            *seen
        };
        if let Some(wait) = self.flood.lock().unwrap().remove(&n) {
            return Err(AdapterError::RetryAfter(wait));
        }
        self.log.lock().unwrap().push(Recorded {
            action: Action::Edit {
                id: message.message_id.clone(),
                text: text.to_string(),
                stage,
            },
            at: Instant::now(),
        });
        self.ack(stage).await;
        Ok(())
    }

    async fn typing(&self, _target: &ReplyTarget) -> Result<(), AdapterError> {
        self.log.lock().unwrap().push(Recorded {
            action: Action::Typing,
            at: Instant::now(),
        });
        Ok(())
    }
}

// ---------------------------------------------------------------- the app

pub struct TestApp {
    pub app: App,
    pub openai: FakeOpenAi,
    pub redis: Option<RedisServer>,
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

pub struct Options {
    pub redis: bool,
    pub env: Vec<(String, String)>,
    /// A configuration file (TOML) loaded under the environment, for what environment
    /// variables cannot say (lists of tables such as `[[model.available]]`).
    pub file: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            redis: true,
            env: Vec::new(),
            file: None,
        }
    }
}

impl Options {
    pub fn with(mut self, key: &str, value: impl ToString) -> Options {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// `key` set to `value` unless the test set it already.
    pub fn or_with(self, key: &str, value: impl ToString) -> Options {
        if self.env.iter().any(|(k, _)| k == key) {
            return self;
        }
        self.with(key, value)
    }

    /// The bot's Telegram side pointed at the fake Bot API `tg`.
    pub fn telegram(self, tg: &telegram::FakeTelegram) -> Options {
        self.with("TELEGRAM_BOT_TOKEN", telegram::TOKEN)
            .with("GPTBOT__TELEGRAM__API_URL", tg.api_url())
    }

    pub fn file(mut self, toml: &str) -> Options {
        self.file = Some(toml.to_string());
        self
    }

    pub fn memory_sessions(mut self) -> Options {
        self.redis = false;
        self
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// The environment a test app runs with (also used to run the binary).
pub fn test_env(
    openai: &FakeOpenAi,
    redis: Option<&RedisServer>,
    dir: &tempfile::TempDir,
    extra: &[(String, String)],
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("OPENAI_BASE_URL".into(), openai.base_url());
    env.insert("OPENAI_API_KEY".into(), "sk-test-secret-key".into());
    env.insert(
        "DATABASE_URL".into(),
        format!("sqlite://{}", dir.path().join("quota.db").display()),
    );
    if let Some(redis) = redis {
        env.insert("REDIS_URL".into(), redis.url());
    }
    // Generous: a loaded CI machine must not turn a slow answer into a retry.
    env.insert("GPTBOT__OPENAI__TIMEOUT".into(), "10s".into());
    env.insert("GPTBOT__MODEL__MAX_TOKENS".into(), "100".into());
    // Tests run side by side: each operations listener on a port of its own.
    env.insert("GPTBOT__HTTP__LISTEN".into(), "127.0.0.1:0".into());
    // PDFs are read by the bot's binary re-run; a test's own executable is not it.
    env.insert(
        "GPTBOT__FILES__READER".into(),
        env!("CARGO_BIN_EXE_gptbot").into(),
    );
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    env
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    spawn_app_on(FakeOpenAi::start().await, options).await
}

/// The app against a fake model server set up beforehand (the tokenizer is chosen at
/// start-up by probing it).
pub async fn spawn_app_on(openai: FakeOpenAi, options: Options) -> TestApp {
    // Logs show up with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("gptbot=debug")
        .with_test_writer()
        .try_init();
    let redis = options.redis.then(RedisServer::start);
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(&openai, redis.as_ref(), &dir, &options.env);
    let file = options.file.map(|toml| {
        let path = dir.path().join("gptbot.toml");
        std::fs::write(&path, toml).unwrap();
        path
    });
    let settings = Settings::load(file.as_deref(), &env).expect("test settings are valid");
    let app = App::build(settings).await.expect("app builds");
    TestApp {
        app,
        openai,
        redis,
        dir,
        env,
    }
}

/// Another process's app on the same configuration (the same database and Redis), as
/// a replica, or this one restarted, would be: booted the way `gptbot run` boots.
pub async fn replica_of(env: &HashMap<String, String>) -> App {
    let settings = Settings::load(None, env).expect("test settings are valid");
    App::build(settings).await.expect("the replica builds")
}

impl TestApp {
    /// A second app on this one's database, Redis and settings (see [`replica_of`]).
    pub async fn replica(&self) -> App {
        replica_of(&self.env).await
    }

    /// The history of telegram user `user`'s private chat with the bot.
    pub async fn turns(&self, user: &str) -> Vec<gptbot::core::session::Turn> {
        self.app
            .sessions
            .load(&dm(user, "").session_key())
            .await
            .unwrap()
            .turns
    }

    pub async fn send(
        &self,
        adapter: &RecordingAdapter,
        event: &IncomingEvent,
    ) -> gptbot::chat::Outcome {
        match typed(event) {
            Some(event) => self.app.conversation.handle(&event, adapter).await,
            None => gptbot::chat::Outcome::Ignored,
        }
    }
}

/// The event as an adapter hands it over: typed text parsed at the edge into a command
/// (or text for the model); `None` for a command addressed to another bot, which an
/// adapter drops.
pub fn typed(event: &IncomingEvent) -> Option<IncomingEvent> {
    let mut event = event.clone();
    if let Content::Text(text) = &event.content {
        event.content = Content::from_typed(text, Some("gptbot"))?;
    }
    Some(event)
}

/// A direct text message from `user`.
pub fn dm(user: &str, text: &str) -> IncomingEvent {
    IncomingEvent {
        platform: Platform::Telegram,
        chat_id: user.to_string(),
        chat_kind: ChatKind::Direct,
        group: None,
        sender: Sender {
            id: user.to_string(),
            display_name: format!("User {user}"),
            is_bot: false,
        },
        message_id: "1".into(),
        content: Content::Text(text.to_string()),
        mentioned: false,
        reply_to_bot: false,
        thread: None,
        quoted: None,
        attachments: Vec::new(),
        bot_thread: false,
        sender_manages_group: false,
    }
}

/// A group message from `user` in `chat`.
pub fn group(chat: &str, user: &str, text: &str, mentioned: bool) -> IncomingEvent {
    IncomingEvent {
        chat_id: chat.to_string(),
        chat_kind: ChatKind::Group,
        group: Some(chat.to_string()),
        mentioned,
        ..dm(user, text)
    }
}
