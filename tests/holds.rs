//! Holds with leases, on SQLite and on PostgreSQL: a hold whose process died is returned
//! by another process's sweep once its lease ran out, a live (renewed) hold never is, a
//! settle arriving after the sweep is charged late from what is left, an operator can
//! release a hold by hand, and settle rides out a database locked for longer than its
//! busy timeout. Every test ends with the books exact.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ledger::{Guard, ManualClock, assert_books, database, ledger_on};
use gptbot::core::event::{Platform, UserId};
use gptbot::quota::{QuotaPlan, QuotaService};

const LEASE: Duration = Duration::from_secs(120);

/// Two processes ("replicas") on one fresh database, sharing a clock the test moves.
async fn two_processes(tokens: i64) -> (QuotaService, QuotaService, Arc<ManualClock>, Guard) {
    let (url, guard) = database().await;
    let clock = ManualClock::at(2026, 11, 30, 12, 0, 0);
    let open = || async {
        ledger_on(&url, QuotaPlan::fixed(tokens), Duration::from_secs(5))
            .await
            .with_clock(clock.clone())
            .with_lease(LEASE)
    };
    let a = open().await;
    let b = open().await;
    (a, b, clock, guard)
}

fn user(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

async fn kinds(quota: &QuotaService, u: &UserId) -> Vec<String> {
    let entries = quota.history(u, 100).await.unwrap();
    entries.into_iter().map(|e| e.kind).collect()
}

async fn a_killed_process_hold_is_swept_by_another_after_its_lease() {
    let (a, b, clock, _db) = two_processes(1000).await;
    let u = user("1");
    let held = a.reserve(&u, 300).await.unwrap();
    // Process A dies mid-answer: nothing settles, refunds or renews this hold.
    std::mem::forget(held);
    assert_eq!(
        b.sweep().await.unwrap(),
        0,
        "swept before the lease ran out"
    );
    assert_eq!(b.balance(&u).await.unwrap().reserved, 300);
    assert_eq!(b.holds().await.unwrap().len(), 1);
    assert_books(&b, &u).await;

    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(b.sweep().await.unwrap(), 1);
    assert_eq!(b.sweep().await.unwrap(), 0, "swept twice");
    let balance = b.balance(&u).await.unwrap();
    assert_eq!(
        (balance.remaining, balance.reserved, balance.used),
        (1000, 0, 0)
    );
    assert!(b.holds().await.unwrap().is_empty());
    assert_eq!(kinds(&b, &u).await.last().unwrap(), "expire");
    assert_books(&b, &u).await;
}

async fn a_renewed_hold_is_never_swept_and_settles_normally() {
    let (a, b, clock, _db) = two_processes(1000).await;
    let u = user("2");
    let held = a.reserve(&u, 400).await.unwrap();
    // A long answer: the lease is renewed while it lasts, well past one lease.
    for _ in 0..4 {
        clock.advance(LEASE / 2);
        a.renew().await.unwrap();
        assert_eq!(b.sweep().await.unwrap(), 0, "a live hold was swept");
    }
    let settled = a.settle(held, 150).await.unwrap();
    assert_eq!(settled.charged, 150);
    let balance = a.balance(&u).await.unwrap();
    assert_eq!((balance.remaining, balance.used), (850, 150));
    assert_books(&a, &u).await;
}

async fn a_settle_after_the_sweep_is_charged_late_never_below_zero() {
    let (a, b, clock, _db) = two_processes(1000).await;
    let u = user("3");
    // A cannot reach the database to renew (or stalls) past the lease: B sweeps.
    let first = a.reserve(&u, 800).await.unwrap();
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(b.sweep().await.unwrap(), 1);
    // The tokens are spendable again; meanwhile the user spends most of them via B.
    let other = b.reserve(&u, 900).await.unwrap();
    // A's settle finally arrives: it charges what was used, from what is left.
    let late = a.settle(first, 300).await.unwrap();
    assert_eq!(late.charged, 100, "charged beyond the balance");
    assert_eq!(late.remaining, Some(0));
    b.settle(other, 900).await.unwrap();
    let balance = a.balance(&u).await.unwrap();
    assert_eq!(
        (balance.remaining, balance.reserved, balance.used),
        (0, 0, 1000)
    );
    let kinds = kinds(&a, &u).await;
    assert!(kinds.contains(&"expire".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"late_settle".to_string()), "{kinds:?}");
    assert_books(&a, &u).await;
}

async fn an_operator_releases_a_hold_by_hand_and_it_is_returned_once() {
    let (a, b, _clock, _db) = two_processes(1000).await;
    let u = user("4");
    let held = a.reserve(&u, 250).await.unwrap();
    let holds = b.holds().await.unwrap();
    assert_eq!(holds.len(), 1);
    let hold = &holds[0];
    assert_eq!(
        (hold.id, hold.user_id.as_str(), hold.amount),
        (held.id(), "4", 250)
    );
    assert!(hold.owner.contains(&std::process::id().to_string()));
    assert!(b.release(hold.id).await.unwrap());
    assert!(!b.release(hold.id).await.unwrap(), "released twice");
    // The answer then fails: its refund finds the hold closed and returns nothing more.
    a.refund(held).await.unwrap();
    let balance = a.balance(&u).await.unwrap();
    assert_eq!((balance.remaining, balance.reserved), (1000, 0));
    assert_eq!(kinds(&a, &u).await.last().unwrap(), "release");
    assert_books(&a, &u).await;
}

/// Every entry a reservation makes (reserve, settle, refund, expiry) names its model;
/// grants name none.
async fn ledger_entries_name_the_model_of_each_hold() {
    let (a, b, clock, _db) = two_processes(10_000).await;
    let u = user("9");
    let held = a.reserve_for(&u, 300, Some("big")).await.unwrap();
    a.settle(held, 120).await.unwrap();
    let held = a.reserve_for(&u, 200, Some("small")).await.unwrap();
    a.refund(held).await.unwrap();
    let held = a.reserve_for(&u, 100, Some("big")).await.unwrap();
    std::mem::forget(held);
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(b.sweep().await.unwrap(), 1);
    let held = a.reserve(&u, 50).await.unwrap();
    a.settle(held, 50).await.unwrap();
    let entries: Vec<(String, Option<String>)> = b
        .history(&u, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.note))
        .collect();
    let note = |kind: &str, model: Option<&str>| (kind.to_string(), model.map(str::to_string));
    assert_eq!(
        entries,
        [
            note("grant", None),
            note("reserve", Some("big")),
            note("settle", Some("big")),
            note("reserve", Some("small")),
            note("refund", Some("small")),
            note("reserve", Some("big")),
            note("expire", Some("big")),
            note("reserve", None),
            note("settle", None),
        ]
    );
    assert_books(&b, &u).await;
}

