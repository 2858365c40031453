-- The one resource store of the control plane: every ARM resource (groups included) is a row whose
-- body is the JSON document ARM returns (secrets removed). Keys are lower-cased ids.
CREATE TABLE resources (
    key TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    group_key TEXT,
    parent_key TEXT,
    type_key TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX resources_by_group ON resources (group_key);
CREATE INDEX resources_by_parent ON resources (parent_key);
CREATE INDEX resources_by_type ON resources (subscription_id, type_key);
