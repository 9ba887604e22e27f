//! The quota ledger on a real SQLite file through the real migrations: reservations,
//! settlement, refunds, and the invariant under concurrency.

//!
//! Every test body runs twice: on a SQLite file and on a real PostgreSQL server (see
//! `both!` at the end), through the same migrations as production.

mod common;

use std::time::Duration;

use gptbot::core::event::{Platform, UserId};
use gptbot::db::Db;
use gptbot::quota::{QuotaError, QuotaPlan, QuotaService};

use common::ledger::{Guard, ManualClock, assert_books, open};

async fn ledger(default_tokens: i64) -> (QuotaService, Guard) {
    open(QuotaPlan::fixed(default_tokens)).await
}

fn user(id: &str) -> UserId {
    UserId::new(Platform::Discord, id)
}

#[tokio::test]
async fn the_database_is_created_in_wal_mode_with_the_schema() {
    let (quota, dir) = ledger(100).await;
    let Guard::Dir(dir) = dir else { unreachable!() };
    assert!(dir.path().join("quota.db").exists());
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(quota.db().sqlite().unwrap())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // The schema itself refuses a write that breaks the invariant.
    quota.balance(&user("x")).await.unwrap();
    let broken = sqlx::query("UPDATE quota_accounts SET remaining = remaining + 1")
        .execute(quota.db().sqlite().unwrap())
        .await;
    assert!(
        broken.is_err(),
        "granted = remaining + reserved + used is not enforced"
    );
    // Migrating twice is harmless.
    quota.db().migrate().await.unwrap();
}

/// An account this process has seen that disappears from the database (a restore from
/// a backup, a failover that lost the last commits) is opened again on the next
/// message, not refused until a restart.
#[tokio::test]
async fn an_account_lost_by_the_database_is_opened_again() {
    let (quota, _dir) = ledger(1000).await;
    let u = user("lost");
    let held = quota.reserve(&u, 100).await.unwrap();
    quota.settle(held, 40).await.unwrap();
    for table in ["quota_holds", "quota_ledger", "quota_accounts"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(quota.db().sqlite().unwrap())
            .await
            .unwrap();
    }
    let held = quota
        .reserve(&u, 100)
        .await
        .expect("the account is opened again");
    quota.settle(held, 10).await.unwrap();
    let b = quota.balance(&u).await.unwrap();
    assert_eq!((b.granted, b.used, b.remaining), (1000, 10, 990));
    assert_books(&quota, &u).await;
}

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

// ------------------------------------------------------------------ plans and the ledger

use gptbot::quota::Refill;
use std::sync::Arc;

async fn planned(plan: QuotaPlan, clock: Arc<ManualClock>) -> (QuotaService, Guard) {
    let (quota, guard) = open(plan).await;
    (quota.with_clock(clock), guard)
}

fn plan(refill: Refill, default_tokens: i64, refill_tokens: i64) -> QuotaPlan {
    QuotaPlan {
        default_tokens,
        refill,
        refill_tokens,
        ..QuotaPlan::fixed(default_tokens)
    }
}

async fn spend(quota: &QuotaService, u: &UserId, n: i64) {
    let r = quota.reserve(u, n).await.unwrap();
    quota.settle(r, n).await.unwrap();
}

async fn daily_refills_happen_once_per_utc_day() {
    let clock = ManualClock::at(2026, 11, 27, 10, 0, 0);
    let (quota, _dir) = planned(plan(Refill::Daily, 100, 1000), clock.clone()).await;
    let u = user("d");
    // A new account starts with the default grant, which counts as today's refill.
    assert_eq!(quota.balance(&u).await.unwrap().remaining, 100);
    spend(&quota, &u, 60).await;
    clock.set(2026, 11, 27, 23, 59, 59);
    assert_eq!(
        quota.balance(&u).await.unwrap().remaining,
        40,
        "refilled before midnight"
    );

    clock.set(2026, 11, 28, 0, 0, 0);
    assert_eq!(quota.balance(&u).await.unwrap().remaining, 1000);
    spend(&quota, &u, 300).await;
    clock.set(2026, 11, 28, 18, 0, 0);
    assert_eq!(
        quota.balance(&u).await.unwrap().remaining,
        700,
        "refilled twice in a day"
    );

    // A balance above the refill level (an admin's grant) is kept, not cut.
    quota.grant(&u, 5000).await.unwrap();
    clock.set(2026, 11, 29, 0, 0, 1);
    assert_eq!(quota.balance(&u).await.unwrap().remaining, 5700);
    let refills = quota
        .history(&u, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "refill")
        .count();
    assert_eq!(refills, 1, "only the 28th needed a top-up");
    assert_books(&quota, &u).await;
}

