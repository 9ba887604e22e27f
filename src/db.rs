//! The database: SQLite (one process, the default) or PostgreSQL (several replicas).
//! This module owns the pool and the migrations and hands the pool to the quota ledger
//! and to access control. Queries are written once in SQLite's dialect (`?1`
//! parameters, scalar `MIN`/`MAX`) and translated for PostgreSQL (`$1`,
//! `LEAST`/`GREATEST`); the schema is kept twice, in `migrations/sqlite` and
//! `migrations/postgres`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::redact_url_str;

/// Why the database could not be opened or migrated; the driver's error is the source.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database.url `{0}`")]
    Url(String, #[source] sqlx::Error),
    #[error("cannot open the database `{0}`")]
    Connect(String, #[source] sqlx::Error),
    #[error("running database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    /// Opens the database: a `postgres://` URL for several replicas, otherwise a SQLite
    /// file (created if missing) in WAL mode with a busy timeout. Migrations are not run
    /// here; see [`Db::migrate`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        Db::connect_with(url, max_connections, Duration::from_secs(5)).await
    }

    /// [`Db::connect`] with SQLite's busy timeout: how long a statement waits for
    /// another connection's write lock before failing (`database.busy_timeout`).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
    ) -> Result<Db, DbError> {
        let shown = redact_url_str(url);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(|e| DbError::Connect(shown, e))?;
            return Ok(Db::Postgres(pool));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| DbError::Url(shown.clone(), e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            // A ping before every checkout would double the round trips to SQLite's thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| DbError::Connect(shown, e))?;
        Ok(Db::Sqlite(pool))
    }

    /// Creates or updates the schema.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
        .map_err(DbError::Migrate)
    }

    /// Whether the database answers now (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Starts a transaction: statements in it see each other and commit together.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// The SQLite pool, for SQLite-only checks (tests, PRAGMAs).
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite(pool) => Some(pool),
            Db::Postgres(_) => None,
        }
    }
}

/// A transaction on either database; dropped without [`Tx::commit`] it rolls back.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Rows a statement changed, whichever database ran it.
#[derive(Debug, Clone, Copy)]
pub struct Done(pub u64);

impl Done {
    pub fn rows_affected(&self) -> u64 {
        self.0
    }
}

/// Translates a statement from the SQLite dialect used in this crate to PostgreSQL's.
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out.replace("MIN(", "LEAST(").replace("MAX(", "GREATEST(")
}

/// Runs `$body` with `$pool` bound to the right pool and `$sql` to the statement in that
/// database's dialect.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$pool:ident, $sql:ident| $body:expr, $text:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => {
                let $sql: &'static str = $text;
                $body
            }
            $crate::db::Db::Postgres($pool) => {
                // Built from this crate's own constant text, never from input.
                let $sql = sqlx::AssertSqlSafe($crate::db::pg_sql($text));
                $body
            }
        }
    };
}

/// [`on_db!`] inside a transaction: `$conn` is the transaction's connection.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$conn:ident, $sql:ident| $body:expr, $text:expr) => {
        match $tx {
            $crate::db::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                let $sql: &'static str = $text;
                $body
            }
            $crate::db::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                // Built from this crate's own constant text, never from input.
                let $sql = sqlx::AssertSqlSafe($crate::db::pg_sql($text));
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_translate_to_postgres() {
        assert_eq!(
            pg_sql("UPDATE t SET a = MIN(?1, ?2 + b), c = MAX(0, ?10) WHERE d = ?1 AND e = '?'"),
            "UPDATE t SET a = LEAST($1, $2 + b), c = GREATEST(0, $10) WHERE d = $1 AND e = '?'"
        );
    }
}
