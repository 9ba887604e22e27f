//! `/metrics` of a running bot, in its own test binary: the recorder is global to the
//! process, so the counters here hold exactly what this one test did.

mod common;

use common::Options;
use common::ledger::assert_books;
use common::ops::{get, spawn};
use common::telegram::{private_chat, user_json};
use gptbot::core::event::{Platform, UserId};

fn user(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

/// After one answered message and one quota refusal, `/metrics` shows both outcomes, the
/// tokens charged by kind, the model's durations and the platform calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_messages_tokens_model_time_and_refusals() {
    let ops = spawn(Options::default().with("GPTBOT__QUOTA__DEFAULT_TOKENS", 150)).await;
    ops.t
        .openai
        .script([common::Behavior::text(&["Hi", " there"], (40, 2))]);
    ops.tg
        .push_message(private_chat(9), user_json(9, "Ann"), "hello", None);
    ops.tg.wait_final(9, "Hi there").await;
    // What is left (150 - 42) cannot hold the next prompt plus 100 tokens of answer.
    ops.tg
        .push_message(private_chat(9), user_json(9, "Ann"), "again", None);
    ops.tg
        .wait_until(10, "a quota refusal", |calls| {
            calls.iter().any(|c| {
                c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Quota exhausted"))
            })
        })
        .await;

    let (status, text) = get(&format!("{}/metrics", ops.base)).await;
    assert_eq!(status, 200);
    let has = |needle: &str| {
        assert!(
            text.lines().any(|l| l.starts_with(needle)),
            "no `{needle}` in:\n{text}"
        )
    };
    has(r#"gptbot_messages_total{platform="telegram",outcome="answered"}"#);
    has(r#"gptbot_messages_total{platform="telegram",outcome="refused_quota"}"#);
    has(r#"gptbot_tokens_charged_total{kind="prompt"} "#);
    has(r#"gptbot_tokens_charged_total{kind="completion"} "#);
    has(r#"gptbot_model_duration_seconds_bucket{le="#);
    has(r#"gptbot_model_first_token_seconds_count"#);
    has(r#"gptbot_reply_overhead_seconds_count"#);
    has(
        r#"gptbot_platform_api_calls_total{platform="telegram",method="sendMessage",status="2xx"}"#,
    );
    has(r#"gptbot_quota_db_seconds_bucket{op="reserve","#);
    has(r#"gptbot_answers_in_flight"#);
    has(r#"gptbot_build_info{version=""#);
    assert!(text.contains("# TYPE gptbot_model_duration_seconds histogram"));
    assert!(text.contains("# HELP gptbot_messages_total"));
    // The counters hold exactly what happened here (this test binary has one bot).
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(value(r#"gptbot_tokens_charged_total{kind="prompt"}"#), 40.0);
    assert_eq!(
        value(r#"gptbot_tokens_charged_total{kind="completion"}"#),
        2.0
    );
    assert_books(&ops.t.app.quota, &user("9")).await;
}
