-- The directory, credentials, signing keys, refresh tokens and role assignments.
-- One text for SQLite and PostgreSQL: only TEXT and BIGINT columns, no backend-only syntax.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    default_domain TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    display_name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE principals (
    object_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    client_id TEXT UNIQUE,
    display_name TEXT NOT NULL,
    user_principal_name TEXT,
    sign_in_name TEXT UNIQUE,
    password_hash TEXT,
    application_object_id TEXT UNIQUE,
    managed_by TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE client_credentials (
    key_id TEXT PRIMARY KEY,
    object_id TEXT NOT NULL REFERENCES principals (object_id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    display_name TEXT NOT NULL,
    secret_hash TEXT,
    hint TEXT,
    cert_der TEXT,
    thumbprint TEXT,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL
);
CREATE INDEX client_credentials_by_object ON client_credentials (object_id);
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    activate_at BIGINT NOT NULL,
    cert_der TEXT NOT NULL,
    private_key_sealed TEXT NOT NULL
);
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    object_id TEXT NOT NULL REFERENCES principals (object_id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
CREATE TABLE role_assignments (
    name TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    principal_type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT
);
CREATE INDEX role_assignments_by_principal ON role_assignments (principal_id);
