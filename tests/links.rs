//! `/link` bookkeeping on SQLite and PostgreSQL: a linked identity pays from its own
//! balance first and draws on the account it is linked to only when its own is too low;
//! linking and unlinking move no tokens. The property: after any sequence of links,
//! unlinks and spending, every account holds what it started with less what was charged
//! to it — nobody's tokens end up with somebody else.

mod common;

use std::collections::HashMap;

use common::ledger::{ManualClock, assert_books, open};
use gptbot::core::event::{Platform, UserId};
use gptbot::quota::{QuotaError, QuotaPlan, QuotaService};

fn tg(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

fn dc(id: &str) -> UserId {
    UserId::new(Platform::Discord, id)
}

async fn spend(quota: &QuotaService, u: &UserId, n: i64) -> Result<(), QuotaError> {
    let r = quota.reserve(u, n).await?;
    quota.settle(r, n).await?;
    Ok(())
}

async fn a_linked_identity_pays_its_own_first_then_draws_on_the_owner() {
    let (quota, _db) = open(QuotaPlan::fixed(1000)).await;
    let (owner, other) = (tg("1"), dc("2"));
    spend(&quota, &other, 300).await.unwrap();
    quota.link(&other, &owner).await.unwrap();
    // Linking moved nothing.
    assert_eq!(quota.balance(&other).await.unwrap().remaining, 700);
    assert_eq!(quota.balance(&owner).await.unwrap().remaining, 1000);
    assert_eq!(quota.linked_to(&other).await.unwrap(), Some(owner.clone()));
    // Its own balance pays while it can…
    spend(&quota, &other, 600).await.unwrap();
    assert_eq!(quota.balance(&other).await.unwrap().remaining, 100);
    // …then the owner's.
    spend(&quota, &other, 400).await.unwrap();
    assert_eq!(quota.balance(&other).await.unwrap().remaining, 100);
    assert_eq!(quota.balance(&owner).await.unwrap().remaining, 600);
    // The owner never draws on the linked identity.
    assert!(matches!(
        spend(&quota, &owner, 700).await,
        Err(QuotaError::Exhausted { remaining: 600, .. })
    ));

    for (from, to, why) in [
        (&other, &owner, "linked twice"),
        (&owner, &other, "the owner linked to its own follower"),
        (&tg("3"), &tg("4"), "same platform"),
        (&tg("5"), &other, "a chain"),
    ] {
        assert!(
            matches!(quota.link(from, to).await, Err(QuotaError::Invalid(_))),
            "{why}"
        );
    }
    assert_eq!(quota.unlink(&owner).await.unwrap(), 1);
    assert_eq!(quota.linked_to(&other).await.unwrap(), None);
    // Unlinking moved nothing either: each keeps what it had less its own charges.
    assert_eq!(quota.balance(&other).await.unwrap().remaining, 100);
    assert_eq!(quota.balance(&owner).await.unwrap().remaining, 600);
    for u in [&owner, &other] {
        assert_books(&quota, u).await;
    }
}

both!(a_linked_identity_pays_its_own_first_then_draws_on_the_owner);

mod no_tokens_move {
    use super::*;
    use proptest::prelude::*;

    const PEOPLE: [(Platform, &str); 4] = [
        (Platform::Telegram, "1"),
        (Platform::Telegram, "2"),
        (Platform::Discord, "1"),
        (Platform::Discord, "2"),
    ];

    #[derive(Debug, Clone)]
    enum Op {
        Link(usize, usize),
        Unlink(usize),
        Spend(usize, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => (0..4usize, 0..4usize).prop_map(|(a, b)| Op::Link(a, b)),
            1 => (0..4usize).prop_map(Op::Unlink),
            3 => (0..4usize, 1i64..500).prop_map(|(a, n)| Op::Spend(a, n)),
        ]
    }

    /// The model: balances change only by charges, a charge falls on the spender's own
    /// account if it can pay, else on the account it is linked to.
    async fn apply(quota: &QuotaService, ops: Vec<Op>) {
        let who: Vec<UserId> = PEOPLE.iter().map(|(p, id)| UserId::new(*p, *id)).collect();
        let mut own: Vec<i64> = vec![1000; 4];
        let mut link: HashMap<usize, usize> = HashMap::new();
        for op in ops {
            match op {
                Op::Link(a, b) => {
                    let allowed = who[a].platform != who[b].platform
                        && !link.contains_key(&a)
                        && !link.contains_key(&b)
                        && !link.values().any(|to| *to == a);
                    let done = quota.link(&who[a], &who[b]).await;
                    assert_eq!(
                        done.is_ok(),
                        allowed,
                        "link {a}→{b} with {link:?}: {done:?}"
                    );
                    if allowed {
                        link.insert(a, b);
                    }
                }
                Op::Unlink(a) => {
                    quota.unlink(&who[a]).await.unwrap();
                    link.retain(|from, to| *from != a && *to != a);
                }
                Op::Spend(a, n) => {
                    let payer = if own[a] >= n {
                        Some(a)
                    } else {
                        link.get(&a).copied().filter(|b| own[*b] >= n)
                    };
                    let done = spend(quota, &who[a], n).await;
                    assert_eq!(done.is_ok(), payer.is_some(), "spend {n} by {a}: {done:?}");
                    if let Some(p) = payer {
                        own[p] -= n;
                    }
                }
            }
            for (i, u) in who.iter().enumerate() {
                assert_eq!(quota.balance(u).await.unwrap().remaining, own[i], "{u}");
            }
        }
        for u in &who {
            assert_books(quota, u).await;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 32,
            failure_persistence: None,
            .. ProptestConfig::default()
        })]

        #[test]
        fn no_sequence_of_links_and_unlinks_moves_tokens(ops in proptest::collection::vec(op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (quota, _db) = open(QuotaPlan::fixed(1000)).await;
                let clock = ManualClock::at(2026, 11, 30, 12, 0, 0);
                apply(&quota.with_clock(clock), ops).await;
            });
        }
    }
}
