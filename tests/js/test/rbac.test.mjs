// Role-based access control with the real JavaScript clients (issue 14): the Microsoft.Authorization
// API through @azure/arm-authorization 9 (api-version 2022-04-01: role assignments and definitions,
// list filters, errors), and enforcement with every client acting as a service principal of its
// own: Reader reads but cannot write, Virtual Machine Contributor needs Managed Identity Operator
// to attach an identity (LinkedAuthorizationFailed), Managed Identity Contributor cannot grant,
// a revoked assignment denies the very next request, custom roles apply at once.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";

import {
  GUID_RE,
  ROLES,
  armErrorBody,
  armErrorCode,
  createServicePrincipal,
  describeError,
  logged,
  parseAuthorizationFailed,
  rejects,
  startServer,
  uniqueName,
} from "../lib/support.mjs";
import { all, armClients, createGroup, deleteGroupQuietly, secretCredential, timed, userAssigned, vmBody } from "../lib/arm.mjs";

const GROUP_READ = "Microsoft.Resources/subscriptions/resourceGroups/read";
const GROUP_WRITE = "Microsoft.Resources/subscriptions/resourceGroups/write";
const IDENTITY_DELETE = "Microsoft.ManagedIdentity/userAssignedIdentities/delete";
const IDENTITY_WRITE = "Microsoft.ManagedIdentity/userAssignedIdentities/write";
const IDENTITY_ASSIGN = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action";
const ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write";

let server;
let admin;
const granted = [];

before(async () => {
  server = await startServer();
  admin = await armClients(server);
});
after(async () => {
  for (const id of granted) {
    try {
      await admin.authorization.roleAssignments.deleteById(id);
    } catch {
      // already gone
    }
  }
  await server?.stop();
});

/** A new service principal and the real clients acting as it. */
async function principal() {
  const sp = await createServicePrincipal(server, uniqueName("js-rbac-sp"));
  const clients = await armClients(server, secretCredential(server, sp.appId, sp.secret));
  assert.equal(clients.objectId, sp.objectId, "the token's oid is the service principal's object id");
  return Object.assign(clients, { sp });
}

/** A role assignment made by the bootstrap SP (or by `by`) through @azure/arm-authorization. */
async function grant(principalId, role, scope, { by = admin, principalType = "ServicePrincipal", name = crypto.randomUUID() } = {}) {
  const created = await by.authorization.roleAssignments.create(scope, name, {
    roleDefinitionId: server.roleDefinitionId(role),
    principalId,
    principalType,
  });
  granted.push(created.id);
  return created;
}

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

