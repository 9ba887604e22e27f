//! The quota database: SQLite (one process, the default) or PostgreSQL (several
//! replicas). Queries are written once in SQLite's dialect (`?1` parameters, scalar
//! `MIN`/`MAX`) and translated for PostgreSQL (`$1`, `LEAST`/`GREATEST`); the schema is
//! kept twice, in `migrations/sqlite` and `migrations/postgres`.

use sqlx::{PgPool, SqlitePool};

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// The SQLite pool, for SQLite-only checks (tests, PRAGMAs).
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite(pool) => Some(pool),
            Db::Postgres(_) => None,
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
