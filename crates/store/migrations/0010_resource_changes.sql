-- The resource change feed (issue 19): the keys each committed batch wrote or deleted, under the
-- `resources` counter value of that batch, so every server learns which resources changed (for
-- its agents' watches) with one query per poll instead of one per watch. Old rows are pruned.
CREATE TABLE resource_changes (
    version BIGINT NOT NULL,
    key TEXT NOT NULL
);
CREATE INDEX resource_changes_by_version ON resource_changes (version);
