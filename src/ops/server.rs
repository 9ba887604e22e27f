//! The operations listener (`http.listen`): `/healthz`, `/readyz`, `/metrics`. Served in
//! every mode, on its own port so it can stay on a private interface while a webhook is
//! public.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use super::readiness::Readiness;

#[derive(Clone)]
struct Ops {
    readiness: Arc<Readiness>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// Binds `addr` and serves until `shutdown` turns true; the bound address is returned
/// (for a port of 0).
pub async fn serve(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let state = Ops {
        readiness,
        metrics: super::metrics::install(),
    };
    let router = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state);
    tokio::spawn(super::http::serve(
        listener,
        router,
        shutdown.cancelled_owned(),
    ));
    tracing::info!(addr = %bound, "operations endpoint: /healthz /readyz /metrics");
    Ok(bound)
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let report = ops.readiness.check().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn metrics(State(ops): State<Ops>) -> Response {
    match &ops.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            super::metrics::render(handle),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not recorded by this process\n",
        )
            .into_response(),
    }
}

/// What `gptbot health` found wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotHealthy(pub String);

/// `gptbot health`: asks `/healthz` (or `/readyz`) of the listener at `listen` (an
/// unspecified address such as 0.0.0.0 is asked on loopback). The body on success, what
/// went wrong otherwise.
pub async fn ask(listen: Option<SocketAddr>, ready: bool) -> Result<String, NotHealthy> {
    let mut addr = listen
        .ok_or_else(|| NotHealthy("http.listen is empty: the operations listener is off".into()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let path = if ready { "readyz" } else { "healthz" };
    let url = format!("http://{addr}/{path}");
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| NotHealthy(format!("{url}: {}", crate::core::error::chain(&e))))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(body.trim().to_string())
    } else {
        Err(NotHealthy(format!(
            "{url} answered {}: {}",
            status.as_u16(),
            body.trim()
        )))
    }
}
