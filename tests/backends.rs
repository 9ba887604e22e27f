//! Every OpenAI-compatible server, not just OpenAI's: the error shapes of OpenAI, Azure,
//! llama.cpp, vLLM, Ollama and a proxy each reach the user as the right sentence; a
//! context overflow is recovered by one invisible retry with a shorter history; the
//! server's own tokenizer is used when the model is not OpenAI's; the model name is
//! checked; `gptbot chat` keeps the terminal for the conversation. The ledger is exact
//! after every case.

mod common;

use std::time::Duration;

use common::ledger::assert_books;
use common::{Behavior, Options, RecordingAdapter, dm, gptbot, shapes, spawn_app_with, test_env};
use gptbot::chat::{Outcome, Refusal};
use gptbot::core::event::{Platform, UserId};

fn adapter() -> RecordingAdapter {
    RecordingAdapter::new(4096, Duration::from_millis(0))
}

fn user(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

/// Each failure reaches the user as its class's sentence, costs nothing and records no turn.
#[tokio::test]
async fn each_servers_error_shape_gets_the_right_sentence() {
    let t = spawn_app_with(Options::default().with("GPTBOT__OPENAI__MAX_RETRIES", 2)).await;
    let cases: Vec<(&str, Vec<Behavior>, &str, usize)> = vec![
        ("openai-401", vec![shapes::openai_401()], "misconfigured", 1),
        ("azure-401", vec![shapes::azure_401()], "misconfigured", 1),
        (
            "llama-401",
            vec![shapes::llama_cpp_401()],
            "misconfigured",
            1,
        ),
        (
            "ollama-404",
            vec![shapes::ollama_404_model()],
            "misconfigured",
            1,
        ),
        // A Retry-After beyond what is worth waiting inside an answer: told, not waited.
        (
            "openai-429",
            vec![shapes::openai_429(60)],
            "try again in about 60 s",
            1,
        ),
        // Server trouble is retried (twice), then called unavailable.
        ("html-502", vec![shapes::html_502(); 3], "unavailable", 3),
        ("vllm-500", vec![shapes::vllm_500(); 3], "unavailable", 3),
        // An overflow on a message sent with no history: the message alone is too long.
        (
            "llama-overflow",
            vec![shapes::llama_cpp_overflow(9000, 4096)],
            "the limit is 4096",
            1,
        ),
        (
            "openai-overflow",
            vec![shapes::openai_overflow(9000, 8192)],
            "the limit is 8192",
            1,
        ),
        (
            "azure-overflow",
            vec![shapes::azure_overflow(5010, 4096)],
            "the limit is 4096",
            1,
        ),
        (
            "vllm-overflow",
            vec![shapes::vllm_overflow(2100, 2048)],
            "the limit is 2048",
            1,
        ),
        (
            "ollama-overflow",
            vec![shapes::ollama_overflow()],
            "too long for this model",
            1,
        ),
    ];
    let a = adapter();
    for (name, script, expected, calls) in cases {
        let before = t.openai.request_count();
        t.openai.script(script);
        let started = std::time::Instant::now();
        let outcome = t.send(&a, &dm(name, "hello")).await;
        assert!(
            matches!(outcome, Outcome::Failed | Outcome::Refused(_)),
            "{name}: {outcome:?}"
        );
        let said = a.last_message();
        assert!(said.contains(expected), "{name}: {said}");
        assert!(!said.contains("sk-tes"), "{name} echoed the key: {said}");
        assert_eq!(t.openai.request_count() - before, calls, "{name}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} was waited out"
        );
        let b = t.app.quota.balance(&user(name)).await.unwrap();
        assert_eq!((b.used, b.reserved), (0, 0), "{name} was charged");
        assert_books(&t.app.quota, &user(name)).await;
        assert!(t.turns(name).await.is_empty(), "{name}");
    }
}

/// A short Retry-After is waited out and the answer arrives.
#[tokio::test]
async fn a_short_retry_after_is_honoured_then_answered() {
    let t = spawn_app_with(Options::default()).await;
    let a = adapter();
    t.openai.script([shapes::openai_429(1)]);
    let started = std::time::Instant::now();
    let outcome = t.send(&a, &dm("1", "hello")).await;
    assert!(matches!(outcome, Outcome::Answered { .. }), "{outcome:?}");
    assert_eq!(a.last_message(), "Echo: hello");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(t.openai.request_count(), 2);
    assert_books(&t.app.quota, &user("1")).await;
}

/// Every server's overflow wording, after some history: one invisible retry with less
/// history, the answer, one charge.
#[tokio::test]
async fn a_context_overflow_is_recovered_by_one_invisible_retry() {
    let t = spawn_app_with(Options::default()).await;
    let a = adapter();
    let overflows = [
        ("llama", shapes::llama_cpp_overflow(700, 400)),
        ("openai", shapes::openai_overflow(700, 400)),
        ("azure", shapes::azure_overflow(700, 400)),
        ("vllm", shapes::vllm_overflow(700, 400)),
        ("ollama", shapes::ollama_overflow()),
    ];
    for (name, overflow) in overflows {
        for i in 0..6 {
            t.send(&a, &dm(name, &format!("earlier message {i}"))).await;
        }
        let before = t.openai.request_count();
        t.openai.script([overflow]);
        let outcome = t.send(&a, &dm(name, "and now?")).await;
        assert!(
            matches!(outcome, Outcome::Answered { .. }),
            "{name}: {outcome:?}"
        );
        assert_eq!(a.last_message(), "Echo: and now?", "{name}");
        let requests = t.openai.requests();
        assert_eq!(requests.len() - before, 2, "{name}: one retry");
        let first = requests[before]["messages"].as_array().unwrap().len();
        let retry = requests[before + 1]["messages"].as_array().unwrap();
        assert!(retry.len() < first, "{name}: {} then {first}", retry.len());
        // The retry still alternates: system, (user, assistant)*, user.
        assert_eq!(retry[0]["role"], "system");
        for (i, m) in retry[1..].iter().enumerate() {
            assert_eq!(
                m["role"],
                if i % 2 == 0 { "user" } else { "assistant" },
                "{name}"
            );
        }
        let b = t.app.quota.balance(&user(name)).await.unwrap();
        assert_eq!(b.requests, 7, "{name}: charged once per answer");
        assert_books(&t.app.quota, &user(name)).await;
    }
}

/// A local model whose tokenizer counts digits one by one and whose context is smaller
/// than configured: tiktoken undercounts, the server refuses, the bot recovers — every
/// message is answered or clearly refused, never "unavailable", nothing left held.
#[tokio::test]
async fn a_local_model_with_a_smaller_context_never_fails_a_conversation() {
    let t = spawn_app_with(
        Options::default()
            .with("GPTBOT__MODEL__NAME", "gemma-3-270m")
            .with("GPTBOT__MODEL__TOKENIZER", "tiktoken:o200k_base")
            .with("GPTBOT__MODEL__CONTEXT_TOKENS", 4096)
            .with("GPTBOT__MODEL__MAX_TOKENS", 64),
    )
    .await;
    t.openai.enforce_context(300);
    let a = adapter();
    for i in 0..8 {
        let text = format!("number {i}: {}", "1234567890".repeat(4));
        let outcome = t.send(&a, &dm("1", &text)).await;
        assert!(
            matches!(outcome, Outcome::Answered { .. }),
            "{i}: {outcome:?} {}",
            a.last_message()
        );
    }
    // A message that alone is longer than the server's context.
    let huge = "1234567890".repeat(60);
    assert_eq!(
        t.send(&a, &dm("1", &huge)).await,
        Outcome::Refused(Refusal::TooLong)
    );
    let said = a.last_message();
    assert!(
        said.contains("too long for this model") && said.contains("the limit is 300"),
        "{said}"
    );
    // Some prompts were refused by the server and retried shorter (9 requests otherwise).
    assert!(t.openai.request_count() > 9, "no overflow was recovered");
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.requests, b.reserved), (8, 0));
    assert_books(&t.app.quota, &user("1")).await;
}

