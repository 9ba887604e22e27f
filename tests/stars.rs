//! Telegram Stars end to end: the bot (booted as `gptbot run` boots it) against the fake
//! Bot API — /buy lists the packs with buttons, /buy <pack> sends an invoice in XTR at the
//! pack's price, the pre-checkout query is answered yes only for the bot's own unpaid
//! invoice at its price from its buyer, the payment grants the pack once however often
//! Telegram delivers it, and `gptbot payments refund` gives the Stars back and takes the
//! tokens that remain. The books' invariant holds after every step.

mod common;

use common::ledger::assert_books;
use common::stars::Paid;
use common::telegram::{FakeTelegram, private_chat, user_json};
use common::*;
use gptbot::core::event::{Platform, UserId};

const PACKS: &str = r#"
[access]
admins = ["telegram:1", "web:root"]

[payments]
enabled = true
[[payments.packs]]
name = "small"
stars = 50
tokens = 100000
[[payments.packs]]
name = "large"
stars = 200
tokens = 500000
"#;

struct Shop {
    t: TestApp,
    tg: FakeTelegram,
    running: gptbot::app::Running,
    _stop: tokio_util::sync::DropGuard,
}

async fn shop() -> Shop {
    let tg = FakeTelegram::start().await;
    let t = spawn_app_with(
        Options::default()
            .memory_sessions()
            .telegram(&tg)
            .with("GPTBOT__QUOTA__DEFAULT_TOKENS", 1000)
            .with("GPTBOT__WEB__LISTEN", "127.0.0.1:0")
            .file(PACKS),
    )
    .await;
    let (stop, rx) = stopper();
    let running = t.app.start(rx).await.expect("the bot starts");
    Shop {
        t,
        tg,
        running,
        _stop: stop,
    }
}

impl Shop {
    fn say(&self, user: i64, text: &str) {
        self.tg
            .push_message(private_chat(user), user_json(user, "U"), text, None);
    }

    async fn wait_text(&self, user: i64, what: &str, seen: impl Fn(&str) -> bool) -> String {
        self.tg
            .wait_until(10, what, |_| self.tg.texts_in(user).iter().any(|t| seen(t)))
            .await;
        self.tg
            .texts_in(user)
            .into_iter()
            .rev()
            .find(|t| seen(t))
            .unwrap()
    }

    /// /buy <pack> → the invoice's payload.
    async fn invoice(&self, user: i64, pack: &str) -> serde_json::Value {
        let before = self.tg.invoices().len();
        self.say(user, &format!("/buy {pack}"));
        self.tg
            .wait_until(10, "the invoice", |_| self.tg.invoices().len() > before)
            .await;
        self.tg.invoices().pop().unwrap()
    }

    async fn balance(&self, user: i64) -> gptbot::quota::Balance {
        self.t.app.quota.balance(&tg_user(user)).await.unwrap()
    }
}

