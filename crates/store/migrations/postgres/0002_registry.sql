-- Versioned prompts and schemas per workspace: versions never change; labels move.
CREATE TABLE registry_versions (
    workspace_id   TEXT NOT NULL,
    kind           TEXT NOT NULL,
    name           TEXT NOT NULL,
    version        BIGINT NOT NULL,
    body           TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, kind, name, version)
);

CREATE TABLE registry_labels (
    workspace_id  TEXT NOT NULL,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    label         TEXT NOT NULL,
    version       BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, kind, name, label)
);
