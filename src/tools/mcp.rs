//! MCP servers as tools, through the official SDK (`rmcp`). Each `[[tools.mcp]]` server is
//! started (a command, over stdio) or reached (a URL, Streamable HTTP) and supervised by
//! one task: its tools are listed once connected and again on `tools/list_changed`; a
//! server that dies or cannot be reached is tried again with backoff (1 s doubling to
//! 60 s), its tools off the offer meanwhile. A started server gets the bot's environment
//! without its secrets, runs in its own process group, and is stopped with the bot.
//! Tools are offered as `<server>__<tool>`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ContentBlock};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, Peer, RoleClient, ServiceExt};
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::McpSettings;
use crate::core::error::chain;
use crate::core::model::ToolSpec;
use crate::core::tools::{Offered, ToolError};

/// Separates a server's name from its tool's in the name the model sees.
pub(super) const SEPARATOR: &str = "__";

/// Environment variables a started server never sees (the bot's secrets).
const SECRET_VARS: &[&str] = &[
    "OPENAI_API_KEY",
    "TELEGRAM_BOT_TOKEN",
    "DISCORD_TOKEN",
    "DATABASE_URL",
    "REDIS_URL",
    "BRAVE_API_KEY",
    "TAVILY_API_KEY",
];

/// A connected server: how to call it, and its tools.
struct Live {
    peer: Peer<RoleClient>,
    tools: Vec<rmcp::model::Tool>,
}

pub(super) struct McpServer {
    name: String,
    price: i64,
    /// Prices of single tools (`prices`), overriding `price`.
    prices: std::collections::BTreeMap<String, i64>,
    live: RwLock<Option<Live>>,
}

/// Hears `tools/list_changed`.
struct Handler(Arc<Notify>);

impl ClientHandler for Handler {
    /// The bot by its name, and the newest protocol revision that still has the
    /// `initialize` handshake rmcp performs: rmcp's default names 2026-07-28, which has
    /// none, and a server that checks (the MCP conformance suite's) refuses it.
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("gptbot", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.0.notify_one();
    }
}

impl McpServer {
    /// Starts supervising the server; its tools are offered once it is connected.
    pub(super) fn spawn(
        settings: McpSettings,
        price: i64,
        http: reqwest::Client,
        shutdown: CancellationToken,
    ) -> Arc<McpServer> {
        let server = Arc::new(McpServer {
            name: settings.name.clone(),
            price,
            prices: settings.prices.clone(),
            live: RwLock::new(None),
        });
        tokio::spawn(supervise(server.clone(), settings, http, shutdown));
        server
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn is_connected(&self) -> bool {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    pub(super) fn offered(&self) -> Vec<Offered> {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        let Some(live) = live.as_ref() else {
            return Vec::new();
        };
        live.tools
            .iter()
            .map(|tool| Offered {
                spec: ToolSpec {
                    name: format!("{}{SEPARATOR}{}", self.name, tool.name),
                    description: tool.description.as_deref().unwrap_or_default().to_string(),
                    parameters: serde_json::Value::Object((*tool.input_schema).clone()),
                },
                price: self
                    .prices
                    .get(tool.name.as_ref())
                    .copied()
                    .unwrap_or(self.price),
                label: format!("🔧 {}.{}", self.name, tool.name),
            })
            .collect()
    }

    /// Calls `tool` (its name on the server) with `arguments` (a JSON object).
    pub(super) async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Value,
    ) -> Result<String, ToolError> {
        let peer = {
            let live = self.live.read().unwrap_or_else(|p| p.into_inner());
            match live.as_ref() {
                Some(live) if live.tools.iter().any(|t| t.name == tool) => live.peer.clone(),
                Some(_) => {
                    return Err(ToolError::Unknown(format!(
                        "{}{SEPARATOR}{tool}",
                        self.name
                    )));
                }
                None => {
                    return Err(ToolError::Failed(format!(
                        "the MCP server {:?} is not running",
                        self.name
                    )));
                }
            }
        };
        let serde_json::Value::Object(arguments) = arguments else {
            return Err(ToolError::BadArguments("a JSON object is required".into()));
        };
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let result = peer.call_tool(params).await.map_err(|e| {
            ToolError::Failed(format!("the MCP server {:?}: {}", self.name, chain(&e)))
        })?;
        let mut text = String::new();
        for block in &result.content {
            if !text.is_empty() {
                text.push('\n');
            }
            match block {
                ContentBlock::Text(t) => text.push_str(&t.text),
                ContentBlock::Image(_) => text.push_str("[an image]"),
                ContentBlock::Audio(_) => text.push_str("[audio]"),
                _ => text.push_str("[a resource]"),
            }
        }
        if text.is_empty()
            && let Some(structured) = &result.structured_content
        {
            text = structured.to_string();
        }
        if result.is_error == Some(true) {
            return Err(ToolError::Failed(text));
        }
        Ok(text)
    }

    fn set(&self, live: Option<Live>) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = live;
    }
}

