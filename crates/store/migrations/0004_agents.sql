-- Per-machine agents: one-time join tokens (keyed hashes only) and enrolled agents' public keys.
CREATE TABLE join_tokens (
    token_hash TEXT PRIMARY KEY,
    vm_key TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT
);
CREATE INDEX join_tokens_by_vm ON join_tokens (vm_key);
CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    vm_key TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX agents_by_vm ON agents (vm_key);
