//! The HTTP layer of the model client: sends a request, retries what is worth retrying
//! before the answer starts, and turns any failed answer into one readable error.
//!
//! Written here rather than taken from async-openai (which the bot used until its stream
//! reader became the largest cost of a message, see [`super::sse`]) and kept for the
//! reasons it replaced async-openai's retry layer in the first place: that layer's error
//! reading insisted on OpenAI's exact body shape, so llama.cpp's numeric `code`, vLLM's
//! flat error, an HTML page from a proxy all came out as "unreadable response" with the
//! status lost; and it honoured any `Retry-After` however long, silently holding a user's
//! answer for a minute. Here a wait longer than [`MAX_RETRY_AFTER`] is handed back as a
//! rate limit the user is told about.

use std::time::Duration;

use super::errors::ServerError;

/// The longest `Retry-After` waited out inside one answer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Why a request got no successful answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server answered with an error status.
    #[error("the model server answered {}: {}", .0.status, .0.message)]
    Server(ServerError),
    /// No answer: connection refused, reset, timed out.
    #[error("could not reach the model server")]
    Http(#[source] reqwest::Error),
}

#[derive(Clone)]
pub struct Transport {
    http: reqwest::Client,
    retries: u32,
}

impl Transport {
    pub fn new(http: reqwest::Client, retries: u32) -> Transport {
        Transport { http, retries }
    }

    /// Sends `request` (its body in memory, so it can be sent again) until a success
    /// status, an error not worth retrying, or the retries are spent.
    pub async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response, SendError> {
        let mut attempt = 0;
        let mut left = Some(request);
        loop {
            let Some(request) = left.take() else {
                unreachable!("a request is kept for every retry")
            };
            // Sent as a copy while retries remain; the last attempt sends the original.
            let (this, retry) = match (attempt < self.retries)
                .then(|| request.try_clone())
                .flatten()
            {
                Some(copy) => {
                    left = Some(request);
                    (copy, true)
                }
                None => (request, false),
            };
            let sent = self.http.execute(this).await;
            let wait = match sent {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let error = read(response).await;
                    match retry_delay(&error, attempt) {
                        Some(wait) if retry => {
                            tracing::debug!(%error, attempt = attempt + 1, ?wait, "model server answered an error, retrying");
                            wait
                        }
                        _ => return Err(SendError::Server(error)),
                    }
                }
                Err(e) if (e.is_connect() || e.is_request()) && retry => {
                    tracing::debug!(error = %e, attempt = attempt + 1, "could not reach the model server, retrying");
                    backoff(attempt)
                }
                Err(e) => return Err(SendError::Http(e)),
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
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
}
