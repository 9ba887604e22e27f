//! /link and /unlink: one token balance shared by a person's accounts on several
//! platforms, joined with a one-time code.

use std::time::Duration;

use super::{Answer, Conversation, Failure};
use crate::core::event::{IncomingEvent, UserId};
use crate::quota::QuotaError;

/// How long a /link code stays valid.
const LINK_CODE_TTL: Duration = Duration::from_secs(600);

impl Conversation {
    pub(super) async fn link(&self, event: &IncomingEvent, code: Option<String>) -> Answer {
        match code {
            None => self.new_link_code(event).await,
            Some(code) => self.redeem_link_code(event, &code).await,
        }
    }

    async fn new_link_code(&self, event: &IncomingEvent) -> Answer {
        let code = link_code();
        let user = event.quota_user().to_string();
        Ok(
            if self
                .sessions
                .put_code(&format!("link:{code}"), &user, LINK_CODE_TTL)
                .await?
            {
                format!(
                    "Your link code is {code} (valid for 10 minutes). Send /link {code} from your account on the other platform, and both will share this account's token balance."
                )
            } else {
                "Please try again.".to_string()
            },
        )
    }

    async fn redeem_link_code(&self, event: &IncomingEvent, code: &str) -> Answer {
        let code = code.trim().to_ascii_uppercase();
        let origin = self.sessions.take_code(&format!("link:{code}")).await?;
        let me = event.quota_user();
        match origin.as_deref().map(UserId::parse) {
            None | Some(Err(_)) => Ok(
                "That code is unknown or has expired. Send /link on your other account to get a new one.".to_string(),
            ),
            Some(Ok(origin)) if origin == me => Ok(
                "Send that code from your account on the other platform, not from this one."
                    .to_string(),
            ),
            Some(Ok(origin)) => match self.quota.link(&me, &origin).await {
                Ok(b) => Ok(format!(
                    "Linked: {me} now shares the token balance of {origin} ({} tokens left). Your conversations stay separate. /unlink undoes it.",
                    b.remaining
                )),
                Err(QuotaError::Invalid(why)) => Ok(format!("Could not link: {why}.")),
                Err(e) => Err(Failure::Quota(e)),
            },
        }
    }

    pub(super) async fn unlink(&self, event: &IncomingEvent) -> Answer {
        Ok(match self.quota.unlink(&event.quota_user()).await? {
            0 => "This account is not linked to another one.".to_string(),
            _ => "Unlinked: each account uses its own token balance again (tokens stay with the account that holds them).".to_string(),
        })
    }
}

/// An 8-character one-time code, without look-alike characters (0/O, 1/I).
fn link_code() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // RandomState is seeded from the OS per instance: unpredictable enough for a code
    // that lives ten minutes and is used once.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut bits = hasher.finish();
    (0..8)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char;
            bits /= ALPHABET.len() as u64;
            c
        })
        .collect()
}
