//! The fault suite: the real `gptbot run` (or the real `App`) against real Redis,
//! SQLite or PostgreSQL and the platform fakes, while something goes wrong — a SIGTERM
//! mid-answer, a replica SIGKILLed mid-answer. Each test ends with what the user was
//! told checked, and the books exact: `granted = remaining + reserved + used`, the ledger
//! summing to the balance, and no hold left open.

mod common;

use std::time::Duration;

use common::discord::FakeDiscord;
use common::ledger::{assert_books, ledger_of};
use common::telegram::{FakeTelegram, private_chat, user_json};
use common::*;
use gptbot::core::event::UserId;

fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("word{i} ")).collect()
}

/// SIGTERM while two answers stream: the one that ends within `shutdown.grace` is
/// delivered whole; the one still running when the grace ends stops with "(stopped: the
/// bot is restarting)", is charged for what was shown, and the process exits 0 with
/// every hold settled — on Telegram and on Discord.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_answer_finishes_within_the_grace_then_stops_the_rest_and_settles() {
    let tg = FakeTelegram::start().await;
    let dc = FakeDiscord::start().await;
    // The platforms' limits apply: the stop notice must get through them too.
    tg.enforce_flood_limits();
    dc.enforce_rate_limits();
    let openai = FakeOpenAi::start().await;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(&openai, Some(&redis), &dir, &[]);
    for (key, value) in [
        ("TELEGRAM_BOT_TOKEN", common::telegram::TOKEN.to_string()),
        ("GPTBOT__TELEGRAM__API_URL", tg.api_url()),
        ("DISCORD_TOKEN", common::discord::TOKEN.to_string()),
        ("GPTBOT__DISCORD__API_URL", dc.api_url()),
        ("GPTBOT__SHUTDOWN__GRACE", "4s".to_string()),
    ] {
        env.insert(key.into(), value);
    }
    // Telegram's answer takes 3 s in all; Discord's would take 30 s.
    let short = words(12);
    openai.script([
        Behavior::Stream {
            pieces: short.clone(),
            delay: Duration::from_millis(250),
            usage: Some((20, 12)),
        },
        Behavior::Stream {
            pieces: words(150),
            delay: Duration::from_millis(200),
            usage: Some((20, 150)),
        },
    ]);
    let log = dir.path().join("gptbot.log");
    let mut child = spawn_gptbot_run(&env, &log);
    tg.wait_until(20, "getMe from the binary", |calls| {
        calls.iter().any(|c| c.method == "getme")
    })
    .await;
    dc.wait_ready().await;

    tg.push_message(private_chat(77), user_json(77, "Lea"), "short one", None);
    tg.wait_until(10, "the Telegram answer to start", |calls| {
        calls.iter().any(|c| c.method == "sendmessage")
    })
    .await;
    let lea_dc = common::discord::user("4000000000000000077", "lea");
    dc.send_message("3000000000000000011", lea_dc, "long one", None);
    dc.wait_text(10, "the Discord answer to start", |t| {
        t.starts_with("word0")
    })
    .await;

    signal(&child, "TERM");
    let status = exit_status(&mut child, 30).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}\n{logged}");

    let telegram = tg.texts_in(77);
    assert_eq!(
        telegram.last().map(|t| t.trim_end()),
        Some(short.concat().trim_end()),
        "the answer that fit in the grace was not delivered whole: {telegram:?}"
    );
    let discord = dc.texts();
    let stopped = discord.last().unwrap();
    assert!(
        stopped.starts_with("word0") && stopped.ends_with("(stopped: the bot is restarting)"),
        "{discord:?}"
    );

    let quota = ledger_of(&env).await;
    assert!(
        quota.holds().await.unwrap().is_empty(),
        "a hold was left open"
    );
    let tg_user = UserId::parse("telegram:77").unwrap();
    let dc_user = UserId::parse("discord:4000000000000000077").unwrap();
    let tg_balance = quota.balance(&tg_user).await.unwrap();
    assert_eq!((tg_balance.used, tg_balance.requests), (32, 1));
    let dc_balance = quota.balance(&dc_user).await.unwrap();
    assert!(
        dc_balance.used > 0 && dc_balance.used < 170,
        "the stopped answer was not charged for what was shown: {dc_balance:?}"
    );
    for user in [&tg_user, &dc_user] {
        assert_books(&quota, user).await;
    }
}

const SECRET: &str = "fault-secret_1";

