//! /link and /unlink: a person's identity on one platform draws on their account on
//! another, joined with a one-time code.
//!
//! The code is a secret that spends its owner's balance, so it is only shown where only
//! its owner sees it (a private chat, or a Discord ephemeral reply), comes from the
//! operating system's CSPRNG, works only from another platform, and its owner is told
//! when it is used. A failed redemption leaves the code valid; attempts are rate-limited.
//! No tokens move (see [`crate::quota`]'s links): the redeemer's own balance pays first.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

use super::{Answer, Conversation, Failure};
use crate::core::adapter::ChatAdapter;
use crate::core::event::{ChatKind, IncomingEvent, UserId};
use crate::quota::QuotaError;

/// How long a /link code stays valid.
const LINK_CODE_TTL: Duration = Duration::from_secs(600);

/// Redemption attempts per user: 5 at once, then one a minute. With 32⁸ codes
/// guessing is hopeless.
pub(crate) fn attempts() -> Quota {
    Quota::per_minute(NonZeroU32::MIN).allow_burst(NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN))
}

pub const IN_PRIVATE: &str = "Send /link to me in a private chat: a link code lets whoever has it spend your tokens, so I only show it to you.";

impl Conversation {
    pub(super) async fn link(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        code: Option<String>,
    ) -> Answer {
        match code {
            None if event.chat_kind == ChatKind::Group && !adapter.replies_are_private() => {
                Ok(IN_PRIVATE.to_string())
            }
            None => self.new_link_code(event).await,
            Some(code) => self.redeem_link_code(event, &code).await,
        }
    }

    async fn new_link_code(&self, event: &IncomingEvent) -> Answer {
        let code = link_code().map_err(|e| {
            tracing::error!(error = %e, "the system's random source failed");
            Failure::Refused("Please try again.".into())
        })?;
        let expires = chrono::Utc::now().timestamp_millis() + LINK_CODE_TTL.as_millis() as i64;
        let value = format!("{} {expires}", event.quota_user());
        Ok(
            if self
                .answers
                .sessions
                .put_code(&format!("link:{code}"), &value, LINK_CODE_TTL)
                .await?
            {
                format!(
                    "Your link code is {code} (valid for 10 minutes; keep it to yourself). Send /link {code} from your account on another platform: that account will use this one's tokens when its own run out. You will be told when the code is used."
                )
            } else {
                "Please try again.".to_string()
            },
        )
    }

    async fn redeem_link_code(&self, event: &IncomingEvent, code: &str) -> Answer {
        let me = event.quota_user();
        if self.link_attempts.check(&me).is_err() {
            return Err(Failure::Refused(
                "Too many link attempts. Please wait a few minutes and try again.".into(),
            ));
        }
        let key = format!("link:{}", code.trim().to_ascii_uppercase());
        let Some((origin, expires)) = self
            .answers
            .sessions
            .peek_code(&key)
            .await?
            .and_then(|v| parse(&v))
        else {
            return Ok(
                "That code is unknown or has expired. Send /link on your other account to get a new one.".to_string(),
            );
        };
        if origin.platform == me.platform {
            return Ok(format!(
                "A link code works only from another platform: send it from your account there, not from {}.",
                me.platform
            ));
        }
        // Checks passed: use the code up (once, even against a concurrent redemption).
        let Some(taken) = self.answers.sessions.take_code(&key).await? else {
            return Ok(
                "That code was just used. Send /link on your other account to get a new one."
                    .into(),
            );
        };
        match self.answers.quota.link(&me, &origin).await {
            Ok(()) => {
                self.notifiers.notify(
                    &origin,
                    &format!("Your link code was used: {me} now uses this account's tokens when its own run out. If that was not you, send /unlink here."),
                )
                .await;
                Ok(format!(
                    "Linked: {me} uses the tokens of {origin} when its own run out. Your conversations stay separate. /unlink undoes it."
                ))
            }
            Err(e) => {
                // A failed redemption leaves the code as it was, for what is left of its life.
                let left = expires - chrono::Utc::now().timestamp_millis();
                if left > 0 {
                    let _ = self
                        .answers
                        .sessions
                        .put_code(&key, &taken, Duration::from_millis(left as u64))
                        .await;
                }
                match e {
                    QuotaError::Invalid(why) => Ok(format!("Could not link: {why}.")),
                    e => Err(Failure::Quota(e)),
                }
            }
        }
    }

    pub(super) async fn unlink(&self, event: &IncomingEvent) -> Answer {
        Ok(match self.answers.quota.unlink(&event.quota_user()).await? {
            0 => "This account is not linked to another one.".to_string(),
            _ => "Unlinked: each account uses only its own tokens again (no tokens moved either way).".to_string(),
        })
    }
}

/// A stored code's value: the owner and when the code expires (Unix ms).
fn parse(value: &str) -> Option<(UserId, i64)> {
    let (user, expires) = value.split_once(' ')?;
    Some((UserId::parse(user).ok()?, expires.parse().ok()?))
}

/// An 8-character one-time code from the OS's CSPRNG, without look-alike characters
/// (0/O, 1/I): 32 symbols, so each random byte's low 5 bits pick one uniformly.
fn link_code() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_symbols_of_the_alphabet_and_differ() {
        let a = link_code().unwrap();
        let b = link_code().unwrap();
        assert_eq!(a.len(), 8);
        assert!(
            a.chars()
                .all(|c| "ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(c))
        );
        assert_ne!(a, b);
    }
}
