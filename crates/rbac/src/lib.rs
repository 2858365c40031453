//! Role-based access control as Azure evaluates it: role definitions (the built-in ones with
//! Azure's GUIDs, and custom ones), assignments at a scope inherited downward, actions with `*`
//! wildcards and notActions, matched case-insensitively.
//!
//! **Architecture invariant:** no I/O, no async, no clock. A decision is a pure function of a
//! `Snapshot`, which indexes assignments by principal, so a decision costs a hash lookup plus a
//! walk over that principal's few assignments, however many assignments exist in total.

pub mod builtin;
mod pattern;

use std::collections::HashMap;
use std::sync::Arc;

use openmi_model::ObjectId;

pub use pattern::ActionPattern;

/// One `permissions[]` block of a role definition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permission {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
}

/// A role definition (`Microsoft.Authorization/roleDefinitions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    /// The role's GUID (the last segment of its id), lower case.
    pub id: String,
    pub role_name: String,
    pub description: String,
    /// `BuiltInRole` or `CustomRole`.
    pub role_type: String,
    pub permissions: Vec<Permission>,
    pub assignable_scopes: Vec<String>,
}

/// A role assignment as the index needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub principal_id: ObjectId,
    /// The role's GUID, lower case.
    pub role_id: String,
    /// The scope, e.g. `/subscriptions/{s}/resourceGroups/{g}` (any casing).
    pub scope: String,
}

/// A permission block compiled for matching.
#[derive(Debug, Clone)]
struct CompiledPermission {
    actions: Vec<ActionPattern>,
    not_actions: Vec<ActionPattern>,
    data_actions: Vec<ActionPattern>,
    not_data_actions: Vec<ActionPattern>,
}

/// A role compiled for matching.
#[derive(Debug, Clone)]
pub struct CompiledRole {
    permissions: Vec<CompiledPermission>,
}

impl CompiledRole {
    /// Compiles a definition.
    pub fn new(definition: &RoleDefinition) -> CompiledRole {
        let compile = |patterns: &[String]| {
            patterns
                .iter()
                .map(|pattern| ActionPattern::new(pattern))
                .collect()
        };
        CompiledRole {
            permissions: definition
                .permissions
                .iter()
                .map(|permission| CompiledPermission {
                    actions: compile(&permission.actions),
                    not_actions: compile(&permission.not_actions),
                    data_actions: compile(&permission.data_actions),
                    not_data_actions: compile(&permission.not_data_actions),
                })
                .collect(),
        }
    }

    /// Whether the role grants a control-plane `action` (lower case): some block lists it in
    /// `actions` and not in its `notActions`.
    pub fn grants(&self, action: &str) -> bool {
        self.permissions.iter().any(|permission| {
            permission
                .actions
                .iter()
                .any(|pattern| pattern.matches(action))
                && !permission
                    .not_actions
                    .iter()
                    .any(|pattern| pattern.matches(action))
        })
    }

    /// Whether the role grants a data-plane action (lower case).
    pub fn grants_data(&self, action: &str) -> bool {
        self.permissions.iter().any(|permission| {
            permission
                .data_actions
                .iter()
                .any(|pattern| pattern.matches(action))
                && !permission
                    .not_data_actions
                    .iter()
                    .any(|pattern| pattern.matches(action))
        })
    }
}

/// Normalises a scope for comparison: lower case, no trailing slash (the root scope stays `/`).
pub fn scope_key(scope: &str) -> String {
    let trimmed = scope.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_lowercase()
    }
}

/// Whether `ancestor` (a scope key) is `scope` (a scope key) or above it.
pub fn scope_contains(ancestor: &str, scope: &str) -> bool {
    ancestor == "/"
        || (scope.starts_with(ancestor)
            && (scope.len() == ancestor.len()
                || scope.as_bytes().get(ancestor.len()) == Some(&b'/')))
}

/// A principal's grants: `(scope key, role)` pairs.
type Grants = Vec<(Box<str>, Arc<CompiledRole>)>;

