-- Interactive sign-in (issue 18): the redirect URIs registered on applications (Graph's web, spa
-- and publicClient platforms), and short-lived grants keyed by a keyed hash of their secret:
-- authorization codes (single use), browser sessions, device codes (with their user code).
CREATE TABLE redirect_uris (
    object_id TEXT NOT NULL REFERENCES principals (object_id) ON DELETE CASCADE,
    platform TEXT NOT NULL,
    uri TEXT NOT NULL,
    PRIMARY KEY (object_id, platform, uri)
);
CREATE TABLE interactive_grants (
    key_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    object_id TEXT,
    user_code TEXT UNIQUE,
    data TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX interactive_grants_by_expiry ON interactive_grants (expires_at);
