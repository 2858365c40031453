"""Role-based access control enforced on every ARM request (issue 5), through the real
azure-mgmt-authorization 4.0 (api-version 2022-04-01), azure-mgmt-msi, azure-mgmt-compute and
azure-mgmt-resource clients, each test acting as service principals of its own made through the
Graph-shaped API (support.RbacKit). The bootstrap SP (Owner of the subscription) sets the stage.

Nothing here sleeps: a grant or a revocation must hold for the very next request.
"""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import models as cm

import support
from support import (
    ROLE_CONTRIBUTOR,
    ROLE_MI_CONTRIBUTOR,
    ROLE_MI_OPERATOR,
    ROLE_OWNER,
    ROLE_RBAC_ADMINISTRATOR,
    ROLE_READER,
    ROLE_USER_ACCESS_ADMINISTRATOR,
    ROLE_VM_CONTRIBUTOR,
)

IDENTITY_WRITE = "Microsoft.ManagedIdentity/userAssignedIdentities/write"
IDENTITY_DELETE = "Microsoft.ManagedIdentity/userAssignedIdentities/delete"
IDENTITY_ASSIGN = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
GROUP_READ = "Microsoft.Resources/subscriptions/resourceGroups/read"
GROUP_WRITE = "Microsoft.Resources/subscriptions/resourceGroups/write"
ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"
ASSIGNMENT_DELETE = "Microsoft.Authorization/roleAssignments/delete"


def uai(vm) -> dict:
    """The VM's user-assigned identities, keyed by lower-cased resource id."""
    identity = vm.identity
    if identity is None or not identity.user_assigned_identities:
        return {}
    return {key.lower(): value for key, value in identity.user_assigned_identities.items()}


def assignment_body(kit: support.RbacKit, principal_id: str, role_guid: str) -> dict:
    return {
        "properties": {
            "roleDefinitionId": kit.role_id(role_guid),
            "principalId": principal_id,
            "principalType": "ServicePrincipal",
        }
    }


def assert_can_read_group(clients, rg: str) -> None:
    try:
        got = clients.resource.resource_groups.get(rg)
    except HttpResponseError as err:
        pytest.fail(f"expected {clients.object_id} to read {rg}: {support.describe_http_error(err)}")
    assert got.name == rg


# --------------------------------------------------------------------------------------------------
# 1. Reader


def test_reader_reads_the_group_but_cannot_write_in_it(rbac, arm, rg):
    identity = arm.create_identity(rg)
    other = arm.create_group().name
    try:
        reader = rbac.principal()
        rbac.grant(reader.object_id, ROLE_READER, arm.rg_id(rg))

        # Reads the group and what is in it (the assignment is inherited downward).
        assert_can_read_group(reader, rg)
        got = reader.msi.user_assigned_identities.get(rg, identity.name)
        assert got.principal_id == identity.principal_id
        assert identity.name in [i.name for i in reader.msi.user_assigned_identities.list_by_resource_group(rg)]

        # Cannot write in it: the SDK gets 403 AuthorizationFailed naming action and scope.
        new_name = support.unique_name("pyid")
        with pytest.raises(HttpResponseError) as info:
            reader.create_identity(rg, new_name)
        support.assert_authorization_failed(info.value, reader.object_id, IDENTITY_WRITE, arm.identity_id(rg, new_name))
        with pytest.raises(HttpResponseError) as info:
            reader.msi.user_assigned_identities.update(rg, identity.name, {"tags": {"by": "reader"}})
        support.assert_authorization_failed(info.value, reader.object_id, IDENTITY_WRITE, identity.id)
        with pytest.raises(HttpResponseError) as info:
            reader.msi.user_assigned_identities.delete(rg, identity.name)
        support.assert_authorization_failed(info.value, reader.object_id, IDENTITY_DELETE, identity.id)
        with pytest.raises(HttpResponseError) as info:
            reader.resource.resource_groups.create_or_update(rg, {"location": "westus", "tags": {"by": "reader"}})
        support.assert_authorization_failed(info.value, reader.object_id, GROUP_WRITE, arm.rg_id(rg))
        # ... and nothing was written.
        assert new_name not in [i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)]
        assert (arm.msi.user_assigned_identities.get(rg, identity.name).tags or {}).get("by") is None
        assert (arm.resource.resource_groups.get(rg).tags or {}).get("by") is None

        # Cannot read another group, nor create one.
        with pytest.raises(HttpResponseError) as info:
            reader.resource.resource_groups.get(other)
        support.assert_authorization_failed(info.value, reader.object_id, GROUP_READ, arm.rg_id(other))
        fresh = support.unique_name("pyrg")
        with pytest.raises(HttpResponseError) as info:
            reader.create_group(fresh)
        support.assert_authorization_failed(info.value, reader.object_id, GROUP_WRITE, arm.rg_id(fresh))
        assert not arm.resource.resource_groups.check_existence(fresh)

        # Lists return only what the caller may read.
        assert [g.name for g in reader.resource.resource_groups.list()] == [rg]
        visible = [i.id.lower() for i in reader.msi.user_assigned_identities.list_by_subscription()]
        assert visible == [identity.id.lower()], visible
    finally:
        arm.delete_group(other)


