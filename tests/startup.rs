//! SIGTERM at every moment of `gptbot run`'s start-up: the real binary, signalled while
//! the database is locked, while Telegram's getMe hangs, during the Telegram conflict
//! probe, just as the dispatcher starts, and while the Discord gateway connects, exits
//! 0 within `shutdown.grace` (a SIGTERM in the first seconds was once lost for good).

mod common;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use common::discord::FakeDiscord;
use common::telegram::FakeTelegram;
use common::*;
use sqlx::ConnectOptions;
use tokio::time::Instant;

const GRACE: Duration = Duration::from_secs(4);

async fn env_for(openai: &FakeOpenAi, dir: &tempfile::TempDir) -> HashMap<String, String> {
    let mut env = test_env(openai, None, dir, &[]);
    env.insert(
        "GPTBOT__SHUTDOWN__GRACE".into(),
        format!("{}s", GRACE.as_secs()),
    );
    env
}

fn with_telegram(env: &mut HashMap<String, String>, tg: &FakeTelegram) {
    env.insert("TELEGRAM_BOT_TOKEN".into(), common::telegram::TOKEN.into());
    env.insert("GPTBOT__TELEGRAM__API_URL".into(), tg.api_url());
}

/// `gptbot run` against the Telegram fake; the process and its log file.
async fn run_on_telegram(
    openai: &FakeOpenAi,
    tg: &FakeTelegram,
    dir: &tempfile::TempDir,
) -> (tokio::process::Child, std::path::PathBuf) {
    let mut env = env_for(openai, dir).await;
    with_telegram(&mut env, tg);
    let log = dir.path().join("gptbot.log");
    (spawn_gptbot_run(&env, &log), log)
}

/// Waits for the start-up conflict probe: the first getUpdates, a 3 s long poll.
async fn conflict_probe(tg: &FakeTelegram) {
    tg.wait_until(20, "the conflict probe", |calls| {
        calls
            .iter()
            .any(|c| c.method == "getupdates" && c.body["timeout"] == 3)
    })
    .await;
}

/// Sends SIGTERM and asserts a clean exit within the grace; returns the log.
async fn terminate(
    mut child: tokio::process::Child,
    log: &std::path::Path,
    moment: &str,
) -> String {
    let sent = Instant::now();
    signal(&child, "TERM");
    let status = tokio::time::timeout(GRACE + Duration::from_secs(20), child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{moment}: SIGTERM was lost, gptbot still runs:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .unwrap();
    let took = sent.elapsed();
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "{moment}: {status:?}\n{logged}");
    assert!(
        took < GRACE,
        "{moment}: exited {took:?} after SIGTERM, past the grace of {GRACE:?}\n{logged}"
    );
    logged
}

#[tokio::test]
async fn sigterm_while_the_database_is_locked_at_start_up_exits_within_the_grace() {
    let openai = FakeOpenAi::start().await;
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_for(&openai, &dir).await;
    with_telegram(&mut env, &tg);
    env.insert("GPTBOT__DATABASE__BUSY_TIMEOUT".into(), "60s".into());
    // Another process holds the database file: opening and migrating wait for it.
    let mut holder = sqlx::sqlite::SqliteConnectOptions::from_str(&env["DATABASE_URL"])
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    let log = dir.path().join("gptbot.log");
    let child = spawn_gptbot_run(&env, &log);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !before.contains("gptbot core ready"),
        "the database was not waited for: {before}"
    );
    let logged = terminate(child, &log, "database locked").await;
    assert!(logged.contains("stopped during start-up"), "{logged}");
    assert!(tg.calls_of("getme").is_empty(), "Telegram was contacted");
}

#[tokio::test]
async fn sigterm_while_telegram_get_me_hangs_exits_within_the_grace() {
    let openai = FakeOpenAi::start().await;
    let tg = FakeTelegram::start().await;
    tg.stall("getMe");
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_for(&openai, &dir).await;
    with_telegram(&mut env, &tg);
    let log = dir.path().join("gptbot.log");
    let child = spawn_gptbot_run(&env, &log);
    tg.wait_until(20, "getMe", |calls| {
        calls.iter().any(|c| c.method == "getme")
    })
    .await;
    let logged = terminate(child, &log, "getMe hangs").await;
    assert!(!logged.contains("gptbot is running"), "{logged}");
}

#[tokio::test]
async fn sigterm_during_the_telegram_conflict_probe_exits_within_the_grace() {
    let (openai, tg, dir) = (
        FakeOpenAi::start().await,
        FakeTelegram::start().await,
        tempfile::tempdir().unwrap(),
    );
    let (child, log) = run_on_telegram(&openai, &tg, &dir).await;
    conflict_probe(&tg).await;
    let logged = terminate(child, &log, "conflict probe").await;
    assert!(!logged.contains("gptbot is running"), "{logged}");
}

/// The moment the defect was found at: SIGTERM as the dispatcher is spawned, while it is
/// still idle and teloxide refuses to shut it down.
#[tokio::test]
async fn sigterm_as_the_telegram_dispatcher_starts_exits_within_the_grace() {
    for after in [
        Duration::ZERO,
        Duration::from_millis(5),
        Duration::from_millis(50),
    ] {
        let (openai, tg, dir) = (
            FakeOpenAi::start().await,
            FakeTelegram::start().await,
            tempfile::tempdir().unwrap(),
        );
        let (child, log) = run_on_telegram(&openai, &tg, &dir).await;
        // The probe ends after its 3 s; the dispatcher starts right after it.
        conflict_probe(&tg).await;
        tokio::time::sleep(Duration::from_secs(3) + after).await;
        terminate(child, &log, &format!("dispatcher start + {after:?}")).await;
    }
}

#[tokio::test]
async fn sigterm_while_the_discord_gateway_connects_exits_within_the_grace() {
    let openai = FakeOpenAi::start().await;
    let dc = FakeDiscord::start().await;
    dc.hold_ready();
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_for(&openai, &dir).await;
    env.insert("DISCORD_TOKEN".into(), common::discord::TOKEN.into());
    env.insert("GPTBOT__DISCORD__API_URL".into(), dc.api_url());
    let log = dir.path().join("gptbot.log");
    let child = spawn_gptbot_run(&env, &log);
    dc.wait_gateway(20, "IDENTIFY", |frames| frames.iter().any(|f| f["op"] == 2))
        .await;
    let logged = terminate(child, &log, "gateway connect").await;
    assert!(!logged.contains("gptbot is running"), "{logged}");
    assert!(logged.contains("stopped during start-up"), "{logged}");
}
