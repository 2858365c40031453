//! Measures planning and late evaluation of a 1 000-resource template built from copy loops:
//! 500 user-assigned identities and 500 VMs, each VM keyed to its identity by resource id,
//! depending on it, with four data disks from a property loop and a `reference()` in its
//! body. Run with `cargo run --release -p openmi-template --example plan_bench`.

use std::time::{Duration, Instant};

use openmi_template::{plan, Inputs, Resolver, ResourceGroupInfo, Scope, Template};
use serde_json::{json, Map, Value};

struct StaticResolver;

impl Resolver for StaticResolver {
    fn reference(&self, resource_id: &str, _: Option<&str>, _: bool) -> Result<Value, String> {
        Ok(json!({"principalId": resource_id.len().to_string(), "clientId": "c"}))
    }

    fn list(&self, _: &str, _: &str, _: &str, _: Option<&Value>) -> Result<Value, String> {
        Ok(json!({"keys": []}))
    }
}

fn main() {
    let source = json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {
            "count": {"type": "int", "defaultValue": 500, "maxValue": 800},
            "prefix": {"type": "string", "defaultValue": "bench"}
        },
        "variables": {
            "identityType": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "tags": {"owner": "[parameters('prefix')]", "group": "[resourceGroup().name]"}
        },
        "resources": [
            {
                "type": "[variables('identityType')]",
                "apiVersion": "2023-01-31",
                "name": "[format('{0}-id-{1:D3}', parameters('prefix'), copyIndex())]",
                "location": "[resourceGroup().location]",
                "copy": {"name": "identities", "count": "[parameters('count')]"},
                "tags": "[variables('tags')]"
            },
            {
                "type": "Microsoft.Compute/virtualMachines",
                "apiVersion": "2023-03-01",
                "name": "[format('{0}-vm-{1:D3}', parameters('prefix'), copyIndex())]",
                "location": "[resourceGroup().location]",
                "copy": {"name": "vms", "count": "[parameters('count')]"},
                "dependsOn": ["[resourceId(variables('identityType'), format('{0}-id-{1:D3}', parameters('prefix'), copyIndex()))]"],
                "tags": "[union(variables('tags'), createObject('index', string(copyIndex())))]",
                "identity": {
                    "type": "UserAssigned",
                    "userAssignedIdentities": {
                        "[resourceId(variables('identityType'), format('{0}-id-{1:D3}', parameters('prefix'), copyIndex()))]": {}
                    }
                },
                "properties": {
                    "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
                    "storageProfile": {
                        "copy": [{
                            "name": "dataDisks",
                            "count": 4,
                            "input": {
                                "lun": "[copyIndex('dataDisks')]",
                                "name": "[concat(parameters('prefix'), '-disk-', copyIndex(), '-', copyIndex('dataDisks'))]",
                                "diskSizeGB": 128,
                                "createOption": "Empty"
                            }
                        }]
                    },
                    "osProfile": {
                        "computerName": "[take(uniqueString(resourceGroup().id, string(copyIndex())), 12)]",
                        "customData": "[base64(reference(resourceId(variables('identityType'), format('{0}-id-{1:D3}', parameters('prefix'), copyIndex()))).principalId)]"
                    }
                }
            }
        ]
    })
    .to_string();
    let scope = Scope {
        tenant_id: "00000000-0000-0000-0000-000000000000".into(),
        subscription_id: "00000000-0000-0000-0000-000000000001".into(),
        subscription_display_name: "bench".into(),
        resource_group: Some(ResourceGroupInfo {
            name: "rg".into(),
            location: "westus".into(),
            tags: Value::Null,
        }),
        deployment_name: "bench".into(),
        deployment_location: None,
        environment: json!({"name": "AzureCloud"}),
    };
    let mut samples = Vec::new();
    let mut resources = 0;
    for _ in 0..20 {
        let start = Instant::now();
        let template = match Template::parse(&source) {
            Ok(template) => template,
            Err(error) => {
                eprintln!("{}", error.message);
                std::process::exit(1);
            }
        };
        let mut new_guid = String::new;
        let planned = match plan(
            &template,
            &scope,
            Inputs {
                parameters: Map::new(),
                utc_now_unix: 0,
                new_guid: &mut new_guid,
            },
        ) {
            Ok(planned) => planned,
            Err(error) => {
                eprintln!("{}", error.message);
                std::process::exit(1);
            }
        };
        for index in planned.order() {
            if let Err(error) = planned.resource_body(index, &StaticResolver) {
                eprintln!("{}", error.message);
                std::process::exit(1);
            }
        }
        samples.push(start.elapsed());
        resources = planned.resources().len();
    }
    samples.sort();
    let median: Duration = samples[samples.len() / 2];
    println!(
        "{resources} resources: parse + plan + every body, median {:.2} ms, min {:.2} ms over {} runs",
        median.as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples.len()
    );
}
