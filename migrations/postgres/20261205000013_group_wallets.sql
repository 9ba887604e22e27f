-- PostgreSQL twin of migrations/sqlite/20261205000013_group_wallets.sql: group wallets,
-- the member each wallet hold is for, and ledger notes for tokens moved into a wallet.

CREATE TABLE group_wallets (
    platform     TEXT   NOT NULL,
    wallet       TEXT   NOT NULL,
    member_limit BIGINT NOT NULL DEFAULT 0 CHECK (member_limit >= 0),
    when_empty   TEXT   NOT NULL DEFAULT 'own' CHECK (when_empty IN ('own', 'refuse')),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (platform, wallet)
);

ALTER TABLE quota_holds ADD COLUMN member TEXT;
ALTER TABLE quota_holds ADD COLUMN member_name TEXT;
-- Covering the member's sum (state, amount, charged): the hold's statement reads the
-- index alone, not each hold's row.
CREATE INDEX quota_holds_by_member
ON quota_holds (platform, user_id, member, created_ms, state, amount, charged)
WHERE member IS NOT NULL;

CREATE OR REPLACE FUNCTION quota_ledger_write() RETURNS trigger AS $$
DECLARE
    note TEXT := CASE WHEN NEW.last_op IN ('reserve', 'settle', 'late_settle', 'refund', 'expire', 'release', 'purchase', 'purchase_refund', 'purchase_refund_undone', 'budget_in', 'budget_out')
                      THEN NEW.last_note END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining, note)
        VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
                NEW.granted, NEW.remaining, NEW.reserved, NEW.used, NEW.remaining, note);
    ELSIF NEW.granted <> OLD.granted OR NEW.remaining <> OLD.remaining
       OR NEW.reserved <> OLD.reserved OR NEW.used <> OLD.used THEN
        INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining, note)
        VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
                NEW.granted - OLD.granted, NEW.remaining - OLD.remaining,
                NEW.reserved - OLD.reserved, NEW.used - OLD.used, NEW.remaining, note);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
