//! Several replicas: two `App`s sharing one redis-server and one PostgreSQL, both
//! serving Telegram webhook updates for the same users at once. No history turn may be
//! lost, no token charged twice, and every account's invariant must hold exactly.

mod common;

use std::time::Duration;

use common::postgres::PostgresServer;
use common::telegram::{FakeTelegram, post_update, private_chat, user_json};
use common::*;
use gptbot::core::event::{Platform, SessionKey, UserId};

const SECRET: &str = "replica-secret_1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_and_redis_serve_the_same_users_exactly() {
    let pair = Pair::start_with(&[("GPTBOT__TELEGRAM__EDIT_INTERVAL", "50ms")], false).await;
    let (openai, tg, hooks) = (&pair.openai, &pair.tg, &pair.hooks);
    openai.set_echo_delay(Duration::from_millis(60));

    // Five users, eight messages each, sent at once and spread over both replicas.
    let http = reqwest::Client::new();
    let mut posts = Vec::new();
    for round in 0..8 {
        for user in 1..=5i64 {
            let update = tg.webhook_update(
                private_chat(user),
                user_json(user, "U"),
                &format!("message {round} of {user}"),
            );
            let hook = hooks[(round as usize + user as usize) % 2].clone();
            let http = http.clone();
            posts.push(tokio::spawn(async move {
                post_update(&http, &hook, SECRET, &update).await
            }));
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    for post in posts {
        assert_eq!(post.await.unwrap(), 200);
    }

    // Every message ends as an answer or a "still answering" notice.
    tg.wait_until(30, "every message handled", |calls| {
        let finals = calls
            .iter()
            .filter(|c| {
                c.body["parse_mode"] == "HTML"
                    && c.body["text"].as_str().is_some_and(|t| {
                        t.starts_with("Echo: ") || t.starts_with("Still answering")
                    })
            })
            .count();
        finals >= 40
    })
    .await;
    // The books are written while the final text goes out: wait until every answer's
    // hold is closed and its exchange recorded.
    let answers_of = |user: i64| {
        tg.calls()
            .into_iter()
            .filter(|c| c.body["chat_id"] == user && c.body["parse_mode"] == "HTML")
            .filter(|c| {
                c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Echo: "))
            })
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    'books: loop {
        let mut done = pair.apps[0].quota.holds().await.unwrap().is_empty();
        for user in 1..=5i64 {
            let key = SessionKey {
                platform: Platform::Telegram,
                chat: user.to_string(),
                user: user.to_string(),
            };
            let turns = pair.apps[1].sessions.load(&key).await.unwrap().turns.len();
            done &= turns == 2 * answers_of(user);
        }
        if done {
            break 'books;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the books were not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let quota = &pair.apps[0].quota;
    let mut answered_total = 0;
    for user in 1..=5i64 {
        let finals: Vec<String> = tg
            .calls()
            .into_iter()
            .filter(|c| c.body["chat_id"] == user && c.body["parse_mode"] == "HTML")
            .filter_map(|c| c.body["text"].as_str().map(str::to_string))
            .collect();
        let answered = finals.iter().filter(|t| t.starts_with("Echo: ")).count();
        let notices = finals
            .iter()
            .filter(|t| t.starts_with("Still answering"))
            .count();
        assert_eq!(answered + notices, 8, "user {user}: {finals:?}");
        assert!(answered >= 1);
        answered_total += answered;

        let id = UserId::new(Platform::Telegram, user.to_string());
        let b = quota.balance(&id).await.unwrap();
        assert_eq!(b.reserved, 0, "user {user}");
        assert_eq!(b.granted, b.remaining + b.used, "user {user}: {b:?}");
        assert_eq!(
            b.requests as usize, answered,
            "user {user}: charged {} times for {answered} answers",
            b.requests
        );
        let settles = quota
            .history(&id, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "settle")
            .count();
        assert_eq!(settles, answered, "user {user}");

        let key = SessionKey {
            platform: Platform::Telegram,
            chat: user.to_string(),
            user: user.to_string(),
        };
        let session = pair.apps[1].sessions.load(&key).await.unwrap();
        assert_eq!(
            session.turns.len(),
            2 * answered,
            "user {user}: a history turn was lost"
        );
    }
    assert_eq!(openai.request_count(), answered_total);
    // The webhook was registered once: the second replica found it in place.
    assert_eq!(tg.calls_of("setWebhook").len(), 1);
}

#[tokio::test]
async fn access_rules_and_stats_work_on_postgres() {
    let pg = PostgresServer::start();
    let url = pg.database("ops").await;
    let db = gptbot::db::Db::connect(&url, 4).await.unwrap();
    db.migrate().await.unwrap();
    let quota = gptbot::quota::QuotaService::new(db.clone(), gptbot::quota::QuotaPlan::fixed(1000));
    let settings = gptbot::config::AccessSettings {
        admins: vec!["telegram:1".into()],
        mode: gptbot::config::AccessMode::Allowlist,
        users: vec![],
        chats: vec!["discord:77".into()],
    };
    let access = gptbot::access::AccessService::new(db, &settings);
    let stranger = UserId::new(Platform::Telegram, "2");
    use gptbot::access::Decision;
    assert_eq!(
        access.decide(&stranger, None).await.unwrap(),
        Decision::Denied
    );
    assert_eq!(
        access
            .decide(&UserId::new(Platform::Discord, "5"), Some("77"))
            .await
            .unwrap(),
        Decision::Allowed
    );
    access
        .set_rule("telegram:2", true, "telegram:1")
        .await
        .unwrap();
    assert_eq!(
        access.decide(&stranger, None).await.unwrap(),
        Decision::Allowed
    );
    access.set_rule("telegram:2", false, "cli").await.unwrap();
    assert_eq!(
        access.decide(&stranger, None).await.unwrap(),
        Decision::Denied
    );
    assert_eq!(
        access.list_rules().await.unwrap(),
        vec![("telegram:2".to_string(), false, "cli".to_string())]
    );

    let r = quota.reserve(&stranger, 100).await.unwrap();
    quota.settle(r, 40).await.unwrap();
    let r = quota.reserve(&stranger, 100).await.unwrap();
    quota.refund(r).await.unwrap();
    let stats = quota.stats().await.unwrap();
    assert_eq!((stats.users, stats.used, stats.used_today), (1, 40, 40));
    assert_eq!((stats.requests, stats.requests_today), (1, 1));
    assert_eq!((stats.errors, stats.errors_today), (1, 1));
    assert_eq!(quota.used_today(&stranger).await.unwrap(), 40);
    let live = quota.reserve(&stranger, 100).await.unwrap();
    assert_eq!(quota.sweep().await.unwrap(), 0, "a live hold was swept");
    quota.refund(live).await.unwrap();
}

/// Two replicas in webhook mode sharing Redis and PostgreSQL, updates sent to whichever
/// the test names (as a round-robin proxy in front of them would spread them).
struct Pair {
    _pg: PostgresServer,
    redis: RedisServer,
    openai: FakeOpenAi,
    tg: FakeTelegram,
    _dir: tempfile::TempDir,
    apps: Vec<gptbot::app::App>,
    _running: Vec<gptbot::app::Running>,
    hooks: Vec<String>,
    _stop: tokio_util::sync::DropGuard,
    http: reqwest::Client,
}

impl Pair {
    async fn start() -> Pair {
        Pair::start_with(&[], true).await
    }

    /// `flood_limits`: the Telegram fake enforces Telegram's flood rules.
    async fn start_with(extra: &[(&str, &str)], flood_limits: bool) -> Pair {
        let pg = PostgresServer::start();
        let redis = RedisServer::start();
        let openai = FakeOpenAi::start().await;
        let tg = FakeTelegram::start().await;
        if flood_limits {
            tg.enforce_flood_limits();
        }
        let dir = tempfile::tempdir().unwrap();
        let database = pg.database("gptbot").await;
        let env = test_env(
            &openai,
            Some(&redis),
            &dir,
            &[("DATABASE_URL".into(), database)]
                .into_iter()
                .chain(tg.webhook_settings("127.0.0.1:0", SECRET))
                .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .collect::<Vec<_>>(),
        );
        let (stop, rx) = stopper();
        let (mut apps, mut running, mut hooks) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2 {
            let app = replica_of(&env).await;
            let run = app.start(rx.clone()).await.unwrap();
            let serving = run.platform(Platform::Telegram).cloned().unwrap();
            hooks.push(format!("http://{}/hook", serving.webhook_addr.unwrap()));
            apps.push(app);
            running.push(run);
        }
        Pair {
            _pg: pg,
            redis,
            openai,
            tg,
            _dir: dir,
            apps,
            _running: running,
            hooks,
            _stop: stop,
            http: reqwest::Client::new(),
        }
    }

    /// Delivers a private message from `user` to replica `to`.
    async fn send(&self, to: usize, user: i64, text: &str) {
        let update = self
            .tg
            .webhook_update(private_chat(user), user_json(user, "U"), text);
        let status = post_update(&self.http, &self.hooks[to], SECRET, &update).await;
        assert_eq!(status, 200);
    }

    async fn wait_text(&self, user: i64, what: &str, seen: impl Fn(&str) -> bool) {
        self.tg
            .wait_until(10, what, |_| self.tg.texts_in(user).iter().any(|t| seen(t)))
            .await;
    }

    /// The books of `user` once every hold is closed: the invariant, entries summing to
    /// the balance (`common::ledger::assert_books`).
    async fn books(&self, user: i64) -> gptbot::quota::Balance {
        let id = UserId::new(Platform::Telegram, user.to_string());
        let quota = &self.apps[1].quota;
        let balance = common::ledger::settled(quota, &id, 1).await;
        common::ledger::assert_books(quota, &id).await;
        balance
    }
}

const STILL: &str = "Still answering your previous message — send /cancel to stop it.";

/// A replica that died while answering leaves its user's slot in Redis; it frees itself
/// when its lease runs out, and the user is answered again (by any replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_slot_frees_itself_when_its_lease_runs_out() {
    let pair = Pair::start().await;
    let mut redis = pair.redis.client().await;
    let _: () = redis::cmd("SET")
        .arg("gptbot:inflight:telegram:9")
        .arg("0123456789abcdef01234567:g")
        .arg("PX")
        .arg(1500)
        .query_async(&mut redis)
        .await
        .unwrap();
    pair.send(0, 9, "hello").await;
    pair.wait_text(9, "the still-answering notice", |t| t == STILL)
        .await;
    assert_eq!(pair.openai.request_count(), 0);
    // /cancel reaches the slot too (nobody hears it: the holder is gone).
    pair.send(1, 9, "/cancel").await;
    pair.wait_text(9, "the confirmation", |t| t == "Stopped.")
        .await;
    pair.redis
        .wait_gone(
            "gptbot:inflight:telegram:9",
            Duration::from_secs(5),
            "the lease never ran out",
        )
        .await;
    pair.send(1, 9, "hello again").await;
    pair.wait_text(9, "the answer", |t| t.starts_with("Echo: hello again"))
        .await;
    let b = pair.books(9).await;
    assert_eq!(b.requests, 1);
}
