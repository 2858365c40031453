//! `openmi identity ...`: user-assigned managed identities, as `az identity` shapes them.
//!
//! `create` reads the group first for its location when `-l` is absent, as az does
//! (shared/research/az-cli.md §3), then PUTs `{"location","tags"}`. Outputs are flattened like
//! az's AAZ output: `properties.{clientId,principalId,tenantId}` move to the top level beside
//! `id`, `location`, `name`, `tags`, `type` (and `systemData`), and `resourceGroup` is added.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::arm::{self, Arm, ArmArgs};
use crate::output::Outcome;

/// The provider type of user-assigned identities.
pub const IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

/// `openmi identity ...`
#[derive(Debug, Args)]
pub struct IdentityCommand {
    #[command(flatten)]
    pub global: ArmArgs,
    #[command(subcommand)]
    pub action: IdentityAction,
}

/// The identity verbs.
#[derive(Debug, Subcommand)]
pub enum IdentityAction {
    /// Create (or update the tags of) a user-assigned identity.
    Create {
        /// Resource group.
        #[arg(long, short = 'g')]
        resource_group: String,
        /// Name of the identity.
        #[arg(long, short = 'n')]
        name: String,
        /// Location; default: the resource group's.
        #[arg(long, short = 'l')]
        location: Option<String>,
        /// Space-separated tags: key[=value].
        #[arg(long, num_args = 0..)]
        tags: Option<Vec<String>>,
    },
    /// Show a user-assigned identity.
    Show {
        /// Resource group.
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Name of the identity.
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// Resource id of the identity (instead of -g and -n).
        #[arg(long, conflicts_with_all = ["resource_group", "name"])]
        ids: Option<String>,
    },
    /// List user-assigned identities of a group, or of the subscription.
    List {
        /// Resource group; default: the whole subscription.
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a user-assigned identity.
    Delete {
        /// Resource group.
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Name of the identity.
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// Resource id of the identity (instead of -g and -n).
        #[arg(long, conflicts_with_all = ["resource_group", "name"])]
        ids: Option<String>,
    },
}

/// Runs an identity verb.
pub async fn run(command: IdentityCommand) -> anyhow::Result<Outcome> {
    let arm = Arm::connect(command.global.subscription.as_deref()).await?;
    match command.action {
        IdentityAction::Create {
            resource_group,
            name,
            location,
            tags,
        } => {
            let location = match location {
                Some(location) => location,
                None => group_location(&arm, &resource_group).await?,
            };
            let mut body = json!({"location": location});
            if let Some(tags) = tags {
                body["tags"] = arm::parse_tags(&tags);
            }
            let path = arm.resource_id(&resource_group, IDENTITY_TYPE, &name);
            let identity = arm.put(&path, arm::API_IDENTITIES, &body).await?;
            Ok(Outcome::value(flatten_properties(identity)))
        }
        IdentityAction::Show {
            resource_group,
            name,
            ids,
        } => {
            let path = identity_path(&arm, resource_group, name, ids)?;
            let identity = arm.get(&path, arm::API_IDENTITIES).await?;
            Ok(Outcome::value(flatten_properties(identity)))
        }
        IdentityAction::List { resource_group } => {
            let path = match resource_group {
                Some(group) => format!("{}/providers/{IDENTITY_TYPE}", arm.group_id(&group)),
                None => format!("{}/providers/{IDENTITY_TYPE}", arm.subscription_path()),
            };
            let identities = arm.list_at(&path, arm::API_IDENTITIES).await?;
            Ok(Outcome::value(Value::Array(
                identities.into_iter().map(flatten_properties).collect(),
            )))
        }
        IdentityAction::Delete {
            resource_group,
            name,
            ids,
        } => {
            let path = identity_path(&arm, resource_group, name, ids)?;
            arm.delete(&path, arm::API_IDENTITIES, true).await?;
            Ok(Outcome::nothing())
        }
    }
}

/// The identity's path from `--ids`, or from `-g` and `-n`.
fn identity_path(
    arm: &Arm,
    resource_group: Option<String>,
    name: Option<String>,
    ids: Option<String>,
) -> anyhow::Result<String> {
    match (ids, resource_group, name) {
        (Some(id), _, _) => Ok(id),
        (None, Some(group), Some(name)) => Ok(arm.resource_id(&group, IDENTITY_TYPE, &name)),
        _ => Err(anyhow!(
            "usage error: --ids ID | --resource-group/-g NAME --name/-n NAME"
        )),
    }
}

/// The location of a group, read as az does before creating a resource in it.
pub async fn group_location(arm: &Arm, group: &str) -> anyhow::Result<String> {
    let group = crate::group::get_group(arm, group).await?;
    group
        .get("location")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the resource group has no location; pass --location"))
}

/// Moves the keys of `properties` to the top level (keys already there win), as the az output of
/// identities and virtual machines has them.
pub fn flatten_properties(mut resource: Value) -> Value {
    let Some(object) = resource.as_object_mut() else {
        return resource;
    };
    if let Some(Value::Object(properties)) = object.remove("properties") {
        for (key, value) in properties {
            object.entry(key).or_insert(value);
        }
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_move_to_the_top_level() {
        let identity = json!({
            "id": "/x", "name": "n", "location": "westus", "tags": {},
            "type": IDENTITY_TYPE,
            "properties": {"clientId": "c", "principalId": "p", "tenantId": "t", "name": "ignored"}
        });
        assert_eq!(
            flatten_properties(identity),
            json!({"id": "/x", "name": "n", "location": "westus", "tags": {}, "type": IDENTITY_TYPE,
                   "clientId": "c", "principalId": "p", "tenantId": "t"})
        );
    }
}
