//! The reference: the same tenant and the same decisions as a Cedar policy set.
//!
//! Semantics to reproduce (Azure RBAC as openmi implements it): a decision is allowed iff the
//! principal holds, at the target scope or an ancestor of it, a role whose `actions` match the
//! action and whose `notActions` do not. Common to both models:
//!
//! - **Scopes are entities of type `Scope`** keyed by their normalised id (lower case, as
//!   `openmi_rbac::scope_key`), with the ARM containment as the entity hierarchy:
//!   resource ∈ resource group ∈ subscription. Inheritance downward is then Cedar's `in`.
//! - **Actions are entities of type `Action`** keyed by the lower-case action name, each a member
//!   of one action group `Action::"role:<Role>"` per built-in role that grants it. Azure's
//!   wildcards (`*`, `*/read`, `Microsoft.Authorization/*/Write`, the `/*/` that also stands for
//!   `/`) and `notActions` are expanded over the finite set of actions the workload uses
//!   (`world::action::ALL`), with a matcher written for this bench, not openmi's.
//! - **One `permit` per built-in role** (8), nothing else: default deny, no `forbid`, since
//!   notActions are already folded into the action groups.
//! - A request is (`Principal::"<object id>"`, `Action::"<lower-case action>"`,
//!   `Scope::"<scope_key>"`), empty context, no schema; requests are built before timing.
//!
//! The two ways to store "P holds role R at scope S" (`Shape`):
//!
//! 1. `PrincipalScopes` (engine `cedar`): each `Principal` entity has one attribute per role it
//!    holds somewhere, the set of `Scope`s where it holds it. Policy:
//!    ```cedar
//!    @id("Reader")
//!    permit (principal, action in Action::"role:Reader", resource)
//!    when { principal has Reader && resource in principal.Reader };
//!    ```
//!    `resource in <set>` is true iff the resource is, or descends from, one of those scopes:
//!    exactly "an assignment at the scope or above". It mirrors openmi's index by principal;
//!    Cedar walks the set, so a principal with many assignments costs more.
//! 2. `ScopeGrants` (engine `cedar-grants`): one `RoleAssignment::"<Role>@<scope>"` group entity
//!    per (role, scope) held, principals members of theirs; every `Scope` has, per role, the set
//!    of those groups at itself and its ancestors (at most 3 here). Policy:
//!    ```cedar
//!    @id("Reader")
//!    permit (principal, action in Action::"role:Reader", resource)
//!    when { resource has Reader && principal in resource.Reader };
//!    ```
//!    Cost is bounded by the depth, not the principal's assignments, but every scope carries the
//!    grants of its ancestors (denormalised: an assignment at a subscription changes 100 000
//!    resource entities), so it is bigger and slower to build.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression,
};
use openmi_rbac::{scope_key, RoleDefinition};

use crate::world::{action, Decision, Target, World};

/// How "principal P holds role R at scope S" is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `principal.<Role>`: the set of scopes where P holds R; `resource in principal.<Role>`.
    PrincipalScopes,
    /// A `RoleAssignment::"<Role>@<scope>"` entity per (R, S) held, P a member of it; every scope
    /// lists, per role, those at itself and its ancestors; `principal in resource.<Role>`.
    ScopeGrants,
}

pub struct CedarModel {
    pub policies: PolicySet,
    pub entities: Entities,
    principal_type: EntityTypeName,
    scope_type: EntityTypeName,
    action_type: EntityTypeName,
}

fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

/// The attribute and action-group name of a role: its name without spaces.
fn role_ident(definition: &RoleDefinition) -> String {
    definition
        .role_name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// Azure's action-pattern semantics, written independently of openmi-rbac's matcher: `*`
/// matches any run of characters, case is ignored, and a `/*/` may also stand for a single `/`.
fn pattern_matches(pattern: &str, action: &str) -> bool {
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
            Some((byte, rest)) => text.first() == Some(byte) && glob(rest, &text[1..]),
        }
    }
    let pattern = pattern.trim().to_ascii_lowercase();
    let action = action.to_ascii_lowercase();
    glob(pattern.as_bytes(), action.as_bytes())
        || (pattern.contains("/*/")
            && glob(pattern.replace("/*/", "/").as_bytes(), action.as_bytes()))
}

