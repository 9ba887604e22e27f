//! Settings: the layered configuration (embedded defaults, `--config FILE`, conventional
//! environment variables, `GPTBOT__SECTION__KEY`), its validation, and its redacted display.
//!
//! Loading takes the environment as a map so tests can inject it; nothing here reads the
//! process environment except [`Settings::load_from_process`].

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The documented defaults, compiled in so the binary runs without any file next to it.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Conventional environment variables and the setting each one feeds.
pub const CONVENTIONAL_ENV: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "openai.api_key"),
    ("OPENAI_BASE_URL", "openai.base_url"),
    ("REDIS_URL", "redis.url"),
    ("DATABASE_URL", "database.url"),
    ("TELEGRAM_BOT_TOKEN", "telegram.token"),
    ("DISCORD_TOKEN", "discord.token"),
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
    pub access: crate::access::AccessSettings,
    pub limits: LimitSettings,
    pub chat: ChatSettings,
    pub telegram: TelegramSettings,
    pub discord: DiscordSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BotSettings {
    pub name: String,
    pub system_prompt: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub name: String,
    pub max_tokens: u32,
    pub temperature: f32,
    pub context_tokens: u32,
    pub tokenizer: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    pub base_url: String,
    #[serde(default, serialize_with = "redact_opt")]
    pub api_key: Option<SecretString>,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_tokens_field: String,
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
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    pub default_tokens: i64,
    pub refill: crate::quota::Refill,
    pub refill_tokens: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Model requests a user may start per minute (a token bucket); 0 turns it off.
    pub per_user_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub console_edit_interval: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    #[serde(default, serialize_with = "redact_opt")]
    pub token: Option<SecretString>,
    pub api_url: String,
    pub mode: TelegramMode,
    #[serde(default)]
    pub webhook_url: Option<String>,
    pub listen: String,
    #[serde(default, serialize_with = "redact_opt")]
    pub webhook_secret: Option<SecretString>,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub edit_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    Polling,
    Webhook,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    #[serde(default, serialize_with = "redact_opt")]
    pub token: Option<SecretString>,
    /// Base of every REST route (`{api_url}/api/v10/...`); the gateway URL is fetched from it.
    pub api_url: String,
    #[serde(default)]
    pub guild_ids: Vec<u64>,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub edit_interval: Duration,
    /// Which gateway shards this process runs: "" (all, one shard), "0-1/4", "2/4".
    #[serde(default)]
    pub shards: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
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

    /// Checks what serde cannot: ranges, URLs and choices.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                message: message.into(),
            }
        }
        if self.model.name.trim().is_empty() {
            return Err(invalid("model.name", "must not be empty"));
        }
        if self.model.max_tokens == 0 {
            return Err(invalid("model.max_tokens", "must be at least 1"));
        }
        if self.model.context_tokens <= self.model.max_tokens {
            return Err(invalid(
                "model.context_tokens",
                format!(
                    "must be larger than model.max_tokens ({}), got {}",
                    self.model.max_tokens, self.model.context_tokens
                ),
            ));
        }
        if !(0.0..=2.0).contains(&self.model.temperature) {
            return Err(invalid(
                "model.temperature",
                format!(
                    "must be between 0.0 and 2.0, got {}",
                    self.model.temperature
                ),
            ));
        }
        crate::llm::tokens::TokenCounter::for_model(&self.model.name, &self.model.tokenizer)
            .map_err(|e| invalid("model.tokenizer", e))?;
        match reqwest::Url::parse(&self.openai.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => {
                return Err(invalid(
                    "openai.base_url",
                    format!("must be an http(s) URL, got scheme `{}`", url.scheme()),
                ));
            }
            Err(e) => {
                return Err(invalid(
                    "openai.base_url",
                    format!("`{}` is not a URL: {e}", self.openai.base_url),
                ));
            }
        }
        if self.openai.timeout.is_zero() {
            return Err(invalid("openai.timeout", "must be more than 0"));
        }
        if !matches!(
            self.openai.max_tokens_field.as_str(),
            "max_tokens" | "max_completion_tokens"
        ) {
            return Err(invalid(
                "openai.max_tokens_field",
                format!(
                    "must be \"max_tokens\" or \"max_completion_tokens\", got {:?}",
                    self.openai.max_tokens_field
                ),
            ));
        }
        if self.session.ttl < Duration::from_millis(1) {
            return Err(invalid("session.ttl", "must be at least 1ms"));
        }
        if self.session.max_history < 2 {
            return Err(invalid("session.max_history", "must be at least 2"));
        }
        if let Some(url) = &self.redis.url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://")
                || url.starts_with("redis+unix://"))
            {
                return Err(invalid(
                    "redis.url",
                    format!(
                        "must start with redis:// or rediss://, got `{}`",
                        redact_url_str(url)
                    ),
                ));
            }
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(char::is_whitespace) {
            return Err(invalid("redis.key_prefix", "must be a non-empty word"));
        }
        let db = self.database.url.expose_secret();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                format!(
                    "must be a sqlite: URL (e.g. sqlite://gptbot.db) or a postgres:// URL, got `{}`",
                    redact_url_str(db)
                ),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.quota.default_tokens < 0 {
            return Err(invalid(
                "quota.default_tokens",
                format!("must be 0 or more, got {}", self.quota.default_tokens),
            ));
        }
        if self.quota.refill_tokens < 0 {
            return Err(invalid(
                "quota.refill_tokens",
                format!("must be 0 or more, got {}", self.quota.refill_tokens),
            ));
        }
        if self.quota.refill != crate::quota::Refill::None && self.quota.refill_tokens == 0 {
            return Err(invalid(
                "quota.refill_tokens",
                "must be set (more than 0) when quota.refill is daily, weekly or monthly",
            ));
        }
        for (key, token) in [
            ("telegram.token", &self.telegram.token),
            ("discord.token", &self.discord.token),
        ] {
            if token
                .as_ref()
                .is_some_and(|t| t.expose_secret().trim().is_empty())
            {
                return Err(invalid(key, "is set but empty"));
            }
        }
        self.validate_telegram()?;
        crate::platform::discord::ShardRange::parse(&self.discord.shards)
            .map_err(|e| invalid("discord.shards", e))?;
        crate::access::validate(&self.access).map_err(|(key, message)| invalid(key, message))?;
        match reqwest::Url::parse(&self.discord.api_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(invalid(
                    "discord.api_url",
                    format!("`{}` is not an http(s) URL", self.discord.api_url),
                ));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("`{}`: {e}", self.log.level)))?;
        Ok(())
    }

    fn validate_telegram(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                message: message.into(),
            }
        }
        let t = &self.telegram;
        if let Some(token) = &t.token {
            let token = token.expose_secret().trim();
            let well_formed = token.split_once(':').is_some_and(|(id, rest)| {
                !id.is_empty()
                    && id.chars().all(|c| c.is_ascii_digit())
                    && !rest.is_empty()
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if !well_formed {
                // Never echo the value: it is a secret even when malformed.
                return Err(invalid(
                    "telegram.token",
                    "does not look like a bot token from @BotFather (digits, a colon, then letters, digits, _ or -)",
                ));
            }
        }
        match reqwest::Url::parse(&t.api_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(invalid(
                    "telegram.api_url",
                    format!("`{}` is not an http(s) URL", t.api_url),
                ));
            }
        }
        if t.mode == TelegramMode::Webhook {
            match t.webhook_url.as_deref().map(reqwest::Url::parse) {
                Some(Ok(u)) if matches!(u.scheme(), "http" | "https") => {}
                Some(_) => return Err(invalid("telegram.webhook_url", "is not an http(s) URL")),
                None => {
                    return Err(invalid(
                        "telegram.webhook_url",
                        "is required when telegram.mode = \"webhook\" (the public https URL Telegram posts to)",
                    ));
                }
            }
            match &t.webhook_secret {
                Some(s)
                    if (1..=256).contains(&s.expose_secret().len())
                        && s.expose_secret()
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {}
                Some(_) => {
                    return Err(invalid(
                        "telegram.webhook_secret",
                        "must be 1-256 characters of A-Z, a-z, 0-9, _ and -",
                    ));
                }
                None => {
                    return Err(invalid(
                        "telegram.webhook_secret",
                        "is required when telegram.mode = \"webhook\"",
                    ));
                }
            }
            if t.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(
                    "telegram.listen",
                    format!("`{}` is not an address like 0.0.0.0:8080", t.listen),
                ));
            }
        }
        Ok(())
    }

    /// The effective settings as TOML, every secret replaced by `[redacted]`.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

