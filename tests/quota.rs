//! The quota ledger on a real SQLite file through the real migrations: reservations,
//! settlement, refunds, and the invariant under concurrency.

use std::time::Duration;

use gptbot::event::{Platform, UserId};
use gptbot::quota::{QuotaError, QuotaService};

async fn ledger(default_tokens: i64) -> (QuotaService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("quota.db").display());
    let quota = QuotaService::connect(&url, 8, default_tokens)
        .await
        .unwrap();
    quota.migrate().await.unwrap();
    (quota, dir)
}

fn user(id: &str) -> UserId {
    UserId::new(Platform::Discord, id)
}

#[tokio::test]
async fn the_database_is_created_in_wal_mode_with_the_schema() {
    let (quota, dir) = ledger(100).await;
    assert!(dir.path().join("quota.db").exists());
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(quota.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // The schema itself refuses a write that breaks the invariant.
    quota.balance(&user("x")).await.unwrap();
    let broken = sqlx::query("UPDATE quota_accounts SET remaining = remaining + 1")
        .execute(quota.pool())
        .await;
    assert!(
        broken.is_err(),
        "granted = remaining + reserved + used is not enforced"
    );
    // Migrating twice is harmless.
    quota.migrate().await.unwrap();
}

#[tokio::test]
async fn reserve_settle_and_refund_move_tokens_exactly() {
    let (quota, _dir) = ledger(1000).await;
    let u = user("1");
    let r = quota.reserve(&u, 300).await.unwrap();
    let b = quota.balance(&u).await.unwrap();
    assert_eq!((b.remaining, b.reserved, b.used), (700, 300, 0));

    let s = quota.settle(r, 120).await.unwrap();
    assert_eq!(s.charged, 120);
    let b = quota.balance(&u).await.unwrap();
    assert_eq!(
        (b.remaining, b.reserved, b.used, b.requests),
        (880, 0, 120, 1)
    );

    let r = quota.reserve(&u, 500).await.unwrap();
    quota.refund(r).await.unwrap();
    let b = quota.balance(&u).await.unwrap();
    assert_eq!((b.remaining, b.reserved, b.used), (880, 0, 120));

    // Usage above the reservation is taken from what remains, never below zero.
    let r = quota.reserve(&u, 100).await.unwrap();
    let s = quota.settle(r, 150).await.unwrap();
    assert_eq!((s.charged, s.remaining), (150, Some(730)));
    let r = quota.reserve(&u, 700).await.unwrap();
    let s = quota.settle(r, 5000).await.unwrap();
    assert_eq!((s.charged, s.remaining), (730, Some(0)));
    let b = quota.balance(&u).await.unwrap();
    assert_eq!(b.granted, b.remaining + b.reserved + b.used);
    assert_eq!(b.used, 1000);
}

#[tokio::test]
async fn exhausted_reports_what_is_left_and_changes_nothing() {
    let (quota, _dir) = ledger(50).await;
    let u = user("2");
    match quota.reserve(&u, 51).await {
        Err(QuotaError::Exhausted { remaining, needed }) => {
            assert_eq!((remaining, needed), (50, 51))
        }
        other => panic!("{:?}", other.map(|r| r.amount())),
    }
    let b = quota.balance(&u).await.unwrap();
    assert_eq!((b.remaining, b.reserved, b.used), (50, 0, 0));
    // Zero means zero, not unlimited.
    let (zero, _dir2) = ledger(0).await;
    assert!(matches!(
        zero.reserve(&u, 1).await,
        Err(QuotaError::Exhausted { remaining: 0, .. })
    ));
}

#[tokio::test]
async fn a_dropped_reservation_is_refunded() {
    let (quota, _dir) = ledger(1000).await;
    let u = user("3");
    {
        let _held = quota.reserve(&u, 400).await.unwrap();
        assert_eq!(quota.balance(&u).await.unwrap().reserved, 400);
    }
    for _ in 0..100 {
        if quota.balance(&u).await.unwrap().reserved == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b = quota.balance(&u).await.unwrap();
    assert_eq!((b.remaining, b.reserved), (1000, 0));
}

#[tokio::test]
async fn grants_add_and_take_but_never_below_zero() {
    let (quota, _dir) = ledger(100).await;
    let u = user("4");
    let b = quota.grant(&u, 900).await.unwrap();
    assert_eq!((b.granted, b.remaining), (1000, 1000));
    let b = quota.grant(&u, -400).await.unwrap();
    assert_eq!((b.granted, b.remaining), (600, 600));
    assert!(matches!(
        quota.grant(&u, -601).await,
        Err(QuotaError::Invalid(_))
    ));
    assert_eq!(quota.balance(&u).await.unwrap().remaining, 600);
}

#[tokio::test]
async fn recovery_returns_reservations_left_by_a_crash() {
    let (quota, _dir) = ledger(1000).await;
    let u = user("5");
    let held = quota.reserve(&u, 250).await.unwrap();
    std::mem::forget(held); // as if the process died mid-call
    assert_eq!(quota.recover_stale_reservations().await.unwrap(), 1);
    let b = quota.balance(&u).await.unwrap();
    assert_eq!((b.remaining, b.reserved), (1000, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_invariant_holds_under_concurrent_traffic() {
    let (quota, _dir) = ledger(5_000).await;
    let users: Vec<UserId> = (0..3).map(|i| user(&i.to_string())).collect();
    let tasks: Vec<_> = (0..60)
        .map(|t| {
            let quota = quota.clone();
            let u = users[t % 3].clone();
            tokio::spawn(async move {
                let mut spent = 0i64;
                for i in 0..20 {
                    let amount = 100 + ((t * 7 + i * 13) % 300) as i64;
                    match quota.reserve(&u, amount).await {
                        Ok(r) => {
                            if (t + i) % 4 == 0 {
                                quota.refund(r).await.unwrap();
                            } else {
                                let used = amount / 2 + (i as i64 % 3);
                                spent += quota.settle(r, used).await.unwrap().charged;
                            }
                        }
                        Err(QuotaError::Exhausted { remaining, .. }) => assert!(remaining >= 0),
                        Err(e) => panic!("{e}"),
                    }
                }
                (t % 3, spent)
            })
        })
        .collect();
    let mut spent = [0i64; 3];
    for t in tasks {
        let (u, s) = t.await.unwrap();
        spent[u] += s;
    }
    for (i, u) in users.iter().enumerate() {
        let b = quota.balance(u).await.unwrap();
        assert_eq!(b.reserved, 0);
        assert!(b.remaining >= 0);
        assert_eq!(b.granted, 5_000);
        assert_eq!(b.granted, b.remaining + b.used, "{b:?}");
        assert_eq!(b.used, spent[i], "the ledger and the charges disagree");
    }
}
