//! Who may use the bot: admins (`access.admins`), open or allowlist mode, configured
//! allowed users and groups, and the `/allow` / `/deny` decisions admins make at run
//! time (stored in `access_rules`, so they survive restarts and reach every replica).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::config::{AccessMode, AccessSettings};
use crate::core::event::{Platform, UserId};
use crate::db::Db;

/// The access rules could not be read or written; the database error is the source.
#[derive(Debug, thiserror::Error)]
#[error("access rules database error")]
pub struct AccessError(#[source] anyhow::Error);

/// How long rules read from the database are trusted before being read again (another
/// replica may have changed them).
const RULES_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admin,
    Allowed,
    Denied,
}

/// The rule subject for a group: `group:telegram:-100…` or `group:discord:<guild>`.
pub fn group_subject(platform: Platform, group: &str) -> String {
    format!("group:{platform}:{group}")
}

/// The stored rules by subject, as loaded.
type Rules = Arc<HashMap<String, bool>>;

pub struct AccessService {
    db: Db,
    admins: HashSet<String>,
    mode: AccessMode,
    users: HashSet<String>,
    groups: HashSet<String>,
    /// Shared, not copied, by each message's checks (access, then tools).
    rules: RwLock<Option<(Instant, Rules)>>,
    /// `tools.access = "allowed"`: tools only for admins and subjects allowed them.
    tools_by_rule: bool,
}

impl AccessService {
    /// `settings` were validated at load time.
    pub fn new(db: Db, settings: &AccessSettings) -> AccessService {
        AccessService {
            db,
            admins: settings.admins.iter().cloned().collect(),
            mode: settings.mode,
            users: settings.users.iter().cloned().collect(),
            groups: settings
                .chats
                .iter()
                .map(|c| format!("group:{c}"))
                .collect(),
            rules: RwLock::new(None),
            tools_by_rule: false,
        }
    }

    /// Tools only for admins and the users or groups allowed them (`/allow tools:…`).
    pub fn with_tools_by_rule(mut self, by_rule: bool) -> AccessService {
        self.tools_by_rule = by_rule;
        self
    }

    /// Whether `user`'s answers (in `group`, if any) may call tools: a `tools:` rule for
    /// the user, else for the group, else everyone but with `tools.access = "allowed"`.
    pub async fn may_use_tools(
        &self,
        user: &UserId,
        group: Option<&str>,
    ) -> Result<bool, AccessError> {
        if self.is_admin(user) {
            return Ok(true);
        }
        let rules = self.rules().await?;
        if let Some(&allowed) = rules.get(&format!("tools:{user}")) {
            return Ok(allowed);
        }
        if let Some(group) = group
            && let Some(&allowed) =
                rules.get(&format!("tools:{}", group_subject(user.platform, group)))
        {
            return Ok(allowed);
        }
        Ok(!self.tools_by_rule)
    }

    pub fn is_admin(&self, user: &UserId) -> bool {
        self.admins.contains(&user.to_string())
    }

    /// The configured admins of one platform (their ids without the prefix).
    pub fn admins_on(&self, platform: Platform) -> Vec<String> {
        let prefix = format!("{platform}:");
        let mut ids: Vec<String> = self
            .admins
            .iter()
            .filter_map(|a| a.strip_prefix(&prefix).map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    async fn rules(&self) -> Result<Rules, AccessError> {
        if let Some((loaded, rules)) = &*self.rules.read().unwrap_or_else(|p| p.into_inner())
            && loaded.elapsed() < RULES_TTL
        {
            return Ok(rules.clone());
        }
        let rows: Vec<(String, bool)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).fetch_all(pool).await,
            "SELECT subject, allowed FROM access_rules"
        )
        .context("reading access rules")
        .map_err(AccessError)?;
        let rules: Rules = Arc::new(rows.into_iter().collect());
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), rules.clone()));
        Ok(rules)
    }

    /// Whether `user` (writing in `group`, if any) may use the bot.
    pub async fn decide(
        &self,
        user: &UserId,
        group: Option<&str>,
    ) -> Result<Decision, AccessError> {
        if self.is_admin(user) {
            return Ok(Decision::Admin);
        }
        let rules = self.rules().await?;
        let group = group.map(|g| group_subject(user.platform, g));
        match rules.get(&user.to_string()) {
            Some(false) => return Ok(Decision::Denied),
            Some(true) => return Ok(Decision::Allowed),
            None => {}
        }
        if let Some(group) = &group {
            match rules.get(group) {
                Some(false) => return Ok(Decision::Denied),
                Some(true) => return Ok(Decision::Allowed),
                None => {}
            }
        }
        let listed = self.users.contains(&user.to_string())
            || group.as_ref().is_some_and(|g| self.groups.contains(g));
        Ok(match (self.mode, listed) {
            (AccessMode::Open, _) | (AccessMode::Allowlist, true) => Decision::Allowed,
            (AccessMode::Allowlist, false) => Decision::Denied,
        })
    }

    /// Whether `user` is spoken of by the configuration (an admin, a listed user) or
    /// by a stored rule: such a name carries rights (or a ban) a newcomer must not get.
    pub async fn names(&self, user: &UserId) -> Result<bool, AccessError> {
        let subject = user.to_string();
        if self.admins.contains(&subject) || self.users.contains(&subject) {
            return Ok(true);
        }
        Ok(self.rules().await?.contains_key(&subject))
    }

    /// Records an admin's `/allow` or `/deny` of a user or group subject.
    pub async fn set_rule(
        &self,
        subject: &str,
        allowed: bool,
        by: &str,
    ) -> Result<(), AccessError> {
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
        .bind(subject)
        .bind(allowed)
        .bind(by)
        .bind(chrono::Utc::now().timestamp())
        .execute(pool).await.map(|r| crate::db::Done(r.rows_affected())),
            "INSERT INTO access_rules (subject, allowed, by_admin, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (subject) DO UPDATE SET allowed = ?2, by_admin = ?3, updated_at = ?4"
        )
        .with_context(|| format!("saving the access rule for {subject}"))
        .map_err(AccessError)?;
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// Every stored rule, sorted by subject.
    pub async fn list_rules(&self) -> Result<Vec<(String, bool, String)>, AccessError> {
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql).fetch_all(pool).await,
            "SELECT subject, allowed, by_admin FROM access_rules ORDER BY subject"
        )
        .context("reading access rules")
        .map_err(AccessError)
    }
}
