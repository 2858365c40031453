// Cosmos DB for NoSQL with the real JavaScript clients (issue 17), the twin of tests/py/test_cosmos.py:
// @azure/arm-cosmosdb 16 for the account, databases, containers, keys and data-plane role
// assignments (api-version 2025-10-15); unmodified @azure/cosmos 4.9 inside `openmi vm run` with a
// VM's managed identity (seed 001's "Grant access": Data Contributor on a container, Data Reader
// on the account, nobody else), account keys until local auth is disabled, revocation, and the
// SDK's data-plane features (ETags, patch, hierarchical and absent partition keys, TTL, paging with
// continuation tokens, the change feed pull model, queries against Cosmos's documented examples).

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";

import { CosmosDBManagementClient } from "@azure/arm-cosmosdb";
import { ChangeFeedStartFrom, CosmosClient, PartitionKeyBuilder, PartitionKeyDefinitionVersion, PartitionKeyKind } from "@azure/cosmos";

import { cliLoginSp, describeError, logged, rejects, sleep, startServer, uniqueName, vmRun } from "../lib/support.mjs";
import { all, armClients, clientOptions, createGroup, deleteGroupQuietly, timed, vmBody } from "../lib/arm.mjs";

const CONTRIBUTOR = "00000000-0000-0000-0000-000000000002";
const READER = "00000000-0000-0000-0000-000000000001";
const ITEMS_ACTION = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/";
// How soon a removed data role is refused (tests/py/test_cosmos.py's REVOCATION_SECONDS).
const REVOCATION_MS = 1_000;

let server;
let arm;
let cosmos;
let cli;
const clients = [];
before(async () => {
  server = await startServer();
  arm = await armClients(server);
  cosmos = new CosmosDBManagementClient(arm.credential, server.subscriptionId, clientOptions(server));
  cli = cliLoginSp(server);
});
after(async () => {
  for (const client of clients) client.dispose();
  await server?.stop();
});

/** A database account as the portal and `az cosmosdb create` make it; no polling needed. */
async function createAccount(rg, name = uniqueName("jscos")) {
  return timed(cosmos.databaseAccounts.beginCreateOrUpdateAndWait(rg, name, {
    location: "westus",
    kind: "GlobalDocumentDB",
    databaseAccountOfferType: "Standard",
    locations: [{ locationName: "westus", failoverPriority: 0, isZoneRedundant: false }],
    disableLocalAuth: false,
  }));
}

async function createDatabase(rg, account, db) {
  return timed(cosmos.sqlResources.beginCreateUpdateSqlDatabaseAndWait(rg, account, db, { resource: { id: db }, options: {} }));
}

/** A SQL container through ARM; more than one path makes a hierarchical (MultiHash) key. */
async function createContainer(rg, account, db, name, paths = ["/pk"]) {
  const partitionKey = paths.length > 1 ? { paths, kind: "MultiHash", version: 2 } : { paths, kind: "Hash" };
  return timed(cosmos.sqlResources.beginCreateUpdateSqlContainerAndWait(rg, account, db, name, {
    resource: { id: name, partitionKey }, options: {},
  }));
}

/** A data-plane role assignment (sqlRoleAssignments); `scope` full or relative (`/`, `/dbs/db`…). */
async function grantDataRole(rg, account, roleGuid, scope, principalId) {
  return timed(cosmos.sqlResources.beginCreateUpdateSqlRoleAssignmentAndWait(crypto.randomUUID(), rg, account.name, {
    roleDefinitionId: `${account.id}/sqlRoleDefinitions/${roleGuid}`, scope, principalId,
  }));
}

/** An @azure/cosmos client, disposed when the file ends (it refreshes its endpoints in the background). */
function cosmosClient(options) {
  const client = new CosmosClient(options);
  clients.push(client);
  return client;
}

async function keyClient(rg, account) {
  const keys = await cosmos.databaseAccounts.listKeys(rg, account.name);
  return cosmosClient({ endpoint: account.documentEndpoint, key: keys.primaryMasterKey });
}

async function createVm(rg, name) {
  return timed(arm.compute.virtualMachines.createOrUpdate(rg, name, vmBody(server, name, { identity: { type: "SystemAssigned" } })));
}

function workload(rg, vm, spec) {
  return vmRun(cli, rg, vm, "cosmos.mjs", spec);
}

/** The status, substatus and message of an @azure/cosmos ErrorResponse, for assertion messages. */
function cosmosError(error) {
  return `${error?.name} code=${error?.code} substatus=${error?.substatus}: ${String(error?.body?.message ?? error?.message).slice(0, 800)}`;
}

function forbidden(result) {
  assert.ok(result.error, `expected 403/5301, got success: ${JSON.stringify(result)}`);
  assert.equal(result.error.status, 403, JSON.stringify(result.error));
  assert.equal(result.error.substatus, 5301, JSON.stringify(result.error));
  return result.error;
}

/** Items without Cosmos's system properties (`_rid`, `_self`, `_etag`, `_ts`, …). */
function plain(doc) {
  return Object.fromEntries(Object.entries(doc).filter(([key]) => !key.startsWith("_")));
}

/** Every change a pull-model iterator has until it answers 304, and the continuation it ends on. */
async function drainChangeFeed(iterator) {
  const docs = [];
  for (let round = 0; round < 50; round += 1) {
    const response = await iterator.readNext();
    if (response.statusCode === 304) return { docs, continuation: response.continuationToken };
    docs.push(...response.result);
  }
  throw new Error(`the change feed never answered 304: ${JSON.stringify(docs).slice(0, 500)}`);
}

