"""The Cosmos DB workload "on the VM" (issue 17, seed 001): unmodified azure-cosmos with a managed
identity (ManagedIdentityCredential or DefaultAzureCredential) or an account key, and nothing but
the environment `openmi vm run` gives it. Each step's outcome is recorded, never raised, and the
whole is printed as one JSON document: {"steps": {name: {"ok": result} | {"error": {...}}}}.

The spec (argv[1], JSON): endpoint, database, container, credential ("managed" | "default" |
"key"), key, client_id, role ("writer" | "reader"), prefix (item ids of this run)."""

import json
import sys

spec = json.loads(sys.argv[1])
steps: dict = {}


def step(name, fn):
    from azure.cosmos.exceptions import CosmosHttpResponseError

    try:
        steps[name] = {"ok": fn()}
    except CosmosHttpResponseError as err:
        steps[name] = {"error": {
            "status": err.status_code, "substatus": err.sub_status,
            "message": str(err.message if hasattr(err, "message") else err)[:1500],
        }}
    except Exception as err:  # noqa: BLE001 - shown by the test
        steps[name] = {"error": {"status": None, "type": type(err).__name__, "message": str(err)[:1500]}}


def clean(doc):
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def main():
    from azure.core import MatchConditions
    from azure.cosmos import CosmosClient

    if spec["credential"] == "key":
        credential = spec["key"]
    elif spec["credential"] == "default":
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    else:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=spec["client_id"]) if spec.get("client_id") else ManagedIdentityCredential()

    client = CosmosClient(spec["endpoint"], credential=credential)
    container = client.get_database_client(spec["database"]).get_container_client(spec["container"])
    prefix = spec["prefix"]
    step("read_container", lambda: container.read()["id"])

    if spec.get("role", "writer") == "writer":
        step("create", lambda: clean(container.create_item({"id": f"{prefix}-1", "pk": "a", "n": 1, "tags": ["x"]})))
        step("create_conflict", lambda: container.create_item({"id": f"{prefix}-1", "pk": "a"}))
        # Management operations are ARM's with an Entra token, as on Azure (403, substatus 5300).
        step("create_database", lambda: client.create_database(f"{prefix}-db").id)
        step("upsert_new", lambda: clean(container.upsert_item({"id": f"{prefix}-2", "pk": "b", "n": 2})))
        step("upsert_existing", lambda: clean(container.upsert_item({"id": f"{prefix}-2", "pk": "b", "n": 20})))
        for i in range(3, 8):
            step(f"create_{i}", lambda i=i: container.create_item({"id": f"{prefix}-{i}", "pk": "ab"[i % 2], "n": i})["id"])
        step("read", lambda: clean(container.read_item(f"{prefix}-1", partition_key="a")))
        step("read_wrong_partition", lambda: container.read_item(f"{prefix}-1", partition_key="b"))
        step("patch", lambda: clean(container.patch_item(f"{prefix}-1", partition_key="a", patch_operations=[
            {"op": "set", "path": "/color", "value": "red"},
            {"op": "incr", "path": "/n", "value": 5},
            {"op": "add", "path": "/tags/-", "value": "y"},
            {"op": "remove", "path": "/tags/0"},
        ])))

        def replace_with_etags():
            current = container.read_item(f"{prefix}-1", partition_key="a")
            fresh = container.replace_item(current["id"], {**clean(current), "n": 100}, etag=current["_etag"],
                                           match_condition=MatchConditions.IfNotModified)
            outcome = {"replaced": fresh["n"], "etag_changed": fresh["_etag"] != current["_etag"]}
            try:
                container.replace_item(current["id"], {**clean(current), "n": 0}, etag=current["_etag"],
                                       match_condition=MatchConditions.IfNotModified)
                outcome["stale"] = "accepted"
            except Exception as err:  # noqa: BLE001
                outcome["stale"] = getattr(err, "status_code", repr(err))
            return outcome

        step("replace_if_match", replace_with_etags)

    def query_pages():
        pages = container.query_items(
            "SELECT c.id, c.n FROM c WHERE STARTSWITH(c.id, @prefix) AND c.n >= @min ORDER BY c.n DESC",
            parameters=[{"name": "@prefix", "value": prefix}, {"name": "@min", "value": 2}],
            enable_cross_partition_query=True, max_item_count=2,
        ).by_page()
        return [list(page) for page in pages]

    step("query_paged", query_pages)
    step("query_partition", lambda: sorted(
        d["id"] for d in container.query_items("SELECT * FROM c WHERE STARTSWITH(c.id, @p)", parameters=[{"name": "@p", "value": prefix}], partition_key="b")
    ))
    step("query_count", lambda: list(container.query_items(
        "SELECT VALUE COUNT(1) FROM c WHERE STARTSWITH(c.id, @p)", parameters=[{"name": "@p", "value": prefix}],
        enable_cross_partition_query=True,
    )))
    step("read_seed", lambda: clean(container.read_item(spec.get("seed_id", f"{prefix}-1"), partition_key=spec.get("seed_pk", "a"))))

    if spec.get("role", "writer") == "writer":
        step("delete", lambda: container.delete_item(f"{prefix}-2", partition_key="b"))
        step("read_deleted", lambda: container.read_item(f"{prefix}-2", partition_key="b"))
    else:
        step("create", lambda: container.create_item({"id": f"{prefix}-r", "pk": "a"}))
        step("upsert", lambda: container.upsert_item({"id": spec["seed_id"], "pk": spec["seed_pk"], "n": -1}))
        step("delete", lambda: container.delete_item(spec["seed_id"], partition_key=spec["seed_pk"]))


step("client", main)
print(json.dumps({"steps": steps}))
