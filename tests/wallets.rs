//! Group budgets end to end: the bot (booted as `gptbot run` boots it) in a Telegram
//! group on the fake Bot API with its flood limits on. Telegram's `getChatMember` says
//! who administers the group: a member may not fund the wallet, the owner moves tokens
//! from their own balance, an administrator sets the rules, a bot admin grants. Members'
//! questions are charged to the wallet first, each within the daily share; past it they
//! pay themselves, or are refused when the group says so; an empty wallet likewise.
//! `/budget` shows it all. The books hold for every account after each step.

mod common;

use common::ledger::assert_books;
use common::openai::Behavior;
use common::telegram::{FakeTelegram, group_chat, user_json};
use common::*;
use gptbot::core::event::{Platform, UserId};
use gptbot::quota::QuotaService;

const GROUP: i64 = -100;
const OWNER: i64 = 7;
const ADMIN: i64 = 8;
const ALICE: i64 = 10;
const BOB: i64 = 11;

struct Group {
    t: TestApp,
    tg: FakeTelegram,
    _running: gptbot::app::Running,
    _stop: tokio_util::sync::DropGuard,
}

async fn group() -> Group {
    let tg = FakeTelegram::start().await;
    tg.enforce_flood_limits();
    tg.set_owner(GROUP, OWNER);
    tg.promote(GROUP, ADMIN);
    let t = spawn_app_with(
        Options::default()
            .memory_sessions()
            .telegram(&tg)
            .with("GPTBOT__QUOTA__DEFAULT_TOKENS", 5000)
            .with("GPTBOT__MODEL__MAX_TOKENS", 100)
            .file("[access]\nadmins = [\"telegram:1\"]\n"),
    )
    .await;
    let (stop, rx) = stopper();
    let running = t.app.start(rx).await.expect("the bot starts");
    Group {
        t,
        tg,
        _running: running,
        _stop: stop,
    }
}

fn tg_user(id: i64) -> UserId {
    UserId::new(Platform::Telegram, id.to_string())
}

impl Group {
    /// `user` says `text` in `chat` and the bot's reply that `seen` picks is returned.
    async fn ask_in(&self, chat: i64, user: i64, text: &str, seen: &str) -> String {
        let before = self.tg.texts_in(chat).len();
        self.tg.push_message(
            group_chat(chat),
            user_json(user, &format!("Member{user}")),
            text,
            None,
        );
        let what = format!("a reply to {text:?} containing {seen:?}");
        self.tg
            .wait_until(15, &what, |_| {
                self.tg.texts_in(chat)[before.min(self.tg.texts_in(chat).len())..]
                    .iter()
                    .any(|t| t.contains(seen))
            })
            .await;
        self.tg
            .texts_in(chat)
            .into_iter()
            .skip(before)
            .find(|t| t.contains(seen))
            .unwrap()
    }

    async fn ask(&self, user: i64, text: &str, seen: &str) -> String {
        self.ask_in(GROUP, user, text, seen).await
    }

    async fn balance(&self, account: &UserId) -> gptbot::quota::Balance {
        self.t.app.quota.balance(account).await.unwrap()
    }

