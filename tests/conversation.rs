//! Whole conversations through the real core: real Redis, real SQLite, the fake OpenAI
//! server over HTTP, and a recording adapter.

mod common;

use std::time::Duration;

use common::*;
use gptbot::chat::{Outcome, Refusal};
use gptbot::core::adapter::Stage;
use gptbot::core::event::{Content, Platform, UserId};
use gptbot::session::Role;

fn adapter() -> RecordingAdapter {
    RecordingAdapter::new(4096, Duration::ZERO)
}

fn user(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

fn roles_and_contents(request: &serde_json::Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_conversation_carries_its_history_to_the_next_request() {
    let t = spawn_app().await;
    let a = adapter();

    let outcome = t.send(&a, &dm("1", "hello there")).await;
    assert!(matches!(outcome, Outcome::Answered { .. }), "{outcome:?}");
    assert_eq!(a.last_message(), "Echo: hello there");

    t.send(&a, &dm("1", "and again")).await;
    assert_eq!(a.last_message(), "Echo: and again");

    let requests = t.openai.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(first["stream"], true);
    assert_eq!(first["stream_options"]["include_usage"], true);
    assert_eq!(first["max_tokens"], 100);
    let second = roles_and_contents(&requests[1]);
    assert_eq!(second[0].0, "system");
    assert_eq!(
        &second[1..],
        &[
            ("user".to_string(), "hello there".to_string()),
            ("assistant".to_string(), "Echo: hello there".to_string()),
            ("user".to_string(), "and again".to_string()),
        ]
    );
    // The key goes to the server and nowhere else.
    assert_eq!(
        t.openai.request_headers()[0]["authorization"],
        "Bearer sk-test-secret-key"
    );

    // The history lives in Redis under the documented key, as versioned JSON.
    let mut redis = t.redis.as_ref().unwrap().client().await;
    let raw: String = redis::cmd("GET")
        .arg("gptbot:session:telegram:1:1")
        .query_async(&mut redis)
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(stored["v"], 1);
    assert_eq!(stored["turns"].as_array().unwrap().len(), 4);
    assert!(stored["turns"][0]["tokens"].as_u64().unwrap() > 0);

    // A second user does not see the first one's history.
    t.send(&a, &dm("2", "who am I")).await;
    let third = roles_and_contents(&t.openai.requests()[2]);
    assert_eq!(third.len(), 2);
}

#[tokio::test]
async fn history_survives_a_restart_of_the_app() {
    let t = spawn_app().await;
    let a = adapter();
    t.send(&a, &dm("7", "remember me")).await;

    let again = t.replica().await;
    again
        .conversation
        .handle(&common::typed(&dm("7", "still there?")).unwrap(), &a)
        .await;
    let last = roles_and_contents(t.openai.requests().last().unwrap());
    assert!(
        last.contains(&("user".into(), "remember me".into())),
        "{last:?}"
    );
}

#[tokio::test]
async fn reset_clears_the_history() {
    let t = spawn_app().await;
    let a = adapter();
    t.send(&a, &dm("1", "one")).await;
    t.send(&a, &dm("1", "/reset")).await;
    assert!(
        a.last_message().contains("history cleared"),
        "{}",
        a.last_message()
    );
    t.send(&a, &dm("1", "two")).await;
    let last = roles_and_contents(t.openai.requests().last().unwrap());
    assert_eq!(last.len(), 2, "{last:?}");
    assert_eq!(last[1], ("user".into(), "two".into()));
}

#[tokio::test]
async fn system_prompt_can_be_shown_set_and_reset() {
    let t = spawn_app().await;
    let a = adapter();
    t.send(&a, &dm("1", "/system")).await;
    assert!(a.last_message().contains("You are a helpful assistant"));

    t.send(&a, &dm("1", "/system You are a pirate. Say arr."))
        .await;
    assert!(a.last_message().starts_with("System prompt set"));
    t.send(&a, &dm("1", "/system")).await;
    assert!(a.last_message().contains("You are a pirate. Say arr."));
    t.send(&a, &dm("1", "hi")).await;
    let sent = roles_and_contents(t.openai.requests().last().unwrap());
    assert_eq!(
        sent[0],
        ("system".into(), "You are a pirate. Say arr.".into())
    );

    // /reset keeps the custom prompt; /system reset restores the default.
    t.send(&a, &dm("1", "/reset")).await;
    t.send(&a, &dm("1", "hi again")).await;
    let sent = roles_and_contents(t.openai.requests().last().unwrap());
    assert_eq!(sent[0].1, "You are a pirate. Say arr.");
    t.send(&a, &dm("1", "/system reset")).await;
    t.send(&a, &dm("1", "and now?")).await;
    let sent = roles_and_contents(t.openai.requests().last().unwrap());
    assert!(sent[0].1.starts_with("You are a helpful assistant"));
}

#[tokio::test]
async fn other_commands_and_non_text_get_helpful_answers_without_charging() {
    let t = spawn_app().await;
    let a = adapter();
    t.send(&a, &dm("1", "/start")).await;
    assert!(a.last_message().contains("Hi User 1"));
    assert!(a.last_message().contains("/reset"));
    t.send(&a, &dm("1", "/help")).await;
    assert!(a.last_message().contains("/quota"));
    t.send(&a, &dm("1", "/frobnicate now")).await;
    let reply = a.last_message();
    assert!(
        reply.contains("Unknown command /frobnicate") && reply.contains("/help"),
        "{reply}"
    );
    t.send(&a, &dm("1", "/ask")).await;
    assert!(a.last_message().starts_with("Usage: /ask"));
    t.send(&a, &dm("1", "/quota")).await;
    assert!(
        a.last_message()
            .contains("20000 remaining, 0 used of 20000"),
        "{}",
        a.last_message()
    );

    let mut photo = dm("1", "");
    photo.content = Content::Unsupported("a photo".into());
    t.send(&a, &photo).await;
    assert!(a.last_message().contains("only answer text"));

    assert_eq!(t.openai.request_count(), 0);
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.remaining, b.used, b.reserved), (20000, 0, 0));
}

