// The Cosmos DB workload "on the VM" (issue 17, seed 001), the twin of tests/py/workloads/cosmos.py:
// unmodified @azure/cosmos with a managed identity (@azure/identity's ManagedIdentityCredential or
// DefaultAzureCredential) or an account key, and nothing but the environment `openmi vm run` gives
// it. Each step's outcome is recorded, never thrown, and the whole is printed as one JSON document:
// {"steps": {name: {"ok": result} | {"error": {...}}}}.
//
// The spec (argv[2], JSON): endpoint, database, container, credential ("managed" | "default" |
// "key"), key, client_id, role ("writer" | "reader"), prefix (item ids of this run), seed_id and
// seed_pk (the item a reader reads), account_scope (also ask for a token for the scope the SDK
// derives from the endpoint, `${endpoint without its last /}/.default`, and read with only that),
// tokens (a list of scopes: only get the credential's token for each, as steps `token:<scope>`,
// for the test process to hand to its own clients, as the Python suite takes an agent's tokens).
//
// @azure/cosmos answers a point read of a missing item with a 404 *response* (Item.read swallows
// the ErrorResponse); the workload records it as the error it is, so the shape matches Python's.

import { CosmosClient } from "@azure/cosmos";
import { DefaultAzureCredential, ManagedIdentityCredential } from "@azure/identity";

const spec = JSON.parse(process.argv[2] ?? "{}");
const steps = {};

function errorOf(error) {
  if (typeof error?.code === "number") {
    return {
      status: error.code,
      substatus: error.substatus ?? null,
      message: String(error.body?.message ?? error.message ?? "").slice(0, 1500),
    };
  }
  return { status: null, type: error?.name ?? typeof error, message: String(error?.message ?? error).slice(0, 1500) };
}

async function step(name, fn) {
  try {
    const value = await fn();
    steps[name] = { ok: value === undefined ? null : value };
  } catch (error) {
    steps[name] = { error: errorOf(error) };
  }
}

function clean(doc) {
  return Object.fromEntries(Object.entries(doc).filter(([key]) => !key.startsWith("_")));
}

/** A point read; the SDK's 404 response becomes the error it stands for. */
async function readItem(container, id, partitionKey) {
  const response = await container.item(id, partitionKey).read();
  if (response.statusCode >= 400) {
    throw Object.assign(new Error(`point read answered ${response.statusCode}`), {
      code: response.statusCode,
      substatus: response.substatus,
    });
  }
  return response;
}

async function main() {
  let credential;
  if (spec.credential === "default") {
    credential = new DefaultAzureCredential(spec.client_id ? { managedIdentityClientId: spec.client_id } : {});
  } else if (spec.credential !== "key") {
    credential = new ManagedIdentityCredential(spec.client_id ? { clientId: spec.client_id } : {});
  }
  if (spec.tokens && credential) {
    for (const scope of spec.tokens) await step(`token:${scope}`, async () => (await credential.getToken(scope)).token);
    return;
  }
  const client = new CosmosClient(credential ? { endpoint: spec.endpoint, aadCredentials: credential } : { endpoint: spec.endpoint, key: spec.key });
  try {
    await runSteps(client);
  } finally {
    client.dispose();
  }
  if (spec.account_scope && credential) await accountScopeSteps(credential);
}

/**
 * @azure/cosmos asks first for `${endpoint}/.default` (ClientContext.js: sanitizeEndpoint of the
 * whole endpoint, path included) and falls back to https://cosmos.azure.com/.default only when
 * the token error names AADSTS500011; with `aadScope` set it asks for that scope alone.
 */
async function accountScopeSteps(credential) {
  const scope = `${new URL(spec.endpoint).href.replace(/\/$/, "")}/.default`;
  await step("account_scope_token", async () => {
    const { token } = await credential.getToken(scope);
    return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8")).aud;
  });
  const scoped = new CosmosClient({ endpoint: spec.endpoint, aadCredentials: credential, aadScope: scope });
  try {
    await step("account_scope_read", async () => (await scoped.database(spec.database).container(spec.container).read()).resource.id);
  } finally {
    scoped.dispose();
  }
}

