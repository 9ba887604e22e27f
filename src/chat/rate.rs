//! A per-user limit per minute (`limits.per_user_per_minute`, `limits.commands_per_minute`),
//! counted across every replica when they share a board ([`SharedRates`], Redis) and in
//! this process otherwise — or when the board cannot be reached, so a replica that lost
//! Redis still limits (with `gptbot_coordination_degraded` at 1).

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::Quota;

use crate::core::coordination::{SharedRates, reachable};
use crate::core::event::UserId;
use crate::core::limiter::{Keyed, Limited};

pub(super) struct UserRate {
    /// What is limited, in the shared key (`messages`, `commands`).
    name: &'static str,
    per_minute: u32,
    local: Option<Keyed<UserId>>,
    shared: Option<Arc<dyn SharedRates>>,
}

impl UserRate {
    /// `per_minute` 0: no limit.
    pub(super) fn new(name: &'static str, per_minute: u32) -> UserRate {
        UserRate {
            name,
            per_minute,
            local: NonZeroU32::new(per_minute)
                .map(|n| Keyed::new(Quota::per_minute(n), super::LIMITER_KEYS)),
            shared: None,
        }
    }

    pub(super) fn share(&mut self, shared: Arc<dyn SharedRates>) {
        self.shared = Some(shared);
    }

    pub(super) fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Counts one event of `user`'s.
    pub(super) async fn check(&self, user: &UserId) -> Result<(), Limited> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        if let Some(shared) = &self.shared {
            match shared
                .hit(
                    &format!("{}:{user}", self.name),
                    self.per_minute,
                    std::time::Duration::from_secs(60),
                )
                .await
            {
                Ok(None) => {
                    reachable(Ok(()));
                    return Ok(());
                }
                Ok(Some(wait)) => {
                    reachable(Ok(()));
                    return Err(Limited::Wait(wait));
                }
                Err(e) => reachable(Err(e)),
            }
        }
        local.check(user)
    }
}
