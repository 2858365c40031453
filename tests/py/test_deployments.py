"""ARM template deployments (issue 15) through the real azure-mgmt-resource-deployments 2.0 client
(api-version 2026-06-01): the seeds' "Resource Manager Template" flows (a VM with a system-assigned
identity at apiVersion 2018-06-01; a user-assigned identity and a VM holding it, keyed by
`resourceId(...)`, with the identity's principalId as an output through `reference()`; a role
assignment for the VM's system identity through `reference(..., 'Full').identity.principalId`), then
those identities at work through `openmi vm run`; validate, what-if, operations, exportTemplate,
Complete mode, subscription scope, the template errors in ARM's words, and RBAC per resource.
"""

from __future__ import annotations

import copy
import re
import time
import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.resource.deployments import DeploymentsMgmtClient

import support
from support import ROLE_MI_OPERATOR, ROLE_READER, ROLE_VM_CONTRIBUTOR

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"


def deployments_client(server, credential=None) -> DeploymentsMgmtClient:
    return DeploymentsMgmtClient(
        credential or support.arm_credential(server), server.subscription_id, **support.mgmt_client_kwargs(server)
    )


@pytest.fixture
def dep(server):
    return deployments_client(server)


def lit(name: str) -> str:
    """A template expression giving the literal `name` (so helpers can wrap it in other calls)."""
    return f"['{name}']"


def vm_resource(name_expr: str, identity: dict | None = None, api_version: str = "2018-06-01", **extra) -> dict:
    """A VM as the seeds write it in a template (the password from a securestring parameter)."""
    resource = {
        "apiVersion": api_version,
        "type": "Microsoft.Compute/virtualMachines",
        "name": name_expr,
        "location": "[resourceGroup().location]",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_DS1_v2"},
            "storageProfile": {"imageReference": {"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2016-Datacenter", "version": "latest"}},
            "osProfile": {"computerName": "[take(" + name_expr[1:-1] + ", 15)]", "adminUsername": "azureuser", "adminPassword": "[parameters('adminPassword')]"},
        },
    }
    if identity is not None:
        resource["identity"] = identity
    resource.update(extra)
    return resource


def template(resources: list, parameters: dict | None = None, variables: dict | None = None, outputs: dict | None = None) -> dict:
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {"adminPassword": {"type": "securestring"}, **(parameters or {})},
        "variables": variables or {},
        "resources": resources,
        "outputs": outputs or {},
    }


def deploy(dep, rg: str, tpl: dict, parameters: dict | None = None, name: str | None = None, mode: str = "Incremental"):
    """begin_create_or_update(...).result(): the deployment's final record."""
    params = {"adminPassword": {"value": "myPassword12"}, **(parameters or {})}
    body = {"properties": {"mode": mode, "template": tpl, "parameters": params}}
    return dep.deployments.begin_create_or_update(rg, name or support.unique_name("dep"), body).result(timeout=60)


def seed_001_system_identity_template() -> dict:
    return template(
        [vm_resource("[variables('vmName')]", identity={"type": "SystemAssigned"})],
        variables={"vmName": "myVM"},
        outputs={"principalId": {"type": "string", "value": "[reference(resourceId('Microsoft.Compute/virtualMachines', variables('vmName')), '2018-06-01', 'Full').identity.principalId]"}},
    )


def user_assigned_template() -> dict:
    identity_id = f"[resourceId('{IDENTITY_TYPE}', variables('identityName'))]"
    return template(
        [
            {"type": IDENTITY_TYPE, "apiVersion": "2018-11-30", "name": "[variables('identityName')]", "location": "[resourceGroup().location]"},
            vm_resource(
                "[variables('vmName')]",
                identity={"type": "UserAssigned", "userAssignedIdentities": {identity_id: {}}},
                dependsOn=[identity_id],
            ),
        ],
        variables={"vmName": "myVM", "identityName": "ID1"},
        outputs={
            "principalId": {"type": "string", "value": f"[reference({identity_id[1:-1]}, '2018-11-30').principalId]"},
            "clientId": {"type": "string", "value": f"[reference({identity_id[1:-1]}).clientId]"},
        },
    )


def role_for_vm_template(role_guid: str = ROLE_READER) -> dict:
    vm_id = "resourceId('Microsoft.Compute/virtualMachines', variables('vmName'))"
    return template(
        [
            vm_resource("[variables('vmName')]", identity={"type": "SystemAssigned"}),
            {
                "type": "Microsoft.Authorization/roleAssignments",
                "apiVersion": "2022-04-01",
                "name": f"[guid(resourceGroup().id, {vm_id}, '{role_guid}')]",
                "dependsOn": [f"[{vm_id}]"],
                "properties": {
                    "roleDefinitionId": f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{role_guid}')]",
                    "principalId": f"[reference({vm_id}, '2018-06-01', 'Full').identity.principalId]",
                    "principalType": "ServicePrincipal",
                },
            },
        ],
        variables={"vmName": "myVM"},
    )