#[tokio::test]
async fn groups_answer_only_when_addressed_and_bots_are_ignored() {
    let t = spawn_app().await;
    let a = adapter();
    assert_eq!(
        t.send(&a, &group("-100", "1", "chatter", false)).await,
        Outcome::Ignored
    );
    let mut from_bot = dm("9", "hello");
    from_bot.sender.is_bot = true;
    assert_eq!(t.send(&a, &from_bot).await, Outcome::Ignored);
    assert_eq!(
        t.send(&a, &group("-100", "1", "/reset@otherbot", true))
            .await,
        Outcome::Ignored
    );
    assert!(a.actions().is_empty());
    assert_eq!(t.openai.request_count(), 0);

    t.send(&a, &group("-100", "1", "question from one", true))
        .await;
    assert_eq!(a.last_message(), "Echo: question from one");
    let mut reply = group("-100", "2", "question from two", false);
    reply.reply_to_bot = true;
    t.send(&a, &reply).await;
    // Members of one group do not share history.
    let second = roles_and_contents(&t.openai.requests()[1]);
    assert_eq!(second.len(), 2, "{second:?}");
}

#[tokio::test]
async fn settlement_uses_the_servers_usage_figures() {
    let t = spawn_app().await;
    let a = adapter();
    t.openai
        .script([Behavior::text(&["Hi", " there"], (37, 11))]);
    let outcome = t.send(&a, &dm("1", "hello")).await;
    let Outcome::Answered { reserved, charged } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(charged, 48);
    assert!(reserved > 100);
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!(
        (b.used, b.remaining, b.reserved, b.requests),
        (48, 20000 - 48, 0, 1)
    );
    // The stored assistant turn carries the server's completion count.
    let turns = t.turns("1").await;
    assert_eq!(turns[1].role, Role::Assistant);
    assert_eq!(turns[1].tokens, 11);
}

#[tokio::test]
async fn without_server_usage_tokens_are_counted_locally() {
    let t = spawn_app().await;
    let a = adapter();
    t.openai.script([Behavior::Stream {
        pieces: vec!["one two three four".into()],
        delay: Duration::ZERO,
        usage: None,
    }]);
    let Outcome::Answered { reserved, charged } = t.send(&a, &dm("1", "count me")).await else {
        panic!()
    };
    // Prompt estimate (reservation minus max_tokens) plus the four-token answer.
    assert_eq!(charged, reserved - 100 + 4);
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!(b.used, charged);
}

#[tokio::test]
async fn exhausted_quota_refuses_before_calling_the_model() {
    let t = spawn_app_with(Options::default().with("GPTBOT__QUOTA__DEFAULT_TOKENS", 50)).await;
    let a = adapter();
    assert_eq!(
        t.send(&a, &dm("1", "hello")).await,
        Outcome::Refused(Refusal::Quota)
    );
    let reply = a.last_message();
    assert!(
        reply.starts_with("Quota exhausted: 50 tokens left"),
        "{reply}"
    );
    assert_eq!(t.openai.request_count(), 0);
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.remaining, b.used, b.reserved), (50, 0, 0));
}

#[tokio::test]
async fn a_server_error_refunds_the_whole_reservation() {
    let t = spawn_app().await;
    let a = adapter();
    // The HTTP layer retries a 5xx `openai.max_retries` (2) times before giving up.
    t.openai
        .script(std::iter::repeat_n(Behavior::status(500), 3));
    assert_eq!(t.send(&a, &dm("1", "hello")).await, Outcome::Failed);
    assert_eq!(t.openai.request_count(), 3);
    assert!(
        a.last_message().contains("unavailable"),
        "{}",
        a.last_message()
    );
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.remaining, b.used, b.reserved), (20000, 0, 0));
    // No turn was recorded.
    assert!(t.turns("1").await.is_empty());
}

/// A stream cut after some text: the provider billed that text and the user saw it, so
/// it is charged like /cancel (prompt + the text produced) and kept as a partial turn;
/// refunding it all would make provoked cuts free answers.
#[tokio::test]
async fn a_stream_cut_midway_charges_what_was_shown_and_records_the_partial_turn() {
    let t = spawn_app().await;
    let a = adapter();
    t.openai.script([Behavior::Cut {
        pieces: vec!["The answer".into(), " is".into()],
    }]);
    assert_eq!(t.send(&a, &dm("1", "hello")).await, Outcome::Failed);
    let shown = a.last_message();
    assert!(shown.starts_with("The answer is"), "{shown}");
    assert!(shown.contains("cut off"), "{shown}");
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    let counter = gptbot::llm::tokens::TokenCounter::for_model("gpt-4o-mini");
    let completion = i64::from(counter.count("The answer is").await);
    assert_eq!(b.reserved, 0);
    assert!(
        b.used > completion && b.used < completion + 50,
        "charged {} for a prompt and {completion} tokens shown",
        b.used
    );
    common::ledger::assert_books(&t.app.quota, &user("1")).await;
    let turns = t.turns("1").await;
    assert_eq!(turns.len(), 2, "the partial turn was not recorded");
    assert_eq!(turns[0].content, "hello");
    assert_eq!(turns[1].content, "The answer is");
    // Mid-stream failures are not retried.
    assert_eq!(t.openai.request_count(), 1);
}

