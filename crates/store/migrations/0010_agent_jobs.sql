-- Jobs of agent types: queued until an agent of the type claims one (a lease it renews with
-- every log chunk), then done with the agent's report. `payload` is the job as the agent gets
-- it, sealed with the secrets key (it holds the job's secrets), and emptied when the job is
-- done. A claim whose lease lapses is lost: the job is queued again once (`attempt` 2), then
-- fails with `agent_lost`.
CREATE TABLE agent_jobs (
    job_id TEXT PRIMARY KEY REFERENCES jobs (id),
    pipeline_id TEXT NOT NULL,
    agent_type TEXT NOT NULL,
    payload __BYTES__ NOT NULL,
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    agent_id TEXT,
    lease_until_ms BIGINT,
    queued_ms BIGINT NOT NULL,
    stop_reason TEXT,
    report TEXT
);
CREATE INDEX agent_jobs_queue ON agent_jobs (state, agent_type, queued_ms);
CREATE INDEX agent_jobs_by_agent ON agent_jobs (agent_id, state);

-- Each attempt at an agent job: which agent ran it and how it ended.
CREATE TABLE job_attempts (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    attempt BIGINT NOT NULL,
    agent_id TEXT,
    agent_name TEXT,
    queued_ms BIGINT NOT NULL,
    started_ms BIGINT,
    finished_ms BIGINT,
    result TEXT,
    result_reason TEXT,
    PRIMARY KEY (job_id, attempt)
);
