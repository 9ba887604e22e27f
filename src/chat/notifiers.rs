//! Reaching a user privately on whichever platform of this process serves them (the
//! other account of a /link hears that it was linked).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::core::adapter::Notifier;
use crate::core::error::chain;
use crate::core::event::{Platform, UserId};

/// How to reach users of each running platform; a platform registers when it starts.
#[derive(Default)]
pub(super) struct Notifiers(RwLock<HashMap<Platform, Arc<dyn Notifier>>>);

impl Notifiers {
    pub(super) fn register(&self, platform: Platform, notifier: Arc<dyn Notifier>) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(platform, notifier);
    }

    /// Sends `text` to `user` privately, if their platform is running here; failures are
    /// logged (the user may have blocked the bot).
    pub(super) async fn notify(&self, user: &UserId, text: &str) {
        let notifier = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user.platform)
            .cloned();
        let Some(notifier) = notifier else {
            tracing::info!(%user, "cannot notify: the platform is not served by this process");
            return;
        };
        if let Err(e) = notifier.notify(&user.user, text).await {
            tracing::warn!(%user, error = %chain(&e), "could not notify the user");
        }
    }
}
