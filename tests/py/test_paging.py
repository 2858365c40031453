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


# --------------------------------------------------------------------------------------------------
# Deployments, role definitions, Cosmos DB


API_DEPLOY = "2024-11-01"
EMPTY_TEMPLATE = {
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    "contentVersion": "1.0.0.0",
    "resources": [],
}


def _deploy_empty(arm, scope: str, names: list[str], location: str | None = None) -> set[str]:
    """Direct PUTs of an empty template, eight at a time; the deployments' names."""
    token = arm.token()
    body = {"properties": {"mode": "Incremental", "template": EMPTY_TEMPLATE}}
    if location:
        body["location"] = location

    def put(name: str) -> str:
        res = arm.raw("PUT", f"{scope}/providers/Microsoft.Resources/deployments/{name}?api-version={API_DEPLOY}", token=token, json=body)
        assert res.status_code in (200, 201), res.text
        assert res.json()["properties"]["provisioningState"] == "Succeeded", res.text
        return res.json()["name"]

    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(put, names))


def test_deployments_page_by_top_through_the_api_and_the_sdk(server, arm, rg):
    from azure.mgmt.resource.deployments import DeploymentsMgmtClient

    created = _deploy_empty(arm, arm.rg_id(rg), [f"pgdep{i:03d}" for i in range(60)])
    assert len(created) == 60
    prefix = support.unique_name("pgsub")
    at_sub = _deploy_empty(arm, f"/subscriptions/{arm.sub}", [f"{prefix}-{i:02d}" for i in range(30)], location="westus")
    try:
        # Raw: `$top` pages (ARM's deployments lists honour it), the nextLink keeps api-version and $top.
        base = f"{arm.rg_id(rg)}/providers/Microsoft.Resources/deployments?api-version={API_DEPLOY}"
        first = arm.raw("GET", base + "&$top=25").json()
        next_query = parse_qs(urlsplit(first["nextLink"]).query)
        assert next_query["api-version"] == [API_DEPLOY] and next_query["$top"] == ["25"] and next_query["$skiptoken"]
        items, sizes = _walk(arm, base + "&$top=25")
        assert sizes == [25, 25, 10]
        names = [item["name"] for item in items]
        assert len(names) == 60 and set(names) == created
        # Without $top, ARM's page of 1000 holds them all.
        items, sizes = _walk(arm, base)
        assert sizes == [60] and {item["name"] for item in items} == created
        for query in ("&$top=0", "&$top=1001", "&$skiptoken=%%%"):
            res = arm.raw("GET", base + query)
            assert res.status_code == 400 and res.json()["error"]["code"] == "InvalidParameter", (query, res.text)

        # azure-mgmt-resource-deployments' pager: pages of 25, each deployment exactly once.
        dep = DeploymentsMgmtClient(arm.credential, arm.sub, **support.mgmt_client_kwargs(server))
        pages = [[d.name for d in page] for page in dep.deployments.list_by_resource_group(rg, top=25).by_page()]
        assert [len(page) for page in pages] == [25, 25, 10]
        listed = [name for page in pages for name in page]
        assert len(listed) == 60 and set(listed) == created
        assert sorted(d.name for d in dep.deployments.list_by_resource_group(rg)) == sorted(created)

        # Subscription scope: its own deployments only (none of the group's), each once.
        pages = [[d.name for d in page] for page in dep.deployments.list_at_subscription_scope(top=25).by_page()]
        assert all(len(page) <= 25 for page in pages) and len(pages) >= 2
        listed = [name for page in pages for name in page]
        assert len(listed) == len(set(listed)), "no deployment twice"
        assert at_sub <= set(listed)
        assert not created & set(listed), "a group's deployments are not the subscription's"
    finally:
        for name in at_sub:
            arm.raw("DELETE", f"/subscriptions/{arm.sub}/providers/Microsoft.Resources/deployments/{name}?api-version={API_DEPLOY}")


def test_custom_role_definitions_page_through_the_api_and_the_sdk(arm, rg):
    """Azure's roleDefinitions list takes no `$top`: ARM's page of 1000 and nextLink, `$top` ignored."""
    scope = arm.rg_id(rg)
    token = arm.token()
    suffix = uuid.uuid4().hex[:8]

    def put(i: int) -> str:
        guid = str(uuid.uuid4())
        res = arm.raw("PUT", f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}?api-version={API_AUTH}", token=token, json={"properties": {
            "roleName": f"Paged {suffix} {i:04d}", "assignableScopes": [scope],
            "permissions": [{"actions": ["Microsoft.Resources/subscriptions/resourceGroups/read"]}],
        }})
        assert res.status_code == 201, res.text
        return guid

    with ThreadPoolExecutor(8) as pool:
        created = set(pool.map(put, range(1010)))
    try:
        base = f"{scope}/providers/Microsoft.Authorization/roleDefinitions?api-version={API_AUTH}"
        for query in ("", "&$top=5"):
            items, sizes = _walk(arm, base + query)
            assert sizes[0] == 1000 and len(sizes) == 2, (query, sizes)
            names = [item["name"] for item in items]
            assert len(names) == len(set(names)), "no role twice"
            assert created <= set(names)
            assert {READER, "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"} <= set(names), "the built-in roles are in the merged list"
        res = arm.raw("GET", base + "&$skiptoken=%%%")
        assert res.status_code == 400 and res.json()["error"]["code"] == "InvalidParameter", res.text

        # azure-mgmt-authorization's pager follows nextLink: each role exactly once, filters too.
        client = support.authorization_client(arm.server, arm.credential)
        listed = [d.name for d in client.role_definitions.list(scope)]
        assert len(listed) == len(set(listed)) and created <= set(listed)
        custom = [d.name for d in client.role_definitions.list(scope, filter="type eq 'CustomRole'")]
        assert len(custom) == len(set(custom)) and created <= set(custom)
        named = list(client.role_definitions.list(scope, filter=f"roleName eq 'paged {suffix} 0007'"))
        assert [d.role_name for d in named] == [f"Paged {suffix} 0007"]
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda guid: arm.raw("DELETE", f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}?api-version={API_AUTH}", token=token), created))


