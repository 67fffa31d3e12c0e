-- Every authenticated API request, failures included, for the console's request log:
-- metadata only (content, opt-in, is in `request_content`). Kept for a retention period, then pruned. It lives in a
-- database file of its own (`…-requests.db`), so its writes never hold up the ledger's.
CREATE TABLE IF NOT EXISTS request_log (
    id                           INTEGER PRIMARY KEY,
    request_id                   TEXT NOT NULL,
    at_ms                        INTEGER NOT NULL,
    workspace_id                 TEXT NOT NULL,
    api_key_id                   TEXT NOT NULL,
    method                       TEXT NOT NULL,
    path                         TEXT NOT NULL,
    status                       INTEGER NOT NULL,
    latency_ms                   INTEGER NOT NULL,
    model                        TEXT,
    upstream                     TEXT,
    prompt_version               TEXT,
    input_tokens                 INTEGER NOT NULL,
    output_tokens                INTEGER NOT NULL,
    cache_read_input_tokens      INTEGER NOT NULL,
    cache_creation_input_tokens  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS request_log_workspace_at ON request_log (workspace_id, at_ms);
CREATE INDEX IF NOT EXISTS request_log_at ON request_log (at_ms);
-- The content of requests of workspaces that opt in (redacted before it is written), kept
-- until it expires.
CREATE TABLE IF NOT EXISTS request_content (
    request_id     TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL,
    at_ms          INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    request        TEXT NOT NULL,
    response       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS request_content_expires ON request_content (expires_at_ms);