def test_reader_at_subscription_reads_every_group_and_writes_none(rbac, arm, rg):
    reader = rbac.principal()
    rbac.grant(reader.object_id, ROLE_READER, f"/subscriptions/{arm.sub}")
    assert_can_read_group(reader, rg)
    assert rg in [g.name for g in reader.resource.resource_groups.list()]
    name = support.unique_name("pyid")
    with pytest.raises(HttpResponseError) as info:
        reader.create_identity(rg, name)
    support.assert_authorization_failed(info.value, reader.object_id, IDENTITY_WRITE, arm.identity_id(rg, name))


def test_assignment_on_a_resource_does_not_reach_its_group(rbac, arm, rg):
    identity = arm.create_identity(rg)
    sibling = arm.create_identity(rg)
    reader = rbac.principal()
    rbac.grant(reader.object_id, ROLE_READER, identity.id)

    assert reader.msi.user_assigned_identities.get(rg, identity.name).principal_id == identity.principal_id
    with pytest.raises(HttpResponseError) as info:
        reader.msi.user_assigned_identities.get(rg, sibling.name)
    support.assert_authorization_failed(
        info.value, reader.object_id, "Microsoft.ManagedIdentity/userAssignedIdentities/read", sibling.id
    )
    with pytest.raises(HttpResponseError) as info:
        reader.resource.resource_groups.get(rg)
    support.assert_authorization_failed(info.value, reader.object_id, GROUP_READ, arm.rg_id(rg))
    assert [g.name for g in reader.resource.resource_groups.list()] == []
    listed = [i.id.lower() for i in reader.msi.user_assigned_identities.list_by_subscription()]
    assert listed == [identity.id.lower()], listed


def test_principal_without_assignments_is_denied(rbac, arm, rg):
    nobody = rbac.principal()
    with pytest.raises(HttpResponseError) as info:
        nobody.resource.resource_groups.get(rg)
    support.assert_authorization_failed(info.value, nobody.object_id, GROUP_READ, arm.rg_id(rg))
    # A list shows nothing (Azure may also refuse it outright when the caller holds no role at all
    # in the subscription).
    for pager in (nobody.resource.resource_groups.list, nobody.msi.user_assigned_identities.list_by_subscription):
        try:
            assert list(pager()) == []
        except HttpResponseError as err:
            assert err.status_code == 403, support.describe_http_error(err)
            assert support.arm_error_code(err) == "AuthorizationFailed", support.describe_http_error(err)


def test_subscription_is_listed_only_with_some_access(rbac, arm, rg):
    """`az login` as a principal without any role finds no subscription; any role in it shows it."""
    principal = rbac.principal()
    assert [s.subscription_id for s in principal.subscriptions.subscriptions.list()] == []
    rbac.grant(principal.object_id, ROLE_READER, arm.rg_id(rg))
    assert [s.subscription_id for s in principal.subscriptions.subscriptions.list()] == [arm.sub]


NETWORK_API = "2024-05-01"


