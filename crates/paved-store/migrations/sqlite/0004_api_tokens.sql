-- API tokens: only the SHA-256 of each secret is kept. Rows are never
-- deleted: a revoked token keeps its row (and its history in the audit log).
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
