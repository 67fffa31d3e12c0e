-- Server tools a response used, beside its tokens: web searches and fetches, and the
-- milliseconds its commands ran in code execution containers.
ALTER TABLE usage_ledger ADD COLUMN web_search_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_ledger ADD COLUMN web_fetch_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_ledger ADD COLUMN code_execution_ms INTEGER NOT NULL DEFAULT 0;
