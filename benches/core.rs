//! `cargo bench --bench core`: latency of the two stores a handled message touches.
//!
//! - quota reserve + settle on a real SQLite file (WAL, synchronous=NORMAL), through the
//!   same `QuotaService` the bot uses;
//! - session load (GETEX) + append (EVALSHA) on a real redis-server, with the Redis
//!   round trips per message counted from `INFO commandstats`, next to a plain GET/SET of
//!   the same payload and `redis-benchmark` on the same server (the physical limit).
//!
//! - the replicas' shared board on the same redis-server: an in-flight slot's take, mark
//!   finishing and free, and a per-user rate check (`RedisBoard`), as a message costs;
//!   a model-call permit taken and given back, and one write's send budget.
//!
//! Starts its own redis-server on a free port with the tests' launcher
//! (REDIS_SERVER_BIN overrides the binary).
//! Figures are printed as p50 / p90 / p99 in microseconds.

use std::process::Command;
use std::time::{Duration, Instant};

// The tests' harness: the same redis-server launcher.
#[path = "../tests/common/mod.rs"]
mod common;

use gptbot::core::event::{Platform, SessionKey, UserId};
use gptbot::quota::{QuotaPlan, QuotaService};
use gptbot::session::redis::RedisStore;
use gptbot::session::{Role, SessionStore, StoreOptions, Turn};

const QUOTA_ITERATIONS: usize = 20_000;
const SESSION_ITERATIONS: usize = 10_000;

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    format!(
        "p50 {:>7.1} µs   p90 {:>7.1} µs   p99 {:>7.1} µs   (n = {})",
        at(0.50),
        at(0.90),
        at(0.99),
        samples.len()
    )
}

