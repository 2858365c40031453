"""Virtual machines and their managed identities through the real azure-mgmt-compute 39 client
(api-version 2026-04-01), with azure-mgmt-msi 7.1 for the identities: the flows of seeds 001, 003, 004.

Every VM write is `begin_*().result()` timed by `support.timed_result`: the server answers writes
synchronously, so the SDK's ARMPolling (30 s default interval) must never have to poll.
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import models as cm

import support


def uai(vm) -> dict:
    """The VM's user-assigned identities, keyed by lower-cased resource id."""
    identity = vm.identity
    if identity is None or not identity.user_assigned_identities:
        return {}
    return {key.lower(): value for key, value in identity.user_assigned_identities.items()}


def has_no_identity(vm) -> bool:
    identity = vm.identity
    if identity is None:
        return True
    return (identity.type in (None, "None")) and not identity.principal_id and not identity.user_assigned_identities


def patch_identity(arm, rg, name, identity: cm.VirtualMachineIdentity):
    """PATCH the VM's identity with the SDK's own VirtualMachineUpdate model."""
    return support.timed_result(
        arm.compute.virtual_machines.begin_update(rg, name, cm.VirtualMachineUpdate(identity=identity))
    )


def system_identity(arm, vm_id: str):
    return arm.msi.system_assigned_identities.get_by_scope(scope=vm_id)


def test_vm_with_system_assigned_identity(arm, rg):
    name = support.unique_name("vm")
    created = arm.create_vm(rg, name, identity={"type": "SystemAssigned"})
    assert created.id.lower() == arm.vm_id(rg, name).lower()
    assert created.name == name
    assert created.type == "Microsoft.Compute/virtualMachines"
    assert created.location == "westus"
    assert created.identity.type == "SystemAssigned"
    assert created.identity.tenant_id == arm.server.tenant_id
    assert support.GUID_RE.match(created.identity.principal_id or ""), created.as_dict()
    assert not created.identity.user_assigned_identities
    assert created.provisioning_state == "Succeeded"
    assert support.GUID_RE.match(created.vm_id or ""), created.as_dict()

    got = arm.compute.virtual_machines.get(rg, name)
    assert got.vm_id == created.vm_id
    assert got.identity.principal_id == created.identity.principal_id
    assert got.identity.tenant_id == arm.server.tenant_id
    # The other properties are stored as given, except secrets.
    assert got.hardware_profile.vm_size == "Standard_DS1_v2"
    assert got.storage_profile.image_reference.sku == "2016-Datacenter"
    assert got.os_profile.admin_username == "azureuser"
    assert got.os_profile.computer_name == name[:15]
    assert got.os_profile.admin_password is None, got.as_dict()
    assert "myPassword12" not in str(got.as_dict())
    assert got.network_profile.network_interfaces[0].id.endswith("/networkInterfaces/nic-" + name)

    # The system identity as Microsoft.ManagedIdentity reports it, and as the directory holds it.
    system = system_identity(arm, created.id)
    assert system.principal_id == created.identity.principal_id
    assert system.tenant_id == arm.server.tenant_id
    assert support.GUID_RE.match(system.client_id or "")
    sps = support.graph_service_principals_by_app_id(arm, system.client_id)
    assert [sp.get("id") for sp in sps] == [system.principal_id], sps

    # A PATCH of tags keeps the identity and vmId.
    updated = support.timed_result(arm.compute.virtual_machines.begin_update(rg, name, {"tags": {"a": "b"}}))
    assert updated.tags == {"a": "b"}
    assert updated.vm_id == created.vm_id
    assert updated.identity.principal_id == created.identity.principal_id

    assert name in [vm.name for vm in arm.compute.virtual_machines.list(rg)]
    assert created.id.lower() in [vm.id.lower() for vm in arm.compute.virtual_machines.list_all()]

    # Deleting the VM deletes its system-assigned service principal.
    support.timed_result(arm.compute.virtual_machines.begin_delete(rg, name))
    with pytest.raises(ResourceNotFoundError) as info:
        arm.compute.virtual_machines.get(rg, name)
    assert support.arm_error_code(info.value) == "ResourceNotFound", support.describe_http_error(info.value)
    with pytest.raises(ResourceNotFoundError):
        system_identity(arm, created.id)
    assert support.graph_service_principals_by_app_id(arm, system.client_id) == []
    assert name not in [vm.name for vm in arm.compute.virtual_machines.list(rg)]


