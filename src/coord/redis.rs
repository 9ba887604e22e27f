//! What replicas decide together, in Redis. Users' in-flight slots: one key per user holding `<token>:<state>` (state
//! `g` generating, `f` finishing, `c` cancelled) with a lease as its expiry, each
//! operation one script (one round trip, atomic, one key: Redis Cluster needs no hash
//! tags). /cancel marks the slot and publishes the user on one channel; every replica
//! listens, and the holder stops its answer — or, had it missed the message while
//! reconnecting, finds the mark when it next renews the lease. Rate limits: GCRA, one
//! key per limited thing holding its theoretical arrival time, expiring when idle.

use std::sync::Arc;
use std::time::Duration;

use crate::session::connection::Conn;
use anyhow::Context;
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::core::coordination::{CoordError, Held, SharedRates, SharedSlots, Taken};
use crate::core::error::chain;
use crate::core::event::UserId;

const TAKE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1] .. ':g', 'PX', ARGV[2])
  return 1
end
if string.sub(v, -1) == 'f' then return 2 end
return 0";

const RENEW: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, -3) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local s = string.sub(v, -1)
if s == 'c' then return 2 end
if s == 'f' then return 3 end
return 1";

const FINISHING: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, -3) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. ':f', 'KEEPTTL')
end
return 1";

const FREE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, -3) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1";

const CANCEL: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, -1) == 'f' then return 0 end
redis.call('SET', KEYS[1], string.sub(v, 1, -3) .. ':c', 'KEEPTTL')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1";

/// GCRA over Redis's own clock (every replica sees the same time): ARGV[1] the emission
/// interval, ARGV[2] the period a burst may fill, both in ms; ARGV[3] '1' only looks
/// (counts nothing). 0 allowed, else the wait.
const RATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + interval
if new - now > period then return new - now - period end
if ARGV[3] ~= '1' then redis.call('SET', KEYS[1], new, 'PX', new - now) end
return 0";

pub struct RedisBoard {
    conn: Conn,
    prefix: String,
    channel: String,
    scripts: Scripts,
    cancels: broadcast::Sender<String>,
    /// `<prefix>:freed`: a model-call permit was given back.
    freed_channel: String,
    freed: Arc<Notify>,
    /// Stops the listener when the board goes.
    _listener: DropGuard,
}

struct Scripts {
    take: redis::Script,
    renew: redis::Script,
    finishing: redis::Script,
    free: redis::Script,
    cancel: redis::Script,
    rate: redis::Script,
}

impl RedisBoard {
    /// Connects (failing fast when Redis is unreachable) and starts listening for
    /// cancellations; both reconnect in the background afterwards.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisBoard, CoordError> {
        let (client, conn) = crate::session::redis::connect(url, 1)
            .await
            .map_err(CoordError)?;
        let channel = format!("{prefix}:cancel");
        let freed_channel = format!("{prefix}:freed");
        let (cancels, _) = broadcast::channel(256);
        let freed = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(listen(
            client,
            [channel.clone(), freed_channel.clone()],
            cancels.clone(),
            freed.clone(),
            stop.clone(),
        ));
        Ok(RedisBoard {
            conn,
            prefix: prefix.to_string(),
            channel,
            scripts: Scripts {
                take: redis::Script::new(TAKE),
                renew: redis::Script::new(RENEW),
                finishing: redis::Script::new(FINISHING),
                free: redis::Script::new(FREE),
                cancel: redis::Script::new(CANCEL),
                rate: redis::Script::new(RATE),
            },
            cancels,
            freed_channel,
            freed,
            _listener: stop.drop_guard(),
        })
    }

    /// The slot's key: `<prefix>:inflight:<platform>:<user>`.
    pub fn key(&self, user: &UserId) -> String {
        format!("{}:inflight:{user}", self.prefix)
    }

    /// Where a freed permit is announced.
    pub(super) fn freed_channel(&self) -> &str {
        &self.freed_channel
    }

    pub(super) fn freed(&self) -> Arc<Notify> {
        self.freed.clone()
    }

    /// The prefix every key of this bot starts with (`redis.key_prefix`).
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn run(
        &self,
        script: &redis::Script,
        user: &UserId,
        args: &[&str],
    ) -> Result<i64, CoordError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.run_script(script, &[self.key(user)], &args).await
    }

    /// One script, one round trip.
    pub(super) async fn run_script(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<i64, CoordError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .context("coordination script")
            .map_err(CoordError)
    }
}

