-- Refunds in one statement too: closing a held hold as 'refunded' returns its amount
-- from reserved to remaining (nothing for an unlimited account, which held nothing).
-- Expiries and operator releases keep their transaction: they are rare, and the ledger
-- kind ('expire' or 'release') is not on the hold.

CREATE TRIGGER quota_holds_refund AFTER UPDATE OF state ON quota_holds
WHEN NEW.state = 'refunded' AND OLD.state = 'held' AND NEW.amount > 0
BEGIN
    UPDATE quota_accounts SET
        remaining = remaining + NEW.amount,
        reserved = reserved - NEW.amount,
        last_op = 'refund', last_note = NEW.model, updated_at = NEW.closed_ms / 1000
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
END;
