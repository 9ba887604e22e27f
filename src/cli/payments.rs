//! `gptbot payments list [user]` and `gptbot payments refund <charge id>`: Telegram Stars
//! payments as the ledger recorded them, and refunds. A refund takes the pack's tokens
//! back first (what remains of them, never below zero) and then asks Telegram to give
//! the Stars back; if Telegram refuses, the tokens are returned and the error shown.

use clap::Subcommand;

use crate::app::AppError;
use crate::config::Settings;
use crate::core::admin::{Account, AdminCommand};
use crate::core::event::UserId;

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

pub async fn run(settings: &Settings, command: PaymentsCommand) -> Result<(), AppError> {
    let command = match command {
        PaymentsCommand::List { user } => AdminCommand::Payments {
            user: user
                .map(|u| UserId::parse(&u).map(Account::Id))
                .transpose()?,
        },
        PaymentsCommand::Refund { charge_id } => AdminCommand::Refund { charge: charge_id },
    };
    print!(
        "{}",
        super::table::render(super::admin(settings, command).await?)
    );
    Ok(())
}
