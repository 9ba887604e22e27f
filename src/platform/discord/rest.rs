//! Discord's REST writes — channel messages, the interaction's original response and its
//! follow-ups, "typing…" — with Discord's rate limits honoured on every path: the
//! per-route buckets announced in `X-RateLimit-Remaining` / `X-RateLimit-Reset-After`,
//! a 429's `retry_after` (fractional seconds) waited exactly, and a `global` 429 pausing
//! every route.
//!
//! Why not serenity's `Http` for these: its rate limiter always talks to discord.com
//! (it ignores `HttpBuilder::proxy`), so with a custom `discord.api_url` it must be off,
//! and its errors drop the 429 body, so `retry_after` is lost. serenity still runs the
//! gateway, command registration and the interaction callback (defer).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;

use crate::core::adapter::AdapterError;
use crate::core::coordination::Breaker;
use crate::core::pacing::SharedBudgets;
use crate::platform::pacer::Priority;

/// How often one write is tried when Discord keeps answering 429.
const MAX_ATTEMPTS: u32 = 8;

#[derive(Default)]
struct Limits {
    /// Route → when its bucket is usable again (remaining was 0, or a 429).
    routes: HashMap<String, Instant>,
    /// A global 429: nothing before this.
    global_until: Option<Instant>,
}

/// The REST client of one bot.
pub struct Rest {
    http: reqwest::Client,
    /// `{api_url}/api/v10`
    base: String,
    token: SecretString,
    limits: Mutex<Limits>,
    /// The route pauses every replica shares (with `REDIS_URL`).
    shared: Option<Arc<dyn SharedBudgets>>,
    breaker: Breaker,
    /// Hosts attachments are fetched from: Discord's CDN, and the API's own host (a
    /// proxy or the tests' fake serves them there).
    file_hosts: Vec<String>,
}

/// Where Discord serves attachments.
const CDN_HOSTS: [&str; 2] = ["cdn.discordapp.com", "media.discordapp.net"];

