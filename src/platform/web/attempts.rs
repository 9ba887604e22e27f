//! Who may try a password now. Every limit here is bounded whatever a stranger sends:
//! per address (an IPv6 /64 counts as one visitor: a subscriber holds 2^64 addresses),
//! for the whole web front per second (each attempt costs an argon2 hash), and per
//! account on *failed* attempts only — with a way around that last one for the owner: a
//! browser that logged in to the account before carries a device cookie, and others'
//! failures do not lock it out (OWASP's "device cookies"). Keys are validated usernames
//! (at most 32 bytes), never what the form said.
//!
//! With replicas sharing Redis the three limits are counted there (GCRA,
//! [`SharedRates`]), so N replicas allow what one would; if Redis is unreachable each
//! process counts alone.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::WebState;
use crate::core::coordination::{Breaker, SharedRates};
use crate::core::limiter::Window;

/// Attempts per address per minute.
const PER_ADDRESS: u32 = 20;
/// Failed attempts per account per minute (unless from a known device).
const FAILURES_PER_ACCOUNT: u32 = 5;
/// Addresses and accounts kept track of at once.
const KEYS: u64 = 100_000;
/// How long a browser stays known to an account after its last login.
const DEVICE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The device cookie.
pub const DEVICE_COOKIE: &str = "gptbot_device";

/// Why an attempt is refused before any password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This address tried too often.
    Address,
    /// The whole web front takes no more attempts this second.
    Busy,
    /// Too many failed attempts on this account, from a browser it does not know.
    Account,
}

impl Refusal {
    pub fn sentence(self) -> &'static str {
        match self {
            Refusal::Address => "Too many attempts. Please wait a minute.",
            Refusal::Busy => "The server is busy. Please try again in a few seconds.",
            Refusal::Account => {
                "Too many failed attempts on this account. Please wait a minute, or log in from a browser you used before."
            }
        }
    }

    /// A label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Address => "address",
            Refusal::Busy => "busy",
            Refusal::Account => "account",
        }
    }
}

/// The login limits of one web front.
pub struct Gate {
    by_address: Window<IpAddr>,
    failures: Window<String>,
    overall: DefaultDirectRateLimiter,
    per_second: u32,
    shared: Option<Arc<dyn SharedRates>>,
    breaker: Breaker,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Gate {
    pub fn new(per_second: u32) -> Gate {
        let minute = Duration::from_secs(60);
        Gate {
            by_address: Window::new(PER_ADDRESS, minute, KEYS),
            failures: Window::new(FAILURES_PER_ACCOUNT, minute, KEYS),
            overall: RateLimiter::direct(Quota::per_second(
                NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN),
            )),
            per_second: per_second.max(1),
            shared: None,
            breaker: Breaker::default(),
        }
    }

    /// Counted with every replica's attempts (`None`: this process's only).
    pub fn shared(mut self, rates: Option<Arc<dyn SharedRates>>) -> Gate {
        self.shared = rates;
        self
    }

    /// The shared counters, unless they just failed.
    fn board(&self) -> Option<&dyn SharedRates> {
        self.shared.as_deref().filter(|_| self.breaker.closed())
    }

    /// Counts an attempt from `address` (its /64 for IPv6) against its own limit and
    /// the whole front's.
    pub async fn admit(&self, address: IpAddr) -> Result<(), Refusal> {
        if let Some(board) = self.board() {
            let checked = async {
                let key = format!("web-login:address:{}", key_of(address));
                if board.hit(&key, PER_ADDRESS, MINUTE).await?.is_some() {
                    return Ok(Err(Refusal::Address));
                }
                let busy = board
                    .hit("web-login:all", self.per_second, Duration::from_secs(1))
                    .await?;
                Ok(busy.map_or(Ok(()), |_| Err(Refusal::Busy)))
            };
            if let Some(decided) = self.breaker.answered(checked.await) {
                return decided;
            }
        }
        if !self.by_address.count(&key_of(address)) {
            return Err(Refusal::Address);
        }
        self.overall.check().map_err(|_| Refusal::Busy)
    }

    /// Whether `name` has had too many failed attempts this minute.
    pub async fn locked(&self, name: &str) -> bool {
        if let Some(board) = self.board() {
            let key = format!("web-login:failed:{name}");
            let peeked = board.peek(&key, FAILURES_PER_ACCOUNT, MINUTE).await;
            if let Some(wait) = self.breaker.answered(peeked) {
                return wait.is_some();
            }
        }
        self.failures.reached(&name.to_string())
    }

    /// Counts a failed attempt on `name`.
    pub async fn failed(&self, name: &str) {
        if let Some(board) = self.board() {
            let key = format!("web-login:failed:{name}");
            let hit = board.hit(&key, FAILURES_PER_ACCOUNT, MINUTE).await;
            if self.breaker.answered(hit).is_some() {
                return;
            }
        }
        self.failures.count(&name.to_string());
    }
}

/// An address as the limits count it: IPv6 by its /64, IPv4 (and IPv4-mapped) as is.
pub fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
}

fn device_key(token: &str) -> String {
    format!("web-device:{token}")
}

fn device_token(headers: &HeaderMap) -> Option<String> {
    super::auth::cookie_value(headers, DEVICE_COOKIE)
}

/// Whether this browser logged in to `name` before (its device cookie names it).
pub async fn known_device(state: &WebState, headers: &HeaderMap, name: &str) -> bool {
    let Some(token) = device_token(headers) else {
        return false;
    };
    match state.sessions.peek_code(&device_key(&token)).await {
        Ok(Some(owner)) => owner == name,
        _ => false,
    }
}

/// After a login: the device cookie that lets this browser past others' failures on
/// `name`, kept in the session store (shared by replicas) for [`DEVICE_TTL`].
pub async fn remember_device(state: &WebState, name: &str) -> Option<HeaderValue> {
    let token = super::auth::random_token();
    match state
        .sessions
        .put_code(&device_key(&token), name, DEVICE_TTL)
        .await
    {
        Ok(true) => {}
        _ => return None,
    }
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{DEVICE_COOKIE}={token}; Max-Age={}; Path=/login; HttpOnly; SameSite=Strict{secure}",
        DEVICE_TTL.as_secs()
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_visitor_is_counted_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key_of(a), key_of(b));
        assert_ne!(key_of(a), key_of(other));
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(key_of(v4), v4);
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(key_of(mapped), v4);
    }

    #[tokio::test]
    async fn many_addresses_of_one_64_share_its_limit_and_the_front_has_a_ceiling() {
        let gate = Gate::new(1000);
        for i in 0..PER_ADDRESS {
            let ip: IpAddr = format!("2001:db8::{:x}", i + 1).parse().unwrap();
            assert_eq!(gate.admit(ip).await, Ok(()));
        }
        let next: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(gate.admit(next).await, Err(Refusal::Address));
        let busy = Gate::new(2);
        let mut refused = 0;
        for i in 0..10u8 {
            if busy.admit(IpAddr::from([10, 0, 0, i])).await == Err(Refusal::Busy) {
                refused += 1;
            }
        }
        assert!(refused >= 7, "{refused} of 10 refused at 2 a second");
    }

    #[tokio::test]
    async fn only_failures_lock_an_account() {
        let gate = Gate::new(1000);
        assert!(!gate.locked("ann").await);
        for _ in 0..FAILURES_PER_ACCOUNT {
            gate.failed("ann").await;
        }
        assert!(gate.locked("ann").await);
        assert!(!gate.locked("bob").await);
    }
}