/// An immutable index of definitions and assignments; swap a new one in after every change.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    roles: HashMap<String, Arc<CompiledRole>>,
    // Invariant: scope keys are normalised with `scope_key`.
    by_principal: HashMap<ObjectId, Grants>,
    assignment_count: usize,
}

impl Snapshot {
    /// Builds the index. Assignments of unknown roles are kept out (they grant nothing).
    pub fn build(definitions: &[RoleDefinition], assignments: &[Assignment]) -> Snapshot {
        let roles: HashMap<String, Arc<CompiledRole>> = definitions
            .iter()
            .map(|definition| {
                (
                    definition.id.to_lowercase(),
                    Arc::new(CompiledRole::new(definition)),
                )
            })
            .collect();
        let mut by_principal: HashMap<ObjectId, Grants> = HashMap::new();
        let mut assignment_count = 0;
        for assignment in assignments {
            if let Some(role) = roles.get(&assignment.role_id.to_lowercase()) {
                by_principal
                    .entry(assignment.principal_id)
                    .or_default()
                    .push((scope_key(&assignment.scope).into_boxed_str(), role.clone()));
                assignment_count += 1;
            }
        }
        Snapshot {
            roles,
            by_principal,
            assignment_count,
        }
    }

    /// Number of indexed assignments.
    pub fn assignment_count(&self) -> usize {
        self.assignment_count
    }

    /// The compiled role with this GUID.
    pub fn role(&self, role_id: &str) -> Option<&Arc<CompiledRole>> {
        self.roles.get(&role_id.to_lowercase())
    }

    /// Whether `principal` may perform control-plane `action` at `scope`. `action` and `scope` may
    /// be in any casing.
    pub fn is_allowed(&self, principal: ObjectId, action: &str, scope: &str) -> bool {
        let action = action.to_ascii_lowercase();
        let scope = scope_key(scope);
        self.is_allowed_normalized(principal, &action, &scope)
    }

    /// `is_allowed` for an action already in lower case and a scope already normalised.
    pub fn is_allowed_normalized(&self, principal: ObjectId, action: &str, scope: &str) -> bool {
        self.by_principal
            .get(&principal)
            .is_some_and(|assignments| {
                assignments
                    .iter()
                    .any(|(assigned, role)| scope_contains(assigned, scope) && role.grants(action))
            })
    }

    /// Whether `principal` may perform data-plane `action` at `scope`.
    pub fn is_data_allowed(&self, principal: ObjectId, action: &str, scope: &str) -> bool {
        let action = action.to_ascii_lowercase();
        let scope = scope_key(scope);
        self.by_principal
            .get(&principal)
            .is_some_and(|assignments| {
                assignments.iter().any(|(assigned, role)| {
                    scope_contains(assigned, &scope) && role.grants_data(&action)
                })
            })
    }

