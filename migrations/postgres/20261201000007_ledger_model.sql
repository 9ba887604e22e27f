-- Which model a charge was for: a reservation names its model (quota_holds.model and
-- quota_accounts.last_note), and the ledger entry of every reserve, settle, refund and
-- expiry carries it in `note`. Other entries (grants, refills, adjustments) have none.

ALTER TABLE quota_accounts ADD COLUMN last_note TEXT;
ALTER TABLE quota_holds ADD COLUMN model TEXT;
ALTER TABLE quota_ledger ADD COLUMN note TEXT;

CREATE OR REPLACE FUNCTION quota_ledger_write() RETURNS trigger AS $$
DECLARE
    note TEXT := CASE WHEN NEW.last_op IN ('reserve', 'settle', 'late_settle', 'refund', 'expire', 'release')
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
