-- A counter bumped by every change to what the request path checks (keys, workspaces,
-- kill switches), by any process: the server caches those and re-reads only when it moves.
CREATE TABLE control_generation (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    value  INTEGER NOT NULL
);
INSERT INTO control_generation (id, value) VALUES (1, 0);

CREATE TRIGGER api_keys_insert AFTER INSERT ON api_keys
BEGIN UPDATE control_generation SET value = value + 1; END;
CREATE TRIGGER api_keys_update AFTER UPDATE ON api_keys
BEGIN UPDATE control_generation SET value = value + 1; END;
CREATE TRIGGER api_keys_delete AFTER DELETE ON api_keys
BEGIN UPDATE control_generation SET value = value + 1; END;
CREATE TRIGGER workspaces_insert AFTER INSERT ON workspaces
BEGIN UPDATE control_generation SET value = value + 1; END;
CREATE TRIGGER workspaces_update AFTER UPDATE ON workspaces
BEGIN UPDATE control_generation SET value = value + 1; END;
CREATE TRIGGER workspaces_delete AFTER DELETE ON workspaces
BEGIN UPDATE control_generation SET value = value + 1; END;
CREATE TRIGGER kill_switches_insert AFTER INSERT ON kill_switches
BEGIN UPDATE control_generation SET value = value + 1; END;
CREATE TRIGGER kill_switches_delete AFTER DELETE ON kill_switches
BEGIN UPDATE control_generation SET value = value + 1; END;
