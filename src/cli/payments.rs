//! `gptbot payments list [user]` and `gptbot payments refund <charge id>`: Telegram Stars
//! payments as the ledger recorded them, and refunds. A refund takes the pack's tokens
//! back first (what remains of them, never below zero) and then asks Telegram to give
//! the Stars back; if Telegram refuses, the tokens are returned and the error shown.

use clap::Subcommand;

use crate::app::{AppError, open_db, quota_service};
use crate::config::Settings;
use crate::core::error::Invalid;
use crate::core::event::UserId;
use crate::platform::telegram::payments::{Refund, refund_stars};
use crate::quota::QuotaError;
use crate::quota::payments::Payment;

#[derive(Debug, Subcommand)]
pub enum PaymentsCommand {
    /// Payments and refunds, newest first: all, or those credited to one account.
    List {
        /// `platform:user`, e.g. telegram:42.
        user: Option<String>,
    },
    /// Give the Stars of one payment back and take its tokens (what remains of them).
    Refund {
        /// The Telegram charge id, as `payments list` shows it.
        charge_id: String,
    },
}

fn describe(p: &Payment) -> String {
    let refund = match (p.refunded_at, p.refunded_tokens) {
        (Some(at), Some(tokens)) => format!(", refunded at {at}: {tokens} tokens taken back"),
        _ => String::new(),
    };
    format!(
        "{}  {}:{}  pack {}  {} Stars  {} tokens  paid at {} by telegram:{}{refund}",
        p.charge_id, p.platform, p.user_id, p.pack, p.stars, p.tokens, p.paid_at, p.buyer
    )
}

pub async fn run(settings: &Settings, command: PaymentsCommand) -> Result<(), AppError> {
    let quota = quota_service(&open_db(settings).await?, settings);
    match command {
        PaymentsCommand::List { user } => {
            let user = user.map(|u| UserId::parse(&u)).transpose()?;
            let payments = quota.payments(user.as_ref()).await?;
            if payments.is_empty() {
                println!("no payments");
            }
            for p in &payments {
                println!("{}", describe(p));
            }
            Ok(())
        }
        PaymentsCommand::Refund { charge_id } => {
            let bot = crate::platform::telegram::webhook::bot(&settings.telegram)?;
            let payment = match quota.refund_payment(&charge_id).await {
                Ok(p) => p,
                Err(QuotaError::Invalid(why)) => return Err(AppError::Usage(Invalid(why))),
                Err(e) => return Err(e.into()),
            };
            match refund_stars(&bot, &payment.buyer, &charge_id).await {
                Refund::Done | Refund::AlreadyRefunded => {}
                Refund::Refused(why) => {
                    quota.unrefund_payment(&charge_id).await?;
                    return Err(AppError::Usage(Invalid(format!(
                        "Telegram refused the refund ({why}); the tokens were left with the user"
                    ))));
                }
            }
            let taken = payment.refunded_tokens.unwrap_or(0);
            println!(
                "refunded {} Stars to telegram:{}; took back {taken} of the pack's {} tokens from {}:{}",
                payment.stars, payment.buyer, payment.tokens, payment.platform, payment.user_id
            );
            if taken < payment.tokens {
                println!(
                    "note: {} of the pack's tokens had been spent and could not be taken back",
                    payment.tokens - taken
                );
            }
            Ok(())
        }
    }
}