async fn weekly_and_monthly_refills_follow_calendar_boundaries() {
    // Sunday 2026-11-29 → Monday 2026-11-30 starts a new ISO week.
    let clock = ManualClock::at(2026, 11, 29, 12, 0, 0);
    let (quota, _dir) = planned(plan(Refill::Weekly, 10, 500), clock.clone()).await;
    let u = user("w");
    spend(&quota, &u, 10).await;
    clock.set(2026, 11, 29, 23, 59, 59);
    assert_eq!(quota.balance(&u).await.unwrap().remaining, 0);
    clock.set(2026, 11, 30, 0, 0, 0);
    assert_eq!(quota.balance(&u).await.unwrap().remaining, 500);

    let clock = ManualClock::at(2026, 12, 31, 23, 0, 0);
    let (quota, _dir) = planned(plan(Refill::Monthly, 0, 2000), clock.clone()).await;
    let u = user("m");
    assert_eq!(quota.balance(&u).await.unwrap().remaining, 0);
    assert!(matches!(
        quota.reserve(&u, 1).await,
        Err(QuotaError::Exhausted { remaining: 0, .. })
    ));
    clock.set(2027, 1, 1, 0, 0, 0);
    assert_eq!(quota.balance(&u).await.unwrap().remaining, 2000);
    assert_books(&quota, &u).await;
}

async fn a_refill_is_applied_exactly_once_under_concurrency() {
    let clock = ManualClock::at(2026, 11, 27, 9, 0, 0);
    let (quota, _dir) = planned(plan(Refill::Daily, 0, 1000), clock.clone()).await;
    let u = user("c");
    quota.balance(&u).await.unwrap();
    clock.set(2026, 11, 28, 0, 0, 0);
    // Separate services (like replicas) share the database but not the in-process cache.
    let services: Vec<QuotaService> = (0..4).map(|_| quota.clone()).collect();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let q = services[i % 4].clone();
            let u = u.clone();
            tokio::spawn(async move {
                if let Ok(r) = q.reserve(&u, 10).await {
                    q.settle(r, 10).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let b = quota.balance(&u).await.unwrap();
    assert_eq!(b.granted, 1000);
    assert_eq!(b.used, 400);
    let refills = quota
        .history(&u, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "refill")
        .count();
    assert_eq!(refills, 1);
}

async fn per_user_overrides_unlimited_and_zero() {
    let clock = ManualClock::at(2026, 11, 27, 9, 0, 0);
    let (quota, _dir) = planned(plan(Refill::Daily, 100, 1000), clock.clone()).await;
    let vip = user("vip");
    quota.set_refill(&vip, Some(5000)).await.unwrap();
    clock.set(2026, 11, 28, 9, 0, 0);
    assert_eq!(
        quota.balance(&vip).await.unwrap().remaining,
        5000,
        "the user's own refill applies"
    );
    quota.set_refill(&vip, None).await.unwrap();

    // Unlimited: nothing is held, usage is still counted exactly.
    let boss = user("boss");
    let b = quota.set_quota(&boss, None).await.unwrap();
    assert!(b.unlimited);
    let r = quota.reserve(&boss, 1_000_000).await.unwrap();
    assert_eq!(quota.balance(&boss).await.unwrap().reserved, 0);
    assert_eq!(quota.settle(r, 777).await.unwrap().charged, 777);
    let b = quota.balance(&boss).await.unwrap();
    assert_eq!((b.used, b.remaining, b.requests), (777, 100, 1));
    assert_books(&quota, &boss).await;

    // A quota of 0 is 0: nothing can be reserved, and it is not refilled the same day.
    let b = quota.set_quota(&boss, Some(0)).await.unwrap();
    assert!(!b.unlimited);
    assert!(matches!(
        quota.reserve(&boss, 1).await,
        Err(QuotaError::Exhausted { remaining: 0, .. })
    ));
    assert_books(&quota, &boss).await;
    let kinds: Vec<String> = quota
        .history(&boss, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"adjust".to_string()), "{kinds:?}");
}

mod ledger_property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Spend { reserve: i64, used: i64 },
        Fail { reserve: i64 },
        Grant(i64),
        SetQuota(Option<i64>),
        SetRefill(Option<i64>),
        NextDay,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1i64..400, 0i64..600).prop_map(|(reserve, used)| Op::Spend { reserve, used }),
            2 => (1i64..400).prop_map(|reserve| Op::Fail { reserve }),
            2 => (-300i64..600).prop_map(Op::Grant),
            1 => prop_oneof![Just(None), (0i64..2000).prop_map(Some)].prop_map(Op::SetQuota),
            1 => prop_oneof![Just(None), (0i64..2000).prop_map(Some)].prop_map(Op::SetRefill),
            1 => Just(Op::NextDay),
        ]
    }

    /// Applies `ops` to one account, checking the bounds after each, then that the ledger
    /// explains the account exactly.
    async fn apply(quota: &QuotaService, clock: &ManualClock, ops: Vec<Op>) {
        let u = user("p");
        for op in ops {
            match op {
                Op::Spend { reserve, used } => {
                    if let Ok(r) = quota.reserve(&u, reserve).await {
                        quota.settle(r, used).await.unwrap();
                    }
                }
                Op::Fail { reserve } => {
                    if let Ok(r) = quota.reserve(&u, reserve).await {
                        quota.refund(r).await.unwrap();
                    }
                }
                Op::Grant(n) => {
                    let _ = quota.grant(&u, n).await;
                }
                Op::SetQuota(n) => {
                    quota.set_quota(&u, n).await.unwrap();
                }
                Op::SetRefill(n) => {
                    quota.set_refill(&u, n).await.unwrap();
                }
                Op::NextDay => clock.advance_days(1),
            }
            let b = quota.balance(&u).await.unwrap();
            assert!(b.remaining >= 0 && b.reserved == 0);
        }
        assert_books(quota, &u).await;
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 24,
            failure_persistence: None,
            .. ProptestConfig::default()
        })]

        /// After any sequence of operations, the ledger entries sum to the account.
        #[test]
        fn ledger_entries_sum_to_the_balance(ops in proptest::collection::vec(op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let clock = ManualClock::at(2026, 11, 27, 12, 0, 0);
                let (quota, _dir) = planned(plan(Refill::Daily, 500, 800), clock.clone()).await;
                apply(&quota, &clock, ops).await;
            });
        }
    }

    /// The same property on PostgreSQL: one server, a fresh database per case.
    #[test]
    fn ledger_entries_sum_to_the_balance_on_postgres() {
        use proptest::test_runner::{Config, TestRunner};
        let pg = common::postgres::PostgresServer::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cases = std::sync::atomic::AtomicUsize::new(0);
        let mut runner = TestRunner::new(Config {
            cases: 12,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&proptest::collection::vec(op(), 1..30), |ops| {
                rt.block_on(async {
                    let n = cases.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let url = pg.database(&format!("prop{n}")).await;
                    let clock = ManualClock::at(2026, 11, 27, 12, 0, 0);
                    let db = Db::connect(&url, 4).await.unwrap();
                    db.migrate().await.unwrap();
                    let quota = QuotaService::new(db, plan(Refill::Daily, 500, 800))
                        .with_clock(clock.clone());
                    apply(&quota, &clock, ops).await;
                });
                Ok(())
            })
            .unwrap();
    }
}

