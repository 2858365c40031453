// Faults (issue 20), the twins of tests/py/test_faults.py, on SQLite and PostgreSQL:
// - a server killed with SIGKILL while 8 @azure/arm-msi clients write loses no write it
//   acknowledged, and nothing is half-written (every identity found after the restart has its
//   service principal);
// - `openmi server keys rotate` (another process) while @azure/identity clients mint tokens and
//   verify each with jose against the JWKS: no verification fails, the new key is published
//   before it signs, and signs from its `activatesAt` within the key reload interval.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";

import { ManagedServiceIdentityClient } from "@azure/arm-msi";
import { ClientSecretCredential } from "@azure/identity";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";

import { ARM, ARM_SCOPE, BACKEND, OPENMI_BIN, bootstrapToken, logged, sleep, startServer } from "../lib/support.mjs";
import { all, armClients, clientOptions, createGroup } from "../lib/arm.mjs";

const WRITERS = 8;

test("kill -9 during concurrent writes from 8 clients loses no acknowledged write", logged(async () => {
  const server = await startServer();
  const arm = await armClients(server);
  const rg = await createGroup(arm);
  // No retries: a write either answers or fails once the server is gone.
  const msi = new ManagedServiceIdentityClient(arm.credential, server.subscriptionId, { ...clientOptions(server), retryOptions: { maxRetries: 0 } });
  const acknowledged = new Map();
  let attempted = 0;
  let stopped = false;
  const writer = async (number) => {
    for (let n = 0; !stopped; n += 1) {
      const name = `w${number}-${n}`;
      attempted += 1;
      try {
        const identity = await msi.userAssignedIdentities.createOrUpdate(rg, name, { location: "westus", tags: { n: String(n) } });
        acknowledged.set(name, identity.principalId);
      } catch {
        return; // the server is gone
      }
    }
  };
  const writers = Array.from({ length: WRITERS }, (_, number) => writer(number));
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const exited = new Promise((resolve) => server.proc.once("exit", resolve));
  server.proc.kill("SIGKILL");
  await exited;
  stopped = true;
  await Promise.all(writers);
  assert.ok(acknowledged.size > 20, `only ${acknowledged.size} writes acknowledged before the kill`);

  const schema = server.schema;
  server.schema = null;
  const again = await startServer({ dataDir: server.dataDir, databaseUrl: server.databaseUrl });
  again.schema = schema;
  try {
    const after = await armClients(again);
    const found = new Map((await all(after.msi.userAssignedIdentities.listByResourceGroup(rg))).map((i) => [i.name, i]));
    const lost = [...acknowledged.keys()].filter((name) => !found.has(name));
    const changed = [...acknowledged].filter(([name, principal]) => found.has(name) && found.get(name).principalId !== principal);
    console.log(`kill -9 under ${WRITERS} writers: ${attempted} PUTs sent, ${acknowledged.size} acknowledged, ${found.size} found after restart, ${lost.length} lost`);
    assert.deepEqual(lost, [], "acknowledged writes lost");
    assert.deepEqual(changed, [], "identities whose principal changed");
    const graph = await bootstrapToken(again, "https://graph.microsoft.com/.default");
    for (const identity of found.values()) {
      const principal = await again.request("GET", `/v1.0/servicePrincipals/${identity.principalId}`, { token: graph });
      assert.equal(principal.status, 200, `${identity.name}: ${principal.text}`);
      assert.equal(principal.json.appId, identity.clientId);
    }
  } finally {
    await again.stop();
  }
}));

const MINTERS = 4;
const KEY_RELOAD_INTERVAL = 1;
// Long enough for every verifier's cached JWKS (1 s old at most, here) to list the new key before
// it signs: the server publishes it at its next key reload. With 0, a verifier that fetched the
// JWKS within jose's refetch cooldown (30 s) fails on the new kid.
const PUBLISH_DELAY = 4;
const JWKS_CACHE_MS = 1000;