/// Two replicas of `gptbot run` on one PostgreSQL and one Redis, Telegram in webhook
/// mode: replica A is SIGKILLed mid-answer. Its hold is not touched while its lease
/// could still be live; then replica B's sweep returns it, the ledger says `expire`, and
/// B keeps answering the same user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_answer_has_its_hold_swept_by_the_other_after_the_lease() {
    let pg = common::postgres::PostgresServer::start();
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let tg = FakeTelegram::start().await;
    tg.enforce_flood_limits();
    let dir = tempfile::tempdir().unwrap();
    let database = pg.database("gptbot").await;
    let replica = |port: u16| {
        test_env(
            &openai,
            Some(&redis),
            &dir,
            &[
                ("DATABASE_URL".into(), database.clone()),
                ("GPTBOT__QUOTA__HOLD_LEASE".into(), "2s".into()),
            ]
            .into_iter()
            .chain(tg.webhook_settings(&format!("127.0.0.1:{port}"), SECRET))
            .collect::<Vec<_>>(),
        )
    };
    let (port_a, port_b) = (free_port(), free_port());
    let env_a = replica(port_a);
    let mut a = spawn_gptbot_run(&env_a, &dir.path().join("a.log"));
    let mut b = spawn_gptbot_run(&replica(port_b), &dir.path().join("b.log"));
    gptbot::app::install_crypto_provider();
    let http = reqwest::Client::new();
    for port in [port_a, port_b] {
        eventually(
            20,
            "both replicas serving",
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            String::new,
        )
        .await;
    }
    let post = |port: u16, text: &str| {
        let update = tg.webhook_update(private_chat(5), user_json(5, "Kim"), text);
        http.post(format!("http://127.0.0.1:{port}/hook"))
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .json(&update)
            .send()
    };

    openai.script([Behavior::Stream {
        pieces: words(200),
        delay: Duration::from_millis(100),
        usage: Some((20, 200)),
    }]);
    assert_eq!(
        post(port_a, "a long answer please").await.unwrap().status(),
        200
    );
    tg.wait_until(10, "the answer to start streaming", |calls| {
        calls.iter().any(|c| c.method == "sendmessage")
    })
    .await;
    signal(&a, "KILL");
    exit_status(&mut a, 10).await;

    let quota = ledger_of(&env_a).await;
    let kim = UserId::parse("telegram:5").unwrap();
    let held = quota.balance(&kim).await.unwrap();
    assert!(held.reserved > 0, "nothing was held mid-answer: {held:?}");
    assert_eq!(quota.holds().await.unwrap().len(), 1);
    // Replica B sweeps it once the lease (2 s) has run out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while quota.balance(&kim).await.unwrap().reserved > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hold was never swept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let swept = quota.balance(&kim).await.unwrap();
    assert_eq!((swept.remaining, swept.used), (swept.granted, 0));
    let kinds: Vec<String> = quota
        .history(&kim, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("expire"),
        "{kinds:?}"
    );
    assert!(quota.holds().await.unwrap().is_empty());
    assert_books(&quota, &kim).await;

    // B answers the same user, charged exactly.
    assert_eq!(post(port_b, "again").await.unwrap().status(), 200);
    tg.wait_final(5, "Echo: again").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while quota.balance(&kim).await.unwrap().requests == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_books(&quota, &kim).await;
    signal(&b, "TERM");
    assert!(exit_status(&mut b, 30).await.success());
}

