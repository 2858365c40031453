//! `openmi deployment group|sub ...` and `openmi deployment operation group list`: template
//! deployments, with az's flags (`--template-file`, `--parameters @file.json | key=value ...`,
//! `--mode`, `--what-if`, `--name`, which defaults to the template file's name as in az).
//!
//! The template file is sent as it is written (comments blanked out, so lines and columns stay),
//! so the server's `InvalidTemplate` errors name the file's own line and column.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use crate::arm::{self, Arm, ArmArgs};
use crate::output::{table_row, Outcome};

/// `openmi deployment ...`
#[derive(Debug, Args)]
pub struct DeploymentCommand {
    #[command(flatten)]
    pub global: ArmArgs,
    #[command(subcommand)]
    pub action: DeploymentAction,
}

/// Where: a resource group, the subscription, or the operations of a group deployment.
#[derive(Debug, Subcommand)]
pub enum DeploymentAction {
    /// Deployments at resource-group scope.
    Group {
        #[command(subcommand)]
        action: ScopedAction,
    },
    /// Deployments at subscription scope (templates that create resource groups).
    Sub {
        #[command(subcommand)]
        action: ScopedAction,
    },
    /// The operations of a deployment.
    Operation {
        #[command(subcommand)]
        action: OperationScope,
    },
}

/// `openmi deployment operation ...`
#[derive(Debug, Subcommand)]
pub enum OperationScope {
    /// Operations of a resource-group deployment.
    Group {
        #[command(subcommand)]
        action: OperationAction,
    },
    /// Operations of a subscription deployment.
    Sub {
        #[command(subcommand)]
        action: OperationAction,
    },
}

/// `openmi deployment operation group|sub list`
#[derive(Debug, Subcommand)]
pub enum OperationAction {
    /// List the operations of a deployment: one per resource, with its status and error.
    List {
        #[command(flatten)]
        target: Target,
    },
}

/// The template and its parameters, as az takes them.
#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// The template file (JSON, comments allowed).
    #[arg(long, short = 'f')]
    template_file: PathBuf,
    /// Parameters: `@file.json` (a parameters file), a JSON object, or `key=value`; repeatable.
    #[arg(long, short = 'p', num_args = 1.., action = clap::ArgAction::Append)]
    parameters: Vec<String>,
    /// Incremental (default) or Complete (deletes the group's resources the template omits).
    #[arg(long, value_parser = ["Incremental", "Complete", "incremental", "complete"])]
    mode: Option<String>,
}

/// Which deployment: a group and name (group scope) or a name (subscription scope).
#[derive(Debug, Args)]
pub struct Target {
    /// Resource group (resource-group scope only).
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
    /// The deployment's name.
    #[arg(long, short = 'n')]
    name: String,
}

