//! The one admin service every front end (chat, web page, command line) goes through,
//! on a real ledger (SQLite and PostgreSQL) and real access rules: each operation, its
//! checks, and the books after it. The front ends have a test each in `conversation`,
//! `web` and `cli`; the chat's newer commands (/refill, /holds, /release) are here.

mod common;

use std::sync::Arc;

use common::ledger::assert_books;
use common::*;
use gptbot::access::AccessService;
use gptbot::admin::{AdminError, AdminService, Change, Done, Operator};
use gptbot::core::admin::{Account, AdminCommand, Subject};
use gptbot::core::event::{Platform, UserId};
use gptbot::quota::QuotaPlan;

async fn service() -> (
    AdminService,
    gptbot::quota::QuotaService,
    common::ledger::Guard,
) {
    let (quota, guard) = common::ledger::open(QuotaPlan::fixed(1000)).await;
    let settings = gptbot::config::Settings::load(
        None,
        &[(
            "GPTBOT__ACCESS__ADMINS".to_string(),
            "telegram:1".to_string(),
        )]
        .into_iter()
        .collect(),
    )
    .unwrap();
    let access = Arc::new(AccessService::new(quota.db().clone(), &settings.access));
    (AdminService::new(quota.clone(), access), quota, guard)
}

fn tg(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

fn in_chat(group: Option<&str>) -> Operator {
    Operator {
        name: "telegram:1".into(),
        platform: Some(Platform::Telegram),
        group: group.map(|g| (Platform::Telegram, g.to_string())),
    }
}

async fn every_operation_is_applied_once_with_its_checks() {
    let (admin, quota, _guard) = service().await;
    let cli = Operator::cli();
    // A bare id is on the admin's platform; the command line must name one.
    let bare = Account::Bare("5".into());
    let Done::Balance {
        user,
        balance,
        change,
    } = admin
        .apply(
            &in_chat(None),
            AdminCommand::Grant {
                user: bare.clone(),
                tokens: 500,
                reason: Some("beta".into()),
            },
        )
        .await
        .unwrap()
    else {
        panic!("a grant answers a balance")
    };
    assert_eq!(user, tg("5"));
    assert_eq!((balance.remaining, balance.granted), (1500, 1500));
    assert_eq!(
        change,
        Change::Granted {
            tokens: 500,
            reason: Some("beta".into())
        }
    );
    let refused = admin
        .apply(&cli, AdminCommand::Usage { user: bare })
        .await
        .unwrap_err();
    assert!(matches!(refused, AdminError::Refused(ref why) if why.contains("platform:user")));

    // Taking more than remains is refused, not clipped.
    let too_much = admin
        .apply(
            &cli,
            AdminCommand::Grant {
                user: Account::Id(tg("5")),
                tokens: -5000,
                reason: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(too_much, AdminError::Refused(ref why) if why.contains("only 1500 remain")));

    let set = |tokens| AdminCommand::SetQuota {
        user: Account::Id(tg("5")),
        tokens,
    };
    let Done::Balance { balance, .. } = admin.apply(&cli, set(None)).await.unwrap() else {
        panic!()
    };
    assert!(balance.unlimited);
    let Done::Balance { balance, .. } = admin.apply(&cli, set(Some(40))).await.unwrap() else {
        panic!()
    };
    assert_eq!((balance.remaining, balance.unlimited), (40, false));
    let Done::Balance {
        balance, change, ..
    } = admin
        .apply(
            &cli,
            AdminCommand::Refill {
                user: Account::Id(tg("5")),
                tokens: Some(900),
            },
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((balance.refill_tokens, change), (Some(900), Change::Refill));
    let Done::History { entries, .. } = admin
        .apply(
            &cli,
            AdminCommand::History {
                user: Account::Id(tg("5")),
                limit: 100,
            },
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(entries.len() >= 3, "{entries:?}");

    // A hold is released once.
    let hold = quota.reserve(&tg("5"), 30).await.unwrap();
    let id = hold.id();
    std::mem::forget(hold);
    let Done::Holds(holds) = admin.apply(&cli, AdminCommand::Holds).await.unwrap() else {
        panic!()
    };
    assert_eq!(holds.iter().map(|h| h.id).collect::<Vec<_>>(), [id]);
    assert!(matches!(
        admin.apply(&cli, AdminCommand::Release { hold: id }).await,
        Ok(Done::Released(released)) if released == id
    ));
    assert!(matches!(
        admin.apply(&cli, AdminCommand::Release { hold: id }).await,
        Err(AdminError::Refused(ref why)) if why.contains("no open hold")
    ));
    assert_books(&quota, &tg("5")).await;

    // Rules: an admin is never denied; `chat` is the group the command is sent in.
    let rule = |subject, allowed| AdminCommand::Rule { subject, allowed };
    let admin_denied = admin
        .apply(&cli, rule(Subject::Account(Account::Id(tg("1"))), false))
        .await
        .unwrap_err();
    assert!(matches!(admin_denied, AdminError::Refused(ref why) if why.contains("is an admin")));
    assert!(matches!(
        admin
            .apply(&in_chat(None), rule(Subject::ThisChat, false))
            .await,
        Err(AdminError::Refused(_))
    ));
    let Done::Rule { subject, allowed } = admin
        .apply(&in_chat(Some("-100777")), rule(Subject::ThisChat, false))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (subject.as_str(), allowed),
        ("group:telegram:-100777", false)
    );
    let Done::Rules(rules) = admin.apply(&cli, AdminCommand::Rules).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        rules,
        [(
            "group:telegram:-100777".to_string(),
            false,
            "telegram:1".to_string()
        )]
    );
    let Done::Stats(stats) = admin.apply(&cli, AdminCommand::Stats).await.unwrap() else {
        panic!()
    };
    assert_eq!(stats.users, 1);
}

both!(every_operation_is_applied_once_with_its_checks);

/// The chat front end's newer commands: /refill, /holds and /release, through the
/// conversation as an admin types them.
#[tokio::test]
async fn an_admin_refills_lists_and_releases_holds_from_the_chat() {
    let t = spawn_app_with(Options::default().with("GPTBOT__ACCESS__ADMINS", "telegram:1")).await;
    let a = RecordingAdapter::new(4096, std::time::Duration::ZERO);
    t.send(&a, &dm("1", "/refill 2 700")).await;
    assert_eq!(a.last_message(), "telegram:2 now refills to 700 tokens.");
    let hold = t.app.quota.reserve(&tg("2"), 50).await.unwrap();
    let id = hold.id();
    std::mem::forget(hold);
    t.send(&a, &dm("1", "/holds")).await;
    assert_eq!(
        a.last_message(),
        format!("#{id} telegram:2 holds 50 tokens")
    );
    t.send(&a, &dm("1", &format!("/release {id}"))).await;
    assert_eq!(
        a.last_message(),
        format!("Hold {id} released: its tokens are back in the balance.")
    );
    t.send(&a, &dm("1", "/release x")).await;
    assert!(
        a.last_message().starts_with("Usage: /release"),
        "{}",
        a.last_message()
    );
    // Not for users.
    t.send(&a, &dm("2", "/holds")).await;
    assert!(
        !a.last_message().contains("holds 50"),
        "{}",
        a.last_message()
    );
    assert_books(&t.app.quota, &tg("2")).await;
}
