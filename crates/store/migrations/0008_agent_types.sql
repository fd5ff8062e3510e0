-- Agent types (Semaphore's self-hosted agent types, `s1-NAME`): a job whose machine type names
-- one runs only on agents of that type. Agents register with the type's token, stored as its
-- SHA-256 like API tokens; a disabled type registers no agent and runs no job.
CREATE TABLE agent_types (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    disabled_ms BIGINT
);
