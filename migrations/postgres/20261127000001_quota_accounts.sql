-- PostgreSQL twin of migrations/sqlite (same tables, same columns, same rules), for
-- several replicas sharing one ledger.
CREATE TABLE quota_accounts (
    platform    TEXT   NOT NULL,
    user_id     TEXT   NOT NULL,
    granted     BIGINT NOT NULL CHECK (granted >= 0),
    remaining   BIGINT NOT NULL CHECK (remaining >= 0),
    reserved    BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    used        BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),
    requests    BIGINT NOT NULL DEFAULT 0,
    last_charge BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (platform, user_id),
    CHECK (granted = remaining + reserved + used)
);
