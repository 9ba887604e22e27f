//! Limits an open bot needs against abuse and overload, through the real conversation:
//! new accounts per day, the daily token budget, commands per minute, and the cap on
//! model calls in flight. Each refusal is one clear sentence and calls no model; the
//! books stay exact.

mod common;

use std::time::Duration;

use common::ledger::assert_books;
use common::*;
use gptbot::chat::{Outcome, Refusal};
use gptbot::core::event::{Platform, UserId};
use gptbot::quota::{BUDGET_SPENT, NEW_ACCOUNTS_CLOSED};

fn user(id: &str) -> UserId {
    UserId::new(Platform::Telegram, id)
}

/// 1,000 new identities, 100 accounts allowed a day: the 101st is refused with the
/// sentence (by /quota, which creates accounts without a model call, and by a message),
/// nobody is charged and no model is called.
#[tokio::test]
async fn new_accounts_per_day_caps_newcomers_with_one_sentence() {
    let t = spawn_app_with(
        Options::default()
            .memory_sessions()
            .with("GPTBOT__QUOTA__NEW_ACCOUNTS_PER_DAY", 100),
    )
    .await;
    let a = RecordingAdapter::new(4096, Duration::ZERO);
    let mut admitted = 0;
    for i in 0..1000 {
        t.send(&a, &dm(&i.to_string(), "/quota")).await;
        let said = a.last_message();
        if said.starts_with("Tokens: 20000 remaining") {
            admitted += 1;
        } else {
            assert_eq!(said, NEW_ACCOUNTS_CLOSED, "identity {i}");
        }
    }
    assert_eq!(admitted, 100);
    // A refused newcomer's message calls no model.
    assert_eq!(
        t.send(&a, &dm("500", "hello")).await,
        Outcome::Refused(Refusal::Quota)
    );
    assert_eq!(a.last_message(), NEW_ACCOUNTS_CLOSED);
    // Someone admitted earlier still gets answers.
    assert!(matches!(
        t.send(&a, &dm("7", "hello")).await,
        Outcome::Answered { .. }
    ));
    assert_eq!(t.openai.request_count(), 1);
    let stats = t.app.quota.stats().await.unwrap();
    assert_eq!(stats.users, 100);
    // An admin can still grant a newcomer tokens.
    t.app.quota.grant(&user("900"), 10).await.unwrap();
    assert_books(&t.app.quota, &user("7")).await;
    assert_books(&t.app.quota, &user("900")).await;
}

/// Once the day's budget is spent, everyone is told so and no model is called.
#[tokio::test]
async fn the_daily_token_budget_stops_everyone_once_spent() {
    let t = spawn_app_with(
        Options::default()
            .memory_sessions()
            .with("GPTBOT__QUOTA__DAILY_TOKEN_BUDGET", 10),
    )
    .await;
    let a = RecordingAdapter::new(4096, Duration::ZERO);
    let Outcome::Answered { charged, .. } = t.send(&a, &dm("1", "hello")).await else {
        panic!("{}", a.last_message())
    };
    assert!(charged >= 10, "the first answer should spend the budget");
    for who in ["1", "2"] {
        assert_eq!(
            t.send(&a, &dm(who, "more")).await,
            Outcome::Refused(Refusal::Quota)
        );
        assert_eq!(a.last_message(), BUDGET_SPENT);
    }
    assert_eq!(t.openai.request_count(), 1);
    assert_eq!(t.app.quota.balance(&user("2")).await.unwrap().used, 0);
    assert_books(&t.app.quota, &user("1")).await;
    assert_books(&t.app.quota, &user("2")).await;
}

/// Past `limits.commands_per_minute` a user is told once, then ignored; /cancel works.
#[tokio::test]
async fn commands_are_rate_limited_with_one_notice_then_silence() {
    let t = spawn_app_with(
        Options::default()
            .memory_sessions()
            .with("GPTBOT__LIMITS__COMMANDS_PER_MINUTE", 3),
    )
    .await;
    let a = RecordingAdapter::new(4096, Duration::ZERO);
    for _ in 0..3 {
        assert_eq!(t.send(&a, &dm("1", "/help")).await, Outcome::Replied);
    }
    assert_eq!(
        t.send(&a, &dm("1", "/help")).await,
        Outcome::Refused(Refusal::RateLimited)
    );
    assert!(
        a.last_message()
            .contains("faster than this bot allows (3 per minute)")
    );
    let said = a.messages().len();
    for _ in 0..5 {
        assert_eq!(
            t.send(&a, &dm("1", "/quota")).await,
            Outcome::Refused(Refusal::RateLimited)
        );
    }
    assert_eq!(a.messages().len(), said, "more than one notice");
    assert_eq!(t.send(&a, &dm("1", "/cancel")).await, Outcome::Replied);
    // Others are not affected.
    assert_eq!(t.send(&a, &dm("2", "/help")).await, Outcome::Replied);
}

