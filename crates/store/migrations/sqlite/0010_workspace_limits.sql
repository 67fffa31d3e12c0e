-- Rate limits and a monthly spend cap per workspace, set at run time (the console): they
-- override the config's for that workspace. A column left NULL keeps the config's value.
CREATE TABLE workspace_limits (
    workspace_id              TEXT PRIMARY KEY,
    requests_per_minute       INTEGER,
    input_tokens_per_minute   INTEGER,
    output_tokens_per_minute  INTEGER,
    spend_cap_usd             REAL
);

CREATE TRIGGER workspace_limits_insert AFTER INSERT ON workspace_limits
BEGIN UPDATE control_generation SET value = value + 1; END;
CREATE TRIGGER workspace_limits_update AFTER UPDATE ON workspace_limits
BEGIN UPDATE control_generation SET value = value + 1; END;
CREATE TRIGGER workspace_limits_delete AFTER DELETE ON workspace_limits
BEGIN UPDATE control_generation SET value = value + 1; END;