describe("@azure/arm-authorization: role assignments", () => {
  test("create, get by scope and by id, list at scope / by principal / assignedTo, delete", logged(async () => {
    const rg = await createGroup(admin);
    try {
      const target = await createServicePrincipal(server);
      const scope = server.groupId(rg);
      const name = crypto.randomUUID();
      const created = await grant(target.objectId, "Reader", scope, { name });
      assert.equal(created.name, name);
      assert.equal(created.type, "Microsoft.Authorization/roleAssignments");
      assert.equal(created.roleDefinitionId.toLowerCase(), server.roleDefinitionId("Reader").toLowerCase());
      assert.equal(created.principalId, target.objectId);
      assert.equal(created.principalType, "ServicePrincipal");
      assert.equal(created.scope.toLowerCase(), scope.toLowerCase());
      assert.equal(created.updatedBy, admin.objectId);

      const got = await admin.authorization.roleAssignments.get(scope, name);
      const byId = await admin.authorization.roleAssignments.getById(created.id);
      assert.equal(got.id, created.id);
      assert.equal(byId.id, created.id);

      const atScope = await all(admin.authorization.roleAssignments.listForScope(scope, { filter: "atScope()" }));
      assert.ok(atScope.some((a) => a.name === name), JSON.stringify(atScope.map((a) => a.name)));
      const byPrincipal = await all(admin.authorization.roleAssignments.listForSubscription({ filter: `principalId eq '${target.objectId}'` }));
      assert.deepEqual(byPrincipal.map((a) => a.name), [name]);
      const assignedTo = await all(admin.authorization.roleAssignments.listForResourceGroup(rg, { filter: `assignedTo('${target.objectId}')` }));
      assert.deepEqual(assignedTo.map((a) => a.name), [name]);

      const deleted = await admin.authorization.roleAssignments.delete(scope, name);
      assert.equal(deleted.name, name);
      const error = await rejects(admin.authorization.roleAssignments.get(scope, name));
      assert.equal(error.statusCode, 404, describeError(error));
      assert.equal(armErrorCode(error), "RoleAssignmentNotFound");
    } finally {
      await deleteGroupQuietly(admin, rg);
    }
  }));

  test("errors: PrincipalNotFound, RoleDefinitionDoesNotExist, RoleAssignmentExists, InvalidRoleAssignmentId, UnmatchedPrincipalType", logged(async () => {
    const rg = await createGroup(admin);
    try {
      const scope = server.groupId(rg);
      const assignments = admin.authorization.roleAssignments;
      const unknownPrincipal = await rejects(assignments.create(scope, crypto.randomUUID(), {
        roleDefinitionId: server.roleDefinitionId("Reader"), principalId: crypto.randomUUID(), principalType: "ServicePrincipal",
      }));
      assert.equal(unknownPrincipal.statusCode, 400, describeError(unknownPrincipal));
      assert.equal(armErrorCode(unknownPrincipal), "PrincipalNotFound");

      const target = await createServicePrincipal(server);
      const unknownRole = await rejects(assignments.create(scope, crypto.randomUUID(), {
        roleDefinitionId: server.roleDefinitionId(crypto.randomUUID()), principalId: target.objectId,
      }));
      assert.equal(unknownRole.statusCode, 400, describeError(unknownRole));
      assert.equal(armErrorCode(unknownRole), "RoleDefinitionDoesNotExist");

      const first = await grant(target.objectId, "Reader", scope);
      const duplicate = await rejects(assignments.create(scope, crypto.randomUUID(), {
        roleDefinitionId: server.roleDefinitionId("Reader"), principalId: target.objectId, principalType: "ServicePrincipal",
      }));
      assert.equal(duplicate.statusCode, 409, describeError(duplicate));
      assert.equal(armErrorCode(duplicate), "RoleAssignmentExists");
      // Azure names the existing assignment by its GUID without dashes.
      assert.ok(armErrorBody(duplicate).message.includes(first.name.replaceAll("-", "")), armErrorBody(duplicate).message);

      const badName = await rejects(assignments.create(scope, "not-a-guid", {
        roleDefinitionId: server.roleDefinitionId("Reader"), principalId: target.objectId,
      }));
      assert.equal(badName.statusCode, 400, describeError(badName));
      assert.equal(armErrorCode(badName), "InvalidRoleAssignmentId");

      const wrongType = await rejects(assignments.create(scope, crypto.randomUUID(), {
        roleDefinitionId: server.roleDefinitionId("Contributor"), principalId: target.objectId, principalType: "User",
      }));
      assert.equal(wrongType.statusCode, 400, describeError(wrongType));
      assert.equal(armErrorCode(wrongType), "UnmatchedPrincipalType");
    } finally {
      await deleteGroupQuietly(admin, rg);
    }
  }));
});

