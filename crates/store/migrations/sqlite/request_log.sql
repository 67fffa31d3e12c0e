-- Every authenticated API request, failures included, for the console's request log:
-- metadata only, never content. Kept for a retention period, then pruned. It lives in a
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