/// With one model call allowed at a time, a second user's answer waits for the first to
/// end (it is not refused), and both are answered and charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_answers_queues_answers_in_turn() {
    let t = spawn_app_with(
        Options::default()
            .memory_sessions()
            .with("GPTBOT__LIMITS__MAX_CONCURRENT_ANSWERS", 1),
    )
    .await;
    answers_one_at_a_time(t, None).await;
}

/// With replicas sharing Redis, `limits.max_concurrent_answers` is the bot's: one model
/// call at a time means one across both replicas, the second waiting for the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_answers_holds_across_replicas() {
    let t = spawn_app_with(Options {
        redis: true,
        ..Options::default().with("GPTBOT__LIMITS__MAX_CONCURRENT_ANSWERS", 1)
    })
    .await;
    let replica = t.replica().await;
    answers_one_at_a_time(t, Some(replica)).await;
}

/// A replica that died holding the bot's only model-call permit gives it back when its
/// lease runs out: the next question waits for that, then is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_model_call_permit_comes_back_after_its_lease() {
    let t = spawn_app_with(Options {
        redis: true,
        ..Options::default().with("GPTBOT__LIMITS__MAX_CONCURRENT_ANSWERS", 1)
    })
    .await;
    let mut redis = t.redis.as_ref().unwrap().client().await;
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut redis).await.unwrap();
    let lease_ends = secs * 1000 + micros / 1000 + 1500;
    let _: () = redis::cmd("ZADD")
        .arg("gptbot:answers")
        .arg(lease_ends)
        .arg("a-dead-replicas-token")
        .query_async(&mut redis)
        .await
        .unwrap();
    let asked = tokio::time::Instant::now();
    let a = RecordingAdapter::new(4096, Duration::ZERO);
    let outcome = t.send(&a, &dm("5", "hello")).await;
    assert!(matches!(outcome, Outcome::Answered { .. }), "{outcome:?}");
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(1200),
        "the dead permit was ignored ({waited:?})"
    );
    assert_books(&t.app.quota, &user("5")).await;
}

/// Unset, `limits.max_concurrent_answers` follows what the model server says it serves at
/// once: a llama.cpp server with one slot gets one request at a time, the second user
/// waiting in line rather than queued inside the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_max_concurrent_answers_follows_the_servers_slots() {
    let openai = FakeOpenAi::start().await;
    openai.set_total_slots(1);
    let t = spawn_app_on(openai, Options::default().memory_sessions()).await;
    answers_one_at_a_time(t, None).await;
}

/// Two users ask at once (the second through `replica`, if there is one): the second
/// model call starts only once the first has ended.
async fn answers_one_at_a_time(t: TestApp, replica: Option<gptbot::app::App>) {
    t.openai.set_load_model(LoadModel {
        first: Duration::from_millis(200),
        tokens: 10,
        per_token: Duration::from_millis(40),
        tool_first: false,
    });
    let t = std::sync::Arc::new(t);
    let replica = std::sync::Arc::new(replica);
    let answers: Vec<_> = ["first", "second"]
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let (t, replica) = (t.clone(), replica.clone());
            tokio::spawn(async move {
                let a = RecordingAdapter::new(4096, Duration::ZERO);
                let event = typed(&dm(&i.to_string(), text)).unwrap();
                match (i, replica.as_ref()) {
                    (1, Some(replica)) => replica.conversation.handle(&event, &a).await,
                    _ => t.app.conversation.handle(&event, &a).await,
                }
            })
        })
        .collect();
    for answer in answers {
        let outcome = answer.await.unwrap();
        assert!(matches!(outcome, Outcome::Answered { .. }), "{outcome:?}");
    }
    let arrivals = t.openai.arrivals();
    assert_eq!(arrivals.len(), 2);
    let first_end = ["first", "second"]
        .iter()
        .map(|text| t.openai.last_token_at(text).unwrap())
        .min()
        .unwrap();
    assert!(
        arrivals[1] >= first_end,
        "the second model call started before the first one ended"
    );
    for i in ["0", "1"] {
        assert_books(&t.app.quota, &user(i)).await;
    }
}
