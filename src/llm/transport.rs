//! The HTTP layer under async-openai: sends a request, retries what is worth retrying
//! before the answer starts, and turns any failed answer into one readable error.
//!
//! Replaces async-openai's own retry layer for two reasons. Its error reading insists on
//! OpenAI's exact body shape, so llama.cpp's numeric `code`, vLLM's flat error, an HTML
//! page from a proxy all came out as "unreadable response" with the status lost (and the
//! body logged at error level). And it honours any `Retry-After` however long, silently
//! holding a user's answer for a minute; here a wait longer than [`MAX_RETRY_AFTER`] is
//! handed back as a rate limit the user is told about.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::{ApiError, ApiErrorResponse, OpenAIError};
use async_openai::middleware::HttpRequestFactory;
use reqwest::StatusCode;

use super::errors::ServerError;

/// The longest `Retry-After` waited out inside one answer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How a [`ServerError`] travels through async-openai to [`read_api_error`]: its fields
/// go into OpenAI's error object, `Retry-After` into `param` under this prefix.
const RETRY_AFTER_PARAM: &str = "gptbot-retry-after-ms:";

#[derive(Clone)]
pub struct Transport {
    http: reqwest::Client,
    retries: u32,
}

impl Transport {
    pub fn new(http: reqwest::Client, retries: u32) -> Transport {
        Transport { http, retries }
    }

    async fn execute(
        http: reqwest::Client,
        request: HttpRequestFactory,
        retries: u32,
    ) -> Result<reqwest::Response, OpenAIError> {
        let mut attempt = 0;
        loop {
            let sent = http.execute(request.build().await?).await;
            let wait = match sent {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let error = read(response).await;
                    match retry_delay(&error, attempt) {
                        Some(wait) if attempt < retries => {
                            tracing::debug!(%error, attempt = attempt + 1, ?wait, "model server answered an error, retrying");
                            wait
                        }
                        _ => return Err(to_openai(error)),
                    }
                }
                Err(e) if (e.is_connect() || e.is_request()) && attempt < retries => {
                    tracing::debug!(error = %e, attempt = attempt + 1, "could not reach the model server, retrying");
                    backoff(attempt)
                }
                Err(e) => return Err(OpenAIError::Reqwest(e)),
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future =
        Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        Box::pin(Self::execute(self.http.clone(), request, self.retries))
    }
}

/// Rate limits (within [`MAX_RETRY_AFTER`]) and server trouble are retried; a context
/// overflow, bad credentials or a refused request would only fail again.
fn retry_delay(error: &ServerError, attempt: u32) -> Option<Duration> {
    let quota =
        [error.code.as_deref(), error.kind.as_deref()].contains(&Some("insufficient_quota"));
    match error.status {
        429 if quota => None,
        429 => match error.retry_after {
            Some(wait) if wait > MAX_RETRY_AFTER => None,
            Some(wait) => Some(wait),
            None => Some(backoff(attempt)),
        },
        500 | 502..=504 => Some(
            error
                .retry_after
                .unwrap_or(backoff(attempt))
                .min(MAX_RETRY_AFTER),
        ),
        _ => None,
    }
}

/// 200 ms doubling per attempt (capped at 64×): for every retry before the first token.
pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200) * 2u32.pow(attempt.min(6))
}

async fn read(response: reqwest::Response) -> ServerError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(|secs| Duration::from_secs_f64(secs.min(86_400.0)));
    let body = response.bytes().await.unwrap_or_default();
    ServerError::read(status, &body, retry_after)
}

fn to_openai(error: ServerError) -> OpenAIError {
    OpenAIError::ApiError(ApiErrorResponse {
        status_code: StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY),
        api_error: ApiError {
            message: error.message,
            r#type: error.kind,
            param: error
                .retry_after
                .map(|d| format!("{RETRY_AFTER_PARAM}{}", d.as_millis())),
            code: error.code,
            misalignment: None,
        },
    })
}

/// The [`ServerError`] carried by an async-openai error from this transport (or from
/// async-openai itself, for the rare errors it raises on its own).
pub fn read_api_error(api: ApiErrorResponse) -> ServerError {
    let retry_after = api
        .api_error
        .param
        .as_deref()
        .and_then(|p| p.strip_prefix(RETRY_AFTER_PARAM))
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    ServerError {
        status: api.status_code.as_u16(),
        message: api.api_error.message,
        code: api.api_error.code,
        kind: api.api_error.r#type,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, retry_after: Option<u64>) -> ServerError {
        ServerError {
            status,
            message: "m".into(),
            code: None,
            kind: None,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn what_is_retried() {
        assert_eq!(
            retry_delay(&error(429, Some(3)), 0),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_delay(&error(429, Some(60)), 0), None);
        assert_eq!(
            retry_delay(&error(429, None), 1),
            Some(Duration::from_millis(400))
        );
        assert_eq!(
            retry_delay(&error(503, None), 0),
            Some(Duration::from_millis(200))
        );
        for status in [400, 401, 403, 404, 413, 422, 501] {
            assert_eq!(retry_delay(&error(status, None), 0), None, "{status}");
        }
        let mut quota = error(429, None);
        quota.code = Some("insufficient_quota".into());
        assert_eq!(retry_delay(&quota, 0), None);
    }

    #[test]
    fn a_server_error_survives_the_trip_through_async_openai() {
        let original = ServerError {
            status: 429,
            message: "slow down".into(),
            code: Some("400".into()),
            kind: Some("requests".into()),
            retry_after: Some(Duration::from_millis(1500)),
        };
        let OpenAIError::ApiError(api) = to_openai(original.clone()) else {
            panic!("not an API error");
        };
        assert_eq!(read_api_error(api), original);
    }
}
