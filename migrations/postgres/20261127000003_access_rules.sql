CREATE TABLE access_rules (
    subject    TEXT    PRIMARY KEY,
    allowed    BOOLEAN NOT NULL,
    by_admin   TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);
