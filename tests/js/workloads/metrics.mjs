// The metrics workload "on the VM" (issue 20), run by `openmi vm run`: a managed-identity token
// through @azure/identity (the agent asks the server), the same token twice more through IMDS
// directly (the agent answers from its cache or memo), a burst over the agent's rate limit, then
// the agent's own /metrics. Its argument is a JSON spec ({burst}); it prints one JSON document.

import { ManagedIdentityCredential } from "@azure/identity";

const spec = JSON.parse(process.argv[2] ?? "{}");
const agent = (process.env.AZURE_POD_IDENTITY_AUTHORITY_HOST ?? "").replace(/\/+$/, "");
const resource = "https://management.azure.com";
const out = {};

try {
  out.token = (await new ManagedIdentityCredential().getToken(`${resource}/.default`)).token;
} catch (error) {
  out.tokenError = `${error.name}: ${error.message}`;
}

const imds = `${agent}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(resource)}`;
async function imdsStatus() {
  const res = await fetch(imds, { headers: { Metadata: "true" } });
  await res.arrayBuffer();
  return res.status;
}
out.again = [await imdsStatus(), await imdsStatus()];
// Over the agent's limit (Azure's 20 requests/s per VM): some are answered 429.
out.burst = [];
for (let index = 0; index < (spec.burst ?? 0); index += 1) out.burst.push(await imdsStatus());

const res = await fetch(`${agent}/metrics`);
out.metricsStatus = res.status;
out.metricsContentType = res.headers.get("content-type");
out.metrics = await res.text();
console.log(JSON.stringify(out));
