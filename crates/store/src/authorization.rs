//! Role assignments, custom role definitions (stored as the JSON of their `properties`), and the
//! `rbac` counter that every authorization change bumps in the same transaction: a server that
//! sees the counter move rebuilds its RBAC index, so a change made through any server is enforced
//! by all of them.

use openmi_model::directory::{role_guid, RoleAssignment};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::directory::{parse, parse_optional};
use crate::{Store, StoreError};

/// A custom role definition as stored: its GUID, name and `properties` JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoleDefinition {
    pub id: String,
    pub role_name: String,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const DEFINITION_COLUMNS: &str = "id, role_name, body, created_at, updated_at";

fn definition_from_row(row: &AnyRow) -> Result<StoredRoleDefinition, StoreError> {
    Ok(StoredRoleDefinition {
        id: row.try_get("id")?,
        role_name: row.try_get("role_name")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const ASSIGNMENT_COLUMNS: &str =
    "name, scope, role_definition_id, principal_id, principal_type, description, created_at, created_by, updated_at, updated_by";

fn assignment_from_row(row: &AnyRow) -> Result<RoleAssignment, StoreError> {
    let created_at: i64 = row.try_get("created_at")?;
    Ok(RoleAssignment {
        name: row.try_get("name")?,
        scope: row.try_get("scope")?,
        role_definition_id: row.try_get("role_definition_id")?,
        principal_id: parse(&row.try_get::<String, _>("principal_id")?, "principal id")?,
        principal_type: row.try_get("principal_type")?,
        description: row.try_get("description")?,
        created_at,
        created_by: parse_optional(row.try_get("created_by")?, "creator id")?,
        updated_at: row
            .try_get::<Option<i64>, _>("updated_at")?
            .unwrap_or(created_at),
        updated_by: parse_optional(row.try_get("updated_by")?, "updater id")?,
    })
}

/// How many change-log rows are kept: a server more changes behind rebuilds its snapshot.
pub const RBAC_LOG_RETAINED: i64 = 10_000;

/// One authorization change, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacChange {
    /// An assignment was made (principal, role GUID, scope).
    Assigned {
        principal_id: String,
        role_id: String,
        scope: String,
    },
    /// An assignment was deleted.
    Unassigned {
        principal_id: String,
        role_id: String,
        scope: String,
    },
    /// A custom role definition was created, changed or deleted.
    Role { role_id: String },
}

/// A change-log row: version, kind, principal, role, scope.
type LogRow = (i64, String, Option<String>, Option<String>, Option<String>);

/// Bumps the `rbac` counter and logs `change` under the new value, in the caller's transaction.
async fn bump(
    transaction: &mut Transaction<'_, Any>,
    change: RbacChange,
) -> Result<(), StoreError> {
    let (version,): (i64,) =
        sqlx::query_as("UPDATE counters SET value = value + 1 WHERE name = 'rbac' RETURNING value")
            .fetch_one(&mut **transaction)
            .await?;
    let (kind, principal, role, scope) = match change {
        RbacChange::Assigned {
            principal_id,
            role_id,
            scope,
        } => ("assigned", Some(principal_id), role_id, Some(scope)),
        RbacChange::Unassigned {
            principal_id,
            role_id,
            scope,
        } => ("unassigned", Some(principal_id), role_id, Some(scope)),
        RbacChange::Role { role_id } => ("role", None, role_id, None),
    };
    sqlx::query("INSERT INTO rbac_changes (version, kind, principal_id, role_id, scope) VALUES ($1, $2, $3, $4, $5)")
        .bind(version)
        .bind(kind)
        .bind(principal)
        .bind(role)
        .bind(scope)
        .execute(&mut **transaction)
        .await?;
    sqlx::query("DELETE FROM rbac_changes WHERE version <= $1")
        .bind(version - RBAC_LOG_RETAINED)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

pub(crate) async fn insert_role_assignment(
    transaction: &mut Transaction<'_, Any>,
    assignment: &RoleAssignment,
) -> Result<(), StoreError> {
    sqlx::query(&format!("INSERT INTO role_assignments ({ASSIGNMENT_COLUMNS}, scope_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"))
        .bind(assignment.name.clone())
        .bind(assignment.scope.clone())
        .bind(assignment.role_definition_id.clone())
        .bind(assignment.principal_id.to_string())
        .bind(assignment.principal_type.clone())
        .bind(assignment.description.clone())
        .bind(assignment.created_at)
        .bind(assignment.created_by.map(|id| id.to_string()))
        .bind(assignment.updated_at)
        .bind(assignment.updated_by.map(|id| id.to_string()))
        .bind(assignment.scope.trim_end_matches('/').to_lowercase())
        .execute(&mut **transaction)
        .await?;
    bump(
        transaction,
        RbacChange::Assigned {
            principal_id: assignment.principal_id.to_string(),
            role_id: role_guid(&assignment.role_definition_id),
            scope: assignment.scope.clone(),
        },
    )
    .await
}

impl Store {
    /// The authorization change counter.
    pub async fn rbac_version(&self) -> Result<i64, StoreError> {
        let (value,): (i64,) = sqlx::query_as("SELECT value FROM counters WHERE name = 'rbac'")
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }

    /// Every role assignment (to build the RBAC index).
    pub async fn role_assignments(&self) -> Result<Vec<RoleAssignment>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments ORDER BY created_at, name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(assignment_from_row).collect()
    }

    /// Whether any assignment names the role with this GUID (one row read at most).
    pub async fn role_in_use(&self, role_guid: &str) -> Result<bool, StoreError> {
        let found: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM role_assignments WHERE lower(role_definition_id) LIKE $1 LIMIT 1",
        )
        .bind(format!("%/{}", role_guid.to_lowercase()))
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Every role assignment as the RBAC snapshot needs it: (principal id, role definition id,
    /// scope key), handed to `each` row by row. One statement, so one consistent read; rows are
    /// streamed, so memory does not grow with the table (and no page query walks the name
    /// index back into the table, as paging by name does on SQLite). Returns the row count.
    pub async fn each_role_assignment(
        &self,
        mut each: impl FnMut(&str, &str, &str),
    ) -> Result<u64, StoreError> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query_as::<_, (String, String, String)>(
            "SELECT principal_id, role_definition_id, scope_key FROM role_assignments",
        )
        .fetch(&self.pool);
        let mut count = 0;
        while let Some((principal, role, scope)) = rows.try_next().await? {
            each(&principal, &role, &scope);
            count += 1;
        }
        Ok(count)
    }

    /// The logged changes after `version`, oldest first (at most `limit`), with their versions.
    pub async fn rbac_changes_since(
        &self,
        version: i64,
        limit: i64,
    ) -> Result<Vec<(i64, RbacChange)>, StoreError> {
        let rows: Vec<LogRow> = sqlx::query_as(
            "SELECT version, kind, principal_id, role_id, scope FROM rbac_changes WHERE version > $1 ORDER BY version LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(version, kind, principal, role, scope)| {
                let role_id = role.unwrap_or_default();
                let change = match kind.as_str() {
                    "assigned" | "unassigned" => {
                        let principal_id = principal.ok_or_else(|| {
                            StoreError::Corrupt(format!("rbac change {version} without principal"))
                        })?;
                        let scope = scope.unwrap_or_default();
                        if kind == "assigned" {
                            RbacChange::Assigned {
                                principal_id,
                                role_id,
                                scope,
                            }
                        } else {
                            RbacChange::Unassigned {
                                principal_id,
                                role_id,
                                scope,
                            }
                        }
                    }
                    "role" => RbacChange::Role { role_id },
                    other => {
                        return Err(StoreError::Corrupt(format!("rbac change kind '{other}'")))
                    }
                };
                Ok((version, change))
            })
            .collect()
    }

    /// One page of the assignments at any of `at` (scope keys) or, when `below` is given, at a
    /// scope under that key; optionally of one principal; by name after `after`.
    pub async fn role_assignments_page(
        &self,
        at: &[String],
        below: Option<&str>,
        principal: Option<openmi_model::ObjectId>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<RoleAssignment>, StoreError> {
        let placeholders: Vec<String> = (0..at.len()).map(|i| format!("${}", i + 5)).collect();
        let at_clause = if placeholders.is_empty() {
            "1 = 0".to_string()
        } else {
            format!("scope_key IN ({})", placeholders.join(", "))
        };
        let sql = format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE ({at_clause} OR ($1 <> '' AND substr(scope_key, 1, length($1)) = $1)) AND ($2 = '' OR principal_id = $2) AND name > $3 ORDER BY name LIMIT $4"
        );
        let mut query = sqlx::query(&sql)
            .bind(below.unwrap_or_default().to_string())
            .bind(principal.map(|id| id.to_string()).unwrap_or_default())
            .bind(after.to_string())
            .bind(limit);
        for key in at {
            query = query.bind(key.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(assignment_from_row).collect()
    }

    /// One role assignment by name (GUID).
    pub async fn role_assignment(&self, name: &str) -> Result<Option<RoleAssignment>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE name = $1"
        ))
        .bind(name.to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(assignment_from_row).transpose()
    }

    /// Role assignments of a principal.
    pub async fn role_assignments_of(
        &self,
        principal_id: openmi_model::ObjectId,
    ) -> Result<Vec<RoleAssignment>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE principal_id = $1 ORDER BY created_at, name"))
            .bind(principal_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(assignment_from_row).collect()
    }

    /// Records a role assignment (its name must be new).
    pub async fn create_role_assignment(
        &self,
        assignment: &RoleAssignment,
        audit: Option<&crate::AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        insert_role_assignment(&mut transaction, assignment).await?;
        crate::audit::insert_one(&mut transaction, audit).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a role assignment; returns whether it existed.
    pub async fn delete_role_assignment(
        &self,
        name: &str,
        audit: Option<&crate::AuditRecord>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let deleted: Option<(String, String, String)> = sqlx::query_as(
            "DELETE FROM role_assignments WHERE name = $1 RETURNING principal_id, role_definition_id, scope",
        )
        .bind(name.to_lowercase())
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some((principal_id, role_definition_id, scope)) = &deleted {
            bump(
                &mut transaction,
                RbacChange::Unassigned {
                    principal_id: principal_id.clone(),
                    role_id: role_guid(role_definition_id),
                    scope: scope.clone(),
                },
            )
            .await?;
            crate::audit::insert_one(&mut transaction, audit).await?;
        }
        transaction.commit().await?;
        Ok(deleted.is_some())
    }

    /// Every custom role definition (to build the RBAC snapshot).
    pub async fn role_definitions(&self) -> Result<Vec<StoredRoleDefinition>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEFINITION_COLUMNS} FROM role_definitions ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(definition_from_row).collect()
    }

    /// One page of the custom role definitions by id (lower-case GUID), after `after`.
    pub async fn role_definitions_page(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<StoredRoleDefinition>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEFINITION_COLUMNS} FROM role_definitions WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(definition_from_row).collect()
    }

    /// The custom role definition with this id.
    pub async fn role_definition(
        &self,
        id: &str,
    ) -> Result<Option<StoredRoleDefinition>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEFINITION_COLUMNS} FROM role_definitions WHERE id = $1"
        ))
        .bind(id.to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(definition_from_row).transpose()
    }

    /// A custom role definition named `name` (case-insensitively) other than `except_id`.
    pub async fn role_definition_named(
        &self,
        name: &str,
        except_id: &str,
    ) -> Result<Option<StoredRoleDefinition>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEFINITION_COLUMNS} FROM role_definitions WHERE lower(role_name) = lower($1) AND id <> $2 ORDER BY id LIMIT 1"
        ))
        .bind(name.to_string())
        .bind(except_id.to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(definition_from_row).transpose()
    }

    /// Creates or replaces a custom role definition.
    pub async fn put_role_definition(
        &self,
        definition: &StoredRoleDefinition,
        audit: Option<&crate::AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO role_definitions (id, role_name, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET role_name = excluded.role_name, body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(definition.id.clone())
        .bind(definition.role_name.clone())
        .bind(definition.body.clone())
        .bind(definition.created_at)
        .bind(definition.updated_at)
        .execute(&mut *transaction)
        .await?;
        bump(
            &mut transaction,
            RbacChange::Role {
                role_id: definition.id.clone(),
            },
        )
        .await?;
        crate::audit::insert_one(&mut transaction, audit).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a custom role definition; returns whether it existed.
    pub async fn delete_role_definition(
        &self,
        id: &str,
        audit: Option<&crate::AuditRecord>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM role_definitions WHERE id = $1")
            .bind(id.to_lowercase())
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if deleted > 0 {
            bump(
                &mut transaction,
                RbacChange::Role {
                    role_id: id.to_lowercase(),
                },
            )
            .await?;
            crate::audit::insert_one(&mut transaction, audit).await?;
        }
        transaction.commit().await?;
        Ok(deleted > 0)
    }
}
