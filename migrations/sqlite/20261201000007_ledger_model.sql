-- Which model a charge was for: a reservation names its model (quota_holds.model and
-- quota_accounts.last_note), and the ledger entry of every reserve, settle, refund and
-- expiry carries it in `note`. Other entries (grants, refills, adjustments) have none.

ALTER TABLE quota_accounts ADD COLUMN last_note TEXT;
ALTER TABLE quota_holds ADD COLUMN model TEXT;
ALTER TABLE quota_ledger ADD COLUMN note TEXT;

DROP TRIGGER quota_ledger_on_insert;
DROP TRIGGER quota_ledger_on_update;

CREATE TRIGGER quota_ledger_on_insert AFTER INSERT ON quota_accounts
BEGIN
    INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining, note)
    VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
            NEW.granted, NEW.remaining, NEW.reserved, NEW.used, NEW.remaining,
            CASE WHEN NEW.last_op IN ('reserve', 'settle', 'late_settle', 'refund', 'expire', 'release')
                 THEN NEW.last_note END);
END;

CREATE TRIGGER quota_ledger_on_update AFTER UPDATE ON quota_accounts
WHEN NEW.granted <> OLD.granted OR NEW.remaining <> OLD.remaining
  OR NEW.reserved <> OLD.reserved OR NEW.used <> OLD.used
BEGIN
    INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining, note)
    VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
            NEW.granted - OLD.granted, NEW.remaining - OLD.remaining,
            NEW.reserved - OLD.reserved, NEW.used - OLD.used, NEW.remaining,
            CASE WHEN NEW.last_op IN ('reserve', 'settle', 'late_settle', 'refund', 'expire', 'release')
                 THEN NEW.last_note END);
END;
