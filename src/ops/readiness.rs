//! Readiness: every [`Probe`] asked at once, each within [`PROBE_TIMEOUT`], so a database
//! that stalls turns `/readyz` to 503 within seconds instead of hanging the check.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::core::health::{Probe, Unready};
use crate::core::session::SessionStore;
use crate::db::Db;

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The probes of this process; platforms add theirs when they connect.
#[derive(Default)]
pub struct Readiness {
    probes: RwLock<Vec<Arc<dyn Probe>>>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub ready: bool,
    /// Each check: "ok", or what is wrong.
    pub checks: std::collections::BTreeMap<&'static str, String>,
}

impl Readiness {
    pub fn add(&self, probe: Arc<dyn Probe>) {
        self.probes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(probe);
    }

    pub async fn check(&self) -> Report {
        let probes = self
            .probes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let results = futures::future::join_all(probes.iter().map(|probe| async move {
            let result = match tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await {
                Ok(result) => result,
                Err(_) => Err(Unready(format!("no answer within {PROBE_TIMEOUT:?}"))),
            };
            (probe.name(), result)
        }))
        .await;
        let mut report = Report {
            ready: true,
            checks: Default::default(),
        };
        for (name, result) in results {
            let up = result.is_ok();
            ::metrics::gauge!(super::metrics::READY, "check" => name).set(if up {
                1.0
            } else {
                0.0
            });
            report.ready &= up;
            report
                .checks
                .insert(name, result.err().map_or_else(|| "ok".into(), |e| e.0));
        }
        report
    }
}

/// The quota database answers `SELECT 1`.
pub struct DatabaseProbe(pub Db);

#[async_trait]
impl Probe for DatabaseProbe {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), Unready> {
        self.0.ping().await.map_err(|e| match e {
            sqlx::Error::PoolTimedOut => "no connection available".into(),
            e => format!("unreachable ({})", short(&e.to_string())).into(),
        })
    }
}

/// The session store answers (Redis `PING`; the in-process store always does).
pub struct SessionsProbe(pub Arc<dyn SessionStore>);

#[async_trait]
impl Probe for SessionsProbe {
    fn name(&self) -> &'static str {
        "sessions"
    }

    async fn check(&self) -> Result<(), Unready> {
        self.0.ping().await.map_err(|e| {
            Unready(format!(
                "unreachable ({})",
                short(&crate::core::error::chain(&e).to_string())
            ))
        })
    }
}

/// An error's first line, cut short: enough to see what is down, never a whole dump.
fn short(text: &str) -> String {
    crate::core::text::ellipsis(text.lines().next().unwrap_or_default(), 120)
}
