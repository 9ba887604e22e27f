//! Shutdown as the conversation sees it: every event being handled is tracked; once
//! shutdown begins no new answer starts, what a platform was still gathering is handed
//! over, and after the grace the answers still running are stopped and settled.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// After the answers stopped for a restart, how long their final writes and settlements
/// may take before the process exits anyway (the hold leases cover what is left).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Default)]
pub(super) struct Lifecycle {
    /// Every event being handled, whichever platform task runs it: shutdown waits here.
    tasks: TaskTracker,
    /// Cancelled when the shutdown grace ran out (shared with the answers).
    pub(super) restarting: CancellationToken,
    /// Cancelled when shutdown begins (no new answer starts): what a platform was still
    /// gathering into one event (an album) is handed over at once.
    closed: CancellationToken,
}

impl Lifecycle {
    /// Counts an event as being handled until the token drops.
    pub(super) fn track(&self) -> TaskTrackerToken {
        self.tasks.token()
    }

    /// Shutdown has begun: no new answer starts.
    pub(super) fn closing(&self) -> bool {
        self.tasks.is_closed()
    }

    pub(super) async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// See [`Conversation::drain`](super::Conversation::drain).
    pub(super) async fn drain(&self, grace: Duration) -> usize {
        self.tasks.close();
        self.closed.cancel();
        let running = self.tasks.len();
        if running > 0 {
            tracing::info!(running, grace = ?grace, "waiting for answers in progress");
        }
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return 0;
        }
        let stopped = self.tasks.len();
        tracing::warn!(
            stopped,
            "shutdown grace ran out: stopping the answers still running"
        );
        self.restarting.cancel();
        if tokio::time::timeout(STOP_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::error!(
                left = self.tasks.len(),
                "answers did not stop in time; their holds return when their lease runs out"
            );
        }
        stopped
    }
}
