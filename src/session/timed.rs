//! A [`SessionStore`] that times every call of the store it wraps
//! (`gptbot_session_store_seconds{op}`), whichever store that is.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::core::event::SessionKey;
use crate::core::metrics::{SESSION_STORE, timed};
use crate::core::session::{Session, SessionError, SessionStore, Setting, Turn};

pub struct Timed(pub Arc<dyn SessionStore>);

#[async_trait]
impl SessionStore for Timed {
    async fn load(&self, key: &SessionKey) -> Result<Session, SessionError> {
        timed(SESSION_STORE, "load", self.0.load(key)).await
    }

    async fn append(&self, key: &SessionKey, turns: &[Turn]) -> Result<(), SessionError> {
        timed(SESSION_STORE, "append", self.0.append(key, turns)).await
    }

    async fn replace_last(
        &self,
        key: &SessionKey,
        last: &[Turn],
        turns: &[Turn],
    ) -> Result<(), SessionError> {
        timed(
            SESSION_STORE,
            "replace_last",
            self.0.replace_last(key, last, turns),
        )
        .await
    }

    async fn set(
        &self,
        key: &SessionKey,
        setting: Setting,
        value: Option<&str>,
    ) -> Result<(), SessionError> {
        let op = match setting {
            Setting::SystemPrompt => "set_system_prompt",
            Setting::Model => "set_model",
            Setting::Persona => "set_persona",
            Setting::Unanswered => "set_unanswered",
        };
        timed(SESSION_STORE, op, self.0.set(key, setting, value)).await
    }

    async fn clear_history(&self, key: &SessionKey) -> Result<(), SessionError> {
        timed(SESSION_STORE, "clear_history", self.0.clear_history(key)).await
    }

    async fn put_code(&self, code: &str, value: &str, ttl: Duration) -> Result<bool, SessionError> {
        timed(SESSION_STORE, "put_code", self.0.put_code(code, value, ttl)).await
    }

    async fn take_code(&self, code: &str) -> Result<Option<String>, SessionError> {
        timed(SESSION_STORE, "take_code", self.0.take_code(code)).await
    }

    async fn peek_code(&self, code: &str) -> Result<Option<String>, SessionError> {
        timed(SESSION_STORE, "peek_code", self.0.peek_code(code)).await
    }

    async fn touch_code(&self, code: &str, ttl: Duration) -> Result<Option<String>, SessionError> {
        timed(SESSION_STORE, "touch_code", self.0.touch_code(code, ttl)).await
    }

    fn backend(&self) -> &'static str {
        self.0.backend()
    }

    async fn ping(&self) -> Result<(), SessionError> {
        timed(SESSION_STORE, "ping", self.0.ping()).await
    }
}
