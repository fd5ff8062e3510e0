-- Agents of self-hosted agent types: each registered with its type's registration token and got
-- a token of its own (stored as its SHA-256) that its heartbeats and claims carry.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    agent_type TEXT NOT NULL REFERENCES agent_types (name),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    slots BIGINT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    registered_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    disconnected_ms BIGINT
);
CREATE INDEX agents_by_type ON agents (agent_type, disconnected_ms);
