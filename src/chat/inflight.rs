//! One answer in flight per user: the registry of answers in progress, each with the
//! switch `/cancel` flips to stop it — in this process, and with a shared board
//! ([`SharedSlots`], Redis) across every replica.
//!
//! An answer is *generating* while the model writes (a new message from the same user is
//! refused with "still answering", and `/cancel` stops it), then *finishing* while its
//! final text is delivered and its turn recorded: a message arriving then waits for the
//! slot instead, so a user who answers a visibly complete reply is never refused.
//!
//! With a board, the slot is also taken there, under a random token and a lease renewed
//! while the answer runs ([`MAX_LEASE`]): a second message on another replica is refused, a
//! /cancel on another replica reaches this one (published at once; found at the next
//! renewal if the message was missed), and a replica that dies frees its users when the
//! lease runs out. If the board cannot be reached, each process decides alone, with a
//! warning and `gptbot_coordination_degraded` at 1, until it answers again.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::core::coordination::{Held, SharedSlots, Taken, reachable};
use crate::core::event::UserId;

/// How long a replica's slot outlives the replica, at most: never longer than its quota
/// holds (`quota.hold_lease`), after which the books treat its answers as dead too.
pub const MAX_LEASE: Duration = Duration::from_secs(15);

/// How often a waiting message looks again at a slot finishing on another replica.
const FINISHING_POLL: Duration = Duration::from_millis(50);

struct Answer {
    cancel: watch::Sender<bool>,
    finishing: bool,
    /// Closed when the slot is freed.
    freed: watch::Receiver<()>,
}

#[derive(Clone, Default)]
struct Local(Arc<Mutex<HashMap<UserId, Answer>>>);

impl Local {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Answer>> {
        // Entries are inserted and removed whole: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cancel(&self, user: &UserId) -> bool {
        self.lock()
            .get(user)
            .is_some_and(|a| !a.finishing && a.cancel.send(true).is_ok())
    }

    /// A cancellation heard from another replica, the user as `platform:user`.
    fn cancel_named(&self, who: &str) {
        for (user, answer) in self.lock().iter() {
            if !answer.finishing && user.to_string() == who {
                let _ = answer.cancel.send(true);
            }
        }
    }
}

/// The board shared with other replicas, and the task that hears their cancellations.
struct Shared {
    board: Arc<dyn SharedSlots>,
    lease: Duration,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Users with an answer in progress.
#[derive(Default)]
pub struct InFlight {
    local: Local,
    shared: Option<Shared>,
}

/// Holds a user's in-flight slot; frees it when dropped, however the answer ends.
pub struct Slot<'a> {
    registry: &'a InFlight,
    user: UserId,
    /// Turns true when the user sends /cancel.
    pub cancelled: watch::Receiver<bool>,
    _freed: Option<watch::Sender<()>>,
    /// The slot on the board, renewed until dropped.
    shared: Option<SharedHold>,
}

struct SharedHold {
    board: Arc<dyn SharedSlots>,
    token: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl Slot<'_> {
    /// The model is done; what remains is delivery and bookkeeping.
    pub fn finishing(&self) {
        if let Some(answer) = self.registry.local.lock().get_mut(&self.user) {
            answer.finishing = true;
        }
        if let Some(hold) = &self.shared {
            let (board, user, token) = (hold.board.clone(), self.user.clone(), hold.token.clone());
            tokio::spawn(async move { reachable(board.finishing(&user, &token).await) });
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let runtime = tokio::runtime::Handle::try_current();
        match (self.shared.take(), runtime) {
            // Freed on the board first, then here: a message of the user's waiting in
            // this process takes the slot only once the board has it free too.
            (Some(hold), Ok(runtime)) => {
                hold.renewer.abort();
                if let Some(answer) = self.registry.local.lock().get_mut(&self.user) {
                    answer.finishing = true;
                }
                let (local, user) = (self.registry.local.clone(), self.user.clone());
                let freed = self._freed.take();
                runtime.spawn(async move {
                    reachable(hold.board.free(&user, &hold.token).await);
                    local.lock().remove(&user);
                    drop(freed);
                });
            }
            (hold, _) => {
                if let Some(hold) = hold {
                    hold.renewer.abort();
                }
                self.registry.local.lock().remove(&self.user);
            }
        }
        // `_freed` (when still here) drops after this: waiters wake to a free slot.
    }
}

impl InFlight {
    /// Decides together with every replica on `board`, slots held with `lease`.
    pub fn shared(board: Arc<dyn SharedSlots>, lease: Duration) -> InFlight {
        let local = Local::default();
        let mut heard = board.cancels();
        let listener = {
            let local = local.clone();
            tokio::spawn(async move {
                loop {
                    match heard.recv().await {
                        Ok(who) => local.cancel_named(&who),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
        };
        InFlight {
            local,
            shared: Some(Shared {
                board,
                lease,
                listener,
            }),
        }
    }

    /// Takes the user's slot; `None` while another answer of theirs is generating (here
    /// or on another replica). If it is only finishing, waits until it is done.
    pub async fn begin(&self, user: &UserId) -> Option<Slot<'_>> {
        let mut slot = self.begin_here(user).await?;
        let Some(shared) = &self.shared else {
            return Some(slot);
        };
        let token = token();
        loop {
            match shared.board.take(user, &token, shared.lease).await {
                Ok(Taken::Yes) => {
                    reachable(Ok(()));
                    slot.shared = Some(SharedHold {
                        board: shared.board.clone(),
                        renewer: tokio::spawn(renew(
                            shared.board.clone(),
                            shared.lease,
                            self.local.clone(),
                            user.clone(),
                            token.clone(),
                        )),
                        token,
                    });
                    return Some(slot);
                }
                Ok(Taken::Busy) => {
                    reachable(Ok(()));
                    return None;
                }
                Ok(Taken::Finishing) => tokio::time::sleep(FINISHING_POLL).await,
                // Decided here alone rather than not answering.
                Err(e) => {
                    reachable(Err(e));
                    return Some(slot);
                }
            }
        }
    }

    async fn begin_here(&self, user: &UserId) -> Option<Slot<'_>> {
        loop {
            let mut freed = {
                let mut answers = self.local.lock();
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
                            _freed: Some(freed_tx),
                            shared: None,
                        });
                    }
                }
            };
            // Resolves (with an error) once the finishing answer's slot is dropped.
            let _ = freed.changed().await;
        }
    }

    /// Stops the user's answer while the model is still writing it, on whichever replica
    /// writes it; false when there is none (or it is already finishing).
    pub async fn cancel(&self, user: &UserId) -> bool {
        if self.local.cancel(user) {
            return true;
        }
        match &self.shared {
            Some(shared) => match shared.board.cancel(user).await {
                Ok(stopped) => {
                    reachable(Ok(()));
                    stopped
                }
                Err(e) => {
                    reachable(Err(e));
                    false
                }
            },
            None => false,
        }
    }
}

