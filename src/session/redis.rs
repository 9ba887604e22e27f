//! Redis session store: one key per session (`{prefix}:session:{platform}:{chat}:{user}`)
//! holding the session JSON. Reads use GETEX and writes SET … PX inside one Lua script,
//! so the expiry slides without a separate EXPIRE race and appends are atomic.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;

use super::{SCHEMA_VERSION, Session, SessionError, SessionStore, Setting, StoreOptions, Turn};
use crate::core::event::SessionKey;

/// Read-modify-write of one session, atomic inside Redis. A value that is not JSON or
/// has another schema version is replaced by a fresh session (the script returns 1 so
/// the caller can log it).
const UPDATE_SCRIPT: &str = r#"
local raw = redis.call('GET', KEYS[1])
local version = tonumber(ARGV[5])
local session = nil
local replaced = 0
-- Mirrors what the Rust side can decode, so a value accepted here always reads back.
local function valid(s)
  if type(s) ~= 'table' or s.v ~= version or type(s.turns) ~= 'table' then return false end
  if #s.turns == 0 and next(s.turns) ~= nil then return false end
  for _, field in ipairs({'system_prompt', 'model', 'persona', 'unanswered'}) do
    local value = s[field]
    if value ~= nil and value ~= cjson.null and type(value) ~= 'string' then return false end
  end
  for _, t in ipairs(s.turns) do
    if type(t) ~= 'table' or (t.role ~= 'user' and t.role ~= 'assistant')
      or type(t.content) ~= 'string' or type(t.tokens) ~= 'number'
      or t.tokens < 0 or t.tokens ~= math.floor(t.tokens) then
      return false
    end
  end
  return true
end
if raw then
  local ok, decoded = pcall(cjson.decode, raw)
  if ok and valid(decoded) then
    session = decoded
  else
    replaced = 1
  end
end
if not session then
  session = { v = version, turns = {} }
end
local function append(turns)
  -- An exchange recorded answers what was left unanswered.
  session.unanswered = nil
  for _, turn in ipairs(turns) do
    table.insert(session.turns, turn)
  end
  local max = tonumber(ARGV[4])
  local excess = #session.turns - max
  if excess > 0 then
    local kept = {}
    for i = excess + 1, #session.turns do
      kept[#kept + 1] = session.turns[i]
    end
    session.turns = kept
  end
end
local op = ARGV[2]
if op == 'append' then
  append(cjson.decode(ARGV[3]))
elseif op == 'replace_last' then
  -- The trailing turns go when they are still the given ones (roles and texts).
  local given = cjson.decode(ARGV[3])
  local start = #session.turns - #given.last
  local same = start >= 0
  for i, turn in ipairs(given.last) do
    if not same then break end
    local kept = session.turns[start + i]
    same = kept.role == turn.role and kept.content == turn.content
  end
  if same then
    for _ = 1, #given.last do
      table.remove(session.turns)
    end
  end
  append(given.turns)
elseif op == 'system_prompt' or op == 'model' or op == 'persona' or op == 'unanswered' then
  local value = cjson.decode(ARGV[3])
  if value == cjson.null then value = nil end
  session[op] = value
elseif op == 'clear' then
  session.turns = {}
end
redis.call('SET', KEYS[1], cjson.encode(session), 'PX', ARGV[1])
return replaced
"#;

pub struct RedisStore {
    conn: super::connection::Conn,
    prefix: String,
    options: StoreOptions,
    script: redis::Script,
}

pub use super::connection::connect;

impl RedisStore {
    /// Connects (failing fast when Redis is unreachable) and keeps reconnecting in the
    /// background afterwards.
    pub async fn connect(
        url: &str,
        prefix: &str,
        options: StoreOptions,
    ) -> Result<RedisStore, SessionError> {
        let (_, conn) = connect(url, 2).await.map_err(SessionError::Unavailable)?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_string(),
            options,
            script: redis::Script::new(UPDATE_SCRIPT),
        })
    }

    pub fn key(&self, key: &SessionKey) -> String {
        format!(
            "{}:session:{}:{}:{}",
            self.prefix, key.platform, key.chat, key.user
        )
    }

    fn ttl_ms(&self) -> u64 {
        (self.options.ttl.as_millis() as u64).max(1)
    }

    async fn update(&self, key: &SessionKey, op: &str, payload: &str) -> Result<(), SessionError> {
        let redis_key = self.key(key);
        let mut attempt = 0;
        loop {
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<i64> = self
                .script
                .key(&redis_key)
                .arg(self.ttl_ms())
                .arg(op)
                .arg(payload)
                .arg(self.options.max_history)
                .arg(SCHEMA_VERSION)
                .invoke_async(&mut conn)
                .await;
            match result {
                Ok(replaced) => {
                    if replaced == 1 {
                        tracing::warn!(session = %key, "unreadable session replaced by an empty one");
                    }
                    return Ok(());
                }
                // Retry only when the command surely never ran: the connection was
                // refused. Re-running an append that did run would duplicate turns.
                Err(e) if attempt == 0 && e.is_connection_refusal() => attempt += 1,
                Err(e) => return Err(unavailable(e)),
            }
        }
    }
}

