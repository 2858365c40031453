"""The Microsoft.Authorization API itself (issue 5): role assignment and role definition shapes,
errors and list filters, through azure-mgmt-authorization 4.0 (api-version 2022-04-01) and raw
requests where the wire matters. The bootstrap SP (Owner of the subscription) makes the calls.
"""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import HttpResponseError

import support
from support import ARM_AUTHORIZATION_API, BUILTIN_ROLES, ROLE_MI_OPERATOR, ROLE_OWNER, ROLE_READER

ASSIGNMENT_PROPERTIES = {
    "roleDefinitionId",
    "principalId",
    "principalType",
    "scope",
    "condition",
    "conditionVersion",
    "description",
    "createdOn",
    "updatedOn",
    "createdBy",
    "updatedBy",
    "delegatedManagedIdentityResourceId",
}


def body_for(rbac, principal_id: str, role_guid: str, principal_type: str | None = "ServicePrincipal") -> dict:
    properties = {"roleDefinitionId": rbac.role_id(role_guid), "principalId": principal_id}
    if principal_type is not None:
        properties["principalType"] = principal_type
    return {"properties": properties}


def put_raw(arm, scope: str, name: str, body: dict):
    return arm.raw(
        "PUT", support.role_assignment_id(scope, name), params={"api-version": ARM_AUTHORIZATION_API}, json=body
    )


def names(assignments) -> set:
    return {a.name for a in assignments}


# --------------------------------------------------------------------------------------------------
# role assignments: shapes


def test_role_assignment_wire_shape_get_and_delete(rbac, arm, rg):
    target = rbac.principal()
    scope = arm.rg_id(rg)
    name = str(uuid.uuid4())
    res = put_raw(arm, scope, name, body_for(rbac, target.object_id, ROLE_READER))
    assert res.status_code == 201, res.text
    assert res.headers.get("content-type", "").startswith("application/json")
    rbac.granted.append(support.role_assignment_id(scope, name))
    created = res.json()
    assert created["id"].lower() == support.role_assignment_id(scope, name).lower(), created
    assert created["name"] == name
    assert created["type"] == "Microsoft.Authorization/roleAssignments"
    props = created["properties"]
    assert ASSIGNMENT_PROPERTIES <= set(props), sorted(props)
    assert props["roleDefinitionId"].lower() == rbac.role_id(ROLE_READER).lower()
    assert props["principalId"] == target.object_id
    assert props["principalType"] == "ServicePrincipal"
    assert props["scope"].lower() == scope.lower()
    assert props["condition"] is None and props["conditionVersion"] is None
    admin_oid = support.unverified_claims(arm.token())["oid"]
    assert props["updatedBy"] == admin_oid, props
    assert props["createdBy"] in (None, admin_oid), props
    assert props["createdOn"] and props["updatedOn"], props

    # GET by scope+name and by id, with the SDK; both the same assignment.
    authz = rbac.authz.role_assignments
    got = authz.get(scope, name)
    by_id = authz.get_by_id(created["id"])
    for one in (got, by_id):
        assert one.id.lower() == created["id"].lower()
        assert one.principal_id == target.object_id
        assert one.principal_type == "ServicePrincipal"
        assert one.scope.lower() == scope.lower()
        assert one.role_definition_id.lower() == rbac.role_id(ROLE_READER).lower()
        assert one.created_on is not None

    # Re-PUT of the same name with the same properties is idempotent.
    again = put_raw(arm, scope, name, body_for(rbac, target.object_id, ROLE_READER))
    assert again.status_code in (200, 201), again.text
    assert again.json()["id"].lower() == created["id"].lower()
    assert [a.name for a in authz.list_for_scope(scope, filter=f"principalId eq '{target.object_id}'")] == [name]

    # DELETE answers 200 with the assignment, then 204 once it is gone.
    statuses = []
    deleted = authz.delete_by_id(
        created["id"], cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj
    )
    assert statuses == [200]
    assert deleted.name == name and deleted.principal_id == target.object_id
    assert authz.delete(scope, name, cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj) is None
    assert statuses == [200, 204]
    with pytest.raises(HttpResponseError) as info:
        authz.get(scope, name)
    assert info.value.status_code == 404, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "RoleAssignmentNotFound", support.describe_http_error(info.value)
    with pytest.raises(HttpResponseError) as info:
        authz.get_by_id(created["id"])
    assert info.value.status_code == 404, support.describe_http_error(info.value)