def resource_ids(arm, rg: str) -> set:
    return {r.id.lower() for r in arm.resource.resources.list_by_resource_group(rg)}


# --------------------------------------------------------------------------------------------------
# the seeds' templates


def test_seed_001_vm_with_a_system_assigned_identity(server, arm, rg, dep):
    name = support.unique_name("dep")
    started = time.monotonic()
    result = deploy(dep, rg, seed_001_system_identity_template(), name=name)
    assert time.monotonic() - started < support.LRO_MAX_SECONDS, "a quick deployment needs no polling"
    props = result.properties
    assert props.provisioning_state == "Succeeded", result.as_dict()
    assert result.id.lower() == f"{arm.rg_id(rg)}/providers/Microsoft.Resources/deployments/{name}".lower()
    assert props.mode == "Incremental"
    assert props.parameters["adminPassword"] == {"type": "SecureString"}, "secure parameters are never echoed"
    assert props.output_resources and props.output_resources[0].id.lower() == arm.vm_id(rg, "myVM").lower()

    vm = arm.compute.virtual_machines.get(rg, "myVM")
    assert vm.identity.type == "SystemAssigned"
    assert support.GUID_RE.match(vm.identity.principal_id or "")
    assert props.outputs["principalId"]["value"] == vm.identity.principal_id
    assert arm.msi.system_assigned_identities.get_by_scope(scope=vm.id).principal_id == vm.identity.principal_id
    assert vm.os_profile.admin_password is None, "the securestring reached the VM and was not stored"

    # The record, its operations, its template, listing and deleting.
    got = dep.deployments.get(rg, name)
    assert got.properties.provisioning_state == "Succeeded"
    operations = list(dep.deployment_operations.list(rg, name))
    assert len(operations) == 1, [o.as_dict() for o in operations]
    op = operations[0].properties
    assert op.provisioning_state == "Succeeded" and op.provisioning_operation == "Create"
    assert op.target_resource.id.lower() == arm.vm_id(rg, "myVM").lower()
    assert op.target_resource.resource_type == "Microsoft.Compute/virtualMachines"
    exported = dep.deployments.export_template(rg, name)
    assert exported.template["resources"][0]["identity"] == {"type": "SystemAssigned"}
    assert name in [d.name for d in dep.deployments.list_by_resource_group(rg)]
    assert dep.deployments.check_existence(rg, name)
    dep.deployments.begin_delete(rg, name).result()
    assert not dep.deployments.check_existence(rg, name)
    # Deleting the record leaves what it deployed.
    assert arm.compute.virtual_machines.get(rg, "myVM").identity.principal_id == vm.identity.principal_id


def test_user_assigned_identity_and_vm_then_the_identity_works_on_the_vm(server, arm, rg, dep, rbac, agents, workload):
    result = deploy(dep, rg, user_assigned_template())
    outputs = result.properties.outputs
    identity = arm.msi.user_assigned_identities.get(rg, "ID1")
    assert outputs["principalId"] == {"type": "String", "value": identity.principal_id}
    assert outputs["clientId"]["value"] == identity.client_id
    vm = arm.compute.virtual_machines.get(rg, "myVM")
    assert vm.identity.type == "UserAssigned"
    assigned = {k.lower(): v for k, v in vm.identity.user_assigned_identities.items()}
    assert assigned[identity.id.lower()].principal_id == identity.principal_id

    # Seed 002's grant, then the identity reads the group from inside the VM.
    rbac.grant(identity.principal_id, ROLE_READER, arm.rg_id(rg))
    spec = {"client_id": identity.client_id, "group": rg, "subscription": arm.sub, "base_url": server.url}
    out = support.run_workload(agents, server, rg, "myVM", workload, spec)
    assert out.get("group", {}).get("name") == rg, out
    assert support.unverified_claims(out["token"])["oid"] == identity.principal_id


