//! The built-in `web_search` tool: a SearXNG instance's JSON API (self-hosted, no key),
//! or Brave Search or Tavily with a key (never logged).

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Tool;
use crate::config::ToolSettings;
use crate::core::model::ToolSpec;
use crate::core::tools::{Offered, ToolError};

pub(super) struct WebSearch {
    http: reqwest::Client,
    engine: Engine,
    max_results: usize,
    price: i64,
}

enum Engine {
    Searxng(reqwest::Url),
    Brave(reqwest::Url, SecretString),
    Tavily(reqwest::Url, SecretString),
}

/// Brave's answer: `web.results[]` with a `description`.
#[derive(Deserialize)]
struct BraveResponse {
    #[serde(default)]
    web: Option<BraveWeb>,
}

#[derive(Deserialize)]
struct BraveWeb {
    #[serde(default)]
    results: Vec<BraveHit>,
}

#[derive(Deserialize)]
struct BraveHit {
    #[serde(default)]
    title: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    description: String,
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
        let at = |url: &Option<reqwest::Url>, default: &str| {
            url.clone().or_else(|| reqwest::Url::parse(default).ok())
        };
        let engine = if let Some(url) = &search.searxng_url {
            let mut url = url.clone();
            url.path_segments_mut().ok()?.pop_if_empty().push("search");
            Engine::Searxng(url)
        } else if let Some(key) = &search.brave_api_key {
            Engine::Brave(
                at(
                    &search.brave_url,
                    "https://api.search.brave.com/res/v1/web/search",
                )?,
                key.clone(),
            )
        } else if let Some(key) = &search.tavily_api_key {
            Engine::Tavily(
                at(&search.tavily_url, "https://api.tavily.com/search")?,
                key.clone(),
            )
        } else {
            return None;
        };
        Some(WebSearch {
            http,
            engine,
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
        let request = match &self.engine {
            Engine::Searxng(url) => self
                .http
                .get(url.clone())
                .query(&[("q", query), ("format", "json")]),
            Engine::Brave(url, key) => self
                .http
                .get(url.clone())
                .query(&[("q", query), ("count", &self.max_results.to_string())])
                .header("X-Subscription-Token", key.expose_secret())
                .header("Accept", "application/json"),
            Engine::Tavily(url, key) => self
                .http
                .post(url.clone())
                .bearer_auth(key.expose_secret())
                .json(&serde_json::json!({"query": query, "max_results": self.max_results})),
        };
        let mut response = request
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
        let unreadable =
            |e: serde_json::Error| ToolError::Failed(format!("unreadable search answer: {e}"));
        let found = match &self.engine {
            Engine::Brave(..) => {
                let brave: BraveResponse = serde_json::from_slice(&body).map_err(unreadable)?;
                Response {
                    results: brave
                        .web
                        .map(|w| w.results)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|h| Hit {
                            title: h.title,
                            url: h.url,
                            content: h.description,
                        })
                        .collect(),
                }
            }
            // SearXNG and Tavily both answer `results[]` with `content`.
            _ => serde_json::from_slice(&body).map_err(unreadable)?,
        };
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
