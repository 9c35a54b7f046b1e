-- Desired state: the current generation of every object, and every
-- generation ever recorded (tombstones included), never rewritten.
CREATE TABLE objects (
    kind         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    generation   BIGINT  NOT NULL,
    content_hash TEXT    NOT NULL,
    deleted      BIGINT  NOT NULL,
    updated_at   TEXT    NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE generations (
    kind         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    generation   BIGINT  NOT NULL,
    content_hash TEXT    NOT NULL,
    spec         TEXT,
    deleted      BIGINT  NOT NULL,
    actor        TEXT    NOT NULL,
    source       TEXT,
    created_at   TEXT    NOT NULL,
    PRIMARY KEY (kind, name, generation)
);

-- History is append-only.
CREATE FUNCTION paved_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'generations are append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER generations_append_only BEFORE UPDATE OR DELETE ON generations
FOR EACH ROW EXECUTE FUNCTION paved_append_only();
