// The audit log (issue 20), the JavaScript twin of tests/py/test_audit.py: ARM's Activity Log read
// with @azure/arm-monitor 7 (MonitorClient.activityLogs.list, api-version 2015-04-01) after writes
// made with @azure/arm-resources and @azure/arm-msi and one refused write: Azure's fields
// (operation, status and sub-status, caller, the client's correlation and request ids, address,
// resource), newest first, `$filter` and `select`, pages of 200 followed through nextLink, and
// only what the caller may read. Graph's /v1.0/auditLogs/signIns (tokens minted and refused by
// @azure/identity, a managed identity's through an agent, `signInEventTypes/any(...)`, `$top`) and
// /v1.0/auditLogs/directoryAudits (Graph's application and user writes, `addPassword` among them),
// read with fetch; no secret or token in any record; a principal without rights sees no events
// and is refused Graph's logs. The kill -9 and retention checks are the Python suite's alone:
// they drive the server, not a client.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { MonitorClient } from "@azure/arm-monitor";
import { UsernamePasswordCredential } from "@azure/identity";

import {
  ARM_SCOPE,
  AZ_CLI_CLIENT_ID,
  GRAPH_SCOPE,
  GUID_RE,
  armErrorCode,
  cliLoginSp,
  createServicePrincipal,
  describeError,
  logged,
  rejects,
  sleep,
  startServer,
  uniqueName,
  vmRun,
} from "../lib/support.mjs";
import { all, armClients, clientOptions, deleteGroupQuietly, secretCredential, timed, vmBody } from "../lib/arm.mjs";

const GROUP_WRITE = "Microsoft.Resources/subscriptions/resourceGroups/write";
const IDENTITY_WRITE = "Microsoft.ManagedIdentity/userAssignedIdentities/write";
const IDENTITY_DELETE = "Microsoft.ManagedIdentity/userAssignedIdentities/delete";
const ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write";
const ADD_PASSWORD = "Update application \u2013 Certificates and secrets management";
const API_RESOURCES = "2021-04-01";
const API_MONITOR = "2015-04-01";

let server;
let arm;
let monitor;
/** Every secret, password and access token the tests handled: none may appear in an audit record. */
const secrets = new Set();
const groups = [];

before(async () => {
  server = await startServer();
  arm = await armClients(server);
  monitor = new MonitorClient(arm.credential, server.subscriptionId, clientOptions(server));
  secrets.add(server.clientSecret);
  secrets.add(server.adminPassword);
});
after(async () => {
  for (const rg of groups) await deleteGroupQuietly(arm, rg);
  await server?.stop();
});

/** A moment `seconds` before now, ISO 8601 (client and server share the host's clock). */
function since(seconds = 5) {
  return new Date(Date.now() - seconds * 1000).toISOString();
}

/** `eventTimestamp ge '<from>' and resourceGroupName eq '<rg>'`, as the client's docs write it. */
function groupFilter(from, rg) {
  return `eventTimestamp ge '${from}' and resourceGroupName eq '${rg}'`;
}

