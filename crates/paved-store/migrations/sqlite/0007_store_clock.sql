-- A counter that moves with every write to applied_nodes, in the writing
-- transaction (triggers: no writer can forget it). Readers that cache what
-- they derive from applied resources (the API's environment detail) read it
-- with the audit head in one query and re-read when it moved.
CREATE TABLE store_clock (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    applied INTEGER NOT NULL
);
INSERT INTO store_clock (id, applied) VALUES (1, 0);

CREATE TRIGGER applied_nodes_insert_ticks AFTER INSERT ON applied_nodes
BEGIN UPDATE store_clock SET applied = applied + 1 WHERE id = 1; END;
CREATE TRIGGER applied_nodes_update_ticks AFTER UPDATE ON applied_nodes
BEGIN UPDATE store_clock SET applied = applied + 1 WHERE id = 1; END;
CREATE TRIGGER applied_nodes_delete_ticks AFTER DELETE ON applied_nodes
BEGIN UPDATE store_clock SET applied = applied + 1 WHERE id = 1; END;
