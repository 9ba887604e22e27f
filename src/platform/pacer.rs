//! The delivery scheduler between the conversation and a platform's API: per-chat and
//! overall write budgets (token buckets), priorities, and flood freezes.
//!
//! Why not teloxide's `Throttle`: its worker wakes every 250 ms (up to 250 ms added to
//! every send), its default limits cap private chats at Telegram's *group* rate of 20
//! messages a minute (a quick user stalls ~40 s), it queues all sends in one FIFO with no
//! priority, and one 429 freezes the whole bot. Here a write goes out the moment its
//! budget allows (a computed deadline, never a tick), a 429 freezes only the chat it
//! names for exactly `retry_after`, and budget is kept for what matters most:
//!
//! - **Final** (an answer's final text): needs one token, waits for it.
//! - **First** (an answer's first message): waits, but leaves a token for a final text
//!   already waiting in the same chat.
//! - **Draft** (an intermediate edit): never waits; it is skipped unless the chat's
//!   bucket is full and the group reserve untouched, so drafts only use what finals and
//!   first messages will not need. The caller is told when to try again.
//!
//! With replicas sharing Redis the same buckets and priorities live there
//! ([`SharedBudgets`]): every replica draws from them, one round trip a write, so N
//! replicas send no faster than one bot may. If Redis is unreachable each process falls
//! back to its own buckets (and `gptbot_coordination_degraded` says so).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::core::coordination::Breaker;
pub use crate::core::pacing::{Ask, Drawn, Limits, Priority, Rate, SharedBudgets, Write};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    rate: Rate,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            at: now,
            rate,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.at = now;
    }

    /// When `needed` tokens will be there (now, if they are).
    fn ready_at(&self, needed: f64, now: Instant) -> Instant {
        let missing = needed - self.tokens;
        if missing <= 1e-9 {
            now
        } else {
            now + Duration::from_secs_f64(missing / self.rate.per_second)
        }
    }

    fn is_full(&self) -> bool {
        self.tokens >= self.rate.burst - 1e-9
    }
}

#[derive(Debug)]
struct Chat {
    bucket: Bucket,
    group: Option<Bucket>,
    frozen_until: Option<Instant>,
    /// Final texts waiting for this chat's budget.
    finals_waiting: usize,
}

#[derive(Debug)]
struct State {
    chats: HashMap<String, Chat>,
    global: Bucket,
    frozen_until: Option<Instant>,
    operations: u64,
}

/// One platform's scheduler, shared by every reply the process sends there.
#[derive(Debug)]
pub struct Pacer {
    /// The platform's name in shared budgets' keys.
    platform: &'static str,
    limits: Limits,
    state: Mutex<State>,
    shared: Option<Arc<dyn SharedBudgets>>,
    breaker: Breaker,
}

/// Chats kept in memory before idle ones (full bucket, no freeze) are forgotten.
const PRUNE_ABOVE: usize = 4096;

impl Pacer {
    pub fn new(limits: Limits) -> Pacer {
        Pacer {
            platform: "local",
            shared: None,
            breaker: Breaker::default(),
            limits,
            state: Mutex::new(State {
                chats: HashMap::new(),
                global: Bucket::full(limits.global_sends, Instant::now()),
                frozen_until: None,
                operations: 0,
            }),
        }
    }