describe("@azure/arm-authorization: role definitions", () => {
  test("built-in roles by GUID and by roleName filter", logged(async () => {
    const scope = server.subscriptionScope;
    for (const [roleName, guid] of Object.entries(ROLES)) {
      const role = await admin.authorization.roleDefinitions.get(scope, guid);
      assert.equal(role.roleName, roleName);
      assert.equal(role.roleType, "BuiltInRole");
      const byName = await all(admin.authorization.roleDefinitions.list(scope, { filter: `roleName eq '${roleName}'` }));
      assert.deepEqual(byName.map((r) => r.name), [guid]);
    }
    const builtIn = await all(admin.authorization.roleDefinitions.list(scope, { filter: "type eq 'BuiltInRole'" }));
    assert.ok(builtIn.length >= Object.keys(ROLES).length);
    const missing = await rejects(admin.authorization.roleDefinitions.get(scope, crypto.randomUUID()));
    assert.equal(missing.statusCode, 404, describeError(missing));
    assert.equal(armErrorCode(missing), "RoleDefinitionDoesNotExist");
  }));

  test("a custom role: create, update, refused while assigned, applies to the next request, delete", logged(async () => {
    const rg = await createGroup(admin);
    try {
      const scope = server.subscriptionScope;
      const guid = crypto.randomUUID();
      const roleName = uniqueName("js-custom");
      const definitions = admin.authorization.roleDefinitions;
      const created = await definitions.createOrUpdate(scope, guid, {
        roleName, roleType: "CustomRole", description: "node test",
        permissions: [{ actions: [GROUP_READ], notActions: [] }], assignableScopes: [scope],
      });
      assert.equal(created.name, guid);
      assert.equal(created.roleType, "CustomRole");
      const custom = await all(definitions.list(scope, { filter: "type eq 'CustomRole'" }));
      assert.ok(custom.some((r) => r.name === guid));

      const identity = await admin.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id"), { location: "westus" });
      const actor = await principal();
      const assignment = await grant(actor.objectId, guid, server.groupId(rg));
      assert.equal((await actor.resource.resourceGroups.get(rg)).name, rg);
      // Lists answer only what the caller may read: nothing yet.
      assert.deepEqual(await all(actor.msi.userAssignedIdentities.listByResourceGroup(rg)), []);
      const denied = await rejects(actor.msi.userAssignedIdentities.get(rg, identity.name));
      assert.equal(denied.statusCode, 403, describeError(denied));

      // Widening the role applies to the very next request.
      await definitions.createOrUpdate(scope, guid, {
        roleName, roleType: "CustomRole", permissions: [{ actions: ["*/read"], notActions: [] }], assignableScopes: [scope],
      });
      const listed = await all(actor.msi.userAssignedIdentities.listByResourceGroup(rg));
      assert.deepEqual(listed.map((i) => i.principalId), [identity.principalId]);

      const inUse = await rejects(definitions.delete(scope, guid));
      assert.equal(inUse.statusCode, 409, describeError(inUse));
      await admin.authorization.roleAssignments.deleteById(assignment.id);
      await definitions.delete(scope, guid);
      const gone = await rejects(definitions.get(scope, guid));
      assert.equal(armErrorCode(gone), "RoleDefinitionDoesNotExist");
    } finally {
      await deleteGroupQuietly(admin, rg);
    }
  }));

  // The twin of tests/py/test_rbac.py::test_custom_role_with_not_actions_denies_exactly_those.
  test("a custom role with notActions denies exactly those, acted on by a second principal", logged(async () => {
    const rg = await createGroup(admin);
    const scope = server.subscriptionScope;
    const guid = crypto.randomUUID();
    const definitions = admin.authorization.roleDefinitions;
    let assignment;
    try {
      const roleName = uniqueName("js-identity-keeper");
      const actions = ["Microsoft.ManagedIdentity/userAssignedIdentities/*", GROUP_READ];
      const statuses = [];
      const created = await definitions.createOrUpdate(scope, guid, {
        roleName, roleType: "CustomRole", description: "node custom role",
        permissions: [{ actions, notActions: [IDENTITY_DELETE], dataActions: [], notDataActions: [] }],
        assignableScopes: [server.groupId(rg)],
      }, { onResponse: (response) => statuses.push(response.status) });
      assert.deepEqual(statuses, [201], "the client's spec lists 201 alone for this PUT");
      assert.equal(created.name, guid);
      assert.equal(created.roleName, roleName);
      assert.equal(created.roleType, "CustomRole");
      assert.deepEqual(created.permissions[0].actions, actions);
      assert.deepEqual(created.permissions[0].notActions, [IDENTITY_DELETE]);
      assert.deepEqual(created.assignableScopes.map((s) => s.toLowerCase()), [server.groupId(rg).toLowerCase()]);
      const got = await definitions.get(scope, guid);
      assert.deepEqual([got.roleName, got.roleType], [roleName, "CustomRole"]);
      const found = await all(definitions.list(scope, { filter: `roleName eq '${roleName}'` }));
      assert.deepEqual(found.map((r) => r.name), [guid]);

      const keeper = await principal();
      assignment = await grant(keeper.objectId, guid, server.groupId(rg));
      const made = await keeper.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id"), { location: "westus" });
      assert.equal((await keeper.msi.userAssignedIdentities.get(rg, made.name)).principalId, made.principalId);
      const patched = await keeper.msi.userAssignedIdentities.update(rg, made.name, { tags: { k: "v" } });
      assert.deepEqual(patched.tags, { k: "v" });
      assert.equal((await keeper.resource.resourceGroups.get(rg)).name, rg);

      const refused = await rejects(keeper.msi.userAssignedIdentities.delete(rg, made.name));
      assertAuthorizationFailed(refused, keeper.objectId, IDENTITY_DELETE, made.id);
      assert.equal((await admin.msi.userAssignedIdentities.get(rg, made.name)).principalId, made.principalId);
      // Nothing outside its actions either.
      const write = await rejects(keeper.resource.resourceGroups.createOrUpdate(rg, { location: "westus" }));
      assertAuthorizationFailed(write, keeper.objectId, GROUP_WRITE, server.groupId(rg));
      await admin.authorization.roleAssignments.deleteById(assignment.id);
    } finally {
      // Assignments first: Azure refuses to delete a role that is still assigned.
      if (assignment) await admin.authorization.roleAssignments.deleteById(assignment.id).catch(() => {});
      await definitions.delete(scope, guid).catch(() => {});
      await deleteGroupQuietly(admin, rg);
    }
  }));
});

