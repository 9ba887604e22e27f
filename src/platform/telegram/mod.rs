//! Telegram through teloxide: receiving updates (long polling, or a webhook served with
//! axum and checked against `X-Telegram-Bot-Api-Secret-Token`), turning them into
//! events ([`convert`]), and replying through [`adapter::TelegramAdapter`], whose writes
//! are scheduled by one [`Pacer`] per bot (not teloxide's `Throttle`: see
//! [`crate::platform::pacer`] for why).
//!
//! Updates are handled as they arrive; the core allows one answer in flight per user, so
//! a second message while an answer streams gets a "still answering" notice and
//! `/cancel` reaches the answer it stops.

pub mod adapter;
pub mod albums;
mod callbacks;
pub mod convert;
pub mod drafts;
pub mod html;
mod members;
pub mod payments;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use teloxide::dispatching::{Dispatcher, UpdateFilterExt};
use teloxide::error_handlers::LoggingErrorHandler;
use teloxide::prelude::*;
use teloxide::types::{BotCommand, BotCommandScope, Me, Recipient};
use teloxide::update_listeners::{Polling, webhooks};
use teloxide::{ApiError, RequestError};
use tokio_util::sync::CancellationToken;

use crate::chat::Conversation;
use crate::config::{TelegramMode, TelegramSettings};
pub use adapter::TelegramAdapter;

use crate::core::command::ADMIN_COMMANDS;
use crate::platform::pacer::{Limits, Pacer, SharedBudgets};

/// Telegram's limit on a message, in UTF-16 code units after entity parsing.
pub const MAX_MESSAGE_LEN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("telegram.token is not set")]
    NoToken,
    #[error("Telegram rejected the bot token (telegram.token): {0}")]
    BadToken(String),
    #[error("cannot reach the Telegram Bot API at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "another process is already long-polling this bot token (Telegram answered 409 Conflict). To run several replicas, use webhook mode: telegram.mode = \"webhook\" with telegram.webhook_url and telegram.webhook_secret"
    )]
    Conflict,
    #[error("cannot listen for webhooks on {addr} (telegram.listen): {message}")]
    Listen { addr: String, message: String },
    #[error("Telegram set-up failed")]
    Unexpected(#[from] anyhow::Error),
}

/// What the update handlers need.
struct Context {
    conversation: Arc<Conversation>,
    me: Me,
    pacer: Arc<Pacer>,
    edit_interval: Duration,
    first_message_delay: Duration,
    albums: albums::Albums,
    drafts: Option<Arc<drafts::Drafts>>,
}

impl Context {
    /// The sending side for an update handled with `bot`.
    fn adapter(&self, bot: Bot) -> TelegramAdapter {
        TelegramAdapter::new(
            bot,
            self.pacer.clone(),
            self.edit_interval,
            self.first_message_delay,
        )
        .with_drafts(self.drafts.clone())
    }
}

/// A running Telegram bot.
pub struct TelegramHandle {
    pub username: String,
    /// The webhook server's bound address (webhook mode).
    pub webhook_addr: Option<SocketAddr>,
    /// Ends when the bot stops.
    pub task: tokio::task::JoinHandle<()>,
    /// Readiness: the Bot API answers `getMe`.
    pub probe: Arc<dyn crate::core::health::Probe>,
}

/// Telegram is reachable when the Bot API answers `getMe` with this bot.
struct TelegramProbe(Bot);

#[async_trait::async_trait]
impl crate::core::health::Probe for TelegramProbe {
    fn name(&self) -> &'static str {
        "telegram"
    }

    async fn check(&self) -> Result<(), crate::core::health::Unready> {
        self.0.get_me().await.map(drop).map_err(|e| match e {
            RequestError::Api(e) => format!("the Bot API refused getMe: {e}").into(),
            RequestError::RetryAfter(_) => "rate limited by the Bot API".into(),
            _ => "the Bot API does not answer".into(),
        })
    }
}

