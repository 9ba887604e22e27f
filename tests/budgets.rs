//! Group budgets in the ledger, on SQLite and on PostgreSQL (`both!`), through the real
//! migrations: a wallet funded from a group admin's balance (never below zero) or granted
//! by a bot admin, never refilled; members' questions held on it first, each member
//! within the group's daily share (what is held counts until it is settled); an empty
//! wallet or a spent share sends members to their own balance, or refuses them. The
//! books' invariant after each step, for the wallet and every member.

mod common;

use std::sync::Arc;

use common::ledger::{ManualClock, assert_books, open};
use gptbot::config::Refill;
use gptbot::core::budget::WhenEmpty;
use gptbot::core::event::{Platform, UserId};
use gptbot::quota::{Funding, Payer, QuotaError, QuotaPlan, QuotaService, WalletShort};

fn tg(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

fn wallet() -> UserId {
    QuotaService::wallet_account(Platform::Telegram, "-100", None)
}

async fn payer(quota: &QuotaService, member: &str) -> Payer {
    Payer {
        member: tg(member),
        name: format!("Member {member}"),
        wallet: quota
            .wallet_for(Platform::Telegram, "-100", None)
            .await
            .unwrap(),
    }
}

async fn books(quota: &QuotaService, accounts: &[&UserId]) {
    for account in accounts {
        assert_books(quota, account).await;
    }
}

async fn a_wallet_is_funded_from_an_admins_balance_or_granted_and_never_refilled() {
    let clock = ManualClock::at(2026, 12, 5, 10, 0, 0);
    let plan = QuotaPlan {
        refill: Refill::Daily,
        refill_tokens: 10_000,
        ..QuotaPlan::fixed(10_000)
    };
    let (quota, _guard) = open(plan).await;
    let quota = quota.with_clock(clock.clone() as Arc<dyn gptbot::quota::Clock>);
    let (admin, bot_admin, w) = (tg("7"), tg("1"), wallet());
    assert_eq!(
        quota
            .wallet_for(Platform::Telegram, "-100", None)
            .await
            .unwrap(),
        None,
        "no wallet until one is funded"
    );

    let b = quota
        .fund_wallet(&w, Funding::Balance(&admin), 4_000)
        .await
        .unwrap();
    assert_eq!((b.granted, b.remaining), (4_000, 4_000));
    assert_eq!(quota.balance(&admin).await.unwrap().remaining, 6_000);

    // More than the admin has: refused whole, nothing moved.
    match quota.fund_wallet(&w, Funding::Balance(&admin), 7_000).await {
        Err(QuotaError::Exhausted { remaining, needed }) => {
            assert_eq!((remaining, needed), (6_000, 7_000))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(quota.balance(&admin).await.unwrap().remaining, 6_000);
    assert_eq!(quota.balance(&w).await.unwrap().remaining, 4_000);
    assert!(matches!(
        quota.fund_wallet(&w, Funding::Balance(&admin), 0).await,
        Err(QuotaError::Invalid(_))
    ));

    // A bot admin grants: new tokens, taken from no one.
    let b = quota
        .fund_wallet(&w, Funding::Grant(&bot_admin), 1_000)
        .await
        .unwrap();
    assert_eq!(b.remaining, 5_000);

    let entries = quota.history(&w, 100).await.unwrap();
    let kinds: Vec<(&str, Option<&str>, i64)> = entries
        .iter()
        .map(|e| (e.kind.as_str(), e.note.as_deref(), e.d_remaining))
        .collect();
    assert!(
        kinds.contains(&("budget_in", Some("from telegram:7"), 4_000)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("budget_in", Some("granted by telegram:1"), 1_000)),
        "{kinds:?}"
    );
    let last = quota.history(&admin, 100).await.unwrap();
    let out = last.iter().find(|e| e.kind == "budget_out").unwrap();
    assert_eq!(
        (out.d_granted, out.d_remaining, out.note.as_deref()),
        (-4_000, -4_000, Some("to telegram:group:-100"))
    );

    // /usage marks the tokens moved: out of the admin's balance, into the wallet.
    let day = quota.usage_by_day(&admin, 1).await.unwrap().pop().unwrap();
    assert_eq!((day.to_wallets, day.granted), (4_000, 10_000));
    let day = quota.usage_by_day(&w, 1).await.unwrap().pop().unwrap();
    assert_eq!(day.granted, 5_000);

    // The next day members' balances refill; the wallet does not.
    clock.advance_days(1);
    assert_eq!(quota.balance(&admin).await.unwrap().remaining, 10_000);
    assert_eq!(quota.balance(&w).await.unwrap().remaining, 5_000);
    books(&quota, &[&admin, &w]).await;
}

async fn members_are_charged_to_the_wallet_first_within_their_daily_share() {
    let clock = ManualClock::at(2026, 12, 5, 10, 0, 0);
    let (quota, _guard) = open(QuotaPlan::fixed(2_000)).await;
    let quota = quota.with_clock(clock.clone() as Arc<dyn gptbot::quota::Clock>);
    let w = wallet();
    quota
        .fund_wallet(&w, Funding::Grant(&tg("1")), 5_000)
        .await
        .unwrap();
    quota.set_member_limit(&w, 1_500).await.unwrap();
    let alice = payer(&quota, "10").await;
    let bob = payer(&quota, "11").await;
    assert_eq!(alice.wallet.as_ref().unwrap().member_limit, 1_500);

    // Within the share: the wallet pays, the member's balance is untouched.
    let r = quota.reserve_paid(&alice, 1_000, Some("m")).await.unwrap();
    assert_eq!(quota.balance(&w).await.unwrap().reserved, 1_000);
    quota.settle(r, 700).await.unwrap();
    let own = quota.balance(&alice.member).await.unwrap();
    assert_eq!((own.remaining, own.used), (2_000, 0));
    assert_eq!(quota.balance(&w).await.unwrap().used, 700);

    // 700 + 1000 would pass the share of 1500: her own balance pays.
    let r = quota.reserve_paid(&alice, 1_000, Some("m")).await.unwrap();
    assert_eq!(quota.balance(&alice.member).await.unwrap().reserved, 1_000);
    assert_eq!(quota.balance(&w).await.unwrap().reserved, 0);
    quota.settle(r, 300).await.unwrap();
    assert_eq!(quota.balance(&alice.member).await.unwrap().used, 300);

    // 700 + 800 fits exactly; an open hold counts against the share until settled.
    let r = quota.reserve_paid(&alice, 800, Some("m")).await.unwrap();
    assert_eq!(quota.balance(&w).await.unwrap().reserved, 800);
    let report = quota.wallet_report(&w).await.unwrap().unwrap();
    assert_eq!(report.members.len(), 1);
    assert_eq!(
        (report.members[0].used, report.members[0].name.as_deref()),
        (1_500, Some("Member 10"))
    );
    books(&quota, &[&w, &alice.member]).await;
    quota.refund(r).await.unwrap();
    // Refunded: nothing counts against her share.
    let report = quota.wallet_report(&w).await.unwrap().unwrap();
    assert_eq!(report.members[0].used, 700);

    // Bob's share is his own.
    let r = quota.reserve_paid(&bob, 1_500, Some("m")).await.unwrap();
    quota.settle(r, 1_200).await.unwrap();
    let report = quota.wallet_report(&w).await.unwrap().unwrap();
    let used: Vec<(String, i64)> = report
        .members
        .iter()
        .map(|m| (m.member.clone(), m.used))
        .collect();
    assert_eq!(
        used,
        vec![("11".to_string(), 1_200), ("10".to_string(), 700)]
    );
    assert_eq!(report.balance.used, 1_900);
    assert_eq!(report.balance.remaining, 3_100);

    // The group refuses members paying themselves: past the share, refused.
    quota.set_when_empty(&w, WhenEmpty::Refuse).await.unwrap();
    let alice = payer(&quota, "10").await;
    let before = quota.balance(&alice.member).await.unwrap();
    match quota.reserve_paid(&alice, 1_000, Some("m")).await {
        Err(QuotaError::Wallet(WalletShort::Share {
            used,
            limit,
            needed,
        })) => assert_eq!((used, limit, needed), (700, 1_500, 1_000)),
        other => panic!("expected the share refusal, got {other:?}"),
    }
    assert!(matches!(
        quota.can_afford_paid(&alice, 1_000).await,
        Err(QuotaError::Wallet(WalletShort::Share { .. }))
    ));
    assert_eq!(quota.balance(&alice.member).await.unwrap(), before);
    quota.can_afford_paid(&alice, 800).await.unwrap();

    // A new UTC day: the share renews.
    clock.advance_days(1);
    let r = quota.reserve_paid(&alice, 1_500, Some("m")).await.unwrap();
    assert_eq!(quota.balance(&w).await.unwrap().reserved, 1_500);
    quota.settle(r, 1_500).await.unwrap();
    books(&quota, &[&w, &alice.member, &bob.member]).await;
}

async fn an_empty_wallet_sends_members_to_their_own_balance_or_refuses_them() {
    let (quota, _guard) = open(QuotaPlan::fixed(3_000)).await;
    let w = wallet();
    quota
        .fund_wallet(&w, Funding::Balance(&tg("7")), 500)
        .await
        .unwrap();
    let alice = payer(&quota, "10").await;
    quota.can_afford_paid(&alice, 1_000).await.unwrap();
    let r = quota.reserve_paid(&alice, 1_000, Some("m")).await.unwrap();
    assert_eq!(quota.balance(&alice.member).await.unwrap().reserved, 1_000);
    assert_eq!(quota.balance(&w).await.unwrap().remaining, 500);
    quota.settle(r, 400).await.unwrap();
    // Small enough for the wallet: it pays.
    let r = quota.reserve_paid(&alice, 500, Some("m")).await.unwrap();
    assert_eq!(quota.balance(&w).await.unwrap().reserved, 500);
    quota.settle(r, 200).await.unwrap();

    quota.set_when_empty(&w, WhenEmpty::Refuse).await.unwrap();
    let alice = payer(&quota, "10").await;
    match quota.reserve_paid(&alice, 1_000, Some("m")).await {
        Err(QuotaError::Wallet(WalletShort::Empty { remaining, needed })) => {
            assert_eq!((remaining, needed), (300, 1_000))
        }
        other => panic!("expected the empty-wallet refusal, got {other:?}"),
    }
    assert_eq!(quota.balance(&alice.member).await.unwrap().used, 400);
    books(&quota, &[&w, &alice.member, &tg("7")]).await;
}

async fn a_forum_topic_can_have_its_own_wallet() {
    let (quota, _guard) = open(QuotaPlan::fixed(3_000)).await;
    let group = wallet();
    let topic = QuotaService::wallet_account(Platform::Telegram, "-100", Some("5"));
    assert_eq!(topic.user, "group:-100/5");
    quota
        .fund_wallet(&group, Funding::Grant(&tg("1")), 1_000)
        .await
        .unwrap();
    let in_topic = || quota.wallet_for(Platform::Telegram, "-100", Some("5"));
    assert_eq!(in_topic().await.unwrap().unwrap().account, group);
    quota
        .fund_wallet(&topic, Funding::Grant(&tg("1")), 2_000)
        .await
        .unwrap();
    assert_eq!(in_topic().await.unwrap().unwrap().account, topic);
    let other = quota
        .wallet_for(Platform::Telegram, "-100", Some("6"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.account, group);
    let p = Payer {
        member: tg("10"),
        name: "A".into(),
        wallet: in_topic().await.unwrap(),
    };
    let r = quota.reserve_paid(&p, 1_500, None).await.unwrap();
    quota.settle(r, 1_500).await.unwrap();
    assert_eq!(quota.balance(&topic).await.unwrap().remaining, 500);
    assert_eq!(quota.balance(&group).await.unwrap().remaining, 1_000);
    books(&quota, &[&group, &topic, &p.member]).await;
}

/// A replica killed mid-answer on a wallet: its hold is swept back into the wallet after
/// its lease, and no longer counts against the member's share.
async fn a_killed_replicas_wallet_hold_returns_to_the_wallet() {
    let clock = ManualClock::at(2026, 12, 5, 10, 0, 0);
    let (quota, _guard) = open(QuotaPlan::fixed(2_000)).await;
    let quota = quota
        .with_clock(clock.clone() as Arc<dyn gptbot::quota::Clock>)
        .with_lease(std::time::Duration::from_secs(60));
    let w = wallet();
    quota
        .fund_wallet(&w, Funding::Grant(&tg("1")), 5_000)
        .await
        .unwrap();
    quota.set_member_limit(&w, 1_000).await.unwrap();
    let alice = payer(&quota, "10").await;
    let held = quota.reserve_paid(&alice, 800, Some("m")).await.unwrap();
    // The process dies: nothing settles, refunds or renews the hold.
    std::mem::forget(held);
    assert_eq!(
        quota.wallet_use_today(&w, &alice.member).await.unwrap(),
        800
    );
    // Her share is taken by the open hold: the next question is her own balance's.
    let own = quota.reserve_paid(&alice, 800, Some("m")).await.unwrap();
    assert_eq!(quota.balance(&alice.member).await.unwrap().reserved, 800);
    quota.refund(own).await.unwrap();

    clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(quota.sweep().await.unwrap(), 1);
    let b = quota.balance(&w).await.unwrap();
    assert_eq!((b.remaining, b.reserved, b.used), (5_000, 0, 0));
    assert_eq!(quota.wallet_use_today(&w, &alice.member).await.unwrap(), 0);
    let r = quota.reserve_paid(&alice, 800, Some("m")).await.unwrap();
    assert_eq!(quota.balance(&w).await.unwrap().reserved, 800);
    quota.settle(r, 500).await.unwrap();
    books(&quota, &[&w, &alice.member]).await;
}

both!(
    a_wallet_is_funded_from_an_admins_balance_or_granted_and_never_refilled,
    members_are_charged_to_the_wallet_first_within_their_daily_share,
    an_empty_wallet_sends_members_to_their_own_balance_or_refuses_them,
    a_forum_topic_can_have_its_own_wallet,
    a_killed_replicas_wallet_hold_returns_to_the_wallet,
);

/// Parallel holds for one member (a model's tool calls run in parallel, each held at its
/// price): however they interleave, they never take the member past the share.
async fn parallel_holds_of_one_member_never_pass_the_share() {
    let (quota, _guard) = open(QuotaPlan::fixed(100_000)).await;
    let w = wallet();
    quota
        .fund_wallet(&w, Funding::Grant(&tg("1")), 1_000_000)
        .await
        .unwrap();
    quota.set_member_limit(&w, 1_000).await.unwrap();
    let alice = payer(&quota, "10").await;
    for round in 0..5 {
        let holds = futures::future::join_all(
            (0..8).map(|_| quota.reserve_paid(&alice, 300, Some("tool:web_search"))),
        )
        .await;
        let on_wallet = holds
            .iter()
            .filter(|h| matches!(h, Ok(r) if format!("{r:?}").contains("group:-100")))
            .count();
        let report = quota.wallet_report(&w).await.unwrap().unwrap();
        let used = report.members.first().map_or(0, |m| m.used);
        assert!(
            used <= 1_000,
            "round {round}: {on_wallet} holds of 300 on the wallet, {used} of a 1000 share"
        );
        assert_eq!(on_wallet, 3, "round {round}: three fit in the share");
        for hold in holds {
            quota.refund(hold.unwrap()).await.unwrap();
        }
    }
    books(&quota, &[&w, &alice.member]).await;
}

mod parallel {
    use super::*;
    both!(parallel_holds_of_one_member_never_pass_the_share);
}
