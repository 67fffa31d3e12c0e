-- Rate limits and a monthly spend cap per workspace, set at run time (the console): they
-- override the config's for that workspace. A column left NULL keeps the config's value.
CREATE TABLE workspace_limits (
    workspace_id              TEXT PRIMARY KEY,
    requests_per_minute       BIGINT,
    input_tokens_per_minute   BIGINT,
    output_tokens_per_minute  BIGINT,
    spend_cap_usd             DOUBLE PRECISION
);

CREATE TRIGGER workspace_limits_control AFTER INSERT OR UPDATE OR DELETE ON workspace_limits
    FOR EACH STATEMENT EXECUTE FUNCTION missive_control_bump();
