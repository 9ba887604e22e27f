//! `[model]`, and the settings that are choices, parsed into enums once at load time, so no other
//! part of the bot compares strings or can meet a value the configuration did not allow.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::choices::ModelChoice;
use super::parse::BadValue;

/// A tiktoken encoding the bot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GPT-4o, GPT-4.1, the o-series, GPT-5.
    O200kBase,
    /// GPT-4, GPT-3.5.
    Cl100kBase,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    /// The encoding OpenAI's model `name` uses, if it is one of OpenAI's.
    pub fn for_model(name: &str) -> Option<Encoding> {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("openai/").unwrap_or(&name);
        const O200K: &[&str] = &[
            "gpt-5",
            "gpt-4.5",
            "gpt-4.1",
            "gpt-4o",
            "chatgpt-4o",
            "o1",
            "o3",
            "o4",
            "gpt-oss",
            "ft:gpt-4o",
        ];
        const CL100K: &[&str] = &[
            "gpt-4",
            "gpt-3.5",
            "gpt-35",
            "ft:gpt-4",
            "ft:gpt-3.5",
            "text-embedding-ada-002",
            "text-embedding-3",
        ];
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
        if starts(O200K) {
            Some(Encoding::O200kBase)
        } else if starts(CL100K) {
            Some(Encoding::Cl100kBase)
        } else {
            None
        }
    }
}

/// `model.tokenizer`: how prompts are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// tiktoken when the model name is OpenAI's, else the server's tokenizer if it
    /// answers, else the estimate.
    Auto,
    /// The model server's `POST /tokenize` (llama.cpp, vLLM).
    Server,
    /// A conservative count from the text's characters.
    Estimate,
    /// This tiktoken encoding, whatever the model.
    Tiktoken(Encoding),
}

impl FromStr for Tokenizer {
    type Err = BadValue;

    fn from_str(text: &str) -> Result<Tokenizer, BadValue> {
        let text = text.trim();
        let encoding = text.strip_prefix("tiktoken:").unwrap_or(text);
        Ok(match encoding {
            "auto" => Tokenizer::Auto,
            "server" => Tokenizer::Server,
            "estimate" => Tokenizer::Estimate,
            "o200k_base" => Tokenizer::Tiktoken(Encoding::O200kBase),
            "cl100k_base" => Tokenizer::Tiktoken(Encoding::Cl100kBase),
            other => {
                return Err(BadValue(format!(
                    "unknown tokenizer `{other}` (use auto, server, estimate, tiktoken:o200k_base or tiktoken:cl100k_base)"
                )));
            }
        })
    }
}

impl fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tokenizer::Auto => f.write_str("auto"),
            Tokenizer::Server => f.write_str("server"),
            Tokenizer::Estimate => f.write_str("estimate"),
            Tokenizer::Tiktoken(e) => write!(f, "tiktoken:{}", e.name()),
        }
    }
}

impl<'de> Deserialize<'de> for Tokenizer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tokenizer, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Tokenizer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `model.image_detail`: how closely a vision model looks at images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDetail {
    /// 85 tokens an image.
    Low,
    High,
    Auto,
}

impl ImageDetail {
    /// The value of the request's `detail` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageDetail::Low => "low",
            ImageDetail::High => "high",
            ImageDetail::Auto => "auto",
        }
    }
}

/// `openai.max_tokens_field`: the request field that limits the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// Understood by nearly every compatible server.
    MaxTokens,
    /// OpenAI's reasoning models.
    MaxCompletionTokens,
}

impl MaxTokensField {
    pub fn as_str(self) -> &'static str {
        match self {
            MaxTokensField::MaxTokens => "max_tokens",
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizers_parse_once_and_print_back() {
        for text in [
            "auto",
            "server",
            "estimate",
            "tiktoken:o200k_base",
            "tiktoken:cl100k_base",
        ] {
            assert_eq!(text.parse::<Tokenizer>().unwrap().to_string(), text);
        }
        assert_eq!(
            "o200k_base".parse::<Tokenizer>(),
            Ok(Tokenizer::Tiktoken(Encoding::O200kBase))
        );
        let refused = "tiktoken:p50k_base".parse::<Tokenizer>().unwrap_err();
        assert!(
            refused.0.contains("unknown tokenizer `p50k_base`"),
            "{refused}"
        );
    }

    #[test]
    fn openai_model_names_name_their_encoding() {
        assert_eq!(
            Encoding::for_model("gpt-4o-mini"),
            Some(Encoding::O200kBase)
        );
        assert_eq!(Encoding::for_model("gpt-5"), Some(Encoding::O200kBase));
        assert_eq!(Encoding::for_model("o3-mini"), Some(Encoding::O200kBase));
        assert_eq!(
            Encoding::for_model("gpt-4-turbo"),
            Some(Encoding::Cl100kBase)
        );
        assert_eq!(
            Encoding::for_model("gpt-3.5-turbo"),
            Some(Encoding::Cl100kBase)
        );
        assert_eq!(Encoding::for_model("gemma3-270m"), None);
        assert_eq!(Encoding::for_model("llama-3.1-8b"), None);
    }
}

/// `chat.reasoning`: what a user sees of a reasoning model's thinking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reasoning {
    /// While it thinks, "thinking…" and the end of its thinking, live.
    #[default]
    Collapsed,
    /// Only "thinking…".
    Hidden,
}

/// `[model]`: the model that answers, how its tokens are counted, and what it may do.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub name: String,
    pub max_tokens: u32,
    /// Sent as written (an f64 prints as configured; an f32 would send 0.699999988).
    pub temperature: f64,
    pub context_tokens: u32,
    /// "auto", "server", "estimate" or "tiktoken:<encoding>" (see `llm::tokens`).
    pub tokenizer: Tokenizer,
    /// Share of the prompt held on top of its count; unset: 0 for an exact tokenizer,
    /// 10 % for an estimate or a tiktoken encoding chosen by hand.
    #[serde(default)]
    pub reserve_margin: Option<f64>,
    /// `[[model.available]]`: the models users may pick with /model (`name` stays the
    /// default). Empty: /model only says which model answers.
    #[serde(default)]
    pub available: Vec<ModelChoice>,
    /// The speech-to-text model for voice messages (`/audio/transcriptions`, e.g.
    /// `whisper-1`); empty turns voice off.
    pub transcription: String,
    /// How closely a vision model looks at images: "low" (85 tokens each), "high" or
    /// "auto" (counted by OpenAI's tile rule).
    pub image_detail: ImageDetail,
    /// The default model may call the configured tools.
    #[serde(default)]
    pub tools: bool,
}

impl ModelSettings {
    /// The configured entry for `name`, or a plain one (price 1, no images).
    pub fn choice(&self, name: &str) -> ModelChoice {
        self.available
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .unwrap_or_else(|| ModelChoice::plain(name))
    }
}
