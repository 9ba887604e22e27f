//! Web accounts: usernames with argon2id password hashes, kept in the quota database
//! (`web_users`). `gptbot web user …` manages them; the web front's login checks them.
//! A password is only ever held as long as hashing or checking it takes.

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};

use crate::db::Db;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A username or password that cannot be used; the text says why.
    #[error("{0}")]
    Invalid(String),
    #[error("a web user named {0} already exists")]
    Exists(String),
    #[error("there is no web user named {0}")]
    Unknown(String),
    /// The name belongs to someone else: a configured admin or user, an access rule, or
    /// an account that was removed (its balance and history stay with the name).
    #[error("the name {0} is taken; please choose another")]
    Taken(String),
    /// Every password check slot is busy (a flood of logins).
    #[error("the server is busy checking passwords; please try again in a few seconds")]
    Busy,
    #[error("the accounts database failed")]
    Db(#[source] anyhow::Error),
}

/// Shortest password accepted (NIST SP 800-63B's minimum for user-chosen secrets).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password hashed: beyond this is surely not a password, and hashing is costly.
const MAX_PASSWORD_BYTES: usize = 1024;

/// A username: 1–32 of `a-z 0-9 _ . -`, case-folded, so `web:<name>` is one clear id.
pub fn username(raw: &str) -> Result<String, AccountError> {
    let name = raw.trim().to_ascii_lowercase();
    let fine = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if fine {
        Ok(name)
    } else {
        Err(AccountError::Invalid(
            "a username is 1 to 32 letters, digits, `_`, `.` or `-`".into(),
        ))
    }
}

fn check_password(password: &SecretString) -> Result<(), AccountError> {
    let p = password.expose_secret();
    if p.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Invalid("that password is too long".into()));
    }
    Ok(())
}

/// Password hashes computed at once, process-wide: one per core. Each takes 19 MiB and
/// tens of milliseconds, so a flood of logins from many addresses queues here instead
/// of taking every core and hundreds of MiB.
fn hashing() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// How long an attempt waits for a hashing slot before it is told the server is busy.
const HASH_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn hash_permit() -> Result<tokio::sync::SemaphorePermit<'static>, AccountError> {
    match tokio::time::timeout(HASH_QUEUE_WAIT, hashing().acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(AccountError::Busy),
    }
}

/// argon2id with the crate's defaults (OWASP's recommended 19 MiB, 2 passes), off the
/// async threads: it is meant to be slow.
async fn hash(password: SecretString) -> Result<String, AccountError> {
    let _permit = hash_permit().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Db(anyhow::anyhow!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| AccountError::Db(anyhow::Error::new(e).context("the hashing task")))?
}

async fn verify(stored: String, password: SecretString) -> Result<bool, AccountError> {
    let _permit = hash_permit().await?;
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false))
}

/// The web front's accounts.
#[derive(Clone)]
pub struct WebAccounts {
    db: Db,
    /// Checked for unknown usernames, so they take as long as a wrong password.
    decoy: std::sync::Arc<tokio::sync::OnceCell<String>>,
}

impl WebAccounts {
    pub fn new(db: Db) -> WebAccounts {
        WebAccounts {
            db,
            decoy: Default::default(),
        }
    }

    /// Makes the decoy hash now, so the first failed login is not slower than the rest.
    pub async fn warm(&self) {
        if let Err(e) = self.decoy().await {
            tracing::warn!(error = %e, "could not prepare the login decoy hash");
        }
    }

    async fn decoy(&self) -> Result<String, AccountError> {
        self.decoy
            .get_or_try_init(|| hash(SecretString::from("decoy password, never used")))
            .await
            .cloned()
    }

