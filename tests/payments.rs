//! Telegram Stars top-ups in the ledger, on SQLite and on PostgreSQL (`both!`), through
//! the real migrations: an invoice under the bot's own payload, the pre-checkout checks,
//! a payment granted exactly once per charge id, refunds that never go below zero, and
//! the books' invariant after each step.

mod common;

use common::ledger::{assert_books, open};
use gptbot::config::{Pack, PaymentSettings};
use gptbot::core::event::{Platform, UserId};
use gptbot::quota::payments::Declined;
use gptbot::quota::{QuotaError, QuotaPlan};

fn tg(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

fn packs() -> PaymentSettings {
    PaymentSettings {
        enabled: true,
        packs: vec![
            Pack {
                name: "small".into(),
                stars: 50,
                tokens: 100_000,
            },
            Pack {
                name: "large".into(),
                stars: 200,
                tokens: 500_000,
            },
        ],
    }
}

async fn a_payment_is_granted_once_and_refunded_down_to_what_remains() {
    let (quota, _guard) = open(QuotaPlan::fixed(1_000)).await;
    let buyer = tg("42");
    quota.balance(&buyer).await.unwrap();
    let settings = packs();
    let invoice = quota
        .open_invoice(&buyer, settings.pack("small").unwrap())
        .await
        .unwrap();
    assert_eq!((invoice.stars, invoice.tokens), (50, 100_000));
    assert!(invoice.payload.len() >= 16 && invoice.payload.len() <= 128);

    // Pre-checkout: only this buyer, this currency and this amount.
    let check = |payload: &str, who: &UserId, currency: &str, amount: i64| {
        let (quota, settings) = (&quota, &settings);
        let (payload, who, currency) = (payload.to_string(), who.clone(), currency.to_string());
        async move {
            quota
                .check_invoice(&payload, &who, &currency, amount, settings)
                .await
                .unwrap()
        }
    };
    assert_eq!(check(&invoice.payload, &buyer, "XTR", 50).await, Ok(()));
    assert_eq!(
        check("forged-payload", &buyer, "XTR", 50).await,
        Err(Declined::Unknown)
    );
    assert_eq!(
        check(&invoice.payload, &buyer, "XTR", 1).await,
        Err(Declined::Mismatch)
    );
    assert_eq!(
        check(&invoice.payload, &buyer, "USD", 50).await,
        Err(Declined::Mismatch)
    );
    assert_eq!(
        check(&invoice.payload, &tg("7"), "XTR", 50).await,
        Err(Declined::NotBuyer)
    );

    // Paid: the pack's tokens once, however often the update comes.
    let first = quota
        .record_payment(&invoice.payload, "charge-1", &buyer, 50)
        .await
        .unwrap();
    assert!(first.granted);
    assert_eq!(first.balance.remaining, 101_000);
    let again = quota
        .record_payment(&invoice.payload, "charge-1", &buyer, 50)
        .await
        .unwrap();
    assert!(!again.granted);
    assert_eq!(quota.balance(&buyer).await.unwrap().remaining, 101_000);
    assert_books(&quota, &buyer).await;
    let entry = quota.history(&buyer, 10).await.unwrap().pop().unwrap();
    assert_eq!(entry.kind, "purchase");
    assert_eq!(entry.d_granted, 100_000);
    assert_eq!(entry.note.as_deref(), Some("charge charge-1, pack small"));
    // A paid invoice cannot be paid again.
    assert_eq!(
        check(&invoice.payload, &buyer, "XTR", 50).await,
        Err(Declined::Used)
    );

    // Spend most of it, then refund: what remains is taken, never below zero.
    let hold = quota.reserve(&buyer, 90_000).await.unwrap();
    quota.settle(hold, 90_000).await.unwrap();
    let refunded = quota.refund_payment("charge-1").await.unwrap();
    assert_eq!(refunded.refunded_tokens, Some(11_000));
    let b = quota.balance(&buyer).await.unwrap();
    assert_eq!(b.remaining, 0);
    assert_books(&quota, &buyer).await;
    // /usage: the purchase and the refund, each on its own.
    let today = quota.usage_by_day(&buyer, 1).await.unwrap().pop().unwrap();
    assert_eq!((today.bought, today.refunded), (100_000, 11_000));
    // Twice: refused, nothing moves.
    assert!(matches!(
        quota.refund_payment("charge-1").await,
        Err(QuotaError::Invalid(_))
    ));
    assert!(matches!(
        quota.refund_payment("no-such-charge").await,
        Err(QuotaError::Invalid(_))
    ));
    // Telegram refused the refund: the tokens come back.
    quota.unrefund_payment("charge-1").await.unwrap();
    assert_eq!(quota.balance(&buyer).await.unwrap().remaining, 11_000);
    let today = quota.usage_by_day(&buyer, 1).await.unwrap().pop().unwrap();
    assert_eq!((today.bought, today.refunded), (100_000, 0));
    assert_books(&quota, &buyer).await;
    let listed = quota.payments(Some(&buyer)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].refunded_at, None);
    assert!(quota.payments(Some(&tg("7"))).await.unwrap().is_empty());
}

