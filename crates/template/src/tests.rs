//! Tests of whole templates through the public API: planning (parameters, copy loops,
//! conditions, nested resources, dependencies and cycles), late evaluation of bodies and
//! outputs, and the managed-identity templates of the seeds (`shared/seeds/000_*`, `001_*`:
//! a VM with `"identity": {"type": "SystemAssigned"}` and one with a user-assigned identity).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::{plan, Inputs, Plan, Resolver, ResourceGroupInfo, Scope, Template, TemplateError};

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";

fn scope() -> Scope {
    Scope {
        tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
        subscription_id: SUBSCRIPTION.into(),
        subscription_display_name: "Test".into(),
        resource_group: Some(ResourceGroupInfo {
            name: "rg".into(),
            location: "westus".into(),
            tags: json!({"env": "test"}),
        }),
        deployment_name: "deploy1".into(),
        deployment_location: None,
        environment: json!({"name": "AzureCloud"}),
    }
}

fn rg_id(path: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/{path}")
}

/// Deployed resources by id, as ARM returns them with `'Full'`.
#[derive(Default)]
struct FakeResolver {
    resources: HashMap<String, Value>,
}

impl Resolver for FakeResolver {
    fn reference(
        &self,
        resource_id: &str,
        api_version: Option<&str>,
        full: bool,
    ) -> Result<Value, String> {
        let resource = self
            .resources
            .get(&resource_id.to_ascii_lowercase())
            .ok_or_else(|| {
                format!("The Resource '{resource_id}' was not found (api-version {api_version:?}).")
            })?;
        Ok(if full {
            resource.clone()
        } else {
            resource["properties"].clone()
        })
    }

    fn list(
        &self,
        function: &str,
        resource_id: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        Ok(
            json!({"function": function, "id": resource_id, "apiVersion": api_version, "body": body}),
        )
    }
}

