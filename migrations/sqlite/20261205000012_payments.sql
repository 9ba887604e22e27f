-- Telegram Stars top-ups. An invoice names its buyer and pack under a random payload the
-- bot keeps (so a payload cannot be forged or reused); a payment is one row keyed by
-- Telegram's charge id (unique: an update delivered twice, or seen by two replicas,
-- grants once), and inserting it grants the pack's tokens by a trigger in the same
-- statement, with a ledger entry naming the charge and the pack. A refund marks the row
-- and takes back what remains of the pack's tokens (never below zero), again in one
-- statement.

CREATE TABLE payment_invoices (
    payload     TEXT    PRIMARY KEY,
    platform    TEXT    NOT NULL,
    buyer       TEXT    NOT NULL,
    pack        TEXT    NOT NULL,
    stars       INTEGER NOT NULL CHECK (stars > 0),
    tokens      INTEGER NOT NULL CHECK (tokens > 0),
    created_at  INTEGER NOT NULL,
    paid_at     INTEGER
);

CREATE TABLE payments (
    charge_id       TEXT    PRIMARY KEY,
    payload         TEXT    NOT NULL UNIQUE REFERENCES payment_invoices (payload),
    -- Whose balance the tokens went to (the buyer's, or the account it is linked to).
    platform        TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    buyer           TEXT    NOT NULL,
    pack            TEXT    NOT NULL,
    stars           INTEGER NOT NULL,
    tokens          INTEGER NOT NULL CHECK (tokens > 0),
    paid_at         INTEGER NOT NULL,
    refunded_at     INTEGER,
    refunded_tokens INTEGER CHECK (refunded_tokens >= 0)
);
CREATE INDEX payments_by_user ON payments (platform, user_id, paid_at);

CREATE TRIGGER payments_grant AFTER INSERT ON payments
BEGIN
    UPDATE payment_invoices SET paid_at = NEW.paid_at WHERE payload = NEW.payload;
    UPDATE quota_accounts SET
        granted = granted + NEW.tokens, remaining = remaining + NEW.tokens,
        last_op = 'purchase', last_note = 'charge ' || NEW.charge_id || ', pack ' || NEW.pack,
        updated_at = NEW.paid_at
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
END;

CREATE TRIGGER payments_refund AFTER UPDATE OF refunded_at ON payments
WHEN OLD.refunded_at IS NULL AND NEW.refunded_at IS NOT NULL
BEGIN
    UPDATE quota_accounts SET
        granted = granted - NEW.refunded_tokens, remaining = remaining - NEW.refunded_tokens,
        last_op = 'purchase_refund',
        last_note = 'charge ' || NEW.charge_id || ', pack ' || NEW.pack,
        updated_at = NEW.refunded_at
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
END;

-- Telegram refused to give the Stars back: the tokens taken return.
CREATE TRIGGER payments_refund_undone AFTER UPDATE OF refunded_at ON payments
WHEN OLD.refunded_at IS NOT NULL AND NEW.refunded_at IS NULL
BEGIN
    UPDATE quota_accounts SET
        granted = granted + OLD.refunded_tokens, remaining = remaining + OLD.refunded_tokens,
        last_op = 'purchase_refund_undone',
        last_note = 'charge ' || NEW.charge_id || ', pack ' || NEW.pack,
        updated_at = OLD.refunded_at
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
END;

-- The ledger's note now also names the charge of a purchase and of its refund.
DROP TRIGGER quota_ledger_on_insert;
DROP TRIGGER quota_ledger_on_update;

CREATE TRIGGER quota_ledger_on_insert AFTER INSERT ON quota_accounts
BEGIN
    INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining, note)
    VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
            NEW.granted, NEW.remaining, NEW.reserved, NEW.used, NEW.remaining,
            CASE WHEN NEW.last_op IN ('reserve', 'settle', 'late_settle', 'refund', 'expire', 'release', 'purchase', 'purchase_refund', 'purchase_refund_undone')
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
            CASE WHEN NEW.last_op IN ('reserve', 'settle', 'late_settle', 'refund', 'expire', 'release', 'purchase', 'purchase_refund', 'purchase_refund_undone')
                 THEN NEW.last_note END);
END;