/// Connects, lists, serves until the connection ends, and starts again with backoff.
async fn supervise(
    server: Arc<McpServer>,
    settings: McpSettings,
    http: reqwest::Client,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let changed = Arc::new(Notify::new());
        let connecting = connect(&settings, &http, changed.clone());
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = connecting => connected,
        };
        match connected {
            Ok(running) => {
                backoff = Duration::from_secs(1);
                serve(&server, running, &changed, &shutdown).await;
                server.set(None);
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!(server = %server.name, "MCP server stopped; starting it again");
            }
            Err(e) => {
                tracing::warn!(server = %server.name, error = %e, retry_in = ?backoff, "MCP server unavailable");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Lists the tools (again on each change) until the connection ends or the bot stops.
async fn serve(
    server: &McpServer,
    running: RunningService<RoleClient, Handler>,
    changed: &Notify,
    shutdown: &CancellationToken,
) {
    let peer = running.peer().clone();
    let stop = running.cancellation_token();
    let ended = running.waiting();
    tokio::pin!(ended);
    loop {
        match peer.list_all_tools().await {
            Ok(tools) => {
                tracing::info!(server = %server.name, tools = tools.len(), "MCP server connected");
                server.set(Some(Live {
                    peer: peer.clone(),
                    tools,
                }));
            }
            Err(e) => {
                tracing::warn!(server = %server.name, error = %chain(&e), "listing an MCP server's tools failed");
                stop.cancel();
                let _ = ended.await;
                return;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                // Closing the connection stops (and, if need be, kills) a started server.
                stop.cancel();
                let _ = ended.await;
                return;
            }
            () = changed.notified() => continue,
            _ = &mut ended => return,
        }
    }
}

async fn connect(
    settings: &McpSettings,
    http: &reqwest::Client,
    changed: Arc<Notify>,
) -> Result<RunningService<RoleClient, Handler>, String> {
    let handler = Handler(changed);
    if let Some(url) = &settings.url {
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
        for (name, value) in &settings.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header name {name:?}: {e}"))?;
            let value = reqwest::header::HeaderValue::from_str(value.expose_secret())
                .map_err(|_| format!("header {name}: not a valid header value"))?;
            config.custom_headers.insert(name, value);
        }
        let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
        return handler
            .serve(transport)
            .await
            .map_err(|e| chain(&e).to_string());
    }
    let (program, args) = settings
        .command
        .split_first()
        .ok_or_else(|| "no command".to_string())?;
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if SECRET_VARS.contains(&key.as_ref()) || key.starts_with("GPTBOT__") {
            command.env_remove(key.as_ref());
        }
    }
    // Its own process group: a Ctrl-C meant for the bot does not reach it first.
    command.process_group(0);
    command.kill_on_drop(true);
    let transport =
        TokioChildProcess::new(command).map_err(|e| format!("cannot start {program:?}: {e}"))?;
    handler
        .serve(transport)
        .await
        .map_err(|e| chain(&e).to_string())
}