/** Reads until `done(value)`: sign-ins and refused requests are appended in batches, within a commit. */
async function eventually(read, done, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${timeoutMs} ms; last: ${JSON.stringify(value)?.slice(0, 3000)}`);
    }
    await sleep(100);
  }
}

/**
 * Options of one SDK call sending `x-ms-correlation-request-id` (a new GUID, noted in `sent`), and
 * noting the `x-ms-client-request-id` the client's pipeline sent.
 */
function traced(sent) {
  sent.correlationId = randomUUID();
  return {
    requestOptions: { customHeaders: { "x-ms-correlation-request-id": sent.correlationId } },
    onResponse: (response) => {
      sent.clientRequestId = response.request.headers.get("x-ms-client-request-id");
    },
  };
}

/** Every string anywhere in a JSON value. */
function strings(value, out = []) {
  if (typeof value === "string") out.push(value);
  else if (Array.isArray(value)) for (const item of value) strings(item, out);
  else if (value && typeof value === "object") for (const item of Object.values(value)) strings(item, out);
  return out;
}

/** Asserts that no secret or token of the run is in `response`: not in its text, not as a value. */
function assertNoSecrets(response, where) {
  for (const secret of secrets) {
    assert.ok(!response.text.includes(secret), `${where} carries a secret or token`);
  }
  const values = strings(response.json);
  assert.ok(values.every((value) => !secrets.has(value)), `${where} carries a secret or token as a value`);
}

/** A Graph token from @azure/identity (the bootstrap service principal's, an Owner, by default). */
async function graphToken(credential = arm.credential) {
  const token = (await credential.getToken(GRAPH_SCOPE)).token;
  secrets.add(token);
  return token;
}

/** Every page of a Graph audit list, as `token`; `query` is e.g. `$filter=...` or `$top=1`. */
async function graphList(path, token, query = {}) {
  const search = new URLSearchParams(query).toString();
  const values = [];
  const responses = [];
  for (let url = search ? `${path}?${search}` : path; url;) {
    const res = await server.request("GET", url, { token });
    assert.equal(res.status, 200, `GET ${url}: ${res.text}`);
    responses.push(res);
    values.push(...res.json.value);
    const next = res.json["@odata.nextLink"];
    if (next) assert.ok(next.startsWith(`${server.url}${path}?`), next);
    url = next ? next.slice(server.url.length) : null;
  }
  return { values, responses };
}

function assertNewestFirst(times, what) {
  assert.deepEqual(times, [...times].sort((a, b) => b - a), `${what}: newest first`);
}

describe("@azure/arm-monitor: the Activity Log", () => {
  let rg;
  let identity;
  let from;
  /** What each request sent: its correlation id and client request id. */
  const sent = { group: {}, identity: {}, tags: {}, refused: {}, deleted: {} };

  before(async () => {
    from = since();
    rg = uniqueName("jsaudit");
    groups.push(rg);
    await arm.resource.resourceGroups.createOrUpdate(rg, { location: "westus" }, traced(sent.group));
    identity = await arm.msi.userAssignedIdentities.createOrUpdate(rg, "audited", { location: "westus" }, traced(sent.identity));
    await arm.resource.resourceGroups.update(rg, { tags: { audit: "1" } }, traced(sent.tags));
    const refused = await rejects(arm.msi.userAssignedIdentities.createOrUpdate(rg, "bad!name", { location: "westus" }, traced(sent.refused)));
    assert.equal(refused.statusCode, 400, describeError(refused));
    assert.equal(armErrorCode(refused), "InvalidResourceName");
    await arm.msi.userAssignedIdentities.delete(rg, "audited", traced(sent.deleted));
  });

  /** The group's five events, once the refused request's (appended after its answer) is in. */
  function groupEvents() {
    return eventually(
      () => all(monitor.activityLogs.list(groupFilter(from, rg))),
      (events) => events.some((e) => e.status.value === "Failed"),
      `the refused write's event in ${rg}`,
    );
  }

  test("writes, a refused write and a delete are Administrative events, newest first, with caller, ids and address", logged(async () => {
    const events = await groupEvents();
    assert.deepEqual(
      events.map((e) => [e.operationName.value, e.httpRequest.method, e.status.value, e.subStatus?.value ?? ""]),
      [
        [IDENTITY_DELETE, "DELETE", "Succeeded", ""],
        [IDENTITY_WRITE, "PUT", "Failed", "InvalidResourceName"],
        [GROUP_WRITE, "PATCH", "Succeeded", ""],
        [IDENTITY_WRITE, "PUT", "Succeeded", ""],
        [GROUP_WRITE, "PUT", "Succeeded", ""],
      ],
    );
    assertNewestFirst(events.map((e) => e.eventTimestamp.getTime()), "the group's events");
    const [deleted, refused, tags, written, group] = events;
    const requests = [[deleted, sent.deleted], [refused, sent.refused], [tags, sent.tags], [written, sent.identity], [group, sent.group]];
    for (const [event, request] of requests) {
      const what = `${event.operationName.value} (${event.httpRequest.method})`;
      assert.equal(event.category.value, "Administrative", what);
      assert.equal(event.caller, arm.objectId, `${what}: the caller is the service principal's object id`);
      assert.equal(event.claims["http://schemas.microsoft.com/identity/claims/objectidentifier"], arm.objectId, what);
      assert.equal(event.claims.appid, server.clientId, what);
      assert.equal(event.correlationId, request.correlationId, `${what}: the x-ms-correlation-request-id the client sent`);
      assert.equal(event.httpRequest.clientRequestId, request.clientRequestId, `${what}: the x-ms-client-request-id the client sent`);
      assert.equal(event.httpRequest.clientIpAddress, "127.0.0.1", what);
      assert.equal(event.subscriptionId, server.subscriptionId, what);
      assert.equal(event.tenantId, server.tenantId, what);
      assert.equal(event.resourceGroupName.toLowerCase(), rg.toLowerCase(), what);
      assert.match(event.eventDataId, GUID_RE, what);
      assert.ok(event.id.startsWith(`${event.resourceId}/events/${event.eventDataId}/ticks/`), event.id);
      assert.ok(event.eventTimestamp.getTime() >= Date.parse(from), `${what}: ${event.eventTimestamp.toISOString()}`);
      assert.equal(event.level, event === refused ? "Error" : "Informational", what);
      for (const value of Object.values(event.properties ?? {})) assert.equal(typeof value, "string", what);
    }
    assert.equal(group.resourceId.toLowerCase(), server.groupId(rg).toLowerCase());
    assert.equal(tags.resourceId.toLowerCase(), server.groupId(rg).toLowerCase());
    assert.equal(group.resourceProviderName.value, "Microsoft.Resources");
    assert.equal(written.resourceId.toLowerCase(), identity.id.toLowerCase());
    assert.equal(deleted.resourceId.toLowerCase(), identity.id.toLowerCase());
    assert.equal(written.resourceProviderName.value, "Microsoft.ManagedIdentity");
    assert.equal(written.resourceType.value, "Microsoft.ManagedIdentity/userAssignedIdentities");
    assert.ok(refused.resourceId.endsWith("/userAssignedIdentities/bad!name"), refused.resourceId);
    assert.equal(new Set(events.map((e) => e.eventDataId)).size, events.length, "one event per request");
  }));

  test("$filter: correlationId, resourceUri and resourceId, resourceProvider, status, caller, eventTimestamp le", logged(async () => {
    const events = await groupEvents();
    const list = (filter) => all(monitor.activityLogs.list(`eventTimestamp ge '${from}' and ${filter}`));
    for (const [name, request] of Object.entries(sent)) {
      const matched = await list(`correlationId eq '${request.correlationId}'`);
      assert.equal(matched.length, 1, `${name}: ${JSON.stringify(matched.map((e) => e.operationName.value))}`);
      assert.equal(matched[0].correlationId, request.correlationId, name);
    }
    const refused = await list(`correlationId eq '${sent.refused.correlationId}'`);
    assert.equal(refused[0].eventDataId, events[1].eventDataId, "the refused request's own event");

    for (const field of ["resourceUri", "resourceId"]) {
      const onIdentity = await list(`${field} eq '${identity.id}'`);
      assert.deepEqual(onIdentity.map((e) => e.eventDataId), [events[0].eventDataId, events[3].eventDataId], field);
    }
    const byProvider = await list(`resourceGroupName eq '${rg}' and resourceProvider eq 'Microsoft.ManagedIdentity'`);
    assert.deepEqual(byProvider.map((e) => e.eventDataId), [0, 1, 3].map((i) => events[i].eventDataId));
    const failed = await list(`resourceGroupName eq '${rg}' and status eq 'Failed'`);
    assert.deepEqual(failed.map((e) => e.eventDataId), [events[1].eventDataId]);
    const byCaller = await list(`resourceGroupName eq '${rg}' and caller eq '${arm.objectId}'`);
    assert.deepEqual(byCaller.map((e) => e.eventDataId), events.map((e) => e.eventDataId));
    // A bound just after the tag update's event (the client's Date keeps milliseconds).
    const until = new Date(events[2].eventTimestamp.getTime() + 1).toISOString();
    const bounded = await all(monitor.activityLogs.list(`${groupFilter(from, rg)} and eventTimestamp le '${until}'`));
    assert.deepEqual(bounded.map((e) => e.eventDataId), events.slice(2).map((e) => e.eventDataId), "eventTimestamp le bounds the list");
  }));

  test("`select` narrows each event to the properties named", logged(async () => {
    await groupEvents();
    const events = await all(monitor.activityLogs.list(groupFilter(from, rg), { select: "eventName,operationName,status,correlationId" }));
    assert.equal(events.length, 5);
    for (const event of events) {
      const present = Object.keys(event).filter((key) => event[key] !== undefined).sort();
      assert.deepEqual(present, ["correlationId", "eventName", "operationName", "status"]);
      assert.equal(event.eventName.value, "EndRequest");
    }
  }));

  test("a filter without `eventTimestamp ge`, with an unknown property or a bad time is refused: 400 BadRequest", logged(async () => {
    for (const filter of [`resourceGroupName eq '${rg}'`, `eventTimestamp ge '${from}' and colour eq 'red'`, "eventTimestamp ge 'yesterday'"]) {
      const error = await rejects(all(monitor.activityLogs.list(filter)));
      assert.equal(error.statusCode, 400, `${filter}: ${describeError(error)}`);
      assert.equal(armErrorCode(error), "BadRequest", filter);
    }
  }));

  test("no secret or token in the Activity Log", logged(async () => {
    await groupEvents();
    const token = (await arm.credential.getToken(ARM_SCOPE)).token;
    secrets.add(token);
    const query = new URLSearchParams({ "api-version": API_MONITOR, $filter: `eventTimestamp ge '${since(600)}'` });
    const res = await server.request("GET", `${server.subscriptionScope}/providers/Microsoft.Insights/eventtypes/management/values?${query}`, { token });
    assert.equal(res.status, 200, res.text);
    assert.ok(res.json.value.length >= 5, res.text.slice(0, 500));
    assertNoSecrets(res, "the Activity Log");
  }));

  test("a principal without a role sees no events and is refused Graph's logs; a Reader of the group sees the group's alone", logged(async () => {
    const expected = await groupEvents();
    const sp = await createServicePrincipal(server, uniqueName("js-audit-norole"));
    secrets.add(sp.secret);
    const credential = secretCredential(server, sp.appId, sp.secret);
    const stranger = new MonitorClient(credential, server.subscriptionId, clientOptions(server));
    assert.deepEqual(await all(stranger.activityLogs.list(groupFilter(from, rg))), [], "events are filtered by the caller's read rights");
    assert.deepEqual(await all(stranger.activityLogs.list(`eventTimestamp ge '${from}'`)), []);

    const token = await graphToken(credential);
    for (const path of ["/v1.0/auditLogs/signIns", "/v1.0/auditLogs/directoryAudits"]) {
      const res = await server.request("GET", path, { token });
      assert.equal(res.status, 403, `${path}: ${res.text}`);
      assert.equal(res.json.error.code, "Authorization_RequestDenied", res.text);
    }

    await arm.authorization.roleAssignments.create(server.groupId(rg), randomUUID(), {
      roleDefinitionId: server.roleDefinitionId("Reader"),
      principalId: sp.objectId,
      principalType: "ServicePrincipal",
    });
    const seen = await all(stranger.activityLogs.list(groupFilter(from, rg)));
    assert.equal(seen[0].operationName.value, ASSIGNMENT_WRITE, "the assignment's own event, newest");
    assert.deepEqual(seen.slice(1).map((e) => e.eventDataId), expected.map((e) => e.eventDataId));
    const everywhere = await all(stranger.activityLogs.list(`eventTimestamp ge '${from}'`));
    assert.ok(everywhere.length >= seen.length);
    for (const event of everywhere) assert.equal(event.resourceGroupName.toLowerCase(), rg.toLowerCase(), event.resourceId);
  }));
});