both!(
    ledger_entries_name_the_model_of_each_hold,
    a_killed_process_hold_is_swept_by_another_after_its_lease,
    a_renewed_hold_is_never_swept_and_settles_normally,
    a_settle_after_the_sweep_is_charged_late_never_below_zero,
    an_operator_releases_a_hold_by_hand_and_it_is_returned_once,
);

/// SQLite locked by another connection for longer than `busy_timeout` while an answer
/// settles: the settle is retried until the lock goes, and charges exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_rides_out_a_sqlite_lock_longer_than_the_busy_timeout() {
    use sqlx::Connection;
    let (url, _db) = database().await;
    let quota = ledger_on(&url, QuotaPlan::fixed(1000), Duration::from_millis(100)).await;
    let u = user("5");
    let held = quota.reserve(&u, 500).await.unwrap();
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let settling = {
        let quota = quota.clone();
        tokio::spawn(async move { quota.settle(held, 200).await })
    };
    // Many busy timeouts pass: without retries the settle would have failed by now.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !settling.is_finished(),
        "settle gave up while the lock was held"
    );
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let settled = settling.await.unwrap().unwrap();
    assert_eq!(settled.charged, 200);
    let balance = quota.balance(&u).await.unwrap();
    assert_eq!(
        (balance.remaining, balance.reserved, balance.used),
        (800, 0, 200)
    );
    assert_books(&quota, &u).await;
}
