// Request-size and JSON-depth limits and the header and idle timeouts (issue 20, protection), the
// twin of tests/py/test_limits.py: the deployments client of @azure/arm-resources with a template
// over ARM's 4 MB (413 RequestContentTooLarge), @azure/cosmos with an item over Cosmos DB's 2 MB
// (413 RequestEntityTooLarge, also when a patch grows an item past it), raw requests for Graph,
// Entra and the agent API, a 50 MB body answered instead of reset, 10 000 `[` refused at once in
// each protocol's 400, and a slowloris and an idle keep-alive connection closed.

import assert from "node:assert/strict";
import tls from "node:tls";
import { after, before, describe, test } from "node:test";

import { CosmosDBManagementClient } from "@azure/arm-cosmosdb";
import { ResourceManagementClient as DeploymentsClient } from "@azure/arm-resources-deployments";
import { CosmosClient } from "@azure/cosmos";

import { GRAPH_SCOPE, armErrorBody, bootstrapToken, describeError, logged, rejects, sleep, startServer } from "../lib/support.mjs";
import { armClients, clientOptions, createGroup, deleteGroupQuietly, timed } from "../lib/arm.mjs";

const MB = 1024 * 1024;
const ARM_LIMIT = 4 * MB;
const COSMOS_LIMIT = 2 * MB;
const DEEP = "[".repeat(10_000);
const API = "api-version=2025-04-01";
// The timeouts of the server that tests them (seconds), and how much later a close may be seen.
const HEADER_TIMEOUT = 1;
const IDLE_TIMEOUT = 4;
const SLACK_MS = 3_000;

let server;
let timedServer;
let arm;
let armToken;
const cosmosClients = [];
before(async () => {
  server = await startServer();
  timedServer = await startServer({ extraArgs: ["--header-timeout", String(HEADER_TIMEOUT), "--idle-timeout", String(IDLE_TIMEOUT)] });
  arm = await armClients(server);
  armToken = await bootstrapToken(server);
});
after(async () => {
  for (const client of cosmosClients) client.dispose();
  await server?.stop();
  await timedServer?.stop();
});

function groupPath(name = "limits") {
  return `/subscriptions/${server.subscriptionId}/resourcegroups/${name}?${API}`;
}

/** A raw JSON request with the ARM token; `body` a string or a stream of chunks (no length). */
async function raw(method, path, body, { token = armToken, headers = {} } = {}) {
  const init = { method, headers: { "Content-Type": "application/json", ...headers }, body };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (typeof body !== "string") init.duplex = "half";
  const res = await fetch(server.url + path, init);
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // shown as text
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** A body of `total` bytes sent in 1 MB chunks (Transfer-Encoding: chunked). */
function chunks(total) {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) return controller.close();
      const size = Math.min(MB, total - sent);
      sent += size;
      controller.enqueue(new Uint8Array(size).fill(0x61));
    },
  });
}

function assertArmError(res, status, code) {
  assert.equal(res.status, status, res.text.slice(0, 500));
  assert.equal(res.json?.error?.code, code, res.text.slice(0, 500));
  assert.ok(res.json.error.message, res.text.slice(0, 500));
  return res.json.error;
}

function assertOAuthError(res, status, error) {
  assert.equal(res.status, status, res.text.slice(0, 500));
  assert.equal(res.json.error, error, res.text);
  assert.ok(res.json.error_description.startsWith(`AADSTS${res.json.error_codes[0]}: `), res.text);
  return res.json;
}

