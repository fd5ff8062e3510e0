-- Tasks (Semaphore's scheduled and on-demand workflows): a project's named way to start a
-- pipeline file on a branch with parameters, by hand or on a cron schedule (UTC). `next_run_ms`
-- is when the schedule fires next; a replica takes a run by moving it on (compare and set), so a
-- run fires once however many replicas look. Each start is a trigger, kept for the task's history.
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    branch TEXT NOT NULL,
    pipeline_file TEXT NOT NULL,
    schedule TEXT,
    parameters TEXT NOT NULL DEFAULT '[]',
    paused BIGINT NOT NULL DEFAULT 0,
    next_run_ms BIGINT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX tasks_due ON tasks (next_run_ms);

CREATE TABLE task_triggers (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    triggered_ms BIGINT NOT NULL,
    scheduled BIGINT NOT NULL DEFAULT 0,
    branch TEXT NOT NULL,
    pipeline_file TEXT NOT NULL,
    workflow_id TEXT,
    error TEXT
);
CREATE INDEX task_triggers_task ON task_triggers (task_id, triggered_ms);
