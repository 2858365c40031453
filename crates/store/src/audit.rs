//! The audit log: one row per recorded event (`audit_events`).
//!
//! A control-plane write carries its record into its own transaction (`ResourceChange::audit`,
//! the `audit` parameter of the directory and authorization writes), so the record exists exactly
//! when the write does. Events without a write of their own (tokens issued, failed sign-ins,
//! refused requests) are appended in batches through the same group-commit writer
//! (`Store::append_audit`). Lists are newest first, a page at a time after a position.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{Store, StoreError};

/// What kind of event a record is; each kind is read by its own API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// An ARM request that writes, deletes or acts (the Activity Log's Administrative category).
    Administrative,
    /// A Graph (directory) change: applications, service principals, users, credentials.
    Directory,
    /// A token request or password sign-in, successful or not (Graph's sign-in logs).
    SignIn,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Administrative => "administrative",
            AuditKind::Directory => "directory",
            AuditKind::SignIn => "signin",
        }
    }

    pub fn parse(text: &str) -> Option<AuditKind> {
        match text {
            "administrative" => Some(AuditKind::Administrative),
            "directory" => Some(AuditKind::Directory),
            "signin" => Some(AuditKind::SignIn),
            _ => None,
        }
    }
}

/// One audit event. Secrets never reach a record: callers put in names, ids and codes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// A GUID, the event's id in every API.
    pub id: String,
    /// Microseconds since the epoch.
    pub at: i64,
    pub kind: AuditKind,
    /// ARM's operation name (`Microsoft.ManagedIdentity/userAssignedIdentities/write`), Entra's
    /// activity name (`Add application`) or the grant (`client_credentials`, `managed_identity`).
    pub operation: String,
    /// `Succeeded` or `Failed`.
    pub status: String,
    /// The failure's code (ARM's error code, `AADSTS50126`...), or the HTTP status of a success.
    pub status_code: Option<String>,
    /// Object id of the caller (the principal a token was issued to, for sign-ins).
    pub caller_id: Option<String>,
    /// Sign-in name or application id of the caller, as the Activity Log's `caller` shows it.
    pub caller_name: Option<String>,
    pub subscription_id: Option<String>,
    /// The resource group's name, as the request spelled it.
    pub resource_group: Option<String>,
    /// The ARM id written, or the directory object changed, or the token's resource.
    pub resource_id: Option<String>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    /// A JSON object of kind-specific facts (HTTP method, application id, agent's VM...).
    pub details: String,
}

/// Which events a list returns; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub kinds: Vec<AuditKind>,
    /// From this time (microseconds, inclusive).
    pub from: Option<i64>,
    /// Until this time (microseconds, inclusive).
    pub to: Option<i64>,
    pub correlation_id: Option<String>,
    /// Caller's object id or name, case-insensitively.
    pub caller: Option<String>,
    pub status: Option<String>,
    pub subscription_id: Option<String>,
    /// Resource group name, case-insensitively.
    pub resource_group: Option<String>,
    /// This resource id or anything under it, case-insensitively.
    pub resource_id: Option<String>,
    /// Operations starting with this text, case-insensitively (`Microsoft.Compute/`).
    pub operation_prefix: Option<String>,
    /// Exactly one of these operations (any when empty).
    pub operations: Vec<String>,
    /// This failure code (`AADSTS50126`).
    pub status_code: Option<String>,
    /// Events older than this position (`at`, `id`): the continuation of the previous page.
    pub before: Option<(i64, String)>,
}

const COLUMNS: &str = "id, at, kind, operation, status, status_code, caller_id, caller_name, subscription_id, resource_group, resource_id, correlation_id, request_id, client_ip, details";

fn record_from_row(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(AuditRecord {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        kind: AuditKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown audit kind '{kind}'")))?,
        operation: row.try_get("operation")?,
        status: row.try_get("status")?,
        status_code: row.try_get("status_code")?,
        caller_id: row.try_get("caller_id")?,
        caller_name: row.try_get("caller_name")?,
        subscription_id: row.try_get("subscription_id")?,
        resource_group: row.try_get("resource_group")?,
        resource_id: row.try_get("resource_id")?,
        correlation_id: row.try_get("correlation_id")?,
        request_id: row.try_get("request_id")?,
        client_ip: row.try_get("client_ip")?,
        details: row.try_get("details")?,
    })
}

/// Rows per INSERT statement. Small: sqlx's SQLite driver looks each `$n` up among the
/// statement's parameters (`sqlite3_bind_parameter_name`), so a statement's binding costs the
/// square of its parameters; 100 rows (1 500 parameters) cost more than the rest of an append.
const ROWS_PER_INSERT: usize = 8;

