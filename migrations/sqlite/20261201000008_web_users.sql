-- Accounts of the web front: a username (the quota user is web:<username>) and its
-- argon2id password hash in PHC string form; the password itself is never stored.
CREATE TABLE web_users (
    username      TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