#[tokio::test]
async fn rate_limits_and_broken_streams_are_retried_before_the_first_token() {
    let t = spawn_app().await;
    let a = adapter();
    t.openai.script([
        Behavior::Error {
            status: 429,
            kind: "rate_limit_error".into(),
            code: None,
            retry_after: Some(1),
        },
        Behavior::Cut { pieces: vec![] },
    ]);
    let started = std::time::Instant::now();
    let outcome = t.send(&a, &dm("1", "hello")).await;
    assert!(matches!(outcome, Outcome::Answered { .. }), "{outcome:?}");
    assert_eq!(a.last_message(), "Echo: hello");
    // 429 (retried by the HTTP layer after Retry-After), a stream that broke before any
    // text (retried here), then the answer.
    assert_eq!(t.openai.request_count(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!(b.reserved, 0);
    assert_eq!(b.requests, 1);
}

#[tokio::test]
async fn a_hanging_server_times_out_and_refunds() {
    let t = spawn_app_with(
        Options::default()
            .with("GPTBOT__OPENAI__TIMEOUT", "300ms")
            .with("GPTBOT__OPENAI__MAX_RETRIES", 1),
    )
    .await;
    let a = adapter();
    t.openai.script([Behavior::Hang, Behavior::Hang]);
    assert_eq!(t.send(&a, &dm("1", "hello")).await, Outcome::Failed);
    assert!(
        a.last_message().contains("too long to answer"),
        "{}",
        a.last_message()
    );
    assert_eq!(t.openai.request_count(), 2);
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.remaining, b.reserved), (20000, 0));
    // The typing indicator was shown while waiting.
    assert!(a.actions().contains(&Action::Typing));
}

#[tokio::test]
async fn upstream_errors_map_to_short_user_messages() {
    let t = spawn_app().await;
    let a = adapter();
    t.openai.script([Behavior::Error {
        status: 400,
        kind: "invalid_request_error".into(),
        code: Some("context_length_exceeded".into()),
        retry_after: None,
    }]);
    t.send(&a, &dm("1", "hello")).await;
    assert!(
        a.last_message().contains("too long for this model"),
        "{}",
        a.last_message()
    );
    t.openai.script([Behavior::Error {
        status: 401,
        kind: "invalid_request_error".into(),
        code: Some("invalid_api_key".into()),
        retry_after: None,
    }]);
    t.send(&a, &dm("1", "hello")).await;
    let reply = a.last_message();
    assert!(reply.contains("operator"), "{reply}");
    assert!(!reply.contains("sk-test"), "{reply}");
}

#[tokio::test]
async fn history_is_trimmed_to_the_context_window() {
    let t = spawn_app_with(Options::default().with("GPTBOT__MODEL__CONTEXT_TOKENS", 400)).await;
    let a = adapter();
    for i in 0..12 {
        t.send(
            &a,
            &dm(
                "1",
                &format!("message {i} has a handful of extra words in it"),
            ),
        )
        .await;
    }
    let requests = t.openai.requests();
    let last = roles_and_contents(requests.last().unwrap());
    let counter = gptbot::llm::tokens::TokenCounter::for_model("gpt-4o-mini");
    let mut prompt = 3;
    for (_, content) in &last {
        prompt += counter.message(content).await;
    }
    assert!(
        prompt + 100 <= 400,
        "prompt of {prompt} tokens does not leave room for the answer"
    );
    assert!(last.len() < 2 * 12, "nothing was trimmed: {}", last.len());
    assert!(last.len() > 4, "too much was trimmed: {}", last.len());
    assert_eq!(last[0].0, "system");
    assert_eq!(
        last.last().unwrap().1,
        "message 11 has a handful of extra words in it"
    );
    // What was kept is the newest history, in order.
    assert_eq!(
        last[last.len() - 2].1,
        "Echo: message 10 has a handful of extra words in it"
    );
    // The full history is still stored.
    assert_eq!(t.turns("1").await.len(), 24);
}

#[tokio::test]
async fn a_message_too_long_for_the_window_is_refused_without_charge() {
    let t = spawn_app_with(Options::default().with("GPTBOT__MODEL__CONTEXT_TOKENS", 400)).await;
    let a = adapter();
    assert_eq!(
        t.send(&a, &dm("1", &"lorem ipsum ".repeat(300))).await,
        Outcome::Refused(Refusal::TooLong)
    );
    assert!(a.last_message().contains("too long for this model"));
    assert_eq!(t.openai.request_count(), 0);
    assert_eq!(t.app.quota.balance(&user("1")).await.unwrap().used, 0);
}

