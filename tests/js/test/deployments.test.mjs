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

import { CosmosDBManagementClient } from "@azure/arm-cosmosdb";
import { ResourceManagementClient as DeploymentsClient } from "@azure/arm-resources-deployments";

import {
  GRAPH_SCOPE,
  GUID_RE,
  ROLES,
  armErrorBody,
  bootstrapToken,
  cliLoginSp,
  createServicePrincipal,
  describeError,
  logged,
  parseAuthorizationFailed,
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

// ------------------------------------------------------------------------------------------------
// The Python suite's deployment tests, twinned (issue 14: every flow proven with Python is also
// proven with the JavaScript clients): the language at work, subscription scope, Complete mode,
// template errors, a failed resource, RBAC, idempotence, az vm create's network, Cosmos DB.

/** The deployment's operations keyed by target resource name. */
async function operationsByName(client, rg, name) {
  const operations = await all(client.deploymentOperations.list(rg, name));
  return Object.fromEntries(operations.map((o) => [o.properties.targetResource.resourceName, o]));
}

/** A deployment the server must refuse before anything runs: 400 InvalidTemplate; the ARM error. */
async function expectTemplateError(rg, tpl, parameters = {}) {
  const error = await rejects(deploy(deployments, rg, tpl, { parameters }));
  assert.equal(error.statusCode, 400, describeError(error));
  const body = armErrorBody(error);
  assert.equal(body.code, "InvalidTemplate", describeError(error));
  return body;
}

describe("@azure/arm-resources 6.1 deployments: the language at work, subscription scope, Complete mode", () => {
  test("copy loops (count from a parameter, copyIndex, an output copy), a false condition and a VM's nested extension", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const tpl = template([
        {
          type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "[concat('id-', copyIndex(1))]",
          location: "[resourceGroup().location]", copy: { name: "ids", count: "[parameters('count')]" },
          tags: { index: "[string(copyIndex())]" },
        },
        { condition: "[parameters('withSkipped')]", type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "skipped", location: "westus" },
        vmResource("vm1", { type: "SystemAssigned" }, {
          resources: [{
            type: "extensions", apiVersion: "2018-06-01", name: "ManagedIdentityExtensionForWindows",
            location: "[resourceGroup().location]", dependsOn: ["vm1"],
            properties: { publisher: "Microsoft.ManagedIdentity", type: "ManagedIdentityExtensionForWindows", typeHandlerVersion: "1.0", settings: { port: 50342 } },
          }],
        }),
      ], {
        parameters: {
          count: { type: "int", defaultValue: 3, minValue: 1, maxValue: 10 },
          withSkipped: { type: "bool", defaultValue: false },
        },
        outputs: {
          names: {
            type: "array",
            copy: { count: "[parameters('count')]", input: `[reference(resourceId('${IDENTITY_TYPE}', concat('id-', copyIndex(1)))).principalId]` },
          },
        },
      });
      const result = await timed(deploy(deployments, rg, tpl));
      assert.equal(result.properties.provisioningState, "Succeeded", JSON.stringify(result.properties.error));
      const identities = Object.fromEntries((await all(arm.msi.userAssignedIdentities.listByResourceGroup(rg))).map((i) => [i.name, i]));
      assert.deepEqual(Object.keys(identities).sort(), ["id-1", "id-2", "id-3"]);
      assert.deepEqual(identities["id-2"].tags, { index: "1" });
      assert.deepEqual(result.properties.outputs.names.value, [1, 2, 3].map((n) => identities[`id-${n}`].principalId));
      const extension = await arm.compute.virtualMachineExtensions.get(rg, "vm1", "ManagedIdentityExtensionForWindows");
      assert.deepEqual(extension.settings, { port: 50342 });
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("a subscription-scope deployment creates a group (deployment().location, subscriptionResourceId) and is listed there", logged(async () => {
    const name = uniqueName("jssubrg");
    const tpl = {
      $schema: "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
      contentVersion: "1.0.0.0",
      parameters: { rgName: { type: "string" } },
      resources: [{
        type: "Microsoft.Resources/resourceGroups", apiVersion: "2022-09-01", name: "[parameters('rgName')]",
        location: "[deployment().location]", tags: { by: "template" },
      }],
      outputs: { groupId: { type: "string", value: "[subscriptionResourceId('Microsoft.Resources/resourceGroups', parameters('rgName'))]" } },
    };
    try {
      const depName = uniqueName("jssubdep");
      const result = await timed(deployments.deployments.beginCreateOrUpdateAtSubscriptionScopeAndWait(depName, {
        location: "westus", properties: { mode: "Incremental", template: tpl, parameters: { rgName: { value: name } } },
      }, { updateIntervalInMs: 100 }));
      assert.equal(result.properties.provisioningState, "Succeeded", JSON.stringify(result.properties.error));
      const group = await arm.resource.resourceGroups.get(name);
      assert.equal(group.location, "westus");
      assert.deepEqual(group.tags, { by: "template" });
      // subscriptionResourceId keeps the provider segment for groups, as ARM's does.
      assert.equal(
        result.properties.outputs.groupId.value.toLowerCase(),
        `${server.subscriptionScope}/providers/Microsoft.Resources/resourceGroups/${name}`.toLowerCase(),
      );
      const listed = (await all(deployments.deployments.listAtSubscriptionScope())).map((d) => d.name);
      assert.ok(listed.includes(depName), listed.join(","));
    } finally {
      await deleteGroupQuietly(arm, name);
    }
  }));

  test("Complete mode deletes what the template does not name (the identity's service principal too), a Delete operation for it", logged(async () => {
    const rg = await createGroup(arm);
    try {
      await arm.msi.userAssignedIdentities.createOrUpdate(rg, "stays", { location: "westus" });
      const doomed = await arm.msi.userAssignedIdentities.createOrUpdate(rg, "doomed", { location: "westus" });
      const tpl = template([{ type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "stays", location: "westus" }]);
      const result = await timed(deploy(deployments, rg, tpl, { mode: "Complete" }));
      assert.equal(result.properties.provisioningState, "Succeeded", JSON.stringify(result.properties.error));
      assert.equal(result.properties.mode, "Complete");
      assert.deepEqual((await all(arm.msi.userAssignedIdentities.listByResourceGroup(rg))).map((i) => i.name), ["stays"]);
      const graphToken = await bootstrapToken(server, GRAPH_SCOPE);
      const sps = await server.request("GET", `/v1.0/servicePrincipals?$filter=${encodeURIComponent(`appId eq '${doomed.clientId}'`)}`, { token: graphToken });
      assert.equal(sps.status, 200, sps.text);
      assert.deepEqual(sps.json.value, []);
      const operations = await all(deployments.deploymentOperations.list(rg, result.name));
      const deletes = operations.filter((o) => o.properties.provisioningOperation === "Delete");
      assert.deepEqual(deletes.map((o) => o.properties.targetResource.resourceName), ["doomed"]);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});

describe("@azure/arm-resources 6.1 deployments: errors, failures, RBAC, idempotence", () => {
  test("template errors in ARM's words: an unknown function, a missing parameter value, a value outside allowedValues; nothing written", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const unknown = template([{ type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "[noSuchFunction('x')]", location: "westus" }]);
      const unknownError = await expectTemplateError(rg, unknown);
      assert.match(unknownError.message, /^Deployment template validation failed: .*The template function 'noSuchFunction' is not valid/);

      // ARM's words: "The value for the template parameter 'size' at line 'L' and column 'C' is not
      // provided." and "The provided value 'medium' for the template parameter 'size' ... is not
      // valid. The parameter value is not part of the allowed value(s): 'small,large'."
      const sized = template([], { parameters: { size: { type: "string", allowedValues: ["small", "large"] } } });
      const missing = await expectTemplateError(rg, sized);
      assert.match(missing.message, /^Deployment template validation failed: 'The value for the template parameter 'size' at line '\d+' and column '\d+' is not provided\./);
      const outside = await expectTemplateError(rg, sized, { size: { value: "medium" } });
      assert.match(outside.message, /^Deployment template validation failed: 'The provided value 'medium' for the template parameter 'size' .*is not valid\. The parameter value is not part of the allowed value\(s\)/);

      assert.deepEqual(await all(arm.resource.resources.listByResourceGroup(rg)), []);
      assert.deepEqual(await all(deployments.deployments.listByResourceGroup(rg)), []);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("a failed resource fails the deployment (DeploymentFailed), what succeeded stays, a dependent is not attempted; the operation read by its id", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const missingIdentity = server.identityId(rg, "does-not-exist");
      const tpl = template([
        { type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "good", location: "westus" },
        vmResource("vm1", { type: "UserAssigned", userAssignedIdentities: { [missingIdentity]: {} } }),
        { type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "after-vm", location: "westus", dependsOn: ["vm1"] },
      ]);
      const name = uniqueName("jsfail");
      const failed = await rejects(deploy(deployments, rg, tpl, { name }));
      assert.match(`${failed.message} ${failed.code}`, /DeploymentFailed/, describeError(failed));
      const record = await deployments.deployments.get(rg, name);
      assert.equal(record.properties.provisioningState, "Failed");
      assert.equal(record.properties.error.code, "DeploymentFailed");
      assert.deepEqual(record.properties.error.details.map((d) => d.code), ["FailedIdentityOperation"]);

      const ops = await operationsByName(deployments, rg, name);
      assert.equal(ops.vm1.properties.provisioningState, "Failed");
      assert.equal(ops.vm1.properties.statusCode, "BadRequest");
      assert.equal(ops.vm1.properties.statusMessage?.error?.code, "FailedIdentityOperation", JSON.stringify(ops.vm1.properties.statusMessage));
      assert.ok(ops.vm1.properties.statusMessage.error.message, JSON.stringify(ops.vm1.properties.statusMessage));
      assert.equal(ops.good.properties.provisioningState, "Succeeded");
      assert.ok(!("after-vm" in ops), "a resource whose dependency failed is not attempted");

      const one = await deployments.deploymentOperations.get(rg, name, ops.vm1.operationId);
      assert.equal(one.operationId, ops.vm1.operationId);
      assert.equal(one.id, ops.vm1.id);
      assert.equal(one.properties.provisioningState, "Failed");
      assert.equal(one.properties.statusCode, "BadRequest");
      assert.equal(one.properties.targetResource.id.toLowerCase(), server.vmId(rg, "vm1").toLowerCase());
      assert.deepEqual(one.properties.statusMessage.error, ops.vm1.properties.statusMessage.error);

      assert.deepEqual((await all(arm.msi.userAssignedIdentities.listByResourceGroup(rg))).map((i) => i.name), ["good"]);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("a Reader cannot deploy (AuthorizationFailed); granted Virtual Machine Contributor it deploys, and a type outside that role is InvalidTemplateDeployment", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const sp = await createServicePrincipal(server);
      const grant = (role) => arm.authorization.roleAssignments.create(server.groupId(rg), crypto.randomUUID(), {
        roleDefinitionId: server.roleDefinitionId(role), principalId: sp.objectId, principalType: "ServicePrincipal",
      });
      await grant("Reader");
      const client = new DeploymentsClient(secretCredential(server, sp.appId, sp.secret), server.subscriptionId, clientOptions(server));
      const seed001 = template([vmResource("myVM", { type: "SystemAssigned" })]);
      const name = uniqueName("jsreader");
      const refused = await rejects(deploy(client, rg, seed001, { name }));
      assert.equal(refused.statusCode, 403, describeError(refused));
      const body = armErrorBody(refused);
      assert.equal(body.code, "AuthorizationFailed", describeError(refused));
      const parts = parseAuthorizationFailed(body.message);
      assert.ok(parts, body.message);
      assert.equal(parts.objectId, sp.objectId);
      assert.equal(parts.action, "Microsoft.Resources/deployments/write");
      assert.equal(parts.scope.toLowerCase(), `${server.groupId(rg)}/providers/Microsoft.Resources/deployments/${name}`.toLowerCase());
      assert.equal((await deployments.deployments.checkExistence(rg, name)).body, false);
      assert.deepEqual(await all(arm.compute.virtualMachines.list(rg)), []);

      await grant("Virtual Machine Contributor");
      const granted = await timed(deploy(client, rg, seed001, { name }));
      assert.equal(granted.properties.provisioningState, "Succeeded", JSON.stringify(granted.properties.error));
      assert.equal((await arm.compute.virtualMachines.get(rg, "myVM")).identity.type, "SystemAssigned");

      // A resource type the role does not cover is refused before anything starts (ARM's preflight).
      const other = template([{ type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "not-mine", location: "westus" }]);
      // ARM answers this one 400 Bad Request.
      const preflight = await rejects(deploy(client, rg, other));
      assert.equal(preflight.statusCode, 400, describeError(preflight));
      const preflightBody = armErrorBody(preflight);
      assert.equal(preflightBody.code, "InvalidTemplateDeployment", describeError(preflight));
      assert.match(
        preflightBody.message,
        /^The template deployment failed with error: 'Authorization failed for template resource 'not-mine' of type 'Microsoft\.ManagedIdentity\/userAssignedIdentities'\. The client '[^']+' with object id '[^']+' does not have permission to perform action 'Microsoft\.ManagedIdentity\/userAssignedIdentities\/write' at scope '[^']+'/,
        describeError(preflight),
      );
      assert.deepEqual(await all(arm.msi.userAssignedIdentities.listByResourceGroup(rg)), []);
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("the role assignment through reference(..., 'Full') deployed a second time is idempotent", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const vmId = "resourceId('Microsoft.Compute/virtualMachines', 'myVM')";
      const tpl = template([
        vmResource("myVM", { type: "SystemAssigned" }),
        {
          type: "Microsoft.Authorization/roleAssignments", apiVersion: "2022-04-01",
          name: `[guid(resourceGroup().id, ${vmId}, '${ROLES.Reader}')]`, dependsOn: [`[${vmId}]`],
          properties: {
            roleDefinitionId: `[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '${ROLES.Reader}')]`,
            principalId: `[reference(${vmId}, '2018-06-01', 'Full').identity.principalId]`,
            principalType: "ServicePrincipal",
          },
        },
      ]);
      const name = uniqueName("jsrole");
      const first = await timed(deploy(deployments, rg, tpl, { name }));
      assert.equal(first.properties.provisioningState, "Succeeded", JSON.stringify(first.properties.error));
      const principal = (await arm.compute.virtualMachines.get(rg, "myVM")).identity.principalId;
      const mine = async () => all(arm.authorization.roleAssignments.listForResourceGroup(rg, { filter: `principalId eq '${principal}'` }));
      const before = await mine();
      assert.equal(before.length, 1);
      assert.ok(before[0].roleDefinitionId.toLowerCase().endsWith(ROLES.Reader));

      const again = await timed(deploy(deployments, rg, tpl, { name }));
      assert.equal(again.properties.provisioningState, "Succeeded", JSON.stringify(again.properties.error));
      assert.equal((await arm.compute.virtualMachines.get(rg, "myVM")).identity.principalId, principal);
      const after = await mine();
      assert.deepEqual(after.map((a) => a.id), before.map((a) => a.id));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});

describe("@azure/arm-resources 6.1 deployments: az vm create's network resources, Cosmos DB", () => {
  // No @azure/arm-network in package.json: the network resources are read with
  // @azure/arm-resources 7's generic resources.getById, as the Python twin does.
  test("the network az vm create puts in its template (VNet and subnet, NSG, public IP, NIC private IP and MAC) and a VM's instanceView power state", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const vm = "myVM";
      const subnetId = `[concat(resourceId('Microsoft.Network/virtualNetworks', '${vm}VNET'), '/subnets/${vm}Subnet')]`;
      const nicResource = {
        type: "Microsoft.Network/networkInterfaces", apiVersion: "2015-06-15", name: `${vm}VMNic`, location: "westus",
        dependsOn: [`Microsoft.Network/virtualNetworks/${vm}VNET`, `Microsoft.Network/networkSecurityGroups/${vm}NSG`, `Microsoft.Network/publicIpAddresses/${vm}PublicIP`],
        properties: {
          ipConfigurations: [{
            name: `ipconfig${vm}`,
            properties: {
              privateIPAllocationMethod: "Dynamic", subnet: { id: subnetId },
              publicIPAddress: { id: `[resourceId('Microsoft.Network/publicIPAddresses', '${vm}PublicIP')]` },
            },
          }],
          networkSecurityGroup: { id: `[resourceId('Microsoft.Network/networkSecurityGroups', '${vm}NSG')]` },
        },
      };
      const tpl = template([
        {
          type: "Microsoft.Network/virtualNetworks", apiVersion: "2015-06-15", name: `${vm}VNET`, location: "westus",
          properties: { addressSpace: { addressPrefixes: ["10.0.0.0/16"] }, subnets: [{ name: `${vm}Subnet`, properties: { addressPrefix: "10.0.0.0/24" } }] },
        },
        {
          type: "Microsoft.Network/networkSecurityGroups", apiVersion: "2015-06-15", name: `${vm}NSG`, location: "westus",
          properties: {
            securityRules: [{
              name: "rdp",
              properties: {
                protocol: "Tcp", sourcePortRange: "*", destinationPortRange: "3389", sourceAddressPrefix: "*",
                destinationAddressPrefix: "*", access: "Allow", priority: 1000, direction: "Inbound",
              },
            }],
          },
        },
        {
          type: "Microsoft.Network/publicIPAddresses", apiVersion: "2022-01-01", name: `${vm}PublicIP`, location: "westus",
          sku: { name: "Standard" }, properties: { publicIPAllocationMethod: "Static" },
        },
        nicResource,
      ]);
      const result = await timed(deploy(deployments, rg, tpl));
      assert.equal(result.properties.provisioningState, "Succeeded", JSON.stringify(result.properties.error));
      const base = `${server.groupId(rg)}/providers/Microsoft.Network`;
      const get = (id) => arm.resource.resources.getById(id, "2022-01-01");
      const vnet = await get(`${base}/virtualNetworks/${vm}VNET`);
      assert.equal(vnet.properties.subnets[0].id.toLowerCase(), `${base}/virtualNetworks/${vm}VNET/subnets/${vm}Subnet`.toLowerCase());
      const nic = await get(`${base}/networkInterfaces/${vm}VMNic`);
      assert.equal(nic.properties.ipConfigurations[0].properties.privateIPAddress, "10.0.0.4");
      assert.match(nic.properties.macAddress, /^([0-9A-F]{2}-){5}[0-9A-F]{2}$/, JSON.stringify(nic.properties));
      const pip = await get(`${base}/publicIPAddresses/${vm}PublicIP`);
      assert.match(pip.properties.ipAddress, /^\d+\.\d+\.\d+\.\d+$/, JSON.stringify(pip.properties));
      const nsg = await get(`${base}/networkSecurityGroups/${vm}NSG`);
      const defaults = new Set(nsg.properties.defaultSecurityRules.map((r) => r.name));
      assert.ok(defaults.has("AllowVnetInBound") && defaults.has("DenyAllInBound"), [...defaults].join(","));

      // A second NIC in the subnet gets the next address; a NIC on a missing subnet is refused.
      const second = template([{ ...structuredClone(nicResource), name: "second-nic", dependsOn: [] }]);
      await timed(deploy(deployments, rg, second));
      const nic2 = await get(`${base}/networkInterfaces/second-nic`);
      assert.equal(nic2.properties.ipConfigurations[0].properties.privateIPAddress, "10.0.0.5");
      const dangling = await rejects(arm.resource.resources.beginCreateOrUpdateByIdAndWait(`${base}/networkInterfaces/dangling`, "2022-01-01", {
        location: "westus",
        properties: { ipConfigurations: [{ name: "c", properties: { subnet: { id: `${base}/virtualNetworks/none/subnets/none` } } }] },
      }));
      assert.equal(armErrorBody(dangling).code, "InvalidResourceReference", describeError(dangling));

      // `$expand=instanceView` on a VM answers a power state (what az reads back).
      await timed(deploy(deployments, rg, template([vmResource("vm1", { type: "SystemAssigned" })])));
      const withView = await arm.compute.virtualMachines.get(rg, "vm1", { expand: "instanceView" });
      const codes = (withView.instanceView?.statuses ?? []).map((s) => s.code);
      assert.ok(codes.includes("PowerState/running"), JSON.stringify(withView.instanceView));
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));

  test("a Cosmos DB account, database, container and data role for a user-assigned identity in a template, listKeys() in an output", logged(async () => {
    const rg = await createGroup(arm);
    try {
      const cosmos = new CosmosDBManagementClient(arm.credential, server.subscriptionId, clientOptions(server));
      const account = uniqueName("jstplcos").replace(/-/g, "");
      const accountId = `resourceId('Microsoft.DocumentDB/databaseAccounts', '${account}')`;
      const identityRef = `resourceId('${IDENTITY_TYPE}', 'ID1')`;
      const tpl = template([
        { type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "ID1", location: "[resourceGroup().location]" },
        {
          type: "Microsoft.DocumentDB/databaseAccounts", apiVersion: "2024-05-15", name: account, location: "[resourceGroup().location]",
          kind: "GlobalDocumentDB",
          properties: { databaseAccountOfferType: "Standard", locations: [{ locationName: "[resourceGroup().location]", failoverPriority: 0 }] },
        },
        {
          type: "Microsoft.DocumentDB/databaseAccounts/sqlDatabases", apiVersion: "2024-05-15", name: `${account}/db`,
          dependsOn: [`[${accountId}]`], properties: { resource: { id: "db" }, options: {} },
        },
        {
          type: "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers", apiVersion: "2024-05-15", name: `${account}/db/items`,
          dependsOn: [`[resourceId('Microsoft.DocumentDB/databaseAccounts/sqlDatabases', '${account}', 'db')]`],
          properties: { resource: { id: "items", partitionKey: { paths: ["/pk"], kind: "Hash" } }, options: {} },
        },
        {
          type: "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments", apiVersion: "2024-05-15",
          name: `[concat('${account}/', guid('${account}', 'ID1'))]`,
          dependsOn: [`[${accountId}]`, `[${identityRef}]`],
          properties: {
            roleDefinitionId: `[concat(${accountId}, '/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002')]`,
            scope: `[concat(${accountId}, '/dbs/db/colls/items')]`,
            principalId: `[reference(${identityRef}).principalId]`,
          },
        },
      ], {
        outputs: {
          endpoint: { type: "string", value: `[reference(${accountId}).documentEndpoint]` },
          keyLength: { type: "int", value: `[length(listKeys(${accountId}, '2024-05-15').primaryMasterKey)]` },
        },
      });
      const result = await timed(deploy(deployments, rg, tpl));
      assert.equal(result.properties.provisioningState, "Succeeded", JSON.stringify(result.properties.error));
      const created = await cosmos.databaseAccounts.get(rg, account);
      assert.equal(result.properties.outputs.endpoint.value, created.documentEndpoint);
      const keys = await cosmos.databaseAccounts.listKeys(rg, account);
      assert.equal(result.properties.outputs.keyLength.value, 88);
      assert.equal(keys.primaryMasterKey.length, 88);
      const container = await cosmos.sqlResources.getSqlContainer(rg, account, "db", "items");
      assert.deepEqual(container.resource.partitionKey.paths, ["/pk"]);
      const identity = await arm.msi.userAssignedIdentities.get(rg, "ID1");
      const assignments = await all(cosmos.sqlResources.listSqlRoleAssignments(rg, account));
      assert.deepEqual(
        assignments.map((a) => [a.principalId, a.scope.toLowerCase()]),
        [[identity.principalId, `${created.id}/dbs/db/colls/items`.toLowerCase()]],
      );
    } finally {
      await deleteGroupQuietly(arm, rg);
    }
  }));
});

describe("@azure/arm-resources 6.1 deployments: a server that answers at once, as ARM does", () => {
  let atOnce;
  before(async () => {
    atOnce = await startServer({ extraArgs: ["--deployment-wait", "0"] });
  });
  after(async () => {
    await atOnce?.stop();
  });

  test("the poller follows Azure-AsyncOperation from 201 Running to Succeeded", logged(async () => {
    const clients = await armClients(atOnce);
    // Records what the client sent and got: the PUT's answer and each status poll.
    const exchanges = [];
    const recording = new DeploymentsClient(clients.credential, atOnce.subscriptionId, {
      ...clientOptions(atOnce),
      additionalPolicies: [{
        position: "perCall",
        policy: {
          name: "record",
          async sendRequest(request, next) {
            const response = await next(request);
            exchanges.push({ method: request.method, url: request.url, status: response.status, headers: response.headers, body: response.bodyAsText });
            return response;
          },
        },
      }],
    });
    const rg = await createGroup(clients);
    try {
      const tpl = template([{
        type: IDENTITY_TYPE, apiVersion: "2023-01-31", name: "[concat('pid', copyIndex())]", location: "westus",
        copy: { name: "c", count: 5 },
      }]);
      const name = uniqueName("jsdep");
      const result = await deploy(recording, rg, tpl, { name });
      assert.equal(result.properties.provisioningState, "Succeeded", JSON.stringify(result.properties.error));
      const put = exchanges.find((e) => e.method === "PUT");
      assert.equal(put.status, 201, put.body);
      assert.match(JSON.parse(put.body).properties.provisioningState, /^(Accepted|Running)$/);
      const statusUrl = put.headers.get("azure-asyncoperation");
      assert.ok(statusUrl, "Azure-AsyncOperation on the PUT's answer");
      assert.equal(put.headers.get("retry-after"), "1");
      const polls = exchanges.filter((e) => e.method === "GET" && e.url.startsWith(statusUrl.split("?")[0]));
      assert.ok(polls.length >= 1, JSON.stringify(exchanges.map((e) => [e.method, e.url, e.status])));
      assert.equal(JSON.parse(polls.at(-1).body).status, "Succeeded");
      const names = (await all(clients.msi.userAssignedIdentities.listByResourceGroup(rg))).map((i) => i.name).sort();
      assert.deepEqual(names, ["pid0", "pid1", "pid2", "pid3", "pid4"]);
      assert.equal((await all(recording.deploymentOperations.list(rg, name))).length, 5);
    } finally {
      await deleteGroupQuietly(clients, rg);
    }
  }));
});
