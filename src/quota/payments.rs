//! Telegram Stars top-ups in the ledger: invoices under a payload only the bot knows, a
//! payment granted exactly once per Telegram charge id, refunds that take back what
//! remains of a pack's tokens. Each grant and each refund is one statement (a trigger
//! moves the tokens and writes the ledger entry naming the charge and the pack).

use anyhow::Context;

use super::{Balance, QuotaError, QuotaService};
use crate::config::{Pack, PaymentSettings};
use crate::core::event::{Platform, UserId};

/// Unpaid invoices are kept this long (Telegram's invoice messages stay payable; a day
/// bounds the table whatever a user clicks).
const INVOICE_TTL_SECS: i64 = 24 * 3600;

/// An invoice to send: its payload is the bot's own random key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub payload: String,
    pub pack: String,
    pub stars: i64,
    pub tokens: i64,
}

/// Why a pre-checkout query is answered "no" (the sentence is shown in Telegram's
/// payment form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declined {
    /// Not an invoice of this bot's, or one older than a day.
    Unknown,
    /// Already paid.
    Used,
    /// Another currency or amount than the invoice's, or the pack changed its price.
    Mismatch,
    /// Someone else than the user the invoice was made for.
    NotBuyer,
}

impl Declined {
    pub fn sentence(self) -> &'static str {
        match self {
            Declined::Unknown => "This invoice has expired. Send /buy for a new one.",
            Declined::Used => "This invoice is already paid.",
            Declined::Mismatch => {
                "The price of this pack has changed. Send /buy for a new invoice."
            }
            Declined::NotBuyer => "This invoice was made for someone else. Send /buy for your own.",
        }
    }
}

/// What recording a successful payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// False: this charge was recorded before (the update came twice); nothing granted.
    pub granted: bool,
    pub tokens: i64,
    /// The balance the tokens went to, after.
    pub balance: Balance,
}

/// A payment as recorded.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Payment {
    pub charge_id: String,
    pub platform: String,
    pub user_id: String,
    pub buyer: String,
    pub pack: String,
    pub stars: i64,
    pub tokens: i64,
    pub paid_at: i64,
    pub refunded_at: Option<i64>,
    pub refunded_tokens: Option<i64>,
}

impl Payment {
    pub fn account(&self) -> Option<UserId> {
        Platform::parse(&self.platform).map(|p| UserId::new(p, self.user_id.clone()))
    }

    /// One line for operators: the charge, whose balance, the pack, and any refund.
    pub fn describe(&self) -> String {
        let refund = match (self.refunded_at, self.refunded_tokens) {
            (Some(at), Some(tokens)) => {
                format!(", refunded at {at}: {tokens} tokens taken back")
            }
            _ => String::new(),
        };
        format!(
            "{}  {}:{}  pack {}  {} Stars  {} tokens  paid at {} by telegram:{}{refund}",
            self.charge_id,
            self.platform,
            self.user_id,
            self.pack,
            self.stars,
            self.tokens,
            self.paid_at,
            self.buyer
        )
    }

    /// What a refund of this payment said to the operator.
    pub fn refund_report(&self) -> String {
        let taken = self.refunded_tokens.unwrap_or(0);
        let mut text = format!(
            "refunded {} Stars to telegram:{}; took back {taken} of the pack's {} tokens from {}:{}",
            self.stars, self.buyer, self.tokens, self.platform, self.user_id
        );
        if taken < self.tokens {
            text.push_str(&format!(
                "\nnote: {} of the pack's tokens had been spent and could not be taken back",
                self.tokens - taken
            ));
        }
        text
    }
}

#[derive(sqlx::FromRow)]
struct InvoiceRow {
    buyer: String,
    pack: String,
    stars: i64,
    paid_at: Option<i64>,
    created_at: i64,
}

