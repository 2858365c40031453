// Issue 19: ARM's paged lists (`nextLink` with `$skiptoken`) followed by the JavaScript pagers:
// @azure/arm-msi (identities by group and subscription), @azure/arm-resources (a group's
// resources, with `top` as the page size) and @azure/arm-authorization (role assignments); bad
// paging parameters refused as ARM refuses them, a listing that changes between its pages,
// deployments by `top` (@azure/arm-resources-deployments), role definitions by ARM's page (their
// API has no `top`), and the Cosmos DB lists, which Azure answers whole (@azure/arm-cosmosdb reads
// one page) within Cosmos DB's limits (the twins of tests/py/test_paging.py).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { AuthorizationManagementClient } from "@azure/arm-authorization";
import { CosmosDBManagementClient } from "@azure/arm-cosmosdb";
import { ResourceManagementClient as DeploymentsClient } from "@azure/arm-resources-deployments";
import { CosmosClient } from "@azure/cosmos";

import { ROLES, armErrorBody, createServicePrincipal, describeError, logged, rejects, startServer, uniqueName } from "../lib/support.mjs";
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

/** `count` jobs run eight at a time; their results in order. */
async function eightAtATime(count, job) {
  const results = [];
  for (let i = 0; i < count; i += 8) {
    results.push(...(await Promise.all(Array.from({ length: Math.min(8, count - i) }, (_, k) => job(i + k)))));
  }
  return results;
}

/** Every page of a pager, as arrays of names. */
async function pageNames(pager) {
  const pages = [];
  for await (const page of pager) pages.push(page.map((item) => item.name));
  return pages;
}

