//! `cargo bench --bench load`: the real `gptbot run` binary against the fake Bot API with
//! Telegram's flood rules on and a fake streaming model, on loopback.
//!
//! The model answers 100 tokens: the first after 100 ms, then one every 20 ms (2.08 s), or
//! one every 2 ms in the fast variant (0.3 s). Users write in private chats; each sends
//! their next message one second after seeing the previous answer complete (a quick
//! human; Telegram allows a chat about one message a second).
//!
//! Shapes: (a) 1 user × 30 messages, fast model; (b) 20 users × 5 messages; (c) 100 users
//! × 2 messages, all starting within one second; (d) the same burst through 2 replicas
//! (webhook mode behind a round-robin proxy, sharing Redis and PostgreSQL: sends, slots,
//! permits and limits decided in Redis). Per shape: replies completed, 429s the fake
//! answered, writes per reply, overhead (complete reply visible − model's last token)
//! p50 / p99, the bot's CPU per message and its peak RSS (from /proc; summed over
//! replicas).
//!
//! `BENCH_WAITING=1000` measures instead what an answer waiting in line for a model call
//! costs in memory (1000 of them behind `limits.max_concurrent_answers = 1`).
//! `BENCH_SHAPES=a,b` runs a subset; `BENCH_BIN=path` runs another build of the bot;
//! `GPTBOT_RUNTIME=multi-thread` is passed on to the bot; `BENCH_TOOLS=1` has every
//! question go through one `web_search` call first.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

use common::telegram::{FakeTelegram, TOKEN, private_chat, user_json};
use common::{FakeOpenAi, LoadModel};

const TOKENS: usize = 100;
const THINK: Duration = Duration::from_secs(1);

struct Shape {
    name: &'static str,
    users: i64,
    messages: usize,
    per_token: Duration,
    /// Users start spread evenly over this.
    ramp: Duration,
    /// 0: one process, long polling; else this many replicas behind a proxy.
    replicas: usize,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "a: 1 user x 30 messages, fast model",
        users: 1,
        messages: 30,
        per_token: Duration::from_millis(2),
        ramp: Duration::ZERO,
        replicas: 0,
    },
    Shape {
        name: "b: 20 users x 5 messages",
        users: 20,
        messages: 5,
        per_token: Duration::from_millis(20),
        ramp: Duration::from_secs(1),
        replicas: 0,
    },
    Shape {
        name: "c: 100 users x 2 messages, all within 1 s",
        users: 100,
        messages: 2,
        per_token: Duration::from_millis(20),
        ramp: Duration::from_secs(1),
        replicas: 0,
    },
    Shape {
        name: "d: 100 users x 2 messages, all within 1 s, 2 replicas on Redis + PostgreSQL",
        users: 100,
        messages: 2,
        per_token: Duration::from_millis(20),
        ramp: Duration::from_secs(1),
        replicas: 2,
    },
];

/// CPU time the process has used (user + system), to the nanosecond: the sum of its
/// threads' run time from `/proc/<pid>/task/*/schedstat` (`/proc/<pid>/stat` counts in
/// 10 ms ticks, a third of a millisecond per message over 30 messages). Threads that
/// have ended are not counted: the bot's are long-lived (the runtime, SQLite's workers);
/// where schedstat is missing, the tick count is used.
fn cpu_time(pids: &[u32]) -> Duration {
    pids.iter().map(|pid| cpu_time_of(*pid)).sum()
}

