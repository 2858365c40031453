"""Issue 19: lists page as ARM does (`nextLink` with `$skiptoken`, `$top`), and every pager the
clients have follows them: azure-mgmt-msi, azure-mgmt-authorization, the openmi CLI."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest

import support

API_MSI = "2023-01-31"
API_AUTH = "2022-04-01"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def _create_identities(arm, rg: str, count: int) -> set[str]:
    token = arm.token()
    names = [f"pg{i:05d}" for i in range(count)]

    def put(name: str) -> str:
        res = arm.raw(
            "PUT",
            f"{arm.identity_id(rg, name)}?api-version={API_MSI}",
            token=token,
            json={"location": "westus"},
        )
        assert res.status_code in (200, 201), res.text
        return res.json()["id"].lower()

    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(put, names))


def _walk(arm, first_url: str) -> tuple[list[dict], list[int]]:
    """Follows nextLink by hand: every item, and the size of each page."""
    items, sizes = [], []
    url = first_url
    while url:
        res = arm.raw("GET", url.removeprefix(arm.server.url))
        assert res.status_code == 200, res.text
        body = res.json()
        items.extend(body["value"])
        sizes.append(len(body["value"]))
        url = body.get("nextLink")
    return items, sizes


def test_2500_identities_page_through_the_sdk_and_the_cli(arm, rg, tmp_path):
    created = _create_identities(arm, rg, 2500)

    # Raw: ARM's page of 1000 with a nextLink that keeps the api-version.
    first = arm.raw("GET", f"{arm.rg_id(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version={API_MSI}")
    body = first.json()
    assert len(body["value"]) == 1000
    next_query = parse_qs(urlsplit(body["nextLink"]).query)
    assert next_query["api-version"] == [API_MSI]
    assert next_query["$skiptoken"]
    items, sizes = _walk(arm, body["nextLink"])
    assert sizes == [1000, 500]

    # $top sets the page size.
    items, sizes = _walk(arm, f"{arm.rg_id(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version={API_MSI}&$top=700")
    assert sizes == [700, 700, 700, 400]
    assert len({item["id"].lower() for item in items}) == 2500

    # The SDK's pager: each identity exactly once, by group and by subscription.
    listed = [identity.id.lower() for identity in arm.msi.user_assigned_identities.list_by_resource_group(rg)]
    assert len(listed) == 2500 and set(listed) == created
    by_sub = [identity.id.lower() for identity in arm.msi.user_assigned_identities.list_by_subscription()]
    assert created <= set(by_sub) and len(by_sub) == len(set(by_sub))

    # Every resource of the group through azure-mgmt-resource's pager.
    resources = [resource.id.lower() for resource in arm.resource.resources.list_by_resource_group(rg)]
    assert len(resources) == 2500 and set(resources) == created

    # The openmi CLI follows nextLink too.
    config = tmp_path / "cli"
    support.cli_login_sp(arm.server, config)
    out = support.run_cli(["identity", "list", "-g", rg, "--query", "[].id", "-o", "json"], config).json()
    assert len(out) == 2500 and {identity.lower() for identity in out} == created


def test_bad_paging_parameters_are_refused(arm, rg):
    base = f"{arm.rg_id(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version={API_MSI}"
    for query in ("&$top=0", "&$top=1001", "&$top=x", "&$skiptoken=%%%"):
        res = arm.raw("GET", base + query)
        assert res.status_code == 400, (query, res.text)
        assert res.json()["error"]["code"] == "InvalidParameter"
        assert "$top" in res.json()["error"]["message"] or "$skiptoken" in res.json()["error"]["message"]


def _assign(arm, scope: str, principal: str, name: str | None = None) -> str:
    name = name or str(uuid.uuid4())
    res = arm.raw(
        "PUT",
        f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={API_AUTH}",
        json={"properties": {
            "roleDefinitionId": f"/subscriptions/{arm.sub}/providers/Microsoft.Authorization/roleDefinitions/{READER}",
            "principalId": principal,
            "principalType": "ServicePrincipal",
        }},
    )
    assert res.status_code == 201, res.text
    return name


def test_role_assignments_created_and_deleted_during_a_paged_listing(arm, rg, rbac):
    scope = arm.rg_id(rg)
    principals = [rbac.principal().object_id for _ in range(3)]
    # 150 assignments under the group: one role per principal and scope, so three principals on
    # each of 50 identities.
    ids = _create_identities(arm, rg, 50)
    jobs = [(identity, principal) for identity in sorted(ids) for principal in principals]
    with ThreadPoolExecutor(8) as pool:
        scopes = dict(zip(pool.map(lambda job: _assign(arm, job[0], job[1]), jobs), (job[0] for job in jobs)))
    names = set(scopes)
    assert len(names) == 150

    url = f"{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={API_AUTH}&$top=40"
    seen: list[str] = []
    res = arm.raw("GET", url)
    body = res.json()
    seen.extend(item["name"] for item in body["value"])
    # Mid-listing: one assignment deleted that the pager has not reached, one created.
    unseen = sorted(names - set(seen))
    removed = unseen[-1]
    res = arm.raw("DELETE", f"{scopes[removed]}/providers/Microsoft.Authorization/roleAssignments/{removed}?api-version={API_AUTH}")
    assert res.status_code == 200, res.text
    added = _assign(arm, scope, principals[0])
    url = body["nextLink"]
    pages = 1
    while url:
        res = arm.raw("GET", url.removeprefix(arm.server.url))
        assert res.status_code == 200, res.text
        body = res.json()
        seen.extend(item["name"] for item in body["value"])
        url = body.get("nextLink")
        pages += 1
    assert pages >= 4
    assert len(seen) == len(set(seen)), "no assignment is listed twice"
    assert removed not in seen
    # Everything that existed throughout is listed; the new one may or may not be (by its name).
    assert (names - {removed}) <= set(seen)
    # Besides those made here, only the assignments above the group (the subscription's Owners).
    inherited = {item.name for item in support.authorization_client(arm.server, arm.credential).role_assignments.list_for_scope(f"/subscriptions/{arm.sub}", filter="atScope()")}
    assert set(seen) <= names | {added} | inherited

    # The SDK's pager lists every assignment exactly once.
    client = support.authorization_client(arm.server, arm.credential)
    listed = [assignment.name for assignment in client.role_assignments.list_for_scope(scope)]
    assert len(listed) == len(set(listed))
    assert (names - {removed}) | {added} <= set(listed)