async function runSteps(client) {
  const container = client.database(spec.database).container(spec.container);
  const prefix = spec.prefix;
  const writer = (spec.role ?? "writer") === "writer";
  await step("read_container", async () => (await container.read()).resource.id);

  if (writer) {
    await step("create", async () => clean((await container.items.create({ id: `${prefix}-1`, pk: "a", n: 1, tags: ["x"] })).resource));
    await step("create_conflict", async () => (await container.items.create({ id: `${prefix}-1`, pk: "a" })).resource.id);
    // Management operations are ARM's with an Entra token, as on Azure (403, substatus 5300).
    await step("create_database", async () => (await client.databases.create({ id: `${prefix}-db` })).resource.id);
    await step("upsert_new", async () => clean((await container.items.upsert({ id: `${prefix}-2`, pk: "b", n: 2 })).resource));
    await step("upsert_existing", async () => clean((await container.items.upsert({ id: `${prefix}-2`, pk: "b", n: 20 })).resource));
    for (let i = 3; i < 8; i += 1) {
      await step(`create_${i}`, async () => (await container.items.create({ id: `${prefix}-${i}`, pk: "ab"[i % 2], n: i })).resource.id);
    }
    await step("read", async () => clean((await readItem(container, `${prefix}-1`, "a")).resource));
    await step("read_wrong_partition", async () => (await readItem(container, `${prefix}-1`, "b")).resource);
    await step("patch", async () => clean((await container.item(`${prefix}-1`, "a").patch([
      { op: "set", path: "/color", value: "red" },
      { op: "incr", path: "/n", value: 5 },
      { op: "add", path: "/tags/-", value: "y" },
      { op: "remove", path: "/tags/0" },
    ])).resource));

    await step("replace_if_match", async () => {
      const current = (await readItem(container, `${prefix}-1`, "a")).resource;
      const item = container.item(current.id, "a");
      const fresh = (await item.replace({ ...clean(current), n: 100 }, { accessCondition: { type: "IfMatch", condition: current._etag } })).resource;
      const outcome = { replaced: fresh.n, etag_changed: fresh._etag !== current._etag };
      try {
        await item.replace({ ...clean(current), n: 0 }, { accessCondition: { type: "IfMatch", condition: current._etag } });
        outcome.stale = "accepted";
      } catch (error) {
        outcome.stale = error?.code ?? String(error);
      }
      return outcome;
    });
  }

  await step("query_paged", async () => {
    const iterator = container.items.query({
      query: "SELECT c.id, c.n FROM c WHERE STARTSWITH(c.id, @prefix) AND c.n >= @min ORDER BY c.n DESC",
      parameters: [{ name: "@prefix", value: prefix }, { name: "@min", value: 2 }],
    }, { maxItemCount: 2 });
    const pages = [];
    while (iterator.hasMoreResults()) {
      const { resources } = await iterator.fetchNext();
      if (resources.length > 0) pages.push(resources);
    }
    return pages;
  });
  await step("query_partition", async () => {
    const { resources } = await container.items.query(
      { query: "SELECT * FROM c WHERE STARTSWITH(c.id, @p)", parameters: [{ name: "@p", value: prefix }] },
      { partitionKey: "b" },
    ).fetchAll();
    return resources.map((d) => d.id).sort();
  });
  await step("query_count", async () => (await container.items.query({
    query: "SELECT VALUE COUNT(1) FROM c WHERE STARTSWITH(c.id, @p)", parameters: [{ name: "@p", value: prefix }],
  }).fetchAll()).resources);
  await step("read_seed", async () => clean((await readItem(container, spec.seed_id ?? `${prefix}-1`, spec.seed_pk ?? "a")).resource));

  if (writer) {
    await step("delete", async () => {
      await container.item(`${prefix}-2`, "b").delete();
      return null;
    });
    await step("read_deleted", async () => (await readItem(container, `${prefix}-2`, "b")).resource);
  } else {
    await step("create", async () => (await container.items.create({ id: `${prefix}-r`, pk: "a" })).resource.id);
    await step("upsert", async () => (await container.items.upsert({ id: spec.seed_id, pk: spec.seed_pk, n: -1 })).resource.id);
    await step("delete", async () => {
      await container.item(spec.seed_id, spec.seed_pk).delete();
      return null;
    });
  }
}

await step("client", main);
console.log(JSON.stringify({ steps }));
