//! `gptbot run` as an operator starts it: the real binary with both TELEGRAM_BOT_TOKEN
//! and DISCORD_TOKEN set serves both platforms from one process, with one quota ledger
//! and one session store, and stops cleanly on SIGTERM.

mod common;

use common::discord::FakeDiscord;
use common::telegram::{FakeTelegram, private_chat, user_json};
use common::*;
use gptbot::core::event::Platform;

#[tokio::test]
async fn one_process_serves_telegram_and_discord_and_stops_on_sigterm() {
    let tg = FakeTelegram::start().await;
    let dc = FakeDiscord::start().await;
    let openai = FakeOpenAi::start().await;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(&openai, Some(&redis), &dir, &[]);
    env.insert("TELEGRAM_BOT_TOKEN".into(), common::telegram::TOKEN.into());
    env.insert("GPTBOT__TELEGRAM__API_URL".into(), tg.api_url());
    env.insert("GPTBOT__TELEGRAM__EDIT_INTERVAL".into(), "100ms".into());
    env.insert("DISCORD_TOKEN".into(), common::discord::TOKEN.into());
    env.insert("GPTBOT__DISCORD__API_URL".into(), dc.api_url());
    env.insert("GPTBOT__DISCORD__EDIT_INTERVAL".into(), "100ms".into());
    let log = dir.path().join("gptbot.log");
    let mut child = spawn_gptbot_run(&env, &log);

    tg.wait_until(20, "getMe from the binary", |calls| {
        calls.iter().any(|c| c.method == "getme")
    })
    .await;
    dc.wait_ready().await;
    tg.push_message(
        private_chat(77),
        user_json(77, "Lea"),
        "hi from telegram",
        None,
    );
    dc.send_message(
        "3000000000000000011",
        common::discord::user("4000000000000000077", "lea"),
        "hi from discord",
        None,
    );
    tg.wait_until(15, "the Telegram answer", |calls| {
        calls
            .iter()
            .any(|c| c.body["text"] == "Echo: hi from telegram" && c.body["parse_mode"] == "HTML")
    })
    .await;
    dc.wait_text(15, "the Discord answer", |t| t == "Echo: hi from discord")
        .await;

    signal(&child, "TERM");
    let status = exit_status(&mut child, 30).await;
    assert!(status.success(), "{status:?}");

    // One ledger: both users were charged in the same database.
    let quota = common::ledger::ledger_of(&env).await;
    for user in ["telegram:77", "discord:4000000000000000077"] {
        let balance = quota
            .balance(&gptbot::core::event::UserId::parse(user).unwrap())
            .await
            .unwrap();
        assert_eq!(balance.requests, 1, "{user}");
        assert_eq!(balance.reserved, 0, "{user}");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("Telegram bot connected") && logged.contains("Discord bot connected"),
        "{logged}"
    );
    for secret in ["TEST-token_abc", "fake.discord-token", "sk-test-secret-key"] {
        assert!(!logged.contains(secret), "{secret} was logged");
    }
}

#[tokio::test]
async fn link_joins_balances_across_the_telegram_and_discord_fakes() {
    let tg = FakeTelegram::start().await;
    let dc = FakeDiscord::start().await;
    let t = spawn_app_with(
        Options::default()
            .with("TELEGRAM_BOT_TOKEN", common::telegram::TOKEN)
            .with("GPTBOT__TELEGRAM__API_URL", tg.api_url())
            .with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "100ms")
            .with("DISCORD_TOKEN", common::discord::TOKEN)
            .with("GPTBOT__DISCORD__API_URL", dc.api_url())
            .with("GPTBOT__DISCORD__EDIT_INTERVAL", "100ms"),
    )
    .await;
    let (_stop, rx) = stopper();
    // Both platforms from one app, as `gptbot run` serves them.
    let running = t.app.start(rx).await.unwrap();
    assert!(
        running.platform(Platform::Telegram).is_some()
            && running.platform(Platform::Discord).is_some()
    );

    // In a group the code is never shown.
    tg.push_message(
        common::telegram::group_chat(-100500),
        user_json(42, "Ann"),
        "/link@gptbot_test_bot",
        None,
    );
    tg.wait_until(10, "the group refusal", |calls| {
        calls.iter().any(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Send /link to me in a private chat"))
        })
    })
    .await;
    tg.push_message(private_chat(42), user_json(42, "Ann"), "/link", None);
    tg.wait_until(10, "the link code", |calls| {
        calls.iter().any(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Your link code is"))
        })
    })
    .await;
    let text = tg
        .calls_of("sendMessage")
        .into_iter()
        .find_map(|c| {
            c.body["text"]
                .as_str()
                .map(str::to_string)
                .filter(|t| t.starts_with("Your link code"))
        })
        .unwrap();
    let code: String = text["Your link code is ".len()..].chars().take(8).collect();

    // Someone else on Telegram cannot redeem it, and trying does not burn it.
    tg.push_message(
        private_chat(43),
        user_json(43, "Eve"),
        &format!("/link {code}"),
        None,
    );
    tg.wait_until(10, "the same-platform refusal", |calls| {
        calls.iter().any(|c| {
            c.body["chat_id"] == 43
                && c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("A link code works only from another platform"))
        })
    })
    .await;

    let ann_on_discord = common::discord::user("4000000000000000099", "ann");
    let dm = "3000000000000000099";
    dc.slash(
        "link",
        serde_json::json!([{"name": "code", "type": 3, "value": code}]),
        dm,
        ann_on_discord.clone(),
        None,
    );
    let linked = "Linked: discord:4000000000000000099 uses the tokens of telegram:42";
    dc.wait_text(10, "the link", |t| t.starts_with(linked))
        .await;
    // The code's owner is told, in their private chat.
    tg.wait_until(10, "the owner's notice", |calls| {
        calls.iter().any(|c| {
            c.body["chat_id"] == 42
                && c.body["text"].as_str().is_some_and(|t| {
                    t.starts_with("Your link code was used: discord:4000000000000000099")
                })
        })
    })
    .await;
    dc.send_message(dm, ann_on_discord, "hello from discord", None);
    dc.wait_text(10, "the Discord answer", |t| {
        t == "Echo: hello from discord"
    })
    .await;
    let tg_user = gptbot::core::event::UserId::parse("telegram:42").unwrap();
    let dc_user = gptbot::core::event::UserId::parse("discord:4000000000000000099").unwrap();
    let on_telegram = t.app.quota.balance(&tg_user).await.unwrap();
    // The answer is seen while its settle is written.
    let on_discord = common::ledger::settled(&t.app.quota, &dc_user, 1).await;
    // Linking moved no tokens; the Discord identity paid from its own balance.
    assert_eq!((on_telegram.remaining, on_telegram.requests), (20000, 0));
    assert_eq!(on_discord.requests, 1);
    assert_eq!(on_discord.remaining + on_discord.used, 20000);
    for user in [&tg_user, &dc_user] {
        common::ledger::assert_books(&t.app.quota, user).await;
    }
}
