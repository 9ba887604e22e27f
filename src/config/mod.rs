//! Settings: the layered configuration (embedded defaults, `--config FILE`, conventional
//! environment variables, `GPTBOT__SECTION__KEY`), parsed once into typed values (URLs,
//! addresses, durations, shard ranges) with errors that name the key, and its redacted
//! display.
//!
//! A leaf: nothing here imports the rest of the crate. Loading takes the environment as
//! a map so tests can inject it; nothing reads the process environment except
//! [`Settings::load_from_process`].

mod choices;
mod model;
mod parse;
mod payments;
mod tools;
mod types;
mod validate;
mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use choices::{MAX_CHOICE_NAME_BYTES, ModelChoice, Persona};
pub use model::{Encoding, ImageDetail, MaxTokensField, ModelSettings, Reasoning, Tokenizer};
pub use parse::{BadValue, parse_duration, parse_http_url, redact_url_str};
use parse::{
    de_addr, de_duration, de_shards, de_url, de_url_opt, redact_opt, redact_url, redact_url_opt,
    ser_display, ser_duration, ser_shards, ser_url, ser_url_opt,
};
pub use payments::{Pack, PaymentSettings};
pub use tools::{McpSettings, ToolAccess, ToolSettings, WebSearchSettings};
pub use types::{
    AccessMode, AccessSettings, LogFormat, LogSettings, Refill, RuntimeFlavor, RuntimeSettings,
    ShardRange, TelegramMode,
};
pub use web::WebSettings;

/// The documented defaults, compiled in so the binary runs without any file next to it.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Conventional environment variables and the setting each one feeds.
pub const CONVENTIONAL_ENV: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "openai.api_key"),
    ("OPENAI_BASE_URL", "openai.base_url"),
    ("REDIS_URL", "redis.url"),
    ("DATABASE_URL", "database.url"),
    ("TELEGRAM_BOT_TOKEN", "telegram.token"),
    ("DISCORD_TOKEN", "discord.token"),
    ("GPTBOT_RUNTIME", "runtime.flavor"),
    ("BRAVE_API_KEY", "tools.web_search.brave_api_key"),
    ("TAVILY_API_KEY", "tools.web_search.tavily_api_key"),
];

/// Why the configuration could not be used; the message always names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {message}")]
    File { path: String, message: String },
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub bot: BotSettings,
    pub model: ModelSettings,
    pub openai: OpenAiSettings,
    pub session: SessionSettings,
    pub redis: RedisSettings,
    pub database: DatabaseSettings,
    pub quota: QuotaSettings,
    pub access: AccessSettings,
    pub limits: LimitSettings,
    pub chat: ChatSettings,
    pub telegram: TelegramSettings,
    pub discord: DiscordSettings,
    pub log: LogSettings,
    pub shutdown: ShutdownSettings,
    pub http: HttpSettings,
    pub files: FileSettings,
    pub web: WebSettings,
    pub runtime: RuntimeSettings,
    #[serde(default)]
    pub tools: ToolSettings,
    /// `[payments]`: token packs sold for Telegram Stars.
    #[serde(default)]
    pub payments: PaymentSettings,
    /// `[personas.<name>]`: ready-made system prompts users may pick with /persona.
    #[serde(default)]
    pub personas: std::collections::BTreeMap<String, Persona>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// The operations listener (`/healthz`, `/readyz`, `/metrics`); `None` (an empty
    /// string in the file) turns it off.
    #[serde(
        deserialize_with = "parse::de_listen",
        serialize_with = "parse::ser_listen"
    )]
    pub listen: Option<SocketAddr>,
}