    /// Creates an account; returns its name, case-folded, and its
    /// [`WebAccounts::version`].
    pub async fn add(
        &self,
        name: &str,
        password: &SecretString,
    ) -> Result<(String, i64), AccountError> {
        let name = username(name)?;
        check_password(password)?;
        let hashed = hash(password.clone()).await?;
        let now = chrono::Utc::now();
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(&name)
                .bind(&hashed)
                .bind(now.timestamp())
                .bind(now.timestamp_millis())
                .execute(pool)
                .await
                .map(|r| crate::db::Done(r.rows_affected())),
            "INSERT INTO web_users (username, password_hash, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (username) DO NOTHING"
        )
        .context("adding a web user")
        .map_err(AccountError::Db)?;
        if done.0 == 0 {
            return Err(AccountError::Exists(name));
        }
        Ok((name, now.timestamp_millis()))
    }

    /// Sets a new password.
    pub async fn set_password(
        &self,
        name: &str,
        password: &SecretString,
    ) -> Result<(), AccountError> {
        let name = username(name)?;
        check_password(password)?;
        let hashed = hash(password.clone()).await?;
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(&hashed)
                .bind(chrono::Utc::now().timestamp_millis())
                .bind(&name)
                .execute(pool)
                .await
                .map(|r| crate::db::Done(r.rows_affected())),
            "UPDATE web_users SET password_hash = ?1, updated_at = ?2 WHERE username = ?3"
        )
        .context("changing a web user's password")
        .map_err(AccountError::Db)?;
        if done.0 == 0 {
            return Err(AccountError::Unknown(name));
        }
        Ok(())
    }

    /// A visitor's own account (`/signup`): as [`Self::add`], but a name that belonged
    /// to a removed account stays refused (it would inherit its balance and history)
    /// until an operator frees it with `gptbot web user remove --forget`.
    pub async fn sign_up(
        &self,
        name: &str,
        password: &SecretString,
    ) -> Result<(String, i64), AccountError> {
        let name = username(name)?;
        if self.retired(&name).await? {
            return Err(AccountError::Taken(name));
        }
        self.add(&name, password).await
    }

    /// Whether `name` belonged to an account that was removed and not forgotten.
    pub async fn retired(&self, name: &str) -> Result<bool, AccountError> {
        let row: Option<(String,)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).bind(name).fetch_optional(pool).await,
            "SELECT username FROM web_users_retired WHERE username = ?1"
        )
        .context("reading retired web user names")
        .map_err(AccountError::Db)?;
        Ok(row.is_some())
    }

    /// Deletes an account (its quota account and ledger stay, for the books). Its name
    /// is retired — sign-up refuses it — unless `forget`, which frees the name (of an
    /// account, or one removed before): whoever takes it next inherits its balance.
    pub async fn remove(&self, name: &str, forget: bool) -> Result<(), AccountError> {
        let name = username(name)?;
        let retired = if forget {
            crate::on_db!(
                &self.db,
                |pool, sql| sqlx::query(sql)
                    .bind(&name)
                    .execute(pool)
                    .await
                    .map(|r| crate::db::Done(r.rows_affected())),
                "DELETE FROM web_users_retired WHERE username = ?1"
            )
        } else {
            crate::on_db!(
                &self.db,
                |pool, sql| sqlx::query(sql)
                    .bind(&name)
                    .bind(chrono::Utc::now().timestamp())
                    .execute(pool)
                    .await
                    .map(|r| crate::db::Done(r.rows_affected())),
                "INSERT INTO web_users_retired (username, removed_at) \
                 SELECT username, ?2 FROM web_users WHERE username = ?1 \
                 ON CONFLICT (username) DO NOTHING"
            )
        }
        .context("retiring a web user's name")
        .map_err(AccountError::Db)?;
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(&name)
                .execute(pool)
                .await
                .map(|r| crate::db::Done(r.rows_affected())),
            "DELETE FROM web_users WHERE username = ?1"
        )
        .context("removing a web user")
        .map_err(AccountError::Db)?;
        if done.0 == 0 && !(forget && retired.0 > 0) {
            return Err(AccountError::Unknown(name));
        }
        Ok(())
    }

    /// Every account: name and when it was created (Unix seconds), by name.
    pub async fn list(&self) -> Result<Vec<(String, i64)>, AccountError> {
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).fetch_all(pool).await,
            "SELECT username, created_at FROM web_users ORDER BY username"
        )
        .context("listing web users")
        .map_err(AccountError::Db)
    }

    /// When the account last changed (its password; Unix milliseconds), or `None` when
    /// it is gone: a login session remembers it, so removing an account or changing its
    /// password ends the sessions opened before.
    pub async fn version(&self, name: &str) -> Result<Option<i64>, AccountError> {
        let row: Option<(i64,)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).bind(name).fetch_optional(pool).await,
            "SELECT updated_at FROM web_users WHERE username = ?1"
        )
        .context("reading a web user")
        .map_err(AccountError::Db)?;
        Ok(row.map(|(at,)| at))
    }

    /// The account's name (and [`WebAccounts::version`]) when `password` is right. An unknown name is checked against
    /// a decoy hash, so both failures take the same time.
    pub async fn login(
        &self,
        name: &str,
        password: &SecretString,
    ) -> Result<Option<(String, i64)>, AccountError> {
        let name = username(name).unwrap_or_default();
        let stored: Option<(String, i64)> = if name.is_empty() {
            None
        } else {
            crate::on_db!(
                &self.db,
                |pool, sql| sqlx::query_as(sql).bind(&name).fetch_optional(pool).await,
                "SELECT password_hash, updated_at FROM web_users WHERE username = ?1"
            )
            .context("reading a web user")
            .map_err(AccountError::Db)?
        };
        let fits = password.expose_secret().len() <= MAX_PASSWORD_BYTES;
        match stored {
            Some((stored, version)) if fits => Ok(verify(stored, password.clone())
                .await?
                .then_some((name, version))),
            _ => {
                verify(self.decoy().await?, SecretString::from("not the decoy")).await?;
                Ok(None)
            }
        }
    }
}