    /// Whether `principal` holds any assignment at `scope` or above it, or below it (so that a
    /// listing at `scope` may hold something it can read).
    pub fn has_assignment_near(&self, principal: ObjectId, scope: &str) -> bool {
        let scope = scope_key(scope);
        self.by_principal
            .get(&principal)
            .is_some_and(|assignments| {
                assignments.iter().any(|(assigned, _)| {
                    scope_contains(assigned, &scope) || scope_contains(&scope, assigned)
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;

    fn snapshot(assignments: &[(ObjectId, &str, &str)]) -> Snapshot {
        let assignments: Vec<Assignment> = assignments
            .iter()
            .map(|(principal, role, scope)| Assignment {
                principal_id: *principal,
                role_id: role.to_string(),
                scope: scope.to_string(),
            })
            .collect();
        Snapshot::build(&builtin::definitions(), &assignments)
    }

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

    #[test]
    fn assignments_are_inherited_downward_only() {
        let reader = ObjectId::new_random();
        let group = format!("{SUB}/resourceGroups/RG1");
        let index = snapshot(&[(reader, builtin::READER, &group)]);
        let vm = format!("{SUB}/resourcegroups/rg1/providers/Microsoft.Compute/virtualMachines/vm");
        assert!(index.is_allowed(reader, "Microsoft.Compute/virtualMachines/read", &vm));
        assert!(index.is_allowed(
            reader,
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            &group
        ));
        assert!(!index.is_allowed(reader, "Microsoft.Compute/virtualMachines/write", &vm));
        assert!(
            !index.is_allowed(
                reader,
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                SUB
            ),
            "no upward inheritance"
        );
        assert!(
            !index.is_allowed(
                reader,
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                &format!("{SUB}/resourceGroups/rg10")
            ),
            "prefix is not an ancestor"
        );
        assert!(!index.is_allowed(
            ObjectId::new_random(),
            "Microsoft.Compute/virtualMachines/read",
            &vm
        ));
    }

    #[test]
    fn built_in_roles_behave_as_azure_documents() {
        let (owner, contributor, operator, vm_contributor, mi_contributor, uaa) = (
            ObjectId::new_random(),
            ObjectId::new_random(),
            ObjectId::new_random(),
            ObjectId::new_random(),
            ObjectId::new_random(),
            ObjectId::new_random(),
        );
        let index = snapshot(&[
            (owner, builtin::OWNER, SUB),
            (contributor, builtin::CONTRIBUTOR, SUB),
            (operator, builtin::MANAGED_IDENTITY_OPERATOR, SUB),
            (vm_contributor, builtin::VIRTUAL_MACHINE_CONTRIBUTOR, SUB),
            (mi_contributor, builtin::MANAGED_IDENTITY_CONTRIBUTOR, SUB),
            (uaa, builtin::USER_ACCESS_ADMINISTRATOR, SUB),
        ]);
        let assign = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action";
        let write_assignment = "Microsoft.Authorization/roleAssignments/write";
        assert!(index.is_allowed(owner, write_assignment, SUB));
        assert!(
            !index.is_allowed(contributor, write_assignment, SUB),
            "Contributor's notActions exclude Authorization writes"
        );
        assert!(index.is_allowed(contributor, "Microsoft.Compute/virtualMachines/write", SUB));
        assert!(
            index.is_allowed(operator, assign, SUB),
            "*/assign/action also grants the plain assign/action"
        );
        assert!(
            index.is_allowed(
                operator,
                "Microsoft.ManagedIdentity/userAssignedIdentities/read",
                SUB
            ),
            "*/read also grants the plain read"
        );
        assert!(!index.is_allowed(
            operator,
            "Microsoft.ManagedIdentity/userAssignedIdentities/write",
            SUB
        ));
        assert!(index.is_allowed(
            vm_contributor,
            "Microsoft.Compute/virtualMachines/write",
            SUB
        ));
        assert!(!index.is_allowed(vm_contributor, assign, SUB));
        assert!(
            index.is_allowed(
                mi_contributor,
                "microsoft.managedidentity/userassignedidentities/write",
                SUB
            ),
            "case-insensitive"
        );
        assert!(!index.is_allowed(mi_contributor, write_assignment, SUB));
        assert!(index.is_allowed(uaa, write_assignment, SUB));
        assert!(!index.is_allowed(uaa, "Microsoft.Compute/virtualMachines/write", SUB));
    }

    #[test]
    fn custom_roles_with_not_actions_deny_exactly_those() {
        let custom = RoleDefinition {
            id: "11111111-1111-1111-1111-111111111111".to_string(),
            role_name: "No VM delete".to_string(),
            description: String::new(),
            role_type: "CustomRole".to_string(),
            permissions: vec![Permission {
                actions: vec!["Microsoft.Compute/*".to_string()],
                not_actions: vec!["Microsoft.Compute/virtualMachines/delete".to_string()],
                ..Permission::default()
            }],
            assignable_scopes: vec![SUB.to_string()],
        };
        let principal = ObjectId::new_random();
        let index = Snapshot::build(
            &[custom],
            &[Assignment {
                principal_id: principal,
                role_id: "11111111-1111-1111-1111-111111111111".to_string(),
                scope: SUB.to_string(),
            }],
        );
        assert!(index.is_allowed(principal, "Microsoft.Compute/virtualMachines/write", SUB));
        assert!(!index.is_allowed(principal, "Microsoft.Compute/virtualMachines/delete", SUB));
        assert!(!index.is_allowed(principal, "Microsoft.Network/virtualNetworks/read", SUB));
    }
}
