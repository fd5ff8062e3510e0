-- A token that belongs to one project (the token of a promoted pipeline's jobs): it may read,
-- record heals, push and open pull requests for that project only.
ALTER TABLE tokens ADD COLUMN project_id TEXT;