/// A webhook request with a wrong secret is refused (401); one whose body is not an
/// update is dropped with a warning that does not contain the body (users' messages);
/// real updates are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_refuses_a_wrong_secret_and_never_logs_update_bodies() {
    let openai = FakeOpenAi::start().await;
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = test_env(
        &openai,
        None,
        &dir,
        &[
            ("TELEGRAM_BOT_TOKEN".into(), common::telegram::TOKEN.into()),
            ("GPTBOT__TELEGRAM__API_URL".into(), tg.api_url()),
            ("GPTBOT__TELEGRAM__MODE".into(), "webhook".into()),
            (
                "GPTBOT__TELEGRAM__LISTEN".into(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "GPTBOT__TELEGRAM__WEBHOOK_URL".into(),
                "https://bot.example.test/hook".into(),
            ),
            ("GPTBOT__TELEGRAM__WEBHOOK_SECRET".into(), SECRET.into()),
        ],
    );
    let log = dir.path().join("gptbot.log");
    let mut child = spawn_gptbot_run(&env, &log);
    eventually(
        20,
        "the webhook server",
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        String::new,
    )
    .await;
    gptbot::app::install_crypto_provider();
    let http = reqwest::Client::new();
    let hook = format!("http://127.0.0.1:{port}/hook");
    let update = tg.webhook_update(private_chat(8), user_json(8, "Max"), "hello there");
    let wrong = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", "not-the-secret")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let garbled = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .header("content-type", "application/json")
        .body(r#"{"update_id": "private words of a user PRIVATE-7731", "message": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), 200);
    let good = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    tg.wait_final(8, "Echo: hello there").await;
    assert_eq!(
        openai.request_count(),
        1,
        "the refused requests reached the model"
    );
    signal(&child, "TERM");
    assert!(exit_status(&mut child, 30).await.success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("could not be read"), "{logged}");
    for secret in [
        "PRIVATE-7731",
        "hello there",
        SECRET,
        common::telegram::TOKEN,
    ] {
        assert!(!logged.contains(secret), "{secret} was logged:\n{logged}");
    }
}

/// Redis killed mid-conversation: the answer streaming at that moment is delivered and
/// charged (only its history turn is lost, logged); while Redis is down each message
/// gets the "can't reach my conversation memory" sentence and costs nothing; once Redis
/// is back (empty: it kept nothing on disk) the bot answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_conversation_then_restarted() {
    let mut t = spawn_app().await;
    let a = std::sync::Arc::new(RecordingAdapter::new(4096, Duration::ZERO));
    let kim = UserId::parse("telegram:1").unwrap();
    assert!(matches!(
        t.send(&a, &dm("1", "hello")).await,
        gptbot::chat::Outcome::Answered { .. }
    ));

    t.openai.script([Behavior::Stream {
        pieces: words(10),
        delay: Duration::from_millis(100),
        usage: Some((20, 10)),
    }]);
    let mut redis = t.redis.take().unwrap();
    let sent_before = t.openai.chunks_sent();
    let t = std::sync::Arc::new(t);
    let streaming = {
        let (t, a) = (t.clone(), a.clone());
        tokio::spawn(async move { t.send(&a, &dm("1", "a longer one")).await })
    };
    // Killed mid-answer: once the first words are out.
    eventually(
        10,
        "the answer under way",
        || t.openai.chunks_sent() >= sent_before + 3,
        String::new,
    )
    .await;
    redis.kill();
    let outcome = streaming.await.unwrap();
    assert!(
        matches!(outcome, gptbot::chat::Outcome::Answered { .. }),
        "{outcome:?}"
    );
    assert!(
        a.last_message().starts_with("word0"),
        "{}",
        a.last_message()
    );

    let calls = t.openai.request_count();
    t.send(&a, &dm("1", "while it is down")).await;
    assert!(
        a.last_message()
            .contains("can't reach my conversation memory"),
        "{}",
        a.last_message()
    );
    assert_eq!(
        t.openai.request_count(),
        calls,
        "a model was called without history"
    );

    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let outcome = t.send(&a, &dm("1", "back?")).await;
        if matches!(outcome, gptbot::chat::Outcome::Answered { .. }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recovered: {}",
            a.last_message()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let balance = t.app.quota.balance(&kim).await.unwrap();
    assert_eq!(balance.requests, 3, "{balance:?}");
    assert!(t.app.quota.holds().await.unwrap().is_empty());
    assert_books(&t.app.quota, &kim).await;
}

/// PostgreSQL killed and restarted while an answer streams: the answer is delivered and
/// its settlement, failing while the server is away, is retried until it lands — charged
/// once, no hold left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_answer_settles_once_it_is_back() {
    let server = common::postgres::PostgresServer::start();
    let url = server.database("gptbot").await;
    let pg = std::sync::Arc::new(std::sync::Mutex::new(server));
    let t = spawn_app_with(
        Options::default()
            .memory_sessions()
            .with("DATABASE_URL", &url),
    )
    .await;
    let a = RecordingAdapter::new(4096, Duration::ZERO);
    let kim = UserId::parse("telegram:1").unwrap();
    t.openai.script([Behavior::Stream {
        pieces: words(20),
        delay: Duration::from_millis(100),
        usage: Some((20, 20)),
    }]);
    let sent_before = t.openai.chunks_sent();
    let t = std::sync::Arc::new(t);
    let restart = {
        let (pg, t) = (pg.clone(), t.clone());
        tokio::spawn(async move {
            // Restarted mid-answer: once a few words are out.
            eventually(
                20,
                "the answer under way",
                || t.openai.chunks_sent() >= sent_before + 5,
                String::new,
            )
            .await;
            tokio::task::spawn_blocking(move || pg.lock().unwrap().restart())
                .await
                .unwrap();
        })
    };
    let outcome = t.send(&a, &dm("1", "hello")).await;
    restart.await.unwrap();
    let gptbot::chat::Outcome::Answered { charged, .. } = outcome else {
        panic!("{outcome:?}: {}", a.last_message())
    };
    assert_eq!(charged, 40);
    assert!(a.last_message().starts_with("word0"));
    let balance = t.app.quota.balance(&kim).await.unwrap();
    assert_eq!(
        (balance.used, balance.reserved, balance.requests),
        (40, 0, 1)
    );
    assert!(t.app.quota.holds().await.unwrap().is_empty());
    assert_books(&t.app.quota, &kim).await;
}