def test_vm_create_with_sdk_models(arm, rg):
    """The VM body built from the SDK's own models (what a Python user writes), not raw JSON."""
    name = support.unique_name("vm")
    vm = cm.VirtualMachine(
        location="westus",
        identity=cm.VirtualMachineIdentity(type="SystemAssigned"),
        hardware_profile=cm.HardwareProfile(vm_size="Standard_B1s"),
        storage_profile=cm.StorageProfile(
            image_reference=cm.ImageReference(publisher="Canonical", offer="UbuntuServer", sku="18.04-LTS", version="latest")
        ),
        os_profile=cm.OSProfile(computer_name="myvm", admin_username="azureuser", admin_password="myPassword12"),
        network_profile=cm.NetworkProfile(
            network_interfaces=[cm.NetworkInterfaceReference(id=f"/subscriptions/{arm.sub}/resourceGroups/{rg}/providers/Microsoft.Network/networkInterfaces/nic1")]
        ),
    )
    created = support.timed_result(arm.compute.virtual_machines.begin_create_or_update(rg, name, vm))
    assert created.identity.type == "SystemAssigned"
    assert support.GUID_RE.match(created.identity.principal_id or "")
    assert created.hardware_profile.vm_size == "Standard_B1s"
    assert created.os_profile.admin_password is None


