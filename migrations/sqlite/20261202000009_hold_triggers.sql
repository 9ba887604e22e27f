-- Reserve and settle in one statement each: the hold row drives its account.
-- * Inserting a hold (state 'held') moves its amount from the account's remaining to
--   reserved (0 for an unlimited account, which holds nothing).
-- * Settling it (state 'held' or 'expired' -> 'settled', with charged = the usage) books
--   the charge: from the hold and beyond it from remaining, never below 0; for a hold the
--   sweep already returned ('expired'), late, from remaining alone; for an unlimited
--   account the usage is counted and granted in the same breath. What was charged is
--   written back to the hold.
-- The ledger triggers on quota_accounts record each change as before. Refunds and
-- expiries keep their two statements in a transaction (rare paths).

CREATE TRIGGER quota_holds_reserve AFTER INSERT ON quota_holds
WHEN NEW.state = 'held'
BEGIN
    UPDATE quota_accounts SET
        remaining = remaining - NEW.amount,
        reserved = reserved + NEW.amount,
        last_op = 'reserve', last_note = NEW.model, updated_at = NEW.created_ms / 1000
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
END;

CREATE TRIGGER quota_holds_settle AFTER UPDATE OF state ON quota_holds
WHEN NEW.state = 'settled' AND OLD.state IN ('held', 'expired')
BEGIN
    -- Every right-hand side sees the old row, so the charge is the same in all places.
    UPDATE quota_accounts SET
        used = used + (CASE WHEN NEW.unlimited = 1 THEN NEW.charged
            ELSE MIN(NEW.charged, (CASE WHEN OLD.state = 'held' THEN NEW.amount ELSE 0 END) + remaining) END),
        granted = granted + (CASE WHEN NEW.unlimited = 1 THEN NEW.charged ELSE 0 END),
        remaining = remaining + (CASE WHEN NEW.unlimited = 1 THEN 0
            ELSE (CASE WHEN OLD.state = 'held' THEN NEW.amount ELSE 0 END)
               - MIN(NEW.charged, (CASE WHEN OLD.state = 'held' THEN NEW.amount ELSE 0 END) + remaining) END),
        reserved = reserved - (CASE WHEN OLD.state = 'held' THEN NEW.amount ELSE 0 END),
        last_charge = (CASE WHEN NEW.unlimited = 1 THEN NEW.charged
            ELSE MIN(NEW.charged, (CASE WHEN OLD.state = 'held' THEN NEW.amount ELSE 0 END) + remaining) END),
        requests = requests + 1,
        last_op = CASE WHEN OLD.state = 'expired' AND NEW.unlimited = 0 THEN 'late_settle' ELSE 'settle' END,
        last_note = NEW.model, updated_at = NEW.closed_ms / 1000
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
    UPDATE quota_holds SET charged = COALESCE((SELECT last_charge FROM quota_accounts
        WHERE platform = NEW.platform AND user_id = NEW.user_id), 0)
    WHERE id = NEW.id;
END;
