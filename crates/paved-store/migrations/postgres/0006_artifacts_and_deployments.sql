-- Build once, promote by digest. Artifacts are immutable: a digest is
-- recorded once, with the metadata of the build that made it.
CREATE TABLE artifacts (
    digest      TEXT PRIMARY KEY,
    service     TEXT NOT NULL,
    git_commit  TEXT,
    commit_time TEXT,
    branch      TEXT,
    builder     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX artifacts_by_service ON artifacts (service, created_at);
CREATE INDEX artifacts_by_commit ON artifacts (service, git_commit);

-- A tag names one digest of one service, forever.
CREATE TABLE artifact_tags (
    service TEXT NOT NULL,
    tag     TEXT NOT NULL,
    digest  TEXT NOT NULL REFERENCES artifacts (digest),
    PRIMARY KEY (service, tag)
);

-- Deployments are numbered per service and environment and kept forever;
-- only status, reason and the timestamps of a deployment change.
CREATE TABLE deployments (
    environment TEXT NOT NULL,
    service     TEXT NOT NULL,
    number      BIGINT NOT NULL,
    artifact    TEXT NOT NULL REFERENCES artifacts (digest),
    strategy    TEXT NOT NULL,
    soak_ms     BIGINT NOT NULL,
    ready_timeout_ms BIGINT NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT,
    actor       TEXT NOT NULL,
    request_id  TEXT NOT NULL UNIQUE,
    origin      TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (environment, service, number)
);
CREATE INDEX deployments_by_service ON deployments (service, created_at);

-- Webhook deliveries handled, so a redelivery does nothing twice.
CREATE TABLE webhook_deliveries (
    id          TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    received_at TEXT NOT NULL,
    outcome     TEXT NOT NULL
);

-- A push asked for a deployment whose artifact was not pushed yet; the
-- latest push per service and environment waits here until it is.
CREATE TABLE pending_deployments (
    environment TEXT NOT NULL,
    service     TEXT NOT NULL,
    git_commit  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (environment, service)
);
