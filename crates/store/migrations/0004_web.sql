-- Web sessions: a login with an API token sets a cookie; its SHA-256 is the key. A session ends
-- when it expires or its token is deleted.
CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    -- The form token every POST of this session must carry.
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- Comments on pull requests of the embedded forge.
CREATE TABLE pull_comments (
    id TEXT PRIMARY KEY,
    pull_id TEXT NOT NULL REFERENCES pulls(id),
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX pull_comments_by_pull ON pull_comments (pull_id, created_ms);
