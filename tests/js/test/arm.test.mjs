// The control plane with the real JavaScript management clients (issue 14):
// @azure/arm-resources 7 (groups, generic resources, providers), @azure/arm-resources-subscriptions 2,
// @azure/arm-msi 2 (user-assigned and system-assigned identities) and @azure/arm-compute 24
// (VMs with system and user-assigned identities: assign, remove, switch; extensions).
// Every write is awaited through the client's poller and timed: the server answers writes
// synchronously, so no client ever has to poll.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  GUID_RE,
  armErrorCode,
  bootstrapToken,
  describeError,
  logged,
  rejects,
  startServer,
  uniqueName,
} from "../lib/support.mjs";
import { all, armClients, createGroup, deleteGroupQuietly, timed, userAssigned, vmBody } from "../lib/arm.mjs";

let server;
let arm;
before(async () => {
  server = await startServer();
  arm = await armClients(server);
});
after(async () => {
  await server?.stop();
});

describe("@azure/arm-resources", () => {
  test("resource groups: create (201, then 200), get, checkExistence, update tags, list, delete", logged(async () => {
    const name = uniqueName("jsrg");
    const created = await arm.resource.resourceGroups.createOrUpdate(name, { location: "westus", tags: { env: "test" } });
    assert.equal(created.id, server.groupId(name));
    assert.equal(created.name, name);
    assert.equal(created.location, "westus");
    assert.equal(created.properties.provisioningState, "Succeeded");
    assert.deepEqual(created.tags, { env: "test" });
    const again = await arm.resource.resourceGroups.createOrUpdate(name, { location: "westus" });
    assert.equal(again.id, created.id);

    const got = await arm.resource.resourceGroups.get(name);
    assert.equal(got.name, name);
    assert.equal((await arm.resource.resourceGroups.checkExistence(name)).body, true);
    assert.equal((await arm.resource.resourceGroups.checkExistence(uniqueName("absent"))).body, false);

    const updated = await arm.resource.resourceGroups.update(name, { tags: { owner: "node" } });
    assert.deepEqual(updated.tags, { owner: "node" }, "PATCH replaces the tag set");

    const names = (await all(arm.resource.resourceGroups.list())).map((g) => g.name);
    assert.ok(names.includes(name), names.join(","));

    await timed(arm.resource.resourceGroups.beginDeleteAndWait(name));
    assert.equal((await arm.resource.resourceGroups.checkExistence(name)).body, false);
    const error = await rejects(arm.resource.resourceGroups.get(name));
    assert.equal(error.statusCode, 404, describeError(error));
    assert.equal(armErrorCode(error), "ResourceGroupNotFound");
  }));

  test("a bad group name is refused with InvalidResourceGroup", logged(async () => {
    const error = await rejects(arm.resource.resourceGroups.createOrUpdate("bad name!", { location: "westus" }));
    assert.equal(error.statusCode, 400, describeError(error));
    assert.equal(armErrorCode(error), "InvalidResourceGroup");
  }));

  test("resources by id, list by group, a type without behaviour stored as given, group delete cascading", logged(async () => {
    const rg = await createGroup(arm);
    const identity = await arm.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id"), { location: "westus" });
    const storageId = `${server.groupId(rg)}/providers/Microsoft.Storage/storageAccounts/${uniqueName("st").replace("-", "")}`;
    const stored = await timed(arm.resource.resources.beginCreateOrUpdateByIdAndWait(storageId, "2023-01-01", {
      location: "westus",
      kind: "StorageV2",
      sku: { name: "Standard_LRS" },
      properties: { minimumTlsVersion: "TLS1_2" },
    }));
    assert.equal(stored.id, storageId);
    assert.equal(stored.kind, "StorageV2");
    assert.deepEqual(stored.properties.minimumTlsVersion, "TLS1_2");

    // The identity's service principal, by its object id in Graph.
    const graph = await bootstrapToken(server, "https://graph.microsoft.com/.default");
    const principal = await server.request("GET", `/v1.0/servicePrincipals/${identity.principalId}`, { token: graph });
    assert.equal(principal.status, 200, principal.text);
    assert.equal(principal.json.appId, identity.clientId);

    const byId = await arm.resource.resources.getById(identity.id, "2024-11-30");
    assert.equal(byId.properties.principalId, identity.principalId);
    assert.equal((await arm.resource.resources.checkExistenceById(storageId, "2023-01-01")).body, true);

    const listed = (await all(arm.resource.resources.listByResourceGroup(rg))).map((r) => r.id.toLowerCase()).sort();
    assert.deepEqual(listed, [identity.id.toLowerCase(), storageId.toLowerCase()].sort());

    await timed(arm.resource.resources.beginDeleteByIdAndWait(storageId, "2023-01-01"));
    assert.equal((await arm.resource.resources.checkExistenceById(storageId, "2023-01-01")).body, false);

    // Deleting the group deletes what is in it, the identity's service principal too.
    await timed(arm.resource.resourceGroups.beginDeleteAndWait(rg));
    const error = await rejects(arm.msi.userAssignedIdentities.get(rg, identity.name));
    assert.equal(error.statusCode, 404, describeError(error));
    const graphToken = await bootstrapToken(server, "https://graph.microsoft.com/.default");
    const sps = await server.request("GET", `/v1.0/servicePrincipals?$filter=${encodeURIComponent(`appId eq '${identity.clientId}'`)}`, { token: graphToken });
    assert.equal(sps.status, 200, sps.text);
    assert.deepEqual(sps.json.value, []);
    const gone = await server.request("GET", `/v1.0/servicePrincipals/${identity.principalId}`, { token: graphToken });
    assert.equal(gone.status, 404, gone.text);
    assert.equal(gone.json.error.code, "Request_ResourceNotFound");
  }));

  test("providers list their resource types with api-versions", logged(async () => {
    const compute = await arm.resource.providers.get("Microsoft.Compute");
    assert.equal(compute.namespace, "Microsoft.Compute");
    const vms = compute.resourceTypes.find((t) => t.resourceType === "virtualMachines");
    assert.ok(vms?.apiVersions?.length > 0, JSON.stringify(compute).slice(0, 400));
    const namespaces = (await all(arm.resource.providers.list())).map((p) => p.namespace);
    for (const namespace of ["Microsoft.Compute", "Microsoft.ManagedIdentity", "Microsoft.Authorization", "Microsoft.Resources"]) {
      assert.ok(namespaces.includes(namespace), namespaces.join(","));
    }
  }));
});

