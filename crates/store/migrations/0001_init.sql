-- Salve's state. Times are unix milliseconds; ids are UUID strings.
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    repo_url TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    number BIGINT NOT NULL,
    ref_type TEXT NOT NULL,
    label TEXT NOT NULL,
    sha TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX workflows_by_project ON workflows (project_id, created_ms);

CREATE TABLE pipelines (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    result_reason TEXT,
    error TEXT,
    promoted_by TEXT,
    created_ms BIGINT NOT NULL,
    done_ms BIGINT
);
CREATE INDEX pipelines_by_workflow ON pipelines (workflow_id);

CREATE TABLE blocks (
    pipeline_id TEXT NOT NULL REFERENCES pipelines (id),
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    result_reason TEXT,
    PRIMARY KEY (pipeline_id, name)
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    pipeline_id TEXT NOT NULL REFERENCES pipelines (id),
    block_name TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    result_reason TEXT,
    summary TEXT,
    log_dir TEXT NOT NULL,
    started_ms BIGINT,
    done_ms BIGINT
);
CREATE INDEX jobs_by_pipeline ON jobs (pipeline_id);

CREATE TABLE commands (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    seq BIGINT NOT NULL,
    phase TEXT NOT NULL,
    idx BIGINT NOT NULL,
    command TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    exit_code BIGINT,
    first_line BIGINT NOT NULL,
    end_line BIGINT NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- Secret values are sealed with XChaCha20-Poly1305 before they get here.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    sealed __BYTES__ NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
