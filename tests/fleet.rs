//! Replicas as real `gptbot run` processes (webhook mode) behind a round-robin proxy,
//! sharing Redis and PostgreSQL, with the Telegram fake enforcing Telegram's flood rules:
//! whichever replica an update lands on, users see one bot — one answer at a time,
//! /cancel that reaches the answer, limits counted once, one send budget — and the books
//! stay exact.

mod common;

use std::time::Duration;

use common::fleet::Fleet;
use common::{Behavior, signal};

const STILL: &str = "Still answering your previous message — send /cancel to stop it.";

fn slow_answer() -> Behavior {
    Behavior::Stream {
        pieces: (0..40).map(|i| format!("part{i} ")).collect(),
        delay: Duration::from_millis(150),
        usage: Some((10, 40)),
    }
}

/// Two replicas, each update to the next: a second message during an answer is told
/// "still answering" (one model request), /cancel landing on the other replica stops the
/// stream within a second and charges only what was produced, and a limit of 3 messages a
/// minute refuses the 4th and 5th of five, whichever replica counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_a_round_robin_proxy_answer_as_one_bot() {
    let fleet = Fleet::start(2, &[("GPTBOT__LIMITS__PER_USER_PER_MINUTE", "3")]).await;

    // Still answering: the first update goes to one replica, the second to the other.
    fleet.openai.script([slow_answer()]);
    fleet.send(7, "tell me a long story").await;
    fleet
        .wait_text(7, "the answer's first parts", |t| t.contains("part2"))
        .await;
    fleet.send(7, "and another thing").await;
    fleet
        .wait_text(7, "the still-answering notice", |t| t == STILL)
        .await;
    fleet
        .wait_text(7, "the whole answer", |t| t.contains("part39"))
        .await;
    assert_eq!(fleet.openai.request_count(), 1, "two answers at once");
    assert_eq!(fleet.books(7, 1).await.requests, 1);

    // /cancel on the other replica.
    fleet.openai.script([slow_answer()]);
    fleet.send(8, "tell me a long story").await;
    fleet
        .wait_text(8, "the answer's first parts", |t| t.contains("part2"))
        .await;
    let asked = tokio::time::Instant::now();
    fleet.send(8, "/cancel").await;
    fleet
        .wait_text(8, "the confirmation", |t| t == "Stopped.")
        .await;
    fleet
        .wait_text(8, "the stopped answer", |t| t.ends_with("(stopped)"))
        .await;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "stopped after {took:?}\n{}",
        fleet.logs()
    );
    let b = fleet.books(8, 1).await;
    assert_eq!(b.requests, 1);
    assert!(b.used > 0 && b.used < 50, "charged {}", b.used);
    let stopped = fleet
        .tg
        .texts_in(8)
        .into_iter()
        .find(|t| t.ends_with("(stopped)"))
        .unwrap();
    assert!(!stopped.contains("part39"), "{stopped}");

    // 3 a minute for the bot, not for each replica.
    for n in 1..=5 {
        fleet.send(11, &format!("question {n}")).await;
        fleet
            .tg
            .wait_until(15, "an answer or a refusal", |_| {
                fleet
                    .tg
                    .texts_in(11)
                    .iter()
                    .filter(|t| {
                        t.starts_with("Echo: question") || t.starts_with("You're sending messages")
                    })
                    .count()
                    >= n
            })
            .await;
    }
    let texts = fleet.tg.texts_in(11);
    let answered: Vec<_> = texts
        .iter()
        .filter(|t| t.starts_with("Echo: question"))
        .collect();
    assert_eq!(answered.len(), 3, "{texts:?}");
    assert!(
        answered
            .iter()
            .all(|t| !t.contains("question 4") && !t.contains("question 5"))
    );
    assert_eq!(fleet.books(11, 3).await.requests, 3);
    assert!(
        fleet.tg.flood_refusals().is_empty(),
        "{:?}",
        fleet.tg.flood_refusals()
    );
}

/// Sixty users chatting at once through three replicas: Telegram's overall budget (about
/// 30 messages a second) and each chat's are shared, so not one write meets a 429 and
/// every reply is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_users_through_three_replicas_meet_no_429() {
    let fleet = Fleet::start(3, &[("GPTBOT__TELEGRAM__EDIT_INTERVAL", "300ms")]).await;
    fleet.openai.set_echo_delay(Duration::from_millis(40));
    for round in 0..2 {
        let sends = (1..=60i64).map(|user| {
            let fleet = &fleet;
            async move {
                fleet
                    .send(
                        1000 + user,
                        &format!("round {round} from user {user} with a few words"),
                    )
                    .await
            }
        });
        futures::future::join_all(sends).await;
        fleet
            .tg
            .wait_until(60, "every reply of the round", |_| {
                (1..=60i64).all(|user| {
                    let want = format!("Echo: round {round} from user {user} with a few words");
                    fleet.tg.texts_in(1000 + user).contains(&want)
                })
            })
            .await;
    }
    assert!(
        fleet.tg.flood_refusals().is_empty(),
        "429s: {:?}",
        fleet.tg.flood_refusals()
    );
    for user in [1, 30, 60] {
        assert_eq!(fleet.books(1000 + user, 2).await.requests, 2);
    }
}

/// A replica SIGKILLed while answering: its user's in-flight slot and hold are left
/// behind; within the lease (`quota.hold_lease`, 3 s here) the user is answered by the
/// other replica, and the dead replica's hold is swept back to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_user_is_answered_again_within_the_lease() {
    let mut fleet = Fleet::start(2, &[("GPTBOT__QUOTA__HOLD_LEASE", "3s")]).await;
    fleet.openai.script([slow_answer()]);
    // The proxy's first update goes to replica 0.
    fleet.send(9, "tell me a long story").await;
    fleet
        .wait_text(9, "the answer's first parts", |t| t.contains("part2"))
        .await;
    signal(&fleet.replicas[0], "KILL");
    let killed = tokio::time::Instant::now();
    common::exit_status(&mut fleet.replicas[0], 5).await;
    let lease = Duration::from_secs(3);
    // Asked again at once: the dead replica's slot still holds.
    fleet.send(9, "hello again").await;
    fleet
        .wait_text(9, "the still-answering notice", |t| t == STILL)
        .await;
    // Its lease runs out by itself, no later than a lease after its last renewal.
    fleet
        .redis
        .wait_gone(
            "gptbot:inflight:telegram:9",
            (lease + Duration::from_secs(1)).saturating_sub(killed.elapsed()),
            &format!(
                "the dead replica's slot outlived its lease\n{}",
                fleet.logs()
            ),
        )
        .await;
    // Then the user is answered (by the live replica, whichever the proxy picks).
    fleet.send(9, "and now").await;
    fleet
        .wait_text(9, "the answer", |t| t.starts_with("Echo: and now"))
        .await;
    // The dead replica's hold is swept back (after its lease); the books are exact.
    let id = gptbot::core::event::UserId::new(gptbot::core::event::Platform::Telegram, "9");
    for _ in 0..200 {
        if fleet.quota.balance(&id).await.unwrap().reserved == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = fleet.books(9, 1).await;
    assert_eq!(b.reserved, 0, "the dead replica's hold was never swept");
    let history = fleet.quota.history(&id, 100).await.unwrap();
    assert!(history.iter().any(|e| e.kind == "expire"), "{history:?}");
}
