"""Resource groups through the real azure-mgmt-resource 26 client (api-version 2025-04-01)."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

import support


def test_create_get_update_list_delete(arm):
    groups = arm.resource.resource_groups
    name = support.unique_name("pyrg")

    # PUT: 201 on create, 200 on update; the SDK accepts both, so look at the raw status too.
    statuses = []
    created = groups.create_or_update(
        name, {"location": "westus", "tags": {"env": "test"}}, cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj
    )
    assert created.id == f"/subscriptions/{arm.sub}/resourceGroups/{name}"
    assert created.name == name
    assert created.location == "westus"
    assert created.type == "Microsoft.Resources/resourceGroups"
    assert created.tags == {"env": "test"}
    assert created.properties.provisioning_state == "Succeeded"
    groups.create_or_update(
        name, {"location": "westus", "tags": {"env": "test2"}}, cls=lambda resp, obj, _: statuses.append(resp.http_response.status_code) or obj
    )
    assert statuses == [201, 200]

    got = groups.get(name)
    assert got.id == f"/subscriptions/{arm.sub}/resourceGroups/{name}"
    assert got.name == name
    assert got.location == "westus"
    assert got.tags == {"env": "test2"}
    assert got.properties.provisioning_state == "Succeeded"

    assert groups.check_existence(name) is True
    assert groups.check_existence(support.unique_name("pyrg-missing")) is False

    patched = groups.update(name, {"tags": {"owner": "py"}})
    assert patched.tags == {"owner": "py"}
    assert patched.location == "westus"
    assert groups.get(name).tags == {"owner": "py"}

    names = [g.name for g in groups.list()]
    assert name in names

    started = time.monotonic()
    support.timed_result(groups.begin_delete(name))
    assert time.monotonic() - started < support.LRO_MAX_SECONDS

    with pytest.raises(ResourceNotFoundError) as info:
        groups.get(name)
    assert support.arm_error_code(info.value) == "ResourceGroupNotFound", support.describe_http_error(info.value)
    assert groups.check_existence(name) is False
    assert name not in [g.name for g in groups.list()]


def test_group_names_are_case_insensitive(arm, rg):
    got = arm.resource.resource_groups.get(rg.upper())
    assert got.name.lower() == rg.lower()
    assert arm.resource.resource_groups.check_existence(rg.upper()) is True


def test_delete_missing_group_is_not_found(arm):
    with pytest.raises(ResourceNotFoundError) as info:
        arm.resource.resource_groups.begin_delete(support.unique_name("pyrg-missing")).result()
    assert support.arm_error_code(info.value) == "ResourceGroupNotFound", support.describe_http_error(info.value)


@pytest.mark.parametrize(
    "bad_name",
    ["ends-with-period.", "a" * 91, "has space", "slash#hash"],
    ids=["trailing-period", "91-chars", "space", "hash"],
)
def test_bad_group_names_are_refused(arm, bad_name):
    with pytest.raises(HttpResponseError) as info:
        arm.resource.resource_groups.create_or_update(bad_name, {"location": "westus"})
    err = info.value
    assert err.status_code == 400, support.describe_http_error(err)
    # Real ARM answers `InvalidResourceGroup` ("The provided resource group name '...' has these invalid
    # characters: ..."; Azure/azure-cli#14481); the other two are accepted as close enough.
    assert support.arm_error_code(err) in ("InvalidResourceGroup", "InvalidResourceGroupName", "InvalidResourceName"), (
        support.describe_http_error(err)
    )


def test_group_with_90_char_name_and_allowed_punctuation(arm):
    groups = arm.resource.resource_groups
    name = ("py_rg-(x).1" + support.unique_name("n")).ljust(90, "z")
    assert len(name) == 90
    created = groups.create_or_update(name, {"location": "eastus"})
    assert created.name == name
    support.timed_result(groups.begin_delete(name))


def test_create_without_location_is_refused(arm):
    res = arm.raw(
        "PUT",
        f"/subscriptions/{arm.sub}/resourcegroups/{support.unique_name('pyrg')}?api-version={support.ARM_RG_API}",
        json={"tags": {}},
    )
    support.assert_arm_error(res, 400, {"LocationRequired", "InvalidRequestContent", "BadRequest", "InvalidRequestFormat"})
