-- Long operations (apply, destroy, deploy) as a durable queue: any replica
-- answers for one (its state and progress events are here), and one whose
-- replica stopped beating its heartbeat is claimed and finished by another.
-- `body` is the operation as the API shows it and `work` what a replica
-- runs to finish it (both JSON the server owns; the store reads neither).
-- `audited` makes the operation's audit event one across takeovers: it is
-- set in the transaction that appends the event.
CREATE TABLE operations (
    id           TEXT PRIMARY KEY,
    environment  TEXT NOT NULL,
    status       TEXT NOT NULL,
    owner        TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    audited      BIGINT NOT NULL DEFAULT 0,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    body         TEXT NOT NULL,
    work         TEXT NOT NULL
);
CREATE INDEX operations_running ON operations (status, heartbeat_at);

-- An operation's progress, numbered from 0 across takeovers (a stream
-- resumes after the last number it saw: `Last-Event-ID`).
CREATE TABLE operation_events (
    operation TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (operation, seq)
);