#[tokio::test]
async fn corrupt_session_json_is_replaced_not_fatal() {
    let t = spawn_app().await;
    let a = adapter();
    let key = dm("1", "").session_key();
    for garbage in [
        "{definitely not json",
        r#"{"v":99,"turns":[]}"#,
        r#"{"v":1,"turns":"x"}"#,
    ] {
        let mut redis = t.redis.as_ref().unwrap().client().await;
        let _: () = redis::cmd("SET")
            .arg(format!("gptbot:session:{key}"))
            .arg(garbage)
            .query_async(&mut redis)
            .await
            .unwrap();
        let outcome = t.send(&a, &dm("1", "still works?")).await;
        assert!(
            matches!(outcome, Outcome::Answered { .. }),
            "{garbage}: {outcome:?}"
        );
        let session = t.app.sessions.load(&key).await.unwrap();
        assert_eq!(session.turns.len(), 2, "{garbage}");
    }
}

#[tokio::test]
async fn streaming_edits_respect_the_adapters_interval() {
    let t = spawn_app().await;
    let a = RecordingAdapter::new(4096, Duration::from_millis(150));
    let pieces: Vec<String> = (0..30).map(|i| format!("w{i} ")).collect();
    t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(20),
        usage: Some((10, 30)),
    }]);
    t.send(&a, &dm("1", "stream please")).await;
    let log = a.log();
    let writes: Vec<&Recorded> = log.iter().filter(|r| r.action != Action::Typing).collect();
    assert!(matches!(
        writes[0].action,
        Action::Send {
            stage: Stage::Draft,
            ..
        }
    ));
    assert!(
        writes.len() >= 3,
        "expected several edits, got {}",
        writes.len()
    );
    assert!(writes.len() < 30, "every delta was its own edit");
    // Drafts keep the interval; the final text does not wait for it.
    let drafts = &writes[..writes.len() - 1];
    for pair in drafts.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(149), "drafts {gap:?} apart");
    }
    let Action::Edit { text, stage, .. } = &writes.last().unwrap().action else {
        panic!("the last write is not an edit")
    };
    assert_eq!(*stage, Stage::Final);
    assert_eq!(text, &pieces.concat());
    assert_eq!(a.messages().len(), 1);
}

#[tokio::test]
async fn long_answers_roll_over_into_new_messages_with_balanced_fences() {
    let t = spawn_app().await;
    let a = RecordingAdapter::new(120, Duration::ZERO);
    let mut pieces = vec!["Here you go:\n\n```python\n".to_string()];
    for i in 0..20 {
        pieces.push(format!("print('line {i} → ✓')\n"));
    }
    pieces.push("```\n\nDone — ".into());
    pieces.push("привет 🦀".into());
    t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(2),
        usage: Some((10, 200)),
    }]);
    t.send(&a, &dm("1", "code please")).await;
    let messages = a.messages();
    assert!(messages.len() >= 4, "{messages:#?}");
    for (i, m) in messages.iter().enumerate() {
        assert!(m.chars().count() <= 120);
        let fences = m
            .lines()
            .filter(|l| l.trim_start().starts_with("```"))
            .count();
        assert_eq!(fences % 2, 0, "message {i} has unbalanced fences:\n{m}");
    }
    assert!(messages[1].starts_with("```python\n"));
    assert!(messages.last().unwrap().ends_with("привет 🦀"));
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.trim_start().starts_with("```"))
            .collect::<Vec<_>>()
            .join("")
            .replace([' ', '\n'], "")
    };
    assert_eq!(strip(&messages.join("\n")), strip(&pieces.concat()));
}

#[tokio::test]
async fn flood_control_pauses_edits_and_the_final_text_still_arrives() {
    let t = spawn_app().await;
    let a = RecordingAdapter::new(4096, Duration::from_millis(50));
    a.flood_on_edit(1, Duration::from_millis(400));
    let pieces: Vec<String> = (0..25).map(|i| format!("p{i} ")).collect();
    t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(15),
        usage: Some((10, 25)),
    }]);
    t.send(&a, &dm("1", "go")).await;
    let log = a.log();
    let writes: Vec<&Recorded> = log.iter().filter(|r| r.action != Action::Typing).collect();
    // The first send went through; the first edit was refused with retry_after=400ms,
    // so nothing may be written until 400ms after that refusal (≥ 50ms after the send).
    let sent_at = writes[0].at;
    let next = writes[1].at;
    assert!(
        next - sent_at >= Duration::from_millis(400),
        "edited {:?} after the send",
        next - sent_at
    );
    assert_eq!(a.last_message(), pieces.concat());
}

