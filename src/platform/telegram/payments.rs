//! Telegram Stars: the invoice /buy sends (`sendInvoice`, currency `XTR`, no provider
//! token), the pre-checkout query Telegram asks before taking the Stars (answered within
//! its 10 s), and the `successful_payment` message, recorded in the ledger before the
//! buyer is thanked. Refunds: `refundStarPayment`, behind the admin service's port.

use std::sync::Arc;

use teloxide::prelude::*;
use teloxide::types::{LabeledPrice, PreCheckoutQuery, ThreadId, UserId as TgUserId};
use teloxide::{ApiError, RequestError};

use super::Context;
use super::adapter::TelegramAdapter;
use crate::core::adapter::{AdapterError, InvoiceOffer, ReplyTarget};
use crate::core::event::{Platform, UserId};
use crate::core::payments::{Refunded, StarPayments};
use crate::platform::pacer::{Priority, Write};

/// Sends `offer` to the target chat, paced like any message.
pub(super) async fn send_invoice(
    adapter: &TelegramAdapter,
    target: &ReplyTarget,
    offer: &InvoiceOffer,
) -> Result<bool, AdapterError> {
    let chat = target
        .chat_id
        .parse::<i64>()
        .map(ChatId)
        .map_err(|_| AdapterError::Failed(anyhow::anyhow!("bad chat id {}", target.chat_id)))?;
    let thread = match &target.thread {
        Some(id) => Some(ThreadId(teloxide::types::MessageId(id.parse().map_err(
            |_| AdapterError::Failed(anyhow::anyhow!("bad thread id {id}")),
        )?))),
        None => None,
    };
    let amount = u32::try_from(offer.stars)
        .map_err(|_| AdapterError::Failed(anyhow::anyhow!("bad price {}", offer.stars)))?;
    let bot = adapter.bot.clone();
    adapter
        .paced(&target.chat_id, Write::Send, Priority::Final, || {
            let mut request = bot.send_invoice(
                chat,
                offer.title.clone(),
                offer.description.clone(),
                offer.payload.clone(),
                "XTR",
                [LabeledPrice::new(offer.title.clone(), amount)],
            );
            if let Some(thread) = thread {
                request = request.message_thread_id(thread);
            }
            request.into_future()
        })
        .await
        .map(|_| true)
}

/// "May this be paid?": yes only for this bot's unpaid invoice, its buyer, its price in
/// Stars, and a buyer the access rules allow; otherwise no, with a sentence.
pub(super) async fn on_pre_checkout(
    bot: Bot,
    query: PreCheckoutQuery,
    ctx: Arc<Context>,
) -> ResponseResult<()> {
    let buyer = UserId::new(Platform::Telegram, query.from.id.0.to_string());
    let verdict = ctx
        .conversation
        .pre_checkout(
            &buyer,
            &query.invoice_payload,
            &query.currency,
            i64::from(query.total_amount),
        )
        .await;
    let answered = match &verdict {
        Ok(()) => bot.answer_pre_checkout_query(query.id.clone(), true).await,
        Err(sentence) => {
            bot.answer_pre_checkout_query(query.id.clone(), false)
                .error_message(sentence.clone())
                .await
        }
    };
    crate::core::metrics::platform_call(
        "telegram",
        "answerPreCheckoutQuery",
        answered.as_ref().ok().map(|_| 200),
    );
    if let Err(e) = answered {
        tracing::warn!(error = %crate::core::error::chain(&e), "could not answer a pre-checkout query");
    }
    Ok(())
}

/// The Stars are taken: recorded (granted once per charge id), then the buyer thanked.
pub(super) async fn on_paid(bot: Bot, msg: Message, ctx: Arc<Context>) -> ResponseResult<()> {
    let (Some(payment), Some(from)) = (msg.successful_payment(), msg.from.as_ref()) else {
        return Ok(());
    };
    let buyer = UserId::new(Platform::Telegram, from.id.0.to_string());
    let thanks = ctx
        .conversation
        .paid(
            &buyer,
            &payment.invoice_payload,
            &payment.telegram_payment_charge_id.0,
            i64::from(payment.total_amount),
        )
        .await;
    let target = ReplyTarget {
        chat_id: msg.chat.id.0.to_string(),
        reply_to: None,
        thread: msg.thread_id.map(|t| t.0.0.to_string()),
    };
    let adapter = ctx.adapter(bot);
    if let Err(e) = crate::core::adapter::ChatAdapter::send(
        &adapter,
        &target,
        &thanks,
        crate::core::adapter::Stage::Final,
    )
    .await
    {
        tracing::warn!(error = %crate::core::error::chain(&e), "could not thank a buyer");
    }
    Ok(())
}

/// Refunds through the Bot API of this bot's token.
pub struct TelegramRefunds(pub Bot);

#[async_trait::async_trait]
impl StarPayments for TelegramRefunds {
    async fn refund(&self, buyer: &str, charge_id: &str) -> Refunded {
        let Ok(id) = buyer.parse::<u64>() else {
            return Refunded::Refused(format!("{buyer} is not a Telegram user id"));
        };
        let answered = self
            .0
            .refund_star_payment(
                TgUserId(id),
                teloxide::types::TelegramTransactionId(charge_id.to_string()),
            )
            .await;
        crate::core::metrics::platform_call(
            "telegram",
            "refundStarPayment",
            answered.as_ref().ok().map(|_| 200),
        );
        match answered {
            Ok(_) => Refunded::Done,
            Err(RequestError::Api(ApiError::Unknown(text)))
                if text.contains("ALREADY_REFUNDED") =>
            {
                Refunded::AlreadyRefunded
            }
            Err(e) => Refunded::Refused(crate::core::error::chain(&e).to_string()),
        }
    }

    async fn invoice_link(&self, invoice: &InvoiceOffer) -> Result<String, String> {
        let amount =
            u32::try_from(invoice.stars).map_err(|_| format!("bad price {}", invoice.stars))?;
        let made = self
            .0
            .create_invoice_link(
                invoice.title.clone(),
                invoice.description.clone(),
                invoice.payload.clone(),
                "XTR",
                [LabeledPrice::new(invoice.title.clone(), amount)],
            )
            .await;
        crate::core::metrics::platform_call(
            "telegram",
            "createInvoiceLink",
            made.as_ref().ok().map(|_| 200),
        );
        made.map_err(|e| crate::core::error::chain(&e).to_string())
    }
}
