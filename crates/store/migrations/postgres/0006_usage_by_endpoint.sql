-- Reports read billed calls (`messages`) over a time range: an index that skips the
-- token counts (`count_tokens`, which clients like Claude Code send often) without
-- reading them.
CREATE INDEX usage_ledger_endpoint_at ON usage_ledger (endpoint, at_ms);
