-- Holds with leases. Every reservation is a row here as well as tokens in
-- quota_accounts.reserved: the process answering renews its lease (expires_ms) while the
-- answer is alive; when a lease runs out (the process died, or gave up settling) any
-- process sweeps the hold: its tokens go back to remaining (ledger kind 'expire').
-- A hold is closed exactly once (settled, refunded, expired), guarded by its state, so
-- settle and refund can be retried without charging twice.
CREATE TABLE quota_holds (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform   TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    amount     BIGINT  NOT NULL CHECK (amount >= 0),
    unlimited  BIGINT  NOT NULL DEFAULT 0,
    -- held | settled | refunded | expired
    state      TEXT    NOT NULL DEFAULT 'held',
    -- What the settlement charged.
    charged    BIGINT,
    -- The process that holds it (shown by `gptbot quota holds`).
    owner      TEXT    NOT NULL,
    created_ms BIGINT  NOT NULL,
    expires_ms BIGINT  NOT NULL,
    closed_ms  BIGINT
);
CREATE INDEX quota_holds_by_state ON quota_holds (state, expires_ms);

-- Tokens reserved before holds had rows: one hold each, already expired, so the first
-- sweep returns them.
INSERT INTO quota_holds (platform, user_id, amount, owner, created_ms, expires_ms)
SELECT platform, user_id, reserved, 'before-leases', updated_at * 1000, 0
FROM quota_accounts WHERE reserved > 0;
