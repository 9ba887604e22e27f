//! `gptbot tools`: what a model may call with this configuration — the built-in tools
//! and each MCP server's, started (or reached) as `gptbot run` would, with their prices —
//! and which servers did not connect (exit 1), for checking a configuration before
//! deploying it; with `--call`, one call of one tool, its result printed as the model
//! would get it (exit 1 if the call fails). The MCP conformance suite drives the bot's
//! MCP client through this (`scripts/mcp-conformance.sh`).

use std::time::Duration;

use crate::app::AppError;
use crate::config::Settings;
use crate::core::tools::ToolBox;

pub async fn list(
    settings: &Settings,
    wait: Duration,
    call: Option<(&str, &str)>,
) -> Result<(), AppError> {
    let http = crate::llm::openai::http_client(settings)?;
    let Some(tools) = crate::tools::Tools::from_settings(&settings.tools, http) else {
        println!("No tools are configured ([tools] in the configuration).");
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + wait;
    while !tools.servers_down().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let offered = tools.offered();
    let width = offered.iter().map(|o| o.spec.name.len()).max().unwrap_or(4);
    println!("{:width$}  {:>6}  description", "tool", "price");
    for tool in &offered {
        let description: String = tool.spec.description.chars().take(70).collect();
        println!(
            "{:width$}  {:>6}  {}",
            tool.spec.name,
            tool.price,
            description.trim()
        );
    }
    let down = tools.servers_down();
    let called = match call {
        Some((name, arguments)) => Some(tools.call(name, arguments).await),
        None => None,
    };
    tools.stop();
    if !down.is_empty() {
        return Err(AppError::ToolsDown(down.join(", ")));
    }
    match called {
        Some(Ok(result)) => {
            println!("\n{result}");
            Ok(())
        }
        Some(Err(e)) => Err(AppError::ToolCall(e)),
        None => Ok(()),
    }
}