fn role_grants(definition: &RoleDefinition, action: &str) -> bool {
    definition.permissions.iter().any(|permission| {
        permission
            .actions
            .iter()
            .any(|p| pattern_matches(p, action))
            && !permission
                .not_actions
                .iter()
                .any(|p| pattern_matches(p, action))
    })
}

impl CedarModel {
    pub fn build(world: &World, definitions: &[RoleDefinition], shape: Shape) -> CedarModel {
        let principal_type = EntityTypeName::from_str("Principal").expect("type name");
        let scope_type = EntityTypeName::from_str("Scope").expect("type name");
        let action_type = EntityTypeName::from_str("Action").expect("type name");

        // Policies: one permit per role.
        let mut policy_text = String::new();
        for definition in definitions {
            let role = role_ident(definition);
            policy_text.push_str(&format!(
                "@id(\"{role}\")\npermit (principal, action in Action::\"role:{role}\", resource)\n{}\n",
                match shape {
                    Shape::PrincipalScopes =>
                        format!("when {{ principal has {role} && resource in principal.{role} }};"),
                    Shape::ScopeGrants =>
                        format!("when {{ resource has {role} && principal in resource.{role} }};"),
                }
            ));
        }
        let policies = PolicySet::from_str(&policy_text).expect("policies parse");

        let mut entities = Vec::new();
        // Actions and their role groups.
        for definition in definitions {
            entities.push(Entity::new_no_attrs(
                uid(&action_type, &format!("role:{}", role_ident(definition))),
                HashSet::new(),
            ));
        }
        for name in action::ALL {
            let parents: HashSet<EntityUid> = definitions
                .iter()
                .filter(|definition| role_grants(definition, name))
                .map(|definition| uid(&action_type, &format!("role:{}", role_ident(definition))))
                .collect();
            entities.push(Entity::new_no_attrs(
                uid(&action_type, &name.to_ascii_lowercase()),
                parents,
            ));
        }
        // The scope tree: resource in group in subscription.
        let subscription = uid(&scope_type, &scope_key(&world.subscription));
        let groups: Vec<EntityUid> = world
            .groups
            .iter()
            .map(|group| uid(&scope_type, &scope_key(group)))
            .collect();
        let resources: Vec<EntityUid> = world
            .resources
            .iter()
            .map(|resource| uid(&scope_type, &scope_key(&resource.id)))
            .collect();
        let parent: HashMap<EntityUid, EntityUid> = groups
            .iter()
            .map(|group| (group.clone(), subscription.clone()))
            .chain(
                world
                    .resources
                    .iter()
                    .zip(&resources)
                    .map(|(resource, scope)| {
                        (scope.clone(), groups[resource.group as usize].clone())
                    }),
            )
            .collect();
        let parents_of = |scope: &EntityUid| -> HashSet<EntityUid> {
            parent.get(scope).cloned().into_iter().collect()
        };
        let role_index: HashMap<String, usize> = definitions
            .iter()
            .enumerate()
            .map(|(index, definition)| (definition.id.to_lowercase(), index))
            .collect();
        let roles: Vec<String> = definitions.iter().map(role_ident).collect();
        let scope_uid = |target: Target| match target {
            Target::Subscription => subscription.clone(),
            Target::Group(group) => groups[group as usize].clone(),
            Target::Resource(resource) => resources[resource as usize].clone(),
        };
        match shape {
            Shape::PrincipalScopes => {
                // Principals: per role, the set of scopes where they hold it.
                let mut held: HashMap<u32, HashMap<usize, Vec<EntityUid>>> = HashMap::new();
                for (assignment, (principal, target)) in world.assignments.iter().zip(&world.placed)
                {
                    let Some(role) = role_index.get(&assignment.role_id.to_lowercase()) else {
                        continue;
                    };
                    held.entry(*principal)
                        .or_default()
                        .entry(*role)
                        .or_default()
                        .push(scope_uid(*target));
                }
                for (index, principal) in world.principals.iter().enumerate() {
                    let attributes: HashMap<String, RestrictedExpression> = held
                        .remove(&(index as u32))
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(role, scopes)| {
                            (
                                roles[role].clone(),
                                RestrictedExpression::new_set(
                                    scopes.into_iter().map(RestrictedExpression::new_entity_uid),
                                ),
                            )
                        })
                        .collect();
                    entities.push(
                        Entity::new(
                            uid(&principal_type, &principal.to_string()),
                            attributes,
                            HashSet::new(),
                        )
                        .expect("principal entity"),
                    );
                }
                for scope in std::iter::once(subscription.clone())
                    .chain(groups.iter().cloned())
                    .chain(resources.iter().cloned())
                {
                    let parents = parents_of(&scope);
                    entities.push(Entity::new_no_attrs(scope, parents));
                }
            }
            Shape::ScopeGrants => {
                // One RoleAssignment entity per (role, scope) held; principals are its members.
                let grant_type = EntityTypeName::from_str("RoleAssignment").expect("type name");
                let key = |target: Target| match target {
                    Target::Subscription => (0u8, 0u32),
                    Target::Group(group) => (1, group),
                    Target::Resource(resource) => (2, resource),
                };
                let mut grants: HashMap<(usize, (u8, u32)), EntityUid> = HashMap::new();
                let mut member_of: Vec<HashSet<EntityUid>> =
                    vec![HashSet::new(); world.principals.len()];
                for (assignment, (principal, target)) in world.assignments.iter().zip(&world.placed)
                {
                    let Some(role) = role_index.get(&assignment.role_id.to_lowercase()) else {
                        continue;
                    };
                    let grant = grants
                        .entry((*role, key(*target)))
                        .or_insert_with(|| {
                            uid(
                                &grant_type,
                                &format!("{}@{}", roles[*role], scope_key(world.scope(*target))),
                            )
                        })
                        .clone();
                    member_of[*principal as usize].insert(grant);
                }
                for grant in grants.values() {
                    entities.push(Entity::new_no_attrs(grant.clone(), HashSet::new()));
                }
                for (principal, parents) in world.principals.iter().zip(member_of) {
                    entities.push(Entity::new_no_attrs(
                        uid(&principal_type, &principal.to_string()),
                        parents,
                    ));
                }
                // Every scope lists, per role, the grants at it and at its ancestors.
                let path_grants = |path: &[Target]| -> HashMap<String, RestrictedExpression> {
                    (0..roles.len())
                        .filter_map(|role| {
                            let held: Vec<RestrictedExpression> = path
                                .iter()
                                .filter_map(|target| grants.get(&(role, key(*target))))
                                .map(|grant| RestrictedExpression::new_entity_uid(grant.clone()))
                                .collect();
                            (!held.is_empty())
                                .then(|| (roles[role].clone(), RestrictedExpression::new_set(held)))
                        })
                        .collect()
                };
                let mut push = |scope: EntityUid, path: &[Target]| {
                    let parents = parents_of(&scope);
                    entities.push(
                        Entity::new(scope, path_grants(path), parents).expect("scope entity"),
                    );
                };
                push(subscription.clone(), &[Target::Subscription]);
                for (group, scope) in groups.iter().enumerate() {
                    push(
                        scope.clone(),
                        &[Target::Subscription, Target::Group(group as u32)],
                    );
                }
                for (index, resource) in world.resources.iter().enumerate() {
                    push(
                        resources[index].clone(),
                        &[
                            Target::Subscription,
                            Target::Group(resource.group),
                            Target::Resource(index as u32),
                        ],
                    );
                }
            }
        }
        let entities = Entities::from_entities(entities, None).expect("entities");
        CedarModel {
            policies,
            entities,
            principal_type,
            scope_type,
            action_type,
        }
    }

    /// The Cedar request for a decision, built from the same inputs openmi gets.
    pub fn request(&self, decision: &Decision) -> Request {
        Request::new(
            uid(&self.principal_type, &decision.principal.to_string()),
            uid(&self.action_type, &decision.action.to_ascii_lowercase()),
            uid(&self.scope_type, &scope_key(&decision.scope)),
            Context::empty(),
            None,
        )
        .expect("request")
    }
}
