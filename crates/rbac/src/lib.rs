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

/// 64-bit FNV-1a, fed byte by byte so every `/`-prefix of a scope is hashed in one pass.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// One assignment of a principal, 16 bytes, stored contiguously per principal so a decision walks
/// a small flat slice instead of chasing a heap string per assignment.
#[derive(Debug, Clone, Copy)]
struct Grant {
    /// `fnv` of the scope key; a match is confirmed against the interned string.
    scope_hash: u64,
    scope: u32,
    role: u32,
}

/// Most `/`-prefixes of a scope hashed; deeper scopes fall back to comparing every grant by string.
const MAX_DEPTH: usize = 16;

/// An immutable index of definitions and assignments; swap a new one in after every change.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    roles_by_id: HashMap<String, u32>,
    roles: Vec<Arc<CompiledRole>>,
    // Invariant: interned scope keys, normalised with `scope_key`; `Grant::scope` indexes them.
    scopes: Vec<Box<str>>,
    by_principal: HashMap<ObjectId, Box<[Grant]>>,
    assignment_count: usize,
}

impl Snapshot {
    /// Builds the index. Assignments of unknown roles are kept out (they grant nothing).
    pub fn build(definitions: &[RoleDefinition], assignments: &[Assignment]) -> Snapshot {
        let mut roles_by_id = HashMap::new();
        let mut roles = Vec::new();
        for definition in definitions {
            roles_by_id.insert(definition.id.to_lowercase(), roles.len() as u32);
            roles.push(Arc::new(CompiledRole::new(definition)));
        }
        let mut interned: HashMap<String, u32> = HashMap::new();
        let mut scopes: Vec<Box<str>> = Vec::new();
        let mut grouped: HashMap<ObjectId, Vec<Grant>> = HashMap::new();
        let mut assignment_count = 0;
        for assignment in assignments {
            let Some(&role) = roles_by_id.get(&assignment.role_id.to_lowercase()) else {
                continue;
            };
            let key = scope_key(&assignment.scope);
            let scope_hash = fnv(key.as_bytes());
            let scope = *interned.entry(key.clone()).or_insert_with(|| {
                scopes.push(key.into_boxed_str());
                (scopes.len() - 1) as u32
            });
            grouped
                .entry(assignment.principal_id)
                .or_default()
                .push(Grant {
                    scope_hash,
                    scope,
                    role,
                });
            assignment_count += 1;
        }
        let by_principal = grouped
            .into_iter()
            .map(|(principal, grants)| (principal, grants.into_boxed_slice()))
            .collect();
        Snapshot {
            roles_by_id,
            roles,
            scopes,
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
        self.roles_by_id
            .get(&role_id.to_lowercase())
            .and_then(|index| self.roles.get(*index as usize))
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
        self.any_grant_over(principal, scope, |role| role.grants(action))
    }

    /// Whether `principal` may perform data-plane `action` at `scope`.
    pub fn is_data_allowed(&self, principal: ObjectId, action: &str, scope: &str) -> bool {
        let action = action.to_ascii_lowercase();
        let scope = scope_key(scope);
        self.any_grant_over(principal, &scope, |role| role.grants_data(&action))
    }

    /// Whether some grant of `principal` at `scope` or above satisfies `check`.
    fn any_grant_over(
        &self,
        principal: ObjectId,
        scope: &str,
        check: impl Fn(&CompiledRole) -> bool,
    ) -> bool {
        let Some(grants) = self.by_principal.get(&principal) else {
            return false;
        };
        // Hashes of every ancestor-or-self of `scope`: the root, then each prefix ending before a
        // `/`, then the whole scope.
        let mut prefixes = [0u64; MAX_DEPTH + 2];
        let mut count = 0;
        prefixes[count] = fnv(b"/");
        count += 1;
        let mut hash = FNV_OFFSET;
        let bytes = scope.as_bytes();
        for (index, byte) in bytes.iter().enumerate() {
            if *byte == b'/' && index > 0 && count < prefixes.len() - 1 {
                prefixes[count] = hash;
                count += 1;
            }
            hash = (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
        }
        prefixes[count] = hash;
        count += 1;
        let deep = bytes.iter().filter(|byte| **byte == b'/').count() > MAX_DEPTH;
        grants.iter().any(|grant| {
            let candidate = deep || prefixes[..count].contains(&grant.scope_hash);
            candidate
                && self
                    .scopes
                    .get(grant.scope as usize)
                    .is_some_and(|assigned| scope_contains(assigned, scope))
                && self
                    .roles
                    .get(grant.role as usize)
                    .is_some_and(|role| check(role))
        })
    }

    /// Whether `principal` holds any assignment at, above or below `scope` (so that a listing at
    /// `scope` may hold something it can read).
    pub fn has_assignment_near(&self, principal: ObjectId, scope: &str) -> bool {
        let scope = scope_key(scope);
        self.by_principal.get(&principal).is_some_and(|grants| {
            grants.iter().any(|grant| {
                self.scopes
                    .get(grant.scope as usize)
                    .is_some_and(|assigned| {
                        scope_contains(assigned, &scope) || scope_contains(&scope, assigned)
                    })
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
