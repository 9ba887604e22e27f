//! The webhook, as operators and replicas handle it: registered at start only when
//! Telegram does not already have the URL, never deleted when a replica stops, and set,
//! shown or deleted by hand with `gptbot telegram webhook set|info|delete`. In front of
//! teloxide's handler a guard checks the secret in constant time and keeps update bodies
//! out of the logs (teloxide logs the whole body of an update it cannot parse).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, Update};
use teloxide::{ApiError, RequestError};

use super::TelegramError;
use crate::config::TelegramSettings;

/// The largest update body accepted (Telegram's are far smaller).
const MAX_UPDATE_BYTES: usize = 1 << 20;

/// The updates gptbot asks Telegram for.
pub fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![
        AllowedUpdate::Message,
        AllowedUpdate::EditedMessage,
        AllowedUpdate::CallbackQuery,
        AllowedUpdate::PreCheckoutQuery,
    ]
}

/// A Bot API client for the configured token and API URL.
pub fn bot(settings: &TelegramSettings) -> Result<Bot, TelegramError> {
    let token = settings.token.as_ref().ok_or(TelegramError::NoToken)?;
    let api_url = reqwest::Url::parse(settings.api_url.as_str().trim_end_matches('/'))
        .map_err(|e| anyhow::Error::new(e).context("telegram.api_url"))?;
    Ok(Bot::new(token.expose_secret()).set_api_url(api_url))
}

/// Registers the webhook when Telegram does not already have this URL (a replica starting
/// next to running ones changes nothing). Telegram does not reveal the secret: after
/// changing `telegram.webhook_secret`, run `gptbot telegram webhook set` (or change the
/// URL) so that it is registered again.
pub async fn register(
    bot: &Bot,
    url: &reqwest::Url,
    secret: &SecretString,
) -> Result<(), RequestError> {
    match bot.get_webhook_info().await {
        Ok(info) if info.url.as_ref() == Some(url) => {
            tracing::info!(url = %url, "webhook already registered");
            return Ok(());
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %crate::core::error::chain(&e), "getWebhookInfo failed; registering the webhook")
        }
    }
    set(bot, url, secret).await?;
    tracing::info!(url = %url, "webhook registered");
    Ok(())
}

async fn set(bot: &Bot, url: &reqwest::Url, secret: &SecretString) -> Result<(), RequestError> {
    bot.set_webhook(url.clone())
        .secret_token(secret.expose_secret().to_string())
        .allowed_updates(allowed_updates())
        .await?;
    Ok(())
}

/// What `gptbot telegram webhook` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookAction {
    Info,
    Set,
    Delete { drop_pending: bool },
}

/// Runs an operator's webhook command and returns what to print.
pub async fn operate(
    settings: &TelegramSettings,
    action: WebhookAction,
) -> Result<String, TelegramError> {
    let bot = bot(settings)?;
    let failed = |e: RequestError| match e {
        RequestError::Api(ApiError::InvalidToken) => TelegramError::BadToken(e.to_string()),
        other => TelegramError::Unreachable {
            url: settings.api_url.to_string(),
            message: other.to_string(),
        },
    };
    match action {
        WebhookAction::Info => {
            let info = bot.get_webhook_info().await.map_err(failed)?;
            let mut out = format!(
                "url: {}\npending updates: {}\n",
                info.url
                    .as_ref()
                    .map_or("(none: the bot is in polling mode)", |u| u.as_str()),
                info.pending_update_count
            );
            if let Some(date) = info.last_error_date {
                out.push_str(&format!(
                    "last error: {} ({})\n",
                    info.last_error_message.as_deref().unwrap_or("?"),
                    date.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
            if let Some(allowed) = &info.allowed_updates {
                out.push_str(&format!("allowed updates: {allowed:?}\n"));
            }
            Ok(out)
        }
        WebhookAction::Set => {
            let url = settings.webhook_url.clone().ok_or_else(|| {
                anyhow::anyhow!("telegram.webhook_url must be set to register a webhook")
            })?;
            let secret = settings.webhook_secret.as_ref().ok_or_else(|| {
                anyhow::anyhow!("telegram.webhook_secret must be set to register a webhook")
            })?;
            set(&bot, &url, secret).await.map_err(failed)?;
            Ok(format!("webhook set to {url}\n"))
        }
        WebhookAction::Delete { drop_pending } => {
            bot.delete_webhook()
                .drop_pending_updates(drop_pending)
                .await
                .map_err(failed)?;
            Ok(format!(
                "webhook deleted{}; the bot receives nothing until a webhook is set again or it runs in polling mode\n",
                if drop_pending {
                    " (pending updates dropped)"
                } else {
                    ""
                }
            ))
        }
    }
}

/// Checks `X-Telegram-Bot-Api-Secret-Token` in constant time, then that the body is an
/// update. A body that is not is answered 200 (Telegram would resend it forever) and
/// logged by its error's position only: never the body, which holds users' messages.
pub async fn guard(State(secret): State<SecretString>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    if !same_secret(&given, secret.expose_secret().as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_UPDATE_BYTES).await else {
        tracing::warn!("webhook request refused: body too large or unreadable");
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    if let Err(e) = serde_json::from_slice::<Update>(&bytes) {
        tracing::warn!(
            category = ?e.classify(),
            line = e.line(),
            column = e.column(),
            bytes = bytes.len(),
            "webhook update could not be read; dropped (its content is not logged)"
        );
        return StatusCode::OK.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Equal secrets, compared without an early exit on the first differing byte.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    let diff = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc-123", b"abc-123"));
        assert!(!same_secret(b"abc-124", b"abc-123"));
        assert!(!same_secret(b"abc", b"abc-123"));
        assert!(!same_secret(b"", b"x"));
    }
}
