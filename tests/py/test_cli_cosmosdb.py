"""`openmi cosmosdb ...` (issue 17) with az's flag names: accounts, keys, SQL databases and
containers, data-plane role definitions and assignments, each result checked through the API."""

from __future__ import annotations

import json

import support


def test_cosmosdb_verbs(cli, arm, rg):
    name = support.unique_name("clicos").replace("-", "")
    endpoint = cli.json("cosmosdb", "create", "-n", name, "-g", rg, "--locations", "regionName=westus", "failoverPriority=0",
                        "--query", "properties.documentEndpoint")
    assert endpoint.endswith(f"/cosmos/{name}/"), endpoint
    shown = cli.json("cosmosdb", "show", "-n", name, "-g", rg)
    assert shown["properties"]["disableLocalAuth"] is False
    assert shown["properties"]["locations"][0]["locationName"] == "West US"
    assert [a["name"] for a in cli.json("cosmosdb", "list", "-g", rg)] == [name]

    keys = cli.json("cosmosdb", "keys", "list", "-n", name, "-g", rg)
    assert len(keys["primaryMasterKey"]) == 88 and keys["primaryMasterKey"] != keys["secondaryMasterKey"]
    read_only = cli.json("cosmosdb", "keys", "list", "-n", name, "-g", rg, "--type", "read-only-keys")
    assert set(read_only) == {"primaryReadonlyMasterKey", "secondaryReadonlyMasterKey"}
    strings = cli.json("cosmosdb", "keys", "list", "-n", name, "-g", rg, "--type", "connection-strings")
    assert strings["connectionStrings"][0]["connectionString"] == f"AccountEndpoint={endpoint};AccountKey={keys['primaryMasterKey']};"
    cli("cosmosdb", "keys", "regenerate", "-n", name, "-g", rg, "--key-kind", "primary")
    assert cli.json("cosmosdb", "keys", "list", "-n", name, "-g", rg)["primaryMasterKey"] != keys["primaryMasterKey"]

    assert cli.json("cosmosdb", "sql", "database", "create", "-a", name, "-g", rg, "-n", "db")["name"] == "db"
    container = cli.json("cosmosdb", "sql", "container", "create", "-a", name, "-g", rg, "-d", "db", "-n", "c",
                         "-p", "/tenant", "/user", "--ttl", "3600")
    assert container["properties"]["resource"]["partitionKey"] == {"paths": ["/tenant", "/user"], "kind": "MultiHash", "version": 2}
    assert container["properties"]["resource"]["defaultTtl"] == 3600
    assert [c["name"] for c in cli.json("cosmosdb", "sql", "container", "list", "-a", name, "-g", rg, "-d", "db")] == ["c"]
    assert cli.json("cosmosdb", "sql", "database", "show", "-a", name, "-g", rg, "-n", "db")["properties"]["resource"]["id"] == "db"

    identity = arm.create_identity(rg, "ID1")
    scope = cli.json("cosmosdb", "sql", "role", "assignment", "create", "-a", name, "-g", rg, "--scope", "/dbs/db",
                     "--principal-id", identity.principal_id, "--role-definition-name", "Cosmos DB Built-in Data Contributor",
                     "--query", "properties.scope")
    assert scope.endswith(f"/databaseAccounts/{name}/dbs/db"), scope
    role = cli.json("cosmosdb", "sql", "role", "definition", "create", "-a", name, "-g", rg, "-b", json.dumps({
        "RoleName": "MetadataOnly", "Type": "CustomRole", "AssignableScopes": ["/"],
        "Permissions": [{"DataActions": ["Microsoft.DocumentDB/databaseAccounts/readMetadata"]}],
    }))
    assert role["properties"]["type"] == "CustomRole"
    names = {d["properties"]["roleName"] for d in cli.json("cosmosdb", "sql", "role", "definition", "list", "-a", name, "-g", rg)}
    assert names == {"Cosmos DB Built-in Data Reader", "Cosmos DB Built-in Data Contributor", "MetadataOnly"}
    assignments = cli.json("cosmosdb", "sql", "role", "assignment", "list", "-a", name, "-g", rg)
    assert [a["properties"]["principalId"] for a in assignments] == [identity.principal_id]
    cli("cosmosdb", "sql", "role", "assignment", "delete", "-a", name, "-g", rg, "-i", assignments[0]["name"], "--yes")
    assert cli.json("cosmosdb", "sql", "role", "assignment", "list", "-a", name, "-g", rg) == []
    # A built-in role cannot be deleted; a custom one can.
    cli.fails("cosmosdb", "sql", "role", "definition", "delete", "-a", name, "-g", rg, "-i", "00000000-0000-0000-0000-000000000001", "--yes")
    cli("cosmosdb", "sql", "role", "definition", "delete", "-a", name, "-g", rg, "-i", role["name"], "--yes")

    assert cli.json("cosmosdb", "update", "-n", name, "-g", rg, "--disable-local-auth", "true", "--query", "properties.disableLocalAuth") is True
    cli("cosmosdb", "sql", "container", "delete", "-a", name, "-g", rg, "-d", "db", "-n", "c", "--yes")
    cli("cosmosdb", "sql", "database", "delete", "-a", name, "-g", rg, "-n", "db", "--yes")
    cli("cosmosdb", "delete", "-n", name, "-g", rg, "--yes")
    assert cli.json("cosmosdb", "list", "-g", rg) == []
