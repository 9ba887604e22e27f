//! One answer in flight per user: the registry of answers in progress, each with the
//! switch `/cancel` flips to stop it.
//!
//! An answer is *generating* while the model writes (a new message from the same user is
//! refused with "still answering", and `/cancel` stops it), then *finishing* while its
//! final text is delivered and its turn recorded: a message arriving then waits for the
//! slot instead, so a user who answers a visibly complete reply is never refused.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::core::event::UserId;

struct Answer {
    cancel: watch::Sender<bool>,
    finishing: bool,
    /// Closed when the slot is freed.
    freed: watch::Receiver<()>,
}

/// Users with an answer in progress.
#[derive(Default)]
pub struct InFlight {
    answers: Mutex<HashMap<UserId, Answer>>,
}

/// Holds a user's in-flight slot; frees it when dropped, however the answer ends.
pub struct Slot<'a> {
    registry: &'a InFlight,
    user: UserId,
    /// Turns true when the user sends /cancel.
    pub cancelled: watch::Receiver<bool>,
    _freed: watch::Sender<()>,
}

impl Slot<'_> {
    /// The model is done; what remains is delivery and bookkeeping.
    pub fn finishing(&self) {
        if let Some(answer) = self.registry.lock().get_mut(&self.user) {
            answer.finishing = true;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.user);
        // `_freed` drops after this: waiters wake to a free slot.
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Answer>> {
        // Entries are inserted and removed whole: a poisoned map is still consistent.
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the user's slot; `None` while another answer of theirs is generating.
    /// If it is only finishing, waits until it is done.
    pub async fn begin(&self, user: &UserId) -> Option<Slot<'_>> {
        loop {
            let mut freed = {
                let mut answers = self.lock();
                match answers.entry(user.clone()) {
                    Entry::Occupied(busy) if !busy.get().finishing => return None,
                    Entry::Occupied(busy) => busy.get().freed.clone(),
                    Entry::Vacant(slot) => {
                        let (cancel, cancelled) = watch::channel(false);
                        let (freed_tx, freed_rx) = watch::channel(());
                        slot.insert(Answer {
                            cancel,
                            finishing: false,
                            freed: freed_rx,
                        });
                        return Some(Slot {
                            registry: self,
                            user: user.clone(),
                            cancelled,
                            _freed: freed_tx,
                        });
                    }
                }
            };
            // Resolves (with an error) once the finishing answer's slot is dropped.
            let _ = freed.changed().await;
        }
    }

    /// Stops the user's answer while the model is still writing it; false when there is
    /// none (or it is already finishing).
    pub fn cancel(&self, user: &UserId) -> bool {
        self.lock()
            .get(user)
            .is_some_and(|a| !a.finishing && a.cancel.send(true).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Platform;

    #[tokio::test]
    async fn a_finishing_answer_makes_the_next_message_wait_not_fail() {
        let registry = InFlight::default();
        let user = UserId::new(Platform::Console, "u");
        let slot = registry.begin(&user).await.unwrap();
        assert!(registry.begin(&user).await.is_none(), "still generating");
        slot.finishing();
        assert!(!registry.cancel(&user), "nothing left to cancel");
        let (next, ()) = tokio::join!(registry.begin(&user), async move {
            tokio::task::yield_now().await;
            drop(slot);
        });
        assert!(next.is_some(), "the waiting message gets the slot");
    }
}