/// Inserts `records` in the caller's transaction.
pub(crate) async fn insert(
    transaction: &mut Transaction<'_, Any>,
    records: &[&AuditRecord],
) -> Result<(), StoreError> {
    for chunk in records.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| {
                let first = row * 15;
                let placeholders: Vec<String> = (1..=15)
                    .map(|column| format!("${}", first + column))
                    .collect();
                format!("({})", placeholders.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for record in chunk {
            query = query
                .bind(record.id.clone())
                .bind(record.at)
                .bind(record.kind.as_str())
                .bind(record.operation.clone())
                .bind(record.status.clone())
                .bind(record.status_code.clone())
                .bind(record.caller_id.clone())
                .bind(record.caller_name.clone())
                .bind(record.subscription_id.clone())
                .bind(record.resource_group.clone())
                .bind(record.resource_id.clone())
                .bind(record.correlation_id.clone())
                .bind(record.request_id.clone())
                .bind(record.client_ip.clone())
                .bind(record.details.clone());
        }
        query.execute(&mut **transaction).await?;
    }
    Ok(())
}

/// Inserts the record of a write, if it has one, in the write's transaction.
pub(crate) async fn insert_one(
    transaction: &mut Transaction<'_, Any>,
    record: Option<&AuditRecord>,
) -> Result<(), StoreError> {
    match record {
        Some(record) => insert(transaction, &[record]).await,
        None => Ok(()),
    }
}

impl Store {
    /// Appends events that record no write of their own (sign-ins, refused requests), through
    /// the group-commit writer: they share the transaction and the fsync of whatever is waiting.
    pub async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(crate::resources::PendingChange::Audit { records, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".to_string()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".to_string()))?
    }

    /// Up to `limit` events matching `filter`, newest first.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut parameters: Vec<Parameter> = Vec::new();
        // Adds a parameter; returns its placeholder.
        let mut bind = |parameter: Parameter| {
            parameters.push(parameter);
            format!("${}", parameters.len())
        };
        if !filter.kinds.is_empty() {
            let kinds: Vec<String> = filter
                .kinds
                .iter()
                .map(|kind| bind(Parameter::Text(kind.as_str().to_string())))
                .collect();
            conditions.push(format!("kind IN ({})", kinds.join(", ")));
        }
        if let Some(correlation_id) = &filter.correlation_id {
            let value = bind(Parameter::Text(correlation_id.to_lowercase()));
            conditions.push(format!("lower(correlation_id) = {value}"));
        }
        if let Some(caller) = &filter.caller {
            // Each placeholder once: SQLite's and PostgreSQL's drivers number them differently
            // when one repeats.
            let by_id = bind(Parameter::Text(caller.to_lowercase()));
            let by_name = bind(Parameter::Text(caller.to_lowercase()));
            conditions.push(format!(
                "(lower(caller_id) = {by_id} OR lower(caller_name) = {by_name})"
            ));
        }
        if let Some(status) = &filter.status {
            let value = bind(Parameter::Text(status.to_lowercase()));
            conditions.push(format!("lower(status) = {value}"));
        }
        if let Some(subscription_id) = &filter.subscription_id {
            let value = bind(Parameter::Text(subscription_id.to_lowercase()));
            conditions.push(format!("lower(subscription_id) = {value}"));
        }
        if let Some(group) = &filter.resource_group {
            let value = bind(Parameter::Text(group.to_lowercase()));
            conditions.push(format!("lower(resource_group) = {value}"));
        }
        if let Some(resource_id) = &filter.resource_id {
            let id = resource_id.trim_end_matches('/').to_lowercase();
            let below = format!("{id}/");
            let length = below.chars().count();
            let exact = bind(Parameter::Text(id));
            let under = bind(Parameter::Text(below));
            conditions.push(format!(
                "(lower(resource_id) = {exact} OR substr(lower(resource_id), 1, {length}) = {under})"
            ));
        }
        if let Some(prefix) = &filter.operation_prefix {
            let prefix = prefix.to_lowercase();
            let length = prefix.chars().count();
            let value = bind(Parameter::Text(prefix));
            conditions.push(format!("substr(lower(operation), 1, {length}) = {value}"));
        }
        if !filter.operations.is_empty() {
            let operations: Vec<String> = filter
                .operations
                .iter()
                .map(|operation| bind(Parameter::Text(operation.clone())))
                .collect();
            conditions.push(format!("operation IN ({})", operations.join(", ")));
        }
        if let Some(code) = &filter.status_code {
            let value = bind(Parameter::Text(code.clone()));
            conditions.push(format!("status_code = {value}"));
        }
        if let Some(from) = filter.from {
            let value = bind(Parameter::Number(from));
            conditions.push(format!("at >= {value}"));
        }
        if let Some(to) = filter.to {
            let value = bind(Parameter::Number(to));
            conditions.push(format!("at <= {value}"));
        }
        if let Some((at, id)) = &filter.before {
            let older = bind(Parameter::Number(*at));
            let same = bind(Parameter::Number(*at));
            let id = bind(Parameter::Text(id.clone()));
            conditions.push(format!("(at < {older} OR (at = {same} AND id < {id}))"));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events {where_clause} ORDER BY at DESC, id DESC LIMIT {}",
            limit.clamp(1, 10_000)
        );
        let mut query = sqlx::query(&sql);
        for parameter in parameters {
            query = match parameter {
                Parameter::Text(value) => query.bind(value),
                Parameter::Number(value) => query.bind(value),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Deletes events older than `before` (microseconds); returns how many went.
    pub async fn prune_audit(&self, before: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

enum Parameter {
    Text(String),
    Number(i64),
}
