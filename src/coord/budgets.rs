//! The platforms' write budgets in Redis, for every replica at once: the pacer's token
//! buckets (per chat, per group, the whole bot's sends) and freezes in one hash per chat
//! and one per bot, taken by one script (one round trip, atomic) with the pacer's
//! priorities; Discord's route pauses as keys expiring when the pause ends. Every key of a
//! platform carries the hash tag `{<prefix>:pace:<platform>}`: a script's keys share a
//! Redis Cluster slot.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;

use super::redis::RedisBoard;
use crate::core::coordination::CoordError;
use crate::core::pacing::{Ask, Drawn, Limits, Priority, SharedBudgets, Write};

/// KEYS: the chat's hash (`t` tokens, `gt` group tokens, `at` last update, `fz` frozen
/// until, `fw` finals waiting, `fwu` until when that count holds), the bot's (`t`, `at`,
/// `fz`). ARGV: the chat's rate (per ms) and burst, the group's (rate 0: not a group) and
/// reserve, the bot's sends', then send (1/0), priority (0 draft, 1 first, 2 final),
/// counted (1/0). Times are Redis's own (every replica sees the same clock). Returns 0 when
/// taken, a positive wait in ms when refused, or a negative one when a first message or a
/// final text was ready but for the bot's overall sends: it books the next of those
/// (the bucket goes into debt), so waiters on every replica go in the order they came
/// instead of racing each other at every refill.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cr, cb = tonumber(ARGV[1]), tonumber(ARGV[2])
local gr, gb, reserve = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local wr, wb = tonumber(ARGV[6]), tonumber(ARGV[7])
local send, prio, counted = ARGV[8] == '1', tonumber(ARGV[9]), ARGV[10] == '1'
local c = redis.call('HMGET', KEYS[1], 't', 'gt', 'at', 'fz', 'fw', 'fwu')
local g = redis.call('HMGET', KEYS[2], 't', 'at', 'fz')
local function level(v, at, rate, burst)
  v = tonumber(v)
  if v == nil then return burst end
  return math.min(burst, v + (now - at) * rate)
end
local cat = tonumber(c[3]) or now
local chat = level(c[1], cat, cr, cb)
local group = nil
if gr > 0 then group = level(c[2], cat, gr, gb) end
local waiting = tonumber(c[5]) or 0
if (tonumber(c[6]) or 0) <= now then waiting = 0 end
local global = level(g[1], tonumber(g[2]) or now, wr, wb)
local need_chat, need_group = 1, 1
if prio == 0 then
  need_chat, need_group = cb, 1 + reserve
elseif prio == 1 and waiting > 0 then
  need_chat = 2
end
local wait = 0
local function short(missing, rate)
  if missing > 1e-9 then wait = math.max(wait, missing / rate) end
end
short(need_chat - chat, cr)
if group then short(need_group - group, gr) end
wait = math.max(wait, (tonumber(c[4]) or 0) - now, (tonumber(g[3]) or 0) - now)
local booked = 0
if send and 1 - global > 1e-9 then
  if wait <= 0 and prio > 0 then
    booked = (1 - global) / wr
  else
    short(1 - global, wr)
  end
end
if wait > 0 then
  if prio == 2 then
    if not counted then waiting = waiting + 1 end
    redis.call('HSET', KEYS[1], 'fw', waiting, 'fwu', now + wait + 5000)
    if redis.call('PTTL', KEYS[1]) < wait + 5000 then
      redis.call('PEXPIRE', KEYS[1], math.ceil(wait + 5000))
    end
  end
  return math.max(1, math.ceil(wait))
end
chat = chat - 1
local life = (cb - chat) / cr
if counted and waiting > 0 then waiting = waiting - 1 end
if group then
  group = group - 1
  life = math.max(life, (gb - group) / gr)
  redis.call('HSET', KEYS[1], 't', chat, 'gt', group, 'at', now, 'fw', waiting)
else
  redis.call('HSET', KEYS[1], 't', chat, 'at', now, 'fw', waiting)
end
if waiting > 0 then life = math.max(life, (tonumber(c[6]) or 0) - now) end
life = math.max(life, (tonumber(c[4]) or 0) - now)
redis.call('PEXPIRE', KEYS[1], math.ceil(life) + 1000)
if send then
  global = global - 1
  redis.call('HSET', KEYS[2], 't', global, 'at', now)
  local glife = math.max((wb - global) / wr, (tonumber(g[3]) or 0) - now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(glife) + 1000)
