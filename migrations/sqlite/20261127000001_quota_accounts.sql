-- One row per user (platform-qualified). Tokens move between three buckets and their sum
-- is always what was granted: remaining (spendable), reserved (held for calls in flight),
-- used (spent). The CHECKs make the database itself refuse any write that breaks this.
CREATE TABLE quota_accounts (
    platform   TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    granted    INTEGER NOT NULL CHECK (granted >= 0),
    remaining  INTEGER NOT NULL CHECK (remaining >= 0),
    reserved   INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    requests   INTEGER NOT NULL DEFAULT 0,
    -- What the latest settlement charged (returned by the settling UPDATE).
    last_charge INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (platform, user_id),
    CHECK (granted = remaining + reserved + used)
);