fn unavailable(e: redis::RedisError) -> SessionError {
    SessionError::Unavailable(e.into())
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn ping(&self) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn load(&self, key: &SessionKey) -> Result<Session, SessionError> {
        let redis_key = self.key(key);
        let mut attempt = 0;
        let raw: Option<String> = loop {
            let mut conn = self.conn.clone();
            let result = redis::cmd("GETEX")
                .arg(&redis_key)
                .arg("PX")
                .arg(self.ttl_ms())
                .query_async(&mut conn)
                .await;
            match result {
                Ok(raw) => break raw,
                // Reads are idempotent: one retry rides over a reconnect.
                Err(e) if attempt == 0 && (e.is_io_error() || e.is_connection_dropped()) => {
                    attempt += 1
                }
                Err(e) => return Err(unavailable(e)),
            }
        };
        Ok(match raw {
            None => Session::default(),
            Some(raw) => Session::decode(&raw).unwrap_or_else(|why| {
                tracing::warn!(session = %key, %why, "unreadable session replaced by an empty one");
                Session::default()
            }),
        })
    }

    async fn append(&self, key: &SessionKey, turns: &[Turn]) -> Result<(), SessionError> {
        let payload = serde_json::to_string(turns)
            .context("encoding turns")
            .map_err(SessionError::Failed)?;
        self.update(key, "append", &payload).await
    }

    async fn replace_last(
        &self,
        key: &SessionKey,
        last: &[Turn],
        turns: &[Turn],
    ) -> Result<(), SessionError> {
        let payload = serde_json::to_string(&serde_json::json!({"last": last, "turns": turns}))
            .context("encoding turns")
            .map_err(SessionError::Failed)?;
        self.update(key, "replace_last", &payload).await
    }

    async fn set(
        &self,
        key: &SessionKey,
        setting: Setting,
        value: Option<&str>,
    ) -> Result<(), SessionError> {
        let payload = serde_json::to_string(&value)
            .context("encoding a session setting")
            .map_err(SessionError::Failed)?;
        self.update(key, setting.field(), &payload).await
    }

    async fn clear_history(&self, key: &SessionKey) -> Result<(), SessionError> {
        self.update(key, "clear", "null").await
    }

    async fn put_code(&self, code: &str, value: &str, ttl: Duration) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:code:{code}", self.prefix))
            .arg(value)
            .arg("PX")
            .arg((ttl.as_millis() as u64).max(1))
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn take_code(&self, code: &str) -> Result<Option<String>, SessionError> {
        let mut conn = self.conn.clone();
        redis::cmd("GETDEL")
            .arg(format!("{}:code:{code}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn peek_code(&self, code: &str) -> Result<Option<String>, SessionError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(format!("{}:code:{code}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn touch_code(&self, code: &str, ttl: Duration) -> Result<Option<String>, SessionError> {
        let mut conn = self.conn.clone();
        redis::cmd("GETEX")
            .arg(format!("{}:code:{code}", self.prefix))
            .arg("PX")
            .arg((ttl.as_millis() as u64).max(1))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
