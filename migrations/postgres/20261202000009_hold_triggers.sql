-- Reserve and settle in one statement each: the hold row drives its account.
-- * Inserting a hold (state 'held') moves its amount from the account's remaining to
--   reserved (0 for an unlimited account, which holds nothing).
-- * Settling it (state 'held' or 'expired' -> 'settled', with charged = the usage) books
--   the charge: from the hold and beyond it from remaining, never below 0; for a hold the
--   sweep already returned ('expired'), late, from remaining alone; for an unlimited
--   account the usage is counted and granted in the same breath. What was charged is
--   written back to the hold.
-- The ledger trigger on quota_accounts records each change as before. Refunds and
-- expiries keep their two statements in a transaction (rare paths). The reserve
-- statement locks the account row (INSERT ... SELECT ... FOR UPDATE), so concurrent
-- reserves of one account are serialized and each sees the balance the other left.

CREATE FUNCTION quota_holds_reserve() RETURNS trigger AS $$
BEGIN
    UPDATE quota_accounts SET
        remaining = remaining - NEW.amount,
        reserved = reserved + NEW.amount,
        last_op = 'reserve', last_note = NEW.model, updated_at = NEW.created_ms / 1000
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER quota_holds_reserve AFTER INSERT ON quota_holds
FOR EACH ROW WHEN (NEW.state = 'held') EXECUTE FUNCTION quota_holds_reserve();

CREATE FUNCTION quota_holds_settle() RETURNS trigger AS $$
DECLARE
    v_held BIGINT := CASE WHEN OLD.state = 'held' THEN NEW.amount ELSE 0 END;
    v_charge BIGINT;
BEGIN
    UPDATE quota_accounts SET
        used = used + (CASE WHEN NEW.unlimited = 1 THEN NEW.charged
                            ELSE LEAST(NEW.charged, v_held + remaining) END),
        granted = granted + (CASE WHEN NEW.unlimited = 1 THEN NEW.charged ELSE 0 END),
        remaining = remaining + (CASE WHEN NEW.unlimited = 1 THEN 0
                                      ELSE v_held - LEAST(NEW.charged, v_held + remaining) END),
        reserved = reserved - v_held,
        last_charge = (CASE WHEN NEW.unlimited = 1 THEN NEW.charged
                            ELSE LEAST(NEW.charged, v_held + remaining) END),
        requests = requests + 1,
        last_op = CASE WHEN OLD.state = 'expired' AND NEW.unlimited = 0
                       THEN 'late_settle' ELSE 'settle' END,
        last_note = NEW.model, updated_at = NEW.closed_ms / 1000
    WHERE platform = NEW.platform AND user_id = NEW.user_id
    RETURNING last_charge INTO v_charge;
    UPDATE quota_holds SET charged = COALESCE(v_charge, 0) WHERE id = NEW.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER quota_holds_settle AFTER UPDATE OF state ON quota_holds
FOR EACH ROW WHEN (NEW.state = 'settled' AND OLD.state IN ('held', 'expired'))
EXECUTE FUNCTION quota_holds_settle();
