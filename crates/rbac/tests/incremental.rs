//! An incrementally changed snapshot decides exactly as one built from scratch over the same
//! assignments and roles, on random sequences of changes (issue 19).

use openmi_model::ObjectId;
use openmi_rbac::{builtin, Assignment, Permission, RoleDefinition, Snapshot};
use proptest::prelude::*;

const SCOPES: &[&str] = &[
    "/",
    "/subscriptions/s1",
    "/subscriptions/s1/resourceGroups/g1",
    "/subscriptions/S1/resourcegroups/G1/providers/Microsoft.Compute/virtualMachines/vm1",
    "/subscriptions/s1/resourceGroups/g2",
    "/subscriptions/s1/resourceGroups/g10",
    "/subscriptions/s2",
];

const ACTIONS: &[&str] = &[
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
    "Microsoft.Custom/things/read",
];

const CUSTOM: &str = "0f0f0f0f-0000-4000-8000-000000000001";

fn roles() -> Vec<String> {
    [
        builtin::OWNER,
        builtin::READER,
        builtin::CONTRIBUTOR,
        builtin::MANAGED_IDENTITY_OPERATOR,
        CUSTOM,
    ]
    .iter()
    .map(|id| id.to_string())
    .collect()
}

fn custom_role(actions: &[&str]) -> RoleDefinition {
    RoleDefinition {
        id: CUSTOM.to_string(),
        role_name: "custom".to_string(),
        description: String::new(),
        role_type: "CustomRole".to_string(),
        permissions: vec![Permission {
            actions: actions.iter().map(|a| a.to_string()).collect(),
            ..Permission::default()
        }],
        assignable_scopes: vec!["/".to_string()],
    }
}

#[derive(Debug, Clone)]
enum Change {
    Insert {
        principal: usize,
        role: usize,
        scope: usize,
    },
    Remove {
        principal: usize,
        role: usize,
        scope: usize,
    },
    RedefineCustom(bool),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (0..6usize, 0..5usize, 0..SCOPES.len()).prop_map(|(principal, role, scope)| Change::Insert { principal, role, scope }),
        3 => (0..6usize, 0..5usize, 0..SCOPES.len()).prop_map(|(principal, role, scope)| Change::Remove { principal, role, scope }),
        1 => any::<bool>().prop_map(Change::RedefineCustom),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn incremental_matches_rebuild(changes in proptest::collection::vec(change(), 1..120)) {
        let principals: Vec<ObjectId> = (0..6).map(|_| ObjectId::new_random()).collect();
        let roles = roles();
        let mut custom = custom_role(&["Microsoft.Custom/*"]);
        let mut definitions = builtin::definitions();
        definitions.push(custom.clone());
        let mut incremental = Snapshot::build(&definitions, &[]);
        let mut current: Vec<Assignment> = Vec::new();
        for change in changes {
            match change {
                Change::Insert { principal, role, scope } => {
                    let assignment = Assignment { principal_id: principals[principal], role_id: roles[role].clone(), scope: SCOPES[scope].to_string() };
                    let key = openmi_rbac::scope_key(&assignment.scope);
                    let present = current.iter().any(|a| a.principal_id == assignment.principal_id && a.role_id == assignment.role_id && openmi_rbac::scope_key(&a.scope) == key);
                    prop_assert_eq!(incremental.insert(&assignment), !present);
                    if !present { current.push(assignment); }
                }
                Change::Remove { principal, role, scope } => {
                    let key = openmi_rbac::scope_key(SCOPES[scope]);
                    let position = current.iter().position(|a| a.principal_id == principals[principal] && a.role_id == roles[role] && openmi_rbac::scope_key(&a.scope) == key);
                    let assignment = Assignment { principal_id: principals[principal], role_id: roles[role].clone(), scope: SCOPES[scope].to_uppercase() };
                    prop_assert_eq!(incremental.remove(&assignment), position.is_some());
                    if let Some(position) = position { current.remove(position); }
                }
                Change::RedefineCustom(write) => {
                    custom = custom_role(if write { &["Microsoft.Custom/*", "Microsoft.Compute/*/write"] } else { &["Microsoft.Custom/things/read"] });
                    incremental.put_role(&custom);
                    if let Some(slot) = definitions.iter_mut().find(|d| d.id == CUSTOM) { *slot = custom.clone(); }
                }
            }
            let rebuilt = Snapshot::build(&definitions, &current);
            prop_assert_eq!(incremental.assignment_count(), rebuilt.assignment_count());
            for principal in &principals {
                for scope in SCOPES {
                    prop_assert_eq!(incremental.has_assignment_near(*principal, scope), rebuilt.has_assignment_near(*principal, scope));
                    for action in ACTIONS {
                        prop_assert_eq!(
                            incremental.is_allowed(*principal, action, scope),
                            rebuilt.is_allowed(*principal, action, scope),
                            "principal {:?} action {} scope {}", principal, action, scope
                        );
                    }
                }
            }
        }
    }

    /// Many principals, so the table grows and backward-shift deletion runs over long probe runs;
    /// many changes, so the arena is compacted.
    #[test]
    fn table_growth_deletion_and_compaction(order in proptest::collection::vec(0..400usize, 400..1200)) {
        let principals: Vec<ObjectId> = (0..400).map(|_| ObjectId::new_random()).collect();
        let definitions = builtin::definitions();
        let mut incremental = Snapshot::build(&definitions, &[]);
        let mut held = vec![false; principals.len()];
        let scope = "/subscriptions/s1/resourceGroups/g1";
        for index in order {
            let assignment = Assignment { principal_id: principals[index], role_id: builtin::READER.to_string(), scope: scope.to_string() };
            if held[index] { prop_assert!(incremental.remove(&assignment)); } else { prop_assert!(incremental.insert(&assignment)); }
            held[index] = !held[index];
        }
        for (index, principal) in principals.iter().enumerate() {
            prop_assert_eq!(incremental.is_allowed(*principal, "Microsoft.Compute/virtualMachines/read", scope), held[index]);
        }
        let live = held.iter().filter(|h| **h).count();
        prop_assert_eq!(incremental.assignment_count(), live);
        prop_assert!(incremental.arena_words() <= 2 * live * 4 + 1024 + 4, "garbage is compacted: {} words for {} grants", incremental.arena_words(), live);
    }
}
