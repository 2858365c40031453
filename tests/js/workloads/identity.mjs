// The workload "on the VM" (issue 14): what a Node program would run with nothing but the
// environment `openmi vm run` gives it. Its argument is a JSON spec; it prints one JSON document
// with the token (or the error) and, when asked, the group it read with that token.
//
// spec.credential: "mi" (ManagedIdentityCredential, the default), "default"
//   (DefaultAzureCredential), or "msal" (@azure/msal-node's ManagedIdentityApplication);
// spec.clientId / spec.objectId / spec.resourceId select a user-assigned identity;
// spec.group + spec.subscription + spec.endpoint: read that group with @azure/arm-resources.

import { DefaultAzureCredential, ManagedIdentityCredential } from "@azure/identity";
import { ManagedIdentityApplication } from "@azure/msal-node";
import { ResourceManagementClient } from "@azure/arm-resources";

const spec = JSON.parse(process.argv[2] ?? "{}");
const scope = "https://management.azure.com/.default";
const out = {
  env: Object.fromEntries(
    ["AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "IMDS_ENDPOINT", "AZURE_CLIENT_ID"]
      .map((name) => [name, process.env[name] ?? null]),
  ),
};

function selector() {
  if (spec.clientId) return { clientId: spec.clientId };
  if (spec.objectId) return { objectId: spec.objectId };
  if (spec.resourceId) return { resourceId: spec.resourceId };
  return {};
}

let credential;
try {
  if (spec.credential === "msal") {
    const managedIdentityIdParams = {};
    if (spec.clientId) managedIdentityIdParams.userAssignedClientId = spec.clientId;
    if (spec.objectId) managedIdentityIdParams.userAssignedObjectId = spec.objectId;
    if (spec.resourceId) managedIdentityIdParams.userAssignedResourceId = spec.resourceId;
    const app = new ManagedIdentityApplication({ managedIdentityIdParams });
    out.source = app.getManagedIdentitySource();
    const result = await app.acquireToken({ resource: "https://management.azure.com" });
    out.token = result.accessToken;
    out.expiresOn = result.expiresOn?.getTime?.() ?? null;
  } else {
    credential = spec.credential === "default"
      ? new DefaultAzureCredential(spec.clientId ? { managedIdentityClientId: spec.clientId } : {})
      : new ManagedIdentityCredential(selector());
    const access = await credential.getToken(scope);
    out.token = access.token;
    out.expiresOn = access.expiresOnTimestamp;
  }
} catch (error) {
  out.tokenError = `${error.name}: ${error.message}`;
}

if (spec.group && credential && out.token) {
  const client = new ResourceManagementClient(credential, spec.subscription, {
    endpoint: spec.endpoint, $host: spec.endpoint, credentialScopes: [scope],
  });
  try {
    const group = await client.resourceGroups.get(spec.group);
    out.group = { id: group.id, name: group.name, location: group.location, provisioningState: group.properties?.provisioningState };
  } catch (error) {
    out.groupError = { status: error.statusCode, code: error.code, message: error.message };
  }
}

console.log(JSON.stringify(out));