/// A model tiktoken does not know, on a server with a tokenize endpoint: counts come from
/// the server, so the hold covers what the server bills even for digit-heavy text. The
/// temperature is sent as configured.
#[tokio::test]
async fn the_servers_tokenizer_counts_for_a_model_that_is_not_openais() {
    let openai = common::FakeOpenAi::start().await;
    openai.enforce_context(8192);
    let t = common::spawn_app_on(
        openai,
        Options::default()
            .with("GPTBOT__MODEL__NAME", "gemma-3-270m")
            .with("GPTBOT__MODEL__TEMPERATURE", "0.7"),
    )
    .await;
    let a = adapter();
    let text = "1234567890".repeat(60);
    let Outcome::Answered { reserved, charged } = t.send(&a, &dm("1", &text)).await else {
        panic!("not answered: {}", a.last_message());
    };
    assert!(
        t.openai.tokenized().contains(&text),
        "the server did not count the message"
    );
    // The fake bills 600 tokens for the digits alone; tiktoken would have said ~200.
    assert!(charged > 600 + 600, "{charged}");
    let max_tokens = i64::from(t.app.settings.model.max_tokens);
    assert!(
        reserved - max_tokens >= charged - 600,
        "hold {reserved} < prompt"
    );
    let request = &t.openai.requests()[0];
    assert_eq!(request["temperature"].to_string(), "0.7");
    assert_books(&t.app.quota, &user("1")).await;
}

