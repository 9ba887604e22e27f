//! Send budgets shared by replicas: two pacers (as two replicas would hold), each with its
//! own connection to one real redis-server, draw from the same Telegram buckets with the
//! same priorities; a 429 met by one freezes the chat for both; Discord's route pauses
//! reach every replica; and without Redis each falls back to its own buckets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use gptbot::coord::redis::RedisBoard;
use gptbot::core::pacing::SharedBudgets;
use gptbot::platform::pacer::{Limits, Pacer, Priority, Write};
use tokio::time::Instant;

async fn board(redis: &RedisServer) -> Arc<RedisBoard> {
    Arc::new(RedisBoard::connect(&redis.url(), "gptbot").await.unwrap())
}

async fn replicas(redis: &RedisServer) -> (Arc<Pacer>, Arc<Pacer>) {
    let pacer = |b: Arc<RedisBoard>| {
        Arc::new(Pacer::shared(
            "telegram",
            Limits::TELEGRAM,
            Some(b as Arc<dyn SharedBudgets>),
        ))
    };
    (pacer(board(redis).await), pacer(board(redis).await))
}

/// One private chat written to by two replicas: together they get one burst of three,
/// then one write a second — as one bot, not twice that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_chats_budget() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let start = Instant::now();
    let mut at = Vec::new();
    for n in 0..5 {
        let p = if n % 2 == 0 { &a } else { &b };
        p.acquire("42", false, Write::Send, Priority::Final)
            .await
            .unwrap();
        at.push(start.elapsed());
    }
    assert!(at[2] < Duration::from_millis(300), "the burst: {at:?}");
    // The 4th write waits for the bucket both replicas drew from (1 / 0.95 s), the 5th
    // another second — alone each would have had a burst of three to spend.
    assert!(at[3] >= Duration::from_millis(1000), "{at:?}");
    assert!(at[4] >= Duration::from_millis(2050), "{at:?}");
    // Another chat has its own bucket.
    let other = Instant::now();
    b.acquire("43", false, Write::Send, Priority::Final)
        .await
        .unwrap();
    assert!(other.elapsed() < Duration::from_millis(300));
}

/// A final text waiting on one replica is served before a first message asked for later
/// on the other: the first leaves the token to it, as in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_message_leaves_the_token_to_a_final_waiting_on_another_replica() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    for _ in 0..3 {
        a.acquire("7", false, Write::Edit, Priority::Final)
            .await
            .unwrap();
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let final_tx = tx.clone();
    let final_text = tokio::spawn(async move {
        b.acquire("7", false, Write::Edit, Priority::Final)
            .await
            .unwrap();
        final_tx.send("final").unwrap();
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let first = tokio::spawn(async move {
        a.acquire("7", false, Write::Send, Priority::First)
            .await
            .unwrap();
        tx.send("first").unwrap();
    });
    final_text.await.unwrap();
    first.await.unwrap();
    assert_eq!(rx.recv().await, Some("final"));
    assert_eq!(rx.recv().await, Some("first"));
}

/// Drafts never wait: one replica's draft is skipped while the chat's bucket is not full,
/// even when the other replica spent the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_are_skipped_when_another_replica_spent_the_budget() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    a.acquire("9", false, Write::Send, Priority::Final)
        .await
        .unwrap();
    let before = Instant::now();
    let ready = b
        .acquire("9", false, Write::Edit, Priority::Draft)
        .await
        .unwrap_err();
    assert!(
        before.elapsed() < Duration::from_millis(300),
        "a draft waited"
    );
    assert!(ready > Instant::now() + Duration::from_millis(500));
}

/// A 429 met by one replica freezes that chat for the other too — exactly that chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_reaches_every_replica() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    a.freeze("11", false, Duration::from_millis(1500)).await;
    let start = Instant::now();
    b.acquire("12", false, Write::Send, Priority::Final)
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_millis(300));
    b.acquire("11", false, Write::Send, Priority::Final)
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        start.elapsed()
    );
}