fn cpu_time_of(pid: u32) -> Duration {
    let run_ns = |path: std::path::PathBuf| -> Option<u64> {
        let stat = std::fs::read_to_string(path.join("schedstat")).ok()?;
        stat.split_whitespace().next()?.parse().ok()
    };
    let task = std::path::PathBuf::from(format!("/proc/{pid}/task"));
    if run_ns(task.join(pid.to_string())).is_some()
        && let Ok(tasks) = std::fs::read_dir(&task)
    {
        // A thread that ends between the listing and the read is skipped.
        let ns: u64 = tasks.flatten().filter_map(|t| run_ns(t.path())).sum();
        return Duration::from_nanos(ns);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// How often the process's threads have gone to sleep or been preempted so far (each
/// wake-up on this VM costs tens of µs of CPU; BENCHMARKS.md). Threads that have ended
/// are not counted: the bot's are long-lived (runtime workers, SQLite's).
fn context_switches(pids: &[u32]) -> u64 {
    pids.iter().map(|pid| context_switches_of(*pid)).sum()
}

fn context_switches_of(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// The processes' peak resident memory, in MiB, summed.
fn peak_rss_mib(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| peak_rss_mib_of(*pid)).sum()
}

fn peak_rss_mib_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// `gptbot run` (long polling, a SQLite ledger in a folder of its own) against the fakes,
/// configured by `settings` on top; returned once it polls. `BENCH_BIN` runs another build
/// of the bot (to compare two builds on the same day).
async fn polling_bot(
    tg: &FakeTelegram,
    openai: &FakeOpenAi,
    settings: &[(&'static str, String)],
) -> (tokio::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut env: HashMap<&str, String> = HashMap::from([
        ("TELEGRAM_BOT_TOKEN", TOKEN.to_string()),
        ("GPTBOT__TELEGRAM__API_URL", tg.api_url()),
        ("OPENAI_BASE_URL", openai.base_url()),
        ("OPENAI_API_KEY", "sk-bench".to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        ),
    ]);
    env.extend(settings.iter().cloned());
    let bin = std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gptbot").into());
    let child = tokio::process::Command::new(bin)
        .arg("run")
        .env_clear()
        .envs(&env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the gptbot binary starts");
    tg.wait_until(30, "the bot polling", |calls| {
        calls.iter().filter(|c| c.method == "getupdates").count() >= 2
    })
    .await;
    (child, dir)
}

/// What runs the bot: one process (long polling; its database's folder kept alive), or
/// replicas behind a proxy. One per run: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Bot {
    One {
        child: tokio::process::Child,
        _dir: tempfile::TempDir,
    },
    Fleet(common::fleet::Fleet),
}

impl Bot {
    fn pids(&self) -> Vec<u32> {
        match self {
            Bot::One { child, .. } => child.id().into_iter().collect(),
            Bot::Fleet(fleet) => fleet.replicas.iter().filter_map(|c| c.id()).collect(),
        }
    }
}

async fn run_shape(shape: &Shape) {
    // BENCH_TOOLS=1: each question first has the model call web_search (a fake SearXNG
    // on loopback), then it answers: the cost of a tool round trip beside a plain answer.
    let tools = std::env::var("BENCH_TOOLS").is_ok_and(|v| v == "1");
    let searx = common::searxng::FakeSearxng::start().await;
    let model = LoadModel {
        first: Duration::from_millis(100),
        tokens: TOKENS,
        // BENCH_PER_TOKEN_MS overrides the pace (0: the whole answer at once), to tell the
        // cost per streamed chunk from the cost per message.
        per_token: std::env::var("BENCH_PER_TOKEN_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(shape.per_token, Duration::from_millis),
        tool_first: tools,
    };
    // What every shape sets, whatever runs the bot.
    let settings: Vec<(&str, String)> = vec![
        ("GPTBOT__LIMITS__PER_USER_PER_MINUTE", "0".to_string()),
        ("GPTBOT__QUOTA__DEFAULT_TOKENS", "100000000".to_string()),
        ("GPTBOT__MODEL__MAX_TOKENS", "200".to_string()),
        ("GPTBOT__HTTP__LISTEN", "127.0.0.1:0".to_string()),
        (
            "GPTBOT__MODEL__TOKENIZER",
            std::env::var("BENCH_TOKENIZER").unwrap_or_else(|_| "auto".into()),
        ),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("GPTBOT__MODEL__TOOLS", tools.to_string()),
        ("GPTBOT__TOOLS__WEB_SEARCH__SEARXNG_URL", searx.url()),
        (
            "GPTBOT_RUNTIME",
            std::env::var("GPTBOT_RUNTIME").unwrap_or_default(),
        ),
    ];
    let (tg, openai, bot) = if shape.replicas > 0 {
        let mut extra = settings.clone();
        extra.push(("RUST_LOG", "warn".to_string()));
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let fleet = common::fleet::Fleet::start(shape.replicas, &extra).await;
        fleet.openai.set_load_model(model);
        (fleet.tg.clone(), fleet.openai.clone(), Bot::Fleet(fleet))
    } else {
        let tg = FakeTelegram::start().await;
        tg.enforce_flood_limits();
        let openai = FakeOpenAi::start().await;
        openai.set_load_model(model);
        let (child, dir) = polling_bot(&tg, &openai, &settings).await;
        (tg, openai, Bot::One { child, _dir: dir })
    };
    let pids = bot.pids();
    // What the bot burns doing nothing but waiting for updates, for comparison.
    let idle_from = cpu_time(&pids);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = cpu_time(&pids).saturating_sub(idle_from);
    let cpu_before = cpu_time(&pids);
    let switches_before = context_switches(&pids);
    let rss_at_start = peak_rss_mib(&pids);

    let started = Instant::now();
    let bot = &bot;
    let runs = (0..shape.users).map(|u| {
        let tg = tg.clone();
        let openai = openai.clone();
        let delay = if shape.users > 1 {
            shape.ramp.mul_f64(u as f64 / shape.users as f64)
        } else {
            Duration::ZERO
        };
        async move {
            tokio::time::sleep(delay).await;
            let user = 1000 + u;
            let mut overheads = Vec::new();
            let mut admissions = Vec::new();
            for k in 0..shape.messages {
                let text = format!("u{user}m{k}");
                let answer = FakeOpenAi::load_answer(&text, TOKENS);
                let pushed = Instant::now();
                match bot {
                    Bot::One { .. } => {
                        tg.push_message(private_chat(user), user_json(user, "U"), &text, None);
                    }
                    Bot::Fleet(fleet) => fleet.send(user, &text).await,
                }
                let deadline = Instant::now() + Duration::from_secs(120);
                let seen = loop {
                    if let Some(at) = tg.final_seen(user, &answer) {
                        break Some(at);
                    }
                    if Instant::now() > deadline {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                };
                let Some(seen) = seen else { break };
                if let Some(last) = openai.last_token_at(&text) {
                    overheads.push(seen.saturating_duration_since(last));
                }
                if let Some(arrived) = openai.arrived_at(&text) {
                    admissions.push(arrived.saturating_duration_since(pushed));
                }
                tokio::time::sleep(THINK).await;
            }
            (overheads, admissions)
        }
    });
    let (overheads, admissions): (Vec<_>, Vec<_>) =
        futures::future::join_all(runs).await.into_iter().unzip();
    let mut overheads: Vec<Duration> = overheads.into_iter().flatten().collect();
    let mut admissions: Vec<Duration> = admissions.into_iter().flatten().collect();
    let elapsed = started.elapsed();
    let cpu = cpu_time(&pids).saturating_sub(cpu_before);
    let switches = context_switches(&pids).saturating_sub(switches_before);
    let rss = peak_rss_mib(&pids);

    overheads.sort();
    admissions.sort();
    let expected = shape.users as usize * shape.messages;
    let replies = overheads.len();
    let writes: usize = (0..shape.users)
        .map(|u| tg.delivered_to(1000 + u).len())
        .sum();
    println!("{}", shape.name);
    println!(
        "  replies completed    {replies} / {expected} in {:.1} s",
        elapsed.as_secs_f64()
    );
    println!("  429s received        {}", tg.flood_refusals().len());
    println!(
        "  writes per reply     {:.2}",
        writes as f64 / replies.max(1) as f64
    );
    println!(
        "  overhead p50 / p99   {:.1} / {:.1} ms (max {:.1})",
        percentile(&overheads, 0.50),
        percentile(&overheads, 0.99),
        overheads
            .last()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    );
    println!(
        "  to the model p50/p99 {:.1} / {:.1} ms (message sent -> model request; max {:.1})",
        percentile(&admissions, 0.50),
        percentile(&admissions, 0.99),
        admissions
            .last()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    );
    println!(
        "  bot CPU per message  {:.2} ms (idle: {:.1} ms/s)",
        cpu.as_secs_f64() * 1000.0 / replies.max(1) as f64,
        idle.as_secs_f64() * 1000.0 / 5.0
    );
    println!(
        "  context switches     {:.0} per message",
        switches as f64 / replies.max(1) as f64
    );
    println!("  bot peak RSS         {rss:.1} MiB (at start {rss_at_start:.1})");
    if tools {
        let mut gaps = openai.tool_gaps();
        gaps.sort();
        println!(
            "  tool round trip      p50 / p99 {:.1} / {:.1} ms ({} calls; search included)",
            percentile(&gaps, 0.50),
            percentile(&gaps, 0.99),
            gaps.len()
        );
    }
}

/// The process's resident memory now, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Shape w: what an answer waiting in line for a model call costs. One model call at a
/// time (`limits.max_concurrent_answers = 1`) that takes a minute; `users` users each ask
/// once; the bot's memory once they all wait, less before, per waiting answer.
async fn waiting_answers(users: i64) {
    let tg = FakeTelegram::start().await;
    let openai = FakeOpenAi::start().await;
    openai.set_load_model(LoadModel {
        first: Duration::from_secs(60),
        tokens: TOKENS,
        per_token: Duration::from_millis(20),
        tool_first: false,
    });
    let settings = [
        ("GPTBOT__LIMITS__PER_USER_PER_MINUTE", "0".to_string()),
        ("GPTBOT__LIMITS__MAX_CONCURRENT_ANSWERS", "1".to_string()),
        ("GPTBOT__HTTP__LISTEN", "127.0.0.1:0".to_string()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ];
    let (mut child, _dir) = polling_bot(&tg, &openai, &settings).await;
    let pid = child.id().unwrap();
    // Warmed up: one answer in flight (the model's minute), then the baseline.
    tg.push_message(private_chat(1), user_json(1, "U"), "first", None);
    while openai.request_count() < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_mib(pid);
    for u in 2..=users + 1 {
        tg.push_message(private_chat(u), user_json(u, "U"), "waiting", None);
    }
    // Every waiting answer shows "typing…" once in line.
    tg.wait_until(60, "every answer waiting in line", |calls| {
        let chats: std::collections::HashSet<&serde_json::Value> = calls
            .iter()
            .filter(|c| c.method == "sendchataction")
            .map(|c| &c.body["chat_id"])
            .collect();
        chats.len() as i64 > users
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rss_mib(pid);
    let _ = child.kill().await;
    println!("w: {users} answers waiting in line for a model call");
    println!(
        "  bot RSS              {before:.1} MiB before, {during:.1} MiB with them waiting: {:.1} KiB per waiting answer ({} model request made)",
        (during - before) * 1024.0 / users as f64,
        openai.request_count()
    );
}

#[tokio::main]
async fn main() {
    let only = std::env::var("BENCH_SHAPES").ok();
    if let Some(users) = std::env::var("BENCH_WAITING")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        waiting_answers(users).await;
        return;
    }
    for shape in SHAPES {
        let key = &shape.name[..1];
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|s| s.trim() == key))
        {
            continue;
        }
        run_shape(shape).await;
    }
}
