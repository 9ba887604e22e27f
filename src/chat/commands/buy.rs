//! /buy: token packs sold for Telegram Stars (`[payments]`), and what Telegram asks the
//! bot while one is paid — the pre-checkout query (may this be paid?) and the successful
//! payment (grant it, once). Everything in the ledger goes through
//! [`crate::quota::payments`].

use super::choices::Offer;
use super::{Answer, Conversation, Failure};
use crate::access::Decision;
use crate::core::adapter::{ChatAdapter, Choice, InvoiceOffer, ReplyTarget};
use crate::core::event::{IncomingEvent, Platform, UserId};

const NOT_SELLING: &str = "This bot does not sell tokens.";

/// How to buy from a platform with no Stars of its own.
const IN_TELEGRAM: &str = "Packs are paid with Telegram Stars: send /buy to this bot in Telegram. To have the tokens here, first /link this account with your Telegram one.";

pub(super) fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

impl Conversation {
    /// `/buy`: the packs, with a button for each where the platform has buttons.
    pub(super) fn buy_offer(&self, event: &IncomingEvent) -> Result<Offer, Failure> {
        let payments = &self.answers.settings.payments;
        if !payments.enabled {
            return Ok(Offer {
                text: NOT_SELLING.into(),
                choices: Vec::new(),
            });
        }
        let mut text = String::from("Token packs:\n");
        let mut choices = Vec::new();
        for pack in &payments.packs {
            text.push_str(&format!(
                "• {}: {} tokens for {} ⭐\n",
                pack.name,
                thousands(pack.tokens),
                pack.stars
            ));
            choices.push(Choice {
                label: format!("{} — {} ⭐", pack.name, pack.stars),
                command: format!("/buy {}", pack.name),
            });
        }
        if event.platform == Platform::Telegram {
            text.push_str("Choose with /buy <name>.");
        } else {
            text.push_str(IN_TELEGRAM);
            choices.clear();
        }
        Ok(Offer { text, choices })
    }

    /// `/buy <pack>`: an invoice in Telegram Stars; elsewhere, how to buy.
    pub(super) async fn buy(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        name: &str,
    ) -> Answer {
        let payments = &self.answers.settings.payments;
        if !payments.enabled {
            return Ok(NOT_SELLING.into());
        }
        let Some(pack) = payments.pack(name) else {
            let names: Vec<&str> = payments.packs.iter().map(|p| p.name.as_str()).collect();
            return Ok(format!(
                "There is no pack named {name:?}. Packs: {}.",
                names.join(", ")
            ));
        };
        // Elsewhere than Telegram, the Telegram identity linked with this account buys.
        let buyer = if event.platform == Platform::Telegram {
            event.quota_user()
        } else {
            match (
                self.answers
                    .quota
                    .partner_on(&event.quota_user(), Platform::Telegram)
                    .await?,
                &self.payments,
            ) {
                (Some(buyer), Some(_)) => buyer,
                _ => return Ok(IN_TELEGRAM.into()),
            }
        };
        let invoice = self.answers.quota.open_invoice(&buyer, pack).await?;
        let offer = InvoiceOffer {
            title: format!("{} tokens", thousands(pack.tokens)),
            description: format!(
                "{} tokens for {} (pack {}).",
                thousands(pack.tokens),
                self.answers.settings.bot_name,
                pack.name
            ),
            payload: invoice.payload,
            stars: pack.stars,
        };
        if event.platform != Platform::Telegram {
            let Some(payments) = &self.payments else {
                return Ok(IN_TELEGRAM.into());
            };
            return Ok(match payments.invoice_link(&offer).await {
                Ok(link) => format!(
                    "Pay {} ⭐ for {} in Telegram (as {buyer}, linked with this account): {link}\nThe tokens go to the balance you share.",
                    pack.stars, offer.title
                ),
                Err(why) => {
                    tracing::warn!(error = %why, "could not make an invoice link");
                    "The invoice could not be made. Please try again in a moment.".into()
                }
            });
        }
        match adapter.invoice(target, &offer).await {
            Ok(true) => Err(Failure::Silent),
            Ok(false) => Ok(IN_TELEGRAM.into()),
            Err(e) => {
                tracing::warn!(error = %crate::core::error::chain(&e), user = %event.quota_user(), "could not send an invoice");
                Ok("The invoice could not be sent. Please try again in a moment.".into())
            }
        }
    }

    /// Telegram's pre-checkout query for `payload`: `Err` holds the sentence Telegram
    /// shows in the payment form. Answered within Telegram's 10 s: one read of the
    /// invoice and the access rules.
    pub async fn pre_checkout(
        &self,
        buyer: &UserId,
        payload: &str,
        currency: &str,
        amount: i64,
    ) -> Result<(), String> {
        let payments = &self.answers.settings.payments;
        if !payments.enabled {
            return Err(NOT_SELLING.into());
        }
        match self.access().decide(buyer, None).await {
            Ok(Decision::Denied) => return Err("You may not use this bot.".into()),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %crate::core::error::chain(&e), "could not read the access rules for a payment");
                return Err("The bot cannot take payments right now. Please try again.".into());
            }
        }
        match self
            .answers
            .quota
            .check_invoice(payload, buyer, currency, amount, payments)
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(declined)) => {
                tracing::info!(%buyer, ?declined, "a pre-checkout query was declined");
                Err(declined.sentence().into())
            }
            Err(e) => {
                tracing::warn!(error = %crate::core::error::chain(&e), "could not check an invoice");
                Err("The bot cannot take payments right now. Please try again.".into())
            }
        }
    }

    /// Telegram's `successful_payment`: the payment is recorded (and its tokens granted,
    /// once per charge id) before anything else; the sentence thanks the buyer.
    pub async fn paid(&self, buyer: &UserId, payload: &str, charge_id: &str, stars: i64) -> String {
        match self
            .answers
            .quota
            .record_payment(payload, charge_id, buyer, stars)
            .await
        {
            Ok(recorded) => {
                if recorded.granted {
                    tracing::info!(%buyer, charge_id, stars, tokens = recorded.tokens, "payment received");
                    ::metrics::counter!(crate::core::metrics::PAYMENTS).increment(1);
                }
                format!(
                    "Thank you! {} tokens were added: you now have {} tokens.",
                    thousands(recorded.tokens),
                    thousands(recorded.balance.remaining)
                )
            }
            Err(e) => {
                // Telegram took the Stars: this must reach an operator.
                tracing::error!(error = %crate::core::error::chain(&e), %buyer, charge_id, "a payment could not be recorded");
                format!(
                    "Your payment went through, but the bot could not add the tokens yet. An operator has been told; keep this charge id: {charge_id}"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped() {
        assert_eq!(super::thousands(100000), "100,000");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