async fn command_stats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> std::collections::HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// With Redis a message costs two round trips for its history, three for the user's
/// in-flight slot, which every replica shares (take, mark finishing, free), one for the
/// per-user rate limit (`limits.per_user_per_minute`, on by default) and two for the
/// bot's model-call permit (`limits.max_concurrent_answers`: take, give back).
#[tokio::test]
async fn a_handled_message_costs_eight_redis_round_trips_history_slot_rate_and_permit() {
    let t = spawn_app().await;
    let a = adapter();
    t.send(&a, &dm("1", "warm up")).await; // loads the Lua scripts once
    let mut conn = t.redis.as_ref().unwrap().client().await;
    let slots = || async {
        let mut conn = t.redis.as_ref().unwrap().client().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("gptbot:inflight:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        // An empty set is no key: the permit was given back.
        let permits: Vec<String> = redis::cmd("KEYS")
            .arg("gptbot:answers")
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.is_empty() && permits.is_empty()
    };
    // The slot is freed just after the reply: wait for it, both times.
    let freed = |what: &'static str| async move {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !slots().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: slot never freed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    freed("warm-up").await;
    let before = command_stats(&mut conn).await;
    t.send(&a, &dm("1", "count the trips")).await;
    freed("counted message").await;
    let after = command_stats(&mut conn).await;
    let mut delta: Vec<(String, u64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, d)| *d > 0 && k != "info" && k != "keys")
        .collect();
    delta.sort();
    // GETEX to load the history and one EVALSHA to append it (its GET and SET run
    // inside Redis); three EVALSHA for the slot: take (GET, SET), finishing (GET, SET),
    // free (GET, DEL); one for the per-user rate limit (TIME, GET, SET); the permit's
    // take (TIME, ZREMRANGEBYSCORE, ZSCORE, ZCARD, ZADD, PTTL, PEXPIRE) and its return
    // (ZREM, PUBLISH to waiters).
    let expected: Vec<(String, u64)> = [
        ("del", 1),
        ("evalsha", 7),
        ("get", 5),
        ("getex", 1),
        ("pexpire", 1),
        ("pttl", 1),
        ("publish", 1),
        ("set", 4),
        ("time", 2),
        ("zadd", 1),
        ("zcard", 1),
        ("zrem", 1),
        ("zremrangebyscore", 1),
        ("zscore", 1),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    assert_eq!(delta, expected);
}

#[tokio::test]
async fn an_unreachable_model_server_is_reported_and_refunded() {
    let closed = common::free_port();
    let t = spawn_app_with(
        Options::default().with("OPENAI_BASE_URL", format!("http://127.0.0.1:{closed}/v1")),
    )
    .await;
    let a = adapter();
    assert_eq!(t.send(&a, &dm("1", "anyone there?")).await, Outcome::Failed);
    assert!(
        a.last_message().contains("unavailable"),
        "{}",
        a.last_message()
    );
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.remaining, b.reserved, b.used), (20000, 0, 0));
}