describe("@azure/arm-monitor: paging", () => {
  test("206 events of one group come back whole through the pager: pages of 200, then nextLink", logged(async () => {
    const from = since();
    const rg = uniqueName("jsauditpg");
    groups.push(rg);
    await arm.resource.resourceGroups.createOrUpdate(rg, { location: "westus" });
    const token = (await arm.credential.getToken(ARM_SCOPE)).token;
    secrets.add(token);
    // 205 tag updates with fetch and the bearer token, one after another (as the Python twin).
    for (let n = 0; n < 205; n += 1) {
      const res = await server.request("PATCH", `${server.groupId(rg)}?api-version=${API_RESOURCES}`, { token, body: { tags: { n: String(n) } } });
      assert.equal(res.status, 200, res.text);
    }
    const pages = [];
    for await (const page of monitor.activityLogs.list(groupFilter(from, rg)).byPage()) pages.push(page);
    assert.deepEqual(pages.map((page) => page.length), [200, 6]);
    const events = pages.flat();
    assert.equal(new Set(events.map((e) => e.eventDataId)).size, 206, "no event twice");
    assert.ok(events.every((e) => e.operationName.value === GROUP_WRITE && e.status.value === "Succeeded"));
    assert.equal(events.filter((e) => e.httpRequest.method === "PATCH").length, 205);
    assert.equal(events.at(-1).httpRequest.method, "PUT", "the group's creation, oldest");
    assertNewestFirst(events.map((e) => e.eventTimestamp.getTime()), "across pages");
    const items = await all(monitor.activityLogs.list(groupFilter(from, rg)));
    assert.deepEqual(items.map((e) => e.eventDataId), events.map((e) => e.eventDataId), "the item iterator follows nextLink too");
  }));
});