def test_actions_follow_the_resource_type_and_child_type(rbac, arm, rg):
    """Virtual Machine Contributor: networkInterfaces/*, virtualNetworks/read and subnets/join/action,
    but no virtualNetworks/write and no virtualNetworks/subnets/read|write."""
    vnet = f"{arm.rg_id(rg)}/providers/Microsoft.Network/virtualNetworks/vnet1"
    subnet = f"{vnet}/subnets/default"
    nic = f"{arm.rg_id(rg)}/providers/Microsoft.Network/networkInterfaces/nic1"
    params = {"api-version": NETWORK_API}
    res = arm.raw("PUT", vnet, params=params, json={"location": "westus", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}})
    assert res.status_code in (200, 201), res.text
    res = arm.raw("PUT", subnet, params=params, json={"properties": {"addressPrefix": "10.0.0.0/24"}})
    assert res.status_code in (200, 201), res.text

    vmc = rbac.principal()
    rbac.grant(vmc.object_id, ROLE_VM_CONTRIBUTOR, arm.rg_id(rg))
    nic_body = {"location": "westus", "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": subnet}}}]}}
    res = vmc.raw("PUT", nic, params=params, json=nic_body)
    assert res.status_code in (200, 201), res.text
    res = vmc.raw("GET", vnet, params=params)
    assert res.status_code == 200, res.text
    support.assert_authorization_failed(
        vmc.raw("PUT", vnet, params=params, json={"location": "westus"}), vmc.object_id,
        "Microsoft.Network/virtualNetworks/write", vnet,
    )
    support.assert_authorization_failed(
        vmc.raw("GET", subnet, params=params), vmc.object_id, "Microsoft.Network/virtualNetworks/subnets/read", subnet
    )
    support.assert_authorization_failed(
        vmc.raw("PUT", subnet, params=params, json={"properties": {"addressPrefix": "10.0.1.0/24"}}), vmc.object_id,
        "Microsoft.Network/virtualNetworks/subnets/write", subnet,
    )
    support.assert_authorization_failed(
        vmc.raw("DELETE", arm.rg_id(rg), params={"api-version": support.ARM_RG_API}), vmc.object_id,
        "Microsoft.Resources/subscriptions/resourceGroups/delete", arm.rg_id(rg),
    )
    assert arm.resource.resource_groups.check_existence(rg)
    res = vmc.raw("DELETE", nic, params=params)
    assert res.status_code in (200, 202, 204), res.text


# --------------------------------------------------------------------------------------------------
# 2. Virtual Machine Contributor and linked authorization on user-assigned identities


def test_vm_contributor_needs_identity_operator_to_attach_a_user_assigned_identity(rbac, arm, rg):
    identity = arm.create_identity(rg)
    vmc = rbac.principal()
    rbac.grant(vmc.object_id, ROLE_VM_CONTRIBUTOR, arm.rg_id(rg))

    # A VM with a system-assigned identity needs only VM write.
    name = support.unique_name("vm")
    created = vmc.create_vm(rg, name, identity={"type": "SystemAssigned"})
    assert created.identity.type == "SystemAssigned"
    system_principal = created.identity.principal_id
    assert support.GUID_RE.match(system_principal or ""), created.as_dict()

    # Attaching a user-assigned identity also needs .../assign/action on that identity.
    attach = cm.VirtualMachineUpdate(identity=cm.VirtualMachineIdentity(
        type="SystemAssigned, UserAssigned",
        user_assigned_identities={identity.id: cm.UserAssignedIdentitiesValue()},
    ))
    with pytest.raises(HttpResponseError) as info:
        vmc.compute.virtual_machines.begin_update(rg, name, attach)
    err = info.value
    detail = support.describe_http_error(err)
    assert err.status_code == 403, detail
    error = support.arm_error_body(err)
    assert error.get("code") == "LinkedAuthorizationFailed", detail
    message = error.get("message", "")
    assert vmc.object_id in message, detail
    assert IDENTITY_ASSIGN.lower() in message.lower(), detail
    assert identity.id.lower() in message.lower(), detail

    # The same through a PUT of a new VM: refused, and the VM is not created.
    second = support.unique_name("vm")
    with pytest.raises(HttpResponseError) as info:
        vmc.compute.virtual_machines.begin_create_or_update(
            rg, second, vmc.vm_body(identity={"type": "UserAssigned", "userAssignedIdentities": {identity.id: {}}}, computer_name=second)
        )
    assert info.value.status_code == 403, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "LinkedAuthorizationFailed", support.describe_http_error(info.value)
    assert second not in [vm.name for vm in arm.compute.virtual_machines.list(rg)]

    # The failed attempt left the VM's identities as they were.
    unchanged = arm.compute.virtual_machines.get(rg, name)
    assert unchanged.identity.type == "SystemAssigned", unchanged.identity.as_dict()
    assert unchanged.identity.principal_id == system_principal
    assert uai(unchanged) == {}

    # Managed Identity Operator on that identity: the very next request succeeds.
    rbac.grant(vmc.object_id, ROLE_MI_OPERATOR, identity.id)
    attached = support.timed_result(vmc.compute.virtual_machines.begin_update(rg, name, attach))
    assert attached.identity.type == "SystemAssigned, UserAssigned", attached.identity.as_dict()
    assert attached.identity.principal_id == system_principal
    assert list(uai(attached)) == [identity.id.lower()], attached.identity.as_dict()
    assert uai(attached)[identity.id.lower()].principal_id == identity.principal_id
    assert uai(attached)[identity.id.lower()].client_id == identity.client_id
    assert list(uai(arm.compute.virtual_machines.get(rg, name))) == [identity.id.lower()]

    # The operator role lets it use the identity, not change it.
    with pytest.raises(HttpResponseError) as info:
        vmc.msi.user_assigned_identities.update(rg, identity.name, {"tags": {"by": "vmc"}})
    support.assert_authorization_failed(info.value, vmc.object_id, IDENTITY_WRITE, identity.id)


