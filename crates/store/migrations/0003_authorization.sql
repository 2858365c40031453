-- Role assignments gain what the API returns; custom role definitions; a counter that every
-- authorization change bumps, so each server sees a change made through another one.
ALTER TABLE role_assignments ADD COLUMN scope_key TEXT;
ALTER TABLE role_assignments ADD COLUMN description TEXT;
ALTER TABLE role_assignments ADD COLUMN updated_at BIGINT;
ALTER TABLE role_assignments ADD COLUMN updated_by TEXT;
UPDATE role_assignments SET scope_key = lower(scope), updated_at = created_at;
CREATE INDEX role_assignments_by_scope ON role_assignments (scope_key);
CREATE TABLE role_definitions (
    id TEXT PRIMARY KEY,
    role_name TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('rbac', 0);
