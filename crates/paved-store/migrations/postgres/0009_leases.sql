-- Work that must run on one replica at a time (the reconciler, the git loop,
-- audit checkpoints) runs on the holder of its lease. `token` grows each
-- time the lease is taken after it lapsed: the fencing token that a
-- holder's writes carry, checked in their transaction, so a replica that
-- lost the lease (a pause, a partition) cannot write after another took it.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TEXT NOT NULL
);