#[tokio::test]
async fn config_check_probe_says_what_the_server_serves() {
    let openai = common::FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(&openai, None, &dir, &[]);
    let run = gptbot(&["config", "check", "--probe"], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("connection and key: ok (2 models listed)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("model gpt-4o-mini: listed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("token counts: tiktoken"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("one-token answer: ok"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("sk-test-secret-key"));

    env.insert("GPTBOT__MODEL__NAME".into(), "gpt-4o-typo".into());
    let run = gptbot(&["config", "check", "--probe"], &env, "").await;
    assert!(
        run.stdout
            .contains("model gpt-4o-typo: NOT listed (the server lists: gpt-4o-mini, fake-model)"),
        "{}",
        run.stdout
    );

    openai.script([shapes::openai_401()]);
    env.insert("GPTBOT__MODEL__NAME".into(), "gpt-4o-mini".into());
    let run = gptbot(&["config", "check", "--probe"], &env, "").await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("credentials"), "{}", run.stderr);
    assert!(!run.stderr.contains("sk-test-secret-key"));
}

/// `gptbot chat` prints only the conversation: a warning from a retried request does not
/// land in the middle of it, unless `--verbose` asks for logs.
#[tokio::test]
async fn chat_keeps_the_terminal_for_the_conversation() {
    let openai = common::FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(&openai, None, &dir, &[]);
    openai.script([Behavior::Cut { pieces: vec![] }]);
    let run = gptbot(&["chat"], &env, "hello\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Echo: hello"), "{}", run.stdout);
    assert!(!run.stderr.contains("WARN"), "{}", run.stderr);

    openai.script([Behavior::Cut { pieces: vec![] }]);
    let run = gptbot(&["chat", "--verbose"], &env, "hello again\n").await;
    assert!(run.stdout.contains("Echo: hello again"), "{}", run.stdout);
    assert!(run.stderr.contains("retrying"), "{}", run.stderr);

    // Or to a file, at log.level.
    let log = dir.path().join("gptbot.log");
    let mut env = env.clone();
    env.insert("GPTBOT__LOG__FILE".into(), log.display().to_string());
    openai.script([Behavior::Cut { pieces: vec![] }]);
    let run = gptbot(&["chat"], &env, "and a file\n").await;
    assert!(run.stdout.contains("Echo: and a file"), "{}", run.stdout);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("retrying"), "{logged}");
}