describe("deployments, role definitions and the Cosmos DB lists", () => {
  let rg;
  before(async () => {
    rg = await createGroup(arm);
  });
  after(async () => {
    if (rg) await deleteGroupQuietly(arm, rg);
  });

  test("@azure/arm-resources-deployments pages deployments by `top`, by group and by subscription", logged(async () => {
    const deployments = new DeploymentsClient(arm.credential, server.subscriptionId, clientOptions(server));
    const template = { $schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", contentVersion: "1.0.0.0", resources: [] };
    const made = await eightAtATime(60, (i) => deployments.deployments.beginCreateOrUpdateAndWait(rg, `jspgdep${String(i).padStart(3, "0")}`, {
      properties: { mode: "Incremental", template },
    }));
    assert.ok(made.every((d) => d.properties.provisioningState === "Succeeded"));
    const created = new Set(made.map((d) => d.name));
    const prefix = uniqueName("jspgsub");
    const atSub = new Set((await eightAtATime(30, (i) => deployments.deployments.beginCreateOrUpdateAtSubscriptionScopeAndWait(`${prefix}-${String(i).padStart(2, "0")}`, {
      location: "westus", properties: { mode: "Incremental", template },
    }))).map((d) => d.name));
    try {
      const pages = await pageNames(deployments.deployments.listByResourceGroup(rg, { top: 25 }).byPage());
      assert.deepEqual(pages.map((page) => page.length), [25, 25, 10]);
      const listed = pages.flat();
      assert.equal(listed.length, 60);
      assert.deepEqual(new Set(listed), created);
      assert.deepEqual((await pageNames(deployments.deployments.listByResourceGroup(rg).byPage())).map((page) => page.length), [60]);
      for (const top of [0, 1001]) {
        const error = await rejects(all(deployments.deployments.listByResourceGroup(rg, { top })));
        assert.equal(armErrorBody(error).code, "InvalidParameter", describeError(error));
      }
      const subPages = await pageNames(deployments.deployments.listAtSubscriptionScope({ top: 25 }).byPage());
      assert.ok(subPages.length >= 2 && subPages.every((page) => page.length <= 25), JSON.stringify(subPages.map((page) => page.length)));
      const subListed = subPages.flat();
      assert.equal(subListed.length, new Set(subListed).size, "no deployment twice");
      for (const name of atSub) assert.ok(subListed.includes(name), name);
      for (const name of created) assert.ok(!subListed.includes(name), `${name}: a group's deployment is not the subscription's`);
    } finally {
      await eightAtATime(atSub.size, (i) => deployments.deployments.beginDeleteAtSubscriptionScopeAndWait([...atSub][i]).catch(() => {}));
    }
  }));

  test("@azure/arm-authorization pages role definitions by ARM's page of 1000 (no `top` in their API, so $top is ignored)", logged(async () => {
    const scope = server.groupId(rg);
    const suffix = randomUUID().slice(0, 8);
    const created = new Set(await eightAtATime(1010, async (i) => {
      const guid = randomUUID();
      await arm.authorization.roleDefinitions.createOrUpdate(scope, guid, {
        roleName: `JS paged ${suffix} ${String(i).padStart(4, "0")}`,
        assignableScopes: [scope],
        permissions: [{ actions: ["Microsoft.Resources/subscriptions/resourceGroups/read"] }],
      });
      return guid;
    }));
    try {
      // The client's pager, and the same with `$top=5` added to the first request: ARM's page either way.
      const topFive = new AuthorizationManagementClient(arm.credential, server.subscriptionId, {
        ...clientOptions(server),
        baseUri: server.url,
        additionalPolicies: [{
          position: "perCall",
          policy: {
            name: "top-5",
            sendRequest(request, next) {
              if (!/[?&]\$top=/i.test(request.url)) request.url += `${request.url.includes("?") ? "&" : "?"}$top=5`;
              return next(request);
            },
          },
        }],
      });
      for (const client of [arm.authorization, topFive]) {
        const pages = await pageNames(client.roleDefinitions.list(scope).byPage());
        assert.equal(pages.length, 2);
        assert.equal(pages[0].length, 1000);
        const listed = pages.flat();
        assert.equal(listed.length, new Set(listed).size, "no role twice");
        for (const guid of created) assert.ok(listed.includes(guid), guid);
        assert.ok(listed.includes(ROLES.Reader) && listed.includes(ROLES.Owner), "the built-in roles are in the merged list");
      }
      const custom = (await all(arm.authorization.roleDefinitions.list(scope, { filter: "type eq 'CustomRole'" }))).map((d) => d.name);
      assert.equal(custom.length, new Set(custom).size);
      for (const guid of created) assert.ok(custom.includes(guid), guid);
      const named = await all(arm.authorization.roleDefinitions.list(scope, { filter: `roleName eq 'js paged ${suffix} 0007'` }));
      assert.deepEqual(named.map((d) => d.roleName), [`JS paged ${suffix} 0007`]);
    } finally {
      await eightAtATime(created.size, (i) => arm.authorization.roleDefinitions.delete(scope, [...created][i]).catch(() => {}));
    }
  }));

  test("@azure/arm-cosmosdb reads one page: the Cosmos DB lists answer whole, within 500 databases and containers and 100 custom roles", logged(async () => {
    const cosmos = new CosmosDBManagementClient(arm.credential, server.subscriptionId, clientOptions(server));
    const name = uniqueName("jspgcos").replaceAll("-", "").slice(0, 40);
    const account = await cosmos.databaseAccounts.beginCreateOrUpdateAndWait(rg, name, {
      location: "westus", kind: "GlobalDocumentDB", databaseAccountOfferType: "Standard",
      locations: [{ locationName: "westus", failoverPriority: 0, isZoneRedundant: false }],
    });
    const db = (i) => `db${String(i).padStart(3, "0")}`;
    const databases = new Set((await eightAtATime(499, (i) => cosmos.sqlResources.beginCreateUpdateSqlDatabaseAndWait(rg, name, db(i), { resource: { id: db(i) }, options: {} }))).map((d) => d.name));
    await cosmos.sqlResources.beginCreateUpdateSqlContainerAndWait(rg, name, "db000", "c1", { resource: { id: "c1", partitionKey: { paths: ["/pk"], kind: "Hash" } }, options: {} });

    // The 501st database or container is refused, through ARM and through the data plane.
    const refused = await rejects(cosmos.sqlResources.beginCreateUpdateSqlDatabaseAndWait(rg, name, "one-more", { resource: { id: "one-more" }, options: {} }));
    assert.equal(refused.statusCode, 400, describeError(refused));
    assert.equal(armErrorBody(refused).code, "BadRequest", describeError(refused));
    assert.ok(armErrorBody(refused).message.includes("500"), armErrorBody(refused).message);
    const keys = await cosmos.databaseAccounts.listKeys(rg, name);
    const data = new CosmosClient({ endpoint: account.documentEndpoint, key: keys.primaryMasterKey });
    try {
      const dataRefused = await rejects(data.database("db001").containers.create({ id: "c2", partitionKey: { paths: ["/pk"] } }));
      assert.equal(dataRefused.code, 400, String(dataRefused?.message));
    } finally {
      data.dispose();
    }

    // The client reads a single page; it holds every database, once.
    const pages = await pageNames(cosmos.sqlResources.listSqlDatabases(rg, name).byPage());
    assert.equal(pages.length, 1);
    assert.equal(pages[0].length, 499);
    assert.deepEqual(new Set(pages[0]), databases);
    assert.deepEqual((await all(cosmos.sqlResources.listSqlContainers(rg, name, "db000"))).map((c) => c.name), ["c1"]);
    // Deleting one frees a place.
    await cosmos.sqlResources.beginDeleteSqlDatabaseAndWait(rg, name, db(498));
    await cosmos.sqlResources.beginCreateUpdateSqlDatabaseAndWait(rg, name, db(498), { resource: { id: db(498) }, options: {} });

    // Custom data-plane roles: 100, then refused; the one page holds them and the two built-in ones.
    const role = (i) => cosmos.sqlResources.beginCreateUpdateSqlRoleDefinitionAndWait(randomUUID(), rg, name, {
      roleName: `js reader ${i}`, type: "CustomRole", assignableScopes: ["/"],
      permissions: [{ dataActions: ["Microsoft.DocumentDB/databaseAccounts/readMetadata"] }],
    });
    const roles = (await eightAtATime(100, role)).map((r) => r.name);
    const tooMany = await rejects(role(100));
    assert.equal(tooMany.statusCode, 400, describeError(tooMany));
    assert.equal(armErrorBody(tooMany).code, "BadRequest", describeError(tooMany));
    const rolePages = await pageNames(cosmos.sqlResources.listSqlRoleDefinitions(rg, name).byPage());
    assert.equal(rolePages.length, 1);
    assert.equal(rolePages[0].length, 102);
    for (const guid of roles) assert.ok(rolePages[0].includes(guid), guid);

    // Accounts by group and by subscription: one page too.
    assert.deepEqual(await pageNames(cosmos.databaseAccounts.listByResourceGroup(rg).byPage()), [[name]]);
    assert.ok((await all(cosmos.databaseAccounts.list())).some((a) => a.name === name));
  }));
});
