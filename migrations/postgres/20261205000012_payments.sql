-- PostgreSQL twin of migrations/sqlite/20261205000012_payments.sql: Telegram Stars
-- top-ups, granted once per charge id by a trigger on the payment row, refunded the same
-- way; the ledger's note names the charge.

CREATE TABLE payment_invoices (
    payload     TEXT   PRIMARY KEY,
    platform    TEXT   NOT NULL,
    buyer       TEXT   NOT NULL,
    pack        TEXT   NOT NULL,
    stars       BIGINT NOT NULL CHECK (stars > 0),
    tokens      BIGINT NOT NULL CHECK (tokens > 0),
    created_at  BIGINT NOT NULL,
    paid_at     BIGINT
);

CREATE TABLE payments (
    charge_id       TEXT   PRIMARY KEY,
    payload         TEXT   NOT NULL UNIQUE REFERENCES payment_invoices (payload),
    platform        TEXT   NOT NULL,
    user_id         TEXT   NOT NULL,
    buyer           TEXT   NOT NULL,
    pack            TEXT   NOT NULL,
    stars           BIGINT NOT NULL,
    tokens          BIGINT NOT NULL CHECK (tokens > 0),
    paid_at         BIGINT NOT NULL,
    refunded_at     BIGINT,
    refunded_tokens BIGINT CHECK (refunded_tokens >= 0)
);
CREATE INDEX payments_by_user ON payments (platform, user_id, paid_at);

CREATE FUNCTION payments_grant() RETURNS trigger AS $$
BEGIN
    UPDATE payment_invoices SET paid_at = NEW.paid_at WHERE payload = NEW.payload;
    UPDATE quota_accounts SET
        granted = granted + NEW.tokens, remaining = remaining + NEW.tokens,
        last_op = 'purchase', last_note = 'charge ' || NEW.charge_id || ', pack ' || NEW.pack,
        updated_at = NEW.paid_at
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_grant AFTER INSERT ON payments
FOR EACH ROW EXECUTE FUNCTION payments_grant();

CREATE FUNCTION payments_refund() RETURNS trigger AS $$
BEGIN
    UPDATE quota_accounts SET
        granted = granted - NEW.refunded_tokens, remaining = remaining - NEW.refunded_tokens,
        last_op = 'purchase_refund',
        last_note = 'charge ' || NEW.charge_id || ', pack ' || NEW.pack,
        updated_at = NEW.refunded_at
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_refund AFTER UPDATE OF refunded_at ON payments
FOR EACH ROW WHEN (OLD.refunded_at IS NULL AND NEW.refunded_at IS NOT NULL)
EXECUTE FUNCTION payments_refund();

CREATE FUNCTION payments_refund_undone() RETURNS trigger AS $$
BEGIN
    UPDATE quota_accounts SET
        granted = granted + OLD.refunded_tokens, remaining = remaining + OLD.refunded_tokens,
        last_op = 'purchase_refund_undone',
        last_note = 'charge ' || NEW.charge_id || ', pack ' || NEW.pack,
        updated_at = OLD.refunded_at
    WHERE platform = NEW.platform AND user_id = NEW.user_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_refund_undone AFTER UPDATE OF refunded_at ON payments
FOR EACH ROW WHEN (OLD.refunded_at IS NOT NULL AND NEW.refunded_at IS NULL)
EXECUTE FUNCTION payments_refund_undone();

CREATE OR REPLACE FUNCTION quota_ledger_write() RETURNS trigger AS $$
DECLARE
    note TEXT := CASE WHEN NEW.last_op IN ('reserve', 'settle', 'late_settle', 'refund', 'expire', 'release', 'purchase', 'purchase_refund', 'purchase_refund_undone')
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
