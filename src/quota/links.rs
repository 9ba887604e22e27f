//! `/link`: a person's identity on one platform draws on their account on another.
//!
//! Linking moves no tokens. A linked identity pays from its own balance first; when that
//! is too low for a request, the account it is linked to pays (the owner of that account
//! consented by creating the code, and is told when it is used). Unlinking moves nothing
//! either, so no sequence of `/link` and `/unlink` moves tokens from one person to
//! another: every account leaves with what it had, less what was charged to it.

use anyhow::Context;

use super::{QuotaError, QuotaService};
use crate::core::event::{Platform, UserId};

impl QuotaService {
    /// The account `user` draws on when its own balance is too low, if it is linked.
    pub async fn linked_to(&self, user: &UserId) -> Result<Option<UserId>, QuotaError> {
        if let Some(to) = self.links.get(user) {
            return Ok(to);
        }
        let row: Option<(String, String)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .fetch_optional(pool)
                .await,
            "SELECT to_platform, to_user_id FROM quota_links WHERE platform = ?1 AND user_id = ?2"
        )
        .with_context(|| format!("reading the link of {user}"))?;
        let to = match row {
            Some((platform, id)) => Some(UserId::new(
                Platform::parse(&platform).ok_or_else(|| {
                    anyhow::anyhow!("unknown platform `{platform}` in quota_links")
                })?,
                id,
            )),
            None => None,
        };
        self.links.insert(user.clone(), to.clone());
        Ok(to)
    }

    /// Lets `from` draw on `to`'s balance when its own is too low. Only across
    /// platforms, one level deep (an account others draw on cannot itself be linked).
    pub async fn link(&self, from: &UserId, to: &UserId) -> Result<(), QuotaError> {
        if from.platform == to.platform {
            return Err(QuotaError::Invalid(
                "a link joins accounts on different platforms".into(),
            ));
        }
        if self.linked_to(from).await?.is_some() {
            return Err(QuotaError::Invalid(format!(
                "{from} is already linked; send /unlink there first"
            )));
        }
        if self.linked_to(to).await?.is_some() {
            return Err(QuotaError::Invalid(format!(
                "{to} is itself linked to another account; create the code on that one"
            )));
        }
        let (others,): (i64,) = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(from.platform.as_str())
                .bind(&from.user)
                .fetch_one(pool)
                .await,
            "SELECT COUNT(*) FROM quota_links WHERE to_platform = ?1 AND to_user_id = ?2"
        )
        .context("checking links")?;
        if others > 0 {
            return Err(QuotaError::Invalid(format!(
                "other accounts draw on {from}; send /link from {to} instead"
            )));
        }
        self.ensure_account(from).await?;
        self.ensure_account(to).await?;
        // The primary key makes a concurrent second link of `from` fail here.
        crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(from.platform.as_str())
                .bind(&from.user)
                .bind(to.platform.as_str())
                .bind(&to.user)
                .bind(self.now())
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            "INSERT INTO quota_links (platform, user_id, to_platform, to_user_id, linked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)"
        )
        .with_context(|| format!("recording the link of {from} to {to}"))?;
        self.links.invalidate(from);
        Ok(())
    }

    /// The identity on `platform` that shares a balance with `user`, either way round
    /// (it draws on `user`'s, or `user` draws on its).
    pub async fn partner_on(
        &self,
        user: &UserId,
        platform: Platform,
    ) -> Result<Option<UserId>, QuotaError> {
        if let Some(to) = self.linked_to(user).await?
            && to.platform == platform
        {
            return Ok(Some(to));
        }
        let row: Option<(String,)> = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query_as(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .bind(platform.as_str())
                .fetch_optional(pool)
                .await,
            "SELECT user_id FROM quota_links \
             WHERE to_platform = ?1 AND to_user_id = ?2 AND platform = ?3 LIMIT 1"
        )
        .with_context(|| format!("reading who draws on {user}"))?;
        Ok(row.map(|(id,)| UserId::new(platform, id)))
    }

    /// Ends every link `user` is part of; no balance changes.
    pub async fn unlink(&self, user: &UserId) -> Result<u64, QuotaError> {
        let done = crate::on_db!(
            &self.db,
            |pool, sql| sqlx::query(sql)
                .bind(user.platform.as_str())
                .bind(&user.user)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            "DELETE FROM quota_links WHERE (platform = ?1 AND user_id = ?2) \
             OR (to_platform = ?1 AND to_user_id = ?2)"
        )
        .with_context(|| format!("unlinking {user}"))?;
        self.links.invalidate_all();
        Ok(done)
    }
}