fn tg_user(id: i64) -> UserId {
    UserId::new(Platform::Telegram, id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_buys_a_pack_with_stars_and_it_is_granted_once() {
    let shop = shop().await;
    // /buy: the packs, a button each.
    shop.say(42, "/buy");
    shop.wait_text(42, "the packs", |t| t.starts_with("Token packs:"))
        .await;
    let listing = shop
        .tg
        .calls()
        .into_iter()
        .find(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Token packs:"))
        })
        .unwrap();
    let buttons = &listing.body["reply_markup"]["inline_keyboard"];
    assert_eq!(buttons[0][0]["callback_data"], "/buy small");
    assert_eq!(buttons[1][0]["callback_data"], "/buy large");

    // /buy small: an invoice in Stars at the pack's price.
    let invoice = shop.invoice(42, "small").await;
    assert_eq!(invoice["currency"], "XTR");
    assert_eq!(invoice["prices"][0]["amount"], 50);
    assert_eq!(invoice["chat_id"], 42);
    let payload = invoice["payload"].as_str().unwrap().to_string();
    assert!(invoice.get("provider_token").is_none_or(|t| t == ""));

    // Someone else, another amount, a forged payload: declined with a sentence.
    assert_eq!(
        shop.tg.pay(7, &payload, "XTR", 50).await,
        Paid::Declined("This invoice was made for someone else. Send /buy for your own.".into())
    );
    assert!(matches!(
        shop.tg.pay(42, &payload, "XTR", 1).await,
        Paid::Declined(_)
    ));
    assert_eq!(
        shop.tg.pay(42, "forged", "XTR", 50).await,
        Paid::Declined("This invoice has expired. Send /buy for a new one.".into())
    );
    assert_eq!(shop.balance(42).await.remaining, 1000);

    // Paid: 100,000 tokens more, a ledger entry naming the charge and the pack.
    let Paid::Charged(charge) = shop.tg.pay(42, &payload, "XTR", 50).await else {
        panic!("the bot declined its own invoice");
    };
    let thanks = shop
        .wait_text(42, "the thanks", |t| t.starts_with("Thank you!"))
        .await;
    assert_eq!(
        thanks,
        "Thank you! 100,000 tokens were added: you now have 101,000 tokens."
    );
    assert_eq!(shop.balance(42).await.remaining, 101_000);
    let quota = &shop.t.app.quota;
    let entry = quota
        .history(&tg_user(42), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(entry.kind, "purchase");
    assert_eq!(entry.note.unwrap(), format!("charge {charge}, pack small"));
    assert_books(quota, &tg_user(42)).await;

    // /usage marks the purchase on its day.
    shop.say(42, "/usage");
    let usage = shop
        .wait_text(42, "the usage chart", |t| {
            t.starts_with("Your tokens, last 14 days")
        })
        .await;
    assert!(usage.contains("· bought 100,000"), "{usage}");
    assert_eq!(usage.lines().count(), 16, "{usage}");

    // Telegram delivers the same payment again: nothing more is granted.
    shop.tg.deliver_payment(42, &payload, "XTR", 50, &charge);
    shop.tg
        .wait_until(10, "the second thanks", |_| {
            shop.tg
                .texts_in(42)
                .iter()
                .filter(|t| t.starts_with("Thank you!"))
                .count()
                == 2
        })
        .await;
    assert_eq!(shop.balance(42).await.remaining, 101_000);
    assert_eq!(quota.payments(None).await.unwrap().len(), 1);
    // And the paid invoice cannot be paid twice.
    assert_eq!(
        shop.tg.pay(42, &payload, "XTR", 50).await,
        Paid::Declined("This invoice is already paid.".into())
    );
    assert_books(quota, &tg_user(42)).await;

    // Refund after spending most of it: `gptbot payments refund` gives the Stars back and
    // takes what remains; a second refund is refused.
    let hold = quota.reserve(&tg_user(42), 95_000).await.unwrap();
    quota.settle(hold, 95_000).await.unwrap();
    let run = gptbot(&["payments", "refund", &charge], &shop.t.env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("took back 6000 of the pack's 100000 tokens"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("94000 of the pack's tokens had been spent"),
        "{}",
        run.stdout
    );
    assert!(shop.tg.refunded(&charge));
    assert_eq!(shop.balance(42).await.remaining, 0);
    assert_books(quota, &tg_user(42)).await;
    let again = gptbot(&["payments", "refund", &charge], &shop.t.env, "").await;
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("already refunded"),
        "{}",
        again.stderr
    );
    assert_eq!(shop.tg.refund_calls().len(), 1, "Telegram was asked twice");
    let list = gptbot(&["payments", "list", "telegram:42"], &shop.t.env, "").await;
    assert!(
        list.stdout.contains(&charge) && list.stdout.contains("refunded at"),
        "{}",
        list.stdout
    );
    // No secret in what the CLI printed.
    assert!(!format!("{}{}", run.stdout, run.stderr).contains(common::telegram::TOKEN));
}

/// An admin refunds from the chat (`/refund`, through the same admin service as the
/// command line); Telegram refusing a refund (a charge it does not know) leaves the
/// tokens with the user and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_telegram_refuses_leaves_the_tokens() {
    let shop = shop().await;
    let invoice = shop.invoice(43, "large").await;
    let payload = invoice["payload"].as_str().unwrap().to_string();
    // A payment Telegram itself has no record of (as after a mix-up of bots).
    shop.tg
        .deliver_payment(43, &payload, "XTR", 200, "unknown-charge");
    shop.wait_text(43, "the thanks", |t| t.starts_with("Thank you!"))
        .await;
    assert_eq!(shop.balance(43).await.remaining, 501_000);
    let run = gptbot(&["payments", "refund", "unknown-charge"], &shop.t.env, "").await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("Telegram refused the refund"),
        "{}",
        run.stderr
    );
    assert_eq!(shop.balance(43).await.remaining, 501_000);
    assert_books(&shop.t.app.quota, &tg_user(43)).await;

    // From the chat: a non-admin may not; the admin refunds a real payment.
    let invoice = shop.invoice(43, "small").await;
    let payload = invoice["payload"].as_str().unwrap().to_string();
    let Paid::Charged(charge) = shop.tg.pay(43, &payload, "XTR", 50).await else {
        panic!("declined");
    };
    shop.wait_text(43, "the second thanks", |t| t.contains("601,000 tokens"))
        .await;
    shop.say(43, &format!("/refund {charge}"));
    shop.wait_text(43, "the refusal", |t| t.contains("admins"))
        .await;
    shop.say(1, "/payments telegram:43");
    shop.wait_text(1, "the payments", |t| t.contains(&charge))
        .await;
    shop.say(1, &format!("/refund {charge}"));
    let said = shop
        .wait_text(1, "the refund", |t| t.starts_with("refunded 50 Stars"))
        .await;
    assert!(
        said.contains("took back 100000 of the pack's 100000 tokens"),
        "{said}"
    );
    assert!(shop.tg.refunded(&charge));
    assert_eq!(shop.balance(43).await.remaining, 501_000);
    assert_books(&shop.t.app.quota, &tg_user(43)).await;
}

