// The real @azure/arm-* clients pointed at an openmi server, as a user would configure them:
// `endpoint` (and `$host` for the core-client generation) set to the server's URL, the ARM
// scope as the credential scope.

import { AuthorizationManagementClient } from "@azure/arm-authorization";
import { ComputeManagementClient } from "@azure/arm-compute";
import { ManagedServiceIdentityClient } from "@azure/arm-msi";
import { ResourceManagementClient } from "@azure/arm-resources";
import { SubscriptionClient } from "@azure/arm-resources-subscriptions";
import { ClientSecretCredential } from "@azure/identity";

import { ARM_SCOPE, unverifiedClaims, uniqueName } from "./support.mjs";

// What a slow server would make a poller wait (the clients poll every 2 s by default, Retry-After
// aside); every write and delete must be finished well inside it.
export const LRO_MAX_MS = 1_500;

/** The options every @azure/arm-* client takes to talk to `server`. */
export function clientOptions(server) {
  return { endpoint: server.url, $host: server.url, credentialScopes: [ARM_SCOPE] };
}

/** @azure/identity's ClientSecretCredential for an application of the server's tenant. */
export function secretCredential(server, appId = server.clientId, secret = server.clientSecret) {
  return new ClientSecretCredential(server.tenantId, appId, secret, {
    authorityHost: server.url,
    disableInstanceDiscovery: true,
  });
}

/** The resource, subscription, msi, compute and authorization clients acting as `credential`. */
export async function armClients(server, credential = secretCredential(server)) {
  const options = clientOptions(server);
  const sub = server.subscriptionId;
  const clients = {
    server,
    credential,
    resource: new ResourceManagementClient(credential, sub, options),
    subscriptions: new SubscriptionClient(credential, options),
    msi: new ManagedServiceIdentityClient(credential, sub, options),
    compute: new ComputeManagementClient(credential, sub, options),
    authorization: new AuthorizationManagementClient(credential, sub, { ...options, baseUri: server.url }),
  };
  clients.objectId = unverifiedClaims((await credential.getToken(ARM_SCOPE)).token).oid;
  return clients;
}

/** Awaits an LRO (a poller or the promise of its result), failing if it took long enough to poll. */
export async function timed(operation, limitMs = LRO_MAX_MS) {
  const startedAt = Date.now();
  const result = await operation;
  const took = Date.now() - startedAt;
  if (took >= limitMs) {
    throw new Error(`LRO took ${took} ms: the server made the client poll`);
  }
  return result;
}

/** Collects a PagedAsyncIterableIterator into an array (following every nextLink). */
export async function all(iterator) {
  const items = [];
  for await (const item of iterator) items.push(item);
  return items;
}

/** A VM as a user writes it for @azure/arm-compute 24 (its models are flattened). */
export function vmBody(server, name, { location = "westus", identity } = {}) {
  const body = {
    location,
    hardwareProfile: { vmSize: "Standard_DS1_v2" },
    storageProfile: {
      imageReference: { publisher: "MicrosoftWindowsServer", offer: "WindowsServer", sku: "2016-Datacenter", version: "latest" },
    },
    osProfile: { computerName: name.slice(0, 15), adminUsername: "azureuser", adminPassword: "myPassword12" },
    networkProfile: {
      networkInterfaces: [{ id: `${server.subscriptionScope}/resourceGroups/net/providers/Microsoft.Network/networkInterfaces/nic-${name}` }],
    },
  };
  if (identity !== undefined) body.identity = identity;
  return body;
}

/** A new resource group (unique name unless given). */
export async function createGroup(clients, name = uniqueName("jsrg"), location = "westus") {
  await clients.resource.resourceGroups.createOrUpdate(name, { location });
  return name;
}

export async function deleteGroupQuietly(clients, name) {
  try {
    await clients.resource.resourceGroups.beginDeleteAndWait(name);
  } catch {
    // cleanup must not mask the test's own result
  }
}

/** The VM's user-assigned identities keyed by lower-cased resource id. */
export function userAssigned(vm) {
  const map = vm?.identity?.userAssignedIdentities ?? {};
  return Object.fromEntries(Object.entries(map).map(([key, value]) => [key.toLowerCase(), value]));
}
