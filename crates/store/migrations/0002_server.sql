-- The server: hosted and external projects, API tokens, queues and promotions.
ALTER TABLE projects ADD COLUMN kind TEXT NOT NULL DEFAULT 'local';
-- GitHub/GitLab webhook secret, sealed like secrets (the name as associated data).
ALTER TABLE projects ADD COLUMN webhook_secret __BYTES__;

-- The branch a workflow is for (a pull request's target branch; empty for tags).
ALTER TABLE workflows ADD COLUMN branch TEXT NOT NULL DEFAULT '';
ALTER TABLE workflows ADD COLUMN triggered_by TEXT NOT NULL DEFAULT '';
ALTER TABLE workflows ADD COLUMN rerun_of TEXT;

-- The pipeline this one was promoted from, and the promotion's parameters (JSON object).
ALTER TABLE pipelines ADD COLUMN promotion_of TEXT;
ALTER TABLE pipelines ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
-- The promotion chain's artefact ids so far, this pipeline's last (JSON array).
ALTER TABLE pipelines ADD COLUMN artefact_ids TEXT NOT NULL DEFAULT '[]';
-- The queue (SEMAPHORE.md §1.9) this pipeline waits in: scope, name and processing.
ALTER TABLE pipelines ADD COLUMN queue TEXT NOT NULL DEFAULT '';
ALTER TABLE pipelines ADD COLUMN queue_parallel BIGINT NOT NULL DEFAULT 0;
-- auto_cancel decided when the pipeline was created: '', 'queued' or 'running'.
ALTER TABLE pipelines ADD COLUMN auto_cancel TEXT NOT NULL DEFAULT '';
-- Set in the same transaction that creates the promoted pipelines: promotions fire once.
ALTER TABLE pipelines ADD COLUMN promotions_done BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pipelines ADD COLUMN started_ms BIGINT;
CREATE INDEX pipelines_by_state ON pipelines (state, created_ms);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- SHA-256 of the token, hex; the token itself is shown once and never stored.
    hash TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    last_used_ms BIGINT
);