#[tokio::test]
async fn allowlist_mode_refuses_strangers_without_charging_them() {
    let t = spawn_app_with(
        Options::default()
            .with("GPTBOT__ACCESS__MODE", "allowlist")
            .with("GPTBOT__ACCESS__ADMINS", "telegram:1")
            .with("GPTBOT__ACCESS__USERS", "telegram:2")
            .with("GPTBOT__ACCESS__CHATS", "telegram:-100777"),
    )
    .await;
    let a = adapter();
    assert_eq!(
        t.send(&a, &dm("3", "let me in")).await,
        Outcome::Refused(Refusal::Access)
    );
    assert!(
        a.last_message().contains("this bot is private"),
        "{}",
        a.last_message()
    );
    assert_eq!(
        t.send(&a, &dm("3", "/quota")).await,
        Outcome::Refused(Refusal::Access)
    );
    assert_eq!(t.openai.request_count(), 0);
    // Never charged: not even an account was opened for the stranger.
    let (accounts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM quota_accounts")
        .fetch_one(t.app.db.sqlite().unwrap())
        .await
        .unwrap();
    assert_eq!(accounts, 0);

    // Listed users, members of listed groups and admins get through.
    assert!(matches!(
        t.send(&a, &dm("2", "hello")).await,
        Outcome::Answered { .. }
    ));
    assert!(matches!(
        t.send(&a, &group("-100777", "4", "hi all", true)).await,
        Outcome::Answered { .. }
    ));
    assert!(matches!(
        t.send(&a, &dm("1", "admin here")).await,
        Outcome::Answered { .. }
    ));
    assert_eq!(
        t.send(&a, &group("-100888", "4", "other group", true))
            .await,
        Outcome::Refused(Refusal::Access)
    );

    // An admin lets the stranger in, then shuts them out again.
    t.send(&a, &dm("1", "/allow 3")).await;
    assert_eq!(a.last_message(), "Allowed telegram:3.");
    assert!(matches!(
        t.send(&a, &dm("3", "now?")).await,
        Outcome::Answered { .. }
    ));
    t.send(&a, &dm("1", "/deny telegram:3")).await;
    assert!(a.last_message().starts_with("Denied telegram:3"));
    assert_eq!(
        t.send(&a, &dm("3", "still?")).await,
        Outcome::Refused(Refusal::Access)
    );
    // A whole group can be allowed from inside it.
    t.send(&a, &group("-100888", "1", "/allow chat", true))
        .await;
    assert_eq!(a.last_message(), "Allowed this group.");
    assert!(matches!(
        t.send(&a, &group("-100888", "4", "and now?", true)).await,
        Outcome::Answered { .. }
    ));
}

#[tokio::test]
async fn admin_commands_work_for_admins_and_are_refused_to_others() {
    let t =
        spawn_app_with(Options::default().with("GPTBOT__ACCESS__ADMINS", "telegram:1,discord:99"))
            .await;
    let a = adapter();
    // A non-admin is refused and nothing changes.
    assert_eq!(
        t.send(&a, &dm("2", "/grant 2 1000000")).await,
        Outcome::Refused(Refusal::Command)
    );
    assert!(a.last_message().starts_with("Not allowed"));
    assert_eq!(
        t.app.quota.balance(&user("2")).await.unwrap().remaining,
        20000
    );
    assert_eq!(
        t.send(&a, &dm("2", "/stats")).await,
        Outcome::Refused(Refusal::Command)
    );

    t.send(&a, &dm("1", "/grant 2 500")).await;
    assert_eq!(
        a.last_message(),
        "Granted 500 tokens to telegram:2: 20500 remaining of 20500 granted."
    );
    t.send(&a, &dm("1", "/setquota telegram:2 unlimited")).await;
    assert!(a.last_message().contains("unlimited"));
    t.send(&a, &dm("2", "spend some")).await;
    t.send(&a, &dm("1", "/usage 2")).await;
    let usage = a.last_message();
    assert!(
        usage.starts_with("telegram:2: 20500 remaining") && usage.contains("unlimited"),
        "{usage}"
    );
    assert!(usage.contains("today"), "{usage}");
    t.send(&a, &dm("1", "/setquota 2 0")).await;
    assert_eq!(a.last_message(), "telegram:2 now has 0 tokens left.");
    assert_eq!(
        t.send(&a, &dm("2", "and now?")).await,
        Outcome::Refused(Refusal::Quota)
    );
    t.send(&a, &dm("1", "/grant 2 -5")).await;
    assert!(
        a.last_message().starts_with("Could not do that"),
        "{}",
        a.last_message()
    );
    t.send(&a, &dm("1", "/deny telegram:1")).await;
    assert!(
        a.last_message().contains("is an admin"),
        "{}",
        a.last_message()
    );
    t.send(&a, &dm("1", "/grant 2")).await;
    assert!(
        a.last_message().starts_with("Usage: /grant"),
        "{}",
        a.last_message()
    );

    t.send(&a, &dm("1", "/stats")).await;
    let stats = a.last_message();
    assert!(stats.contains("Users: 1"), "{stats}");
    assert!(stats.contains("Requests today: 1 (in total: 1)"), "{stats}");
    // Admins see the admin commands in /help; others do not.
    t.send(&a, &dm("1", "/help")).await;
    assert!(a.last_message().contains("/setquota"));
    t.send(&a, &dm("2", "/help")).await;
    assert!(!a.last_message().contains("/setquota"));
}

#[tokio::test]
async fn one_answer_in_flight_per_user_and_cancel_charges_only_what_was_used() {
    let t = std::sync::Arc::new(spawn_app().await);
    let a = std::sync::Arc::new(adapter());
    let pieces: Vec<String> = (0..50).map(|i| format!("w{i} ")).collect();
    t.openai.script([Behavior::Stream {
        pieces,
        delay: Duration::from_millis(40),
        usage: Some((10, 50)),
    }]);
    let first = {
        let (t, a) = (t.clone(), a.clone());
        tokio::spawn(async move { t.send(&a, &dm("1", "long answer please")).await })
    };
    eventually(
        10,
        "w3 shown",
        || a.messages().iter().any(|m| m.contains("w3")),
        || format!("{:?}", a.messages()),
    )
    .await;
    // Another user is not held up; the same user is told to wait.
    assert!(matches!(
        t.send(&a, &dm("2", "me too")).await,
        Outcome::Answered { .. }
    ));
    assert_eq!(
        t.send(&a, &dm("1", "second question")).await,
        Outcome::Refused(Refusal::Busy)
    );
    assert!(a.last_message().contains("Still answering"));
    t.send(&a, &dm("1", "/cancel")).await;
    assert_eq!(a.last_message(), "Stopped.");
    let Outcome::Cancelled { reserved, charged } = first.await.unwrap() else {
        panic!()
    };
    assert!(charged > 0 && charged < reserved);
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.used, b.reserved), (charged, 0));
    let shown = a
        .messages()
        .into_iter()
        .find(|m| m.starts_with("w0"))
        .unwrap();
    assert!(shown.ends_with("(stopped)"), "{shown}");
    let turns = t.turns("1").await;
    assert_eq!(turns.len(), 2);
    assert!(shown.starts_with(turns[1].content.trim_end()));
    // The slot is free again.
    assert!(matches!(
        t.send(&a, &dm("1", "next")).await,
        Outcome::Answered { .. }
    ));
    t.send(&a, &dm("1", "/cancel")).await;
    assert!(a.last_message().starts_with("Nothing to stop"));
}

#[tokio::test]
async fn the_per_user_rate_limit_refuses_before_the_model_is_called() {
    let t = spawn_app_with(Options::default().with("GPTBOT__LIMITS__PER_USER_PER_MINUTE", 2)).await;
    let a = adapter();
    assert!(matches!(
        t.send(&a, &dm("1", "one")).await,
        Outcome::Answered { .. }
    ));
    assert!(matches!(
        t.send(&a, &dm("1", "two")).await,
        Outcome::Answered { .. }
    ));
    assert_eq!(
        t.send(&a, &dm("1", "three")).await,
        Outcome::Refused(Refusal::RateLimited)
    );
    assert!(
        a.last_message().contains("2 per minute"),
        "{}",
        a.last_message()
    );
    // Commands are not rate limited, and other users have their own bucket.
    assert_eq!(t.send(&a, &dm("1", "/quota")).await, Outcome::Replied);
    assert!(matches!(
        t.send(&a, &dm("2", "hi")).await,
        Outcome::Answered { .. }
    ));
    assert_eq!(t.openai.request_count(), 3);
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.requests, b.reserved), (2, 0));
}