def test_identity_operator_on_another_identity_does_not_help(rbac, arm, rg):
    wanted = arm.create_identity(rg)
    other = arm.create_identity(rg)
    vmc = rbac.principal()
    rbac.grant(vmc.object_id, ROLE_VM_CONTRIBUTOR, arm.rg_id(rg))
    rbac.grant(vmc.object_id, ROLE_MI_OPERATOR, other.id)
    name = support.unique_name("vm")
    with pytest.raises(HttpResponseError) as info:
        vmc.create_vm(rg, name, identity={"type": "UserAssigned", "userAssignedIdentities": {wanted.id: {}}})
    assert info.value.status_code == 403, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "LinkedAuthorizationFailed", support.describe_http_error(info.value)
    # With the identity it holds the operator role on, the same VM is created.
    created = vmc.create_vm(rg, name, identity={"type": "UserAssigned", "userAssignedIdentities": {other.id: {}}})
    assert list(uai(created)) == [other.id.lower()]


# --------------------------------------------------------------------------------------------------
# 3. Managed Identity Contributor


def test_identity_contributor_creates_identities_but_cannot_assign_roles(rbac, arm, rg):
    mic = rbac.principal()
    rbac.grant(mic.object_id, ROLE_MI_CONTRIBUTOR, arm.rg_id(rg))

    created = mic.create_identity(rg)
    assert support.GUID_RE.match(created.principal_id or ""), created.as_dict()
    assert mic.msi.user_assigned_identities.get(rg, created.name).client_id == created.client_id
    updated = mic.msi.user_assigned_identities.update(rg, created.name, {"tags": {"by": "mic"}})
    assert updated.tags.get("by") == "mic"

    # Cannot grant anything, not even Reader for the identity it just made.
    name = str(uuid.uuid4())
    scope = arm.rg_id(rg)
    with pytest.raises(HttpResponseError) as info:
        mic.authorization.role_assignments.create(scope, name, assignment_body(rbac, created.principal_id, ROLE_READER))
    support.assert_authorization_failed(
        info.value, mic.object_id, ASSIGNMENT_WRITE, support.role_assignment_id(scope, name)
    )
    assert list(rbac.authz.role_assignments.list_for_scope(scope, filter=f"principalId eq '{created.principal_id}'")) == []

    # It may delete what it may write (Managed Identity Contributor has .../delete).
    mic.msi.user_assigned_identities.delete(rg, created.name)
    assert created.name not in [i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)]


# --------------------------------------------------------------------------------------------------
# 4. Who may create role assignments


@pytest.mark.parametrize(
    "role",
    [ROLE_OWNER, ROLE_USER_ACCESS_ADMINISTRATOR, ROLE_RBAC_ADMINISTRATOR],
    ids=["owner", "user-access-administrator", "rbac-administrator"],
)
def test_administrators_create_and_delete_role_assignments(rbac, arm, rg, role):
    admin = rbac.principal()
    rbac.grant(admin.object_id, role, arm.rg_id(rg))
    target = rbac.principal()
    with pytest.raises(HttpResponseError):
        target.resource.resource_groups.get(rg)

    statuses = []
    created = admin.authorization.role_assignments.create(
        arm.rg_id(rg), str(uuid.uuid4()), assignment_body(rbac, target.object_id, ROLE_READER),
        cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj,
    )
    rbac.granted.append(created.id)
    assert statuses == [201]
    assert created.principal_id == target.object_id
    assert created.role_definition_id.lower() == rbac.role_id(ROLE_READER).lower()
    assert_can_read_group(target, rg)

    # Only at its own scope or below: nobody grants what they cannot grant.
    name = str(uuid.uuid4())
    sub_scope = f"/subscriptions/{arm.sub}"
    with pytest.raises(HttpResponseError) as info:
        admin.authorization.role_assignments.create(sub_scope, name, assignment_body(rbac, target.object_id, ROLE_READER))
    support.assert_authorization_failed(
        info.value, admin.object_id, ASSIGNMENT_WRITE, support.role_assignment_id(sub_scope, name)
    )

    deleted = admin.authorization.role_assignments.delete_by_id(created.id)
    assert deleted is not None and deleted.id.lower() == created.id.lower()
    with pytest.raises(HttpResponseError) as info:
        target.resource.resource_groups.get(rg)
    support.assert_authorization_failed(info.value, target.object_id, GROUP_READ, arm.rg_id(rg))