/// Documents sent to the bot (text files and PDFs), read into the prompt.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Characters of one file put into the prompt; the rest is cut with a note.
    pub max_chars: usize,
    /// Larger files are refused before they are downloaded.
    pub max_bytes: u64,
    /// PDFs with more pages are refused before their text is read.
    pub max_pdf_pages: u32,
    /// How long reading one PDF may take (it runs in a child process, killed then).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub parse_timeout: Duration,
    /// Address space of the child process that reads a PDF, in bytes: a PDF whose
    /// streams inflate past it is refused.
    pub parse_memory: u64,
    /// The executable re-run as `<reader> read-pdf` to read a PDF; unset: this binary.
    #[serde(default)]
    pub reader: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BotSettings {
    pub name: String,
    pub system_prompt: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    #[serde(deserialize_with = "de_url", serialize_with = "ser_url")]
    pub base_url: Url,
    #[serde(default, serialize_with = "redact_opt")]
    pub api_key: Option<SecretString>,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_tokens_field: MaxTokensField,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub ttl: Duration,
    pub max_history: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// A Redis URL may carry a password, so it is treated as a secret.
    #[serde(default, serialize_with = "redact_url_opt")]
    pub url: Option<SecretString>,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    #[serde(serialize_with = "redact_url")]
    pub url: SecretString,
    pub max_connections: u32,
    /// SQLite: how long a statement waits for another connection's lock.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub busy_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    pub default_tokens: i64,
    pub refill: Refill,
    pub refill_tokens: i64,
    /// New accounts per UTC day (people talking to the bot); 0 for no limit.
    pub new_accounts_per_day: i64,
    /// Tokens all users may spend per UTC day; 0 for no limit.
    pub daily_token_budget: i64,
    /// Ledger tokens charged per second of transcribed audio.
    pub audio_tokens_per_second: u32,
    /// How long a reservation stays held without its process renewing it.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub hold_lease: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Model requests a user may start per minute (a token bucket); 0 turns it off.
    pub per_user_per_minute: u32,
    /// Commands one user may send per minute; 0 turns it off.
    pub commands_per_minute: u32,
    /// Model calls in flight at once in this process; further answers queue fairly.
    /// Unset: what the model server says it serves at once (llama.cpp's `/props`
    /// `total_slots`), else [`DEFAULT_CONCURRENT_ANSWERS`].
    #[serde(default)]
    pub max_concurrent_answers: Option<u32>,
}

/// Model calls in flight when neither the configuration nor the server says: a remote
/// API serves hundreds at once, and a waiting answer costs a task and its event.
pub const DEFAULT_CONCURRENT_ANSWERS: u32 = 256;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub console_edit_interval: Duration,
    #[serde(default)]
    pub reasoning: Reasoning,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    #[serde(default, serialize_with = "redact_opt")]
    pub token: Option<SecretString>,
    #[serde(deserialize_with = "de_url", serialize_with = "ser_url")]
    pub api_url: Url,
    pub mode: TelegramMode,
    #[serde(
        default,
        deserialize_with = "de_url_opt",
        serialize_with = "ser_url_opt"
    )]
    pub webhook_url: Option<Url>,
    #[serde(deserialize_with = "de_addr", serialize_with = "ser_display")]
    pub listen: SocketAddr,
    #[serde(default, serialize_with = "redact_opt")]
    pub webhook_secret: Option<SecretString>,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub edit_interval: Duration,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub first_message_delay: Duration,
    /// Stream answers in private chats as drafts (`sendMessageDraft`, Bot API 9.3)
    /// instead of editing a message; off, or refused by the server: edits.
    #[serde(default)]
    pub draft_streaming: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    #[serde(default, serialize_with = "redact_opt")]
    pub token: Option<SecretString>,
    /// Base of every REST route (`{api_url}/api/v10/...`); the gateway URL is fetched from it.
    #[serde(deserialize_with = "de_url", serialize_with = "ser_url")]
    pub api_url: Url,
    #[serde(default)]
    pub guild_ids: Vec<u64>,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub edit_interval: Duration,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub first_message_delay: Duration,
    /// Which gateway shards this process runs: "" (all, one shard), "0-1/4", "2/4".
    #[serde(default, deserialize_with = "de_shards", serialize_with = "ser_shards")]
    pub shards: Option<ShardRange>,
    /// `/chat` and mentions in a guild text channel open a thread and answer there;
    /// members' messages in a thread the bot opened continue it without a mention.
    #[serde(default)]
    pub threads: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    /// On SIGTERM / Ctrl-C, how long answers in progress may run before they are stopped.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub grace: Duration,
}

impl Settings {
    /// Loads the settings from the process environment (and `file`, when given).
    pub fn load_from_process(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load(file, &env)
    }

