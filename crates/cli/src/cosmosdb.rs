//! `openmi cosmosdb ...`: Cosmos DB accounts, SQL databases and containers, and data-plane role
//! definitions and assignments, with az's flag names (`az cosmosdb` 2.91: `-n/--name`,
//! `-g/--resource-group`, `-a/--account-name`, `-d/--database-name`, `-p/--partition-key-path`,
//! `--ttl`, `--locations regionName=… failoverPriority=…`, `--disable-local-auth`,
//! `keys list --type keys|read-only-keys|connection-strings`, `sql role definition create -b`,
//! `sql role assignment create --scope --principal-id --role-definition-id|--role-definition-name`).
//! Everything is an ARM call, so RBAC is the server's as for any client.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::arm::{self, Arm, ArmArgs};
use crate::output::Outcome;

/// What `az cosmosdb` 2.91 sends.
const API: &str = "2024-05-15";
const ACCOUNT_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts";

/// `openmi cosmosdb ...`
#[derive(Debug, Args)]
pub struct CosmosdbCommand {
    #[command(flatten)]
    pub global: ArmArgs,
    #[command(subcommand)]
    pub action: CosmosdbAction,
}

/// The account verbs.
#[derive(Debug, Subcommand)]
pub enum CosmosdbAction {
    /// Create (or update) a Cosmos DB account.
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        /// Locations: `regionName=westus failoverPriority=0 isZoneRedundant=False` (repeatable).
        #[arg(long, num_args = 1.., action = clap::ArgAction::Append)]
        locations: Vec<String>,
        /// Allow only Entra (Microsoft Entra ID) tokens on the data plane.
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        disable_local_auth: Option<bool>,
    },
    /// Show an account.
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// List the accounts of a group or of the subscription.
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Update an account (`--disable-local-auth`).
    Update {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        disable_local_auth: Option<bool>,
    },
    /// Delete an account with its databases and items.
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// The account's keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// SQL (NoSQL) databases, containers and data-plane roles.
    Sql {
        #[command(subcommand)]
        action: SqlAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// List keys (`--type keys`), read-only keys or connection strings.
    List {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long = "type", default_value = "keys", value_parser = ["keys", "read-only-keys", "connection-strings"])]
        kind: String,
    },
    /// Regenerate one key (`--key-kind primary|secondary|primaryReadonly|secondaryReadonly`).
    Regenerate {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long)]
        key_kind: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SqlAction {
    /// SQL databases.
    Database {
        #[command(subcommand)]
        action: DatabaseAction,
    },
    /// SQL containers.
    Container {
        #[command(subcommand)]
        action: ContainerAction,
    },
    /// Data-plane role definitions and assignments.
    Role {
        #[command(subcommand)]
        action: RoleAction,
    },
}

/// Where a database or container is.
#[derive(Debug, Args)]
pub struct InAccount {
    #[arg(long, short = 'a')]
    account_name: String,
    #[arg(long, short = 'g')]
    resource_group: String,
}