def test_contributor_cannot_create_or_delete_role_assignments(rbac, arm, rg):
    contributor = rbac.principal()
    rbac.grant(contributor.object_id, ROLE_CONTRIBUTOR, arm.rg_id(rg))
    target = rbac.principal()

    # Contributor writes resources ...
    created = contributor.create_identity(rg)
    assert created.name in [i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)]

    # ... but not role assignments (Microsoft.Authorization/*/Write is in its notActions).
    scope = arm.rg_id(rg)
    name = str(uuid.uuid4())
    with pytest.raises(HttpResponseError) as info:
        contributor.authorization.role_assignments.create(scope, name, assignment_body(rbac, target.object_id, ROLE_READER))
    support.assert_authorization_failed(
        info.value, contributor.object_id, ASSIGNMENT_WRITE, support.role_assignment_id(scope, name)
    )
    # Not even for itself, to escalate.
    name = str(uuid.uuid4())
    with pytest.raises(HttpResponseError) as info:
        contributor.authorization.role_assignments.create(scope, name, assignment_body(rbac, contributor.object_id, ROLE_OWNER))
    support.assert_authorization_failed(
        info.value, contributor.object_id, ASSIGNMENT_WRITE, support.role_assignment_id(scope, name)
    )
    # Nor delete one that exists; it can read them (Microsoft.Authorization/*/read is not excluded).
    existing = rbac.grant(target.object_id, ROLE_READER, scope)
    listed = [a.id.lower() for a in contributor.authorization.role_assignments.list_for_scope(scope)]
    assert existing.id.lower() in listed
    with pytest.raises(HttpResponseError) as info:
        contributor.authorization.role_assignments.delete_by_id(existing.id)
    support.assert_authorization_failed(info.value, contributor.object_id, ASSIGNMENT_DELETE, existing.id)
    assert_can_read_group(target, rg)


# --------------------------------------------------------------------------------------------------
# 5. Revocation is immediate


def test_removing_an_assignment_denies_the_very_next_request(rbac, arm, rg):
    reader = rbac.principal()
    for _ in range(3):
        assignment = rbac.grant(reader.object_id, ROLE_READER, arm.rg_id(rg))
        assert_can_read_group(reader, rg)
        removed = rbac.authz.role_assignments.delete(arm.rg_id(rg), assignment.name)
        assert removed is not None and removed.name == assignment.name
        with pytest.raises(HttpResponseError) as info:
            reader.resource.resource_groups.get(rg)
        support.assert_authorization_failed(info.value, reader.object_id, GROUP_READ, arm.rg_id(rg))
        assert list(reader.resource.resource_groups.list()) == []


def test_one_of_two_assignments_removed_keeps_the_other(rbac, arm, rg):
    identity = arm.create_identity(rg)
    actor = rbac.principal()
    reader = rbac.grant(actor.object_id, ROLE_READER, arm.rg_id(rg))
    contributor = rbac.grant(actor.object_id, ROLE_MI_CONTRIBUTOR, identity.id)
    actor.msi.user_assigned_identities.update(rg, identity.name, {"tags": {"n": "1"}})

    rbac.revoke(contributor.id)
    with pytest.raises(HttpResponseError) as info:
        actor.msi.user_assigned_identities.update(rg, identity.name, {"tags": {"n": "2"}})
    support.assert_authorization_failed(info.value, actor.object_id, IDENTITY_WRITE, identity.id)
    assert actor.msi.user_assigned_identities.get(rg, identity.name).tags == {"n": "1"}

    rbac.revoke(reader.id)
    with pytest.raises(HttpResponseError) as info:
        actor.msi.user_assigned_identities.get(rg, identity.name)
    support.assert_authorization_failed(
        info.value, actor.object_id, "Microsoft.ManagedIdentity/userAssignedIdentities/read", identity.id
    )


# --------------------------------------------------------------------------------------------------
# 6. Custom roles


def custom_role(rbac, arm, name: str, actions: list, not_actions: list, scopes: list):
    role_guid = str(uuid.uuid4())
    statuses = []
    created = rbac.authz.role_definitions.create_or_update(
        f"/subscriptions/{arm.sub}",
        role_guid,
        {
            "properties": {
                "roleName": name,
                "description": "pytest custom role",
                "type": "CustomRole",
                "permissions": [{"actions": actions, "notActions": not_actions, "dataActions": [], "notDataActions": []}],
                "assignableScopes": scopes,
            }
        },
        cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj,
    )
    assert statuses == [201]  # azure-mgmt-authorization accepts only 201 for this PUT
    return role_guid, created


