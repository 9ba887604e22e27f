//! Admission of a chat turn before any token is held: the per-user rate limit, and the
//! line for a model call when `limits.max_concurrent_answers` are already running
//! (served in arrival order, with "typing…" and a notice for a long wait).

use std::time::Duration;

use crate::core::limiter::Limited;
use tokio::sync::watch;

use super::answers::Answers;
use super::notices::{self, Sentence, say};
use crate::core::adapter::{ChatAdapter, ReplyTarget};
use crate::core::event::UserId;

/// How long an answer waits in line for a model call before the user is told.
const QUEUE_NOTICE: Duration = Duration::from_secs(5);

/// How long an answer waits for a permit before "typing…" is shown for it.
const IN_LINE: Duration = Duration::from_millis(200);

/// Telegram shows "typing…" for about 5 s; refresh a little sooner.
pub(super) const TYPING_REFRESH: Duration = Duration::from_secs(4);

impl Answers {
    /// Waits for a model-call permit, in arrival order, showing "typing…" and, past
    /// [`QUEUE_NOTICE`], saying once that the question is in line. `None` if the user
    /// cancelled or the bot is stopping.
    pub(super) async fn wait_turn(
        &self,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        cancel: &mut watch::Receiver<bool>,
    ) -> Option<super::permits::Permit> {
        let acquire = self.permits.acquire();
        tokio::pin!(acquire);
        let notice = tokio::time::sleep(QUEUE_NOTICE);
        tokio::pin!(notice);
        let mut told = false;
        // Not at once: a free permit (one round trip to a shared board) shows no "typing…".
        let mut typing =
            tokio::time::interval_at(tokio::time::Instant::now() + IN_LINE, TYPING_REFRESH);
        loop {
            tokio::select! {
                permit = &mut acquire => return permit,
                _ = cancel.changed() => return None,
                () = self.restarting.cancelled() => return None,
                () = &mut notice, if !told => {
                    told = true;
                    say(adapter, target, notices::QUEUED).await;
                }
                _ = typing.tick() => super::opening::note_typing(adapter.typing(target).await),
            }
        }
    }

    /// The per-user rate limit: `Err` holds the sentence to say.
    pub(super) async fn check_rate(&self, user: &UserId) -> Result<(), Sentence> {
        match self.rate.check(user).await {
            Ok(()) => Ok(()),
            Err(Limited::Wait(wait)) => Err(Sentence(format!(
                "You're sending messages faster than this bot allows ({} per minute). Please wait {} s.",
                self.rate.per_minute(),
                wait.as_secs().max(1)
            ))),
            Err(Limited::Full) => {
                Err("The bot is very busy right now. Please try again in a minute.".into())
            }
        }
    }
}
