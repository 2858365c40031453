// Faults (issue 20), the twin of tests/py/test_faults.py: a server killed with SIGKILL while 8
// @azure/arm-msi clients write loses no write it acknowledged, and nothing is half-written (every
// identity found after the restart has its service principal), on SQLite and PostgreSQL.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ManagedServiceIdentityClient } from "@azure/arm-msi";

import { bootstrapToken, logged, startServer } from "../lib/support.mjs";
import { all, armClients, clientOptions, createGroup } from "../lib/arm.mjs";

const WRITERS = 8;

test("kill -9 during concurrent writes from 8 clients loses no acknowledged write", logged(async () => {
  const server = await startServer();
  const arm = await armClients(server);
  const rg = await createGroup(arm);
  // No retries: a write either answers or fails once the server is gone.
  const msi = new ManagedServiceIdentityClient(arm.credential, server.subscriptionId, { ...clientOptions(server), retryOptions: { maxRetries: 0 } });
  const acknowledged = new Map();
  let attempted = 0;
  let stopped = false;
  const writer = async (number) => {
    for (let n = 0; !stopped; n += 1) {
      const name = `w${number}-${n}`;
      attempted += 1;
      try {
        const identity = await msi.userAssignedIdentities.createOrUpdate(rg, name, { location: "westus", tags: { n: String(n) } });
        acknowledged.set(name, identity.principalId);
      } catch {
        return; // the server is gone
      }
    }
  };
  const writers = Array.from({ length: WRITERS }, (_, number) => writer(number));
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const exited = new Promise((resolve) => server.proc.once("exit", resolve));
  server.proc.kill("SIGKILL");
  await exited;
  stopped = true;
  await Promise.all(writers);
  assert.ok(acknowledged.size > 20, `only ${acknowledged.size} writes acknowledged before the kill`);

  const schema = server.schema;
  server.schema = null;
  const again = await startServer({ dataDir: server.dataDir, databaseUrl: server.databaseUrl });
  again.schema = schema;
  try {
    const after = await armClients(again);
    const found = new Map((await all(after.msi.userAssignedIdentities.listByResourceGroup(rg))).map((i) => [i.name, i]));
    const lost = [...acknowledged.keys()].filter((name) => !found.has(name));
    const changed = [...acknowledged].filter(([name, principal]) => found.has(name) && found.get(name).principalId !== principal);
    console.log(`kill -9 under ${WRITERS} writers: ${attempted} PUTs sent, ${acknowledged.size} acknowledged, ${found.size} found after restart, ${lost.length} lost`);
    assert.deepEqual(lost, [], "acknowledged writes lost");
    assert.deepEqual(changed, [], "identities whose principal changed");
    const graph = await bootstrapToken(again, "https://graph.microsoft.com/.default");
    for (const identity of found.values()) {
      const principal = await again.request("GET", `/v1.0/servicePrincipals/${identity.principalId}`, { token: graph });
      assert.equal(principal.status, 200, `${identity.name}: ${principal.text}`);
      assert.equal(principal.json.appId, identity.clientId);
    }
  } finally {
    await again.stop();
  }
}));
