//! /system: show, set or reset this conversation's own system prompt.

use super::{Answer, Conversation, Failure};
use crate::core::command::SystemArg;
use crate::core::event::IncomingEvent;

/// Longest system prompt a user may set, as a share of the context window.
const MAX_SYSTEM_PROMPT_SHARE: u32 = 4;

impl Conversation {
    pub(super) async fn system(&self, event: &IncomingEvent, arg: SystemArg) -> Answer {
        let key = event.session_key();
        match arg {
            SystemArg::Show => Ok(
                match self.answers.sessions.load(&key).await?.system_prompt {
                    Some(p) => {
                        format!(
                            "Your system prompt:\n\n{p}\n\n(/system reset restores the default.)"
                        )
                    }
                    None => format!(
                        "The default system prompt is in use:\n\n{}\n\n(Set your own with /system <text>.)",
                        self.answers.settings.default_system_prompt
                    ),
                },
            ),
            SystemArg::Reset => {
                self.answers.sessions.set_system_prompt(&key, None).await?;
                Ok("System prompt reset to the default.".into())
            }
            SystemArg::Set(prompt) => {
                let limit = self.answers.settings.context_tokens / MAX_SYSTEM_PROMPT_SHARE;
                let tokens = self.answers.counter.count(&prompt).await;
                if tokens > limit {
                    return Err(Failure::Refused(format!(
                        "That system prompt is too long ({tokens} tokens; at most {limit}). Please shorten it."
                    )));
                }
                self.answers
                    .sessions
                    .set_system_prompt(&key, Some(&prompt))
                    .await?;
                Ok("System prompt set. It applies from your next message; /system reset restores the default.".into())
            }
        }
    }
}
