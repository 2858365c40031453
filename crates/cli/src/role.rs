//! `openmi role ...`: role definitions and role assignments (Microsoft.Authorization, api-version
//! 2022-04-01), following az's `role` module (`command_modules/role/custom.py`).
//!
//! - **Scopes** are used as typed, but for two conveniences: a bare subscription GUID (or
//!   `/GUID`) means `/subscriptions/GUID`, and a trailing `/` is dropped. `-g RG` is
//!   `/subscriptions/S/resourceGroups/RG`; no scope means the subscription (az's
//!   `_build_role_scope`). `role assignment create` requires `--scope`, as az does since 2.54.
//! - **Roles** (`--role`) are a full role definition id, a GUID (taken as
//!   `/subscriptions/S/providers/Microsoft.Authorization/roleDefinitions/GUID`, as az does), or a
//!   name looked up with `$filter=roleName eq '...'` at the scope; exactly one definition must
//!   match, ignoring case (az's `_resolve_role_id`).
//! - **Assignees** (`--assignee`) are resolved through Graph as far as openmi's Graph allows: a
//!   GUID is first an application id (`servicePrincipals?$filter=appId eq`), then whatever
//!   `directoryObjects/getByIds` says, and when Graph cannot answer it is taken as an object id
//!   with no principal type (az's fallback). A sign-in name (`x@y`) needs
//!   `users?$filter=userPrincipalName eq`; while the server lacks it the command says so and
//!   points at `--assignee-object-id`.
//! - **Listing** follows az's `_search_role_assignments`: at a scope, `$filter=atScope()` and
//!   only assignments at exactly that scope (and above it with `--include-inherited`); with
//!   `--all`, the whole subscription (`$filter=principalId eq` with `--assignee`). Items gain
//!   `roleDefinitionName` (role definitions listed once per run) and, when Graph can name
//!   principals, `principalName`.
//! - **Outputs** are az's: the 2022-04-01 models flattened (`properties` moved up; a definition's
//!   `properties.type` becomes `roleType`), every model key present (null when the server sent
//!   none).

use std::collections::HashMap;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Map, Value};

use crate::arm::{self, Arm, ArmArgs};
use crate::client::error_code;
use crate::identity::flatten_properties;
use crate::output::{table_row, Outcome};

/// The role assignments collection under a scope.
const ROLE_ASSIGNMENTS: &str = "providers/Microsoft.Authorization/roleAssignments";
/// The role definitions collection under a scope.
const ROLE_DEFINITIONS: &str = "providers/Microsoft.Authorization/roleDefinitions";

/// The keys of az's role assignment output (the 2022-04-01 `RoleAssignment` model).
const ASSIGNMENT_KEYS: &[&str] = &[
    "condition",
    "conditionVersion",
    "createdBy",
    "createdOn",
    "delegatedManagedIdentityResourceId",
    "description",
    "id",
    "name",
    "principalId",
    "principalType",
    "roleDefinitionId",
    "scope",
    "type",
    "updatedBy",
    "updatedOn",
];

/// The keys of az's role definition output (the 2022-04-01 `RoleDefinition` model).
const DEFINITION_KEYS: &[&str] = &[
    "assignableScopes",
    "createdBy",
    "createdOn",
    "description",
    "id",
    "name",
    "permissions",
    "roleName",
    "roleType",
    "type",
    "updatedBy",
    "updatedOn",
];

/// The keys of a permission in az's role definition output.
const PERMISSION_KEYS: &[&str] = &[
    "actions",
    "condition",
    "conditionVersion",
    "dataActions",
    "notActions",
    "notDataActions",
];

/// `openmi role ...`
#[derive(Debug, Args)]
pub struct RoleCommand {
    #[command(flatten)]
    pub global: ArmArgs,
    #[command(subcommand)]
    pub action: RoleAction,
}

/// The role verbs.
#[derive(Debug, Subcommand)]
pub enum RoleAction {
    /// Role assignments: who holds which role at which scope.
    Assignment {
        #[command(subcommand)]
        action: AssignmentAction,
    },
    /// Role definitions: built-in and custom roles.
    Definition {
        #[command(subcommand)]
        action: DefinitionAction,
    },
}

/// `openmi role assignment ...`
#[derive(Debug, Subcommand)]
pub enum AssignmentAction {
    /// Create a role assignment (an existing identical one is returned as it is).
    Create(AssignmentCreateArgs),
    /// List role assignments at a scope (default: the subscription), or with --all everywhere in
    /// the subscription.
    List(AssignmentListArgs),
    /// Delete role assignments, by id or by assignee, role and scope.
    Delete(AssignmentDeleteArgs),
}

/// A principal type as ARM's role assignments name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrincipalType {
    #[value(name = "User")]
    User,
    #[value(name = "Group")]
    Group,
    #[value(name = "ServicePrincipal")]
    ServicePrincipal,
    #[value(name = "ForeignGroup")]
    ForeignGroup,
}

impl PrincipalType {
    fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "User",
            PrincipalType::Group => "Group",
            PrincipalType::ServicePrincipal => "ServicePrincipal",
            PrincipalType::ForeignGroup => "ForeignGroup",
        }
    }
}

/// `openmi role assignment create`
#[derive(Debug, Args)]
pub struct AssignmentCreateArgs {
    /// Role name (e.g. Reader) or id (a GUID or a full role definition id).
    #[arg(long)]
    role: String,
    /// Scope, e.g. /subscriptions/S, /subscriptions/S/resourceGroups/RG or a resource id; a bare
    /// subscription id means that subscription.
    #[arg(long)]
    scope: String,
    /// The assignee: a service principal's application id or object id, or a user's sign-in name.
    #[arg(
        long,
        required_unless_present = "assignee_object_id",
        conflicts_with = "assignee_object_id"
    )]
    assignee: Option<String>,
    /// The assignee's object id (principal id), used without a Graph lookup.
    #[arg(long)]
    assignee_object_id: Option<String>,
    /// The type of --assignee-object-id.
    #[arg(long, value_enum, ignore_case = true)]
    assignee_principal_type: Option<PrincipalType>,
    /// Description of the role assignment.
    #[arg(long)]
    description: Option<String>,
    /// A GUID for the role assignment; default: a new one.
    #[arg(long, short = 'n')]
    name: Option<String>,
}

/// `openmi role assignment list`
#[derive(Debug, Args)]
pub struct AssignmentListArgs {
    /// Only assignments of this assignee (application id, object id or sign-in name).
    #[arg(long)]
    assignee: Option<String>,
    /// Only assignments of this role (name or id).
    #[arg(long)]
    role: Option<String>,
    /// The scope is this resource group.
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
    /// The scope; default: the subscription.
    #[arg(long)]
    scope: Option<String>,
    /// Every assignment in the subscription, at any scope.
    #[arg(long)]
    all: bool,
    /// Also assignments at the scopes above the scope.
    #[arg(long)]
    include_inherited: bool,
}

