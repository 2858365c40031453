//! Role-based access control as Azure evaluates it: role definitions (the built-in ones with
//! Azure's GUIDs, and custom ones), assignments at a scope inherited downward, actions with `*`
//! wildcards and notActions, matched case-insensitively.
//!
//! **Architecture invariant:** no I/O, no async, no clock. A decision is a pure function of a
//! `Snapshot`, which indexes assignments by principal, so a decision costs a hash lookup plus a
//! walk over that principal's few assignments, however many assignments exist in total.

pub mod builtin;
mod pattern;
mod scopes;

use std::collections::HashMap;
use std::sync::Arc;

use openmi_model::ObjectId;

pub use pattern::ActionPattern;
use scopes::ScopeTree;

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

/// The 32-bit tag of a scope key's hash: a filter, every match is confirmed on the string.
fn tag(hash: u64) -> u32 {
    (hash ^ (hash >> 32)) as u32
}

/// Most `/`-prefixes of a scope hashed; deeper scopes fall back to comparing every grant by string.
const MAX_DEPTH: usize = 16;

/// One slot of the principal table: a principal and where its grants are in `Snapshot::arena`.
/// 32 bytes, so a slot never straddles a cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    principal: (u64, u64),
    start: u32,
    // Invariant: 0 only for an empty slot; every principal in the table holds a grant.
    len: u32,
}

/// Words per grant in a principal's region: the tag, then (scope node, role).
const TAG_WORDS: usize = 1;
const PAYLOAD_WORDS: usize = 2;

/// An index of definitions and assignments, changed in place one assignment or role at a time.
///
/// Laid out for few cache misses at a million assignments: one open-addressing table of
/// principals (linear probing, at most half full), whose slot points at the principal's region
/// in one `u32` arena: first the 32-bit tags of its grants' scopes, scanned against the tags of
/// the target's ancestors, then per grant the interned scope (its node in `scopes`) and the
/// role. A denied decision usually touches one slot and one region line; an allowed one also
/// the scope segments it confirms (compared from the last one up, without building the key).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    roles_by_id: HashMap<String, u32>,
    roles: Vec<Arc<CompiledRole>>,
    // Invariant: a power of two in length (or empty), at most half full.
    slots: Vec<Slot>,
    occupied: usize,
    arena: Vec<u32>,
    /// Arena words no slot points at any more (left by `insert`/`remove`); compacted when they
    /// are more than half the arena.
    garbage: usize,
    // Invariant: every distinct scope key (normalised with `scope_key`) once, as a tree of
    // shared prefixes. Scopes are never dropped: their number is bounded by the scopes ever
    // assigned.
    scopes: ScopeTree,
    assignment_count: usize,
}

/// Builds a snapshot from assignments fed one at a time (a store read page by page), keeping
/// only the compact form: interned scopes and 12 bytes per grant.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    roles_by_id: HashMap<String, u32>,
    roles: Vec<Arc<CompiledRole>>,
    scopes: ScopeTree,
    // Per principal, in first-seen order: (tag, scope node, role).
    grouped: HashMap<(u64, u64), Vec<Grant>>,
    order: Vec<(u64, u64)>,
    assignment_count: usize,
}

impl SnapshotBuilder {
    pub fn new(definitions: &[RoleDefinition]) -> SnapshotBuilder {
        let mut builder = SnapshotBuilder::default();
        for definition in definitions {
            builder
                .roles_by_id
                .insert(definition.id.to_lowercase(), builder.roles.len() as u32);
            builder.roles.push(Arc::new(CompiledRole::new(definition)));
        }
        builder
    }

    /// Adds one assignment; assignments of unknown roles are kept out (they grant nothing).
    pub fn add(&mut self, assignment: &Assignment) {
        self.add_parts(
            assignment.principal_id,
            &assignment.role_id,
            &assignment.scope,
        );
    }

    /// `add` from borrowed parts (a store row as read): `role_id` the role's GUID, `scope` in any
    /// casing.
    pub fn add_parts(&mut self, principal: ObjectId, role_id: &str, scope: &str) {
        let role = match self.roles_by_id.get(role_id) {
            Some(&role) => role,
            None => match self.roles_by_id.get(&role_id.to_lowercase()) {
                Some(&role) => role,
                None => return,
            },
        };
        let key = scope_key(scope);
        let scope_tag = tag(fnv(key.as_bytes()));
        let node = self.scopes.intern(&key);
        let principal = principal.as_uuid().as_u64_pair();
        let order = &mut self.order;
        self.grouped
            .entry(principal)
            .or_insert_with(|| {
                order.push(principal);
                Vec::new()
            })
            .push([scope_tag, node, role]);
        self.assignment_count += 1;
    }