    /// Loads and validates the layered settings with `env` standing for the environment.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.display().to_string(),
                    message: "no such file".into(),
                });
            }
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }

        // Conventional variables are folded into the GPTBOT__ namespace unless the
        // specific GPTBOT__ variable is also set, which then wins.
        let mut layered: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("GPTBOT__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (var, key) in CONVENTIONAL_ENV {
            if let Some(value) = env.get(*var).filter(|v| !v.is_empty()) {
                let specific = format!("GPTBOT__{}", key.replace('.', "__").to_uppercase());
                layered.entry(specific).or_insert_with(|| value.clone());
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("GPTBOT")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                // Lists come comma-separated: GPTBOT__DISCORD__GUILD_IDS=123,456
                .list_separator(",")
                .with_list_parse_key("discord.guild_ids")
                .with_list_parse_key("access.admins")
                .with_list_parse_key("access.users")
                .with_list_parse_key("access.chats")
                .with_list_parse_key("web.trusted_proxies")
                .with_list_parse_key("tools.fetch_url.allowed_hosts")
                .source(Some(layered)),
        );

        let raw = builder.build().map_err(|e| match e {
            config::ConfigError::FileParse { uri, cause } => ConfigError::File {
                path: uri.unwrap_or_default(),
                message: cause.to_string(),
            },
            other => ConfigError::Parse(other.to_string()),
        })?;
        let settings: Settings = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// The effective settings as TOML, every secret replaced by `[redacted]`.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(s.model.max_tokens, 1024);
        assert_eq!(s.session.ttl, Duration::from_secs(86400));
        assert_eq!(s.quota.default_tokens, 20000);
        assert!(s.redis.url.is_none());
        assert_eq!(s.database.url.expose_secret(), "sqlite://gptbot.db");
    }

    #[test]
    fn conventional_env_and_specific_env_layer_in_order() {
        let s = Settings::load(
            None,
            &env(&[
                ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
                ("REDIS_URL", "redis://127.0.0.1:1"),
                ("DATABASE_URL", "sqlite://a.db"),
                ("GPTBOT__DATABASE__URL", "sqlite://b.db"),
                ("GPTBOT__MODEL__MAX_TOKENS", "77"),
                ("GPTBOT__SESSION__TTL", "90m"),
                ("GPTBOT__BOT__SYSTEM_PROMPT", "Be brief, be kind."),
                ("GPTBOT__DISCORD__GUILD_IDS", "11,22"),
            ]),
        )
        .unwrap();
        assert_eq!(s.openai.base_url.as_str(), "http://127.0.0.1:9/v1");
        assert_eq!(s.redis.url.unwrap().expose_secret(), "redis://127.0.0.1:1");
        assert_eq!(s.database.url.expose_secret(), "sqlite://b.db");
        assert_eq!(s.model.max_tokens, 77);
        assert_eq!(s.session.ttl, Duration::from_secs(90 * 60));
        assert_eq!(s.bot.system_prompt, "Be brief, be kind.");
        assert_eq!(s.discord.guild_ids, vec![11, 22]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("GPTBOT__MODEL__MAX_TOKENS", "lots", "max_tokens"),
            ("GPTBOT__MODEL__TEMPERATURE", "3.5", "model.temperature"),
            ("GPTBOT__SESSION__TTL", "forever", "ttl"),
            ("GPTBOT__OPENAI__BASE_URL", "not a url", "openai.base_url"),
            (
                "GPTBOT__MODEL__CONTEXT_TOKENS",
                "100",
                "model.context_tokens",
            ),
            (
                "GPTBOT__QUOTA__DEFAULT_TOKENS",
                "-5",
                "quota.default_tokens",
            ),
            ("REDIS_URL", "http://x", "redis.url"),
            ("GPTBOT__MODEL__NAMEE", "x", "namee"),
            ("GPTBOT__SESSION__TTL", "1e20", "session.ttl"),
            ("GPTBOT__TELEGRAM__LISTEN", "nowhere", "telegram.listen"),
            ("GPTBOT__HTTP__LISTEN", "localhost:99999", "http.listen"),
            ("GPTBOT__DISCORD__SHARDS", "4/4", "discord.shards"),
            ("GPTBOT__ACCESS__ADMINS", "icq:1", "access.admins"),
        ];
        for (var, value, key) in cases {
            let err = Settings::load(None, &env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key),
                "{var}={value}: `{err}` does not name `{key}`"
            );
        }
    }

    #[test]
    fn redacted_output_hides_every_secret() {
        let s = Settings::load(
            None,
            &env(&[
                ("OPENAI_API_KEY", "sk-supersecret"),
                ("REDIS_URL", "redis://:hunter2@127.0.0.1:6379"),
                ("TELEGRAM_BOT_TOKEN", "123:telegramsecret"),
                ("DISCORD_TOKEN", "discordsecret"),
                (
                    "DATABASE_URL",
                    "postgres://bot@db/gptbot?password=pgsecret&sslmode=require",
                ),
                (
                    "OPENAI_BASE_URL",
                    "https://proxyuser:proxysecret@llm.example/v1",
                ),
            ]),
        )
        .unwrap();
        let shown = s.redacted_toml();
        for secret in [
            "supersecret",
            "hunter2",
            "telegramsecret",
            "discordsecret",
            "pgsecret",
            "proxysecret",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        assert!(shown.contains("redis://[redacted]@127.0.0.1:6379"));
        assert!(!format!("{s:?}").contains("supersecret"));
    }
}
