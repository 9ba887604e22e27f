-- Per-user plan overrides, refill bookkeeping, and a ledger of every balance change.
--
-- Each UPDATE of quota_accounts names what it does in last_op; a trigger then writes the
-- change of every bucket to quota_ledger in the same statement, so the ledger cannot miss
-- a change and sums back to the account row exactly.

ALTER TABLE quota_accounts ADD COLUMN unlimited INTEGER NOT NULL DEFAULT 0;
-- The user's own refill amount (NULL: the configured quota.refill_tokens).
ALTER TABLE quota_accounts ADD COLUMN refill_tokens INTEGER CHECK (refill_tokens >= 0);
-- The refill period ("2026-11-27", "2026-W48", "2026-11") last applied.
ALTER TABLE quota_accounts ADD COLUMN refilled_period TEXT;
ALTER TABLE quota_accounts ADD COLUMN last_op TEXT NOT NULL DEFAULT 'grant';

CREATE TABLE quota_ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    platform    TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    -- grant | reserve | settle | refund | refill | adjust
    kind        TEXT    NOT NULL,
    d_granted   INTEGER NOT NULL,
    d_remaining INTEGER NOT NULL,
    d_reserved  INTEGER NOT NULL,
    d_used      INTEGER NOT NULL,
    -- The remaining balance after this entry.
    remaining   INTEGER NOT NULL
);
CREATE INDEX quota_ledger_by_user ON quota_ledger (platform, user_id, id);

-- Accounts that existed before the ledger start with one entry holding their state.
INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining)
SELECT platform, user_id, updated_at, 'grant', granted, remaining, reserved, used, remaining
FROM quota_accounts;

CREATE TRIGGER quota_ledger_on_insert AFTER INSERT ON quota_accounts
BEGIN
    INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining)
    VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
            NEW.granted, NEW.remaining, NEW.reserved, NEW.used, NEW.remaining);
END;

CREATE TRIGGER quota_ledger_on_update AFTER UPDATE ON quota_accounts
WHEN NEW.granted <> OLD.granted OR NEW.remaining <> OLD.remaining
  OR NEW.reserved <> OLD.reserved OR NEW.used <> OLD.used
BEGIN
    INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining)
    VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
            NEW.granted - OLD.granted, NEW.remaining - OLD.remaining,
            NEW.reserved - OLD.reserved, NEW.used - OLD.used, NEW.remaining);
END;
