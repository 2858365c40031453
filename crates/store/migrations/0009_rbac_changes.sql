-- The authorization change log (issue 19): one row per change, numbered by the `rbac` counter in
-- the same transaction, so a server applies what changed since its snapshot's version instead
-- of rebuilding it. Old rows are pruned; a server further behind rebuilds.
CREATE TABLE rbac_changes (
    version BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    principal_id TEXT,
    role_id TEXT,
    scope TEXT
);