/// How long the start-up poll waits: longer than the other process's pause before it
/// polls again after the 409 this poll causes it.
const CONFLICT_PROBE_SECS: u32 = 3;

/// Connects (getMe, setMyCommands), then serves updates until `shutdown` is
/// cancelled. Dropping the returned future before it resolves leaves nothing running:
/// the dispatcher is spawned in its last step.
pub async fn start(
    conversation: Arc<Conversation>,
    settings: &TelegramSettings,
    budgets: Option<Arc<dyn SharedBudgets>>,
    shutdown: CancellationToken,
) -> Result<TelegramHandle, TelegramError> {
    let bot = webhook::bot(settings)?;
    let probe_bot = bot.clone();

    let me = bot.get_me().await.map_err(|e| match e {
        RequestError::Api(ApiError::InvalidToken) => TelegramError::BadToken(e.to_string()),
        other => TelegramError::Unreachable {
            url: settings.api_url.to_string(),
            message: other.to_string(),
        },
    })?;
    let username = me.username().to_string();
    let commands: Vec<BotCommand> = conversation
        .commands()
        .into_iter()
        .map(|(name, description)| BotCommand::new(name, description))
        .collect();
    if let Err(e) = bot.set_my_commands(commands.clone()).await {
        tracing::warn!(error = %crate::core::error::chain(&e), "could not register the command menu (setMyCommands)");
    }
    // Admins see the admin commands too, in their private chat with the bot only.
    // A name both users and admins have (/usage) is listed once.
    let admin_only: Vec<BotCommand> = ADMIN_COMMANDS
        .iter()
        .filter(|(name, _)| !commands.iter().any(|c| c.command == *name))
        .map(|(name, usage)| {
            let description = usage.split_once(" — ").map_or(*usage, |(_, d)| d);
            BotCommand::new(*name, description)
        })
        .collect();
    let mut admin_menu = commands;
    admin_menu.extend(admin_only);
    for admin in conversation
        .access()
        .admins_on(crate::core::event::Platform::Telegram)
    {
        let Ok(id) = admin.parse::<i64>() else {
            continue;
        };
        let scope = BotCommandScope::Chat {
            chat_id: Recipient::Id(ChatId(id)),
        };
        if let Err(e) = bot.set_my_commands(admin_menu.clone()).scope(scope).await {
            tracing::warn!(error = %crate::core::error::chain(&e), admin = %admin, "could not register the admin command menu");
        }
    }
    tracing::info!(username = %username, mode = ?settings.mode, "Telegram bot connected");

    let pacer = Arc::new(Pacer::shared("telegram", Limits::TELEGRAM, budgets));
    conversation.register_notifier(
        crate::core::event::Platform::Telegram,
        Arc::new(TelegramAdapter::new(
            bot.clone(),
            pacer.clone(),
            settings.edit_interval,
            settings.first_message_delay,
        )),
    );
    let drafts = if settings.draft_streaming {
        Some(Arc::new(drafts::Drafts::new().map_err(|e| {
            anyhow::Error::new(e).context("building the HTTP client for sendMessageDraft")
        })?))
    } else {
        None
    };
    let context = Arc::new(Context {
        conversation,
        me,
        pacer,
        edit_interval: settings.edit_interval,
        first_message_delay: settings.first_message_delay,
        albums: albums::Albums::default(),
        drafts,
    });
    let handler = dptree::entry()
        .branch(
            Update::filter_message()
                .filter(|msg: Message| msg.successful_payment().is_some())
                .endpoint(payments::on_paid),
        )
        .branch(Update::filter_pre_checkout_query().endpoint(payments::on_pre_checkout))
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_edited_message().endpoint(on_edited_message))
        .branch(Update::filter_callback_query().endpoint(on_callback));
    // Updates are handled as they arrive, not queued per chat: a user's second message
    // while an answer streams must get the core's "still answering" notice, and /cancel
    // must reach the answer it stops. The core keeps one answer in flight per user.
    let mut dispatcher = Dispatcher::builder(bot.clone(), handler)
        .distribution_function(|_| None::<()>)
        .dependencies(dptree::deps![context])
        .default_handler(|_| async {})
        .error_handler(LoggingErrorHandler::with_custom_text(
            "error handling a Telegram update",
        ))
        .build();
    let stop = dispatcher.shutdown_token();
    let allowed = webhook::allowed_updates();
    // Cancelled when the dispatcher's task ends, however it ends.
    let done = CancellationToken::new();

    let (task, webhook_addr) = match settings.mode {
        TelegramMode::Polling => {
            let listener = Polling::builder(bot.clone())
                .timeout(Duration::from_secs(10))
                // 1, 2, then 4 s between failed polls (teloxide's default grows to 64 s,
                // which leaves a bot deaf for a minute after a brief conflict or outage).
                .backoff_strategy(|errors| {
                    Duration::from_secs(1 << errors.saturating_sub(1).min(2))
                })
                .allowed_updates(allowed.clone())
                .delete_webhook()
                .await
                .build();
            // Probe before serving: if another process long-polls this token, this poll
            // cuts its request, it polls again within a second or two, and this one gets
            // the 409. So a newcomer stops here, before serving anything.
            match bot
                .get_updates()
                .timeout(CONFLICT_PROBE_SECS)
                .limit(1)
                .allowed_updates(allowed)
                .await
            {
                Err(RequestError::Api(ApiError::TerminatedByOtherGetUpdates)) => {
                    return Err(TelegramError::Conflict);
                }
                Err(e) => {
                    tracing::warn!(error = %crate::core::error::chain(&e), "first getUpdates failed")
                }
                Ok(_) => {}
            }
            // A 409 later on means a newcomer elsewhere (which stops at its probe): say so
            // at most once a minute instead of once per poll.
            let last_warning = Arc::new(std::sync::Mutex::new(None::<tokio::time::Instant>));
            let on_error = Arc::new(move |error: RequestError| {
                let last_warning = last_warning.clone();
                async move {
                    if !matches!(
                        error,
                        RequestError::Api(ApiError::TerminatedByOtherGetUpdates)
                    ) {
                        tracing::warn!(error = %crate::core::error::chain(&error), "error receiving Telegram updates");
                        return;
                    }
                    let mut last = last_warning.lock().unwrap_or_else(|p| p.into_inner());
                    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        *last = Some(tokio::time::Instant::now());
                        tracing::warn!(
                            "another process started long-polling this bot token (409 Conflict); it should stop by itself, or use webhook mode for replicas"
                        );
                    }
                }
            });
            let ended = done.clone().drop_guard();
            let task = tokio::spawn(async move {
                let _ended = ended;
                dispatcher.dispatch_with_listener(listener, on_error).await;
            });
            (task, None)
        }
        TelegramMode::Webhook => {
            let addr = settings.listen;
            let url = settings.webhook_url.clone().ok_or_else(|| {
                anyhow::anyhow!("telegram.webhook_url is required in webhook mode")
            })?;
            let secret = settings.webhook_secret.as_ref().ok_or_else(|| {
                anyhow::anyhow!("telegram.webhook_secret is required in webhook mode")
            })?;
            let tcp =
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| TelegramError::Listen {
                        addr: addr.to_string(),
                        message: e.to_string(),
                    })?;
            let bound = tcp.local_addr().map_err(anyhow::Error::from)?;
            webhook::register(&bot, &url, secret).await.map_err(|e| {
                TelegramError::Unreachable {
                    url: settings.api_url.to_string(),
                    message: format!("setWebhook failed: {e}"),
                }
            })?;
            // Serve the hook without teloxide's set-up: its `axum_to_router` deletes the
            // webhook when the listener stops, so one replica's shutdown (a rolling
            // deploy) would leave every replica deaf. The webhook is never deleted here.
            let options =
                webhooks::Options::new(bound, url).secret_token(secret.expose_secret().to_string());
            let (listener, stop_flag, router) = webhooks::axum_no_setup(options);
            let router = router
                .layer(axum::middleware::from_fn_with_state(
                    secret.clone(),
                    webhook::guard,
                ))
                .route("/healthz", axum::routing::get(|| async { "ok" }));
            tokio::spawn(crate::ops::http::serve(tcp, router, stop_flag));
            let ended = done.clone().drop_guard();
            let task = tokio::spawn(async move {
                let _ended = ended;
                dispatcher
                    .dispatch_with_listener(
                        listener,
                        LoggingErrorHandler::with_custom_text("error receiving Telegram updates"),
                    )
                    .await;
            });
            (task, Some(bound))
        }
    };

    tokio::spawn(stop_when_cancelled(stop, shutdown, done));
    Ok(TelegramHandle {
        probe: Arc::new(TelegramProbe(probe_bot)),
        username,
        webhook_addr,
        task,
    })
}