/// A web user whose account a Telegram identity draws on (`/link`) buys from the web: the
/// bot makes an invoice link (`createInvoiceLink`) for that Telegram identity, and the
/// payment lands on the shared balance. Without a linked Telegram account, it says how.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_user_linked_with_telegram_buys_through_an_invoice_link() {
    let shop = shop().await;
    let quota = &shop.t.app.quota;
    let web = UserId::new(Platform::Web, "ann");
    let a = RecordingAdapter::new(4096, std::time::Duration::ZERO);
    let on_web = |text: &str| {
        let mut event = dm("ann", text);
        event.platform = Platform::Web;
        event
    };
    shop.t.send(&a, &on_web("/buy small")).await;
    assert!(a.last_message().contains("/link"), "{}", a.last_message());

    quota.balance(&web).await.unwrap();
    quota.balance(&tg_user(45)).await.unwrap();
    quota.link(&tg_user(45), &web).await.unwrap();
    shop.t.send(&a, &on_web("/buy small")).await;
    let said = a.last_message();
    assert!(said.contains("https://t.me/$invoice1"), "{said}");
    assert!(said.contains("telegram:45"), "{said}");
    let link = shop
        .tg
        .calls()
        .into_iter()
        .find(|c| c.method == "createinvoicelink")
        .expect("an invoice link was made");
    assert_eq!(link.body["currency"], "XTR");
    assert_eq!(link.body["prices"][0]["amount"], 50);
    let payload = link.body["payload"].as_str().unwrap().to_string();
    // Only the linked Telegram identity may pay it.
    assert!(matches!(
        shop.tg.pay(46, &payload, "XTR", 50).await,
        Paid::Declined(_)
    ));
    let Paid::Charged(_) = shop.tg.pay(45, &payload, "XTR", 50).await else {
        panic!("declined");
    };
    shop.wait_text(45, "the thanks", |t| t.starts_with("Thank you!"))
        .await;
    assert_eq!(quota.balance(&web).await.unwrap().remaining, 101_000);
    assert_books(quota, &web).await;
    assert_books(quota, &tg_user(45)).await;

    // An admin refunds it from the web admin page (the same admin service).
    let charge = quota.payments(Some(&web)).await.unwrap()[0]
        .charge_id
        .clone();
    gptbot::accounts::WebAccounts::new(shop.t.app.db.clone())
        .add("root", &secrecy::SecretString::from(common::web::PASSWORD))
        .await
        .unwrap();
    let mut root = common::web::client_at(shop.running.web_addr.unwrap());
    let csrf = root.logged_in("root").await;
    let done = root
        .post_form(
            "/admin/action",
            &[
                ("csrf", &csrf),
                ("op", "refund"),
                ("user", &charge),
                ("amount", ""),
            ],
        )
        .await;
    assert_eq!(done.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(shop.tg.refunded(&charge));
    assert_eq!(quota.balance(&web).await.unwrap().remaining, 1_000);
    assert_books(quota, &web).await;
}
