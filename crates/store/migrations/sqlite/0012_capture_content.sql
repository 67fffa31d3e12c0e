-- Content capture, opt-in per workspace: how many days a workspace's request content is kept.
ALTER TABLE workspace_limits ADD COLUMN capture_content_days INTEGER;