    pub fn finish(self) -> Snapshot {
        let capacity = if self.order.is_empty() {
            0
        } else {
            (self.order.len() * 2).next_power_of_two()
        };
        let occupied = self.order.len();
        let mut slots = vec![Slot::default(); capacity];
        let mut arena = Vec::with_capacity(self.assignment_count * (TAG_WORDS + PAYLOAD_WORDS));
        let mask = capacity.wrapping_sub(1);
        for principal in &self.order {
            let Some(grants) = self.grouped.get(principal) else {
                continue;
            };
            let start = arena.len() as u32;
            arena.extend(grants.iter().map(|grant| grant[0]));
            arena.extend(grants.iter().flat_map(|grant| [grant[1], grant[2]]));
            let mut index = slot_hash(*principal) as usize & mask;
            while slots[index].len != 0 {
                index = (index + 1) & mask;
            }
            slots[index] = Slot {
                principal: *principal,
                start,
                len: grants.len() as u32,
            };
        }
        let mut scopes = self.scopes;
        scopes.shrink_to_fit();
        Snapshot {
            roles_by_id: self.roles_by_id,
            roles: self.roles,
            slots,
            occupied,
            arena,
            garbage: 0,
            scopes,
            assignment_count: self.assignment_count,
        }
    }
}

/// Garbage (in arena words) below which the arena is never compacted.
const COMPACT_MIN_GARBAGE: usize = 1024;

/// One grant as the arena stores it: (scope tag, scope node, role).
type Grant = [u32; 3];

