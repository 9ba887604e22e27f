-- Open-mode limits read the day's new accounts and the day's spending.
CREATE INDEX quota_accounts_by_created ON quota_accounts (created_at);
CREATE INDEX quota_ledger_by_time ON quota_ledger (at);
