//! Speech to text through the OpenAI-compatible `POST /audio/transcriptions` (Whisper,
//! or a local server speaking the same API): multipart form with `model` and `file`,
//! answered with `{"text": …}`. Errors are read like the chat endpoint's.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::errors::ServerError;
use crate::core::model::LlmError;

/// Where and how to ask.
#[derive(Debug, Clone)]
pub struct Transcriber {
    /// `model.transcription` (e.g. `whisper-1`).
    pub model: String,
    /// Ledger tokens per second of audio (`quota.audio_tokens_per_second`).
    pub tokens_per_second: u32,
    pub http: reqwest::Client,
    /// `openai.base_url`, without a trailing slash.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub timeout: Duration,
}

impl Transcriber {
    /// The transcriber configured, or `None` when `model.transcription` is empty.
    pub fn from_settings(
        settings: &crate::config::Settings,
        http: reqwest::Client,
    ) -> Option<Transcriber> {
        let model = settings.model.transcription.trim();
        (!model.is_empty()).then(|| Transcriber {
            model: model.to_string(),
            tokens_per_second: settings.quota.audio_tokens_per_second,
            http,
            base_url: settings
                .openai
                .base_url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            api_key: settings.openai.api_key.clone(),
            timeout: settings.openai.timeout,
        })
    }

    /// What `seconds` of audio cost in ledger tokens (at least one second's worth).
    pub fn cost(&self, seconds: u32) -> i64 {
        i64::from(seconds.max(1)) * i64::from(self.tokens_per_second)
    }

    /// The seconds charged for `audio`: what the file itself says it lasts (an Ogg
    /// stream's last granule, a WAV header), and never less than the client declared nor
    /// than its size at a low speech bitrate — a forged header cannot make a long
    /// recording cheap.
    pub fn seconds(audio: &[u8], declared: u32) -> u32 {
        let measured = super::duration::ogg_seconds(audio)
            .or_else(|| super::duration::wav_seconds(audio))
            .unwrap_or(0.0);
        let by_size = audio.len() as f64 / super::duration::BYTES_PER_SECOND_FLOOR;
        let seconds = measured.max(by_size).ceil().min(f64::from(u32::MAX)) as u32;
        seconds.max(declared)
    }

    /// The text spoken in `audio` (a file called `file_name`).
    pub async fn transcribe(&self, audio: Vec<u8>, file_name: &str) -> Result<String, LlmError> {
        let model = self.model.as_str();
        let part = reqwest::multipart::Part::bytes(audio).file_name(file_name.to_string());
        let form = reqwest::multipart::Form::new()
            .text("model", model.to_string())
            .text("response_format", "json")
            .part("file", part);
        let mut request = self
            .http
            .post(format!("{}/audio/transcriptions", self.base_url))
            .timeout(self.timeout)
            .multipart(form);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                LlmError::Timeout(self.timeout)
            } else {
                LlmError::Unavailable(format!("transcription request failed: {e}"))
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| LlmError::Interrupted(format!("reading the transcription: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(ServerError::read(status, &body, retry_after).classify());
        }
        #[derive(serde::Deserialize)]
        struct Transcription {
            text: String,
        }
        serde_json::from_slice::<Transcription>(&body)
            .map(|t| t.text.trim().to_string())
            .map_err(|e| LlmError::BadRequest(format!("unexpected transcription answer: {e}")))
    }
}