fn plan_with(source: &str, parameters: Value) -> Result<Plan, TemplateError> {
    let template = Template::parse(source)?;
    let mut counter = 0;
    let mut new_guid = || {
        counter += 1;
        format!("00000000-0000-0000-0000-{counter:012}")
    };
    let parameters = match parameters {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    plan(
        &template,
        &scope(),
        Inputs {
            parameters,
            utc_now_unix: 1_551_808_398,
            new_guid: &mut new_guid,
        },
    )
}

/// One line per planned resource: name, type, condition and dependencies by name, then
/// the levels, so a test reads as the plan it expects.
fn summary(plan: &Plan) -> String {
    let resources = plan.resources();
    let mut lines: Vec<String> = resources
        .iter()
        .map(|resource| {
            let dependencies: Vec<&str> = resource
                .depends_on
                .iter()
                .map(|&index| resources[index].name.as_str())
                .collect();
            format!(
                "{} {}{} <- [{}]",
                resource.name,
                resource.resource_type,
                if resource.condition { "" } else { " (skipped)" },
                dependencies.join(", ")
            )
        })
        .collect();
    let levels: Vec<String> = plan
        .levels()
        .iter()
        .map(|level| {
            level
                .iter()
                .map(|&index| resources[index].name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    lines.push(format!("levels: {}", levels.join(" | ")));
    lines.join("\n")
}

fn check_plan(source: &str, parameters: Value, expected: &str) {
    match plan_with(source, parameters) {
        Ok(plan) => assert_eq!(summary(&plan).trim(), expected.trim()),
        Err(error) => panic!("{}", error.message),
    }
}

fn check_plan_error(source: &str, parameters: Value, expected: &str) -> TemplateError {
    let error = plan_with(source, parameters).unwrap_err();
    assert_eq!(error.message, expected);
    error
}

fn check_body(source: &str, index: usize, resolver: &FakeResolver, expected: Value) {
    let plan = plan_with(source, json!({})).unwrap();
    let body = plan
        .resource_body(index, resolver)
        .unwrap_or_else(|error| panic!("{}", error.message));
    assert_eq!(body, expected);
}

/// The 1-based column of `needle` in a one-line template.
fn column_of(source: &str, needle: &str) -> usize {
    source
        .find(needle)
        .map_or(0, |offset| source[..offset].chars().count() + 1)
}

fn template(resources: Value) -> String {
    json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"count": {"type": "int", "defaultValue": 3}, "deployExtra": {"type": "bool", "defaultValue": false}},
        "resources": resources,
    })
    .to_string()
}

#[test]
fn resource_copy_loops() {
    check_plan(
        &template(json!([
            {"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2023-01-01", "name": "[concat('st', copyIndex(1))]",
             "copy": {"name": "storageLoop", "count": "[parameters('count')]"}, "location": "westus"},
            {"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "site", "dependsOn": ["storageLoop"]}
        ])),
        json!({}),
        "
st1 Microsoft.Storage/storageAccounts <- []
st2 Microsoft.Storage/storageAccounts <- []
st3 Microsoft.Storage/storageAccounts <- []
site Microsoft.Web/sites <- [st1, st2, st3]
levels: st1 st2 st3 | site",
    );
    // Serial mode with a batch size: each batch waits for the previous one.
    check_plan(
        &template(json!([
            {"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2023-01-01", "name": "[concat('st', copyIndex())]",
             "copy": {"name": "loop", "count": 4, "mode": "serial", "batchSize": 2}}
        ])),
        json!({}),
        "
st0 Microsoft.Storage/storageAccounts <- []
st1 Microsoft.Storage/storageAccounts <- []
st2 Microsoft.Storage/storageAccounts <- [st0, st1]
st3 Microsoft.Storage/storageAccounts <- [st0, st1]
levels: st0 st1 | st2 st3",
    );
    // A count of zero deploys nothing.
    check_plan(
        &template(
            json!([{"type": "a.b/c", "apiVersion": "1", "name": "[concat('x', copyIndex())]", "copy": {"name": "l", "count": 0}}]),
        ),
        json!({}),
        "levels:",
    );
}

#[test]
fn conditions_and_dropped_dependencies() {
    check_plan(
        &template(json!([
            {"condition": "[parameters('deployExtra')]", "type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2023-04-01", "name": "ip"},
            {"type": "Microsoft.Network/networkInterfaces", "apiVersion": "2023-04-01", "name": "nic",
             "dependsOn": ["[resourceId('Microsoft.Network/publicIPAddresses', 'ip')]"]}
        ])),
        json!({}),
        "
ip Microsoft.Network/publicIPAddresses (skipped) <- []
nic Microsoft.Network/networkInterfaces <- []
levels: nic",
    );
}

#[test]
fn nested_resources_and_dependency_forms() {
    check_plan(
        &template(json!([
            {"type": "Microsoft.Network/virtualNetworks", "apiVersion": "2023-04-01", "name": "vnet",
             "resources": [{"type": "subnets", "apiVersion": "2023-04-01", "name": "default"}]},
            {"type": "Microsoft.Network/networkInterfaces", "apiVersion": "2023-04-01", "name": "nic1",
             "dependsOn": ["Microsoft.Network/virtualNetworks/subnets/vnet/default"]},
            {"type": "Microsoft.Network/networkInterfaces", "apiVersion": "2023-04-01", "name": "nic2",
             "dependsOn": ["vnet/default", "[resourceId('Microsoft.Network/virtualNetworks', 'vnet')]"]},
            {"type": "Microsoft.Network/networkInterfaces", "apiVersion": "2023-04-01", "name": "nic3",
             "properties": {"x": "[reference('nic2').y]", "k": "[listKeys(resourceId('Microsoft.Network/virtualNetworks', 'vnet'), '2023-04-01')]"}}
        ])),
        json!({}),
        "
vnet Microsoft.Network/virtualNetworks <- []
vnet/default Microsoft.Network/virtualNetworks/subnets <- [vnet]
nic1 Microsoft.Network/networkInterfaces <- [vnet/default]
nic2 Microsoft.Network/networkInterfaces <- [vnet, vnet/default]
nic3 Microsoft.Network/networkInterfaces <- [vnet, nic2]
levels: vnet | vnet/default | nic1 nic2 | nic3",
    );
}

#[test]
fn cycles_are_refused() {
    let error = check_plan_error(
        &template(json!([
            {"type": "Microsoft.Compute/virtualMachines", "apiVersion": "2023-03-01", "name": "vm", "dependsOn": ["nic"]},
            {"type": "Microsoft.Network/networkInterfaces", "apiVersion": "2023-04-01", "name": "nic", "dependsOn": ["vm"]}
        ])),
        json!({}),
        &format!(
            "Deployment template validation failed: 'Circular dependency detected on resource: '{}'. Please see https://aka.ms/arm-syntax-resources for usage details.'.",
            rg_id("Microsoft.Compute/virtualMachines/vm")
        ),
    );
    assert_eq!(error.code, "InvalidTemplate");
}

#[test]
fn unknown_dependency_is_refused() {
    let error = check_plan_error(
        &template(json!([
            {"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "site", "dependsOn": ["Microsoft.Web/sites/func-xyz"]}
        ])),
        json!({}),
        "Deployment template validation failed: 'The resource 'Microsoft.Web/sites/func-xyz' is not defined in the template. Please see https://aka.ms/arm-template for usage details.'.",
    );
    assert_eq!((error.line, error.column), (0, 0));
}

#[test]
fn parameters_are_bound_and_checked() {
    // A template on one line, as the engine receives `properties.template`.
    let source = r#"{"parameters": {"adminUsername": {"type": "string"}, "adminPassword": {"type": "securestring"}, "size": {"type": "string", "defaultValue": "Standard_D2s_v3", "allowedValues": ["Standard_D2s_v3", "Standard_D4s_v3"]}, "count": {"type": "int", "defaultValue": 2, "minValue": 1, "maxValue": 5}, "prefix": {"type": "string", "defaultValue": "[concat('vm-', parameters('adminUsername'))]", "maxLength": 12}, "stamp": {"type": "string", "defaultValue": "[utcNow()]"}, "id": {"type": "string", "defaultValue": "[newGuid()]"}}, "resources": []}"#;
    let column = source.find(r#"{"type": "securestring"}"#).unwrap() as u32 + 1;
    let error = check_plan_error(
        source,
        json!({"adminUsername": {"value": "azureuser"}}),
        &format!("Deployment template validation failed: 'The value for the template parameter 'adminPassword' at line '1' and column '{column}' is not provided. Please see https://aka.ms/arm-create-parameter-file for usage details.'."),
    );
    assert_eq!((error.line, error.column), (1, column));

    let plan = plan_with(
        source,
        json!({"adminUsername": {"value": "azureuser"}, "adminPassword": {"value": "s3cret!"}}),
    )
    .unwrap();
    assert_eq!(
        Value::Object(plan.parameters()),
        json!({
            "adminUsername": {"type": "String", "value": "azureuser"},
            "adminPassword": {"type": "SecureString"},
            "size": {"type": "String", "value": "Standard_D2s_v3"},
            "count": {"type": "Int", "value": 2},
            "prefix": {"type": "String", "value": "vm-azureuser"},
            "stamp": {"type": "String", "value": "20190305T175318Z"},
            "id": {"type": "String", "value": "00000000-0000-0000-0000-000000000001"}
        })
    );

    let size_column = source
        .find(r#"{"type": "string", "defaultValue": "Standard_D2s_v3""#)
        .unwrap()
        + 1;
    check_plan_error(
        source,
        json!({"adminUsername": {"value": "u"}, "adminPassword": {"value": "p"}, "size": {"value": "Standard_A0"}}),
        &format!("Deployment template validation failed: 'The provided value 'Standard_A0' for the template parameter 'size' at line '1' and column '{size_column}' is not valid. The parameter value is not part of the allowed value(s): 'Standard_D2s_v3,Standard_D4s_v3'.'."),
    );
    let count_column = source.find(r#"{"type": "int""#).unwrap() + 1;
    check_plan_error(
        source,
        json!({"adminUsername": {"value": "u"}, "adminPassword": {"value": "p"}, "count": {"value": 9}}),
        &format!("Deployment template validation failed: 'The provided value for the template parameter 'count' at line '1' and column '{count_column}' is not valid. Value should be less than or equal to '5'. Please see https://aka.ms/arm-syntax-parameters for usage details.'."),
    );
    check_plan_error(
        source,
        json!({"adminUsername": {"value": "u"}, "adminPassword": {"value": "p"}, "count": {"value": "two"}}),
        "Deployment template validation failed: 'Template parameter 'count' was provided an invalid value. Expected a value of type 'Integer', but received a value of type 'String'. Please see https://aka.ms/arm-create-parameter-file for usage details.'.",
    );
    let prefix_error = plan_with(
        source,
        json!({"adminUsername": {"value": "averylongusername"}, "adminPassword": {"value": "p"}}),
    )
    .unwrap_err();
    assert!(
        prefix_error
            .message
            .contains("Length of the value should be less than or equal to '12'."),
        "{}",
        prefix_error.message
    );
    check_plan_error(
        source,
        json!({"adminUsername": {"value": "u"}, "adminPassword": {"value": "p"}, "extra": {"value": 1}}),
        "Deployment template validation failed: 'The template parameters 'extra' in the parameters file are not valid; they are not present in the original template and can therefore not be provided at deployment time. The only supported parameters for this template are 'adminUsername, adminPassword, size, count, prefix, stamp, id'. Please see https://aka.ms/arm-deploy/#parameter-file for usage details.'.",
    );
    let vault = plan_with(source, json!({"adminUsername": {"value": "u"}, "adminPassword": {"reference": {"keyVault": {"id": "/x"}, "secretName": "s"}}})).unwrap_err();
    assert!(
        vault.message.contains("Key Vault 'reference'"),
        "{}",
        vault.message
    );
}

#[test]
fn variables_and_property_loops() {
    let source = json!({
        "parameters": {"names": {"type": "array", "defaultValue": ["a", "b"]}},
        "variables": {
            "prefix": "[toUpper('vm')]",
            "copy": [{"name": "diskNames", "count": 2, "input": "[concat(variables('prefix'), '-disk', copyIndex('diskNames'))]"}],
            "object": {"copy": [{"name": "ports", "count": 2, "input": "[add(80, copyIndex('ports'))]"}]}
        },
        "resources": [{
            "type": "Microsoft.Compute/virtualMachines", "apiVersion": "2023-03-01",
            "name": "[concat(variables('prefix'), copyIndex())]", "location": "[resourceGroup().location]",
            "copy": {"name": "vms", "count": "[length(parameters('names'))]"},
            "tags": "[resourceGroup().tags]",
            "properties": {
                "storageProfile": {
                    "copy": [{"name": "dataDisks", "count": 2, "input": {
                        "lun": "[copyIndex('dataDisks')]", "name": "[concat(variables('diskNames')[copyIndex('dataDisks')], '-', copyIndex())]"
                    }}]
                },
                "ports": "[variables('object').ports]",
                "who": "[parameters('names')[copyIndex()]]"
            }
        }]
    })
    .to_string();
    check_body(
        &source,
        1,
        &FakeResolver::default(),
        json!({
            "location": "westus",
            "tags": {"env": "test"},
            "properties": {
                "storageProfile": {"dataDisks": [{"lun": 0, "name": "VM-disk0-1"}, {"lun": 1, "name": "VM-disk1-1"}]},
                "ports": [80, 81],
                "who": "b"
            }
        }),
    );
    let plan = plan_with(&source, json!({})).unwrap();
    assert_eq!(
        plan.resources()[1].id,
        rg_id("Microsoft.Compute/virtualMachines/VM1")
    );
    assert_eq!(
        plan.resources()[1].copy.as_ref().map(|copy| copy.index),
        Some(1)
    );
    assert_eq!(plan.resources()[1].location.as_deref(), Some("westus"));
}

#[test]
fn runtime_functions_are_refused_while_planning() {
    let source =
        template(json!([{"type": "a.b/c", "apiVersion": "1", "name": "[reference('x').name]"}]));
    let error = plan_with(&source, json!({})).unwrap_err();
    let column = column_of(&source, r#"{"apiVersion""#);
    assert_eq!(
        error.message,
        format!("Deployment template validation failed: 'The template resource '[reference('x').name]' at line '1' and column '{column}' is not valid: The template function 'reference' is not expected at this location. Please see https://aka.ms/arm-template-expressions for usage details.. Please see https://aka.ms/arm-template-expressions for usage details.'.")
    );
    let error = plan_with(
        r#"{"variables": {"v": "[utcNow()]"}, "resources": []}"#,
        json!({}),
    )
    .unwrap_err();
    assert!(
        error
            .message
            .contains("The template function 'utcNow' is not expected at this location."),
        "{}",
        error.message
    );
    let error = plan_with(r#"{"parameters": {"p": {"type": "string", "defaultValue": "[variables('v')]"}}, "variables": {"v": "x"}, "resources": []}"#, json!({})).unwrap_err();
    assert!(
        error
            .message
            .contains("The template function 'variables' is not expected at this location."),
        "{}",
        error.message
    );
}

#[test]
fn segment_lengths_are_checked() {
    let source = template(
        json!([{"type": "Microsoft.Web/serverfarms", "apiVersion": "1", "name": "appPlan/myHostingPlanName"}]),
    );
    let error = plan_with(&source, json!({})).unwrap_err();
    let column = column_of(&source, r#"{"apiVersion""#);
    assert!(error.message.starts_with(&format!("Deployment template validation failed: 'The template resource 'appPlan/myHostingPlanName' for type 'Microsoft.Web/serverfarms' at line '1' and column '{column}' has incorrect segment lengths.")), "{}", error.message);
}

#[test]
fn outputs_with_conditions_and_loops() {
    let source = json!({
        "parameters": {"secret": {"type": "securestring", "defaultValue": "x"}},
        "resources": [{"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2023-01-01", "name": "st"}],
        "outputs": {
            "blob": {"type": "string", "value": "[reference('st').primaryEndpoints.blob]"},
            "names": {"type": "array", "copy": {"count": 3, "input": "[concat('name', copyIndex())]"}},
            "hidden": {"type": "string", "condition": "[equals(1, 2)]", "value": "never"},
            "keys": {"type": "object", "value": "[listKeys('st', '2023-01-01')]"},
            "secret": {"type": "securestring", "value": "[parameters('secret')]"},
            "broken": {"type": "string", "condition": "[equals(1, 2)]", "value": "[reference('nosuch').x]"}
        }
    })
    .to_string();
    let plan = plan_with(&source, json!({})).unwrap();
    let mut resolver = FakeResolver::default();
    resolver.resources.insert(
        rg_id("Microsoft.Storage/storageAccounts/st").to_ascii_lowercase(),
        json!({"properties": {"primaryEndpoints": {"blob": "https://st.blob.core.windows.net/"}}}),
    );
    assert_eq!(
        Value::Object(plan.outputs(&resolver).unwrap()),
        json!({
            "blob": {"type": "String", "value": "https://st.blob.core.windows.net/"},
            "names": {"type": "Array", "value": ["name0", "name1", "name2"]},
            "keys": {"type": "Object", "value": {"function": "listKeys", "id": rg_id("Microsoft.Storage/storageAccounts/st"), "apiVersion": "2023-01-01", "body": null}},
            "secret": {"type": "SecureString"}
        })
    );
    let failing = json!({"resources": [], "outputs": {"o": {"type": "string", "value": "[reference('nosuch').x]"}}}).to_string();
    let error = plan_with(&failing, json!({}))
        .unwrap()
        .outputs(&resolver)
        .unwrap_err();
    assert_eq!(error.code, "DeploymentOutputEvaluationFailed");
    assert_eq!(
        error.message,
        "The template output 'o' is not valid: The template reference 'nosuch' is not valid: could not find template resource or resource copy with this name. Please see https://aka.ms/arm-template-expressions/#reference for usage details."
    );
}

#[test]
fn body_errors_name_the_resource() {
    let source = template(
        json!([{"type": "a.b/c", "apiVersion": "1", "name": "x", "properties": {"v": "[parameters('nosuch')]"}}]),
    );
    let plan = plan_with(&source, json!({})).unwrap();
    let error = plan.resource_body(0, &FakeResolver::default()).unwrap_err();
    let column = column_of(&source, r#"{"apiVersion""#);
    assert_eq!(
        error.message,
        format!("Unable to process template language expressions for resource '{}' at line '1' and column '{column}'. 'The template parameter 'nosuch' is not found. Please see https://aka.ms/arm-syntax-parameters for usage details.'", rg_id("a.b/c/x"))
    );
    assert_eq!((error.line, error.column), (1, column as u32));
}

#[test]
fn subscription_scope_deployment() {
    let source = json!({
        "resources": [
            {"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2022-09-01", "name": "newrg", "location": "eastus"},
            {"type": "Microsoft.Authorization/roleDefinitions", "apiVersion": "2022-04-01", "name": "role1"}
        ],
        "outputs": {"rg": {"type": "string", "value": "[subscriptionResourceId('Microsoft.Resources/resourceGroups', 'newrg')]"}}
    })
    .to_string();
    let template = Template::parse(&source).unwrap();
    let mut scope = scope();
    scope.resource_group = None;
    scope.deployment_location = Some("eastus".into());
    let mut new_guid = || String::new();
    let plan = plan(
        &template,
        &scope,
        Inputs {
            parameters: Map::new(),
            utc_now_unix: 0,
            new_guid: &mut new_guid,
        },
    )
    .unwrap();
    assert_eq!(
        plan.resources()[0].id,
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/newrg")
    );
    assert_eq!(
        plan.resources()[1].id,
        format!(
            "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/role1"
        )
    );
    let error = plan_with(r#"{"variables": {"g": "[resourceGroup().name]"}, "resources": [], "outputs": {"o": {"type": "string", "value": "[variables('g')]"}}}"#, json!({})).map(|_| ());
    assert!(
        error.is_ok(),
        "a resource group deployment has resourceGroup()"
    );
}

// The seeds' "Resource Manager Template" sections: a VM with a system-assigned identity,
// one with a user-assigned identity keyed by its resource id, an output of the identity's
// principal id, and a role assignment for the VM's identity named with guid().
const SEED_TEMPLATE: &str = r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "vmName": {"type": "string", "defaultValue": "myVM"}
  },
  "variables": {
    "name": "myIdentity",
    "userVmName": "[concat(parameters('vmName'), '-ua')]",
    "readerRole": "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'acdd72a7-3385-48ef-bd42-f606fba81ae7')]"
  },
  "resources": [
    {
      // other resource provider properties...
      "apiVersion": "2018-06-01",
      "type": "Microsoft.Compute/virtualMachines",
      "name": "[parameters('vmName')]",
      "location": "[resourceGroup().location]",
      "identity": {
        "type": "SystemAssigned"
      }
    },
    {
      "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
      "apiVersion": "2018-11-30",
      "name": "[variables('name')]",
      "location": "[resourceGroup().location]"
    },
    {
      "apiVersion": "2018-06-01",
      "type": "Microsoft.Compute/virtualMachines",
      "name": "[variables('userVmName')]",
      "location": "[resourceGroup().location]",
      "identity": {
        "type": "userAssigned",
        "userAssignedIdentities": {
          "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', variables('name'))]": {}
        }
      },
      "dependsOn": ["[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', variables('name'))]"]
    },
    {
      "type": "Microsoft.Authorization/roleAssignments",
      "apiVersion": "2022-04-01",
      "name": "[guid(resourceGroup().id, parameters('vmName'), variables('readerRole'))]",
      "properties": {
        "roleDefinitionId": "[variables('readerRole')]",
        "principalId": "[reference(resourceId('Microsoft.Compute/virtualMachines', parameters('vmName')), '2018-06-01', 'Full').identity.principalId]",
        "principalType": "ServicePrincipal"
      }
    }
  ],
  "outputs": {
    "identityPrincipalId": {
      "type": "string",
      "value": "[reference(resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', variables('name')), '2018-11-30').principalId]"
    }
  }
}"#;

#[test]
fn seed_managed_identity_templates() {
    let plan = plan_with(SEED_TEMPLATE, json!({})).unwrap();
    let assignment_name = crate::hash::guid(&[
        &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg"),
        "myVM",
        &format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
    ]);
    assert_eq!(
        summary(&plan),
        format!(
            "myVM Microsoft.Compute/virtualMachines <- []
myIdentity Microsoft.ManagedIdentity/userAssignedIdentities <- []
myVM-ua Microsoft.Compute/virtualMachines <- [myIdentity]
{assignment_name} Microsoft.Authorization/roleAssignments <- [myVM]
levels: myVM myIdentity | myVM-ua {assignment_name}"
        )
    );
    let identity_id = rg_id("Microsoft.ManagedIdentity/userAssignedIdentities/myIdentity");
    let vm_id = rg_id("Microsoft.Compute/virtualMachines/myVM");
    let mut resolver = FakeResolver::default();
    resolver.resources.insert(
        identity_id.to_ascii_lowercase(),
        json!({"properties": {"principalId": "11111111-2222-3333-4444-555555555555", "clientId": "c"}}),
    );
    resolver.resources.insert(
        vm_id.to_ascii_lowercase(),
        json!({"identity": {"type": "SystemAssigned", "principalId": "99999999-8888-7777-6666-555555555555"}, "properties": {}}),
    );
    assert_eq!(
        plan.resource_body(0, &resolver).unwrap(),
        json!({"location": "westus", "identity": {"type": "SystemAssigned"}})
    );
    assert_eq!(
        plan.resource_body(2, &resolver).unwrap(),
        json!({"location": "westus", "identity": {"type": "userAssigned", "userAssignedIdentities": {identity_id.clone(): {}}}})
    );
    assert_eq!(
        plan.resource_body(3, &resolver).unwrap(),
        json!({"properties": {
            "roleDefinitionId": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
            "principalId": "99999999-8888-7777-6666-555555555555",
            "principalType": "ServicePrincipal"
        }})
    );
    assert_eq!(
        plan.resources()[3].id,
        rg_id(&format!(
            "Microsoft.Authorization/roleAssignments/{assignment_name}"
        ))
    );
    assert_eq!(
        Value::Object(plan.outputs(&resolver).unwrap()),
        json!({"identityPrincipalId": {"type": "String", "value": "11111111-2222-3333-4444-555555555555"}})
    );
}

#[test]
fn extension_resources_with_scope() {
    let source = template(json!([
        {"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2023-01-01", "name": "st"},
        {"type": "Microsoft.Authorization/roleAssignments", "apiVersion": "2022-04-01", "name": "ra",
         "scope": "[format('Microsoft.Storage/storageAccounts/{0}', 'st')]", "properties": {}},
        {"type": "Microsoft.Authorization/locks", "apiVersion": "2020-05-01", "name": "lock",
         "scope": "[resourceId('Microsoft.Storage/storageAccounts', 'st')]", "properties": {}}
    ]));
    let plan = plan_with(&source, json!({})).unwrap();
    assert_eq!(
        plan.resources()[1].id,
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/ra",
            rg_id("Microsoft.Storage/storageAccounts/st")
        )
    );
    assert_eq!(
        plan.resources()[2].id,
        format!(
            "{}/providers/Microsoft.Authorization/locks/lock",
            rg_id("Microsoft.Storage/storageAccounts/st")
        )
    );
    assert_eq!(plan.resources()[1].depends_on, vec![0]);
    assert_eq!(plan.resources()[2].depends_on, vec![0]);
}

#[test]
fn deployment_function() {
    let source =
        r#"{"resources": [], "outputs": {"d": {"type": "object", "value": "[deployment()]"}}}"#;
    let plan = plan_with(source, json!({})).unwrap();
    let outputs = plan.outputs(&FakeResolver::default()).unwrap();
    assert_eq!(outputs["d"]["value"]["name"], json!("deploy1"));
    assert_eq!(
        outputs["d"]["value"]["properties"]["template"]["outputs"]["d"]["value"],
        json!("[deployment()]")
    );
    assert_eq!(
        outputs["d"]["value"]["properties"]["templateHash"],
        json!(plan.template_hash())
    );
}

#[test]
fn plans_can_be_shared_between_threads() {
    // The engine evaluates independent resources of a level concurrently.
    fn shareable<T: Send + Sync>() {}
    shareable::<Plan>();
    shareable::<Template>();
}

#[test]
fn copy_count_limit() {
    let source = template(
        json!([{"type": "a.b/c", "apiVersion": "1", "name": "[concat('x', copyIndex())]", "copy": {"name": "l", "count": 801}}]),
    );
    let error = plan_with(&source, json!({})).unwrap_err();
    let column = column_of(&source, r#"{"count":801"#);
    assert_eq!((error.line, error.column), (1, column as u32));
    assert!(
        error.message.contains(&format!("Deployment template validation failed: 'The template 'copy' definition at line '1' and column '{column}' has an invalid copy count. The copy count must be a positive integer value and cannot exceed '800'. Please see https://aka.ms/arm-copy for usage details.")),
        "{}",
        error.message
    );
}

#[test]
fn escaped_brackets_stay_literal() {
    let source = r#"{"parameters": {"p": {"type": "string", "defaultValue": "[[not an expression]"}}, "resources": [], "outputs": {"o": {"type": "string", "value": "[parameters('p')]"}, "q": {"type": "string", "value": "[[x"}}}"#;
    let outputs = plan_with(source, json!({}))
        .unwrap()
        .outputs(&FakeResolver::default())
        .unwrap();
    assert_eq!(outputs["o"]["value"], json!("[not an expression]"));
    assert_eq!(outputs["q"]["value"], json!("[[x"));
}
