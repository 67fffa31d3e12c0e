-- Calls of server tools (web search, web fetch) a response made, beside its tokens.
ALTER TABLE usage_ledger ADD COLUMN web_search_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_ledger ADD COLUMN web_fetch_requests INTEGER NOT NULL DEFAULT 0;
