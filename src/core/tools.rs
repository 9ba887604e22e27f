//! The tools port: what a model may call while it answers (built-in tools, MCP servers),
//! each with a price in ledger tokens. The conversation offers them, holds a call's price
//! before it runs and settles it after; implementations only list and run.

use std::time::Duration;

use async_trait::async_trait;

use super::model::ToolSpec;

/// A tool on offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Offered {
    pub spec: ToolSpec,
    /// Ledger tokens a call costs.
    pub price: i64,
    /// What the user sees while it runs ("🔎 searching", "🔧 time.get_current_time").
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("no tool named {0:?}")]
    Unknown(String),
    #[error("the arguments are not what the tool takes: {0}")]
    BadArguments(String),
    #[error("the tool did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the tool failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait ToolBox: Send + Sync {
    /// The tools on offer now.
    fn offered(&self) -> Vec<Offered>;

    /// Runs `name` with the model's JSON `arguments`; the text is the result for the
    /// model (already cut to the configured size).
    async fn call(&self, name: &str, arguments: &str) -> Result<String, ToolError>;
}
