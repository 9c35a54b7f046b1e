-- Which releases of paved may use this database, for rolling upgrades:
-- `min_reader` is the lowest migration version a paved must know to work
-- with the schema as it is. A migration older releases cannot work with
-- (a dropped or renamed column, a new NOT NULL without a default) ends with
-- `UPDATE store_compat SET min_reader = <its own version> WHERE id = 1`; an
-- additive one leaves it, so the release before it keeps serving beside the
-- new one while replicas are replaced one at a time. Releases before this
-- migration refuse any migration they do not know.
CREATE TABLE store_compat (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    min_reader BIGINT NOT NULL
);
INSERT INTO store_compat (id, min_reader) VALUES (1, 8);