describe("@azure/arm-resources-subscriptions", () => {
  test("subscriptions list and get, locations", logged(async () => {
    const subscriptions = await all(arm.subscriptions.subscriptions.list());
    assert.deepEqual(subscriptions.map((s) => s.subscriptionId), [server.subscriptionId]);
    const sub = await arm.subscriptions.subscriptions.get(server.subscriptionId);
    assert.equal(sub.state, "Enabled");
    assert.equal(sub.tenantId, server.tenantId);
    const locations = (await all(arm.subscriptions.subscriptions.listLocations(server.subscriptionId))).map((l) => l.name);
    assert.ok(locations.includes("westus"), locations.join(","));
  }));
});

describe("@azure/arm-msi", () => {
  test("user-assigned identities: create, get (stable ids), update, list, delete; each its own principal", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const name = uniqueName("id");
      const created = await arm.msi.userAssignedIdentities.createOrUpdate(rg, name, { location: "westus", tags: { a: "1" } });
      assert.equal(created.id, server.identityId(rg, name));
      assert.equal(created.type, "Microsoft.ManagedIdentity/userAssignedIdentities");
      assert.equal(created.tenantId, server.tenantId);
      assert.match(created.principalId, GUID_RE);
      assert.match(created.clientId, GUID_RE);
      const got = await arm.msi.userAssignedIdentities.get(rg, name);
      assert.equal(got.principalId, created.principalId);
      assert.equal(got.clientId, created.clientId);
      const again = await arm.msi.userAssignedIdentities.createOrUpdate(rg, name, { location: "westus" });
      assert.equal(again.principalId, created.principalId, "a PUT of an existing identity keeps its principal");

      const updated = await arm.msi.userAssignedIdentities.update(rg, name, { tags: { b: "2" } });
      assert.deepEqual(updated.tags, { b: "2" });
      assert.equal(updated.principalId, created.principalId);

      const other = await arm.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id"), { location: "westus" });
      assert.notEqual(other.principalId, created.principalId);
      const inGroup = (await all(arm.msi.userAssignedIdentities.listByResourceGroup(rg))).map((i) => i.name).sort();
      assert.deepEqual(inGroup, [name, other.name].sort());
      const inSub = (await all(arm.msi.userAssignedIdentities.listBySubscription())).map((i) => i.id);
      assert.ok(inSub.includes(created.id));

      await arm.msi.userAssignedIdentities.delete(rg, name);
      const error = await rejects(arm.msi.userAssignedIdentities.get(rg, name));
      assert.equal(error.statusCode, 404, describeError(error));
      assert.equal(armErrorCode(error), "ResourceNotFound");
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("identity names follow Azure's rules (InvalidResourceName)", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const error = await rejects(arm.msi.userAssignedIdentities.createOrUpdate(rg, "-starts-with-dash", { location: "westus" }));
      assert.equal(error.statusCode, 400, describeError(error));
      assert.equal(armErrorCode(error), "InvalidResourceName");
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});

describe("@azure/arm-compute", () => {
  test("a VM with a system-assigned identity: principal created, kept, removed with None, new on re-enable", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const vms = arm.compute.virtualMachines;
      const name = uniqueName("vm");
      const created = await timed(vms.createOrUpdate(rg, name, vmBody(server, name, { identity: { type: "SystemAssigned" } })));
      assert.equal(created.id.toLowerCase(), server.vmId(rg, name).toLowerCase());
      assert.equal(created.identity.type, "SystemAssigned");
      assert.equal(created.identity.tenantId, server.tenantId);
      assert.match(created.identity.principalId, GUID_RE);
      assert.equal(created.provisioningState, "Succeeded");
      assert.match(created.vmId, GUID_RE);
      assert.equal(created.osProfile.adminPassword, undefined, "adminPassword is never returned");

      const system = await arm.msi.systemAssignedIdentities.getByScope(created.id);
      assert.equal(system.principalId, created.identity.principalId);

      const got = await vms.get(rg, name);
      assert.equal(got.vmId, created.vmId);
      const listed = (await all(vms.list(rg))).map((vm) => vm.name);
      assert.deepEqual(listed, [name]);

      const none = await timed(vms.update(rg, name, { identity: { type: "None" } }));
      assert.ok(!none.identity || none.identity.type === "None", JSON.stringify(none.identity));
      const gone = await rejects(arm.msi.systemAssignedIdentities.getByScope(created.id));
      assert.equal(gone.statusCode, 404, describeError(gone));

      const reenabled = await timed(vms.update(rg, name, { identity: { type: "SystemAssigned" } }));
      assert.match(reenabled.identity.principalId, GUID_RE);
      assert.notEqual(reenabled.identity.principalId, created.identity.principalId);
      assert.equal(reenabled.vmId, created.vmId);

      await timed(vms.delete(rg, name));
      const afterDelete = await rejects(arm.msi.systemAssignedIdentities.getByScope(created.id));
      assert.equal(afterDelete.statusCode, 404, describeError(afterDelete));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("user-assigned identities: assign a second (first kept), remove one with null, mixed, switch, None", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const vms = arm.compute.virtualMachines;
      const id1 = await arm.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id1"), { location: "westus" });
      const id2 = await arm.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id2"), { location: "westus" });
      const name = uniqueName("vm");
      const created = await timed(vms.createOrUpdate(rg, name, vmBody(server, name, {
        identity: { type: "UserAssigned", userAssignedIdentities: { [id1.id]: {} } },
      })));
      assert.equal(created.identity.type, "UserAssigned");
      assert.ok(!created.identity.principalId);
      assert.deepEqual(Object.keys(userAssigned(created)), [id1.id.toLowerCase()]);
      assert.equal(userAssigned(created)[id1.id.toLowerCase()].principalId, id1.principalId);
      assert.equal(userAssigned(created)[id1.id.toLowerCase()].clientId, id1.clientId);

      // Seed 003's `az vm identity assign`: a PATCH naming only the new identity keeps the first.
      const both = await timed(vms.update(rg, name, { identity: { type: "UserAssigned", userAssignedIdentities: { [id2.id]: {} } } }));
      assert.deepEqual(Object.keys(userAssigned(both)).sort(), [id1.id.toLowerCase(), id2.id.toLowerCase()].sort());
      assert.equal(both.vmId, created.vmId);

      // Remove one: its key set to null (the client sends JSON null for it).
      const removed = await timed(vms.update(rg, name, { identity: { type: "UserAssigned", userAssignedIdentities: { [id1.id]: null } } }));
      assert.deepEqual(Object.keys(userAssigned(removed)), [id2.id.toLowerCase()], JSON.stringify(removed.identity));

      const mixed = await timed(vms.update(rg, name, { identity: { type: "SystemAssigned, UserAssigned" } }));
      assert.equal(mixed.identity.type, "SystemAssigned, UserAssigned");
      assert.match(mixed.identity.principalId, GUID_RE);
      assert.deepEqual(Object.keys(userAssigned(mixed)), [id2.id.toLowerCase()]);

      const systemOnly = await timed(vms.update(rg, name, { identity: { type: "SystemAssigned" } }));
      assert.equal(systemOnly.identity.type, "SystemAssigned");
      assert.equal(systemOnly.identity.principalId, mixed.identity.principalId);
      assert.deepEqual(userAssigned(systemOnly), {});

      const none = await timed(vms.update(rg, name, { identity: { type: "None" } }));
      assert.ok(!none.identity || none.identity.type === "None", JSON.stringify(none.identity));

      // The identities themselves are untouched and survive the VM.
      await timed(vms.delete(rg, name));
      assert.equal((await arm.msi.userAssignedIdentities.get(rg, id1.name)).principalId, id1.principalId);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("a PUT replaces the identity block; a missing identity fails and changes nothing", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const vms = arm.compute.virtualMachines;
      const id1 = await arm.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id1"), { location: "westus" });
      const id2 = await arm.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id2"), { location: "westus" });
      const name = uniqueName("vm");
      await timed(vms.createOrUpdate(rg, name, vmBody(server, name, { identity: { type: "UserAssigned", userAssignedIdentities: { [id1.id]: {} } } })));
      const replaced = await timed(vms.createOrUpdate(rg, name, vmBody(server, name, { identity: { type: "UserAssigned", userAssignedIdentities: { [id2.id]: {} } } })));
      assert.deepEqual(Object.keys(userAssigned(replaced)), [id2.id.toLowerCase()]);

      const missing = server.identityId(rg, uniqueName("absent"));
      const error = await rejects(vms.update(rg, name, { identity: { type: "UserAssigned", userAssignedIdentities: { [missing]: {} } } }));
      assert.ok([400, 404].includes(error.statusCode), describeError(error));
      assert.deepEqual(Object.keys(userAssigned(await vms.get(rg, name))), [id2.id.toLowerCase()], "nothing changed");
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("the ManagedIdentityExtensionForWindows extension (seed 004) is stored, listed and deleted with its VM", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const name = uniqueName("vm");
      await timed(arm.compute.virtualMachines.createOrUpdate(rg, name, vmBody(server, name, { identity: { type: "SystemAssigned" } })));
      const extension = await timed(arm.compute.virtualMachineExtensions.createOrUpdate(rg, name, "ManagedIdentityExtensionForWindows", {
        location: "westus",
        publisher: "Microsoft.ManagedIdentity",
        typePropertiesType: "ManagedIdentityExtensionForWindows",
        typeHandlerVersion: "1.0",
        autoUpgradeMinorVersion: true,
        settings: { port: 50342 },
      }));
      assert.equal(extension.name, "ManagedIdentityExtensionForWindows");
      assert.equal(extension.publisher, "Microsoft.ManagedIdentity");
      assert.deepEqual(extension.settings, { port: 50342 });
      const got = await arm.compute.virtualMachineExtensions.get(rg, name, "ManagedIdentityExtensionForWindows");
      assert.equal(got.typePropertiesType, "ManagedIdentityExtensionForWindows");
      const listed = await arm.compute.virtualMachineExtensions.list(rg, name);
      assert.deepEqual(listed.value.map((e) => e.name), ["ManagedIdentityExtensionForWindows"]);

      await timed(arm.compute.virtualMachines.delete(rg, name));
      const error = await rejects(arm.compute.virtualMachineExtensions.get(rg, name, "ManagedIdentityExtensionForWindows"));
      assert.equal(error.statusCode, 404, describeError(error));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});
