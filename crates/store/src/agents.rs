//! Join tokens and enrolled agents. A join token is consumed and the agent registered in one
//! transaction, so one token enrols at most one agent; both go when their VM is deleted.

use crate::{Store, StoreError};

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub agent_id: String,
    /// Key of the VM resource the agent is enrolled to.
    pub vm_key: String,
    /// base64 DER SubjectPublicKeyInfo of the agent's EC P-256 key.
    pub public_key: String,
    pub created_at: i64,
}

impl Store {
    /// Stores a join token's keyed hash.
    pub async fn insert_join_token(
        &self,
        token_hash: &str,
        vm_key: &str,
        expires_at: i64,
        created_at: i64,
        created_by: Option<String>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO join_tokens (token_hash, vm_key, expires_at, created_at, created_by) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash.to_string())
            .bind(vm_key.to_string())
            .bind(expires_at)
            .bind(created_at)
            .bind(created_by)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Consumes a valid join token and registers the agent for its VM, atomically. `NotFound`
    /// when the token is unknown, used, expired, or its VM is gone.
    pub async fn enroll_agent(
        &self,
        token_hash: &str,
        now: i64,
        agent: &AgentRecord,
    ) -> Result<String, StoreError> {
        let mut transaction = self.pool.begin().await?;
        // Deleting first takes the write lock at once (SQLite would refuse to upgrade a read lock
        // under contention), and exactly one racer gets the row back.
        let row: Option<(String, i64)> = sqlx::query_as(
            "DELETE FROM join_tokens WHERE token_hash = $1 RETURNING vm_key, expires_at",
        )
        .bind(token_hash.to_string())
        .fetch_optional(&mut *transaction)
        .await?;
        let Some((vm_key, expires_at)) = row else {
            return Err(StoreError::NotFound);
        };
        if expires_at < now {
            transaction.commit().await?;
            return Err(StoreError::NotFound);
        }
        let vm: Option<(String,)> = sqlx::query_as("SELECT key FROM resources WHERE key = $1")
            .bind(vm_key.clone())
            .fetch_optional(&mut *transaction)
            .await?;
        if vm.is_none() {
            transaction.commit().await?;
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO agents (agent_id, vm_key, public_key, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(agent.agent_id.clone())
        .bind(vm_key.clone())
        .bind(agent.public_key.clone())
        .bind(agent.created_at)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(vm_key)
    }

    /// An enrolled agent by id.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "SELECT agent_id, vm_key, public_key, created_at FROM agents WHERE agent_id = $1",
        )
        .bind(agent_id.to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(agent_id, vm_key, public_key, created_at)| AgentRecord {
                agent_id,
                vm_key,
                public_key,
                created_at,
            }),
        )
    }
}
