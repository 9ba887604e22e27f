//! Before the model is called: the session loaded and counted, the prompt fitted to the
//! context window, the tokens reserved — and, when the server says a prompt did not fit
//! after all, the shorter prompt to retry with. Every refusal here costs the user nothing.

use super::Refusal;
use super::answers::Answers;
use super::context::{Fitting, Prompt, TooLong, build_prompt, refit};
use super::notices::{self, Sentence, say};
use crate::config::ModelChoice;
use crate::core::adapter::{ChatAdapter, ReplyTarget};
use crate::core::event::{ChatKind, IncomingEvent, SessionKey};
use crate::core::metrics::QUOTA_DB;
use crate::core::model::Overflow;
use crate::core::session::Session;
use crate::quota::{Payer, QuotaError, Reservation, WalletShort};

/// A session with the counts of what every prompt of this turn is made of.
pub(super) struct Loaded {
    session: Session,
    /// The model this conversation uses (its /model pick, or the default).
    pub(super) model: ModelChoice,
    system_tokens: u32,
    pub(super) user_tokens: u32,
    /// Tokens of the images sent with the message (counted for fitting and reserving;
    /// not kept with the history turn).
    pub(super) image_tokens: u32,
    overhead: u32,
}

impl Loaded {
    /// Leaves the history's last exchange out of this turn's prompt (/retry asks it
    /// anew); nothing when the history has moved on since.
    pub(super) fn leave_out(&mut self, last: &[crate::core::session::Turn]) {
        self.session.drop_last(last);
    }
}

impl Answers {
    /// Loads the session and counts the system prompt and the new message with the
    /// model's tokenizer.
    pub(super) async fn load(&self, key: &SessionKey, text: &str) -> Result<Loaded, Refused> {
        let session = self.sessions.load(key).await.map_err(Refused::Store)?;
        let system_tokens = self.counter.count(self.system_of(&session)).await;
        let user_tokens = self.counter.count(text).await;
        let model = self.settings.model_for(session.model.as_deref());
        Ok(Loaded {
            model,
            session,
            system_tokens,
            user_tokens,
            image_tokens: 0,
            overhead: self.counter.overhead(),
        })
    }

    /// The conversation's own /system text, else its persona's prompt, else the
    /// configured default.
    pub(super) fn system_of<'a>(&'a self, session: &'a Session) -> &'a str {
        if let Some(own) = session.system_prompt.as_deref() {
            return own;
        }
        match self.settings.persona_for(session.persona.as_deref()) {
            Some((_, persona)) => &persona.prompt,
            None => &self.settings.default_system_prompt,
        }
    }