// ------------------------------------------------------------------------------------------------

describe("seed 001 in Node: a VM's managed identity and the Cosmos DB data plane", () => {
  test("Data Contributor on a container writes, Data Reader on the account reads, a VM without a role gets 403/5301", logged(async (t) => {
    const rg = await createGroup(arm);
    try {
      const account = await createAccount(rg);
      assert.equal(account.documentEndpoint, `${server.url}/cosmos/${account.name}/`);
      await createDatabase(rg, account.name, "db");
      await createContainer(rg, account.name, "db", "items");
      const writerVm = await createVm(rg, "writerVM");
      const readerVm = await createVm(rg, "readerVM");
      await createVm(rg, "otherVM");
      // Contributor on the container (the full scope), Reader on the account (az's relative "/").
      await grantDataRole(rg, account, CONTRIBUTOR, `${account.id}/dbs/db/colls/items`, writerVm.identity.principalId);
      await grantDataRole(rg, account, READER, "/", readerVm.identity.principalId);
      const assignments = await all(cosmos.sqlResources.listSqlRoleAssignments(rg, account.name));
      assert.deepEqual(new Set(assignments.map((a) => a.scope)), new Set([account.id, `${account.id}/dbs/db/colls/items`]), JSON.stringify(assignments));

      const base = { endpoint: account.documentEndpoint, database: "db", container: "items", prefix: "w" };
      let out = (await workload(rg, "writerVM", { ...base, credential: "managed", account_scope: true })).steps;
      assert.ok("ok" in out.client, JSON.stringify(out));
      assert.deepEqual(out.read_container, { ok: "items" }, JSON.stringify(out));
      assert.deepEqual(out.create, { ok: { id: "w-1", pk: "a", n: 1, tags: ["x"] } }, JSON.stringify(out));
      assert.equal(out.create_conflict.error?.status, 409, JSON.stringify(out));
      assert.deepEqual([out.create_database.error?.status, out.create_database.error?.substatus], [403, 5300], JSON.stringify(out.create_database));
      assert.deepEqual(out.upsert_existing, { ok: { id: "w-2", pk: "b", n: 20 } }, JSON.stringify(out));
      assert.equal(out.read_wrong_partition.error?.status, 404, JSON.stringify(out));
      const written = out;
      await t.test("patch with an array of operations (the body @azure/cosmos sends for one)", () => {
        assert.deepEqual(written.patch, { ok: { id: "w-1", pk: "a", n: 6, tags: ["y"], color: "red" } }, JSON.stringify(written.patch));
      });
      await t.test("the scope @azure/cosmos asks for first, the endpoint's own, gives a token the data plane accepts", () => {
        assert.deepEqual(written.account_scope_token, { ok: account.documentEndpoint.replace(/\/$/, "") }, JSON.stringify(written.account_scope_token));
        assert.deepEqual(written.account_scope_read, { ok: "items" }, JSON.stringify(written.account_scope_read));
      });
      assert.deepEqual(out.replace_if_match, { ok: { replaced: 100, etag_changed: true, stale: 412 } }, JSON.stringify(out));
      // Across both partitions, at most two per page, in the query's order.
      const pages = out.query_paged.ok;
      assert.ok(pages && pages.length >= 4 && pages.every((p) => p.length <= 2), JSON.stringify(out.query_paged));
      assert.deepEqual(pages.flat(), [
        { id: "w-1", n: 100 }, { id: "w-2", n: 20 }, { id: "w-7", n: 7 }, { id: "w-6", n: 6 },
        { id: "w-5", n: 5 }, { id: "w-4", n: 4 }, { id: "w-3", n: 3 },
      ], JSON.stringify(pages));
      assert.deepEqual(out.query_partition, { ok: ["w-2", "w-3", "w-5", "w-7"] }, JSON.stringify(out));
      assert.deepEqual(out.query_count, { ok: [7] }, JSON.stringify(out));
      assert.deepEqual(out.delete, { ok: null }, JSON.stringify(out));
      assert.equal(out.read_deleted.error?.status, 404, JSON.stringify(out));

      // The reader (DefaultAzureCredential): reads and queries; every write is 403/5301.
      const spec = { ...base, credential: "default", role: "reader", seed_id: "w-1", seed_pk: "a" };
      out = (await workload(rg, "readerVM", spec)).steps;
      assert.deepEqual(out.read_container, { ok: "items" }, JSON.stringify(out));
      assert.equal(out.read_seed.ok?.n, 100, JSON.stringify(out));
      assert.deepEqual(out.query_count, { ok: [6] }, JSON.stringify(out));
      assert.equal(out.query_paged.ok?.flat().length, 6, JSON.stringify(out));
      for (const name of ["create", "upsert", "delete"]) {
        const error = forbidden(out[name]);
        assert.ok(error.message.includes(readerVm.identity.principalId), error.message);
        assert.ok(error.message.includes(ITEMS_ACTION), error.message);
      }

      // A VM with no data role: every call is refused.
      out = (await workload(rg, "otherVM", { ...spec, credential: "managed" })).steps;
      const failures = Object.values(out).filter((v) => v.error);
      assert.ok(failures.length > 0, JSON.stringify(out));
      assert.deepEqual(Object.values(out).filter((v) => "ok" in v && v.ok !== null), [], JSON.stringify(out));
      for (const result of failures) forbidden(result);

      // The writer's items are still there, untouched by the refused calls.
      const items = (await keyClient(rg, account)).database("db").container("items");
      const { resources } = await items.items.readAll().fetchAll();
      assert.deepEqual(resources.map((d) => d.id).sort(), ["w-1", "w-3", "w-4", "w-5", "w-6", "w-7"]);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("a data role at /dbs/db is stored at its full scope; once deleted, the next run is refused", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const account = await createAccount(rg);
      await createDatabase(rg, account.name, "db");
      await createContainer(rg, account.name, "db", "c");
      const vm = await createVm(rg, "vm1");
      const assignment = await grantDataRole(rg, account, CONTRIBUTOR, "/dbs/db", vm.identity.principalId);
      assert.equal(assignment.scope, `${account.id}/dbs/db`);
      assert.equal(assignment.roleDefinitionId, `${account.id}/sqlRoleDefinitions/${CONTRIBUTOR}`);
      const got = await cosmos.sqlResources.getSqlRoleAssignment(assignment.name, rg, account.name);
      assert.equal(got.principalId, vm.identity.principalId);

      const spec = { endpoint: account.documentEndpoint, database: "db", container: "c", prefix: "r", credential: "managed" };
      let out = (await workload(rg, "vm1", spec)).steps;
      assert.deepEqual(out.read_container, { ok: "c" }, JSON.stringify(out));
      assert.equal(out.create?.ok?.id, "r-1", JSON.stringify(out));

      await timed(cosmos.sqlResources.beginDeleteSqlRoleAssignmentAndWait(assignment.name, rg, account.name));
      out = (await workload(rg, "vm1", { ...spec, prefix: "s" })).steps;
      forbidden(out.read_container);
      forbidden(out.create);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  // The twin of tests/py/test_cosmos.py::test_revoked_data_role_denies_the_next_request: the VM's
  // tokens, taken inside `openmi vm run`, used by @azure/cosmos in the test process.
  test("tokens for the server's host and for https://cosmos.azure.com are accepted, an ARM token is 401; a revoked role denies the next request", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const account = await createAccount(rg);
      await createDatabase(rg, account.name, "db");
      await createContainer(rg, account.name, "db", "c");
      const vm = await createVm(rg, "vm1");
      const assignment = await grantDataRole(rg, account, CONTRIBUTOR, "/dbs/db", vm.identity.principalId);
      assert.equal(assignment.scope, `${account.id}/dbs/db`);
      // The SDK's own scope first: the account's host (here the server's), then its fallback
      // audience https://cosmos.azure.com, and ARM's.
      const hostScope = `${new URL(server.url).origin}/.default`;
      const scopes = [hostScope, "https://cosmos.azure.com/.default", "https://management.azure.com/.default"];
      const out = (await workload(rg, "vm1", { endpoint: account.documentEndpoint, credential: "managed", tokens: scopes })).steps;
      const tokens = scopes.map((scope) => {
        assert.ok(typeof out[`token:${scope}`]?.ok === "string", JSON.stringify(out));
        return out[`token:${scope}`].ok;
      });
      const [hostToken, cosmosToken, armToken] = tokens;
      /** A TokenCredential handing out one token (the VM's). */
      const fixed = (token) => ({ getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3_600_000 }) });
      const container = cosmosClient({ endpoint: account.documentEndpoint, aadCredentials: fixed(hostToken) }).database("db").container("c");
      await container.items.upsert({ id: "1", pk: "a" });
      const other = cosmosClient({ endpoint: account.documentEndpoint, aadCredentials: fixed(cosmosToken) }).database("db").container("c");
      const read = await other.item("1", "a").read();
      assert.equal(read.statusCode, 200);
      assert.equal(read.resource.id, "1");

      await timed(cosmos.sqlResources.beginDeleteSqlRoleAssignmentAndWait(assignment.name, rg, account.name));
      const started = Date.now();
      for (;;) {
        const error = await container.item("1", "a").read().then(() => null, (e) => e);
        if (error) {
          assert.deepEqual([error.code, error.substatus], [403, 5301], cosmosError(error));
          break;
        }
        assert.ok(Date.now() - started < REVOCATION_MS, "the revoked role still reads");
        await sleep(50);
      }
      // A token of another audience is no Cosmos token.
      const refused = await rejects(cosmosClient({ endpoint: account.documentEndpoint, aadCredentials: fixed(armToken) }).database("db").read());
      assert.equal(refused.code, 401, cosmosError(refused));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});

// ------------------------------------------------------------------------------------------------

describe("@azure/cosmos with account keys (@azure/arm-cosmosdb listKeys, regenerateKey, disableLocalAuth)", () => {
  test("either key and the connection string work; the read-only key cannot write; a wrong, regenerated or disabled key is refused", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const account = await createAccount(rg);
      const keys = await cosmos.databaseAccounts.listKeys(rg, account.name);
      const readOnly = await cosmos.databaseAccounts.listReadOnlyKeys(rg, account.name);
      assert.ok(keys.primaryMasterKey && keys.secondaryMasterKey && keys.primaryMasterKey !== keys.secondaryMasterKey, JSON.stringify(keys));
      assert.equal(keys.primaryReadonlyMasterKey, readOnly.primaryReadonlyMasterKey);
      const { connectionStrings } = await cosmos.databaseAccounts.listConnectionStrings(rg, account.name);
      assert.equal(connectionStrings[0].connectionString, `AccountEndpoint=${account.documentEndpoint};AccountKey=${keys.primaryMasterKey};`);

      // Databases and containers through the data plane with the key (keys may manage them),
      // items with either key; the read-only key reads but does not write.
      const client = cosmosClient(connectionStrings[0].connectionString);
      const { database } = await client.databases.create({ id: "kdb" });
      const { container } = await database.containers.create({ id: "kc", partitionKey: { paths: ["/pk"] } });
      await container.items.create({ id: "1", pk: "a", v: 1 });
      const secondary = cosmosClient({ endpoint: account.documentEndpoint, key: keys.secondaryMasterKey });
      assert.equal((await secondary.database("kdb").container("kc").item("1", "a").read()).resource.v, 1);
      const reader = cosmosClient({ endpoint: account.documentEndpoint, key: readOnly.primaryReadonlyMasterKey }).database("kdb").container("kc");
      assert.equal((await reader.item("1", "a").read()).resource.v, 1);
      let error = await rejects(reader.items.upsert({ id: "2", pk: "a" }));
      assert.equal(error.code, 403, cosmosError(error));
      // The data plane's containers are the control plane's: ARM lists the one made with the key.
      const listed = await all(cosmos.sqlResources.listSqlContainers(rg, account.name, "kdb"));
      assert.deepEqual(listed.map((c) => c.name), ["kc"]);
      // A wrong key is 401, already at the client's first call (its read of the account, GET /).
      const wrong = cosmosClient({ endpoint: account.documentEndpoint, key: `${keys.primaryMasterKey.slice(0, -4)}AAA=` });
      error = await rejects(wrong.getDatabaseAccount());
      assert.equal(error.code, 401, cosmosError(error));

      // Regenerating the primary key retires it at once (a new client: the old one's account read is cached).
      await timed(cosmos.databaseAccounts.beginRegenerateKeyAndWait(rg, account.name, { keyKind: "primary" }));
      const regenerated = await cosmos.databaseAccounts.listKeys(rg, account.name);
      assert.notEqual(regenerated.primaryMasterKey, keys.primaryMasterKey);
      assert.equal(regenerated.secondaryMasterKey, keys.secondaryMasterKey);
      error = await rejects(client.database("kdb").read());
      assert.equal(error.code, 401, cosmosError(error));
      error = await rejects(cosmosClient(connectionStrings[0].connectionString).database("kdb").read());
      assert.equal(error.code, 401, cosmosError(error));

      const updated = await timed(cosmos.databaseAccounts.beginUpdateAndWait(rg, account.name, { disableLocalAuth: true }));
      assert.equal(updated.disableLocalAuth, true);
      error = await rejects(secondary.database("kdb").container("kc").item("1", "a").read());
      assert.ok(error.code === 401 || error.code === 403, cosmosError(error));
      assert.match(String(error.body?.message ?? error.message), /local/i, cosmosError(error));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});

// ------------------------------------------------------------------------------------------------

describe("@azure/cosmos: the data plane (key auth, in the test process)", () => {
  let rg;
  let db;
  before(async () => {
    rg = await createGroup(arm);
    const account = await createAccount(rg);
    const client = await keyClient(rg, account);
    db = (await client.databases.create({ id: "db" })).database;
  });
  after(async () => {
    await deleteGroupQuietly(arm, rg);
  });

  test("items: create, read, replace with an IfMatch access condition (412 when stale), upsert, patch, delete", logged(async (t) => {
    const { container } = await db.containers.create({ id: "items", partitionKey: { paths: ["/pk"] } });
    const created = await container.items.create({ id: "1", pk: "a", n: 1, tags: ["x"] });
    assert.equal(created.statusCode, 201);
    assert.deepEqual(plain(created.resource), { id: "1", pk: "a", n: 1, tags: ["x"] });
    assert.ok(created.etag && created.etag === created.resource._etag, JSON.stringify(created.headers));
    assert.ok(created.requestCharge > 0, JSON.stringify(created.headers));
    assert.ok(created.headers["x-ms-session-token"], JSON.stringify(created.headers));
    let error = await rejects(container.items.create({ id: "1", pk: "a" }));
    assert.equal(error.code, 409, cosmosError(error));

    const read = await container.item("1", "a").read();
    assert.equal(read.statusCode, 200);
    assert.deepEqual(plain(read.resource), plain(created.resource));
    // A point read of a missing item is a 404 response (the SDK does not throw for it).
    assert.equal((await container.item("1", "b").read()).statusCode, 404);

    // Optimistic concurrency: the current ETag replaces, a stale one is 412.
    const replaced = await container.item("1", "a").replace({ id: "1", pk: "a", n: 2, tags: ["x"] }, {
      accessCondition: { type: "IfMatch", condition: read.etag },
    });
    assert.equal(replaced.resource.n, 2);
    assert.notEqual(replaced.etag, read.etag);
    error = await rejects(container.item("1", "a").replace({ id: "1", pk: "a", n: 3 }, {
      accessCondition: { type: "IfMatch", condition: read.etag },
    }));
    assert.equal(error.code, 412, cosmosError(error));
    // IfNoneMatch with the current ETag on a read: 304, nothing sent back.
    const unchanged = await container.item("1", "a").read({ accessCondition: { type: "IfNoneMatch", condition: replaced.etag } });
    assert.equal(unchanged.statusCode, 304);

    const inserted = await container.items.upsert({ id: "2", pk: "a", n: 1 });
    assert.equal(inserted.statusCode, 201);
    const upserted = await container.items.upsert({ id: "2", pk: "a", n: 5 });
    assert.equal(upserted.statusCode, 200);
    assert.equal(upserted.resource.n, 5);

    // Patch as { condition, operations }: a matching condition applies every operation, one that
    // does not match is 412, removing a path that does not exist is 400.
    const patched = await container.item("1", "a").patch({
      condition: "FROM c WHERE c.n = 2",
      operations: [
        { op: "set", path: "/color", value: "red" },
        { op: "incr", path: "/n", value: 5 },
        { op: "add", path: "/tags/-", value: "y" },
        { op: "remove", path: "/tags/0" },
        { op: "replace", path: "/pk", value: "a" },
      ],
    });
    assert.deepEqual(plain(patched.resource), { id: "1", pk: "a", n: 7, tags: ["y"], color: "red" });
    assert.notEqual(patched.etag, replaced.etag);
    error = await rejects(container.item("1", "a").patch({
      condition: "FROM c WHERE c.n > 100",
      operations: [{ op: "set", path: "/color", value: "blue" }],
    }));
    assert.equal(error.code, 412, cosmosError(error));
    error = await rejects(container.item("1", "a").patch({ operations: [{ op: "remove", path: "/missing" }] }));
    assert.equal(error.code, 400, cosmosError(error));
    // Patch with the operations alone, as an array (how the SDK's docs write it).
    await t.test("Item.patch([...operations])", async () => {
      const response = await container.item("1", "a").patch([{ op: "incr", path: "/n", value: 1 }, { op: "set", path: "/size", value: "L" }]);
      assert.deepEqual(plain(response.resource), { id: "1", pk: "a", n: 8, tags: ["y"], color: "red", size: "L" });
    });

    const deleted = await container.item("2", "a").delete();
    assert.equal(deleted.statusCode, 204);
    assert.equal((await container.item("2", "a").read()).statusCode, 404);
    error = await rejects(container.item("2", "a").delete());
    assert.equal(error.code, 404, cosmosError(error));
  }));

  test("hierarchical partition keys, items without a partition key value, TTL and error bodies", logged(async (t) => {
    const { container: tree } = await db.containers.create({
      id: "tree",
      partitionKey: { paths: ["/tenant", "/user"], version: PartitionKeyDefinitionVersion.V2, kind: PartitionKeyKind.MultiHash },
    });
    await tree.items.create({ id: "1", tenant: "t1", user: "u1" });
    await tree.items.create({ id: "1", tenant: "t1", user: "u2" });
    await tree.items.create({ id: "2", tenant: "t2", user: "u1" });
    assert.equal((await tree.item("1", ["t1", "u2"]).read()).resource.user, "u2");
    let { resources } = await tree.items.query("SELECT * FROM c", { partitionKey: ["t1", "u1"] }).fetchAll();
    assert.deepEqual(resources.map((d) => d.user), ["u1"]);
    // A prefix of the key: every user of tenant t1, through the change feed (for which the SDK
    // turns the prefix into an EPK range itself) and by the WHERE clause (as the docs advise).
    const prefixFeed = await drainChangeFeed(tree.items.getChangeFeedIterator({ changeFeedStartFrom: ChangeFeedStartFrom.Beginning(["t1"]) }));
    assert.deepEqual(prefixFeed.docs.map((d) => [d.tenant, d.user]).sort(), [["t1", "u1"], ["t1", "u2"]], JSON.stringify(prefixFeed.docs));
    const fullFeed = await drainChangeFeed(tree.items.getChangeFeedIterator({ changeFeedStartFrom: ChangeFeedStartFrom.Beginning(["t2", "u1"]) }));
    assert.deepEqual(fullFeed.docs.map((d) => [d.tenant, d.user]), [["t2", "u1"]], JSON.stringify(fullFeed.docs));
    ({ resources } = await tree.items.query("SELECT * FROM c WHERE STARTSWITH(c.tenant, 't1')").fetchAll());
    assert.deepEqual(resources.map((d) => d.user).sort(), ["u1", "u2"]);
    await t.test("WHERE c.tenant = 't1' (an equality on the first level of the key alone)", async () => {
      for (const query of [
        { query: "SELECT * FROM c WHERE c.tenant = @t", parameters: [{ name: "@t", value: "t1" }] },
        "SELECT * FROM c WHERE c.tenant IN ('t1')",
        "SELECT * FROM c WHERE c.tenant = 't1' OR c.tenant = 't3'",
      ]) {
        const { resources: found } = await tree.items.query(query).fetchAll();
        assert.deepEqual(found.map((d) => d.user).sort(), ["u1", "u2"], JSON.stringify(query));
      }
    });
    const response = await tree.items.query("SELECT * FROM c WHERE c.id = '1'").fetchAll();
    assert.deepEqual(response.resources.map((d) => [d.tenant, d.user]).sort(), [["t1", "u1"], ["t1", "u2"]]);
    assert.ok(response.requestCharge > 0, JSON.stringify(response.headers));

    // Items without a value for the partition key path live in the "none" partition.
    const { container: plainContainer } = await db.containers.create({ id: "plain", partitionKey: { paths: ["/pk"] } });
    await plainContainer.items.create({ id: "nopk", v: 1 });
    const none = new PartitionKeyBuilder().addNoneValue().build();
    assert.equal((await plainContainer.item("nopk", none).read()).resource?.v, 1);
    assert.equal((await plainContainer.item("nopk", "x").read()).statusCode, 404);
    // A null value is a partition of its own.
    await plainContainer.items.create({ id: "nullpk", pk: null, v: 2 });
    assert.equal((await plainContainer.item("nullpk", null).read()).resource?.v, 2);

    // TTL: the container's default, and an item's own (-1: never).
    const { container: ttl, resource: ttlDefinition } = await db.containers.create({ id: "ttl", partitionKey: { paths: ["/pk"] }, defaultTtl: 1 });
    assert.equal(ttlDefinition.defaultTtl, 1);
    await ttl.items.create({ id: "short", pk: "a" });
    await ttl.items.create({ id: "kept", pk: "a", ttl: -1 });
    await sleep(2200);
    assert.equal((await ttl.item("short", "a").read()).statusCode, 404);
    ({ resources } = await ttl.items.readAll().fetchAll());
    assert.deepEqual(resources.map((d) => d.id), ["kept"]);

    // Error bodies as Cosmos writes them.
    let error = await rejects(db.container("missing").read());
    assert.equal(error.code, 404, cosmosError(error));
    error = await rejects(db.container("missing").items.create({ id: "1", pk: "a" }));
    assert.equal(error.code, 404, cosmosError(error));
    error = await rejects(db.containers.create({ id: "tree", partitionKey: { paths: ["/pk"] } }));
    assert.equal(error.code, 409, cosmosError(error));
    error = await rejects(plainContainer.items.query("SELECT * FROM c WHERE").fetchAll());
    assert.equal(error.code, 400, cosmosError(error));
    assert.ok(error.body?.message, cosmosError(error));
  }));

  test("paging: fetchNext with maxItemCount, and a continuationToken resuming a query in a new iterator", logged(async () => {
    const { container } = await db.containers.create({ id: "paging", partitionKey: { paths: ["/pk"] } });
    for (let i = 0; i < 9; i += 1) {
      await container.items.create({ id: `i${i}`, pk: i % 3 === 0 ? "a" : "b", n: i });
    }
    // Cross-partition ORDER BY, two a page.
    const iterator = container.items.query("SELECT c.id, c.n FROM c ORDER BY c.n DESC", { maxItemCount: 2 });
    const pages = [];
    while (iterator.hasMoreResults()) {
      const page = await iterator.fetchNext();
      if (page.resources.length > 0) pages.push(page.resources.map((d) => d.n));
    }
    assert.ok(pages.every((p) => p.length <= 2) && pages.length >= 5, JSON.stringify(pages));
    assert.deepEqual(pages.flat(), [8, 7, 6, 5, 4, 3, 2, 1, 0], JSON.stringify(pages));

    // One partition: a page's continuationToken carries on in another iterator (another process could).
    const query = { query: "SELECT VALUE c.n FROM c WHERE c.n >= @min ORDER BY c.n", parameters: [{ name: "@min", value: 1 }] };
    const first = await container.items.query(query, { partitionKey: "b", maxItemCount: 2 }).fetchNext();
    assert.deepEqual(first.resources, [1, 2]);
    assert.ok(first.continuationToken, JSON.stringify(first.headers));
    const seen = [...first.resources];
    let token = first.continuationToken;
    while (token) {
      const page = await container.items.query(query, { partitionKey: "b", maxItemCount: 2, continuationToken: token }).fetchNext();
      seen.push(...page.resources);
      token = page.continuationToken;
    }
    assert.deepEqual(seen, [1, 2, 4, 5, 7, 8]);
    // Across partitions, ORDER BY too: each page resumed from the last one's token.
    const ordered = "SELECT c.id, c.n FROM c ORDER BY c.n DESC";
    const resumedPages = [];
    let next = await container.items.query(ordered, { maxItemCount: 2 }).fetchNext();
    resumedPages.push(next.resources.map((d) => d.n));
    while (next.continuationToken && resumedPages.length < 20) {
      next = await container.items.query(ordered, { maxItemCount: 2, continuationToken: next.continuationToken }).fetchNext();
      resumedPages.push(next.resources.map((d) => d.n));
    }
    assert.deepEqual(resumedPages.flat(), [8, 7, 6, 5, 4, 3, 2, 1, 0], JSON.stringify(resumedPages));

    // readAll pages too.
    const all2 = container.items.readAll({ maxItemCount: 4 });
    const sizes = [];
    while (all2.hasMoreResults()) {
      const page = await all2.fetchNext();
      if (page.resources.length > 0) sizes.push(page.resources.length);
    }
    assert.equal(sizes.reduce((a, b) => a + b, 0), 9, JSON.stringify(sizes));
    assert.ok(sizes.every((s) => s <= 4), JSON.stringify(sizes));
  }));

  test("change feed: getChangeFeedIterator from Beginning(), its continuation, Now(), and one partition key", logged(async () => {
    const { container } = await db.containers.create({ id: "feed", partitionKey: { paths: ["/pk"] } });
    for (let i = 0; i < 5; i += 1) {
      await container.items.upsert({ id: String(i), pk: `p${i % 2}`, v: 0 });
    }
    await container.items.upsert({ id: "0", pk: "p0", v: 1 }); // one change per item: its latest version
    const fromNow = container.items.getChangeFeedIterator({ changeFeedStartFrom: ChangeFeedStartFrom.Now() });
    assert.deepEqual((await drainChangeFeed(fromNow)).docs, []);

    const first = await drainChangeFeed(container.items.getChangeFeedIterator({ changeFeedStartFrom: ChangeFeedStartFrom.Beginning() }));
    assert.deepEqual(first.docs.map((d) => [d.id, d.v]).sort(), [["0", 1], ["1", 0], ["2", 0], ["3", 0], ["4", 0]], JSON.stringify(first.docs));
    assert.ok(first.continuation, "a continuation token");
    const resumed = () => container.items.getChangeFeedIterator({ changeFeedStartFrom: ChangeFeedStartFrom.Continuation(first.continuation) });
    assert.deepEqual((await drainChangeFeed(resumed())).docs, []);
    await container.items.upsert({ id: "9", pk: "p1" });
    assert.deepEqual((await drainChangeFeed(resumed())).docs.map((d) => d.id), ["9"]);
    // The iterator started at Now() sees the change made after it began.
    assert.deepEqual((await drainChangeFeed(fromNow)).docs.map((d) => d.id), ["9"]);

    // One partition's feed.
    const only = await drainChangeFeed(container.items.getChangeFeedIterator({ changeFeedStartFrom: ChangeFeedStartFrom.Beginning("p1") }));
    assert.deepEqual(only.docs.map((d) => d.id).sort(), ["1", "3", "9"], JSON.stringify(only.docs));
    // maxItemCount pages the feed.
    const paged = container.items.getChangeFeedIterator({ changeFeedStartFrom: ChangeFeedStartFrom.Beginning(), maxItemCount: 2 });
    const sizes = [];
    for (;;) {
      const response = await paged.readNext();
      if (response.statusCode === 304) break;
      sizes.push(response.result.length);
    }
    assert.equal(sizes.reduce((a, b) => a + b, 0), 6, JSON.stringify(sizes));
    assert.ok(sizes.every((s) => s <= 2), JSON.stringify(sizes));

    // The same on a version-1 key (what a container made without a version has): the SDK hashes
    // the key the old way, and the server must agree.
    const { container: old } = await db.containers.create({ id: "feed-v1", partitionKey: { paths: ["/pk"], version: 1 } });
    const keys = ["p0", 7, 2.5];
    for (let i = 0; i < 6; i += 1) {
      await old.items.upsert({ id: String(i), pk: keys[i % 3], v: i });
    }
    for (const [index, key] of keys.entries()) {
      const feed = await drainChangeFeed(old.items.getChangeFeedIterator({ changeFeedStartFrom: ChangeFeedStartFrom.Beginning(key) }));
      assert.deepEqual(feed.docs.map((d) => d.id).sort(), [String(index), String(index + 3)], JSON.stringify(feed.docs));
    }
  }));

  // Cosmos's documented examples (learn.microsoft.com/azure/cosmos-db/nosql/query/group-by and
  // .../join): the items and the results as the pages give them, through the SDK across partitions.
  const EMPLOYEES = [
    { id: "3548979698", name: "Jordan Mitchell", capabilities: { softwareDevelopment: "python", mediaTrained: true }, team: "Cloud software engineering" },
    { id: "4228924547", name: "Mikaela Lee", capabilities: { softwareDevelopment: "javascript", mediaTrained: false }, team: "Cloud software engineering" },
    { id: "2941063066", name: "Graham Barnes", capabilities: { softwareDevelopment: "c-sharp", mediaTrained: true }, team: "Cloud software engineering" },
    { id: "9318573296", name: "Hayden Cook", capabilities: { softwareDevelopment: "javascript", mediaTrained: true }, team: "Cloud software engineering" },
    { id: "3601062997", name: "Morgan Connors", capabilities: { mediaTrained: true }, team: "Cloud software engineering" },
    { id: "7074932233", name: "Devon Torres", capabilities: { softwareDevelopment: "python", mediaTrained: false }, team: "Cloud software engineering" },
    { id: "3798545532", name: "Sam Centrell", capabilities: { softwareDevelopment: "javascript", mediaTrained: true }, team: "Cloud software engineering" },
  ];
  const PRODUCTS = [
    {
      id: "ffffffff-5555-6666-7777-aaaaaaaaaaaa", categoryName: "Sleeping Bags", sku: "maresse-sleeping-bag-65503",
      tags: [{ slug: "bag-shape-mummy", name: "Bag Shape: Mummy" }, { slug: "bag-insulation-down-fill", name: "Bag Insulation: Down Fill" }],
    },
    {
      id: "c2c2c2c2-dddd-eeee-ffff-a3a3a3a3a3a3", categoryName: "Sleeping Bags", sku: "vareno-sleeping-bag-65508",
      tags: [
        { slug: "bag-insulation-synthetic-fill", name: "Bag Insulation: Synthetic Fill" },
        { slug: "color-group-yellow", name: "Color Group: Yellow" }, { slug: "bag-shape-mummy", name: "Bag Shape: Mummy" },
      ],
    },
  ];

  test("queries: the documented GROUP BY, JOIN, ORDER BY, OFFSET LIMIT, TOP, DISTINCT and aggregates across partitions", logged(async () => {
    const { container: employees } = await db.containers.create({ id: "employees", partitionKey: { paths: ["/id"] } });
    for (const doc of EMPLOYEES) await employees.items.create(doc);
    const { container: products } = await db.containers.create({ id: "products", partitionKey: { paths: ["/categoryName"] } });
    for (const doc of PRODUCTS) await products.items.create(doc);
    const query = async (container, text, parameters) => (await container.items.query(parameters ? { query: text, parameters } : text).fetchAll()).resources;

    const grouped = await query(employees, "SELECT COUNT(1) AS trainedEmployees, e.capabilities.softwareDevelopment AS developmentLang "
      + "FROM employees e WHERE e.team = @team GROUP BY e.capabilities.softwareDevelopment", [{ name: "@team", value: "Cloud software engineering" }]);
    assert.deepEqual(grouped.sort((a, b) => (a.developmentLang ?? "").localeCompare(b.developmentLang ?? "")), [
      { trainedEmployees: 1 }, { trainedEmployees: 1, developmentLang: "c-sharp" },
      { trainedEmployees: 3, developmentLang: "javascript" }, { trainedEmployees: 2, developmentLang: "python" },
    ], JSON.stringify(grouped));
    // Without ORDER BY, Cosmos promises no order (the docs show insertion order): compare sorted.
    const joined = await query(products, "SELECT p.sku, t.name AS tag FROM products p JOIN t IN p.tags "
      + "WHERE p.categoryName = \"Sleeping Bags\" AND t.slug = \"bag-shape-mummy\"");
    assert.deepEqual(joined.sort((a, b) => a.sku.localeCompare(b.sku)), [
      { sku: "maresse-sleeping-bag-65503", tag: "Bag Shape: Mummy" }, { sku: "vareno-sleeping-bag-65508", tag: "Bag Shape: Mummy" },
    ]);
    const trained = "SELECT VALUE e.name FROM e WHERE e.capabilities.softwareDevelopment IN ('python', 'c-sharp') ORDER BY e.name";
    assert.deepEqual(await query(employees, trained), ["Devon Torres", "Graham Barnes", "Jordan Mitchell"]);
    assert.deepEqual(await query(employees, `${trained} OFFSET 1 LIMIT 1`), ["Graham Barnes"]);
    assert.deepEqual(await query(employees, "SELECT TOP 2 VALUE e.id FROM e ORDER BY e.capabilities.mediaTrained DESC, e.id ASC"), ["2941063066", "3548979698"]);
    assert.deepEqual(await query(employees, "SELECT DISTINCT VALUE e.capabilities.mediaTrained FROM e ORDER BY e.capabilities.mediaTrained"), [false, true]);
    assert.deepEqual(await query(employees, "SELECT VALUE COUNT(1) FROM e WHERE NOT IS_DEFINED(e.capabilities.softwareDevelopment)"), [1]);
    assert.deepEqual(await query(employees, "SELECT VALUE e.name FROM e WHERE e.name LIKE 'M%' ORDER BY e.name"), ["Mikaela Lee", "Morgan Connors"]);
    const [stats] = await query(employees, "SELECT COUNT(1) AS n, MIN(e.name) AS first, MAX(e.name) AS last FROM e");
    assert.deepEqual(stats, { n: 7, first: "Devon Torres", last: "Sam Centrell" });
    // A malformed query is a 400.
    const error = await rejects(query(employees, "SELECT * FROM e WHERE e.id = "));
    assert.equal(error.code, 400, cosmosError(error));
  }));
});

// ------------------------------------------------------------------------------------------------

describe("@azure/arm-cosmosdb: the control plane", () => {
  test("account, databases and containers read back; built-in data roles listed; a container in a missing database is 404", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const account = await createAccount(rg);
      assert.equal(account.provisioningState, "Succeeded");
      assert.equal(account.disableLocalAuth, false);
      const got = await cosmos.databaseAccounts.get(rg, account.name);
      assert.equal(got.id, account.id);
      assert.equal(got.documentEndpoint, account.documentEndpoint);
      const byGroup = await all(cosmos.databaseAccounts.listByResourceGroup(rg));
      assert.deepEqual(byGroup.map((a) => a.name), [account.name]);

      const database = await createDatabase(rg, account.name, "db");
      assert.equal(database.resource?.id, "db");
      const container = await createContainer(rg, account.name, "db", "tree", ["/tenant", "/user"]);
      assert.deepEqual(container.resource?.partitionKey?.paths, ["/tenant", "/user"]);
      assert.equal(container.resource?.partitionKey?.kind, "MultiHash");
      assert.deepEqual((await all(cosmos.sqlResources.listSqlDatabases(rg, account.name))).map((d) => d.name), ["db"]);
      assert.equal((await cosmos.sqlResources.getSqlContainer(rg, account.name, "db", "tree")).resource?.id, "tree");
      const roles = await all(cosmos.sqlResources.listSqlRoleDefinitions(rg, account.name));
      assert.deepEqual(roles.map((r) => [r.name, r.roleName]).sort(), [
        [READER, "Cosmos DB Built-in Data Reader"], [CONTRIBUTOR, "Cosmos DB Built-in Data Contributor"],
      ], JSON.stringify(roles));

      const error = await rejects(createContainer(rg, account.name, "nodb", "c"));
      assert.equal(error.statusCode, 404, describeError(error));
      const missing = await rejects(cosmos.sqlResources.getSqlContainer(rg, account.name, "db", "nothere"));
      assert.equal(missing.statusCode, 404, describeError(missing));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("account names are unique across groups; the account and its data plane go with the group", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const account = await createAccount(rg);
      // Account names are unique (they name a host on Azure): another group cannot take this one.
      const other = await createGroup(arm);
      try {
        const error = await rejects(createAccount(other, account.name));
        assert.ok(error.statusCode === 400 || error.statusCode === 409, describeError(error));
      } finally {
        await deleteGroupQuietly(arm, other);
      }
      const client = await keyClient(rg, account);
      await client.databases.create({ id: "db" });
      await timed(arm.resource.resourceGroups.beginDeleteAndWait(rg));
      const gone = await rejects(cosmos.databaseAccounts.get(rg, account.name));
      assert.equal(gone.statusCode, 404, describeError(gone));
      const error = await rejects(client.database("db").read());
      assert.ok(error.code === 401 || error.code === 404, cosmosError(error));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});