/// Stops the dispatcher once `shutdown` is cancelled. teloxide refuses a shutdown while
/// its dispatcher is idle — not yet started, at the very moment it was spawned — and
/// that refusal was once dropped, so a signal in the first seconds was lost for good:
/// here the request is repeated until the dispatcher takes it or has ended.
async fn stop_when_cancelled(
    stop: teloxide::dispatching::ShutdownToken,
    shutdown: CancellationToken,
    done: CancellationToken,
) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = done.cancelled() => return,
    }
    loop {
        match stop.shutdown() {
            Ok(stopped) => return stopped.await,
            Err(_) if done.is_cancelled() => return,
            Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                    () = done.cancelled() => return,
                }
            }
        }
    }
}

async fn on_message(bot: Bot, msg: Message, ctx: Arc<Context>) -> ResponseResult<()> {
    handle(bot, &msg, &ctx, false).await;
    Ok(())
}

/// A press on one of our inline buttons: acknowledged at once (Telegram shows a
/// spinner until then), then handled as the command it carries.
async fn on_callback(bot: Bot, query: CallbackQuery, ctx: Arc<Context>) -> ResponseResult<()> {
    let acknowledged = bot.answer_callback_query(query.id.clone()).await;
    crate::core::metrics::platform_call(
        "telegram",
        "answerCallbackQuery",
        acknowledged.as_ref().ok().map(|_| 200),
    );
    if let Err(e) = acknowledged {
        tracing::debug!(error = %crate::core::error::chain(&e), "could not acknowledge a button press");
    }
    if let Some(event) = callbacks::callback_event(&query, &ctx.me) {
        ctx.conversation.handle(&event, &ctx.adapter(bot)).await;
    }
    Ok(())
}

async fn on_edited_message(bot: Bot, msg: Message, ctx: Arc<Context>) -> ResponseResult<()> {
    handle(bot, &msg, &ctx, true).await;
    Ok(())
}

async fn handle(bot: Bot, msg: &Message, ctx: &Context, edited: bool) {
    let Some(event) = convert::message_event(msg, &ctx.me, edited) else {
        return;
    };
    // An album's parts are answered once, together, by the first part's handler. It is
    // taken in at its first part, so a shutdown meanwhile answers what has come of it.
    let (event, admission) = match msg.media_group_id() {
        Some(group) if !edited => {
            if !ctx.albums.add(&group.0, event) {
                return;
            }
            let admission = ctx.conversation.admit();
            match ctx
                .albums
                .collect(&group.0, ctx.conversation.closed())
                .await
            {
                Some(album) => (album, admission),
                None => return,
            }
        }
        _ => (event, ctx.conversation.admit()),
    };
    ctx.conversation
        .handle_admitted(&event, &ctx.adapter(bot), admission)
        .await;
}
