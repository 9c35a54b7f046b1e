-- The machine a local-provider environment runs on: its processes,
-- containers and data live there, so only that machine applies, drifts or
-- destroys it. Set by the first apply, cleared by a destroy, moved only by
-- an explicit take-over.
CREATE TABLE environment_runners (
    environment TEXT PRIMARY KEY,
    runner      TEXT NOT NULL,
    since       TEXT NOT NULL
);
