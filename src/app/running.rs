//! What [`App::start`](super::App::start) started: the platforms being served, as one
//! set of tasks under one cancellation token, so whatever stops first — a signal, a
//! platform that failed — stops them all, and [`Running::wait`] has one loop for any
//! number of platforms.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::AppError;
use crate::core::event::Platform;
use crate::core::health::Probe;

/// A platform being served.
#[derive(Clone)]
pub struct Serving {
    pub platform: Platform,
    /// The bot's account name on the platform.
    pub username: String,
    /// Telegram's webhook server, when it takes updates that way.
    pub webhook_addr: Option<SocketAddr>,
    /// Readiness: the platform is reachable.
    pub probe: Arc<dyn Probe>,
}

/// The platforms of a started [`App`](super::App).
pub struct Running {
    /// Each platform started, in start order.
    pub platforms: Vec<Serving>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served (`http.listen`).
    pub ops_addr: Option<SocketAddr>,
    /// Where the web front is served (`web.listen`).
    pub web_addr: Option<SocketAddr>,
    /// One task per platform (and the web front); each ends when it stops serving.
    tasks: JoinSet<Result<(), JoinError>>,
    /// Cancelled to stop everything this app started.
    pub(super) stop: CancellationToken,
    /// Ends when the answers in progress at shutdown have finished or were stopped
    /// (none before a platform runs).
    pub(super) drained: Option<JoinHandle<()>>,
}

impl Running {
    pub(super) fn new(stop: CancellationToken) -> Running {
        Running {
            platforms: Vec::new(),
            ops_addr: None,
            web_addr: None,
            tasks: JoinSet::new(),
            stop,
            drained: None,
        }
    }

    /// Counts `task` among what [`Running::wait`] waits for.
    pub(super) fn serve(&mut self, serving: Option<Serving>, task: JoinHandle<()>) {
        self.platforms.extend(serving);
        self.tasks.spawn(task);
    }

    /// The platform, if it was started.
    pub fn platform(&self, platform: Platform) -> Option<&Serving> {
        self.platforms.iter().find(|s| s.platform == platform)
    }

    /// Start-up abandoned for a shutdown: what started is stopping.
    pub(super) fn stopping(self, guard: tokio_util::sync::DropGuard) -> Running {
        tracing::info!("stopped during start-up");
        drop(guard);
        self
    }

    /// Waits until every platform has stopped (after the shutdown signal, or after one
    /// of them failed, which stops the others) and the answers in progress have finished
    /// or been stopped (`shutdown.grace`).
    pub async fn wait(mut self) -> Result<(), AppError> {
        let mut first = Ok(());
        while let Some(done) = self.tasks.join_next().await {
            // A platform that failed (its task panicked) stops the others.
            if let Err(e) = done.and_then(|ended| ended) {
                self.stop.cancel();
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        // Every platform has stopped: answers still in progress get their grace.
        self.stop.cancel();
        if let Some(drained) = self.drained {
            let _ = drained.await;
        }
        first.map_err(AppError::Task)
    }
}

/// `work`, unless `stop` is cancelled first (`None`: start-up was abandoned).
pub(super) async fn until<T>(
    stop: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        done = work => Some(done),
    }
}

/// Readiness until start-up has connected every platform.
#[derive(Default)]
pub(super) struct Started(pub(super) std::sync::atomic::AtomicBool);

#[async_trait::async_trait]
impl Probe for Started {
    fn name(&self) -> &'static str {
        "startup"
    }

    async fn check(&self) -> Result<(), crate::core::health::Unready> {
        if self.0.load(std::sync::atomic::Ordering::Acquire) {
            Ok(())
        } else {
            Err("connecting the platforms".into())
        }
    }
}