def test_role_assignments_at_subscription_group_and_resource_scope(rbac, arm, rg):
    identity = arm.create_identity(rg)
    target = rbac.principal()
    scopes = [f"/subscriptions/{arm.sub}", arm.rg_id(rg), identity.id]
    made = []
    for scope in scopes:
        assignment = rbac.grant(target.object_id, ROLE_READER, scope)
        assert assignment.scope.lower() == scope.lower()
        assert assignment.id.lower().startswith(scope.lower() + "/providers/microsoft.authorization/roleassignments/")
        made.append(assignment)
    listed = {a.name: a for a in rbac.authz.role_assignments.list_for_subscription(filter=f"principalId eq '{target.object_id}'")}
    assert set(listed) == {a.name for a in made}
    assert {listed[a.name].scope.lower() for a in made} == {s.lower() for s in scopes}
    for assignment in made:
        rbac.revoke(assignment.id)
    assert list(rbac.authz.role_assignments.list_for_subscription(filter=f"principalId eq '{target.object_id}'")) == []


def test_put_without_principal_type_is_accepted(rbac, arm, rg):
    """`az vm identity assign --role` sends only roleDefinitionId and principalId."""
    target = rbac.principal()
    scope = arm.rg_id(rg)
    name = str(uuid.uuid4())
    res = put_raw(arm, scope, name, body_for(rbac, target.object_id, ROLE_READER, principal_type=None))
    assert res.status_code == 201, res.text
    rbac.granted.append(res.json()["id"])
    assert res.json()["properties"]["principalId"] == target.object_id
    # The directory knows what the principal is.
    assert res.json()["properties"]["principalType"] == "ServicePrincipal", res.json()


# --------------------------------------------------------------------------------------------------
# role assignments: errors


def test_unknown_principal_is_refused(rbac, arm, rg):
    ghost = str(uuid.uuid4())
    scope = arm.rg_id(rg)
    with pytest.raises(HttpResponseError) as info:
        rbac.authz.role_assignments.create(scope, str(uuid.uuid4()), body_for(rbac, ghost, ROLE_READER))
    err = info.value
    detail = support.describe_http_error(err)
    assert err.status_code == 400, detail
    assert support.arm_error_code(err) == "PrincipalNotFound", detail
    message = support.arm_error_body(err).get("message", "")
    # az retries a role assignment while the message says the principal " does not exist in the directory ".
    # Azure names the principal without dashes: "Principal 0b1e…c2 does not exist in the directory {tenant}."
    assert ghost.replace("-", "") in message.replace("-", ""), detail
    assert f" does not exist in the directory {arm.server.tenant_id}" in message, detail
    assert list(rbac.authz.role_assignments.list_for_scope(scope, filter=f"principalId eq '{ghost}'")) == []


def test_unknown_role_is_refused(rbac, arm, rg):
    target = rbac.principal()
    with pytest.raises(HttpResponseError) as info:
        rbac.authz.role_assignments.create(arm.rg_id(rg), str(uuid.uuid4()), body_for(rbac, target.object_id, str(uuid.uuid4())))
    err = info.value
    assert err.status_code in (400, 404), support.describe_http_error(err)
    assert support.arm_error_code(err) == "RoleDefinitionDoesNotExist", support.describe_http_error(err)


def test_duplicate_assignment_under_another_name_conflicts(rbac, arm, rg):
    target = rbac.principal()
    scope = arm.rg_id(rg)
    first = rbac.grant(target.object_id, ROLE_READER, scope)
    second_name = str(uuid.uuid4())
    res = put_raw(arm, scope, second_name, body_for(rbac, target.object_id, ROLE_READER))
    error = support.assert_arm_error(res, 409, "RoleAssignmentExists")
    assert first.name.replace("-", "").lower() in error["message"].lower(), error
    # The SDK surfaces it as a 409 too, and nothing new is stored.
    with pytest.raises(HttpResponseError) as info:
        rbac.authz.role_assignments.create(scope, second_name, body_for(rbac, target.object_id, ROLE_READER))
    assert info.value.status_code == 409, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "RoleAssignmentExists"
    assert names(rbac.authz.role_assignments.list_for_scope(scope, filter=f"principalId eq '{target.object_id}'")) == {first.name}
    # Another role for the same principal at the same scope is a different assignment.
    other = rbac.grant(target.object_id, ROLE_MI_OPERATOR, scope)
    assert names(rbac.authz.role_assignments.list_for_scope(scope, filter=f"principalId eq '{target.object_id}'")) == {first.name, other.name}