def test_role_assignment_for_the_vms_system_identity_through_reference_full(server, arm, rg, dep, agents, workload):
    result = deploy(dep, rg, role_for_vm_template())
    assert result.properties.provisioning_state == "Succeeded"
    vm = arm.compute.virtual_machines.get(rg, "myVM")
    principal = vm.identity.principal_id
    authz = support.authorization_client(server, arm.credential)
    mine = [a for a in authz.role_assignments.list_for_resource_group(rg) if a.principal_id == principal]
    assert len(mine) == 1, [a.as_dict() for a in mine]
    assert mine[0].role_definition_id.lower().endswith(ROLE_READER)
    assert mine[0].scope.lower() == arm.rg_id(rg).lower()
    # The role assignment waited for the VM: its operation comes after the VM's.
    ops = {o.properties.target_resource.resource_type: o.properties for o in dep.deployment_operations.list(rg, result.name)}
    assert ops["Microsoft.Authorization/roleAssignments"].provisioning_state == "Succeeded"

    # The system identity reads the group from inside the VM (DefaultAzureCredential, no selector).
    spec = {"credential": "default", "group": rg, "subscription": arm.sub, "base_url": server.url}
    out = support.run_workload(agents, server, rg, "myVM", workload, spec)
    assert out.get("group", {}).get("name") == rg, out

    # Deploying the same template again is idempotent (same names, same assignment).
    again = deploy(dep, rg, role_for_vm_template(), name=result.name)
    assert again.properties.provisioning_state == "Succeeded", again.as_dict()
    assert arm.compute.virtual_machines.get(rg, "myVM").identity.principal_id == principal


# --------------------------------------------------------------------------------------------------
# the language at work: copy loops, conditions, nested resources, subscription scope


def test_copy_loops_conditions_and_nested_children(arm, rg, dep):
    tpl = template(
        [
            {
                "type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "[concat('id-', copyIndex(1))]",
                "location": "[resourceGroup().location]", "copy": {"name": "ids", "count": "[parameters('count')]"},
                "tags": {"index": "[string(copyIndex())]"},
            },
            {
                "condition": "[parameters('withSkipped')]", "type": IDENTITY_TYPE, "apiVersion": "2023-01-31",
                "name": "skipped", "location": "westus",
            },
            vm_resource(lit("vm1"), identity={"type": "SystemAssigned"}, resources=[{
                "type": "extensions", "apiVersion": "2018-06-01", "name": "ManagedIdentityExtensionForWindows",
                "location": "[resourceGroup().location]", "dependsOn": ["vm1"],
                "properties": {"publisher": "Microsoft.ManagedIdentity", "type": "ManagedIdentityExtensionForWindows", "typeHandlerVersion": "1.0", "settings": {"port": 50342}},
            }]),
        ],
        parameters={"count": {"type": "int", "defaultValue": 3, "minValue": 1, "maxValue": 10}, "withSkipped": {"type": "bool", "defaultValue": False}},
        outputs={"names": {"type": "array", "copy": {"count": "[parameters('count')]", "input": "[reference(resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', concat('id-', copyIndex(1)))).principalId]"}}},
    )
    result = deploy(dep, rg, tpl)
    assert result.properties.provisioning_state == "Succeeded", result.as_dict()
    identities = {i.name: i for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)}
    assert set(identities) == {"id-1", "id-2", "id-3"}
    assert identities["id-2"].tags == {"index": "1"}
    assert result.properties.outputs["names"]["value"] == [identities[f"id-{n}"].principal_id for n in (1, 2, 3)]
    extension = arm.compute.virtual_machine_extensions.get(rg, "vm1", "ManagedIdentityExtensionForWindows")
    assert extension.settings == {"port": 50342}


def test_subscription_scope_deployment_creates_a_group_and_resources_in_it(server, arm, dep):
    name = support.unique_name("pysubrg")
    tpl = {
        "$schema": "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"rgName": {"type": "string"}},
        "resources": [{"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2022-09-01", "name": "[parameters('rgName')]", "location": "[deployment().location]", "tags": {"by": "template"}}],
        "outputs": {"groupId": {"type": "string", "value": "[subscriptionResourceId('Microsoft.Resources/resourceGroups', parameters('rgName'))]"}},
    }
    try:
        result = dep.deployments.begin_create_or_update_at_subscription_scope(
            support.unique_name("subdep"),
            {"location": "westus", "properties": {"mode": "Incremental", "template": tpl, "parameters": {"rgName": {"value": name}}}},
        ).result(timeout=60)
        assert result.properties.provisioning_state == "Succeeded", result.as_dict()
        group = arm.resource.resource_groups.get(name)
        assert group.location == "westus" and group.tags == {"by": "template"}
        # subscriptionResourceId keeps the provider segment for groups, as ARM's does.
        assert result.properties.outputs["groupId"]["value"].lower() == f"/subscriptions/{arm.sub}/providers/Microsoft.Resources/resourceGroups/{name}".lower()
        assert result.name in [d.name for d in dep.deployments.list_at_subscription_scope()]
    finally:
        if arm.resource.resource_groups.check_existence(name):
            arm.delete_group(name)