/// A buyer linked to an account on another platform buys for the shared balance.
async fn a_linked_buyer_pays_into_the_shared_balance() {
    let (quota, _guard) = open(QuotaPlan::fixed(1_000)).await;
    let owner = UserId::new(Platform::Web, "ann");
    let buyer = tg("43");
    quota.balance(&owner).await.unwrap();
    quota.balance(&buyer).await.unwrap();
    quota.link(&buyer, &owner).await.unwrap();
    let invoice = quota
        .open_invoice(&buyer, packs().pack("large").unwrap())
        .await
        .unwrap();
    let recorded = quota
        .record_payment(&invoice.payload, "charge-2", &buyer, 200)
        .await
        .unwrap();
    assert!(recorded.granted);
    assert_eq!(quota.balance(&owner).await.unwrap().remaining, 501_000);
    assert_eq!(quota.balance(&buyer).await.unwrap().remaining, 1_000);
    assert_books(&quota, &owner).await;
    assert_books(&quota, &buyer).await;
    let payment = quota.payment("charge-2").await.unwrap().unwrap();
    assert_eq!(payment.account(), Some(owner));
    assert_eq!(payment.buyer, "43");
}

/// Two replicas on one PostgreSQL both see the same `successful_payment` at once: the
/// charge id's uniqueness grants it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_recording_one_charge_at_once_grant_it_once() {
    let pg = common::postgres::PostgresServer::start();
    let url = pg.database("payments").await;
    let plan = QuotaPlan::fixed(1_000);
    let a = common::ledger::ledger_on(&url, plan, std::time::Duration::from_secs(5)).await;
    let b = common::ledger::ledger_on(&url, plan, std::time::Duration::from_secs(5)).await;
    let buyer = tg("44");
    a.balance(&buyer).await.unwrap();
    for round in 0..10 {
        let invoice = a
            .open_invoice(&buyer, packs().pack("small").unwrap())
            .await
            .unwrap();
        let charge = format!("charge-{round}");
        let (x, y) = tokio::join!(
            a.record_payment(&invoice.payload, &charge, &buyer, 50),
            b.record_payment(&invoice.payload, &charge, &buyer, 50),
        );
        let granted = [x.unwrap().granted, y.unwrap().granted];
        assert_eq!(
            granted.iter().filter(|g| **g).count(),
            1,
            "round {round}: {granted:?}"
        );
    }
    assert_eq!(
        a.balance(&buyer).await.unwrap().remaining,
        1_000 + 10 * 100_000
    );
    assert_books(&a, &buyer).await;
}

both!(
    a_payment_is_granted_once_and_refunded_down_to_what_remains,
    a_linked_buyer_pays_into_the_shared_balance,
);