impl Rest {
    pub fn new(
        api_url: &str,
        token: SecretString,
        shared: Option<Arc<dyn SharedBudgets>>,
    ) -> Result<Rest, reqwest::Error> {
        let file_hosts: Vec<String> = CDN_HOSTS
            .iter()
            .map(|h| h.to_string())
            .chain(host_of(api_url))
            .collect();
        // A redirect is followed only to another of the allowed hosts: an attachment
        // URL that passed the check must not lead anywhere else (the metadata address,
        // a private service).
        let allowed = file_hosts.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            let host = host_of(attempt.url().as_str()).unwrap_or_default();
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if allowed.contains(&host) {
                attempt.follow()
            } else {
                attempt.error(format!("redirect to {host}, which is not Discord's CDN"))
            }
        });
        Ok(Rest {
            http: reqwest::Client::builder()
                .user_agent(concat!(
                    "DiscordBot (https://github.com/gptbot, ",
                    env!("CARGO_PKG_VERSION"),
                    ")"
                ))
                .timeout(Duration::from_secs(30))
                .redirect(redirects)
                .build()?,
            base: format!("{}/api/v10", api_url.trim_end_matches('/')),
            token,
            shared,
            breaker: Breaker::default(),
            limits: Mutex::new(Limits::default()),
            file_hosts,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Limits> {
        // Plain timestamps: a poisoned lock is still consistent.
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When `route` may be used: this process's pauses, and every replica's.
    async fn ready_at(&self, route: &str) -> Option<Instant> {
        let shared = match self.shared.as_ref().filter(|_| self.breaker.closed()) {
            Some(shared) => self
                .breaker
                .answered(shared.paused("discord", route).await)
                .flatten()
                .map(|left| Instant::now() + left),
            None => None,
        };
        let limits = self.lock();
        let now = Instant::now();
        [
            limits.routes.get(route).copied(),
            limits.global_until,
            shared,
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .max()
    }

    /// `route` (or every route) is not to be used for `wait`, here and on every replica.
    async fn pause(&self, route: &str, global: bool, wait: Duration) {
        if let Some(shared) = self.shared.as_ref().filter(|_| self.breaker.closed()) {
            let route = (!global).then_some(route);
            self.breaker
                .record(shared.pause("discord", route, wait).await);
        }
        self.pause_here(route, global, wait);
    }

    fn pause_here(&self, route: &str, global: bool, wait: Duration) {
        let now = Instant::now();
        let until = now + wait;
        let mut limits = self.lock();
        if global {
            limits.global_until = Some(limits.global_until.map_or(until, |t| t.max(until)));
            return;
        }
        if limits.routes.len() > 1024 {
            limits.routes.retain(|_, t| *t > now);
        }
        let t = limits.routes.entry(route.to_string()).or_insert(until);
        *t = (*t).max(until);
    }

    /// Sends `method path` (under `/api/v10`) when its `route` allows (Discord buckets by
    /// route and major parameter: the channel, or the interaction's webhook). A draft
    /// never waits: it is skipped with [`AdapterError::NotNow`]. Other writes wait out buckets and 429s (exactly
    /// `retry_after`) and are tried again. Errors never carry the URL: for interactions
    /// it holds the interaction's token.
    pub async fn write(
        &self,
        method: Method,
        path: String,
        route: String,
        body: Option<&Value>,
        priority: Priority,
    ) -> Result<Value, AdapterError> {
        let mut attempts = 0;
        loop {
            if let Some(ready) = self.ready_at(&route).await {
                let wait = ready - Instant::now();
                if priority == Priority::Draft {
                    return Err(AdapterError::NotNow(wait));
                }
                tokio::time::sleep_until(ready).await;
            }
            let mut request = self
                .http
                .request(method.clone(), format!("{}{}", self.base, path))
                .header(
                    "Authorization",
                    format!("Bot {}", self.token.expose_secret()),
                );
            if let Some(body) = body {
                request = request.json(body);
            }
            let label = crate::core::metrics::route_label(method.as_str(), &path);
            let response = request.send().await.map_err(|e| {
                crate::core::metrics::platform_call("discord", label.clone(), None);
                AdapterError::Failed(
                    anyhow::Error::new(e.without_url())
                        .context(format!("Discord request {} failed", route)),
                )
            })?;
            let status = response.status();
            crate::core::metrics::platform_call("discord", label, Some(status.as_u16()));
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<f64>().ok())
            };
            if let (Some(remaining), Some(reset_after)) = (
                header("x-ratelimit-remaining"),
                header("x-ratelimit-reset-after"),
            ) && remaining < 1.0
            {
                self.pause(&route, false, Duration::from_secs_f64(reset_after.max(0.0)))
                    .await;
            }
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status.as_u16() == 429 {
                let wait = Duration::from_secs_f64(
                    body["retry_after"]
                        .as_f64()
                        .unwrap_or(1.0)
                        .clamp(0.0, 3600.0),
                );
                let global = body["global"].as_bool().unwrap_or(false);
                tracing::info!(route = %route, ?wait, global, "Discord rate limit (429)");
                self.pause(&route, global, wait).await;
                attempts += 1;
                if priority == Priority::Draft || attempts >= MAX_ATTEMPTS {
                    return Err(AdapterError::RetryAfter(wait));
                }
                continue;
            }
            // Unknown Message: the message to edit was deleted in the chat.
            if status.as_u16() == 404 && method == Method::PATCH && body["code"] == 10008 {
                return Err(AdapterError::Gone);
            }
            // Writing to a chat that is closed to the bot: a user who blocked it or
            // left every shared server (50007), a channel it lost access to (50001,
            // 50013) or that was deleted (10003).
            if method != Method::GET
                && path.contains("/messages")
                && matches!(body["code"].as_u64(), Some(50007 | 50001 | 50013 | 10003))
            {
                return Err(AdapterError::Unreachable(format!(
                    "Discord answered {status}: {}",
                    body["message"].as_str().unwrap_or("no message")
                )));
            }
            if !status.is_success() {
                return Err(AdapterError::Failed(anyhow::anyhow!(
                    "Discord answered {status} to {}: {} (code {})",
                    route,
                    body["message"].as_str().unwrap_or("no message"),
                    body["code"]
                )));
            }
            return Ok(body);
        }
    }
}

impl Rest {
    /// Reads `path` (under `/api/v10`), under the same rate limits as writes.
    pub async fn get(&self, path: String) -> Result<Value, AdapterError> {
        let route = format!("GET {path}");
        self.write(Method::GET, path, route, None, Priority::Final)
            .await
    }

    /// Fetches an attachment by its URL, from Discord's CDN (or the API's host) only —
    /// the URL arrives in a message, so it is not trusted further — and stops reading at
    /// `max_bytes`.
    pub async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, AdapterError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            AdapterError::Failed(anyhow::Error::new(e).context("an attachment URL"))
        })?;
        let host = host_of(url).unwrap_or_default();
        if !self.file_hosts.contains(&host) {
            return Err(AdapterError::Failed(anyhow::anyhow!(
                "attachment host {host} is not Discord's CDN"
            )));
        }
        let mut response = self
            .http
            .get(parsed)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                AdapterError::Failed(
                    anyhow::Error::new(e.without_url()).context("fetching an attachment"),
                )
            })?;
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(AdapterError::TooLarge { limit: max_bytes });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            AdapterError::Failed(
                anyhow::Error::new(e.without_url()).context("fetching an attachment"),
            )
        })? {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(AdapterError::TooLarge { limit: max_bytes });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// `host[:port]` of a URL, as attachment URLs are compared.
fn host_of(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attachments_come_only_from_discords_cdn_or_the_api_host() {
        crate::app::install_crypto_provider();
        let rest = Rest::new("http://127.0.0.1:9", SecretString::from("t"), None).unwrap();
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1:10/file.png",
            "https://cdn.discordapp.com.evil.example/x.png",
            "not a url",
        ] {
            let refused = rest.download(url, 1000).await.unwrap_err();
            assert!(
                matches!(refused, AdapterError::Failed(_)),
                "{url} must be refused before any request"
            );
        }
        assert_eq!(
            host_of("https://CDN.discordapp.com/attachments/1/2/a.png").as_deref(),
            Some("cdn.discordapp.com")
        );
        assert_eq!(
            host_of("http://127.0.0.1:9/api").as_deref(),
            Some("127.0.0.1:9")
        );
    }
}
