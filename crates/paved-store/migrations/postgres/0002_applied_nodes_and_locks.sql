-- What the orchestrator has applied: one row per resource-graph node of an
-- environment, written the moment the node's outcome is known.
CREATE TABLE applied_nodes (
    environment TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    node        TEXT NOT NULL,
    outputs     TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (environment, node_id)
);

-- One apply per environment at a time, across processes and hosts.
CREATE TABLE environment_locks (
    environment TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
