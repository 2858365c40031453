"""Issue 17, Cosmos DB for NoSQL with real clients: azure-mgmt-cosmosdb for the account, databases,
containers and data-plane role assignments; unmodified azure-cosmos inside `openmi vm run` with a
VM's managed identity (seed 001's "Grant access": Data Contributor on a container, Data Reader on
the account, nobody else), account keys until local auth is disabled, revocation, and the SDK's
data-plane features (patch, ETags, paging, hierarchical and absent partition keys, TTL, change
feed, request charge and session tokens, error bodies) and queries against Cosmos's documented
examples. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
import uuid

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosHttpResponseError
from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.cosmosdb import models as cdb

import support

CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
READER = "00000000-0000-0000-0000-000000000001"
# Revocation reaches the data plane of the server that took the write at once (its read cache is
# updated on commit); other servers within the cache's refresh (test_rbac_multi_server.py).
REVOCATION_SECONDS = 1.0


@pytest.fixture
def cosmos(server, arm):
    return CosmosDBManagementClient(arm.credential, arm.sub, **support.mgmt_client_kwargs(server))


def create_account(cosmos, rg: str, name: str | None = None, disable_local_auth: bool = False):
    name = name or support.unique_name("cos").replace("-", "")[:40]
    return cosmos.database_accounts.begin_create_or_update(rg, name, cdb.DatabaseAccountCreateUpdateParameters(
        location="westus", locations=[cdb.Location(location_name="westus", failover_priority=0)],
        database_account_offer_type="Standard", disable_local_auth=disable_local_auth,
    )).result()


def create_database(cosmos, rg: str, account: str, db: str):
    return cosmos.sql_resources.begin_create_update_sql_database(rg, account, db, cdb.SqlDatabaseCreateUpdateParameters(
        resource=cdb.SqlDatabaseResource(id=db),
    )).result()


def create_container(cosmos, rg: str, account: str, db: str, name: str, paths=("/pk",), ttl: int | None = None):
    key = cdb.ContainerPartitionKey(paths=list(paths), kind="MultiHash" if len(paths) > 1 else "Hash", version=2 if len(paths) > 1 else None)
    return cosmos.sql_resources.begin_create_update_sql_container(rg, account, db, name, cdb.SqlContainerCreateUpdateParameters(
        resource=cdb.SqlContainerResource(id=name, partition_key=key, default_ttl=ttl),
    )).result()


def grant_data_role(cosmos, rg: str, account, role_guid: str, scope: str, principal_id: str):
    return cosmos.sql_resources.begin_create_update_sql_role_assignment(str(uuid.uuid4()), rg, account.name, cdb.SqlRoleAssignmentCreateUpdateParameters(
        role_definition_id=f"{account.id}/sqlRoleDefinitions/{role_guid}", scope=scope, principal_id=principal_id,
    )).result()


def key_client(cosmos, rg: str, account) -> CosmosClient:
    keys = cosmos.database_accounts.list_keys(rg, account.name)
    return CosmosClient(account.document_endpoint, credential=keys.primary_master_key)


class StaticToken:
    """A token credential handing out one token (an agent's managed-identity token)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


def forbidden(result: dict) -> dict:
    assert "error" in result, f"expected 403/5301, got success: {result}"
    error = result["error"]
    assert error["status"] == 403 and error["substatus"] == 5301, error
    return error


# --------------------------------------------------------------------------------------------------
# Seed 001, "Grant access", end to end


def test_seed_001_grant_access_to_vm_identities(server, arm, rg, cosmos, agents):
    account = create_account(cosmos, rg)
    assert account.document_endpoint == f"{server.url}/cosmos/{account.name}/", account.document_endpoint
    create_database(cosmos, rg, account.name, "db")
    create_container(cosmos, rg, account.name, "db", "items")
    writer_vm = arm.create_vm(rg, "writerVM", identity={"type": "SystemAssigned"})
    reader_vm = arm.create_vm(rg, "readerVM", identity={"type": "SystemAssigned"})
    arm.create_vm(rg, "otherVM", identity={"type": "SystemAssigned"})
    # Contributor on the container (the full scope), Reader on the account (az's relative "/").
    grant_data_role(cosmos, rg, account, CONTRIBUTOR, f"{account.id}/dbs/db/colls/items", writer_vm.identity.principal_id)
    grant_data_role(cosmos, rg, account, READER, "/", reader_vm.identity.principal_id)
    assignments = list(cosmos.sql_resources.list_sql_role_assignments(rg, account.name))
    assert {a.scope for a in assignments} == {account.id, f"{account.id}/dbs/db/colls/items"}, [a.as_dict() for a in assignments]

    workload = support.WORKLOADS / "cosmos.py"
    base = {"endpoint": account.document_endpoint, "database": "db", "container": "items", "prefix": "w"}
    out = support.run_workload(agents, server, rg, "writerVM", workload, {**base, "credential": "managed"})["steps"]
    assert "ok" in out["client"], out
    assert out["read_container"] == {"ok": "items"}, out
    assert out["create"] == {"ok": {"id": "w-1", "pk": "a", "n": 1, "tags": ["x"]}}, out
    assert out["create_conflict"]["error"]["status"] == 409, out
    assert (out["create_database"]["error"]["status"], out["create_database"]["error"]["substatus"]) == (403, 5300), out
    assert out["upsert_existing"] == {"ok": {"id": "w-2", "pk": "b", "n": 20}}, out
    assert out["read_wrong_partition"]["error"]["status"] == 404, out
    assert out["patch"] == {"ok": {"id": "w-1", "pk": "a", "n": 6, "tags": ["y"], "color": "red"}}, out
    assert out["replace_if_match"] == {"ok": {"replaced": 100, "etag_changed": True, "stale": 412}}, out
    # Across both partitions, two per page, in the query's order.
    pages = out["query_paged"]["ok"]
    assert [len(p) for p in pages][:3] == [2, 2, 2], pages
    assert [d for p in pages for d in p] == [
        {"id": "w-1", "n": 100}, {"id": "w-2", "n": 20}, {"id": "w-7", "n": 7}, {"id": "w-6", "n": 6},
        {"id": "w-5", "n": 5}, {"id": "w-4", "n": 4}, {"id": "w-3", "n": 3},
    ], pages
    assert out["query_partition"] == {"ok": ["w-2", "w-3", "w-5", "w-7"]}, out
    assert out["query_count"] == {"ok": [7]}, out
    assert out["delete"] == {"ok": None}, out
    assert out["read_deleted"]["error"]["status"] == 404, out

    # The reader (DefaultAzureCredential): reads and queries; every write is 403/5301.
    spec = {**base, "credential": "default", "role": "reader", "prefix": "w", "seed_id": "w-1", "seed_pk": "a"}
    out = support.run_workload(agents, server, rg, "readerVM", workload, spec)["steps"]
    assert out["read_container"] == {"ok": "items"}, out
    assert out["read_seed"]["ok"]["n"] == 100, out
    assert out["query_count"] == {"ok": [6]}, out
    assert len([d for p in out["query_paged"]["ok"] for d in p]) == 6, out
    for name in ("create", "upsert", "delete"):
        error = forbidden(out[name])
        assert reader_vm.identity.principal_id in error["message"], error
        assert "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/" in error["message"], error

    # A VM with no data role: every call is refused.
    out = support.run_workload(agents, server, rg, "otherVM", workload, {**spec, "credential": "managed"})["steps"]
    failures = [v for v in out.values() if "error" in v]
    assert failures and not [v for v in out.values() if "ok" in v and v["ok"] is not None], out
    for result in failures:
        forbidden(result)
    # The writer's items are still there, untouched by the refused calls.
    items = key_client(cosmos, rg, account).get_database_client("db").get_container_client("items")
    assert sorted(d["id"] for d in items.read_all_items()) == ["w-1", "w-3", "w-4", "w-5", "w-6", "w-7"]


def test_revoked_data_role_denies_the_next_request(server, arm, rg, cosmos, agents):
    account = create_account(cosmos, rg)
    create_database(cosmos, rg, account.name, "db")
    create_container(cosmos, rg, account.name, "db", "c")
    vm = arm.create_vm(rg, "vm1", identity={"type": "SystemAssigned"})
    assignment = grant_data_role(cosmos, rg, account, CONTRIBUTOR, "/dbs/db", vm.identity.principal_id)
    assert assignment.scope == f"{account.id}/dbs/db", assignment.as_dict()
    agent = agents.start(server, rg, "vm1")
    # The SDK's own scope first: the account's host (here the server's), as azure-cosmos asks for it.
    resource = server.url.split("://", 1)[0] + "://" + server.url.split("://", 1)[1].split("/", 1)[0]
    body = support.imds_token_body(agent.token(resource=resource))
    container = CosmosClient(account.document_endpoint, credential=StaticToken(body["access_token"])).get_database_client("db").get_container_client("c")
    container.upsert_item({"id": "1", "pk": "a"})
    # https://cosmos.azure.com, the SDK's fallback audience, is accepted too.
    fallback = support.imds_token_body(agent.token(resource="https://cosmos.azure.com"))
    other = CosmosClient(account.document_endpoint, credential=StaticToken(fallback["access_token"])).get_database_client("db").get_container_client("c")
    assert other.read_item("1", partition_key="a")["id"] == "1"

    cosmos.sql_resources.begin_delete_sql_role_assignment(assignment.name, rg, account.name).result()
    started = time.monotonic()
    while True:
        try:
            container.read_item("1", partition_key="a")
        except CosmosHttpResponseError as err:
            assert (err.status_code, err.sub_status) == (403, 5301), err
            break
        assert time.monotonic() - started < REVOCATION_SECONDS, "the revoked role still reads"
        time.sleep(0.05)
    # A token of another audience is no Cosmos token.
    arm_token = support.imds_token_body(agent.token())["access_token"]
    with pytest.raises(CosmosHttpResponseError) as err:
        CosmosClient(account.document_endpoint, credential=StaticToken(arm_token)).get_database_client("db").read()
    assert err.value.status_code == 401, err.value


def test_key_auth_until_local_auth_is_disabled(server, arm, rg, cosmos):
    account = create_account(cosmos, rg)
    keys = cosmos.database_accounts.list_keys(rg, account.name)
    read_only = cosmos.database_accounts.list_read_only_keys(rg, account.name)
    strings = cosmos.database_accounts.list_connection_strings(rg, account.name).connection_strings
    assert strings[0].connection_string == f"AccountEndpoint={account.document_endpoint};AccountKey={keys.primary_master_key};"

    # Databases and containers through the data plane with the key (management operations are
    # allowed to keys), items with either key; the read-only key reads but does not write.
    client = CosmosClient.from_connection_string(strings[0].connection_string)
    db = client.create_database("kdb")
    container = db.create_container("kc", partition_key=PartitionKey(path="/pk"))
    container.create_item({"id": "1", "pk": "a", "v": 1})
    secondary = CosmosClient(account.document_endpoint, credential=keys.secondary_master_key)
    assert secondary.get_database_client("kdb").get_container_client("kc").read_item("1", "a")["v"] == 1
    reader = CosmosClient(account.document_endpoint, credential=read_only.primary_readonly_master_key).get_database_client("kdb").get_container_client("kc")
    assert reader.read_item("1", "a")["v"] == 1
    with pytest.raises(CosmosHttpResponseError) as err:
        reader.upsert_item({"id": "2", "pk": "a"})
    assert err.value.status_code == 403, err.value
    # The data plane's containers are the control plane's: ARM lists the one made with the key.
    assert [c.name for c in cosmos.sql_resources.list_sql_containers(rg, account.name, "kdb")] == ["kc"]
    # A wrong key is 401, already at the client's first call (its read of the account, GET /).
    with pytest.raises(CosmosHttpResponseError) as err:
        CosmosClient(account.document_endpoint, credential=keys.primary_master_key[:-4] + "AAA=")
    assert err.value.status_code == 401, err.value

    # Regenerating the primary key retires it at once.
    cosmos.database_accounts.begin_regenerate_key(rg, account.name, cdb.DatabaseAccountRegenerateKeyParameters(key_kind="primary")).result()
    with pytest.raises(CosmosHttpResponseError) as err:
        client.get_database_client("kdb").read()
    assert err.value.status_code == 401, err.value

    updated = cosmos.database_accounts.begin_update(rg, account.name, cdb.DatabaseAccountUpdateParameters(disable_local_auth=True)).result()
    assert updated.disable_local_auth is True
    with pytest.raises(CosmosHttpResponseError) as err:
        secondary.get_database_client("kdb").get_container_client("kc").read_item("1", "a")
    assert err.value.status_code in (401, 403), err.value
    assert "local" in str(err.value).lower(), err.value


# --------------------------------------------------------------------------------------------------
# The data plane with the SDK (key auth, in the test process)


@pytest.fixture
def keyed(cosmos, rg):
    account = create_account(cosmos, rg)
    client = key_client(cosmos, rg, account)
    return account, client, client.create_database("db")


def test_items_partition_keys_ttl_and_headers(keyed):
    account, client, db = keyed
    # Hierarchical partition key.
    tree = db.create_container("tree", partition_key=PartitionKey(path=["/tenant", "/user"], kind="MultiHash"))
    tree.create_item({"id": "1", "tenant": "t1", "user": "u1"})
    tree.create_item({"id": "1", "tenant": "t1", "user": "u2"})
    tree.create_item({"id": "2", "tenant": "t2", "user": "u1"})
    assert tree.read_item("1", partition_key=["t1", "u2"])["user"] == "u2"
    assert sorted(d["user"] for d in tree.query_items("SELECT * FROM c", partition_key=["t1", "u1"])) == ["u1"]
    assert sorted((d["tenant"], d["user"]) for d in tree.query_items("SELECT * FROM c WHERE c.id = '1'", enable_cross_partition_query=True)) == [("t1", "u1"), ("t1", "u2")]
    headers = tree.client_connection.last_response_headers
    assert float(headers["x-ms-request-charge"]) > 0, headers
    assert headers.get("x-ms-session-token"), headers

    # Items without a value for the partition key path live in the "none" partition.
    plain = db.create_container("plain", partition_key=PartitionKey(path="/pk"))
    plain.create_item({"id": "nopk", "v": 1})
    from azure.cosmos.partition_key import NonePartitionKeyValue

    assert plain.read_item("nopk", partition_key=NonePartitionKeyValue)["v"] == 1
    with pytest.raises(CosmosHttpResponseError) as err:
        plain.read_item("nopk", partition_key="x")
    assert err.value.status_code == 404, err.value

    # TTL: the container's default, and an item's own (-1: never).
    ttl = db.create_container("ttl", partition_key=PartitionKey(path="/pk"), default_ttl=1)
    ttl.create_item({"id": "short", "pk": "a"})
    ttl.create_item({"id": "kept", "pk": "a", "ttl": -1})
    assert ttl.read()["defaultTtl"] == 1
    time.sleep(2.2)
    with pytest.raises(CosmosHttpResponseError) as err:
        ttl.read_item("short", "a")
    assert err.value.status_code == 404, err.value
    assert [d["id"] for d in ttl.read_all_items()] == ["kept"]

    # Error bodies as Cosmos writes them.
    with pytest.raises(CosmosHttpResponseError) as err:
        db.get_container_client("missing").read_item("1", "a")
    assert err.value.status_code == 404, err.value
    with pytest.raises(CosmosHttpResponseError) as err:
        db.create_container("tree", partition_key=PartitionKey(path="/pk"))
    assert err.value.status_code == 409, err.value
    with pytest.raises(CosmosHttpResponseError) as err:
        list(plain.query_items("SELECT * FROM c WHERE", enable_cross_partition_query=True))
    assert err.value.status_code == 400, err.value


def test_change_feed_latest_version(keyed):
    account, client, db = keyed
    container = db.create_container("feed", partition_key=PartitionKey(path="/pk"))
    for i in range(5):
        container.upsert_item({"id": str(i), "pk": f"p{i % 2}", "v": 0})
    container.upsert_item({"id": "0", "pk": "p0", "v": 1})  # one change per item: its latest version
    feed = container.query_items_change_feed(start_time="Beginning")
    first = list(feed)
    assert sorted((d["id"], d["v"]) for d in first) == [("0", 1), ("1", 0), ("2", 0), ("3", 0), ("4", 0)], first
    continuation = container.client_connection.last_response_headers["etag"]
    assert list(container.query_items_change_feed(continuation=continuation)) == []
    container.upsert_item({"id": "9", "pk": "p1"})
    later = list(container.query_items_change_feed(continuation=continuation))
    assert [d["id"] for d in later] == ["9"], later
    # One partition's feed.
    only = list(container.query_items_change_feed(start_time="Beginning", partition_key="p1"))
    assert sorted(d["id"] for d in only) == ["1", "3", "9"], only
    # The same on a version-1 key (what a container made without a version has): the SDK hashes
    # the key the old way, and the server must agree.
    old = db.create_container("feed-v1", partition_key=PartitionKey(path="/pk", version=1))
    for i in range(6):
        old.upsert_item({"id": str(i), "pk": [f"p{i % 3}", 7, 2.5][i % 3], "v": i})
    assert sorted(d["id"] for d in old.query_items_change_feed(start_time="Beginning", partition_key="p0")) == ["0", "3"]
    assert sorted(d["id"] for d in old.query_items_change_feed(start_time="Beginning", partition_key=7)) == ["1", "4"]
    assert sorted(d["id"] for d in old.query_items_change_feed(start_time="Beginning", partition_key=2.5)) == ["2", "5"]


# Cosmos's documented examples (learn.microsoft.com/azure/cosmos-db/nosql/query/group-by and
# .../join): the items and the results as the pages give them, through the SDK across partitions.
EMPLOYEES = [
    {"id": "3548979698", "name": "Jordan Mitchell", "capabilities": {"softwareDevelopment": "python", "mediaTrained": True}, "team": "Cloud software engineering"},
    {"id": "4228924547", "name": "Mikaela Lee", "capabilities": {"softwareDevelopment": "javascript", "mediaTrained": False}, "team": "Cloud software engineering"},
    {"id": "2941063066", "name": "Graham Barnes", "capabilities": {"softwareDevelopment": "c-sharp", "mediaTrained": True}, "team": "Cloud software engineering"},
    {"id": "9318573296", "name": "Hayden Cook", "capabilities": {"softwareDevelopment": "javascript", "mediaTrained": True}, "team": "Cloud software engineering"},
    {"id": "3601062997", "name": "Morgan Connors", "capabilities": {"mediaTrained": True}, "team": "Cloud software engineering"},
    {"id": "7074932233", "name": "Devon Torres", "capabilities": {"softwareDevelopment": "python", "mediaTrained": False}, "team": "Cloud software engineering"},
    {"id": "3798545532", "name": "Sam Centrell", "capabilities": {"softwareDevelopment": "javascript", "mediaTrained": True}, "team": "Cloud software engineering"},
]
PRODUCTS = [
    {"id": "ffffffff-5555-6666-7777-aaaaaaaaaaaa", "categoryName": "Sleeping Bags", "sku": "maresse-sleeping-bag-65503",
     "tags": [{"slug": "bag-shape-mummy", "name": "Bag Shape: Mummy"}, {"slug": "bag-insulation-down-fill", "name": "Bag Insulation: Down Fill"}]},
    {"id": "c2c2c2c2-dddd-eeee-ffff-a3a3a3a3a3a3", "categoryName": "Sleeping Bags", "sku": "vareno-sleeping-bag-65508",
     "tags": [{"slug": "bag-insulation-synthetic-fill", "name": "Bag Insulation: Synthetic Fill"},
              {"slug": "color-group-yellow", "name": "Color Group: Yellow"}, {"slug": "bag-shape-mummy", "name": "Bag Shape: Mummy"}]},
]


def test_queries_match_the_documented_examples(keyed):
    account, client, db = keyed
    employees = db.create_container("employees", partition_key=PartitionKey(path="/id"))
    for doc in EMPLOYEES:
        employees.create_item(doc)
    products = db.create_container("products", partition_key=PartitionKey(path="/categoryName"))
    for doc in PRODUCTS:
        products.create_item(doc)

    def query(container, text, parameters=None, **kwargs):
        return list(container.query_items(text, parameters=parameters, enable_cross_partition_query=True, **kwargs))

    grouped = query(employees, "SELECT COUNT(1) AS trainedEmployees, e.capabilities.softwareDevelopment AS developmentLang "
                               "FROM employees e WHERE e.team = @team GROUP BY e.capabilities.softwareDevelopment",
                    [{"name": "@team", "value": "Cloud software engineering"}])
    assert sorted(grouped, key=lambda d: d.get("developmentLang", "")) == [
        {"trainedEmployees": 1}, {"trainedEmployees": 1, "developmentLang": "c-sharp"},
        {"trainedEmployees": 3, "developmentLang": "javascript"}, {"trainedEmployees": 2, "developmentLang": "python"},
    ], grouped
    # Without ORDER BY, Cosmos promises no order (the docs show insertion order): compare sorted.
    assert sorted(query(products, "SELECT p.sku, t.name AS tag FROM products p JOIN t IN p.tags "
                                  "WHERE p.categoryName = \"Sleeping Bags\" AND t.slug = \"bag-shape-mummy\""), key=lambda d: d["sku"]) == [
        {"sku": "maresse-sleeping-bag-65503", "tag": "Bag Shape: Mummy"}, {"sku": "vareno-sleeping-bag-65508", "tag": "Bag Shape: Mummy"},
    ]
    names = query(employees, "SELECT VALUE e.name FROM e WHERE e.capabilities.softwareDevelopment IN ('python', 'c-sharp') ORDER BY e.name")
    assert names == ["Devon Torres", "Graham Barnes", "Jordan Mitchell"], names
    assert query(employees, "SELECT VALUE e.name FROM e WHERE e.capabilities.softwareDevelopment IN ('python', 'c-sharp') "
                            "ORDER BY e.name OFFSET 1 LIMIT 1") == ["Graham Barnes"]
    assert query(employees, "SELECT TOP 2 VALUE e.id FROM e ORDER BY e.capabilities.mediaTrained DESC, e.id ASC") == ["2941063066", "3548979698"]
    assert query(employees, "SELECT DISTINCT VALUE e.capabilities.mediaTrained FROM e ORDER BY e.capabilities.mediaTrained") == [False, True]
    assert query(employees, "SELECT VALUE COUNT(1) FROM e WHERE NOT IS_DEFINED(e.capabilities.softwareDevelopment)") == [1]
    assert query(employees, "SELECT VALUE e.name FROM e WHERE e.name LIKE 'M%' ORDER BY e.name") == ["Mikaela Lee", "Morgan Connors"]
    # An unsupported or malformed construct is a 400 that names it.
    with pytest.raises(CosmosHttpResponseError) as err:
        query(employees, "SELECT * FROM e WHERE e.id = ")
    assert err.value.status_code == 400, err.value


def test_control_plane_errors_and_deletion(arm, cosmos, rg):
    account = create_account(cosmos, rg)
    with pytest.raises(HttpResponseError) as err:
        create_container(cosmos, rg, account.name, "nodb", "c")
    assert err.value.status_code == 404, err.value
    # Account names are unique (they name a host on Azure): another group cannot take this one.
    other = arm.create_group(support.unique_name("pyrg")).name
    try:
        with pytest.raises(HttpResponseError) as err:
            create_account(cosmos, other, account.name)
        assert err.value.status_code in (400, 409), err.value
    finally:
        arm.delete_group(other)
    # The account goes with its group's deletion, and its data plane with it.
    client = key_client(cosmos, rg, account)
    client.create_database("db")
    arm.delete_group(rg)
    with pytest.raises(HttpResponseError) as err:
        cosmos.database_accounts.get(rg, account.name)
    assert err.value.status_code == 404
    with pytest.raises(CosmosHttpResponseError) as err:
        client.get_database_client("db").read()
    assert err.value.status_code in (401, 404), err.value