/// Two messages of one user at once on two replicas: one is answered, the other told
/// "still answering" (the replicas share the user's in-flight slot), and the history
/// holds the one exchange, not two interleaved.
#[tokio::test]
async fn concurrent_messages_of_one_user_on_two_replicas_get_one_answer_and_one_notice() {
    let t = spawn_app().await;
    let other = t.replica().await;
    let a = adapter();
    t.openai.script((0..2).map(|i| Behavior::Stream {
        pieces: vec![format!("answer {i}")],
        delay: Duration::from_millis(100),
        usage: Some((5, 2)),
    }));
    let first = dm("1", "first question");
    let second = dm("1", "second question");
    let second = common::typed(&second).unwrap();
    let (x, y) = tokio::join!(t.send(&a, &first), other.conversation.handle(&second, &a));
    let answered = [&x, &y]
        .iter()
        .filter(|o| matches!(o, Outcome::Answered { .. }))
        .count();
    assert_eq!(answered, 1, "{x:?} {y:?}");
    assert!(x == Outcome::Refused(Refusal::Busy) || y == Outcome::Refused(Refusal::Busy));
    assert_eq!(t.openai.request_count(), 1);
    let session = common::ledger::recorded(&t.app.sessions, &first.session_key(), 2).await;
    assert_eq!(session.len(), 2);
    assert_eq!(session[0].role, Role::User);
    assert_eq!(session[1].role, Role::Assistant);
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.requests, b.reserved), (1, 0));
}

#[tokio::test]
async fn fifty_concurrent_messages_admit_exactly_one_and_never_overspend() {
    let t = spawn_app_with(Options::default().with("GPTBOT__QUOTA__DEFAULT_TOKENS", 1300)).await;
    let a = adapter();
    t.openai.script((0..50).map(|_| Behavior::Stream {
        pieces: vec!["ok".into()],
        delay: Duration::from_millis(30),
        usage: Some((90, 10)),
    }));
    let events: Vec<_> = (0..50).map(|i| dm("1", &format!("question {i}"))).collect();
    let outcomes = futures::future::join_all(events.iter().map(|e| t.send(&a, e))).await;
    let answered = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Answered { .. }))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| **o == Outcome::Refused(Refusal::Busy))
        .count();
    assert_eq!((answered, refused), (1, 49), "{outcomes:?}");
    let notices = a
        .messages()
        .iter()
        .filter(|m| m.starts_with("Still answering"))
        .count();
    assert_eq!(notices, 49);
    assert_eq!(t.openai.request_count(), 1);
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!((b.used, b.reserved, b.granted), (100, 0, 1300));
    assert_eq!(b.granted, b.remaining + b.used);
}

/// Twenty-five messages of one user at once on five replicas: one answer at a time, the
/// books exact.
#[tokio::test]
async fn replicas_racing_for_one_small_quota_never_overspend() {
    // Each message reserves prompt (~30) + max_tokens (100); 400 tokens cover three at once.
    let t = spawn_app_with(Options::default().with("GPTBOT__QUOTA__DEFAULT_TOKENS", 400)).await;
    let mut replicas = vec![t.app.conversation.clone()];
    for _ in 0..4 {
        replicas.push(t.replica().await.conversation.clone());
    }
    let a = adapter();
    t.openai.script((0..50).map(|_| Behavior::Stream {
        pieces: vec!["ok".into()],
        delay: Duration::from_millis(30),
        usage: Some((90, 10)),
    }));
    let events: Vec<_> = (0..25).map(|i| dm("1", &format!("question {i}"))).collect();
    let outcomes = futures::future::join_all(
        events
            .iter()
            .enumerate()
            .map(|(i, e)| replicas[i % 5].handle(e, &a)),
    )
    .await;
    let charged: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Answered { charged, .. } => Some(*charged),
            _ => None,
        })
        .collect();
    assert!(!charged.is_empty());
    assert_eq!(
        t.openai.request_count(),
        charged.len(),
        "a refused message reached the model"
    );
    // The replicas share the user's in-flight slot: one answer at a time, whichever
    // replica takes each message (the quota's own race is `quota::the_invariant_holds_
    // under_concurrent_traffic`).
    let busy = outcomes
        .iter()
        .filter(|o| **o == Outcome::Refused(Refusal::Busy))
        .count();
    assert_eq!(charged.len() + busy, 25, "{outcomes:?}");
    assert!(busy >= 20, "answers at once on five replicas: {outcomes:?}");
    let b = t.app.quota.balance(&user("1")).await.unwrap();
    assert_eq!(b.reserved, 0);
    assert!(b.remaining >= 0 && b.used <= 400);
    assert_eq!(b.granted, b.remaining + b.used, "invariant broken: {b:?}");
    assert_eq!(b.used, charged.iter().sum::<i64>());
}