#[derive(Debug, Subcommand)]
pub enum DatabaseAction {
    Create {
        #[command(flatten)]
        at: InAccount,
        #[arg(long, short = 'n')]
        name: String,
    },
    Show {
        #[command(flatten)]
        at: InAccount,
        #[arg(long, short = 'n')]
        name: String,
    },
    List {
        #[command(flatten)]
        at: InAccount,
    },
    Delete {
        #[command(flatten)]
        at: InAccount,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContainerAction {
    Create {
        #[command(flatten)]
        at: InAccount,
        #[arg(long, short = 'd')]
        database_name: String,
        #[arg(long, short = 'n')]
        name: String,
        /// Partition key path(s), e.g. `/pk` (repeat, or comma-separate, for a hierarchical key).
        #[arg(long, short = 'p', value_delimiter = ',', num_args = 1..)]
        partition_key_path: Vec<String>,
        /// Default time to live in seconds (-1: items do not expire unless they say so).
        #[arg(long)]
        ttl: Option<i64>,
    },
    Show {
        #[command(flatten)]
        at: InAccount,
        #[arg(long, short = 'd')]
        database_name: String,
        #[arg(long, short = 'n')]
        name: String,
    },
    List {
        #[command(flatten)]
        at: InAccount,
        #[arg(long, short = 'd')]
        database_name: String,
    },
    Delete {
        #[command(flatten)]
        at: InAccount,
        #[arg(long, short = 'd')]
        database_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleAction {
    Definition {
        #[command(subcommand)]
        action: DefinitionAction,
    },
    Assignment {
        #[command(subcommand)]
        action: AssignmentAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum DefinitionAction {
    /// Create a custom role: `-b @file.json` or JSON with az's keys (`Id`, `RoleName`, `Type`,
    /// `AssignableScopes`, `Permissions[].DataActions`).
    Create {
        #[command(flatten)]
        at: InAccount,
        #[arg(long, short = 'b')]
        body: String,
    },
    List {
        #[command(flatten)]
        at: InAccount,
    },
    Delete {
        #[command(flatten)]
        at: InAccount,
        /// The role definition's GUID or id.
        #[arg(long, short = 'i')]
        id: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AssignmentAction {
    Create {
        #[command(flatten)]
        at: InAccount,
        /// `/`, `/dbs/{db}`, `/dbs/{db}/colls/{c}` or a full id.
        #[arg(long, short = 's')]
        scope: String,
        #[arg(long, short = 'p')]
        principal_id: String,
        #[arg(long, short = 'd', conflicts_with = "role_definition_name")]
        role_definition_id: Option<String>,
        #[arg(long, short = 'n')]
        role_definition_name: Option<String>,
        /// The assignment's GUID; default: a new one.
        #[arg(long, short = 'i')]
        role_assignment_id: Option<String>,
    },
    List {
        #[command(flatten)]
        at: InAccount,
    },
    Delete {
        #[command(flatten)]
        at: InAccount,
        #[arg(long, short = 'i')]
        role_assignment_id: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

fn account_path(arm: &Arm, group: &str, name: &str) -> String {
    arm.resource_id(group, ACCOUNT_TYPE, name)
}

/// az's `--locations regionName=westus failoverPriority=0 isZoneRedundant=False`.
fn parse_locations(items: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut locations = Vec::new();
    let mut current = serde_json::Map::new();
    for item in items {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("--locations expects KEY=VALUE pairs, not '{item}'"))?;
        let key = match key.to_lowercase().as_str() {
            "regionname" | "locationname" => "locationName",
            "failoverpriority" => "failoverPriority",
            "iszoneredundant" => "isZoneRedundant",
            other => return Err(anyhow!("--locations: unknown key '{other}'")),
        };
        if key == "locationName" && current.contains_key("locationName") {
            locations.push(Value::Object(std::mem::take(&mut current)));
        }
        let value = match key {
            "failoverPriority" => json!(value
                .parse::<i64>()
                .map_err(|_| anyhow!("failoverPriority must be a number"))?),
            "isZoneRedundant" => json!(value.eq_ignore_ascii_case("true")),
            _ => json!(value),
        };
        current.insert(key.to_string(), value);
    }
    if !current.is_empty() {
        locations.push(Value::Object(current));
    }
    Ok(locations)
}

/// az's role definition body (PascalCase keys) in ARM's shape.
fn role_definition_body(text: &str, account_id: &str) -> anyhow::Result<(String, Value)> {
    let text = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|error| anyhow!("cannot read {path}: {error}"))?
        }
        None => text.to_string(),
    };
    let given: Value = serde_json::from_str(&text)
        .map_err(|error| anyhow!("--body is not valid JSON: {error}"))?;
    let field = |names: &[&str]| names.iter().find_map(|name| given.get(*name)).cloned();
    let id = field(&["Id", "id"])
        .and_then(|id| id.as_str().map(str::to_string))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let guid = id.rsplit('/').next().unwrap_or(&id).to_string();
    let scopes: Vec<Value> = field(&["AssignableScopes", "assignableScopes"])
        .and_then(|s| s.as_array().cloned())
        .unwrap_or_else(|| vec![json!("/")])
        .into_iter()
        .map(|scope| match scope.as_str() {
            Some(s) if !s.starts_with("/subscriptions/") => {
                json!(format!("{account_id}{}", if s == "/" { "" } else { s }))
            }
            _ => scope,
        })
        .collect();
    let permissions: Vec<Value> = field(&["Permissions", "permissions"])
        .and_then(|p| p.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|p| json!({"dataActions": p.get("DataActions").or_else(|| p.get("dataActions")).cloned().unwrap_or(json!([]))}))
        .collect();
    Ok((
        guid,
        json!({"properties": {
            "roleName": field(&["RoleName", "roleName"]).unwrap_or(Value::Null),
            "type": "CustomRole",
            "assignableScopes": scopes,
            "permissions": permissions,
        }}),
    ))
}

/// Runs a cosmosdb verb.
pub async fn run(command: CosmosdbCommand) -> anyhow::Result<Outcome> {
    let arm = Arm::connect(command.global.subscription.as_deref()).await?;
    match command.action {
        CosmosdbAction::Create {
            name,
            resource_group,
            locations,
            disable_local_auth,
        } => {
            let location = crate::identity::group_location(&arm, &resource_group).await?;
            let mut locations = parse_locations(&locations)?;
            if locations.is_empty() {
                locations.push(json!({"locationName": location, "failoverPriority": 0, "isZoneRedundant": false}));
            }
            let body = json!({
                "location": location,
                "kind": "GlobalDocumentDB",
                "properties": {"databaseAccountOfferType": "Standard", "locations": locations, "disableLocalAuth": disable_local_auth.unwrap_or(false)},
            });
            Ok(Outcome::value(
                arm.put(&account_path(&arm, &resource_group, &name), API, &body)
                    .await?,
            ))
        }
        CosmosdbAction::Show {
            name,
            resource_group,
        } => Ok(Outcome::value(
            arm.get(&account_path(&arm, &resource_group, &name), API)
                .await?,
        )),
        CosmosdbAction::List { resource_group } => {
            let path = match resource_group {
                Some(group) => format!("{}/providers/{ACCOUNT_TYPE}", arm.group_id(&group)),
                None => format!("{}/providers/{ACCOUNT_TYPE}", arm.subscription_path()),
            };
            Ok(Outcome::value(Value::Array(arm.list_at(&path, API).await?)))
        }
        CosmosdbAction::Update {
            name,
            resource_group,
            disable_local_auth,
        } => {
            let path = account_path(&arm, &resource_group, &name);
            let mut body = json!({"properties": {}});
            if let Some(disable) = disable_local_auth {
                body["properties"]["disableLocalAuth"] = json!(disable);
            }
            Ok(Outcome::value(arm.patch(&path, API, &body).await?))
        }
        CosmosdbAction::Delete {
            name,
            resource_group,
            yes,
        } => {
            crate::confirm(yes)?;
            arm.delete(&account_path(&arm, &resource_group, &name), API, true)
                .await?;
            Ok(Outcome::nothing())
        }
        CosmosdbAction::Keys {
            action:
                KeysAction::List {
                    name,
                    resource_group,
                    kind,
                },
        } => {
            let action = match kind.as_str() {
                "read-only-keys" => "readonlykeys",
                "connection-strings" => "listConnectionStrings",
                _ => "listKeys",
            };
            let path = format!("{}/{action}", account_path(&arm, &resource_group, &name));
            Ok(Outcome::value(arm.post_empty(&path, API).await?))
        }
        CosmosdbAction::Keys {
            action:
                KeysAction::Regenerate {
                    name,
                    resource_group,
                    key_kind,
                },
        } => {
            let path = format!(
                "{}/regenerateKey",
                account_path(&arm, &resource_group, &name)
            );
            arm.post_text(&path, API, json!({"keyKind": key_kind}).to_string())
                .await?;
            Ok(Outcome::nothing())
        }
        CosmosdbAction::Sql { action } => sql(&arm, action).await,
    }
}

async fn sql(arm: &Arm, action: SqlAction) -> anyhow::Result<Outcome> {
    let account = |at: &InAccount| account_path(arm, &at.resource_group, &at.account_name);
    match action {
        SqlAction::Database { action } => match action {
            DatabaseAction::Create { at, name } => {
                let body = json!({"properties": {"resource": {"id": name}, "options": {}}});
                Ok(Outcome::value(
                    arm.put(
                        &format!("{}/sqlDatabases/{}", account(&at), arm::segment(&name)),
                        API,
                        &body,
                    )
                    .await?,
                ))
            }
            DatabaseAction::Show { at, name } => Ok(Outcome::value(
                arm.get(
                    &format!("{}/sqlDatabases/{}", account(&at), arm::segment(&name)),
                    API,
                )
                .await?,
            )),
            DatabaseAction::List { at } => Ok(Outcome::value(Value::Array(
                arm.list_at(&format!("{}/sqlDatabases", account(&at)), API)
                    .await?,
            ))),
            DatabaseAction::Delete { at, name, yes } => {
                crate::confirm(yes)?;
                arm.delete(
                    &format!("{}/sqlDatabases/{}", account(&at), arm::segment(&name)),
                    API,
                    true,
                )
                .await?;
                Ok(Outcome::nothing())
            }
        },
        SqlAction::Container { action } => match action {
            ContainerAction::Create {
                at,
                database_name,
                name,
                partition_key_path,
                ttl,
            } => {
                if partition_key_path.is_empty() {
                    return Err(anyhow!(
                        "the following arguments are required: --partition-key-path/-p"
                    ));
                }
                let mut resource = json!({
                    "id": name,
                    "partitionKey": {"paths": partition_key_path, "kind": if partition_key_path.len() > 1 { "MultiHash" } else { "Hash" }, "version": 2},
                });
                if let Some(ttl) = ttl {
                    resource["defaultTtl"] = json!(ttl);
                }
                let body = json!({"properties": {"resource": resource, "options": {}}});
                let path = format!(
                    "{}/sqlDatabases/{}/containers/{}",
                    account(&at),
                    arm::segment(&database_name),
                    arm::segment(&name)
                );
                Ok(Outcome::value(arm.put(&path, API, &body).await?))
            }
            ContainerAction::Show {
                at,
                database_name,
                name,
            } => {
                let path = format!(
                    "{}/sqlDatabases/{}/containers/{}",
                    account(&at),
                    arm::segment(&database_name),
                    arm::segment(&name)
                );
                Ok(Outcome::value(arm.get(&path, API).await?))
            }
            ContainerAction::List { at, database_name } => {
                let path = format!(
                    "{}/sqlDatabases/{}/containers",
                    account(&at),
                    arm::segment(&database_name)
                );
                Ok(Outcome::value(Value::Array(arm.list_at(&path, API).await?)))
            }
            ContainerAction::Delete {
                at,
                database_name,
                name,
                yes,
            } => {
                crate::confirm(yes)?;
                let path = format!(
                    "{}/sqlDatabases/{}/containers/{}",
                    account(&at),
                    arm::segment(&database_name),
                    arm::segment(&name)
                );
                arm.delete(&path, API, true).await?;
                Ok(Outcome::nothing())
            }
        },
        SqlAction::Role {
            action: RoleAction::Definition { action },
        } => match action {
            DefinitionAction::Create { at, body } => {
                let account_id = account(&at);
                let (guid, request) = role_definition_body(&body, &account_id)?;
                Ok(Outcome::value(
                    arm.put(
                        &format!("{account_id}/sqlRoleDefinitions/{guid}"),
                        API,
                        &request,
                    )
                    .await?,
                ))
            }
            DefinitionAction::List { at } => Ok(Outcome::value(Value::Array(
                arm.list_at(&format!("{}/sqlRoleDefinitions", account(&at)), API)
                    .await?,
            ))),
            DefinitionAction::Delete { at, id, yes } => {
                crate::confirm(yes)?;
                let guid = id.rsplit('/').next().unwrap_or(&id).to_string();
                arm.delete(
                    &format!("{}/sqlRoleDefinitions/{guid}", account(&at)),
                    API,
                    true,
                )
                .await?;
                Ok(Outcome::nothing())
            }
        },
        SqlAction::Role {
            action: RoleAction::Assignment { action },
        } => match action {
            AssignmentAction::Create {
                at,
                scope,
                principal_id,
                role_definition_id,
                role_definition_name,
                role_assignment_id,
            } => {
                let account_id = account(&at);
                let role_id = match (role_definition_id, role_definition_name) {
                    (Some(id), _) if id.starts_with('/') => id,
                    (Some(guid), _) => format!("{account_id}/sqlRoleDefinitions/{guid}"),
                    (None, Some(name)) => {
                        let definitions = arm
                            .list_at(&format!("{account_id}/sqlRoleDefinitions"), API)
                            .await?;
                        definitions
                            .iter()
                            .find(|d| {
                                d.pointer("/properties/roleName")
                                    .and_then(Value::as_str)
                                    .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                            })
                            .and_then(|d| d.get("id").and_then(Value::as_str).map(str::to_string))
                            .ok_or_else(|| {
                                anyhow!("no role definition named '{name}' in the account")
                            })?
                    }
                    (None, None) => {
                        return Err(anyhow!(
                            "give --role-definition-id or --role-definition-name"
                        ))
                    }
                };
                let guid = role_assignment_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let body = json!({"properties": {"roleDefinitionId": role_id, "scope": scope, "principalId": principal_id}});
                Ok(Outcome::value(
                    arm.put(
                        &format!("{account_id}/sqlRoleAssignments/{guid}"),
                        API,
                        &body,
                    )
                    .await?,
                ))
            }
            AssignmentAction::List { at } => Ok(Outcome::value(Value::Array(
                arm.list_at(&format!("{}/sqlRoleAssignments", account(&at)), API)
                    .await?,
            ))),
            AssignmentAction::Delete {
                at,
                role_assignment_id,
                yes,
            } => {
                crate::confirm(yes)?;
                let guid = role_assignment_id
                    .rsplit('/')
                    .next()
                    .unwrap_or(&role_assignment_id)
                    .to_string();
                arm.delete(
                    &format!("{}/sqlRoleAssignments/{guid}", account(&at)),
                    API,
                    true,
                )
                .await?;
                Ok(Outcome::nothing())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azs_location_and_role_forms() {
        let locations = parse_locations(&[
            "regionName=westus".into(),
            "failoverPriority=0".into(),
            "isZoneRedundant=False".into(),
        ])
        .unwrap();
        assert_eq!(
            locations,
            vec![
                json!({"locationName": "westus", "failoverPriority": 0, "isZoneRedundant": false})
            ]
        );
        let (guid, body) = role_definition_body(
            r#"{"Id": "11111111-1111-1111-1111-111111111111", "RoleName": "R", "Type": "CustomRole", "AssignableScopes": ["/"], "Permissions": [{"DataActions": ["Microsoft.DocumentDB/databaseAccounts/readMetadata"]}]}"#,
            "/a",
        )
        .unwrap();
        assert_eq!(guid, "11111111-1111-1111-1111-111111111111");
        assert_eq!(body["properties"]["assignableScopes"], json!(["/a"]));
        assert_eq!(
            body["properties"]["permissions"][0]["dataActions"][0],
            "Microsoft.DocumentDB/databaseAccounts/readMetadata"
        );
    }
}