/// A 1 MB message: refused with a sentence, no model call, no charge, no history turn.
#[tokio::test]
async fn a_one_megabyte_message_is_refused_without_charge() {
    let t = spawn_app_with(Options::default().memory_sessions()).await;
    let a = RecordingAdapter::new(4096, Duration::ZERO);
    let huge = "lorem ipsum dolor sit amet ".repeat(1 << 20 >> 5);
    assert!(huge.len() > 800_000);
    assert_eq!(
        t.send(&a, &dm("1", &huge)).await,
        gptbot::chat::Outcome::Refused(gptbot::chat::Refusal::TooLong)
    );
    assert!(
        a.last_message().contains("too long for this model"),
        "{}",
        a.last_message()
    );
    assert_eq!(t.openai.request_count(), 0);
    let kim = UserId::parse("telegram:1").unwrap();
    assert_eq!(t.app.quota.balance(&kim).await.unwrap().used, 0);
    assert!(t.turns("1").await.is_empty());
    assert_books(&t.app.quota, &kim).await;
}

/// SIGTERM while an album is being gathered (its first part received, the bot waiting
/// for the rest): no more parts can come once the bot stops taking updates, so the album
/// is answered with what it has, within the grace — not refused with "send it again",
/// which would lose the files the user already sent. The books stay exact.
#[tokio::test]
async fn sigterm_while_an_album_is_gathered_answers_it_within_the_grace() {
    let tg = FakeTelegram::start().await;
    tg.enforce_flood_limits();
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(&openai, None, &dir, &[]);
    for (key, value) in [
        ("TELEGRAM_BOT_TOKEN", common::telegram::TOKEN.to_string()),
        ("GPTBOT__TELEGRAM__API_URL", tg.api_url()),
        ("GPTBOT__SHUTDOWN__GRACE", "10s".to_string()),
    ] {
        env.insert(key.into(), value);
    }
    openai.script([Behavior::text(
        &["Both ", "files ", "list ", "fruit."],
        (40, 4),
    )]);
    let log = dir.path().join("gptbot.log");
    let mut child = spawn_gptbot_run(&env, &log);
    tg.wait_until(20, "getMe from the binary", |calls| {
        calls.iter().any(|c| c.method == "getme")
    })
    .await;

    tg.serve_file("alb-1", b"apples, pears");
    tg.push_raw_message(serde_json::json!({
        "date": 1_764_000_000, "chat": private_chat(78), "from": user_json(78, "Ola"),
        "media_group_id": "album-shutdown",
        "document": {"file_id": "alb-1", "file_unique_id": "u-alb-1",
                     "file_name": "fruit.txt", "mime_type": "text/plain", "file_size": 13},
        "caption": "what do these list?"
    }));
    // The part was taken (the next poll asks past it); the album now waits for more.
    tg.wait_until(10, "the album's first part to be taken", |calls| {
        calls
            .iter()
            .any(|c| c.method == "getupdates" && c.body["offset"].as_i64() >= Some(2))
    })
    .await;
    signal(&child, "TERM");
    let status = exit_status(&mut child, 30).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}\n{logged}");

    let texts = tg.texts_in(78);
    assert_eq!(
        texts.last().map(|t| t.trim_end()),
        Some("Both files list fruit."),
        "the album was not answered: {texts:?}"
    );
    assert!(!texts.iter().any(|t| t.contains("restarting")), "{texts:?}");
    assert_eq!(openai.request_count(), 1);
    let request = openai.requests().remove(0);
    let asked = request["messages"].as_array().unwrap().last().unwrap()["content"].to_string();
    assert!(
        asked.contains("what do these list?") && asked.contains("apples, pears"),
        "{asked}"
    );
    let quota = ledger_of(&env).await;
    assert!(
        quota.holds().await.unwrap().is_empty(),
        "a hold was left open"
    );
    let ola = UserId::parse("telegram:78").unwrap();
    let balance = quota.balance(&ola).await.unwrap();
    assert_eq!((balance.used, balance.requests), (44, 1));
    assert_books(&quota, &ola).await;
}