    /// A pacer drawing from budgets every replica shares (`platform` names them).
    pub fn shared(
        platform: &'static str,
        limits: Limits,
        shared: Option<Arc<dyn SharedBudgets>>,
    ) -> Pacer {
        Pacer {
            platform,
            shared,
            ..Pacer::new(limits)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent: a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the budget for one write to `chat`, waiting as long as needed, except for a
    /// draft: `Err(ready_at)` says it is skipped and when a draft could go.
    pub async fn acquire(
        &self,
        chat: &str,
        group: bool,
        write: Write,
        priority: Priority,
    ) -> Result<(), Instant> {
        if let Some(shared) = self.shared.as_ref().filter(|_| self.breaker.closed()) {
            let mut counted = false;
            loop {
                let ask = Ask {
                    chat,
                    group,
                    write,
                    priority,
                    counted,
                };
                let drawn = shared.draw(self.platform, &self.limits, ask).await;
                match self.breaker.answered(drawn) {
                    Some(Drawn::Now) => return Ok(()),
                    Some(Drawn::Booked(wait)) => {
                        tokio::time::sleep(wait).await;
                        return Ok(());
                    }
                    Some(Drawn::Refused(wait)) => {
                        if priority == Priority::Draft {
                            return Err(Instant::now() + wait);
                        }
                        counted = priority == Priority::Final;
                        tokio::time::sleep(wait).await;
                    }
                    // Redis is gone: this process's own buckets until it is back.
                    None => break,
                }
            }
        }
        let mut waiting_final = false;
        loop {
            let ready_at = {
                let mut state = self.lock();
                match self.try_take(&mut state, chat, group, write, priority) {
                    Ok(()) => {
                        if waiting_final && let Some(c) = state.chats.get_mut(chat) {
                            c.finals_waiting = c.finals_waiting.saturating_sub(1);
                        }
                        return Ok(());
                    }
                    Err(ready_at) if priority == Priority::Draft => return Err(ready_at),
                    Err(ready_at) => {
                        if priority == Priority::Final
                            && !waiting_final
                            && let Some(c) = state.chats.get_mut(chat)
                        {
                            c.finals_waiting += 1;
                            waiting_final = true;
                        }
                        ready_at
                    }
                }
            };
            tokio::time::sleep_until(ready_at).await;
        }
    }

    /// The platform answered 429 for `chat`: nothing goes there for `wait`.
    pub async fn freeze(&self, chat: &str, group: bool, wait: Duration) {
        if let Some(shared) = self.shared.as_ref().filter(|_| self.breaker.closed()) {
            self.breaker
                .record(shared.freeze(self.platform, Some(chat), wait).await);
        }
        self.freeze_here(chat, group, wait);
    }

    fn freeze_here(&self, chat: &str, group: bool, wait: Duration) {
        let now = Instant::now();
        let mut state = self.lock();
        let until = now + wait;
        let chat = self.chat(&mut state, chat, group, now);
        chat.frozen_until = Some(chat.frozen_until.map_or(until, |t| t.max(until)));
    }

    /// A global limit was hit: nothing goes anywhere for `wait`.
    pub async fn freeze_all(&self, wait: Duration) {
        if let Some(shared) = self.shared.as_ref().filter(|_| self.breaker.closed()) {
            self.breaker
                .record(shared.freeze(self.platform, None, wait).await);
        }
        let until = Instant::now() + wait;
        let mut state = self.lock();
        state.frozen_until = Some(state.frozen_until.map_or(until, |t| t.max(until)));
    }

    fn chat<'s>(
        &self,
        state: &'s mut State,
        chat: &str,
        group: bool,
        now: Instant,
    ) -> &'s mut Chat {
        if !state.chats.contains_key(chat) {
            state.chats.insert(
                chat.to_string(),
                Chat {
                    bucket: Bucket::full(self.limits.per_chat, now),
                    group: self
                        .limits
                        .per_group
                        .filter(|_| group)
                        .map(|rate| Bucket::full(rate, now)),
                    frozen_until: None,
                    finals_waiting: 0,
                },
            );
        }
        state.chats.get_mut(chat).expect("inserted above")
    }

