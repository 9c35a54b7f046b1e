-- The audit log: one row per attributed action, in a SHA-256 hash chain
-- (each row carries the hash of the one before). Append-only: the trigger
-- refuses UPDATE, DELETE and TRUNCATE, the privileges are revoked, and
-- `paved audit verify` detects a row changed or removed behind their back.
CREATE TABLE audit_events (
    seq           BIGINT PRIMARY KEY,
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

CREATE FUNCTION paved_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION paved_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION paved_audit_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;
