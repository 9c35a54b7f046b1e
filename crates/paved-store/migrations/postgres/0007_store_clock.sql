-- A counter that moves with every write to applied_nodes, in the writing
-- transaction (a trigger: no writer can forget it). Readers that cache what
-- they derive from applied resources (the API's environment detail) read it
-- with the audit head in one query and re-read when it moved. Once per
-- statement: a batch of node outcomes takes the row lock once, until commit.
CREATE TABLE store_clock (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    applied BIGINT NOT NULL
);
INSERT INTO store_clock (id, applied) VALUES (1, 0);

CREATE FUNCTION paved_applied_tick() RETURNS trigger AS $$
BEGIN
    UPDATE store_clock SET applied = applied + 1 WHERE id = 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER applied_nodes_ticks AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON applied_nodes
FOR EACH STATEMENT EXECUTE FUNCTION paved_applied_tick();