    fn try_take(
        &self,
        state: &mut State,
        chat: &str,
        group: bool,
        write: Write,
        priority: Priority,
    ) -> Result<(), Instant> {
        let now = Instant::now();
        state.operations += 1;
        if state.operations.is_multiple_of(1024) && state.chats.len() > PRUNE_ABOVE {
            state.chats.retain(|_, c| {
                c.bucket.refill(now);
                !(c.bucket.is_full() && c.frozen_until.is_none_or(|t| t <= now))
                    || c.finals_waiting > 0
            });
        }
        let global_frozen = state.frozen_until.filter(|t| *t > now);
        state.global.refill(now);
        let global_ready = if write == Write::Send {
            state.global.ready_at(1.0, now)
        } else {
            now
        };
        let group_reserve = self.limits.group_reserve;
        let c = self.chat(state, chat, group, now);
        c.bucket.refill(now);
        if let Some(g) = &mut c.group {
            g.refill(now);
        }
        // What this priority needs from the chat's bucket and the group's.
        let (chat_needed, group_needed) = match priority {
            Priority::Final => (1.0, 1.0),
            Priority::First => (1.0 + f64::from(u8::from(c.finals_waiting > 0)), 1.0),
            Priority::Draft => (c.bucket.rate.burst, 1.0 + group_reserve),
        };
        let mut ready = c.bucket.ready_at(chat_needed, now).max(global_ready);
        if let Some(g) = &c.group {
            ready = ready.max(g.ready_at(group_needed, now));
        }
        for until in [c.frozen_until.filter(|t| *t > now), global_frozen]
            .into_iter()
            .flatten()
        {
            ready = ready.max(until);
        }
        if ready > now {
            return Err(ready);
        }
        c.bucket.tokens -= 1.0;
        if let Some(g) = &mut c.group {
            g.tokens -= 1.0;
        }
        if write == Write::Send {
            state.global.tokens -= 1.0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer() -> Pacer {
        Pacer::new(Limits::TELEGRAM)
    }

    /// Virtual time: writes go out exactly when the bucket allows, with no tick.
    #[tokio::test(start_paused = true)]
    async fn a_private_chat_gets_its_burst_then_one_write_a_second() {
        let p = pacer();
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..25 {
            p.acquire("1", false, Write::Send, Priority::Final)
                .await
                .unwrap();
            at.push((Instant::now() - start).as_millis());
        }
        assert_eq!(&at[..3], &[0, 0, 0], "a burst of three");
        // Then one a second (refilled 5 % slow, for the network's jitter).
        assert!(at[3].abs_diff(1053) <= 2, "{}", at[3]);
        // No 20-a-minute cap in a private chat: the 25th write is 23 s in, not ~40 s.
        assert!(at[24].abs_diff(23_158) <= 2, "{}", at[24]);
    }

    #[tokio::test(start_paused = true)]
    async fn groups_are_also_held_to_twenty_a_minute() {
        let p = pacer();
        let start = Instant::now();
        for _ in 0..30 {
            p.acquire("-100", true, Write::Edit, Priority::Final)
                .await
                .unwrap();
        }
        // The chat's own bucket would allow the 30th write at 28.4 s; the group's 20 a
        // minute (20 at once, then one every 3.16 s) holds it to 31.6 s.
        let took = (Instant::now() - start).as_millis();
        assert!(took.abs_diff(31_579) <= 2, "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn drafts_never_wait_and_never_touch_the_reserve() {
        let p = pacer();
        assert!(
            p.acquire("1", false, Write::Edit, Priority::Draft)
                .await
                .is_ok()
        );
        // The bucket is no longer full: the next draft is skipped, and told when.
        let ready = p
            .acquire("1", false, Write::Edit, Priority::Draft)
            .await
            .unwrap_err();
        assert_eq!(
            (ready - Instant::now()).as_millis(),
            Duration::from_secs_f64(1.0 / 0.95).as_millis()
        );
        // A final text still goes at once: drafts left it a token.
        let before = Instant::now();
        p.acquire("1", false, Write::Edit, Priority::Final)
            .await
            .unwrap();
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn a_freeze_holds_only_its_chat_for_exactly_retry_after() {
        let p = pacer();
        p.freeze("1", false, Duration::from_secs(7)).await;
        let start = Instant::now();
        p.acquire("2", false, Write::Send, Priority::Final)
            .await
            .unwrap();
        assert_eq!(Instant::now(), start, "another chat is not delayed");
        p.acquire("1", false, Write::Send, Priority::Final)
            .await
            .unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(7));
    }
}
