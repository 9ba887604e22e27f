//! Metric names (Prometheus conventions: `gptbot_` prefix, `_total` counters, base units)
//! and small helpers, for any layer that measures something through the `metrics`
//! facade. Without an installed recorder (tests, one-shot commands) they cost nothing.
//! Help texts and buckets: `crate::ops::metrics`.

pub const MESSAGES: &str = "gptbot_messages_total";
pub const TOOL_CALLS: &str = "gptbot_tool_calls_total";
pub const MODEL_FIRST_TOKEN: &str = "gptbot_model_first_token_seconds";
pub const MODEL_DURATION: &str = "gptbot_model_duration_seconds";
pub const REPLY_OVERHEAD: &str = "gptbot_reply_overhead_seconds";
pub const TOKENS_CHARGED: &str = "gptbot_tokens_charged_total";
pub const HOLDS_OPEN: &str = "gptbot_holds_open";
pub const HOLDS_TOKENS: &str = "gptbot_holds_tokens";
pub const HOLDS_OLDEST: &str = "gptbot_holds_oldest_age_seconds";
pub const ANSWERS_IN_FLIGHT: &str = "gptbot_answers_in_flight";
pub const PLATFORM_CALLS: &str = "gptbot_platform_api_calls_total";
pub const PLATFORM_429: &str = "gptbot_platform_rate_limited_total";
pub const SESSION_STORE: &str = "gptbot_session_store_seconds";
pub const QUOTA_DB: &str = "gptbot_quota_db_seconds";
pub const MODEL_ERRORS: &str = "gptbot_model_errors_total";
pub const BUILD_INFO: &str = "gptbot_build_info";
pub const READY: &str = "gptbot_ready";
pub const COORDINATION_DEGRADED: &str = "gptbot_coordination_degraded";
pub const WEB_LOGINS_REFUSED: &str = "gptbot_web_logins_refused_total";

/// The status class label of a platform API call.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(429) => "429",
        Some(200..=299) => "2xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "error",
    }
}

/// Counts one platform API call (and a 429 among them). `method` must be of few values
/// (a Bot API method, a route with its ids replaced): it is a label.
pub fn platform_call(
    platform: &'static str,
    method: impl Into<metrics::SharedString>,
    status: Option<u16>,
) {
    let class = status_class(status);
    metrics::counter!(PLATFORM_CALLS, "platform" => platform, "method" => method.into(), "status" => class)
        .increment(1);
    if class == "429" {
        metrics::counter!(PLATFORM_429, "platform" => platform).increment(1);
    }
}

/// A REST path as a label: ids and tokens become `:id` (`POST /channels/:id/messages`).
pub fn route_label(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path
        .split('/')
        .map(|s| {
            if s.len() > 20 || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) {
                ":id"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", segments.join("/"))
}

/// Runs `f` and records how long it took in the histogram `metric` under `op`.
pub async fn timed<F: std::future::Future>(
    metric: &'static str,
    op: &'static str,
    f: F,
) -> F::Output {
    let started = std::time::Instant::now();
    let out = f.await;
    metrics::histogram!(metric, "op" => op).record(started.elapsed().as_secs_f64());
    out
}
pub const PAYMENTS: &str = "gptbot_payments_total";