# --------------------------------------------------------------------------------------------------
# validate, what-if, Complete mode


def test_validate_and_what_if_write_nothing(arm, rg, dep):
    arm.create_identity(rg, "keep")
    changed = arm.create_identity(rg, "changed")
    arm.msi.user_assigned_identities.update(rg, "changed", {"tags": {"env": "old"}})
    arm.create_identity(rg, "extra")
    before_ids = resource_ids(arm, rg)
    tpl = template([
        {"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "keep", "location": "westus"},
        {"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "changed", "location": "westus", "tags": {"env": "new"}},
        {"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "brand-new", "location": "westus"},
    ])
    body = {"properties": {"mode": "Complete", "template": tpl, "parameters": {"adminPassword": {"value": "x"}}}}

    validated = dep.deployments.begin_validate(rg, "v1", body).result(timeout=60)
    assert validated.properties.provisioning_state == "Succeeded", validated.as_dict()
    assert {r.id.rsplit("/", 1)[-1] for r in validated.properties.validated_resources} == {"keep", "changed", "brand-new"}

    what_if = dep.deployments.begin_what_if(rg, "w1", body).result(timeout=60)
    changes = {c.resource_id.rsplit("/", 1)[-1]: c for c in what_if.changes}
    assert changes["brand-new"].change_type == "Create"
    assert changes["keep"].change_type == "NoChange", changes["keep"].as_dict()
    assert changes["changed"].change_type == "Modify"
    delta = {d.path: d for d in changes["changed"].delta}
    assert delta["tags.env"].property_change_type == "Modify", [d.as_dict() for d in changes["changed"].delta]
    assert (delta["tags.env"].before, delta["tags.env"].after) == ("old", "new")
    assert changes["extra"].change_type == "Delete", "Complete mode deletes what the template does not name"

    # Nothing was written by either.
    assert resource_ids(arm, rg) == before_ids
    assert arm.msi.user_assigned_identities.get(rg, "changed").tags == {"env": "old"}
    assert not dep.deployments.check_existence(rg, "v1") and not dep.deployments.check_existence(rg, "w1")
    assert changed.principal_id == arm.msi.user_assigned_identities.get(rg, "changed").principal_id


def test_complete_mode_deletes_what_the_template_does_not_name(arm, rg, dep):
    arm.create_identity(rg, "stays")
    doomed = arm.create_identity(rg, "doomed")
    tpl = template([{"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "stays", "location": "westus"}])
    result = deploy(dep, rg, tpl, mode="Complete")
    assert result.properties.provisioning_state == "Succeeded", result.as_dict()
    assert {i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)} == {"stays"}
    assert support.graph_service_principals_by_app_id(arm, doomed.client_id) == []
    deletes = [o.properties for o in dep.deployment_operations.list(rg, result.name) if o.properties.provisioning_operation == "Delete"]
    assert [d.target_resource.resource_name for d in deletes] == ["doomed"]


# --------------------------------------------------------------------------------------------------
# errors, all refused before anything is written


POSITION = re.compile(r"at line '(\d+)' and column '(\d+)'")


def expect_template_error(dep, rg: str, body: dict, code: str = "InvalidTemplate") -> dict:
    with pytest.raises(HttpResponseError) as info:
        dep.deployments.begin_create_or_update(rg, support.unique_name("bad"), body).result(timeout=60)
    assert info.value.status_code == 400, support.describe_http_error(info.value)
    error = support.arm_error_body(info.value)
    assert error.get("code") == code, support.describe_http_error(info.value)
    return error


def test_template_errors_in_arms_words_and_nothing_written(arm, rg, dep):
    before_ids = resource_ids(arm, rg)

    # A bad expression names the line and column of the offending value in the template's own text.
    bad = template([{"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "[concat('a', ]", "location": "westus"}])
    error = expect_template_error(dep, rg, {"properties": {"mode": "Incremental", "template": bad}})
    assert error["message"].startswith("Deployment template validation failed:"), error
    assert POSITION.search(error["message"]), error

    unknown = template([{"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "[noSuchFunction('x')]", "location": "westus"}])
    error = expect_template_error(dep, rg, {"properties": {"mode": "Incremental", "template": unknown}})
    assert "noSuchFunction" in error["message"], error

    # Circular dependsOn.
    cycle = template([
        {"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "a", "location": "westus", "dependsOn": ["b"]},
        {"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "b", "location": "westus", "dependsOn": ["a"]},
    ])
    error = expect_template_error(dep, rg, {"properties": {"mode": "Incremental", "template": cycle, "parameters": {"adminPassword": {"value": "p"}}}})
    assert "Circular dependency detected on resource" in error["message"], error

    # A missing parameter value, and one outside allowedValues.
    missing = template([], parameters={"size": {"type": "string", "allowedValues": ["small", "large"]}})
    error = expect_template_error(dep, rg, {"properties": {"mode": "Incremental", "template": missing, "parameters": {"adminPassword": {"value": "p"}}}})
    assert "The value for the template parameter 'size'" in error["message"] and "is not provided" in error["message"], error
    error = expect_template_error(dep, rg, {"properties": {"mode": "Incremental", "template": missing, "parameters": {"adminPassword": {"value": "p"}, "size": {"value": "medium"}}}})
    assert "'size'" in error["message"] and "allowed value" in error["message"], error

    assert resource_ids(arm, rg) == before_ids
    assert list(dep.deployments.list_by_resource_group(rg)) == []


def test_a_failed_resource_fails_the_deployment_and_what_succeeded_stays(server, arm, rg, dep):
    missing_identity = arm.identity_id(rg, "does-not-exist")
    tpl = template([
        {"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "good", "location": "westus"},
        vm_resource(lit("vm1"), identity={"type": "UserAssigned", "userAssignedIdentities": {missing_identity: {}}}),
        {"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "after-vm", "location": "westus", "dependsOn": ["vm1"]},
    ])
    name = support.unique_name("fail")
    with pytest.raises(HttpResponseError) as info:
        deploy(dep, rg, tpl, name=name)
    detail = support.describe_http_error(info.value)
    assert "DeploymentFailed" in str(info.value), detail
    record = dep.deployments.get(rg, name)
    assert record.properties.provisioning_state == "Failed"
    assert record.properties.error.code == "DeploymentFailed"
    assert [d.code for d in record.properties.error.details] == ["FailedIdentityOperation"], record.properties.error.as_dict()
    ops = {o.properties.target_resource.resource_name: o.properties for o in dep.deployment_operations.list(rg, name)}
    assert ops["vm1"].provisioning_state == "Failed" and ops["vm1"].status_code == "BadRequest"
    # The failed operation carries the resource provider's error in its statusMessage, as ARM's does.
    status = ops["vm1"].status_message
    assert status.status == "Failed" and status.error.code == "FailedIdentityOperation", ops["vm1"].as_dict()
    assert status.error.message, ops["vm1"].as_dict()
    assert ops["good"].provisioning_state == "Succeeded"
    assert "after-vm" not in ops, "a resource whose dependency failed is not attempted"
    assert {i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)} == {"good"}

    # One operation read by its id (GET .../deployments/{name}/operations/{operationId}).
    listed = next(o for o in dep.deployment_operations.list(rg, name) if o.properties.target_resource.resource_name == "vm1")
    one = dep.deployment_operations.get(rg, name, listed.operation_id)
    assert (one.id, one.operation_id) == (listed.id, listed.operation_id)
    assert one.properties.provisioning_state == "Failed" and one.properties.status_code == "BadRequest"
    assert one.properties.target_resource.id.lower() == arm.vm_id(rg, "vm1").lower()
    assert (one.properties.status_message.error.code, one.properties.status_message.error.message) == (status.error.code, status.error.message)


def test_a_secure_object_parameter_reaches_the_resource_and_is_never_returned(arm, rg, dep):
    """A `secureObject` parameter's value is used in a resource; ARM answers only its type
    (`{"type": "SecureObject"}`) wherever the deployment's parameters are returned."""
    secret = "owner-" + uuid.uuid4().hex
    tpl = template(
        [{"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "tagged", "location": "westus",
          "tags": {"owner": "[parameters('settings').owner]", "tier": "[parameters('settings').tiers[1]]"}}],
        parameters={"settings": {"type": "secureObject"}},
    )
    name = support.unique_name("secobj")
    result = deploy(dep, rg, tpl, parameters={"settings": {"value": {"owner": secret, "tiers": ["a", "b"]}}}, name=name)
    assert result.properties.provisioning_state == "Succeeded", result.as_dict()
    expected = {"adminPassword": {"type": "SecureString"}, "settings": {"type": "SecureObject"}}
    assert result.properties.parameters == expected
    assert dep.deployments.get(rg, name).properties.parameters == expected
    assert arm.msi.user_assigned_identities.get(rg, "tagged").tags == {"owner": secret, "tier": "b"}

    # Nowhere in the record, the list of deployments or the operations (no debugSetting asked).
    base = f"{arm.rg_id(rg)}/providers/Microsoft.Resources/deployments"
    for path in (f"{base}/{name}", base, f"{base}/{name}/operations"):
        res = arm.raw("GET", path, params={"api-version": "2025-04-01"})
        assert res.status_code == 200, res.text
        assert secret not in res.text and "myPassword12" not in res.text, (path, res.text)


def test_rbac_per_resource_reader_cannot_deploy_and_vm_contributor_needs_identity_operator(server, arm, rg, rbac):
    identity = arm.create_identity(rg, "ID1")
    reader = rbac.principal()
    rbac.grant(reader.object_id, ROLE_READER, arm.rg_id(rg))
    with pytest.raises(HttpResponseError) as info:
        deploy(deployments_client(server, reader.credential), rg, seed_001_system_identity_template())
    assert info.value.status_code == 403, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "AuthorizationFailed", support.describe_http_error(info.value)

    vmc = rbac.principal()
    rbac.grant(vmc.object_id, ROLE_VM_CONTRIBUTOR, arm.rg_id(rg))
    tpl = template([vm_resource(lit("vm1"), identity={"type": "UserAssigned", "userAssignedIdentities": {identity.id: {}}})])
    vmc_dep = deployments_client(server, vmc.credential)
    name = support.unique_name("vmc")
    with pytest.raises(HttpResponseError):
        deploy(vmc_dep, rg, tpl, name=name)
    record = vmc_dep.deployments.get(rg, name)
    assert record.properties.provisioning_state == "Failed"
    details = record.properties.error.details
    assert [d.code for d in details] == ["LinkedAuthorizationFailed"], record.properties.error.as_dict()
    assert "userAssignedIdentities/assign/action" in details[0].message
    with pytest.raises(ResourceNotFoundError):
        arm.compute.virtual_machines.get(rg, "vm1")

    # With Managed Identity Operator on the identity, the same template deploys.
    rbac.grant(vmc.object_id, ROLE_MI_OPERATOR, identity.id)
    assert deploy(vmc_dep, rg, tpl, name=name).properties.provisioning_state == "Succeeded"

    # A resource type the caller may not write is refused before anything starts (ARM's preflight,
    # which ARM answers 400 Bad Request).
    other = template([{"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "not-mine", "location": "westus"}])
    with pytest.raises(HttpResponseError) as info:
        deploy(vmc_dep, rg, other)
    assert info.value.status_code == 400, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "InvalidTemplateDeployment", support.describe_http_error(info.value)
    assert "not-mine" not in {i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)}


# --------------------------------------------------------------------------------------------------
# the network resources `az vm create` puts in its template


def test_az_vm_create_network_resources(server, arm, rg, dep):
    vm = "myVM"
    subnet_id = f"[concat(resourceId('Microsoft.Network/virtualNetworks', '{vm}VNET'), '/subnets/{vm}Subnet')]"
    tpl = template([
        {"type": "Microsoft.Network/virtualNetworks", "apiVersion": "2015-06-15", "name": f"{vm}VNET", "location": "westus",
         "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": [{"name": f"{vm}Subnet", "properties": {"addressPrefix": "10.0.0.0/24"}}]}},
        {"type": "Microsoft.Network/networkSecurityGroups", "apiVersion": "2015-06-15", "name": f"{vm}NSG", "location": "westus",
         "properties": {"securityRules": [{"name": "rdp", "properties": {"protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "3389", "sourceAddressPrefix": "*", "destinationAddressPrefix": "*", "access": "Allow", "priority": 1000, "direction": "Inbound"}}]}},
        {"type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2022-01-01", "name": f"{vm}PublicIP", "location": "westus", "sku": {"name": "Standard"},
         "properties": {"publicIPAllocationMethod": "Static"}},
        {"type": "Microsoft.Network/networkInterfaces", "apiVersion": "2015-06-15", "name": f"{vm}VMNic", "location": "westus",
         "dependsOn": [f"Microsoft.Network/virtualNetworks/{vm}VNET", f"Microsoft.Network/networkSecurityGroups/{vm}NSG", f"Microsoft.Network/publicIpAddresses/{vm}PublicIP"],
         "properties": {
             "ipConfigurations": [{"name": f"ipconfig{vm}", "properties": {"privateIPAllocationMethod": "Dynamic", "subnet": {"id": subnet_id},
                                   "publicIPAddress": {"id": f"[resourceId('Microsoft.Network/publicIPAddresses', '{vm}PublicIP')]"}}}],
             "networkSecurityGroup": {"id": f"[resourceId('Microsoft.Network/networkSecurityGroups', '{vm}NSG')]"},
         }},
    ])
    result = deploy(dep, rg, tpl)
    assert result.properties.provisioning_state == "Succeeded", result.as_dict()
    base = f"{arm.rg_id(rg)}/providers/Microsoft.Network"
    vnet = arm.resource.resources.get_by_id(f"{base}/virtualNetworks/{vm}VNET", api_version="2022-01-01")
    assert vnet.properties["subnets"][0]["id"].lower() == f"{base}/virtualNetworks/{vm}VNET/subnets/{vm}Subnet".lower()
    nic = arm.resource.resources.get_by_id(f"{base}/networkInterfaces/{vm}VMNic", api_version="2022-01-01")
    config = nic.properties["ipConfigurations"][0]["properties"]
    assert config["privateIPAddress"] == "10.0.0.4"
    assert re.fullmatch(r"([0-9A-F]{2}-){5}[0-9A-F]{2}", nic.properties["macAddress"]), nic.properties
    pip = arm.resource.resources.get_by_id(f"{base}/publicIPAddresses/{vm}PublicIP", api_version="2022-01-01")
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", pip.properties["ipAddress"]), pip.properties
    nsg = arm.resource.resources.get_by_id(f"{base}/networkSecurityGroups/{vm}NSG", api_version="2022-01-01")
    assert {r["name"] for r in nsg.properties["defaultSecurityRules"]} >= {"AllowVnetInBound", "DenyAllInBound"}

    # A second NIC in the subnet gets the next address; a NIC on a missing subnet is refused.
    second = copy.deepcopy(tpl)
    second["resources"] = [copy.deepcopy(tpl["resources"][3])]
    second["resources"][0]["name"] = "second-nic"
    second["resources"][0]["dependsOn"] = []
    deploy(dep, rg, second)
    nic2 = arm.resource.resources.get_by_id(f"{base}/networkInterfaces/second-nic", api_version="2022-01-01")
    assert nic2.properties["ipConfigurations"][0]["properties"]["privateIPAddress"] == "10.0.0.5"
    dangling = {
        "location": "westus",
        "properties": {"ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": f"{base}/virtualNetworks/none/subnets/none"}}}]},
    }
    with pytest.raises(HttpResponseError) as info:
        arm.resource.resources.begin_create_or_update_by_id(f"{base}/networkInterfaces/dangling", dangling, api_version="2022-01-01").result()
    assert support.arm_error_code(info.value) == "InvalidResourceReference", support.describe_http_error(info.value)

    # `$expand=instanceView` on a VM answers a power state (what az reads back).
    dep_vm = template([vm_resource(lit("vm1"), identity={"type": "SystemAssigned"})])
    deploy(dep, rg, dep_vm)
    view = arm.compute.virtual_machines.get(rg, "vm1", expand="instanceView").instance_view
    assert any(s.code == "PowerState/running" for s in view.statuses), view.as_dict()


def test_a_running_deployment_is_polled_through_its_status_url(server_factory, monkeypatch):
    """On a server that answers a deployment PUT at once (`--deployment-wait 0`), as ARM always
    does: 201 with the deployment still running and `Azure-AsyncOperation`, then the status URL's
    answer; the SDK's poller follows the same URL to the finished record."""
    server = server_factory.start(extra_args=("--deployment-wait", "0"))
    support.use_ca(monkeypatch, server.ca_cert_path)
    arm = support.arm_clients(server)
    rg = support.unique_name("pyrg")
    arm.create_group(rg)
    body = {"properties": {"mode": "Incremental", "template": template([
        {"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "[concat('pid', copyIndex())]", "location": "westus", "copy": {"name": "c", "count": 5}},
    ]), "parameters": {"adminPassword": {"value": "x"}}}}
    name = support.unique_name("raw")
    res = arm.raw("PUT", f"{arm.rg_id(rg)}/providers/Microsoft.Resources/deployments/{name}", params={"api-version": "2025-04-01"}, json=body)
    assert res.status_code == 201, res.text
    assert res.json()["properties"]["provisioningState"] in ("Accepted", "Running"), res.text
    assert res.headers["Retry-After"] == "1", dict(res.headers)
    status_url = res.headers["Azure-AsyncOperation"]
    seen = []
    for _ in range(100):
        status = requests.get(status_url, headers={"Authorization": f"Bearer {arm.token()}"}, verify=arm.server.ca_cert_path, timeout=30).json()
        seen.append(status["status"])
        if status["status"] != "Running":
            break
        time.sleep(0.1)
    assert status["status"] == "Succeeded", (status, seen)
    assert {i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)} == {f"pid{n}" for n in range(5)}
    assert all(support.GUID_RE.match(i.principal_id) for i in arm.msi.user_assigned_identities.list_by_resource_group(rg))
    assert uuid.UUID(res.json()["properties"]["correlationId"])

    # azure-mgmt-resource-deployments' poller: the first answer is not final, it polls to Succeeded.
    dep = deployments_client(server)
    poller = dep.deployments.begin_create_or_update(rg, support.unique_name("sdk"), body)
    final = poller.result(timeout=60)
    initial = poller.polling_method()._initial_response.http_response
    assert initial.status_code == 201 and "Azure-AsyncOperation" in initial.headers, initial.headers
    assert final.properties.provisioning_state == "Succeeded"
    assert len(list(dep.deployment_operations.list(rg, final.name))) == 5


def test_cosmos_account_database_container_and_data_role_in_a_template(server, arm, rg, dep):
    """Issue 17's types through the same providers: an account, a database, a container and a
    data-plane role assignment for a user-assigned identity, and `listKeys()` in an output."""
    account = support.unique_name("tplcos").replace("-", "")
    account_id = f"[resourceId('Microsoft.DocumentDB/databaseAccounts', '{account}')]"
    tpl = template([
        {"type": IDENTITY_TYPE, "apiVersion": "2023-01-31", "name": "ID1", "location": "[resourceGroup().location]"},
        {"type": "Microsoft.DocumentDB/databaseAccounts", "apiVersion": "2024-05-15", "name": account, "location": "[resourceGroup().location]",
         "kind": "GlobalDocumentDB",
         "properties": {"databaseAccountOfferType": "Standard", "locations": [{"locationName": "[resourceGroup().location]", "failoverPriority": 0}]}},
        {"type": "Microsoft.DocumentDB/databaseAccounts/sqlDatabases", "apiVersion": "2024-05-15", "name": f"{account}/db",
         "dependsOn": [account_id], "properties": {"resource": {"id": "db"}, "options": {}}},
        {"type": "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers", "apiVersion": "2024-05-15", "name": f"{account}/db/items",
         "dependsOn": [f"[resourceId('Microsoft.DocumentDB/databaseAccounts/sqlDatabases', '{account}', 'db')]"],
         "properties": {"resource": {"id": "items", "partitionKey": {"paths": ["/pk"], "kind": "Hash"}}, "options": {}}},
        {"type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments", "apiVersion": "2024-05-15",
         "name": f"[concat('{account}/', guid('{account}', 'ID1'))]",
         "dependsOn": [account_id, f"[resourceId('{IDENTITY_TYPE}', 'ID1')]"],
         "properties": {
             "roleDefinitionId": f"[concat({account_id[1:-1]}, '/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002')]",
             "scope": f"[concat({account_id[1:-1]}, '/dbs/db/colls/items')]",
             "principalId": f"[reference(resourceId('{IDENTITY_TYPE}', 'ID1')).principalId]",
         }},
    ], outputs={
        "endpoint": {"type": "string", "value": f"[reference({account_id[1:-1]}).documentEndpoint]"},
        "keyLength": {"type": "int", "value": f"[length(listKeys({account_id[1:-1]}, '2024-05-15').primaryMasterKey)]"},
    })
    result = deploy(dep, rg, tpl)
    assert result.properties.provisioning_state == "Succeeded", result.as_dict()
    assert result.properties.outputs["endpoint"]["value"].endswith(f"/cosmos/{account}/")
    assert result.properties.outputs["keyLength"]["value"] == 88
    base = f"{arm.rg_id(rg)}/providers/Microsoft.DocumentDB/databaseAccounts/{account}"
    container = arm.resource.resources.get_by_id(f"{base}/sqlDatabases/db/containers/items", api_version="2024-05-15")
    assert container.properties["resource"]["partitionKey"]["paths"] == ["/pk"]
    identity = arm.msi.user_assigned_identities.get(rg, "ID1")
    assignments = arm.raw("GET", f"{base}/sqlRoleAssignments", params={"api-version": "2024-05-15"}).json()["value"]
    assert [(a["properties"]["principalId"], a["properties"]["scope"].lower()) for a in assignments] == [
        (identity.principal_id, f"{base}/dbs/db/colls/items".lower())
    ]
