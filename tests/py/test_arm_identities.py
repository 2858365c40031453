"""User-assigned managed identities through the real azure-mgmt-msi 7.1 client (api-version 2024-11-30)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

import support


def test_create_get_update_list_delete(arm, rg):
    uai = arm.msi.user_assigned_identities
    name = support.unique_name("pyid")

    statuses = []
    created = uai.create_or_update(
        rg, name, {"location": "westus", "tags": {"k": "v"}},
        cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj,
    )
    assert created.id.lower() == arm.identity_id(rg, name).lower()
    assert created.name == name
    assert created.type == "Microsoft.ManagedIdentity/userAssignedIdentities"
    assert created.location == "westus"
    assert created.tags == {"k": "v"}
    assert created.tenant_id == arm.server.tenant_id
    assert support.GUID_RE.match(created.principal_id or ""), created.as_dict()
    assert support.GUID_RE.match(created.client_id or ""), created.as_dict()
    assert created.principal_id != created.client_id

    # PUT again: 200, same ids (the identity is not re-created).
    again = uai.create_or_update(
        rg, name, {"location": "westus", "tags": {"k": "v2"}},
        cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj,
    )
    assert statuses == [201, 200]
    assert (again.principal_id, again.client_id, again.tenant_id) == (created.principal_id, created.client_id, created.tenant_id)
    assert again.tags == {"k": "v2"}

    got = uai.get(rg, name)
    assert (got.id, got.name, got.location) == (created.id, name, "westus")
    assert (got.principal_id, got.client_id, got.tenant_id) == (created.principal_id, created.client_id, created.tenant_id)

    # PATCH (tags); whether tags merge or are replaced is checked in test_arm_generic.test_patch_replaces_tags.
    patched = uai.update(rg, name, {"tags": {"team": "py"}})
    assert patched.tags.get("team") == "py"
    assert (patched.principal_id, patched.client_id) == (created.principal_id, created.client_id)
    assert uai.get(rg, name).tags.get("team") == "py"

    assert name in [i.name for i in uai.list_by_resource_group(rg)]
    by_sub = {i.id.lower(): i for i in uai.list_by_subscription()}
    assert created.id.lower() in by_sub
    assert by_sub[created.id.lower()].principal_id == created.principal_id

    uai.delete(rg, name)
    with pytest.raises(ResourceNotFoundError) as info:
        uai.get(rg, name)
    assert support.arm_error_code(info.value) == "ResourceNotFound", support.describe_http_error(info.value)
    assert name not in [i.name for i in uai.list_by_resource_group(rg)]


def test_each_identity_is_its_own_service_principal(arm, rg):
    one = arm.create_identity(rg)
    two = arm.create_identity(rg)
    assert one.principal_id != two.principal_id
    assert one.client_id != two.client_id

    # The identity is a service principal of the tenant: Graph finds it by its client id (appId),
    # with the identity's principal id as object id, and it is gone once the identity is deleted.
    found = support.graph_service_principals_by_app_id(arm, one.client_id)
    assert [sp.get("id") for sp in found] == [one.principal_id], found
    # ... and by its object id, as GET /servicePrincipals/{id} and $filter=id eq '...'.
    graph = arm.token("https://graph.microsoft.com/.default")
    by_id = arm.raw("GET", f"/v1.0/servicePrincipals/{one.principal_id}", token=graph)
    assert by_id.status_code == 200, by_id.text[:300]
    assert (by_id.json()["id"], by_id.json()["appId"]) == (one.principal_id, one.client_id)
    filtered = arm.raw("GET", "/v1.0/servicePrincipals", token=graph, params={"$filter": f"id eq '{two.principal_id}'"})
    assert [sp["appId"] for sp in filtered.json()["value"]] == [two.client_id], filtered.text[:300]
    arm.msi.user_assigned_identities.delete(rg, one.name)
    assert support.graph_service_principals_by_app_id(arm, one.client_id) == []
    gone = arm.raw("GET", f"/v1.0/servicePrincipals/{one.principal_id}", token=graph)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "Request_ResourceNotFound", gone.text[:300]
    assert [sp.get("id") for sp in support.graph_service_principals_by_app_id(arm, two.client_id)] == [two.principal_id]


def test_same_name_in_two_groups_are_different_identities(arm, rg):
    other = arm.create_group().name
    try:
        a = arm.create_identity(rg, "shared-name")
        b = arm.create_identity(other, "shared-name")
        assert a.principal_id != b.principal_id
        assert a.id.lower() != b.id.lower()
    finally:
        arm.delete_group(other)


def test_identity_in_missing_group_is_refused(arm):
    with pytest.raises(HttpResponseError) as info:
        arm.create_identity(support.unique_name("pyrg-missing"), "id1")
    assert info.value.status_code == 404, support.describe_http_error(info.value)
    assert support.arm_error_code(info.value) == "ResourceGroupNotFound", support.describe_http_error(info.value)


def test_get_missing_identity(arm, rg):
    with pytest.raises(ResourceNotFoundError) as info:
        arm.msi.user_assigned_identities.get(rg, "nope-" + support.unique_name("x"))
    assert support.arm_error_code(info.value) == "ResourceNotFound", support.describe_http_error(info.value)


@pytest.mark.parametrize(
    "bad_name",
    ["ab", "-bad", "_bad", "a" * 129, "bad.name", "bad name"],
    ids=["too-short", "leading-hyphen", "leading-underscore", "129-chars", "period", "space"],
)
def test_bad_identity_names_are_refused(arm, rg, bad_name):
    with pytest.raises(HttpResponseError) as info:
        arm.create_identity(rg, bad_name)
    err = info.value
    assert err.status_code == 400, support.describe_http_error(err)
    assert support.arm_error_code(err) == "InvalidResourceName", support.describe_http_error(err)
    # Nothing half-written.
    assert bad_name not in [i.name for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)]


@pytest.mark.parametrize("good_name", ["abc", "A1_b-2", "9" + "x" * 127], ids=["3-chars", "mixed", "128-chars"])
def test_edge_identity_names_are_accepted(arm, rg, good_name):
    created = arm.create_identity(rg, good_name)
    assert created.name == good_name
    assert support.GUID_RE.match(created.principal_id or "")
