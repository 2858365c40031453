-- Cosmos DB items (issue 17): rows of the one store beside the resources, so they are as durable
-- as every other write. `container_key` is the lower-cased ARM id of the container resource
-- (deleting it deletes its items); `partition_key` the canonical JSON array of the item's
-- partition-key values; `lsn` a store-wide sequence number, the order of the change feed.
CREATE TABLE cosmos_items (
    container_key TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    etag TEXT NOT NULL,
    ts BIGINT NOT NULL,
    lsn BIGINT NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (container_key, partition_key, id)
);
CREATE INDEX cosmos_items_by_lsn ON cosmos_items (container_key, lsn);
INSERT INTO counters (name, value) VALUES ('cosmos_lsn', 0);
