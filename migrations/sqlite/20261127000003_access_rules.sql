-- Runtime access decisions by admins (/allow, /deny), on top of the configured lists.
-- subject: a user ("telegram:123") or a group ("group:telegram:-100123",
-- "group:discord:987" for a guild).
CREATE TABLE access_rules (
    subject    TEXT    PRIMARY KEY,
    allowed    INTEGER NOT NULL,
    by_admin   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