/// The admin page's listing: most used first, in pages, searched by a part of
/// `platform:user` ignoring case, with `_` and `%` matching only themselves.
async fn accounts_are_listed_in_pages_and_found_by_a_part_of_their_name() {
    let (quota, _dir) = ledger(1000).await;
    for i in 0..25 {
        let r = quota.reserve(&user(&format!("u{i:02}")), 10).await.unwrap();
        quota.settle(r, i).await.unwrap();
    }
    for id in ["A_b", "axb", "100%"] {
        quota.balance(&user(id)).await.unwrap();
    }
    let first = quota.accounts("", 0, 10).await.unwrap();
    assert_eq!(first.total, 28);
    let names: Vec<String> = first.accounts.iter().map(|(u, _)| u.to_string()).collect();
    assert_eq!(names[0], "discord:u24", "most used first: {names:?}");
    assert_eq!(names.len(), 10);
    let last = quota.accounts("", 20, 10).await.unwrap();
    assert_eq!((last.accounts.len(), last.total), (8, 28));
    let all: std::collections::HashSet<String> = [0, 10, 20]
        .into_iter()
        .map(|offset| quota.accounts("", offset, 10))
        .collect::<futures::future::JoinAll<_>>()
        .await
        .into_iter()
        .flat_map(|page| page.unwrap().accounts)
        .map(|(u, _)| u.to_string())
        .collect();
    assert_eq!(all.len(), 28, "pages overlap or skip: {all:?}");

    let found = quota.accounts("DISCORD:U1", 0, 10).await.unwrap();
    assert_eq!(found.total, 10, "u10..u19");
    let underscore = quota.accounts("a_b", 0, 10).await.unwrap();
    let names: Vec<String> = underscore
        .accounts
        .iter()
        .map(|(u, _)| u.to_string())
        .collect();
    assert_eq!(names, ["discord:A_b"]);
    assert_eq!(quota.accounts("0%", 0, 10).await.unwrap().total, 1);
    assert_eq!(quota.accounts("nobody", 0, 10).await.unwrap().total, 0);
}

both!(
    accounts_are_listed_in_pages_and_found_by_a_part_of_their_name,
    reserve_settle_and_refund_move_tokens_exactly,
    exhausted_reports_what_is_left_and_changes_nothing,
    a_dropped_reservation_is_refunded,
    grants_add_and_take_but_never_below_zero,
    the_invariant_holds_under_concurrent_traffic,
    daily_refills_happen_once_per_utc_day,
    weekly_and_monthly_refills_follow_calendar_boundaries,
    a_refill_is_applied_exactly_once_under_concurrency,
    per_user_overrides_unlimited_and_zero,
);
