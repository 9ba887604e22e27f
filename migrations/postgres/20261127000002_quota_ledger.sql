ALTER TABLE quota_accounts ADD COLUMN unlimited BIGINT NOT NULL DEFAULT 0;
ALTER TABLE quota_accounts ADD COLUMN refill_tokens BIGINT CHECK (refill_tokens >= 0);
ALTER TABLE quota_accounts ADD COLUMN refilled_period TEXT;
ALTER TABLE quota_accounts ADD COLUMN last_op TEXT NOT NULL DEFAULT 'grant';

CREATE TABLE quota_ledger (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform    TEXT   NOT NULL,
    user_id     TEXT   NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    d_granted   BIGINT NOT NULL,
    d_remaining BIGINT NOT NULL,
    d_reserved  BIGINT NOT NULL,
    d_used      BIGINT NOT NULL,
    remaining   BIGINT NOT NULL
);
CREATE INDEX quota_ledger_by_user ON quota_ledger (platform, user_id, id);

INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining)
SELECT platform, user_id, updated_at, 'grant', granted, remaining, reserved, used, remaining
FROM quota_accounts;

-- Every change of a balance writes its ledger entry in the same statement.
CREATE FUNCTION quota_ledger_write() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining)
        VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
                NEW.granted, NEW.remaining, NEW.reserved, NEW.used, NEW.remaining);
    ELSIF NEW.granted <> OLD.granted OR NEW.remaining <> OLD.remaining
       OR NEW.reserved <> OLD.reserved OR NEW.used <> OLD.used THEN
        INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining)
        VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
                NEW.granted - OLD.granted, NEW.remaining - OLD.remaining,
                NEW.reserved - OLD.reserved, NEW.used - OLD.used, NEW.remaining);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER quota_ledger_on_change AFTER INSERT OR UPDATE ON quota_accounts
FOR EACH ROW EXECUTE FUNCTION quota_ledger_write();
