//! `[tools]`: what a model marked `tools = true` may call while it answers, and what each
//! call costs in the ledger.

use std::time::Duration;

use reqwest::Url;
use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::parse::{de_duration, de_url_opt, ser_duration, ser_url_opt};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolSettings {
    /// Who may have tools called for them: everyone, or only admins and the users and
    /// groups allowed them (`/allow tools:<user>`, `/allow tools:chat`).
    pub access: ToolAccess,
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
    pub fetch_url: FetchUrlSettings,
    /// `[[tools.mcp]]`: MCP servers whose tools are offered.
    pub mcp: Vec<McpSettings>,
}

impl Default for ToolSettings {
    fn default() -> ToolSettings {
        ToolSettings {
            access: ToolAccess::Everyone,
            max_rounds: 4,
            price_per_call: 100,
            timeout: Duration::from_secs(20),
            max_result_chars: 8000,
            web_search: WebSearchSettings::default(),
            fetch_url: FetchUrlSettings::default(),
            mcp: Vec::new(),
        }
    }
}

/// `tools.access`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolAccess {
    /// Everyone the bot answers, but those denied tools (`/deny tools:<user>`).
    #[default]
    Everyone,
    /// Admins and those allowed tools (`/allow tools:<user>` or `tools:group:…`).
    Allowed,
}

/// `[tools.web_search]`: the built-in `web_search` tool, on when a SearXNG instance
/// (self-hosted, no key; its JSON format enabled) is set, else with a Brave Search or a
/// Tavily API key.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSearchSettings {
    #[serde(deserialize_with = "de_url_opt", serialize_with = "ser_url_opt")]
    pub searxng_url: Option<Url>,
    /// Brave Search API (`X-Subscription-Token`); better set BRAVE_API_KEY.
    #[serde(serialize_with = "super::parse::redact_opt")]
    pub brave_api_key: Option<SecretString>,
    /// Tavily API; better set TAVILY_API_KEY.
    #[serde(serialize_with = "super::parse::redact_opt")]
    pub tavily_api_key: Option<SecretString>,
    /// Where the Brave and Tavily APIs are (their public addresses when unset).
    #[serde(deserialize_with = "de_url_opt", serialize_with = "ser_url_opt")]
    pub brave_url: Option<Url>,
    #[serde(deserialize_with = "de_url_opt", serialize_with = "ser_url_opt")]
    pub tavily_url: Option<Url>,
    /// Results given to the model (5 when unset).
    pub max_results: Option<usize>,
    /// Overrides `tools.price_per_call`.
    pub price_per_call: Option<i64>,
}

/// `[tools.fetch_url]`: the built-in `fetch_url` tool (the text of a web page), public
/// addresses only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchUrlSettings {
    pub enabled: bool,
    /// Bytes of a page read at most; the rest is cut with a note.
    pub max_bytes: usize,
    /// Hosts that may be fetched although they are private or local (an intranet wiki).
    pub allowed_hosts: Vec<String>,
    /// Overrides `tools.price_per_call`.
    pub price_per_call: Option<i64>,
}

impl Default for FetchUrlSettings {
    fn default() -> FetchUrlSettings {
        FetchUrlSettings {
            enabled: false,
            max_bytes: 1 << 20,
            allowed_hosts: Vec::new(),
            price_per_call: None,
        }
    }
}

/// `[[tools.mcp]]`: one MCP server, started as a command (stdio) or reached at a URL
/// (Streamable HTTP). Its tools are offered as `<name>__<tool>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpSettings {
    /// Letters, digits, `_` and `-`, at most 20: the prefix of its tools' names.
    pub name: String,
    /// The program and its arguments, started and supervised by the bot.
    #[serde(default)]
    pub command: Vec<String>,
    /// A Streamable HTTP endpoint.
    #[serde(
        default,
        deserialize_with = "de_url_opt",
        serialize_with = "ser_url_opt"
    )]
    pub url: Option<Url>,
    /// Sent with every request to `url` (an `Authorization` header, say); never logged.
    #[serde(default, serialize_with = "redact_map")]
    pub headers: BTreeMap<String, SecretString>,
    /// Overrides `tools.price_per_call` for this server's tools.
    #[serde(default)]
    pub price_per_call: Option<i64>,
    /// A price per tool (by its name on the server), overriding both.
    #[serde(default)]
    pub prices: BTreeMap<String, i64>,
}

