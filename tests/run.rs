//! `gptbot run` as an operator starts it: the real binary with both TELEGRAM_BOT_TOKEN
//! and DISCORD_TOKEN set serves both platforms from one process, with one quota ledger
//! and one session store, and stops cleanly on SIGTERM.

mod common;

use std::time::Duration;

use common::discord::FakeDiscord;
use common::telegram::{FakeTelegram, private_chat, user_json};
use common::*;

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
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gptbot"))
        .arg("run")
        .env_clear()
        .envs(&env)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !dc.texts().iter().any(|t| t == "Echo: hi from discord") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Discord answer: {:?}",
            dc.texts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("gptbot did not stop after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");

    // One ledger: both users were charged in the same database.
    let settings = gptbot::config::Settings::load(None, &env).unwrap();
    let quota = gptbot::app::open_quota(&settings).await.unwrap();
    for user in ["telegram:77", "discord:4000000000000000077"] {
        let balance = quota
            .balance(&gptbot::event::UserId::parse(user).unwrap())
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