/// The whole bot's sends (about 30 a second) are counted once for all replicas: of 40
/// first messages to 40 chats from two replicas, the last goes ~1/3 s after the first 30.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_overall_send_budget_is_shared() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let start = Instant::now();
    let mut sends = Vec::new();
    for chat in 0..40 {
        let p = if chat % 2 == 0 { a.clone() } else { b.clone() };
        sends.push(tokio::spawn(async move {
            p.acquire(
                &format!("{}", 100 + chat),
                false,
                Write::Send,
                Priority::First,
            )
            .await
            .unwrap();
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    // Ten sends past the burst of 30, at 28.5 a second.
    assert!(
        start.elapsed() >= Duration::from_millis(330),
        "{:?}",
        start.elapsed()
    );
}

/// Discord: a route paused by one replica (its bucket was empty, or a 429) is paused for
/// the other; a global pause covers every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_route_pauses_are_shared() {
    let redis = RedisServer::start();
    let (a, b) = (board(&redis).await, board(&redis).await);
    a.pause(
        "discord",
        Some("POST /channels/1/messages"),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let left = b
        .paused("discord", "POST /channels/1/messages")
        .await
        .unwrap()
        .expect("paused");
    assert!(left > Duration::from_millis(1500) && left <= Duration::from_secs(2));
    assert_eq!(
        b.paused("discord", "POST /channels/2/messages")
            .await
            .unwrap(),
        None
    );
    // A shorter pause never shortens a longer one.
    b.pause(
        "discord",
        Some("POST /channels/1/messages"),
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    assert!(
        a.paused("discord", "POST /channels/1/messages")
            .await
            .unwrap()
            .unwrap()
            > Duration::from_millis(1000)
    );
    b.pause("discord", None, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        a.paused("discord", "POST /channels/2/messages")
            .await
            .unwrap()
            .is_some()
    );
}

/// Redis gone: each replica still sends, on its own buckets (never stops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_replica_paces_alone() {
    let mut redis = RedisServer::start();
    let (a, _b) = replicas(&redis).await;
    redis.kill();
    let start = Instant::now();
    for _ in 0..3 {
        tokio::time::timeout(
            Duration::from_secs(5),
            a.acquire("5", false, Write::Send, Priority::Final),
        )
        .await
        .expect("sending stopped with Redis gone")
        .unwrap();
    }
    // Its own burst of three, at once.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let fourth = Instant::now();
    a.acquire("5", false, Write::Send, Priority::Final)
        .await
        .unwrap();
    assert!(fourth.elapsed() >= Duration::from_millis(900));
}

/// Writes waiting only for the bot's overall sends are booked in the order they asked,
/// whichever replica they are on: of 45 first messages to 45 chats asked one after
/// another, each goes no earlier than the one asked before it (no race at each refill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_waiting_for_the_bots_budget_go_in_the_order_they_asked() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sends = Vec::new();
    for chat in 0..45 {
        let p = if chat % 2 == 0 { a.clone() } else { b.clone() };
        let tx = tx.clone();
        sends.push(tokio::spawn(async move {
            p.acquire(
                &format!("{}", 500 + chat),
                false,
                Write::Send,
                Priority::First,
            )
            .await
            .unwrap();
            tx.send(chat).unwrap();
        }));
        // Asked in this order (the draw is one round trip).
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for s in sends {
        s.await.unwrap();
    }
    drop(tx);
    let mut order = Vec::new();
    while let Some(chat) = rx.recv().await {
        order.push(chat);
    }
    // The 30 of the burst go at once (in any order); the 15 booked ones in order.
    let booked: Vec<i32> = order.iter().copied().filter(|c| *c >= 30).collect();
    assert_eq!(booked, (30..45).collect::<Vec<_>>(), "{order:?}");
}

/// Discord end to end: two replicas' REST clients (each its own Redis connection) write
/// to one channel in turn against the Discord fake with its per-route buckets on (5 writes
/// per 5 s). The one that read `X-RateLimit-Remaining: 0` pauses the route for both, so
/// the other waits for the reset instead of meeting a 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_replicas_wait_out_a_bucket_either_emptied() {
    use gptbot::platform::discord::rest::Rest;
    gptbot::app::install_crypto_provider();
    let redis = RedisServer::start();
    let discord = common::discord::FakeDiscord::start().await;
    discord.enforce_rate_limits();
    let rest = |b: Arc<RedisBoard>| {
        Rest::new(
            &discord.api_url(),
            secrecy::SecretString::from(common::discord::TOKEN),
            Some(b as Arc<dyn SharedBudgets>),
        )
        .unwrap()
    };
    let replicas = [rest(board(&redis).await), rest(board(&redis).await)];
    for n in 0..6 {
        replicas[n % 2]
            .write(
                reqwest::Method::POST,
                "/channels/77/messages".to_string(),
                "POST /channels/77/messages".to_string(),
                Some(&serde_json::json!({"content": format!("message {n}")})),
                Priority::Final,
            )
            .await
            .unwrap();
    }
    assert!(
        discord.rate_limit_refusals().is_empty(),
        "429s: {:?}",
        discord.rate_limit_refusals()
    );
}