/// Keeps the slot's lease while the answer runs; a /cancel whose message this replica
/// missed is found here.
async fn renew(
    board: Arc<dyn SharedSlots>,
    lease: Duration,
    local: Local,
    user: UserId,
    token: String,
) {
    loop {
        tokio::time::sleep(lease / 3).await;
        match board.renew(&user, &token, lease).await {
            Ok(Held::Cancelled) => {
                reachable(Ok(()));
                local.cancel(&user);
            }
            Ok(Held::Lost) => {
                reachable(Ok(()));
                tracing::warn!(%user, "the answer's in-flight slot expired before it ended; another message of the user's may be answered meanwhile");
                return;
            }
            Ok(_) => reachable(Ok(())),
            Err(e) => reachable(Err(e)),
        }
    }
}

/// The slot's token: only its holder can renew or free it.
pub(super) fn token() -> String {
    crate::core::token::random().unwrap_or_else(|_| {
        // Unique enough to tell this holder from others if the OS source fails.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{nanos:x}{:x}", std::process::id())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::coordination::CoordError;
    use crate::core::event::Platform;

    #[tokio::test]
    async fn a_finishing_answer_makes_the_next_message_wait_not_fail() {
        let registry = InFlight::default();
        let user = UserId::new(Platform::Console, "u");
        let slot = registry.begin(&user).await.unwrap();
        assert!(registry.begin(&user).await.is_none(), "still generating");
        slot.finishing();
        assert!(!registry.cancel(&user).await, "nothing left to cancel");
        let (next, ()) = tokio::join!(registry.begin(&user), async move {
            tokio::task::yield_now().await;
            drop(slot);
        });
        assert!(next.is_some(), "the waiting message gets the slot");
    }

    /// A board that cannot be reached.
    struct Down;

    #[async_trait::async_trait]
    impl SharedSlots for Down {
        async fn take(&self, _: &UserId, _: &str, _: Duration) -> Result<Taken, CoordError> {
            Err(CoordError(anyhow::anyhow!("connection refused")))
        }
        async fn renew(&self, _: &UserId, _: &str, _: Duration) -> Result<Held, CoordError> {
            Err(CoordError(anyhow::anyhow!("connection refused")))
        }
        async fn finishing(&self, _: &UserId, _: &str) -> Result<(), CoordError> {
            Err(CoordError(anyhow::anyhow!("connection refused")))
        }
        async fn free(&self, _: &UserId, _: &str) -> Result<(), CoordError> {
            Err(CoordError(anyhow::anyhow!("connection refused")))
        }
        async fn cancel(&self, _: &UserId) -> Result<bool, CoordError> {
            Err(CoordError(anyhow::anyhow!("connection refused")))
        }
        fn cancels(&self) -> broadcast::Receiver<String> {
            broadcast::channel(1).1
        }
    }

    #[tokio::test]
    async fn an_unreachable_board_leaves_the_decision_to_this_process() {
        let registry = InFlight::shared(Arc::new(Down), MAX_LEASE);
        let user = UserId::new(Platform::Telegram, "u");
        let slot = registry
            .begin(&user)
            .await
            .expect("answered although the board is down");
        assert!(
            registry.begin(&user).await.is_none(),
            "still one answer per user in this process"
        );
        assert!(registry.cancel(&user).await, "/cancel still works here");
        assert!(*slot.cancelled.borrow());
    }
}
