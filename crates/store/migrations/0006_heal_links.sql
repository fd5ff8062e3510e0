-- The loop as a join: the branch a heal pushed and the pull request opened from it, so a
-- pipeline page finds its heal and its pull request without reading heal reports.
ALTER TABLE heals ADD COLUMN heal_branch TEXT;
ALTER TABLE heals ADD COLUMN pull_request BIGINT;
CREATE INDEX heals_by_heal_branch ON heals (project_id, heal_branch);
CREATE INDEX heals_by_pipeline ON heals (pipeline_id);
