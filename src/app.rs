//! Start-up and running: [`App::build`] turns validated [`Settings`] into the running
//! parts (database with migrations applied, access control, quota ledger, session
//! store, model client, conversation), and [`App::run_until_stopped`] serves every
//! configured platform until the shutdown signal — the same path for the binary and
//! for the tests.

use std::sync::Arc;

mod running;
pub use running::{Running, Serving};
use running::{Started, until};

use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::access::{AccessError, AccessService};
use crate::chat::{Conversation, ConversationSettings};
use crate::config::{ConfigError, Settings};
use crate::core::event::Platform;
use crate::core::model::{LlmError, ModelClient};
use crate::core::session::{SessionError, SessionStore};
use crate::db::{Db, DbError};
use crate::llm::openai::OpenAiClient;
use crate::llm::tokens::TokenCounter;
use crate::ops::Readiness;
use crate::ops::readiness::{DatabaseProbe, SessionsProbe};
use crate::platform::discord::DiscordError;
use crate::platform::telegram::TelegramError;
use crate::quota::{QuotaError, QuotaPlan, QuotaService};
use crate::session::StoreOptions;
use crate::session::memory::MemoryStore;
use crate::session::redis::RedisStore;

/// Why gptbot could not start or stopped with an error. Each variant keeps its cause as
/// the source; print it with [`crate::core::error::chain`].
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("quota database")]
    Db(#[from] DbError),
    #[error("quota ledger")]
    Quota(#[from] QuotaError),
    #[error("access rules")]
    Access(#[from] AccessError),
    #[error("session store")]
    Session(#[from] SessionError),
    #[error("coordination store")]
    Coordination(#[from] crate::core::coordination::CoordError),
    #[error("model client")]
    Llm(#[from] LlmError),
    #[error(
        "no chat platform is configured: set TELEGRAM_BOT_TOKEN (telegram.token) and/or DISCORD_TOKEN (discord.token), or web.listen for the web front. To talk to the bot in this terminal, run `gptbot chat`."
    )]
    NoPlatform,
    #[error(transparent)]
    Telegram(#[from] TelegramError),
    #[error(transparent)]
    Account(#[from] crate::accounts::AccountError),
    #[error(transparent)]
    Discord(#[from] DiscordError),
    #[error("reading the terminal")]
    Terminal(#[source] std::io::Error),
    #[error("a platform task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("not healthy: {0}")]
    Unhealthy(#[from] crate::ops::server::NotHealthy),
    /// The command line was used wrongly (a malformed user id, amount or password
    /// input); the text says how.
    #[error(transparent)]
    Usage(#[from] crate::core::error::Invalid),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// `gptbot tools`: configured MCP servers that did not connect in time.
    #[error("MCP servers not connected: {0}")]
    ToolsDown(String),
    /// `gptbot tools --call`: the call failed.
    #[error("the tool call failed")]
    ToolCall(#[source] crate::core::tools::ToolError),
}

impl AppError {
    /// The process exit code: 2 for what the operator must fix in the configuration
    /// (or the command line), 1 for failures at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_)
            | AppError::Account(
                crate::accounts::AccountError::Invalid(_)
                | crate::accounts::AccountError::Exists(_)
                | crate::accounts::AccountError::Taken(_)
                | crate::accounts::AccountError::Unknown(_),
            )
            | AppError::NoPlatform
            | AppError::Usage(_)
            | AppError::Telegram(
                TelegramError::BadToken(_) | TelegramError::NoToken | TelegramError::Conflict,
            )
            | AppError::Discord(DiscordError::BadToken(_) | DiscordError::NoToken) => 2,
            _ => 1,
        }
    }
}

/// Telegram Stars refunds and invoice links, through this bot's token (when it has one).
pub fn star_payments(
    settings: &Settings,
) -> Result<Option<Arc<dyn crate::core::payments::StarPayments>>, AppError> {
    if settings.telegram.token.is_none() {
        return Ok(None);
    }
    let bot = crate::platform::telegram::webhook::bot(&settings.telegram)?;
    Ok(Some(Arc::new(
        crate::platform::telegram::payments::TelegramRefunds(bot),
    )))
}

/// `limits.max_concurrent_answers`, or what the model server serves at once, or the
/// default for a remote API.
async fn concurrency(settings: &Settings, http: &reqwest::Client) -> u32 {
    if let Some(n) = settings.limits.max_concurrent_answers {
        return n;
    }
    match crate::llm::probe::serving_slots(settings, http).await {
        Some(slots) => {
            tracing::info!(
                slots,
                "the model server serves {slots} requests at once (/props): answering as many at a time"
            );
            slots
        }
        None => crate::config::DEFAULT_CONCURRENT_ANSWERS,
    }
}

pub struct App {
    pub settings: Settings,
    pub db: Db,
    pub quota: QuotaService,
    pub sessions: Arc<dyn SessionStore>,
    pub conversation: Arc<Conversation>,
    /// What `/readyz` checks: the database and the session store from the start, each
    /// platform once it is connected.
    pub readiness: Arc<Readiness>,
    /// The tools offered to models (`[tools]`), stopped once the answers are done.
    tools: Option<Arc<crate::tools::Tools>>,
    /// The replicas' shared board (with `REDIS_URL`).
    board: Option<Arc<crate::coord::redis::RedisBoard>>,
}

/// Installs the one TLS crypto provider every HTTP client here uses. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A newcomer's first run: OpenAI's URL with no key would fail at the first message with
/// "unavailable"; say now what is missing and how to use a local server instead.
fn check_first_run(settings: &Settings) -> Result<(), ConfigError> {
    let openai = settings.openai.base_url.host_str() == Some("api.openai.com");
    if openai && settings.openai.api_key.is_none() {
        return Err(ConfigError::Invalid {
            key: "openai.api_key",
            message: "no API key for https://api.openai.com/v1. Set OPENAI_API_KEY, or point OPENAI_BASE_URL at a local OpenAI-compatible server instead (llama.cpp: http://127.0.0.1:8080/v1, Ollama: http://127.0.0.1:11434/v1; no key needed)".into(),
        });
    }
    Ok(())
}

/// Opens the quota database and applies the migrations.
pub async fn open_db(settings: &Settings) -> Result<Db, AppError> {
    let db = Db::connect_with(
        settings.database.url.expose_secret(),
        settings.database.max_connections,
        settings.database.busy_timeout,
    )
    .await?;
    db.migrate().await?;
    Ok(db)
}

/// The quota ledger on `db`, with the configured plan.
pub fn quota_service(db: &Db, settings: &Settings) -> QuotaService {
    QuotaService::new(
        db.clone(),
        QuotaPlan {
            default_tokens: settings.quota.default_tokens,
            refill: settings.quota.refill,
            refill_tokens: settings.quota.refill_tokens,
            new_accounts_per_day: settings.quota.new_accounts_per_day,
            daily_token_budget: settings.quota.daily_token_budget,
        },
    )
    .with_lease(settings.quota.hold_lease)
}

impl App {
    pub async fn build(settings: Settings) -> Result<App, AppError> {
        install_crypto_provider();
        check_first_run(&settings)?;
        // Recorded from the start, served by the operations listener.
        crate::ops::metrics::install();
        let db = open_db(&settings).await?;
        let quota = quota_service(&db, &settings);
        let access = Arc::new(
            AccessService::new(db.clone(), &settings.access)
                .with_tools_by_rule(settings.tools.access == crate::config::ToolAccess::Allowed),
        );
        let options = StoreOptions {
            ttl: settings.session.ttl,
            max_history: settings.session.max_history,
        };
        let store: Arc<dyn SessionStore> = match &settings.redis.url {
            Some(url) => Arc::new(
                RedisStore::connect(url.expose_secret(), &settings.redis.key_prefix, options)
                    .await?,
            ),
            None => Arc::new(MemoryStore::new(options)),
        };
        let sessions: Arc<dyn SessionStore> = Arc::new(crate::session::timed::Timed(store));
        let http = crate::llm::openai::http_client(&settings)?;
        let model: Arc<dyn ModelClient> = Arc::new(OpenAiClient::new(&settings, http.clone())?);
        {
            let (settings, http) = (settings.clone(), http.clone());
            tokio::spawn(async move {
                crate::llm::probe::warn_if_unserved(&settings, &http).await;
            });
        }
        let counter = TokenCounter::resolve(
            &settings.model.name,
            settings.model.tokenizer,
            settings.openai.base_url.as_str(),
            http.clone(),
        )
        .await;
        let reserve_margin = settings
            .model
            .reserve_margin
            .unwrap_or_else(|| counter.default_margin());
        let counter_name = counter.describe();
        let tools = crate::tools::Tools::from_settings(&settings.tools, http.clone()).map(Arc::new);
        let concurrency = concurrency(&settings, &http).await;
        let conversation = Conversation::new(
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
                reserve_margin,
                per_user_per_minute: settings.limits.per_user_per_minute,
                commands_per_minute: settings.limits.commands_per_minute,
                max_concurrent_answers: concurrency,
                model: settings.model.name.clone(),
                models: settings.model.available.clone(),
                personas: settings.personas.clone(),
                file_max_chars: settings.files.max_chars,
                file_max_bytes: settings.files.max_bytes,
                pdfs: crate::chat::pdf::PdfReader::from_settings(&settings.files).map_err(|e| {
                    ConfigError::Invalid {
                        key: "files.reader",
                        message: format!("cannot find this executable to read PDFs with: {e}"),
                    }
                })?,
                image_detail: settings.model.image_detail,
                transcriber: crate::llm::audio::Transcriber::from_settings(&settings, http.clone()),
                reasoning: settings.chat.reasoning,
                max_tool_rounds: settings.tools.max_rounds,
                default_tools: settings.model.tools,
                payments: settings.payments.clone(),
            },
        );
        let conversation = match &tools {
            Some(tools) => conversation.with_tools(tools.clone()),
            None => conversation,
        }
        .with_payments(star_payments(&settings)?);
        // With Redis, the replicas decide answers in flight, /cancel, rate limits and
        // send budgets together.
        let board = match &settings.redis.url {
            Some(url) => Some(Arc::new(
                crate::coord::redis::RedisBoard::connect(
                    url.expose_secret(),
                    &settings.redis.key_prefix,
                )
                .await?,
            )),
            None => None,
        };
        let conversation = Arc::new(match &board {
            Some(board) => conversation.with_coordination(board.clone(), settings.quota.hold_lease),
            None => conversation,
        });
        tracing::info!(
            sessions = sessions.backend(),
            model = %settings.model.name,
            tokens = %counter_name,
            base_url = %crate::config::redact_url_str(settings.openai.base_url.as_str()),
            "gptbot core ready"
        );
        let readiness = Arc::new(Readiness::default());
        readiness.add(Arc::new(DatabaseProbe(db.clone())));
        readiness.add(Arc::new(SessionsProbe(sessions.clone())));
        Ok(App {
            settings,
            db,
            quota,
            sessions,
            conversation,
            readiness,
            tools,
            board,
        })
    }

    /// The send budgets every replica draws from, with `REDIS_URL`.
    fn budgets(&self) -> Option<Arc<dyn crate::core::pacing::SharedBudgets>> {
        self.board
            .clone()
            .map(|b| b as Arc<dyn crate::core::pacing::SharedBudgets>)
    }

    /// `gptbot run` needs at least one chat platform.
    pub fn check_platforms(settings: &Settings) -> Result<(), AppError> {
        if settings.telegram.token.is_none()
            && settings.discord.token.is_none()
            && settings.web.listen.is_none()
        {
            return Err(AppError::NoPlatform);
        }
        Ok(())
    }

    /// Connects every configured platform and serves it until `shutdown` is cancelled.
    pub async fn run_until_stopped(&self, shutdown: CancellationToken) -> Result<(), AppError> {
        self.start(shutdown).await?.wait().await
    }

    /// Connects every configured platform (their start-up errors come back here) and
    /// returns them running; [`Running::wait`] waits until they stop.
    ///
    /// Everything started here hangs off one child of `shutdown`: a start-up failure
    /// cancels it, stopping whatever already runs, and a cancellation while a platform
    /// connects abandons start-up — what started is returned, stopping, so
    /// [`Running::wait`] ends at once.
    pub async fn start(&self, shutdown: CancellationToken) -> Result<Running, AppError> {
        App::check_platforms(&self.settings)?;
        let stop = shutdown.child_token();
        // Until start-up succeeds, leaving this function (an error, or the caller
        // dropping it) stops everything started so far.
        let guard = stop.clone().drop_guard();
        let mut running = Running::new(stop.clone());
        // Renews this process's holds and returns expired ones (its first sweep is the
        // start-up recovery: holds of a killed process, once their lease ran out).
        self.quota.spawn_keeper(stop.clone());
        // Not ready until every platform is connected.
        let started = Arc::new(Started::default());
        self.readiness.add(started.clone());
        if let Some(addr) = self.settings.http.listen {
            let served = crate::ops::serve(addr, self.readiness.clone(), stop.clone()).await;
            running.ops_addr = Some(served.map_err(|e| ConfigError::Invalid {
                key: "http.listen",
                message: format!("cannot listen on {addr}: {e}"),
            })?);
        }
        if let Some(addr) = self.settings.web.listen {
            let state = crate::platform::web::WebState::new(
                self.conversation.clone(),
                self.sessions.clone(),
                self.quota.clone(),
                crate::accounts::WebAccounts::new(self.db.clone()),
                self.settings.web.clone(),
                self.settings.bot.name.clone(),
            )
            .with_shared_limits(
                self.board
                    .clone()
                    .map(|b| b as Arc<dyn crate::core::coordination::SharedRates>),
            );
            let served = until(
                &stop,
                crate::platform::web::serve(addr, state, stop.clone()),
            )
            .await;
            match served {
                None => return Ok(running.stopping(guard)),
                Some(Ok((bound, task))) => {
                    running.drained.get_or_insert_with(|| self.drain_on(&stop));
                    running.web_addr = Some(bound);
                    running.serve(None, task);
                }
                Some(Err(e)) => {
                    return Err(ConfigError::Invalid {
                        key: "web.listen",
                        message: format!("cannot listen on {addr}: {e}"),
                    }
                    .into());
                }
            }
        }
        if self.settings.telegram.token.is_some() {
            let starting = crate::platform::telegram::start(
                self.conversation.clone(),
                &self.settings.telegram,
                self.budgets(),
                stop.clone(),
            );
            let Some(handle) = until(&stop, starting).await.transpose()? else {
                return Ok(running.stopping(guard));
            };
            running.drained.get_or_insert_with(|| self.drain_on(&stop));
            tracing::info!(username = %handle.username, "serving Telegram");
            self.readiness.add(handle.probe.clone());
            let serving = Serving {
                platform: Platform::Telegram,
                username: handle.username,
                webhook_addr: handle.webhook_addr,
                probe: handle.probe,
            };
            running.serve(Some(serving), handle.task);
        }
        if self.settings.discord.token.is_some() {
            let starting = crate::platform::discord::start(
                self.conversation.clone(),
                &self.settings.discord,
                self.budgets(),
                stop.clone(),
            );
            // Cancelled while the gateway connects, `start` stops its shards itself.
            let Some(handle) = until(&stop, starting).await.transpose()? else {
                return Ok(running.stopping(guard));
            };
            running.drained.get_or_insert_with(|| self.drain_on(&stop));
            tracing::info!(username = %handle.username, "serving Discord");
            self.readiness.add(handle.probe.clone());
            let serving = Serving {
                platform: Platform::Discord,
                username: handle.username,
                webhook_addr: None,
                probe: handle.probe,
            };
            running.serve(Some(serving), handle.task);
        }
        guard.disarm();
        started.0.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!("gptbot is running; Ctrl-C to stop");
        Ok(running)
    }

    /// Once `stop` is cancelled (the platforms stop taking updates), the answers in
    /// progress get the grace; the task ends when they are done or were stopped. Set up
    /// once a platform runs: a start-up that failed before any did leaves the
    /// conversation (which another start may be serving) alone.
    fn drain_on(&self, stop: &CancellationToken) -> tokio::task::JoinHandle<()> {
        let conversation = self.conversation.clone();
        let grace = self.settings.shutdown.grace;
        let stop = stop.clone();
        let tools = self.tools.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            conversation.drain(grace).await;
            if let Some(tools) = tools {
                tools.stop();
            }
        })
    }
}
