-- Names of removed web accounts. Sign-up refuses them: the quota account web:<name>,
-- its ledger and its history stay behind, and a stranger taking the name would inherit
-- them. `gptbot web user remove --forget <name>` frees a name.
CREATE TABLE web_users_retired (
    username   TEXT PRIMARY KEY NOT NULL,
    removed_at BIGINT NOT NULL
);

-- Accounts removed before this table existed left their balance behind.
INSERT INTO web_users_retired (username, removed_at)
SELECT user_id, 0 FROM quota_accounts
WHERE platform = 'web' AND user_id NOT IN (SELECT username FROM web_users);
