// Two openmi servers on one database (issue 5) with the real JavaScript clients (issue 14), the twin
// of tests/py/test_rbac_multi_server.py: a role assignment made or removed through one server with
// @azure/arm-authorization is enforced by the other within a second, for a service principal whose
// @azure/arm-resources client gets its token from, and reads through, that other server. One
// PostgreSQL schema; on SQLite, both servers on the first one's database file. Both servers' TLS
// certificates come from this run's test CA, so one NODE_EXTRA_CA_CERTS serves the clients of both.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";

import {
  BACKEND,
  armErrorBody,
  createServicePrincipal,
  describeError,
  logged,
  newDir,
  newPgSchema,
  parseAuthorizationFailed,
  rejects,
  sleep,
  startServer,
} from "../lib/support.mjs";
import { all, armClients, createGroup, deleteGroupQuietly, secretCredential } from "../lib/arm.mjs";

const PROPAGATION_MS = 1_000;
const GROUP_READ = "Microsoft.Resources/subscriptions/resourceGroups/read";

const servers = [];
const schemas = [];
after(async () => {
  for (const server of servers.splice(0)) await server.stop().catch(() => {});
  for (const schema of schemas.splice(0)) schema.drop();
});

function assertAuthorizationFailed(error, objectId, action, scope) {
  assert.equal(error.statusCode, 403, describeError(error));
  const body = armErrorBody(error);
  assert.equal(body.code, "AuthorizationFailed", describeError(error));
  const parts = parseAuthorizationFailed(body.message);
  assert.ok(parts, `AuthorizationFailed message not in Azure's form: ${body.message}`);
  assert.equal(parts.objectId, objectId);
  assert.equal(parts.client, objectId);
  assert.equal(parts.action.toLowerCase(), action.toLowerCase(), body.message);
  assert.equal(parts.scope.toLowerCase(), scope.toLowerCase(), body.message);
}

/**
 * Repeats `read()` for up to PROPAGATION_MS until it succeeds (`want` "allowed") or fails with 403
 * (`want` "denied"): { outcome, took } with the last value or error.
 */
async function pollUntil(read, want) {
  const started = Date.now();
  for (;;) {
    let outcome;
    try {
      outcome = { value: await read() };
    } catch (error) {
      if (error?.statusCode !== 403) throw error;
      outcome = { error };
    }
    const took = Date.now() - started;
    if ((want === "allowed") === ("value" in outcome)) return { ...outcome, took, reached: true };
    if (took > PROPAGATION_MS) return { ...outcome, took, reached: false };
    await sleep(20);
  }
}

describe("two servers on one database", () => {
  test("a role assignment made or removed through one server is enforced by the other within a second", logged(async () => {
    const kek = path.join(newDir("kek"), "kek.hex");
    fs.writeFileSync(kek, `${crypto.randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    const extraArgs = ["--key-encryption-key-file", kek];
    const firstDir = newDir("server");
    let databaseUrl;
    if (BACKEND === "postgres") {
      const schema = newPgSchema();
      schemas.push(schema);
      databaseUrl = schema.url;
    }
    const one = await startServer({ dataDir: firstDir, databaseUrl, extraArgs });
    servers.push(one);
    const two = await startServer({ databaseUrl: databaseUrl ?? `sqlite://${path.join(firstDir, "openmi.db")}?mode=rwc`, extraArgs });
    servers.push(two);

    const admin = await armClients(one);
    const rg = await createGroup(admin);
    try {
      const rgId = one.groupId(rg);
      const sp = await createServicePrincipal(one);
      // The directory is shared: server two issues the service principal's token itself.
      const spOnTwo = await armClients(two, secretCredential(two, sp.appId, sp.secret));
      assert.equal(spOnTwo.objectId, sp.objectId);
      const readOnTwo = () => spOnTwo.resource.resourceGroups.get(rg);
      assertAuthorizationFailed(await rejects(readOnTwo()), sp.objectId, GROUP_READ, rgId);

      // Granted through server one: server two allows it within a second.
      const assignment = await admin.authorization.roleAssignments.create(rgId, crypto.randomUUID(), {
        roleDefinitionId: one.roleDefinitionId("Reader"), principalId: sp.objectId, principalType: "ServicePrincipal",
      });
      let polled = await pollUntil(readOnTwo, "allowed");
      assert.ok(polled.reached, `server two still denies ${polled.took} ms after the grant on server one: ${describeError(polled.error)}`);
      assert.equal(polled.value.name, rg);

      // Removed through server one: server two denies within a second.
      await admin.authorization.roleAssignments.deleteById(assignment.id);
      polled = await pollUntil(readOnTwo, "denied");
      assert.ok(polled.reached, `server two still allows ${polled.took} ms after the revocation on server one`);
      assertAuthorizationFailed(polled.error, sp.objectId, GROUP_READ, rgId);

      // The other way round: granted through server two (as the one bootstrap SP of both), enforced by server one.
      const adminTwo = await armClients(two, secretCredential(two, one.clientId, one.clientSecret));
      assert.equal(adminTwo.objectId, admin.objectId);
      const name = crypto.randomUUID();
      const made = await adminTwo.authorization.roleAssignments.create(rgId, name, {
        roleDefinitionId: two.roleDefinitionId("Reader"), principalId: sp.objectId, principalType: "ServicePrincipal",
      });
      assert.equal(made.name, name);
      const spOnOne = await armClients(one, secretCredential(one, sp.appId, sp.secret));
      const readOnOne = () => spOnOne.resource.resourceGroups.get(rg);
      polled = await pollUntil(readOnOne, "allowed");
      assert.ok(polled.reached, `server one still denies ${polled.took} ms after the grant on server two: ${describeError(polled.error)}`);
      // Both servers list it.
      const listed = await all(admin.authorization.roleAssignments.listForScope(rgId, { filter: `principalId eq '${sp.objectId}'` }));
      assert.deepEqual(listed.map((a) => a.name), [name]);
      const onTwo = await all(adminTwo.authorization.roleAssignments.listForScope(rgId));
      assert.ok(onTwo.some((a) => a.name === name), JSON.stringify(onTwo.map((a) => a.name)));

      // Deleted through server two: server one denies within a second.
      await adminTwo.authorization.roleAssignments.delete(rgId, name);
      polled = await pollUntil(readOnOne, "denied");
      assert.ok(polled.reached, `server one still allows ${polled.took} ms after the revocation on server two`);
      assertAuthorizationFailed(polled.error, sp.objectId, GROUP_READ, rgId);
    } finally {
      await deleteGroupQuietly(admin, rg);
    }
  }));
});
