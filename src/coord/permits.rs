//! Model-call permits for the whole bot in Redis: one sorted set, `<prefix>:answers`,
//! whose members are the holders' tokens scored by when their lease ends (Redis's own
//! clock). Taking a permit first drops the expired ones, so a replica that died gives its
//! permits back by itself; giving one back is announced on `<prefix>:freed` for waiters
//! on every replica. One key per script: Redis Cluster needs no hash tag.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::redis::RedisBoard;
use crate::core::coordination::{CoordError, SharedPermits};

/// ARGV: token, limit, lease ms. 1 taken (or already held), 0 all held.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lease = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
  return 1
end
return 0";

/// ARGV: token, lease ms. 1 renewed, 0 no longer held.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if not until_ or until_ <= now then return 0 end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1";

/// ARGV: token, channel.
const FREE: &str = r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then redis.call('PUBLISH', ARGV[2], '1') end
return 1";

struct Scripts {
    take: redis::Script,
    renew: redis::Script,
    free: redis::Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    take: redis::Script::new(TAKE),
    renew: redis::Script::new(RENEW),
    free: redis::Script::new(FREE),
});

impl RedisBoard {
    fn permits_key(&self) -> String {
        format!("{}:answers", self.prefix())
    }
}

fn ms(lease: Duration) -> String {
    lease.as_millis().max(1).to_string()
}

#[async_trait]
impl SharedPermits for RedisBoard {
    async fn take_permit(
        &self,
        token: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<bool, CoordError> {
        let args = [token.to_string(), limit.to_string(), ms(lease)];
        Ok(self
            .run_script(&SCRIPTS.take, &[self.permits_key()], &args)
            .await?
            == 1)
    }

    async fn renew_permit(&self, token: &str, lease: Duration) -> Result<bool, CoordError> {
        let args = [token.to_string(), ms(lease)];
        Ok(self
            .run_script(&SCRIPTS.renew, &[self.permits_key()], &args)
            .await?
            == 1)
    }

    async fn free_permit(&self, token: &str) -> Result<(), CoordError> {
        let args = [token.to_string(), self.freed_channel().to_string()];
        self.run_script(&SCRIPTS.free, &[self.permits_key()], &args)
            .await
            .map(drop)
    }

    fn permit_freed(&self) -> Arc<Notify> {
        self.freed()
    }
}