fn millis(lease: Duration) -> String {
    lease.as_millis().max(1).to_string()
}

#[async_trait]
impl SharedSlots for RedisBoard {
    async fn take(&self, user: &UserId, token: &str, lease: Duration) -> Result<Taken, CoordError> {
        Ok(
            match self
                .run(&self.scripts.take, user, &[token, &millis(lease)])
                .await?
            {
                1 => Taken::Yes,
                2 => Taken::Finishing,
                _ => Taken::Busy,
            },
        )
    }

    async fn renew(&self, user: &UserId, token: &str, lease: Duration) -> Result<Held, CoordError> {
        Ok(
            match self
                .run(&self.scripts.renew, user, &[token, &millis(lease)])
                .await?
            {
                1 => Held::Generating,
                2 => Held::Cancelled,
                3 => Held::Finishing,
                _ => Held::Lost,
            },
        )
    }

    async fn finishing(&self, user: &UserId, token: &str) -> Result<(), CoordError> {
        self.run(&self.scripts.finishing, user, &[token])
            .await
            .map(drop)
    }

    async fn free(&self, user: &UserId, token: &str) -> Result<(), CoordError> {
        self.run(&self.scripts.free, user, &[token]).await.map(drop)
    }

    async fn cancel(&self, user: &UserId) -> Result<bool, CoordError> {
        let who = user.to_string();
        Ok(self
            .run(&self.scripts.cancel, user, &[&self.channel, &who])
            .await?
            == 1)
    }

    fn cancels(&self) -> broadcast::Receiver<String> {
        self.cancels.subscribe()
    }
}

impl RedisBoard {
    async fn rate(
        &self,
        key: &str,
        count: u32,
        period: Duration,
        look: bool,
    ) -> Result<Option<Duration>, CoordError> {
        let period = period.as_millis().max(1) as u64;
        let interval = (period / u64::from(count.max(1))).max(1);
        let key = format!("{}:rate:{key}", self.prefix);
        let wait = self
            .run_script(
                &self.scripts.rate,
                &[key],
                &[
                    interval.to_string(),
                    period.to_string(),
                    u8::from(look).to_string(),
                ],
            )
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait as u64)))
    }
}

#[async_trait]
impl SharedRates for RedisBoard {
    async fn hit(
        &self,
        key: &str,
        count: u32,
        period: Duration,
    ) -> Result<Option<Duration>, CoordError> {
        self.rate(key, count, period, false).await
    }

    async fn peek(
        &self,
        key: &str,
        count: u32,
        period: Duration,
    ) -> Result<Option<Duration>, CoordError> {
        self.rate(key, count, period, true).await
    }
}

/// Hears the cancel and freed-permit channels until stopped, reconnecting (every
/// second) whenever the subscription drops.
async fn listen(
    client: redis::Client,
    [cancel, freed_channel]: [String; 2],
    out: broadcast::Sender<String>,
    freed: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let session = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&[&cancel, &freed_channel]).await?;
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                if message.get_channel_name() == freed_channel {
                    freed.notify_waiters();
                } else if let Ok(user) = message.get_payload::<String>() {
                    let _ = out.send(user);
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            ended = session => if let Err(e) = ended {
                tracing::debug!(error = %chain(&e), "cancel channel lost; listening again in 1 s");
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
