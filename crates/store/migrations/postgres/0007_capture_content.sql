-- Content capture, opt-in per workspace: how many days a workspace's request content is
-- kept, and the content itself (redacted before it is written), until it expires.
ALTER TABLE workspace_limits ADD COLUMN capture_content_days INTEGER;
CREATE TABLE request_content (
    request_id     TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL,
    at_ms          BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    request        TEXT NOT NULL,
    response       TEXT NOT NULL
);
CREATE INDEX request_content_expires ON request_content (expires_at_ms);
