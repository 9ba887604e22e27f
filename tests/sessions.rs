//! One contract, two stores: every test body here runs against the Redis store (a real
//! redis-server) and the in-process store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use gptbot::core::event::{Platform, SessionKey};
use gptbot::session::memory::MemoryStore;
use gptbot::session::redis::RedisStore;
use gptbot::session::{Role, SessionStore, Setting, StoreOptions, Turn};

fn key(user: &str) -> SessionKey {
    SessionKey {
        platform: Platform::Discord,
        chat: "chan".into(),
        user: user.into(),
    }
}

fn turn(role: Role, content: &str) -> Turn {
    Turn {
        role,
        content: content.into(),
        tokens: content.len() as u32,
        tools: None,
    }
}

/// A store under test: the port, plus a look at what it keeps (expiry, raw values)
/// that the port does not offer.
enum Tested {
    Redis(RedisStore, redis::aio::MultiplexedConnection),
    Memory(MemoryStore),
}

impl std::ops::Deref for Tested {
    type Target = dyn SessionStore;

    fn deref(&self) -> &Self::Target {
        match self {
            Tested::Redis(store, _) => store,
            Tested::Memory(store) => store,
        }
    }
}

impl Tested {
    /// Time left before the session expires; `None` when there is none.
    async fn time_to_live(&self, key: &SessionKey) -> Result<Option<Duration>, redis::RedisError> {
        match self {
            Tested::Redis(store, conn) => {
                let ms: i64 = redis::cmd("PTTL")
                    .arg(store.key(key))
                    .query_async(&mut conn.clone())
                    .await?;
                Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
            }
            Tested::Memory(store) => Ok(store.time_to_live(key)),
        }
    }

    /// Stores a raw value as is, as a corrupt or foreign writer would.
    async fn put_raw(&self, key: &SessionKey, raw: &str) -> Result<(), redis::RedisError> {
        match self {
            Tested::Redis(store, conn) => {
                redis::cmd("SET")
                    .arg(store.key(key))
                    .arg(raw)
                    .arg("PX")
                    .arg(60_000)
                    .query_async(&mut conn.clone())
                    .await
            }
            Tested::Memory(store) => {
                store.put_raw(key, raw);
                Ok(())
            }
        }
    }
}

/// Runs `body` against both stores built with `options`.
async fn both<F, Fut>(options: StoreOptions, body: F)
where
    F: Fn(Arc<Tested>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), "test", options)
        .await
        .unwrap();
    body(Arc::new(Tested::Redis(store, redis.client().await))).await;
    body(Arc::new(Tested::Memory(MemoryStore::new(options)))).await;
}

fn opts(ttl_ms: u64, max_history: usize) -> StoreOptions {
    StoreOptions {
        ttl: Duration::from_millis(ttl_ms),
        max_history,
    }
}

#[tokio::test]
async fn append_load_and_system_prompt() {
    both(opts(60_000, 100), |store| async move {
        let k = key("a");
        let empty = store.load(&k).await.unwrap();
        assert!(empty.turns.is_empty() && empty.system_prompt.is_none());
        assert!(
            store.time_to_live(&k).await.unwrap().is_none(),
            "loading must not create"
        );

        let tricky =
            "quotes \" slashes / \\ newlines\n tabs\t emoji 🦀 cyrillic ё CJK 日本 \u{1F600}";
        store
            .append(&k, &[turn(Role::User, tricky), turn(Role::Assistant, "ok")])
            .await
            .unwrap();
        store.set_system_prompt(&k, Some("be terse")).await.unwrap();
        let s = store.load(&k).await.unwrap();
        assert_eq!(
            s.turns,
            vec![turn(Role::User, tricky), turn(Role::Assistant, "ok")],
            "{}",
            store.backend()
        );
        assert_eq!(s.system_prompt.as_deref(), Some("be terse"));

        store.clear_history(&k).await.unwrap();
        let s = store.load(&k).await.unwrap();
        assert!(s.turns.is_empty());
        assert_eq!(
            s.system_prompt.as_deref(),
            Some("be terse"),
            "reset keeps the prompt"
        );
        store.set_system_prompt(&k, None).await.unwrap();
        assert!(store.load(&k).await.unwrap().system_prompt.is_none());

        // A system prompt on a brand-new session (no turns yet) reads back fine.
        store
            .set_system_prompt(&key("fresh"), Some("x"))
            .await
            .unwrap();
        assert_eq!(
            store
                .load(&key("fresh"))
                .await
                .unwrap()
                .system_prompt
                .as_deref(),
            Some("x")
        );
    })
    .await;
}

