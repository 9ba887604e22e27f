//! The readiness port: each dependency the bot needs to answer (the quota database, the
//! session store, every platform connection) is a [`Probe`]; `/readyz` asks them all.

use async_trait::async_trait;

#[async_trait]
pub trait Probe: Send + Sync {
    /// What is checked, as named in `/readyz` ("database", "sessions", "telegram", …).
    fn name(&self) -> &'static str;
    /// `Err` says what is wrong, in a few words (no secrets: it is served over HTTP).
    async fn check(&self) -> Result<(), Unready>;
}

/// What is wrong with a dependency, in a few words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unready(pub String);

impl From<String> for Unready {
    fn from(why: String) -> Unready {
        Unready(why)
    }
}

impl From<&str> for Unready {
    fn from(why: &str) -> Unready {
        Unready(why.to_string())
    }
}
