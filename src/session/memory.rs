//! In-process session store: the embedded default when no Redis is configured. Same
//! semantics as Redis (sliding expiry, atomic append, bounded history), lost on restart.
//! Sessions are kept decoded: there is no wire to cross, so a message costs a clone of
//! the history instead of a JSON decode on load and a decode and encode on append.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Session, SessionError, SessionStore, Setting, StoreOptions, Turn, append_bounded};
use crate::core::event::SessionKey;

struct Entry<T> {
    value: T,
    expires: Instant,
}

pub struct MemoryStore {
    options: StoreOptions,
    entries: Mutex<HashMap<SessionKey, Entry<Session>>>,
    codes: Mutex<HashMap<String, Entry<String>>>,
    writes: AtomicU64,
}

impl MemoryStore {
    pub fn new(options: StoreOptions) -> MemoryStore {
        MemoryStore {
            options,
            entries: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            writes: AtomicU64::new(0),
        }
    }

    /// Time left before the session expires; `None` when there is none. Not part of the
    /// port: for inspection (tests, debugging) of this store only.
    pub fn time_to_live(&self, key: &SessionKey) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| e.expires - now)
    }

    /// Stores a value given as JSON, as a foreign writer would (tests of corrupt data):
    /// one that does not decode is replaced by an empty session, as Redis' is on load.
    pub fn put_raw(&self, key: &SessionKey, raw: &str) {
        self.lock().insert(
            key.clone(),
            Entry {
                value: decode_or_replace(key, raw),
                expires: Instant::now() + self.options.ttl,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Entry<Session>>> {
        // The changes made under this lock (append, set, clear, expiry) cannot panic
        // halfway, so a poisoned lock is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read-modify-write under the lock: this is what makes appends atomic.
    fn update(&self, key: &SessionKey, change: impl FnOnce(&mut Session)) {
        let now = Instant::now();
        let mut entries = self.lock();
        if self
            .writes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
        {
            entries.retain(|_, e| e.expires > now);
        }
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            value: Session::default(),
            expires: now,
        });
        if entry.expires <= now {
            entry.value = Session::default();
        }
        change(&mut entry.value);
        entry.expires = now + self.options.ttl;
    }
}

fn decode_or_replace(key: &SessionKey, raw: &str) -> Session {
    Session::decode(raw).unwrap_or_else(|why| {
        tracing::warn!(session = %key, %why, "unreadable session replaced by an empty one");
        Session::default()
    })
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &SessionKey) -> Result<Session, SessionError> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get_mut(key) {
            Some(e) if e.expires > now => {
                e.expires = now + self.options.ttl;
                Ok(e.value.clone())
            }
            Some(_) => {
                entries.remove(key);
                Ok(Session::default())
            }
            None => Ok(Session::default()),
        }
    }

    async fn append(&self, key: &SessionKey, turns: &[Turn]) -> Result<(), SessionError> {
        let max = self.options.max_history;
        self.update(key, |s| append_bounded(s, turns, max));
        Ok(())
    }

    async fn replace_last(
        &self,
        key: &SessionKey,
        last: &[Turn],
        turns: &[Turn],
    ) -> Result<(), SessionError> {
        let max = self.options.max_history;
        self.update(key, |s| {
            s.drop_last(last);
            append_bounded(s, turns, max)
        });
        Ok(())
    }

    async fn set(
        &self,
        key: &SessionKey,
        setting: Setting,
        value: Option<&str>,
    ) -> Result<(), SessionError> {
        self.update(key, |s| setting.apply(s, value));
        Ok(())
    }

    async fn clear_history(&self, key: &SessionKey) -> Result<(), SessionError> {
        self.update(key, |s| s.turns.clear());
        Ok(())
    }

    async fn put_code(&self, code: &str, value: &str, ttl: Duration) -> Result<bool, SessionError> {
        let now = Instant::now();
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, e| e.expires > now);
        if codes.contains_key(code) {
            return Ok(false);
        }
        codes.insert(
            code.to_string(),
            Entry {
                value: value.to_string(),
                expires: now + ttl,
            },
        );
        Ok(true)
    }

    async fn take_code(&self, code: &str) -> Result<Option<String>, SessionError> {
        let now = Instant::now();
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        Ok(codes
            .remove(code)
            .filter(|e| e.expires > now)
            .map(|e| e.value))
    }

    async fn peek_code(&self, code: &str) -> Result<Option<String>, SessionError> {
        let now = Instant::now();
        let codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        Ok(codes
            .get(code)
            .filter(|e| e.expires > now)
            .map(|e| e.value.clone()))
    }

    async fn touch_code(&self, code: &str, ttl: Duration) -> Result<Option<String>, SessionError> {
        let now = Instant::now();
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        Ok(codes.get_mut(code).filter(|e| e.expires > now).map(|e| {
            e.expires = now + ttl;
            e.value.clone()
        }))
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Platform;
    use crate::session::Role;

    fn key() -> SessionKey {
        SessionKey {
            platform: Platform::Console,
            chat: "c".into(),
            user: "u".into(),
        }
    }

    /// Paused time: the expiry slides with use and the session vanishes after idling.
    #[tokio::test(start_paused = true)]
    async fn sliding_expiry_with_paused_time() {
        let store = MemoryStore::new(StoreOptions {
            ttl: Duration::from_secs(60),
            max_history: 10,
        });
        let turn = Turn {
            role: Role::User,
            content: "hi".into(),
            tokens: 1,
            tools: None,
        };
        store
            .append(&key(), std::slice::from_ref(&turn))
            .await
            .unwrap();
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(45)).await;
            assert_eq!(
                store.load(&key()).await.unwrap().turns.len(),
                1,
                "use keeps it alive"
            );
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(store.load(&key()).await.unwrap().turns.is_empty());
        assert!(store.time_to_live(&key()).is_none());
    }
}