#[tokio::test]
async fn model_and_persona_choices_are_kept_beside_the_history() {
    both(opts(60_000, 100), |store| async move {
        let k = key("choices");
        store.set(&k, Setting::Model, Some("big")).await.unwrap();
        store
            .set(&k, Setting::Persona, Some("pirate"))
            .await
            .unwrap();
        store
            .append(&k, &[turn(Role::User, "hi"), turn(Role::Assistant, "ahoy")])
            .await
            .unwrap();
        let s = store.load(&k).await.unwrap();
        assert_eq!(s.model.as_deref(), Some("big"), "{}", store.backend());
        assert_eq!(s.persona.as_deref(), Some("pirate"));
        assert_eq!(s.turns.len(), 2);
        // /reset forgets the history, not the choices.
        store.clear_history(&k).await.unwrap();
        let s = store.load(&k).await.unwrap();
        assert!(s.turns.is_empty());
        assert_eq!(s.model.as_deref(), Some("big"));
        store.set(&k, Setting::Persona, None).await.unwrap();
        let s = store.load(&k).await.unwrap();
        assert_eq!(s.persona, None);
        assert_eq!(s.model.as_deref(), Some("big"));
        assert!(
            store.time_to_live(&k).await.unwrap().is_some(),
            "a setting refreshes the expiry"
        );
    })
    .await;
}

#[tokio::test]
async fn sliding_expiry_pushes_forward_on_use_and_forgets_after_idle() {
    both(opts(700, 100), |store| async move {
        let k = key("ttl");
        store.append(&k, &[turn(Role::User, "hi")]).await.unwrap();
        let ttl = store.time_to_live(&k).await.unwrap().unwrap();
        assert!(
            ttl <= Duration::from_millis(700) && ttl > Duration::from_millis(500),
            "{ttl:?}"
        );
        // Used every 400ms, the session outlives its 700ms TTL several times over.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(
                store.load(&k).await.unwrap().turns.len(),
                1,
                "{} expired while in use",
                store.backend()
            );
            let ttl = store.time_to_live(&k).await.unwrap().unwrap();
            assert!(
                ttl > Duration::from_millis(500),
                "read did not refresh the TTL: {ttl:?}"
            );
        }
        // A write refreshes it too.
        tokio::time::sleep(Duration::from_millis(400)).await;
        store.set_system_prompt(&k, Some("p")).await.unwrap();
        assert!(store.time_to_live(&k).await.unwrap().unwrap() > Duration::from_millis(500));
        // Idle past the TTL: gone.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(store.time_to_live(&k).await.unwrap().is_none());
        let s = store.load(&k).await.unwrap();
        assert!(
            s.turns.is_empty() && s.system_prompt.is_none(),
            "{}",
            store.backend()
        );
    })
    .await;
}

