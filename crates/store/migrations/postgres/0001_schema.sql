-- The whole schema the SQLite store reached in its migrations 0001-0006, in one step: a
-- Postgres store starts here. `seq` columns keep insertion order for lists that break ties
-- by it (SQLite's rowid).
CREATE TABLE organization (
    id    TEXT PRIMARY KEY,
    name  TEXT NOT NULL
);

CREATE TABLE secrets (
    name   TEXT PRIMARY KEY,
    value  BYTEA NOT NULL
);

CREATE TABLE workspaces (
    id             TEXT PRIMARY KEY,
    seq            BIGSERIAL,
    name           TEXT NOT NULL UNIQUE,
    display_color  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    archived_at    BIGINT
);
INSERT INTO workspaces (id, name, display_color, created_at)
VALUES ('wrkspc_default', 'default', '#6C5BB9', floor(extract(epoch FROM now()))::BIGINT);

-- 'standard' keys call the Messages API in one workspace; 'admin' keys (workspace '') the
-- Admin API only.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    seq           BIGSERIAL,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    workspace_id  TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    hint          TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT
);

CREATE TABLE users (
    id        TEXT PRIMARY KEY,
    seq       BIGSERIAL,
    email     TEXT NOT NULL UNIQUE,
    name      TEXT NOT NULL,
    role      TEXT NOT NULL,
    added_at  BIGINT NOT NULL
);

CREATE TABLE workspace_members (
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id),
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    seq             BIGSERIAL,
    workspace_role  TEXT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);

-- One row per API call, committed before the response completes.
CREATE TABLE usage_ledger (
    id                     BIGSERIAL PRIMARY KEY,
    request_id             TEXT NOT NULL,
    at_ms                  BIGINT NOT NULL,
    endpoint               TEXT NOT NULL,
    api_key_id             TEXT NOT NULL,
    workspace_id           TEXT NOT NULL,
    model                  TEXT NOT NULL,
    service_tier           TEXT NOT NULL,
    uncached_input_tokens  BIGINT NOT NULL,
    cache_creation_5m      BIGINT NOT NULL,
    cache_creation_1h      BIGINT NOT NULL,
    cache_read             BIGINT NOT NULL,
    output_tokens          BIGINT NOT NULL,
    web_search_requests    BIGINT NOT NULL DEFAULT 0,
    web_fetch_requests     BIGINT NOT NULL DEFAULT 0,
    code_execution_ms      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX usage_ledger_at ON usage_ledger (at_ms);

CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at_ms   BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);

-- '' matches every workspace (or every model).
CREATE TABLE kill_switches (
    workspace_id  TEXT NOT NULL,
    model         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, model)
);

-- Bumped by every change to what the request path caches (keys, workspaces, kill
-- switches), and announced on the channel `missive_control`, so every replica drops its
-- cache at once; replicas also poll it, in case a notification is missed.
CREATE TABLE control_generation (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    value  BIGINT NOT NULL
);
INSERT INTO control_generation (id, value) VALUES (1, 0);

CREATE FUNCTION missive_control_bump() RETURNS trigger AS $$
DECLARE
    moved BIGINT;
BEGIN
    UPDATE control_generation SET value = value + 1 WHERE id = 1 RETURNING value INTO moved;
    PERFORM pg_notify('missive_control', moved::TEXT);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_control AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION missive_control_bump();
CREATE TRIGGER workspaces_control AFTER INSERT OR UPDATE OR DELETE ON workspaces
    FOR EACH STATEMENT EXECUTE FUNCTION missive_control_bump();
CREATE TRIGGER kill_switches_control AFTER INSERT OR DELETE ON kill_switches
    FOR EACH STATEMENT EXECUTE FUNCTION missive_control_bump();

-- Message Batches. A result and its usage row commit together, so a request completes
-- once; a replica leases the requests it runs, and a lease that runs out (the replica
-- died) puts them back in the pool.
CREATE TABLE batches (
    id                   TEXT PRIMARY KEY,
    seq                  BIGSERIAL,
    workspace_id         TEXT NOT NULL,
    api_key_id           TEXT NOT NULL,
    created_at_ms        BIGINT NOT NULL,
    expires_at_ms        BIGINT NOT NULL,
    cancel_initiated_ms  BIGINT,
    ended_at_ms          BIGINT,
    deleted              BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX batches_workspace ON batches (workspace_id, created_at_ms);

CREATE TABLE batch_requests (
    batch_id     TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    idx          BIGINT NOT NULL,
    custom_id    TEXT NOT NULL,
    params       TEXT NOT NULL,
    -- NULL while pending; then succeeded | errored | canceled | expired.
    result_type  TEXT,
    result       TEXT,
    leased_by    TEXT,
    lease_until  BIGINT,
    PRIMARY KEY (batch_id, idx),
    UNIQUE (batch_id, custom_id)
);
CREATE INDEX batch_requests_pending ON batch_requests (batch_id, idx) WHERE result_type IS NULL;

-- Files: metadata here, bytes on storage every replica reaches.
CREATE TABLE files (
    id             TEXT PRIMARY KEY,
    seq            BIGSERIAL,
    workspace_id   TEXT NOT NULL,
    filename       TEXT NOT NULL,
    mime_type      TEXT NOT NULL,
    size_bytes     BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    downloadable   BOOLEAN NOT NULL,
    deleted        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX files_workspace ON files (workspace_id, created_at_ms);