def test_user_assigned_identities_assign_remove_switch(arm, rg):
    vms = arm.compute.virtual_machines
    id1 = arm.create_identity(rg, support.unique_name("id1"))
    id2 = arm.create_identity(rg, support.unique_name("id2"))
    name = support.unique_name("vm")

    created = arm.create_vm(rg, name, identity={"type": "UserAssigned", "userAssignedIdentities": {id1.id: {}}})
    assert created.identity.type == "UserAssigned"
    assert not created.identity.principal_id
    assigned = uai(created)
    assert list(assigned) == [id1.id.lower()], created.identity.as_dict()
    assert assigned[id1.id.lower()].principal_id == id1.principal_id
    assert assigned[id1.id.lower()].client_id == id1.client_id
    vm_id = created.vm_id
    assert support.GUID_RE.match(vm_id or "")

    # Seed 003 `az vm identity assign`: PATCH with only the new key keeps the first identity.
    both = patch_identity(arm, rg, name, cm.VirtualMachineIdentity(
        type="UserAssigned", user_assigned_identities={id2.id: cm.UserAssignedIdentitiesValue()}
    ))
    assert set(uai(both)) == {id1.id.lower(), id2.id.lower()}, both.identity.as_dict()
    assert uai(both)[id2.id.lower()].principal_id == id2.principal_id
    assert uai(both)[id2.id.lower()].client_id == id2.client_id
    assert both.vm_id == vm_id
    assert set(uai(vms.get(rg, name))) == {id1.id.lower(), id2.id.lower()}

    # Remove one: the key set to null. (azure-mgmt-compute 39 serializes a None dict value as
    # JSON null, so the SDK sends exactly {"identity":{"type":"UserAssigned","userAssignedIdentities":{id1:null}}}.)
    removed = patch_identity(arm, rg, name, cm.VirtualMachineIdentity(
        type="UserAssigned", user_assigned_identities={id1.id: None}
    ))
    assert set(uai(removed)) == {id2.id.lower()}, removed.identity.as_dict()
    assert removed.identity.type == "UserAssigned"

    # Keys match case-insensitively: assign with an all-lower-case id, remove with the original casing.
    lower = patch_identity(arm, rg, name, cm.VirtualMachineIdentity(
        type="UserAssigned", user_assigned_identities={id1.id.lower(): cm.UserAssignedIdentitiesValue()}
    ))
    assert set(uai(lower)) == {id1.id.lower(), id2.id.lower()}, lower.identity.as_dict()
    assert len(lower.identity.user_assigned_identities) == 2
    again = patch_identity(arm, rg, name, cm.VirtualMachineIdentity(
        type="UserAssigned", user_assigned_identities={id1.id: None}
    ))
    assert set(uai(again)) == {id2.id.lower()}, again.identity.as_dict()

    # Both kinds at once.
    mixed = patch_identity(arm, rg, name, cm.VirtualMachineIdentity(type="SystemAssigned, UserAssigned"))
    assert mixed.identity.type == "SystemAssigned, UserAssigned"
    assert support.GUID_RE.match(mixed.identity.principal_id or "")
    assert set(uai(mixed)) == {id2.id.lower()}, mixed.identity.as_dict()

    # Switch to SystemAssigned only: the user-assigned identities go, the system one stays.
    system_only = patch_identity(arm, rg, name, cm.VirtualMachineIdentity(type="SystemAssigned"))
    assert system_only.identity.type == "SystemAssigned"
    assert system_only.identity.principal_id == mixed.identity.principal_id
    assert uai(system_only) == {}
    first_system = system_identity(arm, system_only.id)
    assert first_system.principal_id == mixed.identity.principal_id

    # None: no identity left, and the system service principal is deleted.
    none = patch_identity(arm, rg, name, cm.VirtualMachineIdentity(type="None"))
    assert has_no_identity(none), none.as_dict()
    assert has_no_identity(vms.get(rg, name))
    with pytest.raises(ResourceNotFoundError):
        system_identity(arm, system_only.id)
    assert support.graph_service_principals_by_app_id(arm, first_system.client_id) == []

    # Re-enabling gives a new principal.
    reenabled = patch_identity(arm, rg, name, cm.VirtualMachineIdentity(type="SystemAssigned"))
    assert support.GUID_RE.match(reenabled.identity.principal_id or "")
    assert reenabled.identity.principal_id != first_system.principal_id
    assert system_identity(arm, reenabled.id).principal_id == reenabled.identity.principal_id
    assert reenabled.vm_id == vm_id

    # The user-assigned identities themselves are untouched by all of this, and survive the VM.
    support.timed_result(vms.begin_delete(rg, name))
    for identity in (id1, id2):
        got = arm.msi.user_assigned_identities.get(rg, identity.name)
        assert got.principal_id == identity.principal_id


