//! The quota ledger under test: a fresh migrated database on SQLite or on a real
//! PostgreSQL (`both!` runs a test body on each), a clock the test moves, and the books
//! check every money test ends with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use gptbot::core::event::UserId;
use gptbot::db::Db;
use gptbot::quota::{Clock, LedgerEntry, QuotaPlan, QuotaService};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    pub static BACKEND: Backend;
}

/// Keeps the database alive for the test.
pub enum Guard {
    Dir(tempfile::TempDir),
    Pg(super::postgres::PostgresServer),
}

/// A fresh database on the backend the test runs on: its URL and what keeps it alive.
pub async fn database() -> (String, Guard) {
    match BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite) {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("quota.db").display());
            (url, Guard::Dir(dir))
        }
        Backend::Postgres => {
            let pg = super::postgres::PostgresServer::start();
            let url = pg.database("quota").await;
            (url, Guard::Pg(pg))
        }
    }
}

/// A ledger on `url` (migrated), as one process would open it.
pub async fn ledger_on(url: &str, plan: QuotaPlan, busy_timeout: Duration) -> QuotaService {
    let db = Db::connect_with(url, 8, busy_timeout).await.unwrap();
    db.migrate().await.unwrap();
    QuotaService::new(db, plan)
}

/// The ledger a `gptbot` process was configured with by `env` (its database, migrated,
/// and its plan), opened again by the test — after the process exited, or beside it.
pub async fn ledger_of(env: &std::collections::HashMap<String, String>) -> QuotaService {
    let settings = gptbot::config::Settings::load(None, env).unwrap();
    let db = gptbot::app::open_db(&settings).await.unwrap();
    gptbot::app::quota_service(&db, &settings)
}

/// A fresh, migrated ledger on the backend the test runs on.
pub async fn open(plan: QuotaPlan) -> (QuotaService, Guard) {
    let (url, guard) = database().await;
    (ledger_on(&url, plan, Duration::from_secs(5)).await, guard)
}

pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(
            Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap(),
        )))
    }
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += chrono::Duration::from_std(by).unwrap();
    }
    pub fn advance_days(&self, days: i64) {
        *self.0.lock().unwrap() += chrono::Duration::days(days);
    }
    pub fn set(&self, y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) {
        *self.0.lock().unwrap() = Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The books are exact for `u`: `granted = remaining + reserved + used`, the ledger's
/// entries sum to the stored buckets and its last entry carries the current balance,
/// and the open holds add up to what is reserved.
pub async fn assert_books(quota: &QuotaService, u: &UserId) {
    let b = quota.balance(u).await.unwrap();
    assert_eq!(
        b.granted,
        b.remaining + b.reserved + b.used,
        "granted = remaining + reserved + used for {u}"
    );
    let entries = quota.history(u, 1_000_000).await.unwrap();
    let sum = |f: fn(&LedgerEntry) -> i64| entries.iter().map(f).sum::<i64>();
    assert_eq!(sum(|e| e.d_granted), b.granted, "ledger: granted of {u}");
    assert_eq!(
        sum(|e| e.d_remaining),
        b.remaining,
        "ledger: remaining of {u}"
    );
    assert_eq!(sum(|e| e.d_reserved), b.reserved, "ledger: reserved of {u}");
    assert_eq!(sum(|e| e.d_used), b.used, "ledger: used of {u}");
    assert_eq!(entries.last().unwrap().remaining, b.remaining);
    let held: i64 = quota
        .holds()
        .await
        .unwrap()
        .iter()
        .filter(|h| h.platform == u.platform.as_str() && h.user_id == u.user)
        .map(|h| h.amount)
        .sum();
    assert_eq!(held, b.reserved, "open holds of {u} = reserved");
}

/// Runs each named test body (an `async fn` of the test file) on SQLite and on
/// PostgreSQL.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    $crate::common::ledger::BACKEND
                        .scope($crate::common::ledger::Backend::Sqlite, super::$name())
                        .await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    $crate::common::ledger::BACKEND
                        .scope($crate::common::ledger::Backend::Postgres, super::$name())
                        .await
                }
            )*
        }
    };
}

/// Waits (up to 5 s) until `user` has `n` settled requests and returns the balance: the
/// final text is delivered while the books are written, so a settle may land just after
/// the reply is seen.
pub async fn settled(quota: &QuotaService, user: &UserId, n: i64) -> gptbot::quota::Balance {
    for _ in 0..250 {
        let balance = quota.balance(user).await.unwrap();
        if balance.requests >= n {
            return balance;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    quota.balance(user).await.unwrap()
}

/// Waits (up to 5 s) until the conversation `key` holds `n` history turns and returns
/// them: the final text is delivered while the turn is recorded, so it may land just
/// after the reply (and the settlement) is seen.
pub async fn recorded(
    sessions: &std::sync::Arc<dyn gptbot::core::session::SessionStore>,
    key: &gptbot::core::event::SessionKey,
    n: usize,
) -> Vec<gptbot::core::session::Turn> {
    for _ in 0..250 {
        let turns = sessions.load(key).await.unwrap().turns;
        if turns.len() >= n {
            return turns;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sessions.load(key).await.unwrap().turns
}
