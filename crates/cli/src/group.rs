//! `openmi group ...`: resource groups, as `az group` shapes them.
//!
//! Requests and outputs follow az 2.91 (shared/research/az-cli.md §3): `PUT
//! /subscriptions/S/resourcegroups/RG` with `{"location","tags"}`, the response printed as it
//! came; `list` prints the items of the list; `exists` is a HEAD; `delete` asks for confirmation.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::arm::{self, Arm, ArmArgs};
use crate::output::{table_row, Outcome};

/// `openmi group ...`
#[derive(Debug, Args)]
pub struct GroupCommand {
    #[command(flatten)]
    pub global: ArmArgs,
    #[command(subcommand)]
    pub action: GroupAction,
}

/// The group verbs.
#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// Create a new resource group (or update the location and tags of an existing one).
    Create {
        /// Name of the new resource group.
        #[arg(long, short = 'n', visible_alias = "resource-group", short_alias = 'g')]
        name: String,
        /// Location, e.g. westus.
        #[arg(long, short = 'l')]
        location: String,
        /// Space-separated tags: key[=value]. "" clears them.
        #[arg(long, num_args = 0..)]
        tags: Option<Vec<String>>,
    },
    /// Get a resource group.
    Show {
        /// Name of the resource group.
        #[arg(long, short = 'n', visible_alias = "resource-group", short_alias = 'g')]
        name: String,
    },
    /// List the resource groups of the subscription.
    List,
    /// Delete a resource group and every resource in it.
    Delete {
        /// Name of the resource group.
        #[arg(long, short = 'n', visible_alias = "resource-group", short_alias = 'g')]
        name: String,
        /// Do not prompt for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Do not wait for the deletion to finish.
        #[arg(long)]
        no_wait: bool,
    },
    /// Check whether a resource group exists: prints true or false.
    Exists {
        /// Name of the resource group.
        #[arg(long, short = 'n', visible_alias = "resource-group", short_alias = 'g')]
        name: String,
    },
}

/// Runs a group verb.
pub async fn run(command: GroupCommand) -> anyhow::Result<Outcome> {
    if let GroupAction::Delete { yes, .. } = &command.action {
        crate::confirm(*yes)?;
    }
    let arm = Arm::connect(command.global.subscription.as_deref()).await?;
    match command.action {
        GroupAction::Create {
            name,
            location,
            tags,
        } => {
            let mut body = json!({"location": location});
            if let Some(tags) = tags {
                body["tags"] = arm::parse_tags(&tags);
            }
            let group = arm
                .put(&group_path(&arm, &name), arm::API_RESOURCE_GROUPS, &body)
                .await?;
            Ok(Outcome::value(group))
        }
        GroupAction::Show { name } => {
            let group = get_group(&arm, &name).await?;
            Ok(Outcome::value(group))
        }
        GroupAction::List => {
            let groups = arm
                .list_at(
                    &format!("{}/resourcegroups", arm.subscription_path()),
                    arm::API_RESOURCE_GROUPS,
                )
                .await?;
            Ok(Outcome::with_table(Value::Array(groups), group_list_table))
        }
        GroupAction::Delete { name, no_wait, .. } => {
            arm.delete(&group_path(&arm, &name), arm::API_RESOURCE_GROUPS, !no_wait)
                .await?;
            Ok(Outcome::nothing())
        }
        GroupAction::Exists { name } => {
            let exists = arm
                .exists(&group_path(&arm, &name), arm::API_RESOURCE_GROUPS)
                .await?;
            Ok(Outcome::value(Value::Bool(exists)))
        }
    }
}

/// `/subscriptions/S/resourcegroups/RG`, in the casing az sends.
fn group_path(arm: &Arm, group: &str) -> String {
    format!(
        "{}/resourcegroups/{}",
        arm.subscription_path(),
        arm::segment(group)
    )
}

/// GET a group (also used for the default location of new resources, as az does).
pub async fn get_group(arm: &Arm, group: &str) -> anyhow::Result<Value> {
    arm.get(&group_path(arm, group), arm::API_RESOURCE_GROUPS)
        .await
}

/// az's `transform_resource_group_list`: Name, Location, Status.
fn group_list_table(groups: &Value) -> Vec<Vec<(String, Value)>> {
    groups
        .as_array()
        .into_iter()
        .flatten()
        .map(|group| {
            table_row(
                group,
                &[
                    ("Name", "/name"),
                    ("Location", "/location"),
                    ("Status", "/properties/provisioningState"),
                ],
            )
        })
        .collect()
}
