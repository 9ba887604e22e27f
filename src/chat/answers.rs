//! What a chat turn needs, and nothing else: the history, the books, the model, the
//! counter, the settings, and the limits on answering (one answer per user, the
//! per-user rate, the model calls in flight). The turn's steps (`turn`, `opening`,
//! `incoming`, `prompt`, `retry`, `admission`, `ending`) are its methods; the commands
//! reach it for /retry, /cancel and what they read of the history.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::ConversationSettings;
use super::inflight::InFlight;
use crate::core::model::ModelClient;
use crate::core::session::SessionStore;
use crate::core::tools::ToolBox;
use crate::llm::tokens::TokenCounter;
use crate::quota::QuotaService;

pub(super) struct Answers {
    pub(super) sessions: Arc<dyn SessionStore>,
    pub(super) quota: QuotaService,
    pub(super) model: Arc<dyn ModelClient>,
    pub(super) counter: TokenCounter,
    pub(super) settings: ConversationSettings,
    /// The answer in progress per user, with the switch /cancel flips.
    pub(super) in_flight: InFlight,
    /// `limits.per_user_per_minute`.
    pub(super) rate: super::rate::UserRate,
    /// Model calls in flight (`limits.max_concurrent_answers`); waiters are served in
    /// arrival order.
    pub(super) permits: super::permits::Permits,
    /// Cancelled when the shutdown grace ran out: answers still running stop.
    pub(super) restarting: CancellationToken,
    /// What a model that may call tools is offered (`[tools]`); `None`: no tools.
    pub(super) tools: Option<Arc<dyn ToolBox>>,
}

impl Answers {
    pub(super) fn new(
        sessions: Arc<dyn SessionStore>,
        quota: QuotaService,
        model: Arc<dyn ModelClient>,
        counter: TokenCounter,
        settings: ConversationSettings,
        restarting: CancellationToken,
    ) -> Answers {
        let rate = super::rate::UserRate::new("messages", settings.per_user_per_minute);
        let permits = super::permits::Permits::new(settings.max_concurrent_answers);
        Answers {
            sessions,
            quota,
            model,
            counter,
            settings,
            in_flight: InFlight::default(),
            rate,
            permits,
            restarting,
            tools: None,
        }
    }
}
