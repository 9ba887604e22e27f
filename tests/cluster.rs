//! Redis Cluster: `redis.url` naming one node of a three-node cluster (started by the
//! test) is all it takes. Sessions spread over the nodes; the replicas' board — answers
//! in flight, /cancel, rate limits, send budgets and model-call permits — runs every
//! script on one node (a script's keys share a hash tag), asserted here without the
//! fallback that would hide a CROSSSLOT error.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster::RedisCluster;
use common::ledger::assert_books;
use common::*;
use gptbot::chat::Outcome;
use gptbot::coord::redis::RedisBoard;
use gptbot::core::coordination::{Held, SharedPermits, SharedRates, SharedSlots, Taken};
use gptbot::core::event::{Platform, SessionKey, UserId};
use gptbot::core::pacing::{Ask, Drawn, Limits, Priority, SharedBudgets, Write};

/// Two replicas on a cluster: every user's history is kept (on whichever node its key
/// lands), a second message on the other replica during an answer is told "still
/// answering", and one model call at a time holds across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_histories_and_answers_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let t = spawn_app_with(
        Options::default()
            .memory_sessions()
            .with("REDIS_URL", cluster.url())
            .with("GPTBOT__LIMITS__MAX_CONCURRENT_ANSWERS", 1),
    )
    .await;
    let replica = t.replica().await;
    let a = RecordingAdapter::new(4096, Duration::ZERO);
    for user in 1..=12 {
        let outcome = t.send(&a, &dm(&user.to_string(), "hello")).await;
        assert!(matches!(outcome, Outcome::Answered { .. }), "{outcome:?}");
    }
    for user in 1..=12 {
        let key = SessionKey {
            platform: Platform::Telegram,
            chat: user.to_string(),
            user: user.to_string(),
        };
        let turns = common::ledger::recorded(&replica.sessions, &key, 2).await;
        assert_eq!(turns.len(), 2, "user {user}");
        assert_books(
            &t.app.quota,
            &UserId::new(Platform::Telegram, user.to_string()),
        )
        .await;
    }
    let spread = cluster.keys_per_node();
    assert!(
        spread.iter().filter(|n| **n > 0).count() >= 2,
        "every key on one node: {spread:?}"
    );

    // An answer streaming on the first replica; the second is asked meanwhile.
    t.openai.script([Behavior::Stream {
        pieces: (0..20).map(|i| format!("part{i} ")).collect(),
        delay: Duration::from_millis(50),
        usage: Some((10, 20)),
    }]);
    let first = {
        let event = typed(&dm("40", "a long story")).unwrap();
        let conversation = t.app.conversation.clone();
        tokio::spawn(async move {
            let a = RecordingAdapter::new(4096, Duration::ZERO);
            conversation.handle(&event, &a).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = RecordingAdapter::new(4096, Duration::ZERO);
    let event = typed(&dm("40", "and another")).unwrap();
    replica.conversation.handle(&event, &b).await;
    assert!(
        b.last_message().starts_with("Still answering"),
        "{}",
        b.last_message()
    );
    assert!(matches!(first.await.unwrap(), Outcome::Answered { .. }));
    assert_books(&t.app.quota, &UserId::new(Platform::Telegram, "40")).await;
}

/// Every script of the board answers on a cluster (an error here would be a CROSSSLOT or
/// a missing key declaration, which the bot would otherwise only log and fall back from).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_script_of_the_board_runs_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let board = Arc::new(RedisBoard::connect(&cluster.url(), "gptbot").await.unwrap());
    let other = Arc::new(RedisBoard::connect(&cluster.url(), "gptbot").await.unwrap());
    let lease = Duration::from_secs(5);

    // Answers in flight and /cancel.
    let user = UserId::new(Platform::Telegram, "7");
    assert_eq!(
        board.take(&user, "token-a", lease).await.unwrap(),
        Taken::Yes
    );
    assert_eq!(
        other.take(&user, "token-b", lease).await.unwrap(),
        Taken::Busy
    );
    let mut cancels = board.cancels();
    assert!(other.cancel(&user).await.unwrap());
    let heard = tokio::time::timeout(Duration::from_secs(2), cancels.recv()).await;
    assert_eq!(heard.unwrap().unwrap(), "telegram:7");
    assert_eq!(
        board.renew(&user, "token-a", lease).await.unwrap(),
        Held::Cancelled
    );
    board.finishing(&user, "token-a").await.unwrap();
    assert_eq!(
        other.take(&user, "token-b", lease).await.unwrap(),
        Taken::Finishing
    );
    board.free(&user, "token-a").await.unwrap();
    assert_eq!(
        other.take(&user, "token-b", lease).await.unwrap(),
        Taken::Yes
    );

    // Rate limits: 2 a minute across both.
    let minute = Duration::from_secs(60);
    assert_eq!(
        board.hit("messages:telegram:7", 2, minute).await.unwrap(),
        None
    );
    assert_eq!(
        other.hit("messages:telegram:7", 2, minute).await.unwrap(),
        None
    );
    assert!(
        board
            .hit("messages:telegram:7", 2, minute)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        other
            .peek("messages:telegram:7", 2, minute)
            .await
            .unwrap()
            .is_some()
    );

    // Send budgets: the chat's and the bot's buckets in one script (two keys, one slot).
    let ask = |chat| Ask {
        chat,
        group: true,
        write: Write::Send,
        priority: Priority::Final,
        counted: false,
    };
    for n in 0..3 {
        let p: &RedisBoard = if n % 2 == 0 { &board } else { &other };
        assert_eq!(
            p.draw("telegram", &Limits::TELEGRAM, ask("-100"))
                .await
                .unwrap(),
            Drawn::Now
        );
    }
    let Drawn::Refused(wait) = board
        .draw("telegram", &Limits::TELEGRAM, ask("-100"))
        .await
        .unwrap()
    else {
        panic!("the chat's burst of three is spent")
    };
    assert!(wait > Duration::from_millis(500), "{wait:?}");
    other
        .freeze("telegram", Some("-200"), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(matches!(
        board
            .draw("telegram", &Limits::TELEGRAM, ask("-200"))
            .await
            .unwrap(),
        Drawn::Refused(_)
    ));
    board
        .pause("discord", Some("POST /channels/1/messages"), lease)
        .await
        .unwrap();
    assert!(
        other
            .paused("discord", "POST /channels/1/messages")
            .await
            .unwrap()
            .is_some()
    );

    // Model-call permits: one for the bot.
    assert!(board.take_permit("p1", 1, lease).await.unwrap());
    assert!(!other.take_permit("p2", 1, lease).await.unwrap());
    let freed = other.permit_freed();
    let heard = freed.notified();
    tokio::pin!(heard);
    heard.as_mut().enable();
    board.free_permit("p1").await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), heard)
        .await
        .expect("the freed permit was announced to the other replica");
    assert!(other.take_permit("p2", 1, lease).await.unwrap());
    assert!(other.renew_permit("p2", lease).await.unwrap());
}