/// The verbs at one scope.
#[derive(Debug, Subcommand)]
pub enum ScopedAction {
    /// Start a deployment and wait for it to finish (or only show what it would change).
    Create {
        /// Resource group (resource-group scope only).
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// The deployment's name; default: the template file's name.
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// The deployment's location (subscription scope only).
        #[arg(long, short = 'l')]
        location: Option<String>,
        #[command(flatten)]
        template: TemplateArgs,
        /// Only show what the deployment would change (What-If); deploy nothing.
        #[arg(long)]
        what_if: bool,
        /// Do not wait for the deployment to finish.
        #[arg(long)]
        no_wait: bool,
    },
    /// Validate a template and its parameters without deploying.
    Validate {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[arg(long, short = 'l')]
        location: Option<String>,
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// What the deployment would create, modify and delete (ARM's What-If).
    WhatIf {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[arg(long, short = 'l')]
        location: Option<String>,
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// Show a deployment.
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// List the deployments.
    List {
        /// Resource group (resource-group scope only).
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a deployment's record (not the resources it deployed).
    Delete {
        #[command(flatten)]
        target: Target,
    },
    /// The template of a deployment, as deployed.
    Export {
        #[command(flatten)]
        target: Target,
    },
}

/// Runs a deployment verb.
pub async fn run(command: DeploymentCommand) -> anyhow::Result<Outcome> {
    let arm = Arm::connect(command.global.subscription.as_deref()).await?;
    match command.action {
        DeploymentAction::Group { action } => scoped(&arm, true, action).await,
        DeploymentAction::Sub { action } => scoped(&arm, false, action).await,
        DeploymentAction::Operation { action } => {
            let (group_scope, OperationAction::List { target }) = match action {
                OperationScope::Group { action } => (true, action),
                OperationScope::Sub { action } => (false, action),
            };
            let path = format!(
                "{}/operations",
                deployment_path(
                    &arm,
                    group_scope,
                    target.resource_group.as_deref(),
                    &target.name
                )?
            );
            let operations = arm.list_at(&path, arm::API_DEPLOYMENTS).await?;
            Ok(Outcome::with_table(
                Value::Array(operations),
                operations_table,
            ))
        }
    }
}

async fn scoped(arm: &Arm, group_scope: bool, action: ScopedAction) -> anyhow::Result<Outcome> {
    match action {
        ScopedAction::Create {
            resource_group,
            name,
            location,
            template,
            what_if,
            no_wait,
        } => {
            let name = name.unwrap_or_else(|| default_name(&template.template_file));
            let path = deployment_path(arm, group_scope, resource_group.as_deref(), &name)?;
            let body = request_body(&template, location.as_deref(), group_scope)?;
            if what_if {
                let result = arm
                    .post_text(&format!("{path}/whatIf"), arm::API_DEPLOYMENTS, body)
                    .await?;
                return Ok(Outcome::value(result));
            }
            if no_wait {
                arm.put_text_no_wait(&path, arm::API_DEPLOYMENTS, body)
                    .await?;
                return Ok(Outcome::nothing());
            }
            let deployment = arm.put_text(&path, arm::API_DEPLOYMENTS, body).await?;
            Ok(Outcome::with_table(deployment, deployment_table))
        }
        ScopedAction::Validate {
            resource_group,
            name,
            location,
            template,
        } => {
            let name = name.unwrap_or_else(|| default_name(&template.template_file));
            let path = deployment_path(arm, group_scope, resource_group.as_deref(), &name)?;
            let body = request_body(&template, location.as_deref(), group_scope)?;
            Ok(Outcome::value(
                arm.post_text(&format!("{path}/validate"), arm::API_DEPLOYMENTS, body)
                    .await?,
            ))
        }
        ScopedAction::WhatIf {
            resource_group,
            name,
            location,
            template,
        } => {
            let name = name.unwrap_or_else(|| default_name(&template.template_file));
            let path = deployment_path(arm, group_scope, resource_group.as_deref(), &name)?;
            let body = request_body(&template, location.as_deref(), group_scope)?;
            Ok(Outcome::value(
                arm.post_text(&format!("{path}/whatIf"), arm::API_DEPLOYMENTS, body)
                    .await?,
            ))
        }
        ScopedAction::Show { target } => {
            let path = deployment_path(
                arm,
                group_scope,
                target.resource_group.as_deref(),
                &target.name,
            )?;
            Ok(Outcome::with_table(
                arm.get(&path, arm::API_DEPLOYMENTS).await?,
                deployment_table,
            ))
        }
        ScopedAction::List { resource_group } => {
            let base = collection_path(arm, group_scope, resource_group.as_deref())?;
            let deployments = arm.list_at(&base, arm::API_DEPLOYMENTS).await?;
            Ok(Outcome::with_table(
                Value::Array(deployments),
                deployment_list_table,
            ))
        }
        ScopedAction::Delete { target } => {
            let path = deployment_path(
                arm,
                group_scope,
                target.resource_group.as_deref(),
                &target.name,
            )?;
            arm.delete(&path, arm::API_DEPLOYMENTS, true).await?;
            Ok(Outcome::nothing())
        }
        ScopedAction::Export { target } => {
            let path = deployment_path(
                arm,
                group_scope,
                target.resource_group.as_deref(),
                &target.name,
            )?;
            let exported = arm
                .post_empty(&format!("{path}/exportTemplate"), arm::API_DEPLOYMENTS)
                .await?;
            Ok(Outcome::value(
                exported.get("template").cloned().unwrap_or(exported),
            ))
        }
    }
}

/// az's default deployment name: the template file's name without its extension.
fn default_name(template_file: &Path) -> String {
    template_file
        .file_stem()
        .and_then(|stem| stem.to_str())
        .filter(|stem| !stem.is_empty())
        .unwrap_or("deployment")
        .to_string()
}

fn collection_path(arm: &Arm, group_scope: bool, group: Option<&str>) -> anyhow::Result<String> {
    match (group_scope, group) {
        (true, Some(group)) => Ok(format!(
            "{}/providers/Microsoft.Resources/deployments",
            arm.group_id(group)
        )),
        (true, None) => Err(anyhow!(
            "the following arguments are required: --resource-group/-g"
        )),
        (false, _) => Ok(format!(
            "{}/providers/Microsoft.Resources/deployments",
            arm.subscription_path()
        )),
    }
}

fn deployment_path(
    arm: &Arm,
    group_scope: bool,
    group: Option<&str>,
    name: &str,
) -> anyhow::Result<String> {
    Ok(format!(
        "{}/{}",
        collection_path(arm, group_scope, group)?,
        arm::segment(name)
    ))
}

/// The request body as JSON text, with the template file's text inside it unchanged.
fn request_body(
    template: &TemplateArgs,
    location: Option<&str>,
    group_scope: bool,
) -> anyhow::Result<String> {
    let source = std::fs::read_to_string(&template.template_file)
        .with_context(|| format!("cannot read {}", template.template_file.display()))?;
    let source = openmi_model::jsonc::blank_comments(&source);
    let template_value: Value = serde_json::from_str(&source).map_err(|error| {
        anyhow!(
            "{} is not valid JSON: {error}",
            template.template_file.display()
        )
    })?;
    let parameters = parameters(&template.parameters, &template_value)?;
    if !group_scope && location.is_none() {
        return Err(anyhow!(
            "the following arguments are required: --location/-l"
        ));
    }
    let mode = match template.mode.as_deref() {
        Some(mode) if mode.eq_ignore_ascii_case("complete") => "Complete",
        _ => "Incremental",
    };
    // The outer object is built by hand so that the template's text goes in unchanged.
    let mut body = String::from("{");
    if let Some(location) = location {
        body.push_str(&format!("\"location\":{},", json!(location)));
    }
    body.push_str(&format!(
        "\"properties\":{{\"mode\":{},\"parameters\":{},\"template\":{}}}}}",
        json!(mode),
        Value::Object(parameters),
        source.trim()
    ));
    Ok(body)
}

/// az's `--parameters`: `@file` (a parameters file, whose `parameters` object is taken, or the
/// file itself when it has none), a JSON object, or `key=value`, where the value is parsed as
/// JSON when the template declares a non-string type for it (as az does).
fn parameters(given: &[String], template: &Value) -> anyhow::Result<Map<String, Value>> {
    let mut parameters = Map::new();
    for item in given {
        let text = item.trim();
        let object = if let Some(path) = text.strip_prefix('@') {
            let content = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read parameters file {path}"))?;
            Some(
                serde_json::from_str::<Value>(&openmi_model::jsonc::blank_comments(&content))
                    .map_err(|error| anyhow!("{path} is not valid JSON: {error}"))?,
            )
        } else if text.starts_with('{') {
            Some(
                serde_json::from_str::<Value>(text)
                    .map_err(|error| anyhow!("--parameters {text}: not valid JSON: {error}"))?,
            )
        } else {
            None
        };
        match object {
            Some(value) => {
                let inner = value
                    .get("parameters")
                    .filter(|inner| inner.is_object())
                    .cloned()
                    .unwrap_or(value);
                let Value::Object(map) = inner else {
                    return Err(anyhow!("--parameters {text}: expected a JSON object"));
                };
                for (key, value) in map {
                    parameters.insert(key, value);
                }
            }
            None => {
                let (key, value) = text.split_once('=').ok_or_else(|| {
                    anyhow!("--parameters {text}: expected @file, a JSON object or KEY=VALUE")
                })?;
                let declared = template
                    .get("parameters")
                    .and_then(Value::as_object)
                    .and_then(|declared| {
                        declared
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(key))
                            .map(|(_, definition)| definition)
                    })
                    .and_then(|definition| definition.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("string")
                    .to_lowercase();
                let value = if declared.contains("string") {
                    Value::String(value.to_string())
                } else {
                    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()))
                };
                parameters.insert(key.to_string(), json!({"value": value}));
            }
        }
    }
    Ok(parameters)
}

/// az's deployment table: Name, State, Timestamp, Mode, ResourceGroup.
fn deployment_table(deployment: &Value) -> Vec<Vec<(String, Value)>> {
    vec![table_row(
        deployment,
        &[
            ("Name", "/name"),
            ("State", "/properties/provisioningState"),
            ("Timestamp", "/properties/timestamp"),
            ("Mode", "/properties/mode"),
        ],
    )]
}

fn deployment_list_table(deployments: &Value) -> Vec<Vec<(String, Value)>> {
    deployments
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(deployment_table)
        .collect()
}

fn operations_table(operations: &Value) -> Vec<Vec<(String, Value)>> {
    operations
        .as_array()
        .into_iter()
        .flatten()
        .map(|operation| {
            table_row(
                operation,
                &[
                    ("Resource", "/properties/targetResource/resourceName"),
                    ("Type", "/properties/targetResource/resourceType"),
                    ("State", "/properties/provisioningState"),
                    ("StatusCode", "/properties/statusCode"),
                ],
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_follow_azs_forms() {
        let template =
            json!({"parameters": {"count": {"type": "int"}, "name": {"type": "string"}}});
        let given = vec![
            "count=3".to_string(),
            "name=007".to_string(),
            r#"{"extra": {"value": true}}"#.to_string(),
        ];
        let parsed = parameters(&given, &template).unwrap();
        assert_eq!(parsed["count"], json!({"value": 3}));
        assert_eq!(parsed["name"], json!({"value": "007"}));
        assert_eq!(parsed["extra"], json!({"value": true}));
        assert!(parameters(&["nonsense".to_string()], &template).is_err());
    }

    #[test]
    fn the_default_name_is_the_files() {
        assert_eq!(
            default_name(Path::new("/tmp/azuredeploy.json")),
            "azuredeploy"
        );
    }
}
