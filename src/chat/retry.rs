//! /retry: the conversation's last question answered anew — what "regenerate" does in
//! the chat apps. The new answer is a turn like any other (reserved, charged, cancelled
//! the same way) whose exchange takes the old one's place in the history; a turn that
//! fails leaves the old exchange as it was. A last question that got no answer (the
//! model failed, or quota ran out) is the one asked, as a new exchange.

use super::Refusal;
use super::answers::Answers;
use super::incoming::{Asking, had_pictures};
use super::prompt::Refused;
use crate::core::event::SessionKey;
use crate::core::session::{Role, Setting, Turn};

pub(super) const NOTHING_TO_RETRY: &str =
    "There is nothing to answer again yet: send me a question first.";
pub(super) const PICTURES_NOT_KEPT: &str = "Your last message came with pictures, which are not kept after the answer. Send them again to get a new answer.";

/// What /retry asks.
pub(super) enum Again {
    /// The last question, which got no answer: asked as a new exchange.
    Unanswered(String),
    /// The history's last exchange (its last user turn and what followed): asked anew,
    /// the new exchange in its place.
    Exchange(Vec<Turn>),
}

impl Again {
    fn question(&self) -> &str {
        match self {
            Again::Unanswered(question) => question,
            Again::Exchange(turns) => &turns[0].content,
        }
    }
}

impl Answers {
    /// What /retry asks in this conversation.
    pub(super) async fn again(&self, key: &SessionKey) -> Result<Again, Refused> {
        let session = self.sessions.load(key).await.map_err(Refused::Store)?;
        let again = match (
            session.unanswered,
            session.turns.iter().rposition(|t| t.role == Role::User),
        ) {
            (Some(question), _) => Again::Unanswered(question),
            (None, Some(start)) => Again::Exchange(session.turns[start..].to_vec()),
            (None, None) => return Err(Refused::Say(Refusal::Command, NOTHING_TO_RETRY.into())),
        };
        if had_pictures(again.question()) {
            return Err(Refused::Say(Refusal::Command, PICTURES_NOT_KEPT.into()));
        }
        Ok(again)
    }

    /// Keeps a question that got no answer for /retry (recorded as the history would
    /// have it). A failure to keep it is only logged: the user was told what happened.
    pub(super) async fn remember_unanswered(&self, key: &SessionKey, question: &str) {
        if let Err(e) = self
            .sessions
            .set(key, Setting::Unanswered, Some(question))
            .await
        {
            tracing::warn!(error = %crate::core::error::chain(&e), "could not keep the unanswered question for /retry");
        }
    }
}

/// The question /retry asks, as the turn takes it: its recorded text already holds the
/// files and the quote it was first asked with.
pub(super) fn asking_again(again: &Again) -> Asking {
    let text = again.question().to_string();
    Asking {
        recorded: text.clone(),
        text,
        images: Vec::new(),
    }
}
