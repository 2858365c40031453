-- The audit log (issue 20): control-plane writes (committed in the same transaction as the write
-- they record), failed control-plane requests, directory changes and sign-ins (tokens issued and
-- failed sign-ins, appended in batches). `at` is in microseconds since the epoch; lists read
-- newest first by (at, id). Rows older than the retention are pruned.
-- One index: every list is a time range of one kind (the Activity Log requires a start time), and
-- each index more costs a B-tree insert per record on the token path (scripts/bench-audit).
CREATE TABLE audit_events (
    id TEXT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    operation TEXT NOT NULL,
    status TEXT NOT NULL,
    status_code TEXT,
    caller_id TEXT,
    caller_name TEXT,
    subscription_id TEXT,
    resource_group TEXT,
    resource_id TEXT,
    correlation_id TEXT,
    request_id TEXT,
    client_ip TEXT,
    details TEXT NOT NULL
);
CREATE INDEX audit_events_by_kind_time ON audit_events (kind, at, id);
