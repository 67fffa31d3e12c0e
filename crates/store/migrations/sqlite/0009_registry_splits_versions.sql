-- A label may split traffic over versions (`VERSION:WEIGHT,…`); the ledger records which
-- registry versions each call used (`NAME@VERSION`, comma-separated), to group usage by.
ALTER TABLE registry_labels ADD COLUMN split TEXT;
ALTER TABLE usage_ledger ADD COLUMN prompt_version TEXT;
ALTER TABLE usage_ledger ADD COLUMN schema_version TEXT;