#[tokio::test]
async fn history_is_bounded_oldest_first() {
    both(opts(60_000, 6), |store| async move {
        let k = key("bounded");
        for i in 0..5 {
            store
                .append(
                    &k,
                    &[
                        turn(Role::User, &format!("q{i}")),
                        turn(Role::Assistant, &format!("a{i}")),
                    ],
                )
                .await
                .unwrap();
        }
        let s = store.load(&k).await.unwrap();
        let contents: Vec<&str> = s.turns.iter().map(|t| t.content.as_str()).collect();
        assert_eq!(
            contents,
            ["q2", "a2", "q3", "a3", "q4", "a4"],
            "{}",
            store.backend()
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_appends_all_land() {
    both(opts(60_000, 1000), |store| async move {
        let k = key("race");
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                let k = k.clone();
                tokio::spawn(async move {
                    store
                        .append(
                            &k,
                            &[
                                turn(Role::User, &format!("q{i}")),
                                turn(Role::Assistant, &format!("a{i}")),
                            ],
                        )
                        .await
                        .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let s = store.load(&k).await.unwrap();
        assert_eq!(s.turns.len(), 80, "{}", store.backend());
        // Each pair stayed together.
        for pair in s.turns.chunks(2) {
            assert_eq!(pair[0].content[1..], pair[1].content[1..]);
        }
    })
    .await;
}

#[tokio::test]
async fn corrupt_values_read_as_empty_and_are_replaced_on_write() {
    both(opts(60_000, 100), |store| async move {
        let k = key("corrupt");
        for garbage in [
            "not json at all",
            "[1,2,3]",
            r#"{"v":2,"turns":[]}"#,
            r#"{"turns":[]}"#,
            r#"{"v":1,"turns":[{"role":"wizard","content":"x","tokens":1}]}"#,
            "\u{0}\u{1}binary",
        ] {
            store.put_raw(&k, garbage).await.unwrap();
            let s = store.load(&k).await.unwrap();
            assert!(s.turns.is_empty(), "{garbage}");
            store
                .append(&k, &[turn(Role::User, "fresh")])
                .await
                .unwrap();
            let s = store.load(&k).await.unwrap();
            assert_eq!(
                s.turns,
                vec![turn(Role::User, "fresh")],
                "{} {garbage}",
                store.backend()
            );
        }
    })
    .await;
}

#[tokio::test]
async fn redis_keys_follow_the_documented_layout() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), "gptbot", opts(60_000, 10))
        .await
        .unwrap();
    assert_eq!(store.key(&key("42")), "gptbot:session:discord:chan:42");
    store
        .append(&key("42"), &[turn(Role::User, "x")])
        .await
        .unwrap();
    let mut conn = redis.client().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, vec!["gptbot:session:discord:chan:42".to_string()]);
}

#[tokio::test]
async fn an_unreachable_redis_fails_at_start_with_a_clear_error() {
    let port = common::free_port();
    let err = RedisStore::connect(
        &format!("redis://:secretpw@127.0.0.1:{port}"),
        "gptbot",
        opts(1000, 10),
    )
    .await
    .err()
    .expect("nothing listens there");
    let err = gptbot::core::error::chain(&err).to_string();
    assert!(err.contains("cannot connect to Redis"), "{err}");
    assert!(!err.contains("secretpw"), "{err}");
}

#[tokio::test]
async fn one_time_codes_are_taken_once_and_expire() {
    both(opts(60_000, 10), |store| async move {
        assert!(
            store
                .put_code("link:ABC", "telegram:1", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_code("link:ABC", "telegram:2", Duration::from_secs(60))
                .await
                .unwrap(),
            "{}: a taken code was overwritten",
            store.backend()
        );
        assert_eq!(
            store.take_code("link:ABC").await.unwrap().as_deref(),
            Some("telegram:1")
        );
        assert_eq!(
            store.take_code("link:ABC").await.unwrap(),
            None,
            "{}: used twice",
            store.backend()
        );
        assert!(
            store
                .put_code("link:SHORT", "x", Duration::from_millis(150))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            store.take_code("link:SHORT").await.unwrap(),
            None,
            "{}: did not expire",
            store.backend()
        );
    })
    .await;
}

/// /retry's write: the last exchange is replaced while it is still the last one; when
/// the history moved on meanwhile (cleared, or another turn came), the new exchange is
/// appended and nothing else is touched. Bounded like an append.
#[tokio::test]
async fn replace_last_swaps_the_last_exchange_only_while_it_is_still_last() {
    both(opts(60_000, 4), |store| async move {
        let k = key("again");
        let first = [turn(Role::User, "q1"), turn(Role::Assistant, "a1")];
        let second = [turn(Role::User, "q2"), turn(Role::Assistant, "a2")];
        store.append(&k, &first).await.unwrap();
        store.append(&k, &second).await.unwrap();
        let again = [turn(Role::User, "q2"), turn(Role::Assistant, "a2, better")];
        store.replace_last(&k, &second, &again).await.unwrap();
        let contents = |s: gptbot::core::session::Session| {
            s.turns
                .into_iter()
                .map(|t| t.content)
                .collect::<Vec<String>>()
        };
        assert_eq!(
            contents(store.load(&k).await.unwrap()),
            ["q1", "a1", "q2", "a2, better"],
            "{}",
            store.backend()
        );
        // The history moved on: "second" is no longer last, so nothing is dropped; the
        // limit of 4 turns then drops the oldest.
        store.replace_last(&k, &second, &again).await.unwrap();
        assert_eq!(
            contents(store.load(&k).await.unwrap()),
            ["q2", "a2, better", "q2", "a2, better"],
            "{}",
            store.backend()
        );
        // Cleared meanwhile: the new exchange is the whole history.
        store.clear_history(&k).await.unwrap();
        store.replace_last(&k, &second, &again).await.unwrap();
        assert_eq!(
            contents(store.load(&k).await.unwrap()),
            ["q2", "a2, better"],
            "{}",
            store.backend()
        );
        // Everything replaced: the history is the new exchange alone.
        store.replace_last(&k, &again, &first).await.unwrap();
        assert_eq!(
            contents(store.load(&k).await.unwrap()),
            ["q1", "a1"],
            "{}",
            store.backend()
        );
    })
    .await;
}

/// The question that got no answer is kept beside the history for /retry, and the next
/// exchange recorded (appended or put in place of the last) clears it.
#[tokio::test]
async fn an_unanswered_question_is_kept_until_an_exchange_is_recorded() {
    both(opts(60_000, 10), |store| async move {
        let k = key("unanswered");
        store
            .set(&k, Setting::Unanswered, Some("why \"is\" the sky blue?"))
            .await
            .unwrap();
        let s = store.load(&k).await.unwrap();
        assert_eq!(
            s.unanswered.as_deref(),
            Some("why \"is\" the sky blue?"),
            "{}",
            store.backend()
        );
        store
            .append(&k, &[turn(Role::User, "q"), turn(Role::Assistant, "a")])
            .await
            .unwrap();
        assert_eq!(
            store.load(&k).await.unwrap().unanswered,
            None,
            "{}",
            store.backend()
        );
        store
            .set(&k, Setting::Unanswered, Some("again?"))
            .await
            .unwrap();
        store
            .replace_last(
                &k,
                &[turn(Role::User, "q"), turn(Role::Assistant, "a")],
                &[turn(Role::User, "q"), turn(Role::Assistant, "b")],
            )
            .await
            .unwrap();
        let s = store.load(&k).await.unwrap();
        assert_eq!(s.unanswered, None, "{}", store.backend());
        assert_eq!(s.turns.len(), 2, "{}", store.backend());
    })
    .await;
}
