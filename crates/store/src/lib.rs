//! The store: openmi's ground state in SQLite (embedded, default) or PostgreSQL (shared by replicas).
//!
//! One migration set and one SQL text serve both backends through sqlx's `Any` driver; the few
//! dialect differences (connection set-up, migration locking) sit in `Backend`.
//! **Architecture invariant:** the store makes no authorization decision and enforces no content
//! rule beyond uniqueness; it knows nothing of HTTP, tokens or RBAC.

mod agents;
mod audit;
mod authorization;
mod directory;
mod interactive;
mod item_cache;
mod items;
mod keys;
mod migrations;
mod resources;
pub mod testsuite;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use agents::AgentRecord;
pub use audit::{AuditFilter, AuditKind, AuditRecord};
pub use authorization::{RbacChange, StoredRoleDefinition, RBAC_LOG_RETAINED};
pub use directory::{BootstrapRecord, NewServicePrincipal};
pub use interactive::InteractiveGrant;
pub use items::{ItemOutcome, ItemWrite, StoredItem};
pub use keys::StoredSigningKey;
pub use resources::{
    Listing, ResourceChange, ResourceRecord, WriterMetrics, RESOURCE_LOG_RETAINED,
};

/// Failures a caller can act on; backend errors are classified here and kept only as text for logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("the stored version changed since it was read")]
    PreconditionFailed,
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full (SQLite's SQLITE_FULL, PostgreSQL's 53100): nothing of the
    /// write was kept; it can succeed once there is room.
    #[error("the database's disk is full: {0}")]
    StorageFull(String),
    #[error("the database was written by a newer openmi (schema version {found}, this build knows {known})")]
    NewerSchema { found: i64, known: i64 },
    #[error("ST0001 stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("ST0002 database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(database_error) if database_error.is_unique_violation() => {
                StoreError::AlreadyExists
            }
            // SQLite's primary result code 13 (extended codes keep it in the low byte) and
            // PostgreSQL's disk_full.
            sqlx::Error::Database(database_error)
                if database_error.code().is_some_and(|code| {
                    code == "53100" || code.parse::<i64>().is_ok_and(|code| code & 0xff == 13)
                }) =>
            {
                StoreError::StorageFull(database_error.message().to_string())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(error.to_string()),
            _ => StoreError::Database(error.to_string()),
        }
    }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    // Group-commit queue of resource changes (see `resources::run_writer`).
    writer: tokio::sync::mpsc::Sender<resources::PendingChange>,
    // SQLite only: point reads of Cosmos items, kept by the writer (see `item_cache`).
    item_cache: Option<std::sync::Arc<item_cache::ItemCache>>,
    writer_metrics: WriterMetrics,
}

impl Store {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`) and applies migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Unavailable(
                "the database URL must start with sqlite: or postgres:".to_string(),
            ));
        };
        let options = AnyConnectOptions::from_str(url)
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        // A connection given back while sqlx still counts a transaction on it is closed, not
        // pooled: SQLite rolls a transaction back by itself on SQLITE_FULL or SQLITE_IOERR, sqlx's
        // ROLLBACK then fails ("no transaction is active") and leaves its depth at 1, and the
        // connection's next `begin` would be a SAVEPOINT whose ROLLBACK TO keeps a write
        // transaction open for good (every other writer "database is locked", and writes
        // "committed" on it are never committed).
        let pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .after_release(|connection, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(connection)) })
            });
        let pool = match backend {
            Backend::Sqlite => {
                pool_options
                    .max_connections(4)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; a busy writer waits instead of failing.
                            connection
                                .execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                pool_options
                    .max_connections(16)
                    .connect_with(options)
                    .await?
            }
        };
        let (writer, queue) = tokio::sync::mpsc::channel(1024);
        let item_cache = (backend == Backend::Sqlite).then(Default::default);
        let writer_metrics = WriterMetrics::default();
        tokio::spawn(resources::run_writer(
            pool.clone(),
            queue,
            item_cache.clone(),
            writer_metrics.clone(),
        ));
        let store = Store {
            pool,
            backend,
            writer,
            item_cache,
            writer_metrics,
        };
        migrations::apply(&store).await?;
        if let Some(cache) = &store.item_cache {
            tokio::spawn(item_cache::watch(store.pool.clone(), cache.clone()));
        }
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What the writer measures of its group commits.
    pub fn writer_metrics(&self) -> &WriterMetrics {
        &self.writer_metrics
    }

    /// Cosmos items in the point-read cache (SQLite only; `None` on PostgreSQL, which has none).
    pub fn item_cache_entries(&self) -> Option<usize> {
        self.item_cache.as_ref().map(|cache| cache.len())
    }

    /// One round trip to the database (`SELECT 1` on a pooled connection), for readiness checks;
    /// the caller bounds how long it may take.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pool.execute("SELECT 1").await?;
        Ok(())
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Reads one value of the `meta` table.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value.map(|(value,)| value))
    }
}