describe("Graph: auditLogs/signIns", () => {
  test("client credentials, a wrong secret, a managed identity through an agent, a password: sign-ins without secrets", logged(async () => {
    const from = since(0);
    const sp = await createServicePrincipal(server, uniqueName("js-audit-sp"));
    secrets.add(sp.secret);
    secrets.add((await secretCredential(server, sp.appId, sp.secret).getToken(ARM_SCOPE)).token);
    const wrong = await rejects(secretCredential(server, sp.appId, "not-the-secret").getToken(ARM_SCOPE));
    assert.match(wrong.message, /AADSTS7000215/);
    const user = new UsernamePasswordCredential(server.tenantId, AZ_CLI_CLIENT_ID, server.adminUsername, server.adminPassword, {
      authorityHost: server.url,
      disableInstanceDiscovery: true,
    });
    secrets.add((await user.getToken(ARM_SCOPE)).token);
    // A user-assigned identity's token, asked by ManagedIdentityCredential inside `openmi vm run`.
    const rg = uniqueName("jsauditmi");
    groups.push(rg);
    await arm.resource.resourceGroups.createOrUpdate(rg, { location: "westus" });
    const identity = await arm.msi.userAssignedIdentities.createOrUpdate(rg, "mi-signin", { location: "westus" });
    await timed(arm.compute.virtualMachines.createOrUpdate(rg, "vm1", vmBody(server, "vm1", {
      identity: { type: "UserAssigned", userAssignedIdentities: { [identity.id]: {} } },
    })));
    const out = await vmRun(cliLoginSp(server), rg, "vm1", "identity.mjs", { clientId: identity.clientId });
    assert.ok(out.token, JSON.stringify(out));
    secrets.add(out.token);
    const token = await graphToken();

    const ofApp = (values, appId) => values.filter((v) => v.appId === appId);
    const { values, responses } = await eventually(
      () => graphList("/v1.0/auditLogs/signIns", token, { $filter: `createdDateTime ge ${from}` }),
      ({ values: list }) => ofApp(list, sp.appId).length >= 2 && ofApp(list, identity.clientId).length >= 1
        && list.some((v) => v.signInEventTypes[0] === "nonInteractiveUser"),
      "the service principal's two sign-ins, the managed identity's and the user's",
    );
    assertNewestFirst(values.map((v) => Date.parse(v.createdDateTime)), "sign-ins");
    for (const res of responses) assertNoSecrets(res, "GET /v1.0/auditLogs/signIns");

    const [refused, issued] = ofApp(values, sp.appId);
    assert.equal(ofApp(values, sp.appId).length, 2, JSON.stringify(ofApp(values, sp.appId)));
    assert.deepEqual(issued.signInEventTypes, ["servicePrincipal"]);
    assert.equal(issued.appId, sp.appId);
    assert.equal(issued.servicePrincipalId, sp.objectId);
    assert.equal(issued.status.errorCode, 0);
    assert.equal(issued.ipAddress, "127.0.0.1");
    assert.equal(issued.resourceDisplayName, "Windows Azure Service Management API");
    assert.equal(issued.isInteractive, false);
    assert.match(issued.id, GUID_RE);
    assert.match(issued.correlationId, /\S/);
    assert.deepEqual(refused.signInEventTypes, ["servicePrincipal"]);
    assert.equal(refused.status.errorCode, 7000215);
    assert.match(refused.status.failureReason, /secret/i);

    const [managed] = ofApp(values, identity.clientId);
    assert.deepEqual(managed.signInEventTypes, ["managedIdentity"]);
    assert.deepEqual(managed.managedServiceIdentity, { msiType: "userAssigned", associatedResourceId: identity.id });
    assert.equal(managed.servicePrincipalId, identity.principalId);
    assert.equal(managed.status.errorCode, 0);

    const password = values.find((v) => v.signInEventTypes[0] === "nonInteractiveUser");
    assert.equal(password.userPrincipalName.toLowerCase(), server.adminUsername.toLowerCase());
    assert.equal(password.appId, AZ_CLI_CLIENT_ID);
    assert.match(password.userId, GUID_RE);

    // Filters: an event type returns only that type; a principal; a code; a correlation id.
    for (const type of ["servicePrincipal", "managedIdentity"]) {
      const only = await graphList("/v1.0/auditLogs/signIns", token, { $filter: `createdDateTime ge ${from} and signInEventTypes/any(t: t eq '${type}')` });
      assert.ok(only.values.length >= 1, type);
      assert.ok(only.values.every((v) => v.signInEventTypes.length === 1 && v.signInEventTypes[0] === type), JSON.stringify(only.values.map((v) => v.signInEventTypes)));
    }
    const either = await graphList("/v1.0/auditLogs/signIns", token, { $filter: `createdDateTime ge ${from} and signInEventTypes/any(t: t eq 'servicePrincipal' or t eq 'managedIdentity')` });
    assert.ok(either.values.some((v) => v.id === managed.id) && either.values.some((v) => v.id === issued.id));
    assert.ok(either.values.every((v) => ["servicePrincipal", "managedIdentity"].includes(v.signInEventTypes[0])));
    const byPrincipal = await graphList("/v1.0/auditLogs/signIns", token, { $filter: `servicePrincipalId eq '${sp.objectId}'` });
    assert.ok(byPrincipal.values.some((v) => v.id === issued.id), JSON.stringify(byPrincipal.values));
    assert.ok(byPrincipal.values.every((v) => v.servicePrincipalId === sp.objectId));
    const byCode = await graphList("/v1.0/auditLogs/signIns", token, { $filter: `createdDateTime ge ${from} and status/errorCode eq 7000215` });
    assert.deepEqual(byCode.values.map((v) => v.id), [refused.id]);
    const byCorrelation = await graphList("/v1.0/auditLogs/signIns", token, { $filter: `correlationId eq '${issued.correlationId}'` });
    assert.deepEqual(byCorrelation.values.map((v) => v.id), [issued.id]);

    // $top pages with a next link that keeps the filter.
    const paged = await graphList("/v1.0/auditLogs/signIns", token, { $filter: `createdDateTime ge ${from}`, $top: "1" });
    const pagedIds = paged.values.map((v) => v.id);
    assert.equal(new Set(pagedIds).size, pagedIds.length, "no sign-in twice");
    for (const value of values) assert.ok(pagedIds.includes(value.id), `${value.id} on a page of one`);
    const sizes = paged.responses.map((res) => res.json.value.length);
    assert.ok(sizes.slice(0, -1).every((size) => size === 1) && sizes.at(-1) <= 1, JSON.stringify(sizes));

    for (const filter of ["colour eq 'red'", "signInEventTypes/any(t: t eq 'robot')"]) {
      const bad = await server.request("GET", `/v1.0/auditLogs/signIns?$filter=${encodeURIComponent(filter)}`, { token });
      assert.equal(bad.status, 400, bad.text);
      assert.equal(bad.json.error.code, "Request_UnsupportedQuery", bad.text);
    }
  }));

  test("a wrong and a right password of a user made with Graph: 50126 and 0, and the user's creation a directory audit", logged(async () => {
    const from = since(0);
    const token = await graphToken();
    const upn = `${uniqueName("jsaudituser")}@${server.adminUsername.split("@")[1]}`;
    const password = "Correct-horse-1";
    secrets.add(password);
    const made = await server.request("POST", "/v1.0/users", {
      token,
      body: { displayName: upn.split("@")[0], userPrincipalName: upn, accountEnabled: true, passwordProfile: { password } },
    });
    assert.equal(made.status, 201, made.text);
    const credential = (secret) => new UsernamePasswordCredential(server.tenantId, AZ_CLI_CLIENT_ID, upn, secret, {
      authorityHost: server.url,
      disableInstanceDiscovery: true,
    });
    assert.ok(await rejects(credential("wrong-password").getToken(ARM_SCOPE)));
    secrets.add((await credential(password).getToken(ARM_SCOPE)).token);

    const { values, responses } = await eventually(
      () => graphList("/v1.0/auditLogs/signIns", token, { $filter: `createdDateTime ge ${from} and userPrincipalName eq '${upn}'` }),
      ({ values: list }) => list.length >= 2,
      `${upn}'s two sign-ins`,
    );
    assert.deepEqual(values.map((v) => v.status.errorCode), [0, 50126], JSON.stringify(values));
    assert.ok(values.every((v) => v.signInEventTypes[0] === "nonInteractiveUser" && v.userPrincipalName.toLowerCase() === upn.toLowerCase()));
    assert.equal(values[0].userId, made.json.id);
    for (const res of responses) {
      assertNoSecrets(res, "the user's sign-ins");
      assert.ok(!res.text.includes("wrong-password"));
    }
    const audits = await graphList("/v1.0/auditLogs/directoryAudits", token, { $filter: `activityDateTime ge ${from} and activityDisplayName eq 'Add user'` });
    assert.equal(audits.values.length, 1, JSON.stringify(audits.values));
    const [added] = audits.values;
    assert.equal(added.category, "UserManagement");
    assert.equal(added.result, "success");
    assert.equal(added.initiatedBy.app.appId, server.clientId);
    assert.equal(added.initiatedBy.app.servicePrincipalId, arm.objectId);
    for (const res of audits.responses) assertNoSecrets(res, "the Add user audit");
  }));
});

