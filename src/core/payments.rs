//! The port through which a refund reaches the platform that took the money: Telegram's
//! `refundStarPayment` ([`crate::platform::telegram::payments`]). The admin service takes
//! the tokens back in the ledger and calls this; the chat's `/refund`, the web admin page
//! and `gptbot payments refund` all go through that one service.

use async_trait::async_trait;

/// What the platform answered to a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refunded {
    Done,
    /// The platform had refunded this charge already.
    AlreadyRefunded,
    /// Refused, and why.
    Refused(String),
}

#[async_trait]
pub trait StarRefunds: Send + Sync {
    /// Gives `buyer` (the platform's user id) the money of `charge_id` back.
    async fn refund(&self, buyer: &str, charge_id: &str) -> Refunded;
}