    pub(super) fn fitting<'a>(&'a self, loaded: &'a Loaded, text: &'a str) -> Fitting<'a> {
        Fitting {
            system: self.system_of(&loaded.session),
            system_tokens: loaded.system_tokens,
            history: &loaded.session.turns,
            user: text,
            user_tokens: loaded.user_tokens + loaded.image_tokens,
            overhead: loaded.overhead,
            max_tokens: self.settings.max_tokens,
        }
    }

    /// The session's history and system prompt, fitted to the context window.
    pub(super) fn prompt_for(&self, loaded: &Loaded, text: &str) -> Result<Prompt, Refused> {
        let prompt = build_prompt(&self.fitting(loaded, text), self.settings.context_tokens)
            .map_err(|too_long| Refused::Say(Refusal::TooLong, too_long_sentence(&too_long)))?;
        if prompt.dropped > 0 {
            tracing::debug!(
                dropped = prompt.dropped,
                "older turns left out to fit the context window"
            );
        }
        Ok(prompt)
    }

    /// After the server refused `sent` as too long: a shorter prompt, or the sentence
    /// that tells the user their message alone is too long.
    pub(super) fn shorter_prompt(
        &self,
        loaded: &Loaded,
        text: &str,
        sent: &Prompt,
        overflow: &Overflow,
    ) -> Result<Prompt, Sentence> {
        match refit(&self.fitting(loaded, text), sent, overflow) {
            Ok(prompt) => {
                tracing::info!(
                    detail = %overflow.detail,
                    sent = sent.kept,
                    kept = prompt.kept,
                    "the model server's context was exceeded; retrying with a shorter history"
                );
                Ok(prompt)
            }
            Err(too_long) => Err(Sentence(too_long_sentence(&too_long))),
        }
    }

    /// Before the files of a message are fetched or read: the payer must be able to pay
    /// for the smallest answer (the longest answer at the price of the conversation's
    /// model), or nothing is downloaded or parsed.
    pub(super) async fn afford_reading(
        &self,
        payer: &Payer,
        key: &SessionKey,
    ) -> Result<(), Refused> {
        let session = self.sessions.load(key).await.map_err(Refused::Store)?;
        let model = self.settings.model_for(session.model.as_deref());
        let minimum = model.ledger_tokens(i64::from(self.settings.max_tokens));
        self.quota
            .can_afford_paid(payer, minimum)
            .await
            .map_err(|e| match e {
            QuotaError::Exhausted { remaining, needed } => Refused::Say(Refusal::Quota, format!(
                "Quota exhausted: {remaining} tokens left, and a question needs at least {needed} (room for the longest answer), so your file was not read. Ask the bot's operator for more tokens."
            )),
            e => refused(e),
        })
    }

    /// Holds the prompt (with the tokenizer's margin) plus the longest possible answer
    /// before the model is called, in ledger tokens at the model's price — on the
    /// group's wallet first, when there is one.
    pub(super) async fn reserve(
        &self,
        payer: &Payer,
        prompt_tokens: u32,
        model: &ModelChoice,
    ) -> Result<Reservation, Refused> {
        let margin = (f64::from(prompt_tokens) * self.settings.reserve_margin).ceil() as i64;
        let needed = model
            .ledger_tokens(i64::from(prompt_tokens) + margin + i64::from(self.settings.max_tokens));
        let reserving = self.quota.reserve_paid(payer, needed, Some(&model.name));
        crate::core::metrics::timed(QUOTA_DB, "reserve", reserving)
            .await
            .map_err(|e| match e {
            QuotaError::Exhausted { remaining, needed } => Refused::Say(Refusal::Quota, format!(
                "Quota exhausted: {remaining} tokens left, and this message needs up to {needed} (prompt plus the longest answer). Ask the bot's operator for more tokens, or /reset to send less history."
            )),
            e => refused(e),
        })
    }

    /// Who pays for `event`'s question: in a group with a wallet, the wallet first.
    pub(super) async fn payer(&self, event: &IncomingEvent) -> Result<Payer, QuotaError> {
        let member = event.quota_user();
        let (ChatKind::Group, Some(group)) = (event.chat_kind, &event.group) else {
            return Ok(Payer::own(member));
        };
        let wallet = self
            .quota
            .wallet_for(event.platform, group, event.thread.as_deref())
            .await?;
        Ok(Payer {
            member,
            name: event.sender.display_name.clone(),
            wallet,
        })
    }
}

/// A refusal of the ledger's other than an exhausted balance.
fn refused(e: QuotaError) -> Refused {
    match e {
        QuotaError::Limit(sentence) => Refused::Say(Refusal::Quota, sentence.into()),
        QuotaError::Wallet(short) => Refused::Say(Refusal::Quota, wallet_sentence(&short)),
        e => Refused::Quota(e),
    }
}

/// Said when the group's wallet cannot pay and the group does not let members pay.
pub(super) fn wallet_sentence(short: &WalletShort) -> String {
    match short {
        WalletShort::Empty { remaining, needed } => format!(
            "This group's token wallet cannot pay for this ({remaining} tokens left; a question needs up to {needed}), and here members do not pay themselves. A group admin can add tokens with /budget add <tokens>."
        ),
        WalletShort::Share { used, limit, .. } => format!(
            "You have used {used} of your {limit} tokens from this group's wallet today, and here members do not pay themselves. Your share renews at midnight UTC."
        ),
    }
}

fn too_long_sentence(too_long: &TooLong) -> String {
    format!(
        "Your message is too long for this model (about {} tokens with room for the answer; the limit is {}). Please shorten it.",
        too_long.needed, too_long.limit
    )
}

/// A turn refused before the model was called.
pub(super) enum Refused {
    Say(Refusal, String),
    Store(crate::core::session::SessionError),
    Quota(QuotaError),
}

impl Refused {
    pub(super) async fn tell(
        self,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
    ) -> super::Outcome {
        match self {
            Refused::Say(why, text) => {
                say(adapter, target, &text).await;
                super::Outcome::Refused(why)
            }
            Refused::Store(e) => {
                notices::store_failure(adapter, target, &e).await;
                super::Outcome::Failed
            }
            Refused::Quota(e) => {
                notices::quota_failure(adapter, target, &e).await;
                super::Outcome::Failed
            }
        }
    }
}
