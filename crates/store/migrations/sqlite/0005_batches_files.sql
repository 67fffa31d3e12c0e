-- Message Batches: the batch, and each request with its result. A result and its usage
-- row are written in one transaction, so a request completes exactly once.
CREATE TABLE batches (
    id                   TEXT PRIMARY KEY,
    workspace_id         TEXT NOT NULL,
    api_key_id           TEXT NOT NULL,
    created_at_ms        INTEGER NOT NULL,
    expires_at_ms        INTEGER NOT NULL,
    cancel_initiated_ms  INTEGER,
    ended_at_ms          INTEGER,
    deleted              INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX batches_workspace ON batches (workspace_id, created_at_ms);

CREATE TABLE batch_requests (
    batch_id     TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    custom_id    TEXT NOT NULL,
    params       TEXT NOT NULL,
    -- NULL while pending; then succeeded | errored | canceled | expired.
    result_type  TEXT,
    result       TEXT,
    PRIMARY KEY (batch_id, idx),
    UNIQUE (batch_id, custom_id)
);
CREATE INDEX batch_requests_pending ON batch_requests (batch_id) WHERE result_type IS NULL;

-- Files: metadata here, bytes under the data directory.
CREATE TABLE files (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL,
    filename      TEXT NOT NULL,
    mime_type     TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    downloadable  INTEGER NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX files_workspace ON files (workspace_id, created_at_ms);
