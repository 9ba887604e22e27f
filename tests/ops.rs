//! The operations listener of a running bot: `/healthz`, `/readyz` turning 503 within
//! seconds of Redis or PostgreSQL going away and back to 200 when they return, and
//! `/metrics` in Prometheus' text format with the message, token, model and refusal
//! metrics. The ledger is checked after each fault.

mod common;

use std::time::Duration;

use common::ledger::assert_books;
use common::ops::{Ops, get, readyz_becomes, spawn};
use common::telegram::{FakeTelegram, TOKEN, private_chat, user_json};
use common::{Options, spawn_app_with, stopper};
use gptbot::core::event::{Platform, UserId};

fn user(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

async fn answered(ops: &Ops, chat: i64, text: &str) {
    ops.tg
        .push_message(private_chat(chat), user_json(chat, "Ann"), text, None);
    ops.tg.wait_final(chat, &format!("Echo: {text}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_redis_going_away_and_coming_back() {
    let mut ops = spawn(Options::default()).await;
    let (status, body) = get(&format!("{}/healthz", ops.base)).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let ready = readyz_becomes(&ops.base, 200, Duration::from_secs(5)).await;
    assert_eq!(ready["checks"]["sessions"], "ok");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["telegram"], "ok");
    answered(&ops, 7, "before").await;

    ops.t.redis.as_mut().unwrap().kill();
    let down = readyz_becomes(&ops.base, 503, Duration::from_secs(5)).await;
    assert_eq!(down["ready"], false);
    assert_ne!(down["checks"]["sessions"], "ok", "{down}");
    assert_eq!(down["checks"]["database"], "ok", "{down}");
    // Alive all the while: an orchestrator must not restart the process for this.
    assert_eq!(get(&format!("{}/healthz", ops.base)).await.0, 200);

    ops.t.redis.as_mut().unwrap().restart();
    readyz_becomes(&ops.base, 200, Duration::from_secs(10)).await;
    answered(&ops, 7, "after").await;
    // The reply is seen while its settle is written: the books once both are in.
    common::ledger::settled(&ops.t.app.quota, &user("7"), 2).await;
    assert_books(&ops.t.app.quota, &user("7")).await;
    drop(ops.running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_postgres_going_away_and_coming_back() {
    let mut pg = common::postgres::PostgresServer::start();
    let url = pg.database("ops").await;
    let ops = spawn(Options::default().with("DATABASE_URL", url)).await;
    readyz_becomes(&ops.base, 200, Duration::from_secs(5)).await;
    answered(&ops, 8, "before").await;

    pg.kill();
    let down = readyz_becomes(&ops.base, 503, Duration::from_secs(5)).await;
    assert_ne!(down["checks"]["database"], "ok", "{down}");
    assert_eq!(down["checks"]["sessions"], "ok", "{down}");

    pg.start_again();
    readyz_becomes(&ops.base, 200, Duration::from_secs(15)).await;
    answered(&ops, 8, "after").await;
    common::ledger::settled(&ops.t.app.quota, &user("8"), 2).await;
    assert_books(&ops.t.app.quota, &user("8")).await;
}

/// A listener address that cannot be had is a start-up error naming `http.listen`.
#[tokio::test]
async fn an_address_in_use_is_a_start_up_error_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let tg = FakeTelegram::start().await;
    let t = spawn_app_with(
        Options::default()
            .telegram(&tg)
            .with("GPTBOT__HTTP__LISTEN", format!("127.0.0.1:{port}")),
    )
    .await;
    let (_stop, rx) = stopper();
    let Err(e) = t.app.start(rx).await else {
        panic!("started on a taken port");
    };
    assert!(e.to_string().contains("http.listen"), "{e}");
    assert_eq!(e.exit_code(), 2);
}

/// `gptbot health` (the container's health check) asks the running binary's listener:
/// 0 while it runs (`--ready` too), 1 once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gptbot_health_asks_the_running_binary() {
    let openai = common::FakeOpenAi::start().await;
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut env = common::test_env(&openai, None, &dir, &[]);
    env.insert("TELEGRAM_BOT_TOKEN".into(), TOKEN.into());
    env.insert("GPTBOT__TELEGRAM__API_URL".into(), tg.api_url());
    // As in the container image: listening on every interface, asked on loopback.
    env.insert("GPTBOT__HTTP__LISTEN".into(), format!("0.0.0.0:{port}"));
    let mut child = common::spawn_gptbot_run(&env, &dir.path().join("run.log"));
    let mut ready = None;
    let mut last = String::new();
    for _ in 0..100 {
        let run = common::gptbot(&["health", "--ready"], &env, "").await;
        if run.code == 0 {
            ready = Some(run);
            break;
        }
        last = run.stderr;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    let ready = ready.unwrap_or_else(|| panic!("never ready: {last}\n{log}"));
    assert!(ready.stdout.contains(r#""ready":true"#), "{}", ready.stdout);
    let alive = common::gptbot(&["health"], &env, "").await;
    assert_eq!(
        (alive.code, alive.stdout.trim()),
        (0, "ok"),
        "{}",
        alive.stderr
    );

    common::signal(&child, "TERM");
    assert!(common::exit_status(&mut child, 30).await.success());
    let gone = common::gptbot(&["health"], &env, "").await;
    assert_eq!(gone.code, 1, "{}", gone.stdout);
    assert!(gone.stderr.contains("not healthy"), "{}", gone.stderr);
}

/// A newcomer with no key and OpenAI's default URL is told at start-up, with the way to a
/// local server; `gptbot chat` without `$USER` is still the OS account, not "local".
#[tokio::test]
async fn first_run_names_the_missing_key_and_the_os_account() {
    let openai = common::FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::test_env(&openai, None, &dir, &[]);
    env.remove("OPENAI_API_KEY");
    env.remove("OPENAI_BASE_URL");
    env.insert("TELEGRAM_BOT_TOKEN".into(), TOKEN.into());
    for command in ["chat", "run"] {
        let run = common::gptbot(&[command], &env, "hello\n").await;
        assert_eq!(run.code, 2, "{command}: {}", run.stderr);
        assert!(run.stderr.contains("OPENAI_API_KEY"), "{}", run.stderr);
        assert!(run.stderr.contains("OPENAI_BASE_URL"), "{}", run.stderr);
        assert!(!run.stderr.contains("unavailable"), "{}", run.stderr);
    }

    let env = common::test_env(&openai, None, &dir, &[]);
    let run = common::gptbot_with_exactly(&["chat"], &env, "who am i\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // SAFETY: getpwuid on our own uid; the name is copied out at once.
    let account = unsafe {
        let pw = libc::getpwuid(libc::getuid());
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    };
    let show = common::gptbot(&["quota", "show", &format!("console:{account}")], &env, "").await;
    assert!(show.stdout.contains("requests 1"), "{}", show.stdout);
}
