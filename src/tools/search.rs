//! The built-in `web_search` tool: a SearXNG instance's JSON API (self-hosted, no key).

use async_trait::async_trait;
use serde::Deserialize;

use super::Tool;
use crate::config::ToolSettings;
use crate::core::model::ToolSpec;
use crate::core::tools::{Offered, ToolError};

pub(super) struct WebSearch {
    http: reqwest::Client,
    url: reqwest::Url,
    max_results: usize,
    price: i64,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    results: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(default)]
    title: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    content: String,
}

/// The bytes of a search answer read at most (a page of results is a few KB).
const MAX_RESPONSE_BYTES: usize = 512 * 1024;

impl WebSearch {
    pub(super) fn from_settings(
        settings: &ToolSettings,
        http: reqwest::Client,
    ) -> Option<WebSearch> {
        let search = &settings.web_search;
        let mut url = search.searxng_url.clone()?;
        url.path_segments_mut().ok()?.pop_if_empty().push("search");
        Some(WebSearch {
            http,
            url,
            max_results: search.max_results.unwrap_or(5).clamp(1, 20),
            price: search.price_per_call.unwrap_or(settings.price_per_call),
        })
    }
}

#[async_trait]
impl Tool for WebSearch {
    fn offered(&self) -> Offered {
        Offered {
            spec: ToolSpec {
                name: "web_search".into(),
                description:
                    "Search the web. Returns the top results' titles, addresses and snippets."
                        .into(),
                parameters: serde_json::json!({
                    "type": "object",
                    "properties": {"query": {"type": "string", "description": "What to search for"}},
                    "required": ["query"],
                }),
            },
            price: self.price,
            label: "🔎 searching".into(),
        }
    }

    async fn run(&self, arguments: serde_json::Value) -> Result<String, ToolError> {
        let query = arguments["query"]
            .as_str()
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| ToolError::BadArguments("`query` (a string) is required".into()))?;
        let failed =
            |e: reqwest::Error| ToolError::Failed(crate::core::error::chain(&e).to_string());
        let mut response = self
            .http
            .get(self.url.clone())
            .query(&[("q", query), ("format", "json")])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ToolError::Failed("the search answer is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let found: Response = serde_json::from_slice(&body)
            .map_err(|e| ToolError::Failed(format!("unreadable search answer: {e}")))?;
        if found.results.is_empty() {
            return Ok(format!("No results for {query:?}."));
        }
        let mut text = String::new();
        for (i, hit) in found.results.iter().take(self.max_results).enumerate() {
            text.push_str(&format!(
                "{}. {} — {}\n",
                i + 1,
                hit.title.trim(),
                hit.url.trim()
            ));
            if !hit.content.trim().is_empty() {
                text.push_str(&format!("   {}\n", hit.content.trim()));
            }
        }
        Ok(text)
    }
}