test("key rotation while 4 clients mint and verify tokens: no verification fails, the kid changes within the reload interval", logged(async () => {
  const server = await startServer({ extraArgs: ["--key-reload-interval", String(KEY_RELOAD_INTERVAL)] });
  try {
    const discovery = await (await fetch(`${server.url}/${server.tenantId}/v2.0/.well-known/openid-configuration`)).json();
    const jwksUri = new URL(discovery.jwks_uri);
    const issuer = `${server.url}/${server.tenantId}/`;
    const startKids = new Set((await (await fetch(jwksUri)).json()).keys.map((key) => key.kid));
    const mints = [];
    const published = new Map();
    let stopping = false;

    const minter = async () => {
      // A verifier as resource servers keep one: the JWKS cached, fetched again when stale or for an
      // unknown kid (at most once per jose's 30 s cooldown).
      const keys = createRemoteJWKSet(jwksUri, { cacheMaxAge: JWKS_CACHE_MS });
      while (!stopping) {
        const mint = { started: Date.now() };
        try {
          // A new credential each time, so every token is minted (@azure/identity caches them).
          const credential = new ClientSecretCredential(server.tenantId, server.clientId, server.clientSecret, {
            authorityHost: server.url,
            disableInstanceDiscovery: true,
          });
          mint.token = (await credential.getToken(ARM_SCOPE)).token;
          mint.kid = decodeProtectedHeader(mint.token).kid;
          await jwtVerify(mint.token, keys, {
            audience: ARM, issuer, algorithms: ["RS256"], requiredClaims: ["exp", "iat", "nbf", "aud", "iss"], clockTolerance: 5,
          });
        } catch (error) {
          mint.error = `${error.name}: ${error.message}`;
        }
        mints.push(mint);
      }
    };
    const watcher = async () => {
      while (!stopping) {
        try {
          for (const key of (await (await fetch(jwksUri)).json()).keys) {
            if (!startKids.has(key.kid) && !published.has(key.kid)) published.set(key.kid, Date.now());
          }
        } catch {
          // counted as not yet published
        }
        await sleep(100);
      }
    };
    const running = [...Array.from({ length: MINTERS }, minter), watcher()];

    let printed;
    let rotatedAt;
    let oldKids;
    try {
      await sleep(2000);
      oldKids = new Set(mints.filter((m) => m.kid).map((m) => m.kid));
      // Another process rotates (on SQLite, the same database file; on PostgreSQL, the same database).
      const args = ["server", "keys", "rotate", "--data-dir", server.dataDir];
      if (server.databaseUrl) args.push("--database-url", server.databaseUrl);
      args.push("--publish-delay", String(PUBLISH_DELAY));
      const { stdout } = await promisify(execFile)(OPENMI_BIN, args, { timeout: 60_000 });
      rotatedAt = Date.now();
      printed = JSON.parse(stdout); // {"kid", "activatesAt"}: epoch seconds
      const deadline = rotatedAt + (PUBLISH_DELAY + KEY_RELOAD_INTERVAL + 10) * 1000;
      while (Date.now() < deadline && !mints.some((m) => m.kid && !oldKids.has(m.kid))) await sleep(50);
      await sleep(2000); // more load under the new key
    } finally {
      stopping = true;
      await Promise.all(running);
    }

    // Tokens minted before the rotation still verify against the JWKS as it is now.
    const fresh = createRemoteJWKSet(jwksUri);
    const before = mints.filter((m) => m.token && oldKids.has(m.kid)).slice(-20);
    const staleFailures = [];
    for (const mint of before) {
      await jwtVerify(mint.token, fresh, { audience: ARM, issuer, algorithms: ["RS256"], clockTolerance: 5 })
        .catch((error) => staleFailures.push(`${error.name}: ${error.message}`));
    }

    const failures = mints.filter((m) => m.error);
    const fresher = mints.filter((m) => m.kid && !oldKids.has(m.kid));
    const firstNew = fresher.length ? Math.min(...fresher.map((m) => m.started)) : null;
    const flippedBack = mints.filter((m) => firstNew !== null && m.started > firstNew + 200 && oldKids.has(m.kid));
    const kids = {};
    for (const mint of mints) if (mint.kid) kids[mint.kid] = (kids[mint.kid] ?? 0) + 1;
    const publishedAt = published.get(printed.kid);
    const activatesAt = printed.activatesAt * 1000;
    console.log(
      `key rotation under ${MINTERS} minting clients (${BACKEND}, --key-reload-interval ${KEY_RELOAD_INTERVAL}): ${mints.length} mints, ` +
        `${mints.filter((m) => m.token).length} tokens, ${mints.filter((m) => m.token && !m.error).length} verifications passed, ` +
        `${failures.length} failures; kids seen ${JSON.stringify(kids)} (old ${JSON.stringify([...oldKids])}); new key in the JWKS ` +
        `${publishedAt === undefined ? "never" : `${((publishedAt - rotatedAt) / 1000).toFixed(2)} s`} and its first token ` +
        `${firstNew === null ? "never" : `${((firstNew - rotatedAt) / 1000).toFixed(2)} s`} after \`keys rotate --publish-delay ${PUBLISH_DELAY}\` returned, ` +
        `${firstNew === null ? "-" : ((firstNew - activatesAt) / 1000).toFixed(2)} s after its activatesAt; ${flippedBack.length} tokens of the old key after it; ` +
        `${before.length - staleFailures.length}/${before.length} earlier tokens still verify`,
    );
    for (const mint of failures.slice(0, 3)) console.log(`  failure: ${mint.error.slice(0, 300)}`);

    assert.equal(oldKids.size, 1, `tokens before the rotation were signed by ${[...oldKids]}`);
    assert.deepEqual(failures.map((m) => m.error).slice(0, 5), [], `${failures.length} mints or verifications failed`);
    assert.ok(firstNew !== null, `no token signed by a new key; kids ${JSON.stringify(kids)}`);
    assert.deepEqual(new Set(fresher.map((m) => m.kid)), new Set([printed.kid]), "tokens are signed by the key `keys rotate` added");
    // Published within a reload interval of the rotation, well before it signs ...
    assert.ok(publishedAt !== undefined, "the new key never appeared in the JWKS");
    assert.ok(publishedAt - rotatedAt <= (KEY_RELOAD_INTERVAL + 0.5) * 1000, `the new key was published ${publishedAt - rotatedAt} ms after the rotation`);
    assert.ok(publishedAt < firstNew, "the new key signed before the JWKS published it");
    // ... and signing from its activatesAt, within a reload interval.
    assert.ok(firstNew >= activatesAt - 250, `the new key signed ${firstNew - activatesAt} ms after its activatesAt`);
    assert.ok(firstNew <= activatesAt + KEY_RELOAD_INTERVAL * 1000, `the new key signed ${firstNew - activatesAt} ms after its activatesAt`);
    assert.equal(flippedBack.length, 0, "tokens signed by the old key after the new one signed");
    assert.deepEqual(staleFailures.slice(0, 3), []);
  } finally {
    await server.stop();
  }
}));