fn slot_hash(principal: (u64, u64)) -> u64 {
    // Object ids are random v4 UUIDs minted by the server: mixing their bits suffices.
    (principal.0 ^ principal.1.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Snapshot {
    /// Builds the index. Assignments of unknown roles are kept out (they grant nothing).
    pub fn build(definitions: &[RoleDefinition], assignments: &[Assignment]) -> Snapshot {
        let mut builder = SnapshotBuilder::new(definitions);
        for assignment in assignments {
            builder.add(assignment);
        }
        builder.finish()
    }

    // ---- incremental changes: one assignment or one role, no rebuild ----------------------

    /// Adds or replaces a role definition. Assignments of a replaced role follow its new
    /// permissions at once.
    pub fn put_role(&mut self, definition: &RoleDefinition) {
        let compiled = Arc::new(CompiledRole::new(definition));
        let id = definition.id.to_lowercase();
        match self.roles_by_id.get(&id) {
            Some(&index) => {
                if let Some(role) = self.roles.get_mut(index as usize) {
                    *role = compiled;
                }
            }
            None => {
                self.roles_by_id.insert(id, self.roles.len() as u32);
                self.roles.push(compiled);
            }
        }
    }

    /// Adds one assignment; false when its role is unknown (it grants nothing, as in `build`)
    /// or the same principal already holds the role at the scope.
    pub fn insert(&mut self, assignment: &Assignment) -> bool {
        let Some(&role) = self.roles_by_id.get(&assignment.role_id.to_lowercase()) else {
            return false;
        };
        let key = scope_key(&assignment.scope);
        let scope_tag = tag(fnv(key.as_bytes()));
        let node = self.scopes.intern(&key);
        let principal = assignment.principal_id.as_uuid().as_u64_pair();
        let mut grants = self.grants_of(principal);
        if grants
            .iter()
            .any(|grant| grant[1] == node && grant[2] == role)
        {
            return false;
        }
        grants.push([scope_tag, node, role]);
        self.set_grants(principal, &grants);
        self.assignment_count += 1;
        true
    }

    /// Removes one assignment; false when it was not indexed.
    pub fn remove(&mut self, assignment: &Assignment) -> bool {
        let Some(&role) = self.roles_by_id.get(&assignment.role_id.to_lowercase()) else {
            return false;
        };
        let key = scope_key(&assignment.scope);
        let Some(node) = self.scopes.find(&key) else {
            return false;
        };
        let principal = assignment.principal_id.as_uuid().as_u64_pair();
        let mut grants = self.grants_of(principal);
        let Some(index) = grants
            .iter()
            .position(|grant| grant[1] == node && grant[2] == role)
        else {
            return false;
        };
        grants.remove(index);
        self.set_grants(principal, &grants);
        self.assignment_count -= 1;
        true
    }

    fn slot_index(&self, principal: (u64, u64)) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut index = slot_hash(principal) as usize & mask;
        // Terminates: the table is at most half full.
        loop {
            let slot = self.slots.get(index)?;
            if slot.len == 0 {
                return None;
            }
            if slot.principal == principal {
                return Some(index);
            }
            index = (index + 1) & mask;
        }
    }

    fn grants_of(&self, principal: (u64, u64)) -> Vec<Grant> {
        let Some(slot) = self.slot_index(principal).and_then(|i| self.slots.get(i)) else {
            return Vec::new();
        };
        let start = slot.start as usize;
        let len = slot.len as usize;
        let (Some(tags), Some(payload)) = (
            self.arena.get(start..start + len * TAG_WORDS),
            self.arena
                .get(start + len * TAG_WORDS..start + len * (TAG_WORDS + PAYLOAD_WORDS)),
        ) else {
            return Vec::new();
        };
        tags.iter()
            .zip(payload.chunks_exact(PAYLOAD_WORDS))
            .map(|(tag, grant)| [*tag, grant[0], grant[1]])
            .collect()
    }

    /// Points `principal` at a new region holding `grants` (or drops it when there are none).
    fn set_grants(&mut self, principal: (u64, u64), grants: &[Grant]) {
        let existing = self.slot_index(principal);
        if let Some(index) = existing {
            self.garbage += self.slots[index].len as usize * (TAG_WORDS + PAYLOAD_WORDS);
        }
        if grants.is_empty() {
            if let Some(index) = existing {
                self.delete_slot(index);
            }
        } else {
            let start = self.arena.len() as u32;
            self.arena.extend(grants.iter().map(|grant| grant[0]));
            self.arena
                .extend(grants.iter().flat_map(|grant| [grant[1], grant[2]]));
            let slot = Slot {
                principal,
                start,
                len: grants.len() as u32,
            };
            match existing {
                Some(index) => self.slots[index] = slot,
                None => self.insert_slot(slot),
            }
        }
        if self.garbage > COMPACT_MIN_GARBAGE && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
    }

    fn insert_slot(&mut self, slot: Slot) {
        if (self.occupied + 1) * 2 > self.slots.len() {
            let capacity = (self.slots.len() * 2).max(16);
            let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
            self.occupied = 0;
            for existing in old.into_iter().filter(|slot| slot.len != 0) {
                self.place(existing);
            }
        }
        self.place(slot);
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut index = slot_hash(slot.principal) as usize & mask;
        while self.slots[index].len != 0 {
            index = (index + 1) & mask;
        }
        self.slots[index] = slot;
        self.occupied += 1;
    }

    /// Linear probing's backward-shift deletion: no tombstones, lookups stay as short as built.
    fn delete_slot(&mut self, index: usize) {
        let mask = self.slots.len() - 1;
        let mut hole = index;
        self.slots[hole] = Slot::default();
        self.occupied -= 1;
        let mut next = (hole + 1) & mask;
        while self.slots[next].len != 0 {
            let home = slot_hash(self.slots[next].principal) as usize & mask;
            // Whether `home` lies cyclically in (hole, next]: then the entry stays.
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.slots[hole] = self.slots[next];
                self.slots[next] = Slot::default();
                hole = next;
            }
            next = (next + 1) & mask;
        }
    }

    /// Copies every live region into a fresh arena.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for slot in self.slots.iter_mut().filter(|slot| slot.len != 0) {
            let start = slot.start as usize;
            let end = start + slot.len as usize * (TAG_WORDS + PAYLOAD_WORDS);
            slot.start = arena.len() as u32;
            arena.extend_from_slice(&self.arena[start..end]);
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// Words of the grant arena, live and garbage: at most twice the live ones plus a constant.
    pub fn arena_words(&self) -> usize {
        self.arena.len()
    }

    /// Heap bytes of the index (capacities): what a snapshot costs in memory.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.arena.capacity() * 4
            + self.scopes.heap_bytes()
            + self.roles_by_id.capacity() * 48
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

    /// The tags of `principal`'s grants and, per grant, (scope node, role).
    fn region(&self, principal: ObjectId) -> Option<(&[u32], &[u32])> {
        let slot = self
            .slots
            .get(self.slot_index(principal.as_uuid().as_u64_pair())?)?;
        let start = slot.start as usize;
        let len = slot.len as usize;
        let tags = self.arena.get(start..start + len * TAG_WORDS)?;
        let payload = self
            .arena
            .get(start + len * TAG_WORDS..start + len * (TAG_WORDS + PAYLOAD_WORDS))?;
        Some((tags, payload))
    }

    /// The scope node and role of the grant at `payload`.
    fn grant(&self, payload: &[u32]) -> Option<(u32, &CompiledRole)> {
        let [node, role] = *payload else {
            return None;
        };
        Some((node, self.roles.get(role as usize)?))
    }

    /// Whether some grant of `principal` at `scope` or above satisfies `check`.
    fn any_grant_over(
        &self,
        principal: ObjectId,
        scope: &str,
        check: impl Fn(&CompiledRole) -> bool,
    ) -> bool {
        let Some((tags, payload)) = self.region(principal) else {
            return false;
        };
        // Tags of every ancestor-or-self of `scope`: the root, then each prefix ending before a
        // `/`, then the whole scope.
        let mut prefixes = [0u32; MAX_DEPTH + 2];
        let mut count = 0;
        prefixes[count] = tag(fnv(b"/"));
        count += 1;
        let mut hash = FNV_OFFSET;
        let bytes = scope.as_bytes();
        let mut deep = false;
        for (index, byte) in bytes.iter().enumerate() {
            if *byte == b'/' && index > 0 {
                if count < prefixes.len() - 1 {
                    prefixes[count] = tag(hash);
                    count += 1;
                } else {
                    deep = true;
                }
            }
            hash = (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
        }
        prefixes[count] = tag(hash);
        count += 1;
        let prefixes = &prefixes[..count];
        tags.iter()
            .zip(payload.chunks_exact(PAYLOAD_WORDS))
            .any(|(grant_tag, grant)| {
                (deep || prefixes.contains(grant_tag))
                    && self.grant(grant).is_some_and(|(assigned, role)| {
                        self.scopes.contains(assigned, scope) && check(role)
                    })
            })
    }

    /// Whether `principal` holds any assignment at, above or below `scope` (so that a listing at
    /// `scope` may hold something it can read).
    pub fn has_assignment_near(&self, principal: ObjectId, scope: &str) -> bool {
        let scope = scope_key(scope);
        self.region(principal).is_some_and(|(_, payload)| {
            payload.chunks_exact(PAYLOAD_WORDS).any(|grant| {
                self.grant(grant).is_some_and(|(assigned, _)| {
                    self.scopes.contains(assigned, &scope)
                        || scope_contains(&scope, &self.scopes.key(assigned))
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

    /// The index against the definition it implements (scan every assignment, compare scope
    /// strings), on a pseudo-random tenant with near-miss scopes, mixed casing and deep scopes.
    #[test]
    fn index_agrees_with_a_plain_scan() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let groups = ["rg1", "rg10", "RG1", "rg2"];
        let mut scopes = vec!["/".to_string(), SUB.to_string(), format!("{SUB}0")];
        for group in groups {
            let group = format!("{SUB}/resourceGroups/{group}");
            scopes.push(format!(
                "{group}/providers/Microsoft.Compute/virtualMachines/vm"
            ));
            scopes.push(format!(
                "{group}/providers/Microsoft.Compute/virtualMachines/vm/"
            ));
            scopes.push(format!(
                "{group}/providers/Microsoft.Compute/virtualMachines/vm{}",
                "/extensions/e".repeat(10)
            ));
            scopes.push(group);
        }
        let roles = [
            builtin::READER,
            builtin::CONTRIBUTOR,
            builtin::OWNER,
            builtin::MANAGED_IDENTITY_OPERATOR,
        ];
        let principals: Vec<ObjectId> = (0..12).map(|_| ObjectId::new_random()).collect();
        let assignments: Vec<Assignment> = (0..60)
            .map(|_| Assignment {
                principal_id: principals[next(principals.len())],
                role_id: roles[next(roles.len())].to_string(),
                scope: scopes[next(scopes.len())].clone(),
            })
            .collect();
        let definitions = builtin::definitions();
        let index = Snapshot::build(&definitions, &assignments);
        let actions = [
            "Microsoft.Compute/virtualMachines/read",
            "Microsoft.Compute/virtualMachines/write",
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
        ];
        let mut allowed = 0;
        for _ in 0..5000 {
            let principal = principals[next(principals.len())];
            let action = actions[next(actions.len())];
            let scope = scopes[next(scopes.len())].clone();
            let scope = if next(3) == 0 {
                scope.to_uppercase()
            } else {
                scope
            };
            let expected = assignments.iter().any(|assignment| {
                assignment.principal_id == principal
                    && scope_contains(&scope_key(&assignment.scope), &scope_key(&scope))
                    && definitions
                        .iter()
                        .find(|definition| definition.id == assignment.role_id)
                        .is_some_and(|definition| {
                            CompiledRole::new(definition).grants(&action.to_ascii_lowercase())
                        })
            });
            assert_eq!(
                index.is_allowed(principal, action, &scope),
                expected,
                "{action} at {scope}"
            );
            allowed += usize::from(expected);
        }
        assert!(
            (500..4500).contains(&allowed),
            "both answers exercised: {allowed}"
        );
    }
}
