// Token-endpoint limits (issue 20), the twin of tests/py/test_throttling.py: a client over its
// rate gets Entra's throttling answer (429, Retry-After, temporarily_unavailable AADSTS90055), and
// @azure/identity's ClientSecretCredential waits what Retry-After says and gets its token.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ClientSecretCredential } from "@azure/identity";

import { logged, startServer } from "../lib/support.mjs";

let server;
before(async () => {
  server = await startServer({ extraArgs: ["--token-rate-limit", "2", "--token-address-rate-limit", "0"] });
});
after(async () => {
  await server?.stop();
});

async function clientCredentials() {
  const body = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: server.clientId,
    client_secret: server.clientSecret,
    scope: "https://management.azure.com/.default",
  });
  return server.request("POST", `/${server.tenantId}/oauth2/v2.0/token`, { body: body.toString(), headers: { "Content-Type": "application/x-www-form-urlencoded" } });
}

test("a client over its rate is 429 with Retry-After; ClientSecretCredential waits and gets its token", logged(async () => {
  const answers = [];
  for (let n = 0; n < 6; n += 1) answers.push(await clientCredentials());
  assert.deepEqual(answers.slice(0, 4).map((a) => a.status), [200, 200, 200, 200], answers.map((a) => a.text).join("\n"));
  const throttled = answers.find((a) => a.status === 429);
  assert.ok(throttled, answers.map((a) => a.status).join(","));
  assert.equal(throttled.json.error, "temporarily_unavailable");
  assert.deepEqual(throttled.json.error_codes, [90055]);
  assert.match(throttled.json.error_description, /^AADSTS90055: There are too many incoming requests\./);
  assert.ok(Number(throttled.headers.get("retry-after")) >= 1);

  for (let n = 0; n < 6; n += 1) await clientCredentials();
  const credential = new ClientSecretCredential(server.tenantId, server.clientId, server.clientSecret, {
    authorityHost: server.url,
    disableInstanceDiscovery: true,
  });
  const began = Date.now();
  const token = await credential.getToken("https://graph.microsoft.com/.default");
  assert.ok(token.token);
  assert.ok(Date.now() - began >= 300, "the credential waited for Retry-After");
}));
