// Managed identities for Node code "on the VM" (issue 14): seed 002 end to end with
// @azure/identity's ManagedIdentityCredential and @azure/arm-resources inside `openmi vm run`
// (IMDS through AZURE_POD_IDENTITY_AUTHORITY_HOST, and the App Service protocol), selection by
// clientId / objectId / resourceId, DefaultAzureCredential, @azure/msal-node's
// ManagedIdentityApplication, and revocation: an identity removed from the VM yields no token.
// The administrator's side uses @azure/arm-msi, -compute and -authorization.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";

import { createRemoteJWKSet, jwtVerify } from "jose";

import { ARM, cliLoginSp, logged, startServer, uniqueName, unverifiedClaims, vmRun } from "../lib/support.mjs";
import { armClients, createGroup, deleteGroupQuietly, timed, vmBody } from "../lib/arm.mjs";

let server;
let arm;
let cli;
before(async () => {
  server = await startServer();
  arm = await armClients(server);
  cli = cliLoginSp(server);
});
after(async () => {
  await server?.stop();
});

/** A managed-identity token as Azure makes it, verified with the server's published keys. */
async function assertMiClaims(token, principalId, clientId, mirid) {
  const discovery = await (await fetch(`${server.url}/${server.tenantId}/v2.0/.well-known/openid-configuration`)).json();
  const { payload: claims } = await jwtVerify(token, createRemoteJWKSet(new URL(discovery.jwks_uri)), {
    audience: ARM,
    issuer: `${server.url}/${server.tenantId}/`,
    algorithms: ["RS256"],
  });
  assert.equal(claims.oid, principalId);
  assert.equal(claims.sub, principalId);
  assert.equal(claims.appid, clientId);
  assert.equal(claims.idtyp, "app");
  assert.equal(String(claims.appidacr), "2");
  assert.equal(claims.tid, server.tenantId);
  assert.equal(claims.xms_mirid.toLowerCase(), mirid.toLowerCase());
  const lifetime = claims.exp - claims.iat;
  assert.ok(lifetime >= 86400 - 60 && lifetime <= 86400 + 600, `a managed-identity token lives 24 h: ${lifetime} s`);
  return claims;
}

async function grantReader(principalId, scope) {
  return arm.authorization.roleAssignments.create(scope, crypto.randomUUID(), {
    roleDefinitionId: server.roleDefinitionId("Reader"),
    principalId,
    principalType: "ServicePrincipal",
  });
}

function workload(rg, vm, spec, options) {
  return vmRun(cli, rg, vm, "identity.mjs", spec, options);
}

describe("seed 002 in Node: a user-assigned identity on a VM reads its resource group", () => {
  for (const protocol of ["imds", "app-service"]) {
    test(`ManagedIdentityCredential({clientId}) + ResourceManagementClient over ${protocol}`, logged(async () => {
      const rg = await createGroup(arm);
      try {
        // The administrator: New-AzUserAssignedIdentity, Update-AzVM -IdentityType UserAssigned,
        // New-AzRoleAssignment -RoleDefinitionName Reader on the group.
        const identity = await arm.msi.userAssignedIdentities.createOrUpdate(rg, "ID1", { location: "westus" });
        await timed(arm.compute.virtualMachines.createOrUpdate(rg, "myVM", vmBody(server, "myVM")));
        const vm = await timed(arm.compute.virtualMachines.update(rg, "myVM", {
          identity: { type: "UserAssigned", userAssignedIdentities: { [identity.id]: {} } },
        }));
        assert.equal(vm.identity.type, "UserAssigned");
        await grantReader(identity.principalId, server.groupId(rg));

        const out = await workload(rg, "myVM", {
          clientId: identity.clientId, group: rg, subscription: server.subscriptionId, endpoint: server.url,
        }, { protocol: protocol === "imds" ? undefined : protocol });
        if (protocol === "imds") {
          assert.match(out.env.AZURE_POD_IDENTITY_AUTHORITY_HOST ?? "", /^http:\/\/127\.0\.0\.1:\d+\/?$/, JSON.stringify(out.env));
          assert.equal(out.env.IDENTITY_ENDPOINT, null);
        } else {
          assert.match(out.env.IDENTITY_ENDPOINT ?? "", /^http:\/\/127\.0\.0\.1:\d+(\/.*)?$/, JSON.stringify(out.env));
          assert.ok(out.env.IDENTITY_HEADER);
        }
        assert.ok(out.token, JSON.stringify(out));
        assert.deepEqual(out.group, { id: server.groupId(rg), name: rg, location: "westus", provisioningState: "Succeeded" }, JSON.stringify(out));
        await assertMiClaims(out.token, identity.principalId, identity.clientId, identity.id);
        assert.ok(Math.abs(out.expiresOn - Date.now() - 86_400_000) < 700_000, `expiresOn ${out.expiresOn}`);
      } finally {
        await deleteGroupQuietly(arm, rg);
      }
    }));
  }
});

