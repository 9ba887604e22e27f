//! The session port: per (platform, chat, user) conversation state — history turns and
//! an optional system prompt — stored as schema-versioned JSON with a sliding expiry.
//! The Redis and in-process stores in `session`
//! implement [`SessionStore`] with the same semantics.

use std::time::Duration;

use async_trait::async_trait;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::event::SessionKey;

/// Bumped whenever the stored JSON changes shape; older or newer values are discarded.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One message of the history, with its token count so trimming needs no re-tokenizing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
    /// Its tokens, the tool summary's included.
    pub tokens: u32,
    /// An answer that used tools: a bounded summary of the calls and their results, put
    /// before the answer when the history is sent again (never shown as the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub v: u32,
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// The model picked with /model (a name from `model.available`); `None`: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The persona picked with /persona; `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
    /// The last question that got no answer to keep (the model failed, or it was stopped
    /// or refused for quota before any text): what /retry asks. Cleared by the next
    /// exchange recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unanswered: Option<String>,
    #[serde(default, deserialize_with = "vec_or_empty_object")]
    pub turns: Vec<Turn>,
}

/// A per-conversation choice kept in the session beside the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    SystemPrompt,
    Model,
    Persona,
    Unanswered,
}

impl Setting {
    /// The session JSON's field.
    pub fn field(self) -> &'static str {
        match self {
            Setting::SystemPrompt => "system_prompt",
            Setting::Model => "model",
            Setting::Persona => "persona",
            Setting::Unanswered => "unanswered",
        }
    }

    /// Sets this field of `session`.
    pub fn apply(self, session: &mut Session, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self {
            Setting::SystemPrompt => session.system_prompt = value,
            Setting::Model => session.model = value,
            Setting::Persona => session.persona = value,
            Setting::Unanswered => session.unanswered = value,
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session {
            v: SCHEMA_VERSION,
            system_prompt: None,
            model: None,
            persona: None,
            unanswered: None,
            turns: Vec::new(),
        }
    }
}

/// Why a stored session value cannot be used (it is then replaced by an empty one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Undecodable(pub String);

impl Session {
    /// Decodes a stored value; `Err` describes why it cannot be used (corrupt JSON,
    /// unknown schema version).
    pub fn decode(raw: &str) -> Result<Session, Undecodable> {
        #[derive(Deserialize)]
        struct Version {
            v: Option<u32>,
        }
        // One parse on the common path; the version alone is read only to say why a value
        // cannot be used (a newer schema need not parse as this one).
        let error = match serde_json::from_str::<Session>(raw) {
            Ok(session) if session.v == SCHEMA_VERSION => return Ok(session),
            Ok(_) => None,
            Err(e) => Some(e),
        };
        let version: Version = serde_json::from_str(raw)
            .map_err(|e| Undecodable(format!("not a session object: {e}")))?;
        Err(Undecodable(match version.v {
            Some(SCHEMA_VERSION) => format!(
                "malformed session: {}",
                error.map(|e| e.to_string()).unwrap_or_default()
            ),
            Some(other) => format!("unknown schema version {other}"),
            None => "no schema version".into(),
        }))
    }

    /// Drops the trailing turns when they are `last` (same roles and texts); true if it
    /// did. What [`SessionStore::replace_last`] does before appending.
    pub fn drop_last(&mut self, last: &[Turn]) -> bool {
        let Some(start) = self.turns.len().checked_sub(last.len()) else {
            return false;
        };
        let same = self.turns[start..]
            .iter()
            .zip(last)
            .all(|(kept, given)| kept.role == given.role && kept.content == given.content);
        if same {
            self.turns.truncate(start);
        }
        same
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a session always serializes")
    }
}

/// Redis' Lua JSON encoder writes an empty array as `{}`; accept both. A visitor, not an
/// untagged enum: serde buffers an untagged value whole before trying each variant, which
/// parsed every session's history twice on every message.
fn vec_or_empty_object<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Turn>, D::Error> {
    struct Turns;
    impl<'de> Visitor<'de> for Turns {
        type Value = Vec<Turn>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of turns")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Turn>, A::Error> {
            let mut turns = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(turn) = seq.next_element()? {
                turns.push(turn);
            }
            Ok(turns)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Turn>, A::Error> {
            match map.next_key::<IgnoredAny>()? {
                None => Ok(Vec::new()),
                Some(_) => Err(de::Error::custom("turns is an object, not a list")),
            }
        }
    }
    d.deserialize_any(Turns)
}

