//! Real `gptbot run` processes as replicas of one bot: each in Telegram webhook mode on a
//! port of its own, sharing one redis-server and one PostgreSQL, behind a round-robin
//! proxy that hands each update to the next replica (skipping one that does not answer,
//! as a load balancer's health check would).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use gptbot::core::event::{Platform, UserId};
use gptbot::quota::QuotaService;

use super::openai::FakeOpenAi;
use super::postgres::PostgresServer;
use super::telegram::{FakeTelegram, post_update, private_chat, user_json};
use super::{RedisServer, free_port, spawn_gptbot_run, test_env};

pub const SECRET: &str = "fleet-secret_1";

pub struct Fleet {
    _pg: PostgresServer,
    pub redis: RedisServer,
    pub openai: FakeOpenAi,
    pub tg: FakeTelegram,
    pub dir: tempfile::TempDir,
    pub replicas: Vec<tokio::process::Child>,
    /// The proxy's webhook URL: where Telegram would post updates.
    pub hook: String,
    /// The books, opened by the test beside the replicas.
    pub quota: QuotaService,
    http: reqwest::Client,
}

impl Fleet {
    /// `n` replicas configured by the test environment plus `extra`; the Telegram fake
    /// enforces Telegram's flood rules.
    pub async fn start(n: usize, extra: &[(&str, &str)]) -> Fleet {
        gptbot::app::install_crypto_provider();
        let pg = PostgresServer::start();
        let redis = RedisServer::start();
        let openai = FakeOpenAi::start().await;
        let tg = FakeTelegram::start().await;
        tg.enforce_flood_limits();
        let dir = tempfile::tempdir().unwrap();
        let database = pg.database("gptbot").await;
        let env = test_env(
            &openai,
            Some(&redis),
            &dir,
            &[
                ("DATABASE_URL".into(), database),
                ("RUST_LOG".into(), "info".into()),
            ]
            .into_iter()
            // Each replica's own listener is set below.
            .chain(tg.webhook_settings("127.0.0.1:0", SECRET))
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect::<Vec<_>>(),
        );
        let quota = super::ledger::ledger_of(&env).await;
        let mut replicas = Vec::new();
        let mut backends = Vec::new();
        for i in 0..n {
            let port = free_port();
            let mut env: HashMap<String, String> = env.clone();
            env.insert(
                "GPTBOT__TELEGRAM__LISTEN".into(),
                format!("127.0.0.1:{port}"),
            );
            let log = dir.path().join(format!("replica-{i}.log"));
            replicas.push(spawn_gptbot_run(&env, &log));
            wait_listening(port, &log).await;
            backends.push(format!("http://127.0.0.1:{port}"));
        }
        let hook = format!("{}/hook", proxy(backends).await);
        Fleet {
            _pg: pg,
            redis,
            openai,
            tg,
            dir,
            replicas,
            hook,
            quota,
            http: reqwest::Client::new(),
        }
    }

    /// A private message from `user`, through the proxy.
    pub async fn send(&self, user: i64, text: &str) {
        let update = self
            .tg
            .webhook_update(private_chat(user), user_json(user, "U"), text);
        let status = post_update(&self.http, &self.hook, SECRET, &update).await;
        assert_eq!(status, 200, "the proxy found no replica");
    }

    pub async fn wait_text(&self, user: i64, what: &str, seen: impl Fn(&str) -> bool) {
        self.tg
            .wait_until(15, what, |_| self.tg.texts_in(user).iter().any(|t| seen(t)))
            .await;
    }

    /// The books of `user` once `n` answers are settled and every hold is closed: the
    /// invariant and entries summing to the balance.
    pub async fn books(&self, user: i64, n: i64) -> gptbot::quota::Balance {
        let id = UserId::new(Platform::Telegram, user.to_string());
        let balance = super::ledger::settled(&self.quota, &id, n).await;
        super::ledger::assert_books(&self.quota, &id).await;
        balance
    }

    /// Every replica's log, for a failing test's message.
    pub fn logs(&self) -> String {
        (0..self.replicas.len())
            .map(|i| {
                let path = self.dir.path().join(format!("replica-{i}.log"));
                format!(
                    "--- replica {i}\n{}",
                    std::fs::read_to_string(path).unwrap_or_default()
                )
            })
            .collect()
    }
}

async fn wait_listening(port: u16, log: &std::path::Path) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "replica on port {port} never listened:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

struct Proxy {
    backends: Vec<String>,
    next: AtomicUsize,
    http: reqwest::Client,
}

/// Starts the round-robin proxy; its base URL.
async fn proxy(backends: Vec<String>) -> String {
    let state = Arc::new(Proxy {
        backends,
        next: AtomicUsize::new(0),
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
    });
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move { forward(&state, method, uri, headers, body).await }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn forward(
    proxy: &Proxy,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    for _ in 0..proxy.backends.len() {
        let i = proxy.next.fetch_add(1, Ordering::Relaxed) % proxy.backends.len();
        let mut request = proxy
            .http
            .request(method.clone(), format!("{}{path}", proxy.backends[i]))
            .body(body.clone());
        for (name, value) in &headers {
            if name != "host" && name != "content-length" {
                request = request.header(name, value);
            }
        }
        // A replica that is gone: the next one (a load balancer's passive health check).
        let Ok(response) = request.send().await else {
            continue;
        };
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        return (status, response.bytes().await.unwrap_or_default());
    }
    (StatusCode::BAD_GATEWAY, Bytes::new())
}