def test_disable_system_identity_keeps_user_assigned(arm, rg):
    id1 = arm.create_identity(rg)
    name = support.unique_name("vm")
    created = arm.create_vm(rg, name, identity={"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {id1.id: {}}})
    assert created.identity.type == "SystemAssigned, UserAssigned"
    assert support.GUID_RE.match(created.identity.principal_id or "")
    client_id = system_identity(arm, created.id).client_id

    user_only = patch_identity(arm, rg, name, cm.VirtualMachineIdentity(type="UserAssigned"))
    assert user_only.identity.type == "UserAssigned"
    assert not user_only.identity.principal_id
    assert set(uai(user_only)) == {id1.id.lower()}
    with pytest.raises(ResourceNotFoundError):
        system_identity(arm, created.id)
    assert support.graph_service_principals_by_app_id(arm, client_id) == []


def test_put_replaces_the_identity_block(arm, rg):
    """Seed 004's PowerShell flow: Get-AzVM, change the identity, Update-AzVM (a PUT of the whole VM)
    keeps exactly the identities it names. The VM from `get` goes back as is (the SDK drops read-only
    fields, so no adminPassword and no principal ids are sent)."""
    vms = arm.compute.virtual_machines
    id1 = arm.create_identity(rg)
    id2 = arm.create_identity(rg)
    name = support.unique_name("vm")
    created = arm.create_vm(rg, name, identity={"type": "UserAssigned", "userAssignedIdentities": {id1.id: {}}})

    vm = vms.get(rg, name)
    vm.identity = cm.VirtualMachineIdentity(
        type="UserAssigned", user_assigned_identities={id2.id: cm.UserAssignedIdentitiesValue()}
    )
    replaced = support.timed_result(vms.begin_create_or_update(rg, name, vm))
    assert set(uai(replaced)) == {id2.id.lower()}, replaced.identity.as_dict()
    assert replaced.vm_id == created.vm_id
    assert replaced.os_profile.admin_username == "azureuser"
    assert replaced.hardware_profile.vm_size == "Standard_DS1_v2"
    assert set(uai(vms.get(rg, name))) == {id2.id.lower()}

    # -AssignIdentity:$SystemAssigned on the fetched VM.
    vm = vms.get(rg, name)
    vm.identity = cm.VirtualMachineIdentity(type="SystemAssigned")
    system = support.timed_result(vms.begin_create_or_update(rg, name, vm))
    assert system.identity.type == "SystemAssigned"
    assert support.GUID_RE.match(system.identity.principal_id or "")
    assert uai(system) == {}


def test_assigning_a_missing_identity_fails_and_changes_nothing(arm, rg):
    vms = arm.compute.virtual_machines
    id1 = arm.create_identity(rg)
    name = support.unique_name("vm")
    created = arm.create_vm(rg, name, identity={"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {id1.id: {}}})
    missing = arm.identity_id(rg, support.unique_name("missing"))

    with pytest.raises(HttpResponseError) as info:
        patch_identity(arm, rg, name, cm.VirtualMachineIdentity(
            type="SystemAssigned, UserAssigned", user_assigned_identities={missing: cm.UserAssignedIdentitiesValue()}
        ))
    err = info.value
    # Azure answers 400 FailedIdentityOperation ("Identity operation for resource '...' failed with error
    # 'Failed to perform resource identity operation. Status: 'BadRequest'...was not found...").
    assert err.status_code in (400, 404), support.describe_http_error(err)
    assert support.arm_error_code(err) in ("FailedIdentityOperation", "InvalidUserAssignedIdentity"), support.describe_http_error(err)

    after = vms.get(rg, name)
    assert after.identity.type == "SystemAssigned, UserAssigned"
    assert after.identity.principal_id == created.identity.principal_id
    assert set(uai(after)) == {id1.id.lower()}, after.identity.as_dict()

    # A PUT naming a missing identity creates nothing at all.
    other = support.unique_name("vm")
    with pytest.raises(HttpResponseError) as info:
        arm.create_vm(rg, other, identity={"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {missing: {}}})
    assert info.value.status_code in (400, 404), support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) in ("FailedIdentityOperation", "InvalidUserAssignedIdentity"), (
        support.describe_http_error(info.value)
    )
    with pytest.raises(ResourceNotFoundError):
        vms.get(rg, other)
    with pytest.raises(ResourceNotFoundError):
        system_identity(arm, arm.vm_id(rg, other))


def test_malformed_identity_blocks_are_refused(arm, rg):
    base = f"/subscriptions/{arm.sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines"
    api = f"?api-version={support.ARM_COMPUTE_API}"
    # UserAssigned type with no identities.
    res = arm.raw("PUT", f"{base}/{support.unique_name('vm')}{api}", json=arm.vm_body(identity={"type": "UserAssigned"}))
    assert res.status_code == 400, res.text
    support.assert_arm_error(res, 400, {"InvalidParameter", "BadRequest", "InvalidIdentityValues", "InvalidRequestContent"})
    # An unknown identity type.
    res = arm.raw("PUT", f"{base}/{support.unique_name('vm')}{api}", json=arm.vm_body(identity={"type": "Sometimes"}))
    assert res.status_code == 400, res.text
    support.assert_arm_error(res, 400, {"InvalidParameter", "BadRequest", "InvalidIdentityValues", "InvalidRequestContent"})
    # A key that is not a user-assigned identity id.
    res = arm.raw(
        "PUT",
        f"{base}/{support.unique_name('vm')}{api}",
        json=arm.vm_body(identity={"type": "UserAssigned", "userAssignedIdentities": {"not-an-id": {}}}),
    )
    assert res.status_code in (400, 404), res.text
    assert res.json()["error"]["code"], res.text


def test_vm_in_missing_group(arm):
    with pytest.raises(HttpResponseError) as info:
        arm.create_vm(support.unique_name("pyrg-missing"), "vm1", identity={"type": "SystemAssigned"})
    assert info.value.status_code == 404, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "ResourceGroupNotFound", support.describe_http_error(info.value)


def test_managed_identity_extension_is_stored_and_deleted_with_the_vm(arm, rg):
    """Seed 004: Set-AzureRmVMExtension ... -Type ManagedIdentityExtensionForWindows -Settings @{port=50342}."""
    exts = arm.compute.virtual_machine_extensions
    name = support.unique_name("vm")
    arm.create_vm(rg, name, identity={"type": "SystemAssigned"})
    ext_name = "ManagedIdentityExtensionForWindows"
    body = cm.VirtualMachineExtension(
        location="westus",
        properties=cm.VirtualMachineExtensionProperties(
            publisher="Microsoft.ManagedIdentity",
            type="ManagedIdentityExtensionForWindows",
            type_handler_version="1.0",
            settings={"port": 50342},
        ),
    )
    created = support.timed_result(exts.begin_create_or_update(rg, name, ext_name, body))
    assert created.name == ext_name
    assert created.properties.settings == {"port": 50342}
    assert created.properties.publisher == "Microsoft.ManagedIdentity"
    assert created.properties.type == "ManagedIdentityExtensionForWindows"
    assert created.properties.type_handler_version == "1.0"
    assert created.properties.provisioning_state == "Succeeded"
    assert created.id.lower() == f"{arm.vm_id(rg, name)}/extensions/{ext_name}".lower()

    got = exts.get(rg, name, ext_name)
    assert got.properties.settings == {"port": 50342}
    assert got.properties.publisher == "Microsoft.ManagedIdentity"
    assert ext_name in [e.name for e in exts.list(rg, name).value or []]

    # The VM keeps its identity next to the extension.
    assert support.GUID_RE.match(arm.compute.virtual_machines.get(rg, name).identity.principal_id or "")

    support.timed_result(arm.compute.virtual_machines.begin_delete(rg, name))
    with pytest.raises(ResourceNotFoundError):
        exts.get(rg, name, ext_name)


def test_extension_on_missing_vm_is_not_found(arm, rg):
    with pytest.raises(HttpResponseError) as info:
        support.timed_result(
            arm.compute.virtual_machine_extensions.begin_create_or_update(
                rg, "no-such-vm", "ManagedIdentityExtensionForLinux",
                cm.VirtualMachineExtension(
                    location="westus",
                    properties=cm.VirtualMachineExtensionProperties(
                        publisher="Microsoft.ManagedIdentity",
                        type="ManagedIdentityExtensionForLinux",
                        type_handler_version="1.0",
                        settings={"port": 50342},
                    ),
                ),
            )
        )
    assert info.value.status_code == 404, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) in ("ResourceNotFound", "ParentResourceNotFound"), support.describe_http_error(info.value)


def test_identity_type_without_space_is_accepted(arm, rg):
    """Docs show both "SystemAssigned, UserAssigned" and "SystemAssigned,UserAssigned"; ARM answers the former."""
    id1 = arm.create_identity(rg)
    name = support.unique_name("vm")
    res = arm.raw(
        "PUT",
        f"{arm.vm_id(rg, name)}?api-version={support.ARM_COMPUTE_API}",
        json=arm.vm_body(identity={"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": {id1.id: {}}}),
    )
    assert res.status_code in (200, 201), res.text
    identity = res.json()["identity"]
    assert identity["type"] == "SystemAssigned, UserAssigned", identity
    assert support.GUID_RE.match(identity.get("principalId", "")), identity


def test_system_identity_of_vm_without_one_is_not_found(arm, rg):
    vm = arm.create_vm(rg, support.unique_name("vm"))
    assert has_no_identity(vm)
    with pytest.raises(ResourceNotFoundError):
        system_identity(arm, vm.id)