async fn bench_quota() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let db = gptbot::db::Db::connect(&url, 8).await.unwrap();
    db.migrate().await.unwrap();
    let quota = QuotaService::new(db, QuotaPlan::fixed(1_000_000_000_000));
    let users: Vec<UserId> = (0..100)
        .map(|i| UserId::new(Platform::Telegram, i.to_string()))
        .collect();
    for u in &users {
        quota.balance(u).await.unwrap();
    }
    // Warm-up.
    for i in 0..1000 {
        let r = quota.reserve(&users[i % 100], 1124).await.unwrap();
        quota.settle(r, 300).await.unwrap();
    }
    let mut reserve = Vec::with_capacity(QUOTA_ITERATIONS);
    let mut settle = Vec::with_capacity(QUOTA_ITERATIONS);
    let mut both = Vec::with_capacity(QUOTA_ITERATIONS);
    for i in 0..QUOTA_ITERATIONS {
        let user = &users[i % 100];
        let t0 = Instant::now();
        let r = quota.reserve(user, 1124).await.unwrap();
        let t1 = Instant::now();
        quota.settle(r, 300 + (i % 200) as i64).await.unwrap();
        let t2 = Instant::now();
        reserve.push(t1 - t0);
        settle.push(t2 - t1);
        both.push(t2 - t0);
    }
    println!("quota (SQLite file, WAL, synchronous=NORMAL), sequential, 100 users:");
    println!("  reserve            {}", percentiles(reserve));
    println!("  settle             {}", percentiles(settle));
    println!("  reserve + settle   {}", percentiles(both));

    {
        // The floor: a no-op query's round trip to sqlx's SQLite worker thread.
        let pool = quota.db().sqlite().unwrap().clone();
        let mut s = Vec::new();
        for _ in 0..5000 {
            let t0 = Instant::now();
            let _: (i64,) = sqlx::query_as("SELECT 1").fetch_one(&pool).await.unwrap();
            s.push(t0.elapsed());
        }
        println!("  SELECT 1 (floor)   {}", percentiles(s));
    }
    // Many users at once: 8 concurrent tasks.
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let quota = quota.clone();
            let users = users.clone();
            tokio::spawn(async move {
                for i in 0..2_000 {
                    let r = quota
                        .reserve(&users[(t * 13 + i) % 100], 1124)
                        .await
                        .unwrap();
                    quota.settle(r, 300).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = 16_000.0 / started.elapsed().as_secs_f64();
    println!("  8 concurrent tasks: {rate:.0} reserve+settle pairs per second");
    bench_wallet(&quota, &users).await;
}

/// A group's wallet paying for its members: the hold's statement also sums the member's
/// holds of the day (against the share), so it is measured after a day's worth of them.
async fn bench_wallet(quota: &QuotaService, members: &[UserId]) {
    let wallet = QuotaService::wallet_account(Platform::Telegram, "-100", None);
    let admin = UserId::new(Platform::Telegram, "admin");
    quota
        .fund_wallet(
            &wallet,
            gptbot::quota::Funding::Grant(&admin),
            1_000_000_000_000,
        )
        .await
        .unwrap();
    let mut reserve_limit = Vec::new();
    let mut pair_limit = Vec::new();
    let mut reserve_free = Vec::new();
    let mut lookup = Vec::new();
    for (limit, reserves, pairs) in [
        (0_i64, &mut reserve_free, None),
        (1_000_000_000, &mut reserve_limit, Some(&mut pair_limit)),
    ] {
        quota.set_member_limit(&wallet, limit).await.unwrap();
        let mut pairs = pairs;
        for i in 0..QUOTA_ITERATIONS {
            let t0 = Instant::now();
            let found = quota
                .wallet_for(Platform::Telegram, "-100", None)
                .await
                .unwrap();
            let t1 = Instant::now();
            let payer = gptbot::quota::Payer {
                member: members[i % members.len()].clone(),
                name: "Member".into(),
                wallet: found,
            };
            let r = quota.reserve_paid(&payer, 1124, Some("m")).await.unwrap();
            let t2 = Instant::now();
            quota.settle(r, 300).await.unwrap();
            let t3 = Instant::now();
            lookup.push(t1 - t0);
            reserves.push(t2 - t1);
            if let Some(pairs) = pairs.as_deref_mut() {
                pairs.push(t3 - t1);
            }
        }
    }
    let per_member = 2 * QUOTA_ITERATIONS / members.len();
    println!("group wallet (the same file; up to {per_member} holds per member today):");
    println!("  wallet lookup      {}", percentiles(lookup));
    println!("  reserve, no share  {}", percentiles(reserve_free));
    println!("  reserve, a share   {}", percentiles(reserve_limit));
    println!("  with share: + settle {}", percentiles(pair_limit));
}

async fn command_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    // Commands a client sends; those run inside a script (GET/SET) are not round trips.
    info.lines()
        .filter(|l| {
            [
                "cmdstat_getex:",
                "cmdstat_evalsha:",
                "cmdstat_eval:",
                "cmdstat_script|load:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn bench_sessions() {
    let server = common::RedisServer::start();
    let url = server.url();
    let options = StoreOptions {
        ttl: Duration::from_secs(3600),
        max_history: 20,
    };
    let store = RedisStore::connect(&url, "bench", options).await.unwrap();
    let turn = |role, i: usize| Turn {
        role,
        content: format!(
            "{i}: {}",
            "The quick brown fox jumps over the lazy dog. ".repeat(4)
        ),
        tokens: 40,
        tools: None,
    };
    let key = |i: usize| SessionKey {
        platform: Platform::Telegram,
        chat: (i % 100).to_string(),
        user: (i % 100).to_string(),
    };
    // Fill 100 sessions to the history limit, so every append also drops two turns.
    for i in 0..100 {
        for j in 0..10 {
            store
                .append(&key(i), &[turn(Role::User, j), turn(Role::Assistant, j)])
                .await
                .unwrap();
        }
    }
    let payload = store.load(&key(0)).await.unwrap().encode().len();

    let mut stats = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let calls_before = command_calls(&mut stats).await;
    let mut load = Vec::with_capacity(SESSION_ITERATIONS);
    let mut append = Vec::with_capacity(SESSION_ITERATIONS);
    let mut both = Vec::with_capacity(SESSION_ITERATIONS);
    for i in 0..SESSION_ITERATIONS {
        let k = key(i);
        let t0 = Instant::now();
        let session = store.load(&k).await.unwrap();
        let t1 = Instant::now();
        store
            .append(&k, &[turn(Role::User, i), turn(Role::Assistant, i)])
            .await
            .unwrap();
        let t2 = Instant::now();
        assert_eq!(session.turns.len(), 20);
        load.push(t1 - t0);
        append.push(t2 - t1);
        both.push(t2 - t0);
    }
    let calls = command_calls(&mut stats).await - calls_before;

    // The same payload with plain GET / SET, through the same client library.
    let value = "x".repeat(payload);
    let mut get = Vec::with_capacity(SESSION_ITERATIONS);
    let mut set = Vec::with_capacity(SESSION_ITERATIONS);
    for i in 0..SESSION_ITERATIONS {
        let k = format!("plain:{}", i % 100);
        let t0 = Instant::now();
        let _: () = redis::cmd("SET")
            .arg(&k)
            .arg(&value)
            .query_async(&mut stats)
            .await
            .unwrap();
        let t1 = Instant::now();
        let _: Option<String> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut stats)
            .await
            .unwrap();
        let t2 = Instant::now();
        set.push(t1 - t0);
        get.push(t2 - t1);
    }

    println!("sessions (redis-server on loopback, {payload}-byte session JSON, 20 turns):");
    println!("  load   (GETEX)     {}", percentiles(load));
    println!("  append (EVALSHA)   {}", percentiles(append));
    println!("  load + append      {}", percentiles(both));
    println!(
        "  Redis round trips per handled message: {:.2}",
        calls as f64 / SESSION_ITERATIONS as f64
    );
    println!("  plain SET same size {}", percentiles(set));
    println!("  plain GET same size {}", percentiles(get));

    match Command::new("redis-benchmark")
        .args([
            "-p",
            &server.port.to_string(),
            "-t",
            "get,set",
            "-n",
            "20000",
            "-c",
            "1",
            "-d",
            &payload.to_string(),
            "-q",
        ])
        .output()
    {
        Ok(out) => {
            println!("  redis-benchmark -c 1 -d {payload} (one client, like one chat):");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let line = line.rsplit('\r').next().unwrap_or(line).trim();
                if !line.is_empty() {
                    println!("    {line}");
                }
            }
        }
        Err(e) => println!("  redis-benchmark not available: {e}"),
    }
}

async fn bench_board() {
    use gptbot::core::coordination::{SharedPermits, SharedRates, SharedSlots};
    use gptbot::core::pacing::{Ask, Limits, Priority, Rate, SharedBudgets, Write};
    let server = common::RedisServer::start();
    let board = gptbot::coord::redis::RedisBoard::connect(&server.url(), "bench")
        .await
        .unwrap();
    let lease = Duration::from_secs(15);
    let (mut take, mut finishing, mut free, mut rate, mut all) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut permit, mut give_back, mut budget) = (Vec::new(), Vec::new(), Vec::new());
    // Budgets this loop never exhausts: every draw is taken, as most writes are.
    let wide = Limits {
        per_chat: Rate::new(1e9, 1e9),
        per_group: None,
        group_reserve: 0.0,
        global_sends: Rate::new(1e9, 1e9),
    };
    for i in 0..SESSION_ITERATIONS {
        let user = UserId::new(Platform::Telegram, (i % 100).to_string());
        let t0 = Instant::now();
        board.take(&user, "0123456789abcdef", lease).await.unwrap();
        let t1 = Instant::now();
        board.finishing(&user, "0123456789abcdef").await.unwrap();
        let t2 = Instant::now();
        board.free(&user, "0123456789abcdef").await.unwrap();
        let t3 = Instant::now();
        board
            .hit(
                &format!("messages:{user}"),
                1_000_000,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        let t4 = Instant::now();
        board
            .take_permit("0123456789abcdef", 256, lease)
            .await
            .unwrap();
        let t5 = Instant::now();
        board.free_permit("0123456789abcdef").await.unwrap();
        let t6 = Instant::now();
        let ask = Ask {
            chat: &user.user,
            group: false,
            write: Write::Send,
            priority: Priority::Final,
            counted: false,
        };
        board.draw("telegram", &wide, ask).await.unwrap();
        let t7 = Instant::now();
        permit.push(t5 - t4);
        give_back.push(t6 - t5);
        budget.push(t7 - t6);
        take.push(t1 - t0);
        finishing.push(t2 - t1);
        free.push(t3 - t2);
        rate.push(t4 - t3);
        all.push(t4 - t0);
    }
    println!("replicas' board (the same redis-server, one message's calls):");
    println!("  take slot          {}", percentiles(take));
    println!("  mark finishing     {}", percentiles(finishing));
    println!("  free slot          {}", percentiles(free));
    println!("  rate check (GCRA)  {}", percentiles(rate));
    println!("  all four           {}", percentiles(all));
    println!("  model-call permit  {}", percentiles(permit));
    println!("  give it back       {}", percentiles(give_back));
    println!("  send budget (write){}", percentiles(budget));
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful either.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        bench_quota().await;
        println!();
        bench_sessions().await;
        println!();
        bench_board().await;
    });
}