def test_custom_role_with_not_actions_denies_exactly_those(rbac, arm, rg):
    role_name = support.unique_name("py-identity-keeper")
    role_guid, created = custom_role(
        rbac, arm, role_name,
        actions=["Microsoft.ManagedIdentity/userAssignedIdentities/*", GROUP_READ],
        not_actions=[IDENTITY_DELETE],
        scopes=[arm.rg_id(rg)],
    )
    try:
        assert created.name == role_guid
        assert created.role_name == role_name
        assert created.role_type == "CustomRole"
        assert created.permissions[0].actions == ["Microsoft.ManagedIdentity/userAssignedIdentities/*", GROUP_READ]
        assert created.permissions[0].not_actions == [IDENTITY_DELETE]
        assert [s.lower() for s in created.assignable_scopes] == [arm.rg_id(rg).lower()]
        got = rbac.authz.role_definitions.get(f"/subscriptions/{arm.sub}", role_guid)
        assert (got.role_name, got.role_type) == (role_name, "CustomRole")
        found = list(rbac.authz.role_definitions.list(f"/subscriptions/{arm.sub}", filter=f"roleName eq '{role_name}'"))
        assert [d.name for d in found] == [role_guid]

        keeper = rbac.principal()
        assignment = rbac.grant(keeper.object_id, role_guid, arm.rg_id(rg))
        made = keeper.create_identity(rg)
        assert keeper.msi.user_assigned_identities.get(rg, made.name).principal_id == made.principal_id
        patched = keeper.msi.user_assigned_identities.update(rg, made.name, {"tags": {"k": "v"}})
        assert patched.tags == {"k": "v"}
        assert_can_read_group(keeper, rg)

        with pytest.raises(HttpResponseError) as info:
            keeper.msi.user_assigned_identities.delete(rg, made.name)
        support.assert_authorization_failed(info.value, keeper.object_id, IDENTITY_DELETE, made.id)
        assert arm.msi.user_assigned_identities.get(rg, made.name).principal_id == made.principal_id
        # Nothing outside its actions either.
        with pytest.raises(HttpResponseError) as info:
            keeper.resource.resource_groups.create_or_update(rg, {"location": "westus"})
        support.assert_authorization_failed(info.value, keeper.object_id, GROUP_WRITE, arm.rg_id(rg))
        rbac.revoke(assignment.id)
    finally:
        rbac.cleanup()  # assignments first: Azure refuses to delete a role that is still assigned
        try:
            rbac.authz.role_definitions.delete(f"/subscriptions/{arm.sub}", role_guid)
        except HttpResponseError:
            pass


def test_custom_role_actions_match_case_insensitively_with_wildcards(rbac, arm, rg):
    identity = arm.create_identity(rg)
    role_guid, _ = custom_role(
        rbac, arm, support.unique_name("py-case"),
        actions=["microsoft.resources/SUBSCRIPTIONS/resourcegroups/READ", "Microsoft.ManagedIdentity/*/read"],
        not_actions=[],
        scopes=[f"/subscriptions/{arm.sub}"],
    )
    try:
        actor = rbac.principal()
        rbac.grant(actor.object_id, role_guid, arm.rg_id(rg))
        assert_can_read_group(actor, rg)
        assert actor.msi.user_assigned_identities.get(rg, identity.name).client_id == identity.client_id
        name = support.unique_name("pyid")
        with pytest.raises(HttpResponseError) as info:
            actor.create_identity(rg, name)
        support.assert_authorization_failed(info.value, actor.object_id, IDENTITY_WRITE, arm.identity_id(rg, name))
    finally:
        rbac.cleanup()
        try:
            rbac.authz.role_definitions.delete(f"/subscriptions/{arm.sub}", role_guid)
        except HttpResponseError:
            pass