end
if booked > 0 then return -math.max(1, math.ceil(booked)) end
return 0";

/// KEYS: a chat's or the bot's hash; ARGV: the wait in ms. Frozen until now + wait (or
/// later, if it already was).
const FREEZE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local wait = tonumber(ARGV[1])
local fz = tonumber(redis.call('HGET', KEYS[1], 'fz')) or 0
if now + wait > fz then redis.call('HSET', KEYS[1], 'fz', now + wait) end
if redis.call('PTTL', KEYS[1]) < wait + 1000 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(wait) + 1000)
end
return 1";

/// KEYS: a route's pause (or the bot's); ARGV: the wait in ms. Never shortens a pause.
const PAUSE: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1";

/// KEYS: a route's pause and the bot's. The longer wait left, in ms (0: none).
const PAUSED: &str = r"
return math.max(0, redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]))";

struct Scripts {
    take: redis::Script,
    freeze: redis::Script,
    pause: redis::Script,
    paused: redis::Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    take: redis::Script::new(TAKE),
    freeze: redis::Script::new(FREEZE),
    pause: redis::Script::new(PAUSE),
    paused: redis::Script::new(PAUSED),
});

impl RedisBoard {
    /// `{<prefix>:pace:<platform>}:<what>`
    fn pace_key(&self, platform: &str, what: &str) -> String {
        format!("{{{}:pace:{platform}}}:{what}", self.prefix())
    }
}

fn per_ms(per_second: f64) -> String {
    (per_second / 1000.0).to_string()
}

fn ms(wait: Duration) -> String {
    wait.as_millis().max(1).to_string()
}

#[async_trait]
impl SharedBudgets for RedisBoard {
    async fn draw(
        &self,
        platform: &str,
        limits: &Limits,
        ask: Ask<'_>,
    ) -> Result<Drawn, CoordError> {
        let group = limits.per_group.filter(|_| ask.group);
        let args = [
            per_ms(limits.per_chat.per_second),
            limits.per_chat.burst.to_string(),
            group.map_or("0".into(), |g| per_ms(g.per_second)),
            group.map_or("0".into(), |g| g.burst.to_string()),
            limits.group_reserve.to_string(),
            per_ms(limits.global_sends.per_second),
            limits.global_sends.burst.to_string(),
            u8::from(ask.write == Write::Send).to_string(),
            match ask.priority {
                Priority::Draft => "0",
                Priority::First => "1",
                Priority::Final => "2",
            }
            .to_string(),
            u8::from(ask.counted).to_string(),
        ];
        let keys = [
            self.pace_key(platform, &format!("chat:{}", ask.chat)),
            self.pace_key(platform, "all"),
        ];
        let wait = self.run_script(&SCRIPTS.take, &keys, &args).await?;
        Ok(match wait {
            0 => Drawn::Now,
            w if w > 0 => Drawn::Refused(Duration::from_millis(w as u64)),
            w => Drawn::Booked(Duration::from_millis(w.unsigned_abs())),
        })
    }

    async fn freeze(
        &self,
        platform: &str,
        chat: Option<&str>,
        wait: Duration,
    ) -> Result<(), CoordError> {
        let key = match chat {
            Some(chat) => self.pace_key(platform, &format!("chat:{chat}")),
            None => self.pace_key(platform, "all"),
        };
        self.run_script(&SCRIPTS.freeze, &[key], &[ms(wait)])
            .await
            .map(drop)
    }

    async fn pause(
        &self,
        platform: &str,
        route: Option<&str>,
        wait: Duration,
    ) -> Result<(), CoordError> {
        let key = match route {
            Some(route) => self.pace_key(platform, &format!("route:{route}")),
            None => self.pace_key(platform, "paused"),
        };
        self.run_script(&SCRIPTS.pause, &[key], &[ms(wait)])
            .await
            .map(drop)
    }

    async fn paused(&self, platform: &str, route: &str) -> Result<Option<Duration>, CoordError> {
        let keys = [
            self.pace_key(platform, &format!("route:{route}")),
            self.pace_key(platform, "paused"),
        ];
        let left = self.run_script(&SCRIPTS.paused, &keys, &[]).await?;
        Ok((left > 0).then(|| Duration::from_millis(left as u64)))
    }
}
