//! The port to the platform that takes the money (Telegram Stars,
//! [`crate::platform::telegram::payments`]) for what happens outside a Telegram chat: a
//! refund (`refundStarPayment`; the admin service takes the tokens back in the ledger and
//! calls this, for the chat's `/refund`, the web admin page and `gptbot payments refund`
//! alike) and an invoice link (`createInvoiceLink`) for a Discord or web user whose
//! account is linked with a Telegram one.

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
pub trait StarPayments: Send + Sync {
    /// Gives `buyer` (the platform's user id) the money of `charge_id` back.
    async fn refund(&self, buyer: &str, charge_id: &str) -> Refunded;

    /// A link that opens `invoice` for payment in Telegram; `Err` says why not.
    async fn invoice_link(
        &self,
        invoice: &crate::core::adapter::InvoiceOffer,
    ) -> Result<String, String>;
}