impl QuotaService {
    /// A new invoice for `buyer` (a Telegram user) and `pack`; unpaid invoices older
    /// than a day are forgotten.
    pub async fn open_invoice(&self, buyer: &UserId, pack: &Pack) -> Result<Invoice, QuotaError> {
        let now = self.now();
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(now - INVOICE_TTL_SECS)
                .execute(pool)
                .await
                .map(drop),
            "DELETE FROM payment_invoices WHERE paid_at IS NULL AND created_at < ?1"
        )
        .context("forgetting old invoices")?;
        let payload = crate::core::token::random().context("making an invoice payload")?;
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(&payload)
                .bind(buyer.platform.as_str())
                .bind(&buyer.user)
                .bind(&pack.name)
                .bind(pack.stars)
                .bind(pack.tokens)
                .bind(now)
                .execute(pool)
                .await
                .map(drop),
            "INSERT INTO payment_invoices (payload, platform, buyer, pack, stars, tokens, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        )
        .with_context(|| format!("storing an invoice for {buyer}"))?;
        Ok(Invoice {
            payload,
            pack: pack.name.clone(),
            stars: pack.stars,
            tokens: pack.tokens,
        })
    }

    async fn invoice(&self, payload: &str) -> Result<Option<InvoiceRow>, QuotaError> {
        Ok(crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, InvoiceRow>(sql)
                .bind(payload)
                .fetch_optional(pool)
                .await,
            "SELECT buyer, pack, stars, paid_at, created_at FROM payment_invoices WHERE payload = ?1"
        )
        .context("reading an invoice")?)
    }

    /// Telegram's pre-checkout query: may `buyer` pay `amount` in `currency` for the
    /// invoice `payload` now? (Access rules are the caller's.)
    pub async fn check_invoice(
        &self,
        payload: &str,
        buyer: &UserId,
        currency: &str,
        amount: i64,
        payments: &PaymentSettings,
    ) -> Result<Result<(), Declined>, QuotaError> {
        let Some(invoice) = self.invoice(payload).await? else {
            return Ok(Err(Declined::Unknown));
        };
        if invoice.paid_at.is_some() {
            return Ok(Err(Declined::Used));
        }
        if invoice.created_at < self.now() - INVOICE_TTL_SECS {
            return Ok(Err(Declined::Unknown));
        }
        if invoice.buyer != buyer.user || buyer.platform != Platform::Telegram {
            return Ok(Err(Declined::NotBuyer));
        }
        let price_now = payments.pack(&invoice.pack).map(|p| p.stars);
        if currency != "XTR" || amount != invoice.stars || price_now != Some(invoice.stars) {
            return Ok(Err(Declined::Mismatch));
        }
        Ok(Ok(()))
    }

    /// Telegram's `successful_payment`: grants the invoice's tokens once for `charge_id`
    /// (to the account `buyer` is linked to, if any). Recorded before anything else is
    /// done with the payment; a second delivery of the same charge grants nothing.
    pub async fn record_payment(
        &self,
        payload: &str,
        charge_id: &str,
        buyer: &UserId,
        stars: i64,
    ) -> Result<Recorded, QuotaError> {
        let account = self
            .linked_to(buyer)
            .await?
            .unwrap_or_else(|| buyer.clone());
        self.ensure_account_by_admin(&account).await?;
        self.refill_if_due(&account).await?;
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(charge_id)
                .bind(payload)
                .bind(account.platform.as_str())
                .bind(&account.user)
                .bind(&buyer.user)
                .bind(stars)
                .bind(self.now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            "INSERT INTO payments (charge_id, payload, platform, user_id, buyer, pack, stars, tokens, paid_at) \
             SELECT ?1, payload, ?3, ?4, ?5, pack, ?6, tokens, ?7 FROM payment_invoices WHERE payload = ?2 \
             ON CONFLICT DO NOTHING"
        )
        .with_context(|| format!("recording payment {charge_id} of {buyer}"))?;
        let tokens: Option<(i64,)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(charge_id)
                .fetch_optional(pool)
                .await,
            "SELECT tokens FROM payments WHERE charge_id = ?1"
        )
        .context("reading a payment")?;
        let Some((tokens,)) = tokens else {
            return Err(QuotaError::Database(anyhow::anyhow!(
                "payment {charge_id} names an invoice this bot does not have"
            )));
        };
        Ok(Recorded {
            granted: done == 1,
            tokens,
            balance: self.balance(&account).await?,
        })
    }

    /// Marks `charge_id` refunded and takes back the pack's tokens, or what remains of
    /// them if some were spent (never below zero): the payment as it now stands.
    pub async fn refund_payment(&self, charge_id: &str) -> Result<Payment, QuotaError> {
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(charge_id)
                .bind(self.now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            "UPDATE payments SET refunded_at = ?2, refunded_tokens = MIN(tokens, \
               (SELECT remaining FROM quota_accounts a \
                WHERE a.platform = payments.platform AND a.user_id = payments.user_id)) \
             WHERE charge_id = ?1 AND refunded_at IS NULL"
        )
        .with_context(|| format!("refunding payment {charge_id}"))?;
        let payment = self.payment(charge_id).await?;
        match (done, payment) {
            (1, Some(payment)) => Ok(payment),
            (_, Some(_)) => Err(QuotaError::Invalid(format!(
                "payment {charge_id} is already refunded"
            ))),
            (_, None) => Err(QuotaError::Invalid(format!(
                "no payment has the charge id {charge_id}"
            ))),
        }
    }

    /// Undoes [`QuotaService::refund_payment`] when Telegram refused to give the Stars
    /// back: the tokens taken are returned.
    pub async fn unrefund_payment(&self, charge_id: &str) -> Result<(), QuotaError> {
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(charge_id)
                .execute(pool)
                .await
                .map(drop),
            "UPDATE payments SET refunded_at = NULL, refunded_tokens = NULL \
             WHERE charge_id = ?1 AND refunded_at IS NOT NULL"
        )
        .with_context(|| format!("undoing the refund of payment {charge_id}"))?;
        Ok(())
    }

    pub async fn payment(&self, charge_id: &str) -> Result<Option<Payment>, QuotaError> {
        Ok(crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, Payment>(sql)
                .bind(charge_id)
                .fetch_optional(pool)
                .await,
            "SELECT charge_id, platform, user_id, buyer, pack, stars, tokens, paid_at, \
             refunded_at, refunded_tokens FROM payments WHERE charge_id = ?1"
        )
        .context("reading a payment")?)
    }

    /// Payments, newest first: all, or those credited to `user`'s account.
    pub async fn payments(&self, user: Option<&UserId>) -> Result<Vec<Payment>, QuotaError> {
        let (platform, id) = user.map_or((String::new(), String::new()), |u| {
            (u.platform.as_str().to_string(), u.user.clone())
        });
        Ok(crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as::<_, Payment>(sql)
                .bind(&platform)
                .bind(&id)
                .fetch_all(pool)
                .await,
            "SELECT charge_id, platform, user_id, buyer, pack, stars, tokens, paid_at, \
             refunded_at, refunded_tokens FROM payments \
             WHERE ?1 = '' OR (platform = ?1 AND user_id = ?2) ORDER BY paid_at DESC, charge_id"
        )
        .context("listing payments")?)
    }
}
