//! Typed values of the configuration that have a shape of their own: shard ranges,
//! refill plans, access lists, modes and formats. Parsed once, at load time.

use serde::{Deserialize, Serialize};

use super::parse::BadValue;

/// How often balances are topped up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Refill {
    None,
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    Open,
    Allowlist,
}

/// Who may use the bot. Every entry is `platform:id` (checked at load time).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    #[serde(default)]
    pub admins: Vec<String>,
    pub mode: AccessMode,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub chats: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    Polling,
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The gateway shards one process runs (`first..=last` of `total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    pub first: u32,
    pub last: u32,
    pub total: u32,
}

impl ShardRange {
    /// Parses `discord.shards`: "" (one shard, the default), "0-1/4", "2/4".
    pub fn parse(text: &str) -> Result<Option<ShardRange>, BadValue> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let bad = || {
            BadValue(format!(
                "`{text}` is not a shard range like \"0-1/4\" or \"2/4\""
            ))
        };
        let (range, total) = text.split_once('/').ok_or_else(bad)?;
        let total: u32 = total.trim().parse().map_err(|_| bad())?;
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let n = range.trim().parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if total == 0 || first > last || last >= total {
            return Err(BadValue(format!(
                "`{text}`: shards must satisfy first <= last < total"
            )));
        }
        Ok(Some(ShardRange { first, last, total }))
    }
}

impl std::fmt::Display for ShardRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}/{}", self.first, self.last, self.total)
    }
}

/// The platforms a `platform:id` entry may name (the same words `UserId::parse` takes).
const PLATFORMS: &[&str] = &["telegram", "tg", "discord", "web", "console"];

/// Checks one `platform:id` entry of an access list.
pub(crate) fn check_platform_id(entry: &str) -> Result<(), BadValue> {
    let (platform, id) = entry.split_once(':').ok_or_else(|| {
        BadValue(format!(
            "`{entry}` is not of the form platform:user (e.g. telegram:12345)"
        ))
    })?;
    if !PLATFORMS.contains(&platform.to_ascii_lowercase().as_str()) {
        return Err(BadValue(format!(
            "`{entry}`: unknown platform `{platform}` (use telegram, discord, web or console)"
        )));
    }
    if id.is_empty() || id.chars().any(char::is_whitespace) {
        return Err(BadValue(format!("`{entry}` has an empty or blank id")));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// The async scheduler: one thread (the default) or one worker per core.
    pub flavor: RuntimeFlavor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeFlavor {
    CurrentThread,
    MultiThread,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
    /// Logs go to this file (appended) instead of stderr.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_parse() {
        assert_eq!(ShardRange::parse("").unwrap(), None);
        assert_eq!(
            ShardRange::parse("0-1/4").unwrap(),
            Some(ShardRange {
                first: 0,
                last: 1,
                total: 4
            })
        );
        assert_eq!(
            ShardRange::parse(" 2/4 ").unwrap(),
            Some(ShardRange {
                first: 2,
                last: 2,
                total: 4
            })
        );
        for bad in ["4/4", "2-1/4", "a-b/2", "1-2", "0/0"] {
            assert!(ShardRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn access_entries_are_platform_ids() {
        assert!(check_platform_id("telegram:42").is_ok());
        assert!(check_platform_id("42").is_err());
        assert!(check_platform_id("icq:42").is_err());
        assert!(check_platform_id("discord:").is_err());
    }
}
