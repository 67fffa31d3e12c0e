-- The organization, its workspaces, users and members; admin keys; the usage ledger; the
-- audit log; kill switches. Keys until now named their workspace; they now point at it.
CREATE TABLE organization (
    id    TEXT PRIMARY KEY,
    name  TEXT NOT NULL
);

CREATE TABLE workspaces (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    display_color  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    archived_at    INTEGER
);

INSERT INTO workspaces (id, name, display_color, created_at)
VALUES ('wrkspc_default', 'default', '#6C5BB9', CAST(strftime('%s', 'now') AS INTEGER));

INSERT OR IGNORE INTO workspaces (id, name, display_color, created_at)
SELECT 'wrkspc_' || lower(hex(randomblob(12))), workspace, '#6C5BB9', min(created_at)
FROM api_keys GROUP BY workspace;

UPDATE api_keys SET workspace = (SELECT id FROM workspaces WHERE name = api_keys.workspace);
ALTER TABLE api_keys RENAME COLUMN workspace TO workspace_id;
-- 'standard' keys call the Messages API in one workspace; 'admin' keys the Admin API only.
ALTER TABLE api_keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'standard';
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;

CREATE TABLE users (
    id        TEXT PRIMARY KEY,
    email     TEXT NOT NULL UNIQUE,
    name      TEXT NOT NULL,
    role      TEXT NOT NULL,
    added_at  INTEGER NOT NULL
);

CREATE TABLE workspace_members (
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id),
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_role  TEXT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);

-- One row per API call, written before the response completes. Token columns follow the
-- usage report's names.
CREATE TABLE usage_ledger (
    id                     INTEGER PRIMARY KEY,
    request_id             TEXT NOT NULL,
    at_ms                  INTEGER NOT NULL,
    endpoint               TEXT NOT NULL,
    api_key_id             TEXT NOT NULL,
    workspace_id           TEXT NOT NULL,
    model                  TEXT NOT NULL,
    service_tier           TEXT NOT NULL,
    uncached_input_tokens  INTEGER NOT NULL,
    cache_creation_5m      INTEGER NOT NULL,
    cache_creation_1h      INTEGER NOT NULL,
    cache_read             INTEGER NOT NULL,
    output_tokens          INTEGER NOT NULL
);
CREATE INDEX usage_ledger_at ON usage_ledger (at_ms);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);

-- '' matches every workspace (or every model).
CREATE TABLE kill_switches (
    workspace_id  TEXT NOT NULL,
    model         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, model)
);
