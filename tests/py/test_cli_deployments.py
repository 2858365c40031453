"""`openmi deployment ...` (issue 15), az's flags: `group create|show|list|validate|what-if|delete`,
`operation group list`, `sub create`, `--template-file`, `--parameters @file | key=value`, `--mode`,
`--what-if`, with each result checked through the API."""

from __future__ import annotations

import json

import support

TEMPLATE = """{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "prefix": {"type": "string"},
    "count": {"type": "int", "defaultValue": 2, "minValue": 1}
  },
  "resources": [
    {
      // one identity per copy, named prefix0, prefix1, ...
      "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
      "apiVersion": "2023-01-31",
      "name": "[concat(parameters('prefix'), copyIndex())]",
      "location": "[resourceGroup().location]",
      "copy": {"name": "ids", "count": "[parameters('count')]"}
    }
  ],
  "outputs": {
    "first": {"type": "string", "value": "[reference(resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', concat(parameters('prefix'), '0'))).principalId]"}
  }
}
"""


def test_deployment_group_verbs(cli, arm, rg, tmp_path):
    template = tmp_path / "azuredeploy.json"
    template.write_text(TEMPLATE)
    parameters = tmp_path / "params.json"
    parameters.write_text(json.dumps({"$schema": "x", "contentVersion": "1.0.0.0", "parameters": {"prefix": {"value": "clid"}}}))

    created = cli.json("deployment", "group", "create", "-g", rg, "--template-file", str(template), "--parameters", f"@{parameters}", "count=3")
    assert created["name"] == "azuredeploy", "the name defaults to the template file's"
    assert created["properties"]["provisioningState"] == "Succeeded"
    identities = {i.name: i for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)}
    assert set(identities) == {"clid0", "clid1", "clid2"}
    assert created["properties"]["outputs"]["first"]["value"] == identities["clid0"].principal_id

    shown = cli.json("deployment", "group", "show", "-g", rg, "-n", "azuredeploy")
    assert shown["properties"]["parameters"]["count"] == {"type": "Int", "value": 3}
    assert [d["name"] for d in cli.json("deployment", "group", "list", "-g", rg)] == ["azuredeploy"]
    operations = cli.json("deployment", "operation", "group", "list", "-g", rg, "-n", "azuredeploy")
    assert sorted(o["properties"]["targetResource"]["resourceName"] for o in operations) == ["clid0", "clid1", "clid2"]
    table = cli("deployment", "operation", "group", "list", "-g", rg, "-n", "azuredeploy", "--output", "table").stdout
    assert "clid1" in table and "Succeeded" in table

    # what-if (and create --what-if) show the change and write nothing.
    changes = cli.json("deployment", "group", "what-if", "-g", rg, "-f", str(template), "-p", "prefix=clid", "count=4",
                       "--query", "properties.changes[].changeType")
    assert sorted(changes) == ["Create", "NoChange", "NoChange", "NoChange"], changes
    cli("deployment", "group", "create", "-g", rg, "-f", str(template), "-p", "prefix=clid", "count=4", "--what-if")
    assert len(list(arm.msi.user_assigned_identities.list_by_resource_group(rg))) == 3
    assert cli.json("deployment", "group", "validate", "-g", rg, "-f", str(template), "-p", "prefix=v")["properties"]["provisioningState"] == "Succeeded"

    # Complete mode with fewer copies deletes the rest.
    cli("deployment", "group", "create", "-g", rg, "-n", "shrink", "-f", str(template), "-p", "prefix=clid", "count=1", "--mode", "Complete")
    assert {i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)} == {"clid0"}

    # A template error names the file's own line and column.
    broken = tmp_path / "broken.json"
    broken.write_text(TEMPLATE.replace("[concat(parameters('prefix'), copyIndex())]", "[concat(parameters(('prefix'), copyIndex())]"))
    failed = cli.fails("deployment", "group", "create", "-g", rg, "-f", str(broken), "-p", "prefix=x", code="InvalidTemplate")
    assert "at line '13' and column '15'" in failed.stderr, failed.describe()
    assert cli.json("deployment", "group", "list", "-g", rg, "--query", "length(@)") == 2

    cli("deployment", "group", "delete", "-g", rg, "-n", "azuredeploy")
    assert [d["name"] for d in cli.json("deployment", "group", "list", "-g", rg)] == ["shrink"]
    assert {i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)} == {"clid0"}, "the resources stay"


def test_deployment_sub_create_makes_a_group(cli, arm, tmp_path):
    template = tmp_path / "group.json"
    template.write_text(json.dumps({
        "$schema": "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"name": {"type": "string"}},
        "resources": [{"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2022-09-01", "name": "[parameters('name')]", "location": "[deployment().location]"}],
    }))
    name = support.unique_name("clisub")
    try:
        created = cli.json("deployment", "sub", "create", "-l", "westus", "-f", str(template), "-p", f"name={name}")
        assert created["properties"]["provisioningState"] == "Succeeded"
        assert arm.resource.resource_groups.get(name).location == "westus"
        assert created["name"] in [d["name"] for d in cli.json("deployment", "sub", "list")]
        cli.fails("deployment", "sub", "create", "-f", str(template), "-p", f"name={name}")
    finally:
        if arm.resource.resource_groups.check_existence(name):
            arm.delete_group(name)
