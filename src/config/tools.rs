//! `[tools]`: what a model marked `tools = true` may call while it answers, and what each
//! call costs in the ledger.

use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::parse::{de_duration, de_url_opt, ser_duration, ser_url_opt};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolSettings {
    /// Model ↔ tool round trips per answer; then the model answers without tools.
    pub max_rounds: u32,
    /// Ledger tokens per tool call, held before it runs (a tool may set its own).
    pub price_per_call: i64,
    /// How long one call may take before the model is told it timed out.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Characters of a tool's result given to the model; the rest is cut with a note.
    pub max_result_chars: usize,
    pub web_search: WebSearchSettings,
}

impl Default for ToolSettings {
    fn default() -> ToolSettings {
        ToolSettings {
            max_rounds: 4,
            price_per_call: 100,
            timeout: Duration::from_secs(20),
            max_result_chars: 8000,
            web_search: WebSearchSettings::default(),
        }
    }
}

/// `[tools.web_search]`: the built-in `web_search` tool, on when a SearXNG instance
/// (self-hosted, no key; its JSON format enabled) is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSearchSettings {
    #[serde(deserialize_with = "de_url_opt", serialize_with = "ser_url_opt")]
    pub searxng_url: Option<Url>,
    /// Results given to the model (5 when unset).
    pub max_results: Option<usize>,
    /// Overrides `tools.price_per_call`.
    pub price_per_call: Option<i64>,
}
