// Issue 19: ARM's paged lists (`nextLink` with `$skiptoken`) followed by the JavaScript pagers:
// @azure/arm-msi (identities by group and subscription), @azure/arm-resources (a group's
// resources, with `top` as the page size) and @azure/arm-authorization (role assignments).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { ROLES, logged, startServer } from "../lib/support.mjs";
import { all, armClients, createGroup, deleteGroupQuietly } from "../lib/arm.mjs";

let server;
let arm;
let group;
const created = new Set();
before(async () => {
  server = await startServer();
  arm = await armClients(server);
  group = await createGroup(arm);
  // 2 500 identities, eight requests at a time.
  const names = Array.from({ length: 2500 }, (_, i) => `jspg${String(i).padStart(5, "0")}`);
  for (let i = 0; i < names.length; i += 8) {
    const batch = await Promise.all(
      names.slice(i, i + 8).map((name) => arm.msi.userAssignedIdentities.createOrUpdate(group, name, { location: "westus" })),
    );
    for (const identity of batch) created.add(identity.id.toLowerCase());
  }
});
after(async () => {
  if (arm && group) await deleteGroupQuietly(arm, group);
  await server?.stop();
});

describe("paged lists", () => {
  test("@azure/arm-msi lists 2 500 identities exactly once, by group and by subscription", logged(async () => {
    const byGroup = (await all(arm.msi.userAssignedIdentities.listByResourceGroup(group))).map((i) => i.id.toLowerCase());
    assert.equal(byGroup.length, 2500);
    assert.deepEqual(new Set(byGroup), created);
    const bySub = (await all(arm.msi.userAssignedIdentities.listBySubscription())).map((i) => i.id.toLowerCase());
    assert.equal(bySub.length, new Set(bySub).size, "no identity twice");
    for (const id of created) assert.ok(bySub.includes(id), id);
  }));

  test("@azure/arm-resources pages a group's resources by `top` and by ARM's page of 1000", logged(async () => {
    const pages = [];
    for await (const page of arm.resource.resources.listByResourceGroup(group, { top: 900 }).byPage()) {
      pages.push(page.length);
    }
    assert.deepEqual(pages, [900, 900, 700]);
    const whole = [];
    for await (const page of arm.resource.resources.listByResourceGroup(group).byPage()) {
      whole.push(page.length);
    }
    assert.deepEqual(whole, [1000, 1000, 500]);
  }));

  test("@azure/arm-authorization lists every role assignment under a group once", logged(async () => {
    const scope = server.groupId(group);
    const principal = arm.objectId;
    const identities = [...created].slice(0, 60);
    const names = new Set();
    for (let i = 0; i < identities.length; i += 8) {
      const made = await Promise.all(identities.slice(i, i + 8).map((id) =>
        arm.authorization.roleAssignments.create(id, randomUUID(), {
          roleDefinitionId: `/subscriptions/${server.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${ROLES.Reader}`,
          principalId: principal,
          principalType: "ServicePrincipal",
        })));
      for (const assignment of made) names.add(assignment.name);
    }
    const listed = (await all(arm.authorization.roleAssignments.listForScope(scope))).map((a) => a.name);
    assert.equal(listed.length, new Set(listed).size, "no assignment twice");
    for (const name of names) assert.ok(listed.includes(name), name);
  }));
});
