-- Heal attempts: one per (commit, failure fingerprint), claimed before a heal does anything.
CREATE TABLE heals (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    -- The failed pipeline, its commit and branch.
    pipeline_id TEXT NOT NULL,
    sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    -- The heal pipeline's job doing the work, when there is one.
    job_id TEXT,
    -- `running` or `done`.
    state TEXT NOT NULL,
    -- When done: pushed, flaky, refused, failed, skipped or superseded.
    outcome TEXT,
    -- What was done, as JSON: tiers tried, the fix, guards, tokens, the pushed branch.
    report TEXT NOT NULL DEFAULT '{}',
    created_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    UNIQUE (sha, fingerprint)
);
CREATE INDEX heals_by_branch ON heals (project_id, branch, created_ms);

-- Pull requests of the embedded forge, numbered per project.
CREATE TABLE pulls (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    number BIGINT NOT NULL,
    head TEXT NOT NULL,
    base TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    -- `open`, `merged` or `closed`.
    state TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    merged_sha TEXT,
    merged_ms BIGINT,
    UNIQUE (project_id, number)
);
-- At most one open pull request per head branch: creating one again finds it.
CREATE UNIQUE INDEX pulls_open_head ON pulls (project_id, head) WHERE state = 'open';
