-- Paged lists (issue 19) walk resources in key order within a group, a type or a parent.
CREATE INDEX resources_by_group_key ON resources (group_key, key);
CREATE INDEX resources_by_parent_key ON resources (parent_key, key);
CREATE INDEX resources_by_type_key ON resources (subscription_id, type_key, key);
DROP INDEX resources_by_group;
DROP INDEX resources_by_parent;
DROP INDEX resources_by_type;