def test_principal_type_must_match_the_principal(rbac, arm, rg):
    """Azure: 400 UnmatchedPrincipalType ("The PrincipalId '…' has type 'ServicePrincipal' , which is
    different from specified PrincipalType 'User'."). Note that azure-mgmt-authorization 4.0's
    RoleAssignmentCreateParameters model defaults principal_type to 'User' when it is not given."""
    target = rbac.principal()
    res = put_raw(arm, arm.rg_id(rg), str(uuid.uuid4()), body_for(rbac, target.object_id, ROLE_READER, principal_type="User"))
    if res.status_code in (200, 201):
        rbac.granted.append(res.json()["id"])  # a wrongly accepted one is still cleaned up
    error = support.assert_arm_error(res, 400, "UnmatchedPrincipalType")
    assert target.object_id in error["message"], error
    assert list(rbac.authz.role_assignments.list_for_scope(arm.rg_id(rg), filter=f"principalId eq '{target.object_id}'")) == []


@pytest.mark.parametrize("bad_name", ["not-a-guid", "12345", "8e3af657a8ff443ca75c2fe8c4bcb635x"], ids=["words", "digits", "long-hex"])
def test_assignment_name_must_be_a_guid(rbac, arm, rg, bad_name):
    target = rbac.principal()
    res = put_raw(arm, arm.rg_id(rg), bad_name, body_for(rbac, target.object_id, ROLE_READER))
    support.assert_arm_error(res, 400, "InvalidRoleAssignmentId")
    assert list(rbac.authz.role_assignments.list_for_scope(arm.rg_id(rg), filter=f"principalId eq '{target.object_id}'")) == []


def test_authorization_api_needs_a_token(arm, rg):
    res = arm.raw(
        "GET",
        f"{arm.rg_id(rg)}/providers/Microsoft.Authorization/roleAssignments",
        token=None,
        params={"api-version": ARM_AUTHORIZATION_API},
    )
    support.assert_arm_error(res, 401, "AuthenticationFailed")


# --------------------------------------------------------------------------------------------------
# role assignments: lists and filters


def test_list_filters(rbac, arm, rg):
    identity = arm.create_identity(rg)
    other_rg = arm.create_group().name
    try:
        target = rbac.principal()
        bystander = rbac.principal()
        at_group = rbac.grant(target.object_id, ROLE_READER, arm.rg_id(rg))
        at_identity = rbac.grant(target.object_id, ROLE_MI_OPERATOR, identity.id)
        other_at_group = rbac.grant(bystander.object_id, ROLE_READER, arm.rg_id(rg))
        elsewhere = rbac.grant(bystander.object_id, ROLE_READER, arm.rg_id(other_rg))
        ra = rbac.authz.role_assignments
        scope = arm.rg_id(rg)
        sub_scope = f"/subscriptions/{arm.sub}"
        admin_oid = support.unverified_claims(arm.token())["oid"]

        # No filter: at, above and below the scope.
        unfiltered = {a.name: a for a in ra.list_for_scope(scope)}
        assert {at_group.name, at_identity.name, other_at_group.name} <= set(unfiltered)
        assert elsewhere.name not in unfiltered
        assert any(a.principal_id == admin_oid and a.scope.lower() == sub_scope.lower() for a in unfiltered.values())
        assert {at_group.name, at_identity.name, other_at_group.name} <= names(ra.list_for_resource_group(rg))

        # atScope(): at the scope and above, not below.
        at_scope = {a.name: a for a in ra.list_for_scope(scope, filter="atScope()")}
        assert {at_group.name, other_at_group.name} <= set(at_scope)
        assert at_identity.name not in at_scope and elsewhere.name not in at_scope
        for assignment in at_scope.values():
            assert assignment.scope.lower() in (scope.lower(), sub_scope.lower(), "/"), assignment.as_dict()
        assert any(a.principal_id == admin_oid and a.role_definition_id.lower().endswith(ROLE_OWNER) for a in at_scope.values())

        # principalId eq: that principal's assignments only (at, above and below the scope).
        assert names(ra.list_for_scope(scope, filter=f"principalId eq '{target.object_id}'")) == {at_group.name, at_identity.name}
        assert names(ra.list_for_subscription(filter=f"principalId eq '{target.object_id}'")) == {at_group.name, at_identity.name}
        assert names(ra.list_for_subscription(filter=f"principalId eq '{bystander.object_id}'")) == {other_at_group.name, elsewhere.name}

        # assignedTo(): the principal's assignments (it belongs to no group).
        assert names(ra.list_for_scope(scope, filter=f"assignedTo('{target.object_id}')")) == {at_group.name, at_identity.name}
        assert names(ra.list_for_subscription(filter=f"assignedTo('{bystander.object_id}')")) == {other_at_group.name, elsewhere.name}
        # ... combined with atScope().
        assert names(ra.list_for_scope(scope, filter=f"atScope() and assignedTo('{target.object_id}')")) == {at_group.name}

        # At the resource: its own and the inherited ones.
        on_identity = names(ra.list_for_resource(rg, "Microsoft.ManagedIdentity", "userAssignedIdentities", identity.name))
        assert {at_identity.name, at_group.name, other_at_group.name} <= on_identity
        assert elsewhere.name not in on_identity
        assert names(ra.list_for_scope(identity.id, filter="atScope()")) >= {at_identity.name, at_group.name}

        # Another group sees none of this group's assignments.
        assert names(ra.list_for_resource_group(other_rg)) & {at_group.name, at_identity.name, other_at_group.name} == set()

        # The subscription list holds them all.
        assert {at_group.name, at_identity.name, other_at_group.name, elsewhere.name} <= names(ra.list_for_subscription())
    finally:
        arm.delete_group(other_rg)