describe("enforcement, each client acting as a service principal of its own", () => {
  test("Reader reads the group but cannot write in it; without an assignment everything is denied", logged(async () => {
    const rg = await createGroup(admin);
    try {
      const reader = await principal();
      const denied = await rejects(reader.resource.resourceGroups.get(rg));
      assertAuthorizationFailed(denied, reader.objectId, GROUP_READ, server.groupId(rg));
      assert.deepEqual(await all(reader.resource.resourceGroups.list()), []);

      await grant(reader.objectId, "Reader", server.groupId(rg));
      assert.equal((await reader.resource.resourceGroups.get(rg)).name, rg);
      assert.deepEqual((await all(reader.resource.resourceGroups.list())).map((g) => g.name), [rg]);
      const name = uniqueName("id");
      const write = await rejects(reader.msi.userAssignedIdentities.createOrUpdate(rg, name, { location: "westus" }));
      assertAuthorizationFailed(write, reader.objectId, IDENTITY_WRITE, server.identityId(rg, name));
    } finally {
      await deleteGroupQuietly(admin, rg);
    }
  }));

  test("Virtual Machine Contributor needs Managed Identity Operator to attach a user-assigned identity", logged(async () => {
    const rg = await createGroup(admin);
    try {
      const identity = await admin.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id"), { location: "westus" });
      const vmc = await principal();
      await grant(vmc.objectId, "Virtual Machine Contributor", server.groupId(rg));
      const name = uniqueName("vm");
      const created = await timed(vmc.compute.virtualMachines.createOrUpdate(rg, name, vmBody(server, name, { identity: { type: "SystemAssigned" } })));
      const systemPrincipal = created.identity.principalId;
      assert.match(systemPrincipal, GUID_RE);

      const attach = { identity: { type: "SystemAssigned, UserAssigned", userAssignedIdentities: { [identity.id]: {} } } };
      const refused = await rejects(vmc.compute.virtualMachines.update(rg, name, attach));
      assert.equal(refused.statusCode, 403, describeError(refused));
      const body = armErrorBody(refused);
      assert.equal(body.code, "LinkedAuthorizationFailed");
      assert.ok(body.message.includes(vmc.objectId), body.message);
      assert.ok(body.message.toLowerCase().includes(IDENTITY_ASSIGN.toLowerCase()), body.message);
      assert.ok(body.message.toLowerCase().includes(identity.id.toLowerCase()), body.message);
      const unchanged = await admin.compute.virtualMachines.get(rg, name);
      assert.equal(unchanged.identity.type, "SystemAssigned");
      assert.deepEqual(userAssigned(unchanged), {});

      await grant(vmc.objectId, "Managed Identity Operator", identity.id);
      const attached = await timed(vmc.compute.virtualMachines.update(rg, name, attach));
      assert.equal(attached.identity.type, "SystemAssigned, UserAssigned");
      assert.equal(attached.identity.principalId, systemPrincipal);
      assert.deepEqual(Object.keys(userAssigned(attached)), [identity.id.toLowerCase()]);

      const change = await rejects(vmc.msi.userAssignedIdentities.update(rg, identity.name, { tags: { by: "vmc" } }));
      assertAuthorizationFailed(change, vmc.objectId, IDENTITY_WRITE, identity.id);
    } finally {
      await deleteGroupQuietly(admin, rg);
    }
  }));

  test("Managed Identity Contributor creates identities but cannot assign roles; Owner and User Access Administrator can", logged(async () => {
    const rg = await createGroup(admin);
    try {
      const mic = await principal();
      await grant(mic.objectId, "Managed Identity Contributor", server.groupId(rg));
      const identity = await mic.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id"), { location: "westus" });
      assert.match(identity.principalId, GUID_RE);
      const name = crypto.randomUUID();
      const refused = await rejects(grant(identity.principalId, "Reader", server.groupId(rg), { by: mic, name }));
      assertAuthorizationFailed(refused, mic.objectId, ASSIGNMENT_WRITE,
        `${server.groupId(rg)}/providers/Microsoft.Authorization/roleAssignments/${name}`);

      for (const role of ["Owner", "User Access Administrator"]) {
        const adminPrincipal = await principal();
        await grant(adminPrincipal.objectId, role, server.groupId(rg));
        const made = await grant(identity.principalId, "Reader", server.groupId(rg), { by: adminPrincipal });
        await adminPrincipal.authorization.roleAssignments.deleteById(made.id);
      }
    } finally {
      await deleteGroupQuietly(admin, rg);
    }
  }));

  test("removing an assignment denies the very next request", logged(async () => {
    const rg = await createGroup(admin);
    try {
      const reader = await principal();
      for (let round = 0; round < 3; round += 1) {
        const assignment = await grant(reader.objectId, "Reader", server.groupId(rg));
        assert.equal((await reader.resource.resourceGroups.get(rg)).name, rg);
        await admin.authorization.roleAssignments.delete(server.groupId(rg), assignment.name);
        const denied = await rejects(reader.resource.resourceGroups.get(rg));
        assertAuthorizationFailed(denied, reader.objectId, GROUP_READ, server.groupId(rg));
      }
    } finally {
      await deleteGroupQuietly(admin, rg);
    }
  }));
});