#[tokio::test]
async fn link_lets_another_platform_draw_on_the_owner_and_moves_no_tokens() {
    let t = spawn_app().await;
    let a = adapter();
    // In a group the code is never shown.
    let mut in_group = group("-100", "42", "/link", true);
    in_group.platform = Platform::Telegram;
    t.send(&a, &in_group).await;
    assert!(
        a.last_message()
            .starts_with("Send /link to me in a private chat"),
        "{}",
        a.last_message()
    );
    let mut tg = dm("42", "/link");
    tg.platform = Platform::Telegram;
    t.send(&a, &tg).await;
    let reply = a.last_message();
    let code = reply
        .split_whitespace()
        .nth(4)
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    assert_eq!(code.len(), 8, "{reply}");

    // Another Telegram account cannot use it; the code survives the attempt.
    let mut eve = dm("43", &format!("/link {code}"));
    eve.platform = Platform::Telegram;
    t.send(&a, &eve).await;
    assert!(
        a.last_message()
            .starts_with("A link code works only from another platform")
    );

    let mut discord = dm("99", &format!("/link {}", code.to_lowercase()));
    discord.platform = Platform::Discord;
    t.send(&a, &discord).await;
    assert!(
        a.last_message()
            .starts_with("Linked: discord:99 uses the tokens of telegram:42 when its own run out"),
        "{}",
        a.last_message()
    );
    // The code works once.
    t.send(&a, &discord).await;
    assert!(a.last_message().contains("unknown or has expired"));

    // With its own balance at 0, the Discord identity draws on the Telegram account;
    // histories stay apart.
    let tg_user = UserId::new(Platform::Telegram, "42");
    let dc_user = UserId::new(Platform::Discord, "99");
    t.app.quota.set_quota(&dc_user, Some(0)).await.unwrap();
    discord.content = gptbot::core::event::Content::Text("/quota".into());
    t.send(&a, &discord).await;
    assert!(
        a.last_message().contains("Linked to telegram:42"),
        "{}",
        a.last_message()
    );
    discord.content = gptbot::core::event::Content::Text("hello from discord".into());
    let Outcome::Answered { charged, .. } = t.send(&a, &discord).await else {
        panic!("{}", a.last_message())
    };
    assert_eq!(
        t.app.quota.balance(&tg_user).await.unwrap().remaining,
        20000 - charged
    );
    assert!(
        t.app
            .sessions
            .load(&tg.session_key())
            .await
            .unwrap()
            .turns
            .is_empty()
    );

    discord.content = gptbot::core::event::Content::Text("/unlink".into());
    t.send(&a, &discord).await;
    assert!(a.last_message().starts_with("Unlinked"));
    // Nothing moved either way.
    assert_eq!(t.app.quota.balance(&dc_user).await.unwrap().remaining, 0);
    assert_eq!(
        t.app.quota.balance(&tg_user).await.unwrap().remaining,
        20000 - charged
    );
    t.send(&a, &discord).await;
    assert!(a.last_message().contains("not linked"));
    for u in [&tg_user, &dc_user] {
        common::ledger::assert_books(&t.app.quota, u).await;
    }

    // Guessing codes is rate-limited.
    let mut guesser = dm("7", "/link AAAAAAAA");
    guesser.platform = Platform::Discord;
    for _ in 0..5 {
        t.send(&a, &guesser).await;
        assert!(a.last_message().contains("unknown or has expired"));
    }
    t.send(&a, &guesser).await;
    assert!(
        a.last_message().starts_with("Too many link attempts"),
        "{}",
        a.last_message()
    );
}

/// A log writer the test can read back.
#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_failing_settle_logs_the_database_cause() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_env_filter("gptbot=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    // Settle is retried for one lease before it gives up: keep the lease short.
    let t = spawn_app_with(Options::default().with("GPTBOT__QUOTA__HOLD_LEASE", "1s")).await;
    let a = adapter();
    t.openai.script([Behavior::Stream {
        pieces: vec!["slow ".into(), "answer".into()],
        delay: Duration::from_millis(300),
        usage: Some((20, 5)),
    }]);
    let pool = t.app.db.sqlite().unwrap().clone();
    // The ledger table vanishes while the model answers: settling then fails inside
    // SQLite (the trigger that writes the ledger has nowhere to write).
    let hello = dm("1", "hello");
    let (outcome, ()) = tokio::join!(t.send(&a, &hello), async {
        eventually(
            10,
            "the model call",
            || t.openai.request_count() == 1,
            String::new,
        )
        .await;
        sqlx::query("DROP TABLE quota_ledger")
            .execute(&pool)
            .await
            .unwrap();
    });
    assert!(matches!(outcome, Outcome::Answered { .. }), "{outcome:?}");
    assert_eq!(
        a.last_message(),
        "slow answer",
        "the user still gets the answer"
    );
    let logs = logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains("settlement failed"))
        .unwrap_or_else(|| panic!("no settlement error logged:\n{logs}"));
    assert!(line.contains("settling 25 tokens for telegram:1"), "{line}");
    assert!(line.contains("no such table: main.quota_ledger"), "{line}");
}

/// A reply the user sees complete frees them to write again: a message sent while the
/// platform is still acknowledging the final text waits for it and is answered; "still
/// answering" is only for answers the model is still writing.
#[tokio::test]
async fn a_message_right_after_the_complete_reply_is_answered_not_refused() {
    let t = spawn_app().await;
    let a = adapter();
    a.slow_final_ack(Duration::from_millis(500));
    let first = dm("1", "first");
    let second = dm("1", "second");
    let (one, two) = tokio::join!(t.send(&a, &first), async {
        eventually(
            10,
            "the first answer on screen",
            || a.last_message() == "Echo: first",
            || format!("{:?}", a.messages()),
        )
        .await;
        t.send(&a, &second).await
    });
    assert!(matches!(one, Outcome::Answered { .. }), "{one:?}");
    assert!(matches!(two, Outcome::Answered { .. }), "{two:?}");
    assert_eq!(a.messages(), ["Echo: first", "Echo: second"]);
    // Both turns are in the history, in order.
    let session = t.app.sessions.load(&first.session_key()).await.unwrap();
    let texts: Vec<&str> = session.turns.iter().map(|t| t.content.as_str()).collect();
    assert_eq!(texts, ["first", "Echo: first", "second", "Echo: second"]);
}
