//! Model-call permits (`limits.max_concurrent_answers`): this process's semaphore, whose
//! waiters are served in arrival order, and — when replicas share a board — the bot's
//! count on top of it ([`SharedPermits`]), so N replicas together make no more model calls
//! at once than the operator set. A shared permit is leased and renewed while the answer
//! runs, given back when it ends (waiters everywhere hear of it) and, should the replica
//! die, comes back by itself when its lease runs out. Board unreachable: this process's
//! count alone, with `gptbot_coordination_degraded` at 1.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::core::coordination::{Breaker, SharedPermits};

/// How long a waiter sleeps between tries when no freed permit is announced (a missed
/// announcement, or a dead replica's lease running out).
const RETRY: Duration = Duration::from_millis(250);

pub(super) struct Permits {
    local: Arc<Semaphore>,
    limit: u32,
    shared: Option<Shared>,
}

struct Shared {
    board: Arc<dyn SharedPermits>,
    lease: Duration,
    breaker: Breaker,
}

/// One model call's permit: the process's, and the bot's while it is shared.
pub(super) struct Permit {
    _local: OwnedSemaphorePermit,
    /// Stops the lease's renewal and gives the shared permit back.
    _shared: Option<DropGuard>,
}

impl Permits {
    pub(super) fn new(limit: u32) -> Permits {
        let limit = limit.max(1);
        Permits {
            local: Arc::new(Semaphore::new(limit as usize)),
            limit,
            shared: None,
        }
    }

    pub(super) fn share(&mut self, board: Arc<dyn SharedPermits>, lease: Duration) {
        self.shared = Some(Shared {
            board,
            lease,
            breaker: Breaker::default(),
        });
    }

    /// Waits for a permit: the process's in arrival order, then the bot's. `None` only
    /// if the semaphore was closed.
    pub(super) async fn acquire(&self) -> Option<Permit> {
        let local = self.local.clone().acquire_owned().await.ok()?;
        let Some(shared) = &self.shared else {
            return Some(Permit {
                _local: local,
                _shared: None,
            });
        };
        let token = super::inflight::token();
        let freed = shared.board.permit_freed();
        while shared.breaker.closed() {
            // Listening before asking: a permit freed in between is not missed.
            let notified = freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = shared
                .board
                .take_permit(&token, self.limit, shared.lease)
                .await;
            match shared.breaker.answered(taken) {
                Some(true) => {
                    return Some(Permit {
                        _local: local,
                        _shared: Some(hold(shared.board.clone(), token, shared.lease)),
                    });
                }
                Some(false) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep(RETRY) => {}
                    }
                }
                // Unreachable: the loop ends with the breaker open.
                None => {}
            }
        }
        Some(Permit {
            _local: local,
            _shared: None,
        })
    }
}

/// Renews the shared permit every third of its lease until dropped, then gives it back.
fn hold(board: Arc<dyn SharedPermits>, token: String, lease: Duration) -> DropGuard {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let every = lease / 3;
        loop {
            tokio::select! {
                () = stopped.cancelled() => break,
                () = tokio::time::sleep(every) => {
                    if let Ok(false) = board.renew_permit(&token, lease).await {
                        tracing::warn!("a model-call permit's lease ran out while its answer was running");
                    }
                }
            }
        }
        crate::core::coordination::reachable(board.free_permit(&token).await);
    });
    stop.drop_guard()
}