    async fn books(&self, accounts: &[&UserId]) {
        for account in accounts {
            assert_books(&self.t.app.quota, account).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_wallet_pays_for_its_members_within_their_share() {
    let g = group().await;
    let wallet = QuotaService::wallet_account(Platform::Telegram, &GROUP.to_string(), None);
    let (owner, alice, bob) = (tg_user(OWNER), tg_user(ALICE), tg_user(BOB));

    let none = g.ask(BOB, "/budget", "no token wallet").await;
    assert!(none.contains("/budget add"), "{none}");
    // A member is not a group admin: nothing moves.
    g.ask(BOB, "/budget add 1000", "Only this group's admins")
        .await;
    assert_eq!(g.balance(&bob).await.remaining, 5000);
    // The owner moves tokens from their own balance (more than they have: refused).
    g.ask(OWNER, "/budget add 6000", "You have 5000 tokens")
        .await;
    let added = g.ask(OWNER, "/budget add 3k", "Added 3000 tokens").await;
    assert!(added.contains("It holds 3000 tokens"), "{added}");
    assert_eq!(g.balance(&owner).await.remaining, 2000);
    assert_eq!(g.balance(&wallet).await.remaining, 3000);
    assert!(
        !g.tg.calls_of("getchatmember").is_empty(),
        "Telegram was asked who administers the group"
    );
    g.books(&[&owner, &wallet]).await;

    // Alice's question is paid by the wallet; her balance is untouched.
    g.t.openai
        .script([Behavior::text(&["First answer."], (30, 20))]);
    g.ask(ALICE, "/ask what is rust?", "First answer.").await;
    let w = common::ledger::settled(&g.t.app.quota, &wallet, 1).await;
    assert_eq!((w.used, w.reserved), (50, 0));
    assert_eq!(g.balance(&alice).await.remaining, 5000);
    g.books(&[&alice, &wallet]).await;

    // An administrator sets a share of 100 a day: her next question (held at more
    // than the 50 left of it) is paid from her own balance.
    g.ask(ADMIN, "/budget member-limit 100", "up to 100 tokens a day")
        .await;
    g.t.openai
        .script([Behavior::text(&["Second answer."], (30, 20))]);
    g.ask(ALICE, "/ask and go?", "Second answer.").await;
    let own = common::ledger::settled(&g.t.app.quota, &alice, 1).await;
    assert_eq!(own.used, 50);
    assert_eq!(g.balance(&wallet).await.used, 50);

    let quota = g.ask(ALICE, "/quota", "Tokens:").await;
    assert!(
        quota.contains("Here the group's wallet pays first: 2950 tokens left in it; you have used 50 of your 100 for today. When it cannot pay, your own tokens do."),
        "{quota}"
    );

    // The group refuses members paying themselves: she is refused, nothing charged.
    g.ask(ADMIN, "/budget when-empty refuse", "members are refused")
        .await;
    let refused = g
        .ask(ALICE, "/ask and zig?", "from this group's wallet today")
        .await;
    assert!(
        refused.contains("You have used 50 of your 100 tokens"),
        "{refused}"
    );
    assert_eq!(g.balance(&alice).await.used, 50);
    assert_eq!(g.balance(&alice).await.reserved, 0);

    // The limit lifted, the wallet pays Bob (his use is his own line in /budget).
    g.ask(ADMIN, "/budget member-limit off", "any amount").await;
    g.t.openai
        .script([Behavior::text(&["Bob's answer."], (40, 30))]);
    g.ask(BOB, "/ask hello", "Bob's answer.").await;
    let w = common::ledger::settled(&g.t.app.quota, &wallet, 2).await;
    assert_eq!(w.used, 120);
    assert_eq!(g.balance(&bob).await.used, 0);

    let shown = g.ask(BOB, "/budget", "This group's wallet").await;
    assert!(
        shown.contains("2880 tokens left (120 used of 3000 added)"),
        "{shown}"
    );
    assert!(
        shown.contains("When it cannot pay, members are refused"),
        "{shown}"
    );
    assert!(shown.contains("Member11: 70"), "{shown}");
    assert!(shown.contains("Member10: 50"), "{shown}");
    g.books(&[&owner, &alice, &bob, &wallet]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_wallet_refuses_or_lets_members_pay_and_a_bot_admin_grants() {
    let g = group().await;
    const OTHER: i64 = -200;
    let wallet = QuotaService::wallet_account(Platform::Telegram, &OTHER.to_string(), None);
    let alice = tg_user(ALICE);
    // A bot admin (not a group admin here) grants: taken from no one.
    let granted = g
        .ask_in(OTHER, 1, "/budget add 20", "Added 20 tokens")
        .await;
    assert!(!granted.contains("from your balance"), "{granted}");
    assert_eq!(g.balance(&tg_user(1)).await.remaining, 5000);
    g.ask_in(OTHER, 1, "/budget when-empty refuse", "members are refused")
        .await;
    let refused = g
        .ask_in(
            OTHER,
            ALICE,
            "/ask hi",
            "cannot pay for this (20 tokens left",
        )
        .await;
    assert!(refused.contains("/budget add"), "{refused}");
    assert_eq!(g.balance(&alice).await.used, 0);
    assert_eq!(g.balance(&wallet).await.remaining, 20);

    // Members may pay themselves: her own balance pays.
    g.ask_in(
        OTHER,
        1,
        "/budget when-empty own",
        "pay from their own balance",
    )
    .await;
    g.t.openai
        .script([Behavior::text(&["Paid myself."], (30, 20))]);
    g.ask_in(OTHER, ALICE, "/ask hi", "Paid myself.").await;
    assert_eq!(
        common::ledger::settled(&g.t.app.quota, &alice, 1)
            .await
            .used,
        50
    );
    assert_eq!(g.balance(&wallet).await.remaining, 20);
    g.books(&[&alice, &wallet, &tg_user(1)]).await;
}
