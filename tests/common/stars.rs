//! Telegram Stars in the fake Bot API: `sendInvoice` and `createInvoiceLink` (checked as
//! Telegram checks them: currency `XTR`, one price, a payload of 1–128 bytes),
//! `answerPreCheckoutQuery`, `refundStarPayment` (Telegram's errors for a charge refunded
//! twice or unknown), and the updates a payment brings: `pre_checkout_query`, then — only
//! when the bot said yes — a message with `successful_payment`.

use std::collections::HashMap;
use std::time::Duration;

use axum::response::Response;
use serde_json::{Value, json};

use super::telegram::{FakeTelegram, error, now, ok};

#[derive(Default)]
pub struct Stars {
    /// Every invoice sent (the request bodies), in order.
    pub invoices: Vec<Value>,
    /// Links made by createInvoiceLink (the request bodies).
    pub links: Vec<Value>,
    /// Pre-checkout query id → (ok, error_message).
    pub answers: HashMap<String, (bool, Option<String>)>,
    /// Charge id → (buyer, refunded).
    pub charges: HashMap<String, (i64, bool)>,
    /// refundStarPayment calls: (user, charge).
    pub refunds: Vec<(i64, String)>,
    next: u64,
}

fn check_invoice(body: &Value) -> Option<Response> {
    let payload = body["payload"].as_str().unwrap_or("");
    if payload.is_empty() || payload.len() > 128 {
        return Some(error(400, "Bad Request: INVOICE_PAYLOAD_INVALID", None));
    }
    if body["currency"] != "XTR" {
        return Some(error(400, "Bad Request: CURRENCY_INVALID", None));
    }
    let prices = body["prices"].as_array().cloned().unwrap_or_default();
    if prices.len() != 1 || prices[0]["amount"].as_i64().unwrap_or(0) < 1 {
        return Some(error(400, "Bad Request: STARS_INVOICE_INVALID", None));
    }
    // Stars need no payment provider: a token for one is refused.
    if body["provider_token"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return Some(error(400, "Bad Request: PAYMENT_PROVIDER_INVALID", None));
    }
    None
}

pub(super) fn call(fake: &FakeTelegram, method: &str, body: &Value) -> Response {
    let mut s = fake.state.lock().unwrap();
    match method {
        "sendinvoice" => {
            if let Some(refused) = check_invoice(body) {
                return refused;
            }
            s.stars.invoices.push(body.clone());
            s.next_message_id += 1;
            ok(json!({
                "message_id": s.next_message_id, "date": now(),
                "chat": {"id": body["chat_id"], "type": "private"},
                "invoice": {
                    "title": body["title"], "description": body["description"],
                    "start_parameter": "", "currency": "XTR",
                    "total_amount": body["prices"][0]["amount"]
                }
            }))
        }
        "createinvoicelink" => {
            if let Some(refused) = check_invoice(body) {
                return refused;
            }
            s.stars.links.push(body.clone());
            ok(json!(format!(
                "https://t.me/$invoice{}",
                s.stars.links.len()
            )))
        }
        "answerprecheckoutquery" => {
            let id = body["pre_checkout_query_id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let answer = body["ok"].as_bool().unwrap_or(false);
            let message = body["error_message"].as_str().map(str::to_string);
            if !answer && message.is_none() {
                return error(400, "Bad Request: ERROR_MESSAGE_EMPTY", None);
            }
            s.stars.answers.insert(id, (answer, message));
            ok(json!(true))
        }
        "refundstarpayment" => {
            let user = body["user_id"].as_i64().unwrap_or(0);
            let charge = body["telegram_payment_charge_id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            s.stars.refunds.push((user, charge.clone()));
            match s.stars.charges.get_mut(&charge) {
                Some((buyer, refunded)) if *buyer == user => {
                    if *refunded {
                        error(400, "Bad Request: CHARGE_ALREADY_REFUNDED", None)
                    } else {
                        *refunded = true;
                        ok(json!(true))
                    }
                }
                _ => error(400, "Bad Request: CHARGE_NOT_FOUND", None),
            }
        }
        _ => unreachable!("not a Stars method"),
    }
}

/// What paying an invoice ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paid {
    /// The bot said yes; the Stars are taken under this charge id.
    Charged(String),
    /// The bot said no, with this sentence.
    Declined(String),
}

impl FakeTelegram {
    /// The invoices the bot sent.
    pub fn invoices(&self) -> Vec<Value> {
        self.state.lock().unwrap().stars.invoices.clone()
    }

    pub fn refund_calls(&self) -> Vec<(i64, String)> {
        self.state.lock().unwrap().stars.refunds.clone()
    }

    /// Whether Telegram has refunded `charge`.
    pub fn refunded(&self, charge: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .stars
            .charges
            .get(charge)
            .is_some_and(|c| c.1)
    }

    fn push(&self, update: impl FnOnce(i64) -> Value) {
        let mut s = self.state.lock().unwrap();
        s.next_update_id += 1;
        let id = s.next_update_id;
        s.updates.push_back(update(id));
        drop(s);
        self.notify.notify_waiters();
    }

    /// `user` pays `amount` Stars (in `currency`) for the invoice with `payload`, as the
    /// Telegram app does: a pre-checkout query the bot must answer within 10 s, then, if
    /// it said yes, the `successful_payment` message.
    pub async fn pay(&self, user: i64, payload: &str, currency: &str, amount: i64) -> Paid {
        let query = {
            let mut s = self.state.lock().unwrap();
            s.stars.next += 1;
            format!("pcq-{}", s.stars.next)
        };
        let from = super::telegram::user_json(user, "Buyer");
        let update_query = query.clone();
        let (payload_q, currency_q, from_q) =
            (payload.to_string(), currency.to_string(), from.clone());
        self.push(move |id| {
            json!({"update_id": id, "pre_checkout_query": {
                "id": update_query, "from": from_q, "currency": currency_q,
                "total_amount": amount, "invoice_payload": payload_q
            }})
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let answer = loop {
            if let Some(a) = self
                .state
                .lock()
                .unwrap()
                .stars
                .answers
                .get(&query)
                .cloned()
            {
                break a;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the pre-checkout query was not answered within Telegram's 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (true, _) = answer else {
            return Paid::Declined(answer.1.unwrap_or_default());
        };
        let charge = format!("stxCharge{}-{}", user, query);
        self.state
            .lock()
            .unwrap()
            .stars
            .charges
            .insert(charge.clone(), (user, false));
        self.deliver_payment(user, payload, currency, amount, &charge);
        Paid::Charged(charge)
    }

    /// (Again) the `successful_payment` message of a charge, as Telegram may deliver it
    /// twice.
    pub fn deliver_payment(
        &self,
        user: i64,
        payload: &str,
        currency: &str,
        amount: i64,
        charge: &str,
    ) {
        let from = super::telegram::user_json(user, "Buyer");
        let chat = super::telegram::private_chat(user);
        let (payload, currency, charge) = (
            payload.to_string(),
            currency.to_string(),
            charge.to_string(),
        );
        let message_id = {
            let mut s = self.state.lock().unwrap();
            s.next_message_id += 1;
            s.next_message_id
        };
        self.push(move |id| {
            json!({"update_id": id, "message": {
                "message_id": message_id, "date": now(), "chat": chat, "from": from,
                "successful_payment": {
                    "currency": currency, "total_amount": amount, "invoice_payload": payload,
                    "telegram_payment_charge_id": charge,
                    "provider_payment_charge_id": ""
                }
            }})
        });
    }
}