def test_custom_role_lifecycle(rbac, arm):
    role_name = support.unique_name("py-lifecycle")
    role_guid, created = custom_role(
        rbac, arm, role_name, actions=[GROUP_READ], not_actions=[], scopes=[f"/subscriptions/{arm.sub}"]
    )
    rd = rbac.authz.role_definitions
    sub_scope = f"/subscriptions/{arm.sub}"
    assert created.id.lower() == support.role_definition_id(arm.sub, role_guid).lower()
    assert created.type == "Microsoft.Authorization/roleDefinitions"
    # Listed among custom roles, not among built-in ones.
    custom = {d.name for d in rd.list(sub_scope, filter="type eq 'CustomRole'")}
    assert role_guid in custom
    builtin = {d.name for d in rd.list(sub_scope, filter="type eq 'BuiltInRole'")}
    assert role_guid not in builtin

    # Updating it is another PUT (201 again, as azure-mgmt-authorization requires).
    statuses = []
    updated = rd.create_or_update(
        sub_scope, role_guid,
        {"properties": {"roleName": role_name, "type": "CustomRole", "permissions": [{"actions": ["*/read"], "notActions": []}],
                        "assignableScopes": [sub_scope]}},
        cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj,
    )
    assert statuses == [201]
    assert updated.permissions[0].actions == ["*/read"]
    assert rd.get(sub_scope, role_guid).permissions[0].actions == ["*/read"]

    deleted = rd.delete(sub_scope, role_guid)
    assert deleted is None or deleted.name == role_guid
    with pytest.raises(HttpResponseError) as info:
        rd.get(sub_scope, role_guid)
    assert info.value.status_code == 404, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "RoleDefinitionDoesNotExist", support.describe_http_error(info.value)
    assert role_guid not in {d.name for d in rd.list(sub_scope, filter="type eq 'CustomRole'")}


def test_changing_a_custom_role_applies_to_the_next_request(rbac, arm, rg):
    sub_scope = f"/subscriptions/{arm.sub}"
    role_name = support.unique_name("py-changing")
    role_guid, _ = custom_role(rbac, arm, role_name, actions=[GROUP_READ], not_actions=[], scopes=[sub_scope])
    try:
        actor = rbac.principal()
        assignment = rbac.grant(actor.object_id, role_guid, arm.rg_id(rg))
        assert_can_read_group(actor, rg)

        # The definition loses the action: the very next request is denied.
        rbac.authz.role_definitions.create_or_update(
            sub_scope, role_guid,
            {"properties": {"roleName": role_name, "type": "CustomRole",
                            "permissions": [{"actions": ["Microsoft.ManagedIdentity/userAssignedIdentities/read"], "notActions": []}],
                            "assignableScopes": [sub_scope]}},
        )
        with pytest.raises(HttpResponseError) as info:
            actor.resource.resource_groups.get(rg)
        support.assert_authorization_failed(info.value, actor.object_id, GROUP_READ, arm.rg_id(rg))

        # ... and regains it (through a notActions-free wildcard): allowed at once.
        rbac.authz.role_definitions.create_or_update(
            sub_scope, role_guid,
            {"properties": {"roleName": role_name, "type": "CustomRole",
                            "permissions": [{"actions": ["Microsoft.Resources/subscriptions/resourceGroups/*"], "notActions": []}],
                            "assignableScopes": [sub_scope]}},
        )
        assert_can_read_group(actor, rg)

        # A role still assigned cannot be deleted (Azure: remove its assignments first).
        with pytest.raises(HttpResponseError) as info:
            rbac.authz.role_definitions.delete(sub_scope, role_guid)
        assert 400 <= info.value.status_code < 500, support.describe_http_error(info.value)
        assert rbac.authz.role_definitions.get(sub_scope, role_guid).role_name == role_name
        assert_can_read_group(actor, rg)
        rbac.revoke(assignment.id)
    finally:
        rbac.cleanup()
        try:
            rbac.authz.role_definitions.delete(sub_scope, role_guid)
        except HttpResponseError:
            pass


def test_built_in_roles_cannot_be_changed_or_deleted(server_factory, monkeypatch):
    # A server of its own: a server that wrongly accepted this would break every other test.
    srv = server_factory.start()
    support.use_ca(monkeypatch, srv.ca_cert_path)
    authz = support.authorization_client(srv, support.arm_credential(srv))
    sub_scope = f"/subscriptions/{srv.subscription_id}"
    with pytest.raises(HttpResponseError) as info:
        authz.role_definitions.delete(sub_scope, ROLE_READER)
    assert 400 <= info.value.status_code < 500, support.describe_http_error(info.value)
    with pytest.raises(HttpResponseError) as info:
        authz.role_definitions.create_or_update(
            sub_scope, ROLE_READER,
            {"properties": {"roleName": "Reader", "type": "CustomRole", "permissions": [{"actions": ["*"]}], "assignableScopes": [sub_scope]}},
        )
    assert 400 <= info.value.status_code < 500, support.describe_http_error(info.value)
    reader = authz.role_definitions.get(sub_scope, ROLE_READER)
    assert reader.role_type == "BuiltInRole"
    assert reader.permissions[0].actions == ["*/read"]


# --------------------------------------------------------------------------------------------------
# 9. Seed 002, control-plane half: the identity's principal gets Reader on the group