/// `openmi role assignment delete`
#[derive(Debug, Args)]
pub struct AssignmentDeleteArgs {
    /// Role assignment ids (space-separated).
    #[arg(long, num_args = 1.., conflicts_with_all = ["assignee", "role", "resource_group", "scope", "include_inherited"])]
    ids: Option<Vec<String>>,
    /// Only assignments of this assignee.
    #[arg(long)]
    assignee: Option<String>,
    /// Only assignments of this role.
    #[arg(long)]
    role: Option<String>,
    /// The scope is this resource group.
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
    /// The scope; default: the subscription.
    #[arg(long)]
    scope: Option<String>,
    /// Also assignments at the scopes above the scope.
    #[arg(long)]
    include_inherited: bool,
    /// Do not prompt when no filter is given (every assignment at the subscription goes).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// `openmi role definition ...`
#[derive(Debug, Subcommand)]
pub enum DefinitionAction {
    /// List role definitions at a scope (default: the subscription).
    List {
        /// Only the role with this name (GUID) or roleName (e.g. Reader), matched exactly.
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// Only custom roles.
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        custom_role_only: Option<bool>,
        /// The scope is this resource group.
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// The scope; default: the subscription.
        #[arg(long)]
        scope: Option<String>,
    },
    /// Create a custom role from az's JSON format (Name, Description, Actions, NotActions,
    /// DataActions, NotDataActions, AssignableScopes) or ARM's `properties` form.
    Create {
        /// The definition: JSON text, a file, or @file.
        #[arg(long)]
        role_definition: String,
    },
    /// Delete the role definitions with this name (GUID) or roleName at a scope.
    Delete {
        /// The role's name (GUID) or roleName.
        #[arg(long, short = 'n')]
        name: String,
        /// Only custom roles.
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        custom_role_only: Option<bool>,
        /// The scope is this resource group.
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// The scope; default: the subscription.
        #[arg(long)]
        scope: Option<String>,
    },
}

/// Runs a role verb.
pub async fn run(command: RoleCommand) -> anyhow::Result<Outcome> {
    // Arguments are checked before any request, as az validates them first.
    let new_role = match &command.action {
        RoleAction::Definition {
            action: DefinitionAction::Create { role_definition },
        } => Some(new_role(&read_json_argument(role_definition)?)?),
        _ => None,
    };
    if let RoleAction::Assignment {
        action: AssignmentAction::Create(args),
    } = &command.action
    {
        if args.assignee_principal_type.is_some() && args.assignee_object_id.is_none() {
            return Err(anyhow!(
                "usage error: --assignee-object-id GUID --assignee-principal-type TYPE"
            ));
        }
        parse_scope(&args.scope)?;
    }
    if let RoleAction::Assignment {
        action: AssignmentAction::Delete(args),
    } = &command.action
    {
        let filtered = args.ids.is_some()
            || args.assignee.is_some()
            || args.role.is_some()
            || args.resource_group.is_some()
            || args.scope.is_some();
        if !filtered {
            eprintln!("This will delete all role assignments at the subscription.");
            crate::confirm(args.yes)?;
        }
    }
    let arm = Arm::connect(command.global.subscription.as_deref()).await?;
    let mut definitions = DefinitionCache::default();
    match command.action {
        RoleAction::Assignment { action } => match action {
            AssignmentAction::Create(args) => {
                let created = create_assignment_verb(&arm, &mut definitions, args).await?;
                Ok(Outcome::value(created))
            }
            AssignmentAction::List(args) => {
                let listed = list_assignments_verb(&arm, &mut definitions, args).await?;
                Ok(Outcome::with_table(Value::Array(listed), assignment_table))
            }
            AssignmentAction::Delete(args) => {
                delete_assignments_verb(&arm, args).await?;
                Ok(Outcome::nothing())
            }
        },
        RoleAction::Definition { action } => match action {
            DefinitionAction::List {
                name,
                custom_role_only,
                resource_group,
                scope,
            } => {
                let scope = build_scope(
                    resource_group.as_deref(),
                    scope.as_deref(),
                    arm.subscription(),
                )?;
                let roles = definitions.list(&arm, &scope).await?;
                let roles =
                    select_definitions(roles, name.as_deref(), custom_role_only.unwrap_or(false));
                Ok(Outcome::with_table(
                    Value::Array(roles.into_iter().map(definition_output).collect()),
                    definition_table,
                ))
            }
            DefinitionAction::Create { .. } => {
                let new_role =
                    new_role.ok_or_else(|| anyhow!("the role definition was not read"))?;
                let path = format!(
                    "{}/{}",
                    under_scope(&new_role.first_scope, ROLE_DEFINITIONS),
                    uuid::Uuid::new_v4()
                );
                let body = json!({"properties": new_role.properties});
                let created = arm.put(&path, arm::API_AUTHORIZATION, &body).await?;
                Ok(Outcome::value(definition_output(created)))
            }
            DefinitionAction::Delete {
                name,
                custom_role_only,
                resource_group,
                scope,
            } => {
                let scope = build_scope(
                    resource_group.as_deref(),
                    scope.as_deref(),
                    arm.subscription(),
                )?;
                let roles = definitions.list(&arm, &scope).await?;
                let roles =
                    select_definitions(roles, Some(&name), custom_role_only.unwrap_or(false));
                // az deletes at the scope searched, and silently when nothing matched.
                for role in roles {
                    let guid = field(&role, "name")
                        .ok_or_else(|| anyhow!("the server listed a role without a name"))?;
                    let path = format!(
                        "{}/{}",
                        under_scope(&scope, ROLE_DEFINITIONS),
                        arm::segment(guid)
                    );
                    arm.delete(&path, arm::API_AUTHORIZATION, true).await?;
                }
                Ok(Outcome::nothing())
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Assignments

async fn create_assignment_verb(
    arm: &Arm,
    definitions: &mut DefinitionCache,
    args: AssignmentCreateArgs,
) -> anyhow::Result<Value> {
    let scope = parse_scope(&args.scope)?;
    let principal = match (&args.assignee, &args.assignee_object_id) {
        (Some(assignee), _) => resolve_assignee(arm, assignee).await?,
        (None, Some(object_id)) => Principal {
            object_id: object_id.clone(),
            principal_type: match args.assignee_principal_type {
                Some(kind) => Some(kind.as_str().to_string()),
                None => principal_type_of_object(arm, object_id).await,
            },
        },
        (None, None) => {
            return Err(anyhow!(
                "usage error: --assignee STRING | --assignee-object-id GUID"
            ))
        }
    };
    let role_id = resolve_role_id(arm, &args.role, &scope).await?;
    let result = create_assignment(
        arm,
        &scope,
        &role_id,
        &principal.object_id,
        principal.principal_type.as_deref(),
        args.description.as_deref(),
        args.name.as_deref(),
    )
    .await;
    match result {
        Ok(created) => Ok(assignment_output(created)),
        Err(error) if error_code(&error) == Some("RoleAssignmentExists") => {
            // az returns the existing assignment, as `role assignment list` shows it.
            let existing = search_assignments_for(
                arm,
                &Search {
                    scope: Some(scope.clone()),
                    include_inherited: false,
                    principal_id: Some(principal.object_id.clone()),
                    role_id: Some(role_id),
                },
            )
            .await?;
            let mut listed = decorate(arm, definitions, Some(&scope), existing).await?;
            if listed.is_empty() {
                return Err(error);
            }
            Ok(listed.remove(0))
        }
        Err(error) => Err(error),
    }
}

async fn list_assignments_verb(
    arm: &Arm,
    definitions: &mut DefinitionCache,
    args: AssignmentListArgs,
) -> anyhow::Result<Vec<Value>> {
    if args.all && (args.resource_group.is_some() || args.scope.is_some()) {
        return Err(anyhow!(
            "group or scope are not required when --all is used"
        ));
    }
    let scope = if args.all {
        None
    } else {
        Some(build_scope(
            args.resource_group.as_deref(),
            args.scope.as_deref(),
            arm.subscription(),
        )?)
    };
    let found = search_assignments(
        arm,
        scope.as_deref(),
        args.assignee.as_deref(),
        args.role.as_deref(),
        args.include_inherited,
    )
    .await?;
    decorate(arm, definitions, scope.as_deref(), found).await
}

async fn delete_assignments_verb(arm: &Arm, args: AssignmentDeleteArgs) -> anyhow::Result<()> {
    if let Some(ids) = &args.ids {
        if let Some(bad) = ids.iter().find(|id| !id.starts_with('/')) {
            return Err(anyhow!("'{bad}' is not a valid role assignment id"));
        }
        for id in ids {
            arm.delete(id, arm::API_AUTHORIZATION, true).await?;
        }
        return Ok(());
    }
    let scope = build_scope(
        args.resource_group.as_deref(),
        args.scope.as_deref(),
        arm.subscription(),
    )?;
    let found = search_assignments(
        arm,
        Some(&scope),
        args.assignee.as_deref(),
        args.role.as_deref(),
        args.include_inherited,
    )
    .await?;
    if found.is_empty() {
        return Err(anyhow!("No matched assignments were found to delete"));
    }
    for assignment in &found {
        let id = field(assignment, "id")
            .ok_or_else(|| anyhow!("the server listed an assignment without an id"))?;
        arm.delete(id, arm::API_AUTHORIZATION, true).await?;
    }
    Ok(())
}

/// PUTs a new role assignment (named `name`, else a new GUID) at `scope`; returns the server's
/// reply as it came.
pub async fn create_assignment(
    arm: &Arm,
    scope: &str,
    role_definition_id: &str,
    principal_id: &str,
    principal_type: Option<&str>,
    description: Option<&str>,
    name: Option<&str>,
) -> anyhow::Result<Value> {
    let name = name.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    let path = format!(
        "{}/{}",
        under_scope(scope, ROLE_ASSIGNMENTS),
        arm::segment(&name)
    );
    let body = assignment_body(
        role_definition_id,
        principal_id,
        principal_type,
        description,
    );
    arm.put(&path, arm::API_AUTHORIZATION, &body).await
}

/// The body of a role assignment PUT. Without a known principal type none is sent (the
/// 2022-04-01 API would otherwise assume `User`).
fn assignment_body(
    role_definition_id: &str,
    principal_id: &str,
    principal_type: Option<&str>,
    description: Option<&str>,
) -> Value {
    let mut properties = json!({
        "roleDefinitionId": role_definition_id,
        "principalId": principal_id,
    });
    if let Some(kind) = principal_type {
        properties["principalType"] = json!(kind);
    }
    if let Some(description) = description {
        properties["description"] = json!(description);
    }
    json!({ "properties": properties })
}

/// What a listing keeps.
#[derive(Debug, Clone, PartialEq)]
struct Search {
    /// The scope listed (`None`: the whole subscription, `--all`).
    scope: Option<String>,
    include_inherited: bool,
    principal_id: Option<String>,
    role_id: Option<String>,
}

impl Search {
    /// The list request: `atScope()` at a scope; for the whole subscription, the assignee's
    /// `principalId eq` filter or none (ARM accepts the two filters only apart).
    fn path(&self, subscription_path: &str) -> String {
        let filter = |expression: &str| format!("$filter={}", arm::query_value(expression));
        match (&self.scope, &self.principal_id) {
            (Some(scope), _) => format!(
                "{}?{}",
                under_scope(scope, ROLE_ASSIGNMENTS),
                filter("atScope()")
            ),
            (None, Some(principal)) => format!(
                "{}?{}",
                under_scope(subscription_path, ROLE_ASSIGNMENTS),
                filter(&format!("principalId eq '{principal}'"))
            ),
            (None, None) => under_scope(subscription_path, ROLE_ASSIGNMENTS),
        }
    }

    /// Whether a listed assignment is one asked for: at exactly the scope (or above it with
    /// `include_inherited`), of the principal and of the role.
    fn keeps(&self, assignment: &Value) -> bool {
        if let Some(scope) = &self.scope {
            let assigned_at = field(assignment, "scope").unwrap_or_default();
            if !scope_matches(assigned_at, scope, self.include_inherited) {
                return false;
            }
        }
        if let Some(principal) = &self.principal_id {
            let assigned_to = field(assignment, "principalId").unwrap_or_default();
            if !assigned_to.eq_ignore_ascii_case(principal) {
                return false;
            }
        }
        if let Some(role_id) = &self.role_id {
            let role = field(assignment, "roleDefinitionId").unwrap_or_default();
            if !last_segment(role).eq_ignore_ascii_case(last_segment(role_id)) {
                return false;
            }
        }
        true
    }
}

/// Whether an assignment made at `assigned_at` is listed at `scope`: the same scope (ignoring
/// case and a trailing `/`), or with `include_inherited` any scope above it.
fn scope_matches(assigned_at: &str, scope: &str, include_inherited: bool) -> bool {
    let assigned_at = assigned_at.trim_end_matches('/').to_ascii_lowercase();
    let scope = scope.trim_end_matches('/').to_ascii_lowercase();
    assigned_at == scope
        || (include_inherited
            && (assigned_at.is_empty() || scope.starts_with(&format!("{assigned_at}/"))))
}

/// az's `_search_role_assignments`: resolves the assignee and the role, lists, and filters.
async fn search_assignments(
    arm: &Arm,
    scope: Option<&str>,
    assignee: Option<&str>,
    role: Option<&str>,
    include_inherited: bool,
) -> anyhow::Result<Vec<Value>> {
    let principal_id = match assignee {
        Some(assignee) => Some(resolve_assignee(arm, assignee).await?.object_id),
        None => None,
    };
    let role_id = match role {
        Some(role) => {
            let at = scope.map_or_else(|| arm.subscription_path(), str::to_string);
            Some(resolve_role_id(arm, role, &at).await?)
        }
        None => None,
    };
    let search = Search {
        scope: scope.map(str::to_string),
        include_inherited,
        principal_id,
        role_id,
    };
    search_assignments_for(arm, &search).await
}

async fn search_assignments_for(arm: &Arm, search: &Search) -> anyhow::Result<Vec<Value>> {
    let listed = arm
        .list_at(
            &search.path(&arm.subscription_path()),
            arm::API_AUTHORIZATION,
        )
        .await?;
    Ok(listed
        .into_iter()
        .filter(|assignment| search.keeps(assignment))
        .collect())
}

/// Assignments as `role assignment list` prints them: az's model keys, `roleDefinitionName` from
/// the role definitions at the scope (or the subscription), and `principalName` from Graph ("" for
/// a principal Graph does not name; az leaves the key out when Graph fails altogether, but its
/// own table layout needs it, so openmi always sets it).
async fn decorate(
    arm: &Arm,
    definitions: &mut DefinitionCache,
    scope: Option<&str>,
    assignments: Vec<Value>,
) -> anyhow::Result<Vec<Value>> {
    if assignments.is_empty() {
        return Ok(Vec::new());
    }
    let at = scope.map_or_else(|| arm.subscription_path(), str::to_string);
    let names = role_names(definitions.list(arm, &at).await?);
    let mut principal_ids: Vec<String> = Vec::new();
    for assignment in &assignments {
        if let Some(id) = field(assignment, "principalId").filter(|id| !id.is_empty()) {
            if !principal_ids.contains(&id.to_string()) {
                principal_ids.push(id.to_string());
            }
        }
    }
    let principal_names = principal_names(arm, &principal_ids).await;
    Ok(assignments
        .into_iter()
        .map(|assignment| {
            let mut output = assignment_output(assignment);
            add_names(&mut output, &names, &principal_names);
            output
        })
        .collect())
}

/// Adds `roleDefinitionName` (null when the role is unknown, e.g. deleted) and `principalName`
/// ("" for a principal Graph did not name).
fn add_names(
    assignment: &mut Value,
    role_names: &HashMap<String, String>,
    principal_names: &HashMap<String, String>,
) {
    let role = assignment
        .get("roleDefinitionId")
        .and_then(Value::as_str)
        .map(|id| last_segment(id).to_ascii_lowercase())
        .and_then(|guid| role_names.get(&guid).cloned());
    let principal = assignment
        .get("principalId")
        .and_then(Value::as_str)
        .and_then(|id| principal_names.get(&id.to_ascii_lowercase()).cloned())
        .unwrap_or_default();
    if let Some(object) = assignment.as_object_mut() {
        object.insert("roleDefinitionName".to_string(), json!(role));
        object.insert("principalName".to_string(), json!(principal));
    }
}

/// Role definition GUID (lowercase) to roleName.
fn role_names(definitions: &[Value]) -> HashMap<String, String> {
    definitions
        .iter()
        .filter_map(|definition| {
            let guid = field(definition, "name")
                .map(str::to_string)
                .or_else(|| field(definition, "id").map(|id| last_segment(id).to_string()))?;
            let name = field(definition, "roleName")?;
            Some((guid.to_ascii_lowercase(), name.to_string()))
        })
        .collect()
}

/// Display names of principals (by lowercase object id) from Graph's
/// `directoryObjects/getByIds`, as az's `_get_displayable_name` picks them; none when Graph
/// cannot answer.
async fn principal_names(arm: &Arm, ids: &[String]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for chunk in ids.chunks(1000) {
        let Ok(found) = get_by_ids(arm, chunk).await else {
            break;
        };
        for object in found {
            if let Some(id) = object.get("id").and_then(Value::as_str) {
                names.insert(id.to_ascii_lowercase(), displayable_name(&object));
            }
        }
    }
    names
}

/// az's `_get_displayable_name`: a user's sign-in name, a service principal's first name, or the
/// display name.
fn displayable_name(object: &Value) -> String {
    if let Some(upn) = object.get("userPrincipalName").and_then(Value::as_str) {
        return upn.to_string();
    }
    if let Some(names) = object
        .get("servicePrincipalNames")
        .and_then(Value::as_array)
    {
        return names
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }
    object
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A role assignment as az prints it.
fn assignment_output(assignment: Value) -> Value {
    with_keys(flatten_properties(assignment), ASSIGNMENT_KEYS)
}

/// az's `transform_assignment_list`: Principal, Role, Scope.
fn assignment_table(output: &Value) -> Vec<Vec<(String, Value)>> {
    output
        .as_array()
        .into_iter()
        .flatten()
        .map(|assignment| {
            table_row(
                assignment,
                &[
                    ("Principal", "/principalName"),
                    ("Role", "/roleDefinitionName"),
                    ("Scope", "/scope"),
                ],
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Assignees

/// What `--assignee` looks like.
#[derive(Debug, PartialEq, Eq)]
enum Assignee {
    /// A GUID (lowercase, hyphenated): an application id or an object id.
    Guid(String),
    /// A user's sign-in name.
    UserName(String),
    /// Anything else (az would look for a service principal name).
    Other(String),
}

impl Assignee {
    fn parse(assignee: &str) -> Assignee {
        let assignee = assignee.trim();
        if let Ok(guid) = uuid::Uuid::parse_str(assignee) {
            Assignee::Guid(guid.to_string())
        } else if assignee.contains('@') {
            Assignee::UserName(assignee.to_string())
        } else {
            Assignee::Other(assignee.to_string())
        }
    }
}

/// A resolved assignee.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Principal {
    object_id: String,
    /// `ServicePrincipal`, `User`, `Group`, or unknown.
    principal_type: Option<String>,
}

fn not_found(assignee: &str) -> anyhow::Error {
    anyhow!(
        "Cannot find user or service principal in graph database for '{assignee}'. If the assignee \
         is an appId, make sure the corresponding service principal is created with \
         'openmi ad sp create-for-rbac'."
    )
}

/// az's `_resolve_object_id_and_type` with `fallback_to_object_id`, over what openmi's Graph
/// serves (see the module notes).
async fn resolve_assignee(arm: &Arm, assignee: &str) -> anyhow::Result<Principal> {
    match Assignee::parse(assignee) {
        Assignee::UserName(user) => {
            let path = format!(
                "/v1.0/users?$filter={}",
                arm::query_value(&format!("userPrincipalName eq '{user}'"))
            );
            match arm.graph_get(&path).await {
                Ok(page) => match first_item(&page).and_then(|user| user.get("id")) {
                    Some(Value::String(id)) => Ok(Principal {
                        object_id: id.clone(),
                        principal_type: Some("User".to_string()),
                    }),
                    _ => Err(not_found(&user)),
                },
                Err(error) => Err(anyhow!(
                    "Cannot resolve the user '{user}': this server's Graph does not look users up by \
                     sign-in name ({error}). Pass the user's object id instead: \
                     --assignee-object-id OBJECT_ID --assignee-principal-type User (for list and \
                     delete: --assignee OBJECT_ID)."
                )),
            }
        }
        Assignee::Guid(guid) => {
            let path = format!(
                "/v1.0/servicePrincipals?$filter={}",
                arm::query_value(&format!("appId eq '{guid}'"))
            );
            let by_app_id = match arm.graph_get(&path).await {
                Ok(page) => page,
                // Graph cannot answer: az assumes an object id.
                Err(_) => {
                    return Ok(Principal {
                        object_id: guid,
                        principal_type: None,
                    })
                }
            };
            if let Some(Value::String(id)) = first_item(&by_app_id).and_then(|sp| sp.get("id")) {
                return Ok(Principal {
                    object_id: id.clone(),
                    principal_type: Some("ServicePrincipal".to_string()),
                });
            }
            match get_by_ids(arm, std::slice::from_ref(&guid)).await {
                Ok(found) => match found.first() {
                    Some(object) => Ok(Principal {
                        object_id: object
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or(&guid)
                            .to_string(),
                        principal_type: principal_type_of(object),
                    }),
                    None => Err(not_found(&guid)),
                },
                Err(_) => Ok(Principal {
                    object_id: guid,
                    principal_type: None,
                }),
            }
        }
        Assignee::Other(name) => Err(not_found(&name)),
    }
}

/// The principal type of an object id from Graph, if Graph can tell (az's
/// `_get_principal_type_from_object_id`).
async fn principal_type_of_object(arm: &Arm, object_id: &str) -> Option<String> {
    let found = get_by_ids(arm, &[object_id.to_string()]).await.ok()?;
    found.first().and_then(principal_type_of)
}

/// `POST /v1.0/directoryObjects/getByIds` for users, groups and service principals.
async fn get_by_ids(arm: &Arm, ids: &[String]) -> anyhow::Result<Vec<Value>> {
    let body = json!({
        "ids": ids,
        "types": ["user", "group", "servicePrincipal", "directoryObjectPartnerReference"],
    });
    let page = arm
        .graph_post("/v1.0/directoryObjects/getByIds", &body)
        .await?;
    Ok(page
        .get("value")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// ARM's principal type for a Graph object's `@odata.type`.
fn principal_type_of(object: &Value) -> Option<String> {
    let kind = object.get("@odata.type").and_then(Value::as_str)?;
    match kind.to_ascii_lowercase().as_str() {
        "#microsoft.graph.user" => Some("User".to_string()),
        "#microsoft.graph.serviceprincipal" => Some("ServicePrincipal".to_string()),
        "#microsoft.graph.group" => Some("Group".to_string()),
        _ => None,
    }
}

fn first_item(page: &Value) -> Option<&Value> {
    page.get("value")
        .and_then(Value::as_array)
        .and_then(|items| items.first())
}

// ---------------------------------------------------------------------------------------------
// Roles

/// What `--role` looks like.
#[derive(Debug, PartialEq, Eq)]
enum RoleRef {
    /// A full role definition id, used as it is.
    Id(String),
    /// A role definition GUID.
    Guid(String),
    /// A role name, looked up at the scope.
    Name(String),
}

impl RoleRef {
    fn parse(role: &str) -> RoleRef {
        let role = role.trim();
        let marker = "/providers/microsoft.authorization/roledefinitions/";
        if role.starts_with('/') && role.to_ascii_lowercase().contains(marker) {
            RoleRef::Id(role.to_string())
        } else if let Ok(guid) = uuid::Uuid::parse_str(role) {
            RoleRef::Guid(guid.to_string())
        } else {
            RoleRef::Name(role.to_string())
        }
    }
}

/// az's `_resolve_role_id`: the role definition id of `--role` at `scope`.
pub async fn resolve_role_id(arm: &Arm, role: &str, scope: &str) -> anyhow::Result<String> {
    match RoleRef::parse(role) {
        RoleRef::Id(id) => Ok(id),
        RoleRef::Guid(guid) => Ok(format!(
            "{}/{ROLE_DEFINITIONS}/{guid}",
            arm.subscription_path()
        )),
        RoleRef::Name(name) => {
            let path = format!(
                "{}?$filter={}",
                under_scope(scope, ROLE_DEFINITIONS),
                arm::query_value(&format!("roleName eq '{name}'"))
            );
            let found = arm.list_at(&path, arm::API_AUTHORIZATION).await?;
            pick_role(&found, &name)
        }
    }
}

/// The id of the one definition named `name` (ignoring case) among `definitions`.
fn pick_role(definitions: &[Value], name: &str) -> anyhow::Result<String> {
    let matches: Vec<&str> = definitions
        .iter()
        .filter(|definition| {
            field(definition, "roleName").is_some_and(|role| role.eq_ignore_ascii_case(name))
        })
        .filter_map(|definition| field(definition, "id"))
        .collect();
    match matches.as_slice() {
        [] => Err(anyhow!("Role '{name}' doesn't exist.")),
        [id] => Ok(id.to_string()),
        ids => Err(anyhow!(
            "More than one role matches the given name '{name}'. Please pick an id from '{ids:?}'"
        )),
    }
}

/// Role definitions listed at a scope, read once per scope and run.
#[derive(Default)]
struct DefinitionCache {
    by_scope: HashMap<String, Vec<Value>>,
}

impl DefinitionCache {
    async fn list(&mut self, arm: &Arm, scope: &str) -> anyhow::Result<&[Value]> {
        let key = scope.to_ascii_lowercase();
        if !self.by_scope.contains_key(&key) {
            let listed = arm
                .list_at(
                    &under_scope(scope, ROLE_DEFINITIONS),
                    arm::API_AUTHORIZATION,
                )
                .await?;
            self.by_scope.insert(key.clone(), listed);
        }
        Ok(self.by_scope.get(&key).map(Vec::as_slice).unwrap_or(&[]))
    }
}

/// az's `_search_role_definitions`: those whose name (GUID) or roleName is `name` exactly, and
/// only custom roles when asked.
fn select_definitions(definitions: &[Value], name: Option<&str>, custom_only: bool) -> Vec<Value> {
    definitions
        .iter()
        .filter(|definition| {
            name.is_none_or(|name| {
                field(definition, "name") == Some(name)
                    || field(definition, "roleName") == Some(name)
            })
        })
        .filter(|definition| !custom_only || role_type(definition).as_deref() == Some("CustomRole"))
        .cloned()
        .collect()
}

/// A definition's `properties.type` (or the flattened `roleType`).
fn role_type(definition: &Value) -> Option<String> {
    definition
        .pointer("/properties/type")
        .or_else(|| definition.get("roleType"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A role definition as az prints it: `properties` flattened, `properties.type` as `roleType`,
/// every model key present.
fn definition_output(definition: Value) -> Value {
    let mut definition = definition;
    if let Some(properties) = definition
        .get_mut("properties")
        .and_then(Value::as_object_mut)
    {
        if let Some(kind) = properties.remove("type") {
            properties.entry("roleType").or_insert(kind);
        }
        if let Some(Value::Array(permissions)) = properties.get_mut("permissions") {
            for permission in permissions.iter_mut() {
                *permission = with_keys(permission.take(), PERMISSION_KEYS);
            }
        }
    }
    with_keys(flatten_properties(definition), DEFINITION_KEYS)
}

/// az's `transform_definition_list`: Name (the roleName), Type, Description.
fn definition_table(output: &Value) -> Vec<Vec<(String, Value)>> {
    output
        .as_array()
        .into_iter()
        .flatten()
        .map(|definition| {
            table_row(
                definition,
                &[
                    ("Name", "/roleName"),
                    ("Type", "/type"),
                    ("Description", "/description"),
                ],
            )
        })
        .collect()
}

/// A new custom role: where it is created and its ARM `properties`.
#[derive(Debug, PartialEq)]
struct NewRole {
    first_scope: String,
    properties: Value,
}

/// `--role-definition` as az reads it: `@file`, a file path, or JSON text.
fn read_json_argument(argument: &str) -> anyhow::Result<Value> {
    let text = if let Some(path) = argument.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
    } else if !argument.trim_start().starts_with('{') && std::path::Path::new(argument).is_file() {
        std::fs::read_to_string(argument).with_context(|| format!("cannot read {argument}"))?
    } else {
        argument.to_string()
    };
    serde_json::from_str(&text)
        .map_err(|error| anyhow!("Failed to parse the role definition as JSON: {error}"))
}

/// Keys with their first letter in lower case (`AssignableScopes` → `assignableScopes`), as az
/// normalises a role definition's input.
fn camel_keys(object: &Map<String, Value>) -> Map<String, Value> {
    object
        .iter()
        .map(|(key, value)| {
            let mut characters = key.chars();
            let key = match characters.next() {
                Some(first) => first.to_lowercase().chain(characters).collect(),
                None => String::new(),
            };
            (key, value.clone())
        })
        .collect()
}

/// A list of strings from the input (a lone string is a list of one); absent is empty.
fn string_list(object: &Map<String, Value>, key: &str) -> anyhow::Result<Vec<Value>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(one)) => Ok(vec![json!(one)]),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(items.clone()),
        Some(_) => Err(anyhow!("'{key}' must be a list of strings")),
    }
}

/// One ARM permission from an input object with `actions`, `notActions`, `dataActions`,
/// `notDataActions`.
fn permission(object: &Map<String, Value>) -> anyhow::Result<Value> {
    Ok(json!({
        "actions": string_list(object, "actions")?,
        "notActions": string_list(object, "notActions")?,
        "dataActions": string_list(object, "dataActions")?,
        "notDataActions": string_list(object, "notDataActions")?,
    }))
}

/// az's `_create_update_role_definition` for create: the input's keys camel-cased; the role
/// name from `roleName`, else `name`; permissions from `permissions` or from the top level; at
/// least one assignable scope. ARM's form (`{"properties": {...}}`) is read the same way.
fn new_role(input: &Value) -> anyhow::Result<NewRole> {
    let Some(object) = input.as_object() else {
        return Err(anyhow!(
            "Invalid role definition. A valid dictionary JSON representation is expected."
        ));
    };
    let top = camel_keys(object);
    let source = match top.get("properties") {
        Some(Value::Object(properties)) => camel_keys(properties),
        _ => top.clone(),
    };
    let text = |key: &str| {
        source
            .get(key)
            .and_then(Value::as_str)
            .filter(|text| !text.trim().is_empty())
    };
    let in_arm_form = top.get("properties").is_some_and(Value::is_object);
    let role_name = text("roleName")
        .or_else(|| if in_arm_form { None } else { text("name") })
        .ok_or_else(|| anyhow!("please provide role name"))?;
    let scopes = string_list(&source, "assignableScopes")?
        .iter()
        .map(|scope| parse_scope(scope.as_str().unwrap_or_default()))
        .collect::<anyhow::Result<Vec<String>>>()?;
    let Some(first_scope) = scopes.first().cloned() else {
        return Err(anyhow!("please provide 'assignableScopes'"));
    };
    let permissions = match source.get("permissions") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Object(item) => permission(&camel_keys(item)),
                _ => Err(anyhow!("each of 'permissions' must be an object")),
            })
            .collect::<anyhow::Result<Vec<Value>>>()?,
        Some(_) => return Err(anyhow!("'permissions' must be a list")),
        None => vec![permission(&source)?],
    };
    let mut properties = json!({
        "roleName": role_name,
        "type": "CustomRole",
        "permissions": permissions,
        "assignableScopes": scopes,
    });
    if let Some(description) = text("description") {
        properties["description"] = json!(description);
    }
    Ok(NewRole {
        first_scope,
        properties,
    })
}

// ---------------------------------------------------------------------------------------------
// Scopes and fields

/// A `--scope` value: a bare subscription id or `/id` means `/subscriptions/id`; otherwise it
/// must be a path, kept as typed but for a trailing `/` (the root scope `/` stays).
pub fn parse_scope(scope: &str) -> anyhow::Result<String> {
    let scope = scope.trim();
    let bare = scope.strip_prefix('/').unwrap_or(scope);
    if let Ok(subscription) = uuid::Uuid::parse_str(bare) {
        return Ok(format!("/subscriptions/{subscription}"));
    }
    if !scope.starts_with('/') || scope.contains("//") || scope.contains(['?', '#']) {
        return Err(anyhow!(
            "Invalid scope '{scope}'. Use /subscriptions/SUBSCRIPTION_ID, \
             /subscriptions/SUBSCRIPTION_ID/resourceGroups/GROUP, a resource id, or a subscription id."
        ));
    }
    let trimmed = scope.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

/// az's `_build_role_scope`: `--scope`, else the group `-g`, else the subscription.
fn build_scope(
    group: Option<&str>,
    scope: Option<&str>,
    subscription: &str,
) -> anyhow::Result<String> {
    match (scope, group) {
        (Some(_), Some(group)) => Err(anyhow!(
            "Resource group \"{group}\" is redundant because scope is supplied"
        )),
        (Some(scope), None) => parse_scope(scope),
        (None, Some(group)) => Ok(format!(
            "/subscriptions/{}/resourceGroups/{}",
            arm::segment(subscription),
            arm::segment(group)
        )),
        (None, None) => Ok(format!("/subscriptions/{}", arm::segment(subscription))),
    }
}

/// `{scope}/{rest}`, for the root scope `/` too.
fn under_scope(scope: &str, rest: &str) -> String {
    format!("{}/{rest}", scope.trim_end_matches('/'))
}

/// The last `/` segment of an id (a role definition's GUID).
fn last_segment(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

/// A string field of an ARM object, read from `properties` first, then from the top level (so
/// flattened outputs read the same).
fn field<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .get("properties")
        .and_then(|properties| properties.get(key))
        .or_else(|| object.get(key))
        .and_then(Value::as_str)
}

/// `value` with every key of `keys` present (null when absent), as az's model outputs have them.
fn with_keys(mut value: Value, keys: &[&str]) -> Value {
    if let Some(object) = value.as_object_mut() {
        for key in keys {
            object.entry(key.to_string()).or_insert(Value::Null);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";
    const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

    fn reader_id() -> String {
        format!("/subscriptions/{SUB}/{ROLE_DEFINITIONS}/{READER}")
    }

    fn assignment(scope: &str, principal: &str, role_guid: &str) -> Value {
        json!({
            "id": format!("{scope}/{ROLE_ASSIGNMENTS}/11111111-1111-1111-1111-111111111111"),
            "name": "11111111-1111-1111-1111-111111111111",
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "scope": scope,
                "principalId": principal,
                "principalType": "ServicePrincipal",
                "roleDefinitionId": format!("/subscriptions/{SUB}/{ROLE_DEFINITIONS}/{role_guid}"),
            }
        })
    }

    #[test]
    fn scopes_accept_subscription_ids_and_paths() {
        assert_eq!(parse_scope(SUB).unwrap(), format!("/subscriptions/{SUB}"));
        assert_eq!(
            parse_scope(&format!("/{SUB}")).unwrap(),
            format!("/subscriptions/{SUB}")
        );
        assert_eq!(
            parse_scope(&format!("/subscriptions/{SUB}/resourcegroups/rg/")).unwrap(),
            format!("/subscriptions/{SUB}/resourcegroups/rg")
        );
        assert_eq!(parse_scope("/").unwrap(), "/");
        assert!(parse_scope("subscriptions/x").is_err());
        assert!(parse_scope("/subscriptions//x").is_err());
        assert!(parse_scope("rg").is_err());
    }

    #[test]
    fn scope_defaults_follow_az() {
        assert_eq!(
            build_scope(None, None, SUB).unwrap(),
            format!("/subscriptions/{SUB}")
        );
        assert_eq!(
            build_scope(Some("my rg"), None, SUB).unwrap(),
            format!("/subscriptions/{SUB}/resourceGroups/my%20rg")
        );
        assert_eq!(
            build_scope(None, Some(SUB), "other").unwrap(),
            format!("/subscriptions/{SUB}")
        );
        assert!(build_scope(Some("rg"), Some("/subscriptions/x"), SUB).is_err());
        assert_eq!(
            under_scope("/", ROLE_DEFINITIONS),
            format!("/{ROLE_DEFINITIONS}")
        );
    }

    #[test]
    fn assignees_are_guids_user_names_or_other() {
        assert_eq!(
            Assignee::parse(" 6A3C7B3B-0000-4000-8000-00000000000A "),
            Assignee::Guid("6a3c7b3b-0000-4000-8000-00000000000a".to_string())
        );
        assert_eq!(
            Assignee::parse("alice@contoso.com"),
            Assignee::UserName("alice@contoso.com".to_string())
        );
        assert_eq!(
            Assignee::parse("http://my-app"),
            Assignee::Other("http://my-app".to_string())
        );
    }

    #[test]
    fn roles_are_ids_guids_or_names() {
        assert_eq!(RoleRef::parse(&reader_id()), RoleRef::Id(reader_id()));
        let tenant_level = format!("/providers/Microsoft.Authorization/roleDefinitions/{READER}");
        assert_eq!(
            RoleRef::parse(&tenant_level),
            RoleRef::Id(tenant_level.clone())
        );
        assert_eq!(
            RoleRef::parse(&READER.to_uppercase()),
            RoleRef::Guid(READER.to_string())
        );
        assert_eq!(
            RoleRef::parse("Virtual Machine Contributor"),
            RoleRef::Name("Virtual Machine Contributor".to_string())
        );
    }

    #[test]
    fn a_role_name_must_match_exactly_one_definition_ignoring_case() {
        let definitions = vec![
            json!({"id": reader_id(), "name": READER, "properties": {"roleName": "Reader"}}),
            json!({"id": "/x/other", "name": "other", "properties": {"roleName": "Reader and Data Access"}}),
        ];
        assert_eq!(pick_role(&definitions, "reader").unwrap(), reader_id());
        assert_eq!(
            pick_role(&definitions, "Owner").unwrap_err().to_string(),
            "Role 'Owner' doesn't exist."
        );
        let twice = vec![definitions[0].clone(), definitions[0].clone()];
        assert!(pick_role(&twice, "Reader")
            .unwrap_err()
            .to_string()
            .starts_with("More than one role matches"));
    }

    #[test]
    fn list_requests_use_az_filters() {
        let sub = format!("/subscriptions/{SUB}");
        let mut search = Search {
            scope: Some(format!("{sub}/resourceGroups/rg")),
            include_inherited: false,
            principal_id: Some("p".to_string()),
            role_id: None,
        };
        assert_eq!(
            search.path(&sub),
            format!("{sub}/resourceGroups/rg/{ROLE_ASSIGNMENTS}?$filter=atScope%28%29")
        );
        search.scope = None;
        assert_eq!(
            search.path(&sub),
            format!("{sub}/{ROLE_ASSIGNMENTS}?$filter=principalId%20eq%20%27p%27")
        );
        search.principal_id = None;
        assert_eq!(search.path(&sub), format!("{sub}/{ROLE_ASSIGNMENTS}"));
    }

    #[test]
    fn listings_keep_the_scope_principal_and_role_asked_for() {
        let sub = format!("/subscriptions/{SUB}");
        let group = format!("{sub}/resourceGroups/rg");
        let at_sub = assignment(&sub, "P1", READER);
        let at_group = assignment(&group.to_uppercase(), "p2", READER);
        let other_role = assignment(&group, "p2", "b24988ac-6180-42a0-ab88-20f7382dd24c");
        let mut search = Search {
            scope: Some(group.clone()),
            include_inherited: false,
            principal_id: None,
            role_id: None,
        };
        assert!(!search.keeps(&at_sub));
        assert!(search.keeps(&at_group));
        search.include_inherited = true;
        assert!(search.keeps(&at_sub));
        search.principal_id = Some("p1".to_string());
        assert!(search.keeps(&at_sub));
        assert!(!search.keeps(&at_group));
        search.principal_id = None;
        search.role_id = Some(READER.to_uppercase());
        assert!(search.keeps(&at_group));
        assert!(!search.keeps(&other_role));
        // --all: any scope.
        search.scope = None;
        assert!(search.keeps(&at_group));
    }

    #[test]
    fn inherited_scopes_stop_at_segment_boundaries() {
        assert!(scope_matches(
            "/subscriptions/s/",
            "/subscriptions/S",
            false
        ));
        assert!(scope_matches(
            "/subscriptions/s",
            "/subscriptions/s/resourceGroups/rg",
            true
        ));
        assert!(!scope_matches(
            "/subscriptions/s",
            "/subscriptions/s/resourceGroups/rg",
            false
        ));
        assert!(!scope_matches(
            "/subscriptions/s1",
            "/subscriptions/s10",
            true
        ));
        assert!(scope_matches("/", "/subscriptions/s", true));
        assert!(!scope_matches(
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s",
            true
        ));
    }

    #[test]
    fn assignment_bodies_carry_the_type_only_when_known() {
        assert_eq!(
            assignment_body("/r", "p", Some("ServicePrincipal"), None),
            json!({"properties": {"roleDefinitionId": "/r", "principalId": "p", "principalType": "ServicePrincipal"}})
        );
        assert_eq!(
            assignment_body("/r", "p", None, Some("why")),
            json!({"properties": {"roleDefinitionId": "/r", "principalId": "p", "description": "why"}})
        );
    }

    #[test]
    fn assignment_output_is_az_shaped_and_names_are_added() {
        let sub = format!("/subscriptions/{SUB}");
        let mut output = assignment_output(assignment(&sub, "P1", READER));
        assert_eq!(output["scope"], json!(sub));
        assert_eq!(output["principalType"], "ServicePrincipal");
        assert_eq!(output["condition"], Value::Null);
        assert!(output.get("properties").is_none());
        for key in ASSIGNMENT_KEYS {
            assert!(output.get(key).is_some(), "{key}");
        }
        let roles = role_names(&[
            json!({"id": reader_id(), "name": READER, "properties": {"roleName": "Reader"}}),
        ]);
        add_names(&mut output, &roles, &HashMap::new());
        assert_eq!(output["roleDefinitionName"], "Reader");
        assert_eq!(output["principalName"], "");
        let principals = HashMap::from([("p1".to_string(), "app-id".to_string())]);
        add_names(&mut output, &HashMap::new(), &principals);
        assert_eq!(output["roleDefinitionName"], Value::Null);
        assert_eq!(output["principalName"], "app-id");
    }

    #[test]
    fn principal_names_and_types_follow_az() {
        assert_eq!(
            displayable_name(&json!({"userPrincipalName": "a@b", "displayName": "A"})),
            "a@b"
        );
        assert_eq!(
            displayable_name(&json!({"servicePrincipalNames": ["app"], "displayName": "A"})),
            "app"
        );
        assert_eq!(displayable_name(&json!({"displayName": "G"})), "G");
        assert_eq!(
            principal_type_of(&json!({"@odata.type": "#microsoft.graph.servicePrincipal"})),
            Some("ServicePrincipal".to_string())
        );
        assert_eq!(principal_type_of(&json!({})), None);
    }

    #[test]
    fn definition_output_flattens_and_renames_type() {
        let definition = json!({
            "id": reader_id(),
            "name": READER,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": "Reader",
                "type": "BuiltInRole",
                "description": "View all resources",
                "assignableScopes": ["/"],
                "permissions": [{"actions": ["*/read"], "notActions": []}]
            }
        });
        let output = definition_output(definition);
        assert_eq!(output["type"], "Microsoft.Authorization/roleDefinitions");
        assert_eq!(output["roleType"], "BuiltInRole");
        assert_eq!(output["roleName"], "Reader");
        assert_eq!(output["createdOn"], Value::Null);
        assert_eq!(
            output["permissions"],
            json!([{"actions": ["*/read"], "notActions": [], "dataActions": null,
                    "notDataActions": null, "condition": null, "conditionVersion": null}])
        );
    }

    #[test]
    fn definitions_are_selected_by_name_guid_and_type() {
        let definitions = vec![
            json!({"name": READER, "properties": {"roleName": "Reader", "type": "BuiltInRole"}}),
            json!({"name": "c", "properties": {"roleName": "Mine", "type": "CustomRole"}}),
        ];
        assert_eq!(select_definitions(&definitions, None, false).len(), 2);
        assert_eq!(
            select_definitions(&definitions, Some("Reader"), false).len(),
            1
        );
        assert_eq!(
            select_definitions(&definitions, Some(READER), false).len(),
            1
        );
        // az matches names exactly.
        assert!(select_definitions(&definitions, Some("reader"), false).is_empty());
        let custom = select_definitions(&definitions, None, true);
        assert_eq!(custom.len(), 1);
        assert_eq!(custom[0]["name"], "c");
    }

    #[test]
    fn az_role_definition_input_becomes_arm_properties() {
        let input = json!({
            "Name": "Reader Plus",
            "IsCustom": true,
            "Description": "Reads and restarts",
            "Actions": ["*/read", "Microsoft.Compute/virtualMachines/restart/action"],
            "NotActions": "Microsoft.Authorization/*/write",
            "DataActions": [],
            "AssignableScopes": [format!("/subscriptions/{SUB}/"), "/subscriptions/other"]
        });
        let role = new_role(&input).unwrap();
        assert_eq!(role.first_scope, format!("/subscriptions/{SUB}"));
        assert_eq!(
            role.properties,
            json!({
                "roleName": "Reader Plus",
                "description": "Reads and restarts",
                "type": "CustomRole",
                "permissions": [{
                    "actions": ["*/read", "Microsoft.Compute/virtualMachines/restart/action"],
                    "notActions": ["Microsoft.Authorization/*/write"],
                    "dataActions": [],
                    "notDataActions": []
                }],
                "assignableScopes": [format!("/subscriptions/{SUB}"), "/subscriptions/other"]
            })
        );
    }

    #[test]
    fn arm_role_definition_input_is_read_too() {
        let input = json!({
            "name": "5a5a5a5a-0000-4000-8000-000000000000",
            "properties": {
                "roleName": "Custom",
                "permissions": [
                    {"actions": ["a"], "notActions": ["b"]},
                    {"Actions": ["c"], "DataActions": ["d"]}
                ],
                "assignableScopes": [SUB]
            }
        });
        let role = new_role(&input).unwrap();
        assert_eq!(role.first_scope, format!("/subscriptions/{SUB}"));
        assert_eq!(role.properties["roleName"], "Custom");
        assert!(role.properties.get("description").is_none());
        assert_eq!(
            role.properties["permissions"],
            json!([
                {"actions": ["a"], "notActions": ["b"], "dataActions": [], "notDataActions": []},
                {"actions": ["c"], "notActions": [], "dataActions": ["d"], "notDataActions": []}
            ])
        );
    }

    #[test]
    fn role_definition_input_errors_are_az_worded() {
        assert_eq!(
            new_role(&json!([])).unwrap_err().to_string(),
            "Invalid role definition. A valid dictionary JSON representation is expected."
        );
        assert_eq!(
            new_role(&json!({"AssignableScopes": ["/subscriptions/s"]}))
                .unwrap_err()
                .to_string(),
            "please provide role name"
        );
        assert_eq!(
            new_role(&json!({"Name": "x", "AssignableScopes": []}))
                .unwrap_err()
                .to_string(),
            "please provide 'assignableScopes'"
        );
        assert!(
            new_role(&json!({"Name": "x", "Actions": [1], "AssignableScopes": ["/"]})).is_err()
        );
    }

    /// The CLI as the `openmi` binary mounts it.
    #[derive(Debug, clap::Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: crate::Command,
    }

    /// Parses a command line given as one string (split at spaces; `SUB` is the subscription).
    fn parse(line: &str) -> Result<TestCli, clap::Error> {
        use clap::Parser as _;
        let line = line.replace("SUB", SUB);
        TestCli::try_parse_from(std::iter::once("openmi").chain(line.split_whitespace()))
    }

    #[test]
    fn command_line_follows_az_argument_rules() {
        use clap::CommandFactory as _;
        TestCli::command().debug_assert();
        let parsed =
            parse("role assignment create --assignee x --role Reader --scope SUB -o tsv").unwrap();
        let crate::Command::Role(RoleCommand {
            action:
                RoleAction::Assignment {
                    action: AssignmentAction::Create(args),
                },
            ..
        }) = parsed.command
        else {
            panic!("not a role assignment create: {parsed:?}");
        };
        assert_eq!(args.assignee.as_deref(), Some("x"));
        assert_eq!(args.scope, SUB);
        // --scope is required; --assignee and --assignee-object-id exclude each other, and one
        // of them is needed. (--assignee-principal-type without --assignee-object-id is refused
        // by `run`, with az's message.)
        assert!(parse("role assignment create --assignee x --role r").is_err());
        assert!(parse(
            "role assignment create --assignee x --assignee-object-id y --role r --scope SUB"
        )
        .is_err());
        assert!(parse("role assignment create --role r --scope SUB").is_err());
        assert!(parse(
            "role assignment create --assignee-object-id y --assignee-principal-type \
             serviceprincipal --role r --scope SUB"
        )
        .is_ok());
        assert!(parse("role assignment delete --ids /a --role r").is_err());
        assert!(parse("role assignment delete --ids /a /b -y").is_ok());
        assert!(parse("role assignment list --all --assignee x").is_ok());
        assert!(parse("role definition list --custom-role-only").is_ok());
        assert!(parse("role definition list --custom-role-only false -n Reader").is_ok());
        assert!(parse("vm create -g rg -n vm --assign-identity --role Reader --scope SUB").is_ok());
    }

    #[test]
    fn role_definition_argument_is_json_file_or_at_file() {
        let dir = std::env::temp_dir().join(format!("openmi-role-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("role.json");
        std::fs::write(&path, r#"{"Name": "x"}"#).unwrap();
        let path_text = path.to_str().unwrap();
        assert_eq!(read_json_argument(path_text).unwrap(), json!({"Name": "x"}));
        assert_eq!(
            read_json_argument(&format!("@{path_text}")).unwrap(),
            json!({"Name": "x"})
        );
        assert_eq!(
            read_json_argument(r#"{"Name": "y"}"#).unwrap(),
            json!({"Name": "y"})
        );
        assert!(read_json_argument("not json").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