describe("request sizes, in each protocol's shape", () => {
  test("ARM: over 4 MB is 413 RequestContentTooLarge, declared or chunked; under it reaches the parser", logged(async () => {
    let error = assertArmError(await raw("PUT", groupPath(), " ".repeat(ARM_LIMIT + 1)), 413, "RequestContentTooLarge");
    assert.equal(error.message, "The request content size exceeds the maximum size of 4 MB.");
    assertArmError(await raw("PUT", groupPath(), chunks(ARM_LIMIT + MB)), 413, "RequestContentTooLarge");
    assertArmError(await raw("PUT", groupPath(), "x".repeat(ARM_LIMIT - 1)), 400, "InvalidRequestContent");
  }));

  test("a 50 MB body is answered, not reset", logged(async () => {
    assertArmError(await raw("PUT", groupPath(), "a".repeat(50 * MB)), 413, "RequestContentTooLarge");
    assertArmError(await raw("PUT", groupPath(), chunks(50 * MB)), 413, "RequestContentTooLarge");
    assert.equal((await server.request("GET", "/healthz")).status, 200);
  }));

  test("@azure/arm-resources: a deployment over 4 MB is refused with ARM's error, one under it deploys", logged(async () => {
    const deployments = new DeploymentsClient(arm.credential, server.subscriptionId, clientOptions(server));
    const rg = await createGroup(arm);
    try {
      const template = {
        $schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        contentVersion: "1.0.0.0",
        variables: { padding: "x".repeat(ARM_LIMIT + 1000) },
        resources: [],
      };
      const error = await rejects(deployments.deployments.beginCreateOrUpdateAndWait(rg, "toolarge", { properties: { mode: "Incremental", template } }));
      assert.equal(error.statusCode, 413, describeError(error));
      assert.equal(error.code, "RequestContentTooLarge", describeError(error));
      assert.match(armErrorBody(error).message ?? error.message, /maximum size of 4 MB/);
      template.variables.padding = "x".repeat(1000);
      const result = await timed(deployments.deployments.beginCreateOrUpdateAndWait(rg, "fits", { properties: { mode: "Incremental", template } }), 5_000);
      assert.equal(result.properties.provisioningState, "Succeeded");
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("Graph: over 4 MB is 413", logged(async () => {
    const token = await bootstrapToken(server, GRAPH_SCOPE);
    const error = assertArmError(await raw("POST", "/v1.0/applications", " ".repeat(4 * MB + 1), { token }), 413, "Request_BadRequest");
    assert.equal(error.message, "The request size exceeds the maximum limit.");
  }));

  test("Entra's token, device-code and authorize endpoints: over 1 MB is invalid_request", logged(async () => {
    for (const endpoint of ["oauth2/v2.0/token", "oauth2/token", "oauth2/v2.0/devicecode", "oauth2/v2.0/authorize"]) {
      const res = await raw("POST", `/${server.tenantId}/${endpoint}`, `client_id=x&padding=${"a".repeat(MB)}`, {
        token: null, headers: { "Content-Type": "application/x-www-form-urlencoded" },
      });
      const body = assertOAuthError(res, 413, "invalid_request");
      assert.match(body.error_description, /exceeds the maximum size of 1 MB/, endpoint);
    }
  }));

  test("the agent API: over 1 MB is 413 invalid_request", logged(async () => {
    const res = await raw("POST", "/openmi/agent/tokens", " ".repeat(MB + 1), { token: null });
    assert.equal(res.status, 413, res.text);
    assert.equal(res.json.error, "invalid_request");
  }));

  test("@azure/cosmos: an item over 2 MB is 413 RequestEntityTooLarge, and so is a patch growing one past it", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const cosmos = new CosmosDBManagementClient(arm.credential, server.subscriptionId, clientOptions(server));
      const account = await timed(cosmos.databaseAccounts.beginCreateOrUpdateAndWait(rg, `jslim${Date.now()}`, {
        location: "westus", kind: "GlobalDocumentDB", databaseAccountOfferType: "Standard",
        locations: [{ locationName: "westus", failoverPriority: 0, isZoneRedundant: false }],
      }));
      const keys = await cosmos.databaseAccounts.listKeys(rg, account.name);
      const client = new CosmosClient({ endpoint: account.documentEndpoint, key: keys.primaryMasterKey });
      cosmosClients.push(client);
      const { database } = await client.databases.createIfNotExists({ id: "db" });
      const { container } = await database.containers.createIfNotExists({ id: "items", partitionKey: { paths: ["/pk"] } });
      let error = await rejects(container.items.create({ id: "big", pk: "a", blob: "x".repeat(COSMOS_LIMIT) }));
      assert.equal(error.code, 413, String(error?.message).slice(0, 500));
      assert.match(String(error.body?.message ?? error.message), /Request size is too large/);
      await container.items.create({ id: "fits", pk: "a", blob: "x".repeat(COSMOS_LIMIT - 1000) });
      error = await rejects(container.item("fits", "a").patch([{ op: "add", path: "/more", value: "y".repeat(10_000) }]));
      assert.equal(error.code, 413, String(error?.message).slice(0, 500));
      const { resource } = await container.item("fits", "a").read();
      assert.equal(resource.blob.length, COSMOS_LIMIT - 1000);
      assert.equal(resource.more, undefined);

      // Raw: the shape, and nesting refused before the key is even checked.
      const path = new URL(account.documentEndpoint).pathname + "dbs/db/colls/items/docs";
      let res = await raw("POST", path, " ".repeat(COSMOS_LIMIT + 1), { token: null });
      assert.equal(res.status, 413, res.text);
      assert.equal(res.json.code, "RequestEntityTooLarge");
      assert.equal(res.headers.get("x-ms-substatus"), "0");
      res = await raw("POST", path, DEEP, { token: null });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.code, "BadRequest");
      assert.match(res.json.message, /recursion limit exceeded at line 1 column 128/);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});

describe("JSON nesting", () => {
  test("10 000 `[` (and 3 MB of them) are refused at once with each protocol's 400", logged(async () => {
    for (const body of [DEEP, "[".repeat(3 * MB)]) {
      const error = assertArmError(await raw("PUT", groupPath(), body), 400, "InvalidRequestContent");
      assert.equal(error.message, "The request content was invalid and could not be deserialized: 'recursion limit exceeded at line 1 column 128'.");
    }
    const deployment = `/subscriptions/${server.subscriptionId}/resourcegroups/limits/providers/Microsoft.Resources/deployments/deep?api-version=2024-03-01`;
    assertArmError(await raw("PUT", deployment, `{"properties": {"mode": "Incremental", "template": ${'{"a": '.repeat(5000)}}`), 400, "InvalidRequestContent");
    const graphToken = await bootstrapToken(server, GRAPH_SCOPE);
    const error = assertArmError(await raw("POST", "/v1.0/applications", DEEP, { token: graphToken }), 400, "Request_BadRequest");
    assert.match(error.message, /recursion limit exceeded/);
    const res = await raw("POST", "/openmi/agent/token", DEEP, { token: null });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error, "invalid_request");
    assert.equal((await server.request("GET", "/healthz")).status, 200);
  }));

  test("127 levels are stored and read back, the 128th is refused", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const resource = `/subscriptions/${server.subscriptionId}/resourceGroups/${rg}/providers/Microsoft.Example/things/deep?api-version=2020-01-01`;
      const nested = (levels) => `{"location": "westus", "properties": {"v": ${"[".repeat(levels)}${"]".repeat(levels)}}}`;
      assert.equal((await raw("PUT", resource, nested(125))).status, 201);
      assertArmError(await raw("PUT", resource, nested(126)), 400, "InvalidRequestContent");
      const read = await raw("GET", resource);
      assert.equal(JSON.stringify(read.json.properties.v), "[".repeat(125) + "]".repeat(125));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});

// ------------------------------------------------------------------------------------------------
// header and idle timeouts

/** A TLS connection to the timed server (HTTP/1.1) with what it has received and whether it closed. */
async function connect() {
  const socket = tls.connect({ host: "127.0.0.1", port: timedServer.port, ALPNProtocols: ["http/1.1"] });
  await new Promise((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
  const state = { socket, received: "", closedAt: null };
  socket.on("data", (data) => { state.received += data.toString("latin1"); });
  const closed = () => { state.closedAt ??= Date.now(); };
  socket.on("close", closed).on("end", closed).on("error", closed);
  return state;
}

/** Waits until the connection closes, at most `limitMs`; how long it took from `since`. */
async function closedWithin(state, since, limitMs) {
  while (state.closedAt === null && Date.now() - since < limitMs) await sleep(50);
  assert.ok(state.closedAt !== null, `the connection was still open ${limitMs} ms later`);
  return state.closedAt - since;
}

/** Waits for one complete response (with a Content-Length) on `state`; its status. */
async function response(state) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const match = /^HTTP\/1\.1 (\d+)[^]*?\r\ncontent-length: (\d+)\r\n[^]*?\r\n\r\n/i.exec(state.received);
    if (match && state.received.length >= match[0].length + Number(match[2])) {
      const body = state.received.slice(match[0].length, match[0].length + Number(match[2]));
      state.received = state.received.slice(match[0].length + Number(match[2]));
      return { status: Number(match[1]), body };
    }
    assert.ok(Date.now() < deadline && state.closedAt === null, `no response: ${state.received.slice(0, 300)}`);
    await sleep(20);
  }
}

describe("header and idle timeouts", () => {
  test("a slowloris client is closed within the header timeout, and so is one that sends nothing", logged(async () => {
    const slow = await connect();
    const started = Date.now();
    const head = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${"a".repeat(200)}\r\n\r\n`;
    for (const char of head) {
      if (slow.closedAt !== null || Date.now() - started > HEADER_TIMEOUT * 1000 + SLACK_MS) break;
      slow.socket.write(char);
      await sleep(300);
    }
    assert.ok(await closedWithin(slow, started, HEADER_TIMEOUT * 1000 + SLACK_MS) < HEADER_TIMEOUT * 1000 + SLACK_MS);
    assert.equal(slow.received, "");
    const silent = await connect();
    await closedWithin(silent, Date.now(), HEADER_TIMEOUT * 1000 + SLACK_MS);
    assert.equal((await timedServer.request("GET", "/healthz")).status, 200);
  }));

  test("an idle keep-alive connection is closed after the idle timeout, not the header timeout", logged(async () => {
    const state = await connect();
    state.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert.equal((await response(state)).status, 200);
    await sleep(HEADER_TIMEOUT * 1000 + 500);
    state.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert.equal((await response(state)).status, 200);
    await closedWithin(state, Date.now(), IDLE_TIMEOUT * 1000 + SLACK_MS);
    state.socket.destroy();
  }));

  test("a body sent in short pauses outlasts both timeouts; a stalled one is answered 408", logged(async () => {
    const path = `/subscriptions/${timedServer.subscriptionId}/resourcegroups/slow?${API}`;
    const nParts = 12;
    const slow = await connect();
    slow.socket.write(`PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${nParts}\r\n\r\n`);
    for (let part = 0; part < nParts; part += 1) {
      await sleep((HEADER_TIMEOUT * 1000) / 2);
      slow.socket.write(" ");
    }
    // The body arrived whole: no token, so ARM's 401 rather than a timeout.
    assert.equal((await response(slow)).status, 401);
    slow.socket.destroy();
    const stalled = await connect();
    stalled.socket.write(`PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nab`);
    const answer = await response(stalled);
    assert.equal(answer.status, 408);
    assert.equal(JSON.parse(answer.body).error.code, "RequestTimeout");
    stalled.socket.destroy();
  }));
});
