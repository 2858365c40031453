// Issue 19: ARM's paged lists (`nextLink` with `$skiptoken`) followed by the JavaScript pagers:
// @azure/arm-msi (identities by group and subscription), @azure/arm-resources (a group's
// resources, with `top` as the page size) and @azure/arm-authorization (role assignments); bad
// paging parameters refused as ARM refuses them, and a listing that changes between its pages
// (the twins of tests/py/test_paging.py).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { AuthorizationManagementClient } from "@azure/arm-authorization";

import { ROLES, armErrorBody, createServicePrincipal, describeError, logged, rejects, startServer } from "../lib/support.mjs";
import { all, armClients, clientOptions, createGroup, deleteGroupQuietly } from "../lib/arm.mjs";

const API_MSI = "2023-01-31";

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

describe("paging parameters and a listing that changes between pages", () => {
  let rg;
  before(async () => {
    rg = await createGroup(arm);
  });
  after(async () => {
    if (rg) await deleteGroupQuietly(arm, rg);
  });

  function assertInvalidParameter(error, what) {
    assert.equal(error.statusCode, 400, `${what}: ${describeError(error)}`);
    const body = armErrorBody(error);
    assert.equal(body.code, "InvalidParameter", `${what}: ${describeError(error)}`);
    assert.ok(body.message.includes("$top") || body.message.includes("$skiptoken"), `${what}: ${body.message}`);
  }

  test("bad $top and $skiptoken are refused with InvalidParameter", logged(async () => {
    // The identities list of tests/py/test_paging.py, through @azure/arm-msi's pager resumed with
    // byPage({ continuationToken }): for these clients the token is the nextLink to GET.
    const base = `${server.url}${server.groupId(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version=${API_MSI}`;
    for (const query of ["&$top=0", "&$top=1001", "&$top=x", "&$skiptoken=%%%"]) {
      const pages = arm.msi.userAssignedIdentities.listByResourceGroup(rg).byPage({ continuationToken: base + query });
      assertInvalidParameter(await rejects(pages.next()), query);
    }
    // The typed options: @azure/arm-resources' `top` (a number, so `x` cannot be sent) and
    // @azure/arm-authorization's `skipToken` (sent as `$skipToken`; ARM's names are case-insensitive).
    for (const top of [0, 1001]) {
      assertInvalidParameter(await rejects(all(arm.resource.resources.listByResourceGroup(rg, { top }))), `top ${top}`);
    }
    const bad = await rejects(all(arm.authorization.roleAssignments.listForScope(server.groupId(rg), { skipToken: "%%%" })));
    assertInvalidParameter(bad, "skipToken %%%");
  }));

  test("role assignments created and deleted during a paged listing (listForScope().byPage())", logged(async () => {
    const scope = server.groupId(rg);
    const principals = [];
    for (let i = 0; i < 3; i += 1) principals.push((await createServicePrincipal(server)).objectId);
    // 150 assignments under the group: one role per principal and scope, so three principals on
    // each of 50 identities.
    const identities = [];
    for (let i = 0; i < 50; i += 8) {
      const batch = await Promise.all(Array.from({ length: Math.min(8, 50 - i) }, (_, k) =>
        arm.msi.userAssignedIdentities.createOrUpdate(rg, `jspa${String(i + k).padStart(3, "0")}`, { location: "westus" })));
      identities.push(...batch.map((identity) => identity.id));
    }
    const assign = (at, principalId) => arm.authorization.roleAssignments.create(at, randomUUID(), {
      roleDefinitionId: server.roleDefinitionId("Reader"), principalId, principalType: "ServicePrincipal",
    });
    const jobs = identities.flatMap((id) => principals.map((principalId) => [id, principalId]));
    const scopes = new Map();
    for (let i = 0; i < jobs.length; i += 8) {
      const made = await Promise.all(jobs.slice(i, i + 8).map(([id, principalId]) => assign(id, principalId)));
      made.forEach((assignment, k) => scopes.set(assignment.name, jobs[i + k][0]));
    }
    const names = new Set(scopes.keys());
    assert.equal(names.size, 150);

    // Pages of 40: the operation has no `top`, so a per-call pipeline policy adds `$top` to the
    // first request (the nextLinks carry it on).
    const paged = new AuthorizationManagementClient(arm.credential, server.subscriptionId, {
      ...clientOptions(server),
      baseUri: server.url,
      additionalPolicies: [{
        position: "perCall",
        policy: {
          name: "top-40",
          sendRequest(request, next) {
            if (!/[?&]\$top=/i.test(request.url)) request.url += `${request.url.includes("?") ? "&" : "?"}$top=40`;
            return next(request);
          },
        },
      }],
    });
    const pager = paged.roleAssignments.listForScope(scope).byPage();
    const first = await pager.next();
    assert.equal(first.done, false);
    assert.equal(first.value.length, 40);
    const seen = first.value.map((a) => a.name);
    // Mid-listing: one assignment deleted that the pager has not reached, one created.
    const unseen = [...names].filter((name) => !seen.includes(name)).sort();
    const removed = unseen.at(-1);
    await arm.authorization.roleAssignments.delete(scopes.get(removed), removed);
    const added = (await assign(scope, principals[0])).name;
    let pages = 1;
    for (let page = await pager.next(); !page.done; page = await pager.next()) {
      seen.push(...page.value.map((a) => a.name));
      pages += 1;
    }
    assert.ok(pages >= 4, `${pages} pages`);
    assert.equal(seen.length, new Set(seen).size, "no assignment is listed twice");
    assert.ok(!seen.includes(removed), "the deleted assignment is not listed");
    // Everything that existed throughout is listed; the new one may or may not be (by its name).
    for (const name of names) if (name !== removed) assert.ok(seen.includes(name), name);
    // Besides those made here, only the assignments above the group (the subscription's Owners).
    const inherited = (await all(arm.authorization.roleAssignments.listForScope(server.subscriptionScope, { filter: "atScope()" }))).map((a) => a.name);
    const known = new Set([...names, added, ...inherited]);
    for (const name of seen) assert.ok(known.has(name), `${name} listed but neither made here nor inherited`);

    // The client's own pager (ARM's page of 1000) lists every assignment exactly once.
    const listed = (await all(arm.authorization.roleAssignments.listForScope(scope))).map((a) => a.name);
    assert.equal(listed.length, new Set(listed).size);
    for (const name of [...names, added]) if (name !== removed) assert.ok(listed.includes(name), name);
  }));
});
