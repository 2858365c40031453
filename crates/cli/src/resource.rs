//! `openmi resource show|delete`: any resource by id, or by group, name and type, as
//! `az resource` does.
//!
//! az resolves the api-version of the type from the provider list; openmi's server accepts any,
//! so one generic api-version is sent unless `--api-version` is given. Outputs are printed as the
//! server shapes the resource (az does not flatten generic resources).

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::arm::{self, Arm, ArmArgs};
use crate::output::Outcome;

/// `openmi resource ...`
#[derive(Debug, Args)]
pub struct ResourceCommand {
    #[command(flatten)]
    pub global: ArmArgs,
    #[command(subcommand)]
    pub action: ResourceAction,
}

/// The resource verbs.
#[derive(Debug, Subcommand)]
pub enum ResourceAction {
    /// Get resources.
    Show(ResourceSelector),
    /// Delete resources.
    Delete(ResourceSelector),
}

/// `--ids ID...` or `-g RG -n NAME --resource-type NS/TYPE` (or `--namespace NS --resource-type
/// TYPE`, with `--parent` for child resources).
#[derive(Debug, Args)]
pub struct ResourceSelector {
    /// One or more resource ids (space-separated).
    #[arg(long, num_args = 1.., conflicts_with_all = ["resource_group", "name", "resource_type", "namespace", "parent"])]
    ids: Option<Vec<String>>,
    /// Resource group.
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
    /// Name of the resource.
    #[arg(long, short = 'n')]
    name: Option<String>,
    /// The resource type, e.g. Microsoft.Compute/virtualMachines (or just virtualMachines with
    /// --namespace).
    #[arg(long)]
    resource_type: Option<String>,
    /// The provider namespace, e.g. Microsoft.Compute.
    #[arg(long)]
    namespace: Option<String>,
    /// The parent path, e.g. virtualMachines/vm1 for an extension.
    #[arg(long)]
    parent: Option<String>,
    /// The api-version to send.
    #[arg(long, default_value = arm::API_GENERIC)]
    api_version: String,
}

/// Runs a resource verb.
pub async fn run(command: ResourceCommand) -> anyhow::Result<Outcome> {
    let arm = Arm::connect(command.global.subscription.as_deref()).await?;
    match command.action {
        ResourceAction::Show(selector) => {
            let ids = selector.ids(&arm)?;
            let mut resources = Vec::with_capacity(ids.len());
            for id in &ids {
                resources.push(arm.get(id, &selector.api_version).await?);
            }
            if resources.len() == 1 {
                Ok(Outcome::value(resources.remove(0)))
            } else {
                Ok(Outcome::value(Value::Array(resources)))
            }
        }
        ResourceAction::Delete(selector) => {
            for id in selector.ids(&arm)? {
                arm.delete(&id, &selector.api_version, true).await?;
            }
            Ok(Outcome::nothing())
        }
    }
}

impl ResourceSelector {
    /// The resource ids selected.
    fn ids(&self, arm: &Arm) -> anyhow::Result<Vec<String>> {
        if let Some(ids) = &self.ids {
            return ids
                .iter()
                .map(|id| {
                    if id.starts_with('/') {
                        Ok(id.clone())
                    } else {
                        Err(anyhow!("'{id}' is not a valid resource id"))
                    }
                })
                .collect();
        }
        let (Some(group), Some(name), Some(resource_type)) =
            (&self.resource_group, &self.name, &self.resource_type)
        else {
            return Err(anyhow!(
                "usage error: --ids ID [ID ...] | --resource-group/-g RG --name/-n NAME --resource-type NAMESPACE/TYPE"
            ));
        };
        let provider_type = provider_type(
            self.namespace.as_deref(),
            self.parent.as_deref(),
            resource_type,
        )?;
        Ok(vec![arm.resource_id(group, &provider_type, name)])
    }
}

/// `NS/[parent/]TYPE` from az's `--namespace`, `--parent` and `--resource-type` (which may carry
/// the namespace itself).
fn provider_type(
    namespace: Option<&str>,
    parent: Option<&str>,
    resource_type: &str,
) -> anyhow::Result<String> {
    let resource_type = resource_type.trim_matches('/');
    let (namespace, resource_type) = match (namespace, resource_type.split_once('/')) {
        (Some(namespace), _) => (namespace.trim_matches('/'), resource_type),
        (None, Some((namespace, rest))) => (namespace, rest),
        (None, None) => {
            return Err(anyhow!(
                "--resource-type must be NAMESPACE/TYPE (e.g. Microsoft.Compute/virtualMachines), or pass --namespace"
            ))
        }
    };
    Ok(match parent.map(|parent| parent.trim_matches('/')) {
        Some(parent) if !parent.is_empty() => format!("{namespace}/{parent}/{resource_type}"),
        _ => format!("{namespace}/{resource_type}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_type_combines_namespace_parent_and_type() {
        assert_eq!(
            provider_type(None, None, "Microsoft.Compute/virtualMachines").unwrap(),
            "Microsoft.Compute/virtualMachines"
        );
        assert_eq!(
            provider_type(
                Some("Microsoft.Compute"),
                Some("virtualMachines/vm1"),
                "extensions"
            )
            .unwrap(),
            "Microsoft.Compute/virtualMachines/vm1/extensions"
        );
        assert!(provider_type(None, None, "virtualMachines").is_err());
    }
}
