//! One answer in flight per user: the registry of answers in progress, each with the
//! switch `/cancel` flips to stop it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::core::event::UserId;

/// Users with an answer in progress, each with the switch that stops it.
#[derive(Default)]
pub struct InFlight {
    answers: Mutex<HashMap<UserId, watch::Sender<bool>>>,
}

/// Holds a user's in-flight slot; frees it when dropped, however the answer ends.
pub struct Slot<'a> {
    registry: &'a InFlight,
    user: UserId,
    /// Turns true when the user sends /cancel.
    pub cancelled: watch::Receiver<bool>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.user);
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, watch::Sender<bool>>> {
        // Entries are inserted and removed whole: a poisoned map is still consistent.
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the user's slot, or `None` while another answer of theirs is in progress.
    pub fn begin(&self, user: &UserId) -> Option<Slot<'_>> {
        let (switch, cancelled) = watch::channel(false);
        match self.lock().entry(user.clone()) {
            Entry::Occupied(_) => return None,
            Entry::Vacant(slot) => {
                slot.insert(switch);
            }
        }
        Some(Slot {
            registry: self,
            user: user.clone(),
            cancelled,
        })
    }

    /// Stops the user's answer in progress; false when there is none.
    pub fn cancel(&self, user: &UserId) -> bool {
        self.lock()
            .get(user)
            .is_some_and(|switch| switch.send(true).is_ok())
    }
}
