CREATE TABLE quota_links (
    platform    TEXT   NOT NULL,
    user_id     TEXT   NOT NULL,
    to_platform TEXT   NOT NULL,
    to_user_id  TEXT   NOT NULL,
    linked_at   BIGINT NOT NULL,
    PRIMARY KEY (platform, user_id)
);
CREATE INDEX quota_links_to ON quota_links (to_platform, to_user_id);
