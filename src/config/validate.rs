//! What serde cannot check: ranges, relations between keys, choices and the shape of
//! secrets. Every error names its key.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::types::check_platform_id;
use super::{ConfigError, Refill, Settings, TelegramMode, redact_url_str};

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Settings {
    /// Checks what serde cannot: ranges, relations and choices.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_model()?;
        super::choices::validate_models(&self.model.available)?;
        super::choices::validate_personas(&self.personas)?;
        if self.files.max_chars == 0 {
            return Err(invalid("files.max_chars", "must be at least 1"));
        }
        if self.files.max_bytes == 0 {
            return Err(invalid("files.max_bytes", "must be at least 1"));
        }
        if self.files.max_pdf_pages == 0 {
            return Err(invalid("files.max_pdf_pages", "must be at least 1"));
        }
        if self.files.parse_timeout < Duration::from_millis(100) {
            return Err(invalid("files.parse_timeout", "must be at least 100ms"));
        }
        if self.files.parse_memory < 64 << 20 {
            return Err(invalid(
                "files.parse_memory",
                "must be at least 67108864 (64 MiB): the reader itself needs that much",
            ));
        }
        if self.session.ttl < Duration::from_millis(1) {
            return Err(invalid("session.ttl", "must be at least 1ms"));
        }
        if self.web.session_ttl < Duration::from_secs(1) {
            return Err(invalid("web.session_ttl", "must be at least 1s"));
        }
        // (Port 0 picks a free port for each: no clash.)
        if self.web.listen.is_some_and(|a| a.port() != 0) && self.web.listen == self.http.listen {
            return Err(invalid(
                "web.listen",
                "is the same address as http.listen (the operations listener); give the web front its own port",
            ));
        }
        if self.web.login_attempts_per_second == 0 {
            return Err(invalid(
                "web.login_attempts_per_second",
                "must be at least 1",
            ));
        }
        if self.session.max_history < 2 {
            return Err(invalid("session.max_history", "must be at least 2"));
        }
        self.validate_stores()?;
        self.validate_quota()?;
        self.tools.validate()?;
        self.payments.validate()?;
        for (key, list) in [
            ("access.admins", &self.access.admins),
            ("access.users", &self.access.users),
            ("access.chats", &self.access.chats),
        ] {
            for entry in list {
                check_platform_id(entry).map_err(|e| invalid(key, e.0))?;
            }
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
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("`{}`: {e}", self.log.level)))?;
        Ok(())
    }

    fn validate_model(&self) -> Result<(), ConfigError> {
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
        if let Some(margin) = self.model.reserve_margin
            && !(0.0..=1.0).contains(&margin)
        {
            return Err(invalid(
                "model.reserve_margin",
                format!("{margin} is not between 0.0 and 1.0"),
            ));
        }
        if self.openai.timeout.is_zero() {
            return Err(invalid("openai.timeout", "must be more than 0"));
        }
        Ok(())
    }

    fn validate_stores(&self) -> Result<(), ConfigError> {
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
        if self.database.busy_timeout < Duration::from_millis(10) {
            return Err(invalid("database.busy_timeout", "must be at least 10ms"));
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
        Ok(())
    }

    fn validate_quota(&self) -> Result<(), ConfigError> {
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
        for (key, value) in [
            (
                "quota.new_accounts_per_day",
                self.quota.new_accounts_per_day,
            ),
            ("quota.daily_token_budget", self.quota.daily_token_budget),
        ] {
            if value < 0 {
                return Err(invalid(
                    key,
                    format!("must be 0 (no limit) or more, got {value}"),
                ));
            }
        }
        if self.limits.max_concurrent_answers == Some(0) {
            return Err(invalid(
                "limits.max_concurrent_answers",
                "must be at least 1",
            ));
        }
        if self.quota.hold_lease < Duration::from_millis(200) {
            return Err(invalid("quota.hold_lease", "must be at least 200ms"));
        }
        if self.quota.refill != Refill::None && self.quota.refill_tokens == 0 {
            return Err(invalid(
                "quota.refill_tokens",
                "must be set (more than 0) when quota.refill is daily, weekly or monthly",
            ));
        }
        Ok(())
    }

    fn validate_telegram(&self) -> Result<(), ConfigError> {
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
        if t.mode != TelegramMode::Webhook {
            return Ok(());
        }
        if t.webhook_url.is_none() {
            return Err(invalid(
                "telegram.webhook_url",
                "is required when telegram.mode = \"webhook\" (the public https URL Telegram posts to)",
            ));
        }
        match &t.webhook_secret {
            Some(s)
                if (1..=256).contains(&s.expose_secret().len())
                    && s.expose_secret()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                Ok(())
            }
            Some(_) => Err(invalid(
                "telegram.webhook_secret",
                "must be 1-256 characters of A-Z, a-z, 0-9, _ and -",
            )),
            None => Err(invalid(
                "telegram.webhook_secret",
                "is required when telegram.mode = \"webhook\"",
            )),
        }
    }
}
