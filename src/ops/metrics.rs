//! The Prometheus recorder (installed once per process), every metric's help and unit,
//! and the histogram buckets; `/metrics` renders them ([`render`]). The names, and the
//! helpers code that measures something calls, are in [`crate::core::metrics`].

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub use crate::core::metrics::*;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets from 1 ms to 2 min: store and database calls sit at the low end, model
/// calls at the high end.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle) and
/// describes every metric. `None` if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .install_recorder()
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()?;
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            spawn_upkeep(handle.clone());
            Some(handle)
        })
        .clone()
}

/// Histogram samples wait in per-histogram buffers until upkeep folds them into their
/// buckets; without a scrape nothing else would, and the buffers would grow for good.
fn spawn_upkeep(handle: PrometheusHandle) {
    let upkeep = move || loop {
        std::thread::sleep(std::time::Duration::from_secs(5));
        handle.run_upkeep();
    };
    if let Err(e) = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(upkeep)
    {
        tracing::warn!(error = %e, "metrics upkeep thread not started");
    }
}

/// The Prometheus text exposition of every metric.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}

fn describe() {
    describe_counter!(
        TOOL_CALLS,
        "Tool calls a model made, by tool and outcome (ok, failed); refused calls are not run."
    );
    describe_counter!(
        MESSAGES,
        "Messages handled, by platform and outcome (answered, command, cancelled, failed, refused_quota, refused_access, rate_limited, busy, refused_too_long, refused_command, refused_restarting)."
    );
    describe_histogram!(
        MODEL_FIRST_TOKEN,
        Unit::Seconds,
        "Time from sending a request to the model server to its first token (retries included)."
    );
    describe_histogram!(
        MODEL_DURATION,
        Unit::Seconds,
        "Time from sending a request to the model server to the end of its answer."
    );
    describe_histogram!(
        REPLY_OVERHEAD,
        Unit::Seconds,
        "Time from the model's last token to the complete reply delivered to the platform."
    );
    describe_counter!(
        TOKENS_CHARGED,
        "Tokens charged to users, by kind (prompt, completion)."
    );
    describe_gauge!(
        COORDINATION_DEGRADED,
        "1 while this replica cannot reach the shared coordination store (Redis) and decides answers in flight, /cancel, rate limits, model calls in flight and send budgets alone; 0 when shared."
    );
    describe_counter!(
        PAYMENTS,
        "Telegram Stars payments recorded and granted (a charge delivered twice counts once)."
    );
    describe_gauge!(
        HOLDS_OPEN,
        "Quota holds open (tokens reserved for answers in progress), all processes."
    );
    describe_gauge!(HOLDS_TOKENS, "Tokens held by open quota holds.");
    describe_gauge!(
        HOLDS_OLDEST,
        Unit::Seconds,
        "Age of the oldest open quota hold."
    );
    describe_gauge!(
        ANSWERS_IN_FLIGHT,
        "Model calls in progress in this process."
    );
    describe_counter!(
        PLATFORM_CALLS,
        "Calls to the platforms' APIs, by platform, method and status class (2xx, 4xx, 429, 5xx, error)."
    );
    describe_counter!(PLATFORM_429, "429 answers received from the platforms.");
    describe_histogram!(
        SESSION_STORE,
        Unit::Seconds,
        "Session store latency, by operation."
    );
    describe_histogram!(
        QUOTA_DB,
        Unit::Seconds,
        "Quota database latency, by operation."
    );
    describe_counter!(
        MODEL_ERRORS,
        "Model server failures, by kind (auth, misconfigured, rate_limited, out_of_credit, context_overflow, bad_request, unavailable, timeout, interrupted, unexpected)."
    );
    describe_counter!(
        WEB_LOGINS_REFUSED,
        "Web login and sign-up attempts refused by a limit before any password was checked, by reason (address, busy, account)."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version is a label.");
    describe_gauge!(READY, "1 when the last readiness check passed, by check.");
}
