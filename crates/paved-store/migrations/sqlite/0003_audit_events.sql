-- The audit log: one row per attributed action, in a SHA-256 hash chain
-- (each row carries the hash of the one before). Append-only: the triggers
-- refuse UPDATE and DELETE, and `paved audit verify` detects a row changed
-- or removed behind their back.
CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    origin        TEXT NOT NULL,
    before_digest TEXT,
    after_digest  TEXT,
    details       TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_events_by_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_by_target ON audit_events (target, seq);
CREATE INDEX audit_events_by_action ON audit_events (action, seq);
CREATE INDEX audit_events_by_time ON audit_events (at, seq);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;