/// Parses "90", "1500ms", "30s", "10m", "24h", "7d" into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try \"30s\", \"10m\", \"24h\")"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (use ms, s, m, h or d)"
            ));
        }
    };
    if !seconds.is_finite() || !(0.0..=10.0 * 365.0 * 86400.0).contains(&seconds) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Float(f64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Int(s) => Ok(Duration::from_secs(s)),
        Raw::Float(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
        Raw::Float(s) => Err(serde::de::Error::custom(format!("`{s}` is not a duration"))),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    } else {
        s.serialize_str(&format!("{}s", d.as_secs()))
    }
}

fn redact_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_str("[not set]"),
    }
}

fn redact_url<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url_str(v.expose_secret()))
}

fn redact_url_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(url) => redact_url(url, s),
        None => s.serialize_str("[not set]"),
    }
}

/// Hides the user-info part of a URL (`redis://:pw@host` → `redis://[redacted]@host`).
pub fn redact_url_str(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{}://[redacted]@{}", &url[..scheme_end], &rest[at + 1..]);
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s.openai.base_url, "http://127.0.0.1:9/v1");
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
            ]),
        )
        .unwrap();
        let shown = s.redacted_toml();
        for secret in ["supersecret", "hunter2", "telegramsecret", "discordsecret"] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        assert!(shown.contains("redis://[redacted]@127.0.0.1:6379"));
        assert!(!format!("{s:?}").contains("supersecret"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("3 weeks").is_err());
    }
}