def test_seed_002_reader_for_a_user_assigned_identity(rbac, arm, rg):
    identity = arm.create_identity(rg, "ID1")
    scope = arm.rg_id(rg)
    statuses = []
    created = rbac.authz.role_assignments.create(
        scope, str(uuid.uuid4()), assignment_body(rbac, identity.principal_id, ROLE_READER),
        cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj,
    )
    rbac.granted.append(created.id)
    assert statuses == [201]
    assert created.id.lower() == support.role_assignment_id(scope, created.name).lower()
    assert created.type == "Microsoft.Authorization/roleAssignments"
    assert created.scope.lower() == scope.lower()
    assert created.principal_id == identity.principal_id
    assert created.principal_type == "ServicePrincipal"
    assert created.role_definition_id.lower() == rbac.role_id(ROLE_READER).lower()

    listed = list(rbac.authz.role_assignments.list_for_scope(scope, filter=f"principalId eq '{identity.principal_id}'"))
    assert [a.name for a in listed] == [created.name]
    assert listed[0].principal_type == "ServicePrincipal"
    assert listed[0].role_definition_id.lower() == rbac.role_id(ROLE_READER).lower()
    assert listed[0].scope.lower() == scope.lower()
    # The trailing slash of the seed's `-Scope ".../resourcegroups/myResourceGroupVM/"` names the same scope.
    again = list(rbac.authz.role_assignments.list_for_resource_group(rg, filter=f"principalId eq '{identity.principal_id}'"))
    assert [a.name for a in again] == [created.name]


def test_bootstrap_principals_are_owners_of_the_subscription(rbac, arm):
    sub_scope = f"/subscriptions/{arm.sub}"
    oid = support.unverified_claims(arm.token())["oid"]
    mine = list(rbac.authz.role_assignments.list_for_subscription(filter=f"principalId eq '{oid}'"))
    owners = [a for a in mine if a.role_definition_id.lower().endswith(ROLE_OWNER) and a.scope.lower() == sub_scope.lower()]
    assert len(owners) == 1, [a.as_dict() for a in mine]
    assert owners[0].principal_type == "ServicePrincipal"
    # And the admin user, through its own ROPC token.
    from azure.identity import UsernamePasswordCredential

    user = UsernamePasswordCredential(
        support.AZ_CLI_CLIENT_ID, arm.server.admin_username, arm.server.admin_password,
        tenant_id=arm.server.tenant_id, authority=arm.server.url, disable_instance_discovery=True,
    )
    user_oid = support.unverified_claims(user.get_token(support.ARM_SCOPE).token)["oid"]
    theirs = list(rbac.authz.role_assignments.list_for_subscription(filter=f"principalId eq '{user_oid}'"))
    user_owner = [a for a in theirs if a.role_definition_id.lower().endswith(ROLE_OWNER) and a.scope.lower() == sub_scope.lower()]
    assert len(user_owner) == 1, [a.as_dict() for a in theirs]
    assert user_owner[0].principal_type == "User"
    admin_clients = support.clients_as(arm.server, user)
    name = support.unique_name("pyrg")
    admin_clients.create_group(name)
    admin_clients.delete_group(name)


# --------------------------------------------------------------------------------------------------
# The decision index is rebuilt from the store at start


def test_assignments_survive_a_restart(server_factory, monkeypatch):
    srv = server_factory.start()
    support.use_ca(monkeypatch, srv.ca_cert_path)
    kit = support.RbacKit(srv)
    rg = kit.admin.create_group().name
    rg_id = kit.admin.rg_id(rg)
    kept = support.create_service_principal(srv, admin_credential=kit.admin.credential)
    revoked = support.create_service_principal(srv, admin_credential=kit.admin.credential)
    kit.grant(kept.object_id, ROLE_READER, rg_id)
    kit.revoke(kit.grant(revoked.object_id, ROLE_READER, rg_id).id)
    data_dir, database_url = srv.data_dir, srv.database_url
    server_factory.stop(srv)

    again = server_factory.start(data_dir=data_dir, database_url=database_url)
    support.use_ca(monkeypatch, again.ca_cert_path)
    kept_clients = support.clients_as(again, support.secret_credential(again, kept.app_id, kept.secret), kept.object_id)
    assert_can_read_group(kept_clients, rg)
    revoked_clients = support.clients_as(again, support.secret_credential(again, revoked.app_id, revoked.secret), revoked.object_id)
    with pytest.raises(HttpResponseError) as info:
        revoked_clients.resource.resource_groups.get(rg)
    support.assert_authorization_failed(info.value, revoked.object_id, GROUP_READ, rg_id)
    # The bootstrap SP is still Owner.
    admin = support.arm_clients(again)
    name = support.unique_name("pyid")
    assert admin.create_identity(rg, name).name == name