/// Why the session store failed; the store's own error is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("session store failed")]
    Failed(#[source] anyhow::Error),
}

/// Storage of sessions. Implementations must make `append` atomic (two concurrent
/// appends both land) and refresh the expiry on every call that touches a session.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The session, or an empty one when there is none (or it was unreadable).
    async fn load(&self, key: &SessionKey) -> Result<Session, SessionError>;
    /// Appends turns, dropping the oldest beyond the history limit.
    async fn append(&self, key: &SessionKey, turns: &[Turn]) -> Result<(), SessionError>;
    /// Puts `turns` in place of the history's last exchange (a /retry's new answer): the
    /// trailing turns are dropped when they are still `last` (same roles and texts) —
    /// otherwise the history moved on meanwhile (a /reset, another member of a shared
    /// thread) and `turns` are simply appended. Atomic, like [`SessionStore::append`].
    async fn replace_last(
        &self,
        key: &SessionKey,
        last: &[Turn],
        turns: &[Turn],
    ) -> Result<(), SessionError>;
    /// Sets (or with `None` clears) one of the conversation's choices.
    async fn set(
        &self,
        key: &SessionKey,
        setting: Setting,
        value: Option<&str>,
    ) -> Result<(), SessionError>;
    /// Sets (or with `None` clears) the session's own system prompt.
    async fn set_system_prompt(
        &self,
        key: &SessionKey,
        prompt: Option<&str>,
    ) -> Result<(), SessionError> {
        self.set(key, Setting::SystemPrompt, prompt).await
    }
    /// Forgets the history; the session's system prompt stays.
    async fn clear_history(&self, key: &SessionKey) -> Result<(), SessionError>;
    /// Stores a one-time code (e.g. for /link) for `ttl`; false if the code is taken.
    async fn put_code(&self, code: &str, value: &str, ttl: Duration) -> Result<bool, SessionError>;
    /// Takes a one-time code: returns its value once, then it is gone.
    async fn take_code(&self, code: &str) -> Result<Option<String>, SessionError>;
    /// Reads a code's value without using it up (checks before a redemption).
    async fn peek_code(&self, code: &str) -> Result<Option<String>, SessionError>;
    /// Reads a code's value and pushes its expiry to `ttl` from now: a web login session
    /// lives as a code whose expiry slides with every use.
    async fn touch_code(&self, code: &str, ttl: Duration) -> Result<Option<String>, SessionError>;
    /// "redis" or "memory", for logs.
    fn backend(&self) -> &'static str;
    /// Whether the store answers now (readiness).
    async fn ping(&self) -> Result<(), SessionError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_accepts_lua_empty_object_and_rejects_garbage() {
        let s = Session::decode(r#"{"v":1,"turns":{},"system_prompt":"x"}"#).unwrap();
        assert!(s.turns.is_empty());
        assert_eq!(s.system_prompt.as_deref(), Some("x"));
        assert!(Session::decode("{not json").is_err());
        assert!(
            Session::decode(r#"{"v":99,"turns":[]}"#)
                .unwrap_err()
                .0
                .contains("version")
        );
        assert!(Session::decode(r#"[1,2]"#).is_err());
        assert!(Session::decode(r#"{"v":1,"turns":[{"role":"robot"}]}"#).is_err());
        assert!(Session::decode(r#"{"v":1,"turns":{"a":1}}"#).is_err());
        assert!(Session::decode(r#"{"v":1,"turns":"x"}"#).is_err());
        let round = Session {
            v: 1,
            system_prompt: None,
            model: Some("big".into()),
            persona: None,
            unanswered: Some("what is 2 + 2?".into()),
            turns: vec![Turn {
                role: Role::User,
                content: "héllo \"/\" ✓".into(),
                tokens: 3,
                tools: None,
            }],
        };
        assert_eq!(Session::decode(&round.encode()).unwrap(), round);
    }
}
