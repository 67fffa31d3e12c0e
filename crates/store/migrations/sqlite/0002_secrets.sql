-- Server secrets that must outlive a restart (the thinking-signature key).
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