fn redact_map<S: serde::Serializer>(
    map: &BTreeMap<String, SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = s.serialize_map(Some(map.len()))?;
    for name in map.keys() {
        out.serialize_entry(name, "[redacted]")?;
    }
    out.end()
}

impl ToolSettings {
    pub(super) fn validate(&self) -> Result<(), super::ConfigError> {
        let invalid =
            |key: &'static str, message: String| super::ConfigError::Invalid { key, message };
        if self.max_rounds == 0 {
            return Err(invalid("tools.max_rounds", "must be at least 1".into()));
        }
        if self.price_per_call < 0 {
            return Err(invalid(
                "tools.price_per_call",
                "must not be negative".into(),
            ));
        }
        if self.timeout < Duration::from_millis(100) {
            return Err(invalid("tools.timeout", "must be at least 100ms".into()));
        }
        if self.fetch_url.max_bytes == 0 {
            return Err(invalid(
                "tools.fetch_url.max_bytes",
                "must be at least 1".into(),
            ));
        }
        if self.max_result_chars == 0 {
            return Err(invalid(
                "tools.max_result_chars",
                "must be at least 1".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for server in &self.mcp {
            let name = &server.name;
            if name.is_empty()
                || name.len() > 20
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    "tools.mcp",
                    format!("the name {name:?} must be 1-20 letters, digits, _ or -"),
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(invalid(
                    "tools.mcp",
                    format!("two servers are named {name:?}"),
                ));
            }
            match (server.command.is_empty(), &server.url) {
                (false, None) | (true, Some(_)) => {}
                _ => {
                    return Err(invalid(
                        "tools.mcp",
                        format!("server {name:?} needs either a command or a url"),
                    ));
                }
            }
            if server.price_per_call.is_some_and(|p| p < 0)
                || server.prices.values().any(|p| *p < 0)
            {
                return Err(invalid(
                    "tools.mcp",
                    format!("server {name:?}: price_per_call must not be negative"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, Settings};
    use std::collections::HashMap;

    fn load(toml: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gptbot.toml");
        std::fs::write(&path, toml).unwrap();
        Settings::load(Some(&path), &HashMap::new())
    }

    #[test]
    fn mcp_servers_are_checked_at_start_up_naming_the_key() {
        let ok = load("[[tools.mcp]]\nname = \"time\"\ncommand = [\"mcp-server-time\"]\n").unwrap();
        assert_eq!(ok.tools.mcp[0].name, "time");
        for (toml, says) in [
            (
                "[[tools.mcp]]\nname = \"t\"\n",
                "needs either a command or a url",
            ),
            (
                "[[tools.mcp]]\nname = \"t\"\ncommand = [\"x\"]\nurl = \"http://127.0.0.1:1/mcp\"\n",
                "needs either a command or a url",
            ),
            (
                "[[tools.mcp]]\nname = \"a b\"\ncommand = [\"x\"]\n",
                "must be 1-20 letters",
            ),
            (
                "[[tools.mcp]]\nname = \"t\"\ncommand = [\"x\"]\n[[tools.mcp]]\nname = \"t\"\ncommand = [\"y\"]\n",
                "two servers are named",
            ),
            ("[tools]\nmax_rounds = 0\n", "tools.max_rounds"),
        ] {
            let e = load(toml).unwrap_err().to_string();
            assert!(e.contains(says), "{toml}: {e}");
        }
        let settings = load(
            "[[tools.mcp]]\nname = \"d\"\nurl = \"https://m.example/mcp\"\nheaders = { Authorization = \"Bearer topsecret\" }\n",
        )
        .unwrap();
        let shown = toml::to_string(&settings.tools).unwrap();
        assert!(
            !shown.contains("topsecret") && shown.contains("[redacted]"),
            "{shown}"
        );
    }
}
