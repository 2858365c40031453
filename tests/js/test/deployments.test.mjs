// ARM template deployments with the real JavaScript client (issue 15, proven in both languages as
// issue 14 asks): the deployments client of @azure/arm-resources 6.1 (installed as
// @azure/arm-resources-deployments; version 7 dropped it) submits the seeds' templates - a VM with
// a system-assigned identity, a user-assigned identity and a VM holding it with the identity's
// principalId as an output through reference(), a role assignment for the VM's system identity
// through reference(..., 'Full').identity.principalId - then the identity works inside
// `openmi vm run`; validate, what-if, operations, exportTemplate, template errors, and a failure
// in a resource (LinkedAuthorizationFailed for a Virtual Machine Contributor) in the deployment's
// details.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";

import { ResourceManagementClient as DeploymentsClient } from "@azure/arm-resources-deployments";

import {
  GUID_RE,
  ROLES,
  armErrorBody,
  cliLoginSp,
  createServicePrincipal,
  describeError,
  logged,
  rejects,
  startServer,
  uniqueName,
  unverifiedClaims,
  vmRun,
} from "../lib/support.mjs";
import { all, armClients, clientOptions, createGroup, deleteGroupQuietly, secretCredential, timed } from "../lib/arm.mjs";

const IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities";

let server;
let arm;
let deployments;
let cli;
before(async () => {
  server = await startServer();
  arm = await armClients(server);
  deployments = new DeploymentsClient(arm.credential, server.subscriptionId, clientOptions(server));
  cli = cliLoginSp(server);
});
after(async () => {
  await server?.stop();
});

function vmResource(name, identity, extra = {}) {
  return {
    apiVersion: "2018-06-01",
    type: "Microsoft.Compute/virtualMachines",
    name,
    location: "[resourceGroup().location]",
    identity,
    properties: {
      hardwareProfile: { vmSize: "Standard_DS1_v2" },
      osProfile: { computerName: "myVM", adminUsername: "azureuser", adminPassword: "[parameters('adminPassword')]" },
    },
    ...extra,
  };
}

function template(resources, { variables = {}, outputs = {}, parameters = {} } = {}) {
  return {
    $schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    contentVersion: "1.0.0.0",
    parameters: { adminPassword: { type: "securestring" }, ...parameters },
    variables,
    resources,
    outputs,
  };
}

async function deploy(client, rg, tpl, { name = uniqueName("jsdep"), mode = "Incremental", parameters = {} } = {}) {
  return client.deployments.beginCreateOrUpdateAndWait(rg, name, {
    properties: { mode, template: tpl, parameters: { adminPassword: { value: "myPassword12" }, ...parameters } },
  }, { updateIntervalInMs: 100 });
}