describe("Graph: auditLogs/directoryAudits", () => {
  test("Graph application writes and addPassword are directory audits; the secretText is not in them", logged(async () => {
    const from = since(0);
    const sp = await createServicePrincipal(server, uniqueName("js-audit-app"));
    secrets.add(sp.secret);
    const token = await graphToken();
    const correlationId = randomUUID();
    const second = await server.request("POST", `/v1.0/applications/${sp.appObjectId}/addPassword`, {
      token,
      body: { passwordCredential: { displayName: "second" } },
      headers: { "x-ms-correlation-request-id": correlationId },
    });
    assert.equal(second.status, 200, second.text);
    assert.ok(second.json.secretText);
    secrets.add(second.json.secretText);

    // "Add service principal" wrote nothing (the application's service principal exists with it),
    // so its record comes through the batch appender, within its 50 ms: read until it is there.
    let listed = await graphList("/v1.0/auditLogs/directoryAudits", token, { $filter: `activityDateTime ge ${from}` });
    for (let i = 0; i < 50 && listed.values.length < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      listed = await graphList("/v1.0/auditLogs/directoryAudits", token, { $filter: `activityDateTime ge ${from}` });
    }
    const { values, responses } = listed;
    assert.deepEqual(
      values.map((v) => v.activityDisplayName),
      [ADD_PASSWORD, ADD_PASSWORD, "Add service principal", "Add application"],
      "newest first, as written (the en dash U+2013 in Entra's name)",
    );
    assertNewestFirst(values.map((v) => Date.parse(v.activityDateTime)), "directory audits");
    for (const res of responses) assertNoSecrets(res, "GET /v1.0/auditLogs/directoryAudits");
    for (const audit of values) {
      assert.equal(audit.category, "ApplicationManagement", audit.activityDisplayName);
      assert.equal(audit.result, "success");
      assert.equal(audit.loggedByService, "Core Directory");
      assert.equal(audit.initiatedBy.app.servicePrincipalId, arm.objectId);
      assert.equal(audit.initiatedBy.app.appId, server.clientId);
      assert.match(audit.correlationId, /\S/);
    }
    const [latest, first] = values;
    assert.equal(latest.correlationId, correlationId, "the x-ms-correlation-request-id sent");
    assert.equal(latest.operationType, "Update");
    for (const audit of [latest, first]) {
      assert.ok(audit.targetResources[0].id.includes(sp.appObjectId), JSON.stringify(audit.targetResources));
    }

    const named = await graphList("/v1.0/auditLogs/directoryAudits", token, { $filter: `activityDateTime ge ${from} and activityDisplayName eq '${ADD_PASSWORD}'` });
    assert.deepEqual(named.values.map((v) => v.id), [latest.id, first.id]);
    const byCorrelation = await graphList("/v1.0/auditLogs/directoryAudits", token, { $filter: `correlationId eq '${correlationId}'` });
    assert.deepEqual(byCorrelation.values.map((v) => v.id), [latest.id]);
    const started = await graphList("/v1.0/auditLogs/directoryAudits", token, { $filter: `activityDateTime ge ${from} and startswith(activityDisplayName, 'Add')` });
    assert.deepEqual(started.values.map((v) => v.activityDisplayName), ["Add service principal", "Add application"]);
  }));
});
