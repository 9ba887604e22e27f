//! Wiring: [`App::build`] turns validated [`Settings`] into the running parts (quota
//! ledger with migrations applied, session store, model client, conversation core), the
//! same way for the binary and for tests.

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::chat::{Conversation, ConversationSettings};
use crate::config::{ConfigError, Settings};
use crate::llm::openai::OpenAiClient;
use crate::llm::tokens::TokenCounter;
use crate::llm::{LlmError, ModelClient};
use crate::quota::{QuotaError, QuotaService};
use crate::session::memory::MemoryStore;
use crate::session::redis::RedisStore;
use crate::session::{SessionError, SessionStore, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("quota database: {0:#}")]
    Quota(#[from] QuotaError),
    #[error("session store: {0}")]
    Session(#[from] SessionError),
    #[error("model client: {0}")]
    Llm(#[from] LlmError),
    #[error(
        "no chat platform is configured: set TELEGRAM_BOT_TOKEN (telegram.token) and/or DISCORD_TOKEN (discord.token). To talk to the bot in this terminal, run `gptbot chat`."
    )]
    NoPlatform,
    #[error("Telegram: {0}")]
    Telegram(#[from] crate::platform::telegram::TelegramError),
    #[error("Discord: {0}")]
    Discord(#[from] crate::platform::discord::DiscordError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub struct App {
    pub settings: Settings,
    pub quota: QuotaService,
    pub sessions: Arc<dyn SessionStore>,
    pub conversation: Arc<Conversation>,
}

/// Installs the one TLS crypto provider every HTTP client here uses. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl App {
    pub async fn build(settings: Settings) -> Result<App, AppError> {
        install_crypto_provider();
        let quota = open_quota(&settings).await?;
        let options = StoreOptions {
            ttl: settings.session.ttl,
            max_history: settings.session.max_history,
        };
        let sessions: Arc<dyn SessionStore> = match &settings.redis.url {
            Some(url) => Arc::new(
                RedisStore::connect(url.expose_secret(), &settings.redis.key_prefix, options)
                    .await?,
            ),
            None => Arc::new(MemoryStore::new(options)),
        };
        let model: Arc<dyn ModelClient> = Arc::new(OpenAiClient::new(&settings)?);
        let counter = TokenCounter::for_model(&settings.model.name, &settings.model.tokenizer)
            .map_err(|message| ConfigError::Invalid {
                key: "model.tokenizer",
                message,
            })?;
        let access = Arc::new(crate::access::AccessService::new(
            quota.db().clone(),
            &settings.access,
        ));
        let conversation = Arc::new(Conversation::new(
            access,
            sessions.clone(),
            quota.clone(),
            model,
            counter,
            ConversationSettings {
                bot_name: settings.bot.name.clone(),
                default_system_prompt: settings.bot.system_prompt.clone(),
                max_tokens: settings.model.max_tokens,
                context_tokens: settings.model.context_tokens,
                per_user_per_minute: settings.limits.per_user_per_minute,
            },
        ));
        tracing::info!(
            sessions = sessions.backend(),
            model = %settings.model.name,
            base_url = %settings.openai.base_url,
            "gptbot core ready"
        );
        Ok(App {
            settings,
            quota,
            sessions,
            conversation,
        })
    }
}

/// Opens the quota database and applies the migrations.
pub async fn open_quota(settings: &Settings) -> Result<QuotaService, AppError> {
    let quota = QuotaService::connect(
        settings.database.url.expose_secret(),
        settings.database.max_connections,
        crate::quota::QuotaPlan {
            default_tokens: settings.quota.default_tokens,
            refill: settings.quota.refill,
            refill_tokens: settings.quota.refill_tokens,
        },
    )
    .await?;
    quota.migrate().await?;
    Ok(quota)
}
