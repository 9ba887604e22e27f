//! The tools a model may call, behind the [`ToolBox`] port: the built-in ones configured
//! in `[tools]` and the tools of the MCP servers of `[[tools.mcp]]`. Every call runs under `tools.timeout`, and its
//! result is cut to `tools.max_result_chars` with a note, so a tool can neither hang an
//! answer nor flood the model's context.

mod fetch;
mod guard;
mod mcp;
mod search;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::ToolSettings;
use crate::core::tools::{Offered, ToolBox, ToolError};

/// One tool: its offer and how to run it.
#[async_trait]
trait Tool: Send + Sync {
    fn offered(&self) -> Offered;
    async fn run(&self, arguments: serde_json::Value) -> Result<String, ToolError>;
}

/// Every configured tool, by name, and the MCP servers.
pub struct Tools {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    servers: Vec<Arc<mcp::McpServer>>,
    timeout: Duration,
    max_result_chars: usize,
    /// Stops the MCP servers' supervisors (and the servers the bot started).
    stop: CancellationToken,
}

impl Drop for Tools {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Tools {
    /// The tools `settings` turn on; `None` when there are none.
    pub fn from_settings(settings: &ToolSettings, http: reqwest::Client) -> Option<Tools> {
        let mut tools: BTreeMap<String, Arc<dyn Tool>> = BTreeMap::new();
        if let Some(search) = search::WebSearch::from_settings(settings, http.clone()) {
            tools.insert(search.offered().spec.name, Arc::new(search));
        }
        if let Some(fetch) = fetch::FetchUrl::from_settings(settings) {
            tools.insert(fetch.offered().spec.name, Arc::new(fetch));
        }
        let stop = CancellationToken::new();
        let servers: Vec<_> = settings
            .mcp
            .iter()
            .map(|server| {
                let price = server.price_per_call.unwrap_or(settings.price_per_call);
                mcp::McpServer::spawn(server.clone(), price, http.clone(), stop.clone())
            })
            .collect();
        (!tools.is_empty() || !servers.is_empty()).then_some(Tools {
            tools,
            servers,
            timeout: settings.timeout,
            max_result_chars: settings.max_result_chars,
            stop,
        })
    }

    /// The MCP servers not connected now, by name.
    pub fn servers_down(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| !s.is_connected())
            .map(|s| s.name().to_string())
            .collect()
    }

    /// Stops the MCP servers (the bot is shutting down and its answers are done).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

#[async_trait]
impl ToolBox for Tools {
    fn offered(&self) -> Vec<Offered> {
        let mut offered: Vec<Offered> = self.tools.values().map(|t| t.offered()).collect();
        for server in &self.servers {
            offered.extend(server.offered());
        }
        offered
    }

    async fn call(&self, name: &str, arguments: &str) -> Result<String, ToolError> {
        let arguments = if arguments.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(arguments).map_err(|e| ToolError::BadArguments(e.to_string()))?
        };
        let running = async {
            if let Some(tool) = self.tools.get(name) {
                return tool.run(arguments).await;
            }
            let (server, tool) = name
                .split_once(mcp::SEPARATOR)
                .and_then(|(server, tool)| {
                    self.servers
                        .iter()
                        .find(|s| s.name() == server)
                        .map(|s| (s, tool))
                })
                .ok_or_else(|| ToolError::Unknown(name.to_string()))?;
            server.call(tool, arguments).await
        };
        let result = tokio::time::timeout(self.timeout, running)
            .await
            .map_err(|_| ToolError::TimedOut(self.timeout))??;
        Ok(cut(result, self.max_result_chars))
    }
}

/// `text` cut to `max` characters, with a note saying so.
fn cut(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some((at, _)) => format!(
            "{}\n[cut: the result was {} characters; only the first {max} are shown]",
            &text[..at],
            text.chars().count()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_results_are_cut_with_a_note() {
        assert_eq!(cut("short".into(), 10), "short");
        let cut = cut("é".repeat(20), 5);
        assert!(
            cut.starts_with("ééééé\n[cut: the result was 20 characters"),
            "{cut}"
        );
    }
}
