"""The az-style `openmi` CLI for issue 4 (group, identity, vm, vm identity, resource delete), run as a
shell would run it, logged in as the bootstrap service principal; results cross-checked with the real
azure-mgmt-* clients."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError

import support


@pytest.fixture
def cli_rg(cli, arm):
    """A resource group created with the CLI, removed after the test."""
    name = support.unique_name("clirg")
    cli("group", "create", "-n", name, "-l", "westus")
    yield name
    try:
        if arm.resource.resource_groups.check_existence(name):
            arm.resource.resource_groups.begin_delete(name).result()
    except Exception:  # noqa: BLE001 - cleanup must not mask the test's own result
        pass


def keys_lower(mapping) -> set:
    return {key.lower() for key in (mapping or {})}


def test_group_create_show_list_delete(cli, arm):
    name = support.unique_name("clirg")
    group = cli.json("group", "create", "-n", name, "-l", "westus")
    assert group["name"] == name, group
    assert group["location"] == "westus", group
    assert group["id"] == f"/subscriptions/{arm.sub}/resourceGroups/{name}", group
    assert group["properties"]["provisioningState"] == "Succeeded", group
    assert arm.resource.resource_groups.get(name).location == "westus"

    shown = cli.json("group", "show", "-n", name)
    assert (shown["id"], shown["name"], shown["location"]) == (group["id"], name, "westus")
    assert shown["properties"]["provisioningState"] == "Succeeded"

    listed = cli.json("group", "list")
    assert isinstance(listed, list), listed
    assert name in [g["name"] for g in listed]

    cli("group", "delete", "-n", name, "--yes")
    assert arm.resource.resource_groups.check_existence(name) is False
    cli.fails("group", "show", "-n", name, code="ResourceGroupNotFound")


def test_identity_create_show_list_delete(cli, arm):
    rg = support.unique_name("clirg")
    cli("group", "create", "-n", rg, "-l", "eastus")
    try:
        created = cli.json("identity", "create", "-g", rg, "-n", "ID1")
        assert created["name"] == "ID1", created
        assert created["location"] == "eastus", created  # from the group
        assert created["id"].lower() == arm.identity_id(rg, "ID1").lower(), created
        assert created["tenantId"] == arm.server.tenant_id, created
        assert support.GUID_RE.match(created["principalId"]), created
        assert support.GUID_RE.match(created["clientId"]), created
        assert created.get("type") == "Microsoft.ManagedIdentity/userAssignedIdentities", created
        assert created.get("resourceGroup", rg).lower() == rg.lower(), created

        sdk = arm.msi.user_assigned_identities.get(rg, "ID1")
        assert (sdk.principal_id, sdk.client_id) == (created["principalId"], created["clientId"])

        shown = cli.json("identity", "show", "-g", rg, "-n", "ID1")
        assert (shown["principalId"], shown["clientId"], shown["id"]) == (created["principalId"], created["clientId"], created["id"])

        listed = cli.json("identity", "list", "-g", rg)
        assert [i["name"] for i in listed] == ["ID1"], listed
        assert created["id"].lower() in [i["id"].lower() for i in cli.json("identity", "list")]

        with_location = cli.json("identity", "create", "-g", rg, "-n", "ID2", "-l", "westus")
        assert with_location["location"] == "westus", with_location

        cli("identity", "delete", "-g", rg, "-n", "ID1")
        with pytest.raises(ResourceNotFoundError):
            arm.msi.user_assigned_identities.get(rg, "ID1")
        cli.fails("identity", "show", "-g", rg, "-n", "ID1", code="ResourceNotFound")
    finally:
        arm.delete_group(rg)


def test_vm_identity_flows(cli, arm, cli_rg):
    rg = cli_rg
    # Seed 001's command as written (`--assign-identity` with no value, then more options).
    vm1 = cli.json(
        "vm", "create", "--resource-group", rg, "--name", "VM1", "--image", "win2016datacenter",
        "--generate-ssh-keys", "--assign-identity", "--admin-username", "azureuser", "--admin-password", "myPassword12",
    )
    assert vm1["id"].lower() == arm.vm_id(rg, "VM1").lower(), vm1
    system_principal = vm1["identity"]["systemAssignedIdentity"]
    assert support.GUID_RE.match(system_principal), vm1
    sdk_vm1 = arm.compute.virtual_machines.get(rg, "VM1")
    assert sdk_vm1.identity.principal_id == system_principal
    assert sdk_vm1.identity.type == "SystemAssigned"
    assert sdk_vm1.os_profile.admin_username == "azureuser"
    assert sdk_vm1.location == "westus"  # from the group

    # Seed 003: identities, then a VM with a user-assigned identity given by name.
    id1 = cli.json("identity", "create", "-g", rg, "-n", "ID1")
    id2 = cli.json("identity", "create", "-g", rg, "-n", "ID2")
    vm2 = cli.json(
        "vm", "create", "-g", rg, "-n", "VM2", "--image", "Ubuntu2204",
        "--admin-username", "azureuser", "--admin-password", "myPassword12", "--assign-identity", "ID1",
    )
    assert keys_lower(vm2["identity"]["userAssignedIdentities"]) == {id1["id"].lower()}, vm2
    assert not vm2["identity"].get("systemAssignedIdentity"), vm2
    sdk_vm2 = arm.compute.virtual_machines.get(rg, "VM2")
    assert sdk_vm2.identity.type == "UserAssigned"
    (value,) = sdk_vm2.identity.user_assigned_identities.values()
    assert (value.principal_id, value.client_id) == (id1["principalId"], id1["clientId"])

    # `vm identity assign` keeps what the VM already has.
    assigned = cli.json("vm", "identity", "assign", "-g", rg, "-n", "VM2", "--identities", "ID2")
    assert keys_lower(assigned["userAssignedIdentities"]) == {id1["id"].lower(), id2["id"].lower()}, assigned
    assert keys_lower(arm.compute.virtual_machines.get(rg, "VM2").identity.user_assigned_identities) == {
        id1["id"].lower(), id2["id"].lower()
    }

    # Remove one.
    cli("vm", "identity", "remove", "-g", rg, "-n", "VM2", "--identities", "ID1")
    shown = cli.json("vm", "identity", "show", "-g", rg, "-n", "VM2")
    assert shown["type"] == "UserAssigned", shown
    assert keys_lower(shown["userAssignedIdentities"]) == {id2["id"].lower()}, shown
    assert shown["userAssignedIdentities"][next(iter(shown["userAssignedIdentities"]))]["principalId"] == id2["principalId"]

    # `[system]` adds the system identity; the user-assigned one stays.
    with_system = cli.json("vm", "identity", "assign", "-g", rg, "-n", "VM2", "--identities", "[system]")
    assert support.GUID_RE.match(with_system["systemAssignedIdentity"]), with_system
    assert keys_lower(with_system["userAssignedIdentities"]) == {id2["id"].lower()}, with_system
    assert arm.compute.virtual_machines.get(rg, "VM2").identity.type == "SystemAssigned, UserAssigned"

    # Assign by full resource id to the system-assigned VM: the system identity is kept.
    both = cli.json("vm", "identity", "assign", "-g", rg, "-n", "VM1", "--identities", id2["id"])
    assert both["systemAssignedIdentity"] == system_principal, both
    assert keys_lower(both["userAssignedIdentities"]) == {id2["id"].lower()}, both
    shown = cli.json("vm", "identity", "show", "-g", rg, "-n", "VM1")
    assert shown["type"] == "SystemAssigned, UserAssigned", shown
    assert shown["principalId"] == system_principal, shown
    assert shown["tenantId"] == arm.server.tenant_id, shown

    # Remove the system identity only.
    cli("vm", "identity", "remove", "-g", rg, "-n", "VM1", "--identities", "[system]")
    after = arm.compute.virtual_machines.get(rg, "VM1")
    assert after.identity.type == "UserAssigned"
    assert not after.identity.principal_id
    with pytest.raises(ResourceNotFoundError):
        arm.msi.system_assigned_identities.get_by_scope(scope=after.id)

    # show / list never return the admin password.
    shown_vm = cli("vm", "show", "-g", rg, "-n", "VM1")
    assert shown_vm.json()["name"] == "VM1", shown_vm.describe()
    assert "myPassword12" not in shown_vm.stdout, shown_vm.describe()
    listed = cli.json("vm", "list", "-g", rg)
    assert sorted(v["name"] for v in listed) == ["VM1", "VM2"], listed

    # Deleting a VM deletes its system identity; the user-assigned identities stay.
    vm2_id = arm.vm_id(rg, "VM2")
    cli("vm", "delete", "-g", rg, "-n", "VM2", "--yes")
    with pytest.raises(ResourceNotFoundError):
        arm.compute.virtual_machines.get(rg, "VM2")
    with pytest.raises(ResourceNotFoundError):
        arm.msi.system_assigned_identities.get_by_scope(scope=vm2_id)
    assert arm.msi.user_assigned_identities.get(rg, "ID2").principal_id == id2["principalId"]
    assert [v["name"] for v in cli.json("vm", "list", "-g", rg)] == ["VM1"]


def test_resource_delete(cli, arm, cli_rg):
    rg = cli_rg
    identity = cli.json("identity", "create", "-g", rg, "-n", "ID1")
    cli("vm", "create", "-g", rg, "-n", "VM2", "--image", "Ubuntu2204", "--admin-username", "azureuser",
        "--admin-password", "myPassword12", "--assign-identity")
    vm_id = arm.vm_id(rg, "VM2")
    assert arm.msi.system_assigned_identities.get_by_scope(scope=vm_id).principal_id

    cli("resource", "delete", "--ids", identity["id"])
    with pytest.raises(ResourceNotFoundError):
        arm.msi.user_assigned_identities.get(rg, "ID1")

    # Seed 001's clean-up step.
    cli("resource", "delete", "--resource-group", rg, "--name", "VM2", "--resource-type", "Microsoft.Compute/virtualMachines")
    with pytest.raises(ResourceNotFoundError):
        arm.compute.virtual_machines.get(rg, "VM2")
    with pytest.raises(ResourceNotFoundError):
        arm.msi.system_assigned_identities.get_by_scope(scope=vm_id)


def test_resource_delete_several_ids(cli, arm, cli_rg):
    rg = cli_rg
    a = cli.json("identity", "create", "-g", rg, "-n", "IDA")
    b = cli.json("identity", "create", "-g", rg, "-n", "IDB")
    cli("resource", "delete", "--ids", a["id"], b["id"])
    assert list(arm.msi.user_assigned_identities.list_by_resource_group(rg)) == []


def test_output_formats_and_query(cli, arm, cli_rg):
    rg = cli_rg
    expected_id = f"/subscriptions/{arm.sub}/resourceGroups/{rg}"

    out = cli("group", "show", "-n", rg, "--query", "id", "-o", "tsv")
    assert out.stdout.strip() == expected_id, out.describe()

    out = cli("group", "show", "-n", rg, "--query", "id")
    assert out.json() == expected_id, out.describe()

    out = cli("group", "list", "--query", "[].name")
    assert rg in out.json(), out.describe()

    out = cli("group", "show", "-n", rg, "--output", "table")
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2, out.describe()
    assert "Name" in lines[0], out.describe()
    assert rg in out.stdout, out.describe()

    identity = cli.json("identity", "create", "-g", rg, "-n", "ID1")
    out = cli("identity", "show", "-g", rg, "-n", "ID1", "--query", "principalId", "-o", "tsv")
    assert out.stdout.strip() == identity["principalId"], out.describe()

    out = cli("identity", "list", "-g", rg, "-o", "table")
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2 and "Name" in lines[0] and "ID1" in out.stdout, out.describe()

    out = cli("vm", "create", "-g", rg, "-n", "VM1", "--image", "Ubuntu2204", "--admin-username", "azureuser",
              "--admin-password", "myPassword12", "--assign-identity", "--query", "identity.systemAssignedIdentity", "-o", "tsv")
    assert support.GUID_RE.match(out.stdout.strip()), out.describe()
    assert arm.compute.virtual_machines.get(rg, "VM1").identity.principal_id == out.stdout.strip()


def test_cli_errors(cli, arm, cli_rg):
    rg = cli_rg
    cli.fails("identity", "create", "-g", rg, "-n", "ab", code="InvalidResourceName")
    # `--name=-bad`: a bare `-n -bad` reads as an option in az (argparse) and in clap alike.
    cli.fails("identity", "create", "-g", rg, "--name=-bad", code="InvalidResourceName")
    assert list(arm.msi.user_assigned_identities.list_by_resource_group(rg)) == []
    cli.fails("group", "show", "-n", support.unique_name("missing"), code="ResourceGroupNotFound")
    # Without --yes and without a terminal to ask on, az refuses to delete; so do we.
    cli.fails("group", "delete", "-n", rg)
    assert arm.resource.resource_groups.check_existence(rg) is True
    cli.fails("vm", "show", "-g", rg, "-n", "nope", code="ResourceNotFound")
    cli.fails("identity", "show", "-g", rg, "-n", "nope", code="ResourceNotFound")
    cli.fails("identity", "create", "-g", support.unique_name("missing"), "-n", "abc", code="ResourceGroupNotFound")
    # A user-assigned identity that does not exist: the VM is not created.
    cli.fails("vm", "create", "-g", rg, "-n", "VM9", "--image", "Ubuntu2204", "--admin-username", "azureuser",
              "--admin-password", "myPassword12", "--assign-identity", "no-such-identity")
    with pytest.raises(ResourceNotFoundError):
        arm.compute.virtual_machines.get(rg, "VM9")
