//! Schema migrations: an ordered list compiled into the binary, applied once each, in a transaction.
//!
//! A database whose recorded version is newer than this build knows is refused, never modified.

use sqlx::Executor;

use crate::{Backend, Store, StoreError};

/// `(version, sql)` in order; append only.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_directory.sql")),
    (2, include_str!("../migrations/0002_resources.sql")),
    (3, include_str!("../migrations/0003_authorization.sql")),
    (4, include_str!("../migrations/0004_agents.sql")),
    (5, include_str!("../migrations/0005_resource_counter.sql")),
    (6, include_str!("../migrations/0006_cosmos_items.sql")),
    (7, include_str!("../migrations/0007_interactive.sql")),
    (8, include_str!("../migrations/0008_resource_paging.sql")),
    (9, include_str!("../migrations/0009_rbac_changes.sql")),
    (10, include_str!("../migrations/0010_resource_changes.sql")),
    (11, include_str!("../migrations/0011_audit.sql")),
];

pub(crate) async fn apply(store: &Store) -> Result<(), StoreError> {
    let known = MIGRATIONS.last().map(|(version, _)| *version).unwrap_or(0);
    let mut transaction = store.pool.begin().await?;
    if store.backend == Backend::Postgres {
        // Replicas starting together must not migrate twice; the lock ends with the transaction.
        transaction
            .execute("SELECT pg_advisory_xact_lock(7412560391)")
            .await?;
    }
    transaction
        .execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .await?;
    let (current,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *transaction)
            .await?;
    if current > known {
        return Err(StoreError::NewerSchema {
            found: current,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        tracing::info!(version, "applying schema migration");
        transaction.execute(*sql).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(unix_now())
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}