def test_cosmos_lists_are_whole_and_bounded_by_cosmos_limits(server, arm, rg):
    """Azure's Cosmos DB lists answer whole, without nextLink (@azure/arm-cosmosdb reads one page),
    bounded by Cosmos DB's limits: 500 databases and containers per account, 100 custom SQL roles."""
    from azure.cosmos import CosmosClient, PartitionKey
    from azure.cosmos.exceptions import CosmosHttpResponseError
    from azure.mgmt.cosmosdb import CosmosDBManagementClient
    from azure.mgmt.cosmosdb import models as cdb

    cosmos = CosmosDBManagementClient(arm.credential, arm.sub, **support.mgmt_client_kwargs(server))
    name = support.unique_name("pgcos").replace("-", "")[:40]
    account = cosmos.database_accounts.begin_create_or_update(rg, name, cdb.DatabaseAccountCreateUpdateParameters(
        location="westus", locations=[cdb.Location(location_name="westus", failover_priority=0)], database_account_offer_type="Standard",
    )).result()
    api = "2024-11-15"
    token = arm.token()
    db_path = f"{account.id}/sqlDatabases"

    def put_db(i: int) -> str:
        res = arm.raw("PUT", f"{db_path}/db{i:03d}?api-version={api}", token=token, json={"properties": {"resource": {"id": f"db{i:03d}"}}})
        assert res.status_code == 200, res.text
        return f"db{i:03d}"

    with ThreadPoolExecutor(8) as pool:
        databases = set(pool.map(put_db, range(499)))
    res = arm.raw("PUT", f"{db_path}/db000/containers/c1?api-version={api}", json={"properties": {"resource": {"id": "c1", "partitionKey": {"paths": ["/pk"], "kind": "Hash"}}}})
    assert res.status_code == 200, res.text

    # The 501st database or container is refused, through ARM and through the data plane.
    res = arm.raw("PUT", f"{db_path}/one-more?api-version={api}", json={"properties": {"resource": {"id": "one-more"}}})
    assert res.status_code == 400 and res.json()["error"]["code"] == "BadRequest", res.text
    assert "500" in res.json()["error"]["message"]
    keys = cosmos.database_accounts.list_keys(rg, name)
    data = CosmosClient(account.document_endpoint, credential=keys.primary_master_key)
    with pytest.raises(CosmosHttpResponseError) as refused:
        data.get_database_client("db001").create_container("c2", partition_key=PartitionKey(path="/pk"))
    assert refused.value.status_code == 400, refused.value

    # One answer, no nextLink, whatever `$top` says; the SDK lists every database once.
    body = arm.raw("GET", f"{db_path}?api-version={api}&$top=7").json()
    assert "nextLink" not in body and {item["name"] for item in body["value"]} == databases
    listed = [d.name for d in cosmos.sql_resources.list_sql_databases(rg, name)]
    assert len(listed) == 499 and set(listed) == databases
    assert [c.name for c in cosmos.sql_resources.list_sql_containers(rg, name, "db000")] == ["c1"]
    # Deleting one frees a place.
    cosmos.sql_resources.begin_delete_sql_database(rg, name, "db498").result()
    assert put_db(498) == "db498"

    # Custom data-plane roles: 100, then refused; the list holds them and the two built-in ones.
    def put_role(i: int) -> str:
        guid = str(uuid.uuid4())
        res = arm.raw("PUT", f"{account.id}/sqlRoleDefinitions/{guid}?api-version={api}", token=token, json={"properties": {
            "roleName": f"reader {i}", "type": "CustomRole", "assignableScopes": ["/"],
            "permissions": [{"dataActions": ["Microsoft.DocumentDB/databaseAccounts/readMetadata"]}],
        }})
        return guid if res.status_code == 200 else f"refused {res.status_code} {res.text}"

    with ThreadPoolExecutor(8) as pool:
        roles = list(pool.map(put_role, range(100)))
    assert not [role for role in roles if role.startswith("refused")], roles
    refused_role = put_role(100)
    assert refused_role.startswith("refused 400 ") and "BadRequest" in refused_role, refused_role
    body = arm.raw("GET", f"{account.id}/sqlRoleDefinitions?api-version={api}&$top=3").json()
    assert "nextLink" not in body and len(body["value"]) == 102
    listed = {d.name for d in cosmos.sql_resources.list_sql_role_definitions(rg, name)}
    assert set(roles) <= listed and len(listed) == 102

    # Accounts by group and by subscription: whole lists too.
    body = arm.raw("GET", f"{arm.rg_id(rg)}/providers/Microsoft.DocumentDB/databaseAccounts?api-version={api}&$top=1").json()
    assert "nextLink" not in body and [item["name"] for item in body["value"]] == [name]
    assert name in {a.name for a in cosmos.database_accounts.list()}
