-- Group budgets. A group (or a forum topic) can have a wallet: a quota account of its own
-- (user_id 'group:<group>' or 'group:<group>/<topic>', starting at 0 and never refilled)
-- that pays for its members' questions before their own balances. Its holds name the
-- member they are for, so a member's use of the wallet today is the sum of its holds
-- (what was charged, or what is held while the answer runs) — checked against the
-- group's per-member daily limit in the statement that opens the hold. Tokens are moved
-- into a wallet from a group admin's balance ('budget_out' on theirs, 'budget_in' on the
-- wallet's, in one transaction) or granted by a bot admin ('budget_in' alone).

CREATE TABLE group_wallets (
    platform     TEXT    NOT NULL,
    -- The wallet's account (quota_accounts.user_id).
    wallet       TEXT    NOT NULL,
    -- Tokens a member may spend from the wallet per UTC day; 0: no limit.
    member_limit INTEGER NOT NULL DEFAULT 0 CHECK (member_limit >= 0),
    -- What happens when the wallet cannot pay: members pay themselves, or are refused.
    when_empty   TEXT    NOT NULL DEFAULT 'own' CHECK (when_empty IN ('own', 'refuse')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (platform, wallet)
);

-- The member a wallet's hold is for (NULL on every other hold), and their name as shown.
ALTER TABLE quota_holds ADD COLUMN member TEXT;
ALTER TABLE quota_holds ADD COLUMN member_name TEXT;
-- Covering the member's sum (state, amount, charged): the hold's statement reads the
-- index alone, not each hold's row.
CREATE INDEX quota_holds_by_member
ON quota_holds (platform, user_id, member, created_ms, state, amount, charged)
WHERE member IS NOT NULL;

-- The ledger's note also says where moved tokens went or came from.
DROP TRIGGER quota_ledger_on_insert;
DROP TRIGGER quota_ledger_on_update;

CREATE TRIGGER quota_ledger_on_insert AFTER INSERT ON quota_accounts
BEGIN
    INSERT INTO quota_ledger (platform, user_id, at, kind, d_granted, d_remaining, d_reserved, d_used, remaining, note)
    VALUES (NEW.platform, NEW.user_id, NEW.updated_at, NEW.last_op,
            NEW.granted, NEW.remaining, NEW.reserved, NEW.used, NEW.remaining,
            CASE WHEN NEW.last_op IN ('reserve', 'settle', 'late_settle', 'refund', 'expire', 'release', 'purchase', 'purchase_refund', 'purchase_refund_undone', 'budget_in', 'budget_out')
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
            CASE WHEN NEW.last_op IN ('reserve', 'settle', 'late_settle', 'refund', 'expire', 'release', 'purchase', 'purchase_refund', 'purchase_refund_undone', 'budget_in', 'budget_out')
                 THEN NEW.last_note END);
END;