def test_role_assignment_list_wire_shape(rbac, arm, rg):
    target = rbac.principal()
    assignment = rbac.grant(target.object_id, ROLE_READER, arm.rg_id(rg))
    # As az and the SDK send it: an unencoded filter (requests turns the spaces into %20).
    res = arm.raw(
        "GET",
        f"{arm.rg_id(rg)}/providers/Microsoft.Authorization/roleAssignments"
        f"?$filter=principalId eq '{target.object_id}'&api-version={ARM_AUTHORIZATION_API}",
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert isinstance(body.get("value"), list), body
    assert [a["name"] for a in body["value"]] == [assignment.name]
    assert ASSIGNMENT_PROPERTIES <= set(body["value"][0]["properties"])


# --------------------------------------------------------------------------------------------------
# role definitions


@pytest.mark.parametrize("typed", ["Reader", "reader", "READER"])
def test_role_definition_by_name(rbac, arm, rg, typed):
    sub_scope = f"/subscriptions/{arm.sub}"
    for scope in (sub_scope, arm.rg_id(rg)):
        found = list(rbac.authz.role_definitions.list(scope, filter=f"roleName eq '{typed}'"))
        assert [d.name for d in found] == [ROLE_READER], [d.as_dict() for d in found]
        reader = found[0]
        assert reader.role_name == "Reader"
        assert reader.role_type == "BuiltInRole"
        assert reader.type == "Microsoft.Authorization/roleDefinitions"
        assert reader.id.lower() == support.role_definition_id(arm.sub, ROLE_READER).lower()


def test_role_definition_by_name_as_az_asks(arm):
    """az vm create --assign-identity --role: api-version 2022-05-01-preview, filter with %20."""
    res = arm.raw(
        "GET",
        f"/subscriptions/{arm.sub}/providers/Microsoft.Authorization/roleDefinitions"
        "?$filter=roleName%20eq%20%27contributor%27&api-version=2022-05-01-preview",
    )
    assert res.status_code == 200, res.text
    value = res.json()["value"]
    assert [d["name"] for d in value] == [support.ROLE_CONTRIBUTOR], value
    props = value[0]["properties"]
    assert props["roleName"] == "Contributor"
    assert props["type"] == "BuiltInRole"
    assert {"roleName", "description", "type", "permissions", "assignableScopes"} <= set(props), sorted(props)


def test_unknown_role_name_lists_nothing(rbac, arm):
    assert list(rbac.authz.role_definitions.list(f"/subscriptions/{arm.sub}", filter="roleName eq 'No Such Role'")) == []


def test_built_in_role_definitions_listed(rbac, arm):
    sub_scope = f"/subscriptions/{arm.sub}"
    builtin = {d.name: d for d in rbac.authz.role_definitions.list(sub_scope, filter="type eq 'BuiltInRole'")}
    for role_name, guid in BUILTIN_ROLES.items():
        assert guid in builtin, f"{role_name} {guid} missing from {sorted(builtin)}"
        assert builtin[guid].role_name == role_name
    assert {d.role_type for d in builtin.values()} == {"BuiltInRole"}
    everything = {d.name for d in rbac.authz.role_definitions.list(sub_scope)}
    assert set(BUILTIN_ROLES.values()) <= everything


EXPECTED_PERMISSIONS = {
    "Owner": (["*"], []),
    "Reader": (["*/read"], []),
    "Contributor": (["*"], ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write", "Microsoft.Authorization/elevateAccess/Action"]),
    "User Access Administrator": (["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"], []),
    "Role Based Access Control Administrator": (
        ["Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete", "*/read"], []
    ),
    "Virtual Machine Contributor": (["Microsoft.Compute/virtualMachines/*", "Microsoft.Authorization/*/read"], []),
    "Managed Identity Contributor": (
        [
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/write",
            "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
        ],
        [],
    ),
    "Managed Identity Operator": (
        ["Microsoft.ManagedIdentity/userAssignedIdentities/*/read", "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action"],
        [],
    ),
}


@pytest.mark.parametrize("role_name", list(BUILTIN_ROLES))
def test_built_in_role_definition_get(rbac, arm, role_name):
    guid = BUILTIN_ROLES[role_name]
    sub_scope = f"/subscriptions/{arm.sub}"
    got = rbac.authz.role_definitions.get(sub_scope, guid)
    assert got.id.lower() == support.role_definition_id(arm.sub, guid).lower()
    assert got.name == guid
    assert got.type == "Microsoft.Authorization/roleDefinitions"
    assert got.role_name == role_name
    assert got.role_type == "BuiltInRole"
    assert got.assignable_scopes == ["/"]
    assert got.description
    assert len(got.permissions) == 1
    actions, not_actions = EXPECTED_PERMISSIONS[role_name]
    assert set(actions) <= set(got.permissions[0].actions), got.permissions[0].as_dict()
    assert set(not_actions) <= set(got.permissions[0].not_actions or []), got.permissions[0].as_dict()
    if role_name in ("Owner", "Reader"):
        assert got.permissions[0].actions == actions and not got.permissions[0].not_actions
    assert not got.permissions[0].data_actions and not got.permissions[0].not_data_actions
    # By id, as a role assignment references it.
    assert rbac.authz.role_definitions.get_by_id(got.id).role_name == role_name


def test_unknown_role_definition_is_not_found(rbac, arm):
    with pytest.raises(HttpResponseError) as info:
        rbac.authz.role_definitions.get(f"/subscriptions/{arm.sub}", str(uuid.uuid4()))
    assert info.value.status_code == 404, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "RoleDefinitionDoesNotExist", support.describe_http_error(info.value)


def test_scope_as_typed_lower_case_and_trailing_slash(rbac, arm, rg):
    """az sends the scope as typed: seed 002's `/subscriptions/S/resourcegroups/RG/` gives
    `.../resourcegroups/RG//providers/Microsoft.Authorization/roleAssignments/{guid}`. It is the group's scope."""
    target = rbac.principal()
    typed = f"/subscriptions/{arm.sub}/resourcegroups/{rg}/"
    name = str(uuid.uuid4())
    res = arm.raw(
        "PUT", f"{typed}/providers/Microsoft.Authorization/roleAssignments/{name}",
        params={"api-version": ARM_AUTHORIZATION_API}, json=body_for(rbac, target.object_id, ROLE_READER),
    )
    assert res.status_code == 201, res.text
    rbac.granted.append(support.role_assignment_id(arm.rg_id(rg), name))
    assert res.json()["properties"]["scope"].lower() == arm.rg_id(rg).lower(), res.json()
    # The same assignment under the canonical casing: a duplicate.
    dup = put_raw(arm, arm.rg_id(rg), str(uuid.uuid4()), body_for(rbac, target.object_id, ROLE_READER))
    error = support.assert_arm_error(dup, 409, "RoleAssignmentExists")
    assert name.replace("-", "") in error["message"].lower()
    # Listed at the group and enforced there.
    assert names(rbac.authz.role_assignments.list_for_resource_group(rg, filter=f"principalId eq '{target.object_id}'")) == {name}
    assert target.resource.resource_groups.get(rg).name == rg