describe("@azure/arm-resources 6.1 deployments: the seeds' templates", () => {
  test("seed 001: a VM with a system-assigned identity; record, operations, exportTemplate, list, delete", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const name = uniqueName("jsdep");
      const tpl = template([vmResource("[variables('vmName')]", { type: "SystemAssigned" })], {
        variables: { vmName: "myVM" },
        outputs: { principalId: { type: "string", value: "[reference(resourceId('Microsoft.Compute/virtualMachines', variables('vmName')), '2018-06-01', 'Full').identity.principalId]" } },
      });
      const result = await timed(deploy(deployments, rg, tpl, { name }));
      assert.equal(result.properties.provisioningState, "Succeeded");
      assert.deepEqual(result.properties.parameters.adminPassword, { type: "SecureString" });
      const vm = await arm.compute.virtualMachines.get(rg, "myVM");
      assert.equal(vm.identity.type, "SystemAssigned");
      assert.match(vm.identity.principalId, GUID_RE);
      assert.equal(result.properties.outputs.principalId.value, vm.identity.principalId);

      const operations = await all(deployments.deploymentOperations.list(rg, name));
      assert.equal(operations.length, 1);
      assert.equal(operations[0].properties.provisioningState, "Succeeded");
      assert.equal(operations[0].properties.targetResource.resourceType, "Microsoft.Compute/virtualMachines");
      const exported = await deployments.deployments.exportTemplate(rg, name);
      assert.deepEqual(exported.template.resources[0].identity, { type: "SystemAssigned" });
      assert.deepEqual((await all(deployments.deployments.listByResourceGroup(rg))).map((d) => d.name), [name]);
      await timed(deployments.deployments.beginDeleteAndWait(rg, name));
      assert.equal((await deployments.deployments.checkExistence(rg, name)).body, false);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("a user-assigned identity and a VM holding it (keyed by resourceId), then the identity reads the group on the VM", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const identityId = `[resourceId('${IDENTITY_TYPE}', variables('identityName'))]`;
      const tpl = template([
        { type: IDENTITY_TYPE, apiVersion: "2018-11-30", name: "[variables('identityName')]", location: "[resourceGroup().location]" },
        vmResource("[variables('vmName')]", { type: "UserAssigned", userAssignedIdentities: { [identityId]: {} } }, { dependsOn: [identityId] }),
        {
          type: "Microsoft.Authorization/roleAssignments", apiVersion: "2022-04-01",
          name: `[guid(resourceGroup().id, ${identityId.slice(1, -1)}, 'reader')]`, dependsOn: [identityId],
          properties: {
            roleDefinitionId: `[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '${ROLES.Reader}')]`,
            principalId: `[reference(${identityId.slice(1, -1)}, '2018-11-30').principalId]`, principalType: "ServicePrincipal",
          },
        },
      ], {
        variables: { vmName: "myVM", identityName: "ID1" },
        outputs: {
          principalId: { type: "string", value: `[reference(${identityId.slice(1, -1)}, '2018-11-30').principalId]` },
          clientId: { type: "string", value: `[reference(${identityId.slice(1, -1)}).clientId]` },
        },
      });
      const result = await timed(deploy(deployments, rg, tpl));
      const identity = await arm.msi.userAssignedIdentities.get(rg, "ID1");
      assert.deepEqual(result.properties.outputs.principalId, { type: "String", value: identity.principalId });
      assert.equal(result.properties.outputs.clientId.value, identity.clientId);

      const out = await vmRun(cli, rg, "myVM", "identity.mjs", {
        clientId: identity.clientId, group: rg, subscription: server.subscriptionId, endpoint: server.url,
      });
      assert.equal(out.group?.name, rg, JSON.stringify(out));
      assert.equal(unverifiedClaims(out.token).oid, identity.principalId);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("a role assignment for the VM's system identity through reference(..., 'Full').identity.principalId", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const vmId = "resourceId('Microsoft.Compute/virtualMachines', 'myVM')";
      const tpl = template([
        vmResource("myVM", { type: "SystemAssigned" }),
        {
          type: "Microsoft.Authorization/roleAssignments", apiVersion: "2022-04-01",
          name: `[guid(resourceGroup().id, ${vmId})]`, dependsOn: [`[${vmId}]`],
          properties: {
            roleDefinitionId: `[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '${ROLES.Reader}')]`,
            principalId: `[reference(${vmId}, '2018-06-01', 'Full').identity.principalId]`,
          },
        },
      ]);
      await timed(deploy(deployments, rg, tpl));
      const vm = await arm.compute.virtualMachines.get(rg, "myVM");
      const assignments = await all(arm.authorization.roleAssignments.listForResourceGroup(rg, { filter: `principalId eq '${vm.identity.principalId}'` }));
      assert.equal(assignments.length, 1);
      const out = await vmRun(cli, rg, "myVM", "identity.mjs", { group: rg, subscription: server.subscriptionId, endpoint: server.url });
      assert.equal(out.group?.name, rg, JSON.stringify(out));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});

describe("@azure/arm-resources 6.1 deployments: validate, what-if, errors, RBAC", () => {
  test("validate and what-if write nothing; what-if names creates, modifies with their paths, and Complete-mode deletes", logged(async () => {
    const rg = await createGroup(arm);
    try {
      await arm.msi.userAssignedIdentities.createOrUpdate(rg, "changed", { location: "westus", tags: { env: "old" } });
      await arm.msi.userAssignedIdentities.createOrUpdate(rg, "extra", { location: "westus" });
      const tpl = template([
        { type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "changed", location: "westus", tags: { env: "new" } },
        { type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "brand-new", location: "westus" },
      ]);
      const body = { properties: { mode: "Complete", template: tpl, parameters: { adminPassword: { value: "x" } } } };
      const validated = await deployments.deployments.beginValidateAndWait(rg, "v1", body);
      assert.equal(validated.properties.provisioningState, "Succeeded");
      const whatIf = await deployments.deployments.beginWhatIfAndWait(rg, "w1", body);
      const changes = Object.fromEntries(whatIf.changes.map((c) => [c.resourceId.split("/").pop(), c]));
      assert.equal(changes["brand-new"].changeType, "Create");
      assert.equal(changes.changed.changeType, "Modify");
      const delta = changes.changed.delta.find((d) => d.path === "tags.env");
      // The client maps `before`/`after` as objects, so a string value arrives spread into one
      // key per character ({"0":"o",...}); that is @azure/arm-resources 6's own deserialization.
      const text = (value) => (typeof value === "string" ? value : Object.values(value ?? {}).join(""));
      assert.deepEqual([delta.propertyChangeType, text(delta.before), text(delta.after)], ["Modify", "old", "new"]);
      assert.equal(changes.extra.changeType, "Delete");
      const names = (await all(arm.msi.userAssignedIdentities.listByResourceGroup(rg))).map((i) => i.name).sort();
      assert.deepEqual(names, ["changed", "extra"]);
      assert.deepEqual((await arm.msi.userAssignedIdentities.get(rg, "changed")).tags, { env: "old" });
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("template errors in ARM's words (line and column, circular dependsOn), nothing written", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const bad = template([{ type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "[concat('a', ]", location: "westus" }]);
      const syntax = await rejects(deploy(deployments, rg, bad));
      assert.equal(syntax.statusCode, 400, describeError(syntax));
      assert.equal(armErrorBody(syntax).code, "InvalidTemplate");
      assert.match(armErrorBody(syntax).message, /^Deployment template validation failed: .*at line '\d+' and column '\d+'/);

      const cycle = template([
        { type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "a", location: "westus", dependsOn: ["b"] },
        { type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "b", location: "westus", dependsOn: ["a"] },
      ]);
      const circular = await rejects(deploy(deployments, rg, cycle));
      assert.match(armErrorBody(circular).message, /Circular dependency detected on resource/);
      assert.deepEqual(await all(arm.msi.userAssignedIdentities.listByResourceGroup(rg)), []);
      assert.deepEqual(await all(deployments.deployments.listByResourceGroup(rg)), []);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("a Virtual Machine Contributor without Managed Identity Operator: the deployment fails with LinkedAuthorizationFailed in its details", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const identity = await arm.msi.userAssignedIdentities.createOrUpdate(rg, "ID1", { location: "westus" });
      const sp = await createServicePrincipal(server);
      await arm.authorization.roleAssignments.create(server.groupId(rg), crypto.randomUUID(), {
        roleDefinitionId: server.roleDefinitionId("Virtual Machine Contributor"), principalId: sp.objectId, principalType: "ServicePrincipal",
      });
      const vmc = new DeploymentsClient(secretCredential(server, sp.appId, sp.secret), server.subscriptionId, clientOptions(server));
      const name = uniqueName("jsvmc");
      const tpl = template([vmResource("vm1", { type: "UserAssigned", userAssignedIdentities: { [identity.id]: {} } })]);
      const failed = await rejects(deploy(vmc, rg, tpl, { name }));
      assert.match(`${failed.message} ${failed.code}`, /DeploymentFailed|At least one resource deployment operation failed/, describeError(failed));
      const record = await vmc.deployments.get(rg, name);
      assert.equal(record.properties.provisioningState, "Failed");
      assert.equal(record.properties.error.code, "DeploymentFailed");
      assert.deepEqual(record.properties.error.details.map((d) => d.code), ["LinkedAuthorizationFailed"]);
      const operations = await all(vmc.deploymentOperations.list(rg, name));
      assert.equal(operations[0].properties.statusCode, "Forbidden");
      const vmList = await all(arm.compute.virtualMachines.list(rg));
      assert.deepEqual(vmList, []);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});
