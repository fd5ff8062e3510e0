-- Each pipeline's compiled plan (JSON), stored when the pipeline is created: running it,
-- promoting from it and showing it read the plan instead of compiling the file again.
CREATE TABLE pipeline_plans (
    pipeline_id TEXT PRIMARY KEY REFERENCES pipelines (id),
    plan TEXT NOT NULL
);
