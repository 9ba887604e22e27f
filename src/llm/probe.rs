//! Asking the model server what it serves (`GET /models`), at start-up and for
//! `gptbot config check --probe`: a wrong key or model name is found before the first user
//! meets it. Some servers ignore the model name (llama.cpp) or list aliases only, so an
//! unlisted model is a warning, not a refusal.

use secrecy::ExposeSecret;
use serde_json::Value;

use super::errors::ServerError;
use crate::config::Settings;
use crate::core::model::LlmError;

/// What `GET /models` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub models: Vec<String>,
    pub listed: bool,
}

/// Lists the server's models and says whether the configured one is among them.
pub async fn models(settings: &Settings, http: &reqwest::Client) -> Result<Served, LlmError> {
    let url = format!(
        "{}/models",
        settings.openai.base_url.as_str().trim_end_matches('/')
    );
    let mut request = http.get(&url).timeout(settings.openai.timeout);
    if let Some(key) = &settings.openai.api_key {
        request = request.bearer_auth(key.expose_secret());
    }
    let response = request.send().await.map_err(|e| {
        LlmError::Unavailable(format!("GET /models: {}", crate::core::error::chain(&e)))
    })?;
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(ServerError::read(status, &body, None).classify());
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        LlmError::BadRequest(format!("GET /models answered something unreadable: {e}"))
    })?;
    // OpenAI: {"data":[{"id":…}]}; Ollama's native list: {"models":[{"name":…}]}.
    let models: Vec<String> = value["data"]
        .as_array()
        .or(value["models"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| {
            m["id"]
                .as_str()
                .or(m["name"].as_str())
                .or(m["model"].as_str())
        })
        .map(str::to_string)
        .collect();
    let listed = models.iter().any(|m| m == &settings.model.name);
    Ok(Served { models, listed })
}

/// The start-up check: one clear warning when the model is not listed or the server
/// cannot be asked; the bot starts anyway (the server may come up later).
pub async fn warn_if_unserved(settings: &Settings, http: &reqwest::Client) {
    match models(settings, http).await {
        Ok(served) if served.listed || served.models.is_empty() => {}
        Ok(served) => tracing::warn!(
            model = %settings.model.name,
            listed = %shortlist(&served.models),
            "the model server does not list the configured model.name (some servers list aliases only; check the name)"
        ),
        Err(e) if e.is_operator_error() => {
            tracing::error!(error = %crate::core::error::chain(&e), "the model server refuses the bot's configuration")
        }
        Err(e) => {
            tracing::warn!(error = %crate::core::error::chain(&e), "could not ask the model server which models it serves")
        }
    }
}

/// At most ten names, for a log line.
pub fn shortlist(models: &[String]) -> String {
    let mut list = models
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if models.len() > 10 {
        list.push_str(&format!(" and {} more", models.len() - 10));
    }
    list
}

/// `gptbot config check --probe`: what the model server says, line by line on stdout;
/// an error when it cannot be used.
pub async fn report(settings: &Settings) -> Result<(), LlmError> {
    use futures::StreamExt;

    use crate::core::model::{ChatMessage, MessageRole, ModelClient, ModelEvent, ModelRequest};

    let http = super::openai::http_client(settings)?;
    println!(
        "model server: {}",
        crate::config::redact_url_str(settings.openai.base_url.as_str())
    );
    let served = models(settings, &http).await?;
    println!(
        "connection and key: ok ({} models listed)",
        served.models.len()
    );
    match (served.listed, served.models.is_empty()) {
        (true, _) => println!("model {}: listed", settings.model.name),
        (false, true) => println!("model {}: the server lists no models", settings.model.name),
        (false, false) => println!(
            "model {}: NOT listed (the server lists: {}); some servers list aliases only",
            settings.model.name,
            shortlist(&served.models)
        ),
    }
    let counter = super::tokens::TokenCounter::resolve(
        &settings.model.name,
        settings.model.tokenizer,
        settings.openai.base_url.as_str(),
        http.clone(),
    )
    .await;
    println!("token counts: {}", counter.describe());
    let client = super::openai::OpenAiClient::new(settings, http)?;
    let started = std::time::Instant::now();
    let mut stream = client
        .stream(ModelRequest {
            model: None,
            messages: vec![ChatMessage::new(MessageRole::User, "Say OK.")],
            max_tokens: 1,
            tools: Vec::new(),
        })
        .await?;
    let mut usage = None;
    while let Some(event) = stream.next().await {
        if let ModelEvent::Usage(u) = event? {
            usage = Some(u);
        }
    }
    match usage {
        Some(u) => println!(
            "one-token answer: ok in {} ms ({} prompt + {} completion tokens reported)",
            started.elapsed().as_millis(),
            u.prompt_tokens,
            u.completion_tokens
        ),
        None => println!(
            "one-token answer: ok in {} ms, but the server reported no usage (charges are counted locally)",
            started.elapsed().as_millis()
        ),
    }
    Ok(())
}

/// How many requests the model server serves at once, where it says: llama.cpp's
/// `GET /props` `total_slots`. `None` from any other server (OpenAI answers 404), within
/// two seconds.
pub async fn serving_slots(settings: &Settings, http: &reqwest::Client) -> Option<u32> {
    let root = super::tokens::server_root(settings.openai.base_url.as_str());
    let mut request = http
        .get(format!("{root}/props"))
        .timeout(std::time::Duration::from_secs(2));
    if let Some(key) = &settings.openai.api_key {
        request = request.bearer_auth(key.expose_secret());
    }
    let response = request.send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let props: Value = response.json().await.ok()?;
    let slots = props.get("total_slots")?.as_u64()?;
    u32::try_from(slots).ok().filter(|n| *n > 0)
}