describe("identity selection", () => {
  test("no selector gives the system identity; clientId, objectId and resourceId select a user-assigned one, over IMDS and App Service", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const id1 = await arm.msi.userAssignedIdentities.createOrUpdate(rg, "ID1", { location: "westus" });
      const id2 = await arm.msi.userAssignedIdentities.createOrUpdate(rg, "ID2", { location: "westus" });
      const vm = await timed(arm.compute.virtualMachines.createOrUpdate(rg, "vm1", vmBody(server, "vm1", {
        identity: { type: "SystemAssigned, UserAssigned", userAssignedIdentities: { [id1.id]: {}, [id2.id]: {} } },
      })));
      const system = await arm.msi.systemAssignedIdentities.getByScope(vm.id);

      const none = await workload(rg, "vm1", {});
      assert.ok(none.token, JSON.stringify(none));
      await assertMiClaims(none.token, system.principalId, system.clientId, vm.id);

      const cases = [
        [{ clientId: id1.clientId }, id1],
        [{ objectId: id1.principalId }, id1],
        [{ resourceId: id2.id }, id2],
      ];
      // msal-node (under both) names the selectors per protocol: IMDS `client_id`, `object_id`,
      // `msi_res_id`; App Service `client_id`, `object_id`, `mi_res_id`.
      for (const [spec, expected] of cases) {
        for (const credential of ["mi", "msal"]) {
          for (const protocol of [undefined, "app-service"]) {
            const out = await workload(rg, "vm1", { ...spec, credential }, { protocol });
            assert.ok(out.token, `${credential} ${protocol ?? "imds"} ${JSON.stringify(spec)}: ${JSON.stringify(out)}`);
            await assertMiClaims(out.token, expected.principalId, expected.clientId, expected.id);
          }
        }
      }

      // An identity the VM does not have: CredentialUnavailableError (IMDS answers 400).
      const other = await arm.msi.userAssignedIdentities.createOrUpdate(rg, "ID3", { location: "westus" });
      const missing = await workload(rg, "vm1", { clientId: other.clientId });
      assert.equal(missing.token, undefined, JSON.stringify(missing));
      assert.match(missing.tokenError, /^CredentialUnavailableError: /, missing.tokenError);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("@azure/msal-node ManagedIdentityApplication with no selector, over IMDS and App Service", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const vm = await timed(arm.compute.virtualMachines.createOrUpdate(rg, "vm1", vmBody(server, "vm1", { identity: { type: "SystemAssigned" } })));
      for (const protocol of [undefined, "app-service"]) {
        const out = await workload(rg, "vm1", { credential: "msal" }, { protocol });
        assert.ok(out.token, JSON.stringify(out));
        assert.equal(out.source, protocol ? "AppService" : "DefaultToImds");
        assert.equal(unverifiedClaims(out.token).oid, vm.identity.principalId);
        assert.ok(Math.abs(out.expiresOn - Date.now() - 86_400_000) < 700_000, `expiresOn ${out.expiresOn}`);
      }
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("DefaultAzureCredential picks the managed identity; without a role the group read is 403", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const id1 = await arm.msi.userAssignedIdentities.createOrUpdate(rg, "ID1", { location: "westus" });
      const vm = await timed(arm.compute.virtualMachines.createOrUpdate(rg, "vm1", vmBody(server, "vm1", {
        identity: { type: "SystemAssigned, UserAssigned", userAssignedIdentities: { [id1.id]: {} } },
      })));
      await grantReader(id1.principalId, server.groupId(rg));
      const spec = { credential: "default", group: rg, subscription: server.subscriptionId, endpoint: server.url };

      const system = await workload(rg, "vm1", spec);
      assert.equal(unverifiedClaims(system.token).oid, vm.identity.principalId, JSON.stringify(system));
      assert.equal(system.groupError?.status, 403, JSON.stringify(system));
      assert.equal(system.groupError?.code, "AuthorizationFailed");

      const user = await workload(rg, "vm1", { ...spec, clientId: id1.clientId });
      assert.equal(unverifiedClaims(user.token).oid, id1.principalId, JSON.stringify(user));
      assert.equal(user.group?.name, rg, JSON.stringify(user));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("an identity removed from the VM yields no token for the next run", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const identity = await arm.msi.userAssignedIdentities.createOrUpdate(rg, uniqueName("id"), { location: "westus" });
      await timed(arm.compute.virtualMachines.createOrUpdate(rg, "vm1", vmBody(server, "vm1", {
        identity: { type: "UserAssigned", userAssignedIdentities: { [identity.id]: {} } },
      })));
      const before = await workload(rg, "vm1", { clientId: identity.clientId });
      assert.ok(before.token, JSON.stringify(before));
      await timed(arm.compute.virtualMachines.update(rg, "vm1", { identity: { type: "None" } }));
      const afterRemoval = await workload(rg, "vm1", { clientId: identity.clientId });
      assert.equal(afterRemoval.token, undefined, JSON.stringify(afterRemoval));
      assert.match(afterRemoval.tokenError, /^CredentialUnavailableError: /);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});
